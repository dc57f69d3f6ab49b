//! kube-event-pipe: watch every Kubernetes Event, drop the ones already written, append the
//! rest as JSON lines. The binary is a thin shell around this library so that tests and
//! benchmarks drive the same code.

pub mod allocator;
pub mod app;
pub mod config;
pub mod dedup;
pub mod event_scan;
pub mod exit;
pub mod frame;
pub mod identity;
pub mod list_page;
pub mod logging;
pub mod permissions;
pub mod pipeline;
pub mod progress;
pub mod replay;
pub mod resume;
pub mod signals;
pub mod sink;
pub mod source;
pub mod systemd;
pub mod text;
