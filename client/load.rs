//! `exchange-client load`: C connections' worth of threads drive a mixed workload for a
//! duration or a number of requests, with a live progress bar, then report.

use crate::backoff::Backoff;
use crate::interrupt;
use crate::report::{error_kind, Summary, Tally};
use crate::workload::{Generator, Op, Universe};
use crate::Target;
use clap::Args;
use exchange::protocol::reply::read_reply;
use exchange::wire::round_trip;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Operations in each setup `<create>` request: well under the server's default
/// `--operations-max`.
const SETUP_OPERATIONS_MAX: usize = 5_000;

#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    pub target: Target,
    /// Concurrent clients, each on its own thread, one connection per request.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Seconds to run (ignored when --requests is given).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Total requests to send, instead of a duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Symbols to trade (10, like pgbench's ten branches at scale 10: each symbol's
    /// orders are serialised, as each branch's updates are).
    #[arg(long, default_value_t = 10)]
    pub symbols: usize,
    /// Accounts to trade from.
    #[arg(long, default_value_t = 100)]
    pub accounts: usize,
    /// Operations in each `<transactions>` request.
    #[arg(long, default_value_t = 1)]
    pub orders_per_request: usize,
    /// Percent of requests that query or cancel an earlier order (one operation)
    /// instead of placing orders.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub queries_percent: u8,
    /// Seed of the random workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &LoadArgs) -> Result<ExitCode, String> {
    if args.connections == 0
        || args.symbols == 0
        || args.accounts == 0
        || args.orders_per_request == 0
    {
        return Err(
            "--connections, --symbols, --accounts and --orders-per-request must be at least 1"
                .into(),
        );
    }
    let addr = args.target.addr()?;
    let timeout = args.target.timeout();
    interrupt::catch_first_ctrl_c()?;
    let universe = Arc::new(Universe::new(
        crate::workload::run_tag(),
        args.accounts,
        args.symbols,
    ));
    set_up(addr, timeout, &universe, args)?;

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let cpu_before = process_cpu();
    let connection = Connection {
        addr,
        timeout,
        limit: args.requests,
        operations: args.orders_per_request,
        queries_percent: args.queries_percent,
        seed: args.seed,
    };
    let threads: Vec<_> = (0..args.connections)
        .map(|i| {
            let (universe, stop, sent) = (universe.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || connection.send_until_stopped(i, &universe, &stop, &sent))
        })
        .collect();

    watch(args, &stop, &sent, started);
    let mut tally = Tally::new();
    for thread in threads {
        tally.merge(
            thread
                .join()
                .map_err(|_| "a load thread panicked".to_string())?,
        );
    }
    Ok(report(args, &tally, started, cpu_before))
}

/// Prints the run's summary; the exit code says whether anything failed.
fn report(args: &LoadArgs, tally: &Tally, started: Instant, cpu_before: Duration) -> ExitCode {
    let summary = Summary {
        tally,
        interrupted: interrupt::requested(),
        elapsed: started.elapsed(),
        connections: args.connections,
        orders_per_request: args.orders_per_request,
        queries_percent: args.queries_percent,
        client_cpu: process_cpu().saturating_sub(cpu_before),
    };
    if args.json {
        println!("{}", summary.json());
    } else {
        summary.print();
    }
    if tally.transport_failure_count() > 0 {
        ExitCode::from(2)
    } else if interrupt::requested() {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    }
}

/// What one load connection's thread needs, copied into it.
#[derive(Clone, Copy)]
struct Connection {
    addr: std::net::SocketAddr,
    timeout: Duration,
    /// The most requests all connections send together, if bounded.
    limit: Option<u64>,
    operations: usize,
    queries_percent: u8,
    seed: u64,
}

impl Connection {
    /// Sends requests one after another until the run stops or reaches its limit,
    /// backing off after a transport failure; returns what it counted.
    fn send_until_stopped(
        self,
        i: usize,
        universe: &Universe,
        stop: &AtomicBool,
        sent: &AtomicU64,
    ) -> Tally {
        let rng = SmallRng::seed_from_u64(self.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        let mut generator = Generator::new(rng, self.queries_percent);
        let mut tally = Tally::new();
        let mut backoff = Backoff::default();
        while !stop.load(Ordering::Relaxed) {
            let n = sent.fetch_add(1, Ordering::Relaxed);
            if self.limit.is_some_and(|limit| n >= limit) {
                break;
            }
            let delivered = one_request(
                self.addr,
                self.timeout,
                universe,
                &mut generator,
                self.operations,
                &mut tally,
            );
            if delivered {
                backoff.succeeded();
            } else {
                sleep_unless_stopped(backoff.failed(), stop);
            }
        }
        tally
    }
}

/// Sends one setup request; every item of its answer must be `<created>`.
fn set_up_one(addr: std::net::SocketAddr, timeout: Duration, request: &str) -> Result<(), String> {
    let answer =
        round_trip(addr, request.as_bytes(), timeout).map_err(|e| format!("setup failed: {e}"))?;
    let items = read_reply(&answer).map_err(|e| format!("setup answer unreadable: {e}"))?;
    match items.iter().find(|i| i.name != "created") {
        Some(error) => Err(format!("setup was refused: {}", error.text)),
        None => Ok(()),
    }
}

fn set_up(
    addr: std::net::SocketAddr,
    timeout: Duration,
    universe: &Universe,
    args: &LoadArgs,
) -> Result<(), String> {
    let requests = universe.setup_requests(SETUP_OPERATIONS_MAX);
    let started = Instant::now();
    eprintln!(
        "setting up {} accounts with shares of {} symbols ({} request{})",
        args.accounts,
        args.symbols,
        requests.len(),
        if requests.len() == 1 { "" } else { "s" }
    );
    let bar = progress_bar(
        args,
        requests.len() as u64,
        "{bar:40} {pos}/{len} setup requests",
    );
    let next = AtomicU64::new(0);
    let outcome: Result<(), String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.connections.min(requests.len()))
            .map(|_| {
                scope.spawn(|| loop {
                    if interrupt::requested() {
                        return Err("interrupted during setup".to_string());
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(request) = requests.get(n) else {
                        return Ok(());
                    };
                    set_up_one(addr, timeout, request)?;
                    bar.inc(1);
                })
            })
            .collect();
        // Scoped threads are all joined when the scope ends, even after an error.
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err("a setup thread panicked".into()))
        })
    });
    bar.finish_and_clear();
    outcome?;
    eprintln!(
        "set up in {} ms; {}",
        started.elapsed().as_millis(),
        match args.requests {
            Some(n) => format!("sending {n} requests"),
            None => format!("running for {} s", args.duration),
        }
    );
    Ok(())
}

/// A progress bar on a terminal (unless the report is JSON), hidden otherwise.
fn progress_bar(args: &LoadArgs, length: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() || args.json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Sends one request and tallies what came back.
/// Sleeps for `wait`, or less if the run stops meanwhile.
fn sleep_unless_stopped(wait: Duration, stop: &AtomicBool) {
    let until = Instant::now() + wait;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// Sends one request and tallies what came back; false if it failed in transport
/// (the caller then backs off).
fn one_request(
    addr: std::net::SocketAddr,
    timeout: Duration,
    universe: &Universe,
    generator: &mut Generator,
    operations: usize,
    tally: &mut Tally,
) -> bool {
    let (account, xml, ops) = generator.next_request(universe, operations);
    let sent_at = Instant::now();
    let answer = match round_trip(addr, xml.as_bytes(), timeout) {
        Ok(answer) => answer,
        Err(e) => {
            *tally
                .transport_failures
                .entry(format!("{:?}", e.kind()))
                .or_default() += 1;
            return false;
        }
    };
    tally.record_latency(sent_at.elapsed());
    let items = match read_reply(&answer) {
        Ok(items) if items.len() == ops.len() => items,
        _ => {
            *tally
                .transport_failures
                .entry("unreadable answer".into())
                .or_default() += 1;
            return false;
        }
    };
    tally.requests += 1;
    tally.operations += ops.len() as u64;
    tally.orders += ops.iter().filter(|op| **op == Op::Order).count() as u64;
    for (op, item) in ops.iter().zip(&items) {
        match (op, item.name.as_str()) {
            (Op::Order, "opened") => {
                if let Ok(id) = item.get("id").parse() {
                    generator.opened(account, id);
                }
            }
            (_, "error") => *tally.errors.entry(error_kind(&item.text)).or_default() += 1,
            _ => {}
        }
    }
    true
}

/// Shows a progress bar on a terminal while the run lasts; stops the run when time is
/// up, the requests are sent, or Ctrl-C was pressed.
fn watch(args: &LoadArgs, stop: &AtomicBool, sent: &AtomicU64, started: Instant) {
    let (length, unit) = match args.requests {
        Some(n) => (n, "requests"),
        None => (args.duration, "s"),
    };
    let bar = progress_bar(args, length, "{bar:40} {pos}/{len} {msg}");
    let deadline = started + Duration::from_secs(args.duration);
    while !interrupt::requested() {
        std::thread::sleep(Duration::from_millis(100));
        let done = sent.load(Ordering::Relaxed);
        let elapsed_ms = started.elapsed().as_millis().max(1);
        bar.set_message(format!(
            "{unit}, {} requests/s",
            u128::from(done) * 1000 / elapsed_ms
        ));
        match args.requests {
            Some(n) => {
                bar.set_position(done.min(n));
                if done >= n {
                    break;
                }
            }
            None => {
                bar.set_position(started.elapsed().as_secs().min(length));
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    bar.finish_and_clear();
}

/// CPU time this process has used, user plus system.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes only into the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    micros(usage.ru_utime) + micros(usage.ru_stime)
}
