//! A handler thread: executes the complete requests it reads from the worker's intake,
//! and passes the answers on: to the flusher when they must wait for the WAL, else
//! straight to the courier.
//!
//! Each thread keeps one database session (connection plus prepared statements) for
//! as long as it works, and replaces it from the pool only when it breaks.

use crate::exchange::{self, Executed, Sessions};
use crate::metrics::{self, OperationOutcome, RequestKind};
use crate::protocol::{self, Outcome, ParseLimits, Request, Response};
use crate::rejection::is_service_failure;
use crate::server::abandoned::abandoned;
use crate::server::answered;
use crate::server::courier::Courier;
use crate::server::flusher::{Awaiting, SESSION_GONE};
use crate::server::intake::{Intake, Job, Serve};

use crate::store::{Manager, ServerId, Session, StoreError};
use crossbeam_channel::{Receiver, Sender};
use r2d2::Pool;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The bounds a handler executes requests under.
#[derive(Clone, Copy, Debug)]
pub struct HandlerLimits {
    pub parse: ParseLimits,
    pub response_bytes_max: usize,
}

pub struct Handler {
    pool: Pool<Manager>,
    session: Option<Session>,
    /// Sessions opened so far: names the one that made a request's commits.
    sessions_opened: u64,
    /// The server the last session opened is on, kept after the session breaks: commits
    /// it made are still there, and a wait for the WAL on that server covers them.
    server: Option<ServerId>,
    limits: HandlerLimits,
}

impl Sessions for Handler {
    fn session(&mut self) -> Result<&mut Session, StoreError> {
        let session = match self.session.take() {
            Some(session) if !session.is_broken() => session,
            _ => {
                let session = Session::open(&self.pool)?;
                self.sessions_opened += 1;
                self.server = Some(session.server());
                session
            }
        };
        Ok(self.session.insert(session))
    }

    fn kept(&mut self) -> Option<&mut Session> {
        self.session.as_mut().filter(|session| !session.is_broken())
    }

    fn failed(&mut self, error: &StoreError) {
        tracing::warn!("{error}");
        let ended = matches!(error, StoreError::SessionEnded(_));
        if ended || self.session.as_ref().is_some_and(Session::is_broken) {
            self.session = None;
        }
    }
}

impl Handler {
    pub fn new(pool: Pool<Manager>, limits: HandlerLimits) -> Handler {
        Handler {
            pool,
            session: None,
            sessions_opened: 0,
            server: None,
            limits,
        }
    }

    /// Serves requests from the worker's intake until a stop is requested, then waits
    /// for the flusher to let go of every answer it was given.
    pub fn run(
        mut self,
        intake: &Intake,
        flusher: Sender<Awaiting>,
        courier: Courier,
    ) -> std::io::Result<()> {
        let (owner, returned) = crossbeam_channel::unbounded();
        let mut serving = Serving {
            handler: &mut self,
            intake,
            flusher,
            owner,
            returned: &returned,
            courier: &courier,
        };
        let outcome = intake.run(&mut serving);
        drop(serving);
        // The answers the flusher still holds each carry a sender of `returned`: it
        // closes once the flusher has sent or given back the last of them.
        for answer in returned {
            self.vouch(answer, &courier);
        }
        outcome
    }

    fn serve(
        &mut self,
        job: Job,
        flusher: &Sender<Awaiting>,
        owner: &Sender<Awaiting>,
        courier: &Courier,
    ) {
        let began = Instant::now();
        let (executed, kind) = self.execute(&job.document);
        let database = began.elapsed();
        metrics::observe_database(database);
        let (Executed::Ready(response) | Executed::AwaitsDurability(response)) = &executed;
        count(kind, response);
        let request = answered::Executed {
            kind,
            operations: match response {
                Response::Results(outcomes) => outcomes.len(),
                Response::Rejected(_) => 0,
            },
            began,
            database,
        };
        match executed {
            Executed::Ready(response) => {
                answered::record(&request, Duration::ZERO, &job.stream);
                courier.deliver(job.stream, protocol::render(&response));
            }
            Executed::AwaitsDurability(response) => {
                let bytes = protocol::render(&response);
                let Some(server) = self.server else {
                    // Unreachable: the database answered, so a session was opened.
                    let why = exchange::not_durable(&SESSION_GONE);
                    courier.deliver(job.stream, protocol::render(&why));
                    return;
                };
                let awaiting = Awaiting {
                    stream: job.stream,
                    bytes,
                    request,
                    session: self.sessions_opened,
                    server,
                    owner: owner.clone(),
                };
                if let Err(unsent) = flusher.send(awaiting) {
                    self.vouch(unsent.into_inner(), courier);
                }
            }
        }
    }

    /// Waits for the WAL on this thread's session, if it is still the one that made the
    /// answer's commits, then sends the answer.
    fn vouch(&mut self, answer: Awaiting, courier: &Courier) {
        let waited = Instant::now();
        let durable = if answer.session == self.sessions_opened {
            exchange::make_durable(self).map_err(|e| e.to_string())
        } else {
            Err(SESSION_GONE.to_string())
        };
        let waited = waited.elapsed();
        metrics::observe_durability(waited);
        let bytes = match durable {
            Ok(()) => answer.bytes,
            Err(why) => {
                metrics::worker()
                    .answers_not_durable
                    .fetch_add(1, Ordering::Relaxed);
                protocol::render(&exchange::not_durable(&why))
            }
        };
        answered::record(&answer.request, waited, &answer.stream);
        courier.deliver(answer.stream, bytes);
    }

    /// Parses and executes one request, leaving its durability to the caller.
    fn execute(&mut self, document: &[u8]) -> (Executed, RequestKind) {
        let HandlerLimits {
            parse,
            response_bytes_max,
        } = self.limits;
        match protocol::parse(document, parse) {
            Ok(request) => {
                let kind = match request {
                    Request::Create(_) => RequestKind::Create,
                    Request::Transactions { .. } => RequestKind::Transactions,
                };
                (exchange::execute(&request, self, response_bytes_max), kind)
            }
            Err(why) => (
                Executed::Ready(Response::Rejected(why.0)),
                RequestKind::Malformed,
            ),
        }
    }

    /// Parses and executes one request, durably, on this thread's own session.
    pub fn answer(&mut self, document: &[u8]) -> Response {
        let (executed, _) = self.execute(document);
        exchange::settle(executed, self)
    }
}

/// Counts a request and each of its operations by what its answer says.
fn count(kind: RequestKind, response: &Response) {
    let service_failure = match response {
        Response::Rejected(why) => is_service_failure(why),
        Response::Results(outcomes) => {
            let mut failed = false;
            for outcome in outcomes {
                let counted = match outcome {
                    Outcome::AccountCreated { .. } => OperationOutcome::AccountCreated,
                    Outcome::PositionCreated { .. } => OperationOutcome::PositionCreated,
                    Outcome::Opened { .. } => OperationOutcome::Opened,
                    Outcome::Status { .. } => OperationOutcome::Queried,
                    Outcome::Canceled { .. } => OperationOutcome::Canceled,
                    Outcome::Error { message, .. } => {
                        metrics::count_rejection(message);
                        if is_service_failure(message) {
                            failed = true;
                            OperationOutcome::ServiceFailure
                        } else {
                            OperationOutcome::Rejected
                        }
                    }
                };
                metrics::count_operation(counted);
            }
            failed
        }
    };
    metrics::count_request(kind, service_failure);
}

/// A handler at work: what it needs to pass answers on, for its intake's loop.
struct Serving<'a> {
    handler: &'a mut Handler,
    intake: &'a Intake,
    flusher: Sender<Awaiting>,
    /// Where the flusher gives back answers it cannot vouch for.
    owner: Sender<Awaiting>,
    returned: &'a Receiver<Awaiting>,
    courier: &'a Courier,
}

impl Serve for Serving<'_> {
    fn serve(&mut self, job: Job) {
        if let Some(why) = abandoned(&job, self.intake.limits().request_timeout) {
            self.intake.drop_abandoned(job, why);
            return;
        }
        self.handler
            .serve(job, &self.flusher, &self.owner, self.courier);
    }

    /// Answers the flusher gave back: their clients have waited longest.
    fn tend(&mut self) {
        while let Ok(answer) = self.returned.try_recv() {
            self.handler.vouch(answer, self.courier);
        }
    }
}
