//! Where events come from: the API server, or a replayed kubectl recording (`replay`).
//!
//! Imports run one way, from the loop down to the plain types:
//! `follow` (list, watch, resume) → `watch_list` (the initial sync by streaming list, with
//! `paged_list` as the fallback), `watch` (one watch connection) and `doubt` (a saved version
//! the server may no longer serve) → `watcher` (the one owner of the connection state and the
//! steps they share) → `api` (the requests, with the configured `selection` and `query`
//! encoding) → `diagnose` (failures told for an operator) → `api_error`. Beside them:
//! `connect` (the client from the kubeconfig), `backoff`, `resume` (the saved version) and a
//! first start's `first_contact`.

pub mod api;
pub mod api_error;
pub mod connect;
pub mod diagnose;
pub mod doubt;
pub mod first_contact;
pub mod follow;
pub mod paged_list;
pub mod query;
pub mod replay;
pub mod resume;
pub mod selection;
pub mod watch;
pub mod watch_list;
pub mod watcher;
