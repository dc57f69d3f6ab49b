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
}
