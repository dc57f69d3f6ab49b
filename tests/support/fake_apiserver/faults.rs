//! Faults: injected error answers ([`Failure`]) and the stream faults tests drive (dropped,
//! stalled, malformed or expired watches).

use bytes::Bytes;
use http::{HeaderValue, Response};

use super::serve::{Body, json_response, status_json};
use super::watches::WatchMsg;
use super::{
    EmptyWatches, Failure, FakeApiServer, MALFORMED_FRAME, Shared, Target, WATCH_EXPIRED_FRAME,
    lock,
};

pub(super) struct PendingFailure {
    target: Target,
    remaining: usize,
    failure: Failure,
}

impl FakeApiServer {
    /// Aborts every open watch connection now (no terminating chunk). With `half_frame`, the
    /// first half of a frame is written first.
    pub fn drop_watches(&self, half_frame: bool) {
        let _ = self.shared.drop_tx.send(half_frame);
    }

    /// While stalled, open watches send nothing (not even their timeout end) and new requests
    /// get no answer; connections stay open. Clearing resumes everything.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.stall.send_replace(stalled);
    }

    /// Writes `line` (a newline is added if missing) into every open watch, in order with the
    /// other frames.
    pub fn inject_watch_line(&self, line: &str) {
        let mut s = line.to_string();
        if !s.ends_with('\n') {
            s.push('\n');
        }
        let b = Bytes::from(s);
        lock(&self.shared.store).broadcast(|| WatchMsg::Data(b.clone()));
    }

    /// Writes raw bytes (which need not be UTF-8) plus a newline into every open watch.
    pub fn inject_watch_bytes(&self, bytes: &[u8]) {
        let mut v = bytes.to_vec();
        v.push(b'\n');
        let b = Bytes::from(v);
        lock(&self.shared.store).broadcast(|| WatchMsg::Data(b.clone()));
    }

    /// `inject_watch_line(MALFORMED_FRAME)`.
    pub fn inject_malformed_frame(&self) {
        self.inject_watch_line(MALFORMED_FRAME);
    }

    /// Ends every open watch cleanly, as the server's `timeoutSeconds` does (after what was
    /// queued for it); changes from now on reach only watches opened later.
    pub fn end_watches(&self) {
        let mut store = lock(&self.shared.store);
        store.broadcast(|| WatchMsg::End);
        store.watchers.clear();
    }

    /// Puts a front end in front of the server that answers some watches `200` with an empty
    /// body ([`EmptyWatches`]); `Off` takes it away.
    pub fn set_empty_watches(&self, which: EmptyWatches) {
        *lock(&self.shared.empty_watches) = which;
    }

    /// Sends the in-stream 410 ERROR frame to every open watch, then ends them cleanly.
    pub fn expire_watches(&self) {
        let b = Bytes::from(format!("{WATCH_EXPIRED_FRAME}\n"));
        let mut store = lock(&self.shared.store);
        store.broadcast(|| WatchMsg::Data(b.clone()));
        store.broadcast(|| WatchMsg::End);
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch that allowed bookmarks.
    pub fn send_bookmark(&self) {
        let mut store = lock(&self.shared.store);
        let rv = store.rv;
        store.broadcast(|| WatchMsg::Bookmark(rv));
    }

    /// The next `n` requests (any non-admin path) get `failure`.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        self.fail_next_for(Target::Any, n, failure);
    }

    /// The next `n` requests matching `target` get `failure`.
    pub fn fail_next_for(&self, target: Target, n: usize, failure: Failure) {
        lock(&self.shared.failures).push(PendingFailure {
            target,
            remaining: n,
            failure,
        });
    }

    /// Removes pending injected failures, refused Lease updates, and clears a stall.
    pub fn clear_faults(&self) {
        lock(&self.shared.failures).clear();
        lock(&self.shared.lease_refusals).clear();
        self.set_empty_watches(EmptyWatches::Off);
        self.set_stalled(false);
    }
}

pub(super) fn take_failure(shared: &Shared, is_list: bool, is_watch: bool) -> Option<Failure> {
    let mut failures = lock(&shared.failures);
    let pos = failures.iter().position(|f| {
        f.remaining > 0
            && match f.target {
                Target::Any => true,
                Target::List => is_list,
                Target::Watch => is_watch,
            }
    })?;
    let f = &mut failures[pos];
    f.remaining -= 1;
    let failure = f.failure;
    if f.remaining == 0 {
        failures.remove(pos);
    }
    Some(failure)
}

pub(super) fn failure_response(f: Failure, pretty_print: bool) -> Response<Body> {
    match f {
        Failure::InternalError => json_response(
            500,
            status_json(
                500,
                "InternalError",
                "Internal error occurred: injected by the fake apiserver",
                Some(r#"{"causes":[{"message":"injected by the fake apiserver"}]}"#),
                "{}",
            ),
            pretty_print,
        ),
        Failure::TooManyRequests { retry_after_secs } => {
            let mut r = json_response(
                429,
                status_json(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                    Some(&format!("{{\"retryAfterSeconds\":{retry_after_secs}}}")),
                    "{}",
                ),
                pretty_print,
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after_secs));
            r
        }
        Failure::ServiceUnavailable => json_response(
            503,
            status_json(
                503,
                "ServiceUnavailable",
                "The server is currently unable to handle the request",
                None,
                "{}",
            ),
            pretty_print,
        ),
    }
}
