//! Cancels a database wait that PostgreSQL itself never ends: a commit's wait for a
//! synchronous standby, which `statement_timeout` does not count. A worker's watchdog
//! thread ([`run`]) checks the waits under way a few times a second and cancels,
//! through PostgreSQL's cancel request, each that has lasted its bound.
//!
//! Without it a primary cut off from its standbys but not from the servers (a
//! network split) would hold every session waiting on it until something outside
//! the server stopped that primary.

use crate::tls::Tls;
use std::sync::{Arc, Mutex, MutexGuard};
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

/// A wait being watched until [`Watch::finish`] (or, should a caller return early,
/// until the watch is dropped).
#[must_use = "a watch left alone would be cancelled when its bound passes"]
pub struct Watch {
    id: u64,
    finished: bool,
}

struct Entry {
    id: u64,
    due: Instant,
    canceller: Arc<Canceller>,
    cancelled: bool,
}

struct Waits {
    next_id: u64,
    entries: Vec<Entry>,
}

/// The waits under way in this process.
fn waits() -> MutexGuard<'static, Waits> {
    static WAITS: Mutex<Waits> = Mutex::new(Waits {
        next_id: 0,
        entries: Vec::new(),
    });
    WAITS.lock().unwrap_or_else(|e| e.into_inner())
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
    Watch {
        id,
        finished: false,
    }
}

impl Watch {
    /// Stops watching; true if the wait was cancelled (or a cancel is on its way). The
    /// session must then be given up: a cancel that arrives after the wait ended would
    /// fall on whatever the session runs next.
    pub fn finish(mut self) -> bool {
        self.finished = true;
        remove(self.id)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.finished {
            remove(self.id);
        }
    }
}

/// Forgets the wait `id`; true if it was cancelled.
fn remove(id: u64) -> bool {
    let mut waits = waits();
    let at = waits.entries.iter().position(|e| e.id == id);
    at.is_some_and(|at| waits.entries.swap_remove(at).cancelled)
}

/// The watchdog thread's life: cancels every wait past its bound, once each, and
/// never returns.
pub fn run() {
    loop {
        std::thread::sleep(TICK);
        cancel_overdue();
    }
}

fn cancel_overdue() {
    let now = Instant::now();
    let overdue: Vec<(u64, Arc<Canceller>)> = waits()
        .entries
        .iter_mut()
        .filter(|e| !e.cancelled && e.due <= now)
        .map(|e| {
            e.cancelled = true;
            (e.id, e.canceller.clone())
        })
        .collect();
    for (id, canceller) in overdue {
        tracing::warn!(
            "a database wait passed {} ms; cancelling it",
            canceller.bound.as_millis()
        );
        // A thread each: a cancel request opens a connection of its own, which a host
        // that stopped answering could hold, and the other waits must not wait for it.
        let span = tracing::Span::current();
        let sent = std::thread::Builder::new()
            .name("cancel".into())
            .spawn(move || {
                let _span = span.entered();
                if let Err(e) = canceller.token.cancel_query(canceller.tls.clone()) {
                    tracing::warn!("the cancel request failed: {e}");
                }
            });
        if let Err(e) = sent {
            // Nothing was sent: the wait stays as it was, to be tried at the next tick.
            tracing::warn!("cannot start a thread to send a cancel request: {e}");
            if let Some(entry) = waits().entries.iter_mut().find(|e| e.id == id) {
                entry.cancelled = false;
            }
        }
    }
}
