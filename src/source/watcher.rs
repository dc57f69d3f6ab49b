//! List, then watch, then resume: the loop that follows the cluster's events.
//!
//! The resourceVersion saved on disk is always one whose events are all written: it advances
//! only after a batch is committed, a paged list's version only after its last page, and a
//! streaming list's (`watch_list`) only at its end bookmark.

use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::watch;

use super::api::{ApiError, EventsApi, WatchBody};
use super::backoff::{Backoff, HEARTBEAT_EVERY};
use super::doubt::{Checked, Doubt, EMPTY_WITHIN, EmptyAnswers, RELIST_AFTER_EMPTY};
use super::selection::SelectionRejected;
use super::watch_list::{InitialSync, Opened, Synced};
use crate::metrics::{Dataless, Metrics, RelistCause, Request};
use crate::pipeline::{Interrupted, Pipeline};
use crate::service::progress::Progress;
use crate::source::backoff::sleep_alive;
use crate::source::diagnose::Problem;
use crate::source::resume::ResumePoint;
use crate::wire::frame::{self, FrameType};
use crate::wire::lines::LineBuf;
use crate::wire::list_page::ListReader;

/// How often the saved resourceVersion and the filters are pushed to disk.
const PERSIST_EVERY: Duration = Duration::from_secs(5);
/// A request the server does not answer within this is abandoned and retried. Waiting on it
/// does not count as alive, so a stalled server stops the watchdog keep-alive meanwhile.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Watcher<'a> {
    pub api: EventsApi,
    pub pipeline: &'a mut Pipeline,
    pub resume: ResumePoint,
    pub shutdown: watch::Receiver<bool>,
    pub idle_timeout: Duration,
    pub progress: Progress,
    pub metrics: Metrics,
}

/// How one watch connection ended.
pub(super) enum WatchEnd {
    /// It carried frames, then the server closed it (timeoutSeconds) or it went idle: resume
    /// at once.
    Resume,
    /// It carried no frame at all: not progress ([`super::doubt`]).
    Dataless(Dataless),
    /// The version is too old: list again.
    Gone,
    Failed(Problem),
    Stopped,
}

pub(super) struct Stopped;

impl Watcher<'_> {
    /// Follows events until a stop signal; Err when the server refused the selection.
    pub async fn run(mut self) -> Result<(), SelectionRejected> {
        let mut rv = self.resume.load();
        match &rv {
            Some(v) => {
                tracing::info!(resource_version = %v, "resuming the watch from the saved resourceVersion")
            }
            None => tracing::info!("no saved resourceVersion; listing all events"),
        }
        if rv.is_none() {
            self.metrics.relist(RelistCause::Start);
        }
        // A version saved by an earlier run is checked before it is watched from: the server
        // may have compacted it, or started its history again, meanwhile.
        let mut doubt = rv.as_ref().map(|_| Doubt::Restart);
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut last_persist = Instant::now();
        let mut sync = InitialSync::default();
        let mut empties = EmptyAnswers::default();
        // Empty watches in a row from the version watched from.
        let mut empty_from_version = 0u32;
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            let mut opened = None;
            let start = match rv.take() {
                Some(v) => {
                    if let Some(why) = doubt {
                        match self.check_version(&v, why, &mut backoff).await {
                            Ok(Checked::Watch) => doubt = None,
                            Ok(Checked::Relist) => {
                                doubt = None;
                                empty_from_version = 0;
                                continue;
                            }
                            Ok(Checked::Retry) => {
                                rv = Some(v);
                                continue;
                            }
                            Err(Stopped) => {
                                rv = Some(v);
                                break;
                            }
                        }
                        if empty_from_version >= RELIST_AFTER_EMPTY {
                            self.give_up_version(&v, empty_from_version);
                            empty_from_version = 0;
                            continue;
                        }
                    }
                    v
                }
                None => match self
                    .initial_sync(&mut sync, &mut backoff, &mut empties)
                    .await
                {
                    Ok(Synced::At(v, stream)) => {
                        opened = stream;
                        v
                    }
                    Ok(Synced::Retry) => continue,
                    Ok(Synced::Empty) => {
                        let what = "the streaming list of all events";
                        if self
                            .dataless(Dataless::Empty, what, &mut empties, &mut backoff)
                            .await
                            .is_err()
                        {
                            break;
                        }
                        continue;
                    }
                    Err(Stopped) => break,
                },
            };
            let mut committed = start.clone();
            let end = self
                .watch_from(
                    &start,
                    &mut committed,
                    &mut backoff,
                    &mut last_persist,
                    opened,
                    &mut empties,
                )
                .await;
            rv = Some(committed);
            match end {
                WatchEnd::Resume => empty_from_version = 0,
                WatchEnd::Dataless(kind) => {
                    if kind == Dataless::Empty {
                        empty_from_version += 1;
                    }
                    let what = format!("the watch from resourceVersion {start}");
                    if self
                        .dataless(kind, &what, &mut empties, &mut backoff)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    doubt = Some(Doubt::Dataless(kind, empty_from_version));
                }
                WatchEnd::Stopped => break,
                WatchEnd::Gone => {
                    empty_from_version = 0;
                    tracing::info!(
                        "the saved resourceVersion has expired on the server; listing all events again"
                    );
                    if let Err(e) = self.resume.clear() {
                        tracing::warn!(error = %e, "cannot remove the expired resourceVersion file");
                    }
                    rv = None;
                    self.metrics.relist(RelistCause::Expired);
                }
                WatchEnd::Failed(problem) => {
                    if self
                        .retry_later(&mut backoff, "watching events", &problem)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    doubt.get_or_insert(Doubt::Failure);
                }
            }
        }
        self.finish(rv.as_deref());
        match self.api.rejected() {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    /// Lists every event page by page (the fallback when the server cannot stream lists).
    /// Ok(None) after a failure that was waited out.
    ///
    /// The next page is fetched while the current one is written: the server renders and sends
    /// it meanwhile, so the list takes about as long as the slower of the two, not their sum.
    pub(super) async fn list_all(
        &mut self,
        backoff: &mut Backoff,
    ) -> Result<Option<String>, Stopped> {
        // The continue token of the request in flight.
        let mut token: Option<String> = None;
        let mut list_rv: Option<String> = None;
        let mut pages = 0u32;
        let mut next: Option<PageFetch> = None;
        self.progress.listing();
        self.pipeline.list_started();
        loop {
            let mut fetch = match next.take() {
                Some(f) => f,
                None => PageFetch::start(&self.api, token.clone()),
            };
            let page = tokio::select! {
                p = tokio::time::timeout(REQUEST_TIMEOUT, fetch.result()) => p,
                _ = self.shutdown.changed() => return Err(Stopped),
            };
            self.metrics.answer(Request::List, &page);
            let page = page.unwrap_or_else(|_| {
                Err(ApiError::Body(format!(
                    "no answer to a list request within {}s",
                    REQUEST_TIMEOUT.as_secs()
                )))
            });
            let body = match page {
                Ok(b) => b,
                Err(e) if e.is_gone() && token.is_some() => {
                    // The server offers a token to carry on inconsistently; starting over is
                    // simpler to reason about and the store absorbs the repeats.
                    tracing::info!("the list's continue token expired; starting the list again");
                    self.metrics.relist(RelistCause::Expired);
                    token = None;
                    list_rv = None;
                    self.pipeline.list_started();
                    continue;
                }
                Err(e) => {
                    let problem = self.api.diagnose(&e);
                    self.retry_later(backoff, "listing events", &problem)
                        .await?;
                    return Ok(None);
                }
            };
            let mut reader = match ListReader::new(&body) {
                Ok(r) => r,
                Err(e) => {
                    let cause = Problem::transient(format!("unreadable list page: {e}"));
                    self.retry_later(backoff, "listing events", &cause).await?;
                    return Ok(None);
                }
            };
            // kube-apiserver writes the list's metadata before its items: fetch the next page
            // while this one is written.
            let early_token = reader.envelope().continue_token.is_some();
            if early_token {
                token = reader
                    .envelope()
                    .continue_token
                    .as_deref()
                    .map(str::to_owned);
                next = Some(PageFetch::start(&self.api, token.clone()));
            }
            loop {
                match reader.next_item() {
                    Ok(Some(item)) => {
                        self.pipeline.offer_read_item(item);
                        if self.pipeline.batch_full() {
                            self.commit().await?;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The items before the break are queued, and written with the next
                        // batch; the list starts over and the store skips them then.
                        let cause = Problem::transient(format!("unreadable list page: {e}"));
                        self.retry_later(backoff, "listing events", &cause).await?;
                        return Ok(None);
                    }
                }
            }
            let envelope = reader.into_envelope();
            backoff.success("listing events");
            self.progress.beat();
            pages += 1;
            if !early_token {
                token = envelope.continue_token.as_deref().map(str::to_owned);
                if token.is_some() {
                    next = Some(PageFetch::start(&self.api, token.clone()));
                }
            }
            self.commit().await?;
            if list_rv.is_none() {
                list_rv = envelope.resource_version.map(|v| v.into_owned());
            }
            if token.is_none() {
                break;
            }
        }
        let Some(rv) = list_rv else {
            let cause = Problem::transient("the list carried no resourceVersion");
            self.retry_later(backoff, "listing events", &cause).await?;
            return Ok(None);
        };
        self.pipeline.list_finished();
        let c = self.pipeline.counters();
        tracing::info!(resource_version = %rv, pages, written = c.written, skipped = c.skipped, "listed all events; watching from here");
        self.progress
            .store(self.pipeline.store_stats().to_string(), c);
        self.progress.listed(&rv);
        Ok(Some(rv))
    }

    /// Watches from `from`, on a new connection or on the one a streaming list left open.
    async fn watch_from(
        &mut self,
        from: &str,
        committed: &mut String,
        backoff: &mut Backoff,
        last_persist: &mut Instant,
        opened: Option<Opened>,
        empties: &mut EmptyAnswers,
    ) -> WatchEnd {
        // A chunk that was already there when the previous one was done.
        let mut ready = None;
        // A streaming list's connection has carried the list already.
        let mut got_data = opened.is_some();
        let mut body: WatchBody = match opened {
            Some(o) => {
                if !o.rest.is_empty() {
                    ready = Some(Ok(Some(o.rest)));
                }
                o.body
            }
            None => match self.open_watch(from).await {
                Ok(b) => b,
                Err(end) => return end,
            },
        };
        let answered = tokio::time::Instant::now();
        // While watches come back empty, an answer is no success yet: data is.
        if empties.in_a_row() == 0 {
            backoff.success("watching events");
            self.progress.watching(from);
        }
        tracing::debug!(resource_version = from, "watch established");

        let mut buf = LineBuf::new();
        let mut latest = from.to_string();
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        // A deadline, not a per-read timeout: the heartbeat tick must not restart the count.
        let mut idle_deadline = tokio::time::Instant::now() + self.idle_timeout;
        loop {
            let chunk = match ready.take() {
                Some(c) => Ok(c),
                None => tokio::select! {
                c = tokio::time::timeout_at(idle_deadline, body.chunk()) => c,
                _ = self.shutdown.changed() => {
                    return WatchEnd::Stopped;
                }
                _ = tick.tick() => {
                    self.progress.beat();
                    if last_persist.elapsed() >= PERSIST_EVERY {
                        self.persist(committed, last_persist);
                    }
                    continue;
                }
                },
            };
            self.metrics.watch_chunk(&chunk);
            let bytes = match chunk {
                Err(_) if !got_data => return WatchEnd::Dataless(Dataless::Silent),
                Err(_) => {
                    tracing::info!(
                        idle_secs = self.idle_timeout.as_secs(),
                        "the watch delivered nothing for too long; reconnecting"
                    );
                    return WatchEnd::Resume;
                }
                Ok(Err(e)) => return WatchEnd::Failed(self.api.diagnose(&e)),
                Ok(Ok(None)) if !got_data => {
                    return WatchEnd::Dataless(if answered.elapsed() < EMPTY_WITHIN {
                        Dataless::Empty
                    } else {
                        Dataless::Silent
                    });
                }
                Ok(Ok(None)) => {
                    if buf.partial_len() > 0 {
                        tracing::debug!(
                            bytes = buf.partial_len(),
                            "the watch ended inside a frame; resuming before it"
                        );
                    }
                    return WatchEnd::Resume;
                }
                Ok(Ok(Some(b))) => b,
            };
            if !got_data {
                got_data = true;
                if self.data_again(empties, backoff) {
                    self.progress.watching(from);
                }
            }
            idle_deadline = tokio::time::Instant::now() + self.idle_timeout;
            let mut lines = buf.start(&bytes);
            let mut end = None;
            while let Some(line) = lines.next_line() {
                if let Some(e) = self.handle_frame(line, &mut latest) {
                    end = Some(e);
                    break;
                }
                if self.pipeline.batch_full() {
                    if self.commit().await.is_err() {
                        return WatchEnd::Stopped;
                    }
                    committed.clone_from(&latest);
                    self.progress.at(committed, self.pipeline.counters());
                    if last_persist.elapsed() >= PERSIST_EVERY {
                        self.persist(committed, last_persist);
                    }
                }
            }
            let stop = lines.stop();
            buf.finish(&bytes, stop);
            // While the server sends faster than we write, chunks are already waiting: take
            // them before writing, so a write carries a full batch rather than one chunk. As
            // soon as nothing is waiting, the batch is written (no added latency).
            if end.is_none()
                && let Some(next) = body.chunk().now_or_never()
            {
                let more = matches!(next, Ok(Some(_)));
                ready = Some(next);
                if more {
                    continue;
                }
            }
            if self.commit().await.is_err() {
                return WatchEnd::Stopped;
            }
            committed.clone_from(&latest);
            self.progress.at(committed, self.pipeline.counters());
            if last_persist.elapsed() >= PERSIST_EVERY {
                self.persist(committed, last_persist);
            }
            if let Some(e) = end {
                return e;
            }
        }
    }

    async fn open_watch(&mut self, from: &str) -> Result<WatchBody, WatchEnd> {
        // The server ends a watch after timeoutSeconds; a little after our own idle bound, so
        // that a silent connection is caught by us either way.
        let timeout = self.idle_timeout.as_secs() + 30;
        let opened = tokio::select! {
            w = tokio::time::timeout(REQUEST_TIMEOUT, self.api.watch(from, timeout)) => w,
            _ = self.shutdown.changed() => return Err(WatchEnd::Stopped),
        };
        self.metrics.answer(Request::Watch, &opened);
        match opened {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) if e.is_gone() => Err(WatchEnd::Gone),
            Ok(Err(e)) => Err(WatchEnd::Failed(self.api.diagnose(&e))),
            Err(_) => {
                let secs = REQUEST_TIMEOUT.as_secs();
                Err(WatchEnd::Failed(Problem::transient(format!(
                    "no answer to a watch request within {secs}s"
                ))))
            }
        }
    }

    /// Offers one frame; returns how the watch ends if the frame ends it.
    pub(super) fn handle_frame(&mut self, line: &[u8], latest: &mut String) -> Option<WatchEnd> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        // The usual frame costs one JSON pass (the object's, for its identity), not two.
        if let Some((_, object)) = frame::split_common_frame(line)
            && self
                .pipeline
                .offer_unchecked_object(object, latest)
                .is_some()
        {
            return None;
        }
        let f = match frame::parse_watch_frame(line) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a malformed watch frame");
                return None;
            }
        };
        match f.frame_type {
            FrameType::Added | FrameType::Modified | FrameType::Deleted => {
                self.pipeline.offer_object(f.object, latest);
            }
            FrameType::Bookmark => match frame::object_resource_version(f.object) {
                Ok(Some(v)) => {
                    latest.clear();
                    latest.push_str(&v);
                }
                _ => tracing::warn!("skipping a bookmark without a resourceVersion"),
            },
            FrameType::Error => {
                let e = ApiError::from_status_body(0, f.object);
                self.metrics.api_error(Request::Watch, &e);
                if e.is_gone() {
                    return Some(WatchEnd::Gone);
                }
                return Some(WatchEnd::Failed(Problem::transient(format!(
                    "watch error: {e}"
                ))));
            }
            FrameType::Unknown(t) => {
                tracing::warn!(frame_type = %t, "skipping a watch frame of unknown type");
            }
        }
        None
    }

    pub(super) async fn commit(&mut self) -> Result<(), Stopped> {
        self.pipeline
            .commit(&mut self.shutdown)
            .await
            .map_err(|Interrupted| Stopped)
    }

    fn persist(&mut self, committed: &str, last_persist: &mut Instant) {
        *last_persist = Instant::now();
        if let Err(e) = self.resume.save(committed) {
            tracing::warn!(error = %e, "cannot save the resourceVersion; a restart may list again");
        }
        self.pipeline.flush_store(false);
        let stats = self.pipeline.store_stats().to_string();
        self.progress.store(stats, self.pipeline.counters());
    }

    /// Logs the failure (once per cause), shows it in STATUS, and waits out the back-off.
    pub(super) async fn retry_later(
        &mut self,
        backoff: &mut Backoff,
        what: &str,
        problem: &Problem,
    ) -> Result<(), Stopped> {
        // Retrying a refused selection cannot help: stop, and exit with a configuration error.
        if self.api.rejected().is_some() {
            return Err(Stopped);
        }
        let wait = backoff.problem(what, problem);
        self.progress.problem(what, problem);
        sleep_alive(wait, &self.progress, &mut self.shutdown)
            .await
            .map_err(|Interrupted| Stopped)
    }

    /// On the way out: everything queued is written or deliberately left unmarked by now;
    /// save where to resume and push the filters to disk.
    fn finish(&mut self, rv: Option<&str>) {
        if let Some(rv) = rv
            && let Err(e) = self.resume.save(rv)
        {
            tracing::warn!(error = %e, "cannot save the resourceVersion; a restart may list again");
        }
        self.pipeline.flush_store(true);
    }
}

/// A list request running on its own task, so the next page arrives while this one is
/// written. Dropping it cancels the request.
struct PageFetch(tokio::task::JoinHandle<Result<bytes::Bytes, ApiError>>);

impl PageFetch {
    fn start(api: &EventsApi, token: Option<String>) -> PageFetch {
        let api = api.clone();
        PageFetch(tokio::spawn(async move {
            api.list_page(token.as_deref()).await
        }))
    }

    async fn result(&mut self) -> Result<bytes::Bytes, ApiError> {
        match (&mut self.0).await {
            Ok(r) => r,
            Err(e) => Err(ApiError::Body(format!("the list request failed: {e}"))),
        }
    }
}

impl Drop for PageFetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}
