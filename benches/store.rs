//! Dedup store micro-benchmark: `cargo bench --bench store`.
//!
//! The default settings (`filter_capacity` 1M, `filter_error_rate` 0.01, 3 files): fills three
//! filters to their limits through the public API (1M, 2M and 4M identities: a full filter is
//! joined by one twice its size) and prints ns per insert / lookup, the measured false-positive
//! rate and the filters' bytes. Then the scale model of row 8 on the store alone: 1M identities
//! through a window of a tenth of them (33,334 × 3), twice: what a re-list writes again.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use kube_event_pipe::dedup::{Store, StoreConfig};

const CAPACITY: u64 = 1_000_000;
const BATCH_COUNT: u32 = 3;
const ERROR_RATE: f64 = 0.01;
/// Identities of the scale model, and its window per file (a tenth of them over 3 files).
const SCALE: u64 = 1_000_000;
const SCALE_CAPACITY: u64 = 33_334;

/// An identity shaped like the pipeline's (namespace/name.uid/resourceVersion), numbered.
struct Ids {
    buf: Vec<u8>,
    prefix_len: usize,
}

impl Ids {
    fn new(prefix: &str) -> Ids {
        let mut buf = prefix.as_bytes().to_vec();
        let prefix_len = buf.len();
        buf.extend_from_slice(&[b'0'; 16]);
        Ids { buf, prefix_len }
    }

    fn get(&mut self, i: u64) -> &[u8] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (n, b) in self.buf[self.prefix_len..].iter_mut().enumerate() {
            *b = HEX[((i >> (4 * (15 - n))) & 0xf) as usize];
        }
        &self.buf
    }
}

fn config(dir: &std::path::Path, capacity: u64) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        capacity,
        error_rate: ERROR_RATE,
        batch_count: BATCH_COUNT,
        batch_duration: Duration::from_secs(86_400),
        max_bytes: 256 << 20,
    }
}

fn per_op(elapsed: Duration, n: u64) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() -> anyhow::Result<()> {
    let now = SystemTime::now();
    let mut seen = Ids::new("kube-system/coredns-5d78c9869d-x7k2p.17f3a2b4c5d6e7f8/");
    let mut fresh = Ids::new("default/web-7c9f8d6b5-q2w3e.1800000000000000/never-inserted/");

    // insert: every identity is new; includes the fill rotations (file create + fsync).
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(config(dir.path(), CAPACITY), now)?;
    let timed = 3 * CAPACITY;
    let t = Instant::now();
    for i in 0..timed {
        store.insert(seen.get(i), now)?;
    }
    let insert_ns = per_op(t.elapsed(), timed);
    // Top up, untimed, until three filters are full (reading stats on every insert would
    // distort the timing above).
    let mut inserted = timed;
    loop {
        let s = store.stats();
        if s.files.len() == BATCH_COUNT as usize
            && s.files.iter().all(|f| f.inserted >= f.fill_limit)
        {
            break;
        }
        store.insert(seen.get(inserted), now)?;
        inserted += 1;
    }
    let filled = inserted;

    let lookups = 1_000_000u64;
    let t = Instant::now();
    let mut hits = 0u64;
    for i in 0..lookups {
        hits += u64::from(black_box(store.contains(seen.get(i * 7 % filled))));
    }
    let hit_ns = per_op(t.elapsed(), lookups);
    assert_eq!(hits, lookups, "false negative");

    let probes = 10_000_000u64;
    let t = Instant::now();
    let mut false_positives = 0u64;
    for i in 0..probes {
        false_positives += u64::from(black_box(store.contains(fresh.get(i))));
    }
    let miss_ns = per_op(t.elapsed(), probes);
    let fp = false_positives as f64 / probes as f64;
    let stats = store.stats();
    store.flush()?;
    drop(store);

    // The pipeline's call: check_and_insert over a fresh store, all identities new.
    let dir2 = tempfile::tempdir()?;
    let mut store2 = Store::open(config(dir2.path(), CAPACITY), now)?;
    let t = Instant::now();
    let mut new = 0u64;
    for i in 0..timed {
        new += u64::from(store2.check_and_insert(seen.get(i), now)?);
    }
    let cai_ns = per_op(t.elapsed(), timed);
    // Identities seen before: the dedup hit path.
    let t = Instant::now();
    let mut repeats = 0u64;
    for i in 0..lookups {
        repeats += u64::from(!store2.check_and_insert(seen.get(i * 3 % timed), now)?);
    }
    let cai_repeat_ns = per_op(t.elapsed(), lookups);
    drop(store2);

    // The scale model: a sync of SCALE identities through a window of a tenth of them, then
    // the same identities again, as a re-list offers them.
    let dir3 = tempfile::tempdir()?;
    let mut store3 = Store::open(config(dir3.path(), SCALE_CAPACITY), now)?;
    let t = Instant::now();
    let mut synced = 0u64;
    for i in 0..SCALE {
        synced += u64::from(store3.check_and_insert(seen.get(i), now)?);
    }
    let sync_ns = per_op(t.elapsed(), SCALE);
    let t = Instant::now();
    let mut again = 0u64;
    for i in 0..SCALE {
        again += u64::from(store3.check_and_insert(seen.get(i), now)?);
    }
    let relist_ns = per_op(t.elapsed(), SCALE);
    let scale = store3.stats();

    println!(
        "dedup store: filter_capacity {CAPACITY}, filter_error_rate {ERROR_RATE}, batch_count {BATCH_COUNT} (the defaults)"
    );
    println!("  insert (new ids, {timed}, incl. 2 rotations):   {insert_ns:8.1} ns/op");
    println!("  contains, present ({lookups}):                  {hit_ns:8.1} ns/op");
    println!("  contains, absent ({probes}):                  {miss_ns:8.1} ns/op");
    println!(
        "  check_and_insert, new ({timed}):               {cai_ns:8.1} ns/op  ({new} reported new)"
    );
    println!(
        "  check_and_insert, repeat ({lookups}):           {cai_repeat_ns:8.1} ns/op  ({repeats} reported seen)"
    );
    println!(
        "  false positives at full fill ({filled} ids in {} filters): {false_positives} / {probes} = {fp:.2e} (sized for {:.0e}, estimated {:.2e}); filters {:.1} MiB = {:.2} bytes per identity",
        stats.files.len(),
        stats.sized_rate,
        stats.estimated_fp,
        mib(stats.bytes),
        stats.bytes as f64 / filled as f64
    );
    println!("  {stats}");
    println!(
        "  scale model, {SCALE} ids through filter_capacity {SCALE_CAPACITY} x {BATCH_COUNT}: sync {sync_ns:.1} ns/op ({synced} new), re-list {relist_ns:.1} ns/op ({again} reported new again: written twice); filters {:.1} MiB in {} files",
        mib(scale.bytes),
        scale.files.len()
    );
    Ok(())
}
