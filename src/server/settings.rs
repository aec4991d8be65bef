//! The server's command line: every flag, its default, and its help text.

use crate::protocol::ParseLimits;
use crate::store::DatabaseTimeouts;
use clap::Parser;

/// A prefork stock-exchange matching server speaking length-framed XML over TCP,
/// with PostgreSQL as the book of record.
#[derive(Clone, Debug, Parser)]
// A flag given twice takes its last value, so wrappers can set defaults and users
// override them (`scripts/run --threads 8`).
#[command(name = "exchange-server", version, about, long_about = None, args_override_self = true)]
pub struct Settings {
    /// TCP port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 12345)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: String,

    /// Worker processes [default: the number of CPUs this process may run on].
    #[arg(long)]
    pub workers: Option<usize>,

    /// Handler threads per worker, each reading its own requests and holding its own
    /// database connection (and each worker's flusher has one more).
    // One per worker, and so one matching session per CPU by default: on 2 CPUs, with
    // the database on the same machine, 2 handlers per worker served 4-15% fewer
    // requests than 1, and 4 and 6 fewer still. A database far away may want more.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Pin worker i to the i-th CPU (cycling) of the set this process may run on,
    /// so that `taskset -c 2,3 exchange-server --pin` puts the workers on CPUs 2 and 3.
    #[arg(long)]
    pub pin: bool,

    /// PostgreSQL connection URL, e.g. postgres://user@localhost:5432/exchange.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@localhost:5432/exchange"
    )]
    pub database_url: String,

    /// Largest request accepted, in bytes, not counting the length line.
    #[arg(long, default_value_t = 1 << 20)]
    pub request_bytes_max: usize,

    /// Most operations (orders, queries, cancels, creates) in one request.
    #[arg(long, default_value_t = 10_000)]
    pub operations_max: usize,

    /// Deepest element nesting accepted.
    #[arg(long, default_value_t = 8)]
    pub depth_max: usize,

    /// Time a client has to send its whole request, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Connections each handler thread reads at once; more wait in the kernel's backlog.
    #[arg(long, default_value_t = 1024)]
    pub connections_max: usize,

    /// On SIGTERM or SIGINT, how long workers may finish requests in flight before
    /// they are killed, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub grace_period_ms: u64,

    /// Longest one database statement may run, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub statement_timeout_ms: u64,
}

impl Settings {
    pub fn parse_limits(&self) -> ParseLimits {
        ParseLimits {
            depth_max: self.depth_max,
            operations_max: self.operations_max,
        }
    }

    pub fn database_timeouts(&self) -> DatabaseTimeouts {
        DatabaseTimeouts {
            statement_ms: self.statement_timeout_ms,
            idle_in_transaction_ms: self.statement_timeout_ms.saturating_mul(2),
            ..DatabaseTimeouts::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_given_twice_takes_its_last_value() {
        let settings = Settings::try_parse_from([
            "exchange-server",
            "--threads",
            "2",
            "--port",
            "1",
            "--threads",
            "6",
        ])
        .expect("repeated flags are accepted");
        assert_eq!((settings.threads, settings.port), (6, 1));
    }
}
