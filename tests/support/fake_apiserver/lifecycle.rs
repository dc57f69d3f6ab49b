//! Starting, restarting and stopping the server, and how a client reaches it (URLs, kubeconfig).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use tokio::sync::{broadcast, oneshot, watch};

use super::realistic::{fix_uuid_salt, prepared_watch_chunks};
use super::serve::accept_loop;
use super::store::Store;
use super::tls::make_tls;
use super::{Auth, FakeApiServer, Options, PreparedTimes, Shared, lock};

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
        let tls = opts
            .tls
            .then(|| Arc::new(make_tls(opts.client_auth, opts.expired_cert)));
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
            leases: Mutex::new(BTreeMap::new()),
            lease_refusals: Mutex::new(Vec::new()),
            denied_user: Mutex::new(None),
            streaming_fault: Mutex::new(None),
            held: Mutex::new(Vec::new()),
            empty_watches: Mutex::new(super::EmptyWatches::Off),
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
}
