//! Persistent deduplication memory: rotated, mmapped bloom filter files.

mod filter;
mod format;

pub use format::FormatError;
