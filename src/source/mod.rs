//! Where events come from: the API server (`api` requests, `connect` from the kubeconfig,
//! `watcher` for list + watch with `backoff`, the initial sync by streaming list in
//! `watch_list`, resumed from the saved `resume` point, asking for the configured
//! `selection`), or a replayed kubectl recording (`replay`).

pub mod api;
pub mod backoff;
pub mod connect;
pub mod replay;
pub mod resume;
pub mod selection;
pub mod watch_list;
pub mod watcher;
