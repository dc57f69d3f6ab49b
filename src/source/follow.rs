//! The loop that follows the cluster's events: list (or resume from the saved version, once
//! it is known to be served), watch, and resume or list again as the watch ends.

use std::time::{Duration, Instant};

use super::doubt::{Checked, Doubt, EmptyAnswers, RELIST_AFTER_EMPTY};
use super::selection::SelectionRejected;
use super::watch_list::{InitialSync, Synced};
use super::watcher::{Stopped, WatchEnd, Watcher};
use crate::backoff::Backoff;
use crate::metrics::{Dataless, RelistCause};

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
}
