//! The checked, typed settings the daemon runs with, each remembering its origin.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tracing::level_filters::LevelFilter;

use super::error::ConfigError;
use super::file::FileChoice;
use super::keys::{self, Key};
use super::source::{Origin, RawValue, Setting};
use super::{selectors, values};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    Path(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Auto,
    Journald,
    Stderr,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub destination: Setting<Destination>,
    pub log_level: Setting<LevelFilter>,
    pub persistence_path: Setting<PathBuf>,
    pub filter_capacity: Setting<u64>,
    pub filter_error_rate: Setting<f64>,
    pub batch_count: Setting<u32>,
    pub batch_duration: Setting<Duration>,
    /// Most bytes the filter files may take together.
    pub filter_max_bytes: Setting<u64>,
    /// None: kubectl's resolution (KUBECONFIG, ~/.kube/config), then in-cluster.
    pub kubeconfig: Option<Setting<PathBuf>>,
    /// None: the kubeconfig's current context.
    pub context: Option<Setting<String>>,
    pub log_target: Setting<LogTarget>,
    pub watch_idle_timeout: Setting<Duration>,
    pub leader_election: Setting<bool>,
    pub lease_namespace: Setting<String>,
    pub lease_name: Setting<String>,
    /// Default: the host name.
    pub identity: Setting<String>,
    pub lease_duration: Setting<Duration>,
    pub renew_deadline: Setting<Duration>,
    pub retry_period: Setting<Duration>,
    /// None: no metrics or health endpoints (`off`).
    pub metrics_address: Setting<Option<SocketAddr>>,
    /// None: every namespace.
    pub namespace: Option<Setting<String>>,
    /// None: no field selector.
    pub field_selector: Option<Setting<String>>,
    /// None: no label selector.
    pub label_selector: Option<Setting<String>>,
    /// The config file that was read, if any.
    pub config_file: Option<FileChoice>,
    /// Replay watch frames from this file (`-` = stdin) instead of the API server.
    pub replay: Option<PathBuf>,
}

/// The largest filter we agree to map: 10^9 identities at the default rate is about 1.4 GB.
const MAX_CAPACITY: u64 = 1_000_000_000;
const MAX_BATCH_COUNT: u64 = 1000;
/// 64 GiB: twice the largest filter file the format allows (no filter takes over half).
const MAX_FILTER_MIB: u64 = 64 * 1024;
/// Ten years; anything longer is a typo, and it keeps `Duration` arithmetic far from overflow.
const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;
/// Leader election timings beyond an hour would leave a cluster without a writer for that long.
const MAX_LEASE_SECONDS: u64 = 3600;

/// Picks, for every key, the value of the highest layer that sets it, then checks them all,
/// reporting every problem at once rather than one per run.
pub fn build(
    layers: [&BTreeMap<&'static str, RawValue>; 3],
    config_file: Option<FileChoice>,
    replay: Option<PathBuf>,
) -> Result<Settings, Vec<ConfigError>> {
    let pick = |key: &Key| -> Option<RawValue> {
        layers.iter().rev().find_map(|l| l.get(key.toml).cloned())
    };
    let mut errors = Vec::new();
    let mut check = |key: Key, parse: &dyn Fn(&str) -> Result<(), String>| {
        if let Some(raw) = pick(&key)
            && let Err(allowed) = parse(&raw.text)
        {
            errors.push(ConfigError::Invalid {
                key,
                value: raw.text.clone(),
                origin: raw.origin.clone(),
                allowed,
            });
        }
    };

    check(keys::DESTINATION, &|t| {
        nonempty(t, "a file path, or - for stdout")
    });
    check(keys::LOG_LEVEL, &|t| {
        values::log_level(t).map(|_| ()).ok_or_else(|| {
            "one of TRACE, DEBUG, INFO, WARNING (or WARN), ERROR, CRITICAL, in any case".into()
        })
    });
    check(keys::PERSISTENCE_PATH, &|t| {
        nonempty(t, "a directory path")?;
        match values::directory_problem(std::path::Path::new(t)) {
            Some(problem) => Err(format!(
                "a directory that exists or can be created, writable by this user ({problem})"
            )),
            None => Ok(()),
        }
    });
    check(keys::FILTER_CAPACITY, &|t| {
        positive(t, MAX_CAPACITY).map(|_| ())
    });
    check(keys::FILTER_ERROR_RATE, &|t| rate(t).map(|_| ()));
    check(keys::BATCH_COUNT, &|t| {
        positive(t, MAX_BATCH_COUNT).map(|_| ())
    });
    check(keys::BATCH_DURATION_SEC, &|t| {
        positive(t, MAX_SECONDS).map(|_| ())
    });
    check(keys::FILTER_MAX_MIB, &|t| mebibytes(t).map(|_| ()));
    check(keys::KUBECONFIG, &|t| {
        nonempty(t, "a path to a kubeconfig file")
    });
    check(keys::CONTEXT, &|t| {
        nonempty(t, "the name of a context in the kubeconfig")
    });
    check(keys::LOG_TARGET, &|t| log_target(t).map(|_| ()));
    check(keys::WATCH_IDLE_TIMEOUT_SEC, &|t| {
        positive(t, MAX_SECONDS).map(|_| ())
    });
    check(keys::LEADER_ELECTION, &|t| values::boolean(t).map(|_| ()));
    check(keys::LEASE_NAMESPACE, &|t| values::dns_label(t));
    check(keys::LEASE_NAME, &|t| values::dns_subdomain(t));
    check(keys::IDENTITY, &|t| values::holder_identity(t));
    check(keys::LEASE_DURATION_SEC, &|t| {
        positive(t, MAX_LEASE_SECONDS).map(|_| ())
    });
    check(keys::RENEW_DEADLINE_SEC, &|t| seconds(t).map(|_| ()));
    check(keys::RETRY_PERIOD_SEC, &|t| seconds(t).map(|_| ()));
    check(keys::METRICS_ADDRESS, &|t| metrics_address(t).map(|_| ()));
    check(keys::NAMESPACE, &selectors::namespace);
    check(keys::FIELD_SELECTOR, &selectors::field_selector);
    check(keys::LABEL_SELECTOR, &selectors::label_selector);
    if errors.is_empty() {
        // The three timings only work in this order (client-go's rule): the leader must give
        // up writing before a standby may take over, and retry more than once before that.
        let value = |key: Key| {
            let raw = pick(&key).unwrap_or_else(|| RawValue {
                text: key.default_text.to_string(),
                origin: Origin::Default,
            });
            (seconds(&raw.text).unwrap_or_default(), raw)
        };
        let (duration, duration_raw) = value(keys::LEASE_DURATION_SEC);
        let (deadline, deadline_raw) = value(keys::RENEW_DEADLINE_SEC);
        let (retry, retry_raw) = value(keys::RETRY_PERIOD_SEC);
        if deadline >= duration || deadline <= retry.mul_f64(1.2) {
            errors.push(ConfigError::Invalid {
                key: keys::RENEW_DEADLINE_SEC,
                value: deadline_raw.text,
                origin: deadline_raw.origin,
                allowed: format!(
                    "less than lease_duration_sec ({}, {}) and more than 1.2 × retry_period_sec ({}, {})",
                    duration_raw.text, duration_raw.origin, retry_raw.text, retry_raw.origin
                ),
            });
        }
    }
    if errors.is_empty() {
        // The limit must hold the first filter and its successor (see `StoreConfig`).
        let raw = |key: Key| {
            pick(&key).unwrap_or_else(|| RawValue {
                text: key.default_text.to_string(),
                origin: Origin::Default,
            })
        };
        let (mib_raw, cap_raw, rate_raw) = (
            raw(keys::FILTER_MAX_MIB),
            raw(keys::FILTER_CAPACITY),
            raw(keys::FILTER_ERROR_RATE),
        );
        let capacity = positive(&cap_raw.text, MAX_CAPACITY).unwrap_or(1);
        let error_rate = rate(&rate_raw.text).unwrap_or(0.01);
        let max_bytes = mebibytes(&mib_raw.text).unwrap_or(0);
        let limits = crate::dedup::StoreConfig {
            dir: PathBuf::new(),
            capacity,
            error_rate,
            batch_count: 1,
            batch_duration: Duration::from_secs(1),
            max_bytes,
        };
        let need = limits.first_filter_bytes().map_or(u64::MAX, |b| b * 2);
        if max_bytes < need {
            // Rounded up to the next 0.01 MiB, so the figure given is enough.
            let need_mib = (need as f64 / MIB as f64 * 100.0).ceil() / 100.0;
            errors.push(ConfigError::Invalid {
                key: keys::FILTER_MAX_MIB,
                value: mib_raw.text,
                origin: mib_raw.origin,
                allowed: format!(
                    "at least {need_mib} MiB, room for two filters of filter_capacity {} ({}), up to {MAX_FILTER_MIB}",
                    cap_raw.text, cap_raw.origin
                ),
            });
        }
    }
    if replay.is_some() {
        for key in [keys::NAMESPACE, keys::FIELD_SELECTOR, keys::LABEL_SELECTOR] {
            if let Some(raw) = pick(&key) {
                errors.push(ConfigError::NotWithReplay {
                    key,
                    value: raw.text,
                    origin: raw.origin,
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // Every value below was checked above, so the parses cannot fail; the defaults are
    // parsed by the same functions so that they obey the same rules.
    let get = |key: Key| -> RawValue {
        pick(&key).unwrap_or_else(|| RawValue {
            text: key.default_text.to_string(),
            origin: Origin::Default,
        })
    };
    let num = |key: Key, max: u64| -> Setting<u64> {
        let raw = get(key);
        Setting::new(positive(&raw.text, max).unwrap_or(1), raw.origin)
    };
    let raw = get(keys::DESTINATION);
    let destination = Setting::new(
        if raw.text == "-" {
            Destination::Stdout
        } else {
            Destination::Path(PathBuf::from(&raw.text))
        },
        raw.origin,
    );
    let raw = get(keys::LOG_LEVEL);
    let log_level = Setting::new(
        values::log_level(&raw.text).map_or(LevelFilter::INFO, |l| l.0),
        raw.origin,
    );
    let raw = get(keys::PERSISTENCE_PATH);
    let persistence_path = Setting::new(PathBuf::from(raw.text), raw.origin);
    let raw = get(keys::FILTER_ERROR_RATE);
    let filter_error_rate = Setting::new(rate(&raw.text).unwrap_or(0.01), raw.origin);
    let batch_count = num(keys::BATCH_COUNT, MAX_BATCH_COUNT);
    let batch_duration = num(keys::BATCH_DURATION_SEC, MAX_SECONDS);
    let raw = get(keys::FILTER_MAX_MIB);
    let filter_max_bytes = Setting::new(mebibytes(&raw.text).unwrap_or(0), raw.origin);
    let idle = num(keys::WATCH_IDLE_TIMEOUT_SEC, MAX_SECONDS);
    let raw = get(keys::METRICS_ADDRESS);
    let metrics_address = Setting::new(metrics_address(&raw.text).ok().flatten(), raw.origin);
    let raw = get(keys::LOG_TARGET);
    let log_target = Setting::new(log_target(&raw.text).unwrap_or(LogTarget::Auto), raw.origin);
    let raw = get(keys::LEADER_ELECTION);
    let leader_election = Setting::new(values::boolean(&raw.text).unwrap_or(false), raw.origin);
    let text = |key: Key| {
        let raw = get(key);
        Setting::new(raw.text.trim().to_string(), raw.origin)
    };
    let identity = match pick(&keys::IDENTITY) {
        Some(raw) => Setting::new(raw.text.trim().to_string(), raw.origin),
        None => Setting::default(values::host_name()),
    };
    let secs = |key: Key| {
        let raw = get(key);
        Setting::new(seconds(&raw.text).unwrap_or_default(), raw.origin)
    };

    Ok(Settings {
        destination,
        log_level,
        persistence_path,
        filter_capacity: num(keys::FILTER_CAPACITY, MAX_CAPACITY),
        filter_error_rate,
        batch_count: Setting::new(
            u32::try_from(batch_count.value).unwrap_or(u32::MAX),
            batch_count.origin,
        ),
        batch_duration: Setting::new(
            Duration::from_secs(batch_duration.value),
            batch_duration.origin,
        ),
        filter_max_bytes,
        kubeconfig: pick(&keys::KUBECONFIG).map(|r| Setting::new(PathBuf::from(r.text), r.origin)),
        context: pick(&keys::CONTEXT).map(|r| Setting::new(r.text, r.origin)),
        log_target,
        watch_idle_timeout: Setting::new(Duration::from_secs(idle.value), idle.origin),
        leader_election,
        lease_namespace: text(keys::LEASE_NAMESPACE),
        lease_name: text(keys::LEASE_NAME),
        identity,
        lease_duration: secs(keys::LEASE_DURATION_SEC),
        renew_deadline: secs(keys::RENEW_DEADLINE_SEC),
        retry_period: secs(keys::RETRY_PERIOD_SEC),
        metrics_address,
        namespace: trimmed(pick(&keys::NAMESPACE)),
        field_selector: trimmed(pick(&keys::FIELD_SELECTOR)),
        label_selector: trimmed(pick(&keys::LABEL_SELECTOR)),
        config_file,
        replay,
    })
}

const MIB: u64 = 1024 * 1024;

/// A size in MiB, fractions allowed (0.5), as bytes.
fn mebibytes(text: &str) -> Result<u64, String> {
    match values::float(text) {
        Some(m) if m > 0.0 && m <= MAX_FILTER_MIB as f64 => Ok((m * MIB as f64).round() as u64),
        _ => Err(format!(
            "a number of MiB above 0 and up to {MAX_FILTER_MIB}, e.g. 256 or 0.5"
        )),
    }
}

/// Blanks around a name or selector are never meant (the server would take them as part of a
/// field name).
fn trimmed(raw: Option<RawValue>) -> Option<Setting<String>> {
    raw.map(|r| Setting::new(r.text.trim().to_string(), r.origin))
}

fn nonempty(text: &str, allowed: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        Err(format!("{allowed} (it must not be empty)"))
    } else {
        Ok(())
    }
}

fn positive(text: &str, max: u64) -> Result<u64, String> {
    match values::integer(text) {
        Some(n) if n >= 1 && n <= max => Ok(n),
        _ => Err(format!(
            "a positive integer from 1 to {max} (underscores between digits are allowed, e.g. 1_000_000)"
        )),
    }
}

/// A duration in seconds with up to millisecond precision, from 0.1 s to an hour.
fn seconds(text: &str) -> Result<Duration, String> {
    match values::float(text) {
        Some(s) if (0.1..=MAX_LEASE_SECONDS as f64).contains(&s) => {
            Ok(Duration::from_millis((s * 1000.0).round() as u64))
        }
        _ => Err(format!(
            "a number of seconds from 0.1 to {MAX_LEASE_SECONDS}, e.g. 2 or 0.5"
        )),
    }
}

fn rate(text: &str) -> Result<f64, String> {
    match values::float(text) {
        Some(r) if r > 0.0 && r < 1.0 => Ok(r),
        _ => Err("a number strictly between 0 and 1, e.g. 0.01".into()),
    }
}

/// An IP address and port, or `off` (or nothing) for no endpoints. Port 0 takes a free port,
/// which the log names (for tests).
fn metrics_address(text: &str) -> Result<Option<SocketAddr>, String> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    t.parse::<SocketAddr>().map(Some).map_err(|_| {
        "an IP address and port, e.g. 127.0.0.1:9784 or [::1]:9784 (no host names), or off".into()
    })
}

fn log_target(text: &str) -> Result<LogTarget, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(LogTarget::Auto),
        "journald" | "journal" => Ok(LogTarget::Journald),
        "stderr" => Ok(LogTarget::Stderr),
        _ => Err("auto, journald or stderr".into()),
    }
}

impl fmt::Display for LogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogTarget::Auto => "auto",
            LogTarget::Journald => "journald",
            LogTarget::Stderr => "stderr",
        })
    }
}

impl Settings {
    /// The effective settings as a TOML document whose comments give each value's origin, so
    /// the output of `--check-config` can itself serve as a config file.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        match &self.config_file {
            Some(f) => out.push_str(&format!(
                "# config file: {} ({})\n",
                f.path.display(),
                match &f.origin {
                    Origin::Default => "the packaged default path".to_string(),
                    other => other.to_string(),
                }
            )),
            None => out.push_str("# config file: none\n"),
        }
        let mut line = |key: &str, value: String, origin: &Origin| {
            out.push_str(&format!("{:<40} # {origin}\n", format!("{key} = {value}")));
        };
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let dest = match &self.destination.value {
            Destination::Stdout => "-".to_string(),
            Destination::Path(p) => p.display().to_string(),
        };
        let level = match self.log_level.value {
            LevelFilter::TRACE => "TRACE",
            LevelFilter::DEBUG => "DEBUG",
            LevelFilter::INFO => "INFO",
            LevelFilter::WARN => "WARNING",
            LevelFilter::ERROR => "ERROR",
            _ => "OFF",
        };
        let s = self;
        line("destination", quote(&dest), &s.destination.origin);
        line("log_level", quote(level), &s.log_level.origin);
        let path = s.persistence_path.value.display().to_string();
        line("persistence_path", quote(&path), &s.persistence_path.origin);
        let capacity = s.filter_capacity.value.to_string();
        line("filter_capacity", capacity, &s.filter_capacity.origin);
        let rate = s.filter_error_rate.value.to_string();
        line("filter_error_rate", rate, &s.filter_error_rate.origin);
        line(
            "batch_count",
            s.batch_count.value.to_string(),
            &s.batch_count.origin,
        );
        let secs = s.batch_duration.value.as_secs().to_string();
        line("batch_duration_sec", secs, &s.batch_duration.origin);
        let mib = (s.filter_max_bytes.value as f64 / MIB as f64).to_string();
        line("filter_max_mib", mib, &s.filter_max_bytes.origin);
        match &s.kubeconfig {
            Some(k) => line(
                "kubeconfig",
                quote(&k.value.display().to_string()),
                &k.origin,
            ),
            None => line(
                "# kubeconfig",
                "(not set: KUBECONFIG, ~/.kube/config, then in-cluster)".into(),
                &Origin::Default,
            ),
        }
        match &s.context {
            Some(c) => line("context", quote(&c.value), &c.origin),
            None => line(
                "# context",
                "(not set: the kubeconfig's current context)".into(),
                &Origin::Default,
            ),
        }
        line(
            "log_target",
            quote(&s.log_target.value.to_string()),
            &s.log_target.origin,
        );
        let idle = s.watch_idle_timeout.value.as_secs().to_string();
        line("watch_idle_timeout_sec", idle, &s.watch_idle_timeout.origin);
        let on = s.leader_election.value.to_string();
        line("leader_election", on, &s.leader_election.origin);
        let ns = quote(&s.lease_namespace.value);
        line("lease_namespace", ns, &s.lease_namespace.origin);
        line(
            "lease_name",
            quote(&s.lease_name.value),
            &s.lease_name.origin,
        );
        line("identity", quote(&s.identity.value), &s.identity.origin);
        for (key, setting) in [
            ("lease_duration_sec", &s.lease_duration),
            ("renew_deadline_sec", &s.renew_deadline),
            ("retry_period_sec", &s.retry_period),
        ] {
            line(
                key,
                setting.value.as_secs_f64().to_string(),
                &setting.origin,
            );
        }
        let metrics = s
            .metrics_address
            .value
            .map_or_else(|| "off".to_string(), |a| a.to_string());
        line(
            "metrics_address",
            quote(&metrics),
            &s.metrics_address.origin,
        );
        for (key, setting, unset) in [
            ("namespace", &s.namespace, "(not set: all namespaces)"),
            (
                "field_selector",
                &s.field_selector,
                "(not set: no field selector)",
            ),
            (
                "label_selector",
                &s.label_selector,
                "(not set: no label selector)",
            ),
        ] {
            match setting {
                Some(v) => line(key, quote(&v.value), &v.origin),
                None => line(&format!("# {key}"), unset.into(), &Origin::Default),
            }
        }
        out
    }
}
