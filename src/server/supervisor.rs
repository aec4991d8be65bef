//! The supervisor: binds the listener, maps the shared counters, forks the workers (and
//! the status process, with `--metrics-port`), and then only reconciles the processes
//! it wants with the ones alive, until SIGTERM or SIGINT.
//!
//! It stays single-threaded and never connects to the database, so every fork happens
//! in a process with one thread and no open connections. The database is checked
//! once before the first fork, by a short-lived child.

use crate::metrics;
use crate::server::worker::{self, EXIT_DATABASE_UNAVAILABLE};
use crate::server::{affinity, answered, signals, status, Settings};
use crate::store;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const LISTEN_BACKLOG: i32 = 4096;
const TICK: Duration = Duration::from_millis(20);
/// A worker that exits sooner than this after starting counts as failing to start.
const HEALTHY_AFTER: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

struct Slot {
    /// The CPU of each handler thread when pinned, in handler order; empty otherwise.
    cpus: Vec<usize>,
    pid: Option<Pid>,
    started: Instant,
    start_after: Instant,
    quick_failures: u32,
}

/// Runs the server; returns when it has stopped.
pub fn run(settings: Settings) -> ExitCode {
    let _process = tracing::error_span!("supervisor", pid = std::process::id()).entered();
    answered::log_slower_than(settings.slow_request_ms);
    let Some(mut running) = start(&settings) else {
        return ExitCode::FAILURE;
    };
    announce(&running, &settings);
    supervise(&mut running, &settings);
    shut_down(running, &settings);
    ExitCode::SUCCESS
}

/// What the supervisor holds while it runs.
struct Running {
    /// The exchange's port; None once closed for a stop.
    listener: Option<TcpListener>,
    status: Status,
    slots: Vec<Slot>,
    /// The CPUs this process may run on.
    allowed: Vec<usize>,
}

/// Everything before the first fork, each step logged when it fails: the settings,
/// the listeners, the shared counters, the database, the signal handlers.
fn start(settings: &Settings) -> Option<Running> {
    if let Err(why) = settings.check() {
        tracing::error!("{why}");
        return None;
    }
    raise_open_files_limit();
    let listener = bind(settings)
        .inspect_err(|e| {
            tracing::error!("cannot listen on {}:{}: {e}", settings.bind, settings.port)
        })
        .ok()?;
    let allowed = affinity::allowed_cpus();
    let workers = settings.workers_for(allowed.len());
    let status = Status::bind(settings)
        .inspect_err(|e| {
            tracing::error!(
                "cannot listen for metrics on {}:{}: {e}",
                settings.metrics_bind,
                settings.metrics_port.unwrap_or_default()
            )
        })
        .ok()?;
    metrics::map(workers)
        .inspect_err(|e| tracing::error!("cannot map the shared counters: {e}"))
        .ok()?;
    if let Err(why) = check_database(settings, workers) {
        if !why.is_empty() {
            tracing::error!("{why}");
        }
        return None;
    }
    signals::install_stop_handlers()
        .inspect_err(|e| tracing::error!("cannot install signal handlers: {e}"))
        .ok()?;
    Some(Running {
        listener: Some(listener),
        status,
        slots: slots(settings, &allowed, workers),
        allowed,
    })
}

/// One slot per worker, each with its handlers' CPUs when pinned.
fn slots(settings: &Settings, allowed: &[usize], workers: usize) -> Vec<Slot> {
    let now = Instant::now();
    (0..workers)
        .map(|i| Slot {
            cpus: if settings.pin {
                affinity::cpus_for_slot(allowed, i, settings.threads)
            } else {
                Vec::new()
            },
            pid: None,
            started: now,
            start_after: now,
            quick_failures: 0,
        })
        .collect()
}

/// The start line: where the server listens, its processes and CPUs, its database.
fn announce(running: &Running, settings: &Settings) {
    let address = running
        .listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map_or_else(|| "?".into(), |a| a.to_string());
    let placement = if settings.pin {
        let cpus: Vec<String> = running
            .slots
            .iter()
            .map(|s| format!("{:?}", s.cpus))
            .collect();
        format!("handlers pinned to CPUs {}", cpus.join(" "))
    } else {
        format!("on CPUs {:?}", running.allowed)
    };
    // On stdout, so that scripts and tests can learn the port when it was 0.
    println!("listening on {address}");
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let workers = running.slots.len();
    tracing::info!(
        listen = %address,
        database = %store::describe(&settings.database_url),
        schema = crate::migrations::latest(),
        metrics = %running.status.address().map_or_else(|| "off".to_string(), |a| format!("http://{a}/metrics")),
        "{workers} worker{} x {} handler thread{}, {placement}",
        plural(workers),
        settings.threads,
        plural(settings.threads)
    );
}

/// Reconciles the processes wanted with the ones alive, until a stop is requested.
fn supervise(running: &mut Running, settings: &Settings) {
    let Running {
        listener,
        status,
        slots,
        ..
    } = running;
    while !signals::stop_requested() {
        if signals::hangup_received() {
            tracing::warn!(
                "SIGHUP ignored: settings are read only at start, and the log is standard \
                 error; restart to change settings (SIGTERM stops gracefully)"
            );
        }
        reap(slots, status);
        for (index, slot) in slots.iter_mut().enumerate() {
            if slot.pid.is_none() && Instant::now() >= slot.start_after {
                spawn(listener, index, slot, settings);
            }
        }
        status.spawn_if_due(listener, settings);
        std::thread::sleep(TICK);
    }
}

/// Stops the status process, then lets the workers finish what they hold.
fn shut_down(running: Running, settings: &Settings) {
    let Running {
        listener,
        mut status,
        mut slots,
        ..
    } = running;
    // Closed here first, so that once the workers close theirs new connections are refused
    // instead of waiting in a backlog nobody will accept from.
    drop(listener);
    if let Some(pid) = status.pid.take() {
        let _ = kill(pid, Signal::SIGTERM);
        let _ = waitpid(pid, None);
    }
    stop(&mut slots, Duration::from_millis(settings.grace_period_ms));
}

/// The status process (`status`), when `--metrics-port` asks for one.
struct Status {
    listener: Option<TcpListener>,
    pid: Option<Pid>,
    start_after: Instant,
}

impl Status {
    fn bind(settings: &Settings) -> std::io::Result<Status> {
        let listener = match settings.metrics_port {
            Some(port) => Some(bind_to(&settings.metrics_bind, port, 128)?),
            None => None,
        };
        Ok(Status {
            listener,
            pid: None,
            start_after: Instant::now(),
        })
    }

    fn address(&self) -> Option<SocketAddr> {
        self.listener.as_ref()?.local_addr().ok()
    }

    fn spawn_if_due(&mut self, exchange: &mut Option<TcpListener>, settings: &Settings) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        if self.pid.is_some() || Instant::now() < self.start_after {
            return;
        }
        let Ok(listener) = listener.try_clone() else {
            self.start_after = Instant::now() + STATUS_RESTART_AFTER;
            return;
        };
        // SAFETY: the supervisor has one thread, so the child may run any code.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // Not the exchange's port: this process must not hold it open.
                drop(exchange.take());
                worker::die_with_parent();
                std::process::exit(status::run(listener, settings));
            }
            Ok(ForkResult::Parent { child }) => self.pid = Some(child),
            Err(e) => {
                tracing::error!("cannot fork the status process: {e}");
                self.start_after = Instant::now() + STATUS_RESTART_AFTER;
            }
        }
    }

    /// Notes that the status process ended, if `pid` was it; true if so.
    fn ended(&mut self, pid: Pid, how: &str) -> bool {
        if self.pid != Some(pid) {
            return false;
        }
        self.pid = None;
        self.start_after = Instant::now() + STATUS_RESTART_AFTER;
        tracing::warn!(
            "the status process (pid {pid}) {how}; restarting in {} ms",
            STATUS_RESTART_AFTER.as_millis()
        );
        true
    }
}

/// How long after the status process ended another is started.
const STATUS_RESTART_AFTER: Duration = Duration::from_secs(1);

fn bind(settings: &Settings) -> std::io::Result<TcpListener> {
    bind_to(&settings.bind, settings.port, LISTEN_BACKLOG)
}

fn bind_to(host: &str, port: u16, backlog: i32) -> std::io::Result<TcpListener> {
    let address: SocketAddr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing")
    })?;
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Connects once, applies the schema and checks that the workers' connections fit
/// the database's free slots, in a child, so the supervisor itself never holds a
/// connection (nor the threads a client library may start).
fn check_database(settings: &Settings, workers: usize) -> Result<(), String> {
    // Each worker's handlers hold one connection each, and its flusher one more; the
    // status process, if any, holds one for its readiness check.
    let wanted =
        workers.saturating_mul(settings.threads + 1) + usize::from(settings.metrics_port.is_some());
    // SAFETY: the supervisor has one thread, so the child may run any code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _process =
                tracing::error_span!(parent: None, "database_check", pid = std::process::id())
                    .entered();
            let timeouts = settings.database_timeouts();
            let prepared = store::config(&settings.database_url, timeouts)
                .and_then(|target| store::prepare_database(&target, timeouts, wanted));
            let code = match prepared {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("cannot start: {e}");
                    EXIT_DATABASE_UNAVAILABLE
                }
            };
            std::process::exit(code);
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            // The child said why, in one line.
            Ok(WaitStatus::Exited(_, EXIT_DATABASE_UNAVAILABLE)) => Err(String::new()),
            Ok(status) => Err(format!("the database check failed: {status:?}")),
            Err(e) => Err(format!("cannot wait for the database check: {e}")),
        },
        Err(e) => Err(format!("cannot fork: {e}")),
    }
}

fn spawn(listener: &mut Option<TcpListener>, index: usize, slot: &mut Slot, settings: &Settings) {
    // SAFETY: the supervisor has one thread, so the child may run any code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            metrics::enter_slot(index);
            // The child's copy of the listener becomes the worker's own, to close when it stops.
            let code = match listener.take() {
                Some(listener) => worker::run(listener, index, &slot.cpus, settings),
                None => 1,
            };
            std::process::exit(code);
        }
        Ok(ForkResult::Parent { child }) => {
            slot.pid = Some(child);
            slot.started = Instant::now();
            if let Some(shared) = metrics::shared() {
                shared.supervisor.workers_started.fetch_add(1, Relaxed);
            }
        }
        Err(e) => {
            tracing::error!("cannot fork worker {index}: {e}");
            slot.start_after = Instant::now() + BACKOFF_FIRST;
        }
    }
}

/// Serving a thousand connections at once needs more descriptors than the usual soft
/// limit of 1024; the hard limit is ours to take.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Collects exited workers (and the status process) and schedules their replacement.
fn reap(slots: &mut [Slot], status: &mut Status) {
    loop {
        let (pid, how, database_down, exit) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (
                pid,
                format!("exited with code {code}"),
                code == EXIT_DATABASE_UNAVAILABLE,
                usize::from(code != 0),
            ),
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                (pid, format!("was killed by {signal}"), false, 2)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        };
        if status.ended(pid, &how) {
            continue;
        }
        if let Some(shared) = metrics::shared() {
            shared.supervisor.worker_exits[exit].fetch_add(1, Relaxed);
        }
        let Some((index, slot)) = slots
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.pid == Some(pid))
        else {
            continue;
        };
        slot.pid = None;
        let now = Instant::now();
        if database_down || now.duration_since(slot.started) < HEALTHY_AFTER {
            slot.quick_failures = slot.quick_failures.saturating_add(1);
            let backoff = jittered(
                BACKOFF_FIRST
                    .saturating_mul(1 << (slot.quick_failures - 1).min(10))
                    .min(BACKOFF_MAX),
            );
            slot.start_after = now + backoff;
            tracing::warn!(
                "worker {index} (pid {pid}) {how}; restarting in {} ms",
                backoff.as_millis()
            );
        } else {
            slot.quick_failures = 0;
            slot.start_after = now;
            tracing::warn!("worker {index} (pid {pid}) {how}; restarting");
        }
    }
}

/// Somewhere between half and one and a half times `backoff`: workers that failed
/// together (competing for the database's last connections, say) then retry apart,
/// and one gets through instead of all failing again in step.
fn jittered(backoff: Duration) -> Duration {
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let millis = backoff.as_millis().max(2) as u64;
    Duration::from_millis(millis / 2 + u64::from(noise) % millis)
}

/// Asks every worker to finish, waits up to the grace period, then kills the rest.
fn stop(slots: &mut [Slot], grace: Duration) {
    tracing::info!("stopping");
    let live = |slots: &[Slot]| slots.iter().filter_map(|s| s.pid).collect::<Vec<_>>();
    for pid in live(slots) {
        let _ = kill(pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while !live(slots).is_empty() && Instant::now() < deadline {
        while let Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) =
            waitpid(None, Some(WaitPidFlag::WNOHANG))
        {
            slots
                .iter_mut()
                .filter(|s| s.pid == Some(pid))
                .for_each(|s| s.pid = None);
        }
        std::thread::sleep(TICK);
    }
    for pid in live(slots) {
        tracing::warn!("worker pid {pid} did not stop within the grace period; killing it");
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
    tracing::info!("stopped");
}
