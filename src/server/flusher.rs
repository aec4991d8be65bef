//! A worker's durability: one wait for the WAL covers every answer finished since the
//! last one, and then those answers go out.
//!
//! Handler threads commit without waiting for the disk and pass their answers here
//! rather than each waiting on its own session, so they go on to the next request at
//! once, and one more round trip leaves every request's path.
//!
//! Why another session's flush vouches for a handler's commits: the handler passes its
//! answer on only after its commits returned, so the flusher's WAL record follows
//! theirs, and the WAL reaches the disk in order. Only a crash in between could lose
//! them, and a crash ends every session. So the flusher vouches only for requests that
//! began after its own session was opened, and only on the same server as the session
//! that made their commits (`store::ServerId`: with two writable servers, after a
//! standby was promoted while the old primary still ran, the flusher may reconnect to
//! one while handlers stay on the other). Any other answer (the flusher's session
//! failed, was opened anew while the request ran, or is on another server) goes back to
//! the handler whose session made the commits, which then waits for the WAL on that
//! session itself.

use crate::exchange;
use crate::metrics;
use crate::protocol;
use crate::server::answered;
use crate::server::courier::Courier;
use crate::store::{Manager, ServerId, Session, StoreError};
use crossbeam_channel::{Receiver, Sender};
use r2d2::Pool;
use std::net::TcpStream;
use std::time::Instant;

/// Why an answer is "outcome unknown" when no session can vouch for its commits.
pub const SESSION_GONE: &str = "the database session that made its commits is gone";

/// An answer that may be sent once the WAL is on disk past its request's work.
pub struct Awaiting {
    pub stream: TcpStream,
    /// The rendered answer (rendered by the handler: this thread is one per worker).
    pub bytes: Vec<u8>,
    /// What the request was, and when its first statement was sent.
    pub request: answered::Executed,
    /// Which of its handler's sessions made the request's commits.
    pub session: u64,
    /// The server that session is on: only a wait for the WAL there vouches for them.
    pub server: ServerId,
    /// The handler, for an answer the flusher cannot vouch for.
    pub owner: Sender<Awaiting>,
}

pub struct Flusher {
    pool: Pool<Manager>,
    /// The session, and when it was opened: it vouches for requests begun after that.
    session: Option<(Session, Instant)>,
    courier: Courier,
}

impl Flusher {
    /// Opens the flusher's session at once, before any request begins, so that it can
    /// vouch for the first ones.
    pub fn new(pool: Pool<Manager>, courier: Courier) -> Flusher {
        let mut flusher = Flusher {
            pool,
            session: None,
            courier,
        };
        if let Err(e) = flusher.reopen() {
            tracing::warn!("flusher: {e}");
        }
        flusher
    }

    /// Serves until every handler has gone and nothing awaits.
    pub fn run(mut self, awaiting: Receiver<Awaiting>) {
        // Kept across flushes: one allocation for the thread's life, not one per flush.
        let mut batch = Vec::new();
        while let Ok(first) = awaiting.recv() {
            // Whatever gathered while the last flush was under way shares this one.
            batch.push(first);
            batch.extend(awaiting.try_iter());
            metrics::observe_flush_batch(batch.len());
            let waited = Instant::now();
            let flushed = self.flush();
            let waited = waited.elapsed();
            metrics::observe_durability(waited);
            for answer in batch.drain(..) {
                let vouched = flushed.is_some_and(|(opened, server)| {
                    opened <= answer.request.began && server == answer.server
                });
                if vouched {
                    answered::record(&answer.request, waited, &answer.stream);
                    self.courier.deliver(answer.stream, answer.bytes);
                } else if let Err(returned) = answer.owner.clone().send(answer) {
                    // The handler has gone: it waits for its answers before it exits, so
                    // only a handler that died ends here, and nobody can vouch.
                    let answer = returned.into_inner();
                    let bytes = protocol::render(&exchange::not_durable(&SESSION_GONE));
                    metrics::worker()
                        .answers_not_durable
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.courier.deliver(answer.stream, bytes);
                }
            }
        }
    }

    /// Waits for the WAL on the kept session; says when that session was opened and
    /// which server it is on, or None if the wait failed.
    fn flush(&mut self) -> Option<(Instant, ServerId)> {
        if self.session.as_ref().is_none_or(|(s, _)| s.is_broken()) {
            if let Err(e) = self.reopen() {
                tracing::warn!("flusher: {e}");
                return None;
            }
        }
        let (session, opened) = self.session.as_mut()?;
        match session.make_durable() {
            Ok(()) => Some((*opened, session.server())),
            Err(e) => {
                tracing::warn!("flusher: {e}");
                // The server may have ended the session: a fresh one now can vouch for
                // the requests that begin from here on.
                if let Err(again) = self.reopen() {
                    tracing::warn!("flusher: {again}");
                }
                None
            }
        }
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        self.session = None;
        let session = Session::open(&self.pool)?;
        self.session = Some((session, Instant::now()));
        Ok(())
    }
}
