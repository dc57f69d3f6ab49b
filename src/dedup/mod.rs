//! Persistent deduplication memory: rotated, mmapped bloom filter files.

mod format;

pub use format::FormatError;
