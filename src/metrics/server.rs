//! The HTTP side: `GET /metrics` (Prometheus text 0.0.4, or OpenMetrics text when the
//! `Accept` header prefers it), `GET /healthz` and `GET /readyz` (plain text, 200 or 503), on
//! `metrics_address`. hyper's HTTP/1 server, one task per connection, a bounded number of
//! them, each with a header read timeout: a stuck client cannot pile up sockets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, watch};

use super::Metrics;
use super::health;
use crate::config::Origin;
use crate::service::progress::Progress;

/// OpenMetrics text, as `prometheus_client::encoding::text` writes it.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PLAIN: &str = "text/plain; charset=utf-8";
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `metrics_address` could not be listened on: a configuration error naming the key, its
/// source and the value.
#[derive(Debug, thiserror::Error)]
#[error(
    "metrics_address = \"{addr}\" ({origin}) cannot be listened on: {source}; allowed: a free local address and port, or \"off\""
)]
pub struct BindError {
    pub addr: SocketAddr,
    pub origin: String,
    #[source]
    pub source: std::io::Error,
}

/// Binds the listening socket at once, so a taken or foreign address stops the start-up with
/// exit status 2 before anything is fetched. Must be called inside the runtime.
pub fn bind(addr: SocketAddr, origin: &Origin) -> Result<tokio::net::TcpListener, BindError> {
    let wrap = |source| BindError {
        addr,
        origin: origin.to_string(),
        source,
    };
    let std = std::net::TcpListener::bind(addr).map_err(wrap)?;
    std.set_nonblocking(true).map_err(wrap)?;
    tokio::net::TcpListener::from_std(std).map_err(wrap)
}

/// What a request handler reads.
struct Endpoints {
    registry: Registry,
    metrics: Metrics,
    progress: Progress,
    liveness_bound: Duration,
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    progress: Progress,
    liveness_bound: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            address = %addr,
            "serving metrics on http://{addr}/metrics, health on /healthz and /readyz"
        );
    }
    let endpoints = Arc::new(Endpoints {
        registry: super::collect::registry(metrics.clone(), progress.clone(), liveness_bound),
        metrics,
        progress,
        liveness_bound,
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let stream = tokio::select! {
            s = listener.accept() => s,
            _ = shutdown.changed() => return,
        };
        let (stream, _) = match stream {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "cannot accept a metrics connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let endpoints = endpoints.clone();
                async move { Ok::<_, Infallible>(respond(&endpoints, &req)) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
            drop(permit);
        });
    }
}

fn respond(endpoints: &Endpoints, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
    if known && req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let snap = || endpoints.progress.snapshot();
    let verdict = |v: health::Verdict| {
        let status = if v.ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        text_response(status, &format!("{}\n", v.reason))
    };
    match path {
        "/metrics" => scrape(endpoints, req),
        "/healthz" => verdict(health::liveness(&snap(), endpoints.liveness_bound)),
        "/readyz" => verdict(health::readiness(
            &snap(),
            endpoints.liveness_bound,
            endpoints.metrics.role(),
        )),
        _ => text_response(
            StatusCode::NOT_FOUND,
            "not found; this server has /metrics, /healthz and /readyz\n",
        ),
    }
}

fn scrape(endpoints: &Endpoints, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let accept = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let mut body = String::with_capacity(16 * 1024);
    let (encoded, content_type) = if prefers_openmetrics(&accept) {
        (
            text::encode(&mut body, &endpoints.registry),
            OPENMETRICS_CONTENT_TYPE,
        )
    } else {
        (
            prometheus_text::encode(&mut body, &endpoints.registry),
            prometheus_text::CONTENT_TYPE,
        )
    };
    if let Err(e) = encoded {
        tracing::warn!(error = %e, "cannot encode the metrics");
        return text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        );
    }
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text_response(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PLAIN));
    r
}

/// True when the client rates OpenMetrics text at least as high as the Prometheus text
/// format (`text/plain`, or a wildcard standing for it). Prometheus itself sends e.g.
/// `application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1`.
pub fn prefers_openmetrics(accept: &str) -> bool {
    let mut openmetrics = 0.0f64;
    let mut plain = 0.0f64;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f64>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => plain = plain.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_follows_the_accept_header() {
        assert!(!prefers_openmetrics(""));
        assert!(!prefers_openmetrics("*/*"));
        assert!(!prefers_openmetrics("text/plain;version=0.0.4"));
        assert!(prefers_openmetrics("application/openmetrics-text"));
        assert!(prefers_openmetrics(
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ));
        assert!(!prefers_openmetrics(
            "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5"
        ));
        assert!(!prefers_openmetrics("application/openmetrics-text;q=0"));
    }
}
