//! One worker process: pins itself and its handler threads, opens its own pool, and
//! serves from the shared listener until asked to stop.

use crate::server::courier::Courier;
use crate::server::flusher::Flusher;
use crate::server::handler::Handler;
use crate::server::intake::Intake;
use crate::server::{affinity, signals, Settings};
use crate::store;
use std::net::TcpListener;

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
    let pool = match pool {
        Ok(pool) => pool,
        Err(e) => {
            tracing::error!("{e}");
            return EXIT_DATABASE_UNAVAILABLE;
        }
    };

    // Answers flow handlers -> flusher -> courier. The handlers share the worker's
    // intake; the flusher ends once every handler has, and the courier once the
    // flusher has.
    let intake = match Intake::new(listener, settings.intake_limits()) {
        Ok(intake) => std::sync::Arc::new(intake),
        Err(e) => {
            tracing::error!("cannot start the intake: {e}");
            return 1;
        }
    };
    let (courier, deliver) = Courier::new(settings.delivery_limits());
    let (awaiting_in, awaiting_out) = crossbeam_channel::unbounded();
    let flusher = Flusher::new(pool.clone(), courier.clone());
    let started = (|| {
        let stages = vec![
            spawn("courier".into(), deliver)?,
            spawn("flusher".into(), move || flusher.run(awaiting_out))?,
        ];
        // No handler serves until every one is on its CPU, so that once a worker has
        // answered, its placement is final (what a scaling run and its checks rely on).
        let placed = std::sync::Arc::new(std::sync::Barrier::new(settings.threads));
        let mut handlers = Vec::with_capacity(settings.threads);
        for i in 0..settings.threads {
            let handler = Handler::new(pool.clone(), settings.handler_limits());
            let (intake, awaiting, courier) =
                (intake.clone(), awaiting_in.clone(), courier.clone());
            let (cpu, placed) = (cpus.get(i).copied(), placed.clone());
            handlers.push(spawn(format!("handler-{i}"), move || {
                if let Some(cpu) = cpu {
                    pin(&format!("handler {i}"), &[cpu]);
                }
                placed.wait();
                let outcome = handler.run(&intake, awaiting, courier);
                if let Err(e) = &outcome {
                    // The worker stops as a whole, and its supervisor replaces it.
                    tracing::error!("intake failed: {e}");
                    signals::stop_this_process();
                }
                outcome.is_ok()
            })?);
        }
        Ok::<_, std::io::Error>((stages, handlers))
    })();
    // Only the handlers may hold the intake and the flusher's queue from here on.
    drop((intake, awaiting_in, courier));
    let (stages, handlers) = match started {
        Ok(threads) => threads,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return 1;
        }
    };
    let mut code = 0;
    for handler in handlers {
        if !handler.join().unwrap_or(false) {
            code = 1;
        }
    }
    for stage in stages.into_iter().rev() {
        let _ = stage.join();
    }
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
/// rather than one thread vanishing while its siblings go on.
fn abort_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
}
