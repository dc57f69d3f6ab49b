//! When the daemon counts as alive (`/healthz`) and ready (`/readyz`), with the one-line
//! reason each endpoint gives in its body.
//!
//! Alive is the systemd watchdog's own condition ([`Snapshot::alive`]): the main loop showed
//! it is alive within the watchdog interval (`WatchdogSec=`, or 60 s outside systemd). Ready
//! means the initial state is written and the watch is running: the first full list (or the
//! resumed watch) is in, a watch is established, no failure is being retried, and the loop is
//! alive.

use std::time::Duration;

use crate::metrics::Role;
use crate::service::progress::{Phase, Snapshot};

/// An endpoint's answer: whether it passes, and the plain-text line that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub reason: String,
}

pub fn liveness(snap: &Snapshot, bound: Duration) -> Verdict {
    let since = snap.heartbeat.elapsed();
    if snap.alive(bound) {
        Verdict {
            ok: true,
            reason: format!(
                "ok: the main loop showed it is alive {:.1} s ago",
                since.as_secs_f64()
            ),
        }
    } else {
        Verdict {
            ok: false,
            reason: format!(
                "stalled: the main loop has not shown it is alive for {:.0} s (bound {} s){}",
                since.as_secs_f64(),
                bound.as_secs(),
                snap.problem
                    .as_deref()
                    .map(|p| format!("; last failure: {p}"))
                    .unwrap_or_default()
            ),
        }
    }
}

pub fn readiness(snap: &Snapshot, bound: Duration, role: Option<Role>) -> Verdict {
    let role_note = match role {
        None => "",
        Some(Role::Leader) => " (leader)",
        Some(Role::Standby) => " (standby, following)",
        Some(Role::Electing) => " (leader election: role not decided yet)",
    };
    let not = |why: String| Verdict {
        ok: false,
        reason: format!("not ready{role_note}: {why}"),
    };
    if !snap.alive(bound) {
        return not(liveness(snap, bound).reason);
    }
    if let Some(p) = &snap.problem {
        return not(format!("retrying: {p}"));
    }
    match (snap.phase, snap.ready) {
        (Phase::Connecting, _) => not("connecting to the API server".into()),
        (Phase::Listing, false) => not("listing all events (initial sync not done)".into()),
        (Phase::Listing, true) => not("listing all events again".into()),
        (Phase::Watching, false) => not("the initial sync is not done".into()),
        (Phase::Watching, true) => Verdict {
            ok: true,
            reason: format!(
                "ready{role_note}: watching from resourceVersion {}",
                snap.resource_version
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::progress::Progress;

    const BOUND: Duration = Duration::from_secs(60);

    #[test]
    fn ready_only_once_listed_and_watching_without_a_problem() {
        let p = Progress::default();
        assert!(!readiness(&p.snapshot(), BOUND, None).ok);
        assert!(liveness(&p.snapshot(), BOUND).ok);
        p.listing();
        let v = readiness(&p.snapshot(), BOUND, None);
        assert!(!v.ok && v.reason.contains("initial sync not done"), "{v:?}");
        p.listed("7");
        assert!(!readiness(&p.snapshot(), BOUND, None).ok);
        p.watching("7");
        let v = readiness(&p.snapshot(), BOUND, None);
        assert!(v.ok && v.reason.contains("resourceVersion 7"), "{v:?}");
        p.failing("watching events: connection refused");
        let v = readiness(&p.snapshot(), BOUND, None);
        assert!(!v.ok && v.reason.contains("connection refused"), "{v:?}");
        p.watching("9");
        let v = readiness(&p.snapshot(), BOUND, Some(Role::Standby));
        assert!(v.ok && v.reason.contains("standby"), "{v:?}");
    }

    #[test]
    fn a_loop_silent_past_the_bound_is_neither_alive_nor_ready() {
        let p = Progress::default();
        p.watching("7");
        std::thread::sleep(Duration::from_millis(30));
        let short = Duration::from_millis(10);
        let v = liveness(&p.snapshot(), short);
        assert!(!v.ok && v.reason.starts_with("stalled"), "{v:?}");
        assert!(!readiness(&p.snapshot(), short, None).ok);
    }
}
