//! The server's log: one line per event on standard error, with a timestamp (UTC), a
//! level, the thread, and the process it comes from (`supervisor`, `worker{slot}`,
//! `status`, each with its pid); filtered as `RUST_LOG` says (default `info`), as text
//! or, with `--log-format json`, one JSON object per line.
//!
//! Installed once in the supervisor before any fork, so every worker inherits it. Each
//! line is formatted whole and written with one call, so lines from different
//! processes sharing the descriptor do not interleave.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: `2026-11-30T20:16:40.123456Z  INFO main supervisor{pid=42}: ...`.
    Text,
    /// For log shippers: one JSON object per line, with the same fields.
    Json,
}

/// Installs the process-wide subscriber. A `RUST_LOG` that does not parse is reported
/// and replaced by the default rather than silencing the log.
pub fn init(format: LogFormat) {
    let (filter, bad_filter) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(e) if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() => {
            (EnvFilter::new("info"), Some(e))
        }
        Err(_) => (EnvFilter::new("info"), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_thread_names(true)
        .with_target(false);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
    // Only a second call in the same process (a test) finds one installed already.
    drop(installed);
    if let Some(e) = bad_filter {
        tracing::warn!("RUST_LOG ignored ({e}); logging at info");
    }
}
