//! Source → dedup → sink: an event is written, and only then marked as seen.
//!
//! Sources offer event objects; the pipeline queues the line of each one not seen before and,
//! on `commit`, writes the queued lines in one go and then records their identities. A crash
//! between the two can repeat the lines of one batch; it can never lose one.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::backoff::{Interrupted, sleep_alive};
use crate::dedup::{Probe, Store, StoreStats};
use crate::leader::hold::Hold;
use crate::metrics::{Metrics, PipelineTotals, StoreFigures};
use crate::service::progress::Counters;
use crate::service::progress::Progress;
use crate::sink::Sink;
use crate::wire::event_time;
use crate::wire::event_view::EventView;
use crate::wire::frame;
use crate::wire::identity;
use crate::wire::list_page::Item;
use crate::wire::text::is_ascii;

/// A batch is written once it holds this much, so a long list page or a fast stream does not
/// grow memory, and small enough that a crash repeats little.
const BATCH_BYTES: usize = 256 * 1024;

/// A batch is also committed once this many events were found in the Python tool's files, so
/// the identities waiting to be recorded stay few.
const ADOPTED_MAX: usize = 4096;

/// Write retries back off from the first to the last, doubling.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What a failing write shows in STATUS= and `/readyz` (`retrying: writing events: …`).
const WRITING: &str = "writing events";

/// What became of an offered object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Queued,
    Seen,
    Malformed,
    /// Not written: a standby under leader election left it to the leader.
    Followed,
}

pub struct Pipeline {
    store: Store,
    sink: Sink,
    lines: Vec<u8>,
    /// Identities of the queued lines; `pending[..queued]` is live, the rest are spare buffers.
    pending: Vec<Vec<u8>>,
    /// The store's probe of each queued identity (its hashes, reused to insert it).
    probes: Vec<Probe>,
    /// The probe keys of the queued identities: a repeat within a batch is found without
    /// scanning `pending` (which is compared only on a key match).
    queued_keys: HashSet<u64, BuildHasherDefault<KeyHasher>>,
    queued: usize,
    id: Vec<u8>,
    /// Scratch for the Python kube-event-pipe's identity of an event (`name-count`).
    original_key: Vec<u8>,
    /// Identities of events found in the Python kube-event-pipe's files, to be recorded in
    /// our store at the next commit (not at once: a rotation in the middle of a batch would
    /// change the probe keys `queued_keys` holds).
    adopted: Vec<Vec<u8>>,
    counters: Counters,
    /// With leader election: whether to write, and a standby's marks of the leader's events.
    hold: Option<Hold>,
    bytes_written: u64,
    write_errors: u64,
    metrics: Metrics,
    /// Where a failing write shows that it is being retried, and that the loop is alive.
    progress: Progress,
    /// When the store's figures were last published (they cost more than the counters).
    store_published: Option<std::time::Instant>,
    /// What the list in progress has carried so far, for the store (see [`Store::listed`]).
    listing: Option<ListTally>,
}

/// Events a list carried and the oldest time among them.
#[derive(Debug, Default, Clone, Copy)]
struct ListTally {
    count: u64,
    oldest: Option<i64>,
}

/// The store's figures are published at most this often.
const STORE_FIGURES_EVERY: Duration = Duration::from_secs(1);

impl Pipeline {
    pub fn new(store: Store, sink: Sink) -> Pipeline {
        Pipeline {
            store,
            sink,
            lines: Vec::with_capacity(BATCH_BYTES + 64 * 1024),
            pending: Vec::new(),
            probes: Vec::new(),
            queued_keys: HashSet::default(),
            queued: 0,
            id: Vec::with_capacity(256),
            original_key: Vec::new(),
            adopted: Vec::new(),
            counters: Counters::default(),
            hold: None,
            bytes_written: 0,
            write_errors: 0,
            metrics: Metrics::default(),
            progress: Progress::default(),
            store_published: None,
            listing: None,
        }
    }

    /// Reports to `metrics` from now on (once per batch), starting with the figures so far.
    pub fn set_metrics(&mut self, metrics: Metrics) {
        self.metrics = metrics;
        self.publish_metrics();
    }

    /// Shows write failures in `progress` from now on, and keeps the loop alive there while a
    /// failing write is retried (the systemd watchdog and `/healthz` read it).
    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = progress;
    }

    /// Per batch: the counters are a few relaxed stores; the store's figures, at most every
    /// `STORE_FIGURES_EVERY` (and at each periodic flush, so a quiet spell shows the latest).
    fn publish_metrics(&mut self) {
        self.metrics.publish_pipeline(&PipelineTotals {
            counters: self.counters,
            pending: self.queued as u64,
            bytes_written: self.bytes_written,
            write_errors: self.write_errors,
            reopens: self.sink.reopens(),
        });
        let now = std::time::Instant::now();
        if self
            .store_published
            .is_none_or(|at| now.duration_since(at) >= STORE_FIGURES_EVERY)
        {
            self.store_published = Some(now);
            self.metrics.publish_store(StoreFigures::new(
                &self.store.stats(),
                self.store.rotations(),
                self.store.quarantined().len() as u64,
            ));
        }
    }

    /// Leader election: events are written only while `hold` says this host leads (and may
    /// write); otherwise they go to the hold, which marks those the leader has written.
    pub fn follow(&mut self, hold: Hold) {
        self.hold = Some(hold);
    }

    /// This host becomes the leader: see [`Hold::take_over`]. Lines still queued from an
    /// earlier term are dropped: the watch from the recorded version brings them again.
    pub fn take_over(&mut self) -> usize {
        if self.queued > 0 {
            self.drop_queued();
        }
        match &mut self.hold {
            Some(hold) => hold.take_over(&mut self.store),
            None => 0,
        }
    }

    /// Marks as seen the events of the lines at the end of the destination. A run killed
    /// between writing a batch and marking it (or inside the write(2) of a batch, which the
    /// kernel cuts short at a page boundary) left those lines written but unmarked; without
    /// this, the next run would write them all again. Returns how many were marked.
    pub fn mark_recent_lines(&mut self) -> usize {
        let now = SystemTime::now();
        let mut marked = 0;
        let (store, id) = (&mut self.store, &mut self.id);
        let result = self.sink.for_each_recent_line(|line| {
            // A line that is not one of our events (the file may hold anything) is no mark.
            if identity::identity_into(line, id).is_err() {
                return;
            }
            let (seen, probe) = store.probe(id);
            if seen {
                return;
            }
            if let Err(e) = store.insert_probed(id, probe, now) {
                tracing::warn!(error = %e, "dedup store rotation failed; will retry on the next event");
            }
            marked += 1;
        });
        if let Err(e) = result {
            tracing::warn!(
                destination = %self.sink.describe(),
                error = %e,
                "cannot read the end of the destination; events a killed run wrote without marking may be written again"
            );
        }
        if marked > 0 {
            tracing::info!(
                events = marked,
                destination = %self.sink.describe(),
                "marked {marked} events at the end of the destination as seen: the last run wrote them but stopped before recording them"
            );
        }
        marked
    }

    /// A list starts (or starts over): the events it offers are counted and dated until
    /// [`Pipeline::list_finished`].
    pub fn list_started(&mut self) {
        self.listing = Some(ListTally::default());
    }

    /// The list that [`Pipeline::list_started`] is complete and written: tells the store what
    /// the API server holds, which decides how long its filters are kept.
    pub fn list_finished(&mut self) {
        if let Some(t) = self.listing.take() {
            self.store.listed(t.count, t.oldest, SystemTime::now());
            self.store_published = None;
            self.publish_metrics();
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn store_stats(&self) -> StoreStats {
        self.store.stats()
    }

    pub fn destination(&self) -> String {
        self.sink.describe()
    }

    /// An event object as a watch frame carries it (kind and apiVersion included). Its
    /// resourceVersion, when it has one, is copied into `resource_version`, which saves the
    /// watcher a second parse of the object.
    pub fn offer_object(&mut self, object: &[u8], resource_version: &mut String) -> Offered {
        self.offer(object, Some(resource_version), Via::Watch, write_watch)
    }

    /// An item of a list page, which lacks kind and apiVersion.
    pub fn offer_list_item(&mut self, item: &[u8], index: usize) -> Offered {
        self.offer(item, None, Via::List, |obj, out| {
            frame::write_list_item(obj, index, out)
        })
    }

    /// A list item as [`crate::wire::list_page::ListReader`] hands it out, checked and identified
    /// by its one JSON pass.
    pub fn offer_read_item(&mut self, item: Item<'_>) -> Offered {
        let index = item.index;
        self.offer_read(item, None, |obj, out| {
            frame::write_list_item(obj, index, out)
        })
    }

    /// An item of a list that came as a watch object (a list chunk kubectl printed as one
    /// frame, [`crate::wire::list_object`]): it carries its own kind and apiVersion, so it is
    /// written as a watch object is.
    pub fn offer_listed_object(
        &mut self,
        item: Item<'_>,
        resource_version: &mut String,
    ) -> Offered {
        self.offer_read(item, Some(resource_version), write_watch)
    }

    fn offer_read(
        &mut self,
        item: Item<'_>,
        resource_version: Option<&mut String>,
        write: impl FnOnce(&[u8], &mut Vec<u8>) -> Result<(), frame::FrameError>,
    ) -> Offered {
        let view = match item.view {
            Ok(view) => view,
            Err(e) => {
                self.counters.malformed += 1;
                tracing::warn!(error = %e, item = item.index, "skipping an event that cannot be identified");
                return Offered::Malformed;
            }
        };
        view.identity_into(&mut self.id);
        self.offer_identified(view, item.bytes, resource_version, Via::List, write)
    }

    /// [`Pipeline::offer_object`] for an object taken from a frame without parsing the frame
    /// ([`frame::split_common_frame`]): it is checked here, by the identity parse and a UTF-8
    /// check. `None` when it fails, with nothing counted or logged: the caller then parses the
    /// frame properly and offers the object again, which reports the problem.
    pub fn offer_unchecked_object(
        &mut self,
        object: &[u8],
        resource_version: &mut String,
    ) -> Option<Offered> {
        self.offer_unchecked(object, resource_version, Via::Watch)
    }

    /// An initial event of a streaming list, as a watch frame carries it: part of the list
    /// (the Python tool's files are consulted, see [`Pipeline::written_by_original`]).
    pub fn offer_initial_object(
        &mut self,
        object: &[u8],
        resource_version: &mut String,
    ) -> Offered {
        self.offer(object, Some(resource_version), Via::List, write_watch)
    }

    /// [`Pipeline::offer_unchecked_object`] for an initial event of a streaming list.
    pub fn offer_unchecked_initial_object(
        &mut self,
        object: &[u8],
        resource_version: &mut String,
    ) -> Option<Offered> {
        self.offer_unchecked(object, resource_version, Via::List)
    }

    fn offer_unchecked(
        &mut self,
        object: &[u8],
        resource_version: &mut String,
        via: Via,
    ) -> Option<Offered> {
        // The frame parse would have checked this (serde_json's RawValue does); identity's
        // parse does not look inside the strings it skips. Events are nearly always ASCII,
        // which is checked much faster than UTF-8 (this check was 7% of the stream's CPU).
        if !is_ascii(object) {
            std::str::from_utf8(object).ok()?;
        }
        let view = identity::identity_into(object, &mut self.id).ok()?;
        Some(self.offer_identified(view, object, Some(resource_version), via, write_watch))
    }

    fn offer(
        &mut self,
        object: &[u8],
        resource_version: Option<&mut String>,
        via: Via,
        write: impl FnOnce(&[u8], &mut Vec<u8>) -> Result<(), frame::FrameError>,
    ) -> Offered {
        let view = match identity::identity_into(object, &mut self.id) {
            Ok(view) => view,
            Err(e) => {
                self.counters.malformed += 1;
                tracing::warn!(error = %e, "skipping an event that cannot be identified");
                return Offered::Malformed;
            }
        };
        self.offer_identified(view, object, resource_version, via, write)
    }

    /// The rest of an offer, once `self.id` holds the identity of `view`.
    fn offer_identified(
        &mut self,
        view: EventView<'_>,
        object: &[u8],
        resource_version: Option<&mut String>,
        via: Via,
        write: impl FnOnce(&[u8], &mut Vec<u8>) -> Result<(), frame::FrameError>,
    ) -> Offered {
        if let (Some(out), Some(rv)) = (resource_version, &view.resource_version) {
            out.clear();
            out.push_str(rv);
        }
        if via == Via::List
            && let Some(t) = &mut self.listing
        {
            t.count += 1;
            if let Some(at) = event_time::changed_at(object) {
                t.oldest = Some(t.oldest.map_or(at, |o| o.min(at)));
            }
        }
        let (in_store, probe) = self.store.probe(&self.id);
        let queued_already = self.queued_keys.contains(&probe.key())
            && self.pending[..self.queued].contains(&self.id);
        if queued_already || in_store {
            self.counters.skipped += 1;
            tracing::trace!(event = %view, "already written");
            return Offered::Seen;
        }
        if via == Via::List && self.store.has_originals() && self.written_by_original(&view) {
            self.counters.skipped += 1;
            tracing::trace!(event = %view, "already written by the Python kube-event-pipe");
            return Offered::Seen;
        }
        if let Some(hold) = &mut self.hold
            && !hold.writing()
        {
            let rv = view.resource_version.as_deref();
            hold.offer(&self.id, probe, rv, &mut self.store);
            return Offered::Followed;
        }
        let mark = self.lines.len();
        if let Err(e) = write(object, &mut self.lines) {
            self.lines.truncate(mark);
            self.counters.malformed += 1;
            tracing::warn!(event = %view, error = %e, "skipping an event that cannot be written as one line");
            return Offered::Malformed;
        }
        self.lines.push(b'\n');
        tracing::debug!(event = %view, "new event");
        if self.queued == self.pending.len() {
            self.pending.push(Vec::with_capacity(self.id.len()));
        }
        let slot = &mut self.pending[self.queued];
        slot.clear();
        slot.extend_from_slice(&self.id);
        self.probes.push(probe);
        self.queued_keys.insert(probe.key());
        self.queued += 1;
        Offered::Queued
    }

    /// Whether the Python kube-event-pipe's files hold a listed event under that tool's
    /// identity `name-count`; if so, the event is recorded under ours too. Those files can only
    /// hold events from before the switch, and the daemon's first list delivers all of those
    /// that the server still has; recorded then, they are known to our own filter when they
    /// come again (DELETED notifications, re-lists), also after those files aged out.
    /// Everything the watch delivers is a change since a list, so it is never looked up there:
    /// that could only add false positives, and would take a `series.count` bump, which
    /// that tool's identity ignores, for a repeat.
    fn written_by_original(&mut self, view: &EventView<'_>) -> bool {
        if !self
            .store
            .written_by_original(&view.name, view.count, &mut self.original_key)
        {
            return false;
        }
        self.adopted.push(self.id.clone());
        true
    }

    /// Records the identities of [`Pipeline::adopted`] events in our store.
    fn mark_adopted(&mut self) {
        if self.adopted.is_empty() {
            return;
        }
        let now = SystemTime::now();
        for id in self.adopted.drain(..) {
            if let Err(e) = self.store.insert(&id, now) {
                tracing::warn!(error = %e, "dedup store rotation failed; will retry on the next event");
            }
        }
    }

    /// Whether the batch is big enough that the source should commit before offering more.
    pub fn batch_full(&self) -> bool {
        self.lines.len() >= BATCH_BYTES || self.adopted.len() >= ADOPTED_MAX
    }

    pub fn has_queued(&self) -> bool {
        self.queued > 0
    }

    /// Writes the queued lines, retrying with back-off while the destination fails (the source
    /// waits meanwhile: back-pressure, nothing dropped), then marks them as seen.
    pub async fn commit(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Interrupted> {
        self.mark_adopted();
        if let Some(hold) = &mut self.hold {
            hold.drain(&mut self.store);
        }
        if self.queued == 0 {
            // Repeats and malformed events move the counters without a write.
            self.publish_metrics();
            return Ok(());
        }
        if !gate_open(self.hold.as_ref(), shutdown).await? {
            self.drop_queued();
            return Ok(());
        }
        let mut done = 0;
        // The end of what may be written: all of it, unless this host stops leading while the
        // destination fails; then only the line a failed write cut short is finished.
        let mut limit = self.lines.len();
        // Lines (and their bytes) already marked as seen: a failed attempt may have got some
        // lines out whole, and those are marked at once, so a crash while the destination keeps
        // failing (a full disk) repeats none of them.
        let mut marked = (0, 0);
        let mut failures = 0u32;
        let mut delay = RETRY_FIRST;
        while let Err(e) = self.sink.write_lines(&self.lines[..limit], &mut done) {
            self.mark_written(&mut marked, done);
            failures += 1;
            self.write_errors += 1;
            self.publish_metrics();
            if failures == 1 {
                tracing::error!(error = %e, events = self.queued, "cannot write events; holding them and retrying");
            } else {
                tracing::debug!(error = %e, failures, "write still failing");
            }
            let plural = if self.queued == 1 { "" } else { "s" };
            self.progress.failing(&format!(
                "{WRITING}: {e}; holding {} event{plural}",
                self.queued
            ));
            if *shutdown.borrow() {
                return Err(Interrupted);
            }
            // Waiting to retry is the loop doing its job, not a hang: it shows itself alive
            // meanwhile. A write(2) that blocks shows nothing, so a hung destination still
            // stops the watchdog.
            sleep_alive(delay, &self.progress, shutdown).await?;
            delay = (delay * 2).min(RETRY_MAX);
            if !gate_open(self.hold.as_ref(), shutdown).await? {
                limit = memchr::memchr(b'\n', &self.lines[done..]).map_or(done, |i| done + i + 1);
                if done == 0 || self.lines[done - 1] == b'\n' {
                    limit = done;
                }
            }
        }
        if failures > 0 {
            tracing::info!(failures, "writing events again");
            self.progress.resolved(WRITING);
        }
        if limit < self.lines.len() {
            self.mark_written(&mut marked, done);
            self.drop_queued();
            return Ok(());
        }
        // Every line is out: mark the ones a failed attempt did not, without looking for their
        // ends (a byte scan of the whole batch was 15% of the initial sync's CPU).
        let now = SystemTime::now();
        for (id, probe) in self.pending[..self.queued]
            .iter()
            .zip(&self.probes)
            .skip(marked.0)
        {
            if let Err(e) = self.store.insert_probed(id, *probe, now) {
                tracing::warn!(error = %e, "dedup store rotation failed; will retry on the next event");
            }
        }
        self.counters.written += self.queued as u64;
        self.bytes_written += self.lines.len() as u64;
        self.queued = 0;
        self.probes.clear();
        self.queued_keys.clear();
        self.lines.clear();
        self.metrics.wrote(now);
        self.publish_metrics();
        Ok(())
    }

    /// Forgets the queued lines unwritten and unmarked: this host stopped leading, and the
    /// next leader writes them (they are past the version this host recorded as written).
    fn drop_queued(&mut self) {
        tracing::debug!(
            events = self.queued,
            "not leading: the queued events are left to the leader"
        );
        self.queued = 0;
        self.probes.clear();
        self.queued_keys.clear();
        self.lines.clear();
    }

    /// Marks the identities of the lines that end within `lines[..done]` and are not marked
    /// yet; `marked` is (lines, bytes) marked so far. Each queued identity has exactly one line.
    fn mark_written(&mut self, marked: &mut (usize, usize), done: usize) {
        let now = SystemTime::now();
        let (mut n, mut at) = *marked;
        while let Some(i) = memchr::memchr(b'\n', &self.lines[at..done]) {
            at += i + 1;
            // The line is out; a failed rotation only means the identity went into the current
            // filter, so log it and go on.
            if let (Some(id), Some(probe)) =
                (self.pending[..self.queued].get(n), self.probes.get(n))
                && let Err(e) = self.store.insert_probed(id, *probe, now)
            {
                tracing::warn!(error = %e, "dedup store rotation failed; will retry on the next event");
            }
            n += 1;
        }
        *marked = (n, at);
    }

    /// Pushes the filters' dirty pages towards the disk without waiting (periodic) or waiting
    /// (shutdown).
    pub fn flush_store(&mut self, wait: bool) {
        self.store_published = None;
        self.publish_metrics();
        let result = if wait {
            self.store.flush()
        } else {
            self.store.flush_async()
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot flush the dedup filters");
        }
    }
}

/// Leader election: whether a batch may be written. True without election, and while this host
/// leads with a fresh renewal; false once it no longer leads (the batch is then dropped, unwritten
/// and unmarked). While it leads but its renewal is late, neither: the write waits until the
/// renewal succeeds or the election gives up. Dropping then could lose the batch, since a late
/// renewal that succeeds would record the watch's position past it.
async fn gate_open(
    hold: Option<&Hold>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<bool, Interrupted> {
    let Some(hold) = hold else {
        return Ok(true);
    };
    loop {
        if !hold.writing() {
            return Ok(false);
        }
        if hold.may_write() {
            return Ok(true);
        }
        if *shutdown.borrow() {
            return Err(Interrupted);
        }
        tokio::select! {
            _ = tokio::time::sleep(GATE_POLL) => {}
            _ = shutdown.changed() => return Err(Interrupted),
        }
    }
}

/// How often a write held back by a late renewal looks at the gate again.
const GATE_POLL: Duration = Duration::from_millis(20);

/// Where an offered event came from: a list page (the server's state at the time) or the
/// watch (a change since). In a replayed kubectl stream, list chunks count as a list and
/// single events as the watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    List,
    Watch,
}

/// The hasher of `queued_keys`: its keys are already SipHash digests, so they are used as is.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// How a watch object is written: as it came (its kind and apiVersion are in it).
fn write_watch(object: &[u8], out: &mut Vec<u8>) -> Result<(), frame::FrameError> {
    frame::write_watch_object(object, out);
    Ok(())
}
