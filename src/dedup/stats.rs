//! What one filter file holds, for logs, STATUS and metrics: shared by our own files
//! (`store`) and the Python tool's (`original`), below both.

/// Fill and false-positive estimate of one filter file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStats {
    /// From the file name `<timestamp>.bloom`.
    pub timestamp: u64,
    /// Insertions that set at least one new bit (repeats and false positives do not count:
    /// they add nothing to the filter's fill).
    pub inserted: u64,
    /// The capacity this file was created with (files keep their own parameters).
    pub capacity: u64,
    /// Insertions at which it is rotated: `capacity`, or slightly fewer (< 1%) where the
    /// rounded hash count would otherwise push its estimated rate past the sized one.
    pub fill_limit: u64,
    /// `inserted / capacity`.
    pub fill: f64,
    /// `(1 - e^{-k n / m})^k` for this file.
    pub estimated_fp: f64,
    /// File size in bytes (0 for the Python tool's files, which do not count to the limit).
    pub bytes: u64,
}
