//! The server's command line: every flag, its default, and its help text.

use crate::framing::LENGTH_LINE_BYTES_MAX;
use crate::protocol::ParseLimits;
use crate::server::courier::DeliveryLimits;
use crate::server::handler::HandlerLimits;
use crate::server::intake::{IntakeLimits, READ_CHUNK_BYTES};
use crate::server::logging::LogFormat;
use crate::store::DatabaseTimeouts;
use clap::Parser;
use std::time::Duration;

/// A prefork stock-exchange matching server speaking length-framed XML over TCP,
/// with PostgreSQL as the book of record.
#[derive(Clone, Debug, Parser)]
// A flag given twice takes its last value, so wrappers can set defaults and users
// override them (`scripts/run --threads 8`).
#[command(name = "exchange-server", version, about, long_about = None, args_override_self = true)]
pub struct Settings {
    /// Without a command, serve.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TCP port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 12345)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: String,

    /// Worker processes [default: enough for one handler thread per CPU this process
    /// may run on].
    #[arg(long, env = "EXCHANGE_WORKERS", value_parser = at_least_one)]
    pub workers: Option<usize>,

    /// Handler threads per worker, each reading its own requests and holding its own
    /// database connection; the worker's flusher, which waits for the WAL once for
    /// all of them, has one more.
    // Two per worker, and one handler per CPU in all by default. On 2 CPUs with the
    // database on the same machine, one worker of 2 handlers served more than two
    // workers of 1 (they share one flusher, so fewer waits for the disk); 4 served
    // more only unpinned with many clients waiting, and less when pinned, which costs
    // the scaling target (docs/benchmarks.md). A database far away, where a handler
    // mostly waits, may want more.
    #[arg(long, env = "EXCHANGE_THREADS", default_value_t = 2, value_parser = at_least_one)]
    pub threads: usize,

    /// Pin each handler thread to a CPU of its own among those this process may run
    /// on (cycling), and each worker to its handlers' CPUs, so that `taskset -c 2,3
    /// exchange-server --pin` puts the handlers on CPUs 2 and 3.
    #[arg(long)]
    pub pin: bool,

    /// PostgreSQL connection URL, e.g. postgres://user@localhost:5432/exchange.
    #[arg(
        long,
        env = "DATABASE_URL",
        // Its value may hold a password: --help names the variable, never its value.
        hide_env_values = true,
        global = true,
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

    /// Time a client has to send its whole request, in milliseconds; a request that
    /// cannot start within it is dropped unexecuted. A client must also take some of its
    /// answer within each such period.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one_ms)]
    pub request_timeout_ms: u64,

    /// Connections each worker holds while their requests arrive. Past it, the one that
    /// has waited longest is closed to make room for a newcomer.
    #[arg(long, default_value_t = 4096, value_parser = at_least_one)]
    pub connections_max: usize,

    /// Bytes of incomplete requests each worker holds, in all. Past it, the connection
    /// that has waited longest is closed. At least --request-bytes-max plus 64 KiB.
    #[arg(long, default_value_t = 128 << 20, value_parser = at_least_one)]
    pub pending_bytes_max: usize,

    /// Largest answer, in bytes, never passed: an order's state lists the fills that
    /// fit and counts the rest. At least 64 + 256 x --operations-max.
    #[arg(long, default_value_t = 16 << 20, value_parser = at_least_one)]
    pub response_bytes_max: usize,

    /// Bytes of answers each worker holds for clients slow to read them, in all. Past
    /// it, the answer that has waited longest is cut off.
    #[arg(long, default_value_t = 64 << 20, value_parser = at_least_one)]
    pub unsent_bytes_max: usize,

    /// On SIGTERM or SIGINT, how long workers may finish requests in flight before
    /// they are killed, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub grace_period_ms: u64,

    /// Longest one database statement may run, in milliseconds. One order is one
    /// statement, and its symbol waits for it: enough for an order that sweeps a few
    /// hundred thousand resting orders, and no more. Also the longest one wait for
    /// commits to be durable (for a synchronous standby, say), which PostgreSQL's own
    /// statement timeout does not count.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one_ms)]
    pub statement_timeout_ms: u64,

    /// Serve Prometheus metrics (/metrics) and health checks (/live, /ready) over HTTP
    /// on this port; off unless set.
    #[arg(long)]
    pub metrics_port: Option<u16>,

    /// Address the metrics and health checks listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub metrics_bind: String,

    /// Log each request answered this many milliseconds or more after it began
    /// executing, with its kind, operation count, time in the database and waiting
    /// for durability, and the client's address; off unless set (0 logs every one).
    #[arg(long)]
    pub slow_request_ms: Option<u64>,

    /// Log lines as text, for people, or as JSON objects, one per line, for log
    /// shippers; RUST_LOG filters them (default info).
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
}

/// What else the binary does besides serving.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Bring the database's schema to this server's version (applying the migrations
    /// it lacks, one at a time even when several run at once), then exit. A server
    /// refuses to start on a database at another version.
    Migrate,
}

fn at_least_one_ms(value: &str) -> Result<u64, String> {
    at_least_one(value).map(|n| n as u64)
}

fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a count: {e}")),
    }
}

impl Settings {
    /// The worker count asked for, or enough workers for one handler per allowed CPU.
    pub fn workers_for(&self, allowed_cpus: usize) -> usize {
        self.workers
            .unwrap_or_else(|| allowed_cpus.div_ceil(self.threads))
            .max(1)
    }

    /// Refuses settings that contradict one another, in one line.
    pub fn check(&self) -> Result<(), String> {
        let needed = crate::exchange::answer_bytes_needed(self.operations_max);
        if self.response_bytes_max < needed {
            return Err(format!(
                "--response-bytes-max {} cannot hold the answer to --operations-max {} \
                 operations: it must be at least {needed}",
                self.response_bytes_max, self.operations_max
            ));
        }
        Ok(())
    }

    pub fn handler_limits(&self) -> HandlerLimits {
        HandlerLimits {
            parse: ParseLimits {
                depth_max: self.depth_max,
                operations_max: self.operations_max,
            },
            response_bytes_max: self.response_bytes_max,
        }
    }

    pub fn intake_limits(&self) -> IntakeLimits {
        IntakeLimits {
            request_bytes_max: self.request_bytes_max,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            connections_max: self.connections_max,
            // Room for at least one whole request and the read that completes it.
            pending_bytes_max: self
                .pending_bytes_max
                .max(self.request_bytes_max + READ_CHUNK_BYTES + LENGTH_LINE_BYTES_MAX),
        }
    }

    pub fn delivery_limits(&self) -> DeliveryLimits {
        DeliveryLimits {
            stall: Duration::from_millis(self.request_timeout_ms),
            unsent_bytes_max: self.unsent_bytes_max,
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

    #[test]
    fn workers_default_to_one_handler_per_allowed_cpu() {
        let with = |args: &[&str]| {
            Settings::try_parse_from(["exchange-server"].iter().chain(args)).expect("valid flags")
        };
        let workers = |args: &[&str], cpus| with(args).workers_for(cpus);
        assert_eq!(workers(&[], 1), 1);
        assert_eq!(workers(&[], 2), 1);
        assert_eq!(workers(&[], 3), 2);
        assert_eq!(workers(&[], 8), 4);
        assert_eq!(workers(&["--threads", "1"], 8), 8);
        assert_eq!(workers(&["--threads", "3"], 8), 3);
        assert_eq!(workers(&["--workers", "5"], 8), 5);
    }

    #[test]
    fn an_answer_bound_too_small_for_the_operations_is_refused() {
        let with = |args: &[&str]| {
            Settings::try_parse_from(["exchange-server"].iter().chain(args)).expect("valid flags")
        };
        assert!(with(&[]).check().is_ok());
        let why = with(&["--response-bytes-max", "20000"])
            .check()
            .unwrap_err();
        assert!(why.contains("at least 2560064"), "{why}");
        assert!(
            with(&["--response-bytes-max", "20000", "--operations-max", "50"])
                .check()
                .is_ok()
        );
    }

    #[test]
    fn no_workers_or_no_threads_is_refused() {
        for flag in ["--workers", "--threads"] {
            // The same flag with 1 parses, so 0 is refused for being 0 and nothing else.
            assert!(Settings::try_parse_from(["exchange-server", flag, "1"]).is_ok());
            let refused = Settings::try_parse_from(["exchange-server", flag, "0"]);
            let why = refused.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(why.contains("must be at least 1"), "{flag} 0: {why:?}");
        }
    }
}
