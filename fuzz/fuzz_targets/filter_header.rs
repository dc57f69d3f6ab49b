//! The filter file header parser, `Header::parse(bytes, file_len)`.
//!
//! Input: the start of a filter file. Checked:
//! - never panics, for the input's own length and for a file length taken from the input;
//! - only the first `HEADER_LEN` bytes are looked at;
//! - whatever parses passes `check_params`, describes exactly `file_len` bytes, and `encode()`
//!   gives the same bytes back (reserved fields aside) which parse to the same header;
//! - with the checksum made right (it is the only thing a mutator cannot guess), the same holds,
//!   so the fuzzer reaches the parameter checks behind it;
//! - a header built from arbitrary fields parses back to itself exactly when its parameters
//!   pass `check_params`.
#![no_main]

use kube_event_pipe::dedup::{FormatError, HEADER_LEN, Header};
use libfuzzer_sys::fuzz_target;

const CHECKSUM_AT: usize = 88;
/// Bytes `encode` writes as zero or as constants the parser only range-checks.
// 104..128 holds what the last list showed: not checksummed, and not part of `Header`.
const RESERVED: [std::ops::Range<usize>; 2] = [36..40, 104..128];

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let _ = check(data, len);
    // The file may be longer than what was read; a length from the input's last 8 bytes.
    if let Some(tail) = data.last_chunk::<8>() {
        let _ = check(data, u64::from_le_bytes(*tail));
    }

    // Reseal the checksum and try again.
    if data.len() >= HEADER_LEN {
        let mut fixed = data.to_vec();
        if let Err(FormatError::BadChecksum { computed, .. }) = Header::parse(&fixed, len) {
            fixed[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&computed.to_le_bytes());
            let again = check(&fixed, len);
            assert!(
                !matches!(again, Err(FormatError::BadChecksum { .. })),
                "a resealed header still fails its checksum"
            );
            // The parameters decide now: a file as long as the header says must load.
            if let Err(FormatError::LengthMismatch { expected, .. })
            | Err(FormatError::Truncated { expected, .. }) = again
                && expected >= HEADER_LEN as u64
            {
                let h = check(&fixed, expected).expect("right length, still refused");
                assert_eq!(h.file_len(), expected);
            }
        }
    }

    // A header built from fields.
    if let Some(h) = from_fields(data) {
        let bytes = h.encode();
        match h.check_params() {
            Ok(()) => {
                let back = Header::parse(&bytes, h.file_len()).expect("valid header refused");
                assert_eq!(back.encode(), bytes);
                assert_eq!(back.error_rate.to_bits(), h.error_rate.to_bits());
                assert_eq!(back, h);
            }
            Err(e) => {
                let got = Header::parse(&bytes, h.file_len()).expect_err("bad params accepted");
                assert_eq!(got, e);
            }
        }
    }
});

fn check(data: &[u8], file_len: u64) -> Result<Header, FormatError> {
    let parsed = Header::parse(data, file_len);
    let _ = parsed.as_ref().map_err(ToString::to_string);
    let head = &data[..data.len().min(HEADER_LEN)];
    assert_eq!(
        Header::parse(head, file_len),
        parsed,
        "bytes past the header changed the result"
    );
    if let Ok(h) = &parsed {
        h.check_params().expect("parsed header fails check_params");
        assert_eq!(
            h.file_len(),
            file_len,
            "parsed header describes another length"
        );
        let enc = h.encode();
        let mut masked = head.to_vec();
        let mut enc_masked = enc;
        // The checksum covers the first reserved field too; encode() writes it as zero.
        let reserved_zero = head[RESERVED[0].clone()].iter().all(|&b| b == 0);
        for r in RESERVED {
            masked[r.clone()].fill(0);
            enc_masked[r].fill(0);
        }
        if !reserved_zero {
            masked[CHECKSUM_AT..CHECKSUM_AT + 8].fill(0);
            enc_masked[CHECKSUM_AT..CHECKSUM_AT + 8].fill(0);
        }
        assert_eq!(
            &enc_masked[..],
            &masked[..],
            "encode() differs from the parsed bytes"
        );
        let back = Header::parse(&enc, file_len).expect("encoded header refused");
        assert_eq!(&back, h);
    }
    parsed
}

fn from_fields(data: &[u8]) -> Option<Header> {
    let mut r = data;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = r.split_at_checked(n)?;
        r = b;
        Some(a)
    };
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let capacity = u64_at(take(8)?);
    let error_rate = f64::from_bits(u64_at(take(8)?));
    let hashes = u32::from_le_bytes(take(4)?.try_into().ok()?);
    let bits = u64_at(take(8)?);
    let seed: [u8; 32] = take(32)?.try_into().ok()?;
    let created = u64_at(take(8)?);
    let inserted = u64_at(take(8)?);
    // Versions 0 to 3: the two readable ones and one refused on each side.
    let version = u32::from(take(1)?[0] % 4);
    Some(Header {
        version,
        capacity,
        error_rate,
        hashes,
        bits,
        seed,
        created,
        inserted,
    })
}
