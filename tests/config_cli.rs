//! The configuration as an operator meets it: the real binary, its flags, its environment,
//! its config file, `--check-config`, and its errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_kube-event-pipe");

/// Runs the binary in `dir` with only the given environment (plus PATH), so the tester's own
/// KUBE_EVENT_PIPE_* variables cannot leak in.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The refusal's message: the run must have exited 2.
#[track_caller]
fn refusal(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    stderr(o)
}

/// Writes `text` as the config file `name` in `dir` and runs `--check-config` on it.
fn check_config_file(dir: &Path, name: &str, text: &str) -> Output {
    let conf = dir.join(name);
    std::fs::write(&conf, text).unwrap();
    run(
        dir,
        &["--check-config", "--config", conf.to_str().unwrap()],
        &[],
    )
}

/// A config file holding `text` is refused (exit 2) with a message holding each phrase.
#[track_caller]
fn assert_file_refused(text: &str, phrases: &[&str]) {
    let dir = TempDir::new().unwrap();
    let err = refusal(&check_config_file(dir.path(), "c.toml", text));
    for phrase in phrases {
        assert!(err.contains(phrase), "want {phrase:?} in {err}");
    }
}

/// The `key = value` part and the origin comment of one line of `--check-config`.
fn effective(o: &Output, key: &str) -> (String, String) {
    let out = stdout(o);
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{out}"));
    let (value, origin) = line.split_once(" # ").unwrap();
    (value.trim().to_string(), origin.trim().to_string())
}

struct Case {
    key: &'static str,
    default: &'static str,
    file: (&'static str, &'static str),
    env: (&'static str, &'static str),
    flag: (&'static str, &'static str),
}

/// For each key: (TOML literal, shown value) for the file, env and flag layers.
fn cases() -> Vec<Case> {
    vec![
        Case {
            key: "destination",
            default: "\"-\"",
            file: ("\"file.log\"", "\"file.log\""),
            env: ("env.log", "\"env.log\""),
            flag: ("flag.log", "\"flag.log\""),
        },
        Case {
            key: "log_level",
            default: "\"INFO\"",
            file: ("\"debug\"", "\"DEBUG\""),
            env: ("Warning", "\"WARNING\""),
            flag: ("critical", "\"ERROR\""),
        },
        Case {
            key: "persistence_path",
            default: "\".\"",
            file: ("\"from-file\"", "\"from-file\""),
            env: ("from-env", "\"from-env\""),
            flag: ("from-flag", "\"from-flag\""),
        },
        Case {
            key: "filter_capacity",
            default: "1000000",
            file: ("2_000", "2000"),
            env: ("3_000", "3000"),
            flag: ("4_000_000", "4000000"),
        },
        Case {
            key: "filter_error_rate",
            default: "0.01",
            file: ("0.02", "0.02"),
            env: ("0.000_5", "0.0005"),
            flag: ("1e-4", "0.0001"),
        },
        Case {
            key: "batch_count",
            default: "3",
            file: ("4", "4"),
            env: ("5", "5"),
            flag: ("6", "6"),
        },
        Case {
            key: "batch_duration_sec",
            default: "3600",
            file: ("60", "60"),
            env: ("1_800", "1800"),
            flag: ("7200", "7200"),
        },
        Case {
            key: "kubeconfig",
            default: "",
            file: ("\"/f/kubeconfig\"", "\"/f/kubeconfig\""),
            env: ("/e/kubeconfig", "\"/e/kubeconfig\""),
            flag: ("/c/kubeconfig", "\"/c/kubeconfig\""),
        },
        Case {
            key: "context",
            default: "",
            file: ("\"file-ctx\"", "\"file-ctx\""),
            env: ("env-ctx", "\"env-ctx\""),
            flag: ("flag-ctx", "\"flag-ctx\""),
        },
        Case {
            key: "log_target",
            default: "\"auto\"",
            file: ("\"stderr\"", "\"stderr\""),
            env: ("STDERR", "\"stderr\""),
            flag: ("auto", "\"auto\""),
        },
        Case {
            key: "watch_idle_timeout_sec",
            default: "300",
            file: ("120", "120"),
            env: ("90", "90"),
            flag: ("30", "30"),
        },
        Case {
            key: "leader_election",
            default: "false",
            file: ("true", "true"),
            env: ("yes", "true"),
            flag: ("off", "false"),
        },
        Case {
            key: "lease_namespace",
            default: "\"kube-system\"",
            file: ("\"ops\"", "\"ops\""),
            env: ("infra", "\"infra\""),
            flag: ("monitoring", "\"monitoring\""),
        },
        Case {
            key: "lease_name",
            default: "\"kube-event-pipe\"",
            file: ("\"events.example\"", "\"events.example\""),
            env: ("event-pipe", "\"event-pipe\""),
            flag: ("pipe", "\"pipe\""),
        },
        Case {
            key: "lease_duration_sec",
            default: "15",
            file: ("30", "30"),
            env: ("20", "20"),
            flag: ("12", "12"),
        },
        Case {
            key: "renew_deadline_sec",
            default: "10",
            file: ("8", "8"),
            env: ("5.5", "5.5"),
            flag: ("4", "4"),
        },
        Case {
            key: "retry_period_sec",
            default: "2",
            file: ("1", "1"),
            env: ("0.5", "0.5"),
            flag: ("3", "3"),
        },
        Case {
            key: "namespace",
            default: "",
            file: ("\"file-ns\"", "\"file-ns\""),
            env: (" env-ns ", "\"env-ns\""),
            flag: ("flag-ns", "\"flag-ns\""),
        },
        Case {
            key: "field_selector",
            default: "",
            file: ("\"type=Warning\"", "\"type=Warning\""),
            env: (
                "reason!=Pulled,type==Normal",
                "\"reason!=Pulled,type==Normal\"",
            ),
            flag: (
                "metadata.namespace!=kube-system",
                "\"metadata.namespace!=kube-system\"",
            ),
        },
        Case {
            key: "label_selector",
            default: "",
            file: ("\"team=a\"", "\"team=a\""),
            env: ("team in (a, b)", "\"team in (a, b)\""),
            flag: ("!canary", "\"!canary\""),
        },
    ]
}

#[test]
fn every_key_follows_default_file_env_flag_precedence() {
    let dir = TempDir::new().unwrap();
    let conf = dir.path().join("config.toml");
    for c in cases() {
        let env_var = format!("KUBE_EVENT_PIPE_{}", c.key.to_uppercase());
        let flag = format!("--{}", c.key.replace('_', "-"));
        std::fs::write(&conf, format!("{} = {}\n", c.key, c.file.0)).unwrap();
        let conf_s = conf.to_str().unwrap();

        let o = run(dir.path(), &["--check-config"], &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        if c.default.is_empty() {
            assert!(
                stdout(&o).contains(&format!("# {} = (not set", c.key)),
                "{}",
                stdout(&o)
            );
        } else {
            let want = (
                format!("{} = {}", c.key, c.default),
                "built-in default".into(),
            );
            assert_eq!(effective(&o, c.key), want);
        }

        let o = run(dir.path(), &["--check-config", "--config", conf_s], &[]);
        assert!(o.status.success(), "{}: {}", c.key, stderr(&o));
        let origin = format!("config file {conf_s}, key {}", c.key);
        assert_eq!(
            effective(&o, c.key),
            (format!("{} = {}", c.key, c.file.1), origin)
        );

        let env = [(env_var.as_str(), c.env.0)];
        let o = run(dir.path(), &["--check-config", "--config", conf_s], &env);
        assert!(o.status.success(), "{}: {}", c.key, stderr(&o));
        let origin = format!("environment variable {env_var}");
        assert_eq!(
            effective(&o, c.key),
            (format!("{} = {}", c.key, c.env.1), origin)
        );

        let args = ["--check-config", "--config", conf_s, &flag, c.flag.0];
        let o = run(dir.path(), &args, &env);
        assert!(o.status.success(), "{}: {}", c.key, stderr(&o));
        let origin = format!("command-line flag {flag}");
        assert_eq!(
            effective(&o, c.key),
            (format!("{} = {}", c.key, c.flag.1), origin)
        );
    }
}

#[test]
fn config_file_can_be_named_by_environment() {
    let dir = TempDir::new().unwrap();
    let conf = dir.path().join("c.toml");
    std::fs::write(&conf, "batch_count = 9\n").unwrap();
    let o = run(
        dir.path(),
        &["--check-config"],
        &[("KUBE_EVENT_PIPE_CONFIG", conf.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(effective(&o, "batch_count").0, "batch_count = 9");
    assert!(stdout(&o).contains("environment variable KUBE_EVENT_PIPE_CONFIG"));
}

/// Flags, environment, and the origin the error should name.
type Layer = (Vec<String>, Vec<(String, String)>, String);

/// Each bad value: exit 2, nothing on stdout, and one message naming the key, the origin,
/// the value and what is allowed.
#[test]
fn invalid_values_are_reported_with_key_origin_value_and_allowed() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("plainfile"), "x").unwrap();
    let bad: &[(&str, &str, &str)] = &[
        ("filter_capacity", "0", "a positive integer"),
        ("filter_capacity", "1__000", "a positive integer"),
        ("filter_capacity", "-5", "a positive integer"),
        ("filter_capacity", "lots", "a positive integer"),
        ("batch_count", "0", "a positive integer"),
        ("batch_count", "2.5", "a positive integer"),
        ("batch_duration_sec", "0", "a positive integer"),
        ("filter_error_rate", "0", "strictly between 0 and 1"),
        ("filter_error_rate", "1", "strictly between 0 and 1"),
        ("filter_error_rate", "nan", "strictly between 0 and 1"),
        ("log_level", "verbose", "TRACE, DEBUG, INFO, WARNING"),
        ("log_target", "syslog", "auto, journald or stderr"),
        ("persistence_path", "plainfile", "not a directory"),
        ("persistence_path", "plainfile/sub", "not a directory"),
        ("destination", "", "must not be empty"),
        ("watch_idle_timeout_sec", "0", "a positive integer"),
        ("leader_election", "maybe", "true or false"),
        ("lease_namespace", "Kube_System", "a namespace name"),
        ("lease_name", "-bad", "an object name"),
        ("identity", "two words", "without blanks"),
        ("lease_duration_sec", "0", "a positive integer"),
        ("renew_deadline_sec", "0", "a number of seconds"),
        ("retry_period_sec", "soon", "a number of seconds"),
        // The renew deadline must fall between 1.2 retry periods and the lease duration.
        (
            "renew_deadline_sec",
            "20",
            "less than lease_duration_sec (15, built-in default)",
        ),
        (
            "renew_deadline_sec",
            "2",
            "more than 1.2 × retry_period_sec (2, built-in default)",
        ),
        ("namespace", "Kube-System", "a namespace name"),
        ("namespace", "", "a namespace name"),
        ("field_selector", "type", "has no =, == or !="),
        ("field_selector", "=Warning", "no key before its operator"),
        ("field_selector", "", "must not be empty"),
        ("label_selector", " ", "must not be empty"),
    ];
    for (key, value, allowed) in bad {
        let flag = format!("--{}", key.replace('_', "-"));
        let env_var = format!("KUBE_EVENT_PIPE_{}", key.to_uppercase());
        let conf = dir.path().join("bad.toml");
        std::fs::write(&conf, format!("{key} = \"{value}\"\n")).unwrap();
        let conf_s = conf.to_str().unwrap().to_string();
        let layers: [Layer; 3] = [
            (
                vec!["--config".into(), conf_s.clone()],
                vec![],
                format!("config file {conf_s}, key {key}"),
            ),
            (
                vec![],
                vec![(env_var.clone(), value.to_string())],
                format!("environment variable {env_var}"),
            ),
            (
                vec![flag.clone(), value.to_string()],
                vec![],
                format!("command-line flag {flag}"),
            ),
        ];
        for (args, env, origin) in layers {
            let mut all: Vec<&str> = vec!["--check-config"];
            all.extend(args.iter().map(String::as_str));
            let env: Vec<(&str, &str)> =
                env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let o = run(dir.path(), &all, &env);
            let err = stderr(&o);
            assert_eq!(
                o.status.code(),
                Some(2),
                "{key}={value} via {origin}: {err}"
            );
            assert!(
                o.stdout.is_empty(),
                "stdout must stay clean: {}",
                stdout(&o)
            );
            let want_head = format!("{key} = \"{value}\" ({origin}) is invalid; allowed: ");
            assert!(err.contains(&want_head), "want {want_head:?} in {err}");
            assert!(err.contains(allowed), "want {allowed:?} in {err}");
            assert!(
                !err.contains("panicked") && !err.contains("backtrace"),
                "{err}"
            );
        }
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let dir = TempDir::new().unwrap();
    let o = run(
        dir.path(),
        &[
            "--check-config",
            "--batch-count",
            "0",
            "--log-level",
            "loud",
        ],
        &[("KUBE_EVENT_PIPE_FILTER_ERROR_RATE", "2")],
    );
    let err = refusal(&o);
    for key in ["batch_count", "log_level", "filter_error_rate"] {
        assert!(
            err.contains(&format!("{key} = ")),
            "{key} missing from {err}"
        );
    }
}

#[test]
fn unknown_file_key_is_an_error_that_suggests_the_nearest_key() {
    assert_file_refused(
        "filter_capasity = 10\n",
        &[
            "unknown key \"filter_capasity\"",
            "did you mean \"filter_capacity\"?",
        ],
    );
}

#[test]
fn missing_or_broken_config_file_is_an_error_naming_it() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nope.toml");
    let o = run(dir.path(), &["--config", missing.to_str().unwrap()], &[]);
    let err = refusal(&o);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    assert!(err.contains("command-line flag --config"), "{err}");
    assert!(err.contains("No such file"), "{err}");

    assert_file_refused("batch_count = = 3\n", &["is not valid TOML", "line 1"]);
}

#[test]
fn unknown_environment_variable_is_a_warning_with_a_suggestion() {
    let dir = TempDir::new().unwrap();
    let o = run(
        dir.path(),
        &["--check-config", "--log-target", "stderr"],
        &[("KUBE_EVENT_PIPE_BATCH_CONT", "4")],
    );
    assert!(o.status.success());
    let err = stderr(&o);
    assert!(err.contains("KUBE_EVENT_PIPE_BATCH_CONT"), "{err}");
    assert!(
        err.contains("did you mean KUBE_EVENT_PIPE_BATCH_COUNT?"),
        "{err}"
    );
}

#[test]
fn check_config_prints_every_setting_with_its_source() {
    let dir = TempDir::new().unwrap();
    let o = run(dir.path(), &["--check-config", "--batch-count", "5"], &[]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.starts_with("# config file: none\n"), "{out}");
    for key in [
        "destination",
        "log_level",
        "persistence_path",
        "filter_capacity",
        "filter_error_rate",
        "batch_count",
        "batch_duration_sec",
        "kubeconfig",
        "context",
        "log_target",
        "watch_idle_timeout_sec",
        "leader_election",
        "lease_namespace",
        "lease_name",
        "identity",
        "lease_duration_sec",
        "renew_deadline_sec",
        "retry_period_sec",
        "namespace",
        "field_selector",
        "label_selector",
    ] {
        assert!(out.contains(key), "{key} missing:\n{out}");
    }
    assert_eq!(
        effective(&o, "batch_count"),
        (
            "batch_count = 5".into(),
            "command-line flag --batch-count".into()
        )
    );
    // The printout is itself a valid config file that reproduces the same settings.
    let again = check_config_file(dir.path(), "roundtrip.toml", &out);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(effective(&again, "batch_count").0, "batch_count = 5");
}

#[test]
fn journald_unavailable_falls_back_to_stderr_with_one_warning() {
    // In a mount namespace of its own with an empty /run, so that the journal socket
    // is missing on any machine, a systemd host's included (`-r`: a user namespace too, where
    // the suite does not run as root).
    let dir = TempDir::new().unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    let o = Command::new("unshare")
        .args(if root { &["-m"][..] } else { &["-r", "-m"][..] })
        .args([
            "sh",
            "-c",
            "mount -t tmpfs tmpfs /run && ! test -e /run/systemd/journal/socket && \
             exec \"$0\" \"$@\"",
            BIN,
            "--check-config",
            "--log-target",
            "journald",
        ])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("journal socket is unavailable").count(),
        1,
        "{err}"
    );
    assert!(err.contains("logging to stderr"), "{err}");
    assert!(!stdout(&o).contains("unavailable"), "logs leaked to stdout");
}

#[test]
fn identity_defaults_to_the_host_name() {
    let dir = TempDir::new().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let o = run(dir.path(), &["--check-config"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        effective(&o, "identity"),
        (
            format!("identity = \"{}\"", host.trim()),
            "built-in default".into()
        )
    );
    let o = run(
        dir.path(),
        &["--check-config", "--identity", "cp-1"],
        &[("KUBE_EVENT_PIPE_IDENTITY", "cp-2")],
    );
    assert_eq!(
        effective(&o, "identity"),
        (
            "identity = \"cp-1\"".into(),
            "command-line flag --identity".into()
        )
    );
}

#[test]
fn leader_election_flag_alone_turns_it_on_and_help_says_replay_ignores_it() {
    let dir = TempDir::new().unwrap();
    let o = run(dir.path(), &["--check-config", "--leader-election"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(effective(&o, "leader_election").0, "leader_election = true");
    let help = stdout(&run(dir.path(), &["--help"], &[]));
    let source = help
        .split("--source")
        .nth(1)
        .unwrap_or_else(|| panic!("no --source in:\n{help}"));
    assert!(
        source[..source.find("--destination").unwrap_or(source.len())]
            .contains("ignores leader election"),
        "{help}"
    );
}
