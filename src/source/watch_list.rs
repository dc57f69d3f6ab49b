//! The initial sync by streaming list (KEP-3157, "WatchList"): one watch with
//! `sendInitialEvents=true` delivers every selected event as ADDED, then a BOOKMARK annotated
//! `k8s.io/initial-events-end`, then live changes on the same connection. No pages, no second
//! request, and far less work for the API server than paging.
//!
//! The initial events come in namespace/name order, not by resourceVersion, so nothing is saved
//! as a resume point before the end bookmark; its version is saved once everything before it
//! is written, and READY follows. A server that refuses the request (HTTP 422: the WatchList
//! gate is off, or the server predates it), or sends no end bookmark in time, gets paged lists
//! for the rest of the process.

use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;

use super::api::{LIVE_BATCH_WAIT, SYNC_BATCH_WAIT, WatchBody};
use super::api_error::ApiError;
use super::diagnose::Problem;
use super::doubt::EmptyAnswers;
use super::watcher::{Opened, REQUEST_TIMEOUT, Stopped, WatchEnd, Watcher};
use crate::backoff::Backoff;
use crate::backoff::HEARTBEAT_EVERY;
use crate::metrics::Request;
use crate::wire::bookmark;
use crate::wire::frame::{self, FrameType};
use crate::wire::lines::LineBuf;

/// How long a streaming list may take to send its end bookmark (or the watch idle bound, if
/// that is shorter). The real server streamed 100,000 events (119 MB) in 2.1 s, so this covers
/// some three million events, more than an etcd holding events at the default quota has room
/// for; a server still without a bookmark then does not send one (or is stuck), and paging
/// gets everything all the same.
pub const END_BOOKMARK_BOUND: Duration = Duration::from_secs(60);

/// Whether streaming lists are still worth trying; remembered for the process.
#[derive(Debug, Default)]
pub struct InitialSync {
    paged: bool,
}

/// How an initial sync went.
pub(super) enum Synced {
    /// Everything is written up to this version; a streaming list's connection goes on.
    At(String, Option<Opened>),
    /// A failure, already waited out.
    Retry,
    /// The streaming list was answered with an empty body (not yet waited out).
    Empty,
}

enum Streamed {
    Synced(String, Opened),
    /// HTTP 422, with the server's message.
    Unsupported(String),
    NoEndBookmark,
    /// A failure, already waited out.
    Retry,
    /// 200 and a body that ended without a byte.
    Empty,
}

/// What ends the initial events.
enum InitialEnd {
    Bookmark(String),
    Watch(WatchEnd),
}

impl Watcher<'_> {
    /// Lists every selected event: by streaming list while the server offers one, else in
    /// pages. Returns the version to watch from, with the streaming list's open connection.
    pub(super) async fn initial_sync(
        &mut self,
        sync: &mut InitialSync,
        backoff: &mut Backoff,
        empties: &mut EmptyAnswers,
    ) -> Result<Synced, Stopped> {
        if !sync.paged {
            match self.stream_list(backoff, empties).await? {
                Streamed::Synced(rv, opened) => return Ok(Synced::At(rv, Some(opened))),
                Streamed::Retry => return Ok(Synced::Retry),
                Streamed::Empty => return Ok(Synced::Empty),
                Streamed::Unsupported(cause) => {
                    tracing::info!(
                        error = %cause,
                        "the API server does not offer streaming lists; listing in pages from now on"
                    );
                }
                Streamed::NoEndBookmark => {
                    tracing::info!(
                        "the streaming list sent no end bookmark within {}s; listing in pages from now on",
                        self.end_bookmark_bound().as_secs()
                    );
                }
            }
            sync.paged = true;
        }
        Ok(match self.list_all(backoff).await? {
            Some(rv) => Synced::At(rv, None),
            None => Synced::Retry,
        })
    }

    fn end_bookmark_bound(&self) -> Duration {
        END_BOOKMARK_BOUND.min(self.idle_timeout)
    }

    async fn stream_list(
        &mut self,
        backoff: &mut Backoff,
        empties: &mut EmptyAnswers,
    ) -> Result<Streamed, Stopped> {
        self.progress.listing();
        // As for any watch: the server ends it a little after our own idle bound.
        let timeout = self.idle_timeout.as_secs() + 30;
        let opened = tokio::select! {
            w = tokio::time::timeout(REQUEST_TIMEOUT, self.api.stream_list(timeout)) => w,
            _ = self.shutdown.changed() => return Err(Stopped),
        };
        self.metrics.answer(Request::Watch, &opened);
        let mut body = match opened {
            Ok(Ok(b)) => b,
            Ok(Err(e)) if e.is_invalid() => return Ok(Streamed::Unsupported(e.to_string())),
            Ok(Err(e)) => {
                let problem = self.api.diagnose(&e);
                return self.stream_failed(backoff, &problem).await;
            }
            Err(_) => {
                let secs = REQUEST_TIMEOUT.as_secs();
                let cause = format!("no answer to a streaming list request within {secs}s");
                return self
                    .stream_failed(backoff, &Problem::transient(cause))
                    .await;
            }
        };
        tracing::debug!("streaming list established");
        // Until the end bookmark nobody waits on a single event: batches may gather longer.
        body.set_batch_wait(SYNC_BATCH_WAIT);
        self.pipeline.list_started();
        // Counted from the answer: a server slow to answer is the request timeout's business.
        let deadline = tokio::time::Instant::now() + self.end_bookmark_bound();
        let mut buf = LineBuf::new();
        // Initial events carry versions in no useful order; they are read and dropped.
        let mut scratch = String::new();
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        let mut ready: Option<Result<Option<Bytes>, ApiError>> = None;
        let mut got_data = false;
        loop {
            let chunk = match ready.take() {
                Some(c) => Some(c),
                None => tokio::select! {
                    c = tokio::time::timeout_at(deadline, body.chunk()) => c.ok(),
                    _ = self.shutdown.changed() => return Err(Stopped),
                    _ = tick.tick() => {
                        self.progress.beat();
                        continue;
                    }
                },
            };
            let bytes = match chunk {
                None => {
                    self.commit().await?;
                    return Ok(Streamed::NoEndBookmark);
                }
                Some(Err(e)) => {
                    self.metrics.api_error(Request::Watch, &e);
                    let problem = self.api.diagnose(&e);
                    return self.stream_failed(backoff, &problem).await;
                }
                Some(Ok(None)) if !got_data => return Ok(Streamed::Empty),
                Some(Ok(None)) => {
                    let cause = "the streaming list ended before its end bookmark";
                    return self
                        .stream_failed(backoff, &Problem::transient(cause))
                        .await;
                }
                Some(Ok(Some(b))) => {
                    self.metrics.api_message();
                    b
                }
            };
            if !got_data {
                got_data = true;
                self.data_again(empties, backoff);
            }
            let mut lines = buf.start(&bytes);
            let mut end = None;
            while let Some(line) = lines.next_line() {
                if let Some(e) = self.initial_frame(line, &mut scratch) {
                    end = Some(e);
                    break;
                }
                if self.pipeline.batch_full() {
                    self.commit().await?;
                    self.progress.beat();
                }
            }
            match end {
                Some(InitialEnd::Bookmark(rv)) => {
                    let rest = Bytes::copy_from_slice(lines.rest());
                    return self.synced(rv, body, rest, backoff).await;
                }
                Some(InitialEnd::Watch(WatchEnd::Stopped)) => return Err(Stopped),
                Some(InitialEnd::Watch(WatchEnd::Failed(problem))) => {
                    return self.stream_failed(backoff, &problem).await;
                }
                Some(InitialEnd::Watch(_)) => {
                    let cause = "the streaming list expired (410) before its end bookmark";
                    return self
                        .stream_failed(backoff, &Problem::transient(cause))
                        .await;
                }
                None => {}
            }
            let stop = lines.stop();
            buf.finish(&bytes, stop);
            // As in the watch: take chunks already waiting before writing, so a write carries a
            // full batch; write as soon as nothing is waiting.
            if let Some(next) = body.chunk().now_or_never() {
                let more = matches!(next, Ok(Some(_)));
                ready = Some(next);
                if more {
                    continue;
                }
            }
            self.commit().await?;
        }
    }

    /// One frame of the initial events: offered like a watch frame, except that versions are
    /// not taken as progress; the end bookmark ends them.
    fn initial_frame(&mut self, line: &[u8], scratch: &mut String) -> Option<InitialEnd> {
        // The initial events are the list: offered as listed events, so that a migration from
        // the Python tool consults its files for them (they never are for watched changes).
        if let Some((_, object)) = frame::split_common_frame(line)
            && self
                .pipeline
                .offer_unchecked_initial_object(object, scratch)
                .is_some()
        {
            return None;
        }
        if let Ok(f) = frame::parse_watch_frame(line)
            && f.frame_type == FrameType::Added
        {
            self.pipeline.offer_initial_object(f.object, scratch);
            return None;
        }
        if let Ok(f) = frame::parse_watch_frame(line)
            && f.frame_type == FrameType::Bookmark
        {
            return match bookmark::initial_events_end(f.object) {
                Ok(Some(rv)) => Some(InitialEnd::Bookmark(rv.into_owned())),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable bookmark");
                    None
                }
            };
        }
        self.handle_frame(line, scratch).map(InitialEnd::Watch)
    }

    /// Everything before the end bookmark is written: its version becomes the resume point.
    async fn synced(
        &mut self,
        rv: String,
        body: WatchBody,
        rest: Bytes,
        backoff: &mut Backoff,
    ) -> Result<Streamed, Stopped> {
        body.set_batch_wait(LIVE_BATCH_WAIT);
        self.commit().await?;
        self.pipeline.list_finished();
        backoff.success("listing events");
        if let Err(e) = self.resume.save(&rv) {
            tracing::warn!(error = %e, "cannot save the resourceVersion; a restart may list again");
        }
        let c = self.pipeline.counters();
        tracing::info!(resource_version = %rv, written = c.written, skipped = c.skipped, "listed all events by streaming list; watching from here");
        self.progress
            .store(self.pipeline.store_stats().to_string(), c);
        self.progress.listed(&rv);
        Ok(Streamed::Synced(rv, Opened { body, rest }))
    }

    /// The events received so far are written (the store keeps them out of the next try);
    /// then the back-off is waited out.
    async fn stream_failed(
        &mut self,
        backoff: &mut Backoff,
        problem: &Problem,
    ) -> Result<Streamed, Stopped> {
        self.commit().await?;
        self.retry_later(backoff, "listing events", problem).await?;
        Ok(Streamed::Retry)
    }
}
