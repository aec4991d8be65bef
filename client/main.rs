//! `exchange-client`: poke a server by hand (`send`), load it (`load`), run the flip
//! scenario (`flip`), audit a database (`audit`), and chart scaling results (`plot`).

mod backoff;
mod flip;
mod interrupt;
mod load;
mod plot;
mod report;
mod workload;

use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "exchange-client",
    version,
    about = "Talks to exchange-server: send, load, flip, audit, plot"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the server is.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Server host.
    #[arg(long, env = "EXCHANGE_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Server port.
    #[arg(long, env = "EXCHANGE_PORT", default_value_t = 12345)]
    pub port: u16,
    /// Bound on each connect, read and write, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

impl Target {
    pub fn addr(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Send each XML file (or standard input) as one request and print the answer.
    Send {
        #[command(flatten)]
        target: Target,
        /// XML documents to send, one request each; none reads standard input.
        files: Vec<std::path::PathBuf>,
    },
    /// Run a mixed workload and report throughput, latency and errors.
    Load(load::LoadArgs),
    /// Odd users buy from even users all at once; check the holdings flipped exactly.
    Flip(flip::FlipArgs),
    /// Check conservation of cash and shares in one consistent snapshot.
    Audit {
        /// PostgreSQL URL of the exchange's database.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Draw the scaling charts (PNG and SVG) from the CSV written by scripts/scale.
    Plot(plot::PlotArgs),
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Send { target, files } => send(&target, &files),
        Command::Load(args) => load::run(&args),
        Command::Flip(args) => flip::run(&args),
        Command::Audit { database_url } => audit(&database_url),
        Command::Plot(args) => plot::run(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(why) => {
            eprintln!("exchange-client: {why}");
            ExitCode::FAILURE
        }
    }
}

fn send(target: &Target, files: &[std::path::PathBuf]) -> Result<ExitCode, String> {
    let addr = target.addr()?;
    let documents: Vec<Vec<u8>> = if files.is_empty() {
        let mut stdin = Vec::new();
        std::io::stdin()
            .read_to_end(&mut stdin)
            .map_err(|e| format!("reading standard input: {e}"))?;
        vec![stdin]
    } else {
        files
            .iter()
            .map(|f| std::fs::read(f).map_err(|e| format!("reading {}: {e}", f.display())))
            .collect::<Result<_, _>>()?
    };
    for document in documents {
        let answer = exchange::wire::round_trip(addr, &document, target.timeout())
            .map_err(|e| format!("talking to {addr}: {e}"))?;
        print!("{}", String::from_utf8_lossy(&answer));
    }
    Ok(ExitCode::SUCCESS)
}

fn audit(database_url: &str) -> Result<ExitCode, String> {
    let mut client = exchange::store::parse_url(database_url)
        .map_err(|e| e.to_string())
        .and_then(|target| {
            target
                .connect()
                .map_err(|e| format!("cannot connect to the database: {e}"))
        })?;
    let report =
        exchange::audit::audit(&mut client).map_err(|e| format!("audit query failed: {e}"))?;
    println!(
        "audited {} accounts, {} symbols, {} orders, {} trades",
        report.accounts, report.symbols, report.orders, report.trades
    );
    if report.discrepancies.is_empty() {
        println!("audit passed: cash and every symbol's shares are conserved");
        return Ok(ExitCode::SUCCESS);
    }
    for discrepancy in &report.discrepancies {
        println!("DISCREPANCY {discrepancy}");
    }
    println!("audit FAILED: {} discrepancies", report.discrepancies.len());
    Ok(ExitCode::FAILURE)
}
