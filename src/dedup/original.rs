//! The Python kube-event-pipe's filter files, read-only, so that switching to this daemon
//! writes nothing again that the Python tool wrote.
//!
//! The Python tool kept `<unix_ts>.bloom` files made by pybloomfiltermmap3 0.5
//! (`BloomFilter(capacity, error_rate, path)`) and remembered an event by the string
//! `f'{name}-{count}'`. Layout of such a file (little-endian, as written on 64-bit Linux; the
//! library's `mmapbitarray.c` and `bloomfilter.h` are the reference):
//!
//! | offset | size | field                                                               |
//! |-------:|-----:|---------------------------------------------------------------------|
//! |      0 |    9 | magic `b"MBITARRAY"`                                                |
//! |      9 |    8 | bit count `m`                                                       |
//! |     17 |    4 | length of the struct that follows (1200)                            |
//! |     21 |    8 | capacity                                                            |
//! |     29 |    8 | error rate (f64)                                                    |
//! |     37 |    4 | number of hashes `k` (1 to 256)                                     |
//! |     41 | 1024 | 256 u32 hash seeds; those past `k` are zero                         |
//! |   1069 |    8 | a pointer, meaningless on disk                                      |
//! |   1077 |    1 | version (1)                                                         |
//! |   1078 |    1 | "count correct" flag                                                |
//! |   1085 |    8 | element count: always 0 on disk (the library counts in memory only) |
//! |   1093 |  128 | reserved                                                            |
//! |   1280 | ⌈m/8⌉ | bits: bit `i` is `1 << (i % 8)` of byte `i / 8`                    |
//!
//! A key is in the filter when, for each seed, bit `(a ^ b) % m` is set, where `(a, b)` is
//! MurmurHash3 x64 128 of the key's UTF-8 bytes with that seed.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::filter::OpenError;
use super::format::{FormatError, MAX_BITS};
use super::murmur3;
use super::stats::FileStats;

pub const MAGIC: &[u8; 9] = b"MBITARRAY";

/// Magic, bit count and struct length: the `mmapbitarray` prefix.
const PREFIX_LEN: usize = 9 + 8 + 4;
/// `sizeof(struct _BloomFilter)` on LP64: what 64-bit Linux builds of the library write.
const STRUCT_LEN: usize = 1200;
/// The prefix and the struct, rounded up to 256 bytes: where the bits start.
pub const PREAMBLE_LEN: usize = (PREFIX_LEN + STRUCT_LEN).div_ceil(256) * 256;
const MAX_SEEDS: usize = 256;
const VERSION: u8 = 1;

/// Whether the file at `path` claims to be one of the Python tool's (starts with its magic).
/// Opens it read-only: the Python service may have left it owned by another user.
pub(crate) fn claims_format(path: &Path) -> io::Result<bool> {
    let mut start = [0u8; MAGIC.len()];
    let mut file = File::open(path)?;
    let mut got = 0;
    while got < start.len() {
        match file.read(&mut start[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got == start.len() && &start == MAGIC)
}

/// Parameters of one of the Python tool's files, from its header.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginalHeader {
    pub capacity: u64,
    pub error_rate: f64,
    pub bits: u64,
    pub seeds: Vec<u32>,
}

impl OriginalHeader {
    pub fn file_len(&self) -> u64 {
        PREAMBLE_LEN as u64 + self.bits.div_ceil(8)
    }

    /// Parses and checks a header: `bytes` is the start of the file (at least [`PREAMBLE_LEN`]
    /// bytes of it when the file has them), `file_len` the length of the whole file. Never
    /// panics, whatever the bytes.
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<OriginalHeader, FormatError> {
        let bad = |msg: String| Err(FormatError::Original(msg));
        let avail = usize::try_from(file_len).unwrap_or(usize::MAX);
        let bytes = &bytes[..bytes.len().min(avail)];
        if !bytes.starts_with(MAGIC) {
            return bad("does not start with the magic MBITARRAY".into());
        }
        if bytes.len() < PREFIX_LEN {
            return bad(format!(
                "truncated: file is {file_len} bytes, its header needs {PREAMBLE_LEN}"
            ));
        }
        let struct_len = i32::from_le_bytes(array(bytes, 17));
        if usize::try_from(struct_len).ok() != Some(STRUCT_LEN) {
            return bad(format!(
                "header length {struct_len}, not the {STRUCT_LEN} that pybloomfiltermmap3 writes on 64-bit Linux"
            ));
        }
        if bytes.len() < PREAMBLE_LEN {
            return bad(format!(
                "truncated: file is {file_len} bytes, its header needs {PREAMBLE_LEN}"
            ));
        }
        let s = &bytes[PREFIX_LEN..PREFIX_LEN + STRUCT_LEN];
        let version = s[1056];
        if version != VERSION {
            return bad(format!("version {version}, not {VERSION}"));
        }
        let capacity = u64::from_le_bytes(array(s, 0));
        let error_rate = f64::from_le_bytes(array(s, 8));
        let hashes = u32::from_le_bytes(array(s, 16));
        let bits = u64::from_le_bytes(array(bytes, 9));
        if capacity == 0 {
            return bad("capacity is 0".into());
        }
        if !(error_rate > 0.0 && error_rate < 1.0) {
            return bad(format!("error rate {error_rate} is not in (0, 1)"));
        }
        if hashes == 0 || hashes as usize > MAX_SEEDS {
            return bad(format!(
                "{hashes} hash functions (1 to {MAX_SEEDS} are possible)"
            ));
        }
        let all_seeds: Vec<u32> = (0..MAX_SEEDS)
            .map(|i| u32::from_le_bytes(array(s, 20 + 4 * i)))
            .collect();
        let (seeds, unused) = all_seeds.split_at(hashes as usize);
        if unused.iter().any(|&x| x != 0) {
            return bad(format!(
                "hash seeds past the first {hashes} are not zero, as the library leaves them"
            ));
        }
        if bits == 0 || bits > MAX_BITS {
            return bad(format!("bit count {bits} is not between 1 and {MAX_BITS}"));
        }
        let header = OriginalHeader {
            capacity,
            error_rate,
            bits,
            seeds: seeds.to_vec(),
        };
        let expected = header.file_len();
        if file_len < expected {
            return bad(format!(
                "truncated: file is {file_len} bytes, its header describes {expected}"
            ));
        }
        if file_len != expected {
            return bad(format!(
                "file is {file_len} bytes but its header describes {expected}"
            ));
        }
        Ok(header)
    }
}

// Callers have checked the length; the fallback keeps this panic-free regardless.
fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// Writes the Python tool's identity of an event, `f'{name}-{count}'`, into `buf` (cleared
/// first): `count` is the raw JSON text of the event's `count`, `None` when absent or null,
/// rendered as Python renders the integer. Returns `false` (and the key is not to be used)
/// when `count` is not a JSON integer: the API server never sends one, and how the Python
/// tool would have rendered it is unknown, so such an event is not looked up there.
pub fn original_key(name: &str, count: Option<&str>, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'-');
    let Some(count) = count else {
        buf.extend_from_slice(b"None");
        return true;
    };
    let digits = count.strip_prefix('-').unwrap_or(count);
    let integer = match digits.as_bytes() {
        [] => false,
        [b'0'] => true,
        [first, rest @ ..] => (b'1'..=b'9').contains(first) && rest.iter().all(u8::is_ascii_digit),
    };
    if !integer {
        return false;
    }
    // JSON's integer text is Python's str() of the value, but for "-0", which is 0.
    buf.extend_from_slice(if count == "-0" {
        b"0"
    } else {
        count.as_bytes()
    });
    true
}

/// One of the Python tool's filter files, mapped read-only.
pub struct OriginalFilter {
    path: PathBuf,
    header: OriginalHeader,
    map: Mmap,
    /// The fraction of bits set, counted once: the file never changes while we use it.
    set_fraction: f64,
}

impl OriginalFilter {
    /// Opens and checks a file. Format problems come back as [`OpenError::Format`] (with
    /// [`FormatError::Original`]), so the caller can quarantine the file.
    pub fn open(path: &Path) -> Result<OriginalFilter, OpenError> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut buf = Vec::with_capacity(PREAMBLE_LEN);
        (&file).take(PREAMBLE_LEN as u64).read_to_end(&mut buf)?;
        let header = OriginalHeader::parse(&buf, len).map_err(OpenError::Format)?;
        // SAFETY: a read-only shared mapping; it stays sound unless the file is truncated while
        // mapped (that would SIGBUS). The library never truncates a file, and the migration
        // stops the Python service first; its `BloomFilter(...)` on an existing path unlinks
        // and recreates, which leaves our mapping of the old file intact.
        let map = unsafe { Mmap::map(&file)? };
        // Guards against the file changing between the length check and the mapping.
        if map.len() as u64 != header.file_len() {
            return Err(OpenError::Format(FormatError::Original(format!(
                "file changed while being opened: {} bytes, its header describes {}",
                map.len(),
                header.file_len()
            ))));
        }
        let set: u64 = map[PREAMBLE_LEN..]
            .iter()
            .map(|b| u64::from(b.count_ones()))
            .sum();
        Ok(OriginalFilter {
            path: path.to_path_buf(),
            set_fraction: set as f64 / header.bits as f64,
            header,
            map,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &OriginalHeader {
        &self.header
    }

    /// Whether `key` (the UTF-8 bytes of the Python tool's identity string) is in the filter:
    /// the same answer as the library's `key in filter`, false positives included.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        let bits = &self.map[PREAMBLE_LEN..];
        self.header.seeds.iter().all(|&seed| {
            let (a, b) = murmur3::x64_128(key, seed);
            let i = (a ^ b) % self.header.bits;
            // i < bits <= MAX_BITS, so it fits usize on the 64-bit targets we build for.
            bits.get((i / 8) as usize)
                .is_some_and(|byte| byte & (1 << (i % 8)) != 0)
        })
    }

    /// Identities in the file, estimated from the bits set (the file's own count is always 0).
    pub fn estimated_inserted(&self) -> u64 {
        let m = self.header.bits as f64;
        let k = self.header.seeds.len() as f64;
        if self.set_fraction >= 1.0 {
            return self.header.capacity;
        }
        (-(m / k) * (1.0 - self.set_fraction).ln()).round() as u64
    }

    /// The chance that a key never added is reported present: each of the `k` bits it probes
    /// is set with the fraction of bits set.
    pub fn estimated_fp(&self) -> f64 {
        self.set_fraction.powi(self.header.seeds.len() as i32)
    }
}

/// The Python tool's files in use, oldest first, each until its age limit.
#[derive(Default)]
pub(crate) struct Originals {
    files: Vec<InUse>,
}

struct InUse {
    timestamp: u64,
    /// Unix second from which the file is too old: its name's timestamp plus
    /// `batch_count × batch_duration_sec`, the age at which our own files are gone.
    until: u64,
    filter: OriginalFilter,
}

impl Originals {
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }

    /// When the last of them stops being used.
    pub(crate) fn until(&self) -> Option<u64> {
        self.files.iter().map(|f| f.until).max()
    }

    pub(crate) fn push(&mut self, timestamp: u64, until: u64, filter: OriginalFilter) {
        self.files.push(InUse {
            timestamp,
            until,
            filter,
        });
        self.files.sort_by_key(|f| f.timestamp);
    }

    /// Whether any file holds the Python tool's identity of (`name`, `count`); `key` is a
    /// scratch buffer.
    pub(crate) fn contains(&self, name: &str, count: Option<&str>, key: &mut Vec<u8>) -> bool {
        original_key(name, count, key) && self.files.iter().any(|f| f.filter.contains_key(key))
    }

    /// Stops using, and deletes, the files that are too old at `now` (unix seconds).
    pub(crate) fn expire(&mut self, now: u64) {
        let (old, keep) = std::mem::take(&mut self.files)
            .into_iter()
            .partition(|f| now >= f.until);
        self.files = keep;
        for f in old {
            let path = f.filter.path().to_path_buf();
            // Unmap before unlinking.
            drop(f);
            delete_aged_out(&path);
        }
    }

    pub(crate) fn stats(&self) -> Vec<FileStats> {
        self.files
            .iter()
            .map(|f| {
                let inserted = f.filter.estimated_inserted();
                let capacity = f.filter.header.capacity;
                FileStats {
                    timestamp: f.timestamp,
                    inserted,
                    capacity,
                    fill_limit: capacity,
                    fill: inserted as f64 / capacity as f64,
                    estimated_fp: f.filter.estimated_fp(),
                    bytes: 0,
                }
            })
            .collect()
    }

    pub(crate) fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.filter.path())
    }
}

/// Deletes one of the Python tool's files that is past its age: it can hold nothing the API
/// server still has, as with our own files.
pub(crate) fn delete_aged_out(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => tracing::info!(
            file = %path.display(),
            "deleted a filter file of the Python kube-event-pipe: older than batch_count × batch_duration_sec"
        ),
        Err(e) => tracing::warn!(
            file = %path.display(),
            error = %e,
            "cannot delete a filter file of the Python kube-event-pipe that is past its age; no longer using it"
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/original")
            .join(name)
    }

    fn meta(stem: &str) -> serde_json::Value {
        serde_json::from_slice(&fs::read(fixture(&format!("{stem}.json"))).unwrap()).unwrap()
    }

    #[test]
    fn the_header_of_a_file_pybloomfiltermmap3_wrote_is_read_as_it_was_made() {
        for stem in ["keys", "events-1000"] {
            let m = meta(stem);
            let f = OriginalFilter::open(&fixture(&format!("{stem}.bloom"))).unwrap();
            let h = f.header();
            assert_eq!(h.capacity, m["capacity"].as_u64().unwrap());
            assert_eq!(h.error_rate, m["error_rate"].as_f64().unwrap());
            assert_eq!(h.bits, m["num_bits"].as_u64().unwrap());
            let seeds: Vec<u32> = m["hash_seeds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(h.seeds, seeds);
            assert_eq!(m["num_hashes"].as_u64().unwrap(), seeds.len() as u64);
        }
    }

    /// Every added key, every absent one, and the library's false positives among them.
    #[test]
    fn every_probe_gets_the_libraries_answer() {
        let m = meta("keys");
        let f = OriginalFilter::open(&fixture("keys.bloom")).unwrap();
        let probes = m["probes"].as_array().unwrap();
        let mut false_positives = 0;
        for (i, p) in probes.iter().enumerate() {
            let key = p[0].as_str().unwrap();
            let want = p[1].as_bool().unwrap();
            assert_eq!(f.contains_key(key.as_bytes()), want, "{key:?}");
            if want && i >= 120 {
                false_positives += 1;
            }
        }
        assert!(probes.len() > 1200);
        // The fixture has some, so agreeing on them is tested too.
        assert!(false_positives > 0);
    }

    #[test]
    fn non_ascii_names_and_absent_counts_are_found_by_event_fields() {
        let f = OriginalFilter::open(&fixture("keys.bloom")).unwrap();
        let mut key = Vec::new();
        for (name, count) in [
            ("événement.17a0000000000001", None),
            ("节点-1.17a0000000000002", Some("1")),
            ("pod-\u{1F680}.17a0000000000003", Some("4294967300")),
            ("web-7d4b9c.187a1f2e3c4d5e6f", None),
            ("web-7d4b9c.187a1f2e3c4d5e6f", Some("0")),
            ("web-7d4b9c.187a1f2e3c4d5e6f", Some("-0")),
        ] {
            assert!(original_key(name, count, &mut key));
            assert!(f.contains_key(&key), "{}", String::from_utf8_lossy(&key));
        }
        assert!(original_key("événement.17a0000000000001", None, &mut key));
        assert_eq!(key, "événement.17a0000000000001-None".as_bytes());
    }

    #[test]
    fn each_of_the_thousand_events_is_found() {
        let m = meta("events-1000");
        let f = OriginalFilter::open(&fixture("events-1000.bloom")).unwrap();
        let mut key = Vec::new();
        let events = m["events"].as_array().unwrap();
        assert_eq!(events.len(), 1000);
        for e in events {
            let count = e["count"].as_u64().map(|c| c.to_string());
            assert!(original_key(
                e["name"].as_str().unwrap(),
                count.as_deref(),
                &mut key
            ));
            assert!(f.contains_key(&key), "{}", String::from_utf8_lossy(&key));
        }
        let n = f.estimated_inserted();
        assert!((980..=1020).contains(&n), "{n}");
        assert!(f.estimated_fp() < 1e-5, "{}", f.estimated_fp());
    }

    #[test]
    fn counts_are_rendered_as_python_renders_them() {
        let mut key = Vec::new();
        for (count, want) in [
            (None, Some("n-None")),
            (Some("0"), Some("n-0")),
            (Some("-0"), Some("n-0")),
            (Some("7"), Some("n-7")),
            (Some("-12"), Some("n--12")),
            (
                Some("123456789012345678901234567890"),
                Some("n-123456789012345678901234567890"),
            ),
            (Some("3.0"), None),
            (Some("3.5"), None),
            (Some("1e2"), None),
            (Some("\"3\""), None),
            (Some("true"), None),
            (Some("{}"), None),
            (Some("01"), None),
            (Some("-"), None),
            (Some(""), None),
        ] {
            let ok = original_key("n", count, &mut key);
            match want {
                Some(w) => {
                    assert!(ok, "{count:?}");
                    assert_eq!(String::from_utf8_lossy(&key), w);
                }
                None => assert!(!ok, "{count:?} gave {}", String::from_utf8_lossy(&key)),
            }
        }
    }

    /// `keys.bloom` with `edit` applied, parsed.
    fn damaged(edit: impl Fn(&mut Vec<u8>)) -> Result<OriginalHeader, FormatError> {
        let mut bytes = fs::read(fixture("keys.bloom")).unwrap();
        edit(&mut bytes);
        OriginalHeader::parse(&bytes, bytes.len() as u64)
    }

    #[test]
    fn damaged_files_are_refused_saying_what_is_wrong() {
        type Edit = Box<dyn Fn(&mut Vec<u8>)>;
        let put = |at: usize, v: Vec<u8>| -> Edit {
            Box::new(move |b: &mut Vec<u8>| b[at..at + v.len()].copy_from_slice(&v))
        };
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|b| b.truncate(15)),
                "truncated: file is 15 bytes, its header needs 1280",
            ),
            (
                Box::new(|b| b.truncate(1000)),
                "truncated: file is 1000 bytes, its header needs 1280",
            ),
            (
                Box::new(|b| b.truncate(1500)),
                "truncated: file is 1500 bytes, its header describes 1520",
            ),
            (
                Box::new(|b| b.push(0)),
                "file is 1521 bytes but its header describes 1520",
            ),
            (
                put(17, 1000i32.to_le_bytes().to_vec()),
                "header length 1000",
            ),
            (put(17, (-1i32).to_le_bytes().to_vec()), "header length -1"),
            (put(21 + 1056, vec![2]), "version 2"),
            (put(21, 0u64.to_le_bytes().to_vec()), "capacity is 0"),
            (put(29, 1.5f64.to_le_bytes().to_vec()), "error rate 1.5"),
            (put(29, f64::NAN.to_le_bytes().to_vec()), "error rate NaN"),
            (put(37, 0u32.to_le_bytes().to_vec()), "0 hash functions"),
            (put(37, 257u32.to_le_bytes().to_vec()), "257 hash functions"),
            (
                put(37, 3u32.to_le_bytes().to_vec()),
                "hash seeds past the first 3 are not zero",
            ),
            (put(9, 0u64.to_le_bytes().to_vec()), "bit count 0"),
            (
                put(9, 1921u64.to_le_bytes().to_vec()),
                "its header describes 1521",
            ),
            (
                put(9, (1u64 << 40).to_le_bytes().to_vec()),
                "bit count 1099511627776",
            ),
        ];
        for (edit, want) in cases {
            let err = damaged(edit).unwrap_err();
            assert!(matches!(err, FormatError::Original(_)), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains(want), "want {want:?}, got {msg:?}");
            assert!(
                msg.ends_with(
                    "(a filter file of the Python kube-event-pipe, pybloomfiltermmap3 format)"
                ),
                "{msg}"
            );
        }
        // 1921 bits need 241 bytes: the length rounds up, as the library's does.
        assert!(
            damaged(|b| {
                b[9..17].copy_from_slice(&1921u64.to_le_bytes());
                b.push(0);
            })
            .is_ok()
        );
    }

    #[test]
    fn only_files_with_the_whole_magic_claim_the_format() {
        let dir = tempfile::tempdir().unwrap();
        for (bytes, claims) in [
            (&b"MBITARRAY"[..], true),
            (b"MBITARRAY and more", true),
            (b"MBITARRA", false),
            (b"KEPBLOOM", false),
            (b"", false),
        ] {
            let p = dir.path().join("f");
            fs::write(&p, bytes).unwrap();
            assert_eq!(claims_format(&p).unwrap(), claims, "{bytes:?}");
        }
    }

    mod in_the_store {
        use super::super::super::store::Store;
        use super::super::super::store::tests::{T0, at, config, names, with_logs};
        use super::*;

        /// A state directory holding `keys.bloom` as `<ts>.bloom`.
        fn state_with_original(ts: u64) -> (tempfile::TempDir, PathBuf) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("{ts}.bloom"));
            fs::copy(fixture("keys.bloom"), &path).unwrap();
            (dir, path)
        }

        fn held(store: &Store, name: &str, count: Option<&str>) -> bool {
            store.written_by_original(name, count, &mut Vec::new())
        }

        #[test]
        fn used_beside_our_files_until_it_ages_out_then_deleted() {
            // Three files of ten seconds: the original's file is used for 30 s from its name.
            let (dir, original) = state_with_original(T0);
            let cfg = config(dir.path(), 100, 3, 10);
            let (mut store, logs) = with_logs(|| Store::open(cfg.clone(), at(T0 + 5)).unwrap());
            assert!(store.has_originals());
            assert_eq!(store.original_files(), vec![original.clone()]);
            assert!(store.quarantined().is_empty());
            assert_eq!(
                store.files(),
                vec![dir.path().join(format!("{}.bloom", T0 + 5))]
            );
            assert!(
                logs.contains(
                    "found 1 filter file of the Python kube-event-pipe: events it wrote are not written again; used until 2023-11-14T22:13:50Z, then deleted"
                ),
                "{logs}"
            );
            assert!(held(&store, "événement.17a0000000000001", None));
            assert!(held(&store, "nginx-1.17b0000000000001", Some("1")));
            assert!(!held(&store, "nginx-1.17b0000000000001", Some("2")));
            // Our identities are not looked up there, nor its identities in our files.
            assert!(!store.contains(b"nginx-1.17b0000000000001-1"));

            store.insert(b"a", at(T0 + 29)).unwrap();
            assert!(original.exists() && store.has_originals());
            let (_, logs) = with_logs(|| store.insert(b"b", at(T0 + 30)).unwrap());
            assert!(!original.exists());
            assert!(!store.has_originals());
            assert!(!held(&store, "événement.17a0000000000001", None));
            assert!(
                logs.contains("deleted a filter file of the Python kube-event-pipe: older than batch_count × batch_duration_sec"),
                "{logs}"
            );
            // Nothing else changed: our files and what they hold.
            assert!(store.contains(b"a") && store.contains(b"b"));
            assert!(names(dir.path()).iter().all(|n| !n.contains("corrupt")));
        }

        #[test]
        fn one_past_its_age_at_start_is_deleted_without_being_read() {
            let (dir, original) = state_with_original(T0);
            fs::write(
                dir.path().join(format!("{}.bloom", T0 + 1)),
                b"MBITARRAY cut short",
            )
            .unwrap();
            let (store, logs) =
                with_logs(|| Store::open(config(dir.path(), 100, 3, 10), at(T0 + 31)).unwrap());
            assert!(!original.exists());
            assert!(!store.has_originals());
            assert!(store.quarantined().is_empty(), "{logs}");
            assert!(!logs.contains("found"), "{logs}");
            assert_eq!(names(dir.path()), vec![format!("{}.bloom", T0 + 31)]);
        }

        #[test]
        fn a_damaged_one_is_quarantined_with_the_reason() {
            let (dir, original) = state_with_original(T0);
            let bytes = fs::read(&original).unwrap();
            fs::write(&original, &bytes[..1400]).unwrap();
            let (store, logs) =
                with_logs(|| Store::open(config(dir.path(), 100, 3, 3600), at(T0 + 5)).unwrap());
            assert!(!store.has_originals());
            assert_eq!(store.quarantined().len(), 1);
            assert!(!original.exists());
            assert!(dir.path().join(format!("{T0}.bloom.corrupt")).exists());
            let want = "quarantined bad filter file";
            let line = logs
                .lines()
                .find(|l| l.contains(want))
                .unwrap_or_else(|| panic!("{logs}"));
            assert!(
                line.contains("truncated: file is 1400 bytes, its header describes 1520 (a filter file of the Python kube-event-pipe, pybloomfiltermmap3 format)"),
                "{line}"
            );
        }

        #[test]
        fn they_count_neither_toward_batch_count_nor_as_ours_and_add_to_the_fp_estimate() {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(dir.path(), 100, 2, 10);
            let mut store = Store::open(cfg.clone(), at(T0)).unwrap();
            store.insert(b"x", at(T0 + 10)).unwrap();
            let ours = store.files();
            assert_eq!(ours.len(), 2);
            let before = store.stats();
            drop(store);
            fs::copy(
                fixture("keys.bloom"),
                dir.path().join(format!("{}.bloom", T0 - 5)),
            )
            .unwrap();
            fs::copy(
                fixture("events-1000.bloom"),
                dir.path().join(format!("{}.bloom", T0 - 1)),
            )
            .unwrap();

            let store = Store::open(cfg, at(T0 + 11)).unwrap();
            assert_eq!(store.files(), ours);
            assert_eq!(store.original_files().len(), 2);
            let s = store.stats();
            assert_eq!(s.files, before.files);
            assert_eq!(s.originals.len(), 2);
            let keys = &s.originals[0];
            assert_eq!(
                (keys.timestamp, keys.capacity, keys.fill_limit),
                (T0 - 5, 200, 200)
            );
            assert!((110..=130).contains(&keys.inserted), "{keys:?}");
            // 120 keys in 1920 bits with 6 hashes: about a third of the bits are set.
            assert!((0.0005..0.005).contains(&keys.estimated_fp), "{keys:?}");
            let miss: f64 = s
                .files
                .iter()
                .chain(&s.originals)
                .map(|f| 1.0 - f.estimated_fp)
                .product();
            assert!((s.estimated_fp - (1.0 - miss)).abs() < 1e-15);
            assert!(s.estimated_fp > before.estimated_fp);
            assert!(
                s.to_string()
                    .starts_with("filters 2 + 2 of the Python tool (newest fill"),
                "{s}"
            );
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..1400), len in any::<u64>()) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&tail);
            let _ = OriginalHeader::parse(&bytes, len);
            let _ = OriginalHeader::parse(&bytes, bytes.len() as u64);
        }

        #[test]
        fn parse_never_panics_on_damaged_headers(pos in 0usize..PREAMBLE_LEN, val in any::<u8>(), cut in 0usize..1600) {
            let mut bytes = fs::read(fixture("keys.bloom")).unwrap();
            bytes[pos] = val;
            bytes.truncate(cut);
            let _ = OriginalHeader::parse(&bytes, bytes.len() as u64);
        }
    }
}
