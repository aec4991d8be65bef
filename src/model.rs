//! The exchange's vocabulary as validated types: accounts, symbols, orders and their state.
//!
//! PROTOCOL.md calls an order's id a "transaction id"; in this code base the word
//! "transaction" is kept for database transactions, so the type is [`OrderId`].

use rust_decimal::Decimal;
use std::fmt;

/// An account id: 1 to 32 ASCII digits, kept exactly as written (`007` is not `7`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountId(String);

/// A symbol: 1 to 32 ASCII letters or digits; case matters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Symbol(String);

/// The id the server assigns to an accepted order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(pub i64);

pub const ACCOUNT_ID_CHARS_MAX: usize = 32;
pub const SYMBOL_CHARS_MAX: usize = 32;
pub const ORDER_ID_CHARS_MAX: usize = 32;

impl AccountId {
    pub fn parse(text: &str) -> Option<AccountId> {
        let ok = (1..=ACCOUNT_ID_CHARS_MAX).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| AccountId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Symbol {
    pub fn parse(text: &str) -> Option<Symbol> {
        let ok = (1..=SYMBOL_CHARS_MAX).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| Symbol(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl OrderId {
    /// Names no order: what an id too large for any order the server could have given
    /// parses to (ids start at 1).
    pub const NONE: OrderId = OrderId(0);

    /// Order ids are positive base-10 integers of at most 32 digits (leading zeros
    /// included: the id is echoed as written); anything else names no order.
    pub fn parse(text: &str) -> Option<OrderId> {
        let digits = (1..=ORDER_ID_CHARS_MAX).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_digit());
        if !digits {
            return None;
        }
        let significant = text.trim_start_matches('0');
        if significant.is_empty() {
            return None;
        }
        Some(significant.parse().map_or(OrderId::NONE, OrderId))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One trade as seen from one of its orders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    pub shares: Decimal,
    pub price: Decimal,
    pub time: i64,
}

/// Everything a `<query>` or `<cancel>` reports about an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderState {
    pub open_shares: Decimal,
    /// Shares and time of the cancel, if the order was canceled.
    pub canceled: Option<(Decimal, i64)>,
    /// Trades, oldest first: all of them, or as many as an answer had room for.
    pub fills: Vec<Fill>,
    /// Trades left out of `fills` for want of room in the answer.
    pub fills_omitted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_digits_kept_as_written() {
        assert_eq!(
            AccountId::parse("007").map(|a| a.to_string()),
            Some("007".into())
        );
        assert_ne!(AccountId::parse("007"), AccountId::parse("7"));
        for bad in ["", "12a", "-1", " 1", "1.0", &"9".repeat(33), "１"] {
            assert_eq!(AccountId::parse(bad), None, "{bad:?}");
        }
        assert!(AccountId::parse(&"9".repeat(32)).is_some());
    }

    #[test]
    fn symbols_are_alphanumeric_and_case_sensitive() {
        for good in ["SPY", "BTC", "T5asdf", "x"] {
            assert!(Symbol::parse(good).is_some(), "{good:?}");
        }
        assert_ne!(Symbol::parse("spy"), Symbol::parse("SPY"));
        for bad in ["", "S P", "SP-Y", "SPY'", "Ä", &"A".repeat(33), "a;DROP"] {
            assert_eq!(Symbol::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn order_ids_are_positive_integers() {
        assert_eq!(OrderId::parse("42"), Some(OrderId(42)));
        assert_eq!(OrderId::parse("0042"), Some(OrderId(42)));
        let largest = i64::MAX.to_string();
        assert_eq!(OrderId::parse(&largest), Some(OrderId(i64::MAX)));
        // Positive integers, but larger than any order id can be.
        for beyond in ["9223372036854775808", "99999999999999999999"] {
            assert_eq!(OrderId::parse(beyond), Some(OrderId::NONE), "{beyond:?}");
        }
        let too_long = format!("{}1", "0".repeat(32));
        for bad in [
            "0", "000", "-1", "", "1.5", "abc", "+4", " 4", "٤", &too_long,
        ] {
            assert_eq!(OrderId::parse(bad), None, "{bad:?}");
        }
    }
}
