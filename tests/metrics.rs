//! The metrics and health endpoints of the real binary, scraped while it runs against the
//! fake API server: values move as events flow, repeats are skipped, the server fails and the
//! destination fails; `/healthz` and `/readyz` in each phase, also for a standby under leader
//! election and after it takes over. Every scrape is checked by the
//! real `promtool check metrics` (Debian package `prometheus`), which must report nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::daemon::{Daemon, Layout, command, tool, wait_until};
use support::fake_apiserver::{Auth, Failure, FakeApiServer, Options, Target};
use support::scenario::{http_request as get, metrics_addr, wait_for_answer};

const T: Duration = Duration::from_secs(30);

/// The liveness bound the daemon is given through `WATCHDOG_USEC`, as systemd would: short, so
/// that a stalled loop shows within the test, long enough for a loaded machine.
const WATCHDOG_USEC: &str = "10000000";

/// Scrapes `/metrics`, has promtool check it, and returns its samples by series.
struct Scraper {
    addr: SocketAddr,
    promtool: PathBuf,
    scrapes: usize,
}

type Samples = BTreeMap<String, f64>;

impl Scraper {
    fn scrape(&mut self) -> Samples {
        let a = get(self.addr, "/metrics", None);
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(
            a.headers
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{}",
            a.headers
        );
        promtool_check(&self.promtool, &a.body);
        self.scrapes += 1;
        parse(&a.body)
    }

    /// Scrapes until `f` holds; the last samples.
    fn wait_for(&mut self, what: &str, d: &Daemon, f: impl Fn(&Samples) -> bool) -> Samples {
        let deadline = std::time::Instant::now() + T;
        loop {
            let last = self.scrape();
            if f(&last) {
                return last;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: never; last scrape {last:#?}\nlog:\n{}",
                d.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn promtool_check(promtool: &Path, scrape: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\nscrape:\n{scrape}"
    );
}

/// `name{labels} value` lines of the text format.
fn parse(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn v(s: &Samples, series: &str) -> f64 {
    *s.get(series)
        .unwrap_or_else(|| panic!("no {series} in {s:#?}"))
}

fn api_errors(s: &Samples, request: &str, kind: &str) -> f64 {
    v(
        s,
        &format!("kube_event_pipe_api_errors_total{{request=\"{request}\",kind=\"{kind}\"}}"),
    )
}

const WRITTEN: &str = "kube_event_pipe_events_written_total";
const SEEN: &str = "kube_event_pipe_events_already_seen_total";
const BYTES: &str = "kube_event_pipe_written_bytes_total";
const PENDING: &str = "kube_event_pipe_events_pending";
const WRITE_ERRORS: &str = "kube_event_pipe_write_errors_total";

fn size(p: &Path) -> f64 {
    std::fs::metadata(p).map_or(0, |m| m.len()) as f64
}

#[test]
fn metrics_and_health_follow_listing_stalls_events_repeats_api_failures_and_write_failures() {
    let promtool = tool("promtool", "prometheus");
    let api = FakeApiServer::start(Options {
        bookmark_interval: Some(Duration::from_millis(500)),
        ..Options::default()
    });
    api.create_realistic(0..10);
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    let logs = layout.path("logs");
    std::fs::create_dir(&logs).unwrap();
    let dest = logs.join("events.log");

    // ---- connecting, then stalled: the first request gets no answer ----
    api.set_stalled(true);
    let (kubeconfig, state, dest_s) = (
        layout.kubeconfig().display().to_string(),
        layout.state().display().to_string(),
        dest.display().to_string(),
    );
    let args = [
        "--kubeconfig",
        &kubeconfig,
        "--persistence-path",
        &state,
        "--destination",
        &dest_s,
        "--metrics-address",
        "127.0.0.1:0",
    ];
    let d = Daemon::spawn(
        command(&args)
            .env("WATCHDOG_USEC", WATCHDOG_USEC)
            .stdout(Stdio::null()),
    );
    let addr = metrics_addr(&d);
    let mut m = Scraper {
        addr,
        promtool,
        scrapes: 0,
    };
    assert!(wait_until(T, || api.list_request_count() >= 1));
    let ready = get(addr, "/readyz", None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    // On a first start the first request is the first-contact check (nothing is created on
    // disk before the API server has answered), so the phase is still "connecting".
    assert!(ready.body.contains("connecting"), "{}", ready.body);
    assert!(ready.headers.contains("content-type: text/plain"));
    let health = get(addr, "/healthz", None);
    assert_eq!(health.status, 200, "{}", health.body);
    let s = m.scrape();
    assert_eq!(v(&s, "kube_event_pipe_initial_sync_done"), 0.0);
    assert_eq!(v(&s, "kube_event_pipe_ready"), 0.0);
    // Not listing yet: the first-contact request is no re-list.
    assert_eq!(v(&s, "kube_event_pipe_relists_total{cause=\"start\"}"), 0.0);
    assert_eq!(
        v(
            &s,
            "kube_event_pipe_relists_total{cause=\"selection_changed\"}"
        ),
        0.0
    );
    assert_eq!(v(&s, WRITTEN), 0.0);
    assert!(!s.contains_key("kube_event_pipe_initial_sync_duration_seconds"));
    assert!(v(&s, "process_resident_memory_bytes") > 1e6);
    assert!(v(&s, "process_open_fds") >= 5.0);
    assert_eq!(v(&s, "kube_event_pipe_leader"), 1.0);
    let build = s
        .keys()
        .find(|k| k.starts_with("kube_event_pipe_build_info{"))
        .unwrap();
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );

    // The unanswered request holds the loop: past the watchdog bound it is not alive.
    wait_for_answer(addr, "/healthz", &d, |a| a.status == 503);
    let health = get(addr, "/healthz", None);
    assert!(health.body.starts_with("stalled"), "{}", health.body);
    let ready = get(addr, "/readyz", None);
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("stalled"), "{}", ready.body);

    // ---- watching ----
    api.set_stalled(false);
    wait_for_answer(addr, "/readyz", &d, |a| a.status == 200);
    let ready = get(addr, "/readyz", None);
    assert!(ready.body.contains("watching"), "{}", ready.body);
    assert_eq!(get(addr, "/healthz", None).status, 200);
    let s = m.wait_for("the listed events written", &d, |s| v(s, WRITTEN) == 10.0);
    assert_eq!(v(&s, "kube_event_pipe_initial_sync_done"), 1.0);
    assert_eq!(v(&s, "kube_event_pipe_ready"), 1.0);
    assert!(v(&s, "kube_event_pipe_initial_sync_duration_seconds") > 0.0);
    assert_eq!(v(&s, BYTES), size(&dest));
    assert!(v(&s, "kube_event_pipe_last_write_timestamp_seconds") > 1.7e9);
    // The initial sync was one streaming list, a watch request.
    assert!(v(&s, "kube_event_pipe_api_requests_total{request=\"watch\"}") >= 1.0);
    assert_eq!(v(&s, "kube_event_pipe_relists_total{cause=\"start\"}"), 1.0);
    assert_eq!(v(&s, "kube_event_pipe_dedup_filter_files"), 1.0);
    assert_eq!(
        v(&s, "kube_event_pipe_dedup_false_positive_rate_bound"),
        0.01
    );

    // ---- events flow ----
    api.create_realistic(10..15);
    let s = m.wait_for("new events written", &d, |s| v(s, WRITTEN) == 15.0);
    assert_eq!(v(&s, BYTES), size(&dest));
    assert!(v(&s, "kube_event_pipe_last_write_age_seconds") < 10.0);
    assert!(v(&s, "kube_event_pipe_last_api_message_age_seconds") < 10.0);
    // Bookmarks every 0.5 s keep the API's last message fresh while nothing is written.
    std::thread::sleep(Duration::from_millis(2_500));
    let s = m.scrape();
    assert!(
        v(&s, "kube_event_pipe_last_api_message_age_seconds")
            < v(&s, "kube_event_pipe_last_write_age_seconds"),
        "{s:#?}"
    );
    assert!(v(&s, "kube_event_pipe_dedup_newest_filter_fill_ratio") > 0.0);

    // ---- repeats: an expired watch means a re-list of what is already written ----
    api.expire_watches();
    let s = m.wait_for("the re-list skipped as already seen", &d, |s| {
        v(s, SEEN) >= 15.0
    });
    assert_eq!(v(&s, WRITTEN), 15.0);
    assert_eq!(
        v(&s, "kube_event_pipe_relists_total{cause=\"expired\"}"),
        1.0
    );
    assert_eq!(api_errors(&s, "watch", "410"), 1.0);
    assert_eq!(support::daemon::lines(&dest).len(), 15);

    // ---- the API server fails: error answers, broken streams, refused connections ----
    api.fail_next_for(Target::Watch, 1_000, Failure::InternalError);
    api.drop_watches(false);
    let s = m.wait_for("5xx answers counted", &d, |s| {
        api_errors(s, "watch", "5xx") >= 2.0
    });
    assert!(api_errors(&s, "watch", "stream") >= 1.0, "{s:#?}");
    wait_for_answer(addr, "/readyz", &d, |a| a.body.contains("retrying"));
    assert_eq!(get(addr, "/readyz", None).status, 503);
    // Backing off is deliberate waiting: still alive.
    assert_eq!(get(addr, "/healthz", None).status, 200);
    api.clear_faults();
    api.fail_next_for(
        Target::Watch,
        2,
        Failure::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    m.wait_for("429 answers counted as 4xx", &d, |s| {
        api_errors(s, "watch", "4xx") >= 2.0
    });
    // Refused connections: the server restarts under a healthy watch, which reconnects at once
    // (checking first that its version is still served: that request meets the refusals).
    wait_for_answer(addr, "/readyz", &d, |a| a.status == 200);
    api.restart(Duration::from_millis(2_000));
    m.wait_for("refused connections counted", &d, |s| {
        ["watch", "list", "version_check"]
            .iter()
            .map(|r| api_errors(s, r, "connect"))
            .sum::<f64>()
            >= 1.0
    });
    wait_for_answer(addr, "/readyz", &d, |a| a.status == 200);

    // ---- the destination fails: its directory is removed, then recreated ----
    let before = m.scrape();
    let bytes_before = v(&before, BYTES);
    std::fs::remove_dir_all(&logs).unwrap();
    api.create_realistic(15..18);
    let s = m.wait_for("the failing write counted and its events held", &d, |s| {
        v(s, WRITE_ERRORS) >= 2.0
    });
    // The batch in hand (the watch waits meanwhile, so it holds one to three of them).
    assert!((1.0..=3.0).contains(&v(&s, PENDING)), "{s:#?}");
    assert_eq!(v(&s, WRITTEN), 15.0);
    // Retrying the write is the loop at work: alive, but not ready, and /readyz says why.
    let ready = get(addr, "/readyz", None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready
            .body
            .contains("retrying: writing events: cannot open destination"),
        "{}",
        ready.body
    );
    assert_eq!(get(addr, "/healthz", None).status, 200);
    std::fs::create_dir(&logs).unwrap();
    let s = m.wait_for("the held events written", &d, |s| v(s, WRITTEN) == 18.0);
    assert_eq!(v(&s, PENDING), 0.0);
    assert_eq!(v(&s, BYTES), bytes_before + size(&dest));
    assert_eq!(
        v(
            &s,
            "kube_event_pipe_destination_reopens_total{cause=\"path_changed\"}"
        ),
        1.0
    );

    // ---- SIGHUP reopens before the next write ----
    d.signal(libc::SIGHUP);
    assert!(d.wait_for_log("SIGHUP", T));
    api.create_realistic(18..19);
    let s = m.wait_for("the reopen after SIGHUP", &d, |s| v(s, WRITTEN) == 19.0);
    assert_eq!(
        v(
            &s,
            "kube_event_pipe_destination_reopens_total{cause=\"signal\"}"
        ),
        1.0
    );

    // ---- OpenMetrics when the scraper asks for it, as Prometheus does ----
    let om = get(
        addr,
        "/metrics",
        Some(
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        ),
    );
    assert_eq!(om.status, 200);
    assert!(
        om.headers
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{}",
        om.headers
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(
        om.body
            .contains("# UNIT kube_event_pipe_written_bytes bytes")
    );
    openmetrics_check(&m.promtool, &om.body, &layout);

    // README's table lists every metric the daemon exposes.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let text = get(addr, "/metrics", None).body;
    for name in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = name.split(' ').next().unwrap();
        assert!(
            readme.contains(&format!("| `{name}`")) || readme.contains(&format!("| `{name}{{")),
            "{name} is not in README's Metrics table"
        );
    }

    let other = get(addr, "/nothing", None);
    assert_eq!(other.status, 404);

    d.stop_ok();
    println!(
        "METRICS {} scrapes, each checked by promtool check metrics: no problems",
        m.scrapes
    );
}

/// Parses an OpenMetrics scrape with Prometheus' own OpenMetrics parser: promtool's block
/// importer, which needs a timestamp on every sample, so each gets the same one.
fn openmetrics_check(promtool: &Path, scrape: &str, layout: &Layout) {
    let stamped: String = scrape
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("{l}\n")
            } else {
                format!("{l} 1700000000\n")
            }
        })
        .collect();
    let input = layout.path("openmetrics.txt");
    std::fs::write(&input, stamped).unwrap();
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(layout.path("blocks"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool could not parse the OpenMetrics scrape: {}{}\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` to its end: it must exit 2; returns what it said.
#[track_caller]
fn refused(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

#[test]
fn a_taken_or_unparseable_metrics_address_exits_2_naming_the_key_and_its_source() {
    let layout = Layout::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let args = layout.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = refused(command(&args).env("KUBE_EVENT_PIPE_METRICS_ADDRESS", &addr));
    assert!(
        err.contains(&format!(
            "metrics_address = \"{addr}\" (environment variable KUBE_EVENT_PIPE_METRICS_ADDRESS) cannot be listened on"
        )),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");

    let mut with_flag = args.clone();
    with_flag.extend(["--metrics-address", "localhost:9784"]);
    let err = refused(&mut command(&with_flag));
    assert!(
        err.contains(
            "metrics_address = \"localhost:9784\" (command-line flag --metrics-address) is invalid; allowed: an IP address and port"
        ),
        "{err}"
    );

    let config = layout.path("config.toml");
    std::fs::write(&config, "metrics_address = \"127.0.0.1\"\n").unwrap();
    let config_s = config.display().to_string();
    let mut with_file = args.clone();
    with_file.extend(["--config", &config_s, "--check-config"]);
    let err = refused(&mut command(&with_file));
    assert!(
        err.contains(&format!(
            "metrics_address = \"127.0.0.1\" (config file {config_s}, key metrics_address) is invalid"
        )),
        "{err}"
    );

    // "off" overrides a file that turns the endpoints on; --check-config says where it came from.
    std::fs::write(&config, "metrics_address = \"127.0.0.1:9784\"\n").unwrap();
    let out = command(&with_file).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("metrics_address = \"127.0.0.1:9784\"")
            && printed.contains("key metrics_address"),
        "{printed}"
    );
    let out = command(&with_file)
        .env("KUBE_EVENT_PIPE_METRICS_ADDRESS", "off")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("metrics_address = \"off\"")
            && printed.contains("environment variable KUBE_EVENT_PIPE_METRICS_ADDRESS"),
        "{printed}"
    );
    drop(taken);
}

/// The example alert rules in README's *Metrics* section are valid Prometheus rules, and name
/// only metrics the daemon exposes.
#[test]
fn the_readme_alert_rules_pass_promtool_check_rules() {
    let promtool = tool("promtool", "prometheus");
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let from = readme
        .find("Example alert rules")
        .expect("README has the alert rules");
    let block = &readme[from..];
    let start = block.find("```yaml\n").unwrap() + 8;
    let rules = &block[start..start + block[start..].find("```").unwrap()];
    assert_eq!(rules.matches("- alert:").count(), 3, "{rules}");
    for name in [
        "kube_event_pipe_events_pending",
        "kube_event_pipe_last_write_timestamp_seconds",
        "kube_event_pipe_api_errors_total",
        "kube_event_pipe_dedup_estimated_false_positive_rate",
        "kube_event_pipe_dedup_false_positive_rate_bound",
    ] {
        assert!(rules.contains(name), "{name}");
        assert!(
            readme.contains(&format!("| `{name}")),
            "{name} not in the table"
        );
    }
    let layout = Layout::new();
    let said = promtool_on(&promtool, &layout, "check", "rules.yml", rules);
    assert!(said.contains("SUCCESS: 3 rules found"), "{said}");

    // Each rule fires when it should and not before (series sampled every minute).
    promtool_on(&promtool, &layout, "test", "rules_test.yml", RULE_TESTS);
}

/// Writes `text` as `name` in the layout and runs `promtool <verb> rules` on it, which must
/// succeed; returns what promtool said.
#[track_caller]
fn promtool_on(promtool: &Path, layout: &Layout, verb: &str, name: &str, text: &str) -> String {
    let file = layout.path(name);
    std::fs::write(&file, text).unwrap();
    let out = Command::new(promtool)
        .args([verb, "rules"])
        .arg(&file)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}\n{text}");
    said
}

/// `promtool test rules` input for README's rules (in `rules.yml` beside it).
const RULE_TESTS: &str = r#"
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  # Held events since minute 10, the last write at minute 10: 15 minutes later the condition
  # holds, and 5 minutes after that the alert fires. Held events alone do not alert.
  - interval: 1m
    input_series:
      - series: 'kube_event_pipe_events_pending{instance="h"}'
        values: '0x9 3x40'
      - series: 'kube_event_pipe_last_write_timestamp_seconds{instance="h"}'
        values: '0x9 600x40'
    alert_rule_test:
      - eval_time: 20m
        alertname: KubeEventPipeNotWriting
        exp_alerts: []
      - eval_time: 29m
        alertname: KubeEventPipeNotWriting
        exp_alerts: []
      - eval_time: 31m
        alertname: KubeEventPipeNotWriting
        exp_alerts:
          - exp_labels: {severity: critical, instance: h}
            exp_annotations:
              summary: "kube-event-pipe on h holds events it cannot write"
              description: "Look for 'cannot write events' in journalctl -u kube-event-pipe; the watch waits until the destination works."
  # A failure a minute (5xx, then connection refused) from minute 0; an expiry a minute never
  # alerts.
  - interval: 1m
    input_series:
      - series: 'kube_event_pipe_api_errors_total{instance="h",request="watch",kind="5xx"}'
        values: '0+1x20 20x20'
      - series: 'kube_event_pipe_api_errors_total{instance="h",request="watch",kind="connect"}'
        values: '0x20 0+1x20'
      - series: 'kube_event_pipe_api_errors_total{instance="g",request="watch",kind="410"}'
        values: '0+1x40'
    alert_rule_test:
      - eval_time: 10m
        alertname: KubeEventPipeApiErrors
        exp_alerts: []
      - eval_time: 35m
        alertname: KubeEventPipeApiErrors
        exp_alerts:
          - exp_labels: {severity: warning, instance: h}
            exp_annotations:
              summary: "kube-event-pipe on h: API requests keep failing"
              description: "kube_event_pipe_api_errors_total by kind says which (connect, timeout, 4xx, 5xx, stream); /readyz gives the last error."
  # The estimate passes the bound at minute 5; the alert fires 10 minutes later.
  - interval: 1m
    input_series:
      - series: 'kube_event_pipe_dedup_estimated_false_positive_rate{instance="h"}'
        values: '0.004x4 0.02x20'
      - series: 'kube_event_pipe_dedup_false_positive_rate_bound{instance="h"}'
        values: '0.01x24'
    alert_rule_test:
      - eval_time: 14m
        alertname: KubeEventPipeDedupFalsePositivesAboveBound
        exp_alerts: []
      - eval_time: 16m
        alertname: KubeEventPipeDedupFalsePositivesAboveBound
        exp_alerts:
          - exp_labels: {severity: warning, instance: h}
            exp_annotations:
              summary: "kube-event-pipe on h takes new events for repeats more often than filter_error_rate allows"
"#;

/// One host under leader election with the metrics endpoints on a free port: lease 20 s,
/// renew deadline 10 s, retry period 0.5 s (a takeover within seconds can only come from the
/// released Lease).
fn start_elector(api: &FakeApiServer, layout: &Layout, identity: &str) -> (Daemon, SocketAddr) {
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    let mut args = layout.args();
    args.extend(
        [
            "--leader-election",
            "--identity",
            identity,
            "--lease-duration-sec",
            "20",
            "--renew-deadline-sec",
            "10",
            "--retry-period-sec",
            "0.5",
            "--metrics-address",
            "127.0.0.1:0",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = Daemon::spawn(
        command(&args)
            .env("WATCHDOG_USEC", WATCHDOG_USEC)
            .stdout(Stdio::null()),
    );
    let addr = metrics_addr(&d);
    (d, addr)
}

/// Waits until `/readyz` answers 200; its body.
fn ready_body(addr: SocketAddr, d: &Daemon) -> String {
    wait_for_answer(addr, "/readyz", d, |a| a.status == 200).body
}

const LEADER: &str = "kube_event_pipe_leader";
const TRANSITIONS: &str = "kube_event_pipe_leader_transitions_total";

#[test]
fn a_standby_is_ready_while_following_reports_leader_0_and_1_once_it_takes_over() {
    let promtool = tool("promtool", "prometheus");
    let api = FakeApiServer::start(Options::default());
    api.create_realistic(0..5);

    let (l1, l2) = (Layout::new(), Layout::new());
    let (h1, addr1) = start_elector(&api, &l1, "h1");
    let mut m1 = Scraper {
        addr: addr1,
        promtool: promtool.clone(),
        scrapes: 0,
    };
    let s = m1.wait_for("h1 leads and has written the listed events", &h1, |s| {
        v(s, LEADER) == 1.0 && v(s, WRITTEN) == 5.0
    });
    assert_eq!(v(&s, TRANSITIONS), 0.0);
    let ready = ready_body(addr1, &h1);
    assert!(ready.contains("(leader)"), "{ready}");

    // h2 cannot reach the API server at first: with leader election on, an instance that has
    // not decided its role yet does not write, so it is no leader.
    api.fail_next_for(Target::List, 1_000, Failure::ServiceUnavailable);
    let (h2, addr2) = start_elector(&api, &l2, "h2");
    let mut m2 = Scraper {
        addr: addr2,
        promtool: promtool.clone(),
        scrapes: 0,
    };
    h2.expect_log("connecting to the API server failed");
    let s = m2.scrape();
    assert_eq!(v(&s, LEADER), 0.0, "h2 has not decided its role yet");
    assert_eq!(v(&s, TRANSITIONS), 0.0);
    let ready = get(addr2, "/readyz", None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains("role not decided yet"),
        "{}",
        ready.body
    );
    api.clear_faults();

    // h2 follows h1: ready, says it is a standby, leader 0; h1 still writes.
    h2.expect_log("standby: the leader is h1");
    let ready = ready_body(addr2, &h2);
    assert!(ready.contains("standby, following"), "{ready}");
    assert!(ready.contains("watching"), "{ready}");
    api.create_realistic(5..8);
    m1.wait_for("h1 writes the new events", &h1, |s| v(s, WRITTEN) == 8.0);
    let s = m2.wait_for("h2 ready as a standby", &h2, |s| {
        v(s, "kube_event_pipe_ready") == 1.0
    });
    assert_eq!(v(&s, LEADER), 0.0);
    assert_eq!(v(&s, TRANSITIONS), 0.0);
    assert_eq!(v(&s, WRITTEN), 0.0);
    assert_eq!(v(&m1.scrape(), LEADER), 1.0);

    // h1 stops: SIGTERM releases the Lease and h2 takes over at once.
    let log = h1.stop_ok();
    assert!(log.contains("released the Lease"), "{log}");
    let s = m2.wait_for("h2 leads after the release", &h2, |s| v(s, LEADER) == 1.0);
    assert_eq!(v(&s, TRANSITIONS), 1.0);
    let ready = ready_body(addr2, &h2);
    assert!(ready.contains("(leader)"), "{ready}");
    api.create_realistic(8..10);
    let s = m2.wait_for("h2 writes the events that came after", &h2, |s| {
        v(s, WRITTEN) == 2.0
    });
    assert_eq!(v(&s, LEADER), 1.0);
    assert_eq!(
        support::daemon::lines(&l1.out()).len() + support::daemon::lines(&l2.out()).len(),
        10
    );
    h2.stop_ok();
    println!(
        "METRICS standby and takeover: {} scrapes of h1 and {} of h2, each checked by promtool check metrics: no problems",
        m1.scrapes, m2.scrapes
    );
}
