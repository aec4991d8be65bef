//! A typed [`Response`] to XML bytes, with exact, shortest numbers and escaped echoes.

use super::{Outcome, Response};
use crate::model::OrderState;
use crate::number;
use std::fmt::Write;

/// Renders a response document (an XML declaration, then `<results>`).
pub fn render(response: &Response) -> Vec<u8> {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    match response {
        Response::Rejected(why) => {
            out.push_str("<results>\n  <error>");
            escape_into(&mut out, why);
            out.push_str("</error>\n</results>\n");
        }
        Response::Results(outcomes) if outcomes.is_empty() => out.push_str("<results/>\n"),
        Response::Results(outcomes) => {
            out.push_str("<results>\n");
            for outcome in outcomes {
                outcome_into(&mut out, outcome);
            }
            out.push_str("</results>\n");
        }
    }
    out.into_bytes()
}

/// The bytes `outcome` adds to a `<results>` answer, exactly as [`render`] writes it.
pub fn outcome_bytes(outcome: &Outcome) -> usize {
    let mut out = String::new();
    outcome_into(&mut out, outcome);
    out.len()
}

/// Bytes of one `<executed>` part at the least (every number one digit) and at the
/// most (every number at the protocol's longest, 24 characters, a time at 20).
pub const FILL_BYTES_MIN: usize = 46;
pub const FILL_BYTES_MAX: usize = FILL_BYTES_MIN + 2 * 23 + 19;
/// Bytes of a `<status>` or `<canceled>` answer less its fills, at the most, for an
/// id of up to 19 digits and a count of fills left out.
pub const ORDER_STATE_BYTES_MAX: usize = 240;
/// Bytes of an answer around its parts: the XML declaration and `<results>`.
pub const ANSWER_ENVELOPE_BYTES: usize = 64;
/// Bytes kept for each operation's part until its turn: room for any part but an
/// order's fills and an error's echo (which go without what does not fit).
pub const OPERATION_BYTES_RESERVED: usize = 256;
// An order's state with no fills fits the reserve, so every part has room.
const _: () = assert!(ORDER_STATE_BYTES_MAX <= OPERATION_BYTES_RESERVED);

fn outcome_into(out: &mut String, outcome: &Outcome) {
    match outcome {
        Outcome::AccountCreated { id } => {
            empty_element(out, "created", &[("id", id)]);
        }
        Outcome::PositionCreated { sym, id } => {
            empty_element(out, "created", &[("sym", sym), ("id", id)]);
        }
        Outcome::Opened {
            sym,
            amount,
            limit,
            id,
        } => {
            let id = id.to_string();
            empty_element(
                out,
                "opened",
                &[
                    ("sym", sym),
                    ("amount", amount),
                    ("limit", limit),
                    ("id", &id),
                ],
            );
        }
        Outcome::Status { id, state } => order_state_into(out, "status", id, state),
        Outcome::Canceled { id, state } => order_state_into(out, "canceled", id, state),
        Outcome::Error { attrs, message } => {
            out.push_str("  <error");
            for (key, value) in attrs {
                attr_into(out, key, value);
            }
            out.push('>');
            escape_into(out, message);
            out.push_str("</error>\n");
        }
    }
}

fn order_state_into(out: &mut String, tag: &str, id: &str, state: &OrderState) {
    let _ = write!(out, "  <{tag}");
    attr_into(out, "id", id);
    if state.fills_omitted > 0 {
        let _ = write!(out, " executed-omitted=\"{}\"", state.fills_omitted);
    }
    out.push_str(">\n");
    if !state.open_shares.is_zero() {
        let _ = writeln!(
            out,
            "    <open shares=\"{}\"/>",
            number::render(state.open_shares)
        );
    }
    if let Some((shares, time)) = state.canceled {
        let _ = writeln!(
            out,
            "    <canceled shares=\"{}\" time=\"{time}\"/>",
            number::render(shares)
        );
    }
    for fill in &state.fills {
        let _ = writeln!(
            out,
            "    <executed shares=\"{}\" price=\"{}\" time=\"{}\"/>",
            number::render(fill.shares),
            number::render(fill.price),
            fill.time
        );
    }
    let _ = writeln!(out, "  </{tag}>");
}

fn empty_element(out: &mut String, tag: &str, attrs: &[(&str, &str)]) {
    let _ = write!(out, "  <{tag}");
    for (key, value) in attrs {
        attr_into(out, key, value);
    }
    out.push_str("/>\n");
}

fn attr_into(out: &mut String, key: &str, value: &str) {
    let _ = write!(out, " {key}=\"");
    escape_into(out, value);
    out.push('"');
}

/// Escapes text for both element content and double-quoted attributes; whitespace
/// that XML would normalise in an attribute is written as character references so
/// that echoes survive a round trip exactly.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fill, OrderId};
    use rust_decimal::Decimal;

    fn text(response: &Response) -> String {
        String::from_utf8(render(response)).expect("renders UTF-8")
    }

    fn dec(s: &str) -> Decimal {
        s.parse().expect("test literal")
    }

    #[test]
    fn order_states_stay_within_the_sizes_the_answer_bound_counts_on() {
        let state = |fill: Fill, canceled| OrderState {
            open_shares: dec("999999999999999.99999999"),
            canceled,
            fills: vec![fill],
            fills_omitted: u64::MAX,
        };
        let fill = |digits: &str, time| Fill {
            shares: dec(digits),
            price: dec(digits),
            time,
        };
        let id = "9".repeat(crate::model::ORDER_ID_CHARS_MAX);
        let largest = state(
            fill("999999999999999.99999999", i64::MIN),
            Some((dec("999999999999999.99999999"), i64::MIN)),
        );
        let bytes = outcome_bytes(&Outcome::Canceled {
            id: id.clone(),
            state: largest.clone(),
        });
        let fills = outcome_bytes(&Outcome::Canceled {
            id: id.clone(),
            state: OrderState {
                fills: vec![largest.fills[0].clone(); 2],
                ..largest
            },
        }) - bytes;
        assert_eq!(fills, FILL_BYTES_MAX);
        assert!(bytes - fills <= ORDER_STATE_BYTES_MAX, "{bytes}");
        let smallest = state(fill("1", 0), None);
        let with_fill = outcome_bytes(&Outcome::Status {
            id: id.clone(),
            state: smallest.clone(),
        });
        let without = outcome_bytes(&Outcome::Status {
            id,
            state: OrderState {
                fills: vec![],
                ..smallest
            },
        });
        assert_eq!(with_fill - without, FILL_BYTES_MIN);
    }

    #[test]
    fn every_part_but_fills_and_echoes_fits_the_reserve_of_an_operation() {
        let longest_number = "-999999999999999.99999999";
        let id = "9".repeat(32);
        let parts = [
            Outcome::Opened {
                sym: "S".repeat(32),
                amount: longest_number.into(),
                limit: longest_number.into(),
                id: OrderId(i64::MAX),
            },
            Outcome::PositionCreated {
                sym: "S".repeat(32),
                id: id.clone(),
            },
            Outcome::AccountCreated { id },
            Outcome::Error {
                attrs: vec![],
                message: crate::rejection::Rejection::AnswerTooLarge(usize::MAX).to_string(),
            },
        ];
        for part in parts {
            assert!(outcome_bytes(&part) <= OPERATION_BYTES_RESERVED, "{part:?}");
        }
        let envelope = text(&Response::Results(vec![])).len() + "</results>\n".len();
        assert!(envelope <= ANSWER_ENVELOPE_BYTES, "{envelope}");
    }

    #[test]
    fn renders_each_outcome() {
        let state = OrderState {
            open_shares: dec("100.000"),
            canceled: None,
            fills: vec![Fill {
                shares: dec("200"),
                price: dec("125.00"),
                time: 1_700_000_000,
            }],
            fills_omitted: 0,
        };
        let response = Response::Results(vec![
            Outcome::AccountCreated { id: "1".into() },
            Outcome::PositionCreated {
                sym: "SPY".into(),
                id: "1".into(),
            },
            Outcome::Opened {
                sym: "SPY".into(),
                amount: "-5".into(),
                limit: "1.50".into(),
                id: OrderId(9),
            },
            Outcome::Status {
                id: "9".into(),
                state,
            },
            Outcome::Error {
                attrs: vec![("sym", "a\"<b".into())],
                message: "bad & worse".into(),
            },
        ]);
        let expected = r#"<?xml version="1.0" encoding="UTF-8"?>
<results>
  <created id="1"/>
  <created sym="SPY" id="1"/>
  <opened sym="SPY" amount="-5" limit="1.50" id="9"/>
  <status id="9">
    <open shares="100"/>
    <executed shares="200" price="125" time="1700000000"/>
  </status>
  <error sym="a&quot;&lt;b">bad &amp; worse</error>
</results>
"#;
        assert_eq!(text(&response), expected);
    }

    #[test]
    fn renders_cancel_with_parts_in_order() {
        let state = OrderState {
            open_shares: Decimal::ZERO,
            canceled: Some((dec("0.50"), 5)),
            fills: vec![Fill {
                shares: dec("1.5"),
                price: dec("2"),
                time: 4,
            }],
            fills_omitted: 0,
        };
        let got = text(&Response::Results(vec![Outcome::Canceled {
            id: "3".into(),
            state,
        }]));
        assert!(got.contains(
            "<canceled id=\"3\">\n    <canceled shares=\"0.5\" time=\"5\"/>\n    <executed shares=\"1.5\" price=\"2\" time=\"4\"/>\n  </canceled>"
        ), "{got}");
    }

    #[test]
    fn renders_empty_and_rejected() {
        assert!(text(&Response::Results(vec![])).ends_with("<results/>\n"));
        assert!(text(&Response::Rejected("no <root>".into()))
            .contains("<error>no &lt;root&gt;</error>"));
    }
}
