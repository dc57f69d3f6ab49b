//! The replay source: watch frames as `kubectl get events -A -w --output-watch-events -o json`
//! prints them, from a file or stdin, through the same dedup and output as the API source.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::pipeline::Pipeline;
use crate::wire::frame::{self, FrameType};
use crate::wire::kubectl_stream::Splitter;

const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("cannot read the replay source {path}: {source}")]
pub struct ReplayError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Reads to the end of the input (or until shutdown), writing every new event.
pub async fn run(
    path: &Path,
    pipeline: &mut Pipeline,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ReplayError> {
    let name = path.display().to_string();
    let err = |source| ReplayError {
        path: name.clone(),
        source,
    };
    let mut input: Box<dyn AsyncRead + Unpin> = if path == Path::new("-") {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(tokio::fs::File::open(path).await.map_err(err)?)
    };
    let mut splitter = Splitter::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut rv = String::new();
    loop {
        let n = tokio::select! {
            n = input.read(&mut chunk) => n.map_err(err)?,
            _ = shutdown.changed() => break,
        };
        if n == 0 {
            if let Err(e) = splitter.finish() {
                tracing::warn!(source = %name, error = %e, "skipping the end of the replay input");
            }
            break;
        }
        splitter.feed(&chunk[..n]);
        while let Some(next) = splitter.next_object() {
            match next {
                Ok(bytes) => offer_frame(pipeline, bytes, &mut rv),
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "skipping unreadable replay input")
                }
            }
            if pipeline.batch_full() && pipeline.commit(shutdown).await.is_err() {
                return Ok(());
            }
        }
        if pipeline.commit(shutdown).await.is_err() {
            return Ok(());
        }
    }
    // Lines in hand are written even when a signal ended the reading.
    let _ = pipeline.commit(shutdown).await;
    let c = pipeline.counters();
    tracing::info!(source = %name, written = c.written, skipped = c.skipped, malformed = c.malformed, "replay finished");
    Ok(())
}

fn offer_frame(pipeline: &mut Pipeline, bytes: &[u8], rv: &mut String) {
    match frame::parse_watch_frame(bytes) {
        Ok(f) => match f.frame_type {
            FrameType::Added | FrameType::Modified | FrameType::Deleted => {
                pipeline.offer_object(f.object, rv);
            }
            FrameType::Bookmark => {}
            other => {
                tracing::warn!(frame_type = %other, "skipping a replayed frame that is not an event")
            }
        },
        Err(e) => tracing::warn!(error = %e, "skipping a malformed replayed frame"),
    }
}
