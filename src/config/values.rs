//! Parsers for individual values, accepting what the original Python tool accepted.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tracing::level_filters::LevelFilter;

/// An integer as Python's `int()` reads it: optional surrounding blanks, single underscores
/// between digits (`1_000_000`).
pub fn integer(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if !underscores_between_digits(t) || !t.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// A float as Python's `float()` reads it, underscores between digits included.
pub fn float(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() || !underscores_between_digits(t) {
        return None;
    }
    let cleaned = t.replace('_', "");
    // Rust also parses "inf" and "nan"; those are rejected by the range checks of the callers.
    cleaned.parse().ok()
}

fn underscores_between_digits(t: &str) -> bool {
    let b = t.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'_'
            || (i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
    })
}

/// true/false, yes/no, on/off, 1/0, any case.
pub fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("true or false (also yes/no, on/off, 1/0)".into()),
    }
}

/// A Kubernetes namespace name (RFC 1123 label).
pub fn dns_label(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    ok.then_some(()).ok_or_else(|| {
        "a namespace name: at most 63 lower-case letters, digits and '-', starting and ending \
         with a letter or digit"
            .into()
    })
}

/// A Kubernetes object name (RFC 1123 subdomain).
pub fn dns_subdomain(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|part| dns_label(part).is_ok());
    ok.then_some(()).ok_or_else(|| {
        "an object name: at most 253 lower-case letters, digits, '-' and '.', each part \
         starting and ending with a letter or digit"
            .into()
    })
}

/// What goes into a Lease's holderIdentity: printable, no blanks, so logs and STATUS= show it
/// unambiguously.
pub fn holder_identity(text: &str) -> Result<(), String> {
    let t = text.trim();
    let ok = !t.is_empty() && t.len() <= 253 && t.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(()).ok_or_else(|| {
        "a non-empty name of at most 253 printable ASCII characters without blanks, unique \
         to this host"
            .into()
    })
}

/// The host name (uname's nodename), what the Lease names this host by default.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname(2) NUL-terminates within it
    // (the last byte stays 0 since we pass one less).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if rc != 0 || holder_identity(&name).is_err() {
        // A host without a usable name still gets a working default; the operator sees it in
        // --check-config and can set `identity`.
        return format!("kube-event-pipe-{}", std::process::id());
    }
    name
}

/// Python logging level names and Rust tracing level names, any case.
pub fn log_level(text: &str) -> Option<(LevelFilter, &'static str)> {
    Some(match text.trim().to_ascii_uppercase().as_str() {
        "TRACE" => (LevelFilter::TRACE, "TRACE"),
        "DEBUG" => (LevelFilter::DEBUG, "DEBUG"),
        "INFO" => (LevelFilter::INFO, "INFO"),
        "WARNING" | "WARN" => (LevelFilter::WARN, "WARNING"),
        "ERROR" => (LevelFilter::ERROR, "ERROR"),
        // tracing has no level above ERROR; CRITICAL keeps the errors, as it did in Python
        // where nothing was logged at CRITICAL.
        "CRITICAL" | "FATAL" => (LevelFilter::ERROR, "CRITICAL"),
        "OFF" => (LevelFilter::OFF, "OFF"),
        _ => return None,
    })
}

/// Why a directory cannot hold the state, or None when it can (existing and writable, or
/// creatable under a writable ancestor).
pub fn directory_problem(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            (!writable(path)).then(|| "the directory is not writable by this user".to_string())
        }
        Ok(_) => Some("it exists and is not a directory".to_string()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            let mut ancestor = path.parent();
            while let Some(dir) = ancestor {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                match std::fs::metadata(dir) {
                    Ok(meta) if meta.is_dir() => {
                        return (!writable(dir)).then(|| {
                            format!(
                                "it does not exist and cannot be created: {} is not writable",
                                dir.display()
                            )
                        });
                    }
                    Ok(_) => {
                        return Some(format!(
                            "it cannot be created: {} is not a directory",
                            dir.display()
                        ));
                    }
                    Err(_) => ancestor = dir.parent(),
                }
            }
            Some("it does not exist and has no existing parent directory".to_string())
        }
        Err(e) => Some(format!("it cannot be inspected: {e}")),
    }
}

fn writable(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_take_python_underscores() {
        assert_eq!(integer("1_000_000"), Some(1_000_000));
        assert_eq!(integer(" 42 "), Some(42));
        assert_eq!(integer("1__0"), None);
        assert_eq!(integer("_1"), None);
        assert_eq!(integer("1_"), None);
        assert_eq!(integer("-3"), None);
        assert_eq!(integer("3.0"), None);
        assert_eq!(integer(""), None);
    }

    #[test]
    fn floats_take_python_spellings() {
        assert_eq!(float("0.01"), Some(0.01));
        assert_eq!(float("1e-3"), Some(0.001));
        assert_eq!(float("0.000_1"), Some(0.0001));
        assert_eq!(float("0._1"), None);
        assert_eq!(float("abc"), None);
    }

    #[test]
    fn level_names_from_python_and_rust_in_any_case() {
        assert_eq!(log_level("warning").map(|l| l.0), Some(LevelFilter::WARN));
        assert_eq!(log_level("Warn").map(|l| l.0), Some(LevelFilter::WARN));
        assert_eq!(log_level("CRITICAL").map(|l| l.0), Some(LevelFilter::ERROR));
        assert_eq!(log_level("trace").map(|l| l.0), Some(LevelFilter::TRACE));
        assert_eq!(log_level("verbose"), None);
    }
}
