//! Signals: SIGHUP asks for the destination to be reopened; SIGTERM, SIGINT and SIGQUIT ask
//! for a clean shutdown, and a second one of them ends the process at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Exit status when a second stop signal cuts the drain short.
pub const ABORT_STATUS: i32 = 130;

#[derive(Clone)]
pub struct Signals {
    /// Set by SIGHUP, cleared by the sink when it reopens.
    pub reopen: Arc<AtomicBool>,
    /// Becomes true on the first stop signal.
    pub shutdown: watch::Receiver<bool>,
}

/// Installs the handlers; must be called inside the runtime.
pub fn install() -> std::io::Result<Signals> {
    let reopen = Arc::new(AtomicBool::new(false));
    let mut hup = signal(SignalKind::hangup())?;
    let flag = reopen.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            flag.store(true, Ordering::SeqCst);
            tracing::info!("SIGHUP: the destination will be reopened before the next write");
        }
    });

    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = quit.recv() => "SIGQUIT",
            };
            seen += 1;
            if seen == 1 {
                tracing::info!("{name}: finishing the lines in hand, then exiting");
                let _ = tx.send(true);
            } else {
                tracing::warn!("{name} again: exiting at once");
                std::process::exit(ABORT_STATUS);
            }
        }
    });
    Ok(Signals {
        reopen,
        shutdown: rx,
    })
}
