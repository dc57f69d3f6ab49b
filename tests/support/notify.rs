//! A stand-in for systemd's end of the notification protocol: a datagram socket passed to the
//! daemon as NOTIFY_SOCKET, recording every message.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::daemon::{Layout, wait_until};

const T: Duration = Duration::from_secs(20);

/// Every datagram received, with its arrival time.
pub struct Listener {
    pub path: PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Listener {
    pub fn new(layout: &Layout) -> Listener {
        let path = layout.path("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push((Instant::now(), msg));
            }
        });
        Listener { path, got }
    }

    pub fn messages(&self) -> Vec<(Instant, String)> {
        self.got.lock().unwrap().clone()
    }

    pub fn lines_with(&self, prefix: &str) -> Vec<(Instant, String)> {
        self.messages()
            .into_iter()
            .flat_map(|(t, m)| {
                m.lines()
                    .filter(|l| l.starts_with(prefix))
                    .map(|l| (t, l.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// How many lines starting with `prefix` arrived at or after `from`.
    pub fn count_since(&self, prefix: &str, from: Instant) -> usize {
        self.lines_with(prefix)
            .iter()
            .filter(|(t, _)| *t >= from)
            .count()
    }

    /// Waits until a STATUS= line holds `needle`; false if none did in time.
    pub fn wait_for_status(&self, needle: &str) -> bool {
        wait_until(T, || {
            self.lines_with("STATUS=")
                .iter()
                .any(|(_, l)| l.contains(needle))
        })
    }

    pub fn wait_for(&self, prefix: &str) -> (Instant, String) {
        assert!(
            wait_until(T, || !self.lines_with(prefix).is_empty()),
            "no {prefix} in {:?}",
            self.messages()
        );
        self.lines_with(prefix)[0].clone()
    }
}
