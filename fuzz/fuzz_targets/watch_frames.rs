//! The watch frame reader and the kubectl replay splitter.
//!
//! Input: one control byte, then up to 7 chunk-size bytes, then the stream.
//! - control & 7: how many chunk-size bytes follow (each 0..=255, read as 1..=256, cycled);
//! - control & 8: use a small object size limit (64 bytes + the next control bits) so the
//!   splitter's "too large" recovery is reached too.
//!
//! The stream goes through two readers:
//! 1. Cut into `\n`-terminated lines as the API watcher does; each line is parsed as a watch
//!    frame (and as a list body and a Status), and each object is turned into an output line.
//! 2. The kubectl replay splitter, fed all at once and in the chunks above: both must give the
//!    same objects and the same errors, each object must be the exact bytes of the stream at
//!    the reported offset, and a stream of whitespace-separated JSON objects must split into
//!    exactly those objects. A split-out frame whose object is a list (a chunk of kubectl's
//!    initial list) must give the list's exact items, each written as one line.
#![no_main]

use kube_event_pipe::wire::frame::{
    self, FrameType, object_resource_version, parse_list, parse_status, parse_watch_frame,
};
use kube_event_pipe::wire::identity;
use kube_event_pipe::wire::kubectl_stream::{SplitError, Splitter};
use kube_event_pipe::wire::list_object::list_items;
use kube_event_pipe::wire::list_page::{Envelope, Item, ListReader, PageError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let n_sizes = usize::from(control & 7).min(rest.len());
    let (sizes, stream) = rest.split_at(n_sizes);
    let chunks: Vec<usize> = sizes.iter().map(|&b| usize::from(b) + 1).collect();
    let max_len = if control & 8 != 0 {
        64 + usize::from(control >> 4)
    } else {
        Splitter::DEFAULT_MAX_OBJECT_LEN
    };

    watcher_lines(stream);
    splitter(stream, &chunks, max_len);
});

/// True when `part` lies inside `whole` (a borrowed slice, not a copy).
fn is_subslice(whole: &[u8], part: &[u8]) -> bool {
    let w = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    p >= w && p + part.len() <= w + whole.len()
}

fn has_line_break(b: &[u8]) -> bool {
    b.iter().any(|&c| c == b'\n' || c == b'\r')
}

/// What the API watcher does with a response body: one frame per `\n`-terminated line.
fn watcher_lines(stream: &[u8]) {
    for line in stream.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        one_line(line);
    }
    // A whole body is also what a list response and an HTTP error body are.
    list_body(stream);
    let _ = parse_status(stream).map(|s| s.to_string());
}

fn one_line(line: &[u8]) {
    let Ok(f) = parse_watch_frame(line) else {
        return;
    };
    assert!(
        is_subslice(line, f.object),
        "object is not borrowed from the line"
    );
    // A RawValue is valid JSON by construction.
    let value = decode(f.object, "frame object");
    match &f.frame_type {
        FrameType::Unknown(t) => assert!(
            !matches!(
                t.as_str(),
                "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR"
            ),
            "known type {t} read as unknown"
        ),
        known => assert_ne!(known.as_str(), ""),
    }

    let mut out = Vec::new();
    frame::write_watch_object(f.object, &mut out);
    assert!(!has_line_break(&out), "output line has a raw line break");
    if !has_line_break(f.object) {
        assert_eq!(
            out, f.object,
            "a one-line object must be copied byte for byte"
        );
    }
    let back = decode(&out, "output line");
    if value.is_some() {
        assert_eq!(back, value, "output line differs from the object");
    }

    // Everything the watcher does with an object must not panic, whatever it holds.
    let mut id = Vec::new();
    let _ = identity::identity_into(f.object, &mut id);
    let _ = object_resource_version(f.object);
    let _ = parse_status(f.object).map(|s| (s.is_gone(), s.to_string()));
}

fn list_body(body: &[u8]) {
    let read = read_list(body);
    let Ok(page) = parse_list(body) else {
        return;
    };
    // The one-pass reader the watcher uses agrees with the two-pass parse on every page that
    // parse accepts (serde's derived structs also take an array; a list is an object), except
    // that it skips an item whose strings are not UTF-8 instead of refusing the whole page.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let (envelope, items) = read.expect("the list reader refused a page serde_json accepts");
        assert_eq!(envelope.kind, page.kind);
        assert_eq!(envelope.resource_version, page.resource_version);
        assert_eq!(envelope.continue_token, page.continue_token);
        assert_eq!(envelope.remaining_item_count, page.remaining_item_count);
        let got: Vec<&[u8]> = items.iter().map(|i| i.bytes).collect();
        assert_eq!(got, page.items, "the list reader split the items differently");
        for (item, raw) in items.iter().zip(&page.items) {
            match (&item.view, identity::parse_event(raw)) {
                (Ok(a), Ok(b)) => assert_eq!(*a, b),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("list reader {a:?}, identity {b:?}"),
            }
        }
    }
    assert!(page.continue_token.as_deref() != Some(""));
    for (index, item) in page.items.iter().enumerate() {
        assert!(
            is_subslice(body, item),
            "list item is not borrowed from the body"
        );
        let item_value = decode(item, "list item");
        let mut out = b"x".to_vec();
        match frame::write_list_item(item, index, &mut out) {
            Err(_) => {
                assert!(!item.starts_with(b"{"), "an object item was refused");
                assert_eq!(out, b"x", "a refused item left bytes behind");
            }
            Ok(()) => {
                let line = &out[1..];
                assert!(!has_line_break(line), "list item line has a raw line break");
                let back = decode(line, "list item line");
                let (Some(back), Some(item_value)) = (back, item_value) else {
                    continue;
                };
                let (Some(back), Some(orig)) = (back.as_object(), item_value.as_object()) else {
                    panic!("list item line is not an object");
                };
                // The item's own fields come after the prefix, so they win on a repeated key.
                for (k, v) in orig {
                    assert_eq!(back.get(k), Some(v), "list item field {k} changed");
                }
                for (k, v) in [("kind", "Event"), ("apiVersion", "v1")] {
                    if !orig.contains_key(k) {
                        assert_eq!(back.get(k).and_then(Value::as_str), Some(v));
                    }
                }
                assert_eq!(back.len(), orig.len() + 2 - count_keys(orig));
            }
        }
    }
}

/// Every item of a page through the one-pass reader. An item it hands out is borrowed from
/// the body, and when it has an identity it is UTF-8 (that it is whole JSON is checked
/// against the two-pass parse in `list_body`).
fn read_list(body: &[u8]) -> Result<(Envelope<'_>, Vec<Item<'_>>), PageError> {
    let mut reader = ListReader::new(body)?;
    let mut items = Vec::new();
    while let Some(item) = reader.next_item()? {
        assert!(is_subslice(body, item.bytes), "list item is not borrowed from the body");
        if item.view.is_ok() {
            std::str::from_utf8(item.bytes).expect("an identified list item is not UTF-8");
        }
        items.push(item);
    }
    Ok((reader.into_envelope(), items))
}

/// The bytes as a `Value`, or `None` when they are JSON that serde_json will not build a
/// `Value` from: a lone surrogate escape (`"\ud800"`, valid JSON grammar but not Unicode,
/// which the daemon copies as it came) or nesting past serde_json's depth limit. Panics when
/// the bytes are not JSON at all.
fn decode(bytes: &[u8], what: &str) -> Option<Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Some(v),
        Err(_) => {
            serde_json::from_slice::<&serde_json::value::RawValue>(bytes)
                .unwrap_or_else(|e| panic!("{what} is not JSON: {e}"));
            None
        }
    }
}

fn count_keys(o: &serde_json::Map<String, Value>) -> usize {
    ["kind", "apiVersion"]
        .iter()
        .filter(|k| o.contains_key(**k))
        .count()
}

#[derive(Debug, PartialEq)]
enum Piece {
    /// The object's bytes and the stream offset just past it.
    Object(Vec<u8>, u64),
    Error(SplitError),
}

fn split(stream: &[u8], chunks: &[usize], max_len: usize) -> Vec<Piece> {
    let mut s = Splitter::with_max_object_len(max_len);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut k = 0;
    loop {
        let n = if chunks.is_empty() {
            rest.len()
        } else {
            chunks[k % chunks.len()].min(rest.len())
        };
        k += 1;
        s.feed(&rest[..n]);
        rest = &rest[n..];
        while let Some(r) = s.next_object() {
            let piece = match r {
                Ok(o) => Piece::Object(o.to_vec(), 0),
                Err(e) => Piece::Error(e),
            };
            out.push(match piece {
                Piece::Object(o, _) => Piece::Object(o, s.offset()),
                e => e,
            });
        }
        if rest.is_empty() {
            break;
        }
    }
    if let Err(e) = s.finish() {
        assert!(
            matches!(e, SplitError::Truncated { .. }),
            "finish gave {e:?}"
        );
        out.push(Piece::Error(e));
    }
    // Nothing more after the end.
    assert!(s.next_object().is_none());
    out
}

/// A replayed frame object that is a list (a chunk kubectl printed as one frame) stands for
/// its items: each is the exact bytes of an item of the object, as the two-pass list parse
/// finds them, identified items are UTF-8, and each is written as one line holding the same
/// JSON. Anything else is not a list, and is offered as one event.
fn replayed_list(object: &[u8]) {
    let Some(items) = list_items(object) else {
        return;
    };
    // The two-pass parse refuses repeated keys, which the one-pass reader lets the last win.
    if let Ok(page) = parse_list(object) {
        assert!(
            page.kind.as_deref().is_some_and(|k| k.ends_with("List")),
            "a list without a List kind: {:?}",
            page.kind
        );
        let got: Vec<&[u8]> = items.iter().map(|i| i.bytes).collect();
        assert_eq!(
            got, page.items,
            "the replay split the list's items differently"
        );
    }
    for item in &items {
        assert!(
            is_subslice(object, item.bytes),
            "list item is not borrowed from the frame"
        );
        if item.view.is_ok() {
            std::str::from_utf8(item.bytes).expect("an identified list item is not UTF-8");
        }
        let mut line = Vec::new();
        frame::write_watch_object(item.bytes, &mut line);
        assert!(
            !has_line_break(&line),
            "replayed list item has a raw line break"
        );
        if let Some(v) = decode(item.bytes, "list item") {
            assert_eq!(decode(&line, "replayed list item"), Some(v));
        }
    }
}

fn splitter(stream: &[u8], chunks: &[usize], max_len: usize) {
    let whole = split(stream, &[], max_len);
    if !chunks.is_empty() {
        let chunked = split(stream, chunks, max_len);
        assert_eq!(whole, chunked, "chunking changed what the splitter yields");
    }
    let bytewise = split(stream, &[1], max_len);
    assert_eq!(
        whole, bytewise,
        "byte-by-byte feeding changed what the splitter yields"
    );

    let mut objects = Vec::new();
    for piece in &whole {
        if let Piece::Object(o, end) = piece {
            let end = usize::try_from(*end).expect("offset fits");
            assert!(end >= o.len() && end <= stream.len());
            assert_eq!(
                &stream[end - o.len()..end],
                &o[..],
                "object is not the stream's bytes"
            );
            // Only brace depth is tracked, not bracket kinds: `{[}]` is cut as one (broken)
            // object, which the frame parser then refuses.
            assert!(o.starts_with(b"{") && (o.ends_with(b"}") || o.ends_with(b"]")));
            assert!(o.len() <= max_len);
            let mut line = Vec::new();
            // What the replay source writes for a split-out frame.
            if let Ok(f) = parse_watch_frame(o) {
                frame::write_watch_object(f.object, &mut line);
                assert!(!has_line_break(&line), "replayed line has a raw line break");
                decode(&line, "replayed line");
                replayed_list(f.object);
            }
            objects.push(o);
        }
    }

    // A stream that is nothing but whitespace-separated JSON objects (compact or pretty, as
    // kubectl writes them) must split into exactly those objects, with no error.
    let parsed: Result<Vec<Value>, _> = serde_json::Deserializer::from_slice(stream)
        .into_iter::<Value>()
        .collect();
    if let Ok(values) = parsed
        && values.iter().all(Value::is_object)
        && !whole
            .iter()
            .any(|p| matches!(p, Piece::Error(SplitError::TooLarge { .. })))
    {
        assert_eq!(
            objects.len(),
            values.len(),
            "valid concatenated objects split differently: {whole:?}"
        );
        assert!(
            whole.iter().all(|p| matches!(p, Piece::Object(..))),
            "error on valid input: {whole:?}"
        );
        for (o, v) in objects.iter().zip(&values) {
            let got: Value = serde_json::from_slice(o).expect("split object is not JSON");
            assert_eq!(&got, v);
        }
    }
}
