//! The main job end to end: the real binary against a fake API server that answers like
//! kube-apiserver. Every test checks what an operator would look at: the lines in the output
//! file, and what the daemon asked the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::daemon::{Daemon, Layout, lines, wait_for_lines, wait_until};
use support::fake_apiserver::{Auth, FakeApiServer, Options};
use support::scenario::{
    fifo_with_reader, serve, server_lines, settle_and_stop, start, tls_server, wait_for_relist,
    wait_for_watch,
};

const T: Duration = Duration::from_secs(20);

fn event(reason: &str, count: u64) -> String {
    format!(
        r#"{{"involvedObject":{{"kind":"Pod","namespace":"demo","name":"web-1"}},"reason":"{reason}","message":"Back-off restarting failed container","source":{{"component":"kubelet","host":"node-1"}},"firstTimestamp":"2026-11-26T06:00:00Z","lastTimestamp":"2026-11-26T06:00:00Z","count":{count},"type":"Warning"}}"#
    )
}

/// A fake API server holding `n` events `<prefix>-<i:05>` in namespace `ns`, and a first
/// daemon that has written them: its output's lines.
fn first_run(ns: &str, prefix: &str, n: usize) -> (FakeApiServer, Layout, Daemon, Vec<String>) {
    let (api, layout) = serve(Options::default());
    for i in 0..n {
        api.create(ns, &format!("{prefix}-{i:05}"), &event("Pulled", 1));
    }
    let d = start(&layout, None, &[]);
    let out = wait_for_lines(&layout.out(), n, T, &d);
    (api, layout, d, out)
}

/// Creates `n` events `<prefix>-<i>` in namespace `ns`.
fn create_pulled(api: &FakeApiServer, ns: &str, prefix: &str, n: usize) {
    for i in 0..n {
        api.create(ns, &format!("{prefix}-{i}"), &event("Pulled", 1));
    }
}

/// Stops the daemon after a moment to write anything it would write twice; the output's lines.
fn settled_output(layout: &Layout, d: Daemon) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(500));
    d.stop();
    lines(&layout.out())
}

/// Creates `n` events `<prefix>-<i>` in `ns` and waits until the destination, new or empty
/// before, holds them.
fn write_pulled(
    api: &FakeApiServer,
    layout: &Layout,
    d: &Daemon,
    ns: &str,
    prefix: &str,
    n: usize,
) {
    create_pulled(api, ns, prefix, n);
    wait_for_lines(&layout.out(), n, T, d);
}

/// Renames the destination as logrotate does; its new path.
fn move_aside(layout: &Layout) -> PathBuf {
    let moved = layout.path("events.log.1");
    std::fs::rename(layout.out(), &moved).unwrap();
    moved
}

/// A fake API server with no events and a daemon already watching it.
fn watching(extra: &[&str]) -> (FakeApiServer, Layout, Daemon) {
    let (api, layout) = serve(Options::default());
    let d = start(&layout, None, extra);
    wait_for_watch(&api, &d);
    (api, layout, d)
}

/// [`watching`], once the first event the server got since, `one` in `ns`, is written.
fn watching_after_one(ns: &str) -> (FakeApiServer, Layout, Daemon) {
    let (api, layout, d) = watching(&[]);
    api.create(ns, "one", &event("Pulled", 1));
    wait_for_lines(&layout.out(), 1, T, &d);
    (api, layout, d)
}

fn no_duplicates(lines: &[String]) {
    let set: HashSet<&String> = lines.iter().collect();
    assert_eq!(set.len(), lines.len(), "duplicate lines in output");
}

/// The daemon writing to `dest`, at the default log level (INFO) rather than the layout's debug.
fn start_at_info(layout: &Layout, dest: &Path) -> Daemon {
    let dest = dest.display().to_string();
    start(
        layout,
        None,
        &["--destination", &dest, "--log-level", "info"],
    )
}

#[test]
fn first_run_writes_every_event_once_then_restart_writes_nothing_and_new_state_repeats_them() {
    let (api, layout, d, first) = first_run("ns", "ev", 1203);
    d.expect_log("watching from here");
    d.stop_ok();
    assert_eq!(first.len(), 1203);
    no_duplicates(&first);
    // A first start's first contact (a list of one event), then one streaming list, no pages.
    assert_eq!(api.streaming_list_count(), 1);
    assert_eq!(api.list_request_count(), 1);
    let expected: Vec<String> = api.object_lines();
    assert_eq!(first, expected, "lines differ from the server's objects");

    // A restart with the same state resumes the watch: no list, no new line.
    api.clear_requests();
    let d = start(&layout, None, &[]);
    wait_for_watch(&api, &d);
    let log = settle_and_stop(d);
    assert_eq!(lines(&layout.out()).len(), 1203, "{log}");
    assert_eq!(api.list_request_count(), 0, "restart listed again: {log}");
    assert_eq!(api.streaming_list_count(), 0, "restart listed again: {log}");

    // A new state directory writes the same events again, identical lines.
    let fresh = Layout::new();
    api.write_kubeconfig(fresh.kubeconfig(), Auth::None);
    let d = start(&fresh, None, &[]);
    let again = wait_for_lines(&fresh.out(), 1203, T, &d);
    d.stop();
    assert_eq!(again, first);
}

#[test]
fn counts_decide_what_is_new_and_recreated_events_are_not() {
    let (api, layout, d) = watching(&[]);

    api.create("demo", "web.1", &event("BackOff", 1));
    for n in [2, 2, 2, 3] {
        api.set_count("demo", "web.1", n);
    }
    let out = wait_for_lines(&layout.out(), 3, T, &d);
    // Deleted, then recreated with the same counts: nothing new.
    api.delete("demo", "web.1");
    api.create("demo", "web.1", &event("BackOff", 1));
    api.set_count("demo", "web.1", 2);
    api.set_count("demo", "web.1", 3);
    // A series.count bump is a new occurrence.
    api.set_series_count("demo", "web.1", 4);
    let out2 = wait_for_lines(&layout.out(), 4, T, &d);
    std::thread::sleep(Duration::from_millis(500));
    let (_, log) = d.stop();
    let all = lines(&layout.out());
    assert_eq!(all.len(), 4, "{log}");
    assert_eq!(&out2[..3], &out[..3]);
    let counts: Vec<String> = all
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{}/{}", v["count"], v["series"]["count"])
        })
        .collect();
    assert_eq!(counts, ["1/null", "2/null", "3/null", "3/4"]);
}

#[test]
fn output_is_byte_for_byte_what_the_server_sent() {
    let (api, layout) = serve(Options::default());
    // Before the daemon starts: served by the list, which lacks kind/apiVersion.
    let odd = r#"{"zeta":1,"involvedObject":{"kind":"Pod","name":"p","extra":[1.0e3,-0,1E-7]},"reason":"Odd","message":"caf\u00e9 \"quoted\" \ud83d\ude00","eventTime":"2026-11-26T06:10:00.123456Z","count":1,"alpha":{"nested":{"deep":[{},[],null,true]}}}"#;
    api.create("odd", "listed", odd);
    let d = start(&layout, None, &[]);
    wait_for_watch(&api, &d);
    // After: served by the watch, which carries kind/apiVersion first.
    api.create("odd", "watched", odd);
    let out = wait_for_lines(&layout.out(), 2, T, &d);
    d.stop();
    assert_eq!(out[0], api.object_line("odd", "listed"));
    assert_eq!(out[1], api.object_line("odd", "watched"));
    assert!(
        out[0].starts_with(r#"{"kind":"Event","apiVersion":"v1","metadata":"#),
        "{}",
        out[0]
    );
    assert!(out[0].contains(r#"[1.0e3,-0,1E-7]"#));
    assert!(out[0].contains(r#""message":"caf\u00e9 \"quoted\" \ud83d\ude00""#));
}

#[test]
fn restart_after_downtime_writes_only_new_events_without_listing() {
    let (api, layout, d, _) = first_run("a", "before", 5);
    wait_for_watch(&api, &d);
    api.create("a", "during-0", &event("Pulled", 1));
    wait_for_lines(&layout.out(), 6, T, &d);
    d.stop_ok();

    create_pulled(&api, "a", "down", 7);
    api.set_count("a", "before-00000", 2);
    api.clear_requests();
    let d = start(&layout, None, &[]);
    wait_for_lines(&layout.out(), 14, T, &d);
    let out = settled_output(&layout, d);
    assert_eq!(out.len(), 14);
    no_duplicates(&out);
    assert_eq!(api.list_request_count(), 0, "resumed watch must not list");
    assert_eq!(api.streaming_list_count(), 0, "resumed watch must not list");
    assert!(out[6..].iter().any(|l| l.contains("\"down-6\"")));
}

#[test]
fn expired_resource_version_means_one_relist_and_nothing_doubled() {
    let (api, layout, d, _) = first_run("a", "e", 600);
    d.stop_ok();

    api.create("a", "late", &event("Pulled", 1));
    api.compact();
    api.clear_requests();
    let d = start(&layout, None, &[]);
    wait_for_relist(&layout, &d, 601);
    d.expect_log("watching from here");
    let out = settled_output(&layout, d);
    assert_eq!(out.len(), 601);
    no_duplicates(&out);
    // One re-list, by streaming list.
    assert_eq!(api.streaming_list_count(), 1);
    assert_eq!(api.list_request_count(), 0);
}

#[test]
fn in_stream_expiry_while_watching_relists_and_loses_nothing() {
    let (api, layout, d) = watching_after_one("a");
    api.expire_watches();
    api.create("a", "two", &event("Pulled", 1));
    wait_for_relist(&layout, &d, 2);
    let out = settled_output(&layout, d);
    assert_eq!(out.len(), 2);
    no_duplicates(&out);
}

#[test]
fn dropped_connections_stalls_and_bad_frames_lose_and_double_nothing() {
    let (api, layout, d) = watching(&["--watch-idle-timeout-sec", "2"]);
    let mut expected = 0;
    let mut add = |n: usize| {
        for _ in 0..n {
            api.create("f", &format!("e{expected}"), &event("Pulled", 1));
            expected += 1;
        }
        expected
    };
    wait_for_lines(&layout.out(), add(3), T, &d);
    api.drop_watches(true);
    wait_for_lines(&layout.out(), add(3), T, &d);
    // The new events may have come through the old connection before the drop took effect;
    // what is injected next must go to the new one.
    d.expect_log("watching events works again");
    api.inject_malformed_frame();
    api.inject_watch_line(
        r#"{"type":"ADDED","object":{"kind":"Event","apiVersion":"v1","reason":"NoMetadata"}}"#,
    );
    let n = add(2);
    wait_for_lines(&layout.out(), n, T, &d);
    assert!(
        d.stderr().contains("skipping a malformed watch frame"),
        "{}",
        d.stderr()
    );
    assert!(
        d.stderr().contains("event has no metadata"),
        "{}",
        d.stderr()
    );
    api.set_stalled(true);
    let n = add(2);
    d.expect_log("delivered nothing for too long");
    api.set_stalled(false);
    wait_for_lines(&layout.out(), n, T, &d);
    let log = settle_and_stop(d);
    let out = lines(&layout.out());
    assert_eq!(out.len(), n, "{log}");
    no_duplicates(&out);
    // And they are the server's events, byte for byte: the bad frames wrote nothing.
    let got: HashSet<String> = out.into_iter().collect();
    assert_eq!(got, server_lines(&api), "{log}");
}

#[test]
fn sigkill_after_a_write_repeats_nothing() {
    let (api, layout, d) = watching_after_one("k");
    d.kill();
    api.create("k", "two", &event("Pulled", 1));
    let d = start(&layout, None, &[]);
    wait_for_lines(&layout.out(), 2, T, &d);
    let out = settled_output(&layout, d);
    // The filters are shared memory maps: even SIGKILL keeps what was marked, and a line
    // written but not yet marked is marked from the destination at the next start.
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out.iter().any(|l| l.contains("\"two\"")));
}

#[test]
fn lines_already_in_the_destination_are_not_written_again_when_their_marks_were_lost() {
    let (api, layout, d, _) = first_run("ns", "ev", 700);
    d.stop();
    // What a run killed between writing its lines and marking them leaves behind: lines in
    // the destination that the state does not know (here: no state at all).
    for entry in std::fs::read_dir(layout.state()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let d = start(&layout, None, &[]);
    d.expect_log("watching from here");
    api.create("ns", "after", &event("Pulled", 1));
    let out = wait_for_lines(&layout.out(), 701, T, &d);
    let log = settle_and_stop(d);
    assert!(
        log.contains("marked 700 events at the end of the destination"),
        "{log}"
    );
    assert_eq!(lines(&layout.out()), out, "{log}");
    no_duplicates(&out);
}

#[test]
fn sighup_after_rename_sends_later_events_to_the_new_file() {
    let (api, layout, d) = watching(&[]);
    write_pulled(&api, &layout, &d, "h", "old", 50);
    let rotated = move_aside(&layout);
    d.signal(libc::SIGHUP);
    d.expect_log("SIGHUP");
    write_pulled(&api, &layout, &d, "h", "new", 50);
    let new = settled_output(&layout, d);
    let old = lines(&rotated);
    assert_eq!(old.len(), 50);
    assert_eq!(new.len(), 50);
    assert!(old.iter().all(|l| l.contains("\"old-")));
    assert!(new.iter().all(|l| l.contains("\"new-")));
    for l in old.iter().chain(&new) {
        serde_json::from_str::<serde_json::Value>(l).expect("every line is whole JSON");
    }
}

/// Without SIGHUP, whatever is put at the path takes the next events: a new file after the
/// old one was moved away (logrotate without a postrotate script), then a file renamed over
/// the path (the old one is gone with it). Nothing goes on into the file moved away once
/// another one is in its place.
#[test]
fn a_file_put_or_replaced_at_the_path_without_sighup_takes_the_next_events() {
    let (api, layout, d) = watching(&[]);
    write_pulled(&api, &layout, &d, "r", "first", 20);
    let moved = move_aside(&layout);
    std::fs::write(layout.out(), "").unwrap();
    write_pulled(&api, &layout, &d, "r", "second", 20);
    let replacement = layout.path("replacement");
    std::fs::write(&replacement, "").unwrap();
    std::fs::rename(&replacement, layout.out()).unwrap();
    write_pulled(&api, &layout, &d, "r", "third", 20);
    let log = settle_and_stop(d);
    let first = lines(&moved);
    let third = lines(&layout.out());
    assert_eq!(first.len(), 20, "{log}");
    assert!(first.iter().all(|l| l.contains("\"first-")), "{log}");
    assert_eq!(third.len(), 20, "{log}");
    assert!(third.iter().all(|l| l.contains("\"third-")), "{log}");
    assert_eq!(log.matches("reopened destination").count(), 2, "{log}");
}

#[test]
fn stdout_destination_gets_events_and_nothing_else() {
    let (api, layout) = serve(Options::default());
    api.create("s", "one", &event("Pulled", 1));
    let out_file = std::fs::File::create(layout.path("stdout")).unwrap();
    let kc = layout.kubeconfig().display().to_string();
    let state = layout.state().display().to_string();
    let d = Daemon::spawn(
        support::daemon::command(&[
            "--kubeconfig",
            &kc,
            "--persistence-path",
            &state,
            "--log-level",
            "trace",
        ])
        .stdout(out_file),
    );
    wait_for_watch(&api, &d);
    api.create("s", "two", &event("Pulled", 1));
    let out = wait_for_lines(&layout.path("stdout"), 2, T, &d);
    d.signal(libc::SIGHUP);
    api.create("s", "three", &event("Pulled", 1));
    wait_for_lines(&layout.path("stdout"), 3, T, &d);
    d.stop();
    let out3 = lines(&layout.path("stdout"));
    assert_eq!(out3.len(), 3);
    assert_eq!(out3[..2], out[..2]);
    for l in &out3 {
        serde_json::from_str::<serde_json::Value>(l).expect("only events on stdout");
    }
}

#[test]
fn fifo_destination_works_and_survives_sighup() {
    let (api, layout) = serve(Options::default());
    let fifo = layout.path("events.fifo");
    let reader = fifo_with_reader(&fifo, |f| {
        use std::io::BufRead;
        std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .take(3)
            .collect::<Vec<_>>()
    });
    let d = start_at_info(&layout, &fifo);
    wait_for_watch(&api, &d);
    api.create("f", "one", &event("Pulled", 1));
    api.create("f", "two", &event("Pulled", 1));
    std::thread::sleep(Duration::from_millis(300));
    d.signal(libc::SIGHUP);
    api.create("f", "three", &event("Pulled", 1));
    assert!(wait_until(T, || reader.is_finished()), "{}", d.stderr());
    let got = reader.join().unwrap();
    d.stop();
    assert_eq!(got.len(), 3);
    assert!(got[2].contains("\"three\""));
}

#[test]
fn filter_files_rotate_with_a_short_batch_duration() {
    let (api, layout) = serve(Options::default());
    let d = start(
        &layout,
        None,
        &["--batch-duration-sec", "1", "--batch-count", "3"],
    );
    wait_for_watch(&api, &d);
    let blooms = || {
        std::fs::read_dir(layout.state())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".bloom"))
            .count()
    };
    assert_eq!(blooms(), 1);
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(1100));
        api.create("r", &format!("e{i}"), &event("Pulled", 1));
        wait_for_lines(&layout.out(), i + 1, T, &d);
        // A new file for each event a second after the last; none is deleted yet, past
        // batch_count × batch_duration_sec as they are: the API server may still hold the
        // events they remember (it was listed empty, and keeps events for longer than the
        // seconds since). The file appears when the line is marked, just after it is written.
        assert!(
            wait_until(T, || blooms() == i + 2),
            "{} files after {} events",
            blooms(),
            i + 1
        );
    }
    d.stop();
}

#[test]
fn bearer_token_and_client_certificates_over_tls() {
    let api = tls_server("s3cret-token");
    api.create("t", "one", &event("Pulled", 1));
    for auth in [Auth::Token("s3cret-token".into()), Auth::ClientCert] {
        let layout = Layout::new();
        api.write_kubeconfig(layout.kubeconfig(), auth.clone());
        let d = start(&layout, None, &[]);
        let out = wait_for_lines(&layout.out(), 1, T, &d);
        let (status, log) = d.stop();
        assert!(status.success(), "{auth:?}: {log}");
        assert_eq!(out[0], api.object_line("t", "one"));
        assert!(
            !log.contains("s3cret-token"),
            "the token leaked into the log"
        );
    }
}

#[test]
fn unreadable_kubeconfig_is_a_startup_error_naming_the_file() {
    let layout = Layout::new();
    std::fs::write(layout.kubeconfig(), "clusters: [ this is not yaml").unwrap();
    let mut d = start(&layout, None, &[]);
    let status = d.wait(T);
    assert_eq!(status.code(), Some(2), "{}", d.stderr());
    let log = d.stderr();
    assert!(
        log.contains(&layout.kubeconfig().display().to_string()),
        "{log}"
    );

    let missing = Layout::new();
    let mut d = start(&missing, None, &[]);
    assert_eq!(d.wait(T).code(), Some(2));
    assert!(d.stderr().contains("No such file"), "{}", d.stderr());
}

#[test]
fn sigint_and_sigquit_stop_cleanly_and_save_where_to_resume() {
    let api = FakeApiServer::start(Options::default());
    api.create("q", "one", &event("Pulled", 1));
    for sig in [libc::SIGINT, libc::SIGQUIT] {
        let layout = Layout::new();
        api.write_kubeconfig(layout.kubeconfig(), Auth::None);
        let mut d = start(&layout, None, &[]);
        wait_for_lines(&layout.out(), 1, T, &d);
        d.expect_log("watching from here");
        d.signal(sig);
        let status = d.wait(T);
        assert_eq!(status.code(), Some(0), "signal {sig}: {}", d.stderr());
        let saved = std::fs::read_to_string(layout.state().join("resource_version")).unwrap();
        assert_eq!(saved.trim(), api.current_rv().to_string(), "signal {sig}");
    }
}

#[test]
fn a_second_stop_signal_exits_at_once_even_when_the_destination_is_stuck() {
    let (api, layout) = serve(Options::default());
    let fifo = layout.path("stuck.fifo");
    // A reader that opens the pipe and never reads: once the pipe buffer is full, every
    // write blocks, as with a log shipper that hangs.
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let reader = fifo_with_reader(&fifo, move |f| {
        opened_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(30));
        drop(f);
    });
    let mut d = start_at_info(&layout, &fifo);
    opened_rx.recv_timeout(T).unwrap();
    create_pulled(&api, "x", "big", 400);
    std::thread::sleep(Duration::from_millis(500));
    d.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "exited although its write was stuck"
    );
    d.signal(libc::SIGTERM);
    let status = d.wait(Duration::from_secs(3));
    assert_eq!(status.code(), Some(130), "{}", d.stderr());
    assert!(d.stderr().contains("exiting at once"), "{}", d.stderr());
    drop(reader);
}
