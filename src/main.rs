//! `exchange-server`: parses the command line and hands over to the supervisor, or to
//! the `migrate` command.

use clap::Parser;
use exchange::server::settings::Command;
use exchange::server::{logging, migrate, supervisor, Settings};
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = Settings::parse();
    logging::init(settings.log_format);
    match settings.command {
        Some(Command::Migrate) => migrate::run(&settings),
        None => supervisor::run(settings),
    }
}
