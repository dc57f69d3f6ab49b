//! Watch requests: the frames (objects, bookmarks), the initial events or history a watch
//! starts with, and the writer that streams changes, bookmarks and injected faults.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::{broadcast, mpsc, watch};

use super::selectors::Selection;
use super::serve::{Body, bad_request, json_headers, parse_bool, too_large_rv};
use super::watch_list;
use super::{EmptyWatches, FakeApiServer, RecordedRequest, Shared, WATCH_EXPIRED_FRAME, lock};

/// `{"kind":"Event","apiVersion":"v1",<stored members>}`.
pub(super) fn watch_object(body: &str) -> String {
    let inner = body.strip_prefix('{').unwrap_or(body);
    if inner == "}" {
        return r#"{"kind":"Event","apiVersion":"v1"}"#.to_string();
    }
    format!("{{\"kind\":\"Event\",\"apiVersion\":\"v1\",{inner}")
}

pub(super) fn watch_frame(kind: &str, body: &str) -> String {
    format!(
        "{{\"type\":\"{kind}\",\"object\":{}}}\n",
        watch_object(body)
    )
}

/// A BOOKMARK as kube-apiserver v1.36 sends it (`watchlist.jsonl`): an empty Event carrying
/// only the resourceVersion, and for the end of a streaming list's initial events the
/// `k8s.io/initial-events-end` annotation.
pub(super) fn bookmark_frame(rv: u64, initial_events_end: bool) -> String {
    let annotations = if initial_events_end {
        r#","annotations":{"k8s.io/initial-events-end":"true"}"#
    } else {
        ""
    };
    format!(
        "{{\"type\":\"BOOKMARK\",\"object\":{{\"kind\":\"Event\",\"apiVersion\":\"v1\",\"metadata\":{{\"resourceVersion\":\"{rv}\"{annotations}}},\"involvedObject\":{{}},\"source\":{{}},\"firstTimestamp\":null,\"lastTimestamp\":null,\"eventTime\":null,\"reportingComponent\":\"\",\"reportingInstance\":\"\"}}}}\n"
    )
}

pub(super) enum WatchMsg {
    /// Bytes to write (one or more complete lines, or anything injected).
    Data(Bytes),
    /// End the stream cleanly after what was queued before.
    End,
    /// A bookmark at the current resourceVersion (only written if the watch asked for them).
    Bookmark(u64),
}

pub(super) struct Watcher {
    pub(super) tx: mpsc::UnboundedSender<WatchMsg>,
    /// What the watch selects; None for every event.
    pub(super) selection: Option<Arc<Selection>>,
}

impl FakeApiServer {
    /// Lets the watch that took the prepared body start sending it.
    pub fn start_prepared(&self) {
        self.shared.prepared_go.send_replace(true);
    }
}

pub(super) fn watch_response(
    shared: &Arc<Shared>,
    rec: &RecordedRequest,
    pretty_print: bool,
) -> Response<Body> {
    let selection = match watch_list::selection_or_refusal(shared, rec, true, pretty_print) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let empty_watches = *lock(&shared.empty_watches);
    if empty_watches == EmptyWatches::All {
        return empty_response(shared);
    }
    let bookmarks = rec.param("allowWatchBookmarks").is_some_and(parse_bool);
    let send_initial = rec.param("sendInitialEvents").is_some_and(parse_bool);
    let timeout = match rec.param("timeoutSeconds").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => Some(Duration::from_secs(n)),
            Err(_) => {
                return bad_request(
                    &format!("timeoutSeconds: invalid value {s:?}"),
                    pretty_print,
                );
            }
        },
    };
    let rv_param = rec.param("resourceVersion").unwrap_or("");
    let (tx, rx) = mpsc::unbounded_channel();
    let mut initial: Vec<Bytes> = Vec::new();
    // The current objects a watch starts with, encoded as they are sent.
    let mut initial_events: Option<InitialEvents> = None;
    let mut rx = Some(rx);
    // A streaming list cut by an injected fault: no live changes follow.
    let mut cut = false;
    {
        let mut store = lock(&shared.store);
        if rv_param.is_empty() || rv_param == "0" || send_initial {
            if !rv_param.is_empty() && rv_param != "0" {
                match rv_param.parse::<u64>() {
                    Ok(rv) if rv > store.rv => return too_large_rv(rv, store.rv, pretty_print),
                    Ok(_) => {}
                    Err(_) => {
                        return bad_request(
                            &format!("resourceVersion: Invalid value: {rv_param:?}"),
                            pretty_print,
                        );
                    }
                }
            }
            // In namespace/name order (etcd's key order), as `watchlist.jsonl` shows.
            let mut bodies: Vec<Arc<str>> = store
                .keys
                .values()
                .filter_map(|v| v.last().and_then(|v| v.body.clone()))
                .filter(|b| selection.matches(b))
                .collect();
            let mut end = (send_initial && bookmarks).then(|| bookmark_frame(store.rv, true));
            if let Some(fault) = send_initial
                .then(|| watch_list::take_fault(shared))
                .flatten()
            {
                bodies.truncate(fault.after);
                end = None;
                cut = true;
                if fault.hold {
                    watch_list::hold(shared, tx.clone());
                } else {
                    rx = None;
                }
            }
            initial_events = Some(InitialEvents {
                bodies: bodies.into_iter(),
                end,
            });
        } else {
            let rv = match rv_param.parse::<u64>() {
                Ok(rv) => rv,
                Err(_) => {
                    return bad_request(
                        &format!("resourceVersion: Invalid value: {rv_param:?}"),
                        pretty_print,
                    );
                }
            };
            if rv < store.compact_rv {
                drop(store);
                if empty_watches == EmptyWatches::Expired {
                    return empty_response(shared);
                }
                let expired = Bytes::from(format!("{WATCH_EXPIRED_FRAME}\n"));
                return unfed_response(shared, Some(expired), None, None);
            }
            if rv > store.rv {
                // As `watch-rv-too-large.jsonl`: 200, then nothing at all (not even bookmarks)
                // until timeoutSeconds ends it.
                drop(store);
                let (tx, rx) = mpsc::unbounded_channel();
                lock(&shared.held).push(tx);
                return unfed_response(shared, None, Some(rx), timeout);
            }
            let mut chunk = String::new();
            for e in store
                .log
                .iter()
                .filter(|e| e.rv > rv && selection.matches(&e.body))
            {
                chunk.push_str(&watch_frame(e.kind, &e.body));
                if chunk.len() > 64 * 1024 {
                    initial.push(Bytes::from(std::mem::take(&mut chunk)));
                }
            }
            if !chunk.is_empty() {
                initial.push(Bytes::from(chunk));
            }
        }
        let selection = (!selection.is_everything()).then(|| Arc::new(selection));
        if !cut {
            store.watchers.push(Watcher { tx, selection });
        }
    }
    let prepared = lock(&shared.prepared).take();
    let gated = prepared.is_some();
    if let Some(p) = prepared {
        initial.splice(0..0, p);
    }
    let frames: Frames = Box::new(
        initial
            .into_iter()
            .chain(initial_events.into_iter().flatten()),
    );
    stream_response(frames, rx, shared, bookmarks, timeout, gated)
}

/// `200` and a body that ends at once, without a byte.
fn empty_response(shared: &Arc<Shared>) -> Response<Body> {
    unfed_response(shared, None, None, None)
}

/// A watch response no store change reaches, without bookmarks: `first` if any, then, with
/// `rx`, open until its sender goes or `timeout`; without `rx` it ends at once.
fn unfed_response(
    shared: &Arc<Shared>,
    first: Option<Bytes>,
    rx: Option<mpsc::UnboundedReceiver<WatchMsg>>,
    timeout: Option<Duration>,
) -> Response<Body> {
    stream_response(
        Box::new(first.into_iter()),
        rx,
        shared,
        false,
        timeout,
        false,
    )
}

/// A watch's first frames, produced as they are sent rather than all at once (a streaming
/// list of 100,000 events is 120 MB): `ADDED` for each object, then the end bookmark if any.
struct InitialEvents {
    bodies: std::vec::IntoIter<Arc<str>>,
    end: Option<String>,
}

impl Iterator for InitialEvents {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let mut chunk = String::new();
        while chunk.len() <= 64 * 1024 {
            match self.bodies.next() {
                Some(body) => chunk.push_str(&watch_frame("ADDED", &body)),
                None => {
                    if let Some(end) = self.end.take() {
                        chunk.push_str(&end);
                    }
                    break;
                }
            }
        }
        (!chunk.is_empty()).then(|| Bytes::from(chunk))
    }
}

type Frames = Box<dyn Iterator<Item = Bytes> + Send>;

type Out = mpsc::Sender<Result<Frame<Bytes>, io::Error>>;

/// `gated`: `initial` is the prepared body; wait for `start_prepared` and record when it went.
fn stream_response(
    initial: Frames,
    rx: Option<mpsc::UnboundedReceiver<WatchMsg>>,
    shared: &Arc<Shared>,
    bookmarks: bool,
    timeout: Option<Duration>,
    gated: bool,
) -> Response<Body> {
    let (out_tx, out_rx) = mpsc::channel::<Result<Frame<Bytes>, io::Error>>(8);
    let flush_each = !shared.opts.initial_event_delay.is_zero();
    let drops = shared.drop_tx.subscribe();
    let stall = shared.stall.subscribe();
    let interval = shared.opts.bookmark_interval;
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut w = Writer {
            out: out_tx,
            drops,
            stall,
        };
        if gated {
            let mut go = shared.prepared_go.subscribe();
            if go.wait_for(|g| *g).await.is_err() {
                return;
            }
            lock(&shared.prepared_times).first_sent = Some(SystemTime::now());
            for b in initial {
                if w.emit(b).await.is_err() {
                    return;
                }
            }
            lock(&shared.prepared_times).last_sent = Some(SystemTime::now());
            let _ = w
                .run(
                    Box::new(std::iter::empty()),
                    rx,
                    &shared,
                    bookmarks,
                    interval,
                    timeout,
                )
                .await;
            return;
        }
        let _ = w
            .run(initial, rx, &shared, bookmarks, interval, timeout)
            .await;
    });
    let stream = OutStream {
        rx: out_rx,
        flush_each,
        flushed: true,
    };
    json_headers(Response::new(StreamBody::new(stream).boxed()))
}

/// A watch response's body. With `flush_each` (the real server's pace) it pauses after every
/// chunk, so that hyper writes each one out on its own instead of gathering what is queued
/// into one write: kube-apiserver flushes after every watch event, and a client then reads
/// about one event per read (`strace` of a real sync: 12,133 reads for 20,000 events).
struct OutStream {
    rx: mpsc::Receiver<Result<Frame<Bytes>, io::Error>>,
    flush_each: bool,
    flushed: bool,
}

impl futures_util::Stream for OutStream {
    type Item = Result<Frame<Bytes>, io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.flush_each && !this.flushed {
            this.flushed = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let next = this.rx.poll_recv(cx);
        if matches!(next, std::task::Poll::Ready(Some(_))) {
            this.flushed = false;
        }
        next
    }
}

/// Sends `frames` one watch frame at a time at `pace` each, kept against the clock. A thread
/// of its own: tokio's timers tick in milliseconds, which would send the frames in bursts of
/// about fifty where a real server sends one every ~21 µs.
fn pace_frames(frames: Frames, pace: Duration) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        // Timer slack would make every sleep 50 µs longer than asked.
        // SAFETY: prctl with PR_SET_TIMERSLACK takes a number and changes only this thread.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1_000usize);
        }
        let started = std::time::Instant::now();
        let mut n = 0u32;
        for chunk in frames {
            let mut at = 0;
            while at < chunk.len() {
                let end = memchr::memchr(b'\n', &chunk[at..]).map_or(chunk.len(), |i| at + i + 1);
                n += 1;
                let due = started + pace * n;
                let now = std::time::Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if tx.blocking_send(chunk.slice(at..end)).is_err() {
                    return;
                }
                at = end;
            }
        }
    });
    rx
}

/// Why a watch writer stopped early.
enum Stop {
    Gone,
    Dropped,
}

struct Writer {
    out: Out,
    drops: broadcast::Receiver<bool>,
    stall: watch::Receiver<bool>,
}

impl Writer {
    /// Waits until not stalled, then sends; a drop signal wins at any point.
    async fn emit(&mut self, bytes: Bytes) -> Result<(), Stop> {
        loop {
            if !*self.stall.borrow_and_update() {
                break;
            }
            tokio::select! {
                d = self.drops.recv() => return self.dropped(d).await,
                c = self.stall.changed() => if c.is_err() { return Err(Stop::Gone) },
            }
        }
        tokio::select! {
            d = self.drops.recv() => self.dropped(d).await,
            r = self.out.send(Ok(Frame::data(bytes))) => r.map_err(|_| Stop::Gone),
        }
    }

    async fn dropped(&mut self, d: Result<bool, broadcast::error::RecvError>) -> Result<(), Stop> {
        let half = matches!(d, Ok(true));
        if half {
            let frame = bookmark_frame(0, false);
            let half_bytes = Bytes::from(frame.as_bytes()[..frame.len() / 2].to_vec());
            let _ = self.out.send(Ok(Frame::data(half_bytes))).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self
            .out
            .send(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "dropped by fake apiserver",
            )))
            .await;
        Err(Stop::Dropped)
    }

    async fn run(
        &mut self,
        initial: Frames,
        rx: Option<mpsc::UnboundedReceiver<WatchMsg>>,
        shared: &Shared,
        bookmarks: bool,
        interval: Option<Duration>,
        timeout: Option<Duration>,
    ) -> Result<(), Stop> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        // A real server's pace for the initial frames (benchmarks), one frame per chunk.
        let pace = shared.opts.initial_event_delay;
        if pace.is_zero() {
            for b in initial {
                self.emit(b).await?;
            }
        } else {
            let mut paced = pace_frames(initial, pace);
            while let Some(b) = paced.recv().await {
                self.emit(b).await?;
            }
        }
        let Some(mut rx) = rx else {
            return Ok(());
        };
        let mut ticker = interval.map(|i| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + i, i);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let stalled = *self.stall.borrow_and_update();
            tokio::select! {
                d = self.drops.recv() => return self.dropped(d).await,
                c = self.stall.changed() => if c.is_err() { return Err(Stop::Gone) },
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } }, if !stalled => return Ok(()),
                _ = async { match ticker.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } }, if !stalled && bookmarks => {
                    let rv = lock(&shared.store).rv;
                    self.emit(Bytes::from(bookmark_frame(rv, false))).await?;
                }
                m = rx.recv(), if !stalled => {
                    let mut pending = m;
                    while let Some(msg) = pending.take() {
                        match msg {
                            WatchMsg::End => return Ok(()),
                            WatchMsg::Bookmark(rv) => if bookmarks {
                                self.emit(Bytes::from(bookmark_frame(rv, false))).await?;
                            },
                            WatchMsg::Data(first) if !pace.is_zero() => {
                                // A real server flushes every event on its own.
                                self.emit(first).await?;
                            }
                            WatchMsg::Data(first) => {
                                // Coalesce queued frames into one chunk.
                                let mut buf: Option<Vec<u8>> = None;
                                loop {
                                    match rx.try_recv() {
                                        Ok(WatchMsg::Data(more)) if buf.as_ref().map_or(first.len(), Vec::len) < 256 * 1024 => {
                                            buf.get_or_insert_with(|| first.to_vec()).extend_from_slice(&more);
                                        }
                                        Ok(other) => {
                                            pending = Some(other);
                                            break;
                                        }
                                        Err(_) => break,
                                    }
                                }
                                self.emit(buf.map(Bytes::from).unwrap_or(first)).await?;
                            }
                        }
                    }
                    if pending.is_none() && rx.is_closed() && rx.is_empty() {
                        return Err(Stop::Gone);
                    }
                }
            }
        }
    }
}
