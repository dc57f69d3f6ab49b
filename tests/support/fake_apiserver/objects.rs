//! Creating, patching and deleting events, and reading them back; objects keep the member
//! order and bytes they were given, with the metadata the real server adds.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::SystemTime;

use super::json::{emit, json_str, members, members_of, set_member};
use super::realistic::{realistic_event, realistic_key, rfc3339, rfc3339_micros, uuid};
use super::store::{Store, etcd_key};
use super::watches::watch_object;
use super::{FakeApiServer, lock};

impl FakeApiServer {
    /// Creates an event. `fields_json` is the object without `metadata` (a `metadata` member, if
    /// any, is merged: labels, annotations, generateName...). The stored object is
    /// `{"metadata":{name,namespace,uid,resourceVersion,creationTimestamp},<fields in order>}`.
    /// Returns the new resourceVersion. Panics if it exists or the JSON is not an object.
    pub fn create(&self, ns: &str, name: &str, fields_json: &str) -> u64 {
        self.try_create(ns, name, fields_json, false)
            .unwrap_or_else(|e| panic!("fake apiserver create {ns}/{name}: {e}"))
    }

    /// Creates an event from a whole object (e.g. an item from a fixture). `kind`/`apiVersion`
    /// are dropped, `metadata.name`/`namespace` are set to the arguments, `resourceVersion` is
    /// replaced by the server's, `uid` and `creationTimestamp` are added if missing; all other
    /// bytes are kept.
    pub fn create_raw(&self, ns: &str, name: &str, full_object_json: &str) -> u64 {
        self.try_create(ns, name, full_object_json, true)
            .unwrap_or_else(|e| panic!("fake apiserver create_raw {ns}/{name}: {e}"))
    }

    /// Replaces or adds top-level fields (keeping the others and their order; a new core/v1 field
    /// is placed where the real server serializes it, unknown ones at the end), bumps the
    /// resourceVersion and sends MODIFIED. A `metadata` member is merged member by member.
    pub fn patch(&self, ns: &str, name: &str, fields_json: &str) -> u64 {
        self.try_patch(ns, name, fields_json)
            .unwrap_or_else(|e| panic!("fake apiserver patch {ns}/{name}: {e}"))
    }

    /// `patch` with `{"count":n}`.
    pub fn set_count(&self, ns: &str, name: &str, n: u64) -> u64 {
        self.patch(ns, name, &format!("{{\"count\":{n}}}"))
    }

    /// Sets `series.count` (keeping the other `series` members; a new `series` gets
    /// `lastObservedTime` = now), like an events.k8s.io/v1 recorder does.
    pub fn set_series_count(&self, ns: &str, name: &str, n: u64) -> u64 {
        let key = etcd_key(ns, name);
        let body = {
            let store = lock(&self.shared.store);
            store
                .current(&key)
                .cloned()
                .unwrap_or_else(|| panic!("fake apiserver: no event {key}"))
        };
        let members = members(&body).expect("stored object");
        let series = match members.iter().find(|(k, _)| k == "series") {
            Some((_, v)) if v.starts_with('{') => {
                let mut s = members_of(v).expect("series");
                set_member(&mut s, "count", n.to_string(), &[]);
                emit(&s)
            }
            _ => format!(
                "{{\"count\":{n},\"lastObservedTime\":\"{}\"}}",
                rfc3339_micros(SystemTime::now())
            ),
        };
        self.patch(ns, name, &format!("{{\"series\":{series}}}"))
    }

    /// Deletes an event; the DELETED frame carries the last object with the new resourceVersion.
    pub fn delete(&self, ns: &str, name: &str) -> u64 {
        self.try_delete(ns, name)
            .unwrap_or_else(|e| panic!("fake apiserver delete {ns}/{name}: {e}"))
    }

    /// Creates `realistic_event(i)` under `realistic_key(i)` for each i; returns the last rv.
    pub fn create_realistic(&self, range: Range<usize>) -> u64 {
        let mut rv = self.current_rv();
        for i in range {
            let (ns, name) = realistic_key(i);
            rv = self.create(&ns, &name, &realistic_event(i));
        }
        rv
    }

    /// Forgets history up to the current resourceVersion: watches from older versions and
    /// continue tokens from older lists get 410. Returns the compaction point.
    pub fn compact(&self) -> u64 {
        lock(&self.shared.store).compact()
    }

    /// The cluster's history starts over, as after an etcd restore from a backup taken before
    /// any of today's events, or a rebuilt control plane: every event is gone, versions count
    /// on from `rv` (below what clients saved), and open watches end (the API server restarts
    /// with its etcd).
    pub fn restore_history(&self, rv: u64) {
        let mut store = lock(&self.shared.store);
        store.broadcast(|| super::watches::WatchMsg::End);
        store.watchers.clear();
        store.keys.clear();
        store.log.clear();
        store.live = 0;
        store.rv = rv;
        store.compact_rv = rv;
        *lock(&self.shared.list_snapshot) = None;
    }

    pub fn current_rv(&self) -> u64 {
        lock(&self.shared.store).rv
    }

    /// Versions below this are expired.
    pub fn compacted_rv(&self) -> u64 {
        lock(&self.shared.store).compact_rv
    }

    /// Number of live events.
    pub fn len(&self) -> usize {
        lock(&self.shared.store).live
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored object as a list item carries it (no kind/apiVersion).
    pub fn object(&self, ns: &str, name: &str) -> Option<String> {
        lock(&self.shared.store)
            .current(&etcd_key(ns, name))
            .map(|b| b.to_string())
    }

    /// The object as a watch frame carries it: `{"kind":"Event","apiVersion":"v1",...}`.
    /// Panics if absent.
    pub fn object_line(&self, ns: &str, name: &str) -> String {
        let body = self
            .object(ns, name)
            .unwrap_or_else(|| panic!("fake apiserver: no event {ns}/{name}"));
        watch_object(&body)
    }

    /// `object_line` of every live event, in key order.
    pub fn object_lines(&self) -> Vec<String> {
        let store = lock(&self.shared.store);
        store
            .keys
            .values()
            .filter_map(|v| v.last().and_then(|v| v.body.as_ref()))
            .map(|b| watch_object(b))
            .collect()
    }

    pub(super) fn try_create(
        &self,
        ns: &str,
        name: &str,
        json: &str,
        raw: bool,
    ) -> Result<u64, String> {
        validate_name(ns)?;
        validate_name(name)?;
        let given = members(json)?;
        let key = etcd_key(ns, name);
        let mut store = lock(&self.shared.store);
        if store.current(&key).is_some() {
            return Err(format!("event {key} already exists"));
        }
        store.rv += 1;
        let rv = store.rv;
        let uid = uuid(
            self.shared.seq.fetch_add(1, Ordering::SeqCst),
            self.shared.opts.initial_rv,
        );
        let now = rfc3339(SystemTime::now());
        let given_meta = match given.iter().find(|(k, _)| k == "metadata") {
            Some((_, v)) => members_of(v)?,
            None => Vec::new(),
        };
        let mut meta: Vec<(String, String)> = Vec::new();
        if raw {
            meta = given_meta;
            set_member(&mut meta, "name", json_str(name), &[]);
            set_member(
                &mut meta,
                "namespace",
                json_str(ns),
                &["generateName", "name"],
            );
            if !meta.iter().any(|(k, _)| k == "uid") {
                set_member(&mut meta, "uid", json_str(&uid), &["namespace"]);
            }
            set_rv(&mut meta, rv);
            if !meta.iter().any(|(k, _)| k == "creationTimestamp") {
                set_member(
                    &mut meta,
                    "creationTimestamp",
                    json_str(&now),
                    &["generation", "resourceVersion"],
                );
            }
        } else {
            meta.push(("name".into(), json_str(name)));
            if let Some((_, g)) = given_meta.iter().find(|(k, _)| k == "generateName") {
                meta.push(("generateName".into(), g.clone()));
            }
            meta.push(("namespace".into(), json_str(ns)));
            meta.push(("uid".into(), json_str(&uid)));
            meta.push(("resourceVersion".into(), json_str(&rv.to_string())));
            meta.push(("creationTimestamp".into(), json_str(&now)));
            for (k, v) in given_meta {
                if !PROTECTED_META.contains(&k.as_str()) && k != "generateName" {
                    meta.push((k, v));
                }
            }
        }
        let mut obj = vec![("metadata".to_string(), emit(&meta))];
        obj.extend(
            given
                .into_iter()
                .filter(|(k, _)| k != "metadata" && k != "kind" && k != "apiVersion"),
        );
        let body: Arc<str> = Arc::from(emit(&obj));
        store.record(key, "ADDED", Some(body.clone()), body);
        Ok(rv)
    }

    pub(super) fn try_patch(&self, ns: &str, name: &str, json: &str) -> Result<u64, String> {
        let given = members(json)?;
        let (key, mut store, cur) = self.lock_current(ns, name)?;
        let mut obj = members(&cur)?;
        for (k, v) in given {
            if k == "kind" || k == "apiVersion" {
                continue;
            }
            if k == "metadata" {
                let mut meta = metadata_of(&obj)?;
                for (mk, mv) in members_of(&v)? {
                    if !PROTECTED_META.contains(&mk.as_str()) {
                        set_member(&mut meta, &mk, mv, &[]);
                    }
                }
                set_member(&mut obj, "metadata", emit(&meta), &[]);
            } else {
                // A new field goes where the real server's (Go struct order) serialization puts it.
                let before = EVENT_FIELD_ORDER
                    .iter()
                    .position(|f| *f == k)
                    .map_or(&[][..], |p| &EVENT_FIELD_ORDER[..p]);
                set_member(&mut obj, &k, v, before);
            }
        }
        record_change(&mut store, key, "MODIFIED", &obj)
    }

    pub(super) fn try_delete(&self, ns: &str, name: &str) -> Result<u64, String> {
        let (key, mut store, cur) = self.lock_current(ns, name)?;
        let obj = members(&cur)?;
        record_change(&mut store, key, "DELETED", &obj)
    }

    /// The etcd key, the locked store and the live object a change starts from.
    fn lock_current(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<(String, MutexGuard<'_, Store>, Arc<str>), String> {
        let key = etcd_key(ns, name);
        let store = lock(&self.shared.store);
        let cur = store
            .current(&key)
            .cloned()
            .ok_or_else(|| format!("no event {key}"))?;
        Ok((key, store, cur))
    }
}

/// Records a change of an existing object at the next resourceVersion, which its metadata then
/// carries (as do the frames); a DELETED leaves no live object. Returns that resourceVersion.
fn record_change(
    store: &mut Store,
    key: String,
    kind: &'static str,
    obj: &[(String, String)],
) -> Result<u64, String> {
    store.rv += 1;
    let rv = store.rv;
    let body: Arc<str> = Arc::from(with_rv(obj, rv)?);
    let live = (kind != "DELETED").then(|| body.clone());
    store.record(key, kind, live, body);
    Ok(rv)
}

/// core/v1 Event fields in the order the real server serializes them.
const EVENT_FIELD_ORDER: &[&str] = &[
    "metadata",
    "involvedObject",
    "reason",
    "message",
    "source",
    "firstTimestamp",
    "lastTimestamp",
    "count",
    "type",
    "eventTime",
    "series",
    "action",
    "related",
    "reportingComponent",
    "reportingInstance",
];

const PROTECTED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
];

fn validate_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.contains('/') || s.chars().any(|c| c.is_control()) {
        Err(format!("invalid namespace or name {s:?}"))
    } else {
        Ok(())
    }
}

fn metadata_of(obj: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
    match obj.iter().find(|(k, _)| k == "metadata") {
        Some((_, v)) => members_of(v),
        None => Ok(Vec::new()),
    }
}

/// Sets `resourceVersion` in metadata members, after `uid` where it is new, as the real
/// server orders them.
fn set_rv(meta: &mut Vec<(String, String)>, rv: u64) {
    set_member(meta, "resourceVersion", json_str(&rv.to_string()), &["uid"]);
}

/// Re-emits `obj` with `metadata.resourceVersion` set to `rv`.
fn with_rv(obj: &[(String, String)], rv: u64) -> Result<String, String> {
    let mut meta = metadata_of(obj)?;
    set_rv(&mut meta, rv);
    let mut obj = obj.to_vec();
    set_member(&mut obj, "metadata", emit(&meta), &[]);
    Ok(emit(&obj))
}
