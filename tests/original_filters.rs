//! Switching from the Python kube-event-pipe: its filter files (pybloomfiltermmap3) left in the
//! state directory keep the daemon from writing again what the Python tool wrote, until they
//! age out. The real binary against the fake API server, and our reader against files the real
//! library writes at test time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube_event_pipe::dedup::{OriginalFilter, original_key};
use support::daemon::{Daemon, Layout, lines, wait_for_lines};
use support::fake_apiserver::{Auth, FakeApiServer, Options, rfc3339};

const T: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/original")
        .join(name)
}

fn meta(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn event(count: Option<u64>, series: bool) -> String {
    let count = count.map_or(String::new(), |n| format!(r#","count":{n}"#));
    let series = if series {
        r#","series":{"count":3,"lastObservedTime":"2026-11-26T06:00:00.000000Z"}"#
    } else {
        ""
    };
    format!(
        r#"{{"involvedObject":{{"kind":"Pod","namespace":"default","name":"web-1"}},"reason":"Pulled","message":"Container image already present on machine","source":{{"component":"kubelet","host":"node-1"}},"firstTimestamp":"2026-11-26T06:00:00Z","lastTimestamp":"2026-11-26T06:00:00Z"{count}{series},"type":"Normal"}}"#
    )
}

fn start(layout: &Layout, extra: &[&str]) -> Daemon {
    let mut args = layout.args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(&args)
}

fn names_written(out: &[String]) -> Vec<String> {
    out.iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} count={} series={}",
                v["metadata"]["name"].as_str().unwrap(),
                v["count"],
                v["series"]["count"]
            )
        })
        .collect()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn the_python_tools_thousand_events_are_not_written_again_new_ones_are_and_its_file_ages_out() {
    // The cluster as the Python tool left it: 1,000 events it wrote (`events-1000.json` lists
    // them; every fourth has no count) and its filter file, made 100 s ago.
    let api = FakeApiServer::start(Options::default());
    let events = meta(&fixture("events-1000.json"));
    let events = events["events"].as_array().unwrap();
    for (i, e) in events.iter().enumerate() {
        // One listed event also counts in `series`: the Python tool wrote it as name-None.
        let body = event(e["count"].as_u64(), i == 8);
        api.create("default", e["name"].as_str().unwrap(), &body);
    }
    let name = |i: usize| events[i]["name"].as_str().unwrap().to_string();
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    std::fs::create_dir(layout.state()).unwrap();
    let made = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 100;
    let original = layout.state().join(format!("{made}.bloom"));
    std::fs::copy(fixture("events-1000.bloom"), &original).unwrap();

    let d = start(&layout, &[]);
    d.expect_log("watching from here");
    // Used for batch_count × batch_duration_sec (3 × 3600 s by default) from its name.
    let until = rfc3339(UNIX_EPOCH + Duration::from_secs(made + 3 * 3600));
    assert!(
        d.stderr().contains(&format!(
            "found 1 filter file of the Python kube-event-pipe: events it wrote are not written again; used until {until}, then deleted"
        )),
        "{}",
        d.stderr()
    );
    // One streaming list of the 1,000 (a state directory holding filter files is no first
    // start, so there is no first-contact request).
    assert_eq!(api.list_request_count(), 0);
    assert_eq!(api.streaming_list_count(), 1, "the daemon listed the 1,000");

    // What happens next is new, and written; repeats of the Python tool's state are not.
    api.create("default", "fresh-0", &event(Some(1), false));
    api.create("default", "fresh-1", &event(None, false));
    api.set_count("default", &name(1), 3); // was 2: a new occurrence
    api.set_series_count("default", &name(0), 2); // no count: a new occurrence by its series
    api.delete("default", &name(4)); // DELETED notifications repeat the last state
    api.delete("default", &name(5));
    api.delete("default", &name(0));
    api.delete("default", &name(8));
    api.create("default", "fresh-2", &event(Some(1), false));
    let out = wait_for_lines(&layout.out(), 5, T, &d);
    let log = d.stop_ok();
    assert_eq!(
        names_written(&lines(&layout.out())),
        [
            "fresh-0 count=1 series=null".to_string(),
            "fresh-1 count=null series=null".into(),
            format!("{} count=3 series=null", name(1)),
            format!("{} count=null series=2", name(0)),
            "fresh-2 count=1 series=null".into(),
        ],
        "{log}"
    );
    assert_eq!(out.len(), 5);
    assert!(original.exists());
    assert!(!log.contains("quarantined"), "{log}");

    // Later: the daemon restarts with batch_count × batch_duration_sec = 90 s, less than the
    // file's age, and its saved resourceVersion has expired (an event came meanwhile), so it
    // lists everything again.
    api.create("default", "fresh-3", &event(Some(1), false));
    api.compact();
    api.clear_requests();
    let ours: Vec<String> = dir_names(&layout.state())
        .into_iter()
        .filter(|n| n.ends_with(".bloom") && !n.starts_with(&made.to_string()))
        .collect();
    assert_eq!(ours.len(), 1, "{:?}", dir_names(&layout.state()));
    let d = start(&layout, &["--batch-duration-sec", "30"]);
    d.expect_log("listing all events again");
    d.expect_log("watching from here");
    assert!(
        d.stderr().contains(
            "deleted a filter file of the Python kube-event-pipe: older than batch_count × batch_duration_sec"
        ),
        "{}",
        d.stderr()
    );
    assert!(!original.exists());
    assert!(
        !d.stderr().contains("found 1 filter file"),
        "{}",
        d.stderr()
    );
    // Nothing else changed: the 996 events still listed were recorded in our own filter when
    // the Python tool's file answered for them, so the re-list writes none of them.
    let out = wait_for_lines(&layout.out(), 6, T, &d);
    std::thread::sleep(Duration::from_millis(300));
    let log = d.stop_ok();
    assert_eq!(out.len(), 6, "{log}");
    assert_eq!(lines(&layout.out()).len(), 6, "{log}");
    assert!(out[5].contains(r#""name":"fresh-3""#), "{}", out[5]);
    let state = dir_names(&layout.state());
    assert!(state.contains(&ours[0]), "{state:?}");
    assert!(state.iter().all(|n| !n.contains("corrupt")), "{state:?}");
}

/// A Python with pybloomfiltermmap3 0.5.7: `KEP_ORIGINAL_PYTHON`, else `python3`. `None` (the
/// test is skipped) when it cannot import the library, unless CI=true: `.ci/run` installs it,
/// so there its absence is a failure.
fn python_with_the_library() -> Option<String> {
    let python = std::env::var("KEP_ORIGINAL_PYTHON").unwrap_or_else(|_| "python3".into());
    let version = Command::new(&python)
        .args(["-c", "import pybloomfilter; print(pybloomfilter.VERSION)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match version {
        Some(v) => {
            assert_eq!(v, "(0, 5, 7)", "{python} has another pybloomfiltermmap3");
            Some(python)
        }
        None if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{python} cannot import pybloomfilter: .ci/run installs pybloomfiltermmap3 0.5.7 and sets KEP_ORIGINAL_PYTHON"
        ),
        None => None,
    }
}

#[test]
fn files_the_library_writes_now_are_read_as_it_reads_them() {
    let Some(python) = python_with_the_library() else {
        eprintln!(
            "SKIPPED: no Python with pybloomfiltermmap3 0.5.7 (pip install --no-binary :all: \
             pybloomfiltermmap3==0.5.7, or set KEP_ORIGINAL_PYTHON)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(&python)
        .arg(fixture("make.py"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());

    let m = meta(&dir.path().join("keys.json"));
    let f = OriginalFilter::open(&dir.path().join("keys.bloom")).unwrap();
    assert_eq!(f.header().bits, m["num_bits"].as_u64().unwrap());
    let seeds: Vec<u64> = f.header().seeds.iter().map(|&s| u64::from(s)).collect();
    let want: Vec<u64> = m["hash_seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(seeds, want);
    let committed = meta(&fixture("keys.json"));
    assert_ne!(
        m["hash_seeds"], committed["hash_seeds"],
        "fresh random seeds"
    );
    for p in m["probes"].as_array().unwrap() {
        let key = p[0].as_str().unwrap();
        assert_eq!(
            f.contains_key(key.as_bytes()),
            p[1].as_bool().unwrap(),
            "{key:?}"
        );
    }

    let m = meta(&dir.path().join("events-1000.json"));
    let f = OriginalFilter::open(&dir.path().join("events-1000.bloom")).unwrap();
    let mut key = Vec::new();
    for e in m["events"].as_array().unwrap() {
        let count = e["count"].as_u64().map(|c| c.to_string());
        assert!(original_key(
            e["name"].as_str().unwrap(),
            count.as_deref(),
            &mut key
        ));
        assert!(f.contains_key(&key), "{}", String::from_utf8_lossy(&key));
    }
}
