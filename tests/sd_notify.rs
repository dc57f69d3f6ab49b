//! systemd's notification protocol, checked with a real datagram socket passed as
//! NOTIFY_SOCKET, the way systemd itself passes it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::daemon::{Daemon, Layout, command, lines, wait_until};
use support::fake_apiserver::{Auth, Failure, FakeApiServer, Options, Target};
use support::notify::Listener;

const T: Duration = Duration::from_secs(20);

fn start(layout: &Layout, listener: &Listener, env: &[(&str, &str)], extra: &[&str]) -> Daemon {
    let mut args = layout.args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = command(&args);
    cmd.env("NOTIFY_SOCKET", &listener.path)
        .stdout(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Daemon::spawn(&mut cmd)
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
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    let listener = Listener::new(&layout);
    let d = start(&layout, &listener, &[], &[]);

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

    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    listener.wait_for("STOPPING=1");
}

#[test]
fn status_is_refreshed_but_not_per_event() {
    let api = FakeApiServer::start(Options::default());
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    let listener = Listener::new(&layout);
    let d = start(&layout, &listener, &[], &[]);
    listener.wait_for("READY=1");
    let started = Instant::now();
    for i in 0..300 {
        api.create("s", &format!("e{i}"), &event(i));
    }
    assert!(
        wait_until(T, || listener
            .lines_with("STATUS=")
            .iter()
            .any(|(_, l)| l.contains("300 written"))),
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

#[test]
fn watchdog_keepalives_flow_while_healthy_and_stop_while_the_api_server_stalls() {
    let api = FakeApiServer::start(Options::default());
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    let listener = Listener::new(&layout);
    let d = start(
        &layout,
        &listener,
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
    let during: Vec<_> = listener
        .lines_with("WATCHDOG=1")
        .into_iter()
        .filter(|(t, _)| *t >= stall_start)
        .collect();
    assert!(
        during.is_empty(),
        "keep-alives went on while stalled: {}",
        during.len()
    );

    // Recovered: they resume.
    api.set_stalled(false);
    let resumed = Instant::now();
    assert!(
        wait_until(T, || listener
            .lines_with("WATCHDOG=1")
            .iter()
            .any(|(t, _)| *t > resumed)),
        "keep-alives did not resume; log:\n{}",
        d.stderr()
    );
    d.stop();
}

#[test]
fn a_standby_is_ready_says_who_leads_and_keeps_the_watchdog_fed() {
    let api = FakeApiServer::start(Options::default());
    // Another host holds the Lease for an hour: this daemon stays a standby.
    api.hold_lease("kube-system", "kube-event-pipe", "cp-other", 3600);
    api.create("n", "e1", &event(1));
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    let listener = Listener::new(&layout);
    let d = start(
        &layout,
        &listener,
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
