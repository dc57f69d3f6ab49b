//! kube-event-pipe: watch every Kubernetes Event, drop the ones already written, append the
//! rest as JSON lines. The binary is a thin shell around this library so that tests and
//! benchmarks drive the same code.
//!
//! The stages, in the order an event passes them:
//! - [`config`]: defaults < TOML file < `KUBE_EVENT_PIPE_*` environment < flags, checked;
//! - [`source`]: where events come from (the API server's list + watch, or a replayed
//!   kubectl recording), and the saved resume point;
//! - [`wire`]: reading the API's bytes (frames, list pages, an event's identity) without
//!   re-serializing them;
//! - [`dedup`]: the rotated, mmapped bloom filters that remember what was written;
//! - [`pipeline`]: source → dedup → sink, an event written before it is marked as seen;
//! - [`sink`]: the destination file, FIFO or stdout, reopened on SIGHUP;
//! - [`leader`]: leader election across hosts: one writer, handover without loss;
//! - [`app`]: wires the stages together for one run of the daemon;
//! - [`service`]: systemd, logging, signals, progress, permissions and exit statuses;
//! - [`metrics`]: Prometheus metrics and the health endpoints;
//! - [`backoff`]: waiting out failures, shared by the source, the pipeline and leader election.
//!
//! Imports run one way: from [`app`] down through the stages to the plain types at the
//! bottom (`wire`, `config`, and small shared types such as `source::api_error::ApiError`,
//! `service::progress::Counters` and `backoff::Interrupted`).

pub mod config;

pub mod source;

pub mod wire;

pub mod dedup;

pub mod pipeline;

pub mod sink;

pub mod leader;

pub mod app;

pub mod service;

pub mod metrics;

pub mod backoff;
