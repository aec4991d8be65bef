//! Cancels a database wait that PostgreSQL itself never ends: a commit's wait for a
//! synchronous standby, which `statement_timeout` does not count. One thread per
//! process checks the waits under way a few times a second and cancels, through
//! PostgreSQL's cancel request, each that has lasted its bound.
//!
//! Without it a primary cut off from its standbys but not from the servers (a
//! network split) would hold every session waiting on it until something outside
//! the server stopped that primary.

use crate::tls::Tls;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How often the thread looks: a wait is cancelled at most this much past its bound.
const TICK: Duration = Duration::from_millis(100);

/// What cancelling a session's statement takes: its cancel key and address, the TLS
/// settings of its connection, and how long a watched wait may last.
pub struct Canceller {
    pub token: postgres::CancelToken,
    pub tls: Tls,
    pub bound: Duration,
}

/// A wait being watched; [`Watch::finish`] ends it and tells whether it was cancelled.
#[must_use = "a watch left alone would be cancelled when its bound passes"]
pub struct Watch {
    id: u64,
}

struct Entry {
    id: u64,
    due: Instant,
    canceller: Arc<Canceller>,
    cancelled: bool,
}

#[derive(Default)]
struct Waits {
    next_id: u64,
    entries: Vec<Entry>,
}

/// The waits of this process, and its thread, started at the first watch (so in a
/// worker, after the fork: a thread does not survive one).
fn waits() -> MutexGuard<'static, Waits> {
    static WAITS: OnceLock<Mutex<Waits>> = OnceLock::new();
    let waits = WAITS.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(|| loop {
                std::thread::sleep(TICK);
                cancel_overdue();
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the watchdog thread: {e}; waits go unbounded");
        }
        Mutex::default()
    });
    waits.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts watching a wait on the session `canceller` belongs to.
pub fn watch(canceller: &Arc<Canceller>) -> Watch {
    let mut waits = waits();
    let id = waits.next_id;
    waits.next_id += 1;
    waits.entries.push(Entry {
        id,
        due: Instant::now() + canceller.bound,
        canceller: canceller.clone(),
        cancelled: false,
    });
    Watch { id }
}

impl Watch {
    /// Stops watching; true if the wait was cancelled (or a cancel is on its way). The
    /// session must then be given up: a cancel that arrives after the wait ended would
    /// fall on whatever the session runs next.
    pub fn finish(self) -> bool {
        let mut waits = waits();
        let at = waits.entries.iter().position(|e| e.id == self.id);
        at.is_some_and(|at| waits.entries.swap_remove(at).cancelled)
    }
}

/// Cancels every wait past its bound, once each.
fn cancel_overdue() {
    let now = Instant::now();
    let overdue: Vec<Arc<Canceller>> = waits()
        .entries
        .iter_mut()
        .filter(|e| !e.cancelled && e.due <= now)
        .map(|e| {
            e.cancelled = true;
            e.canceller.clone()
        })
        .collect();
    // Outside the lock: a cancel request opens a connection of its own.
    for canceller in overdue {
        tracing::warn!(
            "a database wait passed {} ms; cancelling it",
            canceller.bound.as_millis()
        );
        if let Err(e) = canceller.token.cancel_query(canceller.tls.clone()) {
            tracing::warn!("the cancel request failed: {e}");
        }
    }
}
