//! The admin API (plain HTTP, its own port): drives the same methods as the in-process API.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::json::json_str;
use super::realistic::{realistic_event, realistic_key};
use super::serve::{Body, json_response, parse_bool, parse_query};
use super::watches::watch_object;
use super::{EmptyWatches, Failure, FakeApiServer, MALFORMED_FRAME, Shared, Target, lock};

impl FakeApiServer {
    fn from_shared_ref(shared: &Arc<Shared>) -> AdminHandle {
        AdminHandle {
            shared: shared.clone(),
        }
    }
}

/// Non-owning view used by the admin API (the owning `FakeApiServer` stops the server on drop).
struct AdminHandle {
    shared: Arc<Shared>,
}

pub(super) async fn handle_admin(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let body = match req.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => return admin_err(400, &e.to_string()),
    };
    let h = FakeApiServer::from_shared_ref(shared);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rv_json = |r: Result<u64, String>, code: u16| match r {
        Ok(rv) => json_response(200, format!("{{\"resourceVersion\":\"{rv}\"}}"), false),
        Err(e) => admin_err(code, &e),
    };
    match (method, parts.as_slice()) {
        (Method::GET, ["fake", "state"]) => {
            let prepared = *lock(&shared.prepared_times);
            let store = lock(&shared.store);
            let watches = store.watchers.iter().filter(|w| !w.tx.is_closed()).count();
            json_response(
                200,
                format!(
                    "{{\"resourceVersion\":\"{}\",\"compactedResourceVersion\":\"{}\",\"events\":{},\"openWatches\":{watches},\"stalled\":{},\"prepared\":{{\"frames\":{},\"bytes\":{},\"firstSentUnixNs\":{},\"lastSentUnixNs\":{}}}}}",
                    store.rv,
                    store.compact_rv,
                    store.live,
                    *shared.stall.borrow(),
                    prepared.frames,
                    prepared.bytes,
                    unix_ns(prepared.first_sent),
                    unix_ns(prepared.last_sent),
                ),
                false,
            )
        }
        (Method::POST, ["fake", "events", ns, name]) => {
            let raw = query.get("raw").is_some_and(|v| parse_bool(v));
            rv_json(h.as_server(|s| s.try_create(ns, name, &body, raw)), 409)
        }
        (Method::POST, ["fake", "realistic"]) => {
            let start: usize = query.get("start").and_then(|s| s.parse().ok()).unwrap_or(0);
            let count: usize = query.get("count").and_then(|s| s.parse().ok()).unwrap_or(1);
            rv_json(
                h.as_server(|s| {
                    let mut rv = s.current_rv();
                    for i in start..start + count {
                        let (ns, name) = realistic_key(i);
                        rv = s.try_create(&ns, &name, &realistic_event(i), false)?;
                    }
                    Ok(rv)
                }),
                409,
            )
        }
        (Method::PATCH, ["fake", "events", ns, name]) => {
            rv_json(h.as_server(|s| s.try_patch(ns, name, &body)), 404)
        }
        (Method::DELETE, ["fake", "events", ns, name]) => {
            rv_json(h.as_server(|s| s.try_delete(ns, name)), 404)
        }
        (Method::GET, ["fake", "events", ns, name]) => match h.as_server(|s| s.object(ns, name)) {
            Some(b) => json_response(200, watch_object(&b), false),
            None => admin_err(404, "no such event"),
        },
        (Method::GET, ["fake", "leases", ns, name]) => match h.as_server(|s| s.lease(ns, name)) {
            Some(l) => json_response(200, l, false),
            None => admin_err(404, "no such lease"),
        },
        (Method::POST, ["fake", "leases", ns, name]) => {
            let holder = query.get("holder").map_or("other-program", String::as_str);
            let secs: u32 = query
                .get("duration")
                .and_then(|d| d.parse().ok())
                .unwrap_or(15);
            rv_json(
                Ok(h.as_server(|s| s.hold_lease(ns, name, holder, secs))),
                500,
            )
        }
        (Method::POST, ["fake", "restore"]) => {
            let rv: u64 = query.get("rv").and_then(|s| s.parse().ok()).unwrap_or(100);
            h.as_server(|s| s.restore_history(rv));
            rv_json(Ok(rv), 500)
        }
        (Method::POST, ["fake", "compact"]) => rv_json(Ok(h.as_server(|s| s.compact())), 500),
        (Method::POST, ["fake", "prepared", "start"]) => {
            h.as_server(|s| s.start_prepared());
            json_response(200, "{}".into(), false)
        }
        (Method::POST, ["fake", "bookmark"]) => {
            h.as_server(|s| s.send_bookmark());
            json_response(200, "{}".into(), false)
        }
        (Method::POST, ["fake", "fault"]) => match admin_fault(&h, &body) {
            Ok(()) => json_response(200, "{}".into(), false),
            Err(e) => admin_err(400, &e),
        },
        (Method::GET, ["fake", "requests"]) => {
            let reqs = lock(&shared.requests);
            let mut out = String::from("[");
            for (i, r) in reqs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let q: Vec<String> = r
                    .query
                    .iter()
                    .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
                    .collect();
                let _ = write!(
                    out,
                    "{{\"method\":{},\"path\":{},\"query\":{{{}}},\"sinceStartMs\":{},\"status\":{},\"list\":{},\"watch\":{}}}",
                    json_str(&r.method),
                    json_str(&r.path),
                    q.join(","),
                    r.since_start.as_millis(),
                    r.status.map_or("null".to_string(), |s| s.to_string()),
                    r.is_list(),
                    r.is_watch()
                );
            }
            out.push(']');
            json_response(200, out, false)
        }
        (Method::DELETE, ["fake", "requests"]) => {
            lock(&shared.requests).clear();
            json_response(200, "{}".into(), false)
        }
        _ => admin_err(404, "unknown admin path"),
    }
}

impl AdminHandle {
    /// Runs `f` against a temporary non-owning `FakeApiServer` view.
    fn as_server<T>(&self, f: impl FnOnce(&FakeApiServer) -> T) -> T {
        let view = FakeApiServer {
            shared: self.shared.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: None,
            tls: None,
            shutdown: None,
            thread: None,
            rt: None,
            accept_task: Mutex::new(None),
        };
        f(&view)
    }
}

fn unix_ns(t: Option<SystemTime>) -> String {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or("null".to_string(), |d| d.as_nanos().to_string())
}

fn admin_err(code: u16, msg: &str) -> Response<Body> {
    json_response(code, format!("{{\"error\":{}}}", json_str(msg)), false)
}

/// `{"fault":"drop_watches","half_frame":true}`, `{"fault":"stall"}`, `{"fault":"unstall"}`,
/// `{"fault":"malformed"[,"line":"..."]}`, `{"fault":"expire_watches"}`,
/// `{"fault":"fail","status":500|429|503,"count":N[,"retry_after":S][,"target":"any|list|watch"]}`,
/// `{"fault":"refuse_lease_updates","holder":"cp-1"}`, `{"fault":"clear"}`,
/// `{"fault":"empty_watches","which":"expired|all|off"}`.
fn admin_fault(h: &AdminHandle, body: &str) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let fault = v
        .get("fault")
        .and_then(|f| f.as_str())
        .ok_or("missing \"fault\"")?;
    h.as_server(|s| {
        match fault {
            "drop_watches" => s.drop_watches(
                v.get("half_frame")
                    .and_then(|b| b.as_bool())
                    .unwrap_or(false),
            ),
            "stall" => s.set_stalled(true),
            "unstall" => s.set_stalled(false),
            "malformed" => s.inject_watch_line(
                v.get("line")
                    .and_then(|l| l.as_str())
                    .unwrap_or(MALFORMED_FRAME),
            ),
            "expire_watches" => s.expire_watches(),
            "empty_watches" => s.set_empty_watches(
                match v.get("which").and_then(|w| w.as_str()).unwrap_or("all") {
                    "off" => EmptyWatches::Off,
                    "expired" => EmptyWatches::Expired,
                    "all" => EmptyWatches::All,
                    w => return Err(format!("unknown empty_watches {w}")),
                },
            ),
            "refuse_lease_updates" => s.refuse_lease_updates(
                v.get("holder")
                    .and_then(|h| h.as_str())
                    .ok_or("refuse_lease_updates needs \"holder\"")?,
            ),
            "clear" => s.clear_faults(),
            "fail" => {
                let count = v.get("count").and_then(|c| c.as_u64()).unwrap_or(1) as usize;
                let failure = match v.get("status").and_then(|c| c.as_u64()) {
                    Some(500) => Failure::InternalError,
                    Some(429) => Failure::TooManyRequests {
                        retry_after_secs: v.get("retry_after").and_then(|c| c.as_u64()).unwrap_or(1)
                            as u32,
                    },
                    Some(503) => Failure::ServiceUnavailable,
                    other => return Err(format!("unsupported status {other:?}")),
                };
                let target = match v.get("target").and_then(|t| t.as_str()).unwrap_or("any") {
                    "any" => Target::Any,
                    "list" => Target::List,
                    "watch" => Target::Watch,
                    t => return Err(format!("unknown target {t}")),
                };
                s.fail_next_for(target, count, failure);
            }
            f => return Err(format!("unknown fault {f}")),
        }
        Ok(())
    })
}
