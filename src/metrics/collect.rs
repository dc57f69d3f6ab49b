//! The scrape: every figure the daemon exposes, read when Prometheus asks and encoded by
//! `prometheus-client` (Prometheus text 0.0.4 or OpenMetrics text; no exposition format is
//! written by hand here). README's *Metrics* section lists the same names.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::health;
use super::process;
use super::{ApiErrorKind, Dataless, Metrics, RelistCause, ReopenCause, Request, Role};
use crate::service::progress::Progress;

/// The prefix of the daemon's own metrics (the `process_*` ones are the standard names).
pub const PREFIX: &str = "kube_event_pipe";

/// The commit the binary was built from (build.rs), or "unknown" outside a git checkout.
pub const COMMIT: &str = env!("KEP_BUILD_COMMIT");

/// The registry a scrape encodes: the daemon's figures under [`PREFIX`], and the process's.
pub fn registry(metrics: Metrics, progress: Progress, liveness_bound: Duration) -> Registry {
    let mut root = Registry::default();
    root.register_collector(Box::new(ProcessCollector));
    root.sub_registry_with_prefix(PREFIX)
        .register_collector(Box::new(DaemonCollector {
            metrics,
            progress,
            liveness_bound,
        }));
    root
}

struct DaemonCollector {
    metrics: Metrics,
    progress: Progress,
    liveness_bound: Duration,
}

impl std::fmt::Debug for DaemonCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DaemonCollector")
    }
}

type Fmt = Result<(), std::fmt::Error>;

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<Unit>, v: u64) -> Fmt {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, unit.as_ref(), c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<Unit>, v: f64) -> Fmt {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)
}

/// A counter family over bounded labels: every label value is always present, so a series
/// exists (at 0) before its first increment and `rate()` sees that first one.
fn counters<'a, const N: usize>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = ([(&'a str, &'a str); N], u64)>,
) -> Fmt {
    let mut m = e.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, v) in series {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for DaemonCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Fmt {
        let f = self.metrics.snapshot();
        let snap = self.progress.snapshot();
        let t = &f.totals;
        let e = &mut e;

        // ---- events and the destination ----
        let c = &t.counters;
        counter(
            e,
            "events_written",
            "Events written to the destination.",
            None,
            c.written,
        )?;
        counter(
            e,
            "events_already_seen",
            "Events skipped because the dedup store has them as written (repeats, re-lists, DELETED notifications).",
            None,
            c.skipped,
        )?;
        counter(
            e,
            "events_malformed",
            "Events skipped because they could not be identified or written as one line (logged).",
            None,
            c.malformed,
        )?;
        gauge(
            e,
            "events_pending",
            "Events received and held unwritten: non-zero for long means the destination is failing.",
            None,
            t.pending as f64,
        )?;
        counter(
            e,
            "written",
            "Bytes written to the destination.",
            Some(Unit::Bytes),
            t.bytes_written,
        )?;
        counter(
            e,
            "write_errors",
            "Failed writes to the destination (each retry of a held batch counts).",
            None,
            t.write_errors,
        )?;
        counters(
            e,
            "destination_reopens",
            "Reopens of the destination: cause=signal after SIGHUP, cause=path_changed when the path named another file or nothing.",
            ReopenCause::ALL
                .map(|c| [("cause", c.label())])
                .into_iter()
                .zip(t.reopens),
        )?;
        gauge(
            e,
            "last_write_timestamp",
            "Unix time of the last successful write to the destination (0: none since start).",
            Some(Unit::Seconds),
            f.last_write_unix,
        )?;
        gauge(
            e,
            "last_write_age",
            "Seconds since the last successful write (since start when there was none).",
            Some(Unit::Seconds),
            f.last_write_age,
        )?;

        // ---- the API server ----
        counters(
            e,
            "api_requests",
            "List (one per page), watch and version_check (limit=1 at a saved resourceVersion: still served?) requests answered or abandoned.",
            Request::ALL
                .map(|r| [("request", r.label())])
                .into_iter()
                .zip(f.requests),
        )?;
        counters(
            e,
            "relists",
            "Full lists of every event started: cause=start (nothing to resume from), expired (410 Gone), selection_changed, ahead (the saved resourceVersion is ahead of the server: its history started again), empty_watches (watches from the saved version kept being answered with an empty body).",
            RelistCause::ALL
                .map(|c| [("cause", c.label())])
                .into_iter()
                .zip(f.relists),
        )?;
        counters(
            e,
            "dataless_watches",
            "Watches and streaming lists that carried no frame at all: kind=empty (the server ended it within 10 s of answering 200: a front end's empty body), silent (nothing for 10 s or more, up to the idle bound).",
            Dataless::ALL
                .map(|k| [("kind", k.label())])
                .into_iter()
                .zip(f.dataless),
        )?;
        gauge(
            e,
            "empty_watches_in_a_row",
            "Watches and streaming lists answered with an empty body since the API server last sent data; not 0 means no progress is being made.",
            None,
            f.empty_in_a_row as f64,
        )?;
        let labels = Request::ALL
            .iter()
            .flat_map(|r| ApiErrorKind::ALL.map(|k| [("request", r.label()), ("kind", k.label())]));
        let values = f.api_errors.iter().flatten().copied();
        counters(
            e,
            "api_errors",
            "Failed API requests and watch streams by kind: connect, timeout, 410, 4xx (other than 410), 5xx, stream (broken off or unreadable), other.",
            labels.zip(values),
        )?;
        gauge(
            e,
            "last_api_message_age",
            "Seconds since the API server last sent data (list page, watch frame or bookmark); since start when it sent none.",
            Some(Unit::Seconds),
            f.last_api_message_age,
        )?;
        let sync_done = snap.ready_at.is_some();
        gauge(
            e,
            "initial_sync_done",
            "1 once the initial state is written (first full list, or the watch resumed from the saved resourceVersion).",
            None,
            if sync_done { 1.0 } else { 0.0 },
        )?;
        if let Some(at) = snap.ready_at {
            let took = f.uptime - at.elapsed().as_secs_f64();
            gauge(
                e,
                "initial_sync_duration",
                "Seconds from start to the initial state written; present once it is.",
                Some(Unit::Seconds),
                took.max(0.0),
            )?;
        }
        let ready = health::readiness(&snap, self.liveness_bound, f.role).ok;
        gauge(
            e,
            "ready",
            "1 while /readyz answers 200: initial state written, watch running, no failure being retried.",
            None,
            if ready { 1.0 } else { 0.0 },
        )?;

        // ---- the dedup store ----
        let s = &f.store;
        gauge(
            e,
            "dedup_filter_files",
            "Bloom filter files in use.",
            None,
            s.files as f64,
        )?;
        gauge(
            e,
            "dedup_newest_filter_fill_ratio",
            "Insertions into the newest filter over its capacity (it is rotated at 1).",
            None,
            s.newest_fill,
        )?;
        gauge(
            e,
            "dedup_estimated_false_positive_rate",
            "Estimated probability that a new event is taken for a repeat, for the whole set of filters.",
            None,
            s.estimated_fp,
        )?;
        gauge(
            e,
            "dedup_false_positive_rate_bound",
            "The configured bound for that probability (filter_error_rate).",
            None,
            s.fp_bound,
        )?;
        counter(
            e,
            "dedup_rotations",
            "New filter files started (by age or because the newest was full).",
            None,
            s.rotations,
        )?;
        counter(
            e,
            "dedup_quarantined_files",
            "Filter files found damaged at start and moved aside as *.bloom.corrupt.",
            None,
            s.quarantined,
        )?;
        gauge(
            e,
            "dedup_identities",
            "Event identities the filters remember (the Python tool's files estimated from their bits).",
            None,
            s.identities as f64,
        )?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        gauge(
            e,
            "dedup_oldest_filter_age",
            "Age of the oldest filter: the memory reaches back about this far.",
            Some(Unit::Seconds),
            if s.oldest_filter == 0 {
                0.0
            } else {
                now.saturating_sub(s.oldest_filter) as f64
            },
        )?;
        gauge(
            e,
            "dedup_filter",
            "Bytes the filter files take (mapped: memory and disk).",
            Some(Unit::Bytes),
            s.bytes as f64,
        )?;
        gauge(
            e,
            "dedup_filter_limit",
            "The most bytes the filter files may take (filter_max_mib).",
            Some(Unit::Bytes),
            s.max_bytes as f64,
        )?;
        gauge(
            e,
            "dedup_memory_limit_reached",
            "1 while the filters are at filter_max_mib and the oldest are deleted to make room: a re-list may write events again. Raise filter_max_mib.",
            None,
            if s.at_limit { 1.0 } else { 0.0 },
        )?;
        counter(
            e,
            "dedup_evicted_files",
            "Filter files deleted to stay within filter_max_mib, before they had aged out.",
            None,
            s.evicted,
        )?;
        let fp = ConstCounter::new(s.fp_losses);
        fp.encode(e.encode_descriptor(
            "dedup_estimated_false_positive_losses",
            "Estimated new events not written because the filters took them for repeats (false positives), since start.",
            None,
            fp.metric_type(),
        )?)?;
        gauge(
            e,
            "server_listed_events",
            "Events the API server held at the last list (0 before the first).",
            None,
            s.listed_events as f64,
        )?;
        gauge(
            e,
            "server_listed_oldest_event_age",
            "How old the oldest event the last list carried was at that list: the filters are kept at least this long.",
            Some(Unit::Seconds),
            s.listed_oldest_age as f64,
        )?;
        gauge(
            e,
            "server_last_list_timestamp",
            "Unix time the last list ended (0 before the first).",
            Some(Unit::Seconds),
            s.listed_at as f64,
        )?;

        // ---- leader election and build ----
        gauge(
            e,
            "leader",
            "1 while this instance writes (always 1 without leader election), 0 on standby or before its role is decided.",
            None,
            match f.role {
                None | Some(Role::Leader) => 1.0,
                Some(Role::Standby | Role::Electing) => 0.0,
            },
        )?;
        counter(
            e,
            "leader_transitions",
            "Changes between leader and standby (0 without leader election).",
            None,
            f.role_transitions,
        )?;
        let info = Info::new([("version", env!("CARGO_PKG_VERSION")), ("commit", COMMIT)]);
        info.encode(e.encode_descriptor(
            "build",
            "The version and git commit of this build.",
            None,
            info.metric_type(),
        )?)?;
        Ok(())
    }
}

#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Fmt {
        let Some(p) = process::read() else {
            return Ok(());
        };
        let e = &mut e;
        counter_f64(
            e,
            "process_cpu",
            "Total user and system CPU time spent.",
            p.cpu_seconds,
        )?;
        gauge(
            e,
            "process_resident_memory",
            "Resident memory size.",
            Some(Unit::Bytes),
            p.resident_bytes as f64,
        )?;
        gauge(
            e,
            "process_virtual_memory",
            "Virtual memory size.",
            Some(Unit::Bytes),
            p.virtual_bytes as f64,
        )?;
        gauge(
            e,
            "process_start_time",
            "Start time of the process since the Unix epoch.",
            Some(Unit::Seconds),
            p.start_time_seconds,
        )?;
        gauge(
            e,
            "process_open_fds",
            "Open file descriptors.",
            None,
            p.open_fds as f64,
        )?;
        gauge(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors (soft limit).",
            None,
            p.max_fds as f64,
        )
    }
}

fn counter_f64(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Fmt {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, Some(&Unit::Seconds), c.metric_type())?)
}
