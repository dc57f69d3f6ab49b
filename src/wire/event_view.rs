//! What an event is known by: [`EventView`], the few fields read from an event object, and the
//! identity key built from them that the dedup store remembers. Both readers of events (the
//! serde parse in `identity` and the fast scan in `event_scan`) fill this one type.

use std::borrow::Cow;
use std::fmt;

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

/// Why `identity::parse_event_prefix` gave no view, and where the value ended when it was read whole
/// (`None`: the JSON itself is broken there, or a string in it cannot be decoded).
#[derive(Debug)]
pub struct PrefixError {
    pub error: IdentityError,
    pub end: Option<usize>,
}
