//! Choosing which events to keep: `namespace`, `field_selector` and `label_selector`, applied
//! by the API server. The real binary runs against the fake API server, which applies the
//! selectors as kube-apiserver does and records every request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::daemon::{Daemon, Layout, lines, wait_for_lines, wait_until};
use support::fake_apiserver::{Auth, FakeApiServer, Options, RecordedRequest};
use support::notify::Listener;
use support::scenario::{
    daemon_command, expire_version, serve, settle_and_stop, start, start_watching, wait_for_relist,
};

const T: Duration = Duration::from_secs(20);

fn event(typ: &str, team: &str) -> String {
    format!(
        r#"{{"metadata":{{"labels":{{"team":"{team}"}}}},"involvedObject":{{"kind":"Pod","name":"web-0"}},"reason":"Tested","message":"m","count":1,"type":"{typ}"}}"#
    )
}

/// `namespace/name` of each written line.
fn written(layout: &Layout) -> Vec<String> {
    lines(&layout.out())
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}/{}",
                v["metadata"]["namespace"].as_str().unwrap(),
                v["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn events_requests(api: &FakeApiServer) -> Vec<RecordedRequest> {
    api.requests()
        .into_iter()
        .filter(|r| r.is_events())
        .collect()
}

/// Requests that fetch the whole selected state: a first list page, or a streaming list.
fn initial_syncs(api: &FakeApiServer) -> usize {
    events_requests(api)
        .iter()
        .filter(|r| {
            (r.is_list() && !r.is_version_check() && r.param("continue").is_none())
                || r.param("sendInitialEvents") == Some("true")
        })
        .count()
}

/// Once with the initial sync by streaming list, once by paged list (a server without
/// streaming lists).
#[test]
fn only_events_matching_the_selectors_are_written_from_the_list_and_the_watch() {
    for streaming in [true, false] {
        only_matching_events_are_written(streaming);
    }
}

fn only_matching_events_are_written(streaming: bool) {
    let api = FakeApiServer::start(Options {
        watch_list: streaming,
        ..Options::default()
    });
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    api.create("a", "listed-warning-a", &event("Warning", "a"));
    api.create("a", "listed-warning-b", &event("Warning", "b"));
    api.create("a", "listed-normal-a", &event("Normal", "a"));
    let d = start(
        &layout,
        None,
        &[
            "--field-selector",
            "type=Warning",
            "--label-selector",
            "team in (a, c)",
        ],
    );
    wait_for_lines(&layout.out(), 1, T, &d);
    d.expect_log("watching from here");
    api.create("b", "watched-normal-a", &event("Normal", "a"));
    api.create("b", "watched-warning-b", &event("Warning", "b"));
    api.create("b", "watched-warning-c", &event("Warning", "c"));
    wait_for_lines(&layout.out(), 2, T, &d);
    std::thread::sleep(Duration::from_millis(500));
    let log = d.stop_ok();
    assert_eq!(
        written(&layout),
        ["a/listed-warning-a", "b/watched-warning-c"],
        "{log}"
    );
    assert_eq!(
        lines(&layout.out())[1],
        api.object_line("b", "watched-warning-c")
    );
    // Every request carried both selectors, encoded so that the server read them back intact.
    let requests = events_requests(&api);
    let pages = requests.iter().filter(|r| r.is_list()).count();
    // The first start's first-contact request is a list of one, with the same selectors.
    assert_eq!(pages, 1 + usize::from(!streaming), "{requests:?}");
    assert_eq!(api.streaming_list_count(), 1, "{requests:?}");
    for r in &requests {
        assert_eq!(r.param("fieldSelector"), Some("type=Warning"), "{r:?}");
        assert_eq!(r.param("labelSelector"), Some("team in (a, c)"), "{r:?}");
        assert!(
            r.raw_query
                .contains("labelSelector=team%20in%20%28a%2C%20c%29"),
            "{}",
            r.raw_query
        );
    }
}

/// A fake holding three events (`<prefix>-0` to `-2`) for each (namespace, name prefix, type),
/// created in turn; then the daemon, started with the selection in `extra`, has written the three it selects and
/// watches.
fn synced_on_three_each(
    kinds: &[(&str, &str, &str)],
    extra: &[&str],
) -> (FakeApiServer, Layout, Daemon) {
    let (api, layout) = serve(Options::default());
    for i in 0..3 {
        for (ns, prefix, typ) in kinds {
            api.create(ns, &format!("{prefix}-{i}"), &event(typ, "a"));
        }
    }
    let d = start_watching(&api, &layout, extra, 3);
    (api, layout, d)
}

#[test]
fn a_namespaced_run_never_requests_a_cluster_wide_path_even_when_it_lists_again() {
    let (api, layout, d) = synced_on_three_each(
        &[("mine", "before", "Normal"), ("theirs", "before", "Normal")],
        &["--namespace", "mine"],
    );
    api.create("theirs", "during", &event("Normal", "a"));
    api.create("mine", "during", &event("Normal", "a"));
    wait_for_lines(&layout.out(), 4, T, &d);
    // The version expires: a re-list, which must stay in the namespace too.
    expire_version(&api);
    api.create("mine", "after", &event("Normal", "a"));
    wait_for_relist(&layout, &d, 5);
    settle_and_stop(d);
    let out = written(&layout);
    assert_eq!(out.len(), 5, "{out:?}");
    assert!(out.iter().all(|n| n.starts_with("mine/")), "{out:?}");
    assert_eq!(out.iter().collect::<HashSet<_>>().len(), 5, "{out:?}");
    let requests = api.requests();
    assert!(initial_syncs(&api) >= 2, "{requests:?}");
    for r in &requests {
        assert_eq!(r.path, "/api/v1/namespaces/mine/events", "{r:?}");
    }
}

/// Flags, environment, and the message the daemon must log.
type Rejected = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn a_selector_the_server_rejects_exits_2_before_ready_naming_key_origin_and_message() {
    let (api, layout) = serve(Options::default());
    api.create("a", "one", &event("Warning", "a"));
    let cases: [Rejected; 3] = [
        (
            &["--field-selector", "spec.nodeName=x"],
            &[],
            "field_selector = \"spec.nodeName=x\" (command-line flag --field-selector) was rejected by the API server: field label not supported: spec.nodeName",
        ),
        (
            &[],
            &[("KUBE_EVENT_PIPE_FIELD_SELECTOR", "type===Warning,,")],
            "field_selector = \"type===Warning,,\" (environment variable KUBE_EVENT_PIPE_FIELD_SELECTOR) was rejected by the API server: invalid field selector: unescaped character in value: 61",
        ),
        (
            &["--label-selector", "team in (a", "--namespace", "a"],
            &[],
            "label_selector = \"team in (a\" (command-line flag --label-selector) was rejected by the API server: unable to parse requirement: found '', expected: ',' or ')'",
        ),
    ];
    for (flags, env, message) in cases {
        let listener = Listener::new(&layout);
        let mut cmd = daemon_command(&layout, Some(&listener), flags);
        let mut d = Daemon::spawn(cmd.envs(env.iter().copied()));
        let status = d.wait(T);
        assert_eq!(status.code(), Some(2), "{}", d.stderr());
        assert!(
            d.wait_for_log(message, T),
            "want {message:?} in:\n{}",
            d.stderr()
        );
        let log = d.stderr();
        // Said once, not retried.
        assert_eq!(
            log.matches("rejected by the API server").count(),
            1,
            "{log}"
        );
        assert!(
            !listener
                .messages()
                .iter()
                .any(|(_, m)| m.contains("READY=1")),
            "READY=1 was sent: {:?}",
            listener.messages()
        );
        assert!(lines(&layout.out()).is_empty());
        std::fs::remove_file(&listener.path).unwrap();
    }
    // One request each: the first answer settled it.
    assert_eq!(events_requests(&api).len(), 3);
}

#[test]
fn a_changed_selection_lists_again_once_and_writes_only_what_is_new() {
    let (api, layout, d) = synced_on_three_each(
        &[("a", "warning", "Warning"), ("a", "normal", "Normal")],
        &["--field-selector", "type=Warning"],
    );
    d.stop_ok();
    let saved = std::fs::read_to_string(layout.state().join("resource_version")).unwrap();
    assert!(
        saved.ends_with("\n{\"fieldSelector\":\"type=Warning\"}\n"),
        "{saved:?}"
    );

    // The same selection resumes without listing.
    api.clear_requests();
    let d = start(&layout, None, &["--field-selector", "type=Warning"]);
    assert!(
        wait_until(T, || api.watch_request_count() == 1),
        "{}",
        d.stderr()
    );
    let (_, log) = d.stop();
    assert_eq!(initial_syncs(&api), 0, "{log}");
    assert!(!log.contains("selection changed"), "{log}");

    // Every event now: one list, one line saying why, only the Normal events are new.
    api.clear_requests();
    let d = start_watching(&api, &layout, &[], 6);
    std::thread::sleep(Duration::from_millis(500));
    let log = d.stop_ok();
    assert_eq!(initial_syncs(&api), 1, "{log}");
    assert_eq!(log.matches("the selection changed").count(), 1, "{log}");
    assert!(
        log.contains("it was saved for {\"fieldSelector\":\"type=Warning\"}; now all events"),
        "{log}"
    );
    let out = written(&layout);
    assert_eq!(out.len(), 6, "{out:?}");
    assert_eq!(out.iter().collect::<HashSet<_>>().len(), 6, "{out:?}");
    assert!(out[3..].iter().all(|n| n.contains("normal")), "{out:?}");
    // And the saved version is for every event again: the one-line form.
    let saved = std::fs::read_to_string(layout.state().join("resource_version")).unwrap();
    assert_eq!(saved.lines().count(), 1, "{saved:?}");

    // A namespace is part of the selection too.
    api.clear_requests();
    let d = start(&layout, None, &["--namespace", "a"]);
    d.expect_log("the selection changed");
    d.expect_log("watching from here");
    let (_, log) = d.stop();
    assert_eq!(initial_syncs(&api), 1, "{log}");
    assert_eq!(lines(&layout.out()).len(), 6, "{log}");
}

#[test]
fn replaying_a_recording_with_a_selection_is_refused_with_exit_2() {
    let layout = Layout::new();
    let recording = layout.path("recording.json");
    std::fs::write(&recording, "").unwrap();
    let rec = recording.display().to_string();
    for (flag, value) in [
        ("--namespace", "kube-system"),
        ("--field-selector", "type=Warning"),
        ("--label-selector", "team=a"),
    ] {
        let mut d = Daemon::start(&["--source", &rec, flag, value]);
        let status = d.wait(T);
        let log = d.stderr();
        assert_eq!(status.code(), Some(2), "{log}");
        let key = flag.trim_start_matches("--").replace('-', "_");
        let want =
            format!("{key} = \"{value}\" (command-line flag {flag}) cannot be used with --source");
        assert!(d.wait_for_log(&want, T), "want {want:?} in:\n{log}");
    }
}
