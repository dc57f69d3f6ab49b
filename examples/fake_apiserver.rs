//! The test fake kube-apiserver as its own process, for system tests and benchmarks.
//!
//! ```text
//! cargo run --example fake_apiserver -- [--port 0] [--events N] [--token T] [--tls]
//!     [--client-cert optional|required] [--bookmark-interval-ms MS] [--initial-rv RV]
//!     [--kubeconfig PATH] [--prepared-watch N] [--encode-lists] [--no-watch-list]
//!     [--list-page-delay-ms MS] [--list-item-delay-us US] [--initial-event-delay-us US]
//! ```
//!
//! stdout, line 1: the API URL (`http://127.0.0.1:PORT` or `https://...`);
//! line 2: the admin URL (plain HTTP, no auth). Then it serves until killed.
//!
//! `--encode-lists` (benchmarks): list items are encoded per request from decoded objects, as
//! kube-apiserver does, rather than copied from stored JSON.
//!
//! `--no-watch-list`: streaming lists are refused with 422, as with the WatchList feature gate
//! off. `--list-page-delay-ms` (default 20) and `--list-item-delay-us` (default 0): what each
//! page of a paged list costs before it is sent (a real server: ~15 ms + ~14 µs an item).
//! `--initial-event-delay-us` (default 0): the pace of a watch's initial events, e.g. a
//! streaming list's (a real server: ~21 µs an event).
//!
//! `--kubeconfig PATH` writes a kubeconfig for the server: with `--token` it carries the token,
//! else with `--client-cert` the client certificate, else no credentials.
//!
//! Admin API (calls the same methods as the in-process API):
//! - `GET    /fake/state`                        rv, compaction point, #events, #open watches
//! - `POST   /fake/events/{ns}/{name}`           body: fields JSON (`?raw=1`: whole object)
//! - `PATCH  /fake/events/{ns}/{name}`           body: fields to replace/add
//! - `DELETE /fake/events/{ns}/{name}`
//! - `GET    /fake/events/{ns}/{name}`           the object as a watch frame carries it
//! - `POST   /fake/realistic?start=S&count=N`    create realistic events S..S+N
//! - `POST   /fake/compact`
//! - `POST   /fake/bookmark`
//! - `POST   /fake/prepared/start`               with `--prepared-watch N` (benchmarks): N watch
//!   frames (half repeats, see `prepared_watch_frame`) are rendered at start-up and handed to
//!   the first watch request; it sends them, as fast as the socket takes them, once this is
//!   called. `GET /fake/state` then reports `prepared.firstSentUnixNs`/`lastSentUnixNs`.
//! - `POST   /fake/fault`  body: `{"fault":"drop_watches","half_frame":true}` | `{"fault":"stall"}`
//!   | `{"fault":"unstall"}` | `{"fault":"malformed","line":"..."}` | `{"fault":"expire_watches"}`
//!   | `{"fault":"fail","status":500|429|503,"count":N,"retry_after":S,"target":"any|list|watch"}`
//!   | `{"fault":"refuse_lease_updates","holder":"cp-1"}` | `{"fault":"clear"}`
//! - `GET    /fake/leases/{ns}/{name}`           the Lease as stored
//! - `POST   /fake/leases/{ns}/{name}?holder=H&duration=S`  another program takes or renews
//!   the Lease for H (renewTime now)
//! - `GET    /fake/requests`, `DELETE /fake/requests`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/support/fake_apiserver/mod.rs"]
mod fake_apiserver;

use std::io::Write;
use std::time::Duration;

use fake_apiserver::{Auth, ClientAuth, FakeApiServer, Options};

fn usage(msg: &str) -> ! {
    eprintln!(
        "{msg}\nusage: fake_apiserver [--port P] [--events N] [--token T] [--tls] \
         [--client-cert optional|required] [--bookmark-interval-ms MS] [--initial-rv RV] \
         [--kubeconfig PATH] [--prepared-watch N] [--encode-lists] [--no-watch-list] \
         [--list-page-delay-ms MS] [--list-item-delay-us US] [--initial-event-delay-us US]"
    );
    std::process::exit(2)
}

fn main() {
    let mut opts = Options {
        admin: true,
        ..Options::default()
    };
    let mut events = 0usize;
    let mut kubeconfig = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        let num = |s: String| -> u64 {
            s.parse()
                .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
        };
        match a.as_str() {
            "--port" => opts.port = num(val()) as u16,
            "--events" => events = num(val()) as usize,
            "--token" => opts.token = Some(val()),
            "--tls" => opts.tls = true,
            "--client-cert" => {
                opts.client_auth = match val().as_str() {
                    "optional" => ClientAuth::Optional,
                    "required" => ClientAuth::Required,
                    v => usage(&format!("--client-cert {v}?")),
                }
            }
            "--bookmark-interval-ms" => {
                opts.bookmark_interval = Some(Duration::from_millis(num(val())))
            }
            "--initial-rv" => opts.initial_rv = num(val()),
            "--prepared-watch" => opts.prepared_watch = num(val()) as usize,
            "--encode-lists" => opts.encode_lists = true,
            "--no-watch-list" => opts.watch_list = false,
            "--list-page-delay-ms" => opts.list_page_delay = Duration::from_millis(num(val())),
            "--list-item-delay-us" => opts.list_item_delay = Duration::from_micros(num(val())),
            "--initial-event-delay-us" => {
                opts.initial_event_delay = Duration::from_micros(num(val()))
            }
            "--kubeconfig" => kubeconfig = Some(val()),
            "-h" | "--help" => usage("fake kube-apiserver"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if opts.client_auth != ClientAuth::None && !opts.tls {
        usage("--client-cert needs --tls");
    }
    let token = opts.token.clone();
    let client_cert = opts.client_auth != ClientAuth::None;
    let fake = FakeApiServer::start(opts);
    fake.create_realistic(0..events);
    if let Some(path) = kubeconfig {
        let auth = match (token, client_cert) {
            (Some(t), _) => Auth::Token(t),
            (None, true) => Auth::ClientCert,
            (None, false) => Auth::None,
        };
        fake.write_kubeconfig(path, auth);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", fake.url());
    let _ = writeln!(out, "{}", fake.admin_url().unwrap_or_default());
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::park();
    }
}
