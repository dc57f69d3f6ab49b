//! What the daemon has achieved so far, shared with the systemd notifier (readiness, STATUS,
//! watchdog) without it touching the hot path: the watcher updates it once per batch.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::source::diagnose::{Problem, Severity};

/// What the pipeline has done with the events it was offered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub written: u64,
    pub skipped: u64,
    pub malformed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Listing,
    Watching,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub phase: Phase,
    /// True once the first list finished or a resumed watch was accepted.
    pub ready: bool,
    /// When `ready` first became true.
    pub ready_at: Option<Instant>,
    pub resource_version: String,
    pub counters: Counters,
    /// The dedup store's short summary, refreshed every few seconds.
    pub store: String,
    /// The failure being retried (`retrying: …`) or what a person must fix first (`waiting
    /// for …`), if any.
    pub problem: Option<String>,
    /// With leader election: "leading since …" or "standby; leader is … since …".
    pub role: Option<String>,
    /// When the loop last showed it is alive: it received data, got an answer, or ticked while
    /// waiting on an open watch, a back-off or the retry of a failing write. Waiting on an
    /// unanswered request or a blocked write(2) does not count, so a stalled API server or a
    /// hung destination stops the watchdog keep-alive.
    pub heartbeat: Instant,
}

impl Snapshot {
    /// Whether the loop showed it is alive within `bound`: the systemd watchdog's condition,
    /// which `/healthz` shares.
    pub fn alive(&self, bound: Duration) -> bool {
        self.heartbeat.elapsed() < bound
    }

    /// The human line for systemd's STATUS=.
    pub fn status_line(&self) -> String {
        let c = self.counters;
        let phase = match self.phase {
            Phase::Connecting => "connecting",
            Phase::Listing => "listing",
            Phase::Watching => "watching",
        };
        let mut line = self
            .role
            .as_ref()
            .map(|r| format!("{r}; "))
            .unwrap_or_default();
        line += &format!(
            "{phase}; {} written, {} skipped, resourceVersion {}",
            c.written,
            c.skipped,
            if self.resource_version.is_empty() {
                "-"
            } else {
                &self.resource_version
            }
        );
        if !self.store.is_empty() {
            line.push_str(", ");
            line.push_str(&self.store);
        }
        if let Some(p) = &self.problem {
            line.push_str("; ");
            line.push_str(p);
        }
        line
    }
}

#[derive(Clone)]
pub struct Progress {
    inner: Arc<Mutex<Snapshot>>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            inner: Arc::new(Mutex::new(Snapshot {
                phase: Phase::Connecting,
                ready: false,
                ready_at: None,
                resource_version: String::new(),
                counters: Counters::default(),
                store: String::new(),
                problem: None,
                role: None,
                heartbeat: Instant::now(),
            })),
        }
    }
}

impl Progress {
    pub fn snapshot(&self) -> Snapshot {
        match self.inner.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut g);
        g.heartbeat = Instant::now();
    }

    pub fn beat(&self) {
        self.update(|_| {});
    }

    pub fn listing(&self) {
        self.update(|s| s.phase = Phase::Listing);
    }

    pub fn listed(&self, rv: &str) {
        self.update(|s| {
            s.ready = true;
            s.ready_at.get_or_insert_with(Instant::now);
            s.problem = None;
            s.resource_version = rv.to_string();
        });
    }

    pub fn watching(&self, rv: &str) {
        self.update(|s| {
            s.phase = Phase::Watching;
            s.ready = true;
            s.ready_at.get_or_insert_with(Instant::now);
            s.problem = None;
            s.resource_version = rv.to_string();
        });
    }

    pub fn at(&self, rv: &str, counters: Counters) {
        self.update(|s| {
            s.resource_version.clear();
            s.resource_version.push_str(rv);
            s.counters = counters;
        });
    }

    pub fn store(&self, summary: String, counters: Counters) {
        self.update(|s| {
            s.store = summary;
            s.counters = counters;
        });
    }

    pub fn set_role(&self, role: &str) {
        self.update(|s| s.role = Some(role.to_string()));
    }

    pub fn failing(&self, cause: &str) {
        self.update(|s| s.problem = Some(format!("retrying: {cause}")));
    }

    /// The failure [`Progress::failing`] showed for `what` (as `what: cause`) is over; any
    /// other problem stays shown.
    pub fn resolved(&self, what: &str) {
        self.update(|s| {
            let ours = s
                .problem
                .as_deref()
                .and_then(|p| p.strip_prefix("retrying: "))
                .is_some_and(|cause| cause.starts_with(what));
            if ours {
                s.problem = None;
            }
        });
    }

    /// A failure a person must fix; `what` is what the daemon waits for.
    pub fn waiting_for(&self, what: &str) {
        self.update(|s| s.problem = Some(format!("waiting for {what}")));
    }

    /// Shows a described failure: retried, or waiting for a person.
    pub fn problem(&self, what: &str, problem: &Problem) {
        match problem.severity {
            Severity::Transient => self.failing(&format!("{what}: {}", problem.waiting_for)),
            Severity::NeedsPerson => self.waiting_for(&problem.waiting_for),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolved_failure_clears_only_its_own_problem() {
        let p = Progress::default();
        p.failing("writing events: cannot write to /x: No space left on device");
        assert!(
            p.snapshot()
                .status_line()
                .contains("retrying: writing events")
        );
        p.resolved("writing events");
        assert_eq!(p.snapshot().problem, None);
        p.failing("listing events: API server answered 503");
        p.resolved("writing events");
        assert!(p.snapshot().problem.is_some());
    }
}
