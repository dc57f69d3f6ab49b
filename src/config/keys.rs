//! The configuration keys, in the four spellings an operator may use.

/// One configuration key: its TOML name; the environment variable and the flag follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub toml: &'static str,
    pub default_text: &'static str,
    pub help: &'static str,
}

impl Key {
    pub fn env_var(&self) -> String {
        format!("KUBE_EVENT_PIPE_{}", self.toml.to_ascii_uppercase())
    }

    pub fn flag(&self) -> String {
        format!("--{}", self.toml.replace('_', "-"))
    }
}

pub const DESTINATION: Key = Key {
    toml: "destination",
    default_text: "-",
    help: "file to append events to, `-` for stdout",
};
pub const LOG_LEVEL: Key = Key {
    toml: "log_level",
    default_text: "INFO",
    help: "TRACE, DEBUG, INFO, WARNING (WARN), ERROR or CRITICAL, any case",
};
pub const PERSISTENCE_PATH: Key = Key {
    toml: "persistence_path",
    default_text: ".",
    help: "directory holding the bloom filter files and the saved resourceVersion",
};
pub const FILTER_CAPACITY: Key = Key {
    toml: "filter_capacity",
    default_text: "1_000_000",
    help: "identities one filter file holds before a new one is started",
};
pub const FILTER_ERROR_RATE: Key = Key {
    toml: "filter_error_rate",
    default_text: "0.01",
    help: "bound on the probability that a new event is taken for a repeat, for the whole set \
           (the filters are sized for 1e-6 unless this is tighter)",
};
pub const BATCH_COUNT: Key = Key {
    toml: "batch_count",
    default_text: "3",
    help: "filter files always kept; with batch_duration_sec, the age under which none is deleted",
};
pub const BATCH_DURATION_SEC: Key = Key {
    toml: "batch_duration_sec",
    default_text: "3600",
    help: "seconds between filter rotations",
};
pub const FILTER_MAX_MIB: Key = Key {
    toml: "filter_max_mib",
    default_text: "256",
    help: "most MiB the filter files may take together (mapped: memory and disk); once reached, \
           the oldest are deleted to make room",
};
pub const KUBECONFIG: Key = Key {
    toml: "kubeconfig",
    default_text: "",
    help: "kubeconfig file (else KUBECONFIG, ~/.kube/config, then in-cluster)",
};
pub const CONTEXT: Key = Key {
    toml: "context",
    default_text: "",
    help: "kubeconfig context (else the kubeconfig's current context)",
};
pub const LOG_TARGET: Key = Key {
    toml: "log_target",
    default_text: "auto",
    help: "auto, journald or stderr",
};
pub const WATCH_IDLE_TIMEOUT_SEC: Key = Key {
    toml: "watch_idle_timeout_sec",
    default_text: "300",
    help: "seconds a watch may deliver nothing before it is torn down and resumed; also the \
           longest wait for a streaming list's end bookmark, if under 60",
};

pub const NAMESPACE: Key = Key {
    toml: "namespace",
    default_text: "",
    help: "watch only this namespace's events, which needs only a Role there (else all namespaces)",
};
pub const FIELD_SELECTOR: Key = Key {
    toml: "field_selector",
    default_text: "",
    help: "keep only events matching this field selector, applied by the API server, e.g. \
           type=Warning or metadata.namespace!=kube-system (else none)",
};
pub const LABEL_SELECTOR: Key = Key {
    toml: "label_selector",
    default_text: "",
    help: "keep only events matching this label selector, applied by the API server, e.g. \
           team=a or 'tier in (web,db)' (else none)",
};
pub const METRICS_ADDRESS: Key = Key {
    toml: "metrics_address",
    default_text: "off",
    help: "IP address and port to serve /metrics, /healthz and /readyz on (e.g. 127.0.0.1:9784), or off",
};

pub const LEADER_ELECTION: Key = Key {
    toml: "leader_election",
    default_text: "false",
    help: "only the holder of the Lease writes events (for several control-plane hosts; ignored with --source)",
};
pub const LEASE_NAMESPACE: Key = Key {
    toml: "lease_namespace",
    default_text: "kube-system",
    help: "namespace of the leader election Lease",
};
pub const LEASE_NAME: Key = Key {
    toml: "lease_name",
    default_text: "kube-event-pipe",
    help: "name of the leader election Lease",
};
pub const IDENTITY: Key = Key {
    toml: "identity",
    default_text: "",
    help: "this host's name in the Lease's holderIdentity (else the host name)",
};
pub const LEASE_DURATION_SEC: Key = Key {
    toml: "lease_duration_sec",
    default_text: "15",
    help: "seconds a standby waits after the last renewal it saw before it takes the Lease over",
};
pub const RENEW_DEADLINE_SEC: Key = Key {
    toml: "renew_deadline_sec",
    default_text: "10",
    help: "seconds the leader may go without a successful renewal before it gives up the Lease",
};
pub const RETRY_PERIOD_SEC: Key = Key {
    toml: "retry_period_sec",
    default_text: "2",
    help: "seconds between renewals (leader) and between looks at the Lease (standby)",
};

pub const ALL: &[Key] = &[
    DESTINATION,
    LOG_LEVEL,
    PERSISTENCE_PATH,
    FILTER_CAPACITY,
    FILTER_ERROR_RATE,
    BATCH_COUNT,
    BATCH_DURATION_SEC,
    FILTER_MAX_MIB,
    KUBECONFIG,
    CONTEXT,
    LOG_TARGET,
    WATCH_IDLE_TIMEOUT_SEC,
    LEADER_ELECTION,
    LEASE_NAMESPACE,
    LEASE_NAME,
    IDENTITY,
    LEASE_DURATION_SEC,
    RENEW_DEADLINE_SEC,
    RETRY_PERIOD_SEC,
    METRICS_ADDRESS,
    NAMESPACE,
    FIELD_SELECTOR,
    LABEL_SELECTOR,
];

/// The valid key nearest to a misspelt one, if it is near enough to be a plausible typo.
pub fn nearest(candidates: impl IntoIterator<Item = String>, wrong: &str) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(&c, wrong), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> impl Iterator<Item = String> {
        ALL.iter().map(|k| k.toml.to_string())
    }

    #[test]
    fn suggests_the_key_a_typo_meant() {
        assert_eq!(
            nearest(names(), "batch_cuont").as_deref(),
            Some("batch_count")
        );
        assert_eq!(
            nearest(names(), "destinaton").as_deref(),
            Some("destination")
        );
        assert_eq!(nearest(names(), "loglevel").as_deref(), Some("log_level"));
    }

    #[test]
    fn suggests_nothing_for_an_unrelated_word() {
        assert_eq!(nearest(names(), "colour"), None);
    }

    #[test]
    fn env_and_flag_spellings_follow_the_toml_key() {
        assert_eq!(
            BATCH_DURATION_SEC.env_var(),
            "KUBE_EVENT_PIPE_BATCH_DURATION_SEC"
        );
        assert_eq!(BATCH_DURATION_SEC.flag(), "--batch-duration-sec");
    }
}
