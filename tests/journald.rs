//! Logging to a real journald: a private systemd-journald in its own mount namespace, the
//! daemon logging with `--log-target journald`, and journalctl reading the entries back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kube-event-pipe");
const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/samples/kubectl-watch-events.json"
);

/// Runs inside `unshare -m`: tmpfs over the journal directories so the host is untouched.
const SCRIPT: &str = r#"
set -eu
mkdir -p /run/systemd /run/log
mount -t tmpfs tmpfs /run/systemd
mount -t tmpfs tmpfs /run/log
mkdir -p /run/systemd/journal
/lib/systemd/systemd-journald &
jpid=$!
for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
"$BIN" --source "$INPUT" --persistence-path "$STATE" --destination "$OUT" \
    --log-target journald --log-level debug
# journald stores what it received in its own time: wait for the daemon's last line (up to
# 20 s) rather than for a guessed moment.
for _ in $(seq 400); do
    journalctl --no-pager -o json SYSLOG_IDENTIFIER=kube-event-pipe | grep -q '"replay finished"' && break
    sleep 0.05
done
journalctl --no-pager -o json SYSLOG_IDENTIFIER=kube-event-pipe
kill "$jpid"
"#;

#[test]
fn journal_entries_carry_identifier_structured_fields_and_priorities() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root to mount a private journal (CI runs as root)");
        return;
    }
    assert!(
        std::path::Path::new("/lib/systemd/systemd-journald").exists(),
        "systemd-journald is missing: apt-get install systemd"
    );
    let dir = tempfile::tempdir().unwrap();
    // The sample plus one frame that is not JSON, to get a warning.
    let input = dir.path().join("input.json");
    let mut bytes = std::fs::read(SAMPLE).unwrap();
    bytes.extend_from_slice(b"\n{\"type\":\"ADDED\",\"object\":{\"kind\":\"Event\"}}\n");
    std::fs::write(&input, bytes).unwrap();
    let out = Command::new("unshare")
        .args(["-m", "bash", "-c", SCRIPT])
        .env("BIN", BIN)
        .env("INPUT", &input)
        .env("STATE", dir.path().join("state"))
        .env("OUT", dir.path().join("events.log"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Nothing fell back to stderr: the journal took it all.
    assert!(
        !stderr.contains("new event"),
        "logged to stderr instead: {stderr}"
    );
    let entries: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |msg: &str| {
        entries
            .iter()
            .find(|e| e["MESSAGE"].as_str().is_some_and(|m| m.starts_with(msg)))
            .unwrap_or_else(|| panic!("no entry {msg:?} among {} entries", entries.len()))
    };
    let new_event = find("new event");
    assert_eq!(new_event["PRIORITY"], "7", "debug maps to priority 7");
    assert!(
        new_event["EVENT"]
            .as_str()
            .is_some_and(|e| e.contains("count=")),
        "structured EVENT field missing: {new_event}"
    );
    let warning = find("skipping an event that cannot be identified");
    assert_eq!(warning["PRIORITY"], "4", "warn maps to priority 4");
    assert_eq!(warning["ERROR"], "event has no metadata");
    let finished = find("replay finished");
    assert_eq!(finished["PRIORITY"], "6", "info maps to priority 6");
    assert_eq!(finished["WRITTEN"], "20");
}
