//! One daemon per state directory.
//!
//! Two daemons on one directory would both write every event and rotate and delete each
//! other's filter files. The lock is `flock(2)` on the directory itself: it creates no file
//! (a first start that fails leaves the directory as it found it), and the kernel drops it
//! when the process ends however it ends, so a killed daemon never blocks its restart. The
//! holder's pid is read from `/proc/locks`, where the kernel lists every lock.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::config::Origin;

/// Held while the daemon runs; released when dropped or when the process ends.
#[derive(Debug)]
pub struct InstanceLock {
    _dir: File,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "another kube-event-pipe{holder} is using the state directory {dir} (persistence_path, from \
     {origin}); only one daemon may use a state directory, or both would write every event: stop \
     the other one first (`systemctl stop kube-event-pipe` for the service), or give this one a \
     persistence_path of its own"
)]
pub struct Held {
    dir: PathBuf,
    origin: Origin,
    /// " (pid N)", or empty when the holder cannot be told.
    holder: String,
}

impl InstanceLock {
    /// Locks `dir` if it exists. None when it does not (nobody can be using it yet: the lock
    /// is taken again, with `create`, before the first file is made), or when it cannot be
    /// opened (the store reports that with its own words).
    pub fn take(dir: &Path, origin: &Origin, create: bool) -> Result<Option<InstanceLock>, Held> {
        if create {
            // The store would create it a moment later, with the same mode.
            let _ = fs::DirBuilder::new()
                .recursive(true)
                .mode(crate::dedup::DIR_MODE)
                .create(dir);
        }
        let Ok(file) = File::open(dir) else {
            return Ok(None);
        };
        // SAFETY: flock(2) on a descriptor this function owns; it touches no memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(InstanceLock { _dir: file }));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::WouldBlock {
            tracing::warn!(dir = %dir.display(), "cannot lock the state directory ({err}); going on without the lock");
            return Ok(None);
        }
        let holder = file
            .metadata()
            .ok()
            .and_then(|m| {
                fs::read_to_string("/proc/locks")
                    .ok()
                    .and_then(|l| holder_pid(&l, &m))
            })
            .map(|pid| format!(" (pid {pid})"))
            .unwrap_or_default();
        Err(Held {
            dir: dir.to_path_buf(),
            origin: origin.clone(),
            holder,
        })
    }
}

/// The pid holding a FLOCK on the file of `meta`, from `/proc/locks` lines such as
/// `3: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF` (device as hex major:minor, then inode).
fn holder_pid(locks: &str, meta: &fs::Metadata) -> Option<u32> {
    let dev = meta.dev();
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line starts with "N: ->"; only the holder's counts.
        let i = fields.iter().position(|f| *f == "FLOCK")?;
        (fields.get(i + 4) == Some(&id.as_str()))
            .then(|| fields.get(i + 3)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_directory_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = InstanceLock::take(dir.path(), &Origin::Default, false)
            .unwrap()
            .expect("the directory exists");
        let held = InstanceLock::take(dir.path(), &Origin::Default, false).unwrap_err();
        let text = held.to_string();
        assert!(
            text.contains(&format!("(pid {})", std::process::id())),
            "{text}"
        );
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        drop(first);
        assert!(
            InstanceLock::take(dir.path(), &Origin::Default, false)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_missing_directory_is_locked_only_once_created() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        assert!(
            InstanceLock::take(&dir, &Origin::Default, false)
                .unwrap()
                .is_none()
        );
        assert!(!dir.exists(), "nothing is created without `create`");
        assert!(
            InstanceLock::take(&dir, &Origin::Default, true)
                .unwrap()
                .is_some()
        );
    }
}
