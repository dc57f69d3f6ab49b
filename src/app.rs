//! Runs the daemon with checked settings: open the destination and the store, connect, then
//! follow events until a stop signal.

use std::time::SystemTime;

use crate::config::Settings;
use crate::dedup::{Store, StoreConfig};
use crate::pipeline::Pipeline;
use crate::service::exit::Fatal;
use crate::service::progress::Progress;
use crate::service::{signals, systemd};
use crate::sink::Sink;
use crate::source::resume::ResumePoint;
use crate::source::selection::Selection;
use crate::source::{api::EventsApi, connect, replay, watcher::Watcher};

pub fn run(settings: Settings) -> Result<(), Fatal> {
    crate::service::allocator::tune();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Fatal::failure(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_async(settings))
}

async fn run_async(settings: Settings) -> Result<(), Fatal> {
    let signals = signals::install()
        .map_err(|e| Fatal::failure(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    let mut shutdown = signals.shutdown.clone();

    // Start-up problems the operator must fix are reported before anything is fetched, so a
    // misconfigured unit fails at once with exit status 2.
    let sink = Sink::open(settings.destination.value.clone(), signals.reopen.clone())
        .map_err(Fatal::config)?;
    let store = Store::open(store_config(&settings), SystemTime::now()).map_err(Fatal::config)?;
    let mut pipeline = Pipeline::new(store, sink);
    pipeline.mark_recent_lines();

    if let Some(path) = &settings.replay {
        let result = replay::run(path, &mut pipeline, &mut shutdown).await;
        pipeline.flush_store(true);
        return result.map_err(Fatal::config);
    }

    crate::service::permissions::warn_about_readable_files(&settings);
    let client = connect::client(&settings).await.map_err(Fatal::config)?;
    let selection = Selection::from_settings(&settings);
    tracing::info!(destination = %pipeline.destination(), selection = %selection.describe(), "kube-event-pipe started");
    let progress = Progress::default();
    progress.store(pipeline.store_stats().to_string(), pipeline.counters());
    let notifier = tokio::spawn(systemd::notifier(progress.clone(), shutdown.clone()));
    let followed = Watcher {
        api: EventsApi::new(client, &selection),
        pipeline: &mut pipeline,
        resume: ResumePoint::new(&settings.persistence_path.value, &selection),
        shutdown,
        idle_timeout: settings.watch_idle_timeout.value,
        progress,
    }
    .run()
    .await;
    // The notifier sent STOPPING=1 as soon as the shutdown began; give it a moment to finish.
    if tokio::time::timeout(std::time::Duration::from_secs(1), notifier)
        .await
        .is_err()
    {
        tracing::debug!("the systemd notifier did not finish in time");
    }
    let c = pipeline.counters();
    tracing::info!(
        written = c.written,
        skipped = c.skipped,
        malformed = c.malformed,
        "stopped"
    );
    followed.map_err(Fatal::config)
}

fn store_config(settings: &Settings) -> StoreConfig {
    StoreConfig {
        dir: settings.persistence_path.value.clone(),
        capacity: settings.filter_capacity.value,
        error_rate: settings.filter_error_rate.value,
        batch_count: settings.batch_count.value,
        batch_duration: settings.batch_duration.value,
    }
}
