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
