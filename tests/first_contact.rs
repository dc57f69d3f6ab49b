//! First contact: what a newcomer sees when the API server cannot be reached, is not trusted,
//! or refuses the credentials or the permissions, at the default log level. Each failure is one
//! line with the server, the cause chain and what to do (a warning while a retry may help, an
//! error when a person must act), STATUS= says what the daemon waits for, kube's own ERROR
//! lines stay hidden, and a first start that gets no answer leaves no file behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use support::daemon::{Daemon, Layout, command, lines, wait_until};
use support::fake_apiserver::{Auth, FakeApiServer, Options};
use support::notify::Listener;

const T: Duration = Duration::from_secs(30);

/// Runs the daemon as a newcomer would: default log level, this layout's kubeconfig, state
/// directory and destination (neither exists yet), systemd's NOTIFY_SOCKET (the listener
/// returned).
fn start(layout: &Layout) -> (Listener, Daemon) {
    let listener = Listener::new(layout);
    // As the README says to: a kubeconfig others can read gets a warning of its own.
    std::fs::set_permissions(layout.kubeconfig(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = newcomer_args(layout);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = command(&args);
    cmd.env("NOTIFY_SOCKET", &listener.path)
        .stdout(Stdio::null());
    let d = Daemon::spawn(&mut cmd);
    (listener, d)
}

/// The layout's kubeconfig, state directory and destination; the default log level.
fn newcomer_args(layout: &Layout) -> Vec<String> {
    let mut args = layout.args();
    args.truncate(args.len() - 2);
    assert_eq!(args[args.len() - 2], "--destination");
    args
}

/// The WARN and ERROR lines of the log, without their timestamps.
fn problems(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("Z ").map(|(_, rest)| rest.trim_start()))
        .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR"))
        .map(str::to_string)
        .collect()
}

/// The one problem line, after waiting for it, and a little longer for repeats that must not
/// come (with a transient failure, at least two more attempts happen meanwhile).
fn the_problem_line(d: &Daemon, needle: &str) -> String {
    d.expect_log(needle);
    std::thread::sleep(Duration::from_secs(3));
    let log = d.stderr();
    let found = problems(&log);
    assert_eq!(found.len(), 1, "one line per distinct failure: {log}");
    assert!(
        !log.contains("failed with error"),
        "kube's own ERROR line: {log}"
    );
    found[0].clone()
}

/// The latest STATUS= the daemon sent.
fn status(listener: &Listener) -> String {
    assert!(
        wait_until(T, || !listener.lines_with("STATUS=").is_empty()),
        "no STATUS"
    );
    listener.lines_with("STATUS=").pop().unwrap().1
}

/// The latest STATUS= ends with `tail`.
fn assert_status_ends_with(listener: &Listener, tail: &str) {
    assert!(
        status(listener).ends_with(tail),
        "want a STATUS ending {tail:?}: {:?}",
        listener.messages()
    );
}

/// Nothing but what the test put in the layout directory: no state directory, no destination.
fn assert_nothing_created(layout: &Layout) {
    let mut names: Vec<String> = std::fs::read_dir(layout.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.retain(|n| n != "notify.sock");
    assert_eq!(names, ["kubeconfig"], "files left behind");
}

/// Still running (retrying) after the first failure.
fn assert_still_running(d: &mut Daemon) {
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.stderr());
}

/// Still retrying after the failure, it stops cleanly on SIGTERM, with nothing created.
fn assert_waits_and_leaves_nothing(mut d: Daemon, layout: &Layout) {
    assert_still_running(&mut d);
    stop_cleanly(d);
    assert_nothing_created(layout);
}

fn stop_cleanly(d: Daemon) {
    let (status, log) = d.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("stopped before the API server answered"),
        "{log}"
    );
}

fn write_kubeconfig(path: &Path, server: &str, extra_cluster: &str) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n{extra_cluster}\
             contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n\
             current-context: ctx\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_closed_port_is_connection_refused_with_the_url_retried_and_leaves_nothing_behind() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let layout = Layout::new();
    write_kubeconfig(
        &layout.kubeconfig(),
        &format!("http://127.0.0.1:{port}"),
        "",
    );
    let (listener, d) = start(&layout);
    let line = the_problem_line(&d, "connection refused");
    let want = format!(
        "WARN connecting to the API server failed: connection refused by http://127.0.0.1:{port}/ \
         (ServiceError: client error (Connect): tcp connect error: Connection refused (os error \
         111)); nothing listens there: is the API server running, and is the kubeconfig's server \
         address right?; retrying in "
    );
    assert!(line.starts_with(&want), "{line}\nwant: {want}");
    assert_status_ends_with(
        &listener,
        &format!(
            "; retrying: connecting to the API server: connection refused by http://127.0.0.1:{port}/"
        ),
    );
    assert_nothing_created(&layout);
    assert_waits_and_leaves_nothing(d, &layout);
}

/// A fake API server with TLS, its certificate from a CA of its own.
fn tls_server() -> FakeApiServer {
    FakeApiServer::start(Options {
        tls: true,
        ..Options::default()
    })
}

#[test]
fn a_server_certificate_from_an_unknown_authority_is_an_error_saying_so() {
    let api = tls_server();
    let other = tls_server();
    let layout = Layout::new();
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let kubeconfig = api
        .kubeconfig(Auth::None)
        .replace(&b64(api.ca_pem().unwrap()), &b64(other.ca_pem().unwrap()));
    std::fs::write(layout.kubeconfig(), kubeconfig).unwrap();
    let (listener, d) = start(&layout);
    let url = format!("{}/", api.url());
    let line = the_problem_line(&d, "unknown authority");
    assert_eq!(
        line,
        format!(
            "ERROR connecting to the API server failed: TLS: the certificate of {url} is signed \
             by an unknown authority (x509: certificate signed by unknown authority) \
             (ServiceError: client error (Connect): invalid peer certificate: BadSignature); \
             the kubeconfig's certificate-authority(-data) must be the cluster's CA; retrying \
             every 30s failures=1"
        )
    );
    assert_status_ends_with(
        &listener,
        &format!(
            "; waiting for a fix: TLS: the certificate of {url} is signed by an unknown \
             authority (x509: certificate signed by unknown authority)"
        ),
    );
    assert_waits_and_leaves_nothing(d, &layout);
}

#[test]
fn a_server_certificate_for_another_name_is_an_error_saying_so() {
    let api = tls_server();
    let layout = Layout::new();
    let kubeconfig = api.kubeconfig(Auth::None).replace(
        "    certificate-authority-data:",
        "    tls-server-name: apiserver.example\n    certificate-authority-data:",
    );
    std::fs::write(layout.kubeconfig(), kubeconfig).unwrap();
    let (listener, d) = start(&layout);
    let line = the_problem_line(&d, "not valid for that name");
    let url = format!("{}/", api.url());
    assert!(
        line.starts_with(&format!(
            "ERROR connecting to the API server failed: TLS: the certificate of {url} is not \
             valid for that name (ServiceError: client error (Connect): "
        )),
        "{line}"
    );
    assert!(line.contains("apiserver.example"), "{line}");
    assert!(
        line.ends_with(
            "; use a server address the certificate was issued for (as in the cluster's own \
             admin kubeconfig), or set tls-server-name in the kubeconfig; retrying every 30s \
             failures=1"
        ),
        "{line}"
    );
    assert!(status(&listener).contains("; waiting for a fix: TLS: "));
    assert_waits_and_leaves_nothing(d, &layout);
}

/// A fake that accepts `token`, set up by `prepare`, and the daemon started with a kubeconfig
/// that sends `sent`; with the server URL as messages show it and how they name the user.
fn start_with_token(
    token: &str,
    sent: &str,
    prepare: impl FnOnce(&FakeApiServer),
) -> (FakeApiServer, Layout, Listener, Daemon, String, String) {
    let api = FakeApiServer::start(Options {
        token: Some(token.into()),
        ..Options::default()
    });
    prepare(&api);
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::Token(sent.into()));
    let (listener, d) = start(&layout);
    let url = format!("{}/", api.url());
    let who = format!(
        "user \"fake\", context \"fake\", kubeconfig {}",
        layout.kubeconfig().display()
    );
    (api, layout, listener, d, url, who)
}

#[test]
fn an_expired_server_certificate_is_an_error_saying_so() {
    let api = FakeApiServer::start(Options {
        tls: true,
        expired_cert: true,
        ..Options::default()
    });
    let layout = Layout::new();
    api.write_kubeconfig(layout.kubeconfig(), Auth::None);
    let (listener, d) = start(&layout);
    let line = the_problem_line(&d, "has expired");
    let url = format!("{}/", api.url());
    assert!(
        line.starts_with(&format!(
            "ERROR connecting to the API server failed: TLS: the certificate of {url} has \
             expired (ServiceError: client error (Connect): invalid peer certificate: \
             certificate expired: "
        )),
        "{line}"
    );
    assert!(
        line.ends_with(
            "; renew the API server's certificate, or correct this host's clock if it is \
             wrong; retrying every 30s failures=1"
        ),
        "{line}"
    );
    assert_status_ends_with(
        &listener,
        &format!("; waiting for a fix: TLS: the certificate of {url} has expired"),
    );
    assert_waits_and_leaves_nothing(d, &layout);
}

#[test]
fn a_rejected_token_is_one_error_naming_kubeconfig_context_and_user() {
    let (_api, layout, listener, d, url, who) =
        start_with_token("the-right-token", "a-wrong-token", |_| {});
    let line = the_problem_line(&d, "401");
    assert_eq!(
        line,
        format!(
            "ERROR connecting to the API server failed: the API server {url} rejected the \
             credentials of {who} (401 Unauthorized): the token or client certificate is wrong, \
             expired or revoked; put valid credentials for that user in the kubeconfig; \
             retrying every 30s failures=1"
        )
    );
    assert_status_ends_with(
        &listener,
        &format!("; waiting for valid credentials: {url} answered 401 Unauthorized to {who}"),
    );
    assert!(!d.stderr().contains("a-wrong-token"), "the token leaked");
    assert_waits_and_leaves_nothing(d, &layout);
}

#[test]
fn a_forbidden_list_names_the_rbac_manifest_waits_and_goes_on_once_it_is_applied() {
    let sa = "system:serviceaccount:kube-system:kube-event-pipe";
    let (api, layout, listener, mut d, url, who) = start_with_token(
        "sa-token",
        "sa-token",
        |api| {
            api.deny_reading_events(Some(sa));
            api.create(
            "default",
            "before-rbac",
            r#"{"involvedObject":{"kind":"Pod","name":"p"},"reason":"Pulled","message":"m","count":1,"type":"Normal"}"#,
        );
        },
    );
    let line = the_problem_line(&d, "403");
    assert_eq!(
        line,
        format!(
            "ERROR connecting to the API server failed: the API server {url} does not allow \
             {who} to read events (403 Forbidden: events is forbidden: User \"{sa}\" cannot list \
             resource \"events\" in API group \"\" at the cluster scope); grant read access to \
             Events (get, list, watch), e.g. `kubectl apply -f \
             /usr/share/doc/kube-event-pipe/rbac.yaml` for the ServiceAccount it creates; \
             retrying every 30s failures=1"
        )
    );
    let waiting = status(&listener);
    assert!(
        waiting.starts_with("STATUS=connecting; 0 written, 0 skipped, resourceVersion -; ")
            && waiting.ends_with(&format!(
                "; waiting for permission to read events: {url} answered 403 Forbidden: events \
                 is forbidden: User \"{sa}\" cannot list resource \"events\" in API group \"\" \
                 at the cluster scope to {who}; apply /usr/share/doc/kube-event-pipe/rbac.yaml"
            )),
        "{waiting}"
    );
    assert!(listener.lines_with("READY=1").is_empty());
    assert_still_running(&mut d);
    assert_nothing_created(&layout);

    // The RBAC is applied: the next retry (within 30 s) lists, writes and is ready.
    api.deny_reading_events(None);
    assert!(
        wait_until(Duration::from_secs(60), || lines(&layout.out()).len() == 1),
        "{}",
        d.stderr()
    );
    listener.wait_for("READY=1");
    d.expect_log("connecting to the API server works again");
    let log = d.stop_ok();
    assert_eq!(problems(&log).len(), 1, "{log}");
}

#[test]
fn a_start_that_fails_on_the_kubeconfig_exits_2_and_leaves_nothing_behind() {
    let api = FakeApiServer::start(Options::default());
    for (kubeconfig, extra, want) in [
        (None, &[][..], "No such file"),
        (
            Some("clusters: [ not yaml"),
            &[][..],
            "failed to parse kubeconfig YAML",
        ),
        (Some(""), &["--context", "nope"][..], "nope"),
    ] {
        let layout = Layout::new();
        match kubeconfig {
            Some("") => api.write_kubeconfig(layout.kubeconfig(), Auth::None),
            Some(text) => std::fs::write(layout.kubeconfig(), text).unwrap(),
            None => {}
        }
        let mut args = newcomer_args(&layout);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = command(&args).output().unwrap();
        let log = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{log}");
        assert!(log.contains(want), "{log}");
        let left: Vec<_> = std::fs::read_dir(layout.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "kubeconfig")
            .collect();
        assert!(left.is_empty(), "files left behind: {left:?}; {log}");
    }
}
