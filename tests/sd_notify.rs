//! systemd's notification protocol, checked with a real datagram socket passed as
//! NOTIFY_SOCKET, the way systemd itself passes it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::daemon::{Daemon, Layout, lines, wait_for_lines, wait_until};
use support::fake_apiserver::{Auth, Failure, FakeApiServer, Options, Target};
use support::notify::Listener;
use support::scenario::{daemon_command, fifo_with_reader, realistic_lines};

const T: Duration = Duration::from_secs(20);

/// A daemon on `layout` against `api`, notifying a fresh listener.
fn start_notifying(
    api: &FakeApiServer,
    layout: &Layout,
    env: &[(&str, &str)],
    extra: &[&str],
) -> (Listener, Daemon) {
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    let listener = Listener::new(layout);
    let mut cmd = daemon_command(layout, Some(&listener), extra);
    let d = Daemon::spawn(cmd.envs(env.iter().copied()));
    (listener, d)
}

fn event(i: usize) -> String {
    format!(
        r#"{{"involvedObject":{{"kind":"Pod","name":"p{i}"}},"reason":"Pulled","message":"m","count":1,"type":"Normal"}}"#
    )
}

#[test]
fn ready_comes_only_after_the_first_list_is_written_and_status_tells_why_before() {
    let api = FakeApiServer::start(Options::default());
    for i in 0..1100 {
        api.create("n", &format!("e{i:05}"), &event(i));
    }
    // The first three list attempts (streaming lists) fail: STATUS must say so while not
    // ready. Three, because their back-off (at least 0.25 + 0.5 + 1 s with jitter) then
    // outlasts the notifier's first tick (1 s); two could be over, and the list written,
    // before anything is sent.
    api.fail_next_for(Target::Watch, 3, Failure::ServiceUnavailable);
    let layout = Layout::new();
    let (listener, d) = start_notifying(&api, &layout, &[], &[]);

    listener.wait_for("READY=1");
    // When READY arrives, every listed event is already in the file.
    let at_ready = lines(&layout.out()).len();
    assert_eq!(at_ready, 1100, "READY before the list was written");
    let msgs = listener.messages();
    let ready_idx = msgs
        .iter()
        .position(|(_, m)| m.contains("READY=1"))
        .unwrap();
    let before: Vec<&String> = msgs[..ready_idx].iter().map(|(_, m)| m).collect();
    assert!(
        before
            .iter()
            .any(|m| m.contains("STATUS=") && m.contains("503")),
        "no STATUS explaining the failures before READY: {before:?}"
    );
    let ready_status = &msgs[ready_idx].1;
    assert!(ready_status.contains("STATUS="), "{ready_status}");
    assert!(ready_status.contains("1100 written"), "{ready_status}");
    assert!(ready_status.contains("filters 1"), "{ready_status}");

    d.stop_ok();
    listener.wait_for("STOPPING=1");
}

#[test]
fn status_is_refreshed_but_not_per_event() {
    let api = FakeApiServer::start(Options::default());
    let layout = Layout::new();
    let (listener, d) = start_notifying(&api, &layout, &[], &[]);
    listener.wait_for("READY=1");
    let started = Instant::now();
    for i in 0..300 {
        api.create("s", &format!("e{i}"), &event(i));
    }
    assert!(
        listener.wait_for_status("300 written"),
        "{:?}",
        listener.messages()
    );
    let statuses = listener.lines_with("STATUS=").len();
    let secs = started.elapsed().as_secs_f64();
    d.stop();
    // At most one every few seconds (plus READY's), never one per event.
    assert!(
        statuses <= 3 + (secs / 5.0) as usize,
        "{statuses} STATUS in {secs:.1}s"
    );
}

/// Waits for a keep-alive sent after `from`.
fn wait_for_keepalive_from(listener: &Listener, from: Instant, d: &Daemon) {
    assert!(
        wait_until(T, || listener
            .lines_with("WATCHDOG=1")
            .iter()
            .any(|(t, _)| *t > from)),
        "keep-alives did not resume; log:\n{}",
        d.stderr()
    );
}

#[test]
fn watchdog_keepalives_flow_while_healthy_and_stop_while_the_api_server_stalls() {
    let api = FakeApiServer::start(Options::default());
    let layout = Layout::new();
    let (listener, d) = start_notifying(
        &api,
        &layout,
        &[("WATCHDOG_USEC", "2000000")],
        &["--watch-idle-timeout-sec", "1"],
    );
    listener.wait_for("READY=1");
    // Healthy and idle: keep-alives at about half the interval.
    std::thread::sleep(Duration::from_secs(4));
    let healthy = listener.lines_with("WATCHDOG=1").len();
    assert!(healthy >= 3, "only {healthy} keep-alives in a healthy run");

    // Stalled: the open watch goes silent, the daemon reconnects, the server does not answer.
    api.set_stalled(true);
    std::thread::sleep(Duration::from_secs(3));
    let stall_start = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let during = listener.count_since("WATCHDOG=1", stall_start);
    assert_eq!(during, 0, "keep-alives went on while stalled");

    // Recovered: they resume.
    api.set_stalled(false);
    wait_for_keepalive_from(&listener, Instant::now(), &d);
    d.stop();
}

#[test]
fn a_standby_is_ready_says_who_leads_and_keeps_the_watchdog_fed() {
    let api = FakeApiServer::start(Options::default());
    // Another host holds the Lease for an hour: this daemon stays a standby.
    api.hold_lease("kube-system", "kube-event-pipe", "cp-other", 3600);
    api.create("n", "e1", &event(1));
    let layout = Layout::new();
    let (listener, d) = start_notifying(
        &api,
        &layout,
        &[("WATCHDOG_USEC", "2000000")],
        &["--leader-election", "--identity", "cp-this"],
    );
    listener.wait_for("READY=1");
    let (_, status) = listener.wait_for("STATUS=standby; leader is cp-other since ");
    assert!(status.contains("watching"), "{status}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        listener.lines_with("WATCHDOG=1").len() >= 2,
        "the watchdog starves while standing by: {:?}",
        listener.messages()
    );
    assert!(lines(&layout.out()).is_empty(), "a standby wrote");

    // The other host lets go: this one leads, writes, and says so.
    api.hold_lease("kube-system", "kube-event-pipe", "", 1);
    listener.wait_for("STATUS=leading since ");
    assert!(
        wait_until(T, || lines(&layout.out()).len() == 1),
        "{}",
        d.stderr()
    );
    d.stop();
}

/// The gaps between keep-alives received from `from` on, and the longest one (the interval
/// systemd would see without one, up to now).
fn longest_keepalive_gap(listener: &Listener, from: Instant) -> (usize, Duration) {
    let mut at = vec![from];
    at.extend(
        listener
            .lines_with("WATCHDOG=1")
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| *t >= from),
    );
    at.push(Instant::now());
    let longest = at
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap();
    (at.len() - 2, longest)
}

/// Starts the daemon writing to `destination` under a watchdog of `usec` microseconds; returns
/// once it is ready.
fn start_watched(
    api: &FakeApiServer,
    layout: &Layout,
    destination: &std::path::Path,
    usec: &str,
) -> (Daemon, Listener) {
    let dest = destination.display().to_string();
    let (listener, d) = start_notifying(
        api,
        layout,
        &[("WATCHDOG_USEC", usec)],
        &["--destination", &dest],
    );
    listener.wait_for("READY=1");
    (d, listener)
}

#[test]
fn the_watchdog_stays_fed_while_a_failing_write_is_retried_and_status_says_so() {
    let api = FakeApiServer::start(Options::default());
    let layout = Layout::new();
    let logs = layout.path("logs");
    std::fs::create_dir(&logs).unwrap();
    let dest = logs.join("events.log");
    let dest_s = dest.display().to_string();
    let (d, listener) = start_watched(&api, &layout, &dest, "3000000");
    api.create_realistic(0..5);
    wait_for_lines(&dest, 5, T, &d);

    // The destination's directory goes away: every write fails, for three watchdog intervals
    // (the retries back off to 6.4 s apart by then, more than the interval).
    std::fs::remove_dir_all(&logs).unwrap();
    api.create_realistic(5..12);
    d.expect_log("cannot write events");
    let failing = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let (keepalives, longest) = longest_keepalive_gap(&listener, failing);
    assert!(
        longest < Duration::from_secs(3),
        "{keepalives} keep-alives in 10 s of retries, one gap of {longest:?}: systemd would have killed the daemon; log:\n{}",
        d.stderr()
    );
    let retrying = |l: &String| l.contains("retrying: writing events");
    let statuses = listener.lines_with("STATUS=");
    let status = &statuses
        .iter()
        .find(|(_, l)| retrying(l))
        .unwrap_or_else(|| panic!("no STATUS says the write is retried: {statuses:?}"))
        .1;
    assert!(
        status.starts_with("STATUS=watching; 5 written")
            && status.contains(&format!(
                "retrying: writing events: cannot open destination {dest_s}: No such file or directory"
            ))
            // The batch in hand; the watch waits meanwhile, so the rest wait in the API server.
            && (status.ends_with("; holding 1 event") || status.ends_with(" events")),
        "{status}"
    );
    assert!(lines(&dest).is_empty(), "nothing can be written meanwhile");

    // Writable again: the held events are written, each once, and STATUS no longer retries.
    std::fs::create_dir(&logs).unwrap();
    let out = wait_for_lines(&dest, 7, T, &d);
    d.expect_log("writing events again");
    let recovered = Instant::now();
    assert!(
        wait_until(T, || listener
            .lines_with("STATUS=")
            .last()
            .is_some_and(|(t, l)| *t > recovered && !l.contains("retrying"))),
        "{:?}",
        listener.lines_with("STATUS=")
    );
    d.stop_ok();
    let expected = realistic_lines(&api, 5..12);
    let mut sorted = out.clone();
    sorted.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(sorted, want, "each held event written once");
    assert_eq!(lines(&dest).len(), 7);
    println!(
        "WATCHDOG failing write: {keepalives} keep-alives in {:.1} s of write retries (WATCHDOG_USEC 3 s), longest gap {:.2} s; the 7 events created meanwhile written once",
        recovered.duration_since(failing).as_secs_f64(),
        longest.as_secs_f64()
    );
}

#[test]
fn a_write_that_hangs_stops_the_watchdog_until_it_goes_through() {
    let api = FakeApiServer::start(Options::default());
    let layout = Layout::new();
    let fifo = layout.path("events.fifo");
    // A reader that opens the pipe and reads nothing until told: once the pipe buffer is full,
    // the daemon's write(2) blocks, as with a log shipper that hangs.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let reader = fifo_with_reader(&fifo, move |f| {
        use std::io::BufRead;
        go_rx.recv().unwrap();
        std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let (d, listener) = start_watched(&api, &layout, &fifo, "2000000");
    // Far more than the pipe holds (64 KiB).
    let (ready, _) = listener.wait_for("READY=1");
    api.create_realistic(0..400);
    // The keep-alives stop (none for longer than the interval), and stay stopped.
    assert!(
        wait_until(T, || listener
            .lines_with("WATCHDOG=1")
            .last()
            .map_or(ready, |(t, _)| *t)
            .elapsed()
            > Duration::from_millis(2_500)),
        "keep-alives go on while the write hangs; log:\n{}",
        d.stderr()
    );
    let hung = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let during = listener.count_since("WATCHDOG=1", hung);
    assert_eq!(during, 0, "keep-alives went on while the write hung");

    go_tx.send(()).unwrap();
    wait_for_keepalive_from(&listener, Instant::now(), &d);
    assert!(
        listener.wait_for_status("400 written"),
        "{:?}",
        listener.lines_with("STATUS=")
    );
    d.stop_ok();
    let got = reader.join().unwrap();
    assert_eq!(got.len(), 400);
}
