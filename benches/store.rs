//! Dedup store micro-benchmark: `cargo bench --bench store`.
//!
//! 1M capacity per filter, 0.01 error rate for the set, 3 filters: fills all three to capacity
//! through the public API and prints ns per insert / lookup and the measured false-positive rate.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use kube_event_pipe::dedup::{Store, StoreConfig};

const CAPACITY: u64 = 1_000_000;
const BATCH_COUNT: u32 = 3;
const ERROR_RATE: f64 = 0.01;

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

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        capacity: CAPACITY,
        error_rate: ERROR_RATE,
        batch_count: BATCH_COUNT,
        batch_duration: Duration::from_secs(86_400),
        max_bytes: 1 << 30,
    }
}

fn per_op(elapsed: Duration, n: u64) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

fn main() -> anyhow::Result<()> {
    let now = SystemTime::now();
    let total = CAPACITY * u64::from(BATCH_COUNT);
    let mut seen = Ids::new("kube-system/coredns-5d78c9869d-x7k2p.17f3a2b4c5d6e7f8/");
    let mut fresh = Ids::new("default/web-7c9f8d6b5-q2w3e.1800000000000000/never-inserted/");

    // insert: every identity is new; includes the two fill rotations (file create + fsync).
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(config(dir.path()), now)?;
    let timed = total - 10_000;
    let t = Instant::now();
    for i in 0..timed {
        store.insert(seen.get(i), now)?;
    }
    let insert_ns = per_op(t.elapsed(), timed);
    // Top up, untimed, until the newest filter is full too (reading stats on every insert
    // would distort the timing above).
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
        hits += u64::from(black_box(store.contains(seen.get(i * 3 % filled))));
    }
    let hit_ns = per_op(t.elapsed(), lookups);
    assert_eq!(hits, lookups, "false negative");

    let probes = 3_000_000u64;
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
    let mut store2 = Store::open(config(dir2.path()), now)?;
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

    println!(
        "dedup store: capacity {CAPACITY} per filter, error rate {ERROR_RATE}, batch_count {BATCH_COUNT}"
    );
    println!("  insert (new ids, {timed}, incl. 2 rotations):   {insert_ns:8.1} ns/op");
    println!("  contains, present ({lookups}):                  {hit_ns:8.1} ns/op");
    println!("  contains, absent ({probes}):                   {miss_ns:8.1} ns/op");
    println!(
        "  check_and_insert, new ({timed}):               {cai_ns:8.1} ns/op  ({new} reported new)"
    );
    println!(
        "  check_and_insert, repeat ({lookups}):           {cai_repeat_ns:8.1} ns/op  ({repeats} reported seen)"
    );
    println!(
        "  false positives: {false_positives} / {probes} = {fp:.5} (bound {ERROR_RATE}, estimated {:.5})",
        stats.estimated_fp
    );
    println!("  {stats}");
    Ok(())
}
