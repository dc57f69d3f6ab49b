//! Steps that scenarios share: start a daemon on a layout (optionally with a NOTIFY_SOCKET and
//! the metrics endpoint), read what it saved, ask its health endpoints, and check that the
//! output holds each of the server's events exactly once.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::daemon::{Daemon, Layout, command, lines, wait_for_lines};
use super::fake_apiserver::FakeApiServer;
use super::notify::Listener;

const T: Duration = Duration::from_secs(30);

/// The daemon with the layout's usual arguments, any flag also in `extra` taking its value
/// there; with `listener`, systemd's NOTIFY_SOCKET too.
pub fn start(layout: &Layout, listener: Option<&Listener>, extra: &[&str]) -> Daemon {
    Daemon::spawn(&mut daemon_command(layout, listener, extra))
}

/// Starts the daemon as [`start`] does (no NOTIFY_SOCKET) and waits until it has written `n`
/// lines and opened its watch: synced and following.
pub fn start_watching(api: &FakeApiServer, layout: &Layout, extra: &[&str], n: usize) -> Daemon {
    let d = start(layout, None, extra);
    wait_for_lines(&layout.out(), n, T, &d);
    wait_for_watch(api, &d);
    d
}

/// The command `start` runs, for a scenario that adds to its environment: the layout's usual
/// arguments, any flag also in `extra` taking its value there.
pub fn daemon_command(layout: &Layout, listener: Option<&Listener>, extra: &[&str]) -> Command {
    let args = args_with(layout, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = command(&args);
    if let Some(l) = listener {
        cmd.env("NOTIFY_SOCKET", &l.path);
    }
    cmd.stdout(Stdio::null());
    cmd
}

/// The metrics endpoint's address, once the daemon has logged it (`--metrics-address
/// 127.0.0.1:0`).
pub fn metrics_addr(d: &Daemon) -> SocketAddr {
    let needle = "serving metrics on http://";
    assert!(d.wait_for_log(needle, T), "{}", d.stderr());
    let log = d.stderr();
    let rest = &log[log.find(needle).unwrap() + needle.len()..];
    rest[..rest.find('/').unwrap()].parse().unwrap()
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    /// The head, lower-cased.
    pub headers: String,
    pub body: String,
}

/// One HTTP/1.1 GET on a fresh connection (the daemon's server is tested, not a client).
pub fn http_request(addr: SocketAddr, path: &str, accept: Option<&str>) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    Answer {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// Waits until a GET of `path` gets an answer that `ok` accepts, and returns it; fails the
/// test with the daemon's log if none does in time.
#[track_caller]
pub fn wait_for_answer(
    addr: SocketAddr,
    path: &str,
    d: &Daemon,
    ok: impl Fn(&Answer) -> bool,
) -> Answer {
    let mut last = None;
    let found = super::daemon::wait_until(T, || {
        let a = http_request(addr, path, None);
        let good = ok(&a);
        last = Some(a);
        good
    });
    let last = last.unwrap();
    assert!(
        found,
        "{path} answered {} {:?}; log:\n{}",
        last.status,
        last.body,
        d.stderr()
    );
    last
}

/// One GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let a = http_request(addr, path, None);
    (a.status, a.body)
}

/// The value of one series in a `/metrics` scrape (`name{labels}` as exposed), or None.
pub fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The resourceVersion the daemon saved, if any.
pub fn saved_version(layout: &Layout) -> Option<String> {
    std::fs::read_to_string(layout.state().join("resource_version"))
        .ok()
        .map(|s| s.lines().next().unwrap_or("").to_string())
}

/// The output holds no line twice, and exactly the lines of `expected` (the server's events
/// as its watch frames carry them, gathered over its whole history).
pub fn assert_each_once(out: &Path, expected: &HashSet<String>, log: &str) {
    let out = lines(out);
    let set: HashSet<&String> = out.iter().collect();
    let doubled = out.len() - set.len();
    assert_eq!(doubled, 0, "{doubled} lines written twice; log:\n{log}");
    let got: HashSet<String> = out.into_iter().collect();
    let lost: Vec<&String> = expected.difference(&got).collect();
    let extra: Vec<&String> = got.difference(expected).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "{} events lost, {} lines not the server's; first lost: {:?}; log:\n{log}",
        lost.len(),
        extra.len(),
        lost.first()
    );
}

/// The server's events now, as the daemon writes them.
pub fn server_lines(api: &FakeApiServer) -> HashSet<String> {
    api.object_lines().into_iter().collect()
}

/// The server compacts its history and sends every open watch the in-stream 410: the version
/// the daemon watches from has expired.
pub fn expire_version(api: &FakeApiServer) {
    api.compact();
    api.expire_watches();
}

/// Waits until the output holds `n` lines and the daemon has said it lists all events again.
pub fn wait_for_relist(layout: &Layout, d: &Daemon, n: usize) {
    wait_for_lines(&layout.out(), n, T, d);
    assert!(
        d.wait_for_log("listing all events again", T),
        "{}",
        d.stderr()
    );
}

/// Gives the daemon a moment to write anything it would write twice, stops it with SIGTERM
/// and returns its log; it must exit 0.
pub fn settle_and_stop(d: Daemon) -> String {
    std::thread::sleep(Duration::from_millis(500));
    d.stop_ok()
}

/// A fake API server started with `opts`, and a layout whose kubeconfig points at it.
pub fn serve(opts: super::fake_apiserver::Options) -> (FakeApiServer, Layout) {
    let api = FakeApiServer::start(opts);
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), super::fake_apiserver::Auth::None);
    (api, layout)
}

/// Server options that send a BOOKMARK to bookmark-asking watches every `every`.
pub fn bookmarking(every: Duration) -> super::fake_apiserver::Options {
    super::fake_apiserver::Options {
        bookmark_interval: Some(every),
        ..Default::default()
    }
}

/// A fake API server over TLS that takes the bearer `token` or a client certificate of its CA.
pub fn tls_server(token: &str) -> FakeApiServer {
    FakeApiServer::start(super::fake_apiserver::Options {
        tls: true,
        token: Some(token.into()),
        client_auth: super::fake_apiserver::ClientAuth::Optional,
        ..Default::default()
    })
}

/// The layout's usual arguments, with any flag also in `extra` taking the value given there
/// (a flag given twice is an error).
pub fn args_with(layout: &Layout, extra: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    for pair in layout.args().chunks(2) {
        if !extra.contains(&pair[0].as_str()) {
            args.extend_from_slice(pair);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Waits until the daemon has its watch open on `api`.
pub fn wait_for_watch(api: &FakeApiServer, d: &Daemon) {
    assert!(api.wait_for_watches(1, T), "{}", d.stderr());
}

/// A named pipe at `path`: a destination whose reader the test controls.
pub fn make_fifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// The lines the daemon writes for the fake's realistic events `range`, in that order.
pub fn realistic_lines(api: &FakeApiServer, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| {
            let (ns, name) = super::fake_apiserver::realistic_key(i);
            api.object_line(&ns, &name)
        })
        .collect()
}

/// A named pipe at `path`, and a thread that opens it for reading (which waits for a writer)
/// and hands it to `read`.
pub fn fifo_with_reader<R: Send + 'static>(
    path: &Path,
    read: impl FnOnce(std::fs::File) -> R + Send + 'static,
) -> std::thread::JoinHandle<R> {
    make_fifo(path);
    let path = path.to_path_buf();
    std::thread::spawn(move || read(std::fs::File::open(path).unwrap()))
}
