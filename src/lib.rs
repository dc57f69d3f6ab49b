//! kube-event-pipe library.
pub mod frame;
pub mod replay;
