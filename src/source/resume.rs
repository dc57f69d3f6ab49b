//! The last resourceVersion whose events are all written, saved in the state directory so a
//! restart resumes the watch instead of listing everything again. A version is only valid for
//! the selection (namespace, selectors) that produced it, so that is saved on a second line
//! (absent for every event, the file's original one-line form).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::selection::Selection;

pub const FILE_NAME: &str = "resource_version";

/// resourceVersions are opaque strings to clients, but real ones are short and printable;
/// anything else in the file means it was damaged.
const MAX_LEN: usize = 128;

pub struct ResumePoint {
    path: PathBuf,
    saved: Option<String>,
    limit: Option<Arc<dyn Limit>>,
    /// [`Selection::fingerprint`] of the running configuration.
    selection: String,
    /// For the log line when the saved selection differs.
    describe: String,
}

/// What may be saved for a version the watch reached: with leader election, a standby saves
/// no further than it has marked the leader's events (`crate::leader::gate`). None: keep the
/// file as it is.
pub trait Limit: Send + Sync {
    fn limit(&self, rv: &str) -> Option<String>;
}

impl ResumePoint {
    pub fn new(dir: &Path, selection: &Selection) -> ResumePoint {
        ResumePoint {
            path: dir.join(FILE_NAME),
            saved: None,
            limit: None,
            selection: selection.fingerprint(),
            describe: selection.describe(),
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
            Some((_, saved_for)) if saved_for != self.selection => {
                let was = if saved_for.is_empty() {
                    "all events".to_string()
                } else {
                    saved_for
                };
                tracing::info!(
                    path = %self.path.display(),
                    "the selection changed since the saved resourceVersion (it was saved for {was}; \
                     now {}); listing again, already written events are not written twice",
                    self.describe
                );
                None
            }
            Some((rv, _)) => {
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
            if !self.selection.is_empty() {
                f.write_all(self.selection.as_bytes())?;
                f.write_all(b"\n")?;
            }
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

/// (resourceVersion, the selection's fingerprint or "" for every event).
fn parse(bytes: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let (rv, selection) = match text.split_once('\n') {
        Some((rv, rest)) => (rv.trim(), rest.trim()),
        None => (text, ""),
    };
    let ok = !rv.is_empty() && rv.len() <= MAX_LEN && rv.bytes().all(|b| b.is_ascii_graphic());
    // A fingerprint is one JSON object; anything else there is damage.
    let selection_ok = selection.is_empty()
        || (!selection.contains('\n')
            && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(selection)
                .is_ok());
    (ok && selection_ok).then(|| (rv.to_string(), selection.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_version_survives_a_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        ResumePoint::new(dir.path(), &Selection::default())
            .save("12345")
            .unwrap();
        assert_eq!(
            ResumePoint::new(dir.path(), &Selection::default())
                .load()
                .as_deref(),
            Some("12345")
        );
    }

    #[test]
    fn saved_file_is_0640() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask(2) only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o022) };
        let saved = ResumePoint::new(dir.path(), &Selection::default()).save("1");
        unsafe { libc::umask(old) };
        saved.unwrap();
        let meta = fs::metadata(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn damaged_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            &b""[..],
            b"\xff\xfe",
            b"12 34",
            &[b'7'; 200],
            b"12\nnot json",
        ] {
            fs::write(dir.path().join(FILE_NAME), bad).unwrap();
            assert_eq!(
                ResumePoint::new(dir.path(), &Selection::default()).load(),
                None,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_version_saved_for_another_selection_is_not_resumed() {
        use crate::config::{Origin, Setting};
        let dir = tempfile::tempdir().unwrap();
        let warnings = Selection {
            field_selector: Some(Setting::new("type=Warning".into(), Origin::Default)),
            ..Selection::default()
        };
        ResumePoint::new(dir.path(), &warnings).save("42").unwrap();
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text, "42\n{\"fieldSelector\":\"type=Warning\"}\n");
        assert_eq!(
            ResumePoint::new(dir.path(), &warnings).load().as_deref(),
            Some("42")
        );
        assert_eq!(
            ResumePoint::new(dir.path(), &Selection::default()).load(),
            None
        );
        // A one-line file (every event, or written before selections existed) is resumed
        // only without a selection.
        ResumePoint::new(dir.path(), &Selection::default())
            .save("43")
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            "43\n"
        );
        assert_eq!(ResumePoint::new(dir.path(), &warnings).load(), None);
        assert_eq!(
            ResumePoint::new(dir.path(), &Selection::default())
                .load()
                .as_deref(),
            Some("43")
        );
    }

    #[test]
    fn clear_forgets_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut rp = ResumePoint::new(dir.path(), &Selection::default());
        rp.save("9").unwrap();
        rp.clear().unwrap();
        assert_eq!(
            ResumePoint::new(dir.path(), &Selection::default()).load(),
            None
        );
        rp.save("9").unwrap();
        assert_eq!(
            ResumePoint::new(dir.path(), &Selection::default())
                .load()
                .as_deref(),
            Some("9")
        );
    }
}
