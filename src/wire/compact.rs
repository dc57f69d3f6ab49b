//! Compacting JSON text: the whitespace outside strings goes, every other byte stays.
//!
//! An output line must be one line, and kubectl may have pretty-printed what it recorded, so
//! both the frame writer and the replayed stream need this.

/// Appends `src` with the whitespace outside strings removed.
///
/// Strings, key order and number text are copied byte for byte, so the result parses to the same
/// value; only formatting goes. Used for pretty-printed objects, because an output line must be
/// one line. `src` is expected to be valid JSON; on anything else it still only drops whitespace
/// outside what it takes for strings, never panics.
pub fn compact_json_into(src: &[u8], out: &mut Vec<u8>) {
    out.reserve(src.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut run_start = 0;
    for (i, &b) in src.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.extend_from_slice(&src[run_start..i]);
            run_start = i + 1;
        } else if b == b'"' {
            in_string = true;
        }
    }
    out.extend_from_slice(&src[run_start..]);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings_and_numbers() {
        let mut out = Vec::new();
        compact_json_into(
            b"{\n  \"a b\" : \"x \\\" \\\\\" ,\n\t\"n\": -0 ,\"e\":1.0e3,\r\n \"u\":\"\\u00e9 \xc3\xa9\"\n}\n",
            &mut out,
        );
        assert_eq!(
            out,
            b"{\"a b\":\"x \\\" \\\\\",\"n\":-0,\"e\":1.0e3,\"u\":\"\\u00e9 \xc3\xa9\"}"
        );
    }
}
