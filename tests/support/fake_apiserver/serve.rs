//! HTTP serving: the accept loop (plain or TLS), request parsing and recording,
//! authentication, routing, and the JSON and `Status` response helpers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::admin::handle_admin;
use super::faults::{failure_response, take_failure};
use super::json::{json_str, pretty};
use super::list::list_response;
use super::rbac::{denied_user, forbidden_response};
use super::watches::watch_response;
use super::{ClientAuth, RecordedRequest, Shared, lock};

pub(super) type Body = BoxBody<Bytes, io::Error>;

pub(super) async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    admin: bool,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        let cert = stream.get_ref().1.peer_certificates().is_some();
                        serve(TokioIo::new(stream), shared, cert, admin).await;
                    }
                    Err(_) => {
                        shared.handshake_failures.fetch_add(1, Ordering::SeqCst);
                    }
                },
                None => serve(TokioIo::new(tcp), shared, false, admin).await,
            }
        });
    }
}

async fn serve<I>(io: I, shared: Arc<Shared>, client_cert: bool, admin: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut epoch = shared.conn_epoch.subscribe();
    epoch.borrow_and_update();
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move {
            let resp = if admin {
                handle_admin(&shared, req).await
            } else {
                handle(shared, client_cert, req).await
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
    // A restart closes the connection: dropping it drops the socket.
    tokio::select! {
        _ = conn => {}
        _ = epoch.changed(), if !admin => {}
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(super) fn json_response(status: u16, body: String, pretty_print: bool) -> Response<Body> {
    let text = if pretty_print {
        pretty(&body)
    } else {
        body + "\n"
    };
    let mut resp = json_headers(Response::new(full(text)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp
}

/// The headers kube-apiserver sends with every JSON body, whole or streamed.
pub(super) fn json_headers<B>(mut resp: Response<B>) -> Response<B> {
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// A `Status` body; `details`/`metadata` are raw JSON (`None` leaves details out).
pub(super) fn status_json(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<&str>,
    metadata: &str,
) -> String {
    let details = details
        .map(|d| format!(",\"details\":{d}"))
        .unwrap_or_default();
    format!(
        "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{metadata},\"status\":\"Failure\",\"message\":{},\"reason\":\"{reason}\"{details},\"code\":{code}}}",
        json_str(message)
    )
}

pub(super) fn parse_bool(s: &str) -> bool {
    matches!(s, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

async fn handle(shared: Arc<Shared>, client_cert: bool, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query = parse_query(&raw_query);
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let rec = RecordedRequest {
        method: req.method().to_string(),
        path: path.clone(),
        raw_query,
        query,
        at: SystemTime::now(),
        since_start: shared.started.elapsed(),
        authorization: header("authorization"),
        user_agent: header("user-agent"),
        status: None,
    };
    // Only Lease writes carry a body.
    let body = if rec.method == "GET" {
        Bytes::new()
    } else {
        match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        }
    };
    let is_watch = rec.is_watch();
    let is_list = rec.is_list();
    let pretty_print = rec.param("pretty").is_some_and(parse_bool)
        || rec
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("curl") || ua.starts_with("Wget"));
    let idx = {
        let mut reqs = lock(&shared.requests);
        reqs.push(rec.clone());
        reqs.len() - 1
    };

    // A stall holds new requests too.
    let mut stall = shared.stall.subscribe();
    let _ = stall.wait_for(|s| !*s).await;
    if is_list {
        let cost = super::watch_list::page_cost(&shared, &rec);
        if !cost.is_zero() {
            tokio::time::sleep(cost).await;
        }
        // The real server waits for its cache to reach a version ahead of it before it gives
        // up with 504.
        let ahead = rec
            .param("resourceVersion")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|rv| rv > lock(&shared.store).rv);
        if ahead && rec.param("continue").is_none() {
            tokio::time::sleep(shared.opts.too_large_wait).await;
        }
    }

    let resp = route(
        &shared,
        client_cert,
        &rec,
        &body,
        is_list,
        is_watch,
        pretty_print,
    );
    if let Some(r) = lock(&shared.requests).get_mut(idx) {
        r.status = Some(resp.status().as_u16());
    }
    resp
}

fn route(
    shared: &Arc<Shared>,
    client_cert: bool,
    rec: &RecordedRequest,
    body: &[u8],
    is_list: bool,
    is_watch: bool,
    pretty_print: bool,
) -> Response<Body> {
    if let Some(f) = take_failure(shared, is_list, is_watch) {
        return failure_response(f, pretty_print);
    }

    // Authentication.
    let opts = &shared.opts;
    let auth_required = opts.token.is_some() || opts.client_auth != ClientAuth::None;
    match (&rec.authorization, &opts.token) {
        (Some(h), Some(tok)) if h.strip_prefix("Bearer ").map(str::trim) != Some(tok.as_str()) => {
            return json_response(
                401,
                status_json(401, "Unauthorized", "Unauthorized", None, "{}"),
                pretty_print,
            );
        }
        (Some(_), _) => {}
        (None, _) if client_cert || !auth_required => {}
        (None, _) => {
            return forbidden_response("system:anonymous", rec, is_list, is_watch, pretty_print);
        }
    }
    if let Some(user) = denied_user(shared) {
        return forbidden_response(&user, rec, is_list, is_watch, pretty_print);
    }

    if let Some(resp) = super::leases::route(shared, rec, body, pretty_print) {
        return resp;
    }
    let events = rec.is_events();
    match (rec.method.as_str(), rec.path.as_str()) {
        ("GET", _) if events && is_watch => watch_response(shared, rec, pretty_print),
        ("GET", _) if events => list_response(shared, rec, pretty_print),
        ("GET", "/version") => json_response(
            200,
            r#"{"major":"1","minor":"36","emulationMajor":"1","emulationMinor":"36","minCompatibilityMajor":"1","minCompatibilityMinor":"35","gitVersion":"v1.36.2","gitCommit":"0000000000000000000000000000000000000000","gitTreeState":"clean","buildDate":"2026-11-01T00:00:00Z","goVersion":"go1.25.3","compiler":"gc","platform":"linux/amd64"}"#.to_string(),
            pretty_print,
        ),
        ("GET", "/healthz" | "/readyz" | "/livez") => {
            let mut r = Response::new(full("ok"));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
            r
        }
        (m, _) if events && m != "GET" => json_response(
            405,
            status_json(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", Some("{}"), "{}"),
            pretty_print,
        ),
        _ => json_response(
            404,
            status_json(404, "NotFound", "the server could not find the requested resource", Some("{}"), "{}"),
            pretty_print,
        ),
    }
}

pub(super) fn bad_request(msg: &str, pretty_print: bool) -> Response<Body> {
    json_response(
        400,
        status_json(400, "BadRequest", msg, None, "{}"),
        pretty_print,
    )
}

/// The 504 of `list-rv-too-large.json`.
pub(super) fn too_large_rv(rv: u64, current: u64, pretty_print: bool) -> Response<Body> {
    json_response(
        504,
        status_json(
            504,
            "Timeout",
            &format!("Timeout: Too large resource version: {rv}, current: {current}"),
            Some(
                r#"{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}]}"#,
            ),
            "{}",
        ),
        pretty_print,
    )
}
