//! Exponential back-off with full jitter, and the "log a failure once, log the recovery" rule.

use std::time::Duration;

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
    pub fn failure(&mut self, what: &str, cause: &str) -> Duration {
        self.failures += 1;
        let cap = self.next;
        self.next = (self.next * 2).min(self.max);
        // Full jitter: many daemons restarted together by one API outage do not come back in
        // step.
        let wait = cap.mul_f64(0.5 + 0.5 * unit_random());
        if self.logged.as_deref() != Some(cause) {
            tracing::warn!(
                error = cause,
                failures = self.failures,
                "{what} failed; retrying in {:.1}s",
                wait.as_secs_f64()
            );
            self.logged = Some(cause.to_string());
        } else {
            tracing::debug!(
                error = cause,
                failures = self.failures,
                "{what} failed again; retrying in {:.1}s",
                wait.as_secs_f64()
            );
        }
        wait
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
