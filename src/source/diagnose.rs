//! Failures to reach or use the API server, told so that an operator can act on them: what
//! went wrong in the words kubectl uses (connection refused, certificate signed by unknown
//! authority, 403 Forbidden …), which server, the whole cause chain, what to do, and whether
//! waiting helps (a transient problem: a warning, retried) or a person must fix something (an
//! error, retried slowly so that the fix is picked up without a restart).

use std::error::Error as StdError;
use std::io::ErrorKind;

use crate::source::api_error::ApiError;

/// Where the daemon connects and as whom, for messages. Never holds a credential.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    /// The cluster's server URL.
    pub server: String,
    /// The kubeconfig file(s) used, or the in-cluster service account.
    pub kubeconfig: String,
    /// The kubeconfig context, when a kubeconfig was used.
    pub context: Option<String>,
    /// The kubeconfig user (its `users:` entry) of that context.
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Likely to pass by itself (a restarting server, a network hiccup): retried with back-off.
    Transient,
    /// Needs a person (credentials, permissions, certificates, a wrong address).
    NeedsPerson,
}

/// One failure, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// What went wrong and where, the cause chain, and what to do: one line for the log.
    pub text: String,
    /// What the daemon waits for, for systemd's STATUS= (shown by `systemctl status`).
    pub waiting_for: String,
}

impl Problem {
    /// A transient failure described by the caller.
    pub fn transient(text: impl Into<String>) -> Problem {
        let text = text.into();
        Problem {
            severity: Severity::Transient,
            waiting_for: text.clone(),
            text,
        }
    }
}

/// The RBAC manifest the packages install (README "Install", step 1).
pub const RBAC_MANIFEST: &str = "/usr/share/doc/kube-event-pipe/rbac.yaml";

impl Contact {
    /// `user "u" of context "c" in kubeconfig /path`, or what of it is known.
    pub fn identity(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("user \"{u}\""));
        }
        if let Some(c) = &self.context {
            parts.push(format!("context \"{c}\""));
        }
        parts.push(format!("kubeconfig {}", self.kubeconfig));
        parts.join(", ")
    }

    /// Describes a failed request to the server.
    pub fn diagnose(&self, error: &ApiError) -> Problem {
        let server = &self.server;
        match error {
            ApiError::Transport(e) => self.transport(e),
            ApiError::Body(text) => Problem::transient(format!("{server}: {text}")),
            ApiError::Status {
                code,
                reason,
                message,
                ..
            } => self.status(*code, reason, message),
        }
    }

    fn status(&self, code: u16, reason: &str, message: &str) -> Problem {
        let server = &self.server;
        let answer = match (reason.is_empty(), message.is_empty() || message == reason) {
            (true, true) => format!("{code}"),
            (false, true) => format!("{code} {reason}"),
            (true, false) => format!("{code}: {message}"),
            (false, false) => format!("{code} {reason}: {message}"),
        };
        let who = self.identity();
        match code {
            401 => Problem {
                severity: Severity::NeedsPerson,
                text: format!(
                    "the API server {server} rejected the credentials of {who} ({answer}): the \
                     token or client certificate is wrong, expired or revoked; put valid \
                     credentials for that user in the kubeconfig"
                ),
                waiting_for: format!("valid credentials: {server} answered {answer} to {who}"),
            },
            // No credentials reached the server: permissions are not the problem.
            403 if message.contains("\"system:anonymous\"") => Problem {
                severity: Severity::NeedsPerson,
                text: format!(
                    "the API server {server} refused the request ({answer}): no credentials \
                     reached it; give {who} a token or a client certificate"
                ),
                waiting_for: format!("credentials: {server} answered {answer} to {who}"),
            },
            403 => Problem {
                severity: Severity::NeedsPerson,
                text: format!(
                    "the API server {server} does not allow {who} to read events ({answer}); \
                     grant read access to Events (get, list, watch), e.g. \
                     `kubectl apply -f {RBAC_MANIFEST}` for the ServiceAccount it creates"
                ),
                waiting_for: format!(
                    "permission to read events: {server} answered {answer} to {who}; \
                     apply {RBAC_MANIFEST}"
                ),
            },
            404 => Problem {
                severity: Severity::NeedsPerson,
                text: format!(
                    "{server} answered {answer}: is the kubeconfig's server address that of a \
                     Kubernetes API server (with no extra path)?"
                ),
                waiting_for: format!("a Kubernetes API server at {server} ({answer})"),
            },
            _ => Problem::transient(format!("the API server {server} answered {answer}")),
        }
    }

    fn transport(&self, error: &kube::Error) -> Problem {
        let server = &self.server;
        let chain = cause_chain(error);
        let (severity, words, advice) = match classify(error) {
            Cause::Refused => (
                Severity::Transient,
                format!("connection refused by {server}"),
                "nothing listens there: is the API server running, and is the kubeconfig's \
                 server address right?",
            ),
            Cause::TimedOut => (
                Severity::Transient,
                format!("connection to {server} timed out"),
                "is the address right, and is it reachable from this host (firewall, route)?",
            ),
            Cause::Unreachable => (
                Severity::Transient,
                format!("no route to {server}"),
                "is the network up, and is the address right?",
            ),
            Cause::DnsUnknown => (
                Severity::NeedsPerson,
                format!("DNS failure: the name of {server} is not known"),
                "is the kubeconfig's server name right?",
            ),
            Cause::Dns => (
                Severity::Transient,
                format!("DNS failure looking up the name of {server}"),
                "is this host's resolver working?",
            ),
            Cause::TlsUnknownAuthority => (
                Severity::NeedsPerson,
                format!(
                    "TLS: the certificate of {server} is signed by an unknown authority \
                     (x509: certificate signed by unknown authority)"
                ),
                "the kubeconfig's certificate-authority(-data) must be the cluster's CA",
            ),
            Cause::TlsNameMismatch => (
                Severity::NeedsPerson,
                format!("TLS: the certificate of {server} is not valid for that name"),
                "use a server address the certificate was issued for (as in the cluster's own \
                 admin kubeconfig), or set tls-server-name in the kubeconfig",
            ),
            Cause::TlsExpired => (
                Severity::NeedsPerson,
                format!("TLS: the certificate of {server} has expired"),
                "renew the API server's certificate, or correct this host's clock if it is wrong",
            ),
            Cause::TlsNotYetValid => (
                Severity::NeedsPerson,
                format!("TLS: the certificate of {server} is not valid yet"),
                "check this host's clock",
            ),
            Cause::Tls => (
                Severity::NeedsPerson,
                format!("TLS handshake with {server} failed"),
                "check the kubeconfig's certificate-authority and client certificate",
            ),
            Cause::Other => (
                Severity::Transient,
                format!("request to {server} failed"),
                "",
            ),
        };
        let mut text = format!("{words} ({chain})");
        if !advice.is_empty() {
            text.push_str("; ");
            text.push_str(advice);
        }
        let waiting_for = match severity {
            Severity::Transient => words,
            Severity::NeedsPerson => format!("a fix: {words}"),
        };
        Problem {
            severity,
            text,
            waiting_for,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Refused,
    TimedOut,
    Unreachable,
    DnsUnknown,
    Dns,
    TlsUnknownAuthority,
    TlsNameMismatch,
    TlsExpired,
    TlsNotYetValid,
    Tls,
    Other,
}

/// Walks the cause chain for the first error that says what happened: an I/O error kind, or
/// a rustls error (inside an I/O error, where tokio-rustls puts it).
fn classify(error: &(dyn StdError + 'static)) -> Cause {
    let mut dns = false;
    let mut next = Some(error);
    while let Some(e) = next {
        if e.to_string().starts_with("dns error") {
            dns = true;
        }
        if let Some(tls) = rustls_error(e) {
            return tls_cause(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if dns {
                // getaddrinfo's EAI_NONAME / EAI_NODATA: the name does not exist; anything
                // else (EAI_AGAIN, no resolver yet at boot) may pass.
                let text = io.to_string();
                return if text.contains("not known") || text.contains("No address associated") {
                    Cause::DnsUnknown
                } else {
                    Cause::Dns
                };
            }
            match io.kind() {
                ErrorKind::ConnectionRefused => return Cause::Refused,
                ErrorKind::TimedOut => return Cause::TimedOut,
                ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                    return Cause::Unreachable;
                }
                _ => {}
            }
        }
        next = e.source();
    }
    if dns { Cause::Dns } else { Cause::Other }
}

/// The rustls error in `error`, which may sit inside I/O errors wrapped in I/O errors (whose
/// `source()` skips the wrapped error itself, so the chain walk alone does not find it).
fn rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut e = error;
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

fn tls_cause(error: &rustls::Error) -> Cause {
    use rustls::CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(c) => match c {
            // A CA with the same name as the one that signed the certificate but another key
            // (every kubeadm cluster's CA is called "kubernetes") fails the signature check.
            C::UnknownIssuer | C::BadSignature => Cause::TlsUnknownAuthority,
            C::NotValidForName | C::NotValidForNameContext { .. } => Cause::TlsNameMismatch,
            C::Expired | C::ExpiredContext { .. } => Cause::TlsExpired,
            C::NotValidYet | C::NotValidYetContext { .. } => Cause::TlsNotYetValid,
            _ => Cause::Tls,
        },
        _ => Cause::Tls,
    }
}

/// The error and each deeper cause, each once: wrappers often repeat their cause's text
/// ("ServiceError: client error (Connect)" around "client error (Connect)").
fn cause_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let cause = e.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        next = e.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn contact() -> Contact {
        Contact {
            server: "https://10.0.0.1:6443".into(),
            kubeconfig: "/etc/kube-event-pipe/kubeconfig".into(),
            context: Some("kube-event-pipe".into()),
            user: Some("kube-event-pipe".into()),
        }
    }

    fn status(code: u16, reason: &str, message: &str) -> ApiError {
        ApiError::Status {
            code,
            reason: reason.into(),
            message: message.into(),
            continue_token: None,
        }
    }

    #[test]
    fn forbidden_names_who_what_and_the_manifest() {
        let p = contact().diagnose(&status(
            403,
            "Forbidden",
            "events is forbidden: User \"system:serviceaccount:kube-system:kube-event-pipe\" cannot list resource \"events\" in API group \"\" at the cluster scope",
        ));
        assert_eq!(p.severity, Severity::NeedsPerson);
        assert_eq!(
            p.text,
            "the API server https://10.0.0.1:6443 does not allow user \"kube-event-pipe\", \
             context \"kube-event-pipe\", kubeconfig /etc/kube-event-pipe/kubeconfig to read \
             events (403 Forbidden: events is forbidden: User \
             \"system:serviceaccount:kube-system:kube-event-pipe\" cannot list resource \
             \"events\" in API group \"\" at the cluster scope); grant read access to Events \
             (get, list, watch), e.g. `kubectl apply -f /usr/share/doc/kube-event-pipe/rbac.yaml` \
             for the ServiceAccount it creates"
        );
        assert!(p.waiting_for.starts_with("permission to read events"));
    }

    #[test]
    fn anonymous_forbidden_is_about_credentials() {
        let p = contact().diagnose(&status(
            403,
            "Forbidden",
            "events is forbidden: User \"system:anonymous\" cannot list resource \"events\"",
        ));
        assert_eq!(p.severity, Severity::NeedsPerson);
        assert!(p.text.contains("no credentials reached it"), "{}", p.text);
        assert!(p.waiting_for.starts_with("credentials"));
    }

    #[test]
    fn unauthorized_is_about_credentials_and_says_so_once() {
        let p = contact().diagnose(&status(401, "Unauthorized", "Unauthorized"));
        assert_eq!(p.severity, Severity::NeedsPerson);
        assert!(
            p.text.starts_with(
                "the API server https://10.0.0.1:6443 rejected the credentials of user \
                 \"kube-event-pipe\", context \"kube-event-pipe\", kubeconfig \
                 /etc/kube-event-pipe/kubeconfig (401 Unauthorized): "
            ),
            "{}",
            p.text
        );
        assert!(p.waiting_for.starts_with("valid credentials"));
    }

    #[test]
    fn server_errors_are_transient() {
        for code in [500, 503, 429, 504] {
            let p = contact().diagnose(&status(code, "X", "busy"));
            assert_eq!(p.severity, Severity::Transient, "{code}");
            assert_eq!(
                p.text,
                format!("the API server https://10.0.0.1:6443 answered {code} X: busy")
            );
        }
    }

    #[derive(Debug)]
    struct Wrap(&'static str, Box<dyn StdError + Send + Sync>);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Wrap {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.1)
        }
    }

    fn chain_of(inner: impl StdError + Send + Sync + 'static, wrapper: &'static str) -> Wrap {
        Wrap(
            "client error (Connect)",
            Box::new(Wrap(wrapper, Box::new(inner))),
        )
    }

    /// A certificate error as tokio-rustls reports it.
    fn tls(e: rustls::CertificateError) -> std::io::Error {
        std::io::Error::new(ErrorKind::InvalidData, rustls::Error::InvalidCertificate(e))
    }

    #[test]
    fn causes_are_found_anywhere_in_the_chain() {
        let io = |k| std::io::Error::from(k);
        for (e, want) in [
            (
                chain_of(io(ErrorKind::ConnectionRefused), "tcp connect error"),
                Cause::Refused,
            ),
            (
                chain_of(io(ErrorKind::TimedOut), "tcp connect error"),
                Cause::TimedOut,
            ),
            (
                chain_of(
                    std::io::Error::other(
                        "failed to lookup address information: Name or service not known",
                    ),
                    "dns error",
                ),
                Cause::DnsUnknown,
            ),
            (
                chain_of(
                    std::io::Error::other(
                        "failed to lookup address information: Temporary failure in name resolution",
                    ),
                    "dns error",
                ),
                Cause::Dns,
            ),
            (
                chain_of(tls(rustls::CertificateError::UnknownIssuer), "tls"),
                Cause::TlsUnknownAuthority,
            ),
            (
                chain_of(tls(rustls::CertificateError::Expired), "tls"),
                Cause::TlsExpired,
            ),
            // Nested, as tokio-rustls and hyper-rustls nest them.
            (
                chain_of(
                    std::io::Error::other(tls(rustls::CertificateError::BadSignature)),
                    "tls",
                ),
                Cause::TlsUnknownAuthority,
            ),
            (chain_of(io(ErrorKind::Other), "x"), Cause::Other),
        ] {
            assert_eq!(classify(&e), want, "{}", cause_chain(&e));
        }
    }

    #[test]
    fn the_chain_shows_each_cause_once() {
        let e = Wrap(
            "ServiceError: client error (Connect)",
            Box::new(chain_of(
                std::io::Error::from(ErrorKind::ConnectionRefused),
                "tcp connect error",
            )),
        );
        assert_eq!(
            cause_chain(&e),
            "ServiceError: client error (Connect): tcp connect error: connection refused"
        );
    }
}
