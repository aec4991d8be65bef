//! What an operation's `<error>` says, in two kinds kept apart: a business rejection of
//! what was asked ([`Rejection`]) and a failure of the service ([`ServiceFailure`]), with
//! the sentence the client reads and how a client tells the two apart.
//!
//! (A third kind, a broken invariant, is no answer at all: the code asserts, and the
//! worker dies and is replaced.)

use crate::number::NumberError;
use std::fmt;

/// How an answer begins when the database failed before the operation ran.
pub const NOT_EXECUTED: &str = "not executed";
/// How an answer begins when the database failed and the server cannot tell whether
/// the operation (or the request) took effect.
pub const OUTCOME_UNKNOWN: &str = "outcome unknown";

/// True when an `<error>` text reports a failure of the service, not a rejection of
/// what was asked: the request may be sent again (after a query, if the outcome is
/// unknown).
pub fn is_service_failure(text: &str) -> bool {
    text.starts_with(NOT_EXECUTED) || text.starts_with(OUTCOME_UNKNOWN)
}

/// Every reason an operation's `<error>` gives, as a short label that stays the same
/// across releases (the metrics count rejections by it), with the start of the
/// sentence that gives it, in the order to try them. The last, "other", is never
/// expected: a test checks that every rejection has a label of its own.
pub const REASONS: [(&str, &str); 23] = [
    ("account_id_invalid", "account id must"),
    ("account_already_exists", "account already exists"),
    ("account_does_not_exist", "account does not exist"),
    ("balance_invalid", "balance "),
    ("symbol_invalid", "symbol must"),
    ("symbol_needs_accounts", "symbol needs"),
    ("shares_not_positive", "share count must be greater"),
    ("shares_invalid", "share count "),
    ("amount_is_zero", "amount must not be zero"),
    ("amount_invalid", "amount "),
    ("limit_not_positive", "limit must be greater"),
    ("limit_invalid", "limit "),
    ("insufficient_funds", "insufficient funds"),
    ("insufficient_shares", "insufficient shares"),
    ("order_id_invalid", "order id must"),
    ("order_unknown", "no such order"),
    ("order_has_nothing_open", "order has nothing open"),
    ("unknown_element", "unknown element"),
    ("missing_attribute", "missing attribute"),
    ("answer_too_large", "answer too large"),
    ("not_executed", NOT_EXECUTED),
    ("outcome_unknown", OUTCOME_UNKNOWN),
    ("other", ""),
];

/// The index in [`REASONS`] of the reason an `<error>`'s text gives.
pub fn reason_index(text: &str) -> usize {
    REASONS
        .iter()
        .position(|(_, start)| text.starts_with(start))
        .unwrap_or(REASONS.len() - 1)
}

/// Why one operation was refused on its merits: the request, or the book as it stands,
/// does not allow it. Rendered as the text of an `<error>`; the client should not send
/// the same operation again unchanged.
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
    /// The error's echo of what the request sent would take the whole answer past
    /// this many bytes: the error goes without it.
    AnswerTooLarge(usize),
}

/// Why one operation was not carried out, or not confirmed, for a failure of the
/// service rather than of the request: the client may send it again (after a query,
/// if the outcome is unknown). Rendered as the text of an `<error>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceFailure {
    /// The database failed; this operation did not run.
    Unavailable(String),
    /// The connection to the database broke while this operation ran: it may or may
    /// not have taken effect, and the server cannot tell which.
    OutcomeUnknown(String),
    /// An earlier operation of the same request met a database failure.
    AfterEarlierFailure,
}

/// Why one operation answers an `<error>`: either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Rejected(Rejection),
    Failed(ServiceFailure),
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Refusal {
        Refusal::Rejected(rejection)
    }
}

impl From<ServiceFailure> for Refusal {
    fn from(failure: ServiceFailure) -> Refusal {
        Refusal::Failed(failure)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Rejected(rejection) => rejection.fmt(f),
            Refusal::Failed(failure) => failure.fmt(f),
        }
    }
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
            OrderIdInvalid => {
                f.write_str("order id must be a positive integer of at most 32 digits")
            }
            OrderUnknown => f.write_str("no such order for this account"),
            OrderHasNothingOpen => f.write_str("order has nothing open to cancel"),
            UnknownElement(name) => write!(f, "unknown element <{name}>"),
            MissingAttribute(name) => write!(f, "missing attribute {name}"),
            AnswerTooLarge(bytes_max) => write!(
                f,
                "answer too large: this error's reason, which echoes the request, would \
                 take the answer past {bytes_max} bytes"
            ),
        }
    }
}

impl fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceFailure::Unavailable(why) => write!(f, "{NOT_EXECUTED}: {why}"),
            ServiceFailure::OutcomeUnknown(why) => write!(
                f,
                "{OUTCOME_UNKNOWN}: {why}; the operation may have taken effect (query to find out)"
            ),
            ServiceFailure::AfterEarlierFailure => write!(
                f,
                "{NOT_EXECUTED}: an earlier operation of this request met a database failure"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Rejection::*;

    #[test]
    fn only_database_failures_read_as_failures_of_the_service() {
        let failures = [
            ServiceFailure::Unavailable("database unavailable: refused".into()),
            ServiceFailure::OutcomeUnknown("database connection lost: closed".into()),
            ServiceFailure::AfterEarlierFailure,
        ];
        let rejections = [
            AccountIdInvalid,
            AccountAlreadyExists,
            AccountDoesNotExist,
            BalanceInvalid(NumberError::Malformed),
            SymbolInvalid,
            SymbolNeedsAccounts,
            SharesInvalid(NumberError::Empty),
            SharesNotPositive,
            AmountInvalid(NumberError::TooManyIntegerDigits),
            AmountIsZero,
            LimitInvalid(NumberError::NegativeNotAllowed),
            LimitNotPositive,
            InsufficientFunds,
            InsufficientShares,
            OrderIdInvalid,
            OrderUnknown,
            OrderHasNothingOpen,
            UnknownElement("x".into()),
            MissingAttribute("id"),
            AnswerTooLarge(1),
        ];
        let texts = failures
            .iter()
            .map(ToString::to_string)
            .chain(rejections.iter().map(ToString::to_string));
        for text in texts {
            let label = REASONS[reason_index(&text)].0;
            assert_ne!(label, "other", "{text:?} has no reason label");
        }
        for failure in failures {
            assert!(is_service_failure(&failure.to_string()), "{failure:?}");
        }
        for rejection in rejections {
            assert!(!is_service_failure(&rejection.to_string()), "{rejection:?}");
        }
    }
}
