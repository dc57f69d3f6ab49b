//! Where events come from: the API server (`api` requests, `connect` from the kubeconfig,
//! `watcher` for list + watch with `backoff`, the initial sync by streaming list in
//! `watch_list`, resumed from the saved `resume` point, asking for the configured
//! `selection`, failures told by `diagnose`, a saved version that may no longer be served
//! checked in `doubt`, a first start's `first_contact`), or a replayed
//! kubectl recording (`replay`).

pub mod api;
pub mod api_error;
pub mod backoff;
pub mod connect;
pub mod diagnose;
pub mod doubt;
pub mod first_contact;
pub mod query;
pub mod replay;
pub mod resume;
pub mod selection;
pub mod watch_list;
pub mod watcher;
