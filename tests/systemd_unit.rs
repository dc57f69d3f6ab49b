//! The shipped systemd unit and config file, checked with the real tools an operator and the
//! package use: `systemd-analyze verify` (no warning at all), `systemd-analyze security`
//! (exposure at most 1.5), and the real binary's `--check-config` on the shipped config.
//! systemd-analyze must be installed (`.ci/run` installs it): a missing tool fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::daemon::{BIN, command, tool};

const UNIT: &str = "systemd/kube-event-pipe.service";
const CONFIG: &str = "packaging/config.toml";
const LOGROTATE: &str = "logrotate.d/kube-event-pipe";
const MAX_EXPOSURE: f64 = 1.5;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `Key=value` settings of the unit, in order, by key (a key may repeat).
fn unit_settings() -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in read(UNIT).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (k, v) = line.split_once('=').expect("Key=value");
        map.entry(k.to_string()).or_default().push(v.to_string());
    }
    map
}

fn one(settings: &BTreeMap<String, Vec<String>>, key: &str) -> String {
    match settings.get(key).map(Vec::as_slice) {
        Some([v]) => v.clone(),
        other => panic!("{UNIT}: expected exactly one {key}=, got {other:?}"),
    }
}

/// The string value of a top-level `key = "..."` line of a TOML file.
fn toml_value(toml: &str, key: &str) -> String {
    let table: toml::Table = toml.parse().expect("valid TOML");
    table
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{key} not set"))
        .to_string()
}

/// A file-system root holding what the unit refers to: the binary at /usr/bin, /bin/kill and
/// systemd's own units (for the targets the unit orders itself against), plus the unit in
/// /etc/systemd/system. Lives under the target directory so the binary can be hard-linked.
fn verify_root() -> tempfile::TempDir {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let r = root.path();
    for dir in ["usr/bin", "usr/lib/systemd", "etc/systemd/system"] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    // Merged /usr, as on Debian bookworm: /bin/kill is /usr/bin/kill.
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
    let bin = r.join("usr/bin/kube-event-pipe");
    if std::fs::hard_link(BIN, &bin).is_err() {
        std::fs::copy(BIN, &bin).unwrap();
    }
    let kill = ["/usr/bin/kill", "/bin/kill"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("/bin/kill (procps) is missing");
    std::fs::copy(kill, r.join("usr/bin/kill")).unwrap();
    let units = Path::new("/usr/lib/systemd/system");
    assert!(
        units.join("multi-user.target").is_file(),
        "{} lacks systemd's units: install systemd (apt-get install systemd); .ci/run does",
        units.display()
    );
    let out = run(Command::new("cp")
        .arg("-a")
        .arg(units)
        .arg(r.join("usr/lib/systemd/")));
    assert!(out.status.success(), "cp: {}", text(&out));
    std::fs::copy(
        repo(UNIT),
        r.join("etc/systemd/system/kube-event-pipe.service"),
    )
    .unwrap();
    root
}

fn verify(root: &Path) -> Output {
    run(Command::new(tool("systemd-analyze", "systemd"))
        .arg("verify")
        // The man page comes with the package, not with a source checkout.
        .arg("--man=no")
        .arg(format!("--root={}", root.display()))
        .arg("/etc/systemd/system/kube-event-pipe.service"))
}

#[test]
fn systemd_analyze_verify_prints_nothing_for_the_unit() {
    let root = verify_root();
    let out = verify(root.path());
    let said = text(&out);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify complained (status {}):\n{said}",
        out.status
    );

    // The same check does see a broken unit: a missing binary and a misspelt value.
    std::fs::remove_file(root.path().join("usr/bin/kube-event-pipe")).unwrap();
    let unit = root
        .path()
        .join("etc/systemd/system/kube-event-pipe.service");
    let broken = read(UNIT).replace("ProtectProc=invisible", "ProtectProc=invisibl");
    std::fs::write(&unit, broken).unwrap();
    let said = text(&verify(root.path()));
    assert!(said.contains("/usr/bin/kube-event-pipe"), "{said}");
    assert!(said.contains("invisibl"), "{said}");
}

#[test]
fn systemd_analyze_security_exposure_is_at_most_1_5() {
    let out = run(Command::new(tool("systemd-analyze", "systemd"))
        .args(["security", "--offline=true", "--no-pager"])
        .arg(repo(UNIT)));
    let said = text(&out);
    let prefix = "Overall exposure level for kube-event-pipe.service: ";
    let line = said
        .lines()
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest.to_string()))
        .unwrap_or_else(|| panic!("no exposure line in:\n{said}"));
    let score: f64 = line
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unparsable exposure {line:?}"));
    println!("systemd-analyze security: overall exposure {score} ({line})");
    let open: Vec<&str> = said.lines().filter(|l| l.starts_with('✗')).collect();
    println!("not restricted:\n{}", open.join("\n"));
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{said}"
    );
}

#[test]
fn unit_config_and_logrotate_agree_on_binary_and_paths() {
    let s = unit_settings();
    let start = one(&s, "ExecStart");
    let pre = one(&s, "ExecStartPre");
    // "-": a failing ExecStartPre escapes RestartPreventExitStatus= (see the unit's comment);
    // the daemon's own exit 2 on the same error stops the unit without restarts.
    assert_eq!(
        pre,
        format!("-{start} --check-config"),
        "ExecStartPre must check what ExecStart runs"
    );
    assert!(start.starts_with("/usr/bin/kube-event-pipe "), "{start}");
    assert_eq!(one(&s, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one(&s, "Type"), "notify");
    assert_eq!(one(&s, "RestartPreventExitStatus"), "2");
    assert_eq!(one(&s, "User"), "kube-event-pipe");

    // The config file ExecStart names is in ConfigurationDirectory=.
    let config_dir = format!("/etc/{}", one(&s, "ConfigurationDirectory"));
    assert!(
        start.ends_with(&format!("--config {config_dir}/config.toml")),
        "{start}"
    );

    // The shipped config writes only where the sandbox lets it (ProtectSystem=strict), and
    // the unit waits for the kubeconfig the config names.
    let config = read(CONFIG);
    let destination = toml_value(&config, "destination");
    let log_dir = format!("/var/log/{}", one(&s, "LogsDirectory"));
    assert_eq!(Path::new(&destination).parent(), Some(Path::new(&log_dir)));
    assert_eq!(
        toml_value(&config, "persistence_path"),
        format!("/var/lib/{}", one(&s, "StateDirectory"))
    );
    assert_eq!(
        one(&s, "ConditionPathExists"),
        toml_value(&config, "kubeconfig")
    );

    // logrotate rotates the file the daemon writes.
    let rotate = read(LOGROTATE);
    assert!(
        rotate
            .lines()
            .any(|l| l.trim() == format!("{destination} {{")),
        "{LOGROTATE} does not rotate {destination}"
    );
    let directives: Vec<&str> = rotate
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(directives.contains(&"create 0640 kube-event-pipe adm"));
    assert!(
        !directives.iter().any(|l| l.starts_with("copytruncate")),
        "copytruncate loses lines"
    );
}

#[test]
fn shipped_config_passes_check_config() {
    let state = tempfile::tempdir().unwrap();
    let config = repo(CONFIG);
    let config = config.to_str().unwrap();
    let state = state.path().to_str().unwrap();
    // ExecStartPre's command, with the config at its place in the checkout and the state
    // directory in a temp dir.
    let out = run(&mut command(&[
        "--config",
        config,
        "--check-config",
        "--persistence-path",
        state,
    ]));
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    for line in [
        r#"destination = "/var/log/kube-event-pipe/events.log" # config file"#,
        r#"kubeconfig = "/etc/kube-event-pipe/kubeconfig" # config file"#,
    ] {
        assert!(said.contains(line), "missing {line:?} in:\n{said}");
    }
}

#[test]
fn shipped_config_lists_every_key_with_its_true_default() {
    // Uncomment every `# key = value` line: the result must still be valid, mention every
    // key the binary knows, and change nothing but the keys set on purpose.
    let shipped = read(CONFIG);
    let uncommented: String = shipped
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) =>
            {
                rest.to_string()
            }
            _ => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, &uncommented).unwrap();
    let check = |args: &[&str]| {
        let out = run(&mut command(args));
        let said = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {said}");
        said
    };
    let all = check(&["--config", file.to_str().unwrap(), "--check-config"]);
    let defaults = check(&["--config", "/dev/null", "--check-config"]);

    // `key = value   # source` lines of the --check-config printout.
    let values = |printout: &str| -> BTreeMap<String, (String, String)> {
        printout
            .lines()
            .filter(|l| !l.starts_with("# config file"))
            .filter_map(|l| {
                let l = l.trim_start_matches("# ");
                let (key, rest) = l.split_once(" = ")?;
                let (value, source) = rest.split_once(" # ").unwrap_or((rest, ""));
                Some((
                    key.to_string(),
                    (value.trim().to_string(), source.to_string()),
                ))
            })
            .collect()
    };
    let all = values(&all);
    let defaults = values(&defaults);
    assert!(defaults.len() >= 11, "{defaults:?}");
    for (key, (default, _)) in &defaults {
        let (value, source) = &all[key];
        assert!(
            source.starts_with("config file"),
            "{key} is not in {CONFIG} (its value came from: {source})"
        );
        match key.as_str() {
            // identity: its default is the host name, so the file shows an example instead;
            // metrics_address: the package turns on what is off by default; the selection
            // keys: the file shows examples of what is unset by default.
            "destination" | "persistence_path" | "kubeconfig" | "context" | "identity"
            | "metrics_address" | "namespace" | "field_selector" | "label_selector" => {}
            _ => assert_eq!(value, default, "{CONFIG} claims a wrong default for {key}"),
        }
    }
    assert_eq!(all.len(), defaults.len());
}
