//! Runs the watch as the leader's or a standby's, and starts it again when the role changes:
//! a new leader's watch resumes from the version the Lease records as written (not from this
//! host's own position), and a former leader's from where its marks are complete. Each watch
//! is the ordinary [`Watcher`]; the pipeline's [`Hold`] and the [`Gate`] make the difference.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::elector::{ElectionConfig, Elector, Role};
use super::gate::Gate;
use super::hold::Hold;
use crate::config::Settings;
use crate::metrics::{self, Metrics};
use crate::pipeline::Pipeline;
use crate::service::progress::Progress;
use crate::source::api::EventsApi;
use crate::source::resume::ResumePoint;
use crate::source::selection::{Selection, SelectionRejected};
use crate::source::watcher::Watcher;

/// How long the shutdown waits for the Lease to be released.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// What the supervisor follows events with: the client for the Lease, the events API, the
/// selection its resume points belong to and the metrics its watches report to.
pub struct Source {
    pub client: kube::Client,
    pub api: EventsApi,
    pub selection: Selection,
    pub metrics: Metrics,
}

/// Follows events under leader election until `shutdown`, then releases the Lease if held.
/// Err when the server refused the selection (a configuration error).
pub async fn run(
    settings: &Settings,
    source: Source,
    pipeline: &mut Pipeline,
    progress: Progress,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SelectionRejected> {
    let gate = Gate::new();
    pipeline.follow(Hold::new(gate.clone()));
    let (role_tx, role_rx) = watch::channel(Role::Unknown);
    let (release_tx, release_rx) = watch::channel(false);
    let cfg = ElectionConfig::from_settings(settings);
    tracing::info!(
        lease = %format!("{}/{}", cfg.namespace, cfg.name),
        identity = %cfg.identity,
        "leader election on: only the holder of the Lease writes events"
    );
    let Source {
        client,
        api,
        selection,
        metrics,
    } = source;
    let elector = Elector::new(client, cfg, gate.clone(), role_tx, progress.clone());
    let elector = tokio::spawn(elector.run(release_rx));
    let mut supervisor = Supervisor {
        settings,
        api,
        selection,
        rejected: None,
        metrics,
        gate,
        role: role_rx,
        shutdown,
        progress,
    };
    supervisor.follow(pipeline).await;
    // The last batch is written by now: record it and hand the Lease over.
    let _ = release_tx.send(true);
    if tokio::time::timeout(RELEASE_WAIT, elector).await.is_err() {
        tracing::warn!("the Lease was not released in time; a standby takes over once it expires");
    }
    supervisor.rejected.map_or(Ok(()), Err)
}

struct Supervisor<'a> {
    settings: &'a Settings,
    api: EventsApi,
    selection: Selection,
    /// Set when the server refused the selection; the daemon then stops.
    rejected: Option<SelectionRejected>,
    metrics: Metrics,
    gate: Arc<Gate>,
    role: watch::Receiver<Role>,
    shutdown: watch::Receiver<bool>,
    progress: Progress,
}

impl Supervisor<'_> {
    async fn follow(&mut self, pipeline: &mut Pipeline) {
        if !self.first_decision().await {
            return;
        }
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let role = self.role.borrow_and_update().clone();
            let term = match role {
                Role::Leading { term, from } => {
                    self.metrics.set_role(metrics::Role::Leader);
                    self.take_over(pipeline, from.as_deref());
                    Some(term)
                }
                Role::Standby | Role::Unknown => {
                    self.metrics.set_role(metrics::Role::Standby);
                    None
                }
            };
            if !self.session(pipeline, term).await {
                return;
            }
        }
    }

    /// Waits until the elector has looked at the Lease once, alive for the watchdog meanwhile.
    async fn first_decision(&mut self) -> bool {
        loop {
            if *self.role.borrow() != Role::Unknown {
                return true;
            }
            self.progress.beat();
            tokio::select! {
                r = self.role.changed() => if r.is_err() { return false },
                _ = self.shutdown.changed() => return false,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Prepares the leader's watch: what the old leader recorded is marked, the watch resumes
    /// from its recorded version, and only then may batches be written.
    fn take_over(&mut self, pipeline: &mut Pipeline, from: Option<&str>) {
        let forgotten = pipeline.take_over();
        if forgotten > 0 {
            tracing::debug!(
                events = forgotten,
                "held events the old leader did not record; the watch brings them again"
            );
        }
        if let Some(rv) = from {
            let mut resume =
                ResumePoint::new(&self.settings.persistence_path.value, &self.selection);
            if let Err(e) = resume.save(rv) {
                tracing::warn!(error = %e, "cannot save the resourceVersion to resume from");
            }
        }
        // Until the new watch reports, the version recorded in the Lease stays what it was.
        self.progress
            .at(from.unwrap_or_default(), pipeline.counters());
        self.gate.start_leading();
    }

    /// One watch, as the leader of `term` or as a standby (None), until shutdown or a change
    /// of role. False when the daemon is to stop.
    async fn session(&mut self, pipeline: &mut Pipeline, term: Option<u64>) -> bool {
        let (stop_tx, stop_rx) = watch::channel(false);
        let resume = ResumePoint::new(&self.settings.persistence_path.value, &self.selection)
            .limited_by(self.gate.clone());
        let watcher = Watcher {
            api: self.api.clone(),
            pipeline,
            resume,
            shutdown: stop_rx,
            idle_timeout: self.settings.watch_idle_timeout.value,
            progress: self.progress.clone(),
            metrics: self.metrics.clone(),
        };
        let run = watcher.run();
        tokio::pin!(run);
        let mut go_on = true;
        let mut stopping = false;
        loop {
            tokio::select! {
                followed = &mut run => {
                    if let Err(rejected) = followed {
                        self.rejected = Some(rejected);
                        return false;
                    }
                    return go_on;
                }
                _ = self.shutdown.changed(), if !stopping => {
                    go_on = false;
                    stopping = true;
                    let _ = stop_tx.send(true);
                }
                r = self.role.changed(), if !stopping => {
                    let now = match &*self.role.borrow_and_update() {
                        Role::Leading { term, .. } => Some(*term),
                        _ => None,
                    };
                    if r.is_err() {
                        tracing::error!("leader election stopped unexpectedly; exiting");
                        go_on = false;
                    }
                    if r.is_err() || now != term {
                        stopping = true;
                        let _ = stop_tx.send(true);
                    }
                }
            }
        }
    }
}
