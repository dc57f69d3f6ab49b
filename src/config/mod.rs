//! Configuration in four layers, later wins: built-in defaults < TOML file <
//! `KUBE_EVENT_PIPE_*` environment < command-line flags.

pub mod cli;
pub mod error;
pub mod file;
pub mod keys;
pub mod selectors;
pub mod settings;
pub mod source;
pub mod values;

use std::collections::BTreeMap;

pub use cli::Cli;
pub use error::ConfigError;
pub use settings::{Destination, LogTarget, Settings};
pub use source::{Origin, Setting};

/// Settings plus the remarks that should be logged once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

/// Builds the settings from the flags and the given environment (passed in so tests and the
/// binary use the same path).
pub fn load(cli: &Cli, env: &BTreeMap<String, String>) -> Result<Loaded, Vec<ConfigError>> {
    let choice = file::FileChoice::resolve(
        cli.config.as_deref(),
        env.get("KUBE_EVENT_PIPE_CONFIG").cloned(),
    );
    let file_values = match &choice {
        Some(c) => file::read(c)?,
        None => BTreeMap::new(),
    };

    let mut warnings = Vec::new();
    let mut env_values = BTreeMap::new();
    for (var, text) in env {
        let Some(suffix) = var.strip_prefix("KUBE_EVENT_PIPE_") else {
            continue;
        };
        if suffix == "CONFIG" {
            continue;
        }
        match keys::ALL.iter().find(|k| k.env_var() == *var) {
            Some(key) => {
                env_values.insert(
                    key.toml,
                    source::RawValue {
                        text: text.clone(),
                        origin: Origin::Env { var: var.clone() },
                    },
                );
            }
            // An unrelated variable that happens to share the prefix should not stop the
            // service, but a typo should be visible, so warn rather than fail.
            None => warnings.push(format!(
                "ignoring unknown environment variable {var}{}",
                keys::nearest(keys::ALL.iter().map(|k| k.env_var()), var)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default()
            )),
        }
    }

    let mut flag_values = BTreeMap::new();
    for key in keys::ALL {
        if let Some(text) = cli.value_of(key) {
            flag_values.insert(
                key.toml,
                source::RawValue {
                    text: text.to_string(),
                    origin: Origin::Flag { flag: key.flag() },
                },
            );
        }
    }

    let settings = settings::build(
        [&file_values, &env_values, &flag_values],
        choice,
        cli.source.clone(),
    )?;
    Ok(Loaded { settings, warnings })
}

/// The process environment as UTF-8 pairs; variables that are not UTF-8 cannot be ours.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}
