//! A watch frame whose object is a whole list. When kubectl's initial list takes more than one
//! chunk (`--chunk-size`, 500 by default), `kubectl get -w --output-watch-events -o json` prints
//! each chunk as one frame, `{"type":"ADDED","object":{"apiVersion":"v1","items":[…],
//! "kind":"EventList","metadata":{…}}}`, instead of one frame per event. Such an object stands
//! for its items, each an event as kubectl printed it (with its own `kind` and `apiVersion`).

use crate::wire::list_page::{Item, ListReader};

/// The items of `object` when it is a list: a JSON object whose `kind` ends in `List`. `items`
/// `null` or absent is an empty list, as on the API path ([`ListReader`]). `None` for anything
/// else, which the caller treats as one event.
///
/// Each item is read in one pass with its identity (or the reason it has none), so one broken
/// item costs only itself. kubectl sorts keys, so `items` comes before `kind`: the whole object
/// is read before anything is handed out.
pub fn list_items(object: &[u8]) -> Option<Vec<Item<'_>>> {
    let mut reader = ListReader::new(object).ok()?;
    let mut items = Vec::new();
    while let Some(item) = reader.next_item().ok()? {
        items.push(item);
    }
    let kind = reader.into_envelope().kind?;
    kind.ends_with("List").then_some(items)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::wire::frame::parse_watch_frame;
    use crate::wire::frame::tests::fixture;

    #[test]
    fn kubectl_chunks_are_lists_of_their_items_and_live_frames_are_not() {
        let data = fixture("kubectl-watch-chunked.json");
        let mut counts = Vec::new();
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let object = parse_watch_frame(line).unwrap().object;
            match list_items(object) {
                Some(items) => {
                    let v: serde_json::Value = serde_json::from_slice(object).unwrap();
                    for (i, item) in items.iter().enumerate() {
                        assert!(item.view.is_ok());
                        // Exactly the item's bytes in the frame.
                        let want = serde_json::to_vec(&v["items"][i]).unwrap();
                        assert_eq!(item.bytes, &want[..]);
                    }
                    counts.push(items.len());
                }
                None => counts.push(0),
            }
        }
        assert_eq!(
            counts,
            [2, 2, 1, 0],
            "three list chunks, then one live event"
        );
    }

    #[test]
    fn what_is_a_list() {
        let ev = r#"{"kind":"Event","metadata":{"name":"a","namespace":"n"},"count":1}"#;
        for (object, want) in [
            (
                format!(r#"{{"items":[{ev},{ev}],"kind":"EventList"}}"#),
                Some(2),
            ),
            (format!(r#"{{"kind":"List","items":[{ev}]}}"#), Some(1)),
            (
                r#"{"apiVersion":"v1","items":[],"kind":"EventList"}"#.into(),
                Some(0),
            ),
            (r#"{"items":null,"kind":"EventList"}"#.into(), Some(0)),
            (r#"{"kind":"EventList","metadata":{}}"#.into(), Some(0)),
            (
                format!("{{\n  \"items\": [\n    {ev}\n  ],\n  \"kind\": \"EventList\"\n}}"),
                Some(1),
            ),
            // Not lists: an event, a list without kind, a kind not ending in List, and shapes
            // the list reader refuses.
            (ev.into(), None),
            (format!(r#"{{"items":[{ev}]}}"#), None),
            (format!(r#"{{"items":[{ev}],"kind":"Listing"}}"#), None),
            (r#"{"items":7,"kind":"EventList"}"#.into(), None),
            (r#"{"kind":7,"items":[]}"#.into(), None),
            ("[]".into(), None),
        ] {
            let got = list_items(object.as_bytes()).map(|items| items.len());
            assert_eq!(got, want, "{object}");
        }
    }

    #[test]
    fn an_item_without_identity_is_handed_out_with_the_reason() {
        let object = br#"{"items":[{"metadata":{"name":"a"}},{"count":2},{"metadata":{"name":"b"}}],"kind":"EventList"}"#;
        let items = list_items(object).unwrap();
        let ok: Vec<bool> = items.iter().map(|i| i.view.is_ok()).collect();
        assert_eq!(ok, [true, false, true]);
        assert_eq!(items[1].bytes, br#"{"count":2}"#);
    }
}
