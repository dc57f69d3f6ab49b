//! Leader election across control-plane hosts: one writer per cluster, handover without loss.
//!
//! Every host runs the daemon; with `leader_election` on, only the holder of a
//! coordination.k8s.io/v1 Lease writes events, the others stand by (DESIGN.md, "Several hosts,
//! one log"):
//! - [`lease`]: the Lease requests (get, create, replace with optimistic concurrency) and the
//!   records this daemon writes into it;
//! - [`elector`]: the election loop: acquire when free or expired, renew, release on SIGTERM;
//! - [`gate`]: what the election decided, read by the pipeline before every write (fencing)
//!   and by the resume point;
//! - [`hold`]: a standby's warm dedup memory (marks what the leader wrote, holds the rest);
//! - [`supervisor`]: runs the watch as a leader or a standby and restarts it on a change of
//!   role, so a new leader resumes from the version the old one recorded.

pub mod elector;
pub mod gate;
pub mod hold;
pub mod lease;
pub mod supervisor;

pub use supervisor::run;
