//! One worker process: pins itself, opens its own pool, and serves from the shared
//! listener until asked to stop.

use crate::server::courier::Courier;
use crate::server::flusher::Flusher;
use crate::server::handler::Handler;
use crate::server::intake::{self, IntakeLimits};
use crate::server::{affinity, log, Settings};
use crate::store;
use std::net::TcpListener;
use std::time::Duration;

/// Exit code of a worker that could not reach the database at boot; the supervisor
/// backs off instead of respawning at once.
pub const EXIT_DATABASE_UNAVAILABLE: i32 = 3;

/// Runs the worker in `slot` and returns its exit code. Called in a freshly forked,
/// single-threaded child.
pub fn run(listener: TcpListener, slot: usize, cpu: Option<usize>, settings: &Settings) -> i32 {
    die_with_parent();
    abort_on_panic();
    if let Some(cpu) = cpu {
        if let Err(e) = affinity::pin_to(cpu) {
            log(format_args!("worker {slot}: cannot pin to CPU {cpu}: {e}"));
        }
    }
    let timeouts = settings.database_timeouts();
    let pool = store::config(&settings.database_url, timeouts)
        .and_then(|config| store::pool(config, settings.threads as u32 + 1, timeouts));
    let pool = match pool {
        Ok(pool) => pool,
        Err(e) => {
            log(format_args!("worker {slot}: {e}"));
            return EXIT_DATABASE_UNAVAILABLE;
        }
    };

    // Answers flow intake -> handlers -> flusher -> courier; each stage ends once the
    // one before it has ended and its queue is empty.
    let (courier, deliver) = Courier::new();
    let (awaiting_in, awaiting_out) = crossbeam_channel::unbounded();
    let (jobs_in, jobs_out) = crossbeam_channel::bounded(settings.threads * 2);
    let flusher = Flusher::new(pool.clone(), courier.clone());
    let mut stages = Vec::with_capacity(settings.threads + 2);
    stages.push(spawn("courier".into(), deliver));
    stages.push(spawn("flusher".into(), move || flusher.run(awaiting_out)));
    for i in 0..settings.threads {
        let handler = Handler::new(pool.clone(), settings.parse_limits());
        let (jobs, awaiting, courier) = (jobs_out.clone(), awaiting_in.clone(), courier.clone());
        stages.push(spawn(format!("handler-{i}"), move || {
            handler.run(jobs, awaiting, courier)
        }));
    }
    drop((jobs_out, awaiting_in, courier));
    let threads: Vec<_> = match stages.into_iter().collect::<Result<_, _>>() {
        Ok(threads) => threads,
        Err(e) => {
            log(format_args!("worker {slot}: cannot start a thread: {e}"));
            return 1;
        }
    };

    let limits = IntakeLimits {
        request_bytes_max: settings.request_bytes_max,
        request_timeout: Duration::from_millis(settings.request_timeout_ms),
        connections_max: settings.connections_max,
    };
    let outcome = intake::run(listener, &jobs_in, limits);
    // Closing the channel lets the handlers finish what is queued, then the flusher and
    // the courier, in turn.
    drop(jobs_in);
    for thread in threads.into_iter().rev() {
        let _ = thread.join();
    }
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            log(format_args!("worker {slot}: intake failed: {e}"));
            1
        }
    }
}

fn spawn(
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(body)
}

/// Asks the kernel to stop this worker when the supervisor dies, so that no orphan
/// keeps serving on the port.
fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
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
