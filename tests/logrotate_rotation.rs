//! The shipped logrotate snippet, run by the real `logrotate` against the real daemon while
//! events keep arriving: after five forced rotations, the current file plus the rotated ones
//! (the newest plain, the older gzipped) hold every event the API server served, each exactly
//! once, every line whole JSON. logrotate and gzip must be installed (`.ci/run` installs
//! logrotate): a missing tool fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::daemon::{Daemon, Layout, lines, tool, wait_until};
use support::fake_apiserver::{Auth, FakeApiServer, Options};

const T: Duration = Duration::from_secs(30);
const SHIPPED_PATH: &str = "/var/log/kube-event-pipe/events.log";
const ROTATIONS: usize = 5;

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("run id");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The shipped snippet with its paths, owners and signal adapted to this test: the file in
/// the temp dir, the current user instead of kube-event-pipe/adm, and `kill -HUP <pid>` of
/// the test's daemon instead of `systemctl kill`. Everything else is kept as shipped.
fn adapted_snippet(out: &Path, pid: u32) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("logrotate.d/kube-event-pipe"),
    )
    .unwrap();
    let (user, group) = (id("-un"), id("-gn"));
    let mut adapted = String::new();
    let mut replaced = BTreeMap::new();
    let mut in_script = false;
    for line in shipped.lines() {
        let t = line.trim();
        let new = if t == format!("{SHIPPED_PATH} {{") {
            format!("{} {{", out.display())
        } else if t == "su kube-event-pipe adm" {
            format!("    su {user} {group}")
        } else if t == "create 0640 kube-event-pipe adm" {
            format!("    create 0640 {user} {group}")
        } else if t == "postrotate" {
            in_script = true;
            format!("    postrotate\n        kill -HUP {pid}")
        } else if t == "endscript" {
            in_script = false;
            line.to_string()
        } else if in_script {
            // The shipped script body, which needs systemd as PID 1.
            assert!(
                t.is_empty()
                    || t.starts_with('#')
                    || t.contains("kube-event-pipe.service")
                    || t == "fi"
            );
            continue;
        } else {
            line.to_string()
        };
        if new != line {
            *replaced
                .entry(t.split_whitespace().next().unwrap().to_string())
                .or_insert(0) += 1;
        }
        adapted.push_str(&new);
        adapted.push('\n');
    }
    // Each of these occurs exactly once in the snippet, or the adaptation is not what runs.
    let expected: BTreeMap<String, i32> = [SHIPPED_PATH, "su", "create", "postrotate"]
        .into_iter()
        .map(|k| (k.to_string(), 1))
        .collect();
    assert_eq!(
        replaced, expected,
        "the shipped snippet changed shape:\n{shipped}"
    );
    adapted
}

/// Every line of every file named like the destination, per file.
fn all_files(dir: &Path, base: &str) -> BTreeMap<String, Vec<String>> {
    let gzip = tool("gzip", "gzip");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.starts_with(base) {
            continue;
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "{name} is accessible to others: {mode:o}");
        let content = if name.ends_with(".gz") {
            let out = Command::new(&gzip).arg("-dc").arg(&path).output().unwrap();
            assert!(out.status.success(), "gzip -dc {name}");
            String::from_utf8(out.stdout).expect("UTF-8")
        } else {
            std::fs::read_to_string(&path).expect("UTF-8")
        };
        // The bytes as they are on disk: an empty file, or whole lines.
        assert!(
            content.is_empty() || content.ends_with('\n'),
            "{name} ends in a partial line"
        );
        let lines: Vec<String> = content
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect();
        files.insert(name, lines);
    }
    files
}

#[test]
fn five_forced_rotations_under_load_lose_and_repeat_nothing() {
    let logrotate = tool("logrotate", "logrotate");
    let api = FakeApiServer::start(Options::default());
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    let args = layout.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = Daemon::start(&args);
    assert!(api.wait_for_watches(1, T), "{}", d.stderr());

    let conf = layout.path("logrotate.conf");
    std::fs::write(&conf, adapted_snippet(&layout.out(), d.child.id())).unwrap();
    // logrotate ignores config files others may write.
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let state = layout.path("logrotate.state");

    let stop = AtomicBool::new(false);
    let created = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                api.create(
                    "load",
                    &format!("ev-{i:06}"),
                    r#"{"reason":"Pulled","message":"rotating","count":1,"type":"Normal"}"#,
                );
                i += 1;
                created.store(i, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        for n in 1..=ROTATIONS {
            // Wait until the current file has something, so notifempty does not skip it.
            assert!(
                wait_until(T, || lines(&layout.out()).len() >= 20),
                "no lines before rotation {n}: {}",
                d.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
            let out = Command::new(&logrotate)
                .arg("-f")
                .arg("-s")
                .arg(&state)
                .arg(&conf)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && said.trim().is_empty(),
                "logrotate -f #{n}: {}\n{said}",
                out.status
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
    });

    let expected = api.object_lines();
    assert_eq!(expected.len(), created.load(Ordering::SeqCst));
    let base = layout
        .out()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let total = || {
        all_files(layout.dir.path(), &base)
            .values()
            .map(Vec::len)
            .sum::<usize>()
    };
    assert!(
        wait_until(T, || total() >= expected.len()),
        "daemon did not catch up: {} of {} lines; log:\n{}",
        total(),
        expected.len(),
        d.stderr()
    );
    let (status, log) = d.stop();
    assert!(status.success(), "exit {status}; log:\n{log}");

    let files = all_files(layout.dir.path(), &base);
    let names: Vec<&String> = files.keys().collect();
    // delaycompress: the newest rotation stays plain, the older ones are gzipped.
    let want: Vec<String> = std::iter::once(base.clone())
        .chain(std::iter::once(format!("{base}.1")))
        .chain((2..=ROTATIONS).map(|i| format!("{base}.{i}.gz")))
        .collect();
    assert_eq!(names, want.iter().collect::<Vec<_>>());

    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, lines) in &files {
        assert!(!lines.is_empty(), "{name} is empty");
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not whole JSON ({e}): {line}"));
            assert_eq!(v["kind"], "Event", "{name}: {line}");
            if let Some(other) = seen.insert(line, name) {
                panic!("line in both {other} and {name}: {line}");
            }
        }
    }
    let want_set: BTreeMap<&str, ()> = expected.iter().map(|l| (l.as_str(), ())).collect();
    let missing: Vec<&&str> = want_set.keys().filter(|l| !seen.contains_key(*l)).collect();
    let extra: Vec<&&str> = seen.keys().filter(|l| !want_set.contains_key(*l)).collect();
    assert!(
        missing.is_empty(),
        "{} events lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(
        extra.is_empty(),
        "{} lines the server never served, e.g. {:?}",
        extra.len(),
        extra.first()
    );

    let reopened = log.matches("reopened destination").count();
    println!(
        "logrotate: {} events served, {} lines in {} files ({}), {reopened} reopens",
        expected.len(),
        seen.len(),
        files.len(),
        files
            .iter()
            .map(|(n, l)| format!("{n}: {}", l.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        reopened >= ROTATIONS,
        "only {reopened} reopens for {ROTATIONS} rotations"
    );
}
