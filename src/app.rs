//! Runs the daemon with checked settings: load the kubeconfig, make first contact with the API
//! server on a first start, open the destination and the store, then follow events until a
//! stop signal.

use std::time::SystemTime;

use crate::config::Settings;
use crate::dedup::{Store, StoreConfig};
use crate::metrics::{Metrics, server as metrics_server};
use crate::pipeline::Pipeline;
use crate::service::exit::Fatal;
use crate::service::instance_lock::InstanceLock;
use crate::service::progress::Progress;
use crate::service::{signals, systemd};
use crate::sink::Sink;
use crate::source::resume::ResumePoint;
use crate::source::selection::Selection;
use crate::source::{api::EventsApi, connect, first_contact, replay, watcher::Watcher};

pub fn run(settings: Settings) -> Result<(), Fatal> {
    crate::service::allocator::tune();
    // One worker: it receives (the HTTP connection and the watch body's reader pass chunks
    // between them on it), the main thread dedups and writes. A second worker cost a wake-up
    // through the I/O driver's eventfd for about every 17 events at a real server's pace
    // (strace of a 20,000-event sync: 1,189 eventfd writes with two workers, 22 with one),
    // and gained nothing at socket speed (BENCHMARKS.md, rows 1 and 6).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Fatal::failure(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_async(settings))
}

async fn run_async(settings: Settings) -> Result<(), Fatal> {
    let metrics = Metrics::new();
    let signals = signals::install()
        .map_err(|e| Fatal::failure(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    let mut shutdown = signals.shutdown.clone();
    // Before anything else: a second daemon on the same state directory must leave it, and
    // everything else, as it found it.
    let state = &settings.persistence_path;
    let mut lock = InstanceLock::take(&state.value, &state.origin, false).map_err(Fatal::config)?;

    if let Some(path) = &settings.replay {
        lock_state(&mut lock, &settings)?;
        let mut pipeline = open_pipeline(&settings, &signals, &metrics)?;
        let result = replay::run(path, &mut pipeline, &mut shutdown).await;
        pipeline.flush_store(true);
        return result.map_err(Fatal::config);
    }

    // Until leader election decides, this instance writes nothing: it is no leader.
    if settings.leader_election.value {
        metrics.set_role(crate::metrics::Role::Electing);
    }
    // Bound before connecting: a taken address is the operator's to fix, and fails at once
    // with exit status 2 (the port is not a file: nothing is left behind).
    let listener = match settings.metrics_address.value {
        Some(addr) => Some(
            metrics_server::bind(addr, &settings.metrics_address.origin).map_err(Fatal::config)?,
        ),
        None => None,
    };
    // Nothing is created on disk before the kubeconfig has loaded: a start that fails here
    // leaves no file behind. Start-up problems the operator must fix are reported before
    // anything is fetched, so a misconfigured unit fails at once with exit status 2.
    crate::service::permissions::warn_about_readable_files(&settings);
    let connection = connect::connect(&settings).await.map_err(Fatal::config)?;
    let selection = Selection::from_settings(&settings);
    // Where it connects and as whom, for the start-up line: in a container this tells a
    // mounted kubeconfig from the pod's ServiceAccount.
    let (server, credentials) = (
        connection.contact.server.clone(),
        connection.contact.identity(),
    );
    let api =
        EventsApi::new(connection.client.clone(), &selection).with_contact(connection.contact);
    let progress = Progress::default();
    let notifier = tokio::spawn(systemd::notifier(progress.clone(), shutdown.clone()));
    if let Some(listener) = listener {
        tokio::spawn(metrics_server::serve(
            listener,
            metrics.clone(),
            progress.clone(),
            systemd::liveness_bound(),
            shutdown.clone(),
        ));
    }
    if first_contact::is_first_start(&settings.persistence_path.value)
        && first_contact::wait_for_api(&api, &progress, &mut shutdown)
            .await
            .is_err()
    {
        stop_notifier(notifier).await;
        tracing::info!("stopped before the API server answered; nothing was written");
        return Ok(());
    }
    // The first-contact request carries the selectors: one the server refuses is the
    // operator's to fix (exit 2), and nothing has been created on disk yet.
    if let Some(rejected) = api.rejected() {
        stop_notifier(notifier).await;
        return Err(Fatal::config(rejected));
    }

    if let Err(e) = lock_state(&mut lock, &settings) {
        stop_notifier(notifier).await;
        return Err(e);
    }
    let mut pipeline = open_pipeline(&settings, &signals, &metrics)?;
    pipeline.set_progress(progress.clone());
    tracing::info!(destination = %pipeline.destination(), selection = %selection.describe(), server = %server, credentials = %credentials, "kube-event-pipe started");
    progress.store(pipeline.store_stats().to_string(), pipeline.counters());
    let followed = if settings.leader_election.value {
        let source = crate::leader::Source {
            client: connection.client,
            api,
            selection,
            metrics,
        };
        crate::leader::run(&settings, source, &mut pipeline, progress, shutdown).await
    } else {
        Watcher {
            api,
            pipeline: &mut pipeline,
            resume: ResumePoint::new(&settings.persistence_path.value, &selection),
            shutdown,
            idle_timeout: settings.watch_idle_timeout.value,
            progress,
            metrics,
        }
        .run()
        .await
    };
    stop_notifier(notifier).await;
    let c = pipeline.counters();
    tracing::info!(
        written = c.written,
        skipped = c.skipped,
        malformed = c.malformed,
        "stopped"
    );
    followed.map_err(Fatal::config)
}

/// On a first start the state directory is created only now, and locked once it is.
fn lock_state(lock: &mut Option<InstanceLock>, settings: &Settings) -> Result<(), Fatal> {
    if lock.is_none() {
        let state = &settings.persistence_path;
        *lock = InstanceLock::take(&state.value, &state.origin, true).map_err(Fatal::config)?;
    }
    Ok(())
}

/// Opens the destination and the dedup store (creating them when missing), and marks what a
/// killed run wrote.
fn open_pipeline(
    settings: &Settings,
    signals: &signals::Signals,
    metrics: &Metrics,
) -> Result<Pipeline, Fatal> {
    let sink = Sink::open(settings.destination.value.clone(), signals.reopen.clone())
        .map_err(Fatal::config)?;
    let store = Store::open(store_config(settings), SystemTime::now()).map_err(Fatal::config)?;
    let mut pipeline = Pipeline::new(store, sink);
    pipeline.set_metrics(metrics.clone());
    pipeline.mark_recent_lines();
    Ok(pipeline)
}

/// The notifier sent STOPPING=1 as soon as the shutdown began; give it a moment to finish.
async fn stop_notifier(notifier: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(std::time::Duration::from_secs(1), notifier)
        .await
        .is_err()
    {
        tracing::debug!("the systemd notifier did not finish in time");
    }
}

fn store_config(settings: &Settings) -> StoreConfig {
    StoreConfig {
        dir: settings.persistence_path.value.clone(),
        capacity: settings.filter_capacity.value,
        error_rate: settings.filter_error_rate.value,
        batch_count: settings.batch_count.value,
        batch_duration: settings.batch_duration.value,
        max_bytes: settings.filter_max_bytes.value,
    }
}
