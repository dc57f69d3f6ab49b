use std::process::ExitCode;

use clap::Parser;
use kube_event_pipe::app;
use kube_event_pipe::config::{self, Cli};
use kube_event_pipe::service::exit::Status;
use kube_event_pipe::service::logging;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = match config::load(&cli, &config::process_env()) {
        Ok(loaded) => loaded,
        Err(errors) => {
            // Logging is configured by these very settings, so their errors go to stderr plainly.
            for e in &errors {
                eprintln!("kube-event-pipe: configuration error: {e}");
            }
            return Status::Config.into();
        }
    };
    let settings = loaded.settings;
    logging::init(settings.log_level.value, settings.log_target.value);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if cli.check_config {
        print!("{}", settings.describe());
        return Status::Ok.into();
    }
    match app::run(settings) {
        Ok(()) => Status::Ok.into(),
        Err(fatal) => {
            tracing::error!("{}", fatal.message());
            fatal.status.into()
        }
    }
}
