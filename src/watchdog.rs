//! Cancels a database wait that PostgreSQL itself never ends: a commit's wait for a
//! synchronous standby, which `statement_timeout` does not count. A worker's watchdog
//! thread ([`run`]) checks the waits under way a few times a second and cancels,
//! through PostgreSQL's cancel request, each that has lasted its bound; a request that
//! did not reach the database is sent again, less and less often, for as long as the
//! wait lasts.
//!
//! Without it a primary cut off from its standbys but not from the servers (a
//! network split) would hold every session waiting on it until something outside
//! the server stopped that primary.

use crate::tls::Tls;
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often the thread looks: a wait is cancelled at most this much past its bound.
const TICK: Duration = Duration::from_millis(100);

/// What cancelling a session's statement takes: a way to send its cancel request, and
/// how long a watched wait may last.
pub struct Canceller {
    send: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
    pub bound: Duration,
}

impl Canceller {
    /// For the session `token` came from, reached with the TLS settings `tls`.
    pub fn new(token: postgres::CancelToken, tls: Tls, bound: Duration) -> Canceller {
        Canceller::sending(bound, move || {
            token.cancel_query(tls.clone()).map_err(|e| e.to_string())
        })
    }

    fn sending(
        bound: Duration,
        send: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Canceller {
        Canceller {
            send: Box::new(send),
            bound,
        }
    }
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
    /// A cancel request was tried: the session must be given up.
    cancelled: bool,
    /// A thread is sending one now.
    sending: bool,
    /// One reached the database: no more are sent.
    sent: bool,
    /// Requests that did not reach it; each puts off the next a little longer.
    failures: u32,
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
        sending: false,
        sent: false,
        failures: 0,
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
    let overdue: Vec<(u64, Arc<Canceller>, bool)> = waits()
        .entries
        .iter_mut()
        .filter(|e| e.due <= now && !e.sending && !e.sent)
        .map(|e| {
            let first = !e.cancelled;
            e.cancelled = true;
            e.sending = true;
            (e.id, e.canceller.clone(), first)
        })
        .collect();
    for (id, canceller, first) in overdue {
        if first {
            tracing::warn!(
                "a database wait passed {} ms; cancelling it",
                canceller.bound.as_millis()
            );
        }
        // A thread each: a cancel request opens a connection of its own, which a host
        // that stopped answering could hold, and the other waits must not wait for it.
        let span = tracing::Span::current();
        let sent = std::thread::Builder::new()
            .name("cancel".into())
            .spawn(move || {
                let _span = span.entered();
                let outcome = send(&canceller);
                if let Err(e) = &outcome {
                    tracing::warn!("the cancel request failed, to be tried again: {e}");
                }
                settle(id, outcome.is_ok());
            });
        if let Err(e) = sent {
            tracing::warn!("cannot start a thread to send a cancel request: {e}");
            settle(id, false);
        }
    }
}

thread_local! {
    static SENDING: Cell<bool> = const { Cell::new(false) };
}

/// True on a thread while it sends a cancel request: a panic there is caught, and is
/// no broken invariant of ours. (The postgres crate's cancel panics when it cannot
/// build its runtime, which takes file descriptors; with none free, the request
/// could not have been sent anyway, and it is tried again.)
pub fn sending_a_cancel() -> bool {
    SENDING.with(Cell::get)
}

fn send(canceller: &Canceller) -> Result<(), String> {
    SENDING.with(|s| s.set(true));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (canceller.send)()));
    SENDING.with(|s| s.set(false));
    outcome.unwrap_or_else(|_| Err("the postgres crate panicked sending it".into()))
}

/// Records how the cancel request for the wait `id` went; one that did not reach the
/// database is sent again, after 0.1, 0.2, 0.4, 0.8, then every 1.6 s, for as long as
/// the wait lasts.
fn settle(id: u64, sent: bool) {
    if let Some(entry) = waits().entries.iter_mut().find(|e| e.id == id) {
        entry.sending = false;
        entry.sent = sent;
        if !sent {
            entry.due = Instant::now() + TICK * 2u32.pow(entry.failures.min(4));
            entry.failures += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A canceller whose waits may last `bound`, and whose `n`-th request (from 0) goes
    /// as `outcome(n)` says; with the count of requests it sent.
    fn canceller(
        bound: Duration,
        outcome: impl Fn(usize) -> Result<(), String> + Send + Sync + 'static,
    ) -> (Arc<Canceller>, Arc<AtomicUsize>) {
        let tries = Arc::new(AtomicUsize::new(0));
        let counted = tries.clone();
        let canceller = Canceller::sending(bound, move || {
            outcome(counted.fetch_add(1, Ordering::SeqCst))
        });
        (Arc::new(canceller), tries)
    }

    fn reached_the_database(watch: &Watch) -> bool {
        waits().entries.iter().any(|e| e.id == watch.id && e.sent)
    }

    /// Looks as the watchdog thread does, until `watch`'s cancel reached the database
    /// or 5 s passed; then a few more times, which must send nothing more.
    fn tick_until_sent(watch: &Watch) {
        let started = Instant::now();
        while !reached_the_database(watch) && started.elapsed() < Duration::from_secs(5) {
            cancel_overdue();
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..5 {
            cancel_overdue();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_cancel_request_that_failed_is_sent_again() {
        let (canceller, tries) = canceller(Duration::ZERO, |n| match n {
            0 => Err("connection refused".into()),
            _ => Ok(()),
        });
        let watch = watch(&canceller);
        tick_until_sent(&watch);
        assert_eq!(tries.load(Ordering::SeqCst), 2);
        assert!(watch.finish(), "a cancelled wait gives its session up");
    }

    #[test]
    fn a_cancel_request_that_panicked_is_caught_and_sent_again() {
        static MARKED: AtomicBool = AtomicBool::new(false);
        let (canceller, tries) = canceller(Duration::ZERO, |n| {
            // The panic hook of a worker tells this panic from a broken invariant by
            // the mark, so it must be on while the request is sent.
            MARKED.fetch_or(sending_a_cancel(), Ordering::SeqCst);
            match n {
                0 => panic!("no file descriptor for a runtime"),
                _ => Ok(()),
            }
        });
        let watch = watch(&canceller);
        tick_until_sent(&watch);
        assert_eq!(tries.load(Ordering::SeqCst), 2);
        assert!(MARKED.load(Ordering::SeqCst));
        assert!(!sending_a_cancel());
        assert!(watch.finish());
    }

    #[test]
    fn a_wait_within_its_bound_is_left_alone() {
        let (canceller, tries) = canceller(Duration::from_secs(60), |_| Ok(()));
        let watch = watch(&canceller);
        cancel_overdue();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(tries.load(Ordering::SeqCst), 0);
        assert!(!watch.finish());
    }
}
