//! Event identity: the key the dedup store remembers.
//!
//! One serde pass over the event object picks out `metadata.namespace`, `metadata.name`,
//! `metadata.resourceVersion`, `count` (or `deprecatedCount`) and `series.count`, and skips
//! everything else without building values. Strings are borrowed from the input unless they
//! contain escapes.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::event_scan;

/// The fields of an event that identity and logging need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventView<'a> {
    /// `None` when absent, `null` or empty. The API omits an empty namespace, so all three mean
    /// "no namespace" and must give one identity. core/v1 Events are namespaced (events about
    /// cluster-scoped objects land in `default`), so this is rare.
    pub namespace: Option<Cow<'a, str>>,
    pub name: Cow<'a, str>,
    /// Raw JSON text of `count` (or, failing that, events.k8s.io/v1 `deprecatedCount`), trimmed;
    /// `None` when absent or `null`.
    pub count: Option<&'a str>,
    /// Raw JSON text of `series.count`, trimmed; `None` when absent or `null`.
    pub series_count: Option<&'a str>,
    pub resource_version: Option<Cow<'a, str>>,
}

/// Why an object has no identity. The message names the problem, never the object, so the
/// caller can log it and skip the object.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("event object is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("event is not valid UTF-8")]
    NotUtf8,
    #[error("event is {0}, not a JSON object")]
    NotObject(&'static str),
    #[error("event has no metadata")]
    MissingMetadata,
    #[error("event metadata is {0}, not an object")]
    MetadataNotObject(&'static str),
    #[error("event metadata has no name")]
    MissingName,
    #[error("event metadata.name is {0}, not a string")]
    NameNotString(&'static str),
    #[error("event metadata.namespace is {0}, not a string")]
    NamespaceNotString(&'static str),
}

impl EventView<'_> {
    /// Writes the identity into `buf` (cleared first), so one buffer serves every event.
    ///
    /// Identity = namespace + name + count + series.count. The original tool used name + count;
    /// namespace because names are unique only per namespace, series.count because the newer
    /// event recorder counts repeats there while `count` stays empty (DESIGN.md "Identity").
    ///
    /// Each field is `0x00` when absent, or `0x01`, its length as u64 little-endian and its
    /// bytes: no field can run into the next, so distinct tuples give distinct identities, and
    /// an absent field differs from every present value (`count` absent ≠ `count` 0).
    pub fn identity_into(&self, buf: &mut Vec<u8>) {
        buf.clear();
        for field in [
            self.namespace.as_deref(),
            Some(&*self.name),
            self.count,
            self.series_count,
        ] {
            match field {
                None => buf.push(0),
                Some(s) => {
                    buf.push(1);
                    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
                    buf.extend_from_slice(s.as_bytes());
                }
            }
        }
    }
}

/// `namespace/name count=… series.count=…` for log lines.
impl fmt::Display for EventView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} count={} series.count={}",
            self.namespace.as_deref().unwrap_or(""),
            self.name,
            self.count.unwrap_or("absent"),
            self.series_count.unwrap_or("absent")
        )
    }
}

/// Reads the identity fields of an event object: the fast scan when it answers, else serde.
pub fn parse_event(object: &[u8]) -> Result<EventView<'_>, IdentityError> {
    if let Some((view, end)) = event_scan::scan_event(object)
        && object[end..]
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Ok(view);
    }
    parse_event_serde(object)
}

/// [`parse_event`] without the fast scan: the reference the scan is tested against.
pub fn parse_event_serde(object: &[u8]) -> Result<EventView<'_>, IdentityError> {
    let top: Top<'_> = match serde_json::from_slice(object) {
        Ok(t) => t,
        Err(e) => return Err(IdentityError::NotJson(e)),
    };
    view_of(top)
}

/// Why [`parse_event_prefix`] gave no view, and where the value ended when it was read whole
/// (`None`: the JSON itself is broken there, or a string in it cannot be decoded).
#[derive(Debug)]
pub struct PrefixError {
    pub error: IdentityError,
    pub end: Option<usize>,
}

/// [`parse_event`] for the value at the start of `bytes` (after any whitespace), which may be
/// followed by anything, e.g. the rest of a list page: one pass reads the identity fields and
/// finds where the value ends. Returns the view and that end offset.
pub fn parse_event_prefix(bytes: &[u8]) -> Result<(EventView<'_>, usize), PrefixError> {
    if let Some(found) = event_scan::scan_event(bytes) {
        return Ok(found);
    }
    let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<Top<'_>>();
    let top = match values.next() {
        Some(Ok(top)) => top,
        Some(Err(e)) => {
            return Err(PrefixError {
                error: IdentityError::NotJson(e),
                end: None,
            });
        }
        None => {
            return Err(PrefixError {
                error: IdentityError::NotObject("nothing"),
                end: None,
            });
        }
    };
    let end = values.byte_offset();
    match view_of(top) {
        Ok(view) => Ok((view, end)),
        Err(error) => Err(PrefixError {
            error,
            end: Some(end),
        }),
    }
}

fn view_of(top: Top<'_>) -> Result<EventView<'_>, IdentityError> {
    let top = match top {
        Top::Object(t) => t,
        Top::Other(what) => return Err(IdentityError::NotObject(what)),
    };
    let meta = match top.metadata {
        None => return Err(IdentityError::MissingMetadata),
        Some(Meta::Other(what)) => return Err(IdentityError::MetadataNotObject(what)),
        Some(Meta::Object(m)) => m,
    };
    let name = match meta.name {
        None => return Err(IdentityError::MissingName),
        Some(Str::Other(what)) => return Err(IdentityError::NameNotString(what)),
        Some(Str::Str(s)) => s,
    };
    let namespace = match meta.namespace {
        None => None,
        Some(Str::Other(what)) => return Err(IdentityError::NamespaceNotString(what)),
        Some(Str::Str(s)) if s.is_empty() => None,
        Some(Str::Str(s)) => Some(s),
    };
    let resource_version = match meta.resource_version {
        Some(Str::Str(s)) => Some(s),
        // Only informational: a malformed one must not cost the event.
        _ => None,
    };
    Ok(EventView {
        namespace,
        name,
        // events.k8s.io/v1 calls core/v1's `count` `deprecatedCount`; reading either gives the
        // same event the same identity whichever API delivered it.
        count: top.count.or(top.deprecated_count).map(raw_text),
        series_count: top.series_count.map(raw_text),
        resource_version,
    })
}

/// Parses `object` and writes its identity into `buf`; returns the view for logging.
pub fn identity_into<'a>(
    object: &'a [u8],
    buf: &mut Vec<u8>,
) -> Result<EventView<'a>, IdentityError> {
    let view = parse_event(object)?;
    view.identity_into(buf);
    Ok(view)
}

// The raw text rather than a number: a count that is not an integer still identifies an
// occurrence, and the API writes the same text for the same value every time.
fn raw_text(v: &RawValue) -> &str {
    v.get()
        .trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

// Hand-written visitors rather than derived structs: derived structs also accept JSON arrays
// (positionally), and their type errors do not say which field was wrong.

macro_rules! non_map_visits {
    ($ret:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($ret("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($ret("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($ret("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($ret("a number"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($ret("null"))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($ret("an array"))
        }
    };
}

/// A string field: borrowed when the JSON string has no escapes.
enum Str<'a> {
    Str(Cow<'a, str>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str::Str(Cow::Owned(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Str::Other("an object"))
            }
            non_map_visits!(Str::Other);
        }
        d.deserialize_any(V)
    }
}

/// Keys matched without allocating; anything else is skipped.
#[derive(Deserialize)]
#[serde(field_identifier)]
enum TopKey {
    #[serde(rename = "metadata")]
    Metadata,
    #[serde(rename = "count")]
    Count,
    #[serde(rename = "deprecatedCount")]
    DeprecatedCount,
    #[serde(rename = "series")]
    Series,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum MetaKey {
    #[serde(rename = "name")]
    Name,
    #[serde(rename = "namespace")]
    Namespace,
    #[serde(rename = "resourceVersion")]
    ResourceVersion,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum SeriesKey {
    #[serde(rename = "count")]
    Count,
    #[serde(other)]
    Other,
}

struct TopFields<'a> {
    metadata: Option<Meta<'a>>,
    count: Option<&'a RawValue>,
    deprecated_count: Option<&'a RawValue>,
    series_count: Option<&'a RawValue>,
}

enum Top<'a> {
    Object(TopFields<'a>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut t = TopFields {
                    metadata: None,
                    count: None,
                    deprecated_count: None,
                    series_count: None,
                };
                // A repeated key: the last one wins, as in Go's decoder that wrote the object.
                while let Some(key) = map.next_key::<TopKey>()? {
                    match key {
                        TopKey::Metadata => t.metadata = map.next_value::<Option<Meta<'de>>>()?,
                        TopKey::Count => t.count = map.next_value::<Option<&'de RawValue>>()?,
                        TopKey::DeprecatedCount => {
                            t.deprecated_count = map.next_value::<Option<&'de RawValue>>()?
                        }
                        TopKey::Series => {
                            t.series_count =
                                map.next_value::<Option<Series<'de>>>()?.and_then(|s| s.0)
                        }
                        TopKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Top::Object(t))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Top::Other("a string"))
            }
            non_map_visits!(Top::Other);
        }
        d.deserialize_any(V)
    }
}

struct MetaFields<'a> {
    name: Option<Str<'a>>,
    namespace: Option<Str<'a>>,
    resource_version: Option<Str<'a>>,
}

enum Meta<'a> {
    Object(MetaFields<'a>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Meta<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Meta<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("object metadata")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut m = MetaFields {
                    name: None,
                    namespace: None,
                    resource_version: None,
                };
                while let Some(key) = map.next_key::<MetaKey>()? {
                    match key {
                        MetaKey::Name => m.name = map.next_value()?,
                        MetaKey::Namespace => m.namespace = map.next_value()?,
                        MetaKey::ResourceVersion => m.resource_version = map.next_value()?,
                        MetaKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Meta::Object(m))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Meta::Other("a string"))
            }
            non_map_visits!(Meta::Other);
        }
        d.deserialize_any(V)
    }
}

/// `series.count`; a `series` that is not an object has no count rather than costing the event.
struct Series<'a>(Option<&'a RawValue>);

impl<'de> Deserialize<'de> for Series<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Series<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("event series")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut count = None;
                while let Some(key) = map.next_key::<SeriesKey>()? {
                    match key {
                        SeriesKey::Count => count = map.next_value::<Option<&'de RawValue>>()?,
                        SeriesKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Series(count))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Series(None))
            }
            non_map_visits!(|_| Series(None));
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::frame::parse_watch_frame;

    use crate::frame::tests::fixture;

    fn id(obj: &str) -> Vec<u8> {
        let mut buf = Vec::new();
        identity_into(obj.as_bytes(), &mut buf).unwrap();
        buf
    }

    fn event(ns: &str, name: &str, tail: &str) -> String {
        format!(r#"{{"kind":"Event","metadata":{{"name":"{name}","namespace":"{ns}"}}{tail}}}"#)
    }

    #[test]
    fn fixture_watch_identities() {
        let data = fixture("raw-watch.jsonl");
        let mut got = Vec::new();
        let mut ids = Vec::new();
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let f = parse_watch_frame(line).unwrap();
            let mut buf = Vec::new();
            let v = identity_into(f.object, &mut buf).unwrap();
            got.push(format!(
                "{} {v} rv={}",
                f.frame_type,
                v.resource_version.as_deref().unwrap_or("")
            ));
            ids.push(buf);
        }
        let want = [
            "ADDED demo/web-7d4b9c.187a1f2e3c4d5e6f count=1 series.count=absent rv=210",
            "MODIFIED demo/web-7d4b9c.187a1f2e3c4d5e6f count=2 series.count=absent rv=211",
            "MODIFIED demo/web-7d4b9c.187a1f2e3c4d5e6f count=3 series.count=absent rv=212",
            "ADDED default/sched.187a1f2e3c4d0001 count=absent series.count=absent rv=213",
            "MODIFIED default/sched.187a1f2e3c4d0001 count=absent series.count=2 rv=214",
            "MODIFIED default/sched.187a1f2e3c4d0001 count=absent series.count=3 rv=215",
            "DELETED demo/web-7d4b9c.187a1f2e3c4d5e6f count=3 series.count=absent rv=216",
            "ADDED demo/job-1.7t2vv count=1 series.count=absent rv=217",
            "ADDED demo/job-2.tl4s2 count=1 series.count=absent rv=218",
            "ADDED demo/job-3.tkzfd count=1 series.count=absent rv=219",
            "ADDED demo/job-4.lmsx5 count=1 series.count=absent rv=220",
            "ADDED demo/job-5.qsmq6 count=1 series.count=absent rv=221",
            "ADDED demo/late.xsjhw count=1 series.count=absent rv=228",
        ];
        assert_eq!(got, want);
        // DELETED repeats the last MODIFIED identity, so the store skips it.
        assert_eq!(ids[6], ids[2]);
        // Every other frame is a new occurrence.
        let mut distinct = ids.clone();
        distinct.remove(6);
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), ids.len() - 1);
    }

    #[test]
    fn list_and_watch_copies_agree() {
        // The same event from a list page and from kubectl's re-serialized watch output.
        let body = fixture("raw-list-page1.json");
        let page = crate::frame::parse_list(&body).unwrap();
        let kubectl = fixture("kubectl-watch.json");
        let first = kubectl.split(|&b| b == b'\n').next().unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        identity_into(page.items[0], &mut a).unwrap();
        identity_into(parse_watch_frame(first).unwrap().object, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn events_k8s_io_copies_have_the_core_identities() {
        let ids = |name: &str| -> Vec<Vec<u8>> {
            let body = fixture(name);
            let page = crate::frame::parse_list(&body).unwrap();
            page.items
                .iter()
                .map(|item| {
                    let mut buf = Vec::new();
                    identity_into(item, &mut buf).unwrap();
                    buf
                })
                .collect()
        };
        let core = ids("raw-list-compact.json");
        assert_eq!(core.len(), 7);
        assert_eq!(core, ids("raw-list-events-v1.json"));
        // Both spellings present: `count` wins.
        let both = id(&event("ns", "e", r#","deprecatedCount":5,"count":2"#));
        assert_eq!(both, id(&event("ns", "e", r#","count":2"#)));
    }

    #[test]
    fn counts_decide() {
        let c2 = id(&event("ns", "e", r#","count":2"#));
        let c3 = id(&event("ns", "e", r#","count":3"#));
        let c0 = id(&event("ns", "e", r#","count":0"#));
        let absent = id(&event("ns", "e", ""));
        let null = id(&event("ns", "e", r#","count":null"#));
        assert_ne!(c2, c3);
        assert_ne!(absent, c0);
        assert_eq!(absent, null);
        let s2 = id(&event(
            "ns",
            "e",
            r#","series":{"count":2,"lastObservedTime":"x"}"#,
        ));
        let s3 = id(&event(
            "ns",
            "e",
            r#","series":{"lastObservedTime":"y","count":3}"#,
        ));
        assert_ne!(s2, s3);
        assert_ne!(s2, absent);
        assert_ne!(s2, c2, "series.count 2 is not count 2");
        assert_eq!(id(&event("ns", "e", r#","series":null"#)), absent);
        assert_eq!(id(&event("ns", "e", r#","series":{}"#)), absent);
        assert_eq!(id(&event("ns", "e", r#","series":"odd""#)), absent);
        // Whitespace around numbers does not matter.
        assert_eq!(id(&event("ns", "e", " ,\"count\" :\n 2 \n")), c2);
        // Other fields do not matter.
        assert_eq!(
            id(&event(
                "ns",
                "e",
                r#","count":2,"message":"m","lastTimestamp":"t""#
            )),
            c2
        );
    }

    #[test]
    fn odd_counts_are_identities_not_errors() {
        let v = id(&event("ns", "e", r#","count":"7""#));
        assert_ne!(v, id(&event("ns", "e", r#","count":7"#)));
        let mut buf = Vec::new();
        let obj = event("ns", "e", r#","count":{"x": [1, 2]}"#);
        let view = identity_into(obj.as_bytes(), &mut buf).unwrap();
        assert_eq!(view.count, Some(r#"{"x": [1, 2]}"#));
    }

    #[test]
    fn namespace_absent_null_empty_are_one() {
        let a = id(r#"{"metadata":{"name":"e"}}"#);
        assert_eq!(a, id(r#"{"metadata":{"name":"e","namespace":null}}"#));
        assert_eq!(a, id(r#"{"metadata":{"name":"e","namespace":""}}"#));
        assert_ne!(a, id(r#"{"metadata":{"name":"e","namespace":"default"}}"#));
    }

    #[test]
    fn escaped_strings() {
        let obj = br#"{"metadata":{"namespace":"d\u00e9mo","name":"a\"b\\c\/d","resourceVersion":"\u0031"}}"#;
        let v = parse_event(obj).unwrap();
        assert_eq!(v.namespace.as_deref(), Some("démo"));
        assert_eq!(v.name, "a\"b\\c/d");
        assert_eq!(v.resource_version.as_deref(), Some("1"));
        let plain = parse_event(br#"{"metadata":{"name":"plain"}}"#).unwrap();
        assert!(
            matches!(plain.name, Cow::Borrowed(_)),
            "no copy without escapes"
        );
        // The decoded name is the identity, not its spelling on the wire.
        assert_eq!(
            id(r#"{"metadata":{"name":"\u0061"}}"#),
            id(r#"{"metadata":{"name":"a"}}"#)
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases: [(&str, &str); 12] = [
            ("", "not valid JSON"),
            (r#"{"metadata":{"name":"x"}"#, "not valid JSON"),
            ("[1,2]", "event is an array, not a JSON object"),
            (r#""s""#, "event is a string, not a JSON object"),
            ("{}", "event has no metadata"),
            (r#"{"metadata":null}"#, "event has no metadata"),
            (
                r#"{"metadata":[{"name":"x"}]}"#,
                "event metadata is an array, not an object",
            ),
            (r#"{"metadata":{}}"#, "event metadata has no name"),
            (
                r#"{"metadata":{"name":null}}"#,
                "event metadata has no name",
            ),
            (
                r#"{"metadata":{"name":5}}"#,
                "event metadata.name is a number, not a string",
            ),
            (
                r#"{"metadata":{"name":{"a":1}}}"#,
                "event metadata.name is an object, not a string",
            ),
            (
                r#"{"metadata":{"name":"x","namespace":true}}"#,
                "event metadata.namespace is a boolean, not a string",
            ),
        ];
        for (obj, want) in cases {
            let e = parse_event(obj.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{obj}: {e}");
        }
        let secret = r#"{"metadata":{"name":7},"message":"SECRET"}"#;
        assert!(
            !parse_event(secret.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("SECRET")
        );
        // A malformed resourceVersion costs nothing.
        assert!(parse_event(br#"{"metadata":{"name":"x","resourceVersion":5}}"#).is_ok());
    }

    #[test]
    fn separators_in_names_do_not_collide() {
        // Under a naive "ns/name/count" key these would all be "a/b/c/1".
        let x = id(&event("a", "b/c", r#","count":1"#));
        let y = id(&event("a/b", "c", r#","count":1"#));
        assert_ne!(x, y);
        let nul = id(&event("a", "b\\u0000\\u0001", ""));
        let plain = id(&event("a", "b", ""));
        assert_ne!(nul, plain);
    }

    /// Throughput of the per-event hot path (frame parse + identity) over the captured watch
    /// lines. Run optimised: `cargo test --release --lib -- --ignored --nocapture throughput`.
    #[test]
    #[ignore = "measurement, not a check"]
    fn throughput() {
        let data = fixture("raw-watch.jsonl");
        let lines: Vec<&[u8]> = data
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let bytes: usize = lines.iter().map(|l| l.len()).sum();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let rounds = 20_000;
        let start = std::time::Instant::now();
        let mut check = 0usize;
        for _ in 0..rounds {
            for line in &lines {
                let f = parse_watch_frame(line).unwrap();
                identity_into(f.object, &mut buf).unwrap();
                out.clear();
                crate::frame::write_watch_object(f.object, &mut out);
                check += buf.len() + out.len();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let frames = (rounds * lines.len()) as f64;
        println!(
            "{frames} frames ({} B avg) in {secs:.3} s: {:.0} frames/s, {:.0} MB/s (check {check})",
            bytes / lines.len(),
            frames / secs,
            (rounds * bytes) as f64 / secs / 1e6
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        type Tuple = (Option<String>, String, Option<String>, Option<String>);

        fn count_text() -> impl Strategy<Value = Option<String>> {
            proptest::option::of(prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                ".{0,4}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            ])
        }

        fn tuple() -> impl Strategy<Value = Tuple> {
            // Tiny alphabets containing separator-like bytes make collisions likely to be tried.
            (
                proptest::option::of("[a/\u{0}\u{1}-]{1,4}"),
                "[a/\u{0}\u{1}-]{0,4}",
                count_text(),
                count_text(),
            )
        }

        fn object((ns, name, count, series): &Tuple) -> String {
            let mut meta = serde_json::Map::new();
            meta.insert("name".into(), name.clone().into());
            if let Some(ns) = ns {
                meta.insert("namespace".into(), ns.clone().into());
            }
            let mut s = format!(r#"{{"metadata":{}"#, serde_json::Value::Object(meta));
            if let Some(c) = count {
                s.push_str(&format!(r#","count":{c}"#));
            }
            if let Some(c) = series {
                s.push_str(&format!(r#","series":{{"count":{c}}}"#));
            }
            s.push('}');
            s
        }

        proptest! {
            #[test]
            fn distinct_tuples_distinct_identities(a in tuple(), b in tuple()) {
                let ia = id(&object(&a));
                let ib = id(&object(&b));
                prop_assert_eq!(a == b, ia == ib, "{:?} {:?}", a, b);
            }

            #[test]
            fn buffer_reuse_gives_the_same_identity(a in tuple(), b in tuple()) {
                let mut buf = Vec::new();
                let oa = object(&a);
                let ob = object(&b);
                identity_into(ob.as_bytes(), &mut buf).unwrap();
                identity_into(oa.as_bytes(), &mut buf).unwrap();
                prop_assert_eq!(buf, id(&oa));
            }
        }
    }
}
