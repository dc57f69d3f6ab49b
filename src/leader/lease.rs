//! The coordination.k8s.io/v1 Lease: the three requests election needs, each bounded in time,
//! and the records this daemon writes (claimed, renewed, released).
//!
//! Optimistic concurrency is what makes a Lease a lock: a replace carries the resourceVersion
//! that was read, and the server refuses it with 409 Conflict when anyone wrote in between.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// The annotation in which the leader records the resourceVersion up to which every event is
/// written (its saved resume point), updated with each renewal.
pub const WRITTEN_ANNOTATION: &str = "kube-event-pipe.io/written-resource-version";

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// 409: AlreadyExists on create, Conflict on replace: another host wrote first.
    #[error("{0}")]
    Conflict(String),
    #[error("Lease not found")]
    NotFound,
    #[error("{0}")]
    Other(String),
}

pub struct LeaseClient {
    api: Api<Lease>,
    namespace: String,
    name: String,
    timeout: Duration,
}

impl LeaseClient {
    pub fn new(client: kube::Client, namespace: &str, name: &str, timeout: Duration) -> Self {
        LeaseClient {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            timeout,
        }
    }

    /// `namespace/name`, for logs.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub async fn get(&self) -> Result<Option<Lease>, LeaseError> {
        self.bounded("read", self.api.get_opt(&self.name)).await
    }

    pub async fn create(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.bounded("create", self.api.create(&PostParams::default(), lease))
            .await
    }

    /// PUT with the resourceVersion the lease carries.
    pub async fn replace(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.bounded(
            "update",
            self.api.replace(&self.name, &PostParams::default(), lease),
        )
        .await
    }

    async fn bounded<T>(
        &self,
        what: &str,
        request: impl Future<Output = kube::Result<T>>,
    ) -> Result<T, LeaseError> {
        let lease = self.describe();
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Err(LeaseError::Other(format!(
                "cannot {what} the Lease {lease}: no answer within {:.1}s",
                self.timeout.as_secs_f64()
            ))),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
                Err(LeaseError::Conflict(status.message.clone()))
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 404 => Err(LeaseError::NotFound),
            Ok(Err(kube::Error::Api(status))) => {
                let hint = if status.code == 403 {
                    " (the account needs get, create and update on leases in this namespace: see rbac.yaml)"
                } else {
                    ""
                };
                Err(LeaseError::Other(format!(
                    "cannot {what} the Lease {lease}: API server answered {}: {}{hint}",
                    status.code, status.message
                )))
            }
            Ok(Err(e)) => Err(LeaseError::Other(format!(
                "cannot {what} the Lease {lease}: {e}"
            ))),
        }
    }
}

/// The current holder, when there is one (a released Lease has none).
pub fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// What the leader recorded as written, if anything.
pub fn written(lease: &Lease) -> Option<&str> {
    lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(WRITTEN_ANNOTATION))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// How long the holder's claim lasts after its last renewal, as the holder wrote it.
pub fn duration(lease: &Lease) -> Duration {
    let secs = lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .unwrap_or(0);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

pub fn renew_time(lease: &Lease) -> Option<Timestamp> {
    lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

pub fn acquire_time(lease: &Lease) -> Option<Timestamp> {
    lease.spec.as_ref()?.acquire_time.as_ref().map(|t| t.0)
}

/// A new Lease held by `identity`.
pub fn fresh(namespace: &str, name: &str, identity: &str, duration: Duration) -> Lease {
    let now = MicroTime(Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(seconds(duration)),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

/// `read` taken or renewed by `identity`, recording `written` when given (else keeping what
/// the Lease recorded). A change of holder sets acquireTime and counts a transition.
pub fn claimed(read: &Lease, identity: &str, duration: Duration, written: Option<&str>) -> Lease {
    let mut lease = read.clone();
    let now = MicroTime(Timestamp::now());
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        spec.holder_identity = Some(identity.to_string());
    }
    spec.lease_duration_seconds = Some(seconds(duration));
    spec.renew_time = Some(now);
    record(&mut lease, written);
    lease
}

/// `read` given up (client-go's ReleaseOnCancel): no holder, so a standby takes it at once.
pub fn released(read: &Lease, written: Option<&str>) -> Lease {
    let mut lease = read.clone();
    let now = MicroTime(Timestamp::now());
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.acquire_time = Some(now.clone());
    spec.renew_time = Some(now);
    record(&mut lease, written);
    lease
}

fn record(lease: &mut Lease, written: Option<&str>) {
    if let Some(rv) = written {
        lease
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(WRITTEN_ANNOTATION.to_string(), rv.to_string());
    }
    // The server keeps managed fields itself; sending stale ones back would only confuse it.
    lease.metadata.managed_fields = None;
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// `2026-11-30T10:32:00Z`, for logs and STATUS=.
pub fn show_time(t: Option<Timestamp>) -> String {
    t.map_or_else(
        || "an unknown time".to_string(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_sent_as_micro_time_with_six_digits() {
        let lease = fresh(
            "kube-system",
            "kube-event-pipe",
            "cp-1",
            Duration::from_secs(15),
        );
        let json = serde_json::to_string(&lease).unwrap();
        let renew = json.split("\"renewTime\":\"").nth(1).unwrap();
        let renew = &renew[..renew.find('"').unwrap()];
        assert_eq!(renew.len(), "2026-11-30T10:32:00.000000Z".len(), "{renew}");
        assert!(json.contains("\"holderIdentity\":\"cp-1\""), "{json}");
        assert!(json.contains("\"leaseDurationSeconds\":15"), "{json}");
    }

    #[test]
    fn a_takeover_counts_a_transition_and_keeps_the_record_unless_told() {
        let mut read = fresh("ns", "l", "cp-1", Duration::from_secs(15));
        record(&mut read, Some("215"));
        let taken = claimed(&read, "cp-2", Duration::from_secs(15), None);
        assert_eq!(holder(&taken), Some("cp-2"));
        assert_eq!(taken.spec.as_ref().unwrap().lease_transitions, Some(1));
        assert_eq!(written(&taken), Some("215"));
        let renewed = claimed(&taken, "cp-2", Duration::from_secs(15), Some("300"));
        assert_eq!(renewed.spec.as_ref().unwrap().lease_transitions, Some(1));
        assert_eq!(written(&renewed), Some("300"));
        let gone = released(&renewed, Some("301"));
        assert_eq!(holder(&gone), None);
        assert_eq!(written(&gone), Some("301"));
        assert_eq!(duration(&gone), Duration::from_secs(1));
    }
}
