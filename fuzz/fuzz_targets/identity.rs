//! Event identity extraction: `parse_event` / `identity_into`.
//!
//! Input: an event object as a watch frame carries it. Checked:
//! - never panics;
//! - the identity bytes decode back, unambiguously and completely, to the view's fields
//!   (`0x00` absent / `0x01` + u64 LE length + bytes, for namespace, name, count, series.count);
//! - `identity_into` gives the same bytes as building the view and then the identity;
//! - the view agrees with a full `serde_json::Value` parse of the same bytes: it is found exactly
//!   when metadata is an object with a string name and a string/null/absent namespace, and each
//!   field is the value the full parse sees (last key wins in both);
//! - the fast scan (`event_scan::scan_event`), whenever it answers, gives exactly the serde
//!   parse's view, and the end it reports is where serde_json's stream reader stops;
//! - the same event re-serialized by serde_json (other whitespace, other escapes) has the same
//!   identity, as long as its count texts are unchanged.
#![no_main]

use kube_event_pipe::wire::event_scan::scan_event;
use kube_event_pipe::wire::event_serde::parse_event_serde;
use kube_event_pipe::wire::event_view::EventView;
use kube_event_pipe::wire::identity::{identity_into, parse_event, parse_event_prefix};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    fast_scan_agrees_with_serde(data);
    let mut buf = Vec::new();
    let got = identity_into(data, &mut buf);
    let view = parse_event(data);
    match (&got, &view) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("identity_into and parse_event disagree"),
    }
    let full: Option<Value> = serde_json::from_slice(data).ok();
    match view {
        Ok(view) => {
            let _ = view.to_string();
            check_encoding(&view, &buf);
            if let Some(v) = &full {
                check_against_value(&view, v);
                check_reserialized(&view, &buf, v);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            if let Some(v) = &full {
                assert!(
                    !identifiable(v),
                    "refused an identifiable event ({msg}): {v}"
                );
            }
        }
    }
});

/// Splits the identity bytes back into its four fields; panics on anything ambiguous.
fn decode(mut id: &[u8]) -> [Option<&[u8]>; 4] {
    let mut fields = [None; 4];
    for field in &mut fields {
        let (&tag, rest) = id.split_first().expect("identity ends early");
        id = rest;
        match tag {
            0 => {}
            1 => {
                let (len, rest) = id.split_at_checked(8).expect("length cut off");
                let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
                let len = usize::try_from(len).expect("length fits");
                let (bytes, rest) = rest.split_at_checked(len).expect("field cut off");
                *field = Some(bytes);
                id = rest;
            }
            t => panic!("bad field tag {t}"),
        }
    }
    assert!(id.is_empty(), "bytes after the last field");
    fields
}

fn check_encoding(view: &EventView<'_>, id: &[u8]) {
    let [ns, name, count, series] = decode(id);
    assert_eq!(ns, view.namespace.as_deref().map(str::as_bytes));
    assert_eq!(name, Some(view.name.as_bytes()));
    assert_eq!(count, view.count.map(str::as_bytes));
    assert_eq!(series, view.series_count.map(str::as_bytes));
    assert_ne!(ns, Some(&b""[..]), "an empty namespace must read as none");
    let mut again = Vec::from(&b"junk"[..]);
    view.identity_into(&mut again);
    assert_eq!(
        again, id,
        "identity_into must clear the buffer and be deterministic"
    );
    for text in [view.count, view.series_count].into_iter().flatten() {
        assert_eq!(
            text,
            text.trim_matches([' ', '\t', '\n', '\r']),
            "count not trimmed"
        );
        // Valid JSON, but maybe not a Value: serde_json refuses numbers past f64 (`1e400`),
        // which the identity keeps as text.
        let raw: &RawValue = serde_json::from_str(text).expect("count text is not JSON");
        assert_ne!(raw.get(), "null", "a null count must read as absent");
    }
}

fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn identifiable(v: &Value) -> bool {
    let Some(meta) = v.get("metadata").and_then(Value::as_object) else {
        return false;
    };
    meta.get("name").is_some_and(Value::is_string)
        && meta
            .get("namespace")
            .is_none_or(|n| n.is_string() || n.is_null())
}

fn check_against_value(view: &EventView<'_>, v: &Value) {
    assert!(
        identifiable(v),
        "identified an event without a usable name: {v}"
    );
    let meta = &v["metadata"];
    assert_eq!(meta["name"].as_str(), Some(&*view.name));
    let ns = meta
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    assert_eq!(ns, view.namespace.as_deref());
    let rv = meta.get("resourceVersion").and_then(Value::as_str);
    assert_eq!(rv, view.resource_version.as_deref());
    let count = non_null(v.get("count")).or(non_null(v.get("deprecatedCount")));
    let series = non_null(v.get("series").and_then(|s| s.as_object()?.get("count")));
    for (text, want) in [(view.count, count), (view.series_count, series)] {
        // The whole object parsed as a Value, so its numbers are in range.
        let parsed: Option<Value> = text.map(|t| serde_json::from_str(t).expect("count JSON"));
        assert_eq!(parsed.as_ref(), want, "count differs from a full parse");
    }
}

fn check_reserialized(view: &EventView<'_>, id: &[u8], v: &Value) {
    let Ok(text) = serde_json::to_vec_pretty(v) else {
        return;
    };
    let mut id2 = Vec::new();
    let view2 = identity_into(&text, &mut id2).expect("re-serialized event lost its identity");
    assert_eq!(view2.namespace, view.namespace);
    assert_eq!(view2.name, view.name);
    if view2.count == view.count && view2.series_count == view.series_count {
        assert_eq!(id2, id, "same fields, different identity");
    }
}

/// The fast scan answers only what the serde parse would answer, both for a whole object and
/// for one followed by more bytes (as in a list page).
fn fast_scan_agrees_with_serde(data: &[u8]) {
    let Some((view, end)) = scan_event(data) else {
        return;
    };
    assert!(end <= data.len());
    let object = &data[..end];
    match parse_event_serde(object) {
        Ok(reference) => assert_eq!(view, reference, "the fast scan disagrees with serde"),
        Err(e) => panic!("the fast scan answered where serde refuses ({e})"),
    }
    // serde_json's stream reader ends the value where the scan does.
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<&RawValue>();
    if let Some(Ok(_)) = values.next() {
        assert_eq!(values.byte_offset(), end, "the fast scan ends the value elsewhere");
    }
    let (prefix_view, prefix_end) = parse_event_prefix(data).expect("prefix parse");
    assert_eq!((prefix_view, prefix_end), (view, end));
}
