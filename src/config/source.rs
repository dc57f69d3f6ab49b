//! Where a setting's value came from, so every message can point the operator at it.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File { path: PathBuf, key: String },
    Env { var: String },
    Flag { flag: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "built-in default"),
            Origin::File { path, key } => write!(f, "config file {}, key {key}", path.display()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Flag { flag } => write!(f, "command-line flag {flag}"),
        }
    }
}

/// A value as the operator wrote it, before it is checked.
#[derive(Debug, Clone)]
pub struct RawValue {
    pub text: String,
    pub origin: Origin,
}

/// A checked value together with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Setting<T> {
    pub fn new(value: T, origin: Origin) -> Self {
        Self { value, origin }
    }

    pub fn default(value: T) -> Self {
        Self {
            value,
            origin: Origin::Default,
        }
    }
}
