//! The replay source: watch frames as `kubectl get events -A -w --output-watch-events -o json`
//! prints them, from a file or stdin, through the same dedup and output as the API source.
//! Both shapes kubectl prints the initial state in are understood: one frame per event, and,
//! when the list took more than one chunk, one frame per chunk holding a whole list.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::backoff::Interrupted;
use crate::pipeline::Pipeline;
use crate::wire::frame::{self, FrameType};
use crate::wire::kubectl_stream::Splitter;
use crate::wire::list_object;

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
                Ok(bytes) => {
                    if offer_frame(pipeline, bytes, &mut rv, shutdown)
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
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

/// Offers the event of one frame, or each item of a list chunk kubectl printed as one frame
/// (committing whenever a batch fills, as a page of the API's list does).
async fn offer_frame(
    pipeline: &mut Pipeline,
    bytes: &[u8],
    rv: &mut String,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Interrupted> {
    let f = match frame::parse_watch_frame(bytes) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "skipping a malformed replayed frame");
            return Ok(());
        }
    };
    match f.frame_type {
        FrameType::Added | FrameType::Modified | FrameType::Deleted => {
            // An event, as nearly every frame holds, costs one parse; only an object without
            // identity is looked at as a list. A list has no name, so none is taken for an event.
            if pipeline.offer_unchecked_object(f.object, rv).is_some() {
                return Ok(());
            }
            let Some(items) = list_object::list_items(f.object) else {
                // Not a list either: this offer logs why it has no identity.
                pipeline.offer_object(f.object, rv);
                return Ok(());
            };
            for item in items {
                pipeline.offer_listed_object(item, rv);
                if pipeline.batch_full() {
                    pipeline.commit(shutdown).await?;
                }
            }
        }
        FrameType::Bookmark => {}
        other => {
            tracing::warn!(frame_type = %other, "skipping a replayed frame that is not an event")
        }
    }
    Ok(())
}
