//! systemd's notification protocol: READY=1 once the first list (or the resumed watch) is in,
//! STATUS= every few seconds, WATCHDOG=1 while the watch loop is alive, STOPPING=1 on the way
//! out. Without NOTIFY_SOCKET every message is a no-op.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::sync::watch;

use crate::service::progress::Progress;

/// STATUS= is refreshed at most this often, not per event.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Runs until shutdown starts, then sends STOPPING=1.
pub async fn notifier(progress: Progress, mut shutdown: watch::Receiver<bool>) {
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(w) = watchdog {
        tracing::info!(
            interval_ms = w.as_millis() as u64,
            "systemd watchdog enabled"
        );
    }
    // Wake often enough to keep the watchdog fed at half its interval.
    let tick = watchdog.map_or(Duration::from_secs(1), |w| {
        (w / 4).min(Duration::from_secs(1))
    });
    let mut ready_sent = false;
    let mut last_status: Option<(Instant, String)> = None;
    let mut last_keepalive = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => break,
        }
        let snap = progress.snapshot();
        let line = snap.status_line();
        if snap.ready && !ready_sent {
            send(&[NotifyState::Ready, NotifyState::Status(&line)]);
            tracing::info!(status = %line, "ready");
            ready_sent = true;
            last_status = Some((Instant::now(), line));
        } else {
            let due = last_status.as_ref().is_none_or(|(at, old)| {
                at.elapsed() >= STATUS_EVERY && *old != line
                    // A new problem is worth telling at once (systemctl status shows why).
                    || snap.problem.as_deref().is_some_and(|p| !old.contains(p))
            });
            if due {
                send(&[NotifyState::Status(&line)]);
                last_status = Some((Instant::now(), line));
            }
        }
        if let Some(w) = watchdog
            && last_keepalive.elapsed() >= w / 2
            && snap.heartbeat.elapsed() < w
        {
            send(&[NotifyState::Watchdog]);
            last_keepalive = Instant::now();
        }
    }
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
