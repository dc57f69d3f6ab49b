//! The last resourceVersion whose events are all written, saved in the state directory so a
//! restart resumes the watch instead of listing everything again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const FILE_NAME: &str = "resource_version";

/// resourceVersions are opaque strings to clients, but real ones are short and printable;
/// anything else in the file means it was damaged.
const MAX_LEN: usize = 128;

pub struct ResumePoint {
    path: PathBuf,
    saved: Option<String>,
    limit: Option<Arc<dyn Limit>>,
}

/// What may be saved for a version the watch reached: with leader election, a standby saves
/// no further than it has marked the leader's events (`crate::leader::gate`). None: keep the
/// file as it is.
pub trait Limit: Send + Sync {
    fn limit(&self, rv: &str) -> Option<String>;
}

impl ResumePoint {
    pub fn new(dir: &Path) -> ResumePoint {
        ResumePoint {
            path: dir.join(FILE_NAME),
            saved: None,
            limit: None,
        }
    }

    pub fn limited_by(mut self, limit: Arc<dyn Limit>) -> ResumePoint {
        self.limit = Some(limit);
        self
    }

    /// The saved version, or None (with one warning) when the file is missing or damaged; a
    /// damaged file only costs a re-list, so it never stops the daemon.
    pub fn load(&mut self) -> Option<String> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "cannot read the saved resourceVersion ({e}); listing all events instead");
                return None;
            }
        };
        match parse(&bytes) {
            Some(rv) => {
                self.saved = Some(rv.clone());
                Some(rv)
            }
            None => {
                tracing::warn!(path = %self.path.display(), "ignoring a damaged saved resourceVersion (not a short printable string); listing all events instead");
                None
            }
        }
    }

    /// Writes the version atomically (temp file, fsync, rename, directory fsync) unless it is
    /// already the saved one.
    pub fn save(&mut self, rv: &str) -> io::Result<()> {
        let limited;
        let rv = match &self.limit {
            None => rv,
            Some(limit) => match limit.limit(rv) {
                Some(v) => {
                    limited = v;
                    limited.as_str()
                }
                None => return Ok(()),
            },
        };
        if self.saved.as_deref() == Some(rv) {
            return Ok(());
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o640)
                .open(&tmp)?;
            f.write_all(rv.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.saved = Some(rv.to_string());
        Ok(())
    }

    /// Forgets the saved version, e.g. after the server said it expired, so a crash during the
    /// re-list that follows does not resume from it again.
    pub fn clear(&mut self) -> io::Result<()> {
        self.saved = None;
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn parse(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let ok =
        !text.is_empty() && text.len() <= MAX_LEN && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_version_survives_a_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        ResumePoint::new(dir.path()).save("12345").unwrap();
        assert_eq!(
            ResumePoint::new(dir.path()).load().as_deref(),
            Some("12345")
        );
    }

    #[test]
    fn saved_file_is_0640() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask(2) only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o022) };
        let saved = ResumePoint::new(dir.path()).save("1");
        unsafe { libc::umask(old) };
        saved.unwrap();
        let meta = fs::metadata(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn damaged_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [&b""[..], b"\xff\xfe", b"12 34", &[b'7'; 200]] {
            fs::write(dir.path().join(FILE_NAME), bad).unwrap();
            assert_eq!(ResumePoint::new(dir.path()).load(), None, "{bad:?}");
        }
    }

    #[test]
    fn clear_forgets_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut rp = ResumePoint::new(dir.path());
        rp.save("9").unwrap();
        rp.clear().unwrap();
        assert_eq!(ResumePoint::new(dir.path()).load(), None);
        rp.save("9").unwrap();
        assert_eq!(ResumePoint::new(dir.path()).load().as_deref(), Some("9"));
    }
}
