//! The first contact with the API server on a first start, before anything is created on
//! disk: a user who tries the daemon against an unreachable server, or with credentials or
//! permissions that do not work, and gives up, finds no filter file left behind (with the
//! default `persistence_path = "."`, in whatever directory they ran it from).
//!
//! One cheap request (a list of one event) needs everything the real list needs; it is retried,
//! with each failure described ([`crate::source::diagnose`]) in the log and in STATUS=, until it
//! works or a stop signal comes. Later starts, which have their filter files already, skip it:
//! they resume without listing, and nothing new is left behind by a failure.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use crate::backoff::Interrupted;
use crate::backoff::{Backoff, sleep_alive};
use crate::service::progress::Progress;
use crate::source::api::EventsApi;
use crate::source::api_error::ApiError;

/// A request the server does not answer within this is abandoned and retried (as in the
/// watcher).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

const WHAT: &str = "connecting to the API server";

/// Whether `dir` holds no dedup filter yet: a first start, which would create everything.
pub fn is_first_start(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    !entries
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().ends_with(".bloom"))
}

/// Retries the probe until the server answers it; `Interrupted` on a stop signal.
pub async fn wait_for_api(
    api: &EventsApi,
    progress: &Progress,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Interrupted> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let answer = tokio::select! {
            a = tokio::time::timeout(REQUEST_TIMEOUT, api.probe()) => a,
            _ = shutdown.changed() => return Err(Interrupted),
        };
        let error = match answer {
            Ok(Ok(())) => {
                backoff.success(WHAT);
                return Ok(());
            }
            Ok(Err(e)) => e,
            Err(_) => ApiError::Body(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())),
        };
        if api.rejected().is_some() {
            // The server answered, refusing the selection: the caller exits on it.
            return Ok(());
        }
        let problem = api.diagnose(&error);
        let wait = backoff.problem(WHAT, &problem);
        progress.problem(WHAT, &problem);
        sleep_alive(wait, progress, shutdown).await?;
    }
}
