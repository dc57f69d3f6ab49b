//! The replay source and README's quick start: the shipped kubectl recording through the
//! same dedup and output as the API source.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::Stdio;

use support::daemon::{command, lines};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/samples/kubectl-watch-events.json"
);
const SAMPLE_CHUNKED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/samples/kubectl-watch-chunked.json"
);

#[test]
fn quick_start_writes_the_sample_once_and_a_second_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("events.log");
    let args = [
        "--source",
        SAMPLE,
        "--persistence-path",
        state.to_str().unwrap(),
        "--destination",
        out.to_str().unwrap(),
    ];
    let o = command(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty());
    let first = lines(&out);
    assert_eq!(first.len(), 20, "23 frames, 3 repeats");
    for l in &first {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["kind"], "Event");
    }
    let o = command(&args).output().unwrap();
    assert!(o.status.success());
    assert_eq!(lines(&out), first, "a second run must write nothing new");

    // The chunked recording adds its 6 events, once.
    let mut chunked_args = args;
    chunked_args[1] = SAMPLE_CHUNKED;
    for _ in 0..2 {
        let o = command(&chunked_args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let all = lines(&out);
        assert_eq!(all.len(), 26, "5 events from three list frames, 1 live");
        assert_eq!(all[..20], first[..]);
    }
}

#[test]
fn stdin_source_writes_only_events_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut child = command(&[
        "--source",
        "-",
        "--persistence-path",
        state.to_str().unwrap(),
        "--log-level",
        "trace",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let sample = std::fs::read(SAMPLE).unwrap();
    child.stdin.take().unwrap().write_all(&sample).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 20);
    for l in stdout.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("only event lines on stdout");
    }
    // The trace-level log went to stderr.
    assert!(String::from_utf8_lossy(&o.stderr).contains("replay finished"));
}

#[test]
fn unopenable_destination_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = command(&[
        "--source",
        SAMPLE,
        "--persistence-path",
        dir.path().join("state").to_str().unwrap(),
        "--destination",
        dir.path().join("missing-dir/events.log").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot open destination"), "{err}");
    assert!(err.contains("missing-dir/events.log"), "{err}");
}

const CHUNKED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/real-apiserver/kubectl-watch-chunked.json"
);

/// Replays `input` (written to a file) with the given state directory and destination; the
/// exit status must be 0. Returns the log.
fn replay(input: &[u8], dir: &std::path::Path) -> String {
    let source = dir.join("input.json");
    std::fs::write(&source, input).unwrap();
    let o = command(&[
        "--source",
        source.to_str().unwrap(),
        "--persistence-path",
        dir.join("state").to_str().unwrap(),
        "--destination",
        dir.join("events.log").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{log}");
    log
}

/// Lines of the log at WARN or above.
fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect()
}

/// What kubectl printed for each event of a recording, found without the daemon's code: the
/// items of a list frame, or the object of any other frame, as exact bytes.
fn kubectl_events(recording: &[u8]) -> Vec<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Frame<'a> {
        #[serde(borrow)]
        object: &'a serde_json::value::RawValue,
    }
    #[derive(serde::Deserialize)]
    struct List<'a> {
        #[serde(borrow)]
        items: Vec<&'a serde_json::value::RawValue>,
    }
    let mut events = Vec::new();
    for line in recording.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let frame: Frame = serde_json::from_slice(line).unwrap();
        let object = frame.object.get();
        match serde_json::from_str::<List>(object) {
            Ok(list) => events.extend(list.items.iter().map(|i| i.get().as_bytes().to_vec())),
            Err(_) => events.push(object.as_bytes().to_vec()),
        }
    }
    events
}

#[test]
fn list_chunks_kubectl_prints_replay_to_their_events_byte_for_byte_once() {
    let dir = tempfile::tempdir().unwrap();
    let recording = std::fs::read(CHUNKED).unwrap();
    let want = kubectl_events(&recording);
    assert_eq!(want.len(), 6, "5 events in three list frames, then 1 live");
    let log = replay(&recording, dir.path());
    let out = std::fs::read(dir.path().join("events.log")).unwrap();
    let got: Vec<&[u8]> = out.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(got.len(), 6, "{log}");
    for (line, event) in got.iter().zip(&want) {
        assert_eq!(&line[..line.len() - 1], &event[..]);
        assert_eq!(line.last(), Some(&b'\n'));
    }
    assert!(warnings(&log).is_empty(), "{log}");
    assert!(log.contains("written=6 skipped=0 malformed=0"), "{log}");

    // The same recording with the same state writes nothing more.
    let log = replay(&recording, dir.path());
    assert_eq!(std::fs::read(dir.path().join("events.log")).unwrap(), out);
    assert!(log.contains("written=0 skipped=6 malformed=0"), "{log}");
}

#[test]
fn pretty_printed_list_chunks_are_written_compact() {
    let recording = std::fs::read(CHUNKED).unwrap();
    let mut pretty = Vec::new();
    for line in recording.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        pretty.extend_from_slice(serde_json::to_string_pretty(&v).unwrap().as_bytes());
        pretty.push(b'\n');
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = replay(&pretty, a.path());
    assert!(warnings(&log).is_empty(), "{log}");
    replay(&recording, b.path());
    let compact = std::fs::read(b.path().join("events.log")).unwrap();
    assert_eq!(lines(&a.path().join("events.log")).len(), 6);
    assert_eq!(
        std::fs::read(a.path().join("events.log")).unwrap(),
        compact,
        "kubectl's keys are sorted, so the compacted items are the compact recording's"
    );
}

#[test]
fn a_list_frame_with_a_malformed_item_skips_that_item_only_with_one_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let ev = |name: &str| {
        format!(
            r#"{{"apiVersion":"v1","count":1,"kind":"Event","metadata":{{"name":"{name}","namespace":"demo"}},"reason":"Test"}}"#
        )
    };
    let bad = r#"{"apiVersion":"v1","count":1,"kind":"Event","metadata":{"namespace":"demo"}}"#;
    let recording = format!(
        "{{\"type\":\"ADDED\",\"object\":{{\"apiVersion\":\"v1\",\"items\":[{},{bad},{}],\"kind\":\"EventList\",\"metadata\":{{\"resourceVersion\":\"7\"}}}}}}\n",
        ev("a"),
        ev("b")
    );
    let log = replay(recording.as_bytes(), dir.path());
    assert_eq!(lines(&dir.path().join("events.log")), [ev("a"), ev("b")]);
    let warned = warnings(&log);
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("skipping an event that cannot be identified")
            && warned[0].contains("event metadata has no name")
            && warned[0].contains("item=1"),
        "{log}"
    );
    assert!(log.contains("written=2 skipped=0 malformed=1"), "{log}");
}

#[test]
fn a_list_frame_with_no_items_writes_nothing_and_logs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let recording = br#"{"type":"ADDED","object":{"apiVersion":"v1","items":[],"kind":"EventList","metadata":{"resourceVersion":"229"}}}
"#;
    let log = replay(recording, dir.path());
    assert!(lines(&dir.path().join("events.log")).is_empty());
    assert!(warnings(&log).is_empty(), "{log}");
    assert!(log.contains("written=0 skipped=0 malformed=0"), "{log}");
}

#[test]
fn an_object_that_is_neither_an_event_nor_a_list_is_still_logged_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let recording =
        br#"{"type":"ADDED","object":{"apiVersion":"v1","items":[],"kind":"Event","metadata":{}}}
"#;
    let log = replay(recording, dir.path());
    assert!(lines(&dir.path().join("events.log")).is_empty());
    let warned = warnings(&log);
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("skipping an event that cannot be identified")
            && warned[0].contains("event metadata has no name"),
        "{log}"
    );
}
