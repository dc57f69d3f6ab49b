//! A fast path for identity: one validating scan of an event object that picks out the
//! identity fields, without serde's per-key machinery.
//!
//! serde_json reading identity's visitors was over a third of the initial sync's CPU, mostly
//! per-key work (decoding and UTF-8 checking every key, dispatching each value). This scanner
//! checks the JSON grammar as strictly as serde_json does (string escapes, control characters,
//! number syntax, literals, nesting) while skipping string contents 16 bytes at a time (eight
//! on targets other than x86_64).
//!
//! It only answers for the usual shape. Anything else, such as an escape or a non-ASCII byte in
//! a key or identity string it must read, nesting deeper than 64, or an event that would be an
//! identity error, gives `None`, and the caller then takes the serde parse, which gives the
//! same answer or the precise error. So an answer from here is always the serde parse's answer
//! (fuzzed against it: `fuzz/fuzz_targets/identity.rs`).

use std::borrow::Cow;

use crate::wire::event_view::EventView;

/// Nesting this deep goes to the serde parse (one bit per level records object or array).
const MAX_DEPTH: u32 = 64;

/// Reads the event object at the start of `bytes` (after whitespace); returns its identity
/// fields and the offset just past its closing brace, or `None` (see the module doc).
pub fn scan_event(bytes: &[u8]) -> Option<(EventView<'_>, usize)> {
    let mut s = Scanner { b: bytes, i: 0 };
    s.ws();
    let mut metadata: Option<Meta<'_>> = None;
    let mut count = None;
    let mut deprecated_count = None;
    let mut series_count = None;
    // A repeated key: the last one wins, as in the serde parse.
    s.object(|s, key| {
        match key {
            b"metadata" => metadata = s.metadata()?,
            b"count" => count = s.raw_value()?,
            b"deprecatedCount" => deprecated_count = s.raw_value()?,
            b"series" => series_count = s.series()?,
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    // No metadata or no name: an identity error, reported by the serde parse.
    let meta = metadata?;
    let name = meta.name?;
    Some((
        EventView {
            namespace: meta.namespace.filter(|n| !n.is_empty()).map(Cow::Borrowed),
            name: Cow::Borrowed(name),
            count: count.or(deprecated_count),
            series_count,
            resource_version: meta.resource_version.map(Cow::Borrowed),
        },
        s.i,
    ))
}

struct Meta<'a> {
    name: Option<&'a str>,
    namespace: Option<&'a str>,
    resource_version: Option<&'a str>,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string at the current position (which must be its opening quote). Returns its raw
    /// contents and whether they hold an escape.
    #[inline(always)]
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.eat(b'"')?;
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let mut escaped = false;
        loop {
            let (at, quote) = skip_plain(b, i);
            i = at;
            if quote {
                self.i = i + 1;
                return Some((&b[start..i], escaped));
            }
            match *b.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some((&b[start..i], escaped));
                }
                b'\\' => {
                    escaped = true;
                    match *b.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                        // Any four hex digits, lone surrogates included: serde_json only
                        // pairs surrogates when it decodes a string, which the scan never does.
                        b'u' => {
                            if !b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            i += 6;
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
    }

    /// A key or identity string the caller reads: ASCII without escapes, else `None` (the
    /// serde parse decodes and checks such strings).
    fn plain_str(&mut self) -> Option<&'a str> {
        let (raw, escaped) = self.string()?;
        if escaped || !raw.is_ascii() {
            return None;
        }
        std::str::from_utf8(raw).ok()
    }

    fn plain_key(&mut self) -> Option<&'a [u8]> {
        let (raw, escaped) = self.string()?;
        (!escaped && raw.is_ascii()).then_some(raw)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn number(&mut self) -> Option<()> {
        let b = self.b;
        let mut i = self.i;
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match *b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(i + 1),
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return None;
            }
            i = end;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return None;
            }
            i = end;
        }
        self.i = i;
        Some(())
    }

    /// Skips one value of any kind, checking it; nesting is followed without recursion.
    fn skip_value(&mut self) -> Option<()> {
        // Bit d set: level d is an object.
        let mut objects: u64 = 0;
        let mut depth: u32 = 0;
        loop {
            // A value.
            self.ws();
            match self.peek()? {
                open @ (b'{' | b'[') => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    self.i += 1;
                    let is_object = open == b'{';
                    objects = (objects & !(1 << depth)) | (u64::from(is_object) << depth);
                    depth += 1;
                    self.ws();
                    let close = if is_object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.i += 1;
                        depth -= 1;
                    } else {
                        if is_object {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // After a value: close containers until one continues with `,`.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let is_object = objects & (1 << (depth - 1)) != 0;
                self.ws();
                match (self.next()?, is_object) {
                    (b',', true) => {
                        self.ws();
                        self.member_key()?;
                        break;
                    }
                    (b',', false) => break,
                    (b'}', true) | (b']', false) => depth -= 1,
                    _ => return None,
                }
            }
        }
    }

    /// `"key":` inside a skipped object.
    fn member_key(&mut self) -> Option<()> {
        self.string()?;
        self.ws();
        self.eat(b':')
    }

    /// A value whose raw text is kept (`count`, `series.count`); `null` is none.
    fn raw_value(&mut self) -> Option<Option<&'a str>> {
        let start = self.i;
        self.skip_value()?;
        let raw = &self.b[start..self.i];
        if raw == b"null" {
            return Some(None);
        }
        std::str::from_utf8(raw).ok().map(Some)
    }

    /// `metadata`: `null` is none; an object gives its fields; anything else is an identity
    /// error (left to the serde parse).
    fn metadata(&mut self) -> Option<Option<Meta<'a>>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        let mut m = Meta {
            name: None,
            namespace: None,
            resource_version: None,
        };
        self.object(|s, key| {
            match key {
                b"name" => m.name = s.str_or_null()?,
                b"namespace" => m.namespace = s.str_or_null()?,
                // Only informational: anything but a string is none, as in the serde parse.
                b"resourceVersion" => {
                    m.resource_version = match s.peek()? {
                        b'"' => Some(s.plain_str()?),
                        // The serde parse reads an object's keys here as strings (checking
                        // their UTF-8): left to it.
                        b'{' => return None,
                        _ => {
                            s.skip_value()?;
                            None
                        }
                    }
                }
                _ => s.skip_value()?,
            }
            Some(())
        })?;
        Some(Some(m))
    }

    /// A string or `null`; anything else is an identity error (left to the serde parse).
    fn str_or_null(&mut self) -> Option<Option<&'a str>> {
        match self.peek()? {
            b'"' => self.plain_str().map(Some),
            b'n' => self.literal(b"null").map(|()| None),
            _ => None,
        }
    }

    /// `series`: the raw text of its `count` when it is an object; none for anything else.
    fn series(&mut self) -> Option<Option<&'a str>> {
        match self.peek()? {
            b'{' => {}
            // The serde parse decodes a string here, so its escapes and UTF-8 must be good.
            b'"' => {
                let (raw, escaped) = self.string()?;
                return (!escaped && std::str::from_utf8(raw).is_ok()).then_some(None);
            }
            _ => {
                self.skip_value()?;
                return Some(None);
            }
        }
        let mut count = None;
        self.object(|s, key| {
            if key == b"count" {
                count = s.raw_value()?;
            } else {
                s.skip_value()?;
            }
            Some(())
        })?;
        Some(count)
    }

    /// An object whose keys are read (ASCII without escapes, else `None`): `on_member` is
    /// called with each key, at its value, and must consume the value.
    fn object(
        &mut self,
        mut on_member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            let key = self.plain_key()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            on_member(self, key)?;
            self.ws();
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The index of the first quote, backslash or control character at or after `i`, or of the
/// first byte of a tail shorter than eight bytes (which the caller reads one by one); and
/// `true` if that byte is known to be a quote (`false` leaves it to the caller to look).
#[inline]
fn skip_plain(b: &[u8], mut i: usize) -> (usize, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        // Sixteen bytes at a time: most keys and short values end within the first block.
        while let Some(block) = b.get(i..i + 16) {
            // SAFETY: SSE2 is part of the x86_64 baseline, and the unaligned load reads the
            // sixteen bytes of `block`, which are in bounds.
            let (mask, quotes) = unsafe {
                let x = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
                let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
                // x <= 0x1f, unsigned: the larger of x and 0x1f is 0x1f.
                let bound = _mm_set1_epi8(0x1f);
                let control = _mm_cmpeq_epi8(_mm_max_epu8(x, bound), bound);
                let special = _mm_or_si128(_mm_or_si128(quote, backslash), control);
                (_mm_movemask_epi8(special), _mm_movemask_epi8(quote))
            };
            if mask != 0 {
                let first = mask.trailing_zeros();
                return (i + first as usize, quotes & (1 << first) != 0);
            }
            i += 16;
        }
    }
    while let Some(word) = b.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
        let special = special_bytes(u64::from_le_bytes(word));
        if special != 0 {
            return (i + (special.trailing_zeros() / 8) as usize, false);
        }
        i += 8;
    }
    (i, false)
}

/// The high bit of each byte of `word` (little-endian) that is a quote, a backslash or a
/// control character. Bytes above the lowest flagged one may be flagged wrongly (a borrow runs
/// on), so only the lowest is used; for it the test is exact.
#[inline]
fn special_bytes(word: u64) -> u64 {
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    quote | backslash | control
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::wire::event_serde::parse_event_serde;
    use crate::wire::frame::tests::fixture;

    /// The scan answers, and its answer is the serde parse's.
    fn agrees(obj: &[u8]) {
        let text = String::from_utf8_lossy(obj);
        let (view, end) = scan_event(obj).unwrap_or_else(|| panic!("no answer for {text}"));
        assert_eq!(end, obj.len(), "{text}");
        assert_eq!(view, parse_event_serde(obj).unwrap(), "{text}");
    }

    /// The scan leaves it to the serde parse.
    fn declines(obj: &[u8]) {
        assert!(
            scan_event(obj).is_none(),
            "answered for {}",
            String::from_utf8_lossy(obj)
        );
    }

    /// Where a string's closing quote, escape or control character falls relative to the
    /// 16- and 8-byte blocks of the search must not matter, nor where the string ends in the
    /// input (the last bytes are read one by one). Identity strings are read, the message is
    /// skipped; both go through the same search.
    #[test]
    fn every_offset_of_a_string_end_escape_or_control_character_is_handled() {
        for n in 0..40 {
            let pad = "a".repeat(n);
            agrees(format!(r#"{{"metadata":{{"name":"{pad}"}}}}"#).as_bytes());
            agrees(format!(r#"{{"metadata":{{"name":"x"}},"message":"{pad}"}}"#).as_bytes());
            agrees(format!(r#"{{"metadata":{{"name":"x"}},"message":"{pad}\n{pad}"}}"#).as_bytes());
            agrees(format!(r#"{{"metadata":{{"name":"x"}},"message":"{pad}\u00e9"}}"#).as_bytes());
            agrees(
                format!("{{\"metadata\":{{\"name\":\"x\"}},\"message\":\"{pad}é{pad}\"}}")
                    .as_bytes(),
            );
            declines(
                format!("{{\"metadata\":{{\"name\":\"x\"}},\"message\":\"{pad}\u{1}\"}}")
                    .as_bytes(),
            );
            declines(
                format!("{{\"metadata\":{{\"name\":\"x\"}},\"message\":\"{pad}\n\"}}").as_bytes(),
            );
            declines(format!(r#"{{"metadata":{{"name":"x"}},"message":"{pad}\x"}}"#).as_bytes());
            // Unterminated at the end of the input, at every length.
            declines(format!(r#"{{"metadata":{{"name":"x"}},"message":"{pad}"#).as_bytes());
            // An escape in an identity string goes to serde, which decodes it.
            declines(format!(r#"{{"metadata":{{"name":"{pad}\"x"}}}}"#).as_bytes());
        }
    }

    #[test]
    fn answers_like_serde_for_real_events() {
        for name in [
            "raw-list-page1.json",
            "raw-list-page2.json",
            "raw-list-events-v1.json",
        ] {
            let body = fixture(name);
            let page = crate::wire::frame::parse_list(&body).unwrap();
            assert!(!page.items.is_empty());
            for item in page.items {
                agrees(item);
            }
        }
        let watch = fixture("raw-watch.jsonl");
        for line in watch.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            agrees(crate::wire::frame::parse_watch_frame(line).unwrap().object);
        }
    }

    #[test]
    fn answers_like_serde_for_odd_but_identifiable_events() {
        let deep = format!("{}{}", "[".repeat(60), "]".repeat(60));
        for obj in [
            r#"{"metadata":{"name":"a"}}"#.to_string(),
            r#" { "metadata" : { "name" : "a" , "namespace" : "" } , "count" : 3 } "#.trim().to_string(),
            r#"{"metadata":{"name":"a","namespace":null,"resourceVersion":7}}"#.into(),
            r#"{"metadata":{"name":"a","resourceVersion":"12"},"count":null,"deprecatedCount":4}"#.into(),
            r#"{"count":1,"metadata":{"name":"a"},"count":2}"#.into(),
            r#"{"metadata":{"name":"x"},"metadata":{"name":"a","labels":{"k":"v"}}}"#.into(),
            r#"{"metadata":{"name":"a"},"series":{"count":5,"lastObservedTime":"t"}}"#.into(),
            r#"{"metadata":{"name":"a"},"series":{"count":5},"series":"odd"}"#.into(),
            r#"{"metadata":{"name":"a"},"series":[1,2],"count":"3"}"#.into(),
            "{\"metadata\":{\"name\":\"a\"},\"series\":\"caf\u{e9}\"}".into(),
            r#"{"metadata":{"name":"a"},"count":-1.5e+10}"#.into(),
            format!(r#"{{"metadata":{{"name":"a"}},"count":{deep}}}"#),
            r#"{"metadata":{"name":"a"},"message":"caf\u00e9 \ud800 \"q\" \\ \/ \b\f\n\r\t","x":[true,false,null,{},[],0,-0,1e5]}"#.into(),
            "{\"metadata\":{\"name\":\"a\"},\"message\":\"caf\u{e9} \u{1f600}\"}".into(),
            format!(r#"{{"metadata":{{"name":"a"}},"message":"{}"}}"#, "long text ".repeat(50)),
            format!(r#"{{"metadata":{{"name":"a"}},"message":"{}\"{}\u0041{}"}}"#, "x".repeat(40), "y".repeat(17), "z".repeat(33)),
        ] {
            agrees(obj.as_bytes());
        }
    }

    #[test]
    fn leaves_errors_and_unusual_shapes_to_serde() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        for obj in [
            // Identity errors.
            r#"{}"#.to_string(),
            r#"{"count":1}"#.into(),
            r#"{"metadata":null}"#.into(),
            r#"{"metadata":"x"}"#.into(),
            r#"{"metadata":{}}"#.into(),
            r#"{"metadata":{"name":7}}"#.into(),
            r#"{"metadata":{"name":"a","namespace":[]}}"#.into(),
            r#"[1]"#.into(),
            // Strings the serde parse decodes.
            r#"{"metadata":{"name":"\u0061"}}"#.into(),
            r#"{"metad\u0061ta":{"name":"a"}}"#.into(),
            "{\"metadata\":{\"name\":\"caf\u{e9}\"}}".into(),
            // A string the serde parse decodes in place of `series`: bad UTF-8, an escape.
            r#"{"metadata":{"name":"a"},"series":"\u0041"}"#.into(),
            // Too deep for the scan.
            format!(r#"{{"metadata":{{"name":"a"}},"x":{deep}}}"#),
            // Broken JSON.
            r#"{"metadata":{"name":"a"}"#.into(),
            r#"{"metadata":{"name":"a"},}"#.into(),
            r#"{"metadata":{"name":"a"},"x":01}"#.into(),
            r#"{"metadata":{"name":"a"},"x":1.}"#.into(),
            r#"{"metadata":{"name":"a"},"x":1e}"#.into(),
            r#"{"metadata":{"name":"a"},"x":-}"#.into(),
            r#"{"metadata":{"name":"a"},"x":tru}"#.into(),
            r#"{"metadata":{"name":"a"},"x":"\x"}"#.into(),
            r#"{"metadata":{"name":"a"},"x":"\u12g4"}"#.into(),
            "{\"metadata\":{\"name\":\"a\"},\"x\":\"tab\there\"}".into(),
            r#"{"metadata":{"name":"a"},"x":[1,]}"#.into(),
            r#"{"metadata":{"name":"a"},"x":{"k" 1}}"#.into(),
            r#"{"metadata":{"name":"a"},"x":{1:2}}"#.into(),
            r#"{"metadata":{"name":"a"},"x":[}"#.into(),
            r#"{"metadata":{"name":"a"},"x":"unterminated}"#.into(),
            format!(
                r#"{{"metadata":{{"name":"a"}},"x":"{}"}}"#,
                "long unterminated ".repeat(5)
            )
            .trim_end_matches(['"', '}'])
            .to_string(),
            format!(
                "{{\"metadata\":{{\"name\":\"a\"}},\"x\":\"{}\u{1}{}\"}}",
                "x".repeat(40),
                "y".repeat(40)
            ),
        ] {
            declines(obj.as_bytes());
        }
        // Found by fuzzing: serde checks the UTF-8 of a string given as `series`.
        declines(b"{\"metadata\":{\"name\":\"a\"},\"series\":\"x\xfe\xff\"}");
        // And the keys of an object given as resourceVersion.
        declines(b"{\"metadata\":{\"name\":\"a\",\"resourceVersion\":{\"\xfe\":1}}}");
        // Elsewhere in skipped strings, UTF-8 is the caller's check, as with serde.
        let skipped = b"{\"metadata\":{\"name\":\"a\"},\"message\":\"x\xfe\xff\"}";
        assert!(scan_event(skipped).is_some() && parse_event_serde(skipped).is_ok());
    }

    #[test]
    fn the_word_test_finds_the_first_special_byte() {
        for at in 0..8 {
            for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                for filler in [b'a', b' ', 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
                    let mut w = [filler; 8];
                    w[at] = special;
                    // Another special byte later must not move the answer.
                    if at < 7 {
                        w[7] = b'"';
                    }
                    let found = special_bytes(u64::from_le_bytes(w));
                    assert_eq!(found.trailing_zeros() / 8, at as u32, "{w:?}");
                }
            }
        }
        for filler in 0x20..=0xffu8 {
            if filler != b'"' && filler != b'\\' {
                assert_eq!(
                    special_bytes(u64::from_le_bytes([filler; 8])),
                    0,
                    "{filler:#x}"
                );
            }
        }
    }

    #[test]
    fn the_end_is_found_before_whatever_follows() {
        let obj = r#"{"metadata":{"name":"a"},"x":"}"}"#;
        for tail in ["", ",{\"next\":1}", "]", "   "] {
            let text = format!("{obj}{tail}");
            let (_, end) = scan_event(text.as_bytes()).unwrap();
            assert_eq!(end, obj.len());
        }
    }
}
