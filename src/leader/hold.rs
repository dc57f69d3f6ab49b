//! A standby's warm dedup memory. It watches like the leader but writes nothing: an event at
//! or below the version the leader recorded in the Lease is marked as written in the local
//! store; a newer one is held (its version and identity only, not its bytes) until the
//! recorded version passes it, when it is marked too. On a takeover the held events the old
//! leader never recorded are dropped: the new leader's watch resumes from the recorded version
//! and receives them again from the API server, which is why the bytes need not be kept. A
//! takeover that must re-list (the recorded version expired) then finds every event the old
//! leader recorded already marked, and writes only the others.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use super::gate::Gate;
use crate::dedup::{Probe, Store};

/// Held identities kept at most (about 150 bytes each, so some 15 MiB). More are held only
/// while the leader lags far behind the stream (a leader's first list of a large cluster, a
/// leader whose disk is full); then the oldest are forgotten. A forgotten event is not lost:
/// it can only be written a second time, and only by a takeover that has to re-list.
pub const MAX_HELD: usize = 100_000;

pub struct Hold {
    gate: Arc<Gate>,
    held: BTreeSet<(u64, Box<[u8]>)>,
    /// Marked as the leader's since the start.
    marked: u64,
    /// Forgotten because the hold was full, since the last warning.
    forgotten: u64,
    /// Events whose resourceVersion is not a number: they cannot be compared with the
    /// recorded version, so they are neither marked nor held.
    unversioned: u64,
}

impl Hold {
    pub fn new(gate: Arc<Gate>) -> Hold {
        Hold {
            gate,
            held: BTreeSet::new(),
            marked: 0,
            forgotten: 0,
            unversioned: 0,
        }
    }

    /// Whether offered events are to be written (leading) rather than followed. A leader whose
    /// renewal is late still leads: its batches wait (see `pipeline::gate_open`).
    pub fn writing(&self) -> bool {
        self.gate.is_leading()
    }

    /// Whether a batch may be written now (see [`Gate::may_write`]).
    pub fn may_write(&self) -> bool {
        self.gate.may_write()
    }

    /// A standby's event that is not in the store yet.
    pub fn offer(&mut self, id: &[u8], probe: Probe, rv: Option<&str>, store: &mut Store) {
        let Some(rv) = rv.and_then(|r| r.parse::<u64>().ok()) else {
            self.unversioned += 1;
            if self.unversioned == 1 {
                tracing::warn!(
                    "an event's resourceVersion is not a number; such events cannot be matched with the leader's recorded version, and a takeover that must re-list may write them again"
                );
            }
            return;
        };
        if self.gate.recorded().is_some_and(|r| rv <= r) {
            mark(store, id, Some(probe));
            self.marked += 1;
            return;
        }
        self.held.insert((rv, id.into()));
        if self.held.len() > MAX_HELD {
            self.held.pop_first();
            self.forgotten += 1;
            if self.forgotten == 1 {
                tracing::warn!(
                    held = MAX_HELD,
                    "standby: the leader's recorded version lags far behind the events; forgetting the oldest held events (a takeover that must re-list may write them again)"
                );
            }
        }
    }

    /// Marks the held events the leader has recorded as written by now.
    pub fn drain(&mut self, store: &mut Store) {
        let Some(recorded) = self.gate.recorded() else {
            return;
        };
        while self.held.first().is_some_and(|(rv, _)| *rv <= recorded) {
            if let Some((_, id)) = self.held.pop_first() {
                mark(store, &id, None);
                self.marked += 1;
            }
        }
        if self.held.is_empty() && self.forgotten > 0 {
            tracing::info!(
                forgotten = self.forgotten,
                "standby: the leader caught up; {} held events had been forgotten",
                self.forgotten
            );
            self.forgotten = 0;
        }
        if !self.gate.is_leading() {
            self.gate.set_marked_through(recorded);
        }
    }

    /// On becoming the leader: marks what the old leader recorded, forgets the rest (the watch
    /// from the recorded version brings it again). Returns how many were forgotten.
    pub fn take_over(&mut self, store: &mut Store) -> usize {
        self.drain(store);
        let left = self.held.len();
        self.held.clear();
        self.forgotten = 0;
        left
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    pub fn marked(&self) -> u64 {
        self.marked
    }
}

fn mark(store: &mut Store, id: &[u8], probe: Option<Probe>) {
    let now = SystemTime::now();
    let result = match probe {
        Some(p) => store.insert_probed(id, p, now),
        None => store.insert(id, now),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "dedup store rotation failed; will retry on the next event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::StoreConfig;
    use std::time::Duration;

    fn store(dir: &std::path::Path) -> Store {
        let cfg = StoreConfig {
            dir: dir.to_path_buf(),
            capacity: 10_000,
            error_rate: 0.001,
            batch_count: 2,
            batch_duration: Duration::from_secs(3600),
            max_bytes: 1 << 30,
        };
        Store::open(cfg, SystemTime::now()).unwrap()
    }

    fn offer(hold: &mut Hold, store: &mut Store, id: &str, rv: &str) {
        let (_, probe) = store.probe(id.as_bytes());
        hold.offer(id.as_bytes(), probe, Some(rv), store);
    }

    #[test]
    fn marks_what_the_leader_recorded_and_holds_the_rest_until_it_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store(dir.path());
        let gate = Gate::new();
        let mut hold = Hold::new(gate.clone());
        gate.set_recorded(Some(10));
        offer(&mut hold, &mut store, "a", "9");
        offer(&mut hold, &mut store, "b", "10");
        offer(&mut hold, &mut store, "c", "11");
        offer(&mut hold, &mut store, "d", "15");
        assert!(store.contains(b"a") && store.contains(b"b"));
        assert!(!store.contains(b"c") && !store.contains(b"d"));
        assert_eq!(hold.held(), 2);

        gate.set_recorded(Some(12));
        hold.drain(&mut store);
        assert!(store.contains(b"c") && !store.contains(b"d"));
        assert_eq!(gate.marked_through(), Some(12));

        // Taking over at 13: d (15) was never recorded: forgotten, to come again from the watch.
        gate.set_recorded(Some(13));
        assert_eq!(hold.take_over(&mut store), 1);
        assert!(!store.contains(b"d"));
        assert_eq!(hold.held(), 0);
        assert_eq!(hold.marked(), 3);
    }

    #[test]
    fn without_a_recorded_version_everything_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store(dir.path());
        let gate = Gate::new();
        let mut hold = Hold::new(gate.clone());
        offer(&mut hold, &mut store, "a", "1");
        hold.drain(&mut store);
        assert!(!store.contains(b"a"));
        assert_eq!(gate.marked_through(), None);
        let (_, probe) = store.probe(b"x");
        hold.offer(b"x", probe, Some("not-a-number"), &mut store);
        assert_eq!(hold.held(), 1, "an unversioned event is not held");
    }

    #[test]
    fn the_hold_is_bounded_and_forgets_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store(dir.path());
        let gate = Gate::new();
        let mut hold = Hold::new(gate.clone());
        for i in 0..MAX_HELD + 5 {
            let (_, probe) = store.probe(&[]);
            hold.offer(
                &i.to_le_bytes(),
                probe,
                Some(&(1000 + i).to_string()),
                &mut store,
            );
        }
        assert_eq!(hold.held(), MAX_HELD);
        gate.set_recorded(Some(1004));
        hold.drain(&mut store);
        assert!(!store.contains(&0usize.to_le_bytes()), "forgotten");
        assert_eq!(hold.held(), MAX_HELD);
    }
}
