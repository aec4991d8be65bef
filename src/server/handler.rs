//! A handler thread: takes turns at the worker's intake, executes each complete
//! request it reads there, and passes the answer on (`durability::Answers`).
//!
//! Each thread keeps one database session for as long as it works
//! (`durability::Connection`), and replaces it from the pool only when it breaks.

use crate::command;
use crate::durability::{Answers, Commits, Connection};
use crate::exchange;
use crate::metrics::{self, OperationOutcome, RequestKind};
use crate::protocol::{self, Outcome, ParseLimits, Request, Response};
use crate::rejection::is_service_failure;
use crate::server::abandoned::abandoned;
use crate::server::answered;
use crate::server::intake::{Intake, Job, Turn};
use std::time::Instant;

/// The bounds a handler executes requests under.
#[derive(Clone, Copy, Debug)]
pub struct HandlerLimits {
    pub parse: ParseLimits,
    pub response_bytes_max: usize,
}

pub struct Handler {
    connection: Connection,
    limits: HandlerLimits,
}

impl Handler {
    pub fn new(connection: Connection, limits: HandlerLimits) -> Handler {
        Handler { connection, limits }
    }

    /// Serves requests from the worker's intake until a stop is requested and the
    /// intake is done, then sends every answer it still has on its way.
    pub fn run(mut self, intake: &Intake, answers: Answers) -> std::io::Result<()> {
        let mut reader = intake.reader();
        let outcome = loop {
            // Answers the flusher gave back first: their clients have waited longest.
            answers.take_back(&mut self.connection);
            match intake.turn(&mut reader) {
                Ok(Turn::Request(job)) => match abandoned(&job, intake.limits().request_timeout) {
                    Some(why) => intake.drop_abandoned(job, why),
                    None => self.serve(job, &answers),
                },
                Ok(Turn::Nothing) => {}
                Ok(Turn::Finished) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        answers.finish(&mut self.connection);
        outcome
    }

    fn serve(&mut self, job: Job, answers: &Answers) {
        let began = Instant::now();
        let (response, touched, kind) = self.execute(&job.document);
        let database = began.elapsed();
        metrics::observe_database(database);
        count(kind, &response);
        let request = answered::Record {
            kind,
            operations: match &response {
                Response::Results(outcomes) => outcomes.len(),
                Response::Rejected(_) => 0,
            },
            began,
            database,
        };
        answers.send(
            &mut self.connection,
            job.stream,
            &response,
            touched,
            request,
        );
    }

    /// Parses, checks and executes one request, leaving its durability to the caller:
    /// the response, and what it touched in the database.
    fn execute(&mut self, document: &[u8]) -> (Response, Option<Commits>, RequestKind) {
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
                let operations = command::check(&request);
                let executed =
                    exchange::execute(operations, &mut self.connection, response_bytes_max);
                (executed.response, executed.touched, kind)
            }
            // Nothing of a request that does not parse reaches the database.
            Err(why) => (Response::Rejected(why.0), None, RequestKind::Malformed),
        }
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
