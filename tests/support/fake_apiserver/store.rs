//! The store, kept like etcd plus the watch cache's history: every version of every key
//! (MVCC), the change log that watches replay, compaction, and the open watches to notify.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::selectors::Selection;
use super::watches::{WatchMsg, Watcher, watch_frame};

#[derive(Debug, Clone)]
pub(super) struct Version {
    pub(super) rv: u64,
    /// None: deleted at `rv`.
    pub(super) body: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub(super) struct LogEntry {
    pub(super) rv: u64,
    pub(super) kind: &'static str,
    pub(super) body: Arc<str>,
}

pub(super) struct Store {
    pub(super) rv: u64,
    /// Versions below this are gone: watches from them get 410, continue tokens too.
    pub(super) compact_rv: u64,
    /// etcd key `namespace/name` (byte order, like etcd) -> versions, oldest first.
    pub(super) keys: BTreeMap<String, Vec<Version>>,
    /// Every change with rv > compact_rv, in rv order.
    pub(super) log: VecDeque<LogEntry>,
    pub(super) live: usize,
    pub(super) watchers: Vec<Watcher>,
}

impl Store {
    pub(super) fn current(&self, key: &str) -> Option<&Arc<str>> {
        self.keys
            .get(key)
            .and_then(|v| v.last())
            .and_then(|v| v.body.as_ref())
    }

    pub(super) fn at(versions: &[Version], rv: u64) -> Option<&Arc<str>> {
        versions
            .iter()
            .rev()
            .find(|v| v.rv <= rv)
            .and_then(|v| v.body.as_ref())
    }

    pub(super) fn broadcast(&mut self, msg: impl Fn() -> WatchMsg) {
        self.watchers.retain(|w| w.tx.send(msg()).is_ok());
    }

    pub(super) fn record(
        &mut self,
        key: String,
        kind: &'static str,
        body: Option<Arc<str>>,
        frame_body: Arc<str>,
    ) {
        let rv = self.rv;
        let previous = self.current(&key).cloned();
        match (previous.is_some(), body.is_some()) {
            (false, true) => self.live += 1,
            (true, false) => self.live -= 1,
            _ => {}
        }
        self.keys.entry(key).or_default().push(Version { rv, body });
        let frame = Bytes::from(watch_frame(kind, &frame_body));
        self.watchers.retain(|w| {
            match selected_frame(
                w.selection.as_deref(),
                kind,
                previous.as_deref(),
                &frame_body,
                &frame,
            ) {
                Some(f) => w.tx.send(WatchMsg::Data(f)).is_ok(),
                None => !w.tx.is_closed(),
            }
        });
        self.log.push_back(LogEntry {
            rv,
            kind,
            body: frame_body,
        });
    }

    pub(super) fn compact(&mut self) -> u64 {
        let c = self.rv;
        self.compact_rv = c;
        while self.log.front().is_some_and(|e| e.rv <= c) {
            self.log.pop_front();
        }
        self.keys.retain(|_, versions| {
            if let Some(idx) = versions.iter().rposition(|v| v.rv <= c) {
                versions.drain(..idx);
                if versions[0].body.is_none() {
                    versions.remove(0);
                }
            }
            !versions.is_empty()
        });
        c
    }
}

/// The frame a watch with `selection` gets for a change, as the watch cache decides it: an
/// object that comes into the selection is ADDED for it, one that leaves it is DELETED.
fn selected_frame(
    selection: Option<&Selection>,
    kind: &'static str,
    previous: Option<&str>,
    body: &str,
    frame: &Bytes,
) -> Option<Bytes> {
    let Some(selection) = selection else {
        return Some(frame.clone());
    };
    let now = selection.matches(body);
    let before = kind == "MODIFIED" && previous.is_some_and(|p| selection.matches(p));
    match (kind, before, now) {
        ("MODIFIED", true, true) | ("ADDED" | "DELETED", _, true) => Some(frame.clone()),
        ("MODIFIED", false, true) => Some(Bytes::from(watch_frame("ADDED", body))),
        ("MODIFIED", true, false) => Some(Bytes::from(watch_frame("DELETED", body))),
        _ => None,
    }
}

pub(super) fn etcd_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}
