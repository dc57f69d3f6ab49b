//! When an event last changed, as far as a list needs it: the dedup store keeps its memory while
//! the API server still holds events that old, so each list reports the oldest time it carried.
//!
//! This is a byte search, not a parse: only list items are looked at, and only after the
//! identity scan has accepted them as JSON objects. A key is found by its quoted name followed by
//! a colon, which cannot occur inside a JSON string (a quote in a string is escaped), and the
//! event objects the API serves have no nested members of these names.

use memchr::memmem;

/// The fields that date an event, most telling first: `lastTimestamp` (core/v1, bumped on each
/// repeat), `eventTime` (events.k8s.io, the first occurrence) and `metadata.creationTimestamp`.
/// Each is at or before the change whose identity the daemon wrote for the event as the server
/// holds it, so whichever is present dates that identity safely (never too late).
const KEYS: [&[u8]; 3] = [
    b"\"lastTimestamp\"",
    b"\"eventTime\"",
    b"\"creationTimestamp\"",
];

/// Unix seconds of the event's latest known change (see [`KEYS`]), or `None` when none of the
/// fields holds a readable RFC 3339 time.
pub fn changed_at(object: &[u8]) -> Option<i64> {
    KEYS.iter()
        .find_map(|key| string_value(object, key).and_then(parse_rfc3339))
}

/// The string value of the first member named `key` (quoted), if it is a string.
fn string_value<'a>(object: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(at) = memmem::find(&object[from..], key) {
        let mut i = from + at + key.len();
        from = i;
        i = skip_ws(object, i);
        if object.get(i) != Some(&b':') {
            continue;
        }
        i = skip_ws(object, i + 1);
        if object.get(i) != Some(&b'"') {
            // `null`, or not a time at all.
            return None;
        }
        let start = i + 1;
        let len = memchr::memchr(b'"', object.get(start..)?)?;
        return object.get(start..start + len);
    }
    None
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to unix seconds (the fraction is dropped).
pub fn parse_rfc3339(s: &[u8]) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = s.get(r)?;
        if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(d.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
    };
    let sep = |i: usize, c: &[u8]| s.get(i).is_some_and(|b| c.contains(b));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let digits = s
            .get(i..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        i += digits;
    }
    let offset = match s.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), ..] if s.len() == i + 6 && s[i + 3] == b':' => {
            let secs = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_times_the_api_server_writes() {
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339(b"2026-12-03T10:00:00Z"), Some(1_796_292_000));
        assert_eq!(
            parse_rfc3339(b"2026-12-03T10:00:00.123456Z"),
            Some(1_796_292_000)
        );
        assert_eq!(
            parse_rfc3339(b"2026-12-03T11:00:00+01:00"),
            Some(1_796_292_000)
        );
        assert_eq!(parse_rfc3339(b"2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            &b""[..],
            b"2026-12-03",
            b"2026-13-03T10:00:00Z",
            b"2026-12-03T10:00:00",
            b"x026-12-03T10:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn an_event_is_dated_by_its_last_change_else_its_creation() {
        let core = br#"{"metadata":{"name":"a","creationTimestamp":"2026-12-03T09:00:00Z"},"message":"\"lastTimestamp\":\"1999-01-01T00:00:00Z\"","lastTimestamp": "2026-12-03T10:00:00Z","eventTime":null}"#;
        assert_eq!(changed_at(core), Some(1_796_292_000));
        let new_style = br#"{"metadata":{"name":"a","creationTimestamp":"2026-12-03T09:00:00Z"},"lastTimestamp":null,"eventTime":"2026-12-03T10:00:00.000001Z"}"#;
        assert_eq!(changed_at(new_style), Some(1_796_292_000));
        let bare = br#"{"metadata":{"name":"a","creationTimestamp":"2026-12-03T10:00:00Z"}}"#;
        assert_eq!(changed_at(bare), Some(1_796_292_000));
        assert_eq!(changed_at(br#"{"metadata":{"name":"a"}}"#), None);
    }
}
