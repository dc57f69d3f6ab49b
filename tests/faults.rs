//! Reliability under faults: the real binary against the fake API server, killed, starved of
//! disk, given broken state and hostile input. Each scenario prints its figures (`FAULTS ...`
//! lines, shown with `--nocapture`); README's "Reliability" section quotes them.
//!
//! `KEP_FAULTS_LONG=1` runs the long form (100 kills instead of 20); `KEP_FAULTS_SEED=N`
//! replays a crash schedule. Scenarios that need root (tmpfs mounts, dropping to nobody) fail
//! when run as root and something is wrong; run as another user they print SKIPPED.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::daemon::{BIN, Daemon, Layout, command, wait_until};
use support::fake_apiserver::{
    Auth, Failure, FakeApiServer, Options, Target, realistic_event, realistic_key,
};
use support::scenario::{
    args_with, bookmarking, realistic_lines, serve, settle_and_stop, start, tls_server,
    wait_for_watch,
};

const T: Duration = Duration::from_secs(30);

fn long_form() -> bool {
    std::env::var_os("KEP_FAULTS_LONG").is_some_and(|v| !v.is_empty() && v != "0")
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A small xorshift generator: the schedule of a failed run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("KEP_FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        println!("FAULTS seed {seed} (KEP_FAULTS_SEED={seed} replays it)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// The lines of `path` that end in `\n` (a line being written is not counted).
fn whole_lines(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8(bytes[..end].to_vec()).expect("output is UTF-8");
    text.lines().map(str::to_string).collect()
}

/// Waits until `path` holds at least `n` whole lines; a failure names `what` and shows the log.
fn wait_for_whole_lines(path: &Path, n: usize, d: &Daemon, what: &str) {
    assert!(
        wait_until(T, || whole_lines(path).len() >= n),
        "{what}: {}",
        d.stderr()
    );
}

/// Waits until `path` holds exactly `n` whole lines.
fn wait_for_exactly(path: &Path, n: usize, d: &Daemon) {
    assert!(
        wait_until(T, || whole_lines(path).len() == n),
        "{} whole lines, not {n}; log:\n{}",
        whole_lines(path).len(),
        d.stderr()
    );
}

/// Every line of the finished output is one whole JSON value and the file ends in `\n`.
fn assert_whole_json(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "{} ends inside a line",
        path.display()
    );
    let lines = whole_lines(path);
    for (i, l) in lines.iter().enumerate() {
        // IgnoredAny: checks the syntax at any depth (serde_json's recursion limit only guards
        // building values).
        serde_json::from_str::<serde::de::IgnoredAny>(l)
            .unwrap_or_else(|e| panic!("line {} of {} is not JSON: {e}", i + 1, path.display()));
    }
    lines
}

/// A finished output against the lines it should hold.
struct Tally {
    /// Lines expected.
    events: usize,
    /// Lines in the output.
    lines: usize,
    /// Expected lines missing.
    lost: usize,
    /// Extra copies.
    duplicated: usize,
    /// Lines nobody sent.
    foreign: usize,
}

/// Tallies the finished output at `path` (each line whole JSON) against `expected`.
fn tally(expected: &[String], path: &Path) -> Tally {
    let out = assert_whole_json(path);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for l in &out {
        *seen.entry(l).or_default() += 1;
    }
    let want: HashSet<&str> = expected.iter().map(String::as_str).collect();
    Tally {
        events: expected.len(),
        lines: out.len(),
        lost: want.iter().filter(|l| !seen.contains_key(*l)).count(),
        duplicated: seen.values().map(|n| n - 1).sum(),
        foreign: seen.keys().filter(|l| !want.contains(*l)).count(),
    }
}

/// Waits until the output holds every line the server has; polls gently (the sets are big).
fn wait_for_all(api: &FakeApiServer, out: &Path, timeout: Duration, d: &Daemon) {
    let deadline = Instant::now() + timeout;
    loop {
        let want = api.object_lines();
        let have: HashSet<String> = whole_lines(out).into_iter().collect();
        let missing = want.iter().filter(|l| !have.contains(*l)).count();
        if missing == 0 {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{missing} of {} events missing from {}; log:\n{}",
                want.len(),
                out.display(),
                tail(&d.stderr(), 60)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// Creates realistic events at a steady pace until `stop`; returns how many.
fn produce(api: &FakeApiServer, from: usize, every: Duration, stop: &AtomicBool) -> usize {
    let mut i = from;
    while !stop.load(Ordering::SeqCst) {
        let (ns, name) = realistic_key(i);
        api.create(&ns, &name, &realistic_event(i));
        i += 1;
        std::thread::sleep(every);
    }
    i - from
}

// ---------------------------------------------------------------------------------------------
// Crash
// ---------------------------------------------------------------------------------------------

#[test]
fn sigkill_at_random_moments_loses_nothing_and_repeats_at_most_one_line_per_kill() {
    let kills = if long_form() { 100 } else { 20 };
    let mut rng = Rng::new();
    let (api, layout) = serve(bookmarking(Duration::from_millis(700)));
    api.create_realistic(0..1200);
    let stop = AtomicBool::new(false);
    // Per run: (lines written twice so far, lines so far), read once it is killed.
    let mut at_kill: Vec<(usize, usize)> = Vec::new();
    let (produced, last_log) = std::thread::scope(|s| {
        let producer = s.spawn(|| produce(&api, 1200, Duration::from_millis(8), &stop));
        for k in 0..kills {
            let d = start(&layout, None, &[]);
            // Mostly within the first seconds (start-up, list, first watch); every fifth run
            // lives past the first save of the resourceVersion (5 s), so resumed watches are
            // killed too.
            let life = if k % 5 == 4 {
                rng.millis(5_200, 6_500)
            } else {
                rng.millis(20, 2_000)
            };
            std::thread::sleep(life);
            d.kill();
            let out = whole_lines(&layout.out());
            at_kill.push((doubled(&out), out.len()));
        }
        stop.store(true, Ordering::SeqCst);
        let produced = producer.join().unwrap();
        let d = start(&layout, None, &[]);
        wait_for_all(&api, &layout.out(), Duration::from_secs(90), &d);
        let (status, log) = d.stop();
        assert!(status.success(), "{}", tail(&log, 40));
        (produced, log)
    });
    let t = tally(&api.object_lines(), &layout.out());
    println!(
        "FAULTS crash: kills={kills} events={} (produced while killing: {produced}) lines={} lost={} duplicated={}",
        t.events, t.lines, t.lost, t.duplicated
    );
    assert_eq!(t.lost, 0, "{}", tail(&last_log, 40));
    assert_eq!(t.foreign, 0);
    // Per kill, not only in total: a run may repeat at most one line for each kill since the
    // last run that wrote anything (a run killed before it wrote leaves its predecessor's
    // repeat to the next one).
    at_kill.push((t.duplicated, t.lines));
    let mut kills_unanswered = 0;
    let mut before = (0, 0);
    for (run, &(dups, written)) in at_kill.iter().enumerate() {
        let (new_dups, new_lines) = (dups - before.0, written - before.1);
        assert!(
            new_dups <= kills_unanswered,
            "run {run} repeated {new_dups} lines after {kills_unanswered} kills: {at_kill:?}"
        );
        kills_unanswered = if new_lines > 0 {
            1
        } else {
            kills_unanswered + 1
        };
        before = (dups, written);
    }
}

/// Lines that repeat an earlier line.
fn doubled(out: &[String]) -> usize {
    out.len() - out.iter().collect::<HashSet<_>>().len()
}

// ---------------------------------------------------------------------------------------------
// API server trouble
// ---------------------------------------------------------------------------------------------

#[test]
fn api_server_restarts_drops_stalls_errors_and_expiry_lose_and_double_nothing() {
    let (api, layout) = serve(bookmarking(Duration::from_millis(500)));
    api.create_realistic(0..700);
    let d = start(&layout, None, &["--watch-idle-timeout-sec", "2"]);
    let stop = AtomicBool::new(false);
    let mut faults: Vec<&str> = Vec::new();
    std::thread::scope(|s| {
        let producer = s.spawn(|| produce(&api, 700, Duration::from_millis(15), &stop));
        // Recovered: an event created now arrives (so a watch is live again), and nothing
        // is missing.
        let markers = std::sync::atomic::AtomicUsize::new(0);
        let caught_up = |what: &str| {
            let name = format!("marker-{}", markers.fetch_add(1, Ordering::SeqCst));
            api.create("trouble", &name, r#"{"reason":"Marker","count":1}"#);
            let line = api.object_line("trouble", &name);
            assert!(
                wait_until(T, || whole_lines(&layout.out()).contains(&line)),
                "not recovered from {what}: {}",
                tail(&d.stderr(), 40)
            );
            wait_for_all(&api, &layout.out(), T, &d);
        };
        caught_up("start");

        for downtime in [300, 2_000] {
            api.restart(Duration::from_millis(downtime));
            faults.push("restart");
            caught_up("restart");
        }
        for half in [true, false, true] {
            api.drop_watches(half);
            faults.push(if half { "drop mid-frame" } else { "drop" });
            caught_up("drop");
        }
        let idle = |d: &Daemon| count(&d.stderr(), "delivered nothing for too long");
        let before = idle(&d);
        api.set_stalled(true);
        assert!(wait_until(T, || idle(&d) > before), "{}", d.stderr());
        api.set_stalled(false);
        faults.push("stall");
        caught_up("stall");
        for failure in [
            Failure::InternalError,
            Failure::TooManyRequests {
                retry_after_secs: 1,
            },
            Failure::ServiceUnavailable,
        ] {
            api.fail_next_for(Target::Any, 3, failure);
            api.drop_watches(false);
            faults.push("3 x 500/429/503");
            caught_up("error answers");
        }
        for _ in 0..3 {
            // In-stream ERROR 410 on the open watch.
            api.expire_watches();
            faults.push("in-stream 410");
            caught_up("in-stream expiry");
            // HTTP 410 when the watch is resumed from a compacted version: held back by a
            // stall, the daemon is behind the compaction point when its watch drops.
            api.set_stalled(true);
            api.create(
                "trouble",
                &format!("behind-{}", faults.len()),
                r#"{"count":1}"#,
            );
            api.compact();
            api.drop_watches(false);
            std::thread::sleep(Duration::from_millis(100));
            api.set_stalled(false);
            faults.push("410 on resume");
            caught_up("expiry on resume");
        }
        // A re-list whose first two requests fail, then works.
        api.compact();
        api.fail_next_for(Target::Watch, 2, Failure::InternalError);
        api.expire_watches();
        faults.push("410 then failing list");
        caught_up("failing list");
        stop.store(true, Ordering::SeqCst);
        producer.join().unwrap();
    });
    wait_for_all(&api, &layout.out(), T, &d);
    std::thread::sleep(Duration::from_millis(500));
    let (status, log) = d.stop();
    assert!(status.success(), "{}", tail(&log, 40));
    let t = tally(&api.object_lines(), &layout.out());
    println!(
        "FAULTS api-server: faults={} ({}) events={} lines={} lost={} duplicated={} lists={} (streaming {})",
        faults.len(),
        faults.join(", "),
        t.events,
        t.lines,
        t.lost,
        t.duplicated,
        api.list_request_count() + api.streaming_list_count(),
        api.streaming_list_count()
    );
    assert_eq!(
        (t.lost, t.duplicated, t.foreign),
        (0, 0, 0),
        "{}",
        tail(&log, 60)
    );
    // Each kind of trouble was noticed and recovered from, visibly.
    assert!(count(&log, "listing all events again") >= 7, "{log}");
    assert!(log.contains("works again"), "{log}");
    // Whole phrases: bare status digits also turn up in timestamps, ports and versions.
    assert!(log.contains("answered 500 InternalError"), "{log}");
    assert!(log.contains("answered 429 TooManyRequests"), "{log}");
    assert!(log.contains("answered 503 ServiceUnavailable"), "{log}");
    assert!(log.contains("delivered nothing for too long"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Disk full
// ---------------------------------------------------------------------------------------------

/// A tmpfs mounted for the test, lazily unmounted however the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs on {}", path.display());
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `path` completely; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0xAAu8; 4096];
    let mut n = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // A last partial block, byte by byte, so not even the filler's last page has room.
    while f.write(&[0xAA]).is_ok_and(|k| k == 1) {
        n += 1;
    }
    n
}

/// The kill fell between two lines: leave what a kill inside `write(2)` leaves on a full disk,
/// the first half of the next held line, so the restart's recovery of it is tested every run.
fn leave_a_fragment(api: &FakeApiServer, dest: &Path, filler: &Path) {
    use std::io::Write;
    let have: HashSet<String> = whole_lines(dest).into_iter().collect();
    let next = api
        .object_lines()
        .into_iter()
        .find(|l| !have.contains(l))
        .expect("a held event");
    // tmpfs gives whole pages: the fragment goes into the slack of the file's last page, or
    // into a page taken back from the filler when there is none.
    let len = std::fs::metadata(dest).unwrap().len();
    let slack = (4096 - len % 4096) % 4096;
    let mut half = next.len() / 2;
    if slack == 0 {
        let filled = std::fs::metadata(filler).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(filler)
            .unwrap()
            .set_len(filled.saturating_sub(4096))
            .unwrap();
    } else {
        half = half.min(slack as usize);
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(dest)
        .unwrap()
        .write_all(&next.as_bytes()[..half.max(1)])
        .unwrap();
}

#[test]
fn a_full_disk_holds_events_unmarked_until_space_returns_then_writes_each_once() {
    if !is_root() {
        println!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let (api, layout) = serve(Options::default());
    let mnt = layout.path("small");
    let _tmpfs = Tmpfs::mount(&mnt, "256k");
    let dest = mnt.join("events.log");
    let dest_s = dest.display().to_string();
    let filler = mnt.join("filler");
    let d = start(&layout, None, &["--destination", &dest_s]);
    wait_for_watch(&api, &d);
    api.create_realistic(0..20);
    wait_for_exactly(&dest, 20, &d);

    // Full: the daemon holds the events, logs the failure once and retries quietly.
    let filled = fill(&filler);
    api.set_stalled(true);
    api.create_realistic(20..60);
    api.set_stalled(false);
    d.expect_log("cannot write events");
    std::thread::sleep(Duration::from_millis(3_200));
    let log = d.stderr();
    assert_eq!(count(&log, "cannot write events"), 1, "{log}");
    assert!(count(&log, "write still failing") >= 2, "{log}");
    assert!(whole_lines(&dest).len() < 60);
    let held = std::fs::read(&dest).unwrap();
    let partial_while_full = !held.ends_with(b"\n");

    // Space returns: the same batch goes on from its first unwritten byte.
    std::fs::remove_file(&filler).unwrap();
    wait_for_all(&api, &dest, T, &d);
    d.expect_log("writing events again");

    // Full again, and the daemon is killed while it cannot write: the restart must neither lose
    // the held events nor repeat the ones that got out, and must not glue a line to a fragment.
    fill(&filler);
    // Held back and then sent in one go, so they form one batch: the lines that fit in the
    // file's last page get out whole before the write fails.
    api.set_stalled(true);
    api.create_realistic(60..100);
    api.set_stalled(false);
    assert!(
        wait_until(T, || count(&d.stderr(), "cannot write events") == 2),
        "{}",
        d.stderr()
    );
    d.kill();
    let whole_at_kill = whole_lines(&dest).len() - 60;
    let fragment = !std::fs::read(&dest).unwrap().ends_with(b"\n");
    if !fragment {
        leave_a_fragment(&api, &dest, &filler);
    }
    let d = start(&layout, None, &["--destination", &dest_s]);
    d.expect_log("cannot write events");
    assert!(
        d.stderr().contains("removed an incomplete last line"),
        "{}",
        d.stderr()
    );
    std::fs::remove_file(&filler).unwrap();
    wait_for_all(&api, &dest, T, &d);
    let log = settle_and_stop(d);
    assert!(!log.contains("panicked"), "{log}");
    let t = tally(&api.object_lines(), &dest);
    println!(
        "FAULTS disk-full: tmpfs 256k, filler {filled} bytes, events=100 lines={} lost={} duplicated={} partial line while full={partial_while_full}; killed while full with {whole_at_kill} lines of the held batch out and a fragment left by the kill: {fragment} (else one was left by the test)",
        t.lines, t.lost, t.duplicated
    );
    assert_eq!((t.lost, t.duplicated, t.foreign), (0, 0, 0), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Unwritable destination and state directory
// ---------------------------------------------------------------------------------------------

/// The daemon's binary where user nobody can run it.
fn binary_for_nobody(layout: &Layout) -> PathBuf {
    let ok = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "test",
            "-x",
        ])
        .arg(BIN)
        .status()
        .expect("run setpriv")
        .success();
    if ok {
        return PathBuf::from(BIN);
    }
    let copy = layout.path("kube-event-pipe");
    std::fs::copy(BIN, &copy).unwrap();
    set_mode(&copy, 0o755);
    copy
}

/// Runs the binary as nobody with `args`; returns (exit code, stderr).
fn run_as_nobody(layout: &Layout, args: &[&str]) -> (Option<i32>, String) {
    let bin = binary_for_nobody(layout);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run setpriv");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unusable_state_directory_or_destination_at_start_up_exits_2_with_a_clear_message() {
    // The kubeconfig works (it is loaded, and on a first start the API server answered,
    // before anything is created on disk).
    // A destination whose directory does not exist: as any user.
    let (api, layout) = serve(Options::default());
    let missing_dir = layout.path("no-such-dir/events.log");
    let missing = missing_dir.display().to_string();
    let mut d = start(&layout, None, &["--destination", &missing]);
    assert_eq!(d.wait(T).code(), Some(2), "{}", d.stderr());
    let log = d.stderr();
    assert!(
        log.contains(&format!("cannot open destination {missing}")),
        "{log}"
    );
    assert!(log.contains("No such file or directory"), "{log}");

    if !is_root() {
        println!("SKIPPED: the permission cases run the daemon as nobody, which needs root");
        return;
    }
    let layout = Layout::new();
    set_mode(layout.dir.path(), 0o755);
    let open = layout.path("open");
    std::fs::create_dir(&open).unwrap();
    set_mode(&open, 0o777);
    let root_only = layout.path("root-only");
    std::fs::create_dir(&root_only).unwrap();
    let p = |p: PathBuf| p.display().to_string();
    let kc = p(layout.kubeconfig());
    api.write_kubeconfig(&kc, Auth::None);

    // Runs as nobody with this state directory and destination; it must exit 2. The log.
    let exits_2 = |state: PathBuf, dest: PathBuf| {
        let args = [
            "--kubeconfig",
            &kc,
            "--persistence-path",
            &p(state),
            "--destination",
            &p(dest),
        ];
        let (code, log) = run_as_nobody(&layout, &args);
        assert_eq!(code, Some(2), "{log}");
        log
    };

    // State directory exists but nobody may write to it.
    let log = exits_2(root_only.clone(), open.join("events.log"));
    assert!(
        log.contains(&format!(
            "persistence_path = \"{}\" (command-line flag --persistence-path) is invalid",
            root_only.display()
        )),
        "{log}"
    );
    assert!(
        log.contains("(the directory is not writable by this user)"),
        "{log}"
    );

    // State directory cannot be created.
    let log = exits_2(root_only.join("state"), open.join("events.log"));
    assert!(
        log.contains(&format!(
            "it does not exist and cannot be created: {} is not writable",
            root_only.display()
        )),
        "{log}"
    );

    // Destination in a directory nobody may write to.
    let dest = root_only.join("events.log");
    let log = exits_2(open.join("state"), dest.clone());
    assert!(
        log.contains(&format!(
            "cannot open destination {}: Permission denied",
            dest.display()
        )),
        "{log}"
    );
    assert_eq!(count(&log, "Permission denied"), 1, "the cause once: {log}");
    println!("FAULTS unwritable: 4 start-up cases exit 2 with the path and the cause");
}

#[test]
fn a_destination_directory_removed_while_running_is_reported_and_used_again_once_recreated() {
    let (api, layout) = serve(Options::default());
    let logs = layout.path("logs");
    std::fs::create_dir(&logs).unwrap();
    let dest = logs.join("events.log");
    let d = start(
        &layout,
        None,
        &["--destination", &dest.display().to_string()],
    );
    wait_for_watch(&api, &d);
    api.create_realistic(0..5);
    wait_for_exactly(&dest, 5, &d);
    std::fs::remove_dir_all(&logs).unwrap();
    api.create_realistic(5..12);
    d.expect_log("cannot write events");
    std::thread::sleep(Duration::from_millis(1_500));
    let log = d.stderr();
    assert_eq!(count(&log, "cannot write events"), 1, "{log}");
    assert!(
        log.contains(&format!("cannot open destination {}", dest.display())),
        "{log}"
    );
    std::fs::create_dir(&logs).unwrap();
    wait_for_exactly(&dest, 7, &d);
    d.expect_log("writing events again");
    let log = settle_and_stop(d);
    let t = tally(&realistic_lines(&api, 5..12), &dest);
    println!(
        "FAULTS removed-directory: held=7 lost={} duplicated={}",
        t.lost, t.duplicated
    );
    assert_eq!((t.lost, t.duplicated, t.foreign), (0, 0, 0), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Corrupt state
// ---------------------------------------------------------------------------------------------

#[test]
fn corrupt_filter_files_and_resource_version_are_set_aside_with_one_warning_each() {
    let (api, layout) = serve(Options::default());
    api.create_realistic(0..3);
    let d = start(&layout, None, &["--batch-count", "8"]);
    wait_for_exactly(&layout.out(), 3, &d);
    d.stop_ok();

    let state = layout.state();
    let blooms: Vec<PathBuf> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bloom"))
        .collect();
    assert_eq!(blooms.len(), 1);
    let valid = std::fs::read(&blooms[0]).unwrap();
    let ts: u64 = blooms[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let random: Vec<u8> = (0..valid.len()).map(|_| rng.next() as u8).collect();
    let mut future = valid.clone();
    future[8..12].copy_from_slice(&3u32.to_le_bytes());
    // Newer than the valid file, so each is examined before the store has its fill.
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated in the header",
            valid[..100].to_vec(),
            "truncated",
        ),
        (
            "truncated in the bits",
            valid[..valid.len() / 2].to_vec(),
            "truncated: file is",
        ),
        ("zeroed", vec![0; valid.len()], "wrong magic"),
        ("random", random, "wrong magic"),
        ("future version", future, "format version 3 is newer"),
    ];
    let mut paths = Vec::new();
    for (i, (_, bytes, _)) in bad.iter().enumerate() {
        let p = state.join(format!("{}.bloom", ts + 1 + i as u64));
        std::fs::write(&p, bytes).unwrap();
        paths.push(p);
    }
    std::fs::write(
        state.join("resource_version"),
        b"\xff\xfe\x00 not a version",
    )
    .unwrap();

    api.create_realistic(3..5);
    api.clear_requests();
    let d = start(&layout, None, &["--batch-count", "8"]);
    wait_for_whole_lines(&layout.out(), 5, &d, "a start on damaged state");
    d.expect_log("watching from here");
    let log = settle_and_stop(d);
    for ((what, _, reason), p) in bad.iter().zip(&paths) {
        let needle = format!("quarantined bad filter file {}: {reason}", p.display());
        let warnings = log
            .lines()
            .filter(|l| l.contains(" WARN ") && l.contains(&p.display().to_string()))
            .count();
        assert_eq!(warnings, 1, "{what}: {log}");
        assert!(log.contains(&needle), "{what}: {needle}\n{log}");
        assert!(!p.exists(), "{what} left in place");
        let mut moved = p.as_os_str().to_owned();
        moved.push(".corrupt");
        assert!(Path::new(&moved).exists(), "{what} not moved aside");
    }
    assert_eq!(
        count(&log, "ignoring a damaged saved resourceVersion"),
        1,
        "{log}"
    );
    assert_eq!(
        api.streaming_list_count(),
        1,
        "one list instead of a resume"
    );
    // The valid filter still knew the first three events: nothing written twice.
    let t = tally(&api.object_lines(), &layout.out());
    assert_eq!((t.lost, t.duplicated, t.foreign), (0, 0, 0), "{log}");

    // Set aside once: the next start says nothing about them.
    let d = start(&layout, None, &["--batch-count", "8"]);
    wait_for_watch(&api, &d);
    let (_, log) = d.stop();
    assert_eq!(count(&log, "quarantined bad filter file"), 0, "{log}");
    assert_eq!(count(&log, "damaged"), 0, "{log}");
    println!(
        "FAULTS corrupt-state: 5 bad filter files quarantined, 1 bad resourceVersion ignored, one warning each, lost={} duplicated={}",
        t.lost, t.duplicated
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile and odd input
// ---------------------------------------------------------------------------------------------

#[test]
fn hostile_and_odd_events_are_written_faithfully_or_logged_and_skipped_never_a_panic() {
    let (api, layout) = serve(Options::default());
    let d = start(&layout, None, &[]);
    wait_for_watch(&api, &d);
    let mut written: Vec<(&str, String)> = Vec::new();
    let mut after = 0;
    let mut next_normal = |api: &FakeApiServer, written: &mut Vec<(&str, String)>| {
        after += 1;
        let name = format!("after-{after}");
        api.create("odd", &name, r#"{"reason":"Pulled","count":1}"#);
        written.push(("normal", api.object_line("odd", &name)));
    };

    // Written faithfully (they come through the store, so a later list serves them too).
    let big = "x".repeat(1 << 20);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let faithful: Vec<(&str, &str, String)> = vec![
        (
            "1 MiB message",
            "huge",
            format!(r#"{{"reason":"Huge","message":"{big}","count":1}}"#),
        ),
        (
            "10,000 nested arrays in an unknown field",
            "deep",
            format!(r#"{{"reason":"Deep","zz":{deep},"count":1}}"#),
        ),
        (
            "10,000 nested objects in metadata.labels",
            "deep-objects",
            format!(
                r#"{{"metadata":{{"labels":{}1{}}},"reason":"Deep","count":1}}"#,
                r#"{"a":"#.repeat(10_000),
                "}".repeat(10_000)
            ),
        ),
        (
            "10,000 nested arrays as the count",
            "deep-count",
            format!(r#"{{"reason":"Deep","count":{deep}}}"#),
        ),
        (
            "lone surrogate escape in the message",
            "surrogate-message",
            r#"{"reason":"Odd","message":"bad \ud800 here \udfff","count":1}"#.to_string(),
        ),
        (
            "count as a string",
            "count-string",
            r#"{"reason":"Odd","count":"3"}"#.to_string(),
        ),
        (
            "count as a fraction",
            "count-fraction",
            r#"{"reason":"Odd","count":3.5}"#.to_string(),
        ),
        (
            "series.count as a string",
            "series-string",
            r#"{"reason":"Odd","count":1,"series":{"count":"x"}}"#.to_string(),
        ),
    ];
    for (what, name, fields) in &faithful {
        api.create("odd", name, fields);
        written.push((*what, api.object_line("odd", name)));
        next_normal(&api, &mut written);
    }

    // Logged and skipped (injected into the watch, as a broken server would send them).
    let skipped: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "lone surrogate escape in the name",
            br#"{"type":"ADDED","object":{"kind":"Event","apiVersion":"v1","metadata":{"name":"bad\ud800","namespace":"odd"},"count":1}}"#.to_vec(),
            "skipping an event that cannot be identified",
        ),
        (
            "invalid UTF-8 in the message",
            b"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Event\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"utf8\",\"namespace\":\"odd\"},\"message\":\"\xff\xfe\xc3\",\"count\":1}}".to_vec(),
            "skipping a malformed watch frame",
        ),
        (
            "invalid UTF-8 in the name",
            b"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Event\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"\xc0\xaf\",\"namespace\":\"odd\"},\"count\":1}}".to_vec(),
            "skipping a malformed watch frame",
        ),
        (
            "missing metadata",
            br#"{"type":"ADDED","object":{"kind":"Event","apiVersion":"v1","reason":"NoMeta","count":1}}"#.to_vec(),
            "event has no metadata",
        ),
        (
            "null metadata",
            br#"{"type":"ADDED","object":{"kind":"Event","apiVersion":"v1","metadata":null,"count":1}}"#.to_vec(),
            "event has no metadata",
        ),
        (
            "metadata as a string",
            br#"{"type":"ADDED","object":{"kind":"Event","apiVersion":"v1","metadata":"x","count":1}}"#.to_vec(),
            "not an object",
        ),
        (
            "name as a number",
            br#"{"type":"ADDED","object":{"kind":"Event","apiVersion":"v1","metadata":{"name":7},"count":1}}"#.to_vec(),
            "not a string",
        ),
        (
            "object that is an array",
            br#"{"type":"ADDED","object":[1,2,3]}"#.to_vec(),
            "not a JSON object",
        ),
    ];
    for (what, frame, logged) in &skipped {
        api.inject_watch_bytes(frame);
        next_normal(&api, &mut written);
        let n = written.len();
        wait_for_whole_lines(&layout.out(), n, &d, what);
        // stderr is collected by a reader thread, which may lag the file on a loaded machine.
        assert!(
            wait_until(T, || d.stderr().contains(logged)),
            "{what}: {}",
            d.stderr()
        );
    }
    let n = written.len();
    wait_for_whole_lines(&layout.out(), n, &d, "every event");
    let log = settle_and_stop(d);
    assert!(!log.contains("panicked"), "{log}");
    let out = assert_whole_json(&layout.out());
    let expected: Vec<String> = written.iter().map(|(_, l)| l.clone()).collect();
    assert_eq!(out, expected, "written in order, byte for byte");

    // The same odd events through a streaming list (a fresh state directory lists everything).
    let fresh = Layout::new();
    api.write_kubeconfig(fresh.kubeconfig(), Auth::None);
    let d = start(&fresh, None, &[]);
    wait_for_whole_lines(&fresh.out(), n, &d, "a streaming list");
    d.stop_ok();
    let listed: HashSet<String> = assert_whole_json(&fresh.out()).into_iter().collect();
    for (what, line) in &written {
        assert!(listed.contains(line), "{what} differs when listed");
    }

    // And through list pages, from a server without streaming lists.
    let (paged, fresh) = serve(Options {
        watch_list: false,
        ..Options::default()
    });
    for (_, name, fields) in &faithful {
        paged.create("odd", name, fields);
    }
    let d = start(&fresh, None, &[]);
    wait_for_whole_lines(&fresh.out(), faithful.len(), &d, "list pages");
    let log = d.stop_ok();
    assert!(log.contains("does not offer streaming lists"), "{log}");
    let listed: HashSet<String> = assert_whole_json(&fresh.out()).into_iter().collect();
    for (what, name, _) in &faithful {
        let line = paged.object_line("odd", name);
        assert!(
            listed.contains(&line),
            "{what} differs when listed in pages"
        );
    }
    let faithful_names: Vec<&str> = faithful.iter().map(|f| f.0).collect();
    let skipped_names: Vec<&str> = skipped.iter().map(|s| s.0).collect();
    println!(
        "FAULTS hostile input: written faithfully (watch, streaming list and list pages): {}; logged and skipped: {}; panics=0",
        faithful_names.join(", "),
        skipped_names.join(", ")
    );
}

// ---------------------------------------------------------------------------------------------
// Security
// ---------------------------------------------------------------------------------------------

/// Starts the daemon at trace level with umask 022, so the modes checked are the daemon's own.
fn start_traced(layout: &Layout, extra: &[&str]) -> Daemon {
    let mut extra = extra.to_vec();
    extra.extend(["--log-level", "trace"]);
    let args = args_with(layout, &extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = command(&args);
    cmd.stdout(Stdio::null());
    // SAFETY: umask(2) is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    Daemon::spawn(&mut cmd)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: impl AsRef<Path>, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs the daemon traced until it has written the server's one event; its log (it must stop
/// cleanly).
fn traced_until_one_line(layout: &Layout, extra: &[&str]) -> String {
    let d = start_traced(layout, extra);
    wait_for_exactly(&layout.out(), 1, &d);
    d.stop_ok()
}

#[test]
fn credentials_never_reach_the_log_and_files_get_restrictive_modes() {
    const TOKEN: &str = "kep-bearer-7d1f0c2a9e";
    let api = tls_server(TOKEN);
    api.create("sec", "one", r#"{"reason":"Pulled","count":1}"#);
    let key_pem = api.client_key_pem().unwrap();
    let key_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(key_pem.as_bytes())
    };
    // A secret is "in the log" if any recognisable piece of it is.
    let leaks = |log: &str, secrets: &[&str]| -> Vec<String> {
        let mut found = Vec::new();
        for s in secrets {
            if log.contains(s) {
                found.push(s.chars().take(24).collect());
            }
        }
        for l in key_pem.lines().filter(|l| !l.starts_with("-----")) {
            if log.contains(l) {
                found.push(format!("key line {l:.16}"));
            }
        }
        if log.contains("PRIVATE KEY") {
            found.push("PRIVATE KEY".into());
        }
        found
    };

    // Bearer token; kubeconfig and config file readable by all (0644): one warning each.
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::Token(TOKEN.into()));
    set_mode(layout.kubeconfig(), 0o644);
    let config = layout.path("config.toml");
    std::fs::write(&config, "batch_count = 3\n").unwrap();
    set_mode(&config, 0o644);
    let config_s = config.display().to_string();
    let log = traced_until_one_line(&layout, &["--config", &config_s]);
    assert!(log.contains(" TRACE ") || log.contains(" DEBUG "), "{log}");
    assert_eq!(
        leaks(&log, &[TOKEN, &key_b64]),
        Vec::<String>::new(),
        "{log}"
    );
    let kc = layout.kubeconfig().display().to_string();
    assert_eq!(
        count(
            &log,
            &format!("kubeconfig {kc} is readable by every local user (mode 0644)")
        ),
        1,
        "{log}"
    );
    assert_eq!(
        count(
            &log,
            &format!("config file {config_s} is readable by every local user (mode 0644)")
        ),
        1,
        "{log}"
    );
    // Files the daemon created.
    assert_eq!(mode(&layout.out()), 0o640, "destination");
    assert_eq!(mode(&layout.state()), 0o750, "state directory");
    let mut state_files = 0;
    for e in std::fs::read_dir(layout.state()).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o640, "{}", p.display());
        state_files += 1;
    }
    assert!(
        layout.state().join("resource_version").exists() && state_files >= 2,
        "expected a filter file and the resourceVersion"
    );

    // Client certificate and key; kubeconfig 0600: no warning.
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::ClientCert);
    set_mode(layout.kubeconfig(), 0o600);
    let log = traced_until_one_line(&layout, &[]);
    assert_eq!(
        leaks(&log, &[TOKEN, &key_b64]),
        Vec::<String>::new(),
        "{log}"
    );
    assert_eq!(count(&log, "readable by every local user"), 0, "{log}");

    // A wrong token: refused (401), logged as a failure, the token itself not shown.
    let layout = Layout::new();
    const WRONG: &str = "kep-wrong-4b8e1d";
    api.write_kubeconfig(layout.kubeconfig(), Auth::Token(WRONG.into()));
    set_mode(layout.kubeconfig(), 0o600);
    let d = start_traced(&layout, &[]);
    d.expect_log("(401 Unauthorized)");
    let (_, log) = d.stop();
    assert_eq!(leaks(&log, &[WRONG, TOKEN]), Vec::<String>::new(), "{log}");

    // An exec credential plugin (client.authentication.k8s.io/v1beta1).
    const EXEC_TOKEN: &str = "kep-exec-93af55c1b7";
    let exec_api = FakeApiServer::start(Options {
        token: Some(EXEC_TOKEN.into()),
        ..Options::default()
    });
    exec_api.create("sec", "exec", r#"{"reason":"Pulled","count":1}"#);
    let layout = Layout::new();
    let script = layout.path("credential-plugin");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{EXEC_TOKEN}\"}}}}'\n"
        ),
    )
    .unwrap();
    set_mode(&script, 0o755);
    let kubeconfig = exec_api.kubeconfig(Auth::None).replace(
        "  user: {}\n",
        &format!(
            "  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {}\n      interactiveMode: Never\n",
            script.display()
        ),
    );
    assert!(kubeconfig.contains("exec:"), "{kubeconfig}");
    std::fs::write(layout.kubeconfig(), kubeconfig).unwrap();
    set_mode(layout.kubeconfig(), 0o600);
    let log = traced_until_one_line(&layout, &[]);
    assert_eq!(leaks(&log, &[EXEC_TOKEN]), Vec::<String>::new(), "{log}");
    let used_exec = exec_api
        .requests()
        .iter()
        .any(|r| r.authorization.as_deref() == Some(&format!("Bearer {EXEC_TOKEN}")));
    assert!(used_exec, "the plugin's token was not used");
    println!(
        "FAULTS security: token, client key, wrong token and exec token absent from trace logs; 0644 kubeconfig and config file warned once each; output 0640, state dir 0750, state files 0640"
    );
}
