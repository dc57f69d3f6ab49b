//! The destination: stdout, or a file opened for appending (a FIFO works too), reopened after
//! SIGHUP so logrotate can move the file away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::Destination;

mod path_watch;
use path_watch::PathWatch;

/// Mode of a destination file we create: the service group (e.g. a log shipper in `adm`) may
/// read it, nobody else.
const FILE_MODE: u32 = 0o640;

pub struct Sink {
    destination: Destination,
    /// Unbuffered, stdout included: a line counts as written only once write(2) took it.
    output: File,
    reopen: Arc<AtomicBool>,
    /// When the path was first seen naming nothing while our file lives on elsewhere.
    missing_since: Option<Instant>,
    /// Says when the path may have changed; None where inotify is not to be had, and then
    /// the path is looked at before every write, as it always was.
    watch: Option<PathWatch>,
    /// When the path is next looked at even without a word from `watch`: the end of the
    /// grace of a moved file, or the periodic look that catches what inotify cannot see.
    next_look: Option<Instant>,
    /// Look at the path before the next write whatever `watch` says (a reopen failed).
    look_again: bool,
    /// Successful reopens: after SIGHUP, and because the path changed.
    reopens: [u64; 2],
}

/// How long lines keep going to a file moved away (with nothing yet in its place) before the
/// path is recreated without waiting for SIGHUP.
const MOVED_GRACE: Duration = Duration::from_secs(10);

/// The path is looked at this often even when inotify says nothing: it cannot see a
/// directory above the destination renamed, nor changes made by another host on a network
/// file system.
const LOOK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("cannot open destination {}: {source}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write to {destination}: {source}")]
    Write {
        destination: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Reopen(OpenError),
}

impl Sink {
    /// Opens the destination; `reopen` is the flag the SIGHUP handler sets.
    ///
    /// An incomplete last line in an existing file, left by a process killed inside a write
    /// (the kernel stops a large write(2) at a page boundary for SIGKILL) or by a crash while
    /// the disk was full, is cut off with a warning: its event was never marked as seen, so it
    /// is written again whole, and the next line does not get glued to the fragment.
    pub fn open(destination: Destination, reopen: Arc<AtomicBool>) -> Result<Sink, OpenError> {
        let output = open_output(&destination)?;
        if let Destination::Path(path) = &destination {
            match drop_incomplete_line(path, &output) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    destination = %path.display(),
                    bytes = n,
                    "removed an incomplete last line ({n} bytes) left by an interrupted write; its event will be written again"
                ),
                Err(e) => tracing::warn!(
                    destination = %path.display(),
                    error = %e,
                    "cannot check the destination for an incomplete last line"
                ),
            }
        }
        let watch = watch_path(&destination, &output);
        Ok(Sink {
            destination,
            output,
            reopen,
            missing_since: None,
            watch,
            next_look: Some(Instant::now() + LOOK_EVERY),
            look_again: false,
            reopens: [0; 2],
        })
    }

    /// Calls `f` with each whole line among the last `MAX_TAIL` bytes of the destination
    /// file: the lines a killed run may have written without marking them as seen. Nothing for
    /// stdout, a FIFO or a file that the path no longer names.
    pub fn for_each_recent_line(&self, mut f: impl FnMut(&[u8])) -> io::Result<()> {
        use std::io::{BufRead, BufReader, Seek, SeekFrom};
        let Destination::Path(path) = &self.destination else {
            return Ok(());
        };
        let meta = self.output.metadata()?;
        if !meta.is_file() || meta.len() == 0 {
            return Ok(());
        }
        let file = File::open(path)?;
        if file.metadata()?.ino() != meta.ino() {
            return Ok(());
        }
        let start = meta.len().saturating_sub(MAX_TAIL);
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        reader.seek(SeekFrom::Start(start))?;
        let mut line = Vec::with_capacity(4096);
        if start > 0 {
            // The window begins inside a line: skip to the next whole one.
            reader.read_until(b'\n', &mut line)?;
        }
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if line.last() == Some(&b'\n') {
                f(&line[..line.len() - 1]);
            }
        }
    }

    /// Successful reopens so far: [after SIGHUP, because the path changed].
    pub fn reopens(&self) -> [u64; 2] {
        self.reopens
    }

    pub fn describe(&self) -> String {
        match &self.destination {
            Destination::Stdout => "stdout".into(),
            Destination::Path(p) => p.display().to_string(),
        }
    }

    /// Writes `lines` (whole lines, each ending in `\n`) from offset `*done` on, advancing
    /// `*done` as bytes are accepted, so a caller that retries after an error continues where
    /// the failed attempt stopped and no byte is written twice.
    ///
    /// The destination is reopened first when SIGHUP asked for it, or when the path no longer
    /// names the open file (moved or deleted: writing on would put events where nobody reads
    /// them). A line is never split between two files: a line that a failed write left half
    /// done is finished in the old file if that file still exists under some name, or else
    /// written again whole to the new one.
    pub fn write_lines(&mut self, lines: &[u8], done: &mut usize) -> Result<(), WriteError> {
        let signalled = self.reopen.load(Ordering::SeqCst);
        if signalled || self.path_moved() {
            self.look_again = true;
            self.settle_partial_line(lines, done)?;
            let output = open_output(&self.destination).map_err(WriteError::Reopen)?;
            self.watch = watch_path(&self.destination, &output);
            self.output = output;
            self.missing_since = None;
            self.look_again = false;
            self.next_look = Some(Instant::now() + LOOK_EVERY);
            self.reopen.store(false, Ordering::SeqCst);
            self.reopens[usize::from(!signalled)] += 1;
            tracing::info!(destination = %self.describe(), "reopened destination");
        }
        self.write_range(lines, done, lines.len())
    }

    fn settle_partial_line(&mut self, lines: &[u8], done: &mut usize) -> Result<(), WriteError> {
        if *done == 0 || lines[*done - 1] == b'\n' {
            return Ok(());
        }
        let line_start = lines[..*done]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let unlinked = self
            .output
            .metadata()
            .map(|m| m.nlink() == 0)
            .unwrap_or(true);
        if unlinked {
            *done = line_start;
            return Ok(());
        }
        let line_end = lines[*done..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(lines.len(), |i| *done + i + 1);
        self.write_range(lines, done, line_end)
    }

    fn write_range(
        &mut self,
        lines: &[u8],
        done: &mut usize,
        end: usize,
    ) -> Result<(), WriteError> {
        while *done < end {
            match self.output.write(&lines[*done..end]) {
                Ok(0) => return Err(self.error(io::ErrorKind::WriteZero.into())),
                Ok(n) => *done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(())
    }

    fn error(&self, source: io::Error) -> WriteError {
        WriteError::Write {
            destination: self.describe(),
            source,
        }
    }

    /// True when the path names another file than the one open, or when it names nothing and
    /// the open file is deleted or has been moved away for longer than a rotation takes.
    ///
    /// A path that names nothing while the open file still exists elsewhere is what logrotate
    /// leaves between its rename and its `create`: recreating the file at that moment would
    /// make logrotate's `create` fail, so the old file keeps receiving lines until SIGHUP, the
    /// new file, or the grace period.
    ///
    /// The path is looked at only when inotify reported a change that concerns it, when the
    /// grace period ends, or every [`LOOK_EVERY`]; every time without inotify.
    fn path_moved(&mut self) -> bool {
        let Destination::Path(path) = &self.destination else {
            return false;
        };
        let now = Instant::now();
        let changed = self.watch.as_mut().is_none_or(PathWatch::changed);
        let due = self.next_look.is_none_or(|at| now >= at);
        if !(changed || due || self.look_again) {
            return false;
        }
        self.next_look = Some(now + LOOK_EVERY);
        let open = match self.output.metadata() {
            Ok(m) => m,
            Err(_) => return true,
        };
        match std::fs::metadata(path) {
            Ok(named) => {
                self.missing_since = None;
                named.dev() != open.dev() || named.ino() != open.ino()
            }
            Err(_) if open.nlink() == 0 => true,
            Err(_) => {
                let since = *self.missing_since.get_or_insert(now);
                let grace_ends = since + MOVED_GRACE;
                self.next_look = Some(grace_ends.min(now + LOOK_EVERY));
                now >= grace_ends
            }
        }
    }
}

/// The longest tail `drop_incomplete_line` will cut, and how far back `for_each_recent_line`
/// reads: more than one batch (256 KiB plus its last line, which the API server keeps under
/// about 1.5 MiB).
const MAX_TAIL: u64 = 4 << 20;

/// Truncates a regular file after its last `\n`; returns how many bytes it removed.
fn drop_incomplete_line(path: &std::path::Path, output: &File) -> io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let meta = output.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(0);
    }
    let len = meta.len();
    let mut reader = File::open(path)?;
    if reader.metadata()?.ino() != meta.ino() {
        return Ok(0);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = len;
    while end > 0 {
        // No event line is this long (the API server refuses objects over about 1.5 MiB): a
        // tail without a newline beyond it is not ours to cut, whatever the file is.
        if len - end > MAX_TAIL {
            break;
        }
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if len - keep > MAX_TAIL {
                break;
            }
            if keep < len {
                output.set_len(keep)?;
            }
            return Ok(len - keep);
        }
        end = start;
    }
    if len > MAX_TAIL {
        return Err(io::Error::other(format!(
            "the last {MAX_TAIL} bytes hold no line end; the file is left as it is"
        )));
    }
    output.set_len(0)?;
    Ok(len)
}

/// The inotify watch of a destination file, or None (stdout; inotify not to be had, which is
/// logged: the path is then looked at before every write).
fn watch_path(destination: &Destination, output: &File) -> Option<PathWatch> {
    let Destination::Path(path) = destination else {
        return None;
    };
    match PathWatch::new(path, output) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                destination = %path.display(),
                error = %e,
                "cannot follow the destination's renames and deletions with inotify; looking at its path before every write instead"
            );
            None
        }
    }
}

fn open_output(destination: &Destination) -> Result<File, OpenError> {
    match destination {
        Destination::Stdout => io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .map_err(|source| OpenError {
                path: PathBuf::from("stdout"),
                source,
            }),
        Destination::Path(path) => OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(path)
            .map_err(|source| OpenError {
                path: path.clone(),
                source,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sink(path: &std::path::Path) -> (Sink, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        let s = Sink::open(Destination::Path(path.to_path_buf()), flag.clone()).unwrap();
        (s, flag)
    }

    fn write(s: &mut Sink, lines: &[u8]) {
        let mut done = 0;
        s.write_lines(lines, &mut done).unwrap();
        assert_eq!(done, lines.len());
    }

    #[test]
    fn created_file_is_0640_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let (mut s, _) = sink(&path);
        write(&mut s, b"a\n");
        write(&mut s, b"b\nc\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"a\nb\nc\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn an_incomplete_last_line_is_cut_off_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        for (before, after) in [
            (&b"a\nb\n"[..], &b"a\nb\n"[..]),
            (b"a\nb\n{\"kind\":\"Ev", b"a\nb\n"),
            (b"{\"half", b""),
            (b"", b""),
        ] {
            std::fs::write(&path, before).unwrap();
            let (mut s, _) = sink(&path);
            assert_eq!(std::fs::read(&path).unwrap(), after);
            write(&mut s, b"c\n");
            assert_eq!(std::fs::read(&path).unwrap(), [after, b"c\n"].concat());
        }
        // Longer than one read-back chunk, with the last newline far from the end.
        let mut long = b"x\n".to_vec();
        long.extend(std::iter::repeat_n(b'y', 200_000));
        std::fs::write(&path, &long).unwrap();
        sink(&path);
        assert_eq!(std::fs::read(&path).unwrap(), b"x\n");
        // A tail longer than any event is not a fragment of ours: the file is left alone.
        let mut foreign = b"x\n".to_vec();
        foreign.extend(std::iter::repeat_n(b'z', (MAX_TAIL + 10) as usize));
        std::fs::write(&path, &foreign).unwrap();
        sink(&path);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            foreign.len() as u64
        );
    }

    #[test]
    fn sighup_flag_moves_later_lines_to_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let rotated = dir.path().join("events.log.1");
        let (mut s, flag) = sink(&path);
        write(&mut s, b"before\n");
        // logrotate's `create`: the old file is renamed and a new one put in its place.
        std::fs::rename(&path, &rotated).unwrap();
        std::fs::write(&path, b"").unwrap();
        flag.store(true, Ordering::SeqCst);
        write(&mut s, b"after\n");
        assert_eq!(std::fs::read(&rotated).unwrap(), b"before\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"after\n");
    }

    #[test]
    fn a_deleted_destination_is_recreated_rather_than_written_into_the_void() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let (mut s, _) = sink(&path);
        write(&mut s, b"one\n");
        std::fs::remove_file(&path).unwrap();
        write(&mut s, b"two\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
    }

    #[test]
    fn a_moved_file_keeps_its_lines_until_sighup_or_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let rotated = dir.path().join("events.log.1");
        let (mut s, flag) = sink(&path);
        write(&mut s, b"one\n");
        // logrotate has renamed the file and not yet created the new one.
        std::fs::rename(&path, &rotated).unwrap();
        write(&mut s, b"two\n");
        assert!(!path.exists(), "recreated the path under logrotate's feet");
        flag.store(true, Ordering::SeqCst);
        write(&mut s, b"three\n");
        assert_eq!(std::fs::read(&rotated).unwrap(), b"one\ntwo\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"three\n");
    }

    #[test]
    fn a_file_put_at_the_path_takes_the_next_write_without_sighup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let rotated = dir.path().join("events.log.1");
        let (mut s, _) = sink(&path);
        write(&mut s, b"one\n");
        std::fs::rename(&path, &rotated).unwrap();
        write(&mut s, b"two\n");
        std::fs::write(&path, b"").unwrap();
        write(&mut s, b"three\n");
        assert_eq!(std::fs::read(&rotated).unwrap(), b"one\ntwo\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"three\n");
        // Replaced by a rename over it: the file open is gone with it.
        let other = dir.path().join("other");
        std::fs::write(&other, b"kept\n").unwrap();
        std::fs::rename(&other, &path).unwrap();
        write(&mut s, b"four\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"kept\nfour\n");
        assert_eq!(s.reopens(), [0, 2]);
    }

    #[test]
    fn a_moved_file_is_given_up_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let rotated = dir.path().join("events.log.1");
        let (mut s, _) = sink(&path);
        write(&mut s, b"one\n");
        std::fs::rename(&path, &rotated).unwrap();
        write(&mut s, b"two\n");
        // As if the rename had happened a grace period ago.
        s.missing_since = s.missing_since.map(|t| t - MOVED_GRACE);
        s.next_look = Some(Instant::now());
        write(&mut s, b"three\n");
        assert_eq!(std::fs::read(&rotated).unwrap(), b"one\ntwo\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"three\n");
    }

    #[test]
    fn vanished_directory_fails_until_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("events.log");
        let (mut s, _) = sink(&path);
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_dir(&sub).unwrap();
        let mut done = 0;
        assert!(s.write_lines(b"x\n", &mut done).is_err());
        assert_eq!(done, 0);
        std::fs::create_dir(&sub).unwrap();
        s.write_lines(b"x\n", &mut done).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"x\n");
    }

    #[test]
    fn half_written_line_is_finished_in_the_old_file_before_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let rotated = dir.path().join("events.log.1");
        let (mut s, flag) = sink(&path);
        let lines = b"first\nsecond\n";
        // As if a write had stopped after "first\nsec".
        let mut done = 0;
        s.write_range(lines, &mut done, 9).unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        flag.store(true, Ordering::SeqCst);
        s.write_lines(lines, &mut done).unwrap();
        assert_eq!(std::fs::read(&rotated).unwrap(), b"first\nsecond\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn half_written_line_in_a_deleted_file_is_written_whole_to_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let (mut s, _) = sink(&path);
        let lines = b"first\nsecond\n";
        let mut done = 0;
        s.write_range(lines, &mut done, 9).unwrap();
        std::fs::remove_file(&path).unwrap();
        s.write_lines(lines, &mut done).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second\n");
    }
}
