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
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_rustls::rustls;

/// The exact frame (without the trailing newline) a real kube-apiserver sends when a watch
/// starts from a compacted resourceVersion (`raw-watch-expired.jsonl`).
pub const WATCH_EXPIRED_FRAME: &str = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"The resourceVersion for the provided watch is too old.","reason":"Expired","code":410}}"#;

const EXPIRED_CONTINUE_MESSAGE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 0,
            token: None,
            tls: false,
            client_auth: ClientAuth::None,
            bookmark_interval: None,
            initial_rv: 100,
            admin: false,
            prepared_watch: 0,
            encode_lists: false,
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
    /// `GET /api/v1/events` without `watch`.
    List,
    /// `GET /api/v1/events?watch=...`.
    Watch,
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
    /// A watch request on the events collection.
    pub fn is_watch(&self) -> bool {
        self.method == "GET"
            && self.path == "/api/v1/events"
            && self.param("watch").is_some_and(parse_bool)
    }
    /// A list request on the events collection (a GET without `watch`).
    pub fn is_list(&self) -> bool {
        self.method == "GET" && self.path == "/api/v1/events" && !self.is_watch()
    }
}

// ---------------------------------------------------------------------------------------------
// Store (MVCC, like etcd + watch history)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Version {
    rv: u64,
    /// None: deleted at `rv`.
    body: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
struct LogEntry {
    rv: u64,
    kind: &'static str,
    body: Arc<str>,
}

enum WatchMsg {
    /// Bytes to write (one or more complete lines, or anything injected).
    Data(Bytes),
    /// End the stream cleanly after what was queued before.
    End,
    /// A bookmark at the current resourceVersion (only written if the watch asked for them).
    Bookmark(u64),
}

struct Watcher {
    tx: mpsc::UnboundedSender<WatchMsg>,
}

struct Store {
    rv: u64,
    /// Versions below this are gone: watches from them get 410, continue tokens too.
    compact_rv: u64,
    /// etcd key `namespace/name` (byte order, like etcd) -> versions, oldest first.
    keys: BTreeMap<String, Vec<Version>>,
    /// Every change with rv > compact_rv, in rv order.
    log: VecDeque<LogEntry>,
    live: usize,
    watchers: Vec<Watcher>,
}

impl Store {
    fn current(&self, key: &str) -> Option<&Arc<str>> {
        self.keys
            .get(key)
            .and_then(|v| v.last())
            .and_then(|v| v.body.as_ref())
    }

    fn at(versions: &[Version], rv: u64) -> Option<&Arc<str>> {
        versions
            .iter()
            .rev()
            .find(|v| v.rv <= rv)
            .and_then(|v| v.body.as_ref())
    }

    fn broadcast(&mut self, msg: impl Fn() -> WatchMsg) {
        self.watchers.retain(|w| w.tx.send(msg()).is_ok());
    }

    fn record(
        &mut self,
        key: String,
        kind: &'static str,
        body: Option<Arc<str>>,
        frame_body: Arc<str>,
    ) {
        let rv = self.rv;
        match (self.current(&key).is_some(), body.is_some()) {
            (false, true) => self.live += 1,
            (true, false) => self.live -= 1,
            _ => {}
        }
        self.keys.entry(key).or_default().push(Version { rv, body });
        let frame = Bytes::from(watch_frame(kind, &frame_body));
        self.log.push_back(LogEntry {
            rv,
            kind,
            body: frame_body,
        });
        self.broadcast(|| WatchMsg::Data(frame.clone()));
    }

    fn compact(&mut self) -> u64 {
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

// ---------------------------------------------------------------------------------------------
// Shared server state
// ---------------------------------------------------------------------------------------------

struct PendingFailure {
    target: Target,
    remaining: usize,
    failure: Failure,
}

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
}

/// The live `(etcd key, object, object decoded)` at one resourceVersion, in key order; the
/// decoded object only with `Options::encode_lists`.
type Snapshot = Arc<Vec<(String, Arc<str>, Option<k8s_openapi::api::core::v1::Event>)>>;

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

struct TlsMaterial {
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    server_config: Arc<rustls::ServerConfig>,
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

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FakeApiServer {
    /// Starts the server on 127.0.0.1 (its own thread and tokio runtime) and returns once it
    /// accepts connections.
    pub fn start(opts: Options) -> FakeApiServer {
        let tls = opts.tls.then(|| Arc::new(make_tls(opts.client_auth)));
        let (stall, _) = watch::channel(false);
        let (drop_tx, _) = broadcast::channel(16);
        let (prepared_go, _) = watch::channel(false);
        let (prepared, prepared_times) = if opts.prepared_watch > 0 {
            fix_uuid_salt();
            let chunks = prepared_watch_chunks(opts.prepared_watch, opts.initial_rv);
            let times = PreparedTimes {
                bytes: chunks.iter().map(Bytes::len).sum(),
                frames: opts.prepared_watch,
                ..PreparedTimes::default()
            };
            (Some(chunks), times)
        } else {
            (None, PreparedTimes::default())
        };
        let shared = Arc::new(Shared {
            started: Instant::now(),
            store: Mutex::new(Store {
                rv: opts.initial_rv,
                compact_rv: opts.initial_rv,
                keys: BTreeMap::new(),
                log: VecDeque::new(),
                live: 0,
                watchers: Vec::new(),
            }),
            requests: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            stall,
            drop_tx,
            handshake_failures: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            conn_epoch: watch::channel(0).0,
            prepared: Mutex::new(prepared),
            prepared_go,
            prepared_times: Mutex::new(prepared_times),
            list_snapshot: Mutex::new(None),
            opts,
        });
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", shared.opts.port))
            .expect("fake apiserver: bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local_addr");
        let admin_listener = shared.opts.admin.then(|| {
            let l =
                std::net::TcpListener::bind(("127.0.0.1", 0)).expect("fake apiserver: bind admin");
            l.set_nonblocking(true).expect("nonblocking");
            l
        });
        let admin_addr = admin_listener
            .as_ref()
            .map(|l| l.local_addr().expect("local_addr"));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let acceptor = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.server_config.clone()));
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-apiserver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fake apiserver runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(std_listener).expect("listener");
                    if let Some(l) = admin_listener {
                        let l = tokio::net::TcpListener::from_std(l).expect("listener");
                        tokio::spawn(accept_loop(l, sh.clone(), None, true));
                    }
                    let task = tokio::spawn(accept_loop(listener, sh, acceptor, false));
                    let _ = ready_tx.send((tokio::runtime::Handle::current(), task));
                    let _ = shutdown_rx.await;
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn fake apiserver thread");
        let (rt, task) = ready_rx.recv().expect("fake apiserver did not start");
        FakeApiServer {
            shared,
            addr,
            admin_addr,
            tls,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
            rt: Some(rt),
            accept_task: Mutex::new(Some(task)),
        }
    }

    /// Restarts the server as a real API server restarts, keeping its store (etcd): stops
    /// listening and closes every connection at once (open watches end without a terminating
    /// chunk), refuses connections for `downtime`, then listens again on the same port.
    pub fn restart(&self, downtime: Duration) {
        let rt = self
            .rt
            .as_ref()
            .expect("restart needs the owning FakeApiServer");
        if let Some(task) = lock(&self.accept_task).take() {
            task.abort();
            // The listener is closed once the aborted task is dropped.
            let _ = rt.block_on(task);
        }
        self.shared.conn_epoch.send_modify(|e| *e += 1);
        std::thread::sleep(downtime);
        let listener = std::net::TcpListener::bind(self.addr).expect("fake apiserver: rebind");
        listener.set_nonblocking(true).expect("nonblocking");
        let acceptor = self
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.server_config.clone()));
        let shared = self.shared.clone();
        let task = rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            accept_loop(listener, shared, acceptor, false).await;
        });
        *lock(&self.accept_task) = Some(task);
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` of the admin API, when `Options::admin` was set.
    pub fn admin_url(&self) -> Option<String> {
        self.admin_addr.map(|a| format!("http://{a}"))
    }

    /// PEM of the generated CA (TLS only).
    pub fn ca_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.ca_pem.clone())
    }

    /// PEM of a client certificate signed by the CA, CN `fake-client` (TLS only).
    pub fn client_cert_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.client_cert_pem.clone())
    }

    /// PEM (PKCS#8) of the client certificate's key (TLS only).
    pub fn client_key_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.client_key_pem.clone())
    }

    /// Writes a kubeconfig that kube-rs can load: one cluster/context/user named `fake`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>, auth: Auth) {
        std::fs::write(path.as_ref(), self.kubeconfig(auth)).expect("write kubeconfig");
    }

    /// The kubeconfig text [`write_kubeconfig`](Self::write_kubeconfig) writes.
    pub fn kubeconfig(&self, auth: Auth) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let mut out = String::new();
        out.push_str("apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n");
        let _ = writeln!(out, "    server: {}", self.url());
        if let Some(t) = &self.tls {
            let _ = writeln!(out, "    certificate-authority-data: {}", b64(&t.ca_pem));
        }
        out.push_str("contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n");
        out.push_str("current-context: fake\nusers:\n- name: fake\n  user:");
        match auth {
            Auth::None => out.push_str(" {}\n"),
            Auth::Token(t) => {
                let _ = write!(
                    out,
                    "\n    token: {}\n",
                    serde_json::to_string(&t).expect("str")
                );
            }
            Auth::ClientCert => {
                let t = self
                    .tls
                    .as_ref()
                    .expect("Auth::ClientCert needs Options { tls: true, .. }");
                let _ = write!(
                    out,
                    "\n    client-certificate-data: {}\n    client-key-data: {}\n",
                    b64(&t.client_cert_pem),
                    b64(&t.client_key_pem)
                );
            }
        }
        out
    }

    // ---- objects ------------------------------------------------------------------------------

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

    /// Lets the watch that took the prepared body start sending it.
    pub fn start_prepared(&self) {
        self.shared.prepared_go.send_replace(true);
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

    // ---- request log -----------------------------------------------------------------------

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    pub fn list_request_count(&self) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.is_list())
            .count()
    }

    pub fn watch_request_count(&self) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.is_watch())
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

    // ---- faults ------------------------------------------------------------------------------

    /// Aborts every open watch connection now (no terminating chunk). With `half_frame`, the
    /// first half of a frame is written first.
    pub fn drop_watches(&self, half_frame: bool) {
        let _ = self.shared.drop_tx.send(half_frame);
    }

    /// While stalled, open watches send nothing (not even their timeout end) and new requests
    /// get no answer; connections stay open. Clearing resumes everything.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.stall.send_replace(stalled);
    }

    /// Writes `line` (a newline is added if missing) into every open watch, in order with the
    /// other frames.
    pub fn inject_watch_line(&self, line: &str) {
        let mut s = line.to_string();
        if !s.ends_with('\n') {
            s.push('\n');
        }
        let b = Bytes::from(s);
        lock(&self.shared.store).broadcast(|| WatchMsg::Data(b.clone()));
    }

    /// Writes raw bytes (which need not be UTF-8) plus a newline into every open watch.
    pub fn inject_watch_bytes(&self, bytes: &[u8]) {
        let mut v = bytes.to_vec();
        v.push(b'\n');
        let b = Bytes::from(v);
        lock(&self.shared.store).broadcast(|| WatchMsg::Data(b.clone()));
    }

    /// `inject_watch_line(MALFORMED_FRAME)`.
    pub fn inject_malformed_frame(&self) {
        self.inject_watch_line(MALFORMED_FRAME);
    }

    /// Sends the in-stream 410 ERROR frame to every open watch, then ends them cleanly.
    pub fn expire_watches(&self) {
        let b = Bytes::from(format!("{WATCH_EXPIRED_FRAME}\n"));
        let mut store = lock(&self.shared.store);
        store.broadcast(|| WatchMsg::Data(b.clone()));
        store.broadcast(|| WatchMsg::End);
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch that allowed bookmarks.
    pub fn send_bookmark(&self) {
        let mut store = lock(&self.shared.store);
        let rv = store.rv;
        store.broadcast(|| WatchMsg::Bookmark(rv));
    }

    /// The next `n` requests (any non-admin path) get `failure`.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        self.fail_next_for(Target::Any, n, failure);
    }

    /// The next `n` requests matching `target` get `failure`.
    pub fn fail_next_for(&self, target: Target, n: usize, failure: Failure) {
        lock(&self.shared.failures).push(PendingFailure {
            target,
            remaining: n,
            failure,
        });
    }

    /// Removes pending injected failures and clears a stall.
    pub fn clear_faults(&self) {
        lock(&self.shared.failures).clear();
        self.set_stalled(false);
    }

    // ---- internals -------------------------------------------------------------------------

    fn try_create(&self, ns: &str, name: &str, json: &str, raw: bool) -> Result<u64, String> {
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
            set_member(
                &mut meta,
                "resourceVersion",
                json_str(&rv.to_string()),
                &["uid"],
            );
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

    fn try_patch(&self, ns: &str, name: &str, json: &str) -> Result<u64, String> {
        let given = members(json)?;
        let key = etcd_key(ns, name);
        let mut store = lock(&self.shared.store);
        let cur = store
            .current(&key)
            .cloned()
            .ok_or_else(|| format!("no event {key}"))?;
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
        store.rv += 1;
        let rv = store.rv;
        let body: Arc<str> = Arc::from(with_rv(&obj, rv)?);
        store.record(key, "MODIFIED", Some(body.clone()), body);
        Ok(rv)
    }

    fn try_delete(&self, ns: &str, name: &str) -> Result<u64, String> {
        let key = etcd_key(ns, name);
        let mut store = lock(&self.shared.store);
        let cur = store
            .current(&key)
            .cloned()
            .ok_or_else(|| format!("no event {key}"))?;
        store.rv += 1;
        let rv = store.rv;
        let body: Arc<str> = Arc::from(with_rv(&members(&cur)?, rv)?);
        store.record(key, "DELETED", None, body);
        Ok(rv)
    }
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

fn etcd_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

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

/// Re-emits `obj` with `metadata.resourceVersion` set to `rv`.
fn with_rv(obj: &[(String, String)], rv: u64) -> Result<String, String> {
    let mut meta = metadata_of(obj)?;
    set_member(
        &mut meta,
        "resourceVersion",
        json_str(&rv.to_string()),
        &["uid"],
    );
    let mut obj = obj.to_vec();
    set_member(&mut obj, "metadata", emit(&meta), &[]);
    Ok(emit(&obj))
}

// ---------------------------------------------------------------------------------------------
// Raw JSON helpers (order- and byte-preserving)
// ---------------------------------------------------------------------------------------------

/// The top-level members of a JSON object, values as minified raw text, in order.
fn members(text: &str) -> Result<Vec<(String, String)>, String> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(k) = m.next_key::<String>()? {
                let v: &'de RawValue = m.next_value()?;
                out.push((k, minify(v.get())));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let v = serde::Deserializer::deserialize_map(&mut de, V).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

fn members_of(value: &str) -> Result<Vec<(String, String)>, String> {
    members(value)
}

fn emit(members: &[(String, String)]) -> String {
    let mut out = String::with_capacity(
        members
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
            + 2,
    );
    out.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_str(k));
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    out
}

/// Replaces the value of `key`, or inserts it after the last present key of `after` (or at the
/// end).
fn set_member(members: &mut Vec<(String, String)>, key: &str, value: String, after: &[&str]) {
    if let Some(m) = members.iter_mut().find(|(k, _)| k == key) {
        m.1 = value;
        return;
    }
    let pos = members
        .iter()
        .rposition(|(k, _)| after.contains(&k.as_str()))
        .map(|p| p + 1)
        .unwrap_or(members.len());
    members.insert(pos, (key.to_string(), value));
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("string serializes")
}

/// Removes whitespace outside strings (compact input is returned unchanged).
fn minify(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let (mut in_str, mut esc) = (false, false);
    for c in s.chars() {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Go's `json.MarshalIndent(v, "", "  ")` layout for compact JSON text (what kube-apiserver
/// sends to curl-like user agents).
fn pretty(compact: &str) -> String {
    fn newline(out: &mut String, indent: usize) {
        out.push('\n');
        for _ in 0..indent {
            out.push_str("  ");
        }
    }
    let chars: Vec<char> = compact.chars().collect();
    let mut out = String::with_capacity(compact.len() * 2);
    let (mut in_str, mut esc, mut indent, mut i) = (false, false, 0usize, 0usize);
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                out.push(c);
                if chars.get(i) == Some(&close) {
                    out.push(close);
                    i += 1;
                } else {
                    indent += 1;
                    newline(&mut out, indent);
                }
            }
            '}' | ']' => {
                indent = indent.saturating_sub(1);
                newline(&mut out, indent);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, indent);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// `{"kind":"Event","apiVersion":"v1",<stored members>}`.
fn watch_object(body: &str) -> String {
    let inner = body.strip_prefix('{').unwrap_or(body);
    if inner == "}" {
        return r#"{"kind":"Event","apiVersion":"v1"}"#.to_string();
    }
    format!("{{\"kind\":\"Event\",\"apiVersion\":\"v1\",{inner}")
}

fn watch_frame(kind: &str, body: &str) -> String {
    format!(
        "{{\"type\":\"{kind}\",\"object\":{}}}\n",
        watch_object(body)
    )
}

fn bookmark_frame(rv: u64, initial_events_end: bool) -> String {
    let annotations = if initial_events_end {
        r#","annotations":{"k8s.io/initial-events-end":"true"}"#
    } else {
        ""
    };
    format!(
        "{{\"type\":\"BOOKMARK\",\"object\":{{\"kind\":\"Event\",\"apiVersion\":\"v1\",\"metadata\":{{\"resourceVersion\":\"{rv}\",\"creationTimestamp\":null{annotations}}},\"involvedObject\":{{}},\"reportingComponent\":\"\",\"reportingInstance\":\"\",\"source\":{{}},\"firstTimestamp\":null,\"lastTimestamp\":null,\"eventTime\":null}}}}\n"
    )
}

fn continue_token(rv: i64, start: &str) -> String {
    let json = format!(
        "{{\"v\":\"meta.k8s.io/v1\",\"rv\":{rv},\"start\":{}}}",
        json_str(start)
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.as_bytes())
}

/// (rv, start key) of a continue token.
fn decode_continue(token: &str) -> Result<(i64, String), String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| format!("continue key is not valid: {e}"))?;
    #[derive(serde::Deserialize)]
    struct Tok {
        v: String,
        rv: i64,
        start: String,
    }
    let t: Tok =
        serde_json::from_slice(&bytes).map_err(|e| format!("continue key is not valid: {e}"))?;
    if t.v != "meta.k8s.io/v1" {
        return Err("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into());
    }
    if t.rv == 0 || t.rv < -1 {
        return Err("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into());
    }
    Ok((t.rv, t.start))
}

// ---------------------------------------------------------------------------------------------
// Time, ids, realistic events
// ---------------------------------------------------------------------------------------------

fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split_time(t: SystemTime) -> (i64, u32, u32, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    (y, m, day, secs % 86_400, d.subsec_micros())
}

/// `2026-11-26T06:41:46Z`
pub fn rfc3339(t: SystemTime) -> String {
    let (y, m, d, s, _) = split_time(t);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2026-11-26T06:10:00.123456Z`
pub fn rfc3339_micros(t: SystemTime) -> String {
    let (y, m, d, s, us) = split_time(t);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{us:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

static PROCESS_SALT: AtomicU64 = AtomicU64::new(0);

/// Makes every uuid (and so every realistic event) the same in each process that calls this
/// before making any: the benchmark renders the fake's prepared frames again to check the
/// daemon's output. Without it, uuids differ between runs.
pub fn fix_uuid_salt() {
    PROCESS_SALT.store(0x5eed_5eed_5eed_5eed, Ordering::SeqCst);
}

fn uuid(seq: u64, salt: u64) -> String {
    if PROCESS_SALT.load(Ordering::Relaxed) == 0 {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let _ = PROCESS_SALT.compare_exchange(0, t | 1, Ordering::SeqCst, Ordering::SeqCst);
    }
    let base = PROCESS_SALT.load(Ordering::Relaxed) ^ salt.rotate_left(17);
    let a = splitmix(base ^ seq.wrapping_mul(2));
    let b = splitmix(a ^ seq.wrapping_mul(2).wrapping_add(1));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "monitoring",
    "ingress-nginx",
    "cert-manager",
    "payments",
    "checkout",
    "search",
    "batch-jobs",
    "data-pipeline",
    "auth",
    "frontend",
    "logging",
    "istio-system",
    "argocd",
    "ml-training",
    "reporting",
    "billing",
    "staging",
    "team-a",
    "team-b",
    "team-c",
    "canary",
];

const APPS: &[&str] = &[
    "api",
    "web",
    "worker",
    "scheduler",
    "cache",
    "gateway",
    "indexer",
    "exporter",
    "db-proxy",
    "notifier",
    "uploader",
    "cron-sync",
];

/// `(namespace, name)` of the i-th realistic event; names are unique per i.
pub fn realistic_key(i: usize) -> (String, String) {
    let ns = NAMESPACES[i % NAMESPACES.len()];
    let app = APPS[(i / NAMESPACES.len()) % APPS.len()];
    let h = splitmix(i as u64);
    let pod = format!("{app}-{:08x}-{:05x}", (h >> 32) as u32, h & 0xfffff);
    (
        ns.to_string(),
        format!("{pod}.{:016x}", splitmix(h ^ i as u64)),
    )
}

/// About 1 KB of realistic core/v1 Event fields (no metadata) for the i-th event: an
/// involvedObject, reason, a 100-200 byte message, source, timestamps and count.
pub fn realistic_event(i: usize) -> String {
    let (ns, name) = realistic_key(i);
    let pod = name.split('.').next().unwrap_or("pod").to_string();
    let h = splitmix(i as u64 ^ 0xabcdef);
    let container = pod.split('-').next().unwrap_or("app");
    let node = format!(
        "ip-10-{}-{}-{}.eu-west-1.compute.internal",
        h % 16,
        (h >> 8) % 256,
        (h >> 16) % 256
    );
    let secs = 1_795_500_000 + (i as u64 % 86_400) * 7;
    let first = rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
    let last = rfc3339(UNIX_EPOCH + Duration::from_secs(secs + (h % 600)));
    let count = 1 + h % 40;
    let (kind, reason, message) = match h % 6 {
        0 => (
            "Warning",
            "BackOff",
            format!(
                "Back-off restarting failed container {container} in pod {pod}_{ns}({}); last exit code 137 (OOMKilled), restart count {count}",
                uuid(i as u64, 7)
            ),
        ),
        1 => (
            "Normal",
            "Pulled",
            format!(
                "Successfully pulled image \"registry.example.com/{ns}/{container}:v1.{}.{}\" in 2.{}s (2.{}s including waiting). Image size: {} bytes.",
                h % 30,
                h % 7,
                h % 1000,
                h % 1000,
                40_000_000 + h % 90_000_000
            ),
        ),
        2 => (
            "Warning",
            "Unhealthy",
            format!(
                "Readiness probe failed: Get \"http://10.{}.{}.{}:8080/healthz\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                h % 256,
                (h >> 8) % 256,
                (h >> 16) % 256
            ),
        ),
        3 => (
            "Warning",
            "FailedScheduling",
            format!(
                "0/{} nodes are available: {} Insufficient cpu, {} node(s) had untolerated taint {{node-role.kubernetes.io/control-plane: }}. preemption: not helpful.",
                12 + h % 30,
                h % 10,
                3
            ),
        ),
        4 => (
            "Normal",
            "Scheduled",
            format!(
                "Successfully assigned {ns}/{pod} to {node} after waiting for volume binding and topology spread constraints"
            ),
        ),
        _ => (
            "Warning",
            "FailedMount",
            format!(
                "MountVolume.SetUp failed for volume \"{container}-config\" : configmap \"{container}-config-{:x}\" not found; retrying in {}s",
                h & 0xffff,
                h % 120
            ),
        ),
    };
    let uid = uuid(i as u64, 3);
    format!(
        concat!(
            "{{\"involvedObject\":{{\"kind\":\"Pod\",\"namespace\":{ns},\"name\":{pod},\"uid\":\"{uid}\",",
            "\"apiVersion\":\"v1\",\"resourceVersion\":\"{orv}\",\"fieldPath\":\"spec.containers{{{c}}}\"}},",
            "\"reason\":\"{reason}\",\"message\":{message},",
            "\"source\":{{\"component\":\"kubelet\",\"host\":\"{node}\"}},",
            "\"firstTimestamp\":\"{first}\",\"lastTimestamp\":\"{last}\",\"count\":{count},",
            "\"type\":\"{kind}\",\"eventTime\":null,\"reportingComponent\":\"kubelet\",",
            "\"reportingInstance\":\"{node}\"}}"
        ),
        ns = json_str(&ns),
        pod = json_str(&pod),
        uid = uid,
        orv = 1_000_000 + h % 9_000_000,
        c = container,
        reason = reason,
        message = json_str(&message),
        node = node,
        first = first,
        last = last,
        count = count,
        kind = kind,
    )
}

/// The object of prepared watch frames for the j-th realistic event at `rv`, as a watch frame
/// carries it (kind and apiVersion first, then metadata, then `realistic_event(j)`'s fields).
pub fn prepared_object(j: usize, rv: u64, out: &mut String) {
    let (ns, name) = realistic_key(j);
    let created =
        rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_500_000 + (j as u64 % 86_400) * 7));
    let fields = realistic_event(j);
    let _ = write!(
        out,
        "{{\"kind\":\"Event\",\"apiVersion\":\"v1\",\"metadata\":{{\"name\":{},\"namespace\":{},\"uid\":\"{}\",\"resourceVersion\":\"{rv}\",\"creationTimestamp\":\"{created}\"}},{}",
        json_str(&name),
        json_str(&ns),
        uuid(j as u64, 11),
        &fields[1..]
    );
}

/// Whether prepared frame `i` repeats an earlier identity, and which event it carries: even
/// frames are new events (`i / 2`), odd ones repeat a pseudo-random earlier event (same
/// namespace, name and count; a newer resourceVersion), so half of all frames are repeats.
pub fn prepared_frame_event(i: usize) -> (bool, usize) {
    if i.is_multiple_of(2) {
        (false, i / 2)
    } else {
        (true, (splitmix(i as u64) % (i as u64 / 2 + 1)) as usize)
    }
}

/// Appends prepared watch frame `i` (with its `\n`): ADDED for a new event, MODIFIED for a
/// repeat; frame `i` carries resourceVersion `base_rv + 1 + i`.
pub fn prepared_watch_frame(i: usize, base_rv: u64, out: &mut String) {
    let (repeat, j) = prepared_frame_event(i);
    out.push_str(if repeat {
        "{\"type\":\"MODIFIED\",\"object\":"
    } else {
        "{\"type\":\"ADDED\",\"object\":"
    });
    prepared_object(j, base_rv + 1 + i as u64, out);
    out.push_str("}\n");
}

/// `n` prepared frames in chunks of about 256 KiB, each ending at a frame boundary.
pub fn prepared_watch_chunks(n: usize, base_rv: u64) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut chunk = String::with_capacity(260 * 1024);
    for i in 0..n {
        prepared_watch_frame(i, base_rv, &mut chunk);
        if chunk.len() >= 256 * 1024 {
            chunks.push(Bytes::from(std::mem::replace(
                &mut chunk,
                String::with_capacity(260 * 1024),
            )));
        }
    }
    if !chunk.is_empty() {
        chunks.push(Bytes::from(chunk));
    }
    chunks
}

// ---------------------------------------------------------------------------------------------
// TLS material
// ---------------------------------------------------------------------------------------------

fn make_tls(client_auth: ClientAuth) -> TlsMaterial {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fake-apiserver-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    sp.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    sp.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = sp.signed_by(&server_key, &issuer).expect("server cert");

    let client_key = KeyPair::generate().expect("client key");
    let mut cp = CertificateParams::new(Vec::<String>::new()).expect("client params");
    cp.distinguished_name
        .push(DnType::CommonName, "fake-client");
    cp.distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    cp.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = cp.signed_by(&client_key, &issuer).expect("client cert");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca_cert.der().clone()).expect("ca root");
            let vb = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let vb = if client_auth == ClientAuth::Optional {
                vb.allow_unauthenticated()
            } else {
                vb
            };
            builder.with_client_cert_verifier(vb.build().expect("client verifier"))
        }
    };
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let mut config = builder
        .with_single_cert(
            vec![server_cert.der().clone(), ca_cert.der().clone()],
            key_der,
        )
        .expect("server tls config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsMaterial {
        ca_pem: ca_cert.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
        server_config: Arc::new(config),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP serving
// ---------------------------------------------------------------------------------------------

type Body = BoxBody<Bytes, io::Error>;

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    admin: bool,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        let cert = stream.get_ref().1.peer_certificates().is_some();
                        serve(TokioIo::new(stream), shared, cert, admin).await;
                    }
                    Err(_) => {
                        shared.handshake_failures.fetch_add(1, Ordering::SeqCst);
                    }
                },
                None => serve(TokioIo::new(tcp), shared, false, admin).await,
            }
        });
    }
}

async fn serve<I>(io: I, shared: Arc<Shared>, client_cert: bool, admin: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut epoch = shared.conn_epoch.subscribe();
    epoch.borrow_and_update();
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move {
            let resp = if admin {
                handle_admin(&shared, req).await
            } else {
                handle(shared, client_cert, req).await
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
    // A restart closes the connection: dropping it drops the socket.
    tokio::select! {
        _ = conn => {}
        _ = epoch.changed(), if !admin => {}
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json_response(status: u16, body: String, pretty_print: bool) -> Response<Body> {
    let text = if pretty_print {
        pretty(&body)
    } else {
        body + "\n"
    };
    let mut resp = Response::new(full(text));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// A `Status` body; `details`/`metadata` are raw JSON (`None` leaves details out).
fn status_json(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<&str>,
    metadata: &str,
) -> String {
    let details = details
        .map(|d| format!(",\"details\":{d}"))
        .unwrap_or_default();
    format!(
        "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{metadata},\"status\":\"Failure\",\"message\":{},\"reason\":\"{reason}\"{details},\"code\":{code}}}",
        json_str(message)
    )
}

fn parse_bool(s: &str) -> bool {
    matches!(s, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

async fn handle(shared: Arc<Shared>, client_cert: bool, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query = parse_query(&raw_query);
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let rec = RecordedRequest {
        method: req.method().to_string(),
        path: path.clone(),
        raw_query,
        query,
        at: SystemTime::now(),
        since_start: shared.started.elapsed(),
        authorization: header("authorization"),
        user_agent: header("user-agent"),
        status: None,
    };
    let is_watch = rec.is_watch();
    let is_list = rec.is_list();
    let pretty_print = rec.param("pretty").is_some_and(parse_bool)
        || rec
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("curl") || ua.starts_with("Wget"));
    let idx = {
        let mut reqs = lock(&shared.requests);
        reqs.push(rec.clone());
        reqs.len() - 1
    };

    // A stall holds new requests too.
    let mut stall = shared.stall.subscribe();
    let _ = stall.wait_for(|s| !*s).await;

    let resp = route(&shared, client_cert, &rec, is_list, is_watch, pretty_print);
    if let Some(r) = lock(&shared.requests).get_mut(idx) {
        r.status = Some(resp.status().as_u16());
    }
    resp
}

fn take_failure(shared: &Shared, is_list: bool, is_watch: bool) -> Option<Failure> {
    let mut failures = lock(&shared.failures);
    let pos = failures.iter().position(|f| {
        f.remaining > 0
            && match f.target {
                Target::Any => true,
                Target::List => is_list,
                Target::Watch => is_watch,
            }
    })?;
    let f = &mut failures[pos];
    f.remaining -= 1;
    let failure = f.failure;
    if f.remaining == 0 {
        failures.remove(pos);
    }
    Some(failure)
}

fn route(
    shared: &Arc<Shared>,
    client_cert: bool,
    rec: &RecordedRequest,
    is_list: bool,
    is_watch: bool,
    pretty_print: bool,
) -> Response<Body> {
    if let Some(f) = take_failure(shared, is_list, is_watch) {
        return failure_response(f, pretty_print);
    }

    // Authentication.
    let opts = &shared.opts;
    let auth_required = opts.token.is_some() || opts.client_auth != ClientAuth::None;
    match (&rec.authorization, &opts.token) {
        (Some(h), Some(tok)) if h.strip_prefix("Bearer ").map(str::trim) != Some(tok.as_str()) => {
            return json_response(
                401,
                status_json(401, "Unauthorized", "Unauthorized", None, "{}"),
                pretty_print,
            );
        }
        (Some(_), _) => {}
        (None, _) if client_cert || !auth_required => {}
        (None, _) => {
            let verb = if is_watch {
                "watch"
            } else if is_list {
                "list"
            } else {
                "get"
            };
            let message = if rec.path == "/api/v1/events" {
                format!(
                    "events is forbidden: User \"system:anonymous\" cannot {verb} resource \"events\" in API group \"\" at the cluster scope"
                )
            } else {
                format!(
                    "forbidden: User \"system:anonymous\" cannot get path \"{}\"",
                    rec.path
                )
            };
            let details = (rec.path == "/api/v1/events").then_some(r#"{"kind":"events"}"#);
            return json_response(
                403,
                status_json(403, "Forbidden", &message, details, "{}"),
                pretty_print,
            );
        }
    }

    match (rec.method.as_str(), rec.path.as_str()) {
        ("GET", "/api/v1/events") if is_watch => watch_response(shared, rec, pretty_print),
        ("GET", "/api/v1/events") => list_response(shared, rec, pretty_print),
        ("GET", "/version") => json_response(
            200,
            r#"{"major":"1","minor":"36","emulationMajor":"1","emulationMinor":"36","minCompatibilityMajor":"1","minCompatibilityMinor":"35","gitVersion":"v1.36.2","gitCommit":"0000000000000000000000000000000000000000","gitTreeState":"clean","buildDate":"2026-11-01T00:00:00Z","goVersion":"go1.25.3","compiler":"gc","platform":"linux/amd64"}"#.to_string(),
            pretty_print,
        ),
        ("GET", "/healthz" | "/readyz" | "/livez") => {
            let mut r = Response::new(full("ok"));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
            r
        }
        (m, "/api/v1/events") if m != "GET" => json_response(
            405,
            status_json(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", Some("{}"), "{}"),
            pretty_print,
        ),
        _ => json_response(
            404,
            status_json(404, "NotFound", "the server could not find the requested resource", Some("{}"), "{}"),
            pretty_print,
        ),
    }
}

fn failure_response(f: Failure, pretty_print: bool) -> Response<Body> {
    match f {
        Failure::InternalError => json_response(
            500,
            status_json(
                500,
                "InternalError",
                "Internal error occurred: injected by the fake apiserver",
                Some(r#"{"causes":[{"message":"injected by the fake apiserver"}]}"#),
                "{}",
            ),
            pretty_print,
        ),
        Failure::TooManyRequests { retry_after_secs } => {
            let mut r = json_response(
                429,
                status_json(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                    Some(&format!("{{\"retryAfterSeconds\":{retry_after_secs}}}")),
                    "{}",
                ),
                pretty_print,
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after_secs));
            r
        }
        Failure::ServiceUnavailable => json_response(
            503,
            status_json(
                503,
                "ServiceUnavailable",
                "The server is currently unable to handle the request",
                None,
                "{}",
            ),
            pretty_print,
        ),
    }
}

fn bad_request(msg: &str, pretty_print: bool) -> Response<Body> {
    json_response(
        400,
        status_json(400, "BadRequest", msg, None, "{}"),
        pretty_print,
    )
}

fn too_large_rv(rv: u64, current: u64, pretty_print: bool) -> Response<Body> {
    json_response(
        504,
        status_json(
            504,
            "Timeout",
            &format!("Too large resource version: {rv}, current: {current}"),
            Some(
                r#"{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1}"#,
            ),
            "{}",
        ),
        pretty_print,
    )
}

fn list_response(shared: &Shared, rec: &RecordedRequest, pretty_print: bool) -> Response<Body> {
    let limit: usize = match rec.param("limit").filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n > 0 => n as usize,
            Ok(_) => 0,
            Err(_) => return bad_request(&format!("limit: invalid value {s:?}"), pretty_print),
        },
    };
    let store = lock(&shared.store);
    // (snapshot rv, start key, inconsistent)
    let (read_rv, start) = match rec.param("continue").filter(|s| !s.is_empty()) {
        Some(tok) => match decode_continue(tok) {
            Err(e) => return bad_request(&e, pretty_print),
            Ok((-1, start)) => (store.rv, start),
            Ok((rv, start)) => {
                let rv = rv as u64;
                if rv < store.compact_rv {
                    let metadata = format!("{{\"continue\":\"{}\"}}", continue_token(-1, &start));
                    return json_response(
                        410,
                        status_json(410, "Expired", EXPIRED_CONTINUE_MESSAGE, None, &metadata),
                        pretty_print,
                    );
                }
                (rv, start)
            }
        },
        None => {
            let requested = rec
                .param("resourceVersion")
                .filter(|s| !s.is_empty() && *s != "0");
            let exact = rec.param("resourceVersionMatch") == Some("Exact");
            match requested {
                None => (store.rv, String::new()),
                Some(s) => match s.parse::<u64>() {
                    Err(_) => {
                        return bad_request(
                            &format!("resourceVersion: Invalid value: {s:?}"),
                            pretty_print,
                        );
                    }
                    Ok(rv) if rv > store.rv => return too_large_rv(rv, store.rv, pretty_print),
                    Ok(rv) if exact && rv < store.compact_rv => {
                        return json_response(
                            410,
                            status_json(
                                410,
                                "Expired",
                                "The resourceVersion for the provided list is too old.",
                                None,
                                "{}",
                            ),
                            pretty_print,
                        );
                    }
                    Ok(rv) if exact => (rv, String::new()),
                    Ok(_) => (store.rv, String::new()),
                },
            }
        }
    };

    let snapshot = {
        let mut cache = lock(&shared.list_snapshot);
        match &*cache {
            Some((rv, snap)) if *rv == read_rv => snap.clone(),
            _ => {
                let snap: Snapshot = Arc::new(
                    store
                        .keys
                        .iter()
                        .filter_map(|(k, v)| Store::at(v, read_rv).map(|b| (k.clone(), b.clone())))
                        .map(|(k, b)| {
                            let decoded = if shared.opts.encode_lists {
                                serde_json::from_str(&b).ok()
                            } else {
                                None
                            };
                            (k, b, decoded)
                        })
                        .collect(),
                );
                *cache = Some((read_rv, snap.clone()));
                snap
            }
        }
    };
    let from = snapshot.partition_point(|(k, _, _)| k.as_str() < start.as_str());
    let rest = &snapshot[from..];
    let take = if limit == 0 {
        rest.len()
    } else {
        limit.min(rest.len())
    };
    let items = &rest[..take];
    let last_key: Option<&str> = items.last().map(|(k, _, _)| k.as_str());
    let remaining = rest.len() - take;
    let mut out =
        String::with_capacity(items.iter().map(|(_, b, _)| b.len() + 1).sum::<usize>() + 256);
    let _ = write!(
        out,
        "{{\"kind\":\"EventList\",\"apiVersion\":\"v1\",\"metadata\":{{\"resourceVersion\":\"{read_rv}\""
    );
    if remaining > 0 {
        let next = format!("{}\u{0}", last_key.unwrap_or(""));
        let _ = write!(
            out,
            ",\"continue\":\"{}\",\"remainingItemCount\":{remaining}",
            continue_token(read_rv as i64, &next)
        );
    }
    out.push_str("},\"items\":[");
    for (i, (_, stored, decoded)) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match decoded.as_ref().and_then(encode_list_item) {
            Some(encoded) => out.push_str(&encoded),
            None => out.push_str(stored),
        }
    }
    out.push_str("]}");
    drop(store);
    json_response(200, out, pretty_print)
}

/// A list item as kube-apiserver encodes it: the object without `apiVersion` and `kind`.
/// `None` if it cannot be encoded that way; the caller then serves the stored JSON.
fn encode_list_item(event: &k8s_openapi::api::core::v1::Event) -> Option<String> {
    let json = serde_json::to_string(event).ok()?;
    // k8s-openapi writes `apiVersion` and `kind` first.
    let rest = json.strip_prefix(r#"{"apiVersion":"v1","kind":"Event","#)?;
    Some(format!("{{{rest}"))
}

fn watch_response(
    shared: &Arc<Shared>,
    rec: &RecordedRequest,
    pretty_print: bool,
) -> Response<Body> {
    let bookmarks = rec.param("allowWatchBookmarks").is_some_and(parse_bool);
    let send_initial = rec.param("sendInitialEvents").is_some_and(parse_bool);
    let timeout = match rec.param("timeoutSeconds").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => Some(Duration::from_secs(n)),
            Err(_) => {
                return bad_request(
                    &format!("timeoutSeconds: invalid value {s:?}"),
                    pretty_print,
                );
            }
        },
    };
    let rv_param = rec.param("resourceVersion").unwrap_or("");
    let (tx, rx) = mpsc::unbounded_channel();
    let mut initial: Vec<Bytes> = Vec::new();
    {
        let mut store = lock(&shared.store);
        if rv_param.is_empty() || rv_param == "0" || send_initial {
            if !rv_param.is_empty() && rv_param != "0" {
                match rv_param.parse::<u64>() {
                    Ok(rv) if rv > store.rv => return too_large_rv(rv, store.rv, pretty_print),
                    Ok(_) => {}
                    Err(_) => {
                        return bad_request(
                            &format!("resourceVersion: Invalid value: {rv_param:?}"),
                            pretty_print,
                        );
                    }
                }
            }
            let mut chunk = String::new();
            for body in store
                .keys
                .values()
                .filter_map(|v| v.last().and_then(|v| v.body.as_ref()))
            {
                chunk.push_str(&watch_frame("ADDED", body));
                if chunk.len() > 64 * 1024 {
                    initial.push(Bytes::from(std::mem::take(&mut chunk)));
                }
            }
            if send_initial && bookmarks {
                chunk.push_str(&bookmark_frame(store.rv, true));
            }
            if !chunk.is_empty() {
                initial.push(Bytes::from(chunk));
            }
        } else {
            let rv = match rv_param.parse::<u64>() {
                Ok(rv) => rv,
                Err(_) => {
                    return bad_request(
                        &format!("resourceVersion: Invalid value: {rv_param:?}"),
                        pretty_print,
                    );
                }
            };
            if rv < store.compact_rv {
                drop(store);
                return stream_response(
                    vec![Bytes::from(format!("{WATCH_EXPIRED_FRAME}\n"))],
                    None,
                    shared,
                    false,
                    None,
                );
            }
            if rv > store.rv {
                return too_large_rv(rv, store.rv, pretty_print);
            }
            let mut chunk = String::new();
            for e in store.log.iter().filter(|e| e.rv > rv) {
                chunk.push_str(&watch_frame(e.kind, &e.body));
                if chunk.len() > 64 * 1024 {
                    initial.push(Bytes::from(std::mem::take(&mut chunk)));
                }
            }
            if !chunk.is_empty() {
                initial.push(Bytes::from(chunk));
            }
        }
        store.watchers.push(Watcher { tx });
    }
    let prepared = lock(&shared.prepared).take();
    let gated = prepared.is_some();
    if let Some(p) = prepared {
        initial.splice(0..0, p);
    }
    stream_response_gated(initial, Some(rx), shared, bookmarks, timeout, gated)
}

type Out = mpsc::Sender<Result<Frame<Bytes>, io::Error>>;

fn stream_response(
    initial: Vec<Bytes>,
    rx: Option<mpsc::UnboundedReceiver<WatchMsg>>,
    shared: &Arc<Shared>,
    bookmarks: bool,
    timeout: Option<Duration>,
) -> Response<Body> {
    stream_response_gated(initial, rx, shared, bookmarks, timeout, false)
}

/// `gated`: `initial` is the prepared body; wait for `start_prepared` and record when it went.
fn stream_response_gated(
    initial: Vec<Bytes>,
    rx: Option<mpsc::UnboundedReceiver<WatchMsg>>,
    shared: &Arc<Shared>,
    bookmarks: bool,
    timeout: Option<Duration>,
    gated: bool,
) -> Response<Body> {
    let (out_tx, out_rx) = mpsc::channel::<Result<Frame<Bytes>, io::Error>>(8);
    let drops = shared.drop_tx.subscribe();
    let stall = shared.stall.subscribe();
    let interval = shared.opts.bookmark_interval;
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut w = Writer {
            out: out_tx,
            drops,
            stall,
        };
        if gated {
            let mut go = shared.prepared_go.subscribe();
            if go.wait_for(|g| *g).await.is_err() {
                return;
            }
            lock(&shared.prepared_times).first_sent = Some(SystemTime::now());
            for b in initial {
                if w.emit(b).await.is_err() {
                    return;
                }
            }
            lock(&shared.prepared_times).last_sent = Some(SystemTime::now());
            let _ = w
                .run(Vec::new(), rx, &shared, bookmarks, interval, timeout)
                .await;
            return;
        }
        let _ = w
            .run(initial, rx, &shared, bookmarks, interval, timeout)
            .await;
    });
    let stream =
        futures_util::stream::unfold(
            out_rx,
            |mut rx| async move { rx.recv().await.map(|x| (x, rx)) },
        );
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// Why a watch writer stopped early.
enum Stop {
    Gone,
    Dropped,
}

struct Writer {
    out: Out,
    drops: broadcast::Receiver<bool>,
    stall: watch::Receiver<bool>,
}

impl Writer {
    /// Waits until not stalled, then sends; a drop signal wins at any point.
    async fn emit(&mut self, bytes: Bytes) -> Result<(), Stop> {
        loop {
            if !*self.stall.borrow_and_update() {
                break;
            }
            tokio::select! {
                d = self.drops.recv() => return self.dropped(d).await,
                c = self.stall.changed() => if c.is_err() { return Err(Stop::Gone) },
            }
        }
        tokio::select! {
            d = self.drops.recv() => self.dropped(d).await,
            r = self.out.send(Ok(Frame::data(bytes))) => r.map_err(|_| Stop::Gone),
        }
    }

    async fn dropped(&mut self, d: Result<bool, broadcast::error::RecvError>) -> Result<(), Stop> {
        let half = matches!(d, Ok(true));
        if half {
            let frame = bookmark_frame(0, false);
            let half_bytes = Bytes::from(frame.as_bytes()[..frame.len() / 2].to_vec());
            let _ = self.out.send(Ok(Frame::data(half_bytes))).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self
            .out
            .send(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "dropped by fake apiserver",
            )))
            .await;
        Err(Stop::Dropped)
    }

    async fn run(
        &mut self,
        initial: Vec<Bytes>,
        rx: Option<mpsc::UnboundedReceiver<WatchMsg>>,
        shared: &Shared,
        bookmarks: bool,
        interval: Option<Duration>,
        timeout: Option<Duration>,
    ) -> Result<(), Stop> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        for b in initial {
            self.emit(b).await?;
        }
        let Some(mut rx) = rx else {
            return Ok(());
        };
        let mut ticker = interval.map(|i| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + i, i);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let stalled = *self.stall.borrow_and_update();
            tokio::select! {
                d = self.drops.recv() => return self.dropped(d).await,
                c = self.stall.changed() => if c.is_err() { return Err(Stop::Gone) },
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } }, if !stalled => return Ok(()),
                _ = async { match ticker.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } }, if !stalled && bookmarks => {
                    let rv = lock(&shared.store).rv;
                    self.emit(Bytes::from(bookmark_frame(rv, false))).await?;
                }
                m = rx.recv(), if !stalled => {
                    let mut pending = m;
                    while let Some(msg) = pending.take() {
                        match msg {
                            WatchMsg::End => return Ok(()),
                            WatchMsg::Bookmark(rv) => if bookmarks {
                                self.emit(Bytes::from(bookmark_frame(rv, false))).await?;
                            },
                            WatchMsg::Data(first) => {
                                // Coalesce queued frames into one chunk.
                                let mut buf: Option<Vec<u8>> = None;
                                loop {
                                    match rx.try_recv() {
                                        Ok(WatchMsg::Data(more)) if buf.as_ref().map_or(first.len(), Vec::len) < 256 * 1024 => {
                                            buf.get_or_insert_with(|| first.to_vec()).extend_from_slice(&more);
                                        }
                                        Ok(other) => {
                                            pending = Some(other);
                                            break;
                                        }
                                        Err(_) => break,
                                    }
                                }
                                self.emit(buf.map(Bytes::from).unwrap_or(first)).await?;
                            }
                        }
                    }
                    if pending.is_none() && rx.is_closed() && rx.is_empty() {
                        return Err(Stop::Gone);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Admin API (plain HTTP, its own port): drives the same methods as the in-process API
// ---------------------------------------------------------------------------------------------

impl FakeApiServer {
    fn from_shared_ref(shared: &Arc<Shared>) -> AdminHandle {
        AdminHandle {
            shared: shared.clone(),
        }
    }
}

/// Non-owning view used by the admin API (the owning `FakeApiServer` stops the server on drop).
struct AdminHandle {
    shared: Arc<Shared>,
}

async fn handle_admin(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let body = match req.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => return admin_err(400, &e.to_string()),
    };
    let h = FakeApiServer::from_shared_ref(shared);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rv_json = |r: Result<u64, String>, code: u16| match r {
        Ok(rv) => json_response(200, format!("{{\"resourceVersion\":\"{rv}\"}}"), false),
        Err(e) => admin_err(code, &e),
    };
    match (method, parts.as_slice()) {
        (Method::GET, ["fake", "state"]) => {
            let prepared = *lock(&shared.prepared_times);
            let store = lock(&shared.store);
            let watches = store.watchers.iter().filter(|w| !w.tx.is_closed()).count();
            json_response(
                200,
                format!(
                    "{{\"resourceVersion\":\"{}\",\"compactedResourceVersion\":\"{}\",\"events\":{},\"openWatches\":{watches},\"stalled\":{},\"prepared\":{{\"frames\":{},\"bytes\":{},\"firstSentUnixNs\":{},\"lastSentUnixNs\":{}}}}}",
                    store.rv,
                    store.compact_rv,
                    store.live,
                    *shared.stall.borrow(),
                    prepared.frames,
                    prepared.bytes,
                    unix_ns(prepared.first_sent),
                    unix_ns(prepared.last_sent),
                ),
                false,
            )
        }
        (Method::POST, ["fake", "events", ns, name]) => {
            let raw = query.get("raw").is_some_and(|v| parse_bool(v));
            rv_json(h.as_server(|s| s.try_create(ns, name, &body, raw)), 409)
        }
        (Method::POST, ["fake", "realistic"]) => {
            let start: usize = query.get("start").and_then(|s| s.parse().ok()).unwrap_or(0);
            let count: usize = query.get("count").and_then(|s| s.parse().ok()).unwrap_or(1);
            rv_json(
                h.as_server(|s| {
                    let mut rv = s.current_rv();
                    for i in start..start + count {
                        let (ns, name) = realistic_key(i);
                        rv = s.try_create(&ns, &name, &realistic_event(i), false)?;
                    }
                    Ok(rv)
                }),
                409,
            )
        }
        (Method::PATCH, ["fake", "events", ns, name]) => {
            rv_json(h.as_server(|s| s.try_patch(ns, name, &body)), 404)
        }
        (Method::DELETE, ["fake", "events", ns, name]) => {
            rv_json(h.as_server(|s| s.try_delete(ns, name)), 404)
        }
        (Method::GET, ["fake", "events", ns, name]) => match h.as_server(|s| s.object(ns, name)) {
            Some(b) => json_response(200, watch_object(&b), false),
            None => admin_err(404, "no such event"),
        },
        (Method::POST, ["fake", "compact"]) => rv_json(Ok(h.as_server(|s| s.compact())), 500),
        (Method::POST, ["fake", "prepared", "start"]) => {
            h.as_server(|s| s.start_prepared());
            json_response(200, "{}".into(), false)
        }
        (Method::POST, ["fake", "bookmark"]) => {
            h.as_server(|s| s.send_bookmark());
            json_response(200, "{}".into(), false)
        }
        (Method::POST, ["fake", "fault"]) => match admin_fault(&h, &body) {
            Ok(()) => json_response(200, "{}".into(), false),
            Err(e) => admin_err(400, &e),
        },
        (Method::GET, ["fake", "requests"]) => {
            let reqs = lock(&shared.requests);
            let mut out = String::from("[");
            for (i, r) in reqs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let q: Vec<String> = r
                    .query
                    .iter()
                    .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
                    .collect();
                let _ = write!(
                    out,
                    "{{\"method\":{},\"path\":{},\"query\":{{{}}},\"sinceStartMs\":{},\"status\":{},\"list\":{},\"watch\":{}}}",
                    json_str(&r.method),
                    json_str(&r.path),
                    q.join(","),
                    r.since_start.as_millis(),
                    r.status.map_or("null".to_string(), |s| s.to_string()),
                    r.is_list(),
                    r.is_watch()
                );
            }
            out.push(']');
            json_response(200, out, false)
        }
        (Method::DELETE, ["fake", "requests"]) => {
            lock(&shared.requests).clear();
            json_response(200, "{}".into(), false)
        }
        _ => admin_err(404, "unknown admin path"),
    }
}

impl AdminHandle {
    /// Runs `f` against a temporary non-owning `FakeApiServer` view.
    fn as_server<T>(&self, f: impl FnOnce(&FakeApiServer) -> T) -> T {
        let view = FakeApiServer {
            shared: self.shared.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: None,
            tls: None,
            shutdown: None,
            thread: None,
            rt: None,
            accept_task: Mutex::new(None),
        };
        f(&view)
    }
}

fn unix_ns(t: Option<SystemTime>) -> String {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or("null".to_string(), |d| d.as_nanos().to_string())
}

fn admin_err(code: u16, msg: &str) -> Response<Body> {
    json_response(code, format!("{{\"error\":{}}}", json_str(msg)), false)
}

/// `{"fault":"drop_watches","half_frame":true}`, `{"fault":"stall"}`, `{"fault":"unstall"}`,
/// `{"fault":"malformed"[,"line":"..."]}`, `{"fault":"expire_watches"}`,
/// `{"fault":"fail","status":500|429|503,"count":N[,"retry_after":S][,"target":"any|list|watch"]}`,
/// `{"fault":"clear"}`.
fn admin_fault(h: &AdminHandle, body: &str) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let fault = v
        .get("fault")
        .and_then(|f| f.as_str())
        .ok_or("missing \"fault\"")?;
    h.as_server(|s| {
        match fault {
            "drop_watches" => s.drop_watches(
                v.get("half_frame")
                    .and_then(|b| b.as_bool())
                    .unwrap_or(false),
            ),
            "stall" => s.set_stalled(true),
            "unstall" => s.set_stalled(false),
            "malformed" => s.inject_watch_line(
                v.get("line")
                    .and_then(|l| l.as_str())
                    .unwrap_or(MALFORMED_FRAME),
            ),
            "expire_watches" => s.expire_watches(),
            "clear" => s.clear_faults(),
            "fail" => {
                let count = v.get("count").and_then(|c| c.as_u64()).unwrap_or(1) as usize;
                let failure = match v.get("status").and_then(|c| c.as_u64()) {
                    Some(500) => Failure::InternalError,
                    Some(429) => Failure::TooManyRequests {
                        retry_after_secs: v.get("retry_after").and_then(|c| c.as_u64()).unwrap_or(1)
                            as u32,
                    },
                    Some(503) => Failure::ServiceUnavailable,
                    other => return Err(format!("unsupported status {other:?}")),
                };
                let target = match v.get("target").and_then(|t| t.as_str()).unwrap_or("any") {
                    "any" => Target::Any,
                    "list" => Target::List,
                    "watch" => Target::Watch,
                    t => return Err(format!("unknown target {t}")),
                };
                s.fail_next_for(target, count, failure);
            }
            f => return Err(format!("unknown fault {f}")),
        }
        Ok(())
    })
}
