//! Runs the real kube-event-pipe binary as an operator would, and reads what it wrote.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_kube-event-pipe");

pub struct Daemon {
    pub child: Child,
    stderr: Arc<Mutex<String>>,
    /// The thread reading stderr; it ends once the pipe does.
    reader: Option<std::thread::JoinHandle<()>>,
}

/// A command for the binary with a clean environment: only PATH and what the test sets.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .args(args)
        .stdin(Stdio::null());
    cmd
}

impl Daemon {
    /// Starts the binary; stdout is discarded unless `stdout` is given a file.
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::spawn(command(args).stdout(Stdio::null()))
    }

    pub fn spawn(cmd: &mut Command) -> Daemon {
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kube-event-pipe");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Daemon {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.stderr().contains(needle))
    }

    /// Waits (up to 30 s) until the log contains `needle`, or fails the test showing the log.
    #[track_caller]
    pub fn expect_log(&self, needle: &str) {
        assert!(
            self.wait_for_log(needle, Duration::from_secs(30)),
            "no {needle:?} in the log:\n{}",
            self.stderr()
        );
    }

    /// SIGTERM; the daemon must exit 0. Returns its log.
    #[track_caller]
    pub fn stop_ok(self) -> String {
        let (status, log) = self.stop();
        assert!(status.success(), "exit {status}; log:\n{log}");
        log
    }

    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// SIGTERM, then the exit status (within 10 s).
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let status = self.wait(Duration::from_secs(10));
        (status, self.stderr())
    }

    pub fn kill(mut self) -> String {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(10));
        self.stderr()
    }

    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The exit can come before the reader has taken the last of stderr: the pipe
                // ends with the process (it starts none of its own), so this returns soon.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "kube-event-pipe did not exit in time; log:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The complete lines of a file (a missing file has none).
pub fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8(text).expect("output is UTF-8");
    text.lines().map(str::to_string).collect()
}

/// Waits until `path` holds at least `n` lines; returns them.
pub fn wait_for_lines(path: &Path, n: usize, timeout: Duration, daemon: &Daemon) -> Vec<String> {
    if !wait_until(timeout, || lines(path).len() >= n) {
        panic!(
            "expected {n} lines in {}, got {}; log:\n{}",
            path.display(),
            lines(path).len(),
            daemon.stderr()
        );
    }
    lines(path)
}

/// A state directory, a destination and a kubeconfig for one daemon.
pub struct Layout {
    pub dir: tempfile::TempDir,
}

impl Layout {
    pub fn new() -> Layout {
        Layout {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn state(&self) -> PathBuf {
        self.path("state")
    }
    pub fn out(&self) -> PathBuf {
        self.path("events.log")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.path("kubeconfig")
    }
    /// The usual arguments: this layout's kubeconfig, state and destination.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--kubeconfig".into(),
            self.kubeconfig().display().to_string(),
            "--persistence-path".into(),
            self.state().display().to_string(),
            "--destination".into(),
            self.out().display().to_string(),
            "--log-level".into(),
            "debug".into(),
        ]
    }
}

/// A system tool's path, or a failure that says how to get it: a test that needs it must not
/// pass without it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` not found: install it (apt-get install {package}); .ci/run does")
        })
}
