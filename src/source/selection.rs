//! Which events the daemon asks for: one namespace or all, and the field and label selectors
//! the API server applies. The same selection goes on every list and watch; a resume point is
//! only valid for the selection that produced it; and a 400 answer to a request carrying a
//! selection is the server refusing the configuration.

use std::sync::{Arc, Mutex};

use crate::config::{Setting, Settings};

use super::api_error::ApiError;
use super::query::percent_encode;

#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub namespace: Option<Setting<String>>,
    pub field_selector: Option<Setting<String>>,
    pub label_selector: Option<Setting<String>>,
}

impl Selection {
    pub fn from_settings(settings: &Settings) -> Selection {
        Selection {
            namespace: settings.namespace.clone(),
            field_selector: settings.field_selector.clone(),
            label_selector: settings.label_selector.clone(),
        }
    }

    pub fn is_everything(&self) -> bool {
        self.namespace.is_none() && self.field_selector.is_none() && self.label_selector.is_none()
    }

    /// The events collection: the namespaced path when a namespace is set, so that a Role in
    /// that namespace is all the daemon needs.
    pub fn collection(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("/api/v1/namespaces/{}/events", percent_encode(&ns.value)),
            None => "/api/v1/events".to_string(),
        }
    }

    /// `&fieldSelector=…&labelSelector=…` for the query string, or nothing.
    pub fn query(&self) -> String {
        let mut q = String::new();
        for (name, setting) in [
            ("fieldSelector", &self.field_selector),
            ("labelSelector", &self.label_selector),
        ] {
            if let Some(s) = setting {
                q.push('&');
                q.push_str(name);
                q.push('=');
                q.push_str(&percent_encode(&s.value));
            }
        }
        q
    }

    /// What is saved beside a resourceVersion: a JSON object of the parts that are set, empty
    /// for every event (so the file of a run without selection keeps its one-line form).
    pub fn fingerprint(&self) -> String {
        if self.is_everything() {
            return String::new();
        }
        let mut map = serde_json::Map::new();
        for (name, setting) in self.parts() {
            if let Some(s) = setting {
                map.insert(name.into(), serde_json::Value::String(s.value.clone()));
            }
        }
        serde_json::Value::Object(map).to_string()
    }

    /// For log lines: `all events`, or the parts that are set.
    pub fn describe(&self) -> String {
        if self.is_everything() {
            return "all events".into();
        }
        self.parts()
            .into_iter()
            .filter_map(|(name, s)| s.as_ref().map(|s| format!("{name} {:?}", s.value)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn parts(&self) -> [(&'static str, &Option<Setting<String>>); 3] {
        [
            ("namespace", &self.namespace),
            ("fieldSelector", &self.field_selector),
            ("labelSelector", &self.label_selector),
        ]
    }

    /// The rejection a 400 answer means, when a selector was sent (without one, a 400 is not
    /// the operator's to fix).
    pub fn rejection(&self, error: &ApiError) -> Option<SelectionRejected> {
        let ApiError::Status {
            code: 400, message, ..
        } = error
        else {
            return None;
        };
        let field = self.field_selector.as_ref().map(|s| ("field_selector", s));
        let label = self.label_selector.as_ref().map(|s| ("label_selector", s));
        let blamed: Vec<_> = match (field, label) {
            (None, None) => return None,
            (Some(f), None) => vec![f],
            (None, Some(l)) => vec![l],
            (Some(f), Some(l)) => match about_fields(message) {
                Some(true) => vec![f],
                Some(false) => vec![l],
                None => vec![f, l],
            },
        };
        let keys = blamed
            .iter()
            .map(|(key, s)| format!("{key} = {:?} ({})", s.value, s.origin))
            .collect::<Vec<_>>()
            .join(" or ");
        Some(SelectionRejected {
            keys,
            message: message.clone(),
        })
    }
}

/// Whether kube-apiserver's message is about the field selector (true) or the label selector
/// (false); None when it cannot be told.
fn about_fields(message: &str) -> Option<bool> {
    if message.starts_with("field label not supported")
        || message.starts_with("invalid field selector")
        || message.starts_with("invalid selector:")
    {
        Some(true)
    } else if message.starts_with("unable to parse requirement")
        || message.starts_with("found '")
        || message.contains("label")
    {
        Some(false)
    } else {
        None
    }
}

/// The API server answered 400 to a request carrying the configured selection.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "configuration error: {keys} was rejected by the API server: {message}; fix it and start \
     again (kube-event-pipe --check-config shows the effective settings)"
)]
pub struct SelectionRejected {
    keys: String,
    message: String,
}

/// Where the first rejection is kept until the watch loop stops on it.
#[derive(Clone, Default)]
pub struct RejectionSlot(Arc<Mutex<Option<SelectionRejected>>>);

impl RejectionSlot {
    pub fn set(&self, r: SelectionRejected) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(r);
    }

    pub fn get(&self) -> Option<SelectionRejected> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    fn flag(name: &str, v: &str) -> Option<Setting<String>> {
        Some(Setting::new(v.into(), Origin::Flag { flag: name.into() }))
    }

    fn bad_request(message: &str) -> ApiError {
        ApiError::Status {
            code: 400,
            reason: "BadRequest".into(),
            message: message.into(),
            continue_token: None,
        }
    }

    #[test]
    fn namespaced_path_and_encoded_selectors() {
        let s = Selection {
            namespace: flag("--namespace", "capture-b"),
            field_selector: flag("--field-selector", "type=Warning,reason!=a b"),
            label_selector: flag("--label-selector", "tier in (web,db)"),
        };
        assert_eq!(s.collection(), "/api/v1/namespaces/capture-b/events");
        assert_eq!(
            s.query(),
            "&fieldSelector=type%3DWarning%2Creason%21%3Da%20b&labelSelector=tier%20in%20%28web%2Cdb%29"
        );
        let everything = Selection::default();
        assert_eq!(everything.collection(), "/api/v1/events");
        assert_eq!(everything.query(), "");
        assert_eq!(everything.fingerprint(), "");
    }

    #[test]
    fn fingerprint_holds_only_what_is_set() {
        let s = Selection {
            field_selector: flag("--field-selector", "type=Warning"),
            ..Selection::default()
        };
        assert_eq!(s.fingerprint(), r#"{"fieldSelector":"type=Warning"}"#);
    }

    #[test]
    fn a_400_names_the_selector_the_message_is_about() {
        let both = Selection {
            field_selector: flag("--field-selector", "spec.nodeName=x"),
            label_selector: flag("--label-selector", "team in (a"),
            ..Selection::default()
        };
        let r = both
            .rejection(&bad_request("field label not supported: spec.nodeName"))
            .unwrap()
            .to_string();
        assert!(
            r.contains("field_selector = \"spec.nodeName=x\" (command-line flag --field-selector)"),
            "{r}"
        );
        assert!(!r.contains("label_selector"), "{r}");
        let r = both
            .rejection(&bad_request(
                "unable to parse requirement: found '', expected: ',' or ')'",
            ))
            .unwrap()
            .to_string();
        assert!(r.contains("label_selector = \"team in (a\""), "{r}");
        assert!(!r.contains("field_selector"), "{r}");
        assert!(Selection::default().rejection(&bad_request("x")).is_none());
        let not_400 = ApiError::Status {
            code: 500,
            reason: String::new(),
            message: "x".into(),
            continue_token: None,
        };
        assert!(both.rejection(&not_400).is_none());
    }
}
