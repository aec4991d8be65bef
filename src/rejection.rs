//! Every business rejection the exchange can answer, with the sentence the client reads.

use crate::number::NumberError;
use std::fmt;

/// Why one operation was not carried out. Rendered as the text of an `<error>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    AccountIdInvalid,
    AccountAlreadyExists,
    AccountDoesNotExist,
    BalanceInvalid(NumberError),
    SymbolInvalid,
    SymbolNeedsAccounts,
    SharesInvalid(NumberError),
    SharesNotPositive,
    AmountInvalid(NumberError),
    AmountIsZero,
    LimitInvalid(NumberError),
    LimitNotPositive,
    InsufficientFunds,
    InsufficientShares,
    OrderIdInvalid,
    OrderUnknown,
    OrderHasNothingOpen,
    UnknownElement(String),
    MissingAttribute(&'static str),
    /// The database failed; this operation did not run.
    ServiceUnavailable(String),
    /// The connection to the database broke while this operation ran: it may or may
    /// not have taken effect, and the server cannot tell which.
    OutcomeUnknown(String),
    /// An earlier operation of the same request met a database failure.
    NotExecuted,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Rejection::*;
        match self {
            AccountIdInvalid => f.write_str("account id must be 1 to 32 ASCII digits"),
            AccountAlreadyExists => f.write_str("account already exists"),
            AccountDoesNotExist => f.write_str("account does not exist"),
            BalanceInvalid(why) => write!(f, "balance {why}"),
            SymbolInvalid => f.write_str("symbol must be 1 to 32 ASCII letters or digits"),
            SymbolNeedsAccounts => f.write_str("symbol needs at least one <account> child"),
            SharesInvalid(why) => write!(f, "share count {why}"),
            SharesNotPositive => f.write_str("share count must be greater than zero"),
            AmountInvalid(why) => write!(f, "amount {why}"),
            AmountIsZero => f.write_str("amount must not be zero"),
            LimitInvalid(why) => write!(f, "limit {why}"),
            LimitNotPositive => f.write_str("limit must be greater than zero"),
            InsufficientFunds => {
                f.write_str("insufficient funds: the balance does not cover amount times limit")
            }
            InsufficientShares => {
                f.write_str("insufficient shares: the position does not cover the amount")
            }
            OrderIdInvalid => f.write_str("order id must be a positive integer"),
            OrderUnknown => f.write_str("no such order for this account"),
            OrderHasNothingOpen => f.write_str("order has nothing open to cancel"),
            UnknownElement(name) => write!(f, "unknown element <{name}>"),
            MissingAttribute(name) => write!(f, "missing attribute {name}"),
            ServiceUnavailable(why) => write!(f, "not executed: {why}"),
            OutcomeUnknown(why) => write!(
                f,
                "outcome unknown: {why}; the operation may have taken effect (query to find out)"
            ),
            NotExecuted => f.write_str(
                "not executed: an earlier operation of this request met a database failure",
            ),
        }
    }
}
