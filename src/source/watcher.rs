//! The watcher: the one owner of the connection to the API server and of what following it
//! has reached, and the steps every stage of following shares (offer a frame, commit a batch,
//! persist, wait out a failure). The stages build on it: `follow` (the loop: list, watch,
//! resume), `watch_list` (the initial sync by streaming list), `paged_list` (the fallback),
//! `watch` (one watch connection) and `doubt` (a version the server may no longer serve).
//!
//! The resourceVersion saved on disk is always one whose events are all written: it advances
//! only after a batch is committed, a paged list's version only after its last page, and a
//! streaming list's (`watch_list`) only at its end bookmark.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use super::api::{EventsApi, WatchBody};
use super::api_error::ApiError;
use crate::backoff::Backoff;
use crate::backoff::Interrupted;
use crate::backoff::sleep_alive;
use crate::metrics::{Dataless, Metrics, Request};
use crate::pipeline::Pipeline;
use crate::service::progress::Progress;
use crate::source::diagnose::Problem;
use crate::source::resume::ResumePoint;
use crate::wire::frame::{self, FrameType};

/// How often the saved resourceVersion and the filters are pushed to disk.
pub(super) const PERSIST_EVERY: Duration = Duration::from_secs(5);
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

/// A streaming list's connection after its end bookmark: it goes on as the live watch.
pub struct Opened {
    pub body: WatchBody,
    /// What was read after the end bookmark.
    pub rest: Bytes,
}

impl Watcher<'_> {
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

    pub(super) fn persist(&mut self, committed: &str, last_persist: &mut Instant) {
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
    pub(super) fn finish(&mut self, rv: Option<&str>) {
        if let Some(rv) = rv
            && let Err(e) = self.resume.save(rv)
        {
            tracing::warn!(error = %e, "cannot save the resourceVersion; a restart may list again");
        }
        self.pipeline.flush_store(true);
    }
}
