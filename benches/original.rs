//! What the Python kube-event-pipe's filter files cost per event while they are used:
//! `cargo bench --bench original`.
//!
//! One, then three of that tool's files at its defaults (capacity 1,000,000 at error rate 0.01
//! each, so 6 hashes over 9.6 Mbit, 1.2 MB), in its format, beside our own store. Their bits
//! are random with half of them set, about what a full file has (1 - e^(-6/9.585) = 47%), the
//! costliest fill that occurs: a lookup of an event they do not hold stops where a real one
//! would, and false positives come as often. For scale, our own store's `probe` of the same
//! identity, which every event pays. Only listed events that our own filters do not hold are
//! looked up there; without such files the pipeline does nothing extra per event (one
//! `has_originals()` test of an empty list).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kube_event_pipe::dedup::{Store, StoreConfig};

const CAPACITY: u64 = 1_000_000;
const ERROR_RATE: f64 = 0.01;
const FILES: u64 = 3;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A file as pybloomfiltermmap3 0.5.7's `BloomFilter(capacity, error_rate, path)` lays it out
/// (see `src/dedup/original.rs`), sized as it sizes one, with random seeds and bits.
fn write_original(path: &Path, rng: &mut XorShift) -> std::io::Result<()> {
    let k = ((1.0 / ERROR_RATE).log2().floor() as u64).max(1);
    let per_hash =
        (CAPACITY as f64 * ERROR_RATE.ln().abs() / (k as f64 * 2f64.ln().powi(2))).ceil() as u64;
    let bits = (k * per_hash).max(128);
    let mut f = Vec::with_capacity(1280 + bits.div_ceil(8) as usize);
    f.extend_from_slice(b"MBITARRAY");
    f.extend_from_slice(&bits.to_le_bytes());
    f.extend_from_slice(&1200i32.to_le_bytes());
    let mut s = vec![0u8; 1200];
    s[0..8].copy_from_slice(&CAPACITY.to_le_bytes());
    s[8..16].copy_from_slice(&ERROR_RATE.to_le_bytes());
    s[16..20].copy_from_slice(&(k as u32).to_le_bytes());
    for i in 0..k as usize {
        s[20 + 4 * i..24 + 4 * i].copy_from_slice(&(rng.next() as u32).to_le_bytes());
    }
    s[1056] = 1;
    s[1057] = 1;
    f.extend_from_slice(&s);
    f.resize(1280, 0);
    for _ in 0..bits.div_ceil(8) {
        f.push(rng.next() as u8);
    }
    std::fs::write(path, f)
}

fn store_with_originals(dir: &Path, now: u64, files: u64) -> anyhow::Result<Store> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..files {
        write_original(
            &dir.join(format!("{}.bloom", now - 3600 * (i + 1))),
            &mut rng,
        )?;
    }
    let store = Store::open(
        StoreConfig {
            dir: dir.to_path_buf(),
            capacity: CAPACITY,
            error_rate: ERROR_RATE,
            batch_count: 3,
            batch_duration: Duration::from_secs(3600 * 2),
            max_bytes: 1 << 30,
        },
        UNIX_EPOCH + Duration::from_secs(now),
    )?;
    assert_eq!(store.original_files().len(), files as usize);
    Ok(store)
}

fn per_op(elapsed: Duration, n: u64) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

fn main() -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let n = 1_000_000u64;
    println!(
        "the Python tool's files: capacity {CAPACITY} at error rate {ERROR_RATE}, half their bits set, beside our store"
    );
    // Event names as the API makes them (object name, then a hex timestamp), made up front.
    let names: Vec<String> = (0..n)
        .map(|i| format!("web-7c9f8d6b5-q2w3e.18{i:014x}"))
        .collect();
    for files in [1, FILES] {
        let dir = tempfile::tempdir()?;
        let store = store_with_originals(dir.path(), now, files)?;
        let mut key = Vec::new();
        let t = Instant::now();
        let mut hits = 0u64;
        for name in &names {
            hits += u64::from(black_box(store.written_by_original(
                name,
                Some("1"),
                &mut key,
            )));
        }
        let orig_ns = per_op(t.elapsed(), n);
        // The same names through our own store's lookup, which every event pays, for scale.
        let t = Instant::now();
        let mut seen = 0u64;
        for name in &names {
            seen += u64::from(black_box(store.probe(name.as_bytes()).0));
        }
        let ours_ns = per_op(t.elapsed(), n);
        println!(
            "  {files} file(s): written_by_original {orig_ns:6.1} ns/event ({hits} of {n} reported held: false positives); our own probe {ours_ns:6.1} ns/event ({seen} held); est. fp of the set {:.5}",
            store.stats().estimated_fp
        );
    }
    Ok(())
}
