//! The process's own CPU time, memory, file descriptors and start time, read from
//! `/proc/self` at each scrape (the standard `process_*` figures other exporters give).
//!
//! Only `/proc/self` is read: the unit's `ProcSubset=pid` hides `/proc/stat` and
//! `/proc/uptime`, so the start time is worked out from `CLOCK_BOOTTIME` instead of the boot
//! time in `/proc/stat`.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessFigures {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    /// The soft RLIMIT_NOFILE.
    pub max_fds: u64,
}

/// Reads the figures; None if `/proc/self/stat` is unreadable or not understood (the scrape
/// then goes without them rather than with wrong ones).
pub fn read() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields = parse_stat(&stat)?;
    let ticks = sysconf(libc::_SC_CLK_TCK)? as f64;
    let page = sysconf(libc::_SC_PAGESIZE)?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(ProcessFigures {
        cpu_seconds: (fields.utime + fields.stime) as f64 / ticks,
        resident_bytes: fields.rss_pages.saturating_mul(page),
        virtual_bytes: fields.vsize,
        start_time_seconds: start_time(fields.starttime as f64 / ticks).unwrap_or(0.0),
        open_fds,
        max_fds: max_fds().unwrap_or(0),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatFields {
    utime: u64,
    stime: u64,
    /// Clock ticks after boot.
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

/// proc(5): the command name (field 2) is in parentheses and may itself hold spaces or
/// parentheses, so fields are counted after the last `)`; field 3 (state) is the first there.
fn parse_stat(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    Some(StatFields {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf(3) only reads its argument.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|&v| v > 0)
}

/// Unix time of the process start, `started_after_boot` seconds after boot.
fn start_time(started_after_boot: f64) -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    let since_boot = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(now - (since_boot - started_after_boot))
}

fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    Some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = "4242 (kube (event) pipe) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 3 0 123456 987654321 2048 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(StatFields {
                utime: 250,
                stime: 50,
                starttime: 123456,
                vsize: 987654321,
                rss_pages: 2048,
            })
        );
        assert_eq!(parse_stat("4242 (truncated"), None);
    }

    #[test]
    fn figures_of_this_process_are_plausible() {
        let before = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let p = read().unwrap();
        assert!(p.resident_bytes > 1 << 20, "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.open_fds >= 3 && p.open_fds <= before + 16, "{p:?}");
        assert!(p.max_fds >= p.open_fds, "{p:?}");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Test binaries are started moments before their tests.
        assert!(p.start_time_seconds <= now + 1.0, "{p:?}");
        assert!(p.start_time_seconds > now - 3600.0, "{p:?}");
    }
}
