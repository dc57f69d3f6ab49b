//! kube-event-pipe library.
pub mod frame;
pub mod identity;
pub mod replay;
