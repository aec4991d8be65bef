//! `exchange-server`: parses the command line and hands over to the supervisor.

use clap::Parser;
use exchange::server::{supervisor, Settings};
use std::process::ExitCode;

fn main() -> ExitCode {
    supervisor::run(Settings::parse())
}
