//! Command-line flags. Values stay strings here so that checking them, and naming the flag in
//! any error, happens in one place with the other layers.

use std::path::PathBuf;

use clap::Parser;

use super::keys;

#[derive(Debug, Default, Parser)]
#[command(
    name = "kube-event-pipe",
    version,
    about = "Watch every Kubernetes Event, drop the ones already written, append the rest as JSON lines",
    long_about = "Watch every Kubernetes Event, drop the ones already written, and append the rest \
                  as one JSON object per line to a file (or stdout). Settings come from built-in \
                  defaults, then the TOML config file, then KUBE_EVENT_PIPE_* environment \
                  variables, then these flags; later wins."
)]
pub struct Cli {
    /// TOML config file (also KUBE_EVENT_PIPE_CONFIG) [default: /etc/kube-event-pipe/config.toml when it exists]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print the effective settings with their sources and exit (status 2 when they are invalid)
    #[arg(long)]
    pub check_config: bool,

    /// Read watch frames (as `kubectl get events -A -w --output-watch-events -o json` prints
    /// them) from this file, or `-` for stdin, instead of the API server. A replay ignores
    /// leader election: it always writes. Every event of the recording is offered: namespace,
    /// field_selector and label_selector are the API server's job and cannot be combined with
    /// it (exit status 2)
    #[arg(long, value_name = "PATH")]
    pub source: Option<PathBuf>,

    #[arg(long, allow_hyphen_values = true, value_name = "PATH", help = keys::DESTINATION.help)]
    pub destination: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "LEVEL", help = keys::LOG_LEVEL.help)]
    pub log_level: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "DIR", help = keys::PERSISTENCE_PATH.help)]
    pub persistence_path: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "N", help = keys::FILTER_CAPACITY.help)]
    pub filter_capacity: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "RATE", help = keys::FILTER_ERROR_RATE.help)]
    pub filter_error_rate: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "N", help = keys::BATCH_COUNT.help)]
    pub batch_count: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "SECONDS", help = keys::BATCH_DURATION_SEC.help)]
    pub batch_duration_sec: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "MIB", help = keys::FILTER_MAX_MIB.help)]
    pub filter_max_mib: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "PATH", help = keys::KUBECONFIG.help)]
    pub kubeconfig: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "NAME", help = keys::CONTEXT.help)]
    pub context: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "TARGET", help = keys::LOG_TARGET.help)]
    pub log_target: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "SECONDS", help = keys::WATCH_IDLE_TIMEOUT_SEC.help)]
    pub watch_idle_timeout_sec: Option<String>,
    // `--leader-election` alone means true.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", help = keys::LEADER_ELECTION.help)]
    pub leader_election: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "NAMESPACE", help = keys::LEASE_NAMESPACE.help)]
    pub lease_namespace: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "NAME", help = keys::LEASE_NAME.help)]
    pub lease_name: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "NAME", help = keys::IDENTITY.help)]
    pub identity: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "SECONDS", help = keys::LEASE_DURATION_SEC.help)]
    pub lease_duration_sec: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "SECONDS", help = keys::RENEW_DEADLINE_SEC.help)]
    pub renew_deadline_sec: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "SECONDS", help = keys::RETRY_PERIOD_SEC.help)]
    pub retry_period_sec: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "ADDRESS", help = keys::METRICS_ADDRESS.help)]
    pub metrics_address: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "NAME", help = keys::NAMESPACE.help)]
    pub namespace: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "SELECTOR", help = keys::FIELD_SELECTOR.help)]
    pub field_selector: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_name = "SELECTOR", help = keys::LABEL_SELECTOR.help)]
    pub label_selector: Option<String>,
}

impl Cli {
    /// The flag value for a configuration key, if given.
    pub fn value_of(&self, key: &keys::Key) -> Option<&str> {
        let v = match key.toml {
            "destination" => &self.destination,
            "log_level" => &self.log_level,
            "persistence_path" => &self.persistence_path,
            "filter_capacity" => &self.filter_capacity,
            "filter_error_rate" => &self.filter_error_rate,
            "batch_count" => &self.batch_count,
            "batch_duration_sec" => &self.batch_duration_sec,
            "filter_max_mib" => &self.filter_max_mib,
            "kubeconfig" => &self.kubeconfig,
            "context" => &self.context,
            "log_target" => &self.log_target,
            "watch_idle_timeout_sec" => &self.watch_idle_timeout_sec,
            "leader_election" => &self.leader_election,
            "lease_namespace" => &self.lease_namespace,
            "lease_name" => &self.lease_name,
            "identity" => &self.identity,
            "lease_duration_sec" => &self.lease_duration_sec,
            "renew_deadline_sec" => &self.renew_deadline_sec,
            "retry_period_sec" => &self.retry_period_sec,
            "metrics_address" => &self.metrics_address,
            "namespace" => &self.namespace,
            "field_selector" => &self.field_selector,
            "label_selector" => &self.label_selector,
            _ => &None,
        };
        v.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_key_has_its_flag() {
        let cmd = Cli::command();
        for key in keys::ALL {
            let long = key.flag();
            let found = cmd
                .get_arguments()
                .any(|a| a.get_long().map(|l| format!("--{l}")) == Some(long.clone()));
            assert!(found, "no flag {long} for key {}", key.toml);
        }
    }

    #[test]
    fn flag_values_reach_their_key() {
        let cli = Cli::parse_from(["kube-event-pipe", "--batch-count", "7", "--context", "prod"]);
        assert_eq!(cli.value_of(&keys::BATCH_COUNT), Some("7"));
        assert_eq!(cli.value_of(&keys::CONTEXT), Some("prod"));
        assert_eq!(cli.value_of(&keys::DESTINATION), None);
    }
}
