//! XML bytes to a typed [`Request`]: the whole document is validated before anything runs.
//!
//! The document is first read into a small element tree under hard bounds (depth,
//! element count), rejecting everything PROTOCOL.md forbids (DOCTYPE, entities,
//! invalid UTF-8, non-UTF-8 encodings, duplicate attributes, two roots, trailing
//! garbage); the tree is then mapped onto the request types.

use super::tree::{read_tree, Element};
use super::{CreateItem, Request, SymbolChild, TransactionItem};
use std::fmt;

/// Bounds on one request document.
#[derive(Clone, Copy, Debug)]
pub struct ParseLimits {
    pub depth_max: usize,
    pub operations_max: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            depth_max: 8,
            operations_max: 10_000,
        }
    }
}

/// Why a document is not a request of this protocol; the text goes to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

pub(super) fn reject<T>(why: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(why.into()))
}

/// Parses one request document.
pub fn parse(bytes: &[u8], limits: ParseLimits) -> Result<Request, ParseError> {
    // Every element costs at least three bytes; the operation bound caps the tree's size too.
    let elements_max = limits.operations_max.saturating_mul(2).saturating_add(2);
    let root = read_tree(bytes, limits.depth_max, elements_max)?;
    let request = to_request(root)?;
    let operations = request.operation_count();
    if operations > limits.operations_max {
        return reject(format!(
            "request has {operations} operations; at most {} are allowed",
            limits.operations_max
        ));
    }
    Ok(request)
}

fn to_request(root: Element) -> Result<Request, ParseError> {
    match root.name.as_str() {
        "create" => Ok(Request::Create(
            root.children.into_iter().map(create_item).collect(),
        )),
        "transactions" => {
            if root.children.is_empty() {
                return reject("<transactions> needs at least one <order>, <query> or <cancel>");
            }
            let account = root.attr("id");
            let items = root.children.into_iter().map(transaction_item).collect();
            Ok(Request::Transactions { account, items })
        }
        other => reject(format!(
            "unknown root element <{other}>; expected <create> or <transactions>"
        )),
    }
}

fn create_item(e: Element) -> CreateItem {
    match e.name.as_str() {
        "account" => CreateItem::Account {
            id: e.attr("id"),
            balance: e.attr("balance"),
        },
        "symbol" => CreateItem::Symbol {
            sym: e.attr("sym"),
            children: e.children.into_iter().map(symbol_child).collect(),
        },
        _ => CreateItem::Unknown { name: e.name },
    }
}

fn symbol_child(e: Element) -> SymbolChild {
    match e.name.as_str() {
        "account" => SymbolChild::Account {
            id: e.attr("id"),
            shares: e
                .children
                .is_empty()
                .then(|| e.text.trim_matches(is_xml_whitespace).to_string()),
        },
        _ => SymbolChild::Unknown { name: e.name },
    }
}

/// XML's own whitespace; other Unicode spaces (NO-BREAK SPACE, say) are content.
fn is_xml_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn transaction_item(e: Element) -> TransactionItem {
    match e.name.as_str() {
        "order" => TransactionItem::Order {
            sym: e.attr("sym"),
            amount: e.attr("amount"),
            limit: e.attr("limit"),
        },
        "query" => TransactionItem::Query { id: e.attr("id") },
        "cancel" => TransactionItem::Cancel { id: e.attr("id") },
        _ => TransactionItem::Unknown { name: e.name },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(xml: &str) -> Request {
        parse(xml.as_bytes(), ParseLimits::default()).unwrap_or_else(|e| panic!("{xml}: {e}"))
    }

    fn err(xml: &[u8]) -> String {
        match parse(xml, ParseLimits::default()) {
            Ok(r) => panic!("accepted {:?} as {r:?}", String::from_utf8_lossy(xml)),
            Err(ParseError(why)) => why,
        }
    }

    #[test]
    fn parses_create_in_document_order() {
        let request = ok(r#"<?xml version="1.0" encoding="UTF-8"?>
            <create>
              <account id="123456" balance="1000"/>
              <symbol sym="SPY"><account id="123456">100000</account></symbol>
              <bogus/>
            </create>"#);
        assert_eq!(
            request,
            Request::Create(vec![
                CreateItem::Account {
                    id: Some("123456".into()),
                    balance: Some("1000".into())
                },
                CreateItem::Symbol {
                    sym: Some("SPY".into()),
                    children: vec![SymbolChild::Account {
                        id: Some("123456".into()),
                        shares: Some("100000".into())
                    }],
                },
                CreateItem::Unknown {
                    name: "bogus".into()
                },
            ])
        );
    }

    #[test]
    fn parses_transactions_and_ignores_comments_and_stray_text() {
        let request = ok(r#"<transactions id="7">#0 or more
              <!-- a comment --><order sym="SPY" amount="-5" limit="1.5"/>
              <query id="3"/> stray <cancel id="4"></cancel>
            </transactions>"#);
        assert_eq!(
            request,
            Request::Transactions {
                account: Some("7".into()),
                items: vec![
                    TransactionItem::Order {
                        sym: Some("SPY".into()),
                        amount: Some("-5".into()),
                        limit: Some("1.5".into())
                    },
                    TransactionItem::Query {
                        id: Some("3".into())
                    },
                    TransactionItem::Cancel {
                        id: Some("4".into())
                    },
                ],
            }
        );
    }

    #[test]
    fn empty_create_is_an_empty_request() {
        assert_eq!(ok("<create/>"), Request::Create(vec![]));
    }

    #[test]
    fn entities_of_the_xml_standard_are_unescaped() {
        let request = ok(r#"<transactions id="1"><query id="&#49;&amp;"/></transactions>"#);
        let Request::Transactions { items, .. } = request else {
            panic!()
        };
        assert_eq!(
            items,
            vec![TransactionItem::Query {
                id: Some("1&".into())
            }]
        );
    }

    #[test]
    fn rejects_what_the_protocol_forbids() {
        let deep = format!("<create>{}{}</create>", "<a>".repeat(8), "</a>".repeat(8));
        let table: Vec<(&[u8], &str)> = vec![
            (b"", "no root"),
            (b"   ", "no root"),
            (b"<foo/>", "unknown root"),
            (b"<!DOCTYPE create><create/>", "DOCTYPE"),
            (b"<!DOCTYPE x [<!ENTITY a \"b\">]><create/>", "DOCTYPE"),
            (b"<create>&xxe;</create>", "bad character data"),
            (b"<create/><create/>", "more than one root"),
            (b"<create/>garbage", "text outside"),
            (b"<create></transactions>", "malformed"),
            (b"<create>", "ends inside"),
            (
                b"<create><account id=\"1\" id=\"2\"/></create>",
                "bad attribute",
            ),
            (b"<create>\xff</create>", "UTF-8"),
            (
                b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><create/>",
                "only UTF-8",
            ),
            (b"<create>\0</create>", "U+0000"),
            (b"<transactions id=\"1\"/>", "at least one"),
            (b"<transactions id=\"1\"></transactions>", "at least one"),
            (deep.as_bytes(), "deeper than 8"),
            (b"<create a=\"&#1;\"/>", "U+0001"),
            (b"<create>&#x1F;</create>", "U+001F"),
            (b"<create>5&#xB;</create>", "U+000B"),
            (b"<create>&#xFFFE;</create>", "U+FFFE"),
            (b"<create>&#xFFFF;</create>", "U+FFFF"),
            (b"<create/><?xml version=\"1.0\"?>", "declaration"),
            (b" <?xml version=\"1.0\"?><create/>", "declaration"),
            (b"<?XML version=\"1.0\"?><create/>", "declaration"),
            (b"<create><!-- a -- b --></create>", "comment"),
            (b"<create><!-- a ---></create>", "comment"),
        ];
        for (xml, why) in table {
            let got = err(xml);
            assert!(
                got.contains(why),
                "{:?}: {got:?} lacks {why:?}",
                String::from_utf8_lossy(xml)
            );
        }
    }

    #[test]
    fn bounds_the_number_of_operations() {
        let limits = ParseLimits {
            depth_max: 8,
            operations_max: 3,
        };
        let four = r#"<transactions id="1"><query id="1"/><query id="2"/><query id="3"/><query id="4"/></transactions>"#;
        assert!(parse(four.as_bytes(), limits).is_err());
        let three =
            r#"<transactions id="1"><query id="1"/><query id="2"/><query id="3"/></transactions>"#;
        assert!(parse(three.as_bytes(), limits).is_ok());
        let many = format!("<create>{}</create>", "<x/>".repeat(100));
        let Err(ParseError(why)) = parse(many.as_bytes(), limits) else {
            panic!("accepted 100 operations")
        };
        assert!(
            why.contains("elements") || why.contains("operations"),
            "{why}"
        );
    }
}
