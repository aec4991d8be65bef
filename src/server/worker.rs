//! One worker: in a forked process, pins itself and its handler threads and opens its
//! own pool (`run`); then starts its threads, serves from the shared listener until
//! asked to stop (`serve`, which a test may run without forking), and ends them in
//! order (`wind_down`).

use crate::durability::{Answers, Connection, Flusher};
use crate::server::courier::Courier;
use crate::server::handler::Handler;
use crate::server::intake::Intake;
use crate::server::signals::Stop;
use crate::server::{affinity, Settings};
use crate::store::{self, Manager};
use crate::watchdog;
use r2d2::Pool;
use std::net::TcpListener;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;

/// Exit code of a worker that could not reach the database at boot; the supervisor
/// backs off instead of respawning at once.
pub const EXIT_DATABASE_UNAVAILABLE: i32 = 3;

/// Runs the worker in `slot` and returns its exit code. Called in a freshly forked,
/// single-threaded child. `cpus`, when pinned, holds each handler thread's CPU.
pub fn run(listener: TcpListener, slot: usize, cpus: &[usize], settings: &Settings) -> i32 {
    // Every line this worker logs, from any of its threads, names it (see `spawn`).
    let _process =
        tracing::error_span!(parent: None, "worker", slot, pid = std::process::id()).entered();
    die_with_parent();
    abort_on_panic();
    return_large_buffers_to_the_kernel();
    // The flusher and courier may run on any of the handlers' CPUs.
    pin("worker", cpus);
    let timeouts = settings.database_timeouts();
    let pool = store::config(&settings.database_url, timeouts)
        .and_then(|target| store::pool(target, settings.threads as u32 + 1, timeouts));
    match pool {
        Ok(pool) => serve(listener, pool, cpus, settings, Stop::on_signal()),
        Err(e) => {
            tracing::error!("{e}");
            EXIT_DATABASE_UNAVAILABLE
        }
    }
}

/// Serves from `listener` until `stop` is requested, then winds down (see
/// `wind_down`) and returns the worker's exit code. Needs no fork: a test runs it in
/// its own process, on a listener bound to port 0.
pub fn serve(
    listener: TcpListener,
    pool: Pool<Manager>,
    cpus: &[usize],
    settings: &Settings,
    stop: Stop,
) -> i32 {
    let intake = match Intake::new(listener, settings.intake_limits(), stop.clone()) {
        Ok(intake) => intake,
        Err(e) => {
            tracing::error!("cannot start the intake: {e}");
            return 1;
        }
    };
    match start(intake, pool, cpus, settings, stop) {
        Ok(stages) => wind_down(stages),
        Err(e) => {
            // A forked worker exits now, and its supervisor replaces it.
            tracing::error!("cannot start: {e}");
            1
        }
    }
}

/// A serving worker's threads. Answers flow handlers -> flusher -> courier (or
/// straight from a handler to the courier), and each stage ends once every stage
/// before it has let go of it.
struct Stages {
    handlers: Vec<JoinHandle<bool>>,
    flusher: JoinHandle<()>,
    courier: JoinHandle<()>,
}

/// Starts the worker's threads. Everything shared between them is moved into them
/// here, so that no other copy keeps a stage from ending.
fn start(
    intake: Intake,
    pool: Pool<Manager>,
    cpus: &[usize],
    settings: &Settings,
    stop: Stop,
) -> std::io::Result<Stages> {
    let intake = Arc::new(intake);
    // One per process, for every session's waits; a worker that cannot start it exits,
    // and its supervisor starts another.
    static WATCHDOG: std::sync::Once = std::sync::Once::new();
    let mut started = Ok(());
    WATCHDOG.call_once(|| started = spawn("watchdog".into(), watchdog::run).map(drop));
    started?;
    let (courier, deliver) = Courier::new(settings.delivery_limits());
    let (to_flusher, awaiting) = crossbeam_channel::unbounded();
    let flusher = Flusher::new(pool.clone(), courier.clone());
    let courier_thread = spawn("courier".into(), deliver)?;
    let flusher_thread = spawn("flusher".into(), move || flusher.run(awaiting))?;
    // No handler serves until every one is on its CPU, so that once a worker has
    // answered, its placement is final (what a scaling run and its checks rely on).
    let placed = Arc::new(Barrier::new(settings.threads));
    let mut handlers = Vec::with_capacity(settings.threads);
    for i in 0..settings.threads {
        let handler = Handler::new(Connection::new(pool.clone()), settings.handler_limits());
        let answers = Answers::new(to_flusher.clone(), courier.clone());
        let (intake, stop) = (intake.clone(), stop.clone());
        let (cpu, placed) = (cpus.get(i).copied(), placed.clone());
        handlers.push(spawn(format!("handler-{i}"), move || {
            if let Some(cpu) = cpu {
                pin(&format!("handler {i}"), &[cpu]);
            }
            placed.wait();
            let outcome = handler.run(&intake, answers);
            if let Err(e) = &outcome {
                // The worker stops as a whole, and its supervisor replaces it.
                tracing::error!("intake failed: {e}");
                stop.request();
            }
            outcome.is_ok()
        })?);
    }
    Ok(Stages {
        handlers,
        flusher: flusher_thread,
        courier: courier_thread,
    })
}

/// How a worker ends once a stop is requested, stage by stage, so that no answer in
/// flight is lost and nothing waits for what has already gone. Returns the exit code.
fn wind_down(stages: Stages) -> i32 {
    let Stages {
        handlers,
        flusher,
        courier,
    } = stages;
    // 1. The handlers. Each closes the listener (taking what already waits in its
    //    backlog), gives pending reads a short while, and executes what completes. Then
    //    it waits until the flusher has sent, or given back for it to vouch for, every
    //    answer it handed over (`Answers::finish`), and returns, dropping its end of the
    //    flusher's queue and its courier handle.
    let mut code = 0;
    for handler in handlers {
        if !handler.join().unwrap_or(false) {
            code = 1;
        }
    }
    // 2. The flusher. Its queue closed with the last handler's end of it: it flushes
    //    and sends what it still holds, and returns, dropping its courier handle.
    let _ = flusher.join();
    // 3. The courier. With every handle gone, it finishes the answers still blocked on
    //    slow readers (each within its stall bound) and returns.
    let _ = courier.join();
    code
}

/// Confines the calling thread, and the threads it starts later, to `cpus` (if any).
fn pin(who: &str, cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    if let Err(e) = affinity::pin_to(cpus) {
        tracing::warn!("cannot pin {who} to CPUs {cpus:?}: {e}");
    }
}

fn spawn<T: Send + 'static>(
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    let process = tracing::Span::current();
    std::thread::Builder::new().name(name).spawn(move || {
        let _process = process.entered();
        body()
    })
}

/// Asks the kernel to stop this worker when the supervisor dies, so that no orphan
/// keeps serving on the port.
pub(crate) fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
}

/// Buffers of 128 KiB and more (a large request, a large answer) get mappings of their
/// own, which go back to the kernel when freed. glibc's default raises that threshold
/// after the first such free and keeps every later large buffer in its heap, so an
/// idle worker would keep the memory of its busiest moment.
fn return_large_buffers_to_the_kernel() {
    // SAFETY: mallopt only changes the allocator's parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// A broken invariant is a bug: the whole worker dies and the supervisor replaces it,
/// rather than one thread vanishing while its siblings go on. The panic goes to the
/// log like any other error, with a backtrace when RUST_BACKTRACE asks for one. The
/// one panic caught instead is the postgres crate's own, in its cancel, while a cancel
/// request is sent (`watchdog::sending_a_cancel`).
fn abort_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let at = info
            .location()
            .map_or_else(String::new, |l| format!(", at {l}"));
        // Only the postgres crate's own panic in its cancel: a panic of ours on that
        // thread is a broken invariant like any other.
        let in_cancel = info
            .location()
            .is_some_and(|l| l.file().ends_with("cancel_token.rs"));
        if in_cancel && watchdog::sending_a_cancel() {
            tracing::warn!("sending a cancel request panicked: {message}{at}");
            return;
        }
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed").to_string();
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!("a broken invariant stops this worker: {message} (thread {thread}{at})\n{backtrace}");
        } else {
            tracing::error!(
                "a broken invariant stops this worker: {message} (thread {thread}{at})"
            );
        }
        std::process::abort();
    }));
}
