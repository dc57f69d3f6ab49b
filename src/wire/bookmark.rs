//! BOOKMARK objects of a streaming list: the one annotated `k8s.io/initial-events-end: "true"`
//! marks the end of the initial events, and its resourceVersion is where the state they make
//! up is complete (kube-apiserver sends the initial events in namespace/name order, so no
//! version before it says anything about what was received).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use super::frame::FrameError;

/// The annotation kube-apiserver puts on the bookmark that ends the initial events (KEP-3157).
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, rename = "resourceVersion", default)]
    resource_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    annotations: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

#[derive(Deserialize)]
struct Object<'a> {
    #[serde(borrow, default)]
    metadata: Option<Meta<'a>>,
}

/// The resourceVersion of the bookmark that ends a streaming list's initial events; `None`
/// for any other bookmark.
pub fn initial_events_end(object: &[u8]) -> Result<Option<Cow<'_, str>>, FrameError> {
    let o: Object<'_> = serde_json::from_slice(object).map_err(FrameError::BadMetadata)?;
    let Some(meta) = o.metadata else {
        return Ok(None);
    };
    let end = meta
        .annotations
        .is_some_and(|a| a.get(INITIAL_EVENTS_END).is_some_and(|v| v == "true"));
    Ok(if end { meta.resource_version } else { None })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::wire::frame::{self, FrameType, tests::fixture};

    #[test]
    fn the_captured_end_bookmark_gives_its_version_and_others_none() {
        let capture = fixture("watchlist.jsonl");
        let mut ends = Vec::new();
        for line in capture.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let f = frame::parse_watch_frame(line).unwrap();
            if f.frame_type == FrameType::Bookmark {
                ends.push(
                    initial_events_end(f.object)
                        .unwrap()
                        .map(|v| v.into_owned()),
                );
            } else {
                assert_eq!(initial_events_end(f.object).unwrap(), None);
            }
        }
        assert_eq!(ends, [Some("211".to_string())]);
        let plain = br#"{"kind":"Event","apiVersion":"v1","metadata":{"resourceVersion":"7"}}"#;
        assert_eq!(initial_events_end(plain).unwrap(), None);
        let not_true = br#"{"metadata":{"resourceVersion":"7","annotations":{"k8s.io/initial-events-end":"false"}}}"#;
        assert_eq!(initial_events_end(not_true).unwrap(), None);
        assert!(initial_events_end(b"{").is_err());
    }
}
