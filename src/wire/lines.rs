//! Whole lines of a chunked watch body. A watch frame is one line; chunks may cut a line
//! anywhere. Lines are read from the chunk itself, and only a line cut between two chunks is
//! copied (into the partial line kept here), so a fast stream is split without copying.

#[derive(Debug, Default)]
pub struct LineBuf {
    partial: Vec<u8>,
}

/// The lines of one chunk, read in order with [`Lines::next_line`].
pub struct Lines<'a> {
    data: &'a [u8],
    consumed: usize,
    buffered: bool,
}

/// Where the reading of a chunk stopped, for [`LineBuf::finish`].
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    consumed: usize,
    buffered: bool,
}

impl LineBuf {
    pub fn new() -> LineBuf {
        LineBuf {
            partial: Vec::with_capacity(64 * 1024),
        }
    }

    /// The bytes of a line waiting for the next chunk.
    pub fn partial_len(&self) -> usize {
        self.partial.len()
    }

    /// The lines of `chunk`, the first one completing the partial line if there is one.
    pub fn start<'a>(&'a mut self, chunk: &'a [u8]) -> Lines<'a> {
        let buffered = !self.partial.is_empty();
        if buffered {
            self.partial.extend_from_slice(chunk);
        }
        Lines {
            data: if buffered { &self.partial } else { chunk },
            consumed: 0,
            buffered,
        }
    }

    /// Keeps what follows the last line read from `chunk` for the next chunk.
    pub fn finish(&mut self, chunk: &[u8], stop: Stop) {
        if stop.buffered {
            self.partial.drain(..stop.consumed);
        } else {
            self.partial.extend_from_slice(&chunk[stop.consumed..]);
        }
    }
}

impl<'a> Lines<'a> {
    /// The next whole line, without its `\n`.
    pub fn next_line(&mut self) -> Option<&'a [u8]> {
        let nl = memchr::memchr(b'\n', &self.data[self.consumed..])?;
        let line = &self.data[self.consumed..self.consumed + nl];
        self.consumed += nl + 1;
        Some(line)
    }

    /// What follows the last line read.
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.consumed..]
    }

    pub fn stop(&self) -> Stop {
        Stop {
            consumed: self.consumed,
            buffered: self.buffered,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Every split of a body into two chunks gives the same lines and the same rest.
    #[test]
    fn lines_cut_anywhere_come_out_whole() {
        let body = b"{\"a\":1}\n{\"b\":22}\n\n{\"c\":333}\n{\"d\"";
        for cut in 0..=body.len() {
            let mut buf = LineBuf::new();
            let mut got: Vec<Vec<u8>> = Vec::new();
            for chunk in [&body[..cut], &body[cut..]] {
                let mut lines = buf.start(chunk);
                while let Some(l) = lines.next_line() {
                    got.push(l.to_vec());
                }
                let stop = lines.stop();
                buf.finish(chunk, stop);
            }
            let want: Vec<&[u8]> = vec![b"{\"a\":1}", b"{\"b\":22}", b"", b"{\"c\":333}"];
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(buf.partial, b"{\"d\"", "cut at {cut}");
            assert_eq!(buf.partial_len(), 4);
        }
    }

    #[test]
    fn rest_is_what_follows_the_last_line_read() {
        let mut buf = LineBuf::new();
        let chunk = b"one\ntwo\nthr";
        let mut lines = buf.start(chunk);
        assert_eq!(lines.next_line(), Some(&b"one"[..]));
        assert_eq!(lines.rest(), b"two\nthr");
    }
}
