//! Executes a request's checked commands against the database and builds the typed
//! response.
//!
//! Each command runs as its own database transaction, in request order; a rejection is
//! a value in the response, in the operation's place. After a database failure the
//! rest of the request is answered "not executed" rather than retried against a
//! database that just failed. With the response goes what the request touched, the
//! session its commits were made on: the answer waits until they are durable.

use crate::command::{Command, Operation};
use crate::durability::{Commits, Connection};
use crate::model::{AccountId, OrderId, Symbol};
use crate::protocol::render::{
    self, ANSWER_ENVELOPE_BYTES, FILL_BYTES_MAX, OPERATION_BYTES_RESERVED, ORDER_STATE_BYTES_MAX,
};
use crate::protocol::{Outcome, Response};
use crate::rejection::{Refusal, Rejection, ServiceFailure};
use crate::store::{Canceled, OrderRefusal, Placed, Session, StoreError};
use rust_decimal::Decimal;

/// A request's response, and the session its commits were made on if the database
/// answered it: the response may be sent only once those are durable.
#[derive(Debug)]
pub struct Executed {
    pub response: Response,
    pub touched: Option<Commits>,
}

/// Executes `operations`, one database transaction per command, in order. Their
/// commits are not yet durable: the caller sends the response only once they are.
///
/// The whole answer is at most `answer_bytes_max` bytes (docs/PROTOCOL.md, Limits),
/// which must hold [`answer_bytes_needed`] for the request: every operation has
/// [`OPERATION_BYTES_RESERVED`] kept for it until its turn. An order's state lists as
/// many fills as fit, oldest first, and says how many it leaves out; an error that
/// would echo more than fits is answered without the echo.
pub fn execute(
    operations: Vec<Operation>,
    connection: &mut Connection,
    answer_bytes_max: usize,
) -> Executed {
    assert!(
        answer_bytes_max >= answer_bytes_needed(operations.len()),
        "the settings let through a request whose answer cannot fit"
    );
    connection.begin();
    let mut execution = Execution {
        connection,
        database_failed: false,
        account: Existence::Unknown,
        answer: AnswerBound {
            bytes_left: answer_bytes_max - ANSWER_ENVELOPE_BYTES,
            operations_left: operations.len(),
            bytes_max: answer_bytes_max,
        },
    };
    let count = operations.len();
    let outcomes: Vec<Outcome> = operations
        .into_iter()
        .map(|operation| {
            let outcome = execution.operation(operation);
            execution.answer.take(outcome)
        })
        .collect();
    // The answer has one part per operation, in order: what clients pair them by.
    assert_eq!(outcomes.len(), count, "an operation went unanswered");
    Executed {
        response: Response::Results(outcomes),
        touched: execution.connection.touched(),
    }
}

/// The smallest answer bound under which `operations` operations can always be answered.
pub fn answer_bytes_needed(operations: usize) -> usize {
    ANSWER_ENVELOPE_BYTES + operations.saturating_mul(OPERATION_BYTES_RESERVED)
}

/// The execution of one request.
struct Execution<'a> {
    connection: &'a mut Connection,
    /// Set by the first database failure; later operations are not attempted.
    database_failed: bool,
    /// What the request has learnt of its acting account's existence (`<transactions>`
    /// acts for one account throughout).
    account: Existence,
    answer: AnswerBound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Existence {
    Unknown,
    Exists,
    Missing,
}

/// What is left of the answer's bound as its operations are answered in turn.
struct AnswerBound {
    /// What the answer's remaining parts may add up to.
    bytes_left: usize,
    /// Operations not yet answered, the current one included.
    operations_left: usize,
    bytes_max: usize,
}

fn error(attrs: Vec<(&'static str, String)>, why: &Refusal) -> Outcome {
    Outcome::Error {
        attrs,
        message: why.to_string(),
    }
}

impl AnswerBound {
    /// What the current operation's part may take: what is left, less what the
    /// operations after it keep for themselves. Never less than their reserve.
    fn for_this_operation(&self) -> usize {
        let after = self.operations_left.saturating_sub(1);
        self.bytes_left - after * OPERATION_BYTES_RESERVED
    }

    /// The most fills an order's state may list in this operation's part.
    fn fills_that_fit(&self) -> i64 {
        let room = self.for_this_operation() - ORDER_STATE_BYTES_MAX;
        i64::try_from(room / FILL_BYTES_MAX).unwrap_or(i64::MAX)
    }

    /// Counts `outcome` against the bound. Only an error can hold more than its part
    /// may take (it echoes what the request sent): it then goes without.
    fn take(&mut self, outcome: Outcome) -> Outcome {
        let room = self.for_this_operation();
        let mut bytes = render::outcome_bytes(&outcome);
        let outcome = match outcome {
            Outcome::Error { message, .. } if bytes > room => {
                // Without the echoed attributes; without the reason too, if it echoes
                // more (an unknown element's name, say).
                let mut terse = Outcome::Error {
                    attrs: vec![],
                    message,
                };
                bytes = render::outcome_bytes(&terse);
                if bytes > room {
                    terse = error(vec![], &Rejection::AnswerTooLarge(self.bytes_max).into());
                    bytes = render::outcome_bytes(&terse);
                }
                terse
            }
            outcome => outcome,
        };
        assert!(
            bytes <= room && room <= self.bytes_left,
            "an answer's part of {bytes} bytes passed its room of {room}"
        );
        self.bytes_left -= bytes;
        self.operations_left -= 1;
        outcome
    }
}

impl Execution<'_> {
    fn operation(&mut self, operation: Operation) -> Outcome {
        let outcome = match &operation.command {
            Ok(command) => self.command(command, &operation),
            Err(rejection) => Err(rejection.clone().into()),
        };
        outcome.unwrap_or_else(|why| error(operation.echo, &why))
    }

    fn command(&mut self, command: &Command, operation: &Operation) -> Result<Outcome, Refusal> {
        match command {
            Command::CreateAccount { account, balance } => {
                let created = self.database(|s| s.create_account(account, *balance))?;
                created
                    .then(|| Outcome::AccountCreated {
                        id: operation.echoed("id"),
                    })
                    .ok_or(Rejection::AccountAlreadyExists.into())
            }
            Command::IssueShares {
                symbol,
                account,
                shares,
            } => {
                let issued = self.database(|s| s.issue_shares(account, symbol, *shares))?;
                issued
                    .then(|| Outcome::PositionCreated {
                        sym: operation.echoed("sym"),
                        id: operation.echoed("id"),
                    })
                    .ok_or(Rejection::AccountDoesNotExist.into())
            }
            Command::Order {
                account,
                symbol,
                amount,
                limit,
            } => self.order(account, symbol, *amount, *limit, operation),
            Command::Query { account, order } => self.query(account, *order, operation),
            Command::Cancel { account, order } => self.cancel(account, *order, operation),
        }
    }

    /// Runs one database operation, or refuses to after an earlier failure.
    fn database<T>(
        &mut self,
        operation: impl FnMut(&mut Session) -> Result<T, StoreError>,
    ) -> Result<T, ServiceFailure> {
        if self.database_failed {
            return Err(ServiceFailure::AfterEarlierFailure);
        }
        self.connection.run(operation).map_err(|e| {
            self.database_failed = true;
            match e {
                StoreError::ConnectionLost(_) => ServiceFailure::OutcomeUnknown(e.to_string()),
                _ => ServiceFailure::Unavailable(e.to_string()),
            }
        })
    }

    /// Refuses every operation of an account the database said does not exist.
    fn account_may_exist(&self) -> Result<(), Refusal> {
        match self.account {
            Existence::Missing => Err(Rejection::AccountDoesNotExist.into()),
            Existence::Unknown | Existence::Exists => Ok(()),
        }
    }

    fn order(
        &mut self,
        account: &AccountId,
        symbol: &Symbol,
        amount: Decimal,
        limit: Decimal,
        operation: &Operation,
    ) -> Result<Outcome, Refusal> {
        self.account_may_exist()?;
        match self.database(|s| s.place_order(account, symbol, amount, limit))? {
            Placed::Opened(id) => {
                self.account = Existence::Exists;
                Ok(Outcome::Opened {
                    sym: operation.echoed("sym"),
                    amount: operation.echoed("amount"),
                    limit: operation.echoed("limit"),
                    id,
                })
            }
            Placed::Refused(OrderRefusal::NoAccount) => {
                self.account = Existence::Missing;
                Err(Rejection::AccountDoesNotExist.into())
            }
            Placed::Refused(OrderRefusal::InsufficientFunds) => {
                Err(Rejection::InsufficientFunds.into())
            }
            Placed::Refused(OrderRefusal::InsufficientShares) => {
                Err(Rejection::InsufficientShares.into())
            }
        }
    }

    /// Tells "no such order" from "no such account" only when it matters: after a miss.
    fn order_missing(&mut self, account: &AccountId) -> Refusal {
        if self.account == Existence::Unknown {
            match self.database(|s| s.account_exists(account)) {
                Ok(true) => self.account = Existence::Exists,
                Ok(false) => self.account = Existence::Missing,
                Err(why) => return why.into(),
            }
        }
        match self.account {
            Existence::Missing => Rejection::AccountDoesNotExist.into(),
            Existence::Unknown | Existence::Exists => Rejection::OrderUnknown.into(),
        }
    }

    fn query(
        &mut self,
        account: &AccountId,
        order: OrderId,
        operation: &Operation,
    ) -> Result<Outcome, Refusal> {
        self.account_may_exist()?;
        let fills_max = self.answer.fills_that_fit();
        match self.database(|s| s.order_state(account, order, fills_max))? {
            Some(state) => Ok(Outcome::Status {
                id: operation.echoed("id"),
                state,
            }),
            None => Err(self.order_missing(account)),
        }
    }

    fn cancel(
        &mut self,
        account: &AccountId,
        order: OrderId,
        operation: &Operation,
    ) -> Result<Outcome, Refusal> {
        self.account_may_exist()?;
        match self.database(|s| s.cancel_order(account, order))? {
            Canceled::Canceled => {
                // A canceled order never changes again, so reading it afterwards is exact.
                // The cancel has committed: a failure to read it leaves its outcome to
                // the client to find out, never "not executed".
                let fills_max = self.answer.fills_that_fit();
                let state = self
                    .database(|s| s.order_state(account, order, fills_max))
                    .map_err(|why| {
                        ServiceFailure::OutcomeUnknown(format!("canceled, then {why}"))
                    })?;
                let Some(state) = state else {
                    panic!("order {order} of account {account} vanished after its cancel");
                };
                Ok(Outcome::Canceled {
                    id: operation.echoed("id"),
                    state,
                })
            }
            Canceled::NothingOpen => Err(Rejection::OrderHasNothingOpen.into()),
            Canceled::NotFound => Err(self.order_missing(account)),
        }
    }
}
