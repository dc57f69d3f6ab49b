//! The TOML layer: read the file, refuse unknown keys, turn values into raw text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::keys;
use super::source::{Origin, RawValue};

/// The packaged config; read only when it exists and no other file was named.
pub const DEFAULT_PATH: &str = "/etc/kube-event-pipe/config.toml";

/// Which file to read, and why.
#[derive(Debug, Clone)]
pub struct FileChoice {
    pub path: PathBuf,
    /// Where the path came from; `Origin::Default` for the packaged path.
    pub origin: Origin,
}

impl FileChoice {
    pub fn resolve(flag: Option<&Path>, env: Option<String>) -> Option<FileChoice> {
        if let Some(path) = flag {
            return Some(FileChoice {
                path: path.to_path_buf(),
                origin: Origin::Flag {
                    flag: "--config".into(),
                },
            });
        }
        if let Some(path) = env.filter(|p| !p.is_empty()) {
            return Some(FileChoice {
                path: PathBuf::from(path),
                origin: Origin::Env {
                    var: "KUBE_EVENT_PIPE_CONFIG".into(),
                },
            });
        }
        let default = Path::new(DEFAULT_PATH);
        default.exists().then(|| FileChoice {
            path: default.to_path_buf(),
            origin: Origin::Default,
        })
    }
}

/// Reads the file and returns the raw value of each key it sets.
pub fn read(choice: &FileChoice) -> Result<BTreeMap<&'static str, RawValue>, Vec<ConfigError>> {
    let text = std::fs::read_to_string(&choice.path).map_err(|source| {
        vec![ConfigError::FileUnreadable {
            path: choice.path.clone(),
            origin: choice.origin.clone(),
            source,
        }]
    })?;
    parse(&choice.path, &text)
}

pub fn parse(
    path: &Path,
    text: &str,
) -> Result<BTreeMap<&'static str, RawValue>, Vec<ConfigError>> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        vec![ConfigError::FileSyntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        }]
    })?;
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, value) in table {
        let Some(key) = keys::ALL.iter().find(|k| k.toml == name) else {
            let suggestion = keys::nearest(keys::ALL.iter().map(|k| k.toml.to_string()), &name);
            errors.push(ConfigError::UnknownFileKey {
                path: path.to_path_buf(),
                key: name,
                suggestion,
            });
            continue;
        };
        let origin = Origin::File {
            path: path.to_path_buf(),
            key: name.clone(),
        };
        match scalar_text(&value) {
            Some(text) => {
                values.insert(key.toml, RawValue { text, origin });
            }
            None => errors.push(ConfigError::FileValueType {
                key: *key,
                origin,
                found: value.type_str(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// Strings, integers, floats and booleans all become text, so the file accepts what the environment does
/// (`"1_000_000"` as well as `1_000_000`).
fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_integers_with_underscores_become_plain_digits() {
        let values = parse(Path::new("c.toml"), "filter_capacity = 1_000_000\n").unwrap();
        assert_eq!(values["filter_capacity"].text, "1000000");
    }

    #[test]
    fn unknown_key_is_refused_with_a_suggestion() {
        let errs = parse(Path::new("c.toml"), "batch_cuont = 3\n").unwrap_err();
        let msg = errs[0].to_string();
        assert!(msg.contains("batch_cuont"), "{msg}");
        assert!(msg.contains("did you mean \"batch_count\""), "{msg}");
    }

    #[test]
    fn a_table_where_a_value_belongs_is_refused() {
        let errs = parse(Path::new("c.toml"), "[destination]\nx = 1\n").unwrap_err();
        assert!(
            errs[0].to_string().contains("is a TOML table"),
            "{}",
            errs[0]
        );
    }
}
