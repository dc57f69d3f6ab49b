//! The requests the daemon makes (lists, watches, streaming lists, a version check), with raw
//! bodies: kube's typed API would re-serialize the events, and they must be written byte for
//! byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::api_error::ApiError;
use super::query::percent_encode;
use super::selection::{RejectionSlot, Selection};
use crate::source::diagnose::{Contact, Problem};
use crate::wire::frame;

/// Events per list page (the fallback when the server cannot stream lists). A real server
/// spends ~15 ms per page plus ~14 µs per item: the daemon listed 100,000 events in 5.0 s in
/// pages of 500 and 2.4 s in pages of 2000, a plain client in 1.9 s in pages of 5000
/// (benches/pipeline.rs rows 7 and 7b). Pages are held whole, the next one arriving while one
/// is written: 2000 raised the sync's peak from 14.7 to 20.0 MiB; 5000 would save another
/// 0.5 s for some 8 MiB more.
pub const PAGE_LIMIT: u32 = 2000;

#[derive(Clone)]
pub struct EventsApi {
    client: kube::Client,
    /// Where and as whom, to describe failures.
    contact: Arc<Contact>,
    /// `/api/v1/events`, or the namespaced collection.
    collection: String,
    /// The selectors as query parameters (`&fieldSelector=…`), the same on every request.
    selectors: String,
    selection: Selection,
    rejected: RejectionSlot,
}

/// Chunks are gathered into batches of at most this much before they are handed over: the
/// pipeline's own batch size, so one handover makes at most about one write.
const HANDOVER_BYTES: usize = 256 * 1024;

/// A chunk at least this big is handed over as it is rather than copied into a batch: a
/// server sending faster than the daemon reads already fills its chunks.
const PASS_THROUGH_BYTES: usize = 32 * 1024;

/// Batches read but not yet taken by the pipeline; beyond them the reader stops reading and
/// the server is held back by TCP, so memory stays bounded.
const HANDOVER_QUEUE: usize = 4;

/// How long a batch of a live watch may wait for more chunks after the previous handover:
/// none, what is already there is handed over at once. A wait of 2 ms halved the writes at
/// 1,000 events/s but raised the latency's p99 from about 2 to about 6 ms (BENCHMARKS.md,
/// row 8); a live event is written as soon as it is read.
pub const LIVE_BATCH_WAIT: Duration = Duration::ZERO;

/// The same for a streaming list's initial events, before the end bookmark: nobody waits on
/// a single one of them, and a batch then usually fills to [`HANDOVER_BYTES`] first.
pub const SYNC_BATCH_WAIT: Duration = Duration::from_millis(20);

/// An open watch response. Its body is read on a task of its own, which gathers the chunks a
/// real server sends one event at a time into batches and hands them over at most once per
/// batch wait ([`WatchBody::set_batch_wait`]) or per [`HANDOVER_BYTES`]. The pipeline then
/// wakes, writes and marks once per batch, not once per event; the reading task and the HTTP
/// connection's task pass the chunks between them on one worker thread.
pub struct WatchBody {
    batches: mpsc::Receiver<Result<Bytes, ApiError>>,
    batch_wait_us: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
}

impl WatchBody {
    fn spawn(body: Body) -> WatchBody {
        let (tx, batches) = mpsc::channel(HANDOVER_QUEUE);
        let batch_wait_us = Arc::new(AtomicU64::new(micros(LIVE_BATCH_WAIT)));
        let reader = tokio::spawn(read_batches(body, tx, batch_wait_us.clone()));
        WatchBody {
            batches,
            batch_wait_us,
            reader,
        }
    }

    /// The next batch of the body (whole chunks, in order), or None at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        self.batches.recv().await.transpose()
    }

    /// How long a batch may wait for more after the previous handover (the first chunk after
    /// a longer quiet spell is handed over at once).
    pub fn set_batch_wait(&self, wait: Duration) {
        self.batch_wait_us.store(micros(wait), Ordering::Relaxed);
    }
}

impl Drop for WatchBody {
    fn drop(&mut self) {
        // The reader owns the connection: stopping it closes the watch.
        self.reader.abort();
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The next data chunk of a response body, or None at its end.
async fn next_data(body: &mut Body) -> Result<Option<Bytes>, ApiError> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(ApiError::Body(e.to_string())),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data()
                    && !data.is_empty()
                {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// The reading task of a [`WatchBody`]. A batch is handed over when it holds
/// [`HANDOVER_BYTES`], when the batch wait has passed since the previous handover, or at the
/// end of the body; chunks already waiting are always taken first.
async fn read_batches(
    mut body: Body,
    tx: mpsc::Sender<Result<Bytes, ApiError>>,
    batch_wait_us: Arc<AtomicU64>,
) {
    let mut gathered = BytesMut::new();
    let mut handed_over: Option<Instant> = None;
    loop {
        let first = match next_data(&mut body).await {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let now = Instant::now();
        let wait = Duration::from_micros(batch_wait_us.load(Ordering::Relaxed));
        // Counted from the previous handover, not from this chunk: after a quiet spell the
        // first event goes out at once, and a steady trickle is handed over every `wait`.
        let due = handed_over.map(|at| at + wait).filter(|due| *due > now);
        // No timer when nothing is to be waited for: tokio's timers round up to the next
        // millisecond, which would add up to a millisecond to every live event.
        let deadline = due.map(tokio::time::sleep_until);
        tokio::pin!(deadline);
        let mut next = Some(Ok(Some(first)));
        let mut ended = None;
        loop {
            let chunk = match next.take() {
                Some(c) => c,
                None => match deadline.as_mut().as_pin_mut() {
                    Some(deadline) => tokio::select! {
                        biased;
                        c = next_data(&mut body) => c,
                        () = deadline => break,
                    },
                    None => match next_data(&mut body).now_or_never() {
                        Some(c) => c,
                        None => break,
                    },
                },
            };
            match chunk {
                Ok(Some(b)) if b.len() >= PASS_THROUGH_BYTES => {
                    if !gathered.is_empty() && tx.send(Ok(gathered.split().freeze())).await.is_err()
                    {
                        return;
                    }
                    if tx.send(Ok(b)).await.is_err() {
                        return;
                    }
                    handed_over = Some(Instant::now());
                    break;
                }
                Ok(Some(b)) => {
                    if gathered.is_empty() && gathered.capacity() < HANDOVER_BYTES {
                        // Once, rather than doubling its way up; the buffer of an earlier
                        // batch is taken back when the pipeline is done with it.
                        gathered.reserve(HANDOVER_BYTES + PASS_THROUGH_BYTES);
                    }
                    gathered.extend_from_slice(&b);
                    if gathered.len() >= HANDOVER_BYTES {
                        break;
                    }
                }
                Ok(None) => {
                    ended = Some(None);
                    break;
                }
                Err(e) => {
                    ended = Some(Some(e));
                    break;
                }
            }
        }
        if !gathered.is_empty() {
            if tx.send(Ok(gathered.split().freeze())).await.is_err() {
                return;
            }
            handed_over = Some(Instant::now());
        }
        match ended {
            None => {}
            Some(None) => return,
            Some(Some(e)) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

impl EventsApi {
    pub fn new(client: kube::Client, selection: &Selection) -> EventsApi {
        EventsApi {
            client,
            contact: Arc::default(),
            collection: selection.collection(),
            selectors: selection.query(),
            selection: selection.clone(),
            rejected: RejectionSlot::default(),
        }
    }

    /// Failures are described with this server, kubeconfig, context and user.
    pub fn with_contact(self, contact: Contact) -> EventsApi {
        EventsApi {
            contact: Arc::new(contact),
            ..self
        }
    }

    /// The API server's URL, for messages.
    pub fn server(&self) -> &str {
        &self.contact.server
    }

    /// A failed request, described for the operator ([`Contact::diagnose`]).
    pub fn diagnose(&self, error: &ApiError) -> Problem {
        self.contact.diagnose(error)
    }

    /// Set once the server has refused the selection (HTTP 400): retrying cannot help.
    pub fn rejected(&self) -> Option<super::selection::SelectionRejected> {
        self.rejected.get()
    }

    /// The error of a non-success answer; a 400 to the selection is also kept as a rejection.
    fn answer_error(&self, status: StatusCode, body: &[u8]) -> ApiError {
        let e = ApiError::from_status_body(status.as_u16(), body);
        if let Some(r) = self.selection.rejection(&e) {
            self.rejected.set(r);
        }
        e
    }

    /// One page of the event list.
    pub async fn list_page(&self, continue_token: Option<&str>) -> Result<Bytes, ApiError> {
        let mut uri = format!("{}?limit={PAGE_LIMIT}{}", self.collection, self.selectors);
        if let Some(token) = continue_token {
            uri.push_str("&continue=");
            uri.push_str(&percent_encode(token));
        }
        self.get(&uri).await
    }

    /// The cheapest request that needs all that listing needs (a connection, trust in the
    /// server's certificate, valid credentials, permission to list events): one event.
    pub async fn probe(&self) -> Result<(), ApiError> {
        // The same collection and selectors as the list: a namespaced Role must suffice, and a
        // selector the server rejects is found here already.
        let uri = format!("{}?limit=1{}", self.collection, self.selectors);
        self.get(&uri).await.map(drop)
    }

    /// Whether the server still serves `resource_version`: one list of at most one event at
    /// exactly that version. kube-apiserver answers 410 for a compacted version and, after
    /// waiting about 3 s for its cache, 504 `ResourceVersionTooLarge` for one ahead of it.
    pub async fn check_version(&self, resource_version: &str) -> Result<VersionAnswer, ApiError> {
        let uri = format!(
            "{}?limit=1&resourceVersion={}&resourceVersionMatch=Exact{}",
            self.collection,
            percent_encode(resource_version),
            self.selectors
        );
        let (status, bytes) = self.send_whole(&uri).await?;
        if status.is_success() {
            return Ok(VersionAnswer::Served);
        }
        if let Ok(s) = frame::parse_status(&bytes)
            && s.causes.iter().any(|c| c == "ResourceVersionTooLarge")
        {
            let message = s.message.as_deref().unwrap_or_default();
            return Ok(VersionAnswer::Ahead {
                current: current_version(message).map(str::to_owned),
                message: message.to_owned(),
            });
        }
        match self.answer_error(status, &bytes) {
            ApiError::Status {
                code: 410, message, ..
            } => Ok(VersionAnswer::Expired(message)),
            e => Err(e),
        }
    }

    /// A whole response body, or the `Status` of an error answer.
    async fn get(&self, uri: &str) -> Result<Bytes, ApiError> {
        let (status, bytes) = self.send_whole(uri).await?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(self.answer_error(status, &bytes))
        }
    }

    /// A watch of the selected events after `resource_version`, with bookmarks; the server ends
    /// it after `timeout_secs`, and the caller resumes.
    pub async fn watch(
        &self,
        resource_version: &str,
        timeout_secs: u64,
    ) -> Result<WatchBody, ApiError> {
        let uri = format!(
            "{}?watch=1&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={timeout_secs}{}",
            self.collection,
            percent_encode(resource_version),
            self.selectors
        );
        self.open_watch(&uri).await
    }

    async fn open_watch(&self, uri: &str) -> Result<WatchBody, ApiError> {
        let (status, body) = self.send(uri).await?;
        if status.is_success() {
            return Ok(WatchBody::spawn(body));
        }
        let bytes = body
            .collect()
            .await
            .map_err(|e| ApiError::Body(e.to_string()))?
            .to_bytes();
        Err(self.answer_error(status, &bytes))
    }

    /// A streaming list (KEP-3157): every selected event as ADDED, then a BOOKMARK annotated
    /// `k8s.io/initial-events-end`, then live changes on the same connection.
    pub async fn stream_list(&self, timeout_secs: u64) -> Result<WatchBody, ApiError> {
        let uri = format!(
            "{}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion=&timeoutSeconds={timeout_secs}{}",
            self.collection, self.selectors
        );
        self.open_watch(&uri).await
    }

    /// The answer's status and whole body.
    async fn send_whole(&self, uri: &str) -> Result<(StatusCode, Bytes), ApiError> {
        let (status, body) = self.send(uri).await?;
        let bytes = body
            .collect()
            .await
            .map_err(|e| ApiError::Body(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }

    async fn send(&self, uri: &str) -> Result<(StatusCode, Body), ApiError> {
        let request = Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Body::empty())
            .map_err(|e| ApiError::Body(format!("bad request {uri}: {e}")))?;
        let response = self
            .client
            .send(request)
            .await
            .map_err(ApiError::Transport)?;
        let status = response.status();
        Ok((status, response.into_body()))
    }
}

/// What the server says of a saved resourceVersion ([`EventsApi::check_version`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionAnswer {
    Served,
    /// 410: compacted away; the server's message.
    Expired(String),
    /// 504 `ResourceVersionTooLarge`: the version is ahead of the server, whose history
    /// started again. `current` is the server's version, when its message names it.
    Ahead {
        current: Option<String>,
        message: String,
    },
}

/// `206` of "Timeout: Too large resource version: 99999, current: 206".
fn current_version(message: &str) -> Option<&str> {
    let rest = &message[message.rfind("current: ")? + "current: ".len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_current_version_is_read_from_a_too_large_answer() {
        let body = crate::wire::frame::tests::fixture("list-rv-too-large.json");
        let status = frame::parse_status(&body).unwrap();
        assert_eq!(status.causes, ["ResourceVersionTooLarge"]);
        assert_eq!(status.code, Some(504));
        assert_eq!(
            current_version(status.message.as_deref().unwrap()),
            Some("206")
        );
        assert_eq!(current_version("Too large resource version"), None);
        assert_eq!(current_version("current: "), None);
    }
}
