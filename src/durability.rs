//! The rule that an answer goes out only once every commit it made or read is durable,
//! and all that keeps it: which session made a request's commits, the worker's
//! flusher that waits for the WAL once for many answers, and the way back to the
//! handler for an answer the flusher cannot vouch for.
//!
//! Each write commits without waiting for the disk (`store`), so that it releases its
//! symbol's lock at once instead of holding it through an fsync. Before a request that
//! reached the database is answered, one wait for the WAL (`Session::make_durable`)
//! covers everything it wrote or read.
//!
//! Who may vouch for a request's commits:
//! - The session that made them: its wait follows its own commits in the WAL, which
//!   reaches the disk in order, and had the database lost them (a crash), it would
//!   have ended the session too. So a request stays on the session that first
//!   answered it ([`Connection::run`]), and fails rather than move to another.
//! - The worker's flusher, for many requests at once: the handler passes an answer on
//!   only after its commits returned, so the flusher's WAL record follows theirs. Only
//!   a crash in between could lose them, and a crash ends every session; so it vouches
//!   only for requests that began after its own session was opened, and only on the
//!   same server (`store::ServerId`: after a failover with the old primary still
//!   running, the flusher may reconnect to one server while handlers stay on the
//!   other).
//!
//! An answer the flusher cannot vouch for goes back to the handler whose session made
//! its commits ([`Answers::take_back`]), which waits on that session itself, or, if it
//! is gone too, answers "outcome unknown": the commits may stand.

use crate::metrics;
use crate::protocol::{self, Response};
use crate::rejection::OUTCOME_UNKNOWN;
use crate::server::answered;
use crate::server::courier::Courier;
use crate::store::{Manager, ServerId, Session, StoreError};
use crossbeam_channel::{Receiver, Sender};
use r2d2::Pool;
use std::fmt;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Why an answer is "outcome unknown" when no session can vouch for its commits.
const SESSION_GONE: &str = "the database session that made its commits is gone";

/// The session that made a request's commits: the `ordinal`-th its handler opened, on
/// `server`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commits {
    ordinal: u64,
    server: ServerId,
}

/// A handler thread's database session, kept for as long as it works and replaced from
/// the pool only when it breaks, and what the current request has done on it.
pub struct Connection {
    pool: Pool<Manager>,
    session: Option<Session>,
    /// Sessions opened so far: names the one that made a request's commits.
    opened: u64,
    /// The session the current request's commits were made on, once the database has
    /// answered it. Kept after that session breaks: the commits it made are still on
    /// its server, and a wait for the WAL there covers them.
    touched: Option<Commits>,
}

impl Connection {
    pub fn new(pool: Pool<Manager>) -> Connection {
        Connection {
            pool,
            session: None,
            opened: 0,
            touched: None,
        }
    }

    /// Starts a request: nothing of it has reached the database yet.
    pub fn begin(&mut self) {
        self.touched = None;
    }

    /// The session the current request's commits were made on, if the database
    /// answered it: the answer must then wait until they are durable.
    pub fn touched(&self) -> Option<Commits> {
        self.touched
    }

    /// Runs one operation of the current request.
    ///
    /// Until the database has answered this request, a session the server ended (say,
    /// by a restart since it was last used) did not run anything of it, so the
    /// operation runs once more on a fresh connection. After that the request stays on
    /// its session: commits not yet durable on a lost session may have been lost with
    /// it, and a new session could not vouch for them.
    pub fn run<T>(
        &mut self,
        mut operation: impl FnMut(&mut Session) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut on =
            |session: &mut Session| operation(session).map(|value| (value, session.server()));
        let mut result = match self.touched {
            Some(_) => self.kept().and_then(&mut on),
            None => self.session().and_then(&mut on),
        };
        if let (None, Err(ended @ StoreError::SessionEnded(_))) = (self.touched, &result) {
            self.failed(ended);
            result = self.session().and_then(&mut on);
        }
        match result {
            Ok((value, server)) => {
                let commits = Commits {
                    ordinal: self.opened,
                    server,
                };
                // A request stays on the session the database first answered it on.
                assert!(
                    self.touched.is_none_or(|touched| touched == commits),
                    "a request's commits moved from {:?} to {commits:?}",
                    self.touched
                );
                self.touched = Some(commits);
                Ok(value)
            }
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }

    /// Waits for the WAL on this session if it is the one that made `commits`.
    fn vouch_for(&mut self, commits: Commits) -> Result<(), String> {
        if commits.ordinal != self.opened {
            return Err(SESSION_GONE.to_string());
        }
        self.kept()
            .and_then(Session::make_durable)
            .inspect_err(|e| self.failed(e))
            .map_err(|e| e.to_string())
    }

    /// The session, opened anew if there is none or it broke.
    fn session(&mut self) -> Result<&mut Session, StoreError> {
        // A broken one goes back to the pool first: the pool has a connection for each
        // thread and no more, so the new one may need its place.
        if self.session.as_ref().is_some_and(Session::is_broken) {
            self.session = None;
        }
        let session = match self.session.take() {
            Some(session) => session,
            None => {
                let session = Session::open(&self.pool)?;
                self.opened += 1;
                session
            }
        };
        Ok(self.session.insert(session))
    }

    /// The session as it is, never replaced.
    fn kept(&mut self) -> Result<&mut Session, StoreError> {
        let kept = self.session.as_mut().filter(|session| !session.is_broken());
        kept.ok_or_else(|| {
            StoreError::Unavailable(
                "the connection broke before this request's results were durable".into(),
            )
        })
    }

    /// After a failure: a broken or ended session is dropped, to be replaced.
    fn failed(&mut self, error: &StoreError) {
        tracing::warn!("{error}");
        let ended = matches!(error, StoreError::SessionEnded(_));
        if ended || self.session.as_ref().is_some_and(Session::is_broken) {
            self.session = None;
        }
    }
}

/// The answer to a request whose results could not be made durable: they may stand.
fn not_durable(why: &dyn fmt::Display) -> Response {
    Response::Rejected(format!(
        "{OUTCOME_UNKNOWN}: the database failed before this request's results were \
         durable ({why}); operations before the failure may stand"
    ))
}

/// An answer that may be sent once the WAL is on disk past its request's work.
pub struct Awaiting {
    stream: TcpStream,
    /// The rendered answer (rendered by the handler: the flusher is one per worker).
    bytes: Vec<u8>,
    /// What the request was, and when its first statement was sent.
    request: answered::Record,
    commits: Commits,
    /// The handler, for an answer the flusher cannot vouch for.
    owner: Sender<Awaiting>,
}

impl Awaiting {
    fn send(self, waited: Duration, courier: &Courier) {
        answered::record(&self.request, waited, &self.stream);
        courier.deliver(self.stream, self.bytes);
    }

    /// Answers "outcome unknown" instead: nobody could vouch for its commits.
    fn unvouched(self, why: &dyn fmt::Display, waited: Duration, courier: &Courier) {
        metrics::worker()
            .answers_not_durable
            .fetch_add(1, Ordering::Relaxed);
        answered::record(&self.request, waited, &self.stream);
        courier.deliver(self.stream, protocol::render(&not_durable(why)));
    }
}

/// A handler thread's side of durability: passes each answer on, to the flusher when
/// it must wait for the WAL, and takes back the answers the flusher gives back.
pub struct Answers {
    flusher: Sender<Awaiting>,
    /// Cloned into every answer given to the flusher, for giving it back.
    owner: Sender<Awaiting>,
    returned: Receiver<Awaiting>,
    courier: Courier,
}

impl Answers {
    pub fn new(flusher: Sender<Awaiting>, courier: Courier) -> Answers {
        let (owner, returned) = crossbeam_channel::unbounded();
        Answers {
            flusher,
            owner,
            returned,
            courier,
        }
    }

    /// Sends `response` to its client: at once if the request never reached the
    /// database (`touched` is None), else once the commits it made are durable.
    pub fn send(
        &self,
        connection: &mut Connection,
        stream: TcpStream,
        response: &Response,
        touched: Option<Commits>,
        request: answered::Record,
    ) {
        let bytes = protocol::render(response);
        let Some(commits) = touched else {
            answered::record(&request, Duration::ZERO, &stream);
            self.courier.deliver(stream, bytes);
            return;
        };
        let awaiting = Awaiting {
            stream,
            bytes,
            request,
            commits,
            owner: self.owner.clone(),
        };
        if let Err(unsent) = self.flusher.send(awaiting) {
            vouch(connection, unsent.into_inner(), &self.courier);
        }
    }

    /// Sends the answers the flusher gave back, each once this thread's session has
    /// vouched for it: their clients have waited longest.
    pub fn take_back(&self, connection: &mut Connection) {
        while let Ok(answer) = self.returned.try_recv() {
            vouch(connection, answer, &self.courier);
        }
    }

    /// Once this handler serves no more: hands the flusher nothing more, and sends
    /// every answer it still holds for this handler as the flusher lets go of it. The
    /// flusher holds a clone of `owner` in each such answer, so `returned` closes once
    /// it has sent or given back the last of them.
    pub fn finish(self, connection: &mut Connection) {
        let Answers {
            flusher,
            owner,
            returned,
            courier,
        } = self;
        drop((flusher, owner));
        for answer in returned {
            vouch(connection, answer, &courier);
        }
    }
}

/// Sends `answer` once `connection` has vouched for its commits, or "outcome unknown".
fn vouch(connection: &mut Connection, answer: Awaiting, courier: &Courier) {
    let began = Instant::now();
    let durable = connection.vouch_for(answer.commits);
    let waited = began.elapsed();
    metrics::observe_durability(waited);
    match durable {
        Ok(()) => answer.send(waited, courier),
        Err(why) => answer.unvouched(&why, waited, courier),
    }
}

/// One per worker: waits for the WAL once for every answer finished since its last
/// wait, and sends those it can vouch for.
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
            let began = Instant::now();
            let flushed = self.flush();
            let waited = began.elapsed();
            metrics::observe_durability(waited);
            for answer in batch.drain(..) {
                let vouched = flushed.is_some_and(|(opened, server)| {
                    opened <= answer.request.began && server == answer.commits.server
                });
                if vouched {
                    answer.send(waited, &self.courier);
                } else if let Err(returned) = answer.owner.clone().send(answer) {
                    // The handler has gone: it waits for its answers before it exits, so
                    // only a handler that died ends here, and nobody can vouch.
                    returned
                        .into_inner()
                        .unvouched(&SESSION_GONE, waited, &self.courier);
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
