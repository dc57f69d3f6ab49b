//! Watch frames, list pages and `Status` bodies, read without re-serializing the objects.
//!
//! The daemon promises to write each Event byte for byte as the API server sent it, so every
//! object leaves this module as a slice of the caller's input. Only the few scalar fields the
//! caller needs (frame type, list metadata, status fields) are decoded.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;

/// The `type` of a watch frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
    /// A type this version does not know; kept so the caller can log it and carry on.
    Unknown(String),
}

impl FrameType {
    /// The type as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            FrameType::Added => "ADDED",
            FrameType::Modified => "MODIFIED",
            FrameType::Deleted => "DELETED",
            FrameType::Bookmark => "BOOKMARK",
            FrameType::Error => "ERROR",
            FrameType::Unknown(s) => s,
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FrameType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TypeVisitor;
        impl Visitor<'_> for TypeVisitor {
            type Value = FrameType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a watch event type string")
            }
            // A visitor rather than `Cow<str>` so the common types cost no allocation.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FrameType, E> {
                Ok(match v {
                    "ADDED" => FrameType::Added,
                    "MODIFIED" => FrameType::Modified,
                    "DELETED" => FrameType::Deleted,
                    "BOOKMARK" => FrameType::Bookmark,
                    "ERROR" => FrameType::Error,
                    other => FrameType::Unknown(other.to_owned()),
                })
            }
        }
        deserializer.deserialize_str(TypeVisitor)
    }
}

/// One watch frame: its type and the exact bytes of its object, borrowed from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFrame<'a> {
    pub frame_type: FrameType,
    pub object: &'a [u8],
}

/// Why a frame, list or status body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("watch frame is not a valid {{\"type\",\"object\"}} JSON object: {0}")]
    BadFrame(#[source] serde_json::Error),
    #[error("list body is not a valid list JSON object: {0}")]
    BadList(#[source] serde_json::Error),
    #[error("Status body is not a valid Status JSON object: {0}")]
    BadStatus(#[source] serde_json::Error),
    #[error("object metadata is not valid JSON: {0}")]
    BadMetadata(#[source] serde_json::Error),
    #[error("list item {index} is not a JSON object")]
    ItemNotObject { index: usize },
}

// A plain struct holding `&RawValue` (or `Box<RawValue>`) works whichever key comes first:
// serde_json hands out the slice directly. Shapes that buffer content cannot carry a RawValue:
// an adjacently tagged enum (`tag = "type", content = "object"`) fails exactly when "object"
// comes first (the failure in FACTS.md), and `flatten` fails in both orders (checked on
// serde_json 1.0.154).
#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    frame_type: FrameType,
    #[serde(borrow)]
    object: &'a RawValue,
}

/// Parses one line of a watch response body (`{"type":…,"object":…}`, keys in any order).
///
/// Surrounding whitespace, including the trailing `\n`, is accepted. The returned object is the
/// exact byte slice of the input, unknown fields, key order and number text included.
pub fn parse_watch_frame(line: &[u8]) -> Result<WatchFrame<'_>, FrameError> {
    let raw: RawFrame<'_> = serde_json::from_slice(line).map_err(FrameError::BadFrame)?;
    Ok(WatchFrame {
        frame_type: raw.frame_type,
        object: raw.object.get().as_bytes(),
    })
}

/// The usual shape of an ADDED, MODIFIED or DELETED frame, as the API server writes every one:
/// `{"type":"ADDED","object":{…}}`, with nothing between the tokens (trailing whitespace
/// allowed). Returns the type and the object's bytes without parsing anything, or `None` for
/// any other shape (take [`parse_watch_frame`] then).
///
/// The object is NOT checked: the caller must parse it as one JSON object (identity does,
/// fully) and check it is UTF-8, and fall back to [`parse_watch_frame`] when either fails.
/// When both pass, the whole frame is valid JSON and the object is exactly the slice
/// [`parse_watch_frame`] returns; this saves the frame's own JSON pass.
pub fn split_common_frame(line: &[u8]) -> Option<(FrameType, &[u8])> {
    let mut line = line;
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = line {
        line = rest;
    }
    let rest = line.strip_prefix(br#"{"type":""#)?;
    let (frame_type, rest) = if let Some(r) = rest.strip_prefix(br#"ADDED","object":"#) {
        (FrameType::Added, r)
    } else if let Some(r) = rest.strip_prefix(br#"MODIFIED","object":"#) {
        (FrameType::Modified, r)
    } else if let Some(r) = rest.strip_prefix(br#"DELETED","object":"#) {
        (FrameType::Deleted, r)
    } else {
        return None;
    };
    let object = rest.strip_suffix(b"}")?;
    match (object.first(), object.last()) {
        (Some(b'{'), Some(b'}')) => Some((frame_type, object)),
        _ => None,
    }
}

/// One page of a list response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage<'a> {
    /// The list's `kind` (`EventList`), if present.
    pub kind: Option<Cow<'a, str>>,
    pub resource_version: Option<Cow<'a, str>>,
    /// `None` when absent or empty: the API marks the last page either way.
    pub continue_token: Option<Cow<'a, str>>,
    pub remaining_item_count: Option<i64>,
    /// The exact bytes of each item, borrowed from the body.
    pub items: Vec<&'a [u8]>,
}

#[derive(Deserialize)]
pub(crate) struct RawListMeta<'a> {
    #[serde(borrow, rename = "resourceVersion", default)]
    pub(crate) resource_version: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "continue", default)]
    pub(crate) continue_token: Option<Cow<'a, str>>,
    #[serde(rename = "remainingItemCount", default)]
    pub(crate) remaining_item_count: Option<i64>,
}

#[derive(Deserialize)]
struct RawList<'a> {
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<RawListMeta<'a>>,
    // `null` items is what an empty list from some servers looks like; treat it as empty.
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

/// Parses a whole list response body (one page).
pub fn parse_list(body: &[u8]) -> Result<ListPage<'_>, FrameError> {
    let raw: RawList<'_> = serde_json::from_slice(body).map_err(FrameError::BadList)?;
    let (resource_version, continue_token, remaining_item_count) = match raw.metadata {
        Some(m) => (
            m.resource_version,
            m.continue_token.filter(|c| !c.is_empty()),
            m.remaining_item_count,
        ),
        None => (None, None, None),
    };
    let items = raw
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.get().as_bytes())
        .collect();
    Ok(ListPage {
        kind: raw.kind,
        resource_version,
        continue_token,
        remaining_item_count,
        items,
    })
}

fn has_raw_line_break(bytes: &[u8]) -> bool {
    // Valid JSON cannot hold a raw CR/LF inside a string, so any such byte is formatting.
    memchr::memchr2(b'\n', b'\r', bytes).is_some()
}

/// Appends a watch object as one output line (without the trailing `\n`).
///
/// The bytes are copied as is, unless the object was pretty-printed: then insignificant
/// whitespace is dropped so the line stays one line (see [`crate::wire::compact::compact_json_into`]).
pub fn write_watch_object(object: &[u8], out: &mut Vec<u8>) {
    if has_raw_line_break(object) {
        crate::wire::compact::compact_json_into(object, out);
    } else {
        out.extend_from_slice(object);
    }
}

const LIST_ITEM_PREFIX: &[u8] = br#"{"kind":"Event","apiVersion":"v1""#;

/// Appends a core/v1 `EventList` item as one output line (without the trailing `\n`).
///
/// List items lack `kind`/`apiVersion` while watch objects carry them; the output should not
/// depend on which path delivered an event, so `"kind":"Event","apiVersion":"v1"` is put in front
/// of the item's own fields, which follow byte for byte.
pub fn write_list_item(item: &[u8], index: usize, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let rest = match item.split_first() {
        Some((b'{', rest)) => rest,
        _ => return Err(FrameError::ItemNotObject { index }),
    };
    out.extend_from_slice(LIST_ITEM_PREFIX);
    let first = rest
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match first {
        Some(i) if rest[i] == b'}' => {
            out.push(b'}');
            return Ok(());
        }
        // A RawValue always ends with its closing brace, so this cannot happen for parsed items;
        // refuse rather than write a broken line.
        None => {
            out.truncate(out.len() - LIST_ITEM_PREFIX.len());
            return Err(FrameError::ItemNotObject { index });
        }
        Some(_) => {}
    }
    out.push(b',');
    if has_raw_line_break(rest) {
        crate::wire::compact::compact_json_into(rest, out);
    } else {
        out.extend_from_slice(rest);
    }
    Ok(())
}

/// The fields of a `Status` object (watch `ERROR` frames, HTTP error bodies) the daemon acts on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status<'a> {
    pub code: Option<i32>,
    pub status: Option<Cow<'a, str>>,
    pub reason: Option<Cow<'a, str>>,
    pub message: Option<Cow<'a, str>>,
    /// An expired `continue` answer carries a fresh token to carry on with.
    pub continue_token: Option<Cow<'a, str>>,
    /// The `reason` of each of `details.causes` (e.g. `ResourceVersionTooLarge`).
    pub causes: Vec<Cow<'a, str>>,
}

impl Status<'_> {
    /// `410 Gone`: the resourceVersion or continue token is too old.
    pub fn is_gone(&self) -> bool {
        self.code == Some(410)
    }
}

impl fmt::Display for Status<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(c) => write!(f, "{c}")?,
            None => f.write_str("no code")?,
        }
        if let Some(r) = &self.reason {
            write!(f, " {r}")?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct RawStatusMeta<'a> {
    #[serde(borrow, rename = "continue", default)]
    continue_token: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawCause<'a> {
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawDetails<'a> {
    #[serde(borrow, default)]
    causes: Vec<RawCause<'a>>,
}

#[derive(Deserialize)]
struct RawStatus<'a> {
    #[serde(borrow, default)]
    details: Option<RawDetails<'a>>,
    #[serde(default)]
    code: Option<i32>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<RawStatusMeta<'a>>,
}

/// Parses a `Status` object.
pub fn parse_status(bytes: &[u8]) -> Result<Status<'_>, FrameError> {
    let raw: RawStatus<'_> = serde_json::from_slice(bytes).map_err(FrameError::BadStatus)?;
    Ok(Status {
        code: raw.code,
        status: raw.status,
        reason: raw.reason,
        message: raw.message,
        continue_token: raw
            .metadata
            .and_then(|m| m.continue_token)
            .filter(|c| !c.is_empty()),
        causes: raw
            .details
            .map(|d| d.causes.into_iter().filter_map(|c| c.reason).collect())
            .unwrap_or_default(),
    })
}

#[derive(Deserialize)]
struct RawObjectMeta<'a> {
    #[serde(borrow, rename = "resourceVersion", default)]
    resource_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawObject<'a> {
    #[serde(borrow, default)]
    metadata: Option<RawObjectMeta<'a>>,
}

/// `metadata.resourceVersion` of an object; meant for `BOOKMARK` frames, whose objects carry
/// nothing else worth reading (no name, so they have no identity).
pub fn object_resource_version(object: &[u8]) -> Result<Option<Cow<'_, str>>, FrameError> {
    let raw: RawObject<'_> = serde_json::from_slice(object).map_err(FrameError::BadMetadata)?;
    Ok(raw.metadata.and_then(|m| m.resource_version))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real-apiserver");

    /// A captured kube-apiserver answer from tests/fixtures/real-apiserver (shared by the
    /// frame, identity and replay tests).
    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{FIXTURES}/{name}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    /// Byte offset of `part` inside `whole`, or panic: proves the slice is borrowed, not a copy.
    fn offset_in(whole: &[u8], part: &[u8]) -> usize {
        let start = part.as_ptr() as usize - whole.as_ptr() as usize;
        assert!(start + part.len() <= whole.len());
        start
    }

    #[test]
    fn both_key_orders_give_the_exact_object() {
        let obj = r#"{"kind":"Event","n":1.0e3,"z":-0,"s":"\u00e9\n","a":[ 1 , {"b" : null} ]}"#;
        for line in [
            format!(r#"{{"type":"ADDED","object":{obj}}}"#),
            format!(r#"{{"object":{obj},"type":"ADDED"}}"#),
            format!(" {{ \"object\" :\n\t{obj} ,\r\n \"type\" : \"ADDED\" }}\n"),
        ] {
            let f = parse_watch_frame(line.as_bytes()).unwrap();
            assert_eq!(f.frame_type, FrameType::Added);
            assert_eq!(f.object, obj.as_bytes());
            offset_in(line.as_bytes(), f.object);
        }
    }

    #[test]
    fn common_frame_split_matches_the_parse() {
        let lines = [
            r#"{"type":"ADDED","object":{"kind":"Event","metadata":{"name":"a"}}}"#,
            "{\"type\":\"MODIFIED\",\"object\":{\"a\":\"}\"}}\r",
            r#"{"type":"DELETED","object":{}}  "#,
        ];
        for line in lines {
            let (t, object) = split_common_frame(line.as_bytes()).unwrap();
            let parsed = parse_watch_frame(line.as_bytes()).unwrap();
            assert_eq!((t, object), (parsed.frame_type, parsed.object), "{line}");
        }
        // Other shapes are left to the parse.
        for line in [
            r#"{"object":{},"type":"ADDED"}"#,
            r#"{"type":"BOOKMARK","object":{}}"#,
            r#"{"type":"ADDED","object":[]}"#,
            r#"{"type":"ADDED", "object":{}}"#,
            r#"{"type":"ADDED","object":{} }"#,
            r#"{"type":"ADDED","object":{}"#,
        ] {
            assert_eq!(split_common_frame(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn frame_types() {
        for (t, want) in [
            ("ADDED", FrameType::Added),
            ("MODIFIED", FrameType::Modified),
            ("DELETED", FrameType::Deleted),
            ("BOOKMARK", FrameType::Bookmark),
            ("ERROR", FrameType::Error),
            ("SURPRISE", FrameType::Unknown("SURPRISE".into())),
            // An escaped type string is still recognised.
            ("\\u0041DDED", FrameType::Added),
        ] {
            let line = format!(r#"{{"type":"{t}","object":{{}}}}"#);
            assert_eq!(parse_watch_frame(line.as_bytes()).unwrap().frame_type, want);
        }
    }

    #[test]
    fn broken_frames_are_errors() {
        for line in [
            &br#"{"type":"ADDED"}"#[..],
            br#"{"object":{}}"#,
            br#"{"type":"ADDED","object":{"#,
            br#"{"type":7,"object":{}}"#,
            b"",
            b"[]",
        ] {
            let e = parse_watch_frame(line).unwrap_err();
            assert!(matches!(e, FrameError::BadFrame(_)), "{e}");
        }
    }

    #[test]
    fn every_fixture_watch_line_parses_to_its_substring() {
        for name in [
            "raw-watch.jsonl",
            "raw-watch-expired.jsonl",
            "raw-watch-bookmarks.jsonl",
            "kubectl-watch.json",
        ] {
            let data = fixture(name);
            let mut n = 0;
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let f = parse_watch_frame(line).unwrap();
                let start = offset_in(line, f.object);
                // The object is the value of "object": everything between it and the end is `}`.
                assert_eq!(&line[start + f.object.len()..], b"}", "{name}");
                assert!(f.object.starts_with(b"{"));
                n += 1;
            }
            assert!(n > 0, "{name}");
        }
        let data = fixture("raw-watch.jsonl");
        let types: Vec<String> = data
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_watch_frame(l).unwrap().frame_type.to_string())
            .collect();
        assert_eq!(types.iter().filter(|t| *t == "DELETED").count(), 1);
        assert_eq!(types.iter().filter(|t| *t == "MODIFIED").count(), 4);
    }

    #[test]
    fn expired_watch_error_frame() {
        let data = fixture("raw-watch-expired.jsonl");
        let f = parse_watch_frame(&data).unwrap();
        assert_eq!(f.frame_type, FrameType::Error);
        let s = parse_status(f.object).unwrap();
        assert_eq!(s.code, Some(410));
        assert!(s.is_gone());
        assert_eq!(s.reason.as_deref(), Some("Expired"));
        assert_eq!(s.status.as_deref(), Some("Failure"));
        assert_eq!(
            s.message.as_deref(),
            Some("The resourceVersion for the provided watch is too old.")
        );
        assert_eq!(s.continue_token, None);
    }

    #[test]
    fn expired_continue_status_carries_a_new_token() {
        let body = fixture("raw-list-expired-continue.json");
        let s = parse_status(&body).unwrap();
        assert!(s.is_gone());
        assert_eq!(s.reason.as_deref(), Some("Expired"));
        assert_eq!(
            s.continue_token.as_deref(),
            Some(
                "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTEsInN0YXJ0IjoiZGVmYXVsdC9jaHVybi44ajZ3NFx1MDAwMCJ9"
            )
        );
    }

    #[test]
    fn forbidden_status_pretty_printed() {
        let body = fixture("raw-unauthorized.json");
        let s = parse_status(&body).unwrap();
        assert_eq!(s.code, Some(403));
        assert_eq!(s.reason.as_deref(), Some("Forbidden"));
        assert!(
            s.message
                .as_deref()
                .unwrap()
                .contains("\"system:anonymous\"")
        );
        assert!(
            s.to_string()
                .starts_with("403 Forbidden: events is forbidden")
        );
    }

    fn check_list(name: &str, rv: &str, cont: Option<&str>, remaining: Option<i64>, n: usize) {
        let body = fixture(name);
        let page = parse_list(&body).unwrap();
        assert_eq!(page.kind.as_deref(), Some("EventList"));
        assert_eq!(page.resource_version.as_deref(), Some(rv));
        assert_eq!(page.continue_token.as_deref(), cont);
        assert_eq!(page.remaining_item_count, remaining);
        assert_eq!(page.items.len(), n);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut prev_end = 0;
        for (i, item) in page.items.iter().enumerate() {
            let start = offset_in(&body, item);
            assert!(start > prev_end, "items in order");
            prev_end = start + item.len();
            // Same content as a full parse, and a verbatim substring of the body.
            let parsed: serde_json::Value = serde_json::from_slice(item).unwrap();
            assert_eq!(parsed, v["items"][i]);
            assert!(item.starts_with(b"{\"metadata\":") && item.ends_with(b"}"));
        }
    }

    #[test]
    fn list_fixture_pages() {
        check_list(
            "raw-list-page1.json",
            "225",
            Some(
                "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MjI1LCJzdGFydCI6ImRlZmF1bHQvc2NoZWQuMTg3YTFmMmUzYzRkMDAwMVx1MDAwMCJ9",
            ),
            Some(5),
            2,
        );
        check_list(
            "raw-list-page2.json",
            "225",
            Some(
                "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MjI1LCJzdGFydCI6ImRlbW8vam9iLTIudGw0czJcdTAwMDAifQ",
            ),
            Some(3),
            2,
        );
        check_list("raw-list-compact.json", "225", None, None, 7);
    }

    #[test]
    fn list_edge_cases() {
        let p = parse_list(br#"{"items":null,"metadata":{"continue":""}}"#).unwrap();
        assert!(p.items.is_empty());
        assert_eq!(p.continue_token, None);
        let p = parse_list(b"{}").unwrap();
        assert!(p.items.is_empty() && p.resource_version.is_none());
        assert!(parse_list(br#"{"items":[{}"#).is_err());
    }

    #[test]
    fn list_item_to_line_matches_the_watch_object() {
        // Page 1 item 0 and the first kubectl/watch capture are the same event; the line built
        // from the list item must parse to the same object as the watch copy.
        let body = fixture("raw-list-page1.json");
        let page = parse_list(&body).unwrap();
        let mut out = Vec::new();
        write_list_item(page.items[0], 0, &mut out).unwrap();
        assert!(out.starts_with(br#"{"kind":"Event","apiVersion":"v1","metadata":{"name":"#));
        assert_eq!(&out[LIST_ITEM_PREFIX.len() + 1..], &page.items[0][1..]);
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let kubectl = fixture("kubectl-watch.json");
        let first = kubectl.split(|&b| b == b'\n').next().unwrap();
        let watch: serde_json::Value =
            serde_json::from_slice(parse_watch_frame(first).unwrap().object).unwrap();
        assert_eq!(line, watch);
    }

    #[test]
    fn list_item_edge_cases() {
        let mut out = b"keep:".to_vec();
        write_list_item(b"{ \n }", 0, &mut out).unwrap();
        assert_eq!(out, br#"keep:{"kind":"Event","apiVersion":"v1"}"#);
        let mut out = Vec::new();
        assert!(matches!(
            write_list_item(b"[1]", 4, &mut out),
            Err(FrameError::ItemNotObject { index: 4 })
        ));
        assert!(write_list_item(b"{", 0, &mut out).is_err());
        assert!(out.is_empty());
        write_list_item(b"{\n  \"a\": \"x y\",\n  \"b\": 1.50\n}", 0, &mut out).unwrap();
        assert_eq!(
            out,
            br#"{"kind":"Event","apiVersion":"v1","a":"x y","b":1.50}"#
        );
    }

    #[test]
    fn watch_object_line() {
        let mut out = Vec::new();
        write_watch_object(br#"{"a": 1,  "b":"  "}"#, &mut out);
        assert_eq!(
            out, br#"{"a": 1,  "b":"  "}"#,
            "one-line objects are copied as is"
        );
        out.clear();
        write_watch_object(b"{\r\n  \"a\": 1,\n  \"b\": \"  \"\n}", &mut out);
        assert_eq!(out, br#"{"a":1,"b":"  "}"#);
    }

    #[test]
    fn bookmark_resource_version() {
        let obj = br#"{"kind":"Event","apiVersion":"v1","metadata":{"resourceVersion":"12345","annotations":{"k8s.io/initial-events-end":"true"}}}"#;
        assert_eq!(
            object_resource_version(obj).unwrap().as_deref(),
            Some("12345")
        );
        assert_eq!(object_resource_version(b"{}").unwrap(), None);
        assert!(object_resource_version(b"{").is_err());
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn ws() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![Just(' '), Just('\t'), Just('\n'), Just('\r')],
                0..3,
            )
            .prop_map(|v| v.into_iter().collect())
        }

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::Bool),
                any::<i64>().prop_map(|n| serde_json::json!(n)),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(|n| serde_json::json!(n)),
                ".*".prop_map(serde_json::Value::String),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4)
                        .prop_map(serde_json::Value::Array),
                    proptest::collection::btree_map(".*", inner, 0..4)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn exact_object_bytes_any_order_any_whitespace(
                fields in proptest::collection::btree_map("[a-z\"\\\\]{0,6}", json_value(), 0..4),
                pretty in any::<bool>(),
                object_first in any::<bool>(),
                w in proptest::collection::vec(ws(), 8),
            ) {
                let obj = serde_json::Value::Object(fields.into_iter().collect());
                let obj = if pretty {
                    serde_json::to_string_pretty(&obj).unwrap()
                } else {
                    serde_json::to_string(&obj).unwrap()
                };
                let ty = format!(r#"{}"type"{}:{}"MODIFIED"{}"#, w[1], w[2], w[3], w[4]);
                let ob = format!(r#"{}"object"{}:{}{obj}{}"#, w[5], w[6], w[7], w[4]);
                let line = if object_first {
                    format!("{}{{{ob},{ty}}}{}", w[0], w[0])
                } else {
                    format!("{}{{{ty},{ob}}}{}", w[0], w[0])
                };
                let f = parse_watch_frame(line.as_bytes()).unwrap();
                prop_assert_eq!(f.frame_type, FrameType::Modified);
                prop_assert_eq!(f.object, obj.as_bytes());
            }
        }
    }
}
