//! What the daemon counts for Prometheus, and the handle the stages report through.
//!
//! The handle ([`Metrics`]) is a few atomics behind an `Arc`: the source calls it once per
//! request, answer or chunk, and the pipeline publishes its own plain counters into it once per
//! batch ([`Metrics::publish_pipeline`]), so no per-event work is added. Everything is read at
//! scrape time by [`collect`], which hands the figures to `prometheus-client` to encode; the
//! HTTP side (`/metrics`, `/healthz`, `/readyz`) is [`server`], the readiness and liveness
//! rules [`health`], and the process's own CPU, memory and descriptors [`process`].

pub mod collect;
pub mod health;
pub mod process;
pub mod server;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::time::error::Elapsed;

use crate::dedup::StoreStats;
use crate::service::progress::Counters;
use crate::source::api_error::ApiError;

/// The requests the source makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    List,
    Watch,
    /// `limit=1` at a saved resourceVersion: is it still served?
    VersionCheck,
}

impl Request {
    pub const ALL: [Request; 3] = [Request::List, Request::Watch, Request::VersionCheck];

    pub fn label(self) -> &'static str {
        match self {
            Request::List => "list",
            Request::Watch => "watch",
            Request::VersionCheck => "version_check",
        }
    }
}

/// Why a full list of every event was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelistCause {
    /// No saved resourceVersion at start-up.
    Start,
    /// The server no longer had the version to resume from (410 Gone), or the list's continue
    /// token expired.
    Expired,
    /// The selection of events changed, so the saved version no longer applies.
    SelectionChanged,
    /// The saved version is ahead of the server (`ResourceVersionTooLarge`): the cluster's
    /// history started again, after an etcd restore or a rebuilt control plane.
    Ahead,
    /// Watches from the saved version kept being answered with an empty body.
    EmptyWatches,
}

impl RelistCause {
    pub const ALL: [RelistCause; 5] = [
        RelistCause::Start,
        RelistCause::Expired,
        RelistCause::SelectionChanged,
        RelistCause::Ahead,
        RelistCause::EmptyWatches,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RelistCause::Start => "start",
            RelistCause::Expired => "expired",
            RelistCause::SelectionChanged => "selection_changed",
            RelistCause::Ahead => "ahead",
            RelistCause::EmptyWatches => "empty_watches",
        }
    }
}

/// A watch or streaming list that carried no frame at all (no event, no bookmark, no error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataless {
    /// The server ended it soon after answering 200: a front end's empty body.
    Empty,
    /// Open for long without a byte, up to the idle bound or the server's end.
    Silent,
}

impl Dataless {
    pub const ALL: [Dataless; 2] = [Dataless::Empty, Dataless::Silent];

    pub fn label(self) -> &'static str {
        match self {
            Dataless::Empty => "empty",
            Dataless::Silent => "silent",
        }
    }
}

/// How a request to the API server failed. Exclusive: each failure counts once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// No connection, or it failed before an answer (refused, reset, TLS, DNS).
    Connect,
    /// No answer within the bound (the daemon's own, or the connect timeout).
    Timeout,
    /// 410 Gone: the version or continue token expired (HTTP or an in-stream ERROR frame).
    Gone,
    /// Any other 4xx (401, 403, 429, ...).
    Client,
    /// 5xx.
    Server,
    /// The answer began but broke off or could not be read.
    Stream,
    /// A Status with a code outside 400-599.
    Other,
}

impl ApiErrorKind {
    pub const ALL: [ApiErrorKind; 7] = [
        ApiErrorKind::Connect,
        ApiErrorKind::Timeout,
        ApiErrorKind::Gone,
        ApiErrorKind::Client,
        ApiErrorKind::Server,
        ApiErrorKind::Stream,
        ApiErrorKind::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ApiErrorKind::Connect => "connect",
            ApiErrorKind::Timeout => "timeout",
            ApiErrorKind::Gone => "410",
            ApiErrorKind::Client => "4xx",
            ApiErrorKind::Server => "5xx",
            ApiErrorKind::Stream => "stream",
            ApiErrorKind::Other => "other",
        }
    }

    pub fn of(e: &ApiError) -> ApiErrorKind {
        match e {
            ApiError::Transport(t) => {
                if chain_timed_out(t) {
                    ApiErrorKind::Timeout
                } else {
                    ApiErrorKind::Connect
                }
            }
            ApiError::Body(_) => ApiErrorKind::Stream,
            ApiError::Status { code: 410, .. } => ApiErrorKind::Gone,
            ApiError::Status { code, .. } => match code {
                400..=499 => ApiErrorKind::Client,
                500..=599 => ApiErrorKind::Server,
                _ => ApiErrorKind::Other,
            },
        }
    }
}

/// Whether a transport error was a timeout somewhere down its chain of causes (kube's connect
/// timeout surfaces as an `io::Error` of kind `TimedOut` deep inside).
fn chain_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Why the destination was reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReopenCause {
    /// SIGHUP (logrotate's postrotate, `systemctl reload`).
    Signal,
    /// The path named another file, or nothing any more (moved away or deleted).
    PathChanged,
}

impl ReopenCause {
    pub const ALL: [ReopenCause; 2] = [ReopenCause::Signal, ReopenCause::PathChanged];

    pub fn label(self) -> &'static str {
        match self {
            ReopenCause::Signal => "signal",
            ReopenCause::PathChanged => "path_changed",
        }
    }
}

/// This instance's part under leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Leader election is on but no role is decided yet (connecting to the API server, or the
    /// Lease not read yet): nothing is written.
    Electing,
    /// Holds the lease and writes.
    Leader,
    /// Follows the cluster without writing, ready to take over.
    Standby,
}

/// The pipeline's own totals, published once per batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PipelineTotals {
    pub counters: Counters,
    /// Events accepted but not yet written (held while the destination fails).
    pub pending: u64,
    pub bytes_written: u64,
    /// Failed write attempts (each retry of a failing batch counts).
    pub write_errors: u64,
    /// Successful reopens by [`ReopenCause`], in the order of [`ReopenCause::ALL`].
    pub reopens: [u64; 2],
}

/// The dedup store's figures, published every second or so (not per event).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StoreFigures {
    pub files: u64,
    pub newest_fill: f64,
    pub estimated_fp: f64,
    pub fp_bound: f64,
    pub rotations: u64,
    pub quarantined: u64,
    /// Identities the filters hold.
    pub identities: u64,
    /// Unix seconds the oldest filter was started (0: none).
    pub oldest_filter: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub at_limit: bool,
    pub evicted: u64,
    /// The last list: events, age of the oldest then, and when (0: no list seen).
    pub listed_events: u64,
    pub listed_oldest_age: u64,
    pub listed_at: u64,
    pub fp_losses: f64,
}

impl StoreFigures {
    pub fn new(stats: &StoreStats, rotations: u64, quarantined: u64) -> StoreFigures {
        StoreFigures {
            files: stats.files.len() as u64,
            newest_fill: stats.files.last().map_or(0.0, |f| f.fill),
            estimated_fp: stats.estimated_fp,
            fp_bound: stats.error_rate,
            rotations,
            quarantined,
            identities: stats.identities(),
            oldest_filter: stats.oldest().unwrap_or(0),
            bytes: stats.bytes,
            max_bytes: stats.max_bytes,
            at_limit: stats.at_limit,
            evicted: stats.evicted,
            listed_events: stats.listed.map_or(0, |l| l.count),
            listed_oldest_age: stats.listed.map_or(0, |l| l.oldest_age()),
            listed_at: stats.listed.map_or(0, |l| l.at),
            fp_losses: stats.fp_losses,
        }
    }
}

/// The shared handle; clones share the figures. `Metrics::default()` counts even when nothing
/// serves the figures, which costs the same few atomic stores per batch.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<State>,
}

/// `ROLE_NONE`: no leader election; this instance is the only writer.
const ROLE_NONE: u8 = 0;
const ROLE_LEADER: u8 = 1;
const ROLE_STANDBY: u8 = 2;
const ROLE_ELECTING: u8 = 3;

struct State {
    /// Base of the monotonic instants below, stored as nanoseconds since it plus one (0: never).
    started: Instant,
    written: AtomicU64,
    skipped: AtomicU64,
    malformed: AtomicU64,
    pending: AtomicU64,
    bytes_written: AtomicU64,
    write_errors: AtomicU64,
    reopens: [AtomicU64; 2],
    last_write_mono: AtomicU64,
    /// Milliseconds since the Unix epoch of the last successful write (0: never).
    last_write_unix_ms: AtomicU64,
    last_api_message_mono: AtomicU64,
    requests: [AtomicU64; Request::ALL.len()],
    relists: [AtomicU64; RelistCause::ALL.len()],
    dataless: [AtomicU64; Dataless::ALL.len()],
    empty_in_a_row: AtomicU64,
    api_errors: [[AtomicU64; ApiErrorKind::ALL.len()]; Request::ALL.len()],
    store: Mutex<StoreFigures>,
    role: AtomicU8,
    role_transitions: AtomicU64,
}

impl Default for State {
    fn default() -> Self {
        State {
            started: Instant::now(),
            written: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            reopens: Default::default(),
            last_write_mono: AtomicU64::new(0),
            last_write_unix_ms: AtomicU64::new(0),
            last_api_message_mono: AtomicU64::new(0),
            requests: Default::default(),
            relists: Default::default(),
            dataless: Default::default(),
            empty_in_a_row: AtomicU64::new(0),
            api_errors: Default::default(),
            store: Mutex::new(StoreFigures::default()),
            role: AtomicU8::new(ROLE_NONE),
            role_transitions: AtomicU64::new(0),
        }
    }
}

fn index<T: PartialEq>(all: &[T], x: T) -> usize {
    all.iter().position(|a| *a == x).unwrap_or(0)
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn now_mono(&self) -> u64 {
        // Plus one so that 0 keeps meaning "never".
        u64::try_from(self.inner.started.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    // ---- the pipeline, once per batch ----------------------------------------------------

    /// The pipeline's totals. Relaxed stores: each figure is read on its own.
    pub fn publish_pipeline(&self, t: &PipelineTotals) {
        let s = &*self.inner;
        s.written.store(t.counters.written, Ordering::Relaxed);
        s.skipped.store(t.counters.skipped, Ordering::Relaxed);
        s.malformed.store(t.counters.malformed, Ordering::Relaxed);
        s.pending.store(t.pending, Ordering::Relaxed);
        s.bytes_written.store(t.bytes_written, Ordering::Relaxed);
        s.write_errors.store(t.write_errors, Ordering::Relaxed);
        for (slot, n) in s.reopens.iter().zip(t.reopens) {
            slot.store(n, Ordering::Relaxed);
        }
    }

    /// A batch was written in full at `now`.
    pub fn wrote(&self, now: SystemTime) {
        let s = &*self.inner;
        s.last_write_mono.store(self.now_mono(), Ordering::Relaxed);
        let ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        s.last_write_unix_ms.store(ms, Ordering::Relaxed);
    }

    pub fn publish_store(&self, figures: StoreFigures) {
        match self.inner.store.lock() {
            Ok(mut g) => *g = figures,
            Err(poisoned) => *poisoned.into_inner() = figures,
        }
    }

    // ---- the source ----------------------------------------------------------------------

    /// A list or watch request was answered (or abandoned at the daemon's own bound): counts
    /// the request, and the failure if it failed; a success is a message from the API.
    pub fn answer<T>(&self, request: Request, outcome: &Result<Result<T, ApiError>, Elapsed>) {
        let s = &*self.inner;
        s.requests[index(&Request::ALL, request)].fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(Ok(_)) => self.api_message(),
            Ok(Err(e)) => self.api_error(request, e),
            Err(_) => self.api_error_kind(request, ApiErrorKind::Timeout),
        }
    }

    /// What reading an open watch gave: data is a message from the API, an error is counted;
    /// the end of the stream and the daemon's own idle bound are neither.
    pub fn watch_chunk<T>(&self, chunk: &Result<Result<Option<T>, ApiError>, Elapsed>) {
        match chunk {
            Ok(Ok(Some(_))) => self.api_message(),
            Ok(Err(e)) => self.api_error(Request::Watch, e),
            Ok(Ok(None)) | Err(_) => {}
        }
    }

    pub fn api_error(&self, request: Request, e: &ApiError) {
        self.api_error_kind(request, ApiErrorKind::of(e));
    }

    pub fn api_error_kind(&self, request: Request, kind: ApiErrorKind) {
        let r = index(&Request::ALL, request);
        let k = index(&ApiErrorKind::ALL, kind);
        self.inner.api_errors[r][k].fetch_add(1, Ordering::Relaxed);
    }

    /// Data from the API server (a list page, a watch chunk: frames or bookmarks).
    pub fn api_message(&self) {
        let now = self.now_mono();
        self.inner
            .last_api_message_mono
            .store(now, Ordering::Relaxed);
    }

    /// A full list of every event starts, for `cause`. Retries of a failed list are not new
    /// lists.
    pub fn relist(&self, cause: RelistCause) {
        self.inner.relists[index(&RelistCause::ALL, cause)].fetch_add(1, Ordering::Relaxed);
    }

    /// A watch or streaming list ended without a frame; `in_a_row` counts the empty ones
    /// since data last came.
    pub fn dataless(&self, kind: Dataless, empty_in_a_row: u32) {
        self.inner.dataless[index(&Dataless::ALL, kind)].fetch_add(1, Ordering::Relaxed);
        self.set_empty_in_a_row(empty_in_a_row);
    }

    pub fn set_empty_in_a_row(&self, n: u32) {
        self.inner
            .empty_in_a_row
            .store(u64::from(n), Ordering::Relaxed);
    }

    // ---- leader election -----------------------------------------------------------------

    /// Called with `Electing` at start-up when leader election is on, then by leader election
    /// whenever this instance's role is decided. Without leader election it is never called and
    /// the instance reports itself the leader (it writes). A change between leader and standby
    /// counts as a transition; the first decision does not.
    pub fn set_role(&self, role: Role) {
        let new = match role {
            Role::Electing => ROLE_ELECTING,
            Role::Leader => ROLE_LEADER,
            Role::Standby => ROLE_STANDBY,
        };
        let old = self.inner.role.swap(new, Ordering::Relaxed);
        let decided = |r| r == ROLE_LEADER || r == ROLE_STANDBY;
        if decided(old) && decided(new) && old != new {
            self.inner.role_transitions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// None without leader election.
    pub fn role(&self) -> Option<Role> {
        match self.inner.role.load(Ordering::Relaxed) {
            ROLE_LEADER => Some(Role::Leader),
            ROLE_STANDBY => Some(Role::Standby),
            ROLE_ELECTING => Some(Role::Electing),
            _ => None,
        }
    }

    // ---- reading, for the collector --------------------------------------------------------

    pub(crate) fn snapshot(&self) -> Figures {
        let s = &*self.inner;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let now = self.now_mono();
        // Never (0): the time since start, which is how long nothing has happened.
        let age = |mono: u64| now.saturating_sub(mono) as f64 / 1e9;
        let store = match s.store.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        Figures {
            totals: PipelineTotals {
                counters: Counters {
                    written: load(&s.written),
                    skipped: load(&s.skipped),
                    malformed: load(&s.malformed),
                },
                pending: load(&s.pending),
                bytes_written: load(&s.bytes_written),
                write_errors: load(&s.write_errors),
                reopens: [load(&s.reopens[0]), load(&s.reopens[1])],
            },
            last_write_age: age(load(&s.last_write_mono)),
            last_write_unix: load(&s.last_write_unix_ms) as f64 / 1e3,
            last_api_message_age: age(load(&s.last_api_message_mono)),
            requests: s.requests.each_ref().map(load),
            relists: s.relists.each_ref().map(load),
            api_errors: s.api_errors.each_ref().map(|r| r.each_ref().map(load)),
            dataless: s.dataless.each_ref().map(load),
            empty_in_a_row: load(&s.empty_in_a_row),
            store,
            role: self.role(),
            role_transitions: load(&s.role_transitions),
            uptime: now as f64 / 1e9,
        }
    }
}

/// Everything [`Metrics`] holds, read at one scrape.
#[derive(Debug, Clone)]
pub(crate) struct Figures {
    pub totals: PipelineTotals,
    pub last_write_age: f64,
    pub last_write_unix: f64,
    pub last_api_message_age: f64,
    pub requests: [u64; Request::ALL.len()],
    pub relists: [u64; RelistCause::ALL.len()],
    pub dataless: [u64; Dataless::ALL.len()],
    pub empty_in_a_row: u64,
    pub api_errors: [[u64; ApiErrorKind::ALL.len()]; Request::ALL.len()],
    pub store: StoreFigures,
    pub role: Option<Role>,
    pub role_transitions: u64,
    /// Seconds since the handle was made (at start-up).
    pub uptime: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> ApiError {
        ApiError::Status {
            code,
            reason: String::new(),
            message: String::new(),
            continue_token: None,
        }
    }

    #[test]
    fn errors_are_sorted_by_kind() {
        assert_eq!(ApiErrorKind::of(&status(410)), ApiErrorKind::Gone);
        assert_eq!(ApiErrorKind::of(&status(429)), ApiErrorKind::Client);
        assert_eq!(ApiErrorKind::of(&status(403)), ApiErrorKind::Client);
        assert_eq!(ApiErrorKind::of(&status(503)), ApiErrorKind::Server);
        assert_eq!(ApiErrorKind::of(&status(0)), ApiErrorKind::Other);
        assert_eq!(
            ApiErrorKind::of(&ApiError::Body("reset".into())),
            ApiErrorKind::Stream
        );
    }

    #[test]
    fn a_timeout_deep_in_the_causes_is_a_timeout() {
        #[derive(Debug, thiserror::Error)]
        #[error("connect failed")]
        struct Outer(#[source] std::io::Error);
        let timed_out = Outer(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"));
        assert!(chain_timed_out(&timed_out));
        let refused = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!chain_timed_out(&refused));
    }

    #[test]
    fn answers_count_requests_errors_and_messages() {
        let m = Metrics::new();
        m.answer::<()>(Request::List, &Ok(Ok(())));
        m.answer::<()>(Request::List, &Ok(Err(status(500))));
        m.answer::<()>(Request::Watch, &Ok(Err(status(410))));
        let f = m.snapshot();
        assert_eq!(f.requests, [2, 1, 0]);
        assert_eq!(
            f.api_errors[0][index(&ApiErrorKind::ALL, ApiErrorKind::Server)],
            1
        );
        assert_eq!(
            f.api_errors[1][index(&ApiErrorKind::ALL, ApiErrorKind::Gone)],
            1
        );
        assert!(f.last_api_message_age < f.uptime + 1.0);
    }

    #[test]
    fn roles_count_transitions_but_not_the_first_decision() {
        let m = Metrics::new();
        assert_eq!(m.role(), None);
        m.set_role(Role::Electing);
        m.set_role(Role::Standby);
        m.set_role(Role::Standby);
        assert_eq!(m.snapshot().role_transitions, 0);
        m.set_role(Role::Leader);
        m.set_role(Role::Standby);
        assert_eq!(m.role(), Some(Role::Standby));
        assert_eq!(m.snapshot().role_transitions, 2);
    }
}
