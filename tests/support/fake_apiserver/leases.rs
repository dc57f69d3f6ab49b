//! coordination.k8s.io/v1 Leases, served as kube-apiserver serves them
//! (`lease-*.json` in `tests/fixtures/real-apiserver/`): `GET`, `POST` and `PUT` on
//! `/apis/coordination.k8s.io/v1/namespaces/NS/leases[/NAME]`, resourceVersions from the same
//! counter as the events (etcd's revision), 404/409 `Status` bodies as captured, optimistic
//! concurrency on `PUT`, MicroTime with six fractional digits, managed fields per manager
//! (the User-Agent up to its first `/`). Leases never appear in event lists or watches.
//!
//! Faults: [`FakeApiServer::refuse_lease_updates`] answers 500 to every `PUT` that names a
//! given holder (a leader cut off from the API, as far as its renewals go).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use http::Response;
use serde_json::{Map, Value, json};

use super::faults::failure_response;
use super::realistic::{rfc3339, rfc3339_micros, uuid};
use super::serve::{Body, json_response, status_json};
use super::{Failure, FakeApiServer, RecordedRequest, Shared, lock};

const PREFIX: &str = "/apis/coordination.k8s.io/v1/namespaces/";
const API_VERSION: &str = "coordination.k8s.io/v1";

/// Answers a request on the Leases API; None for any other path.
pub(super) fn route(
    shared: &Shared,
    rec: &RecordedRequest,
    body: &[u8],
    pretty: bool,
) -> Option<Response<Body>> {
    let rest = rec.path.strip_prefix(PREFIX)?;
    let (ns, rest) = rest.split_once('/')?;
    let name = match rest.strip_prefix("leases") {
        Some("") => None,
        Some(n) => Some(n.strip_prefix('/')?),
        None => return None,
    };
    let manager = rec
        .user_agent
        .as_deref()
        .and_then(|ua| ua.split('/').next())
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown")
        .to_string();
    Some(match (rec.method.as_str(), name) {
        ("GET", Some(name)) => match lock(&shared.leases).get(&key(ns, name)) {
            Some(lease) => json_response(200, lease.clone(), pretty),
            None => not_found(name, pretty),
        },
        ("POST", None) => create(shared, ns, body, &manager, pretty),
        ("PUT", Some(name)) => update(shared, ns, name, body, &manager, pretty),
        _ => json_response(
            405,
            status_json(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                Some("{}"),
                "{}",
            ),
            pretty,
        ),
    })
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn details(name: &str) -> String {
    format!(
        r#"{{"name":{},"group":"coordination.k8s.io","kind":"leases"}}"#,
        json!(name)
    )
}

fn not_found(name: &str, pretty: bool) -> Response<Body> {
    let msg = format!("leases.coordination.k8s.io \"{name}\" not found");
    json_response(
        404,
        status_json(404, "NotFound", &msg, Some(&details(name)), "{}"),
        pretty,
    )
}

fn bad_request(msg: &str, pretty: bool) -> Response<Body> {
    json_response(400, status_json(400, "BadRequest", msg, None, "{}"), pretty)
}

fn create(shared: &Shared, ns: &str, body: &[u8], manager: &str, pretty: bool) -> Response<Body> {
    let given = match parse(body) {
        Ok(v) => v,
        Err(e) => return bad_request(&e, pretty),
    };
    let meta = given.get("metadata").cloned().unwrap_or(Value::Null);
    let Some(name) = meta.get("name").and_then(Value::as_str).map(str::to_string) else {
        return json_response(
            422,
            invalid(
                "",
                "metadata.name",
                "Required value",
                "name or generateName is required",
            ),
            pretty,
        );
    };
    if meta
        .get("namespace")
        .and_then(Value::as_str)
        .is_some_and(|n| n != ns)
    {
        return bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
            pretty,
        );
    }
    let mut leases = lock(&shared.leases);
    if leases.contains_key(&key(ns, &name)) {
        let msg = format!("leases.coordination.k8s.io \"{name}\" already exists");
        return json_response(
            409,
            status_json(409, "AlreadyExists", &msg, Some(&details(&name)), "{}"),
            pretty,
        );
    }
    let rv = next_rv(shared);
    let uid = uuid(
        shared.seq.fetch_add(1, Ordering::SeqCst),
        shared.opts.initial_rv ^ 0x1ea5e,
    );
    let now = rfc3339(SystemTime::now());
    let lease = match render(&given, &name, ns, &uid, rv, &now, manager, &[]) {
        Ok(l) => l,
        Err(e) => return bad_request(&e, pretty),
    };
    leases.insert(key(ns, &name), lease.clone());
    json_response(201, lease, pretty)
}

fn update(
    shared: &Shared,
    ns: &str,
    name: &str,
    body: &[u8],
    manager: &str,
    pretty: bool,
) -> Response<Body> {
    let given = match parse(body) {
        Ok(v) => v,
        Err(e) => return bad_request(&e, pretty),
    };
    let holder = given
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !holder.is_empty() && lock(&shared.lease_refusals).iter().any(|h| h == holder) {
        return failure_response(Failure::InternalError, pretty);
    }
    let meta = given.get("metadata").cloned().unwrap_or(Value::Null);
    if let Some(n) = meta.get("name").and_then(Value::as_str)
        && n != name
    {
        return bad_request(
            &format!("the name of the object ({n}) does not match the name on the URL ({name})"),
            pretty,
        );
    }
    let mut leases = lock(&shared.leases);
    let Some(stored) = leases.get(&key(ns, name)) else {
        return not_found(name, pretty);
    };
    let stored: Value = serde_json::from_str(stored).unwrap_or(Value::Null);
    let sent_rv = meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if sent_rv.is_empty() {
        return json_response(
            422,
            invalid(
                name,
                "metadata.resourceVersion",
                "Invalid value: 0x0",
                "must be specified for an update",
            ),
            pretty,
        );
    }
    if Some(sent_rv)
        != stored
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
    {
        let msg = format!(
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        );
        return json_response(
            409,
            status_json(409, "Conflict", &msg, Some(&details(name)), "{}"),
            pretty,
        );
    }
    let text = |p: &str| {
        stored
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let uid = text("/metadata/uid");
    let created = text("/metadata/creationTimestamp");
    let others: Vec<Value> = stored
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|m| m.get("manager").and_then(Value::as_str) != Some(manager))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let rv = next_rv(shared);
    let lease = match render(&given, name, ns, &uid, rv, &created, manager, &others) {
        Ok(l) => l,
        Err(e) => return bad_request(&e, pretty),
    };
    leases.insert(key(ns, name), lease.clone());
    json_response(200, lease, pretty)
}

fn invalid(name: &str, field: &str, what: &str, detail: &str) -> String {
    let message = format!(
        "Lease.coordination.k8s.io {} is invalid: {field}: {what}: {detail}",
        json!(name)
    );
    let details = format!(
        r#"{{"name":{},"group":"coordination.k8s.io","kind":"Lease","causes":[{{"reason":"FieldValueInvalid","message":{},"field":{}}}]}}"#,
        json!(name),
        json!(format!("{what}: {detail}")),
        json!(field)
    );
    status_json(422, "Invalid", &message, Some(&details), "{}")
}

fn parse(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body of the request was in an unknown format: {e}"))?;
    if !v.is_object() {
        return Err("the body of the request is not a JSON object".into());
    }
    Ok(v)
}

fn next_rv(shared: &Shared) -> u64 {
    let mut store = lock(&shared.store);
    store.rv += 1;
    store.rv
}

/// The stored object, members in the order kube-apiserver writes them.
#[allow(clippy::too_many_arguments)]
fn render(
    given: &Value,
    name: &str,
    ns: &str,
    uid: &str,
    rv: u64,
    created: &str,
    manager: &str,
    other_managers: &[Value],
) -> Result<String, String> {
    let meta = given.get("metadata").and_then(Value::as_object);
    let spec = given.get("spec").and_then(Value::as_object);
    let mut out = format!(
        r#"{{"kind":"Lease","apiVersion":"{API_VERSION}","metadata":{{"name":{},"namespace":{},"uid":{},"resourceVersion":"{rv}","creationTimestamp":{}"#,
        json!(name),
        json!(ns),
        json!(uid),
        json!(created)
    );
    let mut fields_meta = Map::new();
    for member in ["labels", "annotations"] {
        if let Some(m) = meta.and_then(|m| m.get(member)).and_then(Value::as_object)
            && !m.is_empty()
        {
            // Go marshals maps with sorted keys, as serde_json's Map does.
            out.push_str(&format!(",\"{member}\":{}", Value::Object(m.clone())));
            let mut owned = Map::new();
            owned.insert(".".into(), json!({}));
            for k in m.keys() {
                owned.insert(format!("f:{k}"), json!({}));
            }
            fields_meta.insert(format!("f:{member}"), Value::Object(owned));
        }
    }
    let mut spec_out = Vec::new();
    let mut fields_spec = Map::new();
    for (member, micro) in [
        ("holderIdentity", false),
        ("leaseDurationSeconds", false),
        ("acquireTime", true),
        ("renewTime", true),
        ("leaseTransitions", false),
        ("strategy", false),
        ("preferredHolder", false),
    ] {
        let Some(v) = spec.and_then(|s| s.get(member)).filter(|v| !v.is_null()) else {
            continue;
        };
        let v = if micro {
            let t = v.as_str().ok_or(format!("spec.{member}: not a time"))?;
            json!(micro_time(t).ok_or(format!("spec.{member}: cannot parse {t:?} as a time"))?)
        } else {
            v.clone()
        };
        spec_out.push(format!("{}:{v}", json!(member)));
        fields_spec.insert(format!("f:{member}"), json!({}));
    }
    let mut fields = Map::new();
    if !fields_meta.is_empty() {
        fields.insert("f:metadata".into(), Value::Object(fields_meta));
    }
    if !fields_spec.is_empty() {
        fields.insert("f:spec".into(), Value::Object(fields_spec));
    }
    let mut managed: Vec<String> = other_managers.iter().map(Value::to_string).collect();
    managed.push(format!(
        r#"{{"manager":{},"operation":"Update","apiVersion":"{API_VERSION}","time":{},"fieldsType":"FieldsV1","fieldsV1":{}}}"#,
        json!(manager),
        json!(rfc3339(SystemTime::now())),
        Value::Object(fields)
    ));
    out.push_str(&format!(",\"managedFields\":[{}]}}", managed.join(",")));
    out.push_str(&format!(",\"spec\":{{{}}}}}", spec_out.join(",")));
    Ok(out)
}

/// A MicroTime as the server writes it: UTC, six fractional digits.
fn micro_time(t: &str) -> Option<String> {
    let body = t.strip_suffix('Z')?;
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    let ok =
        secs.len() == 19 && secs.as_bytes()[10] == b'T' && frac.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| format!("{secs}.{:0<6.6}Z", frac))
}

impl FakeApiServer {
    /// The Lease as stored (what a GET answers), if it exists.
    pub fn lease(&self, ns: &str, name: &str) -> Option<String> {
        lock(&self.shared.leases).get(&key(ns, name)).cloned()
    }

    /// The Lease's `spec.holderIdentity` ("" when released), None when there is no Lease.
    pub fn lease_holder(&self, ns: &str, name: &str) -> Option<String> {
        let v: Value = serde_json::from_str(&self.lease(ns, name)?).ok()?;
        Some(
            v.pointer("/spec/holderIdentity")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    }

    /// A Lease annotation, if set.
    pub fn lease_annotation(&self, ns: &str, name: &str, annotation: &str) -> Option<String> {
        let v: Value = serde_json::from_str(&self.lease(ns, name)?).ok()?;
        v.pointer("/metadata/annotations")?
            .get(annotation)?
            .as_str()
            .map(str::to_string)
    }

    /// Another program takes or renews the Lease for `holder` (created if absent), with
    /// renewTime now. Returns the Lease's new resourceVersion.
    pub fn hold_lease(&self, ns: &str, name: &str, holder: &str, duration_secs: u32) -> u64 {
        let now = rfc3339_micros(SystemTime::now());
        let shared = &self.shared;
        let mut leases = lock(&shared.leases);
        let old: Option<Value> = leases
            .get(&key(ns, name))
            .and_then(|l| serde_json::from_str(l).ok());
        let mut spec: BTreeMap<&str, Value> = BTreeMap::new();
        let same = old
            .as_ref()
            .and_then(|o| o.pointer("/spec/holderIdentity"))
            .and_then(Value::as_str)
            == Some(holder);
        let transitions = old
            .as_ref()
            .and_then(|o| o.pointer("/spec/leaseTransitions"))
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        let acquired = old
            .as_ref()
            .filter(|_| same)
            .and_then(|o| o.pointer("/spec/acquireTime"))
            .cloned()
            .unwrap_or(json!(now));
        spec.insert("holderIdentity", json!(holder));
        spec.insert("leaseDurationSeconds", json!(duration_secs));
        spec.insert("acquireTime", acquired);
        spec.insert("renewTime", json!(now));
        spec.insert(
            "leaseTransitions",
            json!(if same {
                transitions.max(0)
            } else {
                transitions + 1
            }),
        );
        let meta = old
            .as_ref()
            .and_then(|o| o.get("metadata"))
            .cloned()
            .unwrap_or(json!({}));
        let given = json!({"metadata": meta, "spec": spec});
        let uid = meta
            .get("uid")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| uuid(shared.seq.fetch_add(1, Ordering::SeqCst), 0x1ea5e));
        let created = meta
            .get("creationTimestamp")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| rfc3339(SystemTime::now()));
        let rv = next_rv(shared);
        let lease = render(&given, name, ns, &uid, rv, &created, "other-program", &[])
            .expect("a lease the fake renders itself");
        leases.insert(key(ns, name), lease);
        rv
    }

    /// Every `PUT` of a Lease naming `holder` gets HTTP 500 until [`clear_faults`](Self::clear_faults).
    pub fn refuse_lease_updates(&self, holder: &str) {
        lock(&self.shared.lease_refusals).push(holder.to_string());
    }
}
