//! On-disk header of a filter file.
//!
//! Layout (little-endian, [`HEADER_LEN`] bytes, then `bits / 8` bytes of bit array):
//!
//! | offset | size | field                                             |
//! |-------:|-----:|---------------------------------------------------|
//! |      0 |    8 | magic `b"KEPBLOOM"`                               |
//! |      8 |    4 | format version (2; 1 is read too)                 |
//! |     12 |    4 | header length (128)                               |
//! |     16 |    8 | capacity (insertions this filter is sized for)    |
//! |     24 |    8 | error rate this filter is sized for (f64)         |
//! |     32 |    4 | number of hash functions                          |
//! |     36 |    4 | reserved, zero                                    |
//! |     40 |    8 | bit count                                         |
//! |     48 |   32 | hash seed                                         |
//! |     80 |    8 | created, unix seconds                             |
//! |     88 |    8 | checksum: SipHash-1-3 (fixed key) of bytes 0..88  |
//! |     96 |    8 | insertion count (not checksummed: changes often)  |
//! |    104 |    8 | last list: when it ended, unix seconds (0: none)  |
//! |    112 |    8 | last list: its oldest event, unix seconds         |
//! |    120 |    8 | last list: events it carried                      |
//!
//! Bytes 104..128 were reserved (zero) until 0.5.0, and still mean "no list recorded" when
//! zero. They are not checksummed and no earlier reader looks at them, so recording a list there
//! needs no new version: files stay readable both ways (an older daemon simply ignores it).
//!
//! The bit array uses the bloomfilter crate's layout (bit `i` is `1 << (i % 8)` of byte `i / 8`).
//! Version 1 also uses that crate's bit positions (`(h0 + i·h1) mod (2^64 - 59) mod m` from two
//! SipHash-1-3 values), so the crate can check its bits in tests; with the 20-odd hash functions
//! of a 1e-6 filter and a small `m` those positions repeat in patterns, and a filter of 200
//! identities measured 2e-5 false positives where 5e-7 were sized. Version 2 passes each
//! `h0 + i·h1` through a 64-bit mixer (SplitMix64's finalizer) and scales the result to the bit
//! count (`x · m >> 64`) rather than taking a remainder: the rate sized is measured, at any
//! size. Nothing else differs; version 1 files are read as they are.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

pub const MAGIC: [u8; 8] = *b"KEPBLOOM";
/// The version new files are written with.
pub const VERSION: u32 = 2;
pub const HEADER_LEN: usize = 128;

const CHECKSUMMED_LEN: usize = 88;
const CHECKSUM_OFFSET: usize = 88;
pub(crate) const INSERTED_OFFSET: usize = 96;
pub(crate) const LISTED_AT_OFFSET: usize = 104;
pub(crate) const LISTED_OLDEST_OFFSET: usize = 112;
pub(crate) const LISTED_COUNT_OFFSET: usize = 120;

/// More hash functions than this only comes from error rates far below anything useful
/// (k = log2(1/p) is 64 at p = 5e-20); a bigger value is corruption.
pub const MAX_HASHES: u32 = 64;
/// 32 GiB of bits per file: far beyond any sane capacity, and keeps `bits / 8` well inside usize.
pub const MAX_BITS: u64 = 1 << 38;

/// Fixed key: the checksum detects damage, it is not a MAC.
const CHECKSUM_KEY: (u64, u64) = (0x6b65_705f_626c_6f6f, 0x6d5f_6865_6164_6572);

/// Parameters of one filter file, as stored in its header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    /// The format version: how bit positions are derived (see the module doc).
    pub version: u32,
    pub capacity: u64,
    pub error_rate: f64,
    pub hashes: u32,
    pub bits: u64,
    pub seed: [u8; 32],
    pub created: u64,
    pub inserted: u64,
}

/// Why a file is not a usable filter. The `Display` text is the reason given in the quarantine
/// warning, so it is written for an operator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("truncated: file is {actual} bytes, its header needs {expected}")]
    Truncated { actual: u64, expected: u64 },
    #[error("wrong magic {found:02x?}: not a kube-event-pipe filter file")]
    BadMagic { found: Vec<u8> },
    #[error("format version {found} is newer than the supported version {supported}")]
    FutureVersion { found: u32, supported: u32 },
    #[error("header checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")]
    BadChecksum { stored: u64, computed: u64 },
    #[error("file is {actual} bytes but its header describes {expected} bytes")]
    LengthMismatch { actual: u64, expected: u64 },
    #[error("impossible parameters: {0}")]
    Impossible(String),
    /// A file that starts like one of the Python kube-event-pipe's (see `original`) but fails
    /// its checks.
    #[error("{0} (a filter file of the Python kube-event-pipe, pybloomfiltermmap3 format)")]
    Original(String),
}

impl Header {
    /// Total file length this header describes.
    pub fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + self.bits / 8
    }

    /// Checks the parameters themselves, independent of any file. Used on parse and before
    /// creating a file, so we never write a file we would refuse to read.
    pub fn check_params(&self) -> Result<(), FormatError> {
        let bad = |msg: String| Err(FormatError::Impossible(msg));
        if self.version > VERSION {
            return Err(FormatError::FutureVersion {
                found: self.version,
                supported: VERSION,
            });
        }
        if self.version == 0 {
            return bad("format version 0".into());
        }
        if self.capacity == 0 {
            return bad("capacity is 0".into());
        }
        if !(self.error_rate > 0.0 && self.error_rate < 1.0) {
            return bad(format!("error rate {} is not in (0, 1)", self.error_rate));
        }
        if self.hashes == 0 {
            return bad("0 hash functions".into());
        }
        if self.hashes > MAX_HASHES {
            return bad(format!(
                "{} hash functions (at most {MAX_HASHES})",
                self.hashes
            ));
        }
        if self.bits == 0 || !self.bits.is_multiple_of(8) || self.bits > MAX_BITS {
            return bad(format!(
                "bit count {} is not a positive multiple of 8 up to {MAX_BITS}",
                self.bits
            ));
        }
        if self.seed[..16] == self.seed[16..] {
            // Equal halves make both base hashes equal, so every probe hits the same bit.
            return bad("hash seed halves are equal".into());
        }
        Ok(())
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.capacity.to_le_bytes());
        b[24..32].copy_from_slice(&self.error_rate.to_le_bytes());
        b[32..36].copy_from_slice(&self.hashes.to_le_bytes());
        b[40..48].copy_from_slice(&self.bits.to_le_bytes());
        b[48..80].copy_from_slice(&self.seed);
        b[80..88].copy_from_slice(&self.created.to_le_bytes());
        let sum = checksum(&b[..CHECKSUMMED_LEN]);
        b[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 8].copy_from_slice(&sum.to_le_bytes());
        b[INSERTED_OFFSET..INSERTED_OFFSET + 8].copy_from_slice(&self.inserted.to_le_bytes());
        b
    }

    /// Parses and validates a header. `bytes` is the start of the file (at most
    /// [`HEADER_LEN`] bytes are looked at), `file_len` the length of the whole file.
    /// Never panics, whatever the bytes.
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<Header, FormatError> {
        let avail = bytes
            .len()
            .min(usize::try_from(file_len).unwrap_or(usize::MAX));
        let bytes = &bytes[..avail];
        if bytes.len() < 12 {
            // A short file that does not even start with the magic is "not ours", not "cut".
            let n = bytes.len().min(MAGIC.len());
            if bytes[..n] != MAGIC[..n] {
                return Err(FormatError::BadMagic {
                    found: bytes[..n].to_vec(),
                });
            }
            return Err(FormatError::Truncated {
                actual: file_len,
                expected: HEADER_LEN as u64,
            });
        }
        if bytes[0..8] != MAGIC {
            return Err(FormatError::BadMagic {
                found: bytes[0..8].to_vec(),
            });
        }
        // Version before anything else: a newer format may lay out the rest differently.
        let version = le_u32(bytes, 8);
        if version > VERSION {
            return Err(FormatError::FutureVersion {
                found: version,
                supported: VERSION,
            });
        }
        if version == 0 {
            return Err(FormatError::Impossible("format version 0".into()));
        }
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                actual: file_len,
                expected: HEADER_LEN as u64,
            });
        }
        let header_len = le_u32(bytes, 12);
        if header_len as usize != HEADER_LEN {
            return Err(FormatError::Impossible(format!(
                "header length {header_len} (versions 1 and 2 use {HEADER_LEN})"
            )));
        }
        let stored = le_u64(bytes, CHECKSUM_OFFSET);
        let computed = checksum(&bytes[..CHECKSUMMED_LEN]);
        if stored != computed {
            return Err(FormatError::BadChecksum { stored, computed });
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[48..80]);
        let header = Header {
            version,
            capacity: le_u64(bytes, 16),
            error_rate: f64::from_le_bytes(le_array(bytes, 24)),
            hashes: le_u32(bytes, 32),
            bits: le_u64(bytes, 40),
            seed,
            created: le_u64(bytes, 80),
            inserted: le_u64(bytes, INSERTED_OFFSET),
        };
        header.check_params()?;
        let expected = header.file_len();
        if file_len < expected {
            return Err(FormatError::Truncated {
                actual: file_len,
                expected,
            });
        }
        if file_len != expected {
            return Err(FormatError::LengthMismatch {
                actual: file_len,
                expected,
            });
        }
        Ok(header)
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_keys(CHECKSUM_KEY.0, CHECKSUM_KEY.1);
    h.write(bytes);
    h.finish()
}

// Callers have checked `bytes.len() >= at + N`; the fallback keeps this panic-free regardless.
fn le_array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(le_array(bytes, at))
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(le_array(bytes, at))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Header {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = i as u8;
        }
        Header {
            version: VERSION,
            capacity: 1000,
            error_rate: 0.01,
            hashes: 7,
            bits: 9592,
            seed,
            created: 1_700_000_000,
            inserted: 12,
        }
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let h = sample();
        let parsed = Header::parse(&h.encode(), h.file_len()).unwrap();
        assert_eq!(parsed, h);
    }

    #[test]
    fn insert_count_is_outside_the_checksum() {
        let h = sample();
        let mut b = h.encode();
        b[INSERTED_OFFSET..INSERTED_OFFSET + 8].copy_from_slice(&999u64.to_le_bytes());
        assert_eq!(Header::parse(&b, h.file_len()).unwrap().inserted, 999);
    }

    #[test]
    fn every_checksummed_byte_is_covered() {
        let h = sample();
        for i in 16..CHECKSUMMED_LEN {
            let mut b = h.encode();
            b[i] ^= 0x01;
            let err = Header::parse(&b, h.file_len()).unwrap_err();
            assert!(
                matches!(err, FormatError::BadChecksum { .. }),
                "byte {i}: {err}"
            );
        }
    }

    #[test]
    fn short_inputs_are_truncated_or_foreign() {
        let h = sample();
        let b = h.encode();
        assert!(matches!(
            Header::parse(&b[..100], 100),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            Header::parse(&b[..5], 5),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            Header::parse(&[], 0),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            Header::parse(b"hello", 5),
            Err(FormatError::BadMagic { .. })
        ));
        // Header fine, bit array cut short.
        assert!(matches!(
            Header::parse(&b, h.file_len() - 1),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            Header::parse(&b, h.file_len() + 8),
            Err(FormatError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn future_version_is_reported_before_checksum() {
        let h = sample();
        let mut b = h.encode();
        b[8..12].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            Header::parse(&b, h.file_len()),
            Err(FormatError::FutureVersion {
                found: 3,
                supported: 2
            })
        );
    }

    #[test]
    fn version_1_files_are_still_read_as_version_1() {
        let h = Header {
            version: 1,
            ..sample()
        };
        let b = h.encode();
        assert_eq!(le_u32(&b, 8), 1);
        assert_eq!(Header::parse(&b, h.file_len()), Ok(h));
    }

    #[test]
    fn impossible_parameters_are_refused_even_with_a_good_checksum() {
        type Edit = Box<dyn Fn(&mut Header)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|h| h.hashes = 0), "0 hash functions"),
            (Box::new(|h| h.hashes = 65), "hash functions"),
            (Box::new(|h| h.capacity = 0), "capacity is 0"),
            (Box::new(|h| h.error_rate = 1.5), "error rate"),
            (Box::new(|h| h.error_rate = f64::NAN), "error rate"),
            (Box::new(|h| h.bits = 9593), "bit count"),
            (Box::new(|h| h.bits = 0), "bit count"),
            (Box::new(|h| h.seed = [7; 32]), "seed"),
        ];
        for (mutate, want) in cases {
            let mut h = sample();
            mutate(&mut h);
            let err = Header::parse(&h.encode(), sample().file_len()).unwrap_err();
            assert!(
                matches!(&err, FormatError::Impossible(r) if r.contains(want)),
                "want {want:?}, got {err}"
            );
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), len in any::<u64>()) {
            let _ = Header::parse(&bytes, len);
        }

        #[test]
        fn parse_never_panics_on_damaged_headers(pos in 0usize..HEADER_LEN, val in any::<u8>(), len_delta in -16i64..16) {
            let h = sample();
            let mut b = h.encode();
            b[pos] = val;
            let len = (h.file_len() as i64 + len_delta) as u64;
            let _ = Header::parse(&b, len);
        }
    }
}
