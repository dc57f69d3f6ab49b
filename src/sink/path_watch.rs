//! Tells the sink when its path may name another file, without looking at the path on every
//! write (a real server's pace made that two stats per event): inotify on the directory, for
//! the name being renamed, deleted or created, as `tail -F` does, and on the open file, whose
//! link count changes when it is deleted under whatever name it has by then.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The changes of the directory that concern the name.
const DIR_MASK: u32 = libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// The open file deleted (its link count drops, `IN_ATTRIB`) or moved.
const FILE_MASK: u32 = libc::IN_ATTRIB | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF;

pub(super) struct PathWatch {
    fd: OwnedFd,
    dir: i32,
    name: OsString,
    buf: Vec<u8>,
}

impl PathWatch {
    /// Watches `path`'s directory and `open`, the file open at `path`.
    pub(super) fn new(path: &Path, open: &File) -> io::Result<PathWatch> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other("the destination has no file name"))?
            .to_os_string();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // SAFETY: inotify_init1 takes flags only; the descriptor it returns is owned here.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let dir = add_watch(&fd, dir, DIR_MASK)?;
        // The open file by its descriptor: the path may already name another one.
        let by_fd = Path::new("/proc/self/fd").join(open.as_raw_fd().to_string());
        add_watch(&fd, &by_fd, FILE_MASK)?;
        Ok(PathWatch {
            fd,
            dir,
            name,
            buf: vec![0; 4096],
        })
    }

    /// Whether anything that may change what the path names happened since the last call:
    /// the caller then looks at the path. The kernel queues the events within the rename or
    /// unlink itself, so a change made before a write is seen by that write.
    pub(super) fn changed(&mut self) -> bool {
        let mut changed = false;
        loop {
            // SAFETY: reads into `buf`, which is valid for its length.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => changed,
                    io::ErrorKind::Interrupted => continue,
                    // Nothing can be told any more: look every time.
                    _ => true,
                };
            }
            let n = usize::try_from(n).unwrap_or(0);
            if n == 0 {
                return true;
            }
            changed |= self.concerns_us(&self.buf[..n]);
        }
    }

    fn concerns_us(&self, mut events: &[u8]) -> bool {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let mut any = false;
        while events.len() >= HEADER {
            // SAFETY: the kernel wrote whole events; the header is read unaligned.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(events.as_ptr().cast()) };
            let len = usize::try_from(ev.len).unwrap_or(0);
            let name_bytes = events.get(HEADER..HEADER + len).unwrap_or(&[]);
            events = events.get(HEADER + len..).unwrap_or(&[]);
            any |= if ev.wd == self.dir && len > 0 {
                let name = name_bytes.split(|&b| b == 0).next().unwrap_or(&[]);
                name == self.name.as_bytes()
            } else {
                // Overflow, the directory or the file itself, or a watch removed.
                true
            };
        }
        any
    }
}

fn add_watch(fd: &OwnedFd, path: &Path, mask: u32) -> io::Result<i32> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("the path holds a NUL byte"))?;
    // SAFETY: a valid descriptor and NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    if wd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot watch {} with inotify: {e}", path.display()),
        ));
    }
    Ok(wd)
}
