//! Being a good system service: systemd notifications (`systemd`), journald or stderr logging
//! (`logging`), stop and reopen signals (`signals`), what has been achieved so far for STATUS=
//! and the watchdog (`progress`), the start-up permission check (`permissions`), exit statuses
//! (`exit`) and the allocator's tuning (`allocator`).

pub mod allocator;
pub mod exit;
pub mod instance_lock;
pub mod logging;
pub mod permissions;
pub mod progress;
pub mod signals;
pub mod systemd;
