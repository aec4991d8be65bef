//! The XML protocol's typed requests and responses, and the stages between them and bytes.
//!
//! Requests keep every value exactly as the client wrote it: validation belongs to the
//! exchange, which answers a bad value with an `<error>` in that operation's place, and
//! the response must echo what was received.

pub mod parse;
pub mod render;
pub mod reply;
pub mod tree;

use crate::model::{OrderId, OrderState};

pub use parse::{parse, ParseError, ParseLimits};
pub use render::render;

/// One request document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Create(Vec<CreateItem>),
    /// The spec's `<transactions id="ACCOUNT">`: a batch of order operations by one account.
    Transactions {
        account: Option<String>,
        items: Vec<TransactionItem>,
    },
}

/// A child of `<create>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateItem {
    Account {
        id: Option<String>,
        balance: Option<String>,
    },
    Symbol {
        sym: Option<String>,
        children: Vec<SymbolChild>,
    },
    Unknown {
        name: String,
    },
}

/// A child of `<symbol>`: normally `<account id="ID">SHARES</account>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymbolChild {
    /// `shares` is the text with XML whitespace trimmed, or None if the element holds
    /// elements too (`1<b/>0` is no share count).
    Account {
        id: Option<String>,
        shares: Option<String>,
    },
    Unknown {
        name: String,
    },
}

/// A child of `<transactions>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransactionItem {
    Order {
        sym: Option<String>,
        amount: Option<String>,
        limit: Option<String>,
    },
    Query {
        id: Option<String>,
    },
    Cancel {
        id: Option<String>,
    },
    Unknown {
        name: String,
    },
}

impl Request {
    /// How many operations the request asks for (the bound `operations_max` counts these).
    pub fn operation_count(&self) -> usize {
        match self {
            Request::Create(items) => items
                .iter()
                .map(|item| match item {
                    CreateItem::Symbol { children, .. } => children.len().max(1),
                    _ => 1,
                })
                .sum(),
            Request::Transactions { items, .. } => items.len(),
        }
    }
}

/// The answer to one request: either a list of outcomes or one error for the whole document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Results(Vec<Outcome>),
    /// `<results><error>why</error></results>`: the request was not executed, or (after
    /// a database failure) what it did could not be confirmed.
    Rejected(String),
}

/// The answer to one operation, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `<created id="ID"/>`
    AccountCreated { id: String },
    /// `<created sym="SYM" id="ID"/>`
    PositionCreated { sym: String, id: String },
    /// `<opened sym amount limit id/>`
    Opened {
        sym: String,
        amount: String,
        limit: String,
        id: OrderId,
    },
    /// `<status id>` with the order's parts.
    Status { id: String, state: OrderState },
    /// `<canceled id>` with the order's parts.
    Canceled { id: String, state: OrderState },
    /// `<error attrs...>message</error>`; attributes echo what the request supplied.
    Error {
        attrs: Vec<(&'static str, String)>,
        message: String,
    },
}
