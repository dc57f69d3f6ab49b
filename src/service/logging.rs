//! Logging: journald with structured fields under systemd, readable lines on stderr otherwise.
//! Never stdout: stdout may be the event destination.

use std::os::unix::fs::MetadataExt;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use tracing_journald::{Priority, PriorityMappings};

use crate::config::LogTarget;

pub const SYSLOG_IDENTIFIER: &str = "kube-event-pipe";

/// Installs the global subscriber. Returns the target actually used, which differs from the
/// one asked for when journald was wanted but its socket is missing.
pub fn init(level: LevelFilter, target: LogTarget) -> LogTarget {
    // Our own events at the chosen level; the libraries' chatter (hyper, rustls, kube) only
    // when it is a warning or worse, unless the operator asked for less than that.
    let filter = Targets::new()
        .with_default(level.min(LevelFilter::WARN))
        .with_target(env!("CARGO_CRATE_NAME"), level)
        // kube's HTTP trace layer logs every failed request as an ERROR ("failed with error
        // client error (Connect)") that says less than our own line about the same failure,
        // and repeats it on every retry: shown only when debugging.
        .with_target(
            "kube_client::client::builder",
            if level >= LevelFilter::DEBUG {
                level
            } else {
                LevelFilter::OFF
            },
        );

    let want_journal = match target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => stderr_is_journal(),
    };
    let mut fallback = None;
    if want_journal {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_syslog_identifier(SYSLOG_IDENTIFIER.to_string())
                    // Plain field names (IDENTITY, NAMESPACE, RESOURCE_VERSION) are what an
                    // operator types after `journalctl -u kube-event-pipe`.
                    .with_field_prefix(None)
                    // syslog's meaning of the levels, so `journalctl -p info` shows what
                    // `log_level = INFO` logs (the crate's default would make INFO a notice).
                    .with_priority_mappings(PriorityMappings {
                        error: Priority::Error,
                        warn: Priority::Warning,
                        info: Priority::Informational,
                        debug: Priority::Debug,
                        trace: Priority::Debug,
                    });
                // A second init (in tests) is harmless, so its error is ignored.
                let _ = tracing_subscriber::registry()
                    .with(layer.with_filter(filter))
                    .try_init();
                return LogTarget::Journald;
            }
            Err(e) => fallback = Some(e),
        }
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(stderr.with_filter(filter))
        .try_init();
    if let Some(e) = fallback {
        tracing::warn!(
            "journald logging was asked for but the journal socket is unavailable ({e}); logging to stderr"
        );
    }
    LogTarget::Stderr
}

/// systemd sets JOURNAL_STREAM to the device and inode of the stream it connected to our
/// stderr; when they match, stderr goes to the journal and native journal logging is better.
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}
