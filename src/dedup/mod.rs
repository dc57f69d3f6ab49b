//! Persistent deduplication memory: rotated, mmapped bloom filter files.
//!
//! The pipeline sees only [`Store`]: `contains`, `insert` (or `check_and_insert`), `flush` and
//! `stats`; files, rotation and quarantine are handled inside. See `format` for the file layout.

mod filter;
mod format;
mod store;

pub use format::{FormatError, HEADER_LEN, Header};
pub use store::{FileStats, Probe, Quarantined, Store, StoreConfig, StoreError, StoreStats};
