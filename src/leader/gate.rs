//! What the election decided, shared with the write path without locks: whether this host may
//! write right now (the fence), the version up to which the leader has written everything (as
//! recorded in the Lease), and how far a standby's marks are complete.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::source::resume::Limit;

/// An absent version in the atomics below.
const NONE: u64 = u64::MAX;

pub struct Gate {
    base: Instant,
    /// Writing is allowed while `base.elapsed()` is below this many nanoseconds: the start of
    /// the last successful renewal plus the write window (see `elector`). 0: not allowed.
    fence_ns: AtomicU64,
    /// True while the watch runs as the leader's (set once the takeover's watch started from
    /// the recorded version, cleared the moment the Lease is lost).
    leading: AtomicBool,
    /// The leader's written-resource-version from the Lease, when it is a number.
    recorded: AtomicU64,
    /// A standby has marked every event it saw at or below this version.
    marked_through: AtomicU64,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            base: Instant::now(),
            fence_ns: AtomicU64::new(0),
            leading: AtomicBool::new(false),
            recorded: AtomicU64::new(NONE),
            marked_through: AtomicU64::new(NONE),
        })
    }

    /// Whether a batch may be written now: leading, and the Lease renewed recently enough that
    /// no other host can have taken it over (and recently enough that what this host writes
    /// past its last recorded version stays within about one renewal of events).
    pub fn may_write(&self) -> bool {
        self.leading.load(Ordering::Acquire)
            && (self.base.elapsed().as_nanos() as u64) < self.fence_ns.load(Ordering::Acquire)
    }

    /// Whether the watch runs as the leader's (events are written, not held).
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Writing is allowed until `until` (a renewal that started at `until - write window`
    /// succeeded).
    pub fn extend_fence(&self, until: Instant) {
        let ns = until.saturating_duration_since(self.base).as_nanos() as u64;
        self.fence_ns.fetch_max(ns, Ordering::AcqRel);
    }

    /// The leader's watch is running: its commits are written (while the fence allows).
    pub fn start_leading(&self) {
        self.marked_through.store(NONE, Ordering::Release);
        self.leading.store(true, Ordering::Release);
    }

    /// Stops writing at once: the Lease is lost, expired, or being released.
    pub fn revoke(&self) {
        self.leading.store(false, Ordering::Release);
        self.fence_ns.store(0, Ordering::Release);
    }

    pub fn set_recorded(&self, rv: Option<u64>) {
        self.recorded.store(rv.unwrap_or(NONE), Ordering::Release);
    }

    pub fn recorded(&self) -> Option<u64> {
        some(self.recorded.load(Ordering::Acquire))
    }

    pub fn set_marked_through(&self, rv: u64) {
        self.marked_through.store(rv, Ordering::Release);
    }

    pub fn marked_through(&self) -> Option<u64> {
        some(self.marked_through.load(Ordering::Acquire))
    }
}

fn some(v: u64) -> Option<u64> {
    (v != NONE).then_some(v)
}

/// The saved resume point. The leader saves where its watch is (all written). A standby saves
/// no further than its marks are complete: restarted, it watches again from there and marks
/// what it held in memory, so a later takeover that must re-list repeats nothing.
impl Limit for Gate {
    fn limit(&self, rv: &str) -> Option<String> {
        if self.is_leading() {
            return Some(rv.to_string());
        }
        let marked = self.marked_through()?;
        let at = rv.parse::<u64>().ok()?;
        Some(at.min(marked).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn writes_only_while_leading_and_within_the_fence() {
        let gate = Gate::new();
        assert!(!gate.may_write());
        gate.extend_fence(Instant::now() + Duration::from_secs(60));
        assert!(!gate.may_write(), "fenced in but not leading yet");
        gate.start_leading();
        assert!(gate.may_write());
        gate.revoke();
        assert!(!gate.may_write());
        gate.start_leading();
        assert!(!gate.may_write(), "revoke also clears the fence");
        gate.extend_fence(Instant::now() - Duration::from_millis(1));
        assert!(!gate.may_write(), "a fence in the past");
    }

    #[test]
    fn a_standby_saves_no_further_than_its_marks() {
        let gate = Gate::new();
        assert_eq!(gate.limit("500"), None, "nothing marked: keep the old file");
        gate.set_marked_through(300);
        assert_eq!(gate.limit("500").as_deref(), Some("300"));
        assert_eq!(gate.limit("200").as_deref(), Some("200"));
        assert_eq!(gate.limit("opaque"), None);
        gate.start_leading();
        assert_eq!(gate.limit("500").as_deref(), Some("500"));
        assert_eq!(gate.marked_through(), None, "a leader's marks start over");
    }
}
