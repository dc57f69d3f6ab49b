//! Runs the daemon with checked settings.

use crate::config::Settings;
use crate::exit::Fatal;

pub fn run(_settings: Settings) -> Result<(), Fatal> {
    Err(Fatal::failure(anyhow::anyhow!(
        "no event source is built into this version yet"
    )))
}
