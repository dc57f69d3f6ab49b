//! The serde reader of an event's identity fields: one pass over the event object picks out
//! `metadata.namespace`, `metadata.name`, `metadata.resourceVersion`, `count` (or
//! `deprecatedCount`) and `series.count`, and skips everything else without building values.
//! Strings are borrowed from the input unless they contain escapes. It accepts every shape
//! serde_json does; `event_scan` is the fast path for the usual ones.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::wire::event_view::{EventView, IdentityError, PrefixError};

/// `identity::parse_event` without the fast scan: the reference the scan is tested against.
pub fn parse_event_serde(object: &[u8]) -> Result<EventView<'_>, IdentityError> {
    let top: Top<'_> = match serde_json::from_slice(object) {
        Ok(t) => t,
        Err(e) => return Err(IdentityError::NotJson(e)),
    };
    view_of(top)
}

/// `identity::parse_event_prefix` without the fast scan.
pub fn parse_event_prefix_serde(bytes: &[u8]) -> Result<(EventView<'_>, usize), PrefixError> {
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
