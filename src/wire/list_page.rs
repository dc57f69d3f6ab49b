//! Reads a list page item by item, in one JSON pass.
//!
//! [`crate::wire::frame::parse_list`] scans every item to capture its bytes, and identity then parses
//! it a second time; together they were 40% of the initial sync's CPU. Here identity's parse of
//! an item is also what finds where the item ends, so each byte of an item is read once. The
//! envelope around the items is read a value at a time with serde_json too: this is a full,
//! strict parse of the page, not a guess at its shape.
//!
//! Items come out as they are read, so a page broken half-way has already handed out the whole
//! items before the break. That loses nothing: the caller retries the list, and the store
//! skips what was written.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::wire::event_view::{EventView, IdentityError, PrefixError};
use crate::wire::frame::RawListMeta;
use crate::wire::identity;
use crate::wire::text::is_ascii;

/// Why a page cannot be read on; `at` is the byte offset where reading stopped.
#[derive(Debug, thiserror::Error)]
#[error("list body is not a valid list JSON object (at byte {at}): {what}")]
pub struct PageError {
    pub at: usize,
    pub what: String,
}

/// The list's own fields.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub resource_version: Option<Cow<'a, str>>,
    /// `None` when absent or empty: the API marks the last page either way.
    pub continue_token: Option<Cow<'a, str>>,
    pub remaining_item_count: Option<i64>,
}

/// One item: its exact bytes, borrowed from the page, and its identity fields, or why it has
/// none (the item is then whole JSON, but not an event that can be identified).
#[derive(Debug)]
pub struct Item<'a> {
    pub index: usize,
    pub bytes: &'a [u8],
    pub view: Result<EventView<'a>, IdentityError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside the list object, before a field name (after `{` or `,`).
    Fields,
    /// Inside `items`, before the first item or the `,` of the next one.
    Items { first: bool },
    /// The list object is closed and nothing but whitespace followed.
    Done,
}

pub struct ListReader<'a> {
    body: &'a [u8],
    pos: usize,
    state: State,
    envelope: Envelope<'a>,
    index: usize,
}

impl<'a> ListReader<'a> {
    /// Reads the page up to its first item (or to its end when it has none).
    pub fn new(body: &'a [u8]) -> Result<ListReader<'a>, PageError> {
        let mut r = ListReader {
            body,
            pos: 0,
            state: State::Fields,
            envelope: Envelope::default(),
            index: 0,
        };
        r.skip_whitespace();
        r.expect(b'{', "'{' opening the list")?;
        r.skip_whitespace();
        if r.peek() == Some(b'}') {
            r.pos += 1;
            r.close()?;
        } else {
            r.read_fields()?;
        }
        Ok(r)
    }

    /// The fields read so far. Before the first `None` from [`ListReader::next_item`] these are
    /// the ones written before `items`, which is all of them from kube-apiserver (it writes
    /// `metadata` first); after it, all of them.
    pub fn envelope(&self) -> &Envelope<'a> {
        &self.envelope
    }

    pub fn into_envelope(self) -> Envelope<'a> {
        self.envelope
    }

    /// The next item, or `None` once the items and the rest of the page have been read.
    pub fn next_item(&mut self) -> Result<Option<Item<'a>>, PageError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Fields => self.read_fields()?,
                State::Items { first } => {
                    self.skip_whitespace();
                    match self.peek() {
                        Some(b']') => {
                            self.pos += 1;
                            self.after_field()?;
                            continue;
                        }
                        Some(b',') if !first => {
                            self.pos += 1;
                            self.skip_whitespace();
                        }
                        _ if first => {}
                        _ => return Err(self.error("expected ',' or ']' after a list item")),
                    }
                    self.state = State::Items { first: false };
                    return self.item().map(Some);
                }
            }
        }
    }

    fn item(&mut self) -> Result<Item<'a>, PageError> {
        let body: &'a [u8] = self.body;
        let rest = &body[self.pos..];
        let (view, len) = match identity::parse_event_prefix(rest) {
            Ok((view, end)) => (Ok(view), end),
            Err(PrefixError {
                error,
                end: Some(end),
            }) => (Err(error), end),
            // Broken inside. A string that cannot be decoded (a lone surrogate escape) costs
            // only its item: skipping the value, which decodes nothing, finds its end.
            Err(PrefixError { error, end: None }) => {
                let mut values =
                    serde_json::Deserializer::from_slice(rest).into_iter::<IgnoredAny>();
                match values.next() {
                    Some(Ok(_)) => (Err(error), values.byte_offset()),
                    Some(Err(e)) => {
                        return Err(self.error(format!("list item {}: {e}", self.index)));
                    }
                    None => return Err(self.error("expected a list item")),
                }
            }
        };
        let bytes = &rest[..len];
        // serde_json does not check the UTF-8 of the strings it skips; the line written must
        // be UTF-8 like everything the API sends. Events are nearly always ASCII, which is
        // checked much faster.
        let view = match view {
            Ok(_) if !is_ascii(bytes) && std::str::from_utf8(bytes).is_err() => {
                Err(IdentityError::NotUtf8)
            }
            v => v,
        };
        let item = Item {
            index: self.index,
            bytes,
            view,
        };
        self.pos += len;
        self.index += 1;
        Ok(item)
    }

    /// Reads fields until `items` opens (state `Items`) or the list closes (state `Done`).
    fn read_fields(&mut self) -> Result<(), PageError> {
        while self.state == State::Fields {
            self.skip_whitespace();
            let key: Cow<'a, str> = self.value("a field name")?;
            self.skip_whitespace();
            self.expect(b':', "':' after a field name")?;
            self.skip_whitespace();
            match &*key {
                "kind" => self.envelope.kind = self.value("kind")?,
                "metadata" => {
                    if let Some(m) = self.value::<Option<RawListMeta<'a>>>("metadata")? {
                        self.envelope.resource_version = m.resource_version;
                        self.envelope.continue_token = m.continue_token.filter(|c| !c.is_empty());
                        self.envelope.remaining_item_count = m.remaining_item_count;
                    }
                }
                "items" if self.peek() == Some(b'[') => {
                    self.pos += 1;
                    self.state = State::Items { first: true };
                    return Ok(());
                }
                // `null` items is what an empty list from some servers looks like.
                "items" => self.value::<()>("items (neither an array nor null)")?,
                _ => {
                    self.value::<IgnoredAny>(&key)?;
                }
            }
            self.after_field()?;
        }
        Ok(())
    }

    /// After a field's value: `,` (state `Fields`) or `}` closing the list.
    fn after_field(&mut self) -> Result<(), PageError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.state = State::Fields;
                Ok(())
            }
            Some(b'}') => {
                self.pos += 1;
                self.close()
            }
            _ => Err(self.error("expected ',' or '}' after a field")),
        }
    }

    fn close(&mut self) -> Result<(), PageError> {
        self.skip_whitespace();
        if self.pos != self.body.len() {
            return Err(self.error("trailing characters after the list"));
        }
        self.state = State::Done;
        Ok(())
    }

    /// One JSON value of type `T` at the current position.
    fn value<T: Deserialize<'a>>(&mut self, what: &str) -> Result<T, PageError> {
        let body: &'a [u8] = self.body;
        let mut values = serde_json::Deserializer::from_slice(&body[self.pos..]).into_iter::<T>();
        match values.next() {
            Some(Ok(v)) => {
                self.pos += values.byte_offset();
                Ok(v)
            }
            Some(Err(e)) => Err(self.error(format!("{what}: {e}"))),
            None => Err(self.error(format!("{what}: the body ends early"))),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.body.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), PageError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected {what}")))
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn error(&self, what: impl Into<String>) -> PageError {
        PageError {
            at: self.pos,
            what: what.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::wire::frame::parse_list;
    use crate::wire::frame::tests::fixture;

    /// Every item and the envelope, or the error.
    fn read_all(body: &[u8]) -> Result<(Envelope<'_>, Vec<Item<'_>>), PageError> {
        let mut r = ListReader::new(body)?;
        let mut items = Vec::new();
        while let Some(item) = r.next_item()? {
            items.push(item);
        }
        Ok((r.into_envelope(), items))
    }

    #[test]
    fn agrees_with_the_two_pass_parse_on_real_pages() {
        for name in [
            "raw-list-page1.json",
            "raw-list-page2.json",
            "raw-list-compact.json",
            "raw-list-events-v1.json",
        ] {
            let body = fixture(name);
            let want = parse_list(&body).unwrap();
            let (env, items) = read_all(&body).unwrap();
            assert_eq!(env.kind, want.kind, "{name}");
            assert_eq!(env.resource_version, want.resource_version, "{name}");
            assert_eq!(env.continue_token, want.continue_token, "{name}");
            assert_eq!(
                env.remaining_item_count, want.remaining_item_count,
                "{name}"
            );
            let got: Vec<&[u8]> = items.iter().map(|i| i.bytes).collect();
            assert_eq!(got, want.items, "{name}");
            for (i, item) in items.iter().enumerate() {
                assert_eq!(item.index, i);
                let view = item.view.as_ref().unwrap();
                assert_eq!(*view, identity::parse_event(want.items[i]).unwrap());
            }
        }
    }

    #[test]
    fn the_envelope_is_known_before_the_items_when_written_first() {
        let body = fixture("raw-list-page1.json");
        let r = ListReader::new(&body).unwrap();
        let want = parse_list(&body).unwrap();
        assert!(want.continue_token.is_some());
        assert_eq!(r.envelope().continue_token, want.continue_token);
        assert_eq!(r.envelope().resource_version, want.resource_version);
    }

    #[test]
    fn odd_but_valid_pages() {
        let ev = r#"{"metadata":{"name":"a","namespace":"n"},"count":1}"#;
        let cases: Vec<(String, usize, Option<&str>)> = vec![
            ("{}".into(), 0, None),
            (
                r#"{"items":null,"metadata":{"resourceVersion":"5"}}"#.into(),
                0,
                None,
            ),
            (r#"{"items":[]}"#.into(), 0, None),
            // metadata after the items: known only at the end.
            (
                format!(
                    r#"{{"items":[{ev},{ev}],"metadata":{{"continue":"t","resourceVersion":"9"}}}}"#
                ),
                2,
                Some("t"),
            ),
            // Pretty-printed, whitespace everywhere.
            (
                format!(
                    "\n {{ \"kind\" : \"EventList\" ,\n \"items\" : [ \n{ev} ,\n {ev}\n ] \n}}\n "
                ),
                2,
                None,
            ),
            // An empty continue token marks the last page, like an absent one.
            (
                format!(r#"{{"metadata":{{"continue":""}},"items":[{ev}]}}"#),
                1,
                None,
            ),
        ];
        for (body, n, token) in cases {
            let (env, items) = read_all(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(items.len(), n, "{body}");
            assert_eq!(env.continue_token.as_deref(), token, "{body}");
            for item in &items {
                assert_eq!(item.bytes, ev.as_bytes(), "{body}");
                assert!(item.view.is_ok());
            }
            assert!(
                parse_list(body.as_bytes()).is_ok(),
                "the two-pass parse disagrees: {body}"
            );
        }
    }

    #[test]
    fn an_item_without_identity_is_handed_out_with_the_reason_and_reading_goes_on() {
        let body = b"{\"items\":[{\"count\":1},{\"metadata\":{\"name\":\"bad\\ud800\"}},[1,2],{\"metadata\":{\"name\":\"ok\"}},{\"metadata\":{\"name\":\"u\"},\"message\":\"\xff\xfe\"},{\"metadata\":{\"name\":\"caf\xc3\xa9\"}}]}";
        let (_, items) = read_all(body).unwrap();
        let got: Vec<(&[u8], bool)> = items.iter().map(|i| (i.bytes, i.view.is_ok())).collect();
        assert_eq!(
            got,
            vec![
                (&br#"{"count":1}"#[..], false),
                (&br#"{"metadata":{"name":"bad\ud800"}}"#[..], false),
                (&b"[1,2]"[..], false),
                (&br#"{"metadata":{"name":"ok"}}"#[..], true),
                (
                    &b"{\"metadata\":{\"name\":\"u\"},\"message\":\"\xff\xfe\"}"[..],
                    false
                ),
                (&b"{\"metadata\":{\"name\":\"caf\xc3\xa9\"}}"[..], true),
            ]
        );
        assert!(matches!(items[4].view, Err(IdentityError::NotUtf8)));
        assert!(matches!(items[0].view, Err(IdentityError::MissingMetadata)));
        assert!(matches!(items[1].view, Err(IdentityError::NotJson(_))));
        assert!(matches!(items[2].view, Err(IdentityError::NotObject(_))));
    }

    #[test]
    fn broken_pages_are_errors_that_say_where() {
        let ev = r#"{"metadata":{"name":"a"}}"#;
        for body in [
            String::new(),
            "[]".into(),
            r#"{"items":[]"#.into(),
            r#"{"items":[]} x"#.into(),
            r#"{"items":7}"#.into(),
            format!(r#"{{"items":[{ev},]}}"#),
            format!(r#"{{"items":[{ev} {ev}]}}"#),
            format!(r#"{{"items":[{ev}"#),
            r#"{"items":[{"metadata":{"name":"a"}"#.into(),
            r#"{"metadata":{"continue":7},"items":[]}"#.into(),
            r#"{"kind" "EventList"}"#.into(),
            r#"{"kind":"EventList",}"#.into(),
        ] {
            assert!(read_all(body.as_bytes()).is_err(), "accepted: {body}");
            // serde's derived structs also accept an array (positional fields); a list is
            // an object.
            if body != "[]" {
                assert!(
                    parse_list(body.as_bytes()).is_err(),
                    "the two-pass parse accepts: {body}"
                );
            }
        }
        let e = read_all(br#"{"items":[{"metadata":{"name":"a"}} x]}"#).unwrap_err();
        assert_eq!(e.at, 36, "{e}"); // the `x`
    }
}
