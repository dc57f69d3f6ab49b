//! One watch connection: from a version, on a new connection or on the one a streaming list
//! left open, until it ends, goes idle, fails or carries nothing.

use std::time::Instant;

use futures_util::FutureExt;

use super::api::WatchBody;
use super::diagnose::Problem;
use super::doubt::{EMPTY_WITHIN, EmptyAnswers};
use super::watcher::{Opened, PERSIST_EVERY, REQUEST_TIMEOUT, Stopped, WatchEnd, Watcher};
use crate::backoff::{Backoff, HEARTBEAT_EVERY};
use crate::metrics::{Dataless, Request};
use crate::wire::lines::LineBuf;

impl Watcher<'_> {
    /// Watches from `from`, on a new connection or on the one a streaming list left open.
    pub(super) async fn watch_from(
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
                if self.pipeline.batch_full()
                    && self
                        .commit_up_to(&latest, committed, last_persist)
                        .await
                        .is_err()
                {
                    return WatchEnd::Stopped;
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
            if self
                .commit_up_to(&latest, committed, last_persist)
                .await
                .is_err()
            {
                return WatchEnd::Stopped;
            }
            if let Some(e) = end {
                return e;
            }
        }
    }

    /// Writes and marks what is queued; then everything up to `latest` is written, so it
    /// becomes the committed version (saved every few seconds).
    async fn commit_up_to(
        &mut self,
        latest: &str,
        committed: &mut String,
        last_persist: &mut Instant,
    ) -> Result<(), Stopped> {
        self.commit().await?;
        committed.clear();
        committed.push_str(latest);
        self.progress.at(committed, self.pipeline.counters());
        if last_persist.elapsed() >= PERSIST_EVERY {
            self.persist(committed, last_persist);
        }
        Ok(())
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
}
