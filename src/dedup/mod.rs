//! Persistent deduplication memory: a growing set of mmapped bloom filter files.
//!
//! The pipeline sees only [`Store`]: `contains`, `insert` (or `check_and_insert`), `flush` and
//! `stats`; files, rotation and quarantine are handled inside. See `format` for the file layout,
//! and `original` for the Python kube-event-pipe's files, which are read until they age out.

mod filter;
mod format;
mod murmur3;
mod original;
mod retention;
mod sizing;
mod stats;
mod store;

pub use filter::{Listed, OpenError};
pub use format::{FormatError, HEADER_LEN, Header};
pub use original::{OriginalFilter, OriginalHeader, original_key};
pub use sizing::TARGET_RATE;
pub use stats::FileStats;
pub use store::{
    DIR_MODE, LIMIT_KEY, Probe, Quarantined, Store, StoreConfig, StoreError, StoreStats,
};
