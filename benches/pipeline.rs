//! End-to-end benchmark: the release daemon against the fake API server, each its own process.
//!
//! Run it with `benches/run.sh` (builds the release binary and the fake, runs the store
//! benchmark, then this). Direct use:
//!
//! ```text
//! cargo bench --bench pipeline -- [--frames N] [--sync-events N] [--restart-events N]
//!     [--idle-secs S] [--store-output FILE] [--keep DIR] [--rows 1,2,2b,5,6,6b,6s,7,8,9]
//!     [--live-events N] [--live-rate R]
//! ```
//!
//! `--rows` runs only the scenarios listed (2 includes 3 and 4, which follow it on the same
//! fake; 7 includes 7b).
//!
//! Scenarios (one table at the end, every figure measured in this run):
//! 1. stream: N watch frames pre-rendered by the fake (`--prepared-watch N`, half repeats),
//!    sent as fast as the socket takes them; next to it the same frames parsed by serde_json
//!    alone in this process;
//! 2. initial sync by paged list, against a fake without streaming lists and without a
//!    per-page cost: `--sync-events` events; next to it a plain HTTP client fetching the same
//!    pages (fetch only; fetch and parse; fetch and write to a file); 2b: the same against a
//!    fake that encodes each item per request (`--encode-lists`);
//! 3. restart: stop, add `--restart-events`, start with the same state;
//! 4. idle: CPU over `--idle-secs` with a bookmark every 10 s;
//! 5. store: the figures of `cargo bench --bench store` (`--store-output`, written by run.sh);
//! 6. initial sync by streaming list (the default): next to it a plain client that streams
//!    the same list and stops at the end bookmark (fetch only); against the fake sending as
//!    fast as the socket takes it, and (6b) at a real server's pace ([`STREAM_COST_US`], one
//!    event per HTTP chunk, each flushed on its own as kube-apiserver does), with the daemon's
//!    read and write calls and context switches per event from /proc; (6s) 6b again under
//!    `strace -f -c`, for the count of each system call per event (counts only);
//! 7. initial sync by paged list when the server refuses streaming lists, against a fake that
//!    charges a real server's cost per page ([`PAGE_COST_MS`] + [`ITEM_COST_US`] per item); next
//!    to it the plain client fetching the same pages, and the plain client at other page sizes
//!    (7b), from which the daemon's page size is chosen;
//! 8. live latency: `--live-events` (5,000) events created one every 1/`--live-rate` s (1,000
//!    a second) against the fake at a real server's pace (each its own chunk); from the
//!    request creating an event to its line in the destination, p50/p90/p99/max, with the
//!    daemon's CPU and calls per event meanwhile.
//! 9. the dedup memory at scale: `--scale-events` events (1,000,000) streamed at a real server's
//!    pace to a daemon whose configured window (`--filter-capacity` × 3 files) is a tenth of
//!    them, then a forced re-list (stop, one event added, the saved version compacted away,
//!    start): lines written again, peak RSS, filter bytes on disk and CPU per event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/support/fake_apiserver/mod.rs"]
mod fake_apiserver;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::value::RawValue;

const INITIAL_RV: u64 = 100;

/// The cost model of a real kube-apiserver's paged list (v1.36, 100,000 events of ~1.2 KB):
/// 4.3–4.5 s with `limit=500` (201 pages) and 1.6–1.8 s with `limit=5000` (20 pages) fit
/// 15 ms per page plus 14 µs per item.
const PAGE_COST_MS: u64 = 15;
const ITEM_COST_US: u64 = 14;
/// The same server streamed the list to its end bookmark in 2.1 s: 21 µs per event.
const STREAM_COST_US: u64 = 21;

/// The daemon's page size.
const PAGE_LIMIT: u32 = kube_event_pipe::source::api::PAGE_LIMIT;

struct Args {
    frames: usize,
    sync_events: usize,
    restart_events: usize,
    idle_secs: u64,
    store_output: Option<PathBuf>,
    keep: Option<PathBuf>,
    /// Scenarios to run (all when None).
    rows: Option<Vec<String>>,
    /// Row 8: live events sent, one every 1/`live_rate` s.
    live_events: usize,
    live_rate: u64,
    /// Row 9: events the server holds.
    scale_events: usize,
}

impl Args {
    fn runs(&self, row: &str) -> bool {
        self.rows
            .as_ref()
            .is_none_or(|r| r.iter().any(|x| x == row))
    }
}

fn args() -> Args {
    let mut a = Args {
        frames: 1_000_000,
        sync_events: 100_000,
        restart_events: 10_000,
        idle_secs: 60,
        store_output: None,
        keep: None,
        rows: None,
        live_events: 5_000,
        live_rate: 1_000,
        scale_events: 1_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--frames" => a.frames = v().parse().expect("--frames"),
            "--sync-events" => a.sync_events = v().parse().expect("--sync-events"),
            "--restart-events" => a.restart_events = v().parse().expect("--restart-events"),
            "--idle-secs" => a.idle_secs = v().parse().expect("--idle-secs"),
            "--store-output" => a.store_output = Some(v().into()),
            "--keep" => a.keep = Some(v().into()),
            "--rows" => a.rows = Some(v().split(',').map(str::to_string).collect()),
            "--live-events" => a.live_events = v().parse().expect("--live-events"),
            "--live-rate" => a.live_rate = v().parse().expect("--live-rate"),
            "--scale-events" => a.scale_events = v().parse().expect("--scale-events"),
            // cargo bench passes --bench.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn binaries() -> (PathBuf, PathBuf) {
    let daemon = std::env::var_os("KEP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kube-event-pipe")));
    let fake = std::env::var_os("KEP_FAKE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_BIN_EXE_kube-event-pipe"))
                .parent()
                .expect("binary dir")
                .join("examples/fake_apiserver")
        });
    for p in [&daemon, &fake] {
        assert!(
            p.exists(),
            "{} is missing: run `cargo build --release --bin kube-event-pipe --example fake_apiserver` (benches/run.sh does)",
            p.display()
        );
    }
    (daemon, fake)
}

// ---------------------------------------------------------------------------------------------
// Processes and /proc
// ---------------------------------------------------------------------------------------------

struct Fake {
    child: Child,
    api: String,
    admin: String,
}

impl Fake {
    fn start(bin: &Path, args: &[&str], kubeconfig: &Path) -> Fake {
        let mut child = Command::new(bin)
            .args(args)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the fake apiserver");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let api = lines.next().expect("api url").expect("api url");
        let admin = lines.next().expect("admin url").expect("admin url");
        Fake { child, api, admin }
    }

    fn admin(&self, method: &str, path: &str) -> String {
        let mut c = HttpClient::connect(&self.admin);
        let (status, body) = c.request(method, path);
        assert_eq!(
            status,
            200,
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
        String::from_utf8(body).expect("utf-8")
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.admin("GET", "/fake/state")).expect("state json")
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(bin: &Path, kubeconfig: &Path, state: &Path, out: &Path, log: &Path) -> Daemon {
        Daemon::start_under(
            &[],
            bin,
            kubeconfig,
            state,
            out,
            log,
            &["--log-level", "WARNING"],
        )
    }

    fn start_with(
        bin: &Path,
        kubeconfig: &Path,
        state: &Path,
        out: &Path,
        log: &Path,
        extra: &[&str],
    ) -> Daemon {
        Daemon::start_under(&[], bin, kubeconfig, state, out, log, extra)
    }

    /// The daemon run by `wrapper` (e.g. `strace -f -c -o FILE --`), or directly if empty.
    fn start_under(
        wrapper: &[&str],
        bin: &Path,
        kubeconfig: &Path,
        state: &Path,
        out: &Path,
        log: &Path,
        extra: &[&str],
    ) -> Daemon {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("daemon log");
        let mut cmd = match wrapper.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", "/nonexistent")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--persistence-path")
            .arg(state)
            .arg("--destination")
            .arg(out)
            .args(["--log-target", "stderr"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kube-event-pipe");
        Daemon { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait (the daemon saves its resourceVersion and flushes the filters).
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "daemon exited with {status}");
        std::mem::forget(self);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// utime + stime of a process, seconds (all its threads, live and exited).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after_comm.split(' ').collect();
    // Fields 14 and 15 of stat(5); after_comm starts at field 3.
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    ticks as f64 / clk_tck()
}

#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    hwm_kib: u64,
    rss_anon_kib: u64,
    rss_file_kib: u64,
}

fn mem(pid: u32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let mut m = Mem::default();
    for line in status.lines() {
        let val = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if line.starts_with("VmHWM:") {
            m.hwm_kib = val();
        } else if line.starts_with("RssAnon:") {
            m.rss_anon_kib = val();
        } else if line.starts_with("RssFile:") {
            m.rss_file_kib = val();
        }
    }
    m
}

/// System calls and context switches of a process, from /proc: read and write calls
/// (`/proc/PID/io`: every read(2)/write(2)-like call, files, sockets and the runtime's eventfd
/// alike) and the context switches of its live threads (a voluntary one is a wait: futex,
/// epoll_wait, a blocking read).
#[derive(Debug, Clone, Copy, Default)]
struct ProcCounts {
    syscr: u64,
    syscw: u64,
    voluntary: u64,
    involuntary: u64,
}

impl ProcCounts {
    fn of(pid: u32) -> ProcCounts {
        let mut c = ProcCounts::default();
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        for line in io.lines() {
            let val = || line.split_whitespace().nth(1).and_then(|v| v.parse().ok());
            if line.starts_with("syscr:") {
                c.syscr = val().unwrap_or(0);
            } else if line.starts_with("syscw:") {
                c.syscw = val().unwrap_or(0);
            }
        }
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
        for t in tasks.flatten() {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for line in status.lines() {
                let val = || -> u64 {
                    line.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                };
                if line.starts_with("voluntary_ctxt_switches:") {
                    c.voluntary += val();
                } else if line.starts_with("nonvoluntary_ctxt_switches:") {
                    c.involuntary += val();
                }
            }
        }
        c
    }

    fn since(self, before: ProcCounts) -> ProcCounts {
        ProcCounts {
            syscr: self.syscr.saturating_sub(before.syscr),
            syscw: self.syscw.saturating_sub(before.syscw),
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            involuntary: self.involuntary.saturating_sub(before.involuntary),
        }
    }

    fn per_event(&self, events: usize) -> String {
        let n = events.max(1) as f64;
        format!(
            "per event: {:.3} read calls, {:.3} write calls (/proc/PID/io), {:.3} voluntary + {:.3} involuntary context switches",
            self.syscr as f64 / n,
            self.syscw as f64 / n,
            self.voluntary as f64 / n,
            self.involuntary as f64 / n,
        )
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn unix_now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

/// Waits for the output to be complete: `target` bytes, or (a bloom false positive can drop
/// an event) no growth for 500 ms once `finished` says the source is done. Returns when the
/// output last grew (wall clock, ns) and the peak RssAnon sampled meanwhile.
fn wait_output(
    path: &Path,
    target: u64,
    pid: u32,
    every: Duration,
    timeout: Duration,
    finished: impl Fn() -> bool,
) -> (u128, u64) {
    let start = Instant::now();
    let mut size = file_size(path);
    let mut grew_ns = unix_now_ns();
    let mut grew = Instant::now();
    let mut peak_anon = 0;
    loop {
        let now = file_size(path);
        if now != size {
            size = now;
            grew_ns = unix_now_ns();
            grew = Instant::now();
        }
        peak_anon = peak_anon.max(mem(pid).rss_anon_kib);
        if size >= target || (grew.elapsed() > Duration::from_millis(500) && finished()) {
            return (grew_ns, peak_anon);
        }
        assert!(
            start.elapsed() < timeout,
            "timed out at {size} of {target} bytes"
        );
        std::thread::sleep(every);
    }
}

/// Checks that the output from `offset` on is the expected lines in order, byte for byte,
/// some possibly left out (bloom false positives). Returns (lines written, expected left out,
/// whether every written line is an expected one).
fn compare_output(
    path: &Path,
    offset: u64,
    expected: impl Iterator<Item = Vec<u8>>,
) -> (u64, u64, bool) {
    let mut f = File::open(path).expect("output");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut out = BufReader::with_capacity(1 << 20, f);
    let mut expected = expected;
    let (mut written, mut skipped) = (0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        if out.read_until(b'\n', &mut line).expect("read") == 0 {
            break;
        }
        written += 1;
        loop {
            match expected.next() {
                Some(e) if e == line => break,
                Some(_) => skipped += 1,
                None => return (written, skipped, false),
            }
        }
    }
    skipped += expected.count() as u64;
    (written, skipped, true)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// A plain HTTP/1.1 client (keep-alive, Content-Length or chunked bodies)
// ---------------------------------------------------------------------------------------------

struct HttpClient {
    host: String,
    reader: BufReader<TcpStream>,
}

impl HttpClient {
    fn connect(url: &str) -> HttpClient {
        let host = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let stream = TcpStream::connect(&host).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        HttpClient {
            host,
            reader: BufReader::with_capacity(256 * 1024, stream),
        }
    }

    fn request(&mut self, method: &str, path: &str) -> (u16, Vec<u8>) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nContent-Length: 0\r\n\r\n",
            self.host
        );
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header line");
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = Some(v.parse::<usize>().expect("length"));
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line).expect("chunk size");
                let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
                let at = body.len();
                body.resize(at + size + 2, 0);
                self.reader.read_exact(&mut body[at..]).expect("chunk");
                body.truncate(at + size);
                if size == 0 {
                    break;
                }
            }
        } else {
            body.resize(length.expect("content-length"), 0);
            self.reader.read_exact(&mut body).expect("body");
        }
        (status, body)
    }
}

/// The `continue` token of a list page, found the cheap way: the metadata comes first.
fn continue_token(page: &[u8]) -> Option<String> {
    let head = &page[..page.len().min(1024)];
    let key = b"\"continue\":\"";
    let at = head.windows(key.len()).position(|w| w == key)? + key.len();
    let end = head[at..].iter().position(|&b| b == b'"')? + at;
    Some(String::from_utf8_lossy(&head[at..end]).into_owned())
}

/// Fetches every page as the daemon does (its page size, following continue tokens), handing
/// each body to `read`, which returns the next page's token; returns the time taken.
fn walk_pages(api: &str, read: impl FnMut(Vec<u8>) -> Option<String>) -> Duration {
    walk_pages_of(api, PAGE_LIMIT, read)
}

fn walk_pages_of(
    api: &str,
    limit: u32,
    mut read: impl FnMut(Vec<u8>) -> Option<String>,
) -> Duration {
    let start = Instant::now();
    let mut c = HttpClient::connect(api);
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            None => format!("/api/v1/events?limit={limit}"),
            Some(t) => format!("/api/v1/events?limit={limit}&continue={t}"),
        };
        let (status, body) = c.request("GET", &path);
        assert_eq!(status, 200, "list page");
        token = read(body);
        if token.is_none() {
            return start.elapsed();
        }
    }
}

/// A client that only fetches: the token is found by a substring search. Keeps the pages only
/// if asked (keeping 100 MB costs page faults that a plain client does not pay).
fn fetch_all_pages(api: &str, keep: bool) -> (Duration, Vec<Vec<u8>>) {
    let mut pages = Vec::new();
    let took = walk_pages(api, |body| {
        let token = continue_token(&body);
        if keep {
            pages.push(body);
        }
        token
    });
    (took, pages)
}

/// The floor for any program that writes what it lists: fetch each page and append its body,
/// as received, to a file (no parsing, no dedup, one write per page). The daemon writes about
/// as many bytes, so it cannot beat this; the gap between the two is its own work.
fn fetch_and_write_all_pages(api: &str, out: &Path) -> Duration {
    let _ = std::fs::remove_file(out);
    let mut file = File::options()
        .create(true)
        .append(true)
        .open(out)
        .expect("floor output");
    let took = walk_pages(api, |body| {
        file.write_all(&body).expect("write the page");
        continue_token(&body)
    });
    drop(file);
    std::fs::remove_file(out).expect("remove the floor output");
    took
}

/// A client that reads the pages properly: each page parsed with serde_json (items as raw
/// values) to find its continue token.
fn fetch_and_parse_all_pages(api: &str) -> (Duration, usize) {
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(borrow, rename = "continue", default)]
        continue_token: Option<&'a str>,
    }
    #[derive(Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        metadata: Meta<'a>,
        #[serde(borrow)]
        items: Vec<&'a RawValue>,
    }
    let mut pages = 0;
    let took = walk_pages(api, |body| {
        let page: Page<'_> = serde_json::from_slice(&body).expect("page");
        std::hint::black_box(&page.items);
        pages += 1;
        page.metadata
            .continue_token
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    });
    (took, pages)
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    _frame_type: &'a str,
    #[serde(borrow)]
    object: &'a RawValue,
}

struct SerdeBaseline {
    parse: Duration,
    frames: usize,
    expected_bytes: u64,
    expected_lines: u64,
}

/// Renders the prepared frames again (untimed, in blocks) and times serde_json parsing them;
/// also works out the output the daemon must write: each new frame's object and `\n`.
fn serde_baseline(n: usize) -> SerdeBaseline {
    fake_apiserver::fix_uuid_salt();
    let mut parse = Duration::ZERO;
    let mut block = String::with_capacity(12 << 20);
    let mut expected_bytes = 0u64;
    let mut expected_lines = 0u64;
    let mut parsed = 0usize;
    let mut i = 0;
    while i < n {
        block.clear();
        let end = (i + 10_000).min(n);
        for f in i..end {
            fake_apiserver::prepared_watch_frame(f, INITIAL_RV, &mut block);
        }
        let t = Instant::now();
        let mut objects: Vec<&RawValue> = Vec::with_capacity(end - i);
        for line in block.as_bytes().split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let frame: Frame<'_> = serde_json::from_slice(line).expect("frame");
            objects.push(std::hint::black_box(frame.object));
        }
        parse += t.elapsed();
        parsed += objects.len();
        for (k, obj) in objects.iter().enumerate() {
            if !fake_apiserver::prepared_frame_event(i + k).0 {
                expected_bytes += obj.get().len() as u64 + 1;
                expected_lines += 1;
            }
        }
        i = end;
    }
    assert_eq!(parsed, n);
    SerdeBaseline {
        parse,
        frames: n,
        expected_bytes,
        expected_lines,
    }
}

struct StreamResult {
    frames: usize,
    lines: u64,
    false_positives: u64,
    exact: bool,
    secs: f64,
    cpu: f64,
    mem: Mem,
    fake_send_secs: f64,
    serde: SerdeBaseline,
}

fn stream(daemon_bin: &Path, fake_bin: &Path, dir: &Path, n: usize) -> StreamResult {
    eprintln!("stream: rendering {n} frames for serde_json and the expected output ...");
    let serde = serde_baseline(n);
    eprintln!(
        "stream: serde_json parsed {n} frames in {:.3}s; starting the fake (it renders them too) ...",
        serde.parse.as_secs_f64()
    );
    let kubeconfig = dir.join("stream.kubeconfig");
    let fake = Fake::start(
        fake_bin,
        &["--port", "0", "--prepared-watch", &n.to_string()],
        &kubeconfig,
    );
    let state = dir.join("stream-state");
    let out = dir.join("stream-events.log");
    let d = Daemon::start(
        daemon_bin,
        &kubeconfig,
        &state,
        &out,
        &dir.join("stream-daemon.log"),
    );
    // The daemon lists (nothing), then opens the watch that holds the prepared body.
    let t = Instant::now();
    while fake.state()["openWatches"].as_u64() != Some(1) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon did not open a watch"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu0 = cpu_secs(d.pid());
    fake.admin("POST", "/fake/prepared/start");
    let (end_ns, _) = wait_output(
        &out,
        serde.expected_bytes,
        d.pid(),
        Duration::from_millis(1),
        Duration::from_secs(600),
        || !fake.state()["prepared"]["lastSentUnixNs"].is_null(),
    );
    let cpu = cpu_secs(d.pid()) - cpu0;
    let m = mem(d.pid());
    let st = fake.state();
    let first: u128 = st["prepared"]["firstSentUnixNs"]
        .as_u64()
        .expect("first sent") as u128;
    let last: u128 = st["prepared"]["lastSentUnixNs"].as_u64().unwrap_or(0) as u128;
    std::thread::sleep(Duration::from_millis(300));
    d.stop();
    let expected = (0..n).filter_map(|i| {
        let (repeat, j) = fake_apiserver::prepared_frame_event(i);
        (!repeat).then(|| {
            let mut s = String::new();
            fake_apiserver::prepared_object(j, INITIAL_RV + 1 + i as u64, &mut s);
            s.push('\n');
            s.into_bytes()
        })
    });
    let (lines, false_positives, exact) = compare_output(&out, 0, expected);
    let _ = std::fs::remove_file(&out);
    StreamResult {
        frames: n,
        lines,
        false_positives,
        exact,
        secs: (end_ns - first) as f64 / 1e9,
        cpu,
        mem: m,
        fake_send_secs: last.saturating_sub(first) as f64 / 1e9,
        serde,
    }
}

struct SyncResult {
    events: usize,
    pages: usize,
    sync: ColdSync,
    plain_secs: f64,
    plain_parse_secs: f64,
    plain_write_secs: f64,
}

struct RestartResult {
    secs: f64,
    lists: usize,
    watches: usize,
    lines: u64,
    cpu: f64,
}

struct IdleResult {
    secs: u64,
    cpu: f64,
    mem: Mem,
}

/// The initial sync of every event `fake` holds, by a daemon with fresh state, next to the
/// plain clients; returns the daemon still running (watching), its state directory and output.
fn measure_sync(
    daemon_bin: &Path,
    fake: &Fake,
    kubeconfig: &Path,
    dir: &Path,
    events: usize,
    tag: &str,
) -> (SyncResult, Daemon, PathBuf, PathBuf, PathBuf) {
    // Warm-up fetch (builds the fake's list snapshot); it also gives the expected output.
    let (_, pages) = fetch_all_pages(&fake.api, true);
    let expected = expected_from_pages(&pages, events);
    let items = expected.len();
    assert_eq!(
        items, events,
        "the fake listed a different number of events"
    );
    let mut plain = f64::MAX;
    let mut plain_parse = f64::MAX;
    let mut plain_write = f64::MAX;
    for _ in 0..3 {
        plain_write = plain_write.min(
            fetch_and_write_all_pages(&fake.api, &dir.join(format!("{tag}-floor.out")))
                .as_secs_f64(),
        );
        let (t, _) = fetch_all_pages(&fake.api, false);
        plain = plain.min(t.as_secs_f64());
        let (t, p) = fetch_and_parse_all_pages(&fake.api);
        assert_eq!(p, pages.len());
        plain_parse = plain_parse.min(t.as_secs_f64());
    }
    drop(pages);

    let (c, d, state, out, log) = start_sync(daemon_bin, fake, kubeconfig, dir, tag, expected);
    let sync = SyncResult {
        events: items,
        pages: items.div_ceil(PAGE_LIMIT as usize),
        sync: c,
        plain_secs: plain,
        plain_parse_secs: plain_parse,
        plain_write_secs: plain_write,
    };

    (sync, d, state, out, log)
}

/// The lines the daemon writes for listed pages: each item with kind and apiVersion put first.
fn expected_from_pages(pages: &[Vec<u8>], events: usize) -> Vec<Vec<u8>> {
    #[derive(Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        items: Vec<&'a RawValue>,
    }
    let mut expected: Vec<Vec<u8>> = Vec::with_capacity(events);
    for p in pages {
        let page: Page<'_> = serde_json::from_slice(p).expect("page");
        for it in page.items {
            let rest = &it.get()[1..];
            expected
                .push(format!("{{\"kind\":\"Event\",\"apiVersion\":\"v1\",{rest}\n").into_bytes());
        }
    }
    expected
}

/// Starts a fake holding `events` events, with a kubeconfig `<name>.kubeconfig` in `dir`.
fn start_fake(
    fake_bin: &Path,
    dir: &Path,
    name: &str,
    events: usize,
    extra: &[&str],
) -> (Fake, PathBuf) {
    eprintln!("{name}: starting the fake with {events} events {extra:?} ...");
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    let events = events.to_string();
    let mut args = vec!["--port", "0", "--events", &events];
    args.extend_from_slice(extra);
    (Fake::start(fake_bin, &args, &kubeconfig), kubeconfig)
}

/// The initial sync again, against a fake that encodes each listed item per request
/// (`--encode-lists`), as kube-apiserver does, rather than copying stored JSON.
fn encoded_sync(daemon_bin: &Path, fake_bin: &Path, dir: &Path, a: &Args) -> SyncResult {
    let (fake, kubeconfig) = start_fake(
        fake_bin,
        dir,
        "encoded",
        a.sync_events,
        &[
            "--encode-lists",
            "--no-watch-list",
            "--list-page-delay-ms",
            "0",
        ],
    );
    let (sync, d, _, out, _) = measure_sync(
        daemon_bin,
        &fake,
        &kubeconfig,
        dir,
        a.sync_events,
        "encoded",
    );
    d.stop();
    let _ = std::fs::remove_file(&out);
    sync
}

fn sync_restart_idle(
    daemon_bin: &Path,
    fake_bin: &Path,
    dir: &Path,
    a: &Args,
) -> (SyncResult, RestartResult, IdleResult) {
    let (fake, kubeconfig) = start_fake(
        fake_bin,
        dir,
        "sync",
        a.sync_events,
        &[
            "--bookmark-interval-ms",
            "10000",
            "--no-watch-list",
            "--list-page-delay-ms",
            "0",
        ],
    );
    let (sync, d, state, out, log) =
        measure_sync(daemon_bin, &fake, &kubeconfig, dir, a.sync_events, "sync");

    // Restart.
    eprintln!("restart: stopping, adding {} events ...", a.restart_events);
    d.stop();
    fake.admin(
        "POST",
        &format!(
            "/fake/realistic?start={}&count={}",
            a.sync_events, a.restart_events
        ),
    );
    fake.admin("DELETE", "/fake/requests");
    let before = file_size(&out);
    let t0 = unix_now_ns();
    let d = Daemon::start(daemon_bin, &kubeconfig, &state, &out, &log);
    // Restart's new events are ~1 KB each; the exact size is not known here, so wait for
    // the output to settle.
    let (done, _) = wait_output(
        &out,
        u64::MAX,
        d.pid(),
        Duration::from_millis(1),
        Duration::from_secs(120),
        || file_size(&out) > before,
    );
    let secs = (done - t0) as f64 / 1e9;
    let cpu = cpu_secs(d.pid());
    let reqs: serde_json::Value =
        serde_json::from_str(&fake.admin("GET", "/fake/requests")).expect("requests");
    let reqs = reqs.as_array().expect("array");
    let mut f = File::open(&out).expect("output");
    f.seek(SeekFrom::Start(before)).expect("seek");
    let lines = BufReader::new(f).split(b'\n').count() as u64;
    let restart = RestartResult {
        secs,
        lists: reqs
            .iter()
            .filter(|r| r["list"] == true || r["query"]["sendInitialEvents"] == "true")
            .count(),
        watches: reqs.iter().filter(|r| r["watch"] == true).count(),
        lines,
        cpu,
    };

    // Idle.
    eprintln!("idle: {} s ...", a.idle_secs);
    fake.admin("POST", "/fake/compact");
    std::thread::sleep(Duration::from_secs(2));
    let cpu0 = cpu_secs(d.pid());
    std::thread::sleep(Duration::from_secs(a.idle_secs));
    let cpu = cpu_secs(d.pid()) - cpu0;
    let idle = IdleResult {
        secs: a.idle_secs,
        cpu,
        mem: mem(d.pid()),
    };
    d.stop();
    let _ = std::fs::remove_file(&out);
    (sync, restart, idle)
}

const STREAMING_LIST: &str = "/api/v1/events?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion=";

/// A plain client of a streaming list: reads the chunked body until the end bookmark and
/// hangs up (fetch only: the bookmark is found by a substring search in each chunk). With
/// `keep`, returns the body read.
fn stream_until_bookmark(api: &str, keep: bool) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let host = api.trim_start_matches("http://").trim_end_matches('/');
    let stream = TcpStream::connect(host).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let req = format!(
        "GET {STREAMING_LIST} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n"
    );
    reader.get_mut().write_all(req.as_bytes()).expect("send");
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    assert!(line.contains(" 200 "), "streaming list: {line}");
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        if line.trim_end().is_empty() {
            break;
        }
    }
    let end = memchr::memmem::Finder::new(b"\"k8s.io/initial-events-end\"");
    let mut kept = Vec::new();
    let mut chunk = Vec::with_capacity(128 * 1024);
    // The marker may straddle two chunks: search the tail of the previous one too.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("chunk size");
        let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
        assert!(size > 0, "the streaming list ended before its end bookmark");
        chunk.resize(size + 2, 0);
        reader.read_exact(&mut chunk).expect("chunk");
        chunk.truncate(size);
        if keep {
            kept.extend_from_slice(&chunk);
        }
        tail.extend_from_slice(&chunk[..chunk.len().min(64)]);
        if end.find(&tail).is_some() || end.find(&chunk).is_some() {
            return (start.elapsed(), kept);
        }
        tail.clear();
        tail.extend_from_slice(&chunk[chunk.len().saturating_sub(64)..]);
    }
}

/// The lines the daemon writes for a streaming list: each initial object, as sent.
fn expected_from_stream(body: &[u8]) -> Vec<Vec<u8>> {
    let mut expected = Vec::new();
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let frame: Frame<'_> = serde_json::from_slice(line).expect("frame");
        if frame._frame_type == "BOOKMARK" {
            break;
        }
        let mut l = frame.object.get().as_bytes().to_vec();
        l.push(b'\n');
        expected.push(l);
    }
    expected
}

struct ColdSync {
    lines: u64,
    false_positives: u64,
    exact: bool,
    secs: f64,
    cpu: f64,
    fake_cpu: f64,
    mem: Mem,
    peak_anon_kib: u64,
    /// Streaming lists and list pages the daemon requested.
    streaming_lists: usize,
    pages: usize,
    /// The daemon's system calls and context switches from its start to the end of the sync.
    counts: ProcCounts,
}

/// A daemon with fresh state syncs everything `fake` holds; `expected` are its lines. The
/// daemon is left running (watching), with its state directory, output and log.
fn start_sync(
    daemon_bin: &Path,
    fake: &Fake,
    kubeconfig: &Path,
    dir: &Path,
    tag: &str,
    expected: Vec<Vec<u8>>,
) -> (ColdSync, Daemon, PathBuf, PathBuf, PathBuf) {
    let expected_bytes: u64 = expected.iter().map(|l| l.len() as u64).sum();
    let state = dir.join(format!("{tag}-state"));
    let out = dir.join(format!("{tag}-events.log"));
    let log = dir.join(format!("{tag}-daemon.log"));
    fake.admin("DELETE", "/fake/requests");
    let requests = || -> Vec<serde_json::Value> {
        let r: serde_json::Value =
            serde_json::from_str(&fake.admin("GET", "/fake/requests")).expect("requests");
        r.as_array().expect("array").clone()
    };
    let fake_cpu0 = cpu_secs(fake.child.id());
    let t0 = unix_now_ns();
    let d = Daemon::start(daemon_bin, kubeconfig, &state, &out, &log);
    // Done listing: a watch (or the streaming list going on as one) was answered.
    let (done, peak_anon) = wait_output(
        &out,
        expected_bytes,
        d.pid(),
        Duration::from_millis(2),
        Duration::from_secs(300),
        || {
            requests()
                .iter()
                .any(|r| r["watch"] == true && r["status"] == 200)
        },
    );
    let secs = (done - t0) as f64 / 1e9;
    let cpu = cpu_secs(d.pid());
    let counts = ProcCounts::of(d.pid());
    let fake_cpu = cpu_secs(fake.child.id()) - fake_cpu0;
    let m = mem(d.pid());
    let reqs = requests();
    let (lines, false_positives, exact) = compare_output(&out, 0, expected.into_iter());
    let sync = ColdSync {
        lines,
        false_positives,
        exact,
        secs,
        cpu,
        fake_cpu,
        mem: m,
        peak_anon_kib: peak_anon,
        streaming_lists: reqs
            .iter()
            .filter(|r| r["query"]["sendInitialEvents"] == "true")
            .count(),
        pages: reqs.iter().filter(|r| r["list"] == true).count(),
        counts,
    };
    (sync, d, state, out, log)
}

/// [`start_sync`], then the daemon is stopped and its output removed.
fn cold_sync(
    daemon_bin: &Path,
    fake: &Fake,
    kubeconfig: &Path,
    dir: &Path,
    tag: &str,
    expected: Vec<Vec<u8>>,
) -> ColdSync {
    let (sync, d, _, out, _) = start_sync(daemon_bin, fake, kubeconfig, dir, tag, expected);
    d.stop();
    let _ = std::fs::remove_file(&out);
    sync
}

struct StreamingSync {
    events: usize,
    sync: ColdSync,
    plain_secs: f64,
}

/// Row 6: the initial sync by streaming list, next to a plain client streaming the same list;
/// `pace_us` per event as the fake's cost (6b), or none.
fn streaming_sync(
    daemon_bin: &Path,
    fake_bin: &Path,
    dir: &Path,
    a: &Args,
    pace_us: u64,
) -> StreamingSync {
    let pace = pace_us.to_string();
    let tag = format!("streaming-{pace_us}us");
    let (fake, kubeconfig) = start_fake(
        fake_bin,
        dir,
        &tag,
        a.sync_events,
        &["--initial-event-delay-us", &pace],
    );
    let (_, body) = stream_until_bookmark(&fake.api, true);
    let expected = expected_from_stream(&body);
    drop(body);
    assert_eq!(
        expected.len(),
        a.sync_events,
        "the fake streamed another number of events"
    );
    let plain = (0..3)
        .map(|_| stream_until_bookmark(&fake.api, false).0.as_secs_f64())
        .fold(f64::MAX, f64::min);
    eprintln!("streaming: plain client {plain:.3}s; the daemon ...");
    let sync = cold_sync(daemon_bin, &fake, &kubeconfig, dir, &tag, expected);
    StreamingSync {
        events: a.sync_events,
        sync,
        plain_secs: plain,
    }
}

struct PagedFallback {
    events: usize,
    sync: ColdSync,
    plain_secs: f64,
    /// (page size, plain client fetch-only seconds).
    sizes: Vec<(u32, f64)>,
}

/// Row 7: a server that refuses streaming lists and charges a real server's cost per page.
fn paged_fallback(daemon_bin: &Path, fake_bin: &Path, dir: &Path, a: &Args) -> PagedFallback {
    let page_ms = PAGE_COST_MS.to_string();
    let item_us = ITEM_COST_US.to_string();
    let (fake, kubeconfig) = start_fake(
        fake_bin,
        dir,
        "fallback",
        a.sync_events,
        &[
            "--no-watch-list",
            "--list-page-delay-ms",
            &page_ms,
            "--list-item-delay-us",
            &item_us,
        ],
    );
    let (_, pages) = fetch_all_pages(&fake.api, true);
    let expected = expected_from_pages(&pages, a.sync_events);
    drop(pages);
    let plain = (0..2)
        .map(|_| fetch_all_pages(&fake.api, false).0.as_secs_f64())
        .fold(f64::MAX, f64::min);
    let mut sizes = Vec::new();
    for limit in [500, 1000, 2000, 5000] {
        let t = walk_pages_of(&fake.api, limit, |b| continue_token(&b));
        sizes.push((limit, t.as_secs_f64()));
    }
    eprintln!("fallback: plain client {plain:.3}s, page sizes {sizes:?}; the daemon ...");
    let sync = cold_sync(daemon_bin, &fake, &kubeconfig, dir, "fallback", expected);
    PagedFallback {
        events: a.sync_events,
        sync,
        plain_secs: plain,
        sizes,
    }
}

/// The daemon's columns of a cold-sync row.
fn cold_sync_cells(c: &ColdSync) -> String {
    format!(
        "{:.3} s from start; {:.2} CPU s (the fake server meanwhile: {:.2} CPU s); VmHWM {:.1} MiB (RssAnon {:.1} now, sampled peak {:.1}; RssFile {:.1})",
        c.secs,
        c.cpu,
        c.fake_cpu,
        mib(c.mem.hwm_kib),
        mib(c.mem.rss_anon_kib),
        mib(c.peak_anon_kib),
        mib(c.mem.rss_file_kib),
    )
}

/// The lines of `cargo bench --bench store` output that hold figures.
fn store_rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("store output");
    text.lines()
        .filter(|l| l.contains("ns/op") || l.contains("false positives"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, v)| v.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "nproc {nproc}, CPU {model}, memory {:.1} GiB, Linux {}, load average at the end {}",
        total_kib as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// One row of the table for an initial sync.
fn sync_row(num: &str, label: &str, sy: &SyncResult) {
    let c = &sy.sync;
    println!(
        "| {num} | {label}, {} events in {} pages of {PAGE_LIMIT} | {} | plain HTTP client, same pages (best of 3 each): {:.3} s fetch only; {:.3} s fetch + serde_json page parse; {:.3} s fetch + write each page to a file | {:.2}× fetch only; {:.2}× fetch + parse; {:.2}× fetch + write | {} lines ({} left out as bloom false positives), byte-exact and in order: {} |",
        sy.events,
        sy.pages,
        cold_sync_cells(c),
        sy.plain_secs,
        sy.plain_parse_secs,
        sy.plain_write_secs,
        c.secs / sy.plain_secs,
        c.secs / sy.plain_parse_secs,
        c.secs / sy.plain_write_secs,
        c.lines,
        c.false_positives,
        c.exact,
    );
}

/// Row 6s: the system calls of a streaming-list sync at the real server's pace, counted by
/// `strace -f -c`. strace slows every call down, so these are counts only; the times and CPU
/// are row 6b's.
struct TracedSync {
    events: usize,
    /// (system call, calls), most frequent first.
    calls: Vec<(String, u64)>,
    total: u64,
}

fn have_strace() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The children of a process (the daemon under strace).
fn children_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        if after.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            found.push(child);
        }
    }
    found
}

fn traced_sync(daemon_bin: &Path, fake_bin: &Path, dir: &Path, a: &Args) -> Option<TracedSync> {
    if !have_strace() {
        return None;
    }
    let pace = STREAM_COST_US.to_string();
    let (fake, kubeconfig) = start_fake(
        fake_bin,
        dir,
        "traced",
        a.sync_events,
        &["--initial-event-delay-us", &pace],
    );
    let (_, body) = stream_until_bookmark(&fake.api, true);
    let expected = expected_from_stream(&body);
    drop(body);
    let expected_bytes: u64 = expected.iter().map(|l| l.len() as u64).sum();
    let state = dir.join("traced-state");
    let out = dir.join("traced-events.log");
    let log = dir.join("traced-daemon.log");
    let summary = dir.join("traced-strace.txt");
    let summary_arg = summary.display().to_string();
    eprintln!("traced: the daemon under strace -f -c ...");
    let mut d = Daemon::start_under(
        &["strace", "-f", "-c", "-o", &summary_arg, "--"],
        daemon_bin,
        &kubeconfig,
        &state,
        &out,
        &log,
        &["--log-level", "WARNING"],
    );
    wait_output(
        &out,
        expected_bytes,
        d.pid(),
        Duration::from_millis(5),
        Duration::from_secs(300),
        || false,
    );
    for pid in children_of(d.pid()) {
        // SAFETY: kill(2) of the daemon strace started for us.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    let _ = d.child.wait();
    let _ = std::fs::remove_file(&out);
    let text = std::fs::read_to_string(&summary).expect("strace summary");
    let mut calls = Vec::new();
    let mut total = 0;
    let mut rules = 0;
    for line in text.lines() {
        if line.starts_with("------") {
            rules += 1;
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let n: u64 = f[3].parse().unwrap_or(0);
        match rules {
            1 => calls.push((f[f.len() - 1].to_string(), n)),
            2 => total = n,
            _ => {}
        }
    }
    calls.sort_by_key(|c| std::cmp::Reverse(c.1));
    Some(TracedSync {
        events: a.sync_events,
        calls,
        total,
    })
}

/// Row 8: live events, one every 1/rate s, each its own chunk (the fake at the real server's
/// pace flushes every event on its own); how long from the request that creates one to its
/// line in the destination (seen through inotify on the file).
struct LiveLatency {
    events: usize,
    rate: u64,
    /// Seconds: p50, p90, p99, max.
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    cpu: f64,
    counts: ProcCounts,
}

fn live_latency(daemon_bin: &Path, fake_bin: &Path, dir: &Path, a: &Args) -> LiveLatency {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let pace = STREAM_COST_US.to_string();
    let (fake, kubeconfig) = start_fake(
        fake_bin,
        dir,
        "live",
        0,
        &["--initial-event-delay-us", &pace],
    );
    let state = dir.join("live-state");
    let out = dir.join("live-events.log");
    let log = dir.join("live-daemon.log");
    let d = Daemon::start(daemon_bin, &kubeconfig, &state, &out, &log);
    let t = Instant::now();
    while fake.state()["openWatches"].as_u64().unwrap_or(0) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon never watched"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    let n = a.live_events;
    let names: HashMap<String, usize> = (0..n)
        .map(|i| (fake_apiserver::realistic_key(i).1, i))
        .collect();
    let base = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let cpu0 = cpu_secs(d.pid());
    let counts0 = ProcCounts::of(d.pid());
    eprintln!("live: {n} events at {}/s ...", a.live_rate);
    let tail = {
        let sent = sent.clone();
        let out = out.clone();
        std::thread::spawn(move || tail_latencies(&out, &names, &sent, base, n))
    };
    let mut client = HttpClient::connect(&fake.admin);
    let every = Duration::from_nanos(1_000_000_000 / a.live_rate.max(1));
    for (i, at) in sent.iter().enumerate() {
        let due = base + every * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        at.store(base.elapsed().as_nanos() as u64, Ordering::SeqCst);
        let (status, body) = client.request("POST", &format!("/fake/realistic?start={i}&count=1"));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let mut lat = tail.join().expect("tail thread");
    let cpu = cpu_secs(d.pid()) - cpu0;
    let counts = ProcCounts::of(d.pid()).since(counts0);
    d.stop();
    assert_eq!(lat.len(), n, "not every live event was written");
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    LiveLatency {
        events: n,
        rate: a.live_rate,
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        max: lat[lat.len() - 1],
        cpu,
        counts,
    }
}

/// Follows `out` until `n` known events are in it; for each, the seconds from its `sent`
/// time (ns since `base`) to the moment its line was read.
fn tail_latencies(
    out: &Path,
    names: &std::collections::HashMap<String, usize>,
    sent: &[std::sync::atomic::AtomicU64],
    base: Instant,
    n: usize,
) -> Vec<f64> {
    // SAFETY: inotify_init1 takes flags only.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(fd >= 0, "inotify_init1");
    let c = std::ffi::CString::new(out.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid descriptor and NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_MODIFY) };
    assert!(wd >= 0, "inotify_add_watch {}", out.display());
    let mut file = File::open(out).expect("output");
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut lat = Vec::with_capacity(n);
    let key = b"\"name\":\"";
    let deadline = Instant::now() + Duration::from_secs(60 + n as u64 / 100);
    while lat.len() < n && Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 100) } > 0 {
            let mut ev = [0u8; 4096];
            // SAFETY: reads into `ev`.
            unsafe { libc::read(fd, ev.as_mut_ptr().cast(), ev.len()) };
        }
        loop {
            let got = file.read(&mut buf).expect("read output");
            if got == 0 {
                break;
            }
            let seen = base.elapsed().as_nanos() as u64;
            pending.extend_from_slice(&buf[..got]);
            let mut start = 0;
            while let Some(nl) = memchr::memchr(b'\n', &pending[start..]) {
                let line = &pending[start..start + nl];
                if let Some(k) = memchr::memmem::find(line, key) {
                    let rest = &line[k + key.len()..];
                    let end = memchr::memchr(b'"', rest).unwrap_or(0);
                    if let Some(&i) = std::str::from_utf8(&rest[..end])
                        .ok()
                        .and_then(|name| names.get(name))
                    {
                        let at = sent[i].load(std::sync::atomic::Ordering::SeqCst);
                        lat.push(seen.saturating_sub(at) as f64 / 1e9);
                    }
                }
                start += nl + 1;
            }
            pending.drain(..start);
        }
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    lat
}

struct AtScale {
    events: usize,
    capacity: u64,
    sync_secs: f64,
    sync_cpu: f64,
    sync_lines: u64,
    relist_secs: f64,
    relist_cpu: f64,
    /// Lines the re-list wrote, the one event added while stopped included.
    relist_lines: u64,
    hwm_kib: u64,
    filter_bytes: u64,
    filter_files: usize,
}

fn count_lines(path: &Path) -> u64 {
    let mut n = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let Ok(mut f) = File::open(path) else {
        return 0;
    };
    while let Ok(k) = f.read(&mut buf) {
        if k == 0 {
            break;
        }
        n += memchr_count(&buf[..k]);
    }
    n
}

fn memchr_count(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// Bytes and number of `*.bloom` files in a state directory.
fn filter_files(state: &Path) -> (u64, usize) {
    std::fs::read_dir(state)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".bloom"))
                .fold((0, 0), |(b, n), e| {
                    (b + e.metadata().map_or(0, |m| m.len()), n + 1)
                })
        })
        .unwrap_or((0, 0))
}

/// Waits for the daemon's log to say `needle` `count` times.
fn wait_log(log: &Path, needle: &str, count: usize, timeout: Duration) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "no {needle:?} in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Row 9: a server holding ten times the configured window, synced then re-listed, at a real
/// server's pace.
fn at_scale(daemon_bin: &Path, fake_bin: &Path, dir: &Path, a: &Args) -> AtScale {
    let n = a.scale_events;
    let capacity = (n as u64 / 30).max(1);
    let pace = STREAM_COST_US.to_string();
    let (fake, kubeconfig) = start_fake(
        fake_bin,
        dir,
        "scale",
        n,
        &["--initial-event-delay-us", &pace],
    );
    let state = dir.join("scale-state");
    let out = dir.join("scale-events.log");
    let log = dir.join("scale-daemon.log");
    let cap = capacity.to_string();
    let extra = [
        "--log-level",
        "INFO",
        "--filter-capacity",
        &cap,
        "--batch-count",
        "3",
    ];
    // Both builds log this when a list is written and the watch goes on from its end.
    let listed = "watching from here";
    eprintln!("scale: {n} events, filter capacity {capacity} x 3 files; syncing ...");
    let t = Instant::now();
    let d = Daemon::start_with(daemon_bin, &kubeconfig, &state, &out, &log, &extra);
    wait_log(&log, listed, 1, Duration::from_secs(1800));
    let sync_secs = t.elapsed().as_secs_f64();
    let sync_cpu = cpu_secs(d.pid());
    let sync_lines = count_lines(&out);
    let hwm_sync = mem(d.pid()).hwm_kib;
    d.stop();
    fake.admin("POST", &format!("/fake/realistic?start={n}&count=1"));
    fake.admin("POST", "/fake/compact");
    eprintln!("scale: re-listing ...");
    let t = Instant::now();
    let d = Daemon::start_with(daemon_bin, &kubeconfig, &state, &out, &log, &extra);
    wait_log(&log, listed, 2, Duration::from_secs(1800));
    let relist_secs = t.elapsed().as_secs_f64();
    let relist_cpu = cpu_secs(d.pid());
    // The lines of the batch in flight are marked just after they are written.
    std::thread::sleep(Duration::from_millis(500));
    let relist_lines = count_lines(&out) - sync_lines;
    let hwm_kib = hwm_sync.max(mem(d.pid()).hwm_kib);
    d.stop();
    let (filter_bytes, files) = filter_files(&state);
    if a.keep.is_none() {
        let _ = std::fs::remove_file(&out);
    }
    AtScale {
        events: n,
        capacity,
        sync_secs,
        sync_cpu,
        sync_lines,
        relist_secs,
        relist_cpu,
        relist_lines,
        hwm_kib,
        filter_bytes,
        filter_files: files,
    }
}

fn main() {
    let a = args();
    let (daemon_bin, fake_bin) = binaries();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = a.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("dir");

    let s = a
        .runs("1")
        .then(|| stream(&daemon_bin, &fake_bin, &dir, a.frames));
    let paged = a
        .runs("2")
        .then(|| sync_restart_idle(&daemon_bin, &fake_bin, &dir, &a));
    let esy = a
        .runs("2b")
        .then(|| encoded_sync(&daemon_bin, &fake_bin, &dir, &a));
    let wl = a
        .runs("6")
        .then(|| streaming_sync(&daemon_bin, &fake_bin, &dir, &a, 0));
    let wl_paced = a
        .runs("6b")
        .then(|| streaming_sync(&daemon_bin, &fake_bin, &dir, &a, STREAM_COST_US));
    let fb = a
        .runs("7")
        .then(|| paged_fallback(&daemon_bin, &fake_bin, &dir, &a));
    let traced = a
        .runs("6s")
        .then(|| traced_sync(&daemon_bin, &fake_bin, &dir, &a));
    let live = a
        .runs("8")
        .then(|| live_latency(&daemon_bin, &fake_bin, &dir, &a));
    let scale = a
        .runs("9")
        .then(|| at_scale(&daemon_bin, &fake_bin, &dir, &a));

    println!();
    println!("machine: {}", machine());
    println!(
        "server cost model: rows 2 and 2b none (the fake answers from memory); row 6 none (the streaming list is sent as fast as the socket takes it); row 6b {STREAM_COST_US} µs per streamed event; row 7 {PAGE_COST_MS} ms per page + {ITEM_COST_US} µs per item (a real kube-apiserver's figures: 100,000 events streamed in 2.1 s; paged 4.3-4.5 s with limit=500, 1.6-1.8 s with limit=5000)"
    );
    println!();
    println!("| # | scenario | kube-event-pipe | reference | ratio | checks |");
    println!("|---|---|---|---|---|---|");
    if let Some(s) = &s {
        let rate = s.frames as f64 / s.secs;
        let serde_rate = s.serde.frames as f64 / s.serde.parse.as_secs_f64();
        println!(
            "| 1 | stream, {} frames ({} new, {:.0} MB) | {:.0} events/s ({:.3} s); {:.2} CPU s per 1M events; VmHWM {:.1} MiB (RssAnon {:.1}, RssFile {:.1}) | serde_json alone: {:.0} frames/s ({:.3} s) | {:.2} of serde_json | {} lines of {} new ({} left out as bloom false positives); every line byte-exact and in order: {}; fake sent the body in {:.3} s |",
            s.frames,
            s.serde.expected_lines,
            s.serde.expected_bytes as f64 / 1e6,
            rate,
            s.secs,
            s.cpu / s.frames as f64 * 1e6,
            mib(s.mem.hwm_kib),
            mib(s.mem.rss_anon_kib),
            mib(s.mem.rss_file_kib),
            serde_rate,
            s.serde.parse.as_secs_f64(),
            rate / serde_rate,
            s.lines,
            s.serde.expected_lines,
            s.false_positives,
            s.exact,
            s.fake_send_secs,
        );
    }
    if let Some((sy, _, _)) = &paged {
        sync_row(
            "2",
            "initial sync by paged list (a server without streaming lists, no per-page cost)",
            sy,
        );
    }
    if let Some(esy) = &esy {
        sync_row(
            "2b",
            "the same, the fake encoding each item per request (`--encode-lists`)",
            esy,
        );
    }
    if let Some((_, r, idle)) = &paged {
        println!(
            "| 3 | restart, {} events added while stopped | {:.3} s from start to the last line; {:.2} CPU s | | | {} list requests (must be 0), {} watch requests, {} lines (must be {}) |",
            a.restart_events, r.secs, r.cpu, r.lists, r.watches, r.lines, a.restart_events
        );
        println!(
            "| 4 | idle {} s, bookmark every 10 s | {:.3} CPU s = {:.3} % of a core (CPU clock tick {:.0} ms) | | | steady: RssAnon {:.1} MiB, RssFile {:.1} MiB, VmHWM {:.1} MiB |",
            idle.secs,
            idle.cpu,
            idle.cpu / idle.secs as f64 * 100.0,
            1000.0 / clk_tck(),
            mib(idle.mem.rss_anon_kib),
            mib(idle.mem.rss_file_kib),
            mib(idle.mem.hwm_kib),
        );
    }
    if a.runs("5") {
        match &a.store_output {
            Some(p) => {
                let rows = store_rows(p);
                println!(
                    "| 5 | store, the default settings (filter_capacity 1M, error rate 0.01, 3 files), three filters full (`cargo bench --bench store`, this run) | {} | | | |",
                    rows.join("; ")
                );
            }
            None => {
                println!("| 5 | store | not run (pass --store-output; benches/run.sh does) | | | |")
            }
        }
    }
    for (num, label, w) in [
        ("6", "", &wl),
        ("6b", ", the fake at a real server's pace", &wl_paced),
    ] {
        let Some(w) = w else { continue };
        let c = &w.sync;
        println!(
            "| {num} | initial sync by streaming list{label}, {} events | {}; {} | plain client streaming the same list to its end bookmark (fetch only, best of 3): {:.3} s | {:.2}× | {} lines ({} left out as bloom false positives), byte-exact and in order: {}; {} streaming list, {} list pages |",
            w.events,
            cold_sync_cells(c),
            c.counts.per_event(w.events),
            w.plain_secs,
            c.secs / w.plain_secs,
            c.lines,
            c.false_positives,
            c.exact,
            c.streaming_lists,
            c.pages,
        );
    }
    match &traced {
        Some(Some(t)) => {
            let per = |name: &str| {
                t.calls
                    .iter()
                    .filter(|(c, _)| c == name)
                    .map(|(_, n)| *n)
                    .sum::<u64>() as f64
                    / t.events as f64
            };
            let stats = ["statx", "newfstatat", "fstat", "stat", "lstat"]
                .iter()
                .map(|c| per(c))
                .sum::<f64>();
            println!(
                "| 6s | row 6b's sync under `strace -f -c` (counts only: strace slows each call), {} events | per event: {:.3} write + {:.3} writev, {:.3} stats (statx, newfstatat, fstat), {:.3} futex, {:.3} epoll_wait, {:.3} recvfrom, {:.3} read; {:.3} calls in all | | | most frequent: {} |",
                t.events,
                per("write"),
                per("writev"),
                stats,
                per("futex"),
                per("epoll_wait"),
                per("recvfrom"),
                per("read"),
                t.total as f64 / t.events as f64,
                t.calls
                    .iter()
                    .take(8)
                    .map(|(c, n)| format!("{c} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        Some(None) => println!("| 6s | not run: strace not found | | | | |"),
        None => {}
    }
    if let Some(l) = &live {
        println!(
            "| 8 | live events at {}/s, each its own chunk (the fake at a real server's pace), {} events | from the request creating an event to its line in the file: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.2} CPU s meanwhile; {} | | | every event written: true |",
            l.rate,
            l.events,
            l.p50 * 1e3,
            l.p90 * 1e3,
            l.p99 * 1e3,
            l.max * 1e3,
            l.cpu,
            l.counts.per_event(l.events),
        );
    }
    if let Some(f) = &fb {
        let c = &f.sync;
        println!(
            "| 7 | initial sync, server refusing streaming lists (422) and charging {PAGE_COST_MS} ms + {ITEM_COST_US} µs per item a page, {} events in pages of {PAGE_LIMIT} | {} | plain client, same pages (fetch only, best of 2): {:.3} s | {:.2}× | {} lines ({} left out as bloom false positives), byte-exact and in order: {}; {} streaming list (refused), {} list pages |",
            f.events,
            cold_sync_cells(c),
            f.plain_secs,
            c.secs / f.plain_secs,
            c.lines,
            c.false_positives,
            c.exact,
            c.streaming_lists,
            c.pages,
        );
        println!(
            "| 7b | the plain client at other page sizes, same cost model | | {} | | |",
            f.sizes
                .iter()
                .map(|(l, t)| format!(
                    "limit={l}: {t:.3} s ({} pages)",
                    f.events.div_ceil(*l as usize)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if let Some(x) = &scale {
        let per_event_us = |cpu: f64| cpu / x.events as f64 * 1e6;
        println!(
            "| 9 | dedup at scale: a server holding {} events streamed at a real server's pace ({STREAM_COST_US} µs each) to `--filter-capacity {} --batch-count 3` (a tenth of them), then a forced re-list (one event added, the saved version compacted away) | sync {:.1} s, {:.2} CPU s ({:.2} µs per event), {} lines; re-list {:.1} s, {:.2} CPU s ({:.2} µs per event); VmHWM {:.1} MiB over both; filters on disk {:.1} MiB in {} files | | | re-list wrote {} lines: the 1 added event and {} written again ({:.2} % of the server's events); first sync left out {} as bloom false positives |",
            x.events,
            x.capacity,
            x.sync_secs,
            x.sync_cpu,
            per_event_us(x.sync_cpu),
            x.sync_lines,
            x.relist_secs,
            x.relist_cpu,
            per_event_us(x.relist_cpu),
            mib(x.hwm_kib),
            x.filter_bytes as f64 / (1024.0 * 1024.0),
            x.filter_files,
            x.relist_lines,
            x.relist_lines.saturating_sub(1),
            x.relist_lines.saturating_sub(1) as f64 / x.events as f64 * 100.0,
            (x.events as u64).saturating_sub(x.sync_lines),
        );
    }
}
