//! Exit statuses, kept in one place because the systemd unit and operators rely on them.

use std::process::ExitCode;

/// 0: clean exit (including after SIGTERM). 1: a failure while running.
/// 2: a problem the operator must fix before starting (configuration, kubeconfig, directories).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Failure = 1,
    Config = 2,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(s as u8)
    }
}

/// An error that ends the daemon, with the status it exits with.
#[derive(Debug)]
pub struct Fatal {
    pub status: Status,
    pub error: anyhow::Error,
}

impl Fatal {
    pub fn config(error: impl Into<anyhow::Error>) -> Self {
        Fatal {
            status: Status::Config,
            error: error.into(),
        }
    }

    pub fn failure(error: impl Into<anyhow::Error>) -> Self {
        Fatal {
            status: Status::Failure,
            error: error.into(),
        }
    }

    /// The error and its causes, each cause once: the daemon's errors already end with their
    /// cause's text, which `{:#}` would print a second time ("…: Permission denied (os error
    /// 13): Permission denied (os error 13)"), while a library's deeper causes are kept.
    pub fn message(&self) -> String {
        let mut text = self.error.to_string();
        for cause in self.error.chain().skip(1) {
            let cause = cause.to_string();
            if !text.contains(&cause) {
                text.push_str(": ");
                text.push_str(&cause);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open destination /x: {source}")]
    struct Open {
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_is_shown_once() {
        let denied = || std::io::Error::from_raw_os_error(libc::EACCES);
        let f = Fatal::config(Open { source: denied() });
        assert_eq!(
            f.message(),
            "cannot open destination /x: Permission denied (os error 13)"
        );
        let f = Fatal::config(Outer(denied()));
        assert_eq!(f.message(), "outer: Permission denied (os error 13)");
    }
}
