//! Exponential back-off with full jitter, and the "log a failure once, log the recovery" rule;
//! a failure that needs a person is an error and waits the longest.

use std::time::Duration;

use tokio::sync::watch;

use crate::service::progress::Progress;
use crate::source::diagnose::{Problem, Severity};

/// A wait cut short by a stop signal: a back-off, or a batch that could not be written (it
/// stays unmarked, so the next run writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    failures: u32,
    /// The cause last logged, so a repeat of the same failure stays quiet.
    logged: Option<String>,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
            failures: 0,
            logged: None,
        }
    }

    /// Records a failure, logs it if its cause is new, and returns how long to wait.
    ///
    /// The cause is in the message itself: `journalctl` and `systemctl status` show only that.
    pub fn failure(&mut self, what: &str, cause: &str) -> Duration {
        self.failures += 1;
        let cap = self.next;
        self.next = (self.next * 2).min(self.max);
        // Full jitter: many daemons restarted together by one API outage do not come back in
        // step.
        let wait = cap.mul_f64(0.5 + 0.5 * unit_random());
        if self.is_new(cause) {
            tracing::warn!(
                failures = self.failures,
                "{what} failed: {cause}; retrying in {:.1}s",
                wait.as_secs_f64()
            );
        } else {
            tracing::debug!(
                failures = self.failures,
                "{what} failed again: {cause}; retrying in {:.1}s",
                wait.as_secs_f64()
            );
        }
        wait
    }

    /// [`Backoff::failure`] for a described problem: a transient one is a warning, retried
    /// with back-off; one that needs a person is an error, retried at the slowest pace (the
    /// fix is picked up without a restart, and the server is not hammered meanwhile).
    pub fn problem(&mut self, what: &str, problem: &Problem) -> Duration {
        if problem.severity == Severity::Transient {
            return self.failure(what, &problem.text);
        }
        self.failures += 1;
        self.next = self.max;
        let wait = self.max;
        if self.is_new(&problem.text) {
            tracing::error!(
                failures = self.failures,
                "{what} failed: {}; retrying every {}s",
                problem.text,
                wait.as_secs()
            );
        } else {
            tracing::debug!(
                failures = self.failures,
                "{what} failed again: {}; retrying in {}s",
                problem.text,
                wait.as_secs()
            );
        }
        wait
    }

    /// Whether `cause` differs from the one last logged (and remembers it).
    fn is_new(&mut self, cause: &str) -> bool {
        if self.logged.as_deref() == Some(cause) {
            return false;
        }
        self.logged = Some(cause.to_string());
        true
    }

    /// Records a success; logs the recovery if there were failures.
    pub fn success(&mut self, what: &str) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "{what} works again");
        }
        self.failures = 0;
        self.next = self.first;
        self.logged = None;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// How often a waiting loop shows it is alive (for the systemd watchdog).
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Sleeps `wait`, showing the loop alive meanwhile (a back-off is deliberate waiting, not a
/// hang); `Interrupted` when shutdown is asked for.
pub async fn sleep_alive(
    wait: Duration,
    progress: &Progress,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Interrupted> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        progress.beat();
        let step = until.saturating_duration_since(tokio::time::Instant::now());
        if step.is_zero() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(step.min(HEARTBEAT_EVERY)) => {}
            _ = shutdown.changed() => return Err(Interrupted),
        }
    }
}

pub fn unit_random() -> f64 {
    let bits = getrandom::u64().unwrap_or(0x9E37_79B9_7F4A_7C15);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_cap_and_reset_after_success() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<_> = (0..8).map(|_| b.failure("watch", "boom")).collect();
        assert!(waits[0] <= Duration::from_millis(100));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        assert!(waits[7] >= Duration::from_millis(500), "{waits:?}");
        b.success("watch");
        assert!(b.failure("watch", "boom") <= Duration::from_millis(100));
    }
}
