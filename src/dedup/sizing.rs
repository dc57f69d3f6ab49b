//! How large the next filter is and what error rate it is sized for.
//!
//! The set is a scalable bloom filter (Almeida et al., 2007): a full filter is followed by a
//! larger one, never overfilled and never evicted for room, so the memory grows with what the
//! API server holds. Each new filter gets half of the false-positive budget the live filters
//! leave, so the rates of all live filters add up to less than the set's bound: a new identity
//! is taken for a repeat with at most that probability, whatever the fill.

/// The false-positive bound the daemon sizes for unless `filter_error_rate` is tighter: one new
/// event in a million dropped. Filters at this rate cost about 29 bits (3.6 bytes) per identity,
/// against 9.6 bits at the original's 0.01: little memory for far fewer lost events.
pub const TARGET_RATE: f64 = 1e-6;

/// The smallest share of the bound a new filter is sized for, when the live filters already
/// use up nearly all of it (many fills in a row): 2^-20 of it costs 29 more bits per identity.
const MIN_SHARE: f64 = 1.0 / (1u64 << 20) as f64;

/// The error rate for a new filter, given the bound for the set and the rates the live filters
/// were sized for. Filters sized above the bound (written by a version that sized for
/// `filter_error_rate` itself, or under a looser setting) are left out: counting them would
/// leave nothing for the new ones until they age out.
pub fn next_rate(bound: f64, live: impl IntoIterator<Item = f64>) -> f64 {
    let used: f64 = live.into_iter().filter(|r| *r <= bound).sum();
    let floor = (bound * MIN_SHARE).max(MIN_RATE).min(bound / 2.0);
    ((bound - used) / 2.0).clamp(floor, bound / 2.0)
}

/// Below this a filter would need more hash functions than a file may have (60 at 1e-18,
/// at most 64).
const MIN_RATE: f64 = 1e-18;

/// Why a new filter is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The newest reached `batch_duration_sec`.
    Age,
    /// The newest reached its fill limit.
    Fill,
}

/// Identities the next filter is sized for: `base` (`filter_capacity`) at least; twice the
/// full one after a fill, so a large sync needs only a logarithmic number of filters; after
/// an age rotation, what the newest took in its period with a quarter to spare, so steady
/// traffic above `filter_capacity` does not fill filter after filter.
pub fn next_capacity(base: u64, why: Rotation, newest_capacity: u64, newest_inserted: u64) -> u64 {
    let grown = match why {
        Rotation::Fill => newest_capacity.saturating_mul(2),
        Rotation::Age => newest_inserted.saturating_add(newest_inserted / 4),
    };
    base.max(grown)
}

/// The largest capacity up to `capacity` whose filter at `rate` takes at most `max_bytes`, or
/// `None` when not even one identity fits.
pub fn fit_capacity(capacity: u64, rate: f64, max_bytes: u64) -> Option<u64> {
    let fits = |c: u64| super::filter::file_bytes(c, rate).is_ok_and(|b| b <= max_bytes);
    if fits(capacity) {
        return Some(capacity);
    }
    if !fits(1) {
        return None;
    }
    // Bytes grow linearly with capacity: bisect between a fitting and a failing capacity.
    let (mut lo, mut hi) = (1u64, capacity);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) { lo = mid } else { hi = mid }
    }
    Some(lo)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn live_rates_never_add_up_past_the_bound() {
        let bound = 1e-6;
        let mut live: Vec<f64> = Vec::new();
        for step in 0..200 {
            let r = next_rate(bound, live.iter().copied());
            assert!(r > 0.0 && r <= bound / 2.0);
            live.push(r);
            // Now and then the oldest ages out, as age rotations do.
            if step % 3 == 2 {
                live.remove(0);
            }
            let sum: f64 = live.iter().sum();
            assert!(sum < bound, "step {step}: {sum}");
        }
        // Files of an older sizing (0.01 / 3 each) do not starve the new ones.
        assert_eq!(next_rate(bound, [0.01 / 3.0; 3]), bound / 2.0);
        // However tight the bound, a new filter stays within the hash functions a file holds.
        let tight = 1e-15;
        let r = next_rate(tight, [tight / 2.0, tight / 4.0, tight / 4.0]);
        assert_eq!(r, 1e-18);
        assert!(crate::dedup::filter::sizing(1000, r).unwrap().1 <= 64);
    }

    #[test]
    fn capacity_doubles_on_fill_and_follows_traffic_on_age() {
        assert_eq!(next_capacity(200, Rotation::Fill, 200, 200), 400);
        assert_eq!(next_capacity(200, Rotation::Fill, 3200, 3190), 6400);
        assert_eq!(next_capacity(200, Rotation::Age, 3200, 10), 200);
        assert_eq!(next_capacity(200, Rotation::Age, 3200, 1000), 1250);
    }

    #[test]
    fn fitting_gives_the_largest_capacity_within_the_bytes() {
        let rate = 5e-7;
        let c = fit_capacity(10_000_000, rate, 1 << 20).unwrap();
        let bytes = |c| crate::dedup::filter::file_bytes(c, rate).unwrap();
        assert!(bytes(c) <= 1 << 20 && bytes(c + 1) > 1 << 20, "{c}");
        assert_eq!(fit_capacity(1000, rate, 1 << 20), Some(1000));
        assert_eq!(fit_capacity(1000, rate, 16), None);
    }
}
