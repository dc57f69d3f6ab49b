//! What the daemon has achieved so far, shared with the systemd notifier (readiness, STATUS,
//! watchdog) without it touching the hot path: the watcher updates it once per batch.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::pipeline::Counters;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Listing,
    Watching,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub phase: Phase,
    /// True once the first list finished or a resumed watch was accepted.
    pub ready: bool,
    pub resource_version: String,
    pub counters: Counters,
    /// When the loop last did something (a batch, a list page, an established watch).
    pub last_activity: Instant,
}

#[derive(Clone)]
pub struct Progress {
    inner: Arc<Mutex<Snapshot>>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            inner: Arc::new(Mutex::new(Snapshot {
                phase: Phase::Starting,
                ready: false,
                resource_version: String::new(),
                counters: Counters::default(),
                last_activity: Instant::now(),
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
        g.last_activity = Instant::now();
    }

    pub fn listing(&self) {
        self.update(|s| s.phase = Phase::Listing);
    }

    pub fn listed(&self, rv: &str) {
        self.update(|s| {
            s.ready = true;
            s.resource_version = rv.to_string();
        });
    }

    pub fn watching(&self, rv: &str) {
        self.update(|s| {
            s.phase = Phase::Watching;
            s.ready = true;
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
}
