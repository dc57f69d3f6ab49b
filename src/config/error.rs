//! Configuration errors: each names the key, where its value came from, the value, and what
//! is allowed, because the operator has to fix it without reading the source.

use std::path::PathBuf;

use super::keys::Key;
use super::source::Origin;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} ({origin}) cannot be read: {source}", path.display())]
    FileUnreadable {
        path: PathBuf,
        origin: Origin,
        #[source]
        source: std::io::Error,
    },

    #[error("config file {} is not valid TOML: {message}", path.display())]
    FileSyntax { path: PathBuf, message: String },

    #[error(
        "unknown key \"{key}\" in config file {}{}; valid keys: {}",
        path.display(),
        suggestion.as_ref().map(|s| format!(" (did you mean \"{s}\"?)")).unwrap_or_default(),
        super::keys::ALL.iter().map(|k| k.toml).collect::<Vec<_>>().join(", ")
    )]
    UnknownFileKey {
        path: PathBuf,
        key: String,
        suggestion: Option<String>,
    },

    #[error("{} ({origin}) is a TOML {found}; allowed: a string, a number or a boolean", key.toml)]
    FileValueType {
        key: Key,
        origin: Origin,
        found: &'static str,
    },

    #[error(
        "{} = \"{value}\" ({origin}) cannot be used with --source: the API server applies the \
         selection, and a replayed recording is written whole; unset it, or filter the recording \
         before replaying it",
        key.toml
    )]
    NotWithReplay {
        key: Key,
        value: String,
        origin: Origin,
    },

    #[error("{} = \"{value}\" ({origin}) is invalid; allowed: {allowed}", key.toml)]
    Invalid {
        key: Key,
        value: String,
        origin: Origin,
        allowed: String,
    },
}
