//! A saved resourceVersion the server cannot serve, end to end: expired behind a front end
//! that answers the watch `200` with an empty body, ahead of a server whose history started
//! again (an etcd restore), a front end that answers every watch empty, and a second daemon on
//! the same state directory. The fake answers as kube-apiserver v1.36 does
//! (`tests/fixtures/real-apiserver/`, "A resourceVersion ahead of the server"). Each test
//! prints the requests and the time the recovery took.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use support::daemon::{Layout, lines, wait_for_lines};
use support::fake_apiserver::{EmptyWatches, FakeApiServer, Options};
use support::notify::Listener;
use support::scenario::{
    assert_each_once, http_get, metric, metrics_addr, saved_version, serve, server_lines, start,
    start_watching, wait_for_answer,
};

const T: Duration = Duration::from_secs(30);

fn event(i: usize) -> String {
    format!(
        r#"{{"involvedObject":{{"kind":"Pod","name":"p{i}"}},"reason":"Pulled","message":"pulled image {i}","count":1,"type":"Normal"}}"#
    )
}

fn create(api: &FakeApiServer, prefix: &str, range: std::ops::Range<usize>) {
    for i in range {
        api.create("default", &format!("{prefix}-{i:05}"), &event(i));
    }
}

/// Syncs `n` events with a first daemon and stops it: the state directory holds their filters
/// and the version they were written up to.
fn first_run(api: &FakeApiServer, layout: &Layout, n: usize) -> HashSet<String> {
    create(api, "before", 0..n);
    let d = start(layout, None, &[]);
    wait_for_lines(&layout.out(), n, T, &d);
    d.expect_log("watching from here");
    let log = d.stop_ok();
    assert!(saved_version(layout).is_some(), "{log}");
    server_lines(api)
}

/// Restarts the daemon on its old state, with systemd's notify socket: waits until it has
/// written `lines` and is ready, then until 20 events created after that are written too, and
/// checks the output holds each of `expected` and the server's events once. Returns the log
/// and how long the restart took to write `lines`.
fn restart_and_recover(
    api: &FakeApiServer,
    layout: &Layout,
    lines: usize,
    mut expected: HashSet<String>,
) -> (String, Duration) {
    api.clear_requests();
    let listener = Listener::new(layout);
    let began = Instant::now();
    let d = start(layout, Some(&listener), &[]);
    wait_for_lines(&layout.out(), lines, T, &d);
    let recovered = began.elapsed();
    listener.wait_for("READY=1");
    create(api, "after", 0..20);
    wait_for_lines(&layout.out(), lines + 20, T, &d);
    let log = d.stop_ok();
    expected.extend(server_lines(api));
    assert_each_once(&layout.out(), &expected, &log);
    (log, recovered)
}

/// What the daemon asked for since `clear_requests`, by kind.
fn requests(api: &FakeApiServer) -> BTreeMap<&'static str, usize> {
    let mut by = BTreeMap::new();
    for r in api.requests().iter().filter(|r| r.is_events()) {
        let kind = if r.is_version_check() {
            "version checks"
        } else if r.is_watch() && r.param("sendInitialEvents").is_some() {
            "streaming lists"
        } else if r.is_watch() {
            "watches"
        } else {
            "lists"
        };
        *by.entry(kind).or_default() += 1;
    }
    by
}

#[test]
fn a_good_saved_version_costs_one_check_at_restart_and_no_list() {
    let (api, layout) = serve(Options::default());
    first_run(&api, &layout, 50);
    api.clear_requests();
    let d = start_watching(&api, &layout, &[], 50);
    create(&api, "after", 0..5);
    wait_for_lines(&layout.out(), 55, T, &d);
    let log = d.stop_ok();
    let by = requests(&api);
    println!("restart on a good version: {by:?}");
    assert_eq!(api.version_check_count(), 1, "{by:?}");
    assert_eq!(api.list_request_count(), 0, "{by:?}");
    assert!(!by.contains_key("streaming lists"), "{by:?}");
    assert!(!log.contains("listing all events again"), "{log}");
}

#[test]
fn an_expired_version_behind_a_front_end_that_answers_empty_is_listed_again_at_restart() {
    let (api, layout) = serve(Options::default());
    let expected = first_run(&api, &layout, 500);
    let saved = saved_version(&layout).unwrap();
    // While the daemon is down, 300 events come and etcd compacts its history.
    create(&api, "while-down", 0..300);
    api.compact();
    api.set_empty_watches(EmptyWatches::Expired);
    let (log, recovered) = restart_and_recover(&api, &layout, 800, expected);
    assert!(
        log.contains(&format!(
            "the saved resourceVersion {saved} has expired on the API server"
        )),
        "{log}"
    );
    println!(
        "expired at restart: recovered in {:.2} s with {:?}",
        recovered.as_secs_f64(),
        requests(&api)
    );
}

#[test]
fn an_expired_version_answered_with_empty_watches_while_running_is_listed_again() {
    let (api, layout) = serve(Options::default());
    create(&api, "before", 0..200);
    let d = start_watching(&api, &layout, &[], 200);
    let at = api.current_rv();
    // The watch ends as at its timeout, but before the daemon gets through again 300 events
    // come and etcd compacts, and the front end answers the watch from the old version with
    // an empty body.
    api.set_empty_watches(EmptyWatches::Expired);
    api.set_stalled(true);
    api.end_watches();
    create(&api, "while-cut", 0..300);
    api.compact();
    api.clear_requests();
    let began = Instant::now();
    api.set_stalled(false);
    wait_for_lines(&layout.out(), 500, T, &d);
    let recovered = began.elapsed();
    create(&api, "after", 0..20);
    wait_for_lines(&layout.out(), 520, T, &d);
    let log = d.stop_ok();
    assert_each_once(&layout.out(), &server_lines(&api), &log);
    assert!(
        log.contains(&format!(
            "answered the watch from resourceVersion {at} with an empty body, and a list at that version with 410"
        )),
        "{log}"
    );
    one_check_then(&api, "expired while running", recovered);
}

/// Prints how `what` recovered and with which requests; it took one version check. Returns the
/// requests by kind.
fn one_check_then(
    api: &FakeApiServer,
    what: &str,
    recovered: Duration,
) -> BTreeMap<&'static str, usize> {
    let by = requests(api);
    println!(
        "{what}: recovered in {:.2} s with {by:?}",
        recovered.as_secs_f64()
    );
    assert_eq!(by.get("version checks"), Some(&1), "{by:?}");
    by
}

#[test]
fn a_version_ahead_of_a_restored_server_is_listed_again_at_restart() {
    let (api, layout) = serve(Options::default());
    let expected = first_run(&api, &layout, 300);
    let saved: u64 = saved_version(&layout).unwrap().parse().unwrap();
    // etcd is restored from a backup taken before any of these events: its versions start
    // again below the saved one, and 200 new events come.
    api.restore_history(100);
    create(&api, "restored", 0..200);
    assert!(api.current_rv() < saved);
    let current = api.current_rv();
    let (log, recovered) = restart_and_recover(&api, &layout, 500, expected);
    assert!(
        log.contains(&format!(
            "resourceVersion {saved} is ahead of the API server {}/ (current {current}): its history started again",
            api.url()
        )),
        "{log}"
    );
    let by = one_check_then(
        &api,
        "ahead at restart (the server waits ~3 s before its 504)",
        recovered,
    );
    assert_eq!(by.get("streaming lists"), Some(&1), "{by:?}");
}

/// etcd is restored from an old backup while the daemon watches: its versions start again
/// below the daemon's, and 60 new events come. With `restart`, the API server restarts on it
/// (every connection breaks); without, the watch only ends and the next is held silent (the
/// server's answer to a version ahead of it). Returns the recovery time and requests.
fn restored_while_watching(restart: bool, extra: &[&str]) -> String {
    let (api, layout) = serve(Options::default());
    create(&api, "before", 0..100);
    let mut expected = server_lines(&api);
    let d = start_watching(&api, &layout, extra, 100);
    api.clear_requests();
    let began = Instant::now();
    api.restore_history(50);
    create(&api, "restored", 0..60);
    if restart {
        api.restart(Duration::from_millis(300));
    }
    wait_for_lines(&layout.out(), 160, T, &d);
    let recovered = began.elapsed();
    let log = d.stop_ok();
    expected.extend(server_lines(&api));
    assert_each_once(&layout.out(), &expected, &log);
    assert!(log.contains("is ahead of the API server"), "{log}");
    format!(
        "recovered in {:.2} s with {:?}",
        recovered.as_secs_f64(),
        requests(&api)
    )
}

#[test]
fn a_server_restored_while_the_daemon_watches_is_found_out_after_a_silent_watch() {
    let figures = restored_while_watching(false, &["--watch-idle-timeout-sec", "2"]);
    println!("restored while watching (idle bound 2 s, then the server's ~3 s wait): {figures}");
}

#[test]
fn an_api_server_restarted_on_a_restored_etcd_is_found_out_at_once() {
    // The default idle bound (300 s): the check after the broken connection finds it, not a
    // silent watch.
    let figures = restored_while_watching(true, &[]);
    println!("API server restarted on a restored etcd: {figures}");
}

#[test]
fn a_front_end_that_answers_every_watch_empty_is_not_hammered_and_recovery_loses_nothing() {
    let (api, layout) = serve(Options::default());
    create(&api, "before", 0..100);
    let listener = Listener::new(&layout);
    let d = start(
        &layout,
        Some(&listener),
        &["--metrics-address", "127.0.0.1:0"],
    );
    let addr = metrics_addr(&d);
    wait_for_lines(&layout.out(), 100, T, &d);
    wait_for_answer(addr, "/readyz", &d, |a| a.status == 200);

    api.set_empty_watches(EmptyWatches::All);
    api.clear_requests();
    let began = Instant::now();
    api.drop_watches(false);
    // Events keep coming while no watch gets through.
    create(&api, "while-broken", 0..50);
    assert!(
        d.wait_for_log(
            "keeps answering every watch with an empty body",
            Duration::from_secs(60)
        ),
        "{}",
        d.stderr()
    );
    let stuck_after = began.elapsed();
    let sequence: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.is_events())
        .map(|r| {
            let kind = if r.is_version_check() {
                "check"
            } else if r.param("sendInitialEvents").is_some() {
                "streaming list"
            } else {
                "watch"
            };
            format!("{kind} {}", r.status.unwrap_or(0))
        })
        .collect();
    println!("every watch empty: requests until the ERROR: {sequence:?}");
    let (code, why) = http_get(addr, "/readyz");
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("answered"), "{why}");
    assert!(why.contains("with an empty body"), "{why}");
    let status = listener.lines_with("STATUS=").last().unwrap().1.clone();
    assert!(status.contains("with an empty body"), "{status}");
    assert!(metric(addr, "kube_event_pipe_empty_watches_in_a_row").unwrap() >= 4.0);
    assert!(
        metric(
            addr,
            "kube_event_pipe_dataless_watches_total{kind=\"empty\"}"
        )
        .unwrap()
            >= 4.0
    );
    assert!(
        metric(
            addr,
            "kube_event_pipe_relists_total{cause=\"empty_watches\"}"
        )
        .unwrap()
            >= 1.0
    );
    // Stuck: the request rate is bounded (one attempt per 30 s once stuck).
    let before = api.requests().len();
    std::thread::sleep(Duration::from_secs(35));
    let during: Vec<_> = api.requests()[before..].to_vec();
    let stuck_requests = during.iter().filter(|r| r.is_events()).count();
    println!(
        "every watch empty: the ERROR after {:.1} s with {:?}; then {stuck_requests} requests in 35 s",
        stuck_after.as_secs_f64(),
        requests(&api)
    );
    assert!(
        (1..=2).contains(&stuck_requests),
        "{stuck_requests} requests in 35 s while stuck"
    );
    assert_eq!(lines(&layout.out()).len(), 100);

    // The front end is fixed: the daemon recovers by itself, and loses nothing.
    api.set_empty_watches(EmptyWatches::Off);
    let fixed = Instant::now();
    wait_for_lines(&layout.out(), 150, Duration::from_secs(45), &d);
    let recovered = fixed.elapsed();
    wait_for_answer(addr, "/readyz", &d, |a| a.status == 200);
    assert_eq!(
        metric(addr, "kube_event_pipe_empty_watches_in_a_row"),
        Some(0.0)
    );
    create(&api, "after", 0..10);
    wait_for_lines(&layout.out(), 160, T, &d);
    let log = d.stop_ok();
    assert_each_once(&layout.out(), &server_lines(&api), &log);
    let errors = log
        .lines()
        .filter(|l| l.contains(" ERROR ") && l.contains("keeps answering every watch"))
        .count();
    assert_eq!(errors, 1, "one ERROR line per episode:\n{log}");
    println!(
        "every watch empty: recovered {:.1} s after the front end was fixed",
        recovered.as_secs_f64()
    );
}

/// Names, sizes and contents of every file under `dir`.
fn snapshot(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_second_daemon_on_the_same_state_directory_exits_2_and_changes_nothing() {
    let (api, layout) = serve(Options::default());
    create(&api, "before", 0..100);
    let first = start(&layout, None, &[]);
    wait_for_lines(&layout.out(), 100, T, &first);
    assert!(first.wait_for_log("watching from here", T));
    // Persisted: filters and version on disk, as an operator would find them.
    std::thread::sleep(Duration::from_secs(6));
    let state_before = snapshot(&layout.state());
    let out_before = std::fs::read(layout.out()).unwrap();

    let mut second = start(&layout, None, &[]);
    let status = second.wait(T);
    let log = second.stderr();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "another kube-event-pipe (pid {}) is using the state directory {}",
            first.child.id(),
            layout.state().display()
        )),
        "{log}"
    );
    assert_eq!(snapshot(&layout.state()), state_before);
    assert_eq!(std::fs::read(layout.out()).unwrap(), out_before);

    // A killed daemon's lock goes with it: the restart runs at once.
    first.kill();
    let third = start_watching(&api, &layout, &[], 100);
    create(&api, "after", 0..10);
    wait_for_lines(&layout.out(), 110, T, &third);
    let log = third.stop_ok();
    assert!(!log.contains("another kube-event-pipe"), "{log}");
    assert_each_once(&layout.out(), &server_lines(&api), &log);
}
