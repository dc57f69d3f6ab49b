//! Byte-level text checks on the hot path.

/// `bytes.is_ascii()`, written so that the compiler vectorizes it: an OR over 64-byte blocks.
pub fn is_ascii(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    for block in &mut blocks {
        if block.iter().fold(0u8, |acc, &b| acc | b) >= 0x80 {
            return false;
        }
    }
    blocks.remainder().is_ascii()
}

#[cfg(test)]
mod tests {
    use super::is_ascii;

    #[test]
    fn ascii_check_agrees_with_std() {
        let mut v = vec![b'a'; 300];
        for len in [0, 1, 63, 64, 65, 128, 300] {
            assert!(is_ascii(&v[..len]));
        }
        for at in [0, 63, 64, 200, 299] {
            v[at] = 0xc3;
            assert!(!is_ascii(&v), "{at}");
            v[at] = b'a';
        }
    }
}
