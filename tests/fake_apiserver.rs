//! Self-tests of the fake kube-apiserver, compared with the captures from a real kube-apiserver
//! in `tests/fixtures/real-apiserver/`. A tiny raw HTTP/1.1 client is used so that chunk
//! boundaries, clean ends (terminating chunk) and aborted connections are visible.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::value::RawValue;
use support::fake_apiserver::{
    Auth, ClientAuth, Failure, FakeApiServer, MALFORMED_FRAME, Options, Target,
    WATCH_EXPIRED_FRAME, realistic_event, realistic_key,
};
use tokio_rustls::rustls;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-apiserver")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_dir().join(name)).unwrap()
}

fn fixture_lines(name: &str) -> Vec<String> {
    fixture(name).lines().map(str::to_string).collect()
}

/// Raw items of a list fixture, in order.
fn fixture_items(name: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct L<'a> {
        #[serde(borrow)]
        items: Vec<&'a RawValue>,
    }
    let text = fixture(name);
    let l: L = serde_json::from_str(&text).unwrap();
    l.items.iter().map(|r| r.get().to_string()).collect()
}

fn ns_name(obj: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(obj).unwrap();
    (
        v["metadata"]["namespace"].as_str().unwrap().to_string(),
        v["metadata"]["name"].as_str().unwrap().to_string(),
    )
}

/// Top-level keys of a JSON object, in order.
fn keys(obj: &str) -> Vec<String> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(k) = m.next_key::<String>()? {
                let _: &RawValue = m.next_value()?;
                out.push(k);
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(obj);
    serde::Deserializer::deserialize_map(&mut de, V).unwrap()
}

fn raw_member(obj: &str, key: &str) -> Option<String> {
    let m: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(obj).unwrap();
    m.get(key).map(|r| r.get().to_string())
}

/// Raw items of a list body.
fn items(body: &str) -> Vec<String> {
    let raw = raw_member(body, "items").unwrap();
    let items: Vec<&RawValue> = serde_json::from_str(&raw).unwrap();
    items.iter().map(|r| r.get().to_string()).collect()
}

fn b64url(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn unb64url(s: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap(),
    )
    .unwrap()
}

/// Replaces every `"resourceVersion":"<digits>"` value by `X` and the rv inside continue tokens,
/// so bodies from the fake and the capture can be compared byte for byte.
fn norm(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    loop {
        let rv = rest.find("\"resourceVersion\":\"");
        let ct = rest.find("\"continue\":\"");
        match (rv, ct) {
            (Some(i), c) if c.is_none_or(|c| i < c) => {
                let start = i + "\"resourceVersion\":\"".len();
                out.push_str(&rest[..start]);
                out.push('X');
                let digits = rest[start..].find('"').unwrap();
                rest = &rest[start + digits..];
            }
            (_, Some(c)) => {
                let start = c + "\"continue\":\"".len();
                out.push_str(&rest[..start]);
                let end = rest[start..].find('"').unwrap();
                let tok = unb64url(&rest[start..start + end]);
                let rvpos = tok.find("\"rv\":").unwrap() + 5;
                let rvend = rvpos + tok[rvpos..].find(',').unwrap();
                let rvval = &tok[rvpos..rvend];
                let keep = if rvval == "-1" { "-1" } else { "X" };
                out.push_str(&format!("<{}{keep}{}>", &tok[..rvpos], &tok[rvend..]));
                rest = &rest[start + end..];
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// A fake holding `n` like events `a/e000`, `a/e001`..., created in that order.
fn fake_with_numbered(opts: Options, n: usize) -> FakeApiServer {
    let fake = FakeApiServer::start(opts);
    for i in 0..n {
        fake.create("a", &format!("e{i:03}"), r#"{"reason":"R"}"#);
    }
    fake
}

/// A fake that sends initial watch events at a real server's pace, holding `n` of them.
fn paced_fake(initial_event_delay: Duration, n: usize) -> FakeApiServer {
    let opts = Options {
        initial_event_delay,
        ..Options::default()
    };
    fake_with_numbered(opts, n)
}

/// A fake loaded with the objects of the compact list capture, created in rv order.
fn fake_with_fixture_list(opts: Options) -> FakeApiServer {
    let fake = FakeApiServer::start(opts);
    for item in fixture_items("raw-list-compact.json") {
        let (ns, name) = ns_name(&item);
        fake.create_raw(&ns, &name, &item);
    }
    fake
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client (plain or TLS) with visible chunking
// ---------------------------------------------------------------------------------------------

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

struct Http {
    reader: BufReader<Box<dyn Stream>>,
    tcp: TcpStream,
    status: u16,
    headers: Vec<(String, String)>,
    chunked: bool,
    length: Option<usize>,
    done: bool,
    /// Decoded body bytes not yet returned as lines.
    pending: Vec<u8>,
}

enum Line {
    Line(String),
    /// The body ended cleanly (terminating chunk).
    End,
}

fn plain(fake: &FakeApiServer) -> (Box<dyn Stream>, TcpStream) {
    let tcp = TcpStream::connect(("127.0.0.1", fake.port())).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (Box::new(tcp.try_clone().unwrap()), tcp)
}

fn tls_config(ca_pem: &str, client: Option<(String, String)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

fn tls(fake: &FakeApiServer, config: Arc<rustls::ClientConfig>) -> (Box<dyn Stream>, TcpStream) {
    let tcp = TcpStream::connect(("127.0.0.1", fake.port())).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    (
        Box::new(rustls::StreamOwned::new(conn, tcp.try_clone().unwrap())),
        tcp,
    )
}

fn request_on(
    conn: (Box<dyn Stream>, TcpStream),
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> io::Result<Http> {
    request_with_body(conn, method, target, headers, b"")
}

fn request_with_body(
    (mut s, tcp): (Box<dyn Stream>, TcpStream),
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Http> {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
    }
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let length = get("content-length").map(|v| v.parse().unwrap());
    Ok(Http {
        reader,
        tcp,
        status,
        headers,
        chunked,
        length,
        done: false,
        pending: Vec::new(),
    })
}

fn get(fake: &FakeApiServer, target: &str) -> Http {
    request_on(plain(fake), "GET", target, &[]).unwrap()
}

/// The body of the answer to GET `target`, which must have the status `status`.
#[track_caller]
fn body_of(fake: &FakeApiServer, target: &str, status: u16) -> String {
    let r = get(fake, target);
    assert_eq!(r.status, status, "{target}");
    r.body()
}

/// A GET of `target` answered with 200 and a body that ends cleanly without a line.
#[track_caller]
fn expect_empty_ok(fake: &FakeApiServer, target: &str) {
    let mut w = get(fake, target);
    assert_eq!(w.status, 200);
    w.expect_end();
}

/// A watch of all events from `rv`, with `extra` parameters.
fn watch_from(fake: &FakeApiServer, rv: u64, extra: &str) -> Http {
    get(
        fake,
        &format!("/api/v1/events?watch=1&resourceVersion={rv}{extra}"),
    )
}

/// A watch from the current version, once the server counts it open, so that what a test
/// does next reaches it.
fn open_watch(fake: &FakeApiServer) -> Http {
    let w = watch_from(fake, fake.current_rv(), "");
    assert!(fake.wait_for_watches(1, Duration::from_secs(5)));
    w
}

/// A list of all events on `conn`, with `headers`.
fn list_on(conn: (Box<dyn Stream>, TcpStream), headers: &[(&str, &str)]) -> io::Result<Http> {
    request_on(conn, "GET", "/api/v1/events", headers)
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn set_timeout(&self, d: Duration) {
        self.tcp.set_read_timeout(Some(d)).unwrap();
    }

    /// The next decoded piece of the body; None at a clean end; Err if the connection ends
    /// without the terminating chunk (or times out).
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        if !self.chunked {
            let n = self.length.unwrap_or(0);
            let mut b = vec![0; n];
            self.reader.read_exact(&mut b)?;
            self.done = true;
            return Ok(Some(b));
        }
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "eof before chunk size",
            ));
        }
        let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap(), 16)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if size == 0 {
            line.clear();
            self.reader.read_line(&mut line)?;
            self.done = true;
            return Ok(None);
        }
        let mut b = vec![0; size + 2];
        self.reader.read_exact(&mut b)?;
        b.truncate(size);
        Ok(Some(b))
    }

    fn body(mut self) -> String {
        let mut out = Vec::new();
        while let Some(c) = self.next_chunk().unwrap() {
            out.extend(c);
        }
        String::from_utf8(out).unwrap()
    }

    fn next_line(&mut self) -> io::Result<Line> {
        loop {
            if let Some(p) = self.pending.iter().position(|b| *b == b'\n') {
                let rest = self.pending.split_off(p + 1);
                let mut line = std::mem::replace(&mut self.pending, rest);
                line.pop();
                return Ok(Line::Line(String::from_utf8(line).unwrap()));
            }
            match self.next_chunk()? {
                Some(c) => self.pending.extend(c),
                None => {
                    assert!(self.pending.is_empty(), "body ended with a partial line");
                    return Ok(Line::End);
                }
            }
        }
    }

    fn line(&mut self) -> String {
        match self.next_line().unwrap() {
            Line::Line(l) => l,
            Line::End => panic!("stream ended, expected a line"),
        }
    }

    fn expect_end(&mut self) {
        match self.next_line().unwrap() {
            Line::End => {}
            Line::Line(l) => panic!("expected a clean end, got {l}"),
        }
    }

    /// The next frame, which must be of type `typ`.
    #[track_caller]
    fn expect_type(&mut self, typ: &str) -> String {
        let line = self.line();
        assert_eq!(frame_type(&line), typ);
        line
    }

    /// The next frame, which must be of type `typ` and about an object named `name`.
    #[track_caller]
    fn expect_named(&mut self, typ: &str, name: &str) {
        let line = self.expect_type(typ);
        assert!(line.contains(&format!("\"name\":\"{name}\"")), "{line}");
    }

    /// The next frame, which must be byte for byte `typ` of the object `ns/name` as the fake
    /// holds it now.
    #[track_caller]
    fn expect_frame(&mut self, fake: &FakeApiServer, typ: &str, ns: &str, name: &str) -> String {
        let line = self.line();
        assert_eq!(
            line,
            format!(
                "{{\"type\":\"{typ}\",\"object\":{}}}",
                fake.object_line(ns, name)
            )
        );
        line
    }

    /// The next lines, each equal to the expected one up to resource versions.
    #[track_caller]
    fn expect_lines_like<S: AsRef<str>>(&mut self, expected: impl IntoIterator<Item = S>) {
        for e in expected {
            assert_eq!(norm(&self.line()), norm(e.as_ref()));
        }
    }
}

#[track_caller]
fn assert_took_at_least(since: Instant, least: Duration) {
    let took = since.elapsed();
    assert!(took >= least, "{took:?}");
}

fn frame_type(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["type"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

#[test]
fn unpaged_list_is_byte_identical_to_the_capture_up_to_resource_versions() {
    let fake = fake_with_fixture_list(Options::default());
    let r = get(&fake, "/api/v1/events?limit=500");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.body();
    assert_eq!(norm(&body), norm(&fixture("raw-list-compact.json")));
    // The top-level rv is the store's, and without limit the answer is the same.
    assert!(body.starts_with(&format!(
        "{{\"kind\":\"EventList\",\"apiVersion\":\"v1\",\"metadata\":{{\"resourceVersion\":\"{}\"}},\"items\":[",
        fake.current_rv()
    )));
    assert_eq!(get(&fake, "/api/v1/events").body(), body);
}

#[test]
fn paged_list_matches_the_capture_and_continue_tokens_visit_every_object_once() {
    let fake = fake_with_fixture_list(Options::default());
    let p1 = get(&fake, "/api/v1/events?limit=2").body();
    assert_eq!(norm(&p1), norm(&fixture("raw-list-page1.json")));
    let meta = raw_member(&p1, "metadata").unwrap();
    assert_eq!(keys(&p1), ["kind", "apiVersion", "metadata", "items"]);
    assert_eq!(
        keys(&meta),
        ["resourceVersion", "continue", "remainingItemCount"]
    );
    let tok: String = serde_json::from_str(&raw_member(&meta, "continue").unwrap()).unwrap();
    assert_eq!(
        unb64url(&tok),
        format!(
            "{{\"v\":\"meta.k8s.io/v1\",\"rv\":{},\"start\":\"default/sched.187a1f2e3c4d0001\\u0000\"}}",
            fake.current_rv()
        )
    );
    let p2 = get(&fake, &format!("/api/v1/events?limit=2&continue={tok}")).body();
    assert_eq!(norm(&p2), norm(&fixture("raw-list-page2.json")));

    // Follow the tokens to the end: every object once, in key order; the last page has neither
    // continue nor remainingItemCount.
    let mut seen = Vec::new();
    let mut target = "/api/v1/events?limit=3".to_string();
    loop {
        let page = get(&fake, &target).body();
        let meta = raw_member(&page, "metadata").unwrap();
        for i in &items(&page) {
            assert!(!keys(i).contains(&"kind".to_string()));
            let (ns, name) = ns_name(i);
            seen.push(format!("{ns}/{name}"));
        }
        match raw_member(&meta, "continue") {
            Some(c) => {
                let c: String = serde_json::from_str(&c).unwrap();
                assert!(raw_member(&meta, "remainingItemCount").is_some());
                target = format!("/api/v1/events?limit=3&continue={c}");
            }
            None => {
                assert_eq!(keys(&meta), ["resourceVersion"]);
                break;
            }
        }
    }
    let mut expected: Vec<String> = fixture_items("raw-list-compact.json")
        .iter()
        .map(|i| {
            let (ns, n) = ns_name(i);
            format!("{ns}/{n}")
        })
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(seen.len(), 7);
}

#[test]
fn continuation_pages_are_served_at_the_first_pages_resource_version() {
    let fake = FakeApiServer::start(Options::default());
    for n in ["a", "b", "c", "d"] {
        fake.create("ns", n, r#"{"reason":"R","count":1}"#);
    }
    let p1 = get(&fake, "/api/v1/events?limit=2").body();
    let rv1 = fake.current_rv();
    let tok: String = serde_json::from_str(
        &raw_member(&raw_member(&p1, "metadata").unwrap(), "continue").unwrap(),
    )
    .unwrap();
    // Changes after the first page: c modified, d deleted, e created.
    fake.set_count("ns", "c", 5);
    fake.delete("ns", "d");
    fake.create("ns", "e", r#"{"reason":"R","count":1}"#);
    let p2 = get(&fake, &format!("/api/v1/events?limit=2&continue={tok}")).body();
    let items = items(&p2);
    let names: Vec<String> = items.iter().map(|i| ns_name(i).1).collect();
    assert_eq!(names, ["c", "d"]);
    assert!(items[0].contains("\"count\":1"));
    assert_eq!(
        raw_member(&p2, "metadata").unwrap(),
        format!("{{\"resourceVersion\":\"{rv1}\"}}")
    );
}

#[test]
fn expired_continue_token_gives_410_with_a_fresh_token_like_the_capture() {
    let fake = FakeApiServer::start(Options::default());
    for n in ["aaa", "churn.8j6w4", "zzz"] {
        fake.create("default", n, r#"{"reason":"Churn"}"#);
    }
    let p1 = get(&fake, "/api/v1/events?limit=2").body();
    let tok: String = serde_json::from_str(
        &raw_member(&raw_member(&p1, "metadata").unwrap(), "continue").unwrap(),
    )
    .unwrap();
    fake.create("default", "zzzz", r#"{"reason":"Churn"}"#);
    fake.compact();
    let body = body_of(
        &fake,
        &format!("/api/v1/events?limit=2&continue={tok}"),
        410,
    );
    assert_eq!(body, fixture("raw-list-expired-continue.json"));
    // The fresh token continues (inconsistently) from the same place, at the current state.
    let fresh: String = serde_json::from_str(
        &raw_member(&raw_member(&body, "metadata").unwrap(), "continue").unwrap(),
    )
    .unwrap();
    let p2 = get(&fake, &format!("/api/v1/events?limit=2&continue={fresh}")).body();
    let items = items(&p2);
    let names: Vec<String> = items.iter().map(|i| ns_name(i).1).collect();
    assert_eq!(names, ["zzz", "zzzz"]);
    assert_eq!(
        raw_member(&p2, "metadata").unwrap(),
        format!("{{\"resourceVersion\":\"{}\"}}", fake.current_rv())
    );
    // A token that does not decode is a 400.
    assert_eq!(
        get(
            &fake,
            &format!("/api/v1/events?continue={}", b64url("junk"))
        )
        .status,
        400
    );
}

// ---------------------------------------------------------------------------------------------
// Watches
// ---------------------------------------------------------------------------------------------

/// Replays the captured watch through create/patch/delete and checks that a watch from before
/// the first change yields the same frames, byte for byte up to resource versions.
#[test]
fn watch_replays_the_capture_frame_for_frame() {
    let fake = FakeApiServer::start(Options::default());
    let start = fake.current_rv();
    let captured = fixture_lines("raw-watch.jsonl");
    for line in &captured {
        let obj = raw_member(line, "object").unwrap();
        let (ns, name) = ns_name(&obj);
        match frame_type(line).as_str() {
            "ADDED" => {
                fake.create_raw(&ns, &name, &obj);
            }
            "MODIFIED" => {
                fake.patch(&ns, &name, &obj);
            }
            "DELETED" => {
                fake.delete(&ns, &name);
            }
            t => panic!("unexpected {t}"),
        }
    }
    let mut w = get(
        &fake,
        &format!("/api/v1/events?watch=1&allowWatchBookmarks=true&resourceVersion={start}"),
    );
    assert_eq!(w.status, 200);
    assert_eq!(w.header("content-type"), Some("application/json"));
    assert_eq!(w.header("transfer-encoding"), Some("chunked"));
    for (i, expected) in captured.iter().enumerate() {
        let got = w.line();
        assert_eq!(norm(&got), norm(expected), "frame {i}");
        // kind/apiVersion first, and the real resourceVersion sequence.
        assert!(got.contains(r#""object":{"kind":"Event","apiVersion":"v1","metadata":{"name":"#));
        assert!(got.contains(&format!("\"resourceVersion\":\"{}\"", start + 1 + i as u64)));
    }
    // Then live changes.
    fake.set_count("demo", "job-1.7t2vv", 2);
    let live = w.expect_frame(&fake, "MODIFIED", "demo", "job-1.7t2vv");
    assert!(live.starts_with(r#"{"type":"MODIFIED","object":{"kind":"Event","apiVersion":"v1","#));
}

#[test]
fn watch_from_r_sends_only_later_changes_then_live_ones() {
    let fake = FakeApiServer::start(Options::default());
    fake.create("ns", "old", r#"{"reason":"Old"}"#);
    let r = fake.current_rv();
    fake.create("ns", "new", r#"{"reason":"New","count":1}"#);
    let deleted_rv = fake.delete("ns", "old");
    let mut w = get(
        &fake,
        &format!("/api/v1/events?watch=true&resourceVersion={r}"),
    );
    let l1 = w.expect_frame(&fake, "ADDED", "ns", "new");
    let l2 = w.line();
    assert!(l2.starts_with(r#"{"type":"DELETED","object":{"kind":"Event","apiVersion":"v1","metadata":{"name":"old","namespace":"ns","#));
    assert!(l2.contains(&format!("\"resourceVersion\":\"{deleted_rv}\"")));
    assert!(l2.ends_with(r#""reason":"Old"}}"#));
    // Byte-exact preservation of the given fields, metadata first.
    assert!(l1.ends_with(r#","reason":"New","count":1}}"#));
    fake.create("ns", "live", r#"{"reason":"Live"}"#);
    w.expect_frame(&fake, "ADDED", "ns", "live");
}

#[test]
fn watch_without_version_or_from_zero_starts_with_synthetic_added_for_current_objects() {
    let fake = FakeApiServer::start(Options::default());
    fake.create("b", "x", r#"{"reason":"X"}"#);
    fake.create("a", "y", r#"{"reason":"Y"}"#);
    fake.create("a", "z", r#"{"reason":"Z"}"#);
    fake.set_count("a", "y", 3);
    fake.delete("a", "z");
    for q in ["watch=1", "watch=1&resourceVersion=0"] {
        let mut w = get(&fake, &format!("/api/v1/events?{q}"));
        w.expect_frame(&fake, "ADDED", "a", "y");
        w.expect_frame(&fake, "ADDED", "b", "x");
        fake.set_count("b", "x", 2);
        w.expect_type("MODIFIED");
    }
}

#[test]
fn send_initial_events_ends_with_the_initial_events_end_bookmark() {
    let fake = FakeApiServer::start(Options::default());
    fake.create("a", "y", r#"{"reason":"Y"}"#);
    let mut w = get(
        &fake,
        "/api/v1/events?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
    );
    w.expect_type("ADDED");
    // The captured end bookmark, with this server's resourceVersion.
    let captured = fixture("watchlist.jsonl")
        .lines()
        .find(|l| l.contains("k8s.io/initial-events-end"))
        .unwrap()
        .replace("\"211\"", &format!("\"{}\"", fake.current_rv()));
    assert_eq!(w.line(), captured);
}

#[test]
fn expired_watch_version_gives_200_and_the_captured_error_frame() {
    let fake = FakeApiServer::start(Options::default());
    let r = fake.create("ns", "a", r#"{"reason":"A"}"#);
    fake.create("ns", "b", r#"{"reason":"B"}"#);
    fake.compact();
    assert_eq!(
        body_of(
            &fake,
            &format!("/api/v1/events?watch=1&resourceVersion={r}"),
            200
        ),
        fixture("raw-watch-expired.jsonl")
    );
    assert_eq!(
        format!("{WATCH_EXPIRED_FRAME}\n"),
        fixture("raw-watch-expired.jsonl")
    );
    // Versions older than the initial one are expired too; the compaction point itself is not.
    let c = fake.compacted_rv();
    assert_eq!(c, fake.current_rv());
    let mut w = watch_from(&fake, c, "");
    fake.create("ns", "c", r#"{"reason":"C"}"#);
    w.expect_type("ADDED");
    let w = get(&fake, "/api/v1/events?watch=1&resourceVersion=1");
    assert_eq!(w.body(), fixture("raw-watch-expired.jsonl"));
}

#[test]
fn timeout_seconds_ends_the_stream_cleanly() {
    let fake = FakeApiServer::start(Options::default());
    let t = Instant::now();
    let mut w = get(&fake, "/api/v1/events?watch=1&timeoutSeconds=1");
    w.expect_end();
    let e = t.elapsed();
    assert!(
        e >= Duration::from_millis(900) && e < Duration::from_secs(5),
        "{e:?}"
    );
    assert_eq!(fake.open_watch_count(), 0);
}

#[test]
fn bookmarks_only_when_configured_and_allowed() {
    let fake = FakeApiServer::start(Options {
        bookmark_interval: Some(Duration::from_millis(200)),
        ..Options::default()
    });
    fake.create("ns", "a", r#"{"reason":"A"}"#);
    let rv = fake.current_rv();
    let mut w = get(
        &fake,
        &format!("/api/v1/events?watch=1&allowWatchBookmarks=true&resourceVersion={rv}"),
    );
    // The end bookmark's shape (`watchlist.jsonl`) without the annotation.
    assert_eq!(
        w.line(),
        format!(
            r#"{{"type":"BOOKMARK","object":{{"kind":"Event","apiVersion":"v1","metadata":{{"resourceVersion":"{rv}"}},"involvedObject":{{}},"source":{{}},"firstTimestamp":null,"lastTimestamp":null,"eventTime":null,"reportingComponent":"","reportingInstance":""}}}}"#
        )
    );
    // Without allowWatchBookmarks: nothing within a second, then the timeout end.
    let mut w = watch_from(&fake, rv, "&timeoutSeconds=1");
    w.expect_end();
    // Default options: no bookmark either, even when allowed.
    let quiet = FakeApiServer::start(Options::default());
    let mut w = get(
        &quiet,
        "/api/v1/events?watch=1&allowWatchBookmarks=true&timeoutSeconds=1",
    );
    w.expect_end();
    // On demand.
    let mut w = get(&quiet, "/api/v1/events?watch=1&allowWatchBookmarks=true");
    assert!(quiet.wait_for_watches(1, Duration::from_secs(5)));
    quiet.send_bookmark();
    w.expect_type("BOOKMARK");
}

// ---------------------------------------------------------------------------------------------
// Authentication and TLS
// ---------------------------------------------------------------------------------------------

#[test]
fn bearer_token_auth_answers_like_the_real_server() {
    let fake = FakeApiServer::start(Options {
        token: Some("s3cret".into()),
        ..Options::default()
    });
    let r = list_on(plain(&fake), &[("User-Agent", "curl/8.5.0")]).unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.body(), fixture("raw-unauthorized.json"));
    let r = list_on(plain(&fake), &[("User-Agent", "kube-event-pipe")]).unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"events is forbidden: User \"system:anonymous\" cannot list resource \"events\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"events"},"code":403}
"#
    );
    let r = list_on(plain(&fake), &[("Authorization", "Bearer wrong")]).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}\n"
    );
    let r = list_on(plain(&fake), &[("Authorization", "Bearer s3cret")]).unwrap();
    assert_eq!(r.status, 200);
    let reqs = fake.requests();
    assert_eq!(
        reqs.iter().map(|r| r.status.unwrap()).collect::<Vec<_>>(),
        [403, 403, 401, 200]
    );
    assert_eq!(reqs[3].authorization.as_deref(), Some("Bearer s3cret"));
}

#[test]
fn tls_with_the_generated_ca_and_client_certificates() {
    let fake = FakeApiServer::start(Options {
        tls: true,
        token: Some("t".into()),
        client_auth: ClientAuth::Required,
        ..Options::default()
    });
    fake.create("ns", "a", r#"{"reason":"A"}"#);
    assert!(fake.url().starts_with("https://127.0.0.1:"));
    let ca = fake.ca_pem().unwrap();
    let client = Some((
        fake.client_cert_pem().unwrap(),
        fake.client_key_pem().unwrap(),
    ));
    // With the client certificate: authenticated without a token.
    let r = list_on(tls(&fake, tls_config(&ca, client.clone())), &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body().contains("\"name\":\"a\""));
    // Without one: the handshake is refused.
    let before = fake.tls_handshake_failures();
    assert!(list_on(tls(&fake, tls_config(&ca, None)), &[]).is_err());
    // The server counts the failure in its own task, possibly after the client saw it.
    assert!(
        support::daemon::wait_until(Duration::from_secs(5), || fake.tls_handshake_failures()
            == before + 1),
        "handshake failures: {}",
        fake.tls_handshake_failures()
    );
    // A client trusting another CA refuses the server.
    let other = FakeApiServer::start(Options {
        tls: true,
        ..Options::default()
    });
    assert!(
        list_on(
            tls(&fake, tls_config(&other.ca_pem().unwrap(), client)),
            &[],
        )
        .is_err()
    );
    // Optional client auth: no certificate means anonymous.
    let optional = FakeApiServer::start(Options {
        tls: true,
        client_auth: ClientAuth::Optional,
        ..Options::default()
    });
    let r = list_on(
        tls(&optional, tls_config(&optional.ca_pem().unwrap(), None)),
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 403);
}

#[test]
fn kubeconfig_text_has_the_expected_fields() {
    let fake = FakeApiServer::start(Options {
        tls: true,
        ..Options::default()
    });
    let kc = fake.kubeconfig(Auth::ClientCert);
    assert!(kc.contains(&format!("server: https://127.0.0.1:{}\n", fake.port())));
    for f in [
        "certificate-authority-data: ",
        "client-certificate-data: ",
        "client-key-data: ",
    ] {
        let line = kc.lines().find(|l| l.trim_start().starts_with(f)).unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(line.trim_start().trim_start_matches(f))
            .unwrap();
        assert!(String::from_utf8(pem).unwrap().starts_with("-----BEGIN "));
    }
    let plain = FakeApiServer::start(Options::default());
    let kc = plain.kubeconfig(Auth::Token("abc".into()));
    assert!(kc.contains(&format!("server: http://127.0.0.1:{}\n", plain.port())));
    assert!(kc.contains("token: \"abc\""));
    assert!(!kc.contains("certificate-authority-data"));
}

/// kube-rs itself loads the written kubeconfig, lists with pages and watches, over TLS, with a
/// token and with a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_client_works_against_the_fake() {
    use futures_util::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::Event;
    use kube::api::{Api, ListParams, WatchEvent, WatchParams};

    for (client_auth, auth) in [
        (ClientAuth::None, Auth::Token("s3cret".into())),
        (ClientAuth::Required, Auth::ClientCert),
    ] {
        let fake = FakeApiServer::start(Options {
            tls: true,
            token: Some("s3cret".into()),
            client_auth,
            ..Options::default()
        });
        fake.create_realistic(0..5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        fake.write_kubeconfig(&path, auth.clone());
        let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let api: Api<Event> = Api::all(client);
        let p1 = api.list(&ListParams::default().limit(2)).await.unwrap();
        assert_eq!(p1.items.len(), 2, "{auth:?}");
        assert_eq!(p1.metadata.remaining_item_count, Some(3));
        let p2 = api
            .list(
                &ListParams::default()
                    .limit(10)
                    .continue_token(p1.metadata.continue_.as_deref().unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(p2.items.len(), 3);
        assert_eq!(p2.metadata.continue_, None);

        let rv = fake.current_rv().to_string();
        let mut stream = api
            .watch(&WatchParams::default().timeout(10), &rv)
            .await
            .unwrap()
            .boxed();
        let (ns, name) = realistic_key(3);
        fake.set_count(&ns, &name, 77);
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Modified(e) => {
                assert_eq!(e.count, Some(77));
                assert_eq!(e.metadata.name.as_deref(), Some(name.as_str()));
            }
            other => panic!("unexpected {other:?}"),
        }
        // An expired version: kube-rs sees the in-stream 410.
        fake.compact();
        let mut stream = api
            .watch(&WatchParams::default(), "101")
            .await
            .unwrap()
            .boxed();
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Error(e) => assert_eq!(e.code, 410),
            other => panic!("unexpected {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

#[test]
fn drop_watches_aborts_connections_with_or_without_half_a_frame() {
    let fake = FakeApiServer::start(Options::default());
    fake.create("ns", "a", r#"{"reason":"A"}"#);
    let mut w = get(&fake, "/api/v1/events?watch=1");
    w.expect_type("ADDED");
    fake.drop_watches(false);
    let e = w.next_line().err().expect("aborted, not a clean end");
    assert_ne!(e.kind(), io::ErrorKind::WouldBlock);
    assert!(w.pending.is_empty());

    let mut w = get(&fake, "/api/v1/events?watch=1");
    w.expect_type("ADDED");
    fake.drop_watches(true);
    assert!(w.next_line().is_err());
    assert!(!w.pending.is_empty(), "half a frame was written");
    assert!(!w.pending.contains(&b'\n'));
    assert!(serde_json::from_slice::<serde_json::Value>(&w.pending).is_err());
    // The server still serves new watches.
    let mut w = get(&fake, "/api/v1/events?watch=1");
    w.expect_type("ADDED");
}

#[test]
fn stall_holds_watches_and_new_requests_until_cleared() {
    let fake = FakeApiServer::start(Options::default());
    let mut w = open_watch(&fake);
    fake.set_stalled(true);
    fake.create("ns", "a", r#"{"reason":"A"}"#);
    w.set_timeout(Duration::from_millis(700));
    let e = w.next_line().err().expect("nothing while stalled");
    assert!(matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ));
    // A new request gets no answer either.
    let (mut s, tcp) = plain(&fake);
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1];
    let e = s.read(&mut buf).expect_err("no answer while stalled");
    assert!(matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ));
    assert_eq!(fake.list_request_count(), 1);
    assert_eq!(fake.requests()[1].status, None);
    fake.set_stalled(false);
    w.set_timeout(Duration::from_secs(10));
    w.expect_type("ADDED");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(s.read(&mut buf).unwrap(), 1);
    assert_eq!(&buf, b"H");
}

#[test]
fn malformed_frames_and_in_stream_410_reach_open_watches_in_order() {
    let fake = FakeApiServer::start(Options::default());
    let mut w = open_watch(&fake);
    fake.create("ns", "a", r#"{"reason":"A"}"#);
    fake.inject_malformed_frame();
    fake.inject_watch_line("not json at all");
    fake.create("ns", "b", r#"{"reason":"B"}"#);
    fake.expire_watches();
    w.expect_type("ADDED");
    assert_eq!(w.line(), MALFORMED_FRAME);
    assert_eq!(w.line(), "not json at all");
    w.expect_type("ADDED");
    assert_eq!(w.line(), WATCH_EXPIRED_FRAME);
    w.expect_end();
}

#[test]
fn injected_failures_answer_the_next_requests_then_stop() {
    let fake = FakeApiServer::start(Options::default());
    fake.fail_next(2, Failure::InternalError);
    for _ in 0..2 {
        let body = body_of(&fake, "/api/v1/events", 500);
        assert!(body.contains("\"reason\":\"InternalError\""));
    }
    assert_eq!(get(&fake, "/api/v1/events").status, 200);

    fake.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after_secs: 3,
        },
    );
    let r = get(&fake, "/api/v1/events");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(
        r.body(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Too many requests, please try again later.\",\"reason\":\"TooManyRequests\",\"details\":{\"retryAfterSeconds\":3},\"code\":429}\n"
    );

    fake.fail_next_for(Target::Watch, 1, Failure::ServiceUnavailable);
    assert_eq!(get(&fake, "/api/v1/events").status, 200);
    let body = body_of(&fake, "/api/v1/events?watch=1&timeoutSeconds=1", 503);
    assert!(body.contains("\"code\":503"));
    expect_empty_ok(&fake, "/api/v1/events?watch=1&timeoutSeconds=1");
}

// ---------------------------------------------------------------------------------------------
// Request log, other paths, objects
// ---------------------------------------------------------------------------------------------

#[test]
fn request_log_tells_lists_from_watches() {
    let fake = FakeApiServer::start(Options::default());
    assert_eq!(get(&fake, "/api/v1/events?limit=500").status, 200);
    let mut w = get(
        &fake,
        "/api/v1/events?watch=true&allowWatchBookmarks=true&resourceVersion=100&timeoutSeconds=1",
    );
    w.expect_end();
    assert_eq!(
        body_of(&fake, "/api/v1/pods", 404),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"the server could not find the requested resource\",\"reason\":\"NotFound\",\"details\":{},\"code\":404}\n"
    );
    assert_eq!(fake.list_request_count(), 1);
    assert_eq!(fake.watch_request_count(), 1);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[0].is_list() && !reqs[0].is_watch());
    assert_eq!(reqs[1].param("resourceVersion"), Some("100"));
    assert_eq!(reqs[1].param("allowWatchBookmarks"), Some("true"));
    assert_eq!(reqs[1].path, "/api/v1/events");
    assert!(!reqs[2].is_list());
    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[test]
fn create_patch_and_series_keep_bytes_and_order() {
    let fake = FakeApiServer::start(Options::default());
    let fields = r#"{"involvedObject":{"kind":"Pod","namespace":"demo","name":"web"},"reason":"BackOff","message":"é \"quoted\" \u00e9","count":1,"type":"Warning","eventTime":null}"#;
    let rv = fake.create("demo", "web.1", fields);
    let obj = fake.object("demo", "web.1").unwrap();
    let meta = raw_member(&obj, "metadata").unwrap();
    assert_eq!(
        keys(&meta),
        [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "creationTimestamp"
        ]
    );
    assert!(meta.starts_with(r#"{"name":"web.1","namespace":"demo","uid":""#));
    assert!(meta.contains(&format!("\"resourceVersion\":\"{rv}\"")));
    assert_eq!(keys(&obj)[0], "metadata");
    assert!(obj.ends_with(&fields[1..]), "{obj}");
    // patch: replace in place, add new core fields where the real server puts them.
    fake.patch(
        "demo",
        "web.1",
        r#"{"count":2,"reportingComponent":"kubelet","action":"Pull"}"#,
    );
    let obj = fake.object("demo", "web.1").unwrap();
    assert_eq!(
        keys(&obj),
        [
            "metadata",
            "involvedObject",
            "reason",
            "message",
            "count",
            "type",
            "eventTime",
            "action",
            "reportingComponent"
        ]
    );
    assert!(obj.contains("\"count\":2,"));
    fake.set_series_count("demo", "web.1", 4);
    let obj = fake.object("demo", "web.1").unwrap();
    assert!(obj.contains(r#""eventTime":null,"series":{"count":4,"lastObservedTime":""#));
    fake.set_series_count("demo", "web.1", 5);
    assert!(
        fake.object("demo", "web.1")
            .unwrap()
            .contains(r#""series":{"count":5,"#)
    );
    assert_eq!(
        fake.object_line("demo", "web.1"),
        format!(
            "{{\"kind\":\"Event\",\"apiVersion\":\"v1\",{}",
            &fake.object("demo", "web.1").unwrap()[1..]
        )
    );
    assert_eq!(fake.len(), 1);
    fake.delete("demo", "web.1");
    assert!(fake.is_empty());
    assert!(fake.object("demo", "web.1").is_none());
}

#[test]
fn realistic_events_are_about_a_kilobyte_and_spread_over_namespaces() {
    let fake = FakeApiServer::start(Options::default());
    fake.create_realistic(0..200);
    assert_eq!(fake.len(), 200);
    let lines = fake.object_lines();
    let mut namespaces = std::collections::BTreeSet::new();
    for l in &lines {
        assert!((700..1400).contains(&l.len()), "{} bytes: {l}", l.len());
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let msg = v["message"].as_str().unwrap();
        assert!(
            (90..=220).contains(&msg.len()),
            "{} byte message: {msg}",
            msg.len()
        );
        namespaces.insert(v["metadata"]["namespace"].as_str().unwrap().to_string());
    }
    assert!(namespaces.len() >= 20);
    assert_eq!(realistic_event(7), realistic_event(7));
    assert_ne!(realistic_key(7), realistic_key(8));
}

/// `--encode-lists` (benchmarks) serves the same events, each encoded from a decoded object
/// as kube-apiserver does: keys in k8s-openapi's order and absent fields omitted rather than
/// null, but nothing else changed.
#[test]
fn encoded_lists_serve_the_same_events_encoded_per_request() {
    fn without_nulls(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => m
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
            serde_json::Value::Array(a) => a.into_iter().map(without_nulls).collect(),
            v => v,
        }
    }
    let stored = fake_with_fixture_list(Options::default());
    let encoded = fake_with_fixture_list(Options {
        encode_lists: true,
        ..Options::default()
    });
    for f in [&stored, &encoded] {
        f.create_realistic(0..20);
    }
    let a = items(&get(&stored, "/api/v1/events?limit=500").body());
    let b = items(&get(&encoded, "/api/v1/events?limit=500").body());
    assert_eq!(a.len(), 27);
    assert_eq!(b.len(), a.len());
    for (a, b) in a.iter().zip(&b) {
        assert_eq!(ns_name(a), ns_name(b));
        assert_ne!(keys(a), keys(b), "not encoded again: {b}");
        assert!(!keys(b).contains(&"kind".to_string()), "{b}");
        let parse = |s: &str| without_nulls(serde_json::from_str(s).unwrap());
        assert_eq!(parse(a), parse(b));
    }
}

// ---------------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------------

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";

/// A Lease request as the capture's client sent it (User-Agent `capture`).
fn lease_request(fake: &FakeApiServer, method: &str, target: &str, body: &str) -> (u16, String) {
    let headers = [
        ("User-Agent", "capture"),
        ("Content-Type", "application/json"),
    ];
    let http = request_with_body(plain(fake), method, target, &headers, body.as_bytes()).unwrap();
    let status = http.status;
    (status, http.body().trim_end().to_string())
}

/// The values a server makes up itself (uid, resourceVersion, timestamps of the write)
/// replaced by `X`.
fn norm_lease(s: &str) -> String {
    let mut out = s.to_string();
    for key in ["uid", "resourceVersion", "creationTimestamp", "time"] {
        let pat = format!("\"{key}\":\"");
        let mut from = 0;
        while let Some(i) = out[from..].find(&pat) {
            let start = from + i + pat.len();
            let end = start + out[start..].find('"').unwrap();
            out.replace_range(start..end, "X");
            from = start + 1;
        }
    }
    out
}

fn status_of(fixture_name: &str) -> u16 {
    fixture(&format!("{fixture_name}.status"))
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn json_field(body: &str, pointer: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v.pointer(pointer)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

fn lease_rv(body: &str) -> u64 {
    json_field(body, "/metadata/resourceVersion")
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// An answer with the capture's status and, but for the values a server makes up, its body.
#[track_caller]
fn assert_like_capture(status: u16, body: &str, capture: &str) {
    assert_eq!(status, status_of(capture));
    assert_eq!(norm_lease(body), norm_lease(fixture(capture).trim_end()));
}

/// An answer with the capture's status and body, byte for byte.
#[track_caller]
fn assert_is_capture(status: u16, body: &str, capture: &str) {
    assert_eq!(status, status_of(capture));
    assert_eq!(body, fixture(capture).trim_end());
}

#[test]
fn leases_answer_create_get_update_and_conflicts_as_the_captures() {
    let fake = FakeApiServer::start(Options::default());
    let create = r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"kube-event-pipe","namespace":"kube-system","annotations":{"example.org/note":"capture"}},"spec":{"holderIdentity":"cp-1","leaseDurationSeconds":15,"acquireTime":"2026-11-30T10:32:00.000000Z","renewTime":"2026-11-30T10:32:00Z","leaseTransitions":0}}"#;
    let (status, created) = lease_request(&fake, "POST", LEASES, create);
    // renewTime was sent without a fraction: stored, like every MicroTime, with six digits.
    assert_like_capture(status, &created, "lease-create.json");
    let rv = lease_rv(&created);
    assert!(rv > fake.compacted_rv(), "from the store's counter: {rv}");

    let (status, again) = lease_request(&fake, "POST", LEASES, create);
    assert_is_capture(status, &again, "lease-create-exists.json");

    let (status, got) = lease_request(&fake, "GET", &format!("{LEASES}/kube-event-pipe"), "");
    assert_like_capture(status, &got, "lease-get.json");
    assert_eq!(got, created);

    let (status, missing) = lease_request(&fake, "GET", &format!("{LEASES}/missing-lease"), "");
    assert_is_capture(status, &missing, "lease-get-missing.json");

    // Take it over: the object read, holder cp-2, one more transition.
    let update = got
        .replace("\"holderIdentity\":\"cp-1\"", "\"holderIdentity\":\"cp-2\"")
        .replace("\"leaseTransitions\":0", "\"leaseTransitions\":1");
    let target = format!("{LEASES}/kube-event-pipe");
    let (status, updated) = lease_request(&fake, "PUT", &target, &update);
    assert_like_capture(status, &updated, "lease-update.json");
    assert!(lease_rv(&updated) > rv);
    assert_eq!(
        json_field(&updated, "/metadata/uid"),
        json_field(&created, "/metadata/uid")
    );

    // The same PUT again carries a stale resourceVersion now.
    let (status, conflict) = lease_request(&fake, "PUT", &target, &update);
    assert_is_capture(status, &conflict, "lease-update-conflict.json");

    // Leases share the events' counter but never show up among them.
    let rv_before = fake.current_rv();
    fake.create("default", "e1", r#"{"reason":"R"}"#);
    assert_eq!(fake.current_rv(), rv_before + 1);
    assert_eq!(fake.len(), 1);
    assert_eq!(
        fake.lease_holder("kube-system", "kube-event-pipe")
            .as_deref(),
        Some("cp-2")
    );
}

#[test]
fn lease_updates_of_a_refused_holder_fail_until_cleared() {
    let fake = FakeApiServer::start(Options::default());
    fake.hold_lease("kube-system", "l", "cp-1", 15);
    let target = format!("{LEASES}/l");
    let (_, got) = lease_request(&fake, "GET", &target, "");
    assert_eq!(json_field(&got, "/spec/holderIdentity"), "cp-1");
    assert_eq!(json_field(&got, "/spec/leaseTransitions"), 0);
    fake.refuse_lease_updates("cp-1");
    let (status, body) = lease_request(&fake, "PUT", &target, &got);
    assert_eq!(status, 500, "{body}");
    // Another holder's update goes through.
    let other = got.replace("\"holderIdentity\":\"cp-1\"", "\"holderIdentity\":\"cp-2\"");
    let (status, updated) = lease_request(&fake, "PUT", &target, &other);
    assert_eq!(status, 200, "{updated}");
    fake.clear_faults();
    let back = updated.replace("\"holderIdentity\":\"cp-2\"", "\"holderIdentity\":\"cp-1\"");
    let (status, _) = lease_request(&fake, "PUT", &target, &back);
    assert_eq!(status, 200);
    // A PUT without a resourceVersion is invalid, as on the real server.
    let (status, body) = lease_request(
        &fake,
        "PUT",
        &target,
        r#"{"metadata":{"name":"l"},"spec":{"holderIdentity":"x"}}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("metadata.resourceVersion"), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Namespaces, field and label selectors
// ---------------------------------------------------------------------------------------------

/// A fake holding the objects a capture of the second set (streaming lists and selectors)
/// starts with (its ADDED frames before the first bookmark), created in resourceVersion order
/// as on the real server.
fn fake_with_capture_state(capture: &str, opts: Options) -> FakeApiServer {
    let fake = FakeApiServer::start(opts);
    let mut objects: Vec<(u64, String)> = fixture(capture)
        .lines()
        .take_while(|l| frame_type(l) == "ADDED")
        .map(|l| {
            let obj = raw_member(l, "object").unwrap();
            let v: serde_json::Value = serde_json::from_str(&obj).unwrap();
            let rv = v["metadata"]["resourceVersion"].as_str().unwrap().parse();
            (rv.unwrap(), obj)
        })
        .collect();
    objects.sort();
    for (_, obj) in objects {
        let (ns, name) = ns_name(&obj);
        fake.create_raw(&ns, &name, &obj);
    }
    fake
}

/// The capture set's five events (three of the set-up, the server's own, one live).
fn fake_with_selection_set() -> FakeApiServer {
    fake_with_capture_state("watchlist-from-rv.jsonl", Options::default())
}

/// `namespace/name` of the events that the selector `sel`, a `param` (field or label
/// selector), selects.
#[track_caller]
fn selected_names(fake: &FakeApiServer, param: &str, sel: &str) -> Vec<String> {
    let r = get(fake, &format!("/api/v1/events?{param}={sel}"));
    assert_eq!(r.status, 200, "{sel}");
    item_names(&r.body())
}

/// The Status that refuses the selector `sel`, a `param`, with a 400.
#[track_caller]
fn refused_selection(fake: &FakeApiServer, param: &str, sel: &str) -> serde_json::Value {
    let r = get(fake, &format!("/api/v1/events?{param}={sel}"));
    assert_eq!(r.status, 400, "{sel}");
    serde_json::from_str(&r.body()).unwrap()
}

/// `namespace/name` of each item of a list body.
fn item_names(body: &str) -> Vec<String> {
    items(body)
        .iter()
        .map(|i| {
            let (ns, name) = ns_name(i);
            format!("{ns}/{name}")
        })
        .collect()
}

#[test]
fn selected_lists_match_the_captures_up_to_resource_versions() {
    let fake = fake_with_selection_set();
    let list_like = |query: &str, capture: &str| {
        let body = body_of(&fake, &format!("/api/v1/events?{query}"), 200);
        assert_eq!(norm(&body), norm(&fixture(capture)), "{query}");
    };
    list_like(
        "fieldSelector=type%3DWarning&limit=500",
        "list-fieldselector-warning.json",
    );
    list_like(
        "fieldSelector=metadata.namespace%21%3Dcapture-a&limit=500",
        "list-fieldselector-not-ns.json",
    );
    list_like(
        "labelSelector=team%3Da&limit=500",
        "list-labelselector.json",
    );
}

#[test]
fn bad_selectors_get_the_captured_400_bodies_on_lists_watches_and_namespaced_paths() {
    let fake = fake_with_selection_set();
    for (query, capture) in [
        (
            "fieldSelector=spec.nodeName%3Dx",
            "list-fieldselector-bad-field.json",
        ),
        (
            "fieldSelector=type%3D%3D%3DWarning%2C%2C",
            "list-fieldselector-bad-syntax.json",
        ),
        (
            "labelSelector=team%20in%20(a",
            "list-labelselector-bad.json",
        ),
    ] {
        for base in [
            "/api/v1/events?limit=500&",
            "/api/v1/events?watch=1&allowWatchBookmarks=true&resourceVersion=0&",
            "/api/v1/events?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion=&",
            "/api/v1/namespaces/capture-b/events?limit=500&",
        ] {
            let r = get(&fake, &format!("{base}{query}"));
            assert_eq!(r.status, 400, "{base}{query}");
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.body(), fixture(capture), "{base}{query}");
        }
    }
}

#[test]
fn streaming_lists_by_field_selector_and_namespace_match_the_captures() {
    let fake = fake_with_selection_set();
    let streaming = "watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion=";
    let captured = fixture_lines("watchlist-fieldselector-warning.jsonl");
    let mut w = get(
        &fake,
        &format!("/api/v1/events?{streaming}&fieldSelector=type%3DWarning"),
    );
    w.expect_lines_like(&captured[..3]);
    // Live: a Normal event never arrives, the Warning one does.
    fake.create(
        "capture-a",
        "web-0.normal",
        r#"{"reason":"NormalAfter","type":"Normal"}"#,
    );
    let live = raw_member(&captured[3], "object").unwrap();
    fake.create_raw("capture-a", "web-0.warning-288b74", &live);
    assert_eq!(norm(&w.line()), norm(&captured[3]));

    let fake = fake_with_selection_set();
    let mut w = get(
        &fake,
        &format!("/api/v1/namespaces/capture-b/events?{streaming}"),
    );
    w.expect_lines_like(fixture("watchlist-namespace.jsonl").lines());
    let recorded = fake.requests();
    assert_eq!(recorded[0].namespace(), Some("capture-b"));
    assert!(recorded[0].is_watch() && !recorded[0].is_list());
}

#[test]
fn field_selectors_follow_the_servers_rules() {
    let fake = FakeApiServer::start(Options::default());
    let ev = |kind: &str, reason: &str, typ: &str, source: &str| {
        format!(
            r#"{{"involvedObject":{{"kind":"{kind}","namespace":"n","name":"x"}},"reason":"{reason}","source":{source},"type":"{typ}","reportingComponent":"ctrl"}}"#
        )
    };
    fake.create(
        "a",
        "pod-pulled",
        &ev("Pod", "Pulled", "Normal", r#"{"component":"kubelet"}"#),
    );
    fake.create(
        "a",
        "pod-backoff",
        &ev("Pod", "BackOff", "Warning", r#"{"component":"kubelet"}"#),
    );
    fake.create("b", "node-ready", &ev("Node", "a,b", "Normal", "{}"));
    let names = |sel: &str| selected_names(&fake, "fieldSelector", sel);
    assert_eq!(
        names("involvedObject.kind%3DPod%2Creason!%3DPulled"),
        ["a/pod-backoff"]
    );
    assert_eq!(names("type%3D%3DWarning"), ["a/pod-backoff"]);
    assert_eq!(names("metadata.namespace!%3Da"), ["b/node-ready"]);
    assert_eq!(names("metadata.name%3Dpod-pulled"), ["a/pod-pulled"]);
    // `source` is the recorder's component, else the reporting controller.
    assert_eq!(names("source%3Dkubelet"), ["a/pod-backoff", "a/pod-pulled"]);
    assert_eq!(names("source%3Dctrl"), ["b/node-ready"]);
    assert_eq!(names("reportingComponent%3Dctrl").len(), 3);
    // An escaped comma belongs to the value; empty terms are ignored.
    assert_eq!(names("reason%3Da%5C%2Cb%2C"), ["b/node-ready"]);
    assert!(names("type%3DWarning%2Ctype%3DNormal").is_empty());
    // A field that is absent equals the empty string.
    assert_eq!(names("involvedObject.uid%3D").len(), 3);
    for (sel, message) in [
        ("type", "invalid selector: 'type'; can't understand 'type'"),
        (
            "reason%3Da%5Cb",
            "invalid field selector: invalid escape sequence: \\b",
        ),
        ("count%3D1", "field label not supported: count"),
    ] {
        let status = refused_selection(&fake, "fieldSelector", sel);
        assert_eq!(status["message"], message, "{sel}");
        assert_eq!(status["reason"], "BadRequest");
    }
}

#[test]
fn label_selectors_take_equality_and_set_based_requirements() {
    let fake = FakeApiServer::start(Options::default());
    for (name, labels) in [
        ("a", r#"{"team":"a","tier":"web"}"#),
        ("b", r#"{"team":"b"}"#),
        ("none", "{}"),
    ] {
        fake.create(
            "ns",
            name,
            &format!(r#"{{"metadata":{{"labels":{labels}}},"reason":"R"}}"#),
        );
    }
    let names = |sel: &str| selected_names(&fake, "labelSelector", sel);
    assert_eq!(names("team%3Da"), ["ns/a"]);
    assert_eq!(names("team%3D%3Db"), ["ns/b"]);
    assert_eq!(names("team!%3Da"), ["ns/b", "ns/none"]);
    assert_eq!(names("team%20in%20(a%2Cb)"), ["ns/a", "ns/b"]);
    assert_eq!(names("team%20notin%20(a)"), ["ns/b", "ns/none"]);
    assert_eq!(names("team"), ["ns/a", "ns/b"]);
    assert_eq!(names("!team"), ["ns/none"]);
    assert_eq!(names("team%3Da%2Ctier%3Dweb"), ["ns/a"]);
    assert_eq!(names("team%3Db%2Ctier%3Dweb"), Vec::<String>::new());
    for (sel, message) in [
        ("team%3Da%2C", "found '', expected: identifier after ','"),
        ("a%3Db%20c", "found 'c', expected: ',' or 'end of string'"),
        (
            "team%20in%20b",
            "unable to parse requirement: found 'b' expected: '('",
        ),
        (
            "a%20b",
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
        ),
    ] {
        let status = refused_selection(&fake, "labelSelector", sel);
        assert_eq!(status["message"], message, "{sel}");
    }
}

#[test]
fn a_selected_watch_sees_objects_come_into_and_leave_its_selection() {
    let fake = FakeApiServer::start(Options::default());
    let mut w = watch_from(&fake, fake.current_rv(), "&labelSelector=team%3Da");
    fake.create(
        "ns",
        "other",
        r#"{"metadata":{"labels":{"team":"b"}},"reason":"R"}"#,
    );
    fake.create(
        "ns",
        "mine",
        r#"{"metadata":{"labels":{"team":"a"}},"reason":"R"}"#,
    );
    w.expect_named("ADDED", "mine");
    fake.patch("ns", "other", r#"{"metadata":{"labels":{"team":"a"}}}"#);
    w.expect_named("ADDED", "other");
    fake.patch("ns", "mine", r#"{"metadata":{"labels":{"team":"c"}}}"#);
    w.expect_named("DELETED", "mine");
    fake.set_count("ns", "other", 2);
    w.expect_type("MODIFIED");
}

#[test]
fn selected_lists_page_through_matching_events_only() {
    let fake = FakeApiServer::start(Options::default());
    for i in 0..7 {
        let typ = if i % 2 == 0 { "Warning" } else { "Normal" };
        fake.create("p", &format!("e{i}"), &format!(r#"{{"type":"{typ}"}}"#));
    }
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut target =
            "/api/v1/namespaces/p/events?limit=2&fieldSelector=type%3DWarning".to_string();
        if !token.is_empty() {
            target.push_str(&format!("&continue={token}"));
        }
        let body = get(&fake, &target).body();
        pages += 1;
        names.extend(item_names(&body));
        let meta = raw_member(&body, "metadata").unwrap();
        assert!(raw_member(&meta, "remainingItemCount").is_none(), "{meta}");
        match raw_member(&meta, "continue") {
            Some(t) => token = t.trim_matches('"').to_string(),
            None => break,
        }
    }
    assert_eq!(names, ["p/e0", "p/e2", "p/e4", "p/e6"]);
    assert_eq!(pages, 2);
}

// ---------------------------------------------------------------------------------------------
// Streaming lists
// ---------------------------------------------------------------------------------------------

const STREAMING: &str = "/api/v1/events?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion=";

#[test]
fn streaming_list_sends_the_state_in_key_order_then_the_end_bookmark_then_live_changes() {
    let fake = fake_with_capture_state("watchlist.jsonl", Options::default());
    let captured = fixture_lines("watchlist.jsonl");
    let mut w = get(&fake, STREAMING);
    assert_eq!(w.status, 200);
    assert_eq!(w.header("transfer-encoding"), Some("chunked"));
    w.expect_lines_like(&captured[..5]);
    let live = raw_member(&captured[5], "object").unwrap();
    let (ns, name) = ns_name(&live);
    fake.create_raw(&ns, &name, &live);
    assert_eq!(norm(&w.line()), norm(&captured[5]));
    // The end bookmark carries the snapshot's version; later changes come after it.
    assert!(captured[4].contains("\"resourceVersion\":\"211\""));
}

#[test]
fn streaming_list_without_bookmarks_has_no_end_bookmark_like_the_capture() {
    let fake = fake_with_selection_set();
    let mut w = get(
        &fake,
        "/api/v1/events?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=&timeoutSeconds=1",
    );
    w.expect_lines_like(fixture("watchlist-no-bookmarks.jsonl").lines());
    w.expect_end();
}

#[test]
fn streaming_list_refusals_are_the_captured_422_bodies() {
    let fake = FakeApiServer::start(Options {
        watch_list: false,
        ..Options::default()
    });
    assert_eq!(
        body_of(&fake, STREAMING, 422),
        fixture("watchlist-gate-off.json")
    );

    let fake = FakeApiServer::start(Options::default());
    assert_eq!(
        body_of(
            &fake,
            "/api/v1/events?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersion=",
            422
        ),
        fixture("watchlist-no-match.json")
    );
    assert_eq!(
        body_of(
            &fake,
            "/api/v1/events?sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=",
            422
        ),
        fixture("watchlist-on-list.json")
    );
    // A plain watch and a plain list are not affected by the gate.
    let off = FakeApiServer::start(Options {
        watch_list: false,
        ..Options::default()
    });
    assert_eq!(get(&off, "/api/v1/events?limit=500").status, 200);
    expect_empty_ok(
        &off,
        "/api/v1/events?watch=1&resourceVersion=0&timeoutSeconds=1",
    );
}

#[test]
fn a_cut_streaming_list_ends_or_holds_after_its_first_events() {
    let fake = fake_with_numbered(Options::default(), 3);
    fake.cut_next_streaming_list(2, false);
    let mut w = get(&fake, STREAMING);
    w.expect_type("ADDED");
    w.expect_type("ADDED");
    w.expect_end();

    fake.cut_next_streaming_list(1, true);
    let mut w = get(&fake, STREAMING);
    w.expect_type("ADDED");
    fake.create("a", "live", r#"{"reason":"R"}"#);
    w.set_timeout(Duration::from_millis(500));
    assert!(w.next_line().is_err(), "a held streaming list stays silent");
    // The fault applied once: the next streaming list is whole.
    let mut w = get(&fake, STREAMING);
    for _ in 0..4 {
        w.expect_type("ADDED");
    }
    w.expect_type("BOOKMARK");
    assert_eq!(fake.streaming_list_count(), 3);
    assert_eq!(fake.list_request_count(), 0);
}

#[test]
fn each_list_page_costs_the_configured_delay() {
    let fake = fake_with_numbered(
        Options {
            list_page_delay: Duration::from_millis(150),
            list_item_delay: Duration::from_millis(10),
            ..Options::default()
        },
        10,
    );
    let t = Instant::now();
    assert_eq!(items(&get(&fake, "/api/v1/events?limit=5").body()).len(), 5);
    assert_took_at_least(t, Duration::from_millis(200));
}

/// At the real server's pace the fake also chunks like it: kube-apiserver flushes every
/// watch event on its own, so a client reads one event per HTTP chunk, initial or live, even
/// when several are created at once.
#[test]
fn at_a_real_servers_pace_every_watch_event_is_its_own_chunk() {
    let fake = paced_fake(Duration::from_micros(21), 200);
    let mut w = get(&fake, STREAMING);
    let mut types = Vec::new();
    while types.last().map(String::as_str) != Some("BOOKMARK") {
        let chunk = w.next_chunk().unwrap().expect("a chunk");
        let text = String::from_utf8(chunk).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.ends_with('\n'), "{text}");
        types.push(frame_type(text.trim_end()));
    }
    assert_eq!(types.len(), 201);
    assert!(types[..200].iter().all(|t| t == "ADDED"));
    for i in 0..3 {
        fake.create("a", &format!("live{i}"), r#"{"reason":"R"}"#);
    }
    for i in 0..3 {
        let chunk = String::from_utf8(w.next_chunk().unwrap().expect("a chunk")).unwrap();
        assert_eq!(chunk.matches('\n').count(), 1, "{chunk}");
        assert!(chunk.contains(&format!("\"live{i}\"")), "{chunk}");
    }
}

#[test]
fn initial_events_can_be_paced_like_a_real_server() {
    let fake = paced_fake(Duration::from_millis(30), 10);
    let t = Instant::now();
    let mut w = get(&fake, STREAMING);
    for _ in 0..10 {
        w.expect_type("ADDED");
    }
    w.expect_type("BOOKMARK");
    assert_took_at_least(t, Duration::from_millis(300));
}
