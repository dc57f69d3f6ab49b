//! Leader election with real daemons: two or three hosts (separate state directories and
//! destinations) against one fake API server while events keep coming. Short timings (lease
//! 3 s, renew deadline 2 s, retry period 0.5 s) keep each scenario to seconds. Each prints its
//! figures as `LEADER ...` lines (`cargo test --test leader_election -- --nocapture`); README's
//! "Several hosts" section quotes them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Layout, lines, wait_until};
use support::fake_apiserver::{Auth, FakeApiServer, Options};

const NS: &str = "kube-system";
const LEASE: &str = "kube-event-pipe";
const WRITTEN: &str = "kube-event-pipe.io/written-resource-version";
const T: Duration = Duration::from_secs(30);

/// lease duration / renew deadline / retry period, in seconds.
const FAST: [&str; 3] = ["3", "2", "0.5"];
const LEASE_SECS: f64 = 3.0;
const RENEW_DEADLINE_SECS: f64 = 2.0;
const RETRY_SECS: f64 = 0.5;
/// A leader writes only this long after its last successful renewal started (1.5 retry periods).
const WRITE_WINDOW_SECS: f64 = 0.75;

struct Host {
    name: String,
    layout: Layout,
    daemon: Option<Daemon>,
}

impl Host {
    fn start(api: &FakeApiServer, name: &str, timings: [&str; 3]) -> Host {
        let layout = Layout::new();
        api.write_kubeconfig(layout.kubeconfig(), Auth::None);
        let mut host = Host {
            name: name.to_string(),
            layout,
            daemon: None,
        };
        host.restart(timings);
        host
    }

    fn restart(&mut self, timings: [&str; 3]) {
        let mut args = self.layout.args();
        for a in [
            "--leader-election",
            "--identity",
            &self.name,
            "--lease-duration-sec",
            timings[0],
            "--renew-deadline-sec",
            timings[1],
            "--retry-period-sec",
            timings[2],
        ] {
            args.push(a.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.daemon = Some(Daemon::start(&args));
    }

    fn lines(&self) -> Vec<String> {
        lines(&self.layout.out())
    }

    fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::stderr).unwrap_or_default()
    }

    /// Waits until the running daemon's log holds `needle`.
    #[track_caller]
    fn expect_log(&self, needle: &str) {
        self.daemon.as_ref().unwrap().expect_log(needle);
    }

    fn kill(&mut self) -> String {
        self.daemon.take().map(Daemon::kill).unwrap_or_default()
    }

    fn stop(&mut self) -> String {
        let (status, log) = self.daemon.take().unwrap().stop();
        assert!(status.success(), "{} exited {status}: {log}", self.name);
        log
    }
}

fn holder(api: &FakeApiServer) -> Option<String> {
    api.lease_holder(NS, LEASE)
}

/// Waits until the Lease names `who` (one of `names`); returns who and when.
fn wait_for_holder(api: &FakeApiServer, names: &[&str], hosts: &[&Host]) -> (String, Instant) {
    let mut found = None;
    let ok = wait_until(T, || {
        found = holder(api).filter(|h| names.contains(&h.as_str()));
        found.is_some()
    });
    let logs: Vec<String> = hosts
        .iter()
        .map(|h| format!("--- {}:\n{}", h.name, h.log()))
        .collect();
    assert!(
        ok,
        "no holder among {names:?}, Lease: {:?}\n{}",
        api.lease(NS, LEASE),
        logs.join("\n")
    );
    (found.unwrap(), Instant::now())
}

/// Creates one event every `every` until stopped, remembering when each was created.
struct Generator {
    stop: Arc<AtomicBool>,
    created: Arc<Mutex<Vec<(Instant, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Generator {
    fn start(api: &Arc<FakeApiServer>, prefix: &str, every: Duration) -> Generator {
        let stop = Arc::new(AtomicBool::new(false));
        let created = Arc::new(Mutex::new(Vec::new()));
        let (api, s, c, prefix) = (
            api.clone(),
            stop.clone(),
            created.clone(),
            prefix.to_string(),
        );
        let thread = std::thread::spawn(move || {
            let mut i = 0;
            while !s.load(Ordering::SeqCst) {
                let name = format!("{prefix}{i:06}");
                api.create("gen", &name, &event(i));
                c.lock().unwrap().push((Instant::now(), name));
                i += 1;
                std::thread::sleep(every);
            }
        });
        Generator {
            stop,
            created,
            thread: Some(thread),
        }
    }

    fn finish(&mut self) -> Vec<(Instant, String)> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.created.lock().unwrap().clone()
    }

    /// Events created within `window` before `at`.
    fn created_within(&self, at: Instant, window: Duration) -> usize {
        self.created
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t <= at && at.duration_since(*t) <= window)
            .count()
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn event(i: usize) -> String {
    format!(
        r#"{{"involvedObject":{{"kind":"Pod","namespace":"gen","name":"p{i}"}},"reason":"Scheduled","message":"event {i}","count":1,"type":"Normal"}}"#
    )
}

/// When each host's destination grew, sampled every 10 ms: tells who wrote when.
struct Timeline {
    stop: Arc<AtomicBool>,
    growth: Arc<Mutex<Vec<(Instant, usize)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Timeline {
    fn start(hosts: &[&Host]) -> Timeline {
        let paths: Vec<_> = hosts.iter().map(|h| h.layout.out()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let growth = Arc::new(Mutex::new(Vec::new()));
        let (s, g) = (stop.clone(), growth.clone());
        let thread = std::thread::spawn(move || {
            let mut sizes = vec![0u64; paths.len()];
            while !s.load(Ordering::SeqCst) {
                let now = Instant::now();
                for (i, p) in paths.iter().enumerate() {
                    let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                    if len > sizes[i] {
                        sizes[i] = len;
                        g.lock().unwrap().push((now, i));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Timeline {
            stop,
            growth,
            thread: Some(thread),
        }
    }

    /// (first, last) growth of each host that wrote, in host order.
    fn finish(&mut self) -> Vec<Option<(Instant, Instant)>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let growth = self.growth.lock().unwrap();
        let n = growth.iter().map(|(_, i)| i + 1).max().unwrap_or(0);
        (0..n)
            .map(|i| {
                let mine: Vec<Instant> = growth
                    .iter()
                    .filter(|(_, h)| *h == i)
                    .map(|(t, _)| *t)
                    .collect();
                Some((*mine.first()?, *mine.last()?))
            })
            .collect()
    }

    /// Exactly one writer at a time: the hosts' writing periods do not overlap (a period
    /// ends at the host's last growth and the next starts at another host's first growth).
    fn assert_one_writer_at_a_time(&mut self, names: &[&str]) {
        let mut periods: Vec<(Instant, Instant, &str)> = self
            .finish()
            .into_iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|(a, b)| (a, b, names[i])))
            .collect();
        periods.sort_by_key(|p| p.0);
        for w in periods.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "{} wrote until {:?} after {} began at {:?}",
                w[0].2,
                w[0].1,
                w[1].2,
                w[1].0
            );
        }
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// (lost, duplicated) over the union of the hosts' destinations.
fn tally(api: &FakeApiServer, created: &[(Instant, String)], hosts: &[&Host]) -> (usize, usize) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for h in hosts {
        for l in h.lines() {
            *seen.entry(l).or_default() += 1;
        }
    }
    let want: HashSet<String> = created
        .iter()
        .map(|(_, n)| api.object_line("gen", n))
        .collect();
    let lost = want.iter().filter(|l| !seen.contains_key(*l)).count();
    let foreign = seen.keys().filter(|l| !want.contains(*l)).count();
    assert_eq!(foreign, 0, "lines nobody created");
    (lost, seen.values().map(|n| n - 1).sum())
}

/// Waits until the union of the destinations holds every created event.
fn wait_complete(api: &FakeApiServer, created: &[(Instant, String)], hosts: &[&Host]) {
    let ok = wait_until(T, || tally(api, created, hosts).0 == 0);
    let logs: Vec<String> = hosts
        .iter()
        .map(|h| format!("--- {} ({} lines):\n{}", h.name, h.lines().len(), h.log()))
        .collect();
    assert!(
        ok,
        "{} events never written\n{}",
        tally(api, created, hosts).0,
        logs.join("\n")
    );
}

/// Lets the generator run 2 s more, stops it, waits until the hosts' destinations hold every
/// event it created; returns those events and how many were lost and duplicated.
fn settle_and_tally(
    api: &FakeApiServer,
    generator: &mut Generator,
    hosts: &[&Host],
) -> (Vec<(Instant, String)>, usize, usize) {
    std::thread::sleep(Duration::from_secs(2));
    let created = generator.finish();
    wait_complete(api, &created, hosts);
    let (lost, dup) = tally(api, &created, hosts);
    (created, lost, dup)
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn start_pair(api: &FakeApiServer, timings: [&str; 3]) -> (Host, Host) {
    start_pair_after(api, timings, || {})
}

/// [`start_pair`], running `between` once h1 leads and before h2 starts.
fn start_pair_after(
    api: &FakeApiServer,
    timings: [&str; 3],
    between: impl FnOnce(),
) -> (Host, Host) {
    let h1 = Host::start(api, "h1", timings);
    wait_for_holder(api, &["h1"], &[&h1]);
    between();
    let h2 = Host::start(api, "h2", timings);
    h2.expect_log("standby: the leader is h1");
    (h1, h2)
}

#[test]
fn sigkill_of_the_leader_hands_over_within_the_lease_duration_without_loss() {
    let api = Arc::new(FakeApiServer::start(Options::default()));
    let (mut h1, h2) = start_pair(&api, FAST);
    let mut timeline = Timeline::start(&[&h1, &h2]);
    let mut generator = Generator::start(&api, "k", Duration::from_millis(25));
    std::thread::sleep(Duration::from_secs(3));
    assert!(!h1.lines().is_empty(), "the leader writes: {}", h1.log());
    assert!(h2.lines().is_empty(), "the standby wrote: {}", h2.log());
    let recorded = api.lease_annotation(NS, LEASE, WRITTEN);
    assert!(recorded.is_some(), "{:?}", api.lease(NS, LEASE));

    let killed = Instant::now();
    let h1_log = h1.kill();
    let (_, took) = wait_for_holder(&api, &["h2"], &[&h1, &h2]);
    let takeover = took.duration_since(killed).as_secs_f64();
    let at_risk = generator.created_within(killed, Duration::from_secs_f64(RETRY_SECS + 1.0));
    let (created, lost, dup) = settle_and_tally(&api, &mut generator, &[&h1, &h2]);
    println!(
        "LEADER sigkill: takeover {takeover:.2}s after the kill (lease {LEASE_SECS}s); {} events, lost {lost}, duplicated {dup} (events created in the last {:.1}s before the kill: {at_risk})",
        created.len(),
        RETRY_SECS + 1.0
    );
    assert_eq!(lost, 0);
    assert!(
        dup <= at_risk,
        "{dup} duplicates, more than the {at_risk} events of one renew interval"
    );
    // The lease's expiry plus a retry period, with room for a loaded machine; far below what
    // a stuck election would take.
    assert!(
        takeover <= LEASE_SECS + 2.0 * RETRY_SECS + 3.0,
        "takeover took {takeover:.2}s"
    );
    timeline.assert_one_writer_at_a_time(&["h1", "h2"]);
    // One INFO line per change of role, none per renewal.
    let h2_log = h2.log();
    assert_eq!(
        count(&h2_log, "leading: took the Lease over from h1"),
        1,
        "{h2_log}"
    );
    assert_eq!(count(&h2_log, "standby: the leader is h1"), 1, "{h2_log}");
    assert_eq!(
        count(&h1_log, "Lease"),
        count(&h1_log, "leading: took") + 1,
        "{h1_log}"
    );
}

#[test]
fn sigterm_releases_the_lease_and_a_standby_takes_over_at_once_repeating_nothing() {
    let api = Arc::new(FakeApiServer::start(Options::default()));
    // A long lease: a takeover within seconds can only come from the release.
    let slow = ["20", "10", "0.5"];
    let (mut h1, h2) = start_pair(&api, slow);
    let mut timeline = Timeline::start(&[&h1, &h2]);
    let mut generator = Generator::start(&api, "t", Duration::from_millis(25));
    std::thread::sleep(Duration::from_secs(2));
    let stopped = Instant::now();
    let h1_log = h1.stop();
    let (_, took) = wait_for_holder(&api, &["h2"], &[&h1, &h2]);
    let takeover = took.duration_since(stopped).as_secs_f64();
    let (created, lost, dup) = settle_and_tally(&api, &mut generator, &[&h1, &h2]);
    println!(
        "LEADER sigterm: takeover {takeover:.2}s after SIGTERM (lease 20s); {} events, lost {lost}, duplicated {dup}",
        created.len()
    );
    assert!(h1_log.contains("released the Lease"), "{h1_log}");
    assert_eq!(lost, 0);
    assert_eq!(dup, 0, "the release records the last written version");
    // Without the release it would take the 20 s lease; 6 s leaves a loaded machine room.
    assert!(takeover < 6.0, "takeover took {takeover:.2}s");
    timeline.assert_one_writer_at_a_time(&["h1", "h2"]);
}

#[test]
fn three_hosts_hand_over_twice_one_writer_at_a_time() {
    let api = Arc::new(FakeApiServer::start(Options::default()));
    let mut h1 = Host::start(&api, "h1", FAST);
    wait_for_holder(&api, &["h1"], &[&h1]);
    let mut h2 = Host::start(&api, "h2", FAST);
    let mut h3 = Host::start(&api, "h3", FAST);
    for h in [&h2, &h3] {
        h.expect_log("standby: the leader is h1");
    }
    let mut timeline = Timeline::start(&[&h1, &h2, &h3]);
    let mut generator = Generator::start(&api, "m", Duration::from_millis(25));
    std::thread::sleep(Duration::from_secs(2));
    let killed = Instant::now();
    h1.kill();
    let at_risk = generator.created_within(killed, Duration::from_secs_f64(RETRY_SECS + 1.0));
    let (second, took) = wait_for_holder(&api, &["h2", "h3"], &[&h1, &h2, &h3]);
    let first_takeover = took.duration_since(killed).as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let stopped = Instant::now();
    let third = if second == "h2" {
        h2.stop();
        "h3"
    } else {
        h3.stop();
        "h2"
    };
    let (_, took) = wait_for_holder(&api, &[third], &[&h1, &h2, &h3]);
    let second_takeover = took.duration_since(stopped).as_secs_f64();
    let (created, lost, dup) = settle_and_tally(&api, &mut generator, &[&h1, &h2, &h3]);
    let per_host: Vec<usize> = [&h1, &h2, &h3].iter().map(|h| h.lines().len()).collect();
    println!(
        "LEADER three hosts: h1 killed, {second} took over in {first_takeover:.2}s; {second} stopped, {third} took over in {second_takeover:.2}s; {} events, lines per host {per_host:?}, lost {lost}, duplicated {dup} (at risk at the kill: {at_risk})",
        created.len()
    );
    assert_eq!(lost, 0);
    assert!(dup <= at_risk, "{dup} duplicates > {at_risk}");
    assert!(first_takeover <= LEASE_SECS + 2.0 * RETRY_SECS + 3.0);
    assert!(second_takeover < 3.0);
    timeline.assert_one_writer_at_a_time(&["h1", "h2", "h3"]);
}

#[test]
fn a_leader_whose_renewals_are_refused_stops_writing_before_another_takes_over() {
    let api = Arc::new(FakeApiServer::start(Options::default()));
    let (h1, h2) = start_pair(&api, FAST);
    let mut timeline = Timeline::start(&[&h1, &h2]);
    let mut generator = Generator::start(&api, "f", Duration::from_millis(25));
    std::thread::sleep(Duration::from_secs(2));
    let refused = Instant::now();
    api.refuse_lease_updates("h1");
    let (_, took) = wait_for_holder(&api, &["h2"], &[&h1, &h2]);
    // What h1 may have written past its last recorded version: from the start of its last
    // successful renewal (at most a retry period and a request before the refusals) to the
    // end of the write window that followed.
    let at_risk = generator.created_within(
        refused + Duration::from_secs_f64(WRITE_WINDOW_SECS),
        Duration::from_secs_f64(WRITE_WINDOW_SECS + RETRY_SECS + 0.25),
    );
    let (created, lost, dup) = settle_and_tally(&api, &mut generator, &[&h1, &h2]);
    let periods = timeline.finish();
    let (_, h1_last) = periods[0].unwrap();
    let (h2_first, _) = periods[1].unwrap();
    let stopped_after = h1_last.saturating_duration_since(refused).as_secs_f64();
    let gap = h2_first.saturating_duration_since(h1_last).as_secs_f64();
    println!(
        "LEADER refused renewals: h1 last wrote {stopped_after:.2}s after the refusals began (write window {WRITE_WINDOW_SECS}s, renew deadline {RENEW_DEADLINE_SECS}s), h2 took the Lease {:.2}s after and first wrote {gap:.2}s after h1's last write; {} events, lost {lost}, duplicated {dup} (at risk: {at_risk})",
        took.duration_since(refused).as_secs_f64(),
        created.len()
    );
    assert!(h1_last < h2_first, "h1 still wrote when h2 began");
    // The write window from the last successful renewal (no later than the refusals), plus a
    // batch already in flight on a loaded machine: still before the renew deadline, and long
    // before anyone else may take the Lease.
    assert!(
        stopped_after <= WRITE_WINDOW_SECS + 1.0,
        "h1 wrote {stopped_after:.2}s after its renewals began to fail"
    );
    assert!(h1.log().contains("stopped writing"), "{}", h1.log());
    assert_eq!(lost, 0);
    assert!(dup <= at_risk, "{dup} duplicates");
}

#[test]
fn a_takeover_that_must_relist_writes_no_event_the_old_leader_wrote() {
    let api = Arc::new(FakeApiServer::start(Options::default()));
    // Some events exist before the standby starts (it lists them), the rest come by its watch.
    let (mut h1, h2) = start_pair_after(&api, FAST, || {
        for i in 0..100 {
            api.create("gen", &format!("r{i:06}"), &event(i));
        }
    });
    for i in 100..200 {
        api.create("gen", &format!("r{i:06}"), &event(i));
    }
    let last = api.current_rv();
    assert!(wait_until(T, || h1.lines().len() == 200), "{}", h1.log());
    // The leader records the version covering all of them with a renewal.
    assert!(
        wait_until(T, || api
            .lease_annotation(NS, LEASE, WRITTEN)
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v >= last)),
        "{:?}",
        api.lease(NS, LEASE)
    );
    // Leases keep the version counter moving; then etcd compacts: the recorded version is gone.
    std::thread::sleep(Duration::from_secs(1));
    api.compact();
    // A re-list is a streaming list, or pages where the server offers none.
    let lists = || api.list_request_count() + api.streaming_list_count();
    let lists_before = lists();
    h1.kill();
    wait_for_holder(&api, &["h2"], &[&h1, &h2]);
    assert!(
        wait_until(T, || lists() > lists_before
            && h2.log().contains("listed all events")
            && count(&h2.log(), "listed all events") >= 2),
        "h2 did not re-list: {}",
        h2.log()
    );
    let rewritten = h2.lines().len();
    for i in 200..220 {
        api.create("gen", &format!("r{i:06}"), &event(i));
    }
    assert!(wait_until(T, || h2.lines().len() >= 20), "{}", h2.log());
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "LEADER re-list takeover: 200 events written by h1, recorded version expired; h2 re-listed and wrote {rewritten} of them again, then the 20 new ones ({} lines)",
        h2.lines().len()
    );
    assert_eq!(rewritten, 0, "{}", h2.log());
    let expected: Vec<String> = (200..220)
        .map(|i| api.object_line("gen", &format!("r{i:06}")))
        .collect();
    assert_eq!(h2.lines(), expected);
}

#[test]
fn a_lease_held_by_another_program_is_not_taken_before_it_expires() {
    let api = Arc::new(FakeApiServer::start(Options::default()));
    api.hold_lease(NS, LEASE, "other-program", 4);
    let h1 = Host::start(&api, "h1", FAST);
    let h2 = Host::start(&api, "h2", FAST);
    for i in 0..20 {
        api.create("gen", &format!("o{i:06}"), &event(i));
    }
    // The other program renews every second for six seconds; nobody may take the Lease.
    let mut last_renewal = Instant::now();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(holder(&api).as_deref(), Some("other-program"));
        api.hold_lease(NS, LEASE, "other-program", 4);
        last_renewal = Instant::now();
    }
    assert!(
        h1.lines().is_empty() && h2.lines().is_empty(),
        "a standby wrote"
    );
    let mut taken = None;
    assert!(wait_until(T, || {
        if holder(&api).as_deref() != Some("other-program") {
            taken = Some(Instant::now());
        }
        taken.is_some()
    }));
    let after = taken.unwrap().duration_since(last_renewal).as_secs_f64();
    let (leader, _) = wait_for_holder(&api, &["h1", "h2"], &[&h1, &h2]);
    println!(
        "LEADER foreign Lease: {leader} took it {after:.2}s after its last renewal (4 s lease)"
    );
    assert!(
        after >= 4.0,
        "taken {after:.2}s after the last renewal of a 4 s lease"
    );
    let leader_host = if leader == "h1" { &h1 } else { &h2 };
    assert!(
        wait_until(T, || leader_host.lines().len() == 20),
        "{}",
        leader_host.log()
    );
}

#[test]
fn a_late_renewal_holds_the_leaders_writes_back_and_loses_nothing() {
    let api = Arc::new(FakeApiServer::start(Options::default()));
    // A renew deadline long enough to see the writes held back for a while, with room for a
    // loaded machine on both sides; the write window is FAST's (1.5 retry periods).
    let (lease, deadline) = (8.0, 5.0);
    let (h1, h2) = start_pair(&api, ["8", "5", "0.5"]);
    let mut generator = Generator::start(&api, "l", Duration::from_millis(25));
    std::thread::sleep(Duration::from_secs(2));
    // Renewals fail for longer than the write window, not as long as the renew deadline.
    api.refuse_lease_updates("h1");
    // Past the write window (and a batch in flight): nothing more may be written...
    std::thread::sleep(Duration::from_secs_f64(WRITE_WINDOW_SECS + 1.0));
    let held_from = h1.lines().len();
    std::thread::sleep(Duration::from_millis(1500));
    let held_to = h1.lines().len();
    let held_events = generator.created_within(Instant::now(), Duration::from_millis(1500));
    // ... until a renewal gets through again, well within the renew deadline.
    api.clear_faults();
    let (created, lost, dup) = settle_and_tally(&api, &mut generator, &[&h1, &h2]);
    println!(
        "LEADER late renewal: renewals refused for {:.1}s (write window {WRITE_WINDOW_SECS}s, renew deadline {deadline}s, lease {lease}s): h1 kept the Lease and wrote nothing for 1.5 s (at {held_from} lines) while {held_events} events came; {} events, lost {lost}, duplicated {dup}",
        WRITE_WINDOW_SECS + 2.5,
        created.len()
    );
    assert!(held_events > 0, "no events came while the writes were held");
    assert_eq!(held_from, held_to, "h1 wrote while its renewals failed");
    assert_eq!(holder(&api).as_deref(), Some("h1"), "{}", h1.log());
    assert!(!h1.log().contains("stopped writing"), "{}", h1.log());
    assert!(h1.lines().len() > held_to, "h1 did not write again");
    assert!(h2.lines().is_empty());
    assert_eq!((lost, dup), (0, 0));
}
