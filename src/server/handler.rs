//! A handler thread: takes complete requests, executes them, writes the answers.
//!
//! Each thread keeps one database session (connection plus prepared statements) for
//! as long as it works, and replaces it from the pool only when it breaks.

use crate::exchange::{self, Sessions};
use crate::protocol::{self, ParseLimits, Response};
use crate::server::intake::{close_politely, write_before, Job};

use crate::server::log;
use crate::store::{Manager, Session, StoreError};
use crossbeam_channel::Receiver;
use r2d2::Pool;
use std::time::{Duration, Instant};

pub struct Handler {
    pool: Pool<Manager>,
    session: Option<Session>,
    limits: ParseLimits,
}

impl Sessions for Handler {
    fn session(&mut self) -> Result<&mut Session, StoreError> {
        let session = match self.session.take() {
            Some(session) if !session.is_broken() => session,
            _ => Session::open(&self.pool)?,
        };
        Ok(self.session.insert(session))
    }

    fn kept(&mut self) -> Option<&mut Session> {
        self.session.as_mut().filter(|session| !session.is_broken())
    }

    fn failed(&mut self, error: &StoreError) {
        log(format_args!("{error}"));
        let ended = matches!(error, StoreError::SessionEnded(_));
        if ended || self.session.as_ref().is_some_and(Session::is_broken) {
            self.session = None;
        }
    }
}

impl Handler {
    pub fn new(pool: Pool<Manager>, limits: ParseLimits) -> Handler {
        Handler {
            pool,
            session: None,
            limits,
        }
    }

    /// Serves jobs until the channel closes.
    pub fn run(mut self, jobs: Receiver<Job>) {
        for job in jobs {
            self.serve(job);
        }
    }

    fn serve(&mut self, job: Job) {
        let response = self.answer(&job.document);
        let bytes = protocol::render(&response);
        // The answer usually fits the socket's buffer at once; a slow reader gets until
        // the request's deadline, and at least a moment.
        let deadline = job
            .deadline
            .max(Instant::now() + Duration::from_millis(100));
        if write_before(&job.stream, &bytes, deadline).is_ok() {
            close_politely(&job.stream);
        }
    }

    /// Parses and executes one request document.
    pub fn answer(&mut self, document: &[u8]) -> Response {
        match protocol::parse(document, self.limits) {
            Ok(request) => exchange::execute(&request, self),
            Err(why) => Response::Rejected(why.0),
        }
    }
}
