//! Which filters may go: by age only, and not while the API server may still hold events
//! written into them. A re-list offers every event the server holds; a filter dropped before
//! those events are gone from the server would have them written again.

use super::filter::Listed;

/// Added to the age of the oldest event the last list showed: the clocks of the API server and
/// this host may differ, and an event is written a little after it changed.
pub const SLACK_SECS: u64 = 300;

/// One filter as retention sees it.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// Started (its file name).
    pub start: u64,
    /// When the next filter took over; it took identities until then.
    pub end: u64,
}

/// Whether a filter that is not among the newest `batch_count` may be deleted at `now`:
/// it is at least `floor` old (`batch_count × batch_duration_sec`, what the setting always
/// promised), and the last list showed the server keeping events for less time than has
/// passed since the filter's last insertion. Without a list seen yet (a state directory of an
/// older version, resumed by a watch), the floor alone decides, as it did before.
pub fn expired(span: Span, now: u64, floor: u64, listed: Option<Listed>) -> bool {
    if now.saturating_sub(span.start) < floor {
        return false;
    }
    match listed {
        None => true,
        Some(l) => now.saturating_sub(span.end) > l.oldest_age().saturating_add(SLACK_SECS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;

    #[test]
    fn a_filter_stays_while_the_server_keeps_events_as_old() {
        let t0 = 100 * HOUR;
        let span = Span {
            start: t0,
            end: t0 + HOUR,
        };
        // The server keeps a day of events: the filter stays a day after its last insertion.
        let day = Some(Listed {
            at: t0 + 10 * HOUR,
            oldest: t0 - 14 * HOUR,
            count: 5,
        });
        assert!(!expired(span, t0 + 20 * HOUR, 3 * HOUR, day));
        assert!(expired(span, t0 + 26 * HOUR, 3 * HOUR, day));
        // The server keeps an hour: the floor of three hours decides.
        let hour = Some(Listed {
            at: t0 + 10 * HOUR,
            oldest: t0 + 9 * HOUR,
            count: 5,
        });
        assert!(!expired(span, t0 + 2 * HOUR, 3 * HOUR, hour));
        assert!(expired(span, t0 + 3 * HOUR, 3 * HOUR, hour));
        // No list seen: the floor alone.
        assert!(expired(span, t0 + 3 * HOUR, 3 * HOUR, None));
        assert!(!expired(span, t0 + 3 * HOUR - 1, 3 * HOUR, None));
    }
}
