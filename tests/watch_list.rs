//! The initial sync by streaming list, end to end: the real binary against the fake API server,
//! which serves streaming lists as kube-apiserver v1.36 does (initial events in key order, the
//! `k8s.io/initial-events-end` bookmark, 422 with the WatchList gate off) and can cut one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::daemon::{Daemon, Layout, lines, wait_for_lines};
use support::fake_apiserver::{Auth, FakeApiServer, Options};
use support::notify::Listener;
use support::scenario::{
    assert_each_once, expire_version, saved_version, serve, server_lines, settle_and_stop, start,
    wait_for_relist,
};

const T: Duration = Duration::from_secs(30);

fn event(i: usize) -> String {
    format!(
        r#"{{"involvedObject":{{"kind":"Pod","name":"p{i}"}},"reason":"Pulled","message":"pulled image {i}","count":1,"type":"Normal"}}"#
    )
}

fn server_with(opts: Options, n: usize) -> (FakeApiServer, Layout) {
    let (api, layout) = serve(opts);
    // Names that sort differently from creation order, so key order and version order differ.
    for i in 0..n {
        api.create(
            &format!("ns-{}", i % 7),
            &format!("ev-{:05}", n - i),
            &event(i),
        );
    }
    (api, layout)
}

/// Starts the daemon with a NOTIFY_SOCKET listener.
fn start_notified(layout: &Layout, extra: &[&str]) -> (Daemon, Listener) {
    let listener = Listener::new(layout);
    (start(layout, Some(&listener), extra), listener)
}

/// The list pages the daemon needs for `events`.
fn pages(events: usize) -> usize {
    events.div_ceil(kube_event_pipe::source::api::PAGE_LIMIT as usize)
}

/// Once the daemon has listed `listed` events by streaming list, one live event is written
/// too; it stops cleanly, having written each event once. Returns its log.
fn listed_then_live_then_stop(
    api: &FakeApiServer,
    layout: &Layout,
    d: Daemon,
    listed: usize,
) -> String {
    d.expect_log("listed all events by streaming list");
    api.create("live", "after", &event(9999));
    wait_for_lines(&layout.out(), listed + 1, T, &d);
    std::thread::sleep(Duration::from_millis(300));
    let log = d.stop_ok();
    assert_each_once(&layout.out(), &server_lines(api), &log);
    log
}

#[test]
fn cold_start_writes_every_event_once_is_ready_after_the_end_bookmark_and_saves_its_version() {
    let (api, layout) = server_with(Options::default(), 1500);
    let (d, notes) = start_notified(&layout, &[]);
    let (_, ready) = notes.wait_for("READY=1");
    // READY came after every initial event was written.
    assert_eq!(
        lines(&layout.out()).len(),
        1500,
        "READY before the sync: {ready}"
    );
    let log = listed_then_live_then_stop(&api, &layout, d, 1500);
    // Written in the server's key order (namespace/name), byte for byte.
    let out = lines(&layout.out());
    let listed: Vec<String> = api
        .object_lines()
        .into_iter()
        .filter(|l| !l.contains("\"namespace\":\"live\""))
        .collect();
    assert!(out[..1500] == listed[..], "not in key order; log:\n{log}");
    assert_eq!(api.streaming_list_count(), 1, "{log}");
    // Only the first start's first-contact request, a list of one.
    assert_eq!(api.list_request_count(), 1, "{log}");
    assert_eq!(
        api.watch_request_count(),
        1,
        "the live watch is the same connection: {log}"
    );
    // The version saved is the end bookmark's, once the live event advanced it; a run stopped
    // right after the sync saves the bookmark's own.
    assert_eq!(saved_version(&layout), Some(api.current_rv().to_string()));
    let fresh = Layout::new();
    api.write_kubeconfig(fresh.kubeconfig(), Auth::None);
    let rv_now = api.current_rv();
    let d = start(&fresh, None, &[]);
    d.expect_log("watching from here");
    let (_, log) = d.stop();
    assert!(log.contains(&format!("resource_version={rv_now}")), "{log}");
    assert_eq!(saved_version(&fresh), Some(rv_now.to_string()));
}

#[test]
fn no_version_is_saved_and_no_ready_sent_before_the_end_bookmark_and_a_kill_there_loses_nothing() {
    let (api, layout) = server_with(Options::default(), 2000);
    // The streaming list stops after 700 events, connection open: a server that is slow to
    // send the rest.
    api.cut_next_streaming_list(700, true);
    let (d, notes) = start_notified(&layout, &[]);
    wait_for_lines(&layout.out(), 700, T, &d);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(saved_version(&layout), None, "{}", d.stderr());
    assert!(
        notes.lines_with("READY=1").is_empty(),
        "READY before the end bookmark: {:?}",
        notes.messages()
    );
    let log = d.kill();
    assert!(!log.contains("watching from here"), "{log}");

    // The restart lists again, and writes only what the killed run had not.
    let d = start(&layout, None, &[]);
    wait_for_lines(&layout.out(), 2000, T, &d);
    d.expect_log("watching from here");
    std::thread::sleep(Duration::from_millis(300));
    let log = d.stop_ok();
    assert_each_once(&layout.out(), &server_lines(&api), &log);
    assert_eq!(api.streaming_list_count(), 2, "{log}");
    assert_eq!(saved_version(&layout), Some(api.current_rv().to_string()));
}

#[test]
fn a_server_without_streaming_lists_gets_pages_for_the_rest_of_the_process_with_one_info_line() {
    let (api, layout) = server_with(
        Options {
            watch_list: false,
            ..Options::default()
        },
        1203,
    );
    let d = start(&layout, None, &[]);
    wait_for_lines(&layout.out(), 1203, T, &d);
    d.expect_log("watching from here");
    // An expired version: the re-list goes straight to pages.
    api.create("late", "one", &event(1));
    expire_version(&api);
    api.create("late", "two", &event(2));
    wait_for_relist(&layout, &d, 1205);
    let log = settle_and_stop(d);
    assert_each_once(&layout.out(), &server_lines(&api), &log);
    assert_eq!(
        log.matches("does not offer streaming lists").count(),
        1,
        "{log}"
    );
    assert!(log.contains("WatchList feature gate"), "{log}");
    // One refused streaming list; then the pages, twice (after the first start's first-contact
    // request, a list of one).
    assert_eq!(api.streaming_list_count(), 1, "{log}");
    assert_eq!(api.list_request_count(), 1 + 2 * pages(1203), "{log}");
}

#[test]
fn a_stream_that_ends_before_its_bookmark_is_listed_again_without_saving_or_doubling() {
    let (api, layout) = server_with(Options::default(), 900);
    api.cut_next_streaming_list(300, false);
    let d = start(&layout, None, &[]);
    wait_for_lines(&layout.out(), 900, T, &d);
    d.expect_log("watching from here");
    std::thread::sleep(Duration::from_millis(300));
    let log = d.stop_ok();
    assert!(
        log.contains("the streaming list ended before its end bookmark"),
        "{log}"
    );
    assert_each_once(&layout.out(), &server_lines(&api), &log);
    assert_eq!(api.streaming_list_count(), 2, "{log}");
    // Only the first start's first-contact request.
    assert_eq!(api.list_request_count(), 1, "{log}");
}

#[test]
fn no_end_bookmark_within_the_bound_falls_back_to_pages() {
    let (api, layout) = server_with(Options::default(), 800);
    api.cut_next_streaming_list(250, true);
    // The bound is the watch idle bound when that is shorter than a minute.
    let d = start(&layout, None, &["--watch-idle-timeout-sec", "2"]);
    wait_for_lines(&layout.out(), 800, T, &d);
    d.expect_log("watching from here");
    std::thread::sleep(Duration::from_millis(300));
    let log = d.stop_ok();
    assert!(
        log.contains(
            "the streaming list sent no end bookmark within 2s; listing in pages from now on"
        ),
        "{log}"
    );
    assert_each_once(&layout.out(), &server_lines(&api), &log);
    assert_eq!(api.streaming_list_count(), 1, "{log}");
    assert_eq!(api.list_request_count(), 1 + pages(800), "{log}");
}

#[test]
fn an_expired_version_on_resume_is_followed_by_a_streaming_relist() {
    let (api, layout) = server_with(Options::default(), 600);
    let d = start(&layout, None, &[]);
    wait_for_lines(&layout.out(), 600, T, &d);
    d.expect_log("watching from here");
    d.stop();
    for i in 0..5 {
        api.create("down", &format!("e{i}"), &event(i));
    }
    api.compact();
    api.clear_requests();
    let d = start(&layout, None, &[]);
    wait_for_lines(&layout.out(), 605, T, &d);
    d.expect_log("listing all events again");
    listed_then_live_then_stop(&api, &layout, d, 605);
    // The check of the saved version (410), then one streaming list that goes on as the live
    // watch: no watch from the expired version at all.
    let requests = api.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[0].is_version_check(), "{requests:?}");
    assert_eq!(requests[0].status, Some(410));
    assert!(requests[1].is_streaming_list());
}

#[test]
fn a_streaming_list_carries_the_namespace_and_selectors() {
    let api = FakeApiServer::start(Options::default());
    for ns in ["mine", "theirs"] {
        for typ in ["Normal", "Warning"] {
            api.create(
                ns,
                &format!("{typ}-1"),
                &format!(
                    r#"{{"reason":"R","type":"{typ}","metadata":{{"labels":{{"app":"web"}}}}}}"#
                ),
            );
        }
    }
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    let d = start(
        &layout,
        None,
        &[
            "--namespace",
            "mine",
            "--field-selector",
            "type=Warning",
            "--label-selector",
            "app=web",
        ],
    );
    wait_for_lines(&layout.out(), 1, T, &d);
    d.expect_log("listed all events by streaming list");
    api.create(
        "mine",
        "Warning-2",
        r#"{"reason":"R","type":"Warning","metadata":{"labels":{"app":"web"}}}"#,
    );
    api.create(
        "mine",
        "Normal-2",
        r#"{"reason":"R","type":"Normal","metadata":{"labels":{"app":"web"}}}"#,
    );
    wait_for_lines(&layout.out(), 2, T, &d);
    std::thread::sleep(Duration::from_millis(300));
    d.stop_ok();
    let out = lines(&layout.out());
    assert_eq!(
        out,
        [
            api.object_line("mine", "Warning-1"),
            api.object_line("mine", "Warning-2")
        ]
    );
    // The first start's first-contact request (a list of one), then the streaming list: both
    // ask for the same namespaced collection with the same selectors.
    let requests = api.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[0].is_list() && requests[0].param("limit") == Some("1"));
    assert!(requests[1].is_streaming_list(), "{:?}", requests[1]);
    for r in &requests {
        assert_eq!(r.path, "/api/v1/namespaces/mine/events");
        assert_eq!(r.param("fieldSelector"), Some("type=Warning"));
        assert_eq!(r.param("labelSelector"), Some("app=web"));
    }
}
