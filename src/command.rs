//! Validation with no database at hand: each operation of a parsed request becomes a
//! typed command, ready to run, or the rejection it gets in its place.
//!
//! Every rule of docs/PROTOCOL.md that the request alone can break is checked here, and
//! the first that applies wins ("Which error you get" there gives the order): an
//! element the protocol does not know; then, in `<transactions>`, an account id that
//! names no account; then the element's attributes in the order the protocol lists
//! them, each first for being there, then for its form, then for its value. Only what
//! passes reaches the database, which may still refuse it on the book's merits.

use crate::model::{AccountId, OrderId, Symbol};
use crate::number::{self, NumberError, Sign};
use crate::protocol::{CreateItem, Request, SymbolChild, TransactionItem};
use crate::rejection::Rejection;
use rust_decimal::Decimal;

/// What one operation asks the book to do, every value checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    CreateAccount {
        account: AccountId,
        balance: Decimal,
    },
    /// Adds shares to a position, creating the symbol if it is new.
    IssueShares {
        symbol: Symbol,
        account: AccountId,
        shares: Decimal,
    },
    /// A limit order: buys when `amount` is positive, sells when negative.
    Order {
        account: AccountId,
        symbol: Symbol,
        amount: Decimal,
        limit: Decimal,
    },
    Query {
        account: AccountId,
        order: OrderId,
    },
    Cancel {
        account: AccountId,
        order: OrderId,
    },
}

/// One operation of a request, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The attributes the request supplied, in the order the protocol lists them: an
    /// answer echoes them.
    pub echo: Vec<(&'static str, String)>,
    pub command: Result<Command, Rejection>,
}

impl Operation {
    /// The echoed value of `key`, which a command that passed its checks always has.
    pub fn echoed(&self, key: &str) -> String {
        let value = self.echo.iter().find(|(k, _)| *k == key);
        let Some((_, value)) = value else {
            panic!("a checked operation lacks its {key}: {:?}", self.echo);
        };
        value.clone()
    }
}

/// The operations of `request`, each a command or the rejection it gets; as many as
/// [`Request::operation_count`].
pub fn check(request: &Request) -> Vec<Operation> {
    let operations: Vec<Operation> = match request {
        Request::Create(items) => items.iter().flat_map(create_item).collect(),
        Request::Transactions { account, items } => {
            let account = account.as_deref().and_then(AccountId::parse);
            items
                .iter()
                .map(|item| transaction_item(account.as_ref(), item))
                .collect()
        }
    };
    assert_eq!(
        operations.len(),
        request.operation_count(),
        "an operation was lost or added in checking"
    );
    operations
}

/// The attributes among `pairs` that the request supplied, in that order.
fn echo(pairs: &[(&'static str, &Option<String>)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| (*key, v.clone())))
        .collect()
}

fn unknown(name: &str) -> Operation {
    Operation {
        echo: vec![],
        command: Err(Rejection::UnknownElement(name.to_string())),
    }
}

fn required<'v>(value: &'v Option<String>, name: &'static str) -> Result<&'v str, Rejection> {
    value.as_deref().ok_or(Rejection::MissingAttribute(name))
}

fn account_id(text: &str) -> Result<AccountId, Rejection> {
    AccountId::parse(text).ok_or(Rejection::AccountIdInvalid)
}

fn symbol(text: &str) -> Result<Symbol, Rejection> {
    Symbol::parse(text).ok_or(Rejection::SymbolInvalid)
}

/// A number that must be above zero: `invalid` for its form, `not_positive` for its value.
fn positive(
    text: &str,
    invalid: fn(NumberError) -> Rejection,
    not_positive: Rejection,
) -> Result<Decimal, Rejection> {
    let value = number::parse(text, Sign::Unsigned).map_err(invalid)?;
    if value > Decimal::ZERO {
        Ok(value)
    } else {
        Err(not_positive)
    }
}

fn create_item(item: &CreateItem) -> Vec<Operation> {
    match item {
        CreateItem::Account { id, balance } => vec![Operation {
            echo: echo(&[("id", id)]),
            command: create_account(id, balance),
        }],
        CreateItem::Symbol { sym, children } if children.is_empty() => vec![Operation {
            echo: echo(&[("sym", sym)]),
            command: Err(Rejection::SymbolNeedsAccounts),
        }],
        CreateItem::Symbol { sym, children } => children
            .iter()
            .map(|child| match child {
                SymbolChild::Account { id, shares } => Operation {
                    echo: echo(&[("sym", sym), ("id", id)]),
                    command: issue_shares(sym, id, shares),
                },
                SymbolChild::Unknown { name } => Operation {
                    echo: echo(&[("sym", sym)]),
                    command: Err(Rejection::UnknownElement(name.clone())),
                },
            })
            .collect(),
        CreateItem::Unknown { name } => vec![unknown(name)],
    }
}

fn create_account(id: &Option<String>, balance: &Option<String>) -> Result<Command, Rejection> {
    let account = account_id(required(id, "id")?)?;
    let balance = number::parse(required(balance, "balance")?, Sign::Unsigned)
        .map_err(Rejection::BalanceInvalid)?;
    Ok(Command::CreateAccount { account, balance })
}

fn issue_shares(
    sym: &Option<String>,
    id: &Option<String>,
    shares: &Option<String>,
) -> Result<Command, Rejection> {
    let symbol = symbol(required(sym, "sym")?)?;
    let account = account_id(required(id, "id")?)?;
    // No text (or elements among it) is no share count: not a missing attribute.
    let shares = shares
        .as_deref()
        .ok_or(Rejection::SharesInvalid(NumberError::Malformed))?;
    let shares = positive(
        shares,
        Rejection::SharesInvalid,
        Rejection::SharesNotPositive,
    )?;
    Ok(Command::IssueShares {
        symbol,
        account,
        shares,
    })
}

fn transaction_item(account: Option<&AccountId>, item: &TransactionItem) -> Operation {
    let (echo, command) = match item {
        TransactionItem::Unknown { name } => return unknown(name),
        TransactionItem::Order { sym, amount, limit } => (
            echo(&[("sym", sym), ("amount", amount), ("limit", limit)]),
            acting(account).and_then(|account| order(account, sym, amount, limit)),
        ),
        TransactionItem::Query { id } => (
            echo(&[("id", id)]),
            acting(account).and_then(|account| {
                let order = order_id(id)?;
                Ok(Command::Query { account, order })
            }),
        ),
        TransactionItem::Cancel { id } => (
            echo(&[("id", id)]),
            acting(account).and_then(|account| {
                let order = order_id(id)?;
                Ok(Command::Cancel { account, order })
            }),
        ),
    };
    Operation { echo, command }
}

/// The account a `<transactions>` acts for: an id that is missing or malformed names
/// no account.
fn acting(account: Option<&AccountId>) -> Result<AccountId, Rejection> {
    account.cloned().ok_or(Rejection::AccountDoesNotExist)
}

fn order(
    account: AccountId,
    sym: &Option<String>,
    amount: &Option<String>,
    limit: &Option<String>,
) -> Result<Command, Rejection> {
    let (sym, amount, limit) = (
        required(sym, "sym")?,
        required(amount, "amount")?,
        required(limit, "limit")?,
    );
    let symbol = symbol(sym)?;
    let amount = number::parse(amount, Sign::Signed).map_err(Rejection::AmountInvalid)?;
    if amount.is_zero() {
        return Err(Rejection::AmountIsZero);
    }
    let limit = positive(limit, Rejection::LimitInvalid, Rejection::LimitNotPositive)?;
    Ok(Command::Order {
        account,
        symbol,
        amount,
        limit,
    })
}

fn order_id(id: &Option<String>) -> Result<OrderId, Rejection> {
    OrderId::parse(required(id, "id")?).ok_or(Rejection::OrderIdInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::NumberError::*;
    use crate::protocol::{parse, ParseLimits};
    use Rejection::*;

    fn checked(xml: &str) -> Vec<Result<Command, Rejection>> {
        let request = parse(xml.as_bytes(), ParseLimits::default()).expect("a request");
        check(&request).into_iter().map(|op| op.command).collect()
    }

    fn rejection(xml: &str) -> Rejection {
        match checked(xml).as_slice() {
            [Err(why)] => why.clone(),
            other => panic!("{xml}: expected one rejection, got {other:?}"),
        }
    }

    /// Checks a precedence table: one row per rule, in the order of docs/PROTOCOL.md's
    /// "Which error you get", each row breaking its rule and every rule after it, so
    /// that only a wrong precedence can change its answer.
    fn first_rule_broken_wins(table: &[(&str, Rejection)]) {
        for (xml, expected) in table {
            assert_eq!(&rejection(xml), expected, "{xml}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn in_transactions_the_first_rule_broken_wins() {
        first_rule_broken_wins(&[
            // An unknown element, the acting account, then the attributes.
            (r#"<transactions id="x"><bogus/></transactions>"#, UnknownElement("bogus".into())),
            (r#"<transactions id="x"><order limit="0"/></transactions>"#, AccountDoesNotExist),
            (r#"<transactions><query/></transactions>"#, AccountDoesNotExist),
            (r#"<transactions id="1"><order amount="0" limit="-1"/></transactions>"#, MissingAttribute("sym")),
            (r#"<transactions id="1"><order sym="!" limit="-1"/></transactions>"#, MissingAttribute("amount")),
            (r#"<transactions id="1"><order sym="!" amount="x"/></transactions>"#, MissingAttribute("limit")),
            (r#"<transactions id="1"><order sym="!" amount="x" limit="x"/></transactions>"#, SymbolInvalid),
            (r#"<transactions id="1"><order sym="S" amount="x" limit="x"/></transactions>"#, AmountInvalid(Malformed)),
            (r#"<transactions id="1"><order sym="S" amount="0" limit="x"/></transactions>"#, AmountIsZero),
            (r#"<transactions id="1"><order sym="S" amount="1" limit="-1"/></transactions>"#, LimitInvalid(NegativeNotAllowed)),
            (r#"<transactions id="1"><order sym="S" amount="1" limit="0"/></transactions>"#, LimitNotPositive),
            (r#"<transactions id="1"><query/></transactions>"#, MissingAttribute("id")),
            (r#"<transactions id="1"><query id="0"/></transactions>"#, OrderIdInvalid),
            (r#"<transactions id="1"><cancel/></transactions>"#, MissingAttribute("id")),
            (r#"<transactions id="1"><cancel id="-3"/></transactions>"#, OrderIdInvalid),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn in_create_the_first_rule_broken_wins() {
        first_rule_broken_wins(&[
            // An unknown element; <account>: its id, then its balance.
            (r#"<create><nonsense/></create>"#, UnknownElement("nonsense".into())),
            (r#"<create><account/></create>"#, MissingAttribute("id")),
            (r#"<create><account id="x"/></create>"#, AccountIdInvalid),
            (r#"<create><account id="1"/></create>"#, MissingAttribute("balance")),
            (r#"<create><account id="1" balance="-1"/></create>"#, BalanceInvalid(NegativeNotAllowed)),
            // <symbol>: its children, its symbol, the child's id, then the share count.
            (r#"<create><symbol sym="!"/></create>"#, SymbolNeedsAccounts),
            (r#"<create><symbol><x/></symbol></create>"#, UnknownElement("x".into())),
            (r#"<create><symbol><account id="x">-1</account></symbol></create>"#, MissingAttribute("sym")),
            (r#"<create><symbol sym="!"><account id="x">-1</account></symbol></create>"#, SymbolInvalid),
            (r#"<create><symbol sym="S"><account>-1</account></symbol></create>"#, MissingAttribute("id")),
            (r#"<create><symbol sym="S"><account id="x">-1</account></symbol></create>"#, AccountIdInvalid),
            (r#"<create><symbol sym="S"><account id="1"><b/></account></symbol></create>"#, SharesInvalid(Malformed)),
            (r#"<create><symbol sym="S"><account id="1">-1</account></symbol></create>"#, SharesInvalid(NegativeNotAllowed)),
            (r#"<create><symbol sym="S"><account id="1">0</account></symbol></create>"#, SharesNotPositive),
        ]);
    }

    #[test]
    fn valid_operations_become_typed_commands() {
        let account = AccountId::parse("7").expect("an id");
        let symbol = Symbol::parse("SPY").expect("a symbol");
        let commands = checked(
            r#"<transactions id="7"><order sym="SPY" amount="-2.5" limit="10"/><query id="3"/><cancel id="3"/></transactions>"#,
        );
        assert_eq!(
            commands,
            vec![
                Ok(Command::Order {
                    account: account.clone(),
                    symbol: symbol.clone(),
                    amount: Decimal::new(-25, 1),
                    limit: Decimal::from(10),
                }),
                Ok(Command::Query {
                    account: account.clone(),
                    order: OrderId(3)
                }),
                Ok(Command::Cancel {
                    account: account.clone(),
                    order: OrderId(3)
                }),
            ]
        );
        let commands = checked(
            r#"<create><account id="7" balance="0"/><symbol sym="SPY"><account id="7">5</account></symbol></create>"#,
        );
        assert_eq!(
            commands,
            vec![
                Ok(Command::CreateAccount {
                    account: account.clone(),
                    balance: Decimal::ZERO
                }),
                Ok(Command::IssueShares {
                    symbol,
                    account,
                    shares: Decimal::from(5)
                }),
            ]
        );
    }

    #[test]
    fn an_operation_echoes_what_it_was_sent_in_protocol_order() {
        let request = parse(
            br#"<transactions id="1"><order limit="2" sym="S" amount="x"/></transactions>"#,
            ParseLimits::default(),
        )
        .expect("a request");
        let operation = &check(&request)[0];
        let keys: Vec<&str> = operation.echo.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["sym", "amount", "limit"]);
        assert_eq!(operation.echoed("amount"), "x");
    }

    #[test]
    fn a_symbol_gives_one_operation_per_child() {
        let commands = checked(
            r#"<create><symbol sym="S"><account id="1">1</account><nope/><account id="2">0</account></symbol></create>"#,
        );
        assert_eq!(commands.len(), 3);
        assert!(commands[0].is_ok());
        assert_eq!(commands[1], Err(UnknownElement("nope".into())));
        assert_eq!(commands[2], Err(SharesNotPositive));
    }
}
