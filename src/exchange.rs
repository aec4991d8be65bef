//! Executes a typed request against the database and builds the typed response.
//!
//! Each operation is validated, then run as its own database transaction; a rejection
//! is a value in the response, in the operation's place. After a database failure the
//! rest of the request is answered "not executed" rather than retried against a
//! database that just failed. A request that reached the database is answered only
//! once what it did and saw is durable (see `store::Session::make_durable`).

use crate::model::{AccountId, OrderId, Symbol};
use crate::number::{self, Sign};
use crate::protocol::render::{
    self, ANSWER_ENVELOPE_BYTES, FILL_BYTES_MAX, OPERATION_BYTES_RESERVED, ORDER_STATE_BYTES_MAX,
};
use crate::protocol::{CreateItem, Outcome, Request, Response, SymbolChild, TransactionItem};
use crate::rejection::{Rejection, OUTCOME_UNKNOWN};
use crate::store::{Canceled, OrderRefusal, Placed, Session, StoreError};
use rust_decimal::Decimal;
use std::fmt;

/// Where operations get their database session; a handler thread keeps one for its life.
pub trait Sessions {
    /// The session, opened anew if there is none or it broke.
    fn session(&mut self) -> Result<&mut Session, StoreError>;
    /// The session as it is, never replaced: None if there is none or it broke.
    fn kept(&mut self) -> Option<&mut Session>;
    /// Called after a failure, so a broken connection can be replaced.
    fn failed(&mut self, error: &StoreError);
}

/// The response to an executed request, once its results are durable on the session
/// that did its work (see [`make_durable`]).
pub fn settle(executed: Executed, sessions: &mut dyn Sessions) -> Response {
    match executed {
        Executed::Ready(response) => response,
        Executed::AwaitsDurability(response) => match make_durable(sessions) {
            Ok(()) => response,
            Err(e) => not_durable(&e),
        },
    }
}

/// Waits until the WAL is on disk past a request's work, on the session that did that
/// work; fails if that session is gone. The session vouches for its own commits: had
/// the database lost them, it would have ended the session too.
pub fn make_durable(sessions: &mut dyn Sessions) -> Result<(), StoreError> {
    kept_session(sessions)
        .and_then(Session::make_durable)
        .inspect_err(|e| sessions.failed(e))
}

/// The session a request has used so far, which alone can vouch for its commits.
fn kept_session(sessions: &mut dyn Sessions) -> Result<&mut Session, StoreError> {
    sessions.kept().ok_or_else(|| {
        StoreError::Unavailable(
            "the connection broke before this request's results were durable".into(),
        )
    })
}

/// A request's response, and whether it must wait for the WAL before it is sent.
#[derive(Debug)]
pub enum Executed {
    /// Nothing reached the database: the response may go at once.
    Ready(Response),
    /// The database answered: the response may go only once the WAL is on disk past
    /// everything the request wrote or read (see `store::Session::make_durable`).
    AwaitsDurability(Response),
}

/// Executes `request`, one database transaction per operation, in document order. Its
/// commits are not yet durable: the caller sends the response only once they are,
/// through [`settle`] on the same session or a worker's flusher.
///
/// The whole answer is at most `answer_bytes_max` bytes (docs/PROTOCOL.md, Limits),
/// which must hold [`answer_bytes_needed`] for the request: every operation has
/// [`OPERATION_BYTES_RESERVED`] kept for it until its turn. An order's state lists as
/// many fills as fit, oldest first, and says how many it leaves out; an error that
/// would echo more than fits is answered without the echo.
pub fn execute(
    request: &Request,
    sessions: &mut dyn Sessions,
    answer_bytes_max: usize,
) -> Executed {
    let operations = request.operation_count();
    assert!(
        answer_bytes_max >= answer_bytes_needed(operations),
        "the settings let through a request whose answer cannot fit"
    );
    let mut run = Run {
        sessions,
        database_failed: false,
        database_answered: false,
        answer_bytes_left: answer_bytes_max - ANSWER_ENVELOPE_BYTES,
        operations_left: operations,
        answer_bytes_max,
    };
    let outcomes = match request {
        Request::Create(items) => {
            let mut outcomes = Vec::with_capacity(items.len());
            for item in items {
                for outcome in run.create(item) {
                    outcomes.push(run.within_bound(outcome));
                }
            }
            outcomes
        }
        Request::Transactions { account, items } => {
            let mut on_behalf = OnBehalf::new(account.as_deref());
            items
                .iter()
                .map(|item| {
                    let outcome = run.transaction_item(&mut on_behalf, item);
                    run.within_bound(outcome)
                })
                .collect()
        }
    };
    let response = Response::Results(outcomes);
    if run.database_answered {
        Executed::AwaitsDurability(response)
    } else {
        Executed::Ready(response)
    }
}

/// The smallest answer bound under which `operations` operations can always be answered.
pub fn answer_bytes_needed(operations: usize) -> usize {
    ANSWER_ENVELOPE_BYTES + operations.saturating_mul(OPERATION_BYTES_RESERVED)
}

/// The answer to a request whose results could not be made durable: they may stand.
pub fn not_durable(why: &dyn fmt::Display) -> Response {
    Response::Rejected(format!(
        "{OUTCOME_UNKNOWN}: the database failed before this request's results were \
         durable ({why}); operations before the failure may stand"
    ))
}

struct Run<'a> {
    sessions: &'a mut dyn Sessions,
    /// Set by the first database failure; later operations are not attempted.
    database_failed: bool,
    /// Set by the first operation the database answered: the request's results then
    /// wait for durability.
    database_answered: bool,
    /// What the answer's remaining parts may add up to.
    answer_bytes_left: usize,
    /// Operations not yet answered, the current one included.
    operations_left: usize,
    answer_bytes_max: usize,
}

/// The account a `<transactions>` acts for, and what is known about its existence.
struct OnBehalf {
    account: Option<AccountId>,
    exists: Option<bool>,
}

impl OnBehalf {
    fn new(id: Option<&str>) -> OnBehalf {
        let account = id.and_then(AccountId::parse);
        // An id that is malformed can name no account.
        let exists = if account.is_none() { Some(false) } else { None };
        OnBehalf { account, exists }
    }
}

fn error(attrs: Vec<(&'static str, String)>, why: Rejection) -> Outcome {
    Outcome::Error {
        attrs,
        message: why.to_string(),
    }
}

/// The attributes the request supplied, in the order given, for echoing in an error.
fn present(pairs: &[(&'static str, &Option<String>)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| (*key, v.clone())))
        .collect()
}

fn required<'v>(value: &'v Option<String>, name: &'static str) -> Result<&'v str, Rejection> {
    value.as_deref().ok_or(Rejection::MissingAttribute(name))
}

impl Run<'_> {
    /// What the current operation's part may take: what is left, less what the
    /// operations after it keep for themselves. Never less than their reserve.
    fn bytes_for_this_operation(&self) -> usize {
        let after = self.operations_left.saturating_sub(1);
        self.answer_bytes_left - after * OPERATION_BYTES_RESERVED
    }

    /// Counts `outcome` against the answer's bound. Only an error can hold more than
    /// its part may take (it echoes what the request sent): it then goes without.
    fn within_bound(&mut self, outcome: Outcome) -> Outcome {
        let room = self.bytes_for_this_operation();
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
                    terse = error(vec![], Rejection::AnswerTooLarge(self.answer_bytes_max));
                    bytes = render::outcome_bytes(&terse);
                }
                terse
            }
            outcome => outcome,
        };
        assert!(
            bytes <= room && room <= self.answer_bytes_left,
            "an answer's part of {bytes} bytes passed its room of {room}"
        );
        self.answer_bytes_left -= bytes;
        self.operations_left -= 1;
        outcome
    }

    /// The most fills an order's state may list in this operation's part.
    fn fills_that_fit(&self) -> i64 {
        let room = self.bytes_for_this_operation() - ORDER_STATE_BYTES_MAX;
        i64::try_from(room / FILL_BYTES_MAX).unwrap_or(i64::MAX)
    }

    /// Runs one database operation, or refuses to after an earlier failure.
    fn with_session<T>(
        &mut self,
        operation: impl FnMut(&mut Session) -> Result<T, StoreError>,
    ) -> Result<T, Rejection> {
        if self.database_failed {
            return Err(Rejection::NotExecuted);
        }
        match self.attempt(operation) {
            Ok(value) => {
                self.database_answered = true;
                Ok(value)
            }
            Err(e) => {
                self.database_failed = true;
                Err(match e {
                    StoreError::ConnectionLost(_) => Rejection::OutcomeUnknown(e.to_string()),
                    _ => Rejection::ServiceUnavailable(e.to_string()),
                })
            }
        }
    }

    /// Runs `operation` on the thread's session.
    ///
    /// Until the database has answered this request, a session the server ended (say,
    /// by a restart since it was last used) did not run anything of it, so the
    /// operation runs once more on a fresh connection. After that the request stays on
    /// its session: commits not yet durable on a lost session may have been lost with
    /// it, and a new session could not vouch for them.
    fn attempt<T>(
        &mut self,
        mut operation: impl FnMut(&mut Session) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut result = if self.database_answered {
            kept_session(self.sessions).and_then(&mut operation)
        } else {
            self.sessions.session().and_then(&mut operation)
        };
        if let (false, Err(ended @ StoreError::SessionEnded(_))) = (self.database_answered, &result)
        {
            self.sessions.failed(ended);
            result = self.sessions.session().and_then(&mut operation);
        }
        result.inspect_err(|e| self.sessions.failed(e))
    }

    fn create(&mut self, item: &CreateItem) -> Vec<Outcome> {
        match item {
            CreateItem::Account { id, balance } => {
                let outcome = self.create_account(id, balance);
                vec![outcome.unwrap_or_else(|why| error(present(&[("id", id)]), why))]
            }
            CreateItem::Symbol { sym, children } if children.is_empty() => {
                vec![error(
                    present(&[("sym", sym)]),
                    Rejection::SymbolNeedsAccounts,
                )]
            }
            CreateItem::Symbol { sym, children } => children
                .iter()
                .map(|child| self.create_position(sym, child))
                .collect(),
            CreateItem::Unknown { name } => {
                vec![error(vec![], Rejection::UnknownElement(name.clone()))]
            }
        }
    }

    fn create_account(
        &mut self,
        id: &Option<String>,
        balance: &Option<String>,
    ) -> Result<Outcome, Rejection> {
        let id_text = required(id, "id")?;
        let account = AccountId::parse(id_text).ok_or(Rejection::AccountIdInvalid)?;
        let balance = number::parse(required(balance, "balance")?, Sign::Unsigned)
            .map_err(Rejection::BalanceInvalid)?;
        if self.with_session(|s| s.create_account(&account, balance))? {
            Ok(Outcome::AccountCreated {
                id: id_text.to_string(),
            })
        } else {
            Err(Rejection::AccountAlreadyExists)
        }
    }

    fn create_position(&mut self, sym: &Option<String>, child: &SymbolChild) -> Outcome {
        let (id, shares) = match child {
            SymbolChild::Account { id, shares } => (id, shares),
            SymbolChild::Unknown { name } => {
                return error(
                    present(&[("sym", sym)]),
                    Rejection::UnknownElement(name.clone()),
                );
            }
        };
        let attempt = (|| {
            let sym_text = required(sym, "sym")?;
            let symbol = Symbol::parse(sym_text).ok_or(Rejection::SymbolInvalid)?;
            let id_text = required(id, "id")?;
            let account = AccountId::parse(id_text).ok_or(Rejection::AccountIdInvalid)?;
            let shares = shares
                .as_deref()
                .ok_or(Rejection::SharesInvalid(number::NumberError::Malformed))?;
            let shares = number::parse(shares, Sign::Unsigned).map_err(Rejection::SharesInvalid)?;
            if shares <= Decimal::ZERO {
                return Err(Rejection::SharesNotPositive);
            }
            if self.with_session(|s| s.issue_shares(&account, &symbol, shares))? {
                Ok(Outcome::PositionCreated {
                    sym: sym_text.to_string(),
                    id: id_text.to_string(),
                })
            } else {
                Err(Rejection::AccountDoesNotExist)
            }
        })();
        attempt.unwrap_or_else(|why| error(present(&[("sym", sym), ("id", id)]), why))
    }

    fn transaction_item(&mut self, on_behalf: &mut OnBehalf, item: &TransactionItem) -> Outcome {
        match item {
            TransactionItem::Order { sym, amount, limit } => self
                .order(on_behalf, sym, amount, limit)
                .unwrap_or_else(|why| {
                    error(
                        present(&[("sym", sym), ("amount", amount), ("limit", limit)]),
                        why,
                    )
                }),
            TransactionItem::Query { id } => self
                .query(on_behalf, id)
                .unwrap_or_else(|why| error(present(&[("id", id)]), why)),
            TransactionItem::Cancel { id } => self
                .cancel(on_behalf, id)
                .unwrap_or_else(|why| error(present(&[("id", id)]), why)),
            TransactionItem::Unknown { name } => {
                error(vec![], Rejection::UnknownElement(name.clone()))
            }
        }
    }

    /// The acting account, or the rejection every operation of a missing account gets.
    fn acting_account(on_behalf: &OnBehalf) -> Result<AccountId, Rejection> {
        match (&on_behalf.account, on_behalf.exists) {
            (Some(account), None | Some(true)) => Ok(account.clone()),
            _ => Err(Rejection::AccountDoesNotExist),
        }
    }

    fn order(
        &mut self,
        on_behalf: &mut OnBehalf,
        sym: &Option<String>,
        amount: &Option<String>,
        limit: &Option<String>,
    ) -> Result<Outcome, Rejection> {
        let account = Self::acting_account(on_behalf)?;
        let sym_text = required(sym, "sym")?;
        let amount_text = required(amount, "amount")?;
        let limit_text = required(limit, "limit")?;
        let symbol = Symbol::parse(sym_text).ok_or(Rejection::SymbolInvalid)?;
        let shares = number::parse(amount_text, Sign::Signed).map_err(Rejection::AmountInvalid)?;
        if shares.is_zero() {
            return Err(Rejection::AmountIsZero);
        }
        let price = number::parse(limit_text, Sign::Unsigned).map_err(Rejection::LimitInvalid)?;
        if price <= Decimal::ZERO {
            return Err(Rejection::LimitNotPositive);
        }
        match self.with_session(|s| s.place_order(&account, &symbol, shares, price))? {
            Placed::Opened(id) => {
                on_behalf.exists = Some(true);
                Ok(Outcome::Opened {
                    sym: sym_text.to_string(),
                    amount: amount_text.to_string(),
                    limit: limit_text.to_string(),
                    id,
                })
            }
            Placed::Refused(OrderRefusal::NoAccount) => {
                on_behalf.exists = Some(false);
                Err(Rejection::AccountDoesNotExist)
            }
            Placed::Refused(OrderRefusal::InsufficientFunds) => Err(Rejection::InsufficientFunds),
            Placed::Refused(OrderRefusal::InsufficientShares) => Err(Rejection::InsufficientShares),
        }
    }

    /// Tells "no such order" from "no such account" only when it matters: after a miss.
    fn order_missing(&mut self, on_behalf: &mut OnBehalf, account: &AccountId) -> Rejection {
        if on_behalf.exists.is_none() {
            match self.with_session(|s| s.account_exists(account)) {
                Ok(exists) => on_behalf.exists = Some(exists),
                Err(why) => return why,
            }
        }
        if on_behalf.exists == Some(false) {
            Rejection::AccountDoesNotExist
        } else {
            Rejection::OrderUnknown
        }
    }

    /// The acting account and the order a `<query>` or `<cancel>` names.
    fn order_named<'i>(
        on_behalf: &OnBehalf,
        id: &'i Option<String>,
    ) -> Result<(AccountId, &'i str, OrderId), Rejection> {
        let account = Self::acting_account(on_behalf)?;
        let id_text = required(id, "id")?;
        let order = OrderId::parse(id_text).ok_or(Rejection::OrderIdInvalid)?;
        Ok((account, id_text, order))
    }

    fn query(
        &mut self,
        on_behalf: &mut OnBehalf,
        id: &Option<String>,
    ) -> Result<Outcome, Rejection> {
        let (account, id_text, order) = Self::order_named(on_behalf, id)?;
        let fills_max = self.fills_that_fit();
        match self.with_session(|s| s.order_state(&account, order, fills_max))? {
            Some(state) => Ok(Outcome::Status {
                id: id_text.to_string(),
                state,
            }),
            None => Err(self.order_missing(on_behalf, &account)),
        }
    }

    fn cancel(
        &mut self,
        on_behalf: &mut OnBehalf,
        id: &Option<String>,
    ) -> Result<Outcome, Rejection> {
        let (account, id_text, order) = Self::order_named(on_behalf, id)?;
        match self.with_session(|s| s.cancel_order(&account, order))? {
            Canceled::Canceled => {
                // A canceled order never changes again, so reading it afterwards is exact.
                // The cancel has committed: a failure to read it leaves its outcome to
                // the client to find out, never "not executed".
                let fills_max = self.fills_that_fit();
                let state = self
                    .with_session(|s| s.order_state(&account, order, fills_max))
                    .map_err(|why| Rejection::OutcomeUnknown(format!("canceled, then {why}")))?;
                let Some(state) = state else {
                    panic!("order {order} of account {account} vanished after its cancel");
                };
                Ok(Outcome::Canceled {
                    id: id_text.to_string(),
                    state,
                })
            }
            Canceled::NothingOpen => Err(Rejection::OrderHasNothingOpen),
            Canceled::NotFound => Err(self.order_missing(on_behalf, &account)),
        }
    }
}
