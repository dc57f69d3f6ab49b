//! Arbitrary bytes as a filter file, opened through the dedup store.
//!
//! Input: the whole content of `<ts>.bloom`, in our format or in the Python kube-event-pipe's
//! (pybloomfiltermmap3, magic `MBITARRAY`). When the last header byte of ours (reserved,
//! outside the checksum) is zero, the header checksum is made right first, so the fuzzer gets
//! past it to the parameters and the bits; otherwise the bytes are used as they are. Checked:
//! - `Store::open` succeeds and the file is exactly one of: loaded as ours, used as the Python
//!   tool's (only when it starts with its magic), quarantined (moved aside); never a panic;
//! - a file used as the Python tool's opens alike through `OriginalFilter::open`, answers
//!   lookups the same way through the store and directly, and has an estimated false-positive
//!   rate in [0, 1];
//! - what was inserted is then found (no false negatives), also after a flush and a reopen;
//! - a file the store loaded once is loaded again on the next start, not quarantined.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use kube_event_pipe::dedup::{
    FormatError, HEADER_LEN, Header, OriginalFilter, Store, StoreConfig, original_key,
};
use libfuzzer_sys::fuzz_target;

const TS: u64 = 1_700_000_000;

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // KEP_FUZZ_DIR (run-ci.sh sets it, to remove it afterwards), else tmpfs when there is
        // one: the store syncs files and directories, which is cheap there.
        let d = match std::env::var_os("KEP_FUZZ_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                let shm = Path::new("/dev/shm");
                let base = if shm.is_dir() {
                    shm.to_path_buf()
                } else {
                    std::env::temp_dir()
                };
                base.join(format!("kep-fuzz-filter-file.{}", std::process::id()))
            }
        };
        std::fs::create_dir_all(&d).expect("create the fuzz directory");
        d
    })
}

fn clear(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("read the fuzz directory") {
        let p = e.expect("dir entry").path();
        std::fs::remove_file(&p).expect("remove a file");
    }
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        capacity: 100,
        error_rate: 0.01,
        batch_count: 3,
        batch_duration: Duration::from_secs(3600),
        max_bytes: 1 << 30,
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read the fuzz directory")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    if bytes.len() >= HEADER_LEN
        && bytes[HEADER_LEN - 1] == 0
        && let Err(FormatError::BadChecksum { computed, .. }) =
            Header::parse(&bytes, bytes.len() as u64)
    {
        bytes[88..96].copy_from_slice(&computed.to_le_bytes());
    }

    let dir = dir();
    clear(dir);
    let name = format!("{TS}.bloom");
    std::fs::write(dir.join(&name), &bytes).expect("write the filter file");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(TS + 10);

    let mut store = Store::open(config(dir), now).expect("store refused to open");
    let loaded = store.stats().files.iter().any(|f| f.timestamp == TS);
    let original = store.original_files() == [dir.join(&name)];
    let quarantined = store.quarantined().len();
    assert!(
        usize::from(loaded) + usize::from(original) + quarantined == 1,
        "loaded={loaded} original={original} quarantined={quarantined}"
    );
    if original {
        assert!(bytes.starts_with(b"MBITARRAY"));
        let direct = OriginalFilter::open(&dir.join(&name)).expect("used, so it opens");
        let stats = &store.stats().originals[0];
        assert!((0.0..=1.0).contains(&stats.estimated_fp), "{stats:?}");
        let name_bytes = data.get(..24).unwrap_or(data);
        let names = ["a", std::str::from_utf8(name_bytes).unwrap_or("é")];
        let mut key = Vec::new();
        for n in names {
            for count in [None, Some("0"), Some("12")] {
                assert!(original_key(n, count, &mut key));
                assert_eq!(
                    store.written_by_original(n, count, &mut Vec::new()),
                    direct.contains_key(&key)
                );
            }
        }
    }
    let names = files(dir);
    if quarantined == 1 {
        let q = &store.quarantined()[0];
        assert!(!q.reason.to_string().is_empty());
        assert!(names.contains(&format!("{name}.corrupt")), "{names:?}");
        assert!(!names.contains(&name), "{names:?}");
    } else {
        assert!(names.contains(&name), "{names:?}");
    }
    let _ = store.stats().to_string();

    let ids: [&[u8]; 3] = [b"", b"a", data.get(..16).unwrap_or(data)];
    for id in ids {
        store.insert(id, now).expect("insert");
        assert!(store.contains(id), "inserted id not found");
    }
    store.flush().expect("flush");
    drop(store);

    let store = Store::open(config(dir), now + Duration::from_secs(1)).expect("reopen");
    assert!(
        store.quarantined().is_empty(),
        "the store quarantined a file it had loaded or written: {:?}",
        store.quarantined()
    );
    for id in ids {
        assert!(store.contains(id), "id lost across a reopen");
    }
});
