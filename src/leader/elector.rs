//! The election loop, Kubernetes' Lease semantics as client-go implements them:
//! - a standby reads the Lease every `retry_period`; it creates it when absent (409
//!   AlreadyExists: another host did), and takes it over only when it has no holder (released)
//!   or its holder has not renewed it for `leaseDurationSeconds`;
//! - expiry is measured on this host's monotonic clock from the moment this host *saw*
//!   `renewTime` change, never by comparing `renewTime` with our wall clock: the hosts' clocks
//!   may disagree by more than a lease duration, and a standby whose clock runs fast must not
//!   steal a Lease that is being renewed. The price is that a host that starts up waits one
//!   full lease duration before taking over a Lease it has never seen renewed;
//! - the leader renews every `retry_period` by a PUT carrying the resourceVersion it read (409
//!   Conflict: another host took it), and records in the same request the resourceVersion up
//!   to which every event is written;
//! - a leader writes only while its last successful renewal started less than the write
//!   window ago (1.5 retry periods, at most the renew deadline): a renewal that is late holds
//!   the writes back until it succeeds, so what a leader writes past the version it recorded
//!   is at most about one renewal's worth of events, whatever happens to it next;
//! - a leader that has not renewed successfully for `renew_deadline` (shorter than the lease
//!   duration) gives up leading, before any standby can see the Lease expire;
//! - on SIGTERM the leader releases the Lease (no holder, as client-go's ReleaseOnCancel), so
//!   a standby takes over at its next look instead of after the lease duration.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;

use super::gate::Gate;
use super::lease::{self, LeaseClient, LeaseError};
use crate::backoff::unit_random;
use crate::config::Settings;
use crate::service::progress::Progress;

#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl ElectionConfig {
    pub fn from_settings(s: &Settings) -> ElectionConfig {
        ElectionConfig {
            namespace: s.lease_namespace.value.clone(),
            name: s.lease_name.value.clone(),
            identity: s.identity.value.clone(),
            lease_duration: s.lease_duration.value,
            renew_deadline: s.renew_deadline.value,
            retry_period: s.retry_period.value,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The first look at the Lease has not succeeded yet.
    Unknown,
    /// This host holds the Lease. `term` counts the times it took it; `from` is the version the
    /// Lease recorded as written when it was taken.
    Leading {
        term: u64,
        from: Option<String>,
    },
    Standby,
}

pub struct Elector {
    cfg: ElectionConfig,
    client: LeaseClient,
    gate: std::sync::Arc<Gate>,
    role: watch::Sender<Role>,
    progress: Progress,
    /// The Lease as last read or written by us.
    current: Option<Lease>,
    /// The (holder, renewTime) last seen, and when this host first saw it so.
    observed: Option<(Option<String>, Option<Timestamp>, Instant)>,
    /// While leading: when the last successful renewal (or the acquisition) was sent.
    renewed: Option<Instant>,
    term: u64,
    /// The holder this host last logged as the leader.
    leader: Option<String>,
    error: Option<String>,
}

impl Elector {
    pub fn new(
        client: kube::Client,
        cfg: ElectionConfig,
        gate: std::sync::Arc<Gate>,
        role: watch::Sender<Role>,
        progress: Progress,
    ) -> Elector {
        // A request must give up well before the renew deadline so the next one can be tried.
        let timeout = cfg.renew_deadline / 2;
        Elector {
            client: LeaseClient::new(client, &cfg.namespace, &cfg.name, timeout),
            cfg,
            gate,
            role,
            progress,
            current: None,
            observed: None,
            renewed: None,
            term: 0,
            leader: None,
            error: None,
        }
    }

    /// Runs until `release` becomes true, then gives the Lease up if this host holds it.
    pub async fn run(mut self, mut release: watch::Receiver<bool>) {
        self.progress.set_role("electing");
        loop {
            let start = Instant::now();
            if self.renewed.is_some() {
                self.renew(start).await;
            } else {
                self.look(start).await;
            }
            // Standbys look at slightly different moments, so they do not collide each time.
            let wait = if self.renewed.is_some() {
                self.cfg.retry_period
            } else {
                self.cfg.retry_period.mul_f64(1.0 + 0.2 * unit_random())
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                r = release.changed() => {
                    if r.is_err() || *release.borrow() {
                        self.release().await;
                        return;
                    }
                }
            }
        }
    }

    /// A standby's look at the Lease: create it, take it over, or follow its holder.
    async fn look(&mut self, start: Instant) {
        let read = match self.client.get().await {
            Ok(Some(read)) => read,
            Ok(None) => {
                let fresh = lease::fresh(
                    &self.cfg.namespace,
                    &self.cfg.name,
                    &self.cfg.identity,
                    self.cfg.lease_duration,
                );
                match self.client.create(&fresh).await {
                    Ok(created) => self.lead(start, created, None),
                    // Another host created it first; it is read again at the next look.
                    Err(LeaseError::Conflict(_)) => self.succeeded(),
                    Err(e) => self.failed(e),
                }
                return;
            }
            Err(e) => return self.failed(e),
        };
        self.succeeded();
        self.observe(&read);
        let recorded = lease::written(&read).and_then(|v| v.parse::<u64>().ok());
        self.gate.set_recorded(recorded);
        let holder = lease::holder(&read).map(str::to_string);
        let free = match &holder {
            None => true,
            // Our own name: this host held it before a restart; nobody else can have it.
            Some(h) if *h == self.cfg.identity => true,
            Some(_) => self.expired(&read),
        };
        if !free {
            self.follow(holder, &read);
            return;
        }
        let claim = lease::claimed(&read, &self.cfg.identity, self.cfg.lease_duration, None);
        match self.client.replace(&claim).await {
            Ok(taken) => self.lead(start, taken, holder),
            // Another host took it between our read and our write.
            Err(LeaseError::Conflict(_)) => {}
            Err(e) => self.failed(e),
        }
    }

    /// The leader's renewal, recording how far events are written.
    async fn renew(&mut self, start: Instant) {
        if self.deadline_passed() {
            return;
        }
        if let Some(current) = self.current.clone() {
            let written = self.written();
            let renewal = lease::claimed(
                &current,
                &self.cfg.identity,
                self.cfg.lease_duration,
                written.as_deref(),
            );
            match self.client.replace(&renewal).await {
                Ok(renewed) => self.renewed(start, renewed),
                Err(LeaseError::Conflict(_)) => self.after_conflict(start, written).await,
                Err(LeaseError::NotFound) => self.lose(None, "the Lease was deleted"),
                Err(e) => self.failed(e),
            }
        }
        self.deadline_passed();
    }

    /// Gives up leading when the last successful renewal is older than the renew deadline; a
    /// renewal is never sent after that, even if the API would still take it.
    fn deadline_passed(&mut self) -> bool {
        let deadline = self.cfg.renew_deadline;
        if self.renewed.is_none_or(|at| at.elapsed() < deadline) {
            return false;
        }
        let why = format!(
            "no successful renewal for {:.1}s (renew_deadline_sec)",
            self.cfg.renew_deadline.as_secs_f64()
        );
        self.lose(None, &why);
        true
    }

    /// How long after the start of a successful renewal this host may write.
    fn write_window(&self) -> Duration {
        self.cfg
            .retry_period
            .mul_f64(1.5)
            .min(self.cfg.renew_deadline)
    }

    /// Our copy was stale. The Lease is still ours only if it still names us (say our last
    /// renewal went through but its answer was lost); then renew on the fresh copy.
    async fn after_conflict(&mut self, start: Instant, written: Option<String>) {
        match self.client.get().await {
            Ok(Some(read)) if lease::holder(&read) == Some(self.cfg.identity.as_str()) => {
                let renewal = lease::claimed(
                    &read,
                    &self.cfg.identity,
                    self.cfg.lease_duration,
                    written.as_deref(),
                );
                match self.client.replace(&renewal).await {
                    Ok(renewed) => self.renewed(start, renewed),
                    Err(e) => self.failed(e),
                }
            }
            Ok(Some(read)) => {
                self.observe(&read);
                let holder = lease::holder(&read).map(str::to_string);
                self.current = Some(read);
                self.lose(holder, "another host took the Lease");
            }
            Ok(None) => self.lose(None, "the Lease was deleted"),
            Err(e) => self.failed(e),
        }
    }

    async fn release(&mut self) {
        let Some(current) = self.current.take().filter(|_| self.renewed.is_some()) else {
            return;
        };
        let written = self.written();
        self.gate.revoke();
        self.renewed = None;
        match self
            .client
            .replace(&lease::released(&current, written.as_deref()))
            .await
        {
            Ok(_) => tracing::info!(
                lease = %self.client.describe(),
                written_resource_version = written.as_deref().unwrap_or("-"),
                "released the Lease; a standby takes over at once"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "cannot release the Lease; a standby takes over once it expires"
            ),
        }
    }

    /// The version to record: where the leader's watch has written everything. Until the
    /// leader's own watch runs, what the Lease already records is kept.
    fn written(&self) -> Option<String> {
        if !self.gate.is_leading() {
            return None;
        }
        let rv = self.progress.snapshot().resource_version;
        (!rv.is_empty()).then_some(rv)
    }

    fn observe(&mut self, read: &Lease) {
        let key = (
            lease::holder(read).map(str::to_string),
            lease::renew_time(read),
        );
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(h, r, _)| (h, r) != (&key.0, &key.1));
        if changed {
            self.observed = Some((key.0, key.1, Instant::now()));
        }
    }

    fn expired(&self, read: &Lease) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|(_, _, at)| at.elapsed() >= lease::duration(read))
    }

    fn lead(&mut self, start: Instant, lease: Lease, previous: Option<String>) {
        let from = lease::written(&lease).map(str::to_string);
        self.gate
            .set_recorded(from.as_deref().and_then(|v| v.parse().ok()));
        self.term += 1;
        self.renewed(start, lease);
        let since = lease::show_time(Some(Timestamp::now()));
        tracing::info!(
            lease = %self.client.describe(),
            previous_holder = previous.as_deref().unwrap_or("-"),
            written_resource_version = from.as_deref().unwrap_or("-"),
            "leading: took the Lease {}; {}",
            match &previous {
                Some(p) if *p != self.cfg.identity => format!("over from {p}"),
                Some(_) => "back (it still named this host)".to_string(),
                None => "(it had no holder)".to_string(),
            },
            match &from {
                Some(rv) => format!("writing from resourceVersion {rv}, up to which the previous leader wrote"),
                None => "no written version recorded in it".to_string(),
            }
        );
        self.leader = Some(self.cfg.identity.clone());
        self.progress.set_role(&format!("leading since {since}"));
        let term = self.term;
        self.role.send_replace(Role::Leading { term, from });
    }

    fn renewed(&mut self, start: Instant, lease: Lease) {
        self.current = Some(lease);
        self.renewed = Some(start);
        self.gate.extend_fence(start + self.write_window());
        self.succeeded();
    }

    fn lose(&mut self, holder: Option<String>, why: &str) {
        if self.renewed.take().is_none() {
            return;
        }
        self.gate.revoke();
        tracing::info!(
            lease = %self.client.describe(),
            new_holder = holder.as_deref().unwrap_or("-"),
            "standby: stopped writing, {why}{}",
            holder
                .as_deref()
                .map(|h| format!("; the leader is now {h}"))
                .unwrap_or_default()
        );
        self.leader = holder;
        self.progress.set_role(&match &self.leader {
            Some(h) => format!("standby; leader is {h}"),
            None => "standby; no leader".to_string(),
        });
        self.role.send_replace(Role::Standby);
    }

    fn follow(&mut self, holder: Option<String>, read: &Lease) {
        if self.leader != holder || *self.role.borrow() == Role::Unknown {
            let since = lease::show_time(lease::acquire_time(read));
            match &holder {
                Some(h) => {
                    tracing::info!(lease = %self.client.describe(), leader = %h, "standby: the leader is {h} (since {since})");
                    self.progress
                        .set_role(&format!("standby; leader is {h} since {since}"));
                }
                None => self.progress.set_role("standby; no leader"),
            }
            self.leader = holder;
        }
        self.role.send_if_modified(|r| {
            let changed = *r != Role::Standby;
            *r = Role::Standby;
            changed
        });
    }

    fn failed(&mut self, e: LeaseError) {
        let msg = e.to_string();
        if self.error.as_deref() != Some(msg.as_str()) {
            tracing::warn!(error = %msg, "leader election: {msg}; trying again every {:.1}s", self.cfg.retry_period.as_secs_f64());
            self.error = Some(msg);
        }
    }

    fn succeeded(&mut self) {
        if self.error.take().is_some() {
            tracing::info!("leader election: the Lease can be used again");
        }
    }
}
