//! Where events come from: the API server (list + watch), or a replayed kubectl recording.

pub mod api;
pub mod backoff;
pub mod connect;
pub mod replay;
pub mod watcher;
