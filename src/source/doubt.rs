//! When the saved resourceVersion may no longer be served, and what follows.
//!
//! A watch from a version the server cannot serve does not always say so. kube-apiserver
//! answers a watch from a version ahead of it (its history started again: an etcd restore, a
//! rebuilt control plane) with 200 and then nothing at all until `timeoutSeconds`; some front
//! ends answer a watch from an expired version 200 with an empty body instead of the in-stream
//! 410. Resuming after each such end would write nothing, for ever. So:
//!
//! - a watch or streaming list that carries no frame at all is not progress: an *empty* one
//!   (ended within [`EMPTY_WITHIN`] of its 200) backs off like a failure, a *silent* one (no
//!   byte for longer, up to the idle bound) has waited long enough already;
//! - the version is checked with one `limit=1` list at exactly that version whenever there is
//!   reason to doubt it: at a restart, after a failed watch, and after each dataless watch. 410 means expired,
//!   `ResourceVersionTooLarge` that the cluster's history started again; both lead to a
//!   re-list, which the dedup store keeps from writing anything twice;
//! - [`RELIST_AFTER_EMPTY`] empty watches in a row from one version take it as expired even
//!   when the check cannot tell;
//! - from [`STUCK_AFTER_EMPTY`] empty answers in a row (the re-list's included) the server is
//!   taken as broken: one ERROR line, not ready, one attempt per 30 s, until data comes again.

use std::time::Duration;

use super::api::VersionAnswer;
use super::diagnose::{Problem, Severity};
use super::watcher::{Stopped, Watcher};
use crate::backoff::Backoff;
use crate::metrics::{Dataless, RelistCause, Request};

/// A dataless watch that the server ended sooner than this after its 200 is *empty*: a front
/// end's answer. One that lasted longer is *silent*: a load balancer's idle cut, the server's
/// `timeoutSeconds` on a quiet cluster, or a version ahead of the server.
pub const EMPTY_WITHIN: Duration = Duration::from_secs(10);

/// Empty watches from one version, in a row, after which it is taken as expired.
pub const RELIST_AFTER_EMPTY: u32 = 3;

/// Empty answers in a row (watches and streaming lists) after which the server is taken as
/// broken rather than passing trouble: the re-list after [`RELIST_AFTER_EMPTY`] did not help.
pub const STUCK_AFTER_EMPTY: u32 = RELIST_AFTER_EMPTY + 1;

/// Why the saved version is in doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Doubt {
    /// Saved by an earlier run: the server may have moved on, or started over, meanwhile.
    Restart,
    /// The watch failed or broke off: the server may have restarted on other history (a
    /// restored etcd), which a watch would only meet with silence.
    Failure,
    /// Watches from it ended without a frame: this many empty ones in a row (0 for silent).
    Dataless(Dataless, u32),
}

/// What to do after a check.
pub(super) enum Checked {
    /// The version is served: watch from it.
    Watch,
    /// The version is gone for good: list everything again.
    Relist,
    /// The check failed; the back-off was waited out. Check again.
    Retry,
}

/// Empty answers since the API server last sent data.
#[derive(Debug, Default)]
pub(super) struct EmptyAnswers {
    in_a_row: u32,
}

impl EmptyAnswers {
    pub(super) fn in_a_row(&self) -> u32 {
        self.in_a_row
    }
}

impl Watcher<'_> {
    /// Asks the server whether `rv` is still served.
    pub(super) async fn check_version(
        &mut self,
        rv: &str,
        doubt: Doubt,
        backoff: &mut Backoff,
    ) -> Result<Checked, Stopped> {
        let answer = tokio::select! {
            a = tokio::time::timeout(super::watcher::REQUEST_TIMEOUT, self.api.check_version(rv)) => a,
            _ = self.shutdown.changed() => return Err(Stopped),
        };
        self.metrics.answer(Request::VersionCheck, &answer);
        let answer = match answer {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                let problem = self.api.diagnose(&e);
                self.retry_later(backoff, "checking the saved resourceVersion", &problem)
                    .await?;
                return Ok(Checked::Retry);
            }
            Err(_) => {
                let secs = super::watcher::REQUEST_TIMEOUT.as_secs();
                let problem = Problem::transient(format!(
                    "no answer within {secs}s to a list at resourceVersion {rv}"
                ));
                self.retry_later(backoff, "checking the saved resourceVersion", &problem)
                    .await?;
                return Ok(Checked::Retry);
            }
        };
        let server = self.api.server().to_owned();
        match answer {
            VersionAnswer::Served => {
                tracing::debug!(resource_version = rv, ?doubt, "the version is still served");
                Ok(Checked::Watch)
            }
            VersionAnswer::Expired(said) => {
                match doubt {
                    Doubt::Restart | Doubt::Failure => tracing::info!(
                        "the {} resourceVersion {rv} has expired on the API server {server} \
                         (a list at it answered 410: {said}); listing all events again",
                        if doubt == Doubt::Restart {
                            "saved"
                        } else {
                            "resumed"
                        }
                    ),
                    Doubt::Dataless(kind, _) => tracing::warn!(
                        "the API server {server} answered the watch from resourceVersion {rv} \
                         {}, and a list at that version with 410 ({said}): taking the version as \
                         expired; listing all events again",
                        describe(kind)
                    ),
                }
                self.forget_version(RelistCause::Expired);
                Ok(Checked::Relist)
            }
            VersionAnswer::Ahead { current, message } => {
                let current = current.map_or_else(|| message.clone(), |c| format!("current {c}"));
                tracing::warn!(
                    "resourceVersion {rv} is ahead of the API server {server} ({current}): its \
                     history started again (an etcd restore, or a rebuilt control plane?); \
                     listing all events again"
                );
                self.forget_version(RelistCause::Ahead);
                Ok(Checked::Relist)
            }
        }
    }

    /// [`RELIST_AFTER_EMPTY`] empty watches from `rv` and the check could not tell: taken as
    /// expired all the same. A re-list costs the server a list; staying on the version could
    /// cost every event from now on.
    pub(super) fn give_up_version(&mut self, rv: &str, empty: u32) {
        tracing::warn!(
            "the API server {} answered {empty} watches from resourceVersion {rv} with an empty \
             body; taking the version as expired and listing all events again",
            self.api.server()
        );
        self.forget_version(RelistCause::EmptyWatches);
    }

    fn forget_version(&mut self, cause: RelistCause) {
        if let Err(e) = self.resume.clear() {
            tracing::warn!(error = %e, "cannot remove the saved resourceVersion file");
        }
        self.metrics.relist(cause);
    }

    /// A watch (`what`: "the watch from resourceVersion N") or a streaming list ended without
    /// a frame: counted, shown, and for an empty one the back-off waited out.
    pub(super) async fn dataless(
        &mut self,
        kind: Dataless,
        what: &str,
        empties: &mut EmptyAnswers,
        backoff: &mut Backoff,
    ) -> Result<(), Stopped> {
        if kind == Dataless::Silent {
            self.metrics.dataless(kind, empties.in_a_row);
            tracing::debug!(
                idle_secs = self.idle_timeout.as_secs(),
                "{what} carried nothing, not even a bookmark; checking the version"
            );
            return Ok(());
        }
        empties.in_a_row += 1;
        let n = empties.in_a_row;
        self.metrics.dataless(kind, n);
        let server = self.api.server().to_owned();
        let problem = if n >= STUCK_AFTER_EMPTY {
            Problem {
                severity: Severity::NeedsPerson,
                // The same words each time: the back-off logs a cause once.
                text: format!(
                    "the API server {server} keeps answering every watch with an empty body, a \
                     re-list's too; a proxy or load balancer in front of it may be cutting \
                     watches short"
                ),
                waiting_for: format!(
                    "watches with data: {server} answered {n} in a row with an empty body"
                ),
            }
        } else {
            Problem::transient(format!(
                "the API server {server} answered {what} with an empty body"
            ))
        };
        self.retry_later(backoff, "watching events", &problem).await
    }

    /// Data came: the empty answers, if any, are over. True if there were some.
    pub(super) fn data_again(&mut self, empties: &mut EmptyAnswers, backoff: &mut Backoff) -> bool {
        if empties.in_a_row == 0 {
            return false;
        }
        empties.in_a_row = 0;
        self.metrics.set_empty_in_a_row(0);
        backoff.success("watching events");
        true
    }
}

fn describe(kind: Dataless) -> &'static str {
    match kind {
        Dataless::Empty => "with an empty body",
        Dataless::Silent => "with nothing at all",
    }
}
