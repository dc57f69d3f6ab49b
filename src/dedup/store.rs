//! The set of filter files: it grows while the API server holds more, and sheds filters by age.

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::filter::{self, Filter, Hashes, Listed, OpenError};
use super::format::{FormatError, Header};
use super::original::{self, OriginalFilter, Originals};
use super::retention::{self, Span};
use super::sizing::{self, Rotation, TARGET_RATE};
use super::stats::FileStats;

/// Where and how to keep the filters. Built by the config module.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Persistence directory holding `<unix_timestamp>.bloom` files.
    pub dir: PathBuf,
    /// Identities the first filter, and every filter at least, is sized for.
    pub capacity: u64,
    /// Bound on the probability that a new identity is taken for a repeat, for the whole set;
    /// the daemon sizes for [`TARGET_RATE`] when that is tighter.
    pub error_rate: f64,
    /// The newest `batch_count` filters are always kept; with `batch_duration`, the age
    /// under which no filter is deleted.
    pub batch_count: u32,
    /// Age of the newest filter after which the next insertion starts a new one.
    pub batch_duration: Duration,
    /// Most bytes the filter files may take together (they are mapped: memory and disk).
    pub max_bytes: u64,
}

impl StoreConfig {
    /// The false-positive bound new filters are sized for: `error_rate`, or [`TARGET_RATE`]
    /// if that is tighter.
    pub fn sized_rate(&self) -> f64 {
        self.error_rate.min(TARGET_RATE)
    }

    /// `batch_count × batch_duration`: no filter younger than this is deleted, and the
    /// Python tool's files are used this long after their names' timestamps (the age at which
    /// that tool deleted them).
    pub fn original_lifetime_secs(&self) -> u64 {
        u64::from(self.batch_count).saturating_mul(self.batch_duration.as_secs())
    }

    /// Bytes of the first filter (`capacity` identities at half the sized bound). The limit must
    /// hold two of them: the newest and, when it fills, its successor.
    pub fn first_filter_bytes(&self) -> Result<u64, String> {
        filter::file_bytes(self.capacity, self.sized_rate() / 2.0)
    }

    fn validate(&self) -> Result<(), StoreError> {
        let bad = |msg: String| Err(StoreError::InvalidConfig(msg));
        if self.batch_count == 0 {
            return bad("batch count must be at least 1".into());
        }
        if self.capacity == 0 {
            return bad("filter capacity must be at least 1".into());
        }
        if !(self.error_rate > 0.0 && self.error_rate < 1.0) {
            return bad(format!(
                "filter error rate {} must be between 0 and 1 (exclusive)",
                self.error_rate
            ));
        }
        if self.batch_duration < Duration::from_secs(1) {
            return bad("batch duration must be at least one second".into());
        }
        // Catch sizes and hash counts we could not write at start-up, not at the first rotation.
        // The smallest rate a later filter may get is checked too: the hash count grows as it falls.
        let rate = self.sized_rate() / 2.0;
        for r in [
            rate,
            sizing::next_rate(self.sized_rate(), [self.sized_rate()]),
        ] {
            let (bits, hashes) =
                filter::sizing(self.capacity, r).map_err(StoreError::InvalidConfig)?;
            Header {
                version: super::format::VERSION,
                capacity: self.capacity,
                error_rate: r,
                hashes,
                bits,
                seed: PLACEHOLDER_SEED,
                created: 0,
                inserted: 0,
            }
            .check_params()
            .map_err(|e| StoreError::InvalidConfig(format!("filter parameters: {e}")))?;
        }
        let first = self
            .first_filter_bytes()
            .map_err(StoreError::InvalidConfig)?;
        if self.max_bytes < first.saturating_mul(2) {
            return bad(format!(
                "a memory limit of {} bytes cannot hold two filters of {} identities ({first} bytes each)",
                self.max_bytes, self.capacity
            ));
        }
        Ok(())
    }
}

/// Any seed with unequal halves, to check parameters before a real file exists.
const PLACEHOLDER_SEED: [u8; 32] = {
    let mut s = [0u8; 32];
    s[16] = 1;
    s
};

/// The configuration key that sets [`StoreConfig::max_bytes`], named where the limit is met.
pub const LIMIT_KEY: &str = "filter_max_mib";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid dedup store configuration: {0}")]
    InvalidConfig(String),
    /// The persistence directory cannot be created or written to. Detected at start-up; the
    /// daemon maps it to exit status 2.
    #[error("persistence directory {} is not writable ({what}): {source}", path.display())]
    Unwritable {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("cannot list persistence directory {}: {source}", path.display())]
    ReadDir { path: PathBuf, source: io::Error },
    #[error("cannot create filter file {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot open filter file {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot flush filter file {}: {source}", path.display())]
    Flush { path: PathBuf, source: io::Error },
}

/// A file moved aside at open because it is not a usable filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    pub path: PathBuf,
    /// Where it went (`*.bloom.corrupt`); `None` if the rename failed (it was still skipped).
    pub moved_to: Option<PathBuf>,
    pub reason: FormatError,
}

/// Snapshot for logs, STATUS and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStats {
    /// Oldest first.
    pub files: Vec<FileStats>,
    /// The Python kube-event-pipe's files still in use, oldest first; `inserted` is estimated
    /// from the bits set and `fill_limit` is their capacity (they are never written).
    pub originals: Vec<FileStats>,
    /// Probability that a new identity is reported as seen: `1 - Π(1 - fp_i)` over both
    /// kinds of file.
    pub estimated_fp: f64,
    /// The configured bound for the set.
    pub error_rate: f64,
    /// The bound new filters are sized for (`error_rate`, or 1e-6 if tighter).
    pub sized_rate: f64,
    /// Bytes of our filter files, and the most they may take.
    pub bytes: u64,
    pub max_bytes: u64,
    /// Whether the last new filter had to make room by deleting filters the server may still
    /// need, or was sized down, for the limit.
    pub at_limit: bool,
    /// Filters deleted for the limit since start.
    pub evicted: u64,
    /// What the last list showed of the API server.
    pub listed: Option<Listed>,
    /// Estimated new events taken for repeats (not written) since start.
    pub fp_losses: f64,
}

impl StoreStats {
    /// Identities the filters hold (our files, and the Python tool's estimated).
    pub fn identities(&self) -> u64 {
        self.files
            .iter()
            .chain(&self.originals)
            .map(|f| f.inserted)
            .sum()
    }

    /// Timestamp of the oldest filter (ours or the Python tool's).
    pub fn oldest(&self) -> Option<u64> {
        self.files
            .iter()
            .chain(&self.originals)
            .map(|f| f.timestamp)
            .min()
    }
}

impl fmt::Display for StoreStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fill = self.files.last().map_or(0.0, |s| s.fill);
        write!(f, "filters {}", self.files.len())?;
        if !self.originals.is_empty() {
            write!(f, " + {} of the Python tool", self.originals.len())?;
        }
        write!(
            f,
            " (newest fill {:.0}%, est. fp {:.5} of bound {}",
            fill * 100.0,
            self.estimated_fp,
            self.error_rate
        )?;
        write!(
            f,
            ", {} identities, {:.1} of {} MiB)",
            self.identities(),
            self.bytes as f64 / MIB,
            self.max_bytes as f64 / MIB
        )?;
        if self.at_limit {
            write!(f, ", at the memory limit: raise {LIMIT_KEY}")?;
        }
        Ok(())
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// The deduplication memory: answers "seen before?" for identities and remembers new ones,
/// across restarts, with a bounded false-positive rate.
///
/// Bits and counts live in shared file mappings, so a process exit or kill loses nothing
/// written; [`Store::flush`] on shutdown (and [`Store::flush_async`] now and then) covers
/// kernel crashes and power loss too. Dropping the store does not flush.
pub struct Store {
    cfg: StoreConfig,
    /// Read-only filters, oldest first.
    older: VecDeque<Filter>,
    /// The filter insertions go to.
    newest: Filter,
    /// Bumped whenever `newest` is replaced, so a [`Probe`] knows whether its hashes still fit.
    generation: u64,
    quarantined: Vec<Quarantined>,
    /// The Python kube-event-pipe's files, read until they age out.
    originals: Originals,
    /// What the last list showed of the API server (also recorded in the newest file).
    listed: Option<Listed>,
    /// The set's false-positive estimate, refreshed every [`FP_REFRESH`] insertions and on
    /// every change of the set (computing it takes a `powf` per filter).
    fp_now: f64,
    since_fp: u32,
    /// Estimated new events lost to false positives since start.
    fp_losses: f64,
    at_limit: bool,
    limit_warned: bool,
    evicted: u64,
}

const FP_REFRESH: u32 = 1024;

/// What [`Store::probe`] computed for an identity: the newest filter's hashes, reused by
/// [`Store::insert_probed`] so a new identity is hashed once, not twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    hashes: Hashes,
    generation: u64,
}

impl Probe {
    /// A 64-bit digest of the identity, for in-memory sets of identities taken between a
    /// probe and the next rotation (digests from different filters are unrelated).
    pub fn key(&self) -> u64 {
        self.hashes.key()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.cfg.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Store {
    /// Opens (or starts) the store in `cfg.dir`: creates the directory, proves it writable,
    /// removes temporary files left by a crash, loads the valid filters, quarantines bad ones,
    /// deletes those that have aged out (see `retention`) or do not fit the limit, and starts
    /// a new filter if there is none or the newest is too old or full.
    pub fn open(cfg: StoreConfig, now: SystemTime) -> Result<Store, StoreError> {
        cfg.validate()?;
        let dir = cfg.dir.clone();
        check_writable(&dir)?;

        let mut candidates = scan_dir(&dir)?;
        candidates.sort_by_key(|c| c.0);
        let mut files = Vec::new();
        let mut quarantined = Vec::new();
        let mut originals = Originals::default();
        for (ts, path) in candidates {
            // A file that cannot even be read here is left to `Filter::open` to report.
            if original::claims_format(&path).unwrap_or(false) {
                open_original(&cfg, ts, path, now, &mut originals, &mut quarantined)?;
                continue;
            }
            match Filter::open(&path, ts) {
                Ok(f) => files.push(f),
                Err(OpenError::Format(reason)) => quarantined.push(quarantine(&path, reason)),
                Err(OpenError::Io(source)) => return Err(StoreError::Open { path, source }),
            }
        }
        let listed = files.iter().filter_map(Filter::listed).max_by_key(|l| l.at);
        let newest = match files.pop() {
            Some(f) => f,
            None => {
                let rate = cfg.sized_rate() / 2.0;
                let seed = filter::random_seed().map_err(|source| StoreError::Create {
                    path: dir.join(filter::file_name(unix_secs(now))),
                    source,
                })?;
                let f = create_filter(
                    &cfg,
                    unix_secs(now),
                    unix_secs(now),
                    cfg.capacity,
                    rate,
                    seed,
                )?;
                tracing::info!(file = %f.path().display(), "started the first dedup filter");
                f
            }
        };

        let mut store = Store {
            cfg,
            older: files.into(),
            newest,
            generation: 0,
            quarantined,
            originals,
            listed,
            fp_now: 0.0,
            since_fp: 0,
            fp_losses: 0.0,
            at_limit: false,
            limit_warned: false,
            evicted: 0,
        };
        store.log_originals();
        store.expire(unix_secs(now), 0);
        if let Some(l) = listed {
            store.newest.set_listed(l);
        }
        if store.make_room(0) {
            store.warn_limit();
        }
        store.maybe_rotate(now)?;
        store.refresh_fp();
        tracing::info!(dir = %dir.display(), stats = %store.stats(), "dedup store open");
        Ok(store)
    }

    /// Whether the Python kube-event-pipe's files are in use: only then is
    /// [`Store::written_by_original`] worth asking.
    #[inline]
    pub fn has_originals(&self) -> bool {
        !self.originals.is_empty()
    }

    /// Whether the Python kube-event-pipe's files (see `original`) hold the event `name` with
    /// `count` (its raw JSON text, `None` when absent or null) under that tool's identity
    /// `name-count`. `key` is a scratch buffer. False positives at about their share of
    /// [`StoreStats::estimated_fp`].
    pub fn written_by_original(&self, name: &str, count: Option<&str>, key: &mut Vec<u8>) -> bool {
        self.originals.contains(name, count, key)
    }

    fn log_originals(&self) {
        let Some(until) = self.originals.until() else {
            return;
        };
        let n = self.originals.len();
        tracing::info!(
            files = n,
            until = %show_time(until),
            "found {n} filter file{} of the Python kube-event-pipe: events it wrote are not written again; used until {}, then deleted",
            if n == 1 { "" } else { "s" },
            show_time(until)
        );
    }

    /// Whether `id` is (probably) in any filter. No false negatives; false positives at
    /// about [`StoreStats::estimated_fp`].
    pub fn contains(&self, id: &[u8]) -> bool {
        let h = self.newest.hashes(id);
        self.newest.contains_hashed(h) || self.in_older(id, h)
    }

    /// Whether an older filter holds `id`; `h` are its hashes under the newest's seed, which
    /// the filters started by this version share.
    #[inline]
    fn in_older(&self, id: &[u8], h: Hashes) -> bool {
        let seed = self.newest.seed();
        self.older.iter().rev().any(|f| {
            if f.seed() == seed {
                f.contains_hashed(h)
            } else {
                f.contains(id)
            }
        })
    }

    /// Records `id` in the newest filter, rotating first if that filter is too old or full.
    ///
    /// If the rotation fails (say the disk is full), `id` is still recorded in the current
    /// newest filter so it is not forgotten, and the error is returned for the caller to log;
    /// the rotation is retried on the next insertion.
    pub fn insert(&mut self, id: &[u8], now: SystemTime) -> Result<(), StoreError> {
        let rotated = self.maybe_rotate(now);
        let new = self.newest.insert(id);
        self.inserted(new);
        rotated.map(|_| ())
    }

    /// `contains`, also returning the newest filter's hashes for [`Store::insert_probed`]: the
    /// pipeline looks an identity up before its line is written and records it only after.
    pub fn probe(&self, id: &[u8]) -> (bool, Probe) {
        let h = self.newest.hashes(id);
        self.newest.prefetch(h);
        let seen = self.newest.contains_hashed(h) || self.in_older(id, h);
        let probe = Probe {
            hashes: h,
            generation: self.generation,
        };
        (seen, probe)
    }

    /// [`Store::insert`] of an identity [`Store::probe`]d before: its hashes are reused unless
    /// the newest filter changed since (a rotation, here or earlier).
    pub fn insert_probed(
        &mut self,
        id: &[u8],
        probe: Probe,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let rotated = self.maybe_rotate(now);
        let new = if probe.generation == self.generation {
            self.newest.insert_hashed(probe.hashes)
        } else {
            self.newest.insert(id)
        };
        self.inserted(new);
        rotated.map(|_| ())
    }

    /// `contains` then, if absent, `insert`, hashing the newest filter's probes once.
    /// Returns `true` if `id` was new (and is now recorded). An error can only come from a
    /// failed rotation, so it means `id` was new and is recorded all the same (see
    /// [`Store::insert`]).
    pub fn check_and_insert(&mut self, id: &[u8], now: SystemTime) -> Result<bool, StoreError> {
        let h = self.newest.hashes(id);
        if self.newest.contains_hashed(h) || self.in_older(id, h) {
            return Ok(false);
        }
        let rotated = self.maybe_rotate(now);
        let h = match rotated {
            // A new filter may have a new seed (after filters of an older version).
            Ok(true) => self.newest.hashes(id),
            _ => h,
        };
        let new = self.newest.insert_hashed(h);
        self.inserted(new);
        rotated.map(|_| true)
    }

    /// Counts a recorded identity: each new event written was offered past the set's current
    /// false-positive estimate, so about `fp / (1 - fp)` events were lost per one written.
    #[inline]
    fn inserted(&mut self, new: bool) {
        if !new {
            return;
        }
        self.fp_losses += self.fp_now / (1.0 - self.fp_now);
        self.since_fp += 1;
        if self.since_fp >= FP_REFRESH {
            self.refresh_fp();
        }
    }

    fn refresh_fp(&mut self) {
        self.since_fp = 0;
        let miss: f64 = self
            .all()
            .map(|f| 1.0 - f.estimated_fp())
            .chain(self.originals.stats().iter().map(|s| 1.0 - s.estimated_fp))
            .product();
        self.fp_now = (1.0 - miss).clamp(0.0, 0.5);
    }

    /// What a list just showed of the API server: it carried `count` events, the oldest dated
    /// `oldest` (unix seconds, see `wire::event_time`; `None` when none was dated). Recorded
    /// in the newest file, it decides how long filters are kept (see `retention`), also after a
    /// restart; filters it no longer protects are deleted now.
    pub fn listed(&mut self, count: u64, oldest: Option<i64>, now: SystemTime) {
        let at = unix_secs(now).max(1);
        let oldest = oldest.map_or(at, |t| u64::try_from(t).unwrap_or(0).clamp(1, at));
        let l = Listed { at, oldest, count };
        self.listed = Some(l);
        self.newest.set_listed(l);
        tracing::info!(
            events = count,
            oldest = %show_time(oldest),
            oldest_age_secs = l.oldest_age(),
            "the API server held {count} events, the oldest from {} ({}); filters are kept while it may hold events as old",
            show_time(oldest),
            show_age(l.oldest_age())
        );
        if self.expire(at, 0) > 0 {
            self.refresh_fp();
        }
    }

    /// Starts a new filter if the newest is at least `batch_duration` old or has reached its
    /// fill limit (see [`FileStats::fill_limit`]), deleting filters that have aged out (see
    /// `retention`), and the oldest while the new one would not fit the limit.
    /// Returns whether it rotated.
    /// The pipeline need not call this: insertions do.
    pub fn maybe_rotate(&mut self, now: SystemTime) -> Result<bool, StoreError> {
        let now_s = unix_secs(now);
        if !self.originals.is_empty() {
            self.originals.expire(now_s);
        }
        let newest = &self.newest;
        let age_limit = newest
            .timestamp()
            .saturating_add(self.cfg.batch_duration.as_secs());
        let reason = if now_s >= age_limit {
            Rotation::Age
        } else if newest.is_full() {
            tracing::info!(
                file = %newest.path().display(),
                inserted = newest.inserted(),
                capacity = newest.capacity(),
                fill_limit = newest.fill_limit(),
                "filter reached its capacity; starting a larger one beside it"
            );
            Rotation::Fill
        } else {
            return Ok(false);
        };
        // A fill rotation can come twice within a second, and the clock can step back:
        // names must stay unique and ordered.
        let ts = now_s.max(newest.timestamp().saturating_add(1));
        // Aged-out filters go before the new one is created, with a place kept for it among the
        // newest batch_count, so the directory never holds more than it must, not even for a
        // moment (batch_count 1 excepted: the newest must stay until its successor exists).
        self.expire(now_s, 1);
        let rate = sizing::next_rate(self.cfg.sized_rate(), self.all().map(Filter::error_rate));
        let wanted = sizing::next_capacity(
            self.cfg.capacity,
            reason,
            self.newest.capacity(),
            self.newest.inserted(),
        );
        // No filter takes more than half the limit, so the newest and its successor always fit.
        let half = self.cfg.max_bytes / 2;
        let capacity = sizing::fit_capacity(wanted, rate, half).unwrap_or(1);
        let bytes = filter::file_bytes(capacity, rate).unwrap_or(half);
        let mut limited = self.make_room(bytes);
        if capacity < wanted && reason == Rotation::Fill {
            limited = true;
        }
        let seed = *self.newest.seed();
        let mut filter = create_filter(&self.cfg, ts, now_s, capacity, rate, seed)?;
        if let Some(l) = self.listed {
            filter.set_listed(l);
        }
        let new_path = filter.path().to_path_buf();
        let previous = std::mem::replace(&mut self.newest, filter);
        self.generation += 1;
        self.older.push_back(previous);
        self.expire(now_s, 0);
        self.at_limit = limited;
        if limited {
            self.warn_limit();
        }
        self.refresh_fp();
        tracing::info!(
            file = %new_path.display(),
            reason = ?reason,
            capacity,
            error_rate = rate,
            stats = %self.stats(),
            "started a new dedup filter"
        );
        Ok(true)
    }

    /// Deletes the filters that have aged out (see `retention`), except the newest
    /// `batch_count - reserve` (the newest always stays). Returns how many went.
    fn expire(&mut self, now: u64, reserve: usize) -> usize {
        let keep = (self.cfg.batch_count as usize)
            .saturating_sub(reserve)
            .max(1);
        let floor = self.cfg.original_lifetime_secs();
        let mut dropped = 0;
        // Oldest first: a filter is only deleted with every older one.
        while self.older.len() + 1 > keep {
            let Some(oldest) = self.older.front() else {
                break;
            };
            let end = self
                .older
                .get(1)
                .map_or(self.newest.timestamp(), Filter::timestamp);
            let span = Span {
                start: oldest.timestamp(),
                end,
            };
            if !retention::expired(span, now, floor, self.listed) {
                break;
            }
            self.drop_oldest();
            dropped += 1;
        }
        dropped
    }

    /// Deletes the oldest filters (never the newest) while the files and `extra` more bytes
    /// would pass the limit. Returns whether any had to go.
    fn make_room(&mut self, extra: u64) -> bool {
        let mut total: u64 = self.all().map(Filter::file_len).sum();
        let mut evicted = false;
        while total.saturating_add(extra) > self.cfg.max_bytes {
            let Some(oldest) = self.older.front() else {
                break;
            };
            total = total.saturating_sub(oldest.file_len());
            self.drop_oldest();
            self.evicted += 1;
            evicted = true;
        }
        evicted
    }

    fn warn_limit(&mut self) {
        self.at_limit = true;
        if self.limit_warned {
            return;
        }
        self.limit_warned = true;
        let since = self.all().next().map_or(0, Filter::timestamp);
        tracing::warn!(
            max_bytes = self.cfg.max_bytes,
            remembered_since = %show_time(since),
            "the dedup filters reached {LIMIT_KEY} ({} MiB): the oldest are deleted to make room, so a re-list writes again the events from before {} that the API server still holds; raise {LIMIT_KEY}",
            self.cfg.max_bytes / (1024 * 1024),
            show_time(since)
        );
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.older.pop_front() {
            let path = old.path().to_path_buf();
            // Unmap before unlinking.
            drop(old);
            remove_old(&path);
        }
    }

    /// Writes all filters to disk and waits (msync MS_SYNC). For shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.flush_with(Filter::flush)
    }

    /// Schedules write-back of all filters without waiting (msync MS_ASYNC). For a periodic
    /// timer, off the hot path.
    pub fn flush_async(&self) -> Result<(), StoreError> {
        self.flush_with(Filter::flush_async)
    }

    fn flush_with(&self, f: impl Fn(&Filter) -> io::Result<()>) -> Result<(), StoreError> {
        let mut first_err = None;
        for filter in self.all() {
            if let Err(source) = f(filter)
                && first_err.is_none()
            {
                first_err = Some(StoreError::Flush {
                    path: filter.path().to_path_buf(),
                    source,
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    pub fn stats(&self) -> StoreStats {
        let files: Vec<FileStats> = self
            .all()
            .map(|f| FileStats {
                timestamp: f.timestamp(),
                inserted: f.inserted(),
                capacity: f.capacity(),
                fill_limit: f.fill_limit(),
                fill: f.inserted() as f64 / f.capacity() as f64,
                estimated_fp: f.estimated_fp(),
                bytes: f.file_len(),
            })
            .collect();
        let originals = self.originals.stats();
        let miss: f64 = files
            .iter()
            .chain(&originals)
            .map(|s| 1.0 - s.estimated_fp)
            .product();
        StoreStats {
            bytes: files.iter().map(|f| f.bytes).sum(),
            files,
            originals,
            estimated_fp: 1.0 - miss,
            error_rate: self.cfg.error_rate,
            sized_rate: self.cfg.sized_rate(),
            max_bytes: self.cfg.max_bytes,
            at_limit: self.at_limit,
            evicted: self.evicted,
            listed: self.listed,
            fp_losses: self.fp_losses,
        }
    }

    /// New filters started since the store was opened (by age or fill).
    pub fn rotations(&self) -> u64 {
        self.generation
    }

    /// Files moved aside by [`Store::open`], with the reasons.
    pub fn quarantined(&self) -> &[Quarantined] {
        &self.quarantined
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Paths of the live filter files, oldest first.
    pub fn files(&self) -> Vec<PathBuf> {
        self.all().map(|f| f.path().to_path_buf()).collect()
    }

    /// Paths of the Python kube-event-pipe's files in use, oldest first.
    pub fn original_files(&self) -> Vec<PathBuf> {
        self.originals.paths().map(Path::to_path_buf).collect()
    }

    /// Oldest first.
    fn all(&self) -> impl Iterator<Item = &Filter> {
        self.older.iter().chain(std::iter::once(&self.newest))
    }
}

/// A unix time for log lines (RFC 3339), or the number if it is out of range.
fn show_time(secs: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX))
        .map_or_else(|_| format!("unix time {secs}"), |t| t.to_string())
}

fn show_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s old"),
        s if s < 7200 => format!("{} min old", s / 60),
        s => format!("{:.1} h old", s as f64 / 3600.0),
    }
}

/// One of the Python kube-event-pipe's files found at start: used until it ages out (deleted
/// at once if it already has), quarantined if it fails its checks.
fn open_original(
    cfg: &StoreConfig,
    ts: u64,
    path: PathBuf,
    now: SystemTime,
    originals: &mut Originals,
    quarantined: &mut Vec<Quarantined>,
) -> Result<(), StoreError> {
    let until = ts.saturating_add(cfg.original_lifetime_secs());
    if unix_secs(now) >= until {
        original::delete_aged_out(&path);
        return Ok(());
    }
    match OriginalFilter::open(&path) {
        Ok(f) => originals.push(ts, until, f),
        Err(OpenError::Format(reason)) => quarantined.push(quarantine(&path, reason)),
        Err(OpenError::Io(source)) => return Err(StoreError::Open { path, source }),
    }
    Ok(())
}

/// `ts` names the file (unique, increasing); the actual clock reading is recorded inside.
fn create_filter(
    cfg: &StoreConfig,
    ts: u64,
    created: u64,
    capacity: u64,
    rate: f64,
    seed: [u8; 32],
) -> Result<Filter, StoreError> {
    Filter::create_seeded(&cfg.dir, ts, capacity, rate, created, seed).map_err(|source| {
        StoreError::Create {
            path: cfg.dir.join(filter::file_name(ts)),
            source,
        }
    })
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

const PROBE_PREFIX: &str = ".write-probe.";

/// The temporary name the saved resourceVersion is written under (see `resume`).
const RESUME_TMP: &str = "resource_version.tmp";

/// Mode of a persistence directory the store creates (the umask may take more away).
pub const DIR_MODE: u32 = 0o750;

/// Year ~36800: anything later in a file name is not a real creation time.
const MAX_TIMESTAMP: u64 = 1 << 40;

fn check_writable(dir: &Path) -> Result<(), StoreError> {
    let unwritable = |what, source| StoreError::Unwritable {
        path: dir.to_path_buf(),
        what,
        source,
    };
    // Only the service (and its group) may list what it has seen; an existing directory keeps
    // the mode its owner gave it.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| unwritable("cannot create it", e))?;
    let probe = dir.join(format!("{PROBE_PREFIX}{}", std::process::id()));
    fs::write(&probe, b"probe").map_err(|e| unwritable("cannot create a file in it", e))?;
    fs::remove_file(&probe).map_err(|e| unwritable("cannot delete a file in it", e))?;
    Ok(())
}

/// `<timestamp>.bloom` files in `dir`. Leftover temporary files are removed; anything else is
/// left alone with a log line.
fn scan_dir(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let read_err = |source| StoreError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::info!(file = %path.display(), "ignoring file with a non-UTF-8 name in the persistence directory");
            continue;
        };
        if name.ends_with(".bloom.tmp") || name.starts_with(PROBE_PREFIX) {
            // A filter whose creation was cut short by a crash (it was never renamed into
            // place), or a writability probe from a start-up that died.
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "removed unfinished file left by a crash")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove unfinished file left by a crash")
                }
            }
            continue;
        }
        if name == crate::source::resume::FILE_NAME || name == RESUME_TMP {
            // The saved resourceVersion shares the directory.
            continue;
        }
        if name.ends_with(".bloom.corrupt") {
            tracing::debug!(file = %path.display(), "ignoring quarantined filter file");
            continue;
        }
        let ts = name
            .strip_suffix(".bloom")
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            // "0012.bloom" would alias "12.bloom".
            .filter(|ts| filter::file_name(*ts) == name)
            // Room to add one per rotation without overflowing or colliding.
            .filter(|ts| *ts <= MAX_TIMESTAMP);
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        match ts {
            Some(ts) if is_file => found.push((ts, path)),
            _ => tracing::info!(
                file = %path.display(),
                "ignoring entry in the persistence directory: not a <unix_timestamp>.bloom file"
            ),
        }
    }
    Ok(found)
}

fn quarantine(path: &Path, reason: FormatError) -> Quarantined {
    let mut target = path.as_os_str().to_owned();
    target.push(".corrupt");
    let target = PathBuf::from(target);
    let moved_to = match fs::rename(path, &target) {
        Ok(()) => {
            tracing::warn!(
                file = %path.display(),
                moved_to = %target.display(),
                reason = %reason,
                "quarantined bad filter file {}: {reason}",
                path.display()
            );
            Some(target)
        }
        Err(e) => {
            tracing::warn!(
                file = %path.display(),
                reason = %reason,
                error = %e,
                "bad filter file {} ({reason}) could not be moved aside; skipping it",
                path.display()
            );
            None
        }
    };
    Quarantined {
        path: path.to_path_buf(),
        moved_to,
        reason,
    }
}

fn remove_old(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => tracing::info!(file = %path.display(), "deleted oldest dedup filter"),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot delete old dedup filter")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use crate::dedup::filter::Filter;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};
    use std::time::UNIX_EPOCH;

    pub(crate) const T0: u64 = 1_700_000_000;

    pub(crate) fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    pub(crate) fn config(
        dir: &Path,
        capacity: u64,
        batch_count: u32,
        duration_secs: u64,
    ) -> StoreConfig {
        StoreConfig {
            dir: dir.to_path_buf(),
            capacity,
            error_rate: 0.01,
            batch_count,
            batch_duration: Duration::from_secs(duration_secs),
            max_bytes: 1 << 30,
        }
    }

    #[test]
    fn a_created_directory_is_0750_and_filter_files_0640() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/state");
        // The umask of whoever runs the test must not decide the outcome.
        // SAFETY: umask(2) only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o022) };
        let store = Store::open(config(&dir, 100, 3, 3600), at(T0));
        unsafe { libc::umask(old) };
        let store = store.unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o750);
        let files = store.files();
        assert_eq!(files.len(), 1);
        assert_eq!(mode(&files[0]), 0o640);
    }

    /// Names of the entries in `dir`, sorted.
    pub(crate) fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn bloom_names(dir: &Path) -> Vec<String> {
        names(dir)
            .into_iter()
            .filter(|n| n.ends_with(".bloom"))
            .collect()
    }

    fn newest_ts(store: &Store) -> u64 {
        store.stats().files.last().unwrap().timestamp
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f` with tracing output captured; returns its result and the log text.
    pub(crate) fn with_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        let r = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        (r, text)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<u8>),
        CheckAndInsert(Vec<u8>),
        Wait(u64),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        let id = proptest::collection::vec(any::<u8>(), 0..24);
        prop_oneof![
            8 => id.clone().prop_map(Op::Insert),
            8 => id.prop_map(Op::CheckAndInsert),
            1 => (0u64..150).prop_map(Op::Wait),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn no_false_negatives_across_rotations_and_reopen(
            ops in proptest::collection::vec(op(), 1..400),
            capacity in 5u64..60,
            batch_count in 1u32..5,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(dir.path(), capacity, batch_count, 100);
            let mut now = T0;
            let mut store = Store::open(cfg.clone(), at(now)).unwrap();
            // Every recorded identity with the timestamp of the filter it went into.
            let mut recorded: Vec<(Vec<u8>, u64)> = Vec::new();
            let n_ops = ops.len();
            for (n, op) in ops.into_iter().enumerate() {
                // Checking everything after every step is quadratic; after reopen, time jumps
                // and at the end is where identities could get lost.
                let check_all = matches!(op, Op::Reopen | Op::Wait(_)) || n + 1 == n_ops;
                match op {
                    Op::Insert(id) => {
                        store.insert(&id, at(now)).unwrap();
                        prop_assert!(store.contains(&id));
                        recorded.push((id, newest_ts(&store)));
                    }
                    Op::CheckAndInsert(id) => {
                        let new = store.check_and_insert(&id, at(now)).unwrap();
                        prop_assert!(store.contains(&id));
                        if new {
                            recorded.push((id, newest_ts(&store)));
                        }
                    }
                    Op::Wait(s) => now += s,
                    Op::Reopen => {
                        drop(store);
                        store = Store::open(cfg.clone(), at(now)).unwrap();
                    }
                }
                let stats = store.stats();
                let live: Vec<u64> = stats.files.iter().map(|f| f.timestamp).collect();
                prop_assert_eq!(bloom_names(dir.path()).len(), live.len());
                prop_assert!(stats.bytes <= cfg.max_bytes);
                // Filters go by age only: what went into one younger than
                // batch_count × batch_duration is still found (checked below).
                let floor = cfg.original_lifetime_secs();
                let young = |ts: u64| now.saturating_sub(ts) < floor;
                if !check_all {
                    continue;
                }
                for (id, ts) in &recorded {
                    if live.contains(ts) || young(*ts) {
                        prop_assert!(store.contains(id), "lost {:?} from filter {}", id, ts);
                    }
                }
            }
            prop_assert!(store.quarantined().is_empty());
        }
    }

    #[test]
    fn false_positive_rate_at_full_fill_is_within_the_sized_bound() {
        let dir = tempfile::tempdir().unwrap();
        let capacity = 20_000;
        let mut store = Store::open(config(dir.path(), capacity, 3, 3600), at(T0)).unwrap();
        let mut i = 0u64;
        // Three filters filled to their limits: 20,000, 40,000 and 80,000 identities.
        loop {
            let s = store.stats();
            if s.files.len() == 3 && s.files.iter().all(|f| f.inserted >= f.fill_limit) {
                break;
            }
            store
                .insert(format!("seen-{i}").as_bytes(), at(T0))
                .unwrap();
            i += 1;
        }
        let s = store.stats();
        let caps: Vec<u64> = s.files.iter().map(|f| f.capacity).collect();
        assert_eq!(caps, vec![20_000, 40_000, 80_000]);
        assert!(s.sized_rate == 1e-6 && s.error_rate == 0.01, "{s:?}");
        // Each sized for half the budget the others leave: the union stays within 1e-6.
        assert!(s.estimated_fp <= 1e-6, "estimate {}", s.estimated_fp);
        assert!(
            s.estimated_fp > 5e-7,
            "filters not full? {}",
            s.estimated_fp
        );
        // A million fresh identities: about 0.9 expected to be taken for seen. Poisson tail
        // beyond 8 is ~1e-6; the original sizing (0.01 / 3 per file) would give ~10,000.
        let probes = 1_000_000u64;
        let fp = (0..probes)
            .filter(|j| store.contains(format!("fresh-{j}").as_bytes()))
            .count();
        assert!(fp <= 8, "{fp} false positives in {probes}");
        // The loss estimate follows the fill: about the average rate times the insertions.
        assert!(
            s.fp_losses > 0.0 && s.fp_losses < i as f64 * 1e-6,
            "{}",
            s.fp_losses
        );
    }

    #[test]
    fn fill_rotation_comes_before_the_estimate_passes_the_bound() {
        // 0.1 at batch_count 1 rounds to k = 3, whose estimate at capacity is over 0.1.
        let dir = tempfile::tempdir().unwrap();
        let capacity = 10_000;
        let mut cfg = config(dir.path(), capacity, 1, 3600);
        cfg.error_rate = 0.1;
        let mut store = Store::open(cfg, at(T0)).unwrap();
        let mut i = 0u32;
        while store.stats().files.len() == 1 {
            assert!(store.stats().estimated_fp <= 5e-7, "{}", store.stats());
            let before = store.stats().files[0].clone();
            store.insert(&i.to_le_bytes(), at(T0)).unwrap();
            if store.stats().files.len() > 1 {
                assert_eq!(before.inserted, before.fill_limit);
            }
            i += 1;
        }
    }

    #[test]
    fn rotates_by_age_one_two_three_three() {
        // The DESIGN example: batch_duration 1 s, an event every two seconds.
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path(), 1000, 3, 1), at(T0)).unwrap();
        let mut counts = vec![bloom_names(dir.path()).len()];
        for n in 1..=3u64 {
            store
                .insert(format!("ev{n}").as_bytes(), at(T0 + 2 * n))
                .unwrap();
            counts.push(bloom_names(dir.path()).len());
        }
        assert_eq!(counts, vec![1, 2, 3, 3]);
        assert_eq!(
            bloom_names(dir.path()),
            vec![
                format!("{}.bloom", T0 + 2),
                format!("{}.bloom", T0 + 4),
                format!("{}.bloom", T0 + 6)
            ]
        );
        assert!(store.contains(b"ev1") && store.contains(b"ev3"));
    }

    #[test]
    fn a_quiet_spell_forgets_nothing_until_the_next_insert() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path(), 1000, 1, 10), at(T0)).unwrap();
        store.insert(b"old", at(T0)).unwrap();
        // No timer rotates: a year later it is still there.
        assert!(store.contains(b"old"));
        assert!(!store.maybe_rotate(at(T0 + 9)).unwrap());
        assert!(store.contains(b"old"));
        store.insert(b"new", at(T0 + 86_400 * 365)).unwrap();
        assert!(
            !store.contains(b"old"),
            "batch_count 1: the old filter is gone"
        );
        assert!(store.contains(b"new"));
    }

    #[test]
    fn a_full_filter_is_joined_by_a_larger_one_and_nothing_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let capacity = 10;
        let (store, logs) = with_logs(|| {
            let mut store = Store::open(config(dir.path(), capacity, 3, 3600), at(T0)).unwrap();
            for i in 0..150u32 {
                // All within one second.
                store.insert(&i.to_le_bytes(), at(T0)).unwrap();
                assert!(store.stats().files.iter().all(|f| f.inserted <= f.capacity));
            }
            store
        });
        let s = store.stats();
        let ts: Vec<u64> = s.files.iter().map(|f| f.timestamp).collect();
        let caps: Vec<u64> = s.files.iter().map(|f| f.capacity).collect();
        assert_eq!(caps, vec![10, 20, 40, 80]);
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?}");
        assert!(logs.contains("starting a larger one"), "{logs}");
        for i in 0..150u32 {
            assert!(store.contains(&i.to_le_bytes()), "forgot {i}");
        }
        let rates: f64 = s.files.iter().map(|f| f.estimated_fp).sum();
        assert!(rates <= 1e-6, "{s:?}");
    }

    #[test]
    fn open_keeps_the_newest_batch_count_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path(), 100, 5, 10), at(T0)).unwrap();
        for n in 1..5u64 {
            store
                .insert(format!("id{n}").as_bytes(), at(T0 + 10 * n))
                .unwrap();
        }
        assert_eq!(bloom_names(dir.path()).len(), 5);
        drop(store);
        let store = Store::open(config(dir.path(), 100, 2, 10), at(T0 + 45)).unwrap();
        assert_eq!(
            bloom_names(dir.path()),
            vec![format!("{}.bloom", T0 + 30), format!("{}.bloom", T0 + 40)]
        );
        assert!(store.contains(b"id3") && store.contains(b"id4"));
        assert!(!store.contains(b"id1"));
    }

    #[test]
    fn open_rotates_a_too_old_newest_filter() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path(), 100, 3, 10), at(T0)).unwrap();
        store.insert(b"a", at(T0)).unwrap();
        drop(store);
        let store = Store::open(config(dir.path(), 100, 3, 10), at(T0 + 10)).unwrap();
        assert_eq!(store.files().len(), 2);
        assert!(store.contains(b"a"));
    }

    #[test]
    fn reopen_after_a_crash_loads_valid_files_and_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 100, 3, 10);
        let mut store = Store::open(cfg.clone(), at(T0)).unwrap();
        store.insert(b"kept", at(T0)).unwrap();
        // No flush: a process crash keeps what is in the shared mapping.
        drop(store);
        // A rotation cut short: temp file with half a header.
        let valid = fs::read(dir.path().join(format!("{T0}.bloom"))).unwrap();
        let tmp = dir.path().join(format!("{}.bloom.tmp", T0 + 10));
        fs::write(&tmp, &valid[..50]).unwrap();
        let probe = dir.path().join(format!("{PROBE_PREFIX}99999999"));
        fs::write(&probe, b"probe").unwrap();

        let (store, logs) = with_logs(|| Store::open(cfg.clone(), at(T0 + 5)).unwrap());
        assert!(!tmp.exists());
        assert!(!probe.exists());
        assert!(logs.contains("removed unfinished file"), "{logs}");
        assert!(store.quarantined().is_empty());
        assert!(store.contains(b"kept"));
        assert_eq!(bloom_names(dir.path()), vec![format!("{T0}.bloom")]);
    }

    #[test]
    fn a_killed_process_loses_nothing_it_inserted() {
        const CHILD: &str = "KEP_DEDUP_KILLED_CHILD_DIR";
        if let Some(dir) = std::env::var_os(CHILD) {
            let mut store = Store::open(config(Path::new(&dir), 1000, 3, 3600), at(T0)).unwrap();
            for i in 0..500u32 {
                store.insert(&i.to_le_bytes(), at(T0)).unwrap();
            }
            // SAFETY: kill/getpid have no preconditions; this ends the child without unwinding,
            // dropping or flushing anything, like an OOM kill.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            unreachable!("SIGKILL returned");
        }
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "dedup::store::tests::a_killed_process_loses_nothing_it_inserted",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        let store = Store::open(config(dir.path(), 1000, 3, 3600), at(T0 + 1)).unwrap();
        assert!(store.quarantined().is_empty());
        for i in 0..500u32 {
            assert!(store.contains(&i.to_le_bytes()), "lost {i}");
        }
        let inserted = store.stats().files[0].inserted;
        assert!((495..=500).contains(&inserted), "count {inserted}");
    }

    /// Writes a valid file with `header` except for the fields `edit` changes, re-checksummed.
    fn write_with_header(dir: &Path, ts: u64, edit: impl Fn(&mut Header)) -> PathBuf {
        let f = Filter::create(dir, ts, 100, 0.01, ts).unwrap();
        let path = f.path().to_path_buf();
        let mut header = *f.header();
        drop(f);
        edit(&mut header);
        let mut bytes = fs::read(&path).unwrap();
        bytes[..HEADER_LEN].copy_from_slice(&header.encode());
        fs::write(&path, bytes).unwrap();
        path
    }

    use crate::dedup::format::HEADER_LEN;

    #[test]
    fn every_kind_of_bad_file_is_quarantined_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let good = Filter::create(d, T0, 100, 0.01, T0).unwrap();
        let good_bytes = fs::read(good.path()).unwrap();
        drop(good);
        let len = good_bytes.len();
        let mut expected: Vec<(u64, &str)> = Vec::new();
        let mut raw = |ts: u64, bytes: Vec<u8>, want: &'static str| {
            fs::write(d.join(format!("{ts}.bloom")), bytes).unwrap();
            expected.push((ts, want));
        };
        raw(T0 + 1, good_bytes[..len / 2].to_vec(), "truncated");
        raw(T0 + 2, good_bytes[..60].to_vec(), "truncated");
        raw(T0 + 3, Vec::new(), "truncated");
        raw(T0 + 4, vec![0; len], "wrong magic");
        let random: Vec<u8> = (0..len as u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
            .collect();
        raw(T0 + 5, random, "wrong magic");
        let mut magic = good_bytes.clone();
        magic[..8].copy_from_slice(b"KEPBLOOX");
        raw(T0 + 6, magic, "wrong magic");
        let mut sum = good_bytes.clone();
        sum[20] ^= 0x40;
        raw(T0 + 7, sum, "checksum mismatch");
        let mut future = good_bytes.clone();
        future[8..12].copy_from_slice(&3u32.to_le_bytes());
        raw(T0 + 8, future, "newer than the supported version");
        write_with_header(d, T0 + 9, |h| h.hashes = 0);
        expected.push((T0 + 9, "0 hash functions"));
        write_with_header(d, T0 + 10, |h| h.bits -= 64);
        expected.push((T0 + 10, "but its header describes"));
        write_with_header(d, T0 + 11, |h| h.bits += 64);
        expected.push((T0 + 11, "truncated"));

        let cfg = config(d, 100, 20, 3600);
        let (store, logs) = with_logs(|| Store::open(cfg.clone(), at(T0 + 20)).unwrap());

        assert_eq!(store.quarantined().len(), expected.len(), "{logs}");
        for (ts, want) in &expected {
            let path = d.join(format!("{ts}.bloom"));
            let q = store
                .quarantined()
                .iter()
                .find(|q| q.path == path)
                .unwrap_or_else(|| panic!("{ts} not quarantined"));
            let reason = q.reason.to_string();
            assert!(reason.contains(want), "{ts}: want {want:?}, got {reason:?}");
            assert!(!path.exists());
            assert!(d.join(format!("{ts}.bloom.corrupt")).exists());
            let line = logs
                .lines()
                .find(|l| l.contains("WARN") && l.contains(&format!("{ts}.bloom:")))
                .unwrap_or_else(|| panic!("no warning for {ts}: {logs}"));
            assert!(line.contains(&reason), "{line}");
        }
        // The good file is loaded and the daemon carries on.
        assert_eq!(bloom_names(d), vec![format!("{T0}.bloom")]);
        drop(store);
        // Quarantined files are left alone on the next start.
        let store = Store::open(cfg, at(T0 + 21)).unwrap();
        assert!(store.quarantined().is_empty());
    }

    #[test]
    fn foreign_names_are_ignored_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            "notes.txt",
            "0012.bloom",
            "12.bloom.bak",
            "abc.bloom",
            ".bloom",
            "-5.bloom",
            "18446744073709551615.bloom",
        ] {
            fs::write(d.join(name), b"x").unwrap();
        }
        fs::create_dir(d.join("77.bloom")).unwrap();
        let (store, logs) = with_logs(|| Store::open(config(d, 100, 3, 3600), at(T0)).unwrap());
        assert!(store.quarantined().is_empty());
        assert_eq!(store.files(), vec![d.join(format!("{T0}.bloom"))]);
        for name in [
            "notes.txt",
            "0012.bloom",
            "12.bloom.bak",
            "abc.bloom",
            ".bloom",
            "-5.bloom",
            "18446744073709551615.bloom",
            "77.bloom",
        ] {
            assert!(d.join(name).exists(), "{name}");
            assert!(logs.contains(name), "no log line for {name}: {logs}");
        }
    }

    #[test]
    fn the_saved_resource_version_is_not_reported_as_a_foreign_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        crate::source::resume::ResumePoint::new(d, &Default::default())
            .save("42")
            .unwrap();
        fs::write(d.join(RESUME_TMP), b"4").unwrap();
        let (_, logs) = with_logs(|| Store::open(config(d, 100, 3, 3600), at(T0)).unwrap());
        assert!(!logs.contains("resource_version"), "{logs}");
        assert!(d.join(crate::source::resume::FILE_NAME).exists());
    }

    #[test]
    fn unusable_directory_is_a_distinct_error_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        fs::write(&file, b"").unwrap();
        for path in [file.clone(), file.join("sub")] {
            let err = Store::open(config(&path, 100, 3, 60), at(T0)).unwrap_err();
            assert!(matches!(err, StoreError::Unwritable { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains("not writable"),
                "{msg}"
            );
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let ro = dir.path().join("ro");
            fs::create_dir(&ro).unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
            let err = Store::open(config(&ro, 100, 3, 60), at(T0)).unwrap_err();
            assert!(matches!(err, StoreError::Unwritable { .. }), "{err:?}");
        }
    }

    #[test]
    fn invalid_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = config(dir.path(), 100, 3, 60);
        let cases = [
            StoreConfig {
                capacity: 0,
                ..base.clone()
            },
            StoreConfig {
                batch_count: 0,
                ..base.clone()
            },
            StoreConfig {
                error_rate: 0.0,
                ..base.clone()
            },
            StoreConfig {
                error_rate: 1.0,
                ..base.clone()
            },
            StoreConfig {
                error_rate: 1e-30,
                ..base.clone()
            },
            StoreConfig {
                batch_duration: Duration::from_millis(10),
                ..base.clone()
            },
            StoreConfig {
                capacity: u64::MAX / 4,
                ..base.clone()
            },
        ];
        for cfg in cases {
            let err = Store::open(cfg.clone(), at(T0)).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidConfig(_)),
                "{cfg:?}: {err:?}"
            );
        }
        assert!(
            names(dir.path()).is_empty(),
            "nothing written for a bad config"
        );
    }

    #[test]
    fn config_changes_only_affect_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path(), 100, 3, 10), at(T0)).unwrap();
        store.insert(b"a", at(T0)).unwrap();
        drop(store);
        let mut cfg = config(dir.path(), 5000, 3, 10);
        cfg.error_rate = 0.001;
        let mut store = Store::open(cfg, at(T0 + 1)).unwrap();
        assert_eq!(store.stats().files[0].capacity, 100);
        assert!(store.contains(b"a"));
        store.insert(b"b", at(T0 + 10)).unwrap();
        let caps: Vec<u64> = store.stats().files.iter().map(|f| f.capacity).collect();
        assert_eq!(caps, vec![100, 5000]);
        let old = Filter::open(&dir.path().join(format!("{T0}.bloom")), T0)
            .ok()
            .unwrap();
        let new = Filter::open(&dir.path().join(format!("{}.bloom", T0 + 10)), T0 + 10)
            .ok()
            .unwrap();
        // Half the bound, then half of what is left.
        assert!((old.header().error_rate - 5e-7).abs() < 1e-18);
        assert!((new.header().error_rate - 2.5e-7).abs() < 1e-18);
        assert_ne!(old.header().hashes, new.header().hashes);
        // One seed for the set: an identity is hashed once for every filter.
        assert_eq!(old.header().seed, new.header().seed);
    }

    #[test]
    fn check_and_insert_reports_an_identity_new_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path(), 3, 3, 3600), at(T0)).unwrap();
        assert!(store.check_and_insert(b"x", at(T0)).unwrap());
        assert!(!store.check_and_insert(b"x", at(T0)).unwrap());
        for i in 0..5u8 {
            store.insert(&[i], at(T0)).unwrap();
        }
        assert!(store.files().len() > 1, "rotated by fill");
        assert!(
            !store.check_and_insert(b"x", at(T0)).unwrap(),
            "found in an older filter"
        );
        // Tiny filters give a false positive about once in a hundred runs: test with an
        // identity the set does not already (falsely) hold, which is what "new" means here.
        let fresh = (0..100u8)
            .map(|i| [b'y', i])
            .find(|id| !store.contains(id))
            .unwrap();
        assert!(store.check_and_insert(&fresh, at(T0)).unwrap());
        assert!(store.contains(&fresh));
    }

    #[test]
    fn failed_rotation_still_records_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("store");
        let mut store = Store::open(config(&sub, 100, 3, 10), at(T0)).unwrap();
        fs::remove_dir_all(&sub).unwrap();
        let err = store.insert(b"late", at(T0 + 60)).unwrap_err();
        assert!(matches!(err, StoreError::Create { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("cannot create filter file "),
            "{err}"
        );
        assert!(store.contains(b"late"));
        assert!(store.check_and_insert(b"later", at(T0 + 61)).is_err());
        assert!(store.contains(b"later"));
    }

    #[test]
    fn stats_report_fill_and_the_set_estimate() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(config(dir.path(), 1000, 3, 10), at(T0)).unwrap();
        for i in 0..1000u32 {
            store.insert(&i.to_le_bytes(), at(T0)).unwrap();
        }
        store.insert(b"next", at(T0 + 10)).unwrap();
        let s = store.stats();
        assert_eq!(s.files.len(), 2);
        let full = &s.files[0];
        assert!(full.inserted > 990 && full.inserted <= 1000, "{full:?}");
        assert!((full.fill - full.inserted as f64 / 1000.0).abs() < 1e-12);
        // The first is sized for half of 1e-6 at capacity.
        assert!((full.estimated_fp - 5e-7).abs() < 5e-8, "{full:?}");
        // An age rotation sizes for the traffic of the period before, with a quarter to spare.
        assert_eq!(s.files[1].capacity, full.inserted + full.inserted / 4);
        let set = 1.0 - (1.0 - s.files[0].estimated_fp) * (1.0 - s.files[1].estimated_fp);
        assert!((s.estimated_fp - set).abs() < 1e-15);
        assert_eq!(s.identities(), full.inserted + 1);
        assert_eq!(s.bytes, s.files.iter().map(|f| f.bytes).sum::<u64>());
        assert_eq!(
            s.to_string(),
            format!(
                "filters 2 (newest fill 0%, est. fp {:.5} of bound 0.01, {} identities, {:.1} of 1024 MiB)",
                s.estimated_fp,
                s.identities(),
                s.bytes as f64 / MIB
            )
        );
        store.flush().unwrap();
        store.flush_async().unwrap();
    }
}
