//! The TOML config layer: `config::file::parse`, then `config::settings::build`.
//!
//! Input: the text of a config file (bytes that are not UTF-8 are replaced, as reading the file
//! would refuse them before parsing). Checked:
//! - never panics;
//! - an error list is never empty, and every message names the file or the key it is about;
//! - accepted settings, written out by `describe()` (what `--check-config` prints, documented
//!   as usable as a config file), parse and build again to the same values.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use kube_event_pipe::config::keys;
use kube_event_pipe::config::settings::{self, Settings};
use kube_event_pipe::config::{ConfigError, file};
use libfuzzer_sys::fuzz_target;

const PATH: &str = "/nonexistent/fuzz/config.toml";
const PATH2: &str = "/nonexistent/fuzz/described.toml";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Some(settings) = load(PATH, &text) else {
        return;
    };
    let described = settings.describe();
    let again = load(PATH2, &described)
        .unwrap_or_else(|| panic!("describe() output is refused:\n{described}"));
    same(&settings, &again, &described);
});

fn load(path: &str, text: &str) -> Option<Settings> {
    let values = match file::parse(Path::new(path), text) {
        Ok(v) => v,
        Err(errors) => {
            check_errors(path, &errors);
            return None;
        }
    };
    for (key, raw) in &values {
        assert!(keys::ALL.iter().any(|k| k.toml == *key));
        assert!(raw.origin.to_string().contains(path));
    }
    let empty = BTreeMap::new();
    match settings::build([&values, &empty, &empty], None, None) {
        Ok(s) => Some(s),
        Err(errors) => {
            check_errors(path, &errors);
            None
        }
    }
}

fn check_errors(path: &str, errors: &[ConfigError]) {
    assert!(!errors.is_empty(), "an error result without errors");
    for e in errors {
        let msg = e.to_string();
        let names_key = keys::ALL.iter().any(|k| msg.contains(k.toml));
        assert!(
            msg.contains(path) || names_key,
            "message names neither the file nor a key: {msg}"
        );
        if let ConfigError::Invalid { key, .. } | ConfigError::FileValueType { key, .. } = e {
            assert!(msg.contains(key.toml), "{msg}");
        }
    }
}

fn same(a: &Settings, b: &Settings, described: &str) {
    let ctx = || format!("round trip through describe() changed a value:\n{described}");
    assert_eq!(a.destination.value, b.destination.value, "{}", ctx());
    assert_eq!(a.log_level.value, b.log_level.value, "{}", ctx());
    assert_eq!(
        a.persistence_path.value,
        b.persistence_path.value,
        "{}",
        ctx()
    );
    assert_eq!(
        a.filter_capacity.value,
        b.filter_capacity.value,
        "{}",
        ctx()
    );
    assert_eq!(
        a.filter_error_rate.value.to_bits(),
        b.filter_error_rate.value.to_bits(),
        "{}",
        ctx()
    );
    assert_eq!(a.batch_count.value, b.batch_count.value, "{}", ctx());
    assert_eq!(a.batch_duration.value, b.batch_duration.value, "{}", ctx());
    assert_eq!(
        a.kubeconfig.as_ref().map(|s| &s.value),
        b.kubeconfig.as_ref().map(|s| &s.value),
        "{}",
        ctx()
    );
    assert_eq!(
        a.context.as_ref().map(|s| &s.value),
        b.context.as_ref().map(|s| &s.value),
        "{}",
        ctx()
    );
    assert_eq!(a.log_target.value, b.log_target.value, "{}", ctx());
    assert_eq!(
        a.watch_idle_timeout.value,
        b.watch_idle_timeout.value,
        "{}",
        ctx()
    );
    assert_eq!(
        a.metrics_address.value,
        b.metrics_address.value,
        "{}",
        ctx()
    );
}
