//! A fake kube-apiserver for core/v1 Events, speaking the real wire format.
//!
//! Shapes and bytes follow the captures in `tests/fixtures/real-apiserver/`:
//! list bodies (`EventList`, items without `kind`/`apiVersion`, `continue` and
//! `remainingItemCount` only when more remain), continue tokens, watch frames (objects with
//! `kind`/`apiVersion` first), the in-stream `ERROR` frame for an expired watch version, the
//! HTTP 410 for an expired continue token, and the 401/403 `Status` bodies.
//!
//! Objects are kept as raw JSON text and never round-tripped through `serde_json::Value`, so the
//! bytes a test gives are the bytes the daemon receives (whitespace outside strings is removed,
//! which leaves compact input unchanged).
//!
//! The server runs on its own thread with its own tokio runtime, so tests can be plain
//! `#[test]` functions that spawn the daemon as a process.
//!
//! Layout, one concern a file: `lifecycle` (start, restart, stop, URLs, kubeconfig), `tls`
//! (certificates), `store` (MVCC versions, history, compaction), `objects` (creating, patching
//! and deleting events), `json` (raw JSON members), `realistic` (generated events, ids, times),
//! `serve` (accepting, authentication, routing, responses), `selectors` (namespaced paths,
//! field and label selectors), `list`, `watches`, `watch_list` (streaming lists' refusals and
//! faults, the paged list's per-page cost), `faults` (injected failures and stream faults),
//! `leases` (coordination.k8s.io Leases, for leader election), `rbac` (403 for a user without
//! rights) and `admin` (the `/fake/...` HTTP API). This file holds the public types, the
//! shared state and the request log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod faults;
mod json;
mod leases;
mod lifecycle;
mod list;
mod objects;
mod rbac;
mod realistic;
mod selectors;
mod serve;
mod store;
mod tls;
mod watch_list;
mod watches;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::{broadcast, oneshot, watch};

use faults::PendingFailure;
use list::Snapshot;
use serve::parse_bool;
use store::Store;
use tls::TlsMaterial;

// Each includer (the tests, the benchmark, the example) uses a different part of these.
#[allow(unused_imports)]
pub use realistic::{
    fix_uuid_salt, prepared_frame_event, prepared_object, prepared_watch_chunks,
    prepared_watch_frame, realistic_event, realistic_key, rfc3339, rfc3339_micros,
};

/// The exact frame (without the trailing newline) a real kube-apiserver sends when a watch
/// starts from a compacted resourceVersion (`raw-watch-expired.jsonl`).
pub const WATCH_EXPIRED_FRAME: &str = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"The resourceVersion for the provided watch is too old.","reason":"Expired","code":410}}"#;

/// What a default malformed frame looks like: a frame cut in the middle of the object.
pub const MALFORMED_FRAME: &str =
    r#"{"type":"ADDED","object":{"kind":"Event","apiVersion":"v1","metadata":{"name":"#;

// ---------------------------------------------------------------------------------------------
// Public configuration types
// ---------------------------------------------------------------------------------------------

/// Whether the TLS server asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is requested.
    #[default]
    None,
    /// A certificate signed by the fake's CA is accepted (and authenticates the request), but a
    /// client without one can still connect (and is then anonymous).
    Optional,
    /// The TLS handshake fails without a certificate signed by the fake's CA.
    Required,
}

/// Server options. `Options::default()` is plain HTTP, no authentication, no bookmarks.
#[derive(Debug, Clone)]
pub struct Options {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// If set, requests must carry `Authorization: Bearer <token>` (or a client certificate).
    pub token: Option<String>,
    /// Serve HTTPS with a freshly generated CA and a server certificate for IP 127.0.0.1.
    pub tls: bool,
    /// Client certificate policy (only with `tls`).
    pub client_auth: ClientAuth,
    /// The server certificate expired in 2021 (only with `tls`).
    pub expired_cert: bool,
    /// Send a BOOKMARK this often to watches that asked for bookmarks. None (the default) sends
    /// none, like the real server was seen doing for 70 s.
    pub bookmark_interval: Option<Duration>,
    /// The resourceVersion the store starts at; the first change gets `initial_rv + 1`.
    /// Versions below it are treated as compacted.
    pub initial_rv: u64,
    /// Also start the admin HTTP API (`/fake/...`) on its own plain-HTTP port.
    pub admin: bool,
    /// Benchmarks: pre-render this many watch frames ([`prepared_watch_frames`]) and serve them
    /// from memory to the first watch request, once [`FakeApiServer::start_prepared`] is called.
    pub prepared_watch: usize,
    /// Benchmarks: encode every listed item per request from a decoded object, as kube-apiserver
    /// does from its watch cache, instead of copying stored JSON (which serves far faster than
    /// any real server). Items that do not decode as a core/v1 Event are copied as stored.
    pub encode_lists: bool,
    /// Streaming lists (`sendInitialEvents`) are served, as with kube-apiserver's WatchList
    /// feature gate on (its default since v1.34); false answers them 422 like
    /// `watchlist-gate-off.json`.
    pub watch_list: bool,
    /// What each page of a paged list costs before it is sent: the real server spent ~21 ms
    /// a page of 500 (15 ms a request plus 14 µs an item fits both its `limit=500` and
    /// `limit=5000` figures). Tests keep the fixed part (lists stay realistic and cheap);
    /// benchmarks set both and print them.
    pub list_page_delay: Duration,
    /// See `list_page_delay`: the cost of each item of a page.
    pub list_item_delay: Duration,
    /// What each initial frame of a watch costs (a streaming list's events): the real server
    /// streamed 100,000 events in 2.1 s, 21 µs each. Zero (the default) sends them as fast as
    /// the socket takes them, in ~64 KiB chunks. Non-zero is the real server's pace and its
    /// chunking too: every watch frame (initial or live) is its own HTTP chunk, flushed on its
    /// own, as kube-apiserver flushes each watch event.
    pub initial_event_delay: Duration,
    /// How long a list at a resourceVersion ahead of the store waits before its 504
    /// `ResourceVersionTooLarge`: the real server waited about 3 s for its cache to catch up
    /// (`list-rv-too-large.json`).
    pub too_large_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 0,
            token: None,
            tls: false,
            client_auth: ClientAuth::None,
            expired_cert: false,
            bookmark_interval: None,
            initial_rv: 100,
            admin: false,
            prepared_watch: 0,
            encode_lists: false,
            watch_list: true,
            list_page_delay: Duration::from_millis(20),
            list_item_delay: Duration::ZERO,
            initial_event_delay: Duration::ZERO,
            too_large_wait: Duration::from_secs(3),
        }
    }
}

/// The credentials a written kubeconfig carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Token(String),
    /// The client certificate and key signed by the fake's CA (requires `tls`).
    ClientCert,
}

/// An error answer injected with [`FakeApiServer::fail_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 500, reason InternalError.
    InternalError,
    /// HTTP 429 with `Retry-After`, reason TooManyRequests.
    TooManyRequests { retry_after_secs: u32 },
    /// HTTP 503, reason ServiceUnavailable.
    ServiceUnavailable,
}

/// Which requests an injected failure applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every non-admin request.
    Any,
    /// `GET` on an events collection without `watch`.
    List,
    /// `GET` on an events collection with `watch=...`.
    Watch,
}

/// Which watches a front end in front of the server answers `200` with an empty body, as some
/// were seen to do for an expired version (kubernetes/kubernetes#104171, #137089).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptyWatches {
    /// None: every watch is answered as kube-apiserver answers it.
    #[default]
    Off,
    /// Watches from a compacted version, instead of the in-stream 410 `ERROR` frame.
    Expired,
    /// Every watch, streaming lists included: a broken proxy.
    All,
}

/// One request the fake received (admin requests are not recorded).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`).
    pub raw_query: String,
    /// Decoded query parameters (last value wins).
    pub query: BTreeMap<String, String>,
    pub at: SystemTime,
    /// Time since the server started.
    pub since_start: Duration,
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
    /// Status code of the answer, once decided (None while stalled before answering).
    pub status: Option<u16>,
}

impl RecordedRequest {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }
    /// A request on the cluster-wide or a namespaced events collection.
    pub fn is_events(&self) -> bool {
        selectors::collection(&self.path).is_some()
    }
    /// The namespace of a request on a namespaced events collection.
    pub fn namespace(&self) -> Option<&str> {
        selectors::collection(&self.path).flatten()
    }
    /// A watch request on an events collection.
    pub fn is_watch(&self) -> bool {
        self.method == "GET" && self.is_events() && self.param("watch").is_some_and(parse_bool)
    }
    /// A list request on an events collection (a GET without `watch`).
    pub fn is_list(&self) -> bool {
        self.method == "GET" && self.is_events() && !self.is_watch()
    }
    /// A list of at most one event at one exact resourceVersion: the daemon's check whether a
    /// saved version is still served, which lists no events worth the name.
    pub fn is_version_check(&self) -> bool {
        self.is_list()
            && self.param("limit") == Some("1")
            && self.param("resourceVersionMatch") == Some("Exact")
    }
}

// ---------------------------------------------------------------------------------------------
// Shared server state
// ---------------------------------------------------------------------------------------------

struct Shared {
    opts: Options,
    started: Instant,
    store: Mutex<Store>,
    requests: Mutex<Vec<RecordedRequest>>,
    failures: Mutex<Vec<PendingFailure>>,
    stall: watch::Sender<bool>,
    /// `true`: write half a frame before dropping.
    drop_tx: broadcast::Sender<bool>,
    handshake_failures: AtomicUsize,
    seq: AtomicU64,
    /// Bumped by `restart`: every open connection is closed.
    conn_epoch: watch::Sender<u64>,
    /// The pre-rendered watch body (benchmarks), taken by the first watch request.
    prepared: Mutex<Option<Vec<Bytes>>>,
    /// Set by `start_prepared`: the watch holding the prepared body starts sending it.
    prepared_go: watch::Sender<bool>,
    prepared_times: Mutex<PreparedTimes>,
    /// The live objects at one resourceVersion in key order, so that paging through a large
    /// list costs O(page) per request rather than O(all events).
    list_snapshot: Mutex<Option<(u64, Snapshot)>>,
    /// Leases by `namespace/name`, as stored JSON (see `leases`).
    leases: Mutex<BTreeMap<String, String>>,
    /// Holders whose Lease updates are refused.
    lease_refusals: Mutex<Vec<String>>,
    /// An authenticated user refused every request (403), as before its RBAC is applied.
    denied_user: Mutex<Option<String>>,
    /// Applies to the next streaming list ([`FakeApiServer::cut_next_streaming_list`]).
    streaming_fault: Mutex<Option<watch_list::StreamingFault>>,
    /// Channels of held streaming lists, kept open so that their connections stay silent.
    held: Mutex<Vec<tokio::sync::mpsc::UnboundedSender<watches::WatchMsg>>>,
    /// [`FakeApiServer::set_empty_watches`].
    empty_watches: Mutex<EmptyWatches>,
}

/// When the prepared watch body was handed to the connection (wall clock, for other processes).
#[derive(Debug, Clone, Copy, Default)]
struct PreparedTimes {
    bytes: usize,
    frames: usize,
    first_sent: Option<SystemTime>,
    last_sent: Option<SystemTime>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake API server. Dropping it stops the server and closes every connection.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    tls: Option<Arc<TlsMaterial>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The server's runtime and its accept loop, for `restart`.
    rt: Option<tokio::runtime::Handle>,
    accept_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl FakeApiServer {
    // ---- request log -----------------------------------------------------------------------

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// List requests, not counting the daemon's `limit=1` checks of a saved version.
    pub fn list_request_count(&self) -> usize {
        self.count_requests(|r| r.is_list() && !r.is_version_check())
    }

    /// The daemon's checks whether a saved version is still served
    /// ([`RecordedRequest::is_version_check`]).
    pub fn version_check_count(&self) -> usize {
        self.count_requests(RecordedRequest::is_version_check)
    }

    pub fn watch_request_count(&self) -> usize {
        self.count_requests(RecordedRequest::is_watch)
    }

    fn count_requests(&self, which: impl Fn(&RecordedRequest) -> bool) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| which(r))
            .count()
    }

    /// Watch streams currently open (registered and not yet closed).
    pub fn open_watch_count(&self) -> usize {
        let mut store = lock(&self.shared.store);
        store.watchers.retain(|w| !w.tx.is_closed());
        store.watchers.len()
    }

    /// Polls until at least `n` watches are open; false on timeout.
    pub fn wait_for_watches(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.open_watch_count() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// TLS handshakes that failed (e.g. no client certificate with `ClientAuth::Required`).
    pub fn tls_handshake_failures(&self) -> usize {
        self.shared.handshake_failures.load(Ordering::SeqCst)
    }
}
