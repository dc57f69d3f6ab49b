//! kube-event-pipe library.
pub mod dedup;
