//! Splitting recorded `kubectl get events -A -w --output-watch-events -o json` output into
//! its top-level objects.
//!
//! kubectl writes a stream of JSON values, each compact on one line or pretty-printed over many,
//! separated by any whitespace. [`Splitter`] cuts that stream into top-level objects as bytes
//! arrive, in chunks of any size, by tracking only string/escape state and brace depth; each
//! object is then a watch frame for [`crate::wire::frame::parse_watch_frame`].
//!
//! Recovery: bytes between objects that are not whitespace, a raw line break inside a string
//! (which only a cut-off object can produce) and an object longer than the size limit are each
//! reported once, with their byte offset, and then everything is skipped up to the next line that
//! starts with `{` in its first column. kubectl starts every top-level object there and indents
//! everything nested, so that is where the next intact frame begins.

/// A problem in the replayed byte stream; the splitter carries on after reporting it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error(
        "unexpected byte {byte:#04x} at offset {offset} between JSON objects; \
         skipping to the next line that starts with '{{'"
    )]
    Garbage { offset: u64, byte: u8 },
    #[error(
        "raw line break at offset {offset} inside a string of the object that starts at \
         offset {start}: the object is cut off; skipping to the next line that starts with '{{'"
    )]
    BrokenString { start: u64, offset: u64 },
    #[error(
        "object at offset {start} is longer than {limit} bytes; \
         skipping to the next line that starts with '{{'"
    )]
    TooLarge { start: u64, limit: usize },
    #[error(
        "input ends inside the JSON object that starts at offset {start}: truncated after {len} bytes"
    )]
    Truncated { start: u64, len: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between objects, expecting whitespace or `{`.
    Between,
    /// Inside an object.
    Object {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// After an error: skipping until a `{` in the first column.
    Resync { at_line_start: bool },
}

/// Incremental splitter of a stream of concatenated JSON objects.
///
/// ```
/// # use kube_event_pipe::wire::kubectl_stream::Splitter;
/// let mut s = Splitter::new();
/// s.feed(b"{\"a\":\n  1}  {\"b\"");
/// assert_eq!(s.next_object(), Some(Ok(&b"{\"a\":\n  1}"[..])));
/// assert_eq!(s.next_object(), None); // `{"b"` is incomplete: feed more
/// s.feed(b":2}\n");
/// assert_eq!(s.next_object(), Some(Ok(&b"{\"b\":2}"[..])));
/// assert_eq!(s.finish(), Ok(()));
/// ```
#[derive(Debug)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Bytes of `buf` already handed out or skipped; dropped on the next `feed`.
    consumed: usize,
    /// Bytes of `buf` already scanned.
    pos: usize,
    /// Start of the object being scanned, as an index into `buf`.
    obj_start: usize,
    state: State,
    max_len: usize,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Splitter {
    /// The default object size limit, which keeps memory bounded on a broken stream. One event
    /// is at most about 1.5 MiB (the API server refuses larger objects), but a frame can hold a
    /// whole list chunk ([`crate::wire::list_object`]): 500 events (kubectl's default
    /// `--chunk-size`) of a typical 1.3 KiB are about 1.4 MiB pretty-printed, and a larger
    /// `--chunk-size` or larger events make more.
    pub const DEFAULT_MAX_OBJECT_LEN: usize = 64 << 20;

    pub fn new() -> Self {
        Self::with_max_object_len(Self::DEFAULT_MAX_OBJECT_LEN)
    }

    pub fn with_max_object_len(max_len: usize) -> Self {
        Splitter {
            buf: Vec::new(),
            base: 0,
            consumed: 0,
            pos: 0,
            obj_start: 0,
            state: State::Between,
            max_len,
        }
    }

    /// Adds the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.consumed > 0 {
            // Only the unfinished tail moves; what was handed out is gone.
            self.buf.drain(..self.consumed);
            self.base += self.consumed as u64;
            self.pos -= self.consumed;
            self.obj_start = self.obj_start.saturating_sub(self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Stream offset of the next byte not yet scanned.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The next complete object (exact bytes), an error to report, or `None` when more input is
    /// needed. Call until `None` after every [`feed`](Self::feed).
    pub fn next_object(&mut self) -> Option<Result<&[u8], SplitError>> {
        while self.pos < self.buf.len() {
            let i = self.pos;
            let b = self.buf[i];
            self.pos += 1;
            match &mut self.state {
                State::Between => match b {
                    b' ' | b'\t' | b'\n' | b'\r' => self.consumed = self.pos,
                    b'{' => {
                        self.obj_start = i;
                        self.state = State::Object {
                            depth: 1,
                            in_string: false,
                            escaped: false,
                        };
                    }
                    _ => {
                        self.consumed = self.pos;
                        self.state = State::Resync {
                            at_line_start: b == b'\n',
                        };
                        return Some(Err(SplitError::Garbage {
                            offset: self.base + i as u64,
                            byte: b,
                        }));
                    }
                },
                State::Object {
                    depth,
                    in_string,
                    escaped,
                } => {
                    if *in_string {
                        if *escaped {
                            *escaped = false;
                        } else if b == b'\\' {
                            *escaped = true;
                        } else if b == b'"' {
                            *in_string = false;
                        } else if b == b'\n' || b == b'\r' {
                            let start = self.base + self.obj_start as u64;
                            self.consumed = self.pos;
                            self.state = State::Resync {
                                at_line_start: b == b'\n',
                            };
                            return Some(Err(SplitError::BrokenString {
                                start,
                                offset: self.base + i as u64,
                            }));
                        }
                    } else {
                        match b {
                            b'"' => *in_string = true,
                            b'{' | b'[' => *depth = depth.saturating_add(1),
                            b'}' | b']' => {
                                *depth -= 1;
                                // A closing brace one past the limit is still too large (the
                                // check below); found by fuzz/watch_frames.
                                if *depth == 0 && self.pos - self.obj_start <= self.max_len {
                                    self.state = State::Between;
                                    self.consumed = self.pos;
                                    return Some(Ok(&self.buf[self.obj_start..self.pos]));
                                }
                            }
                            _ => {}
                        }
                    }
                    if self.pos - self.obj_start > self.max_len {
                        let start = self.base + self.obj_start as u64;
                        self.consumed = self.pos;
                        self.state = State::Resync {
                            at_line_start: b == b'\n',
                        };
                        return Some(Err(SplitError::TooLarge {
                            start,
                            limit: self.max_len,
                        }));
                    }
                }
                State::Resync { at_line_start } => {
                    if *at_line_start && b == b'{' {
                        // Rescan this byte as the start of an object.
                        self.pos = i;
                        self.state = State::Between;
                    } else {
                        *at_line_start = b == b'\n';
                        self.consumed = self.pos;
                    }
                }
            }
        }
        None
    }

    /// Declares the end of the stream: an object still open is reported as truncated.
    pub fn finish(&mut self) -> Result<(), SplitError> {
        // Anything still complete must have been taken with `next_object` first.
        match self.state {
            State::Object { .. } => {
                let start = self.base + self.obj_start as u64;
                let len = self.buf.len() - self.obj_start;
                self.consumed = self.buf.len();
                self.state = State::Between;
                Err(SplitError::Truncated { start, len })
            }
            State::Between | State::Resync { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    use crate::wire::compact::compact_json_into;
    use crate::wire::frame::tests::fixture;
    use crate::wire::frame::{self, FrameError, FrameType};

    /// One split-out kubectl frame as the daemon writes it (no trailing `\n`), as the replay
    /// source does through the pipeline.
    fn frame_to_line(frame_bytes: &[u8], out: &mut Vec<u8>) -> Result<FrameType, FrameError> {
        let f = frame::parse_watch_frame(frame_bytes)?;
        frame::write_watch_object(f.object, out);
        Ok(f.frame_type)
    }

    /// Feeds `data` in the given chunk sizes (cycled) and collects objects and errors.
    fn split(data: &[u8], chunks: &[usize]) -> (Vec<Vec<u8>>, Vec<SplitError>) {
        let mut s = Splitter::new();
        let (mut objs, mut errs) = (Vec::new(), Vec::new());
        let mut rest = data;
        let mut k = 0;
        while !rest.is_empty() {
            let n = chunks[k % chunks.len()].clamp(1, rest.len());
            k += 1;
            s.feed(&rest[..n]);
            rest = &rest[n..];
            while let Some(r) = s.next_object() {
                match r {
                    Ok(o) => objs.push(o.to_vec()),
                    Err(e) => errs.push(e),
                }
            }
        }
        if let Err(e) = s.finish() {
            errs.push(e);
        }
        (objs, errs)
    }

    /// kubectl-watch.json with every frame pretty-printed. serde_json's map sorts keys, as
    /// kubectl does, so only the formatting changes.
    fn pretty_version(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            out.extend_from_slice(serde_json::to_string_pretty(&v).unwrap().as_bytes());
            out.push(b'\n');
        }
        out
    }

    fn lines(data: &[u8]) -> Vec<Vec<u8>> {
        data.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn fixture_lines_split_in_any_chunking() {
        let data = fixture("kubectl-watch.json");
        let want = lines(&data);
        assert_eq!(want.len(), 19);
        for chunks in [&[1][..], &[7, 3], &[4096], &[data.len()]] {
            let (objs, errs) = split(&data, chunks);
            assert!(errs.is_empty(), "{errs:?}");
            assert_eq!(objs, want);
        }
    }

    #[test]
    fn pretty_frames_give_the_same_lines_as_compact_ones() {
        let data = fixture("kubectl-watch.json");
        let pretty = pretty_version(&data);
        let (objs, errs) = split(&pretty, &[13]);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(objs.len(), 19);
        for (obj, line) in objs.iter().zip(lines(&data)) {
            let mut a = Vec::new();
            let mut b = Vec::new();
            let ta = frame_to_line(obj, &mut a).unwrap();
            let tb = frame_to_line(&line, &mut b).unwrap();
            assert_eq!(ta, tb);
            assert!(!a.contains(&b'\n'));
            assert_eq!(a, b, "compacted pretty object equals kubectl's compact one");
        }
    }

    #[test]
    fn truncated_input_is_an_error_with_offset() {
        let data = b"{\"a\":1}\n{\"type\":\"ADDED\",\"object\":{\"x\":\"}";
        let (objs, errs) = split(data, &[5]);
        assert_eq!(objs, vec![b"{\"a\":1}".to_vec()]);
        assert_eq!(errs, vec![SplitError::Truncated { start: 8, len: 32 }]);
        assert!(errs[0].to_string().contains("offset 8"));
        assert!(errs[0].to_string().contains("truncated"));
    }

    #[test]
    fn garbage_is_reported_once_then_resynchronised() {
        let data = b"{\"a\":1}\nnot json {\"b\":2}\n  {\"c\":3}\n{\"d\":4} ]\n\n{\"e\":5}";
        let (objs, errs) = split(data, &[3]);
        assert_eq!(
            objs,
            vec![
                b"{\"a\":1}".to_vec(),
                b"{\"d\":4}".to_vec(),
                b"{\"e\":5}".to_vec()
            ]
        );
        assert_eq!(
            errs,
            vec![
                SplitError::Garbage {
                    offset: 8,
                    byte: b'n'
                },
                SplitError::Garbage {
                    offset: 43,
                    byte: b']'
                },
            ]
        );
    }

    #[test]
    fn cut_off_string_resynchronises_at_next_frame() {
        let data =
            b"{\"type\":\"ADDED\",\"object\":{\"m\":\"cut\n{\"type\":\"DELETED\",\"object\":{}}\n";
        let (objs, errs) = split(data, &[2]);
        assert_eq!(objs, vec![b"{\"type\":\"DELETED\",\"object\":{}}".to_vec()]);
        assert_eq!(
            errs,
            vec![SplitError::BrokenString {
                start: 0,
                offset: 34
            }]
        );
    }

    #[test]
    fn oversized_object_is_skipped() {
        let mut s = Splitter::with_max_object_len(10);
        s.feed(b"{\"a\":\"0123456789\"}\n{\"b\":1}\n");
        assert_eq!(
            s.next_object(),
            Some(Err(SplitError::TooLarge {
                start: 0,
                limit: 10
            }))
        );
        assert_eq!(s.next_object(), Some(Ok(&b"{\"b\":1}"[..])));
        assert_eq!(s.next_object(), None);
        assert_eq!(s.finish(), Ok(()));
        assert_eq!(s.offset(), 27);
    }

    #[test]
    fn object_exactly_at_the_limit_passes_one_byte_more_does_not() {
        let mut s = Splitter::with_max_object_len(10);
        s.feed(b"{\"a\":\"12\"}\n{\"a\":\"123\"}\n{}\n");
        assert_eq!(s.next_object(), Some(Ok(&b"{\"a\":\"12\"}"[..])));
        assert_eq!(
            s.next_object(),
            Some(Err(SplitError::TooLarge {
                start: 11,
                limit: 10
            }))
        );
        assert_eq!(s.next_object(), Some(Ok(&b"{}"[..])));
        assert_eq!(s.next_object(), None);
        assert_eq!(s.finish(), Ok(()));
    }

    #[test]
    fn buffer_does_not_grow_with_the_stream() {
        let mut s = Splitter::new();
        for _ in 0..10_000 {
            s.feed(b"{\"type\":\"ADDED\",\"object\":{}}\n");
            while let Some(r) = s.next_object() {
                r.unwrap();
            }
        }
        assert!(s.buf.capacity() < 1024);
    }

    #[test]
    fn shipped_sample_replays_with_visible_dedup() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/samples/kubectl-watch-events.json"
        );
        let data = std::fs::read(path).unwrap();
        let (objs, errs) = split(&data, &[4096]);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(objs.len(), 23);
        let mut seen = std::collections::HashSet::new();
        let (mut written, mut skipped) = (0, 0);
        for o in &objs {
            let mut line = Vec::new();
            frame_to_line(o, &mut line).unwrap();
            assert!(!line.contains(&b'\n'));
            let a: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let f = frame::parse_watch_frame(o).unwrap();
            let b: serde_json::Value = serde_json::from_slice(f.object).unwrap();
            assert_eq!(a, b);
            let mut id = Vec::new();
            crate::wire::identity::identity_into(&line, &mut id).unwrap();
            if seen.insert(id) {
                written += 1;
            } else {
                skipped += 1;
            }
        }
        assert_eq!((written, skipped), (20, 3), "as samples/README.md says");
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::Bool),
                any::<i64>().prop_map(|n| serde_json::json!(n)),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(|n| serde_json::json!(n)),
                // Quotes, backslashes, braces and control characters are what could confuse a
                // byte scanner, so the strings are biased towards them.
                "[ \"\\\\{}\\[\\]\t\n\u{1}aé😀]{0,8}".prop_map(serde_json::Value::String),
            ];
            leaf.prop_recursive(4, 32, 5, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..5)
                        .prop_map(serde_json::Value::Array),
                    proptest::collection::btree_map("[a \"\\\\{}]{0,5}", inner, 0..5)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn compact_round_trips(v in json_value()) {
                let pretty = serde_json::to_string_pretty(&v).unwrap();
                let mut out = Vec::new();
                compact_json_into(pretty.as_bytes(), &mut out);
                // Compared with a parse of the pretty text, not with `v`: without the
                // `float_roundtrip` feature serde_json may read a float back one ulp off.
                let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
                let orig: serde_json::Value = serde_json::from_str(&pretty).unwrap();
                prop_assert_eq!(&back, &orig);
                // No formatting left: the compact form is what serde_json itself writes.
                prop_assert_eq!(out, serde_json::to_vec(&v).unwrap());
            }

            #[test]
            fn fixture_in_random_chunks(
                chunks in proptest::collection::vec(1usize..300, 1..20),
                pretty in any::<bool>(),
            ) {
                let data = fixture("kubectl-watch.json");
                let input = if pretty { pretty_version(&data) } else { data.clone() };
                let (objs, errs) = split(&input, &chunks);
                prop_assert!(errs.is_empty());
                let want = lines(&data);
                prop_assert_eq!(objs.len(), want.len());
                for (o, w) in objs.iter().zip(want) {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    frame_to_line(o, &mut a).unwrap();
                    frame_to_line(&w, &mut b).unwrap();
                    prop_assert_eq!(a, b);
                }
            }

            #[test]
            fn generated_objects_split_back(
                objs in proptest::collection::vec(
                    proptest::collection::btree_map("[a\"{]{0,3}", json_value(), 0..4), 1..6),
                pretty in any::<bool>(),
                chunks in proptest::collection::vec(1usize..50, 1..10),
                sep in "[ \t\r\n]{0,3}",
            ) {
                let texts: Vec<String> = objs
                    .into_iter()
                    .map(|m| {
                        let v = serde_json::Value::Object(m.into_iter().collect());
                        if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }
                            .unwrap()
                    })
                    .collect();
                let input = texts.join(&sep);
                let (got, errs) = split(input.as_bytes(), &chunks);
                prop_assert!(errs.is_empty());
                let want: Vec<Vec<u8>> = texts.into_iter().map(String::into_bytes).collect();
                prop_assert_eq!(got, want);
            }

            #[test]
            fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200),
                                     chunks in proptest::collection::vec(1usize..20, 1..5)) {
                let _ = split(&data, &chunks);
                let mut out = Vec::new();
                compact_json_into(&data, &mut out);
            }
        }
    }
}
