//! The protocol's decimal number grammar and the shortest exact rendering of decimals.
//!
//! Every amount, limit, balance and share count enters through [`parse`] and leaves
//! through [`render`]; nothing on the money path ever touches binary floating point.

use rust_decimal::Decimal;
use std::fmt;

/// At most this many digits before the decimal point (PROTOCOL.md, "Numbers").
pub const INTEGER_DIGITS_MAX: usize = 15;
/// At most this many digits after the decimal point.
pub const FRACTION_DIGITS_MAX: usize = 8;

/// Whether a field may carry a leading `-`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    Unsigned,
    Signed,
}

/// Why a string is not a number of the protocol's grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberError {
    Empty,
    Malformed,
    NegativeNotAllowed,
    TooManyIntegerDigits,
    TooManyFractionDigits,
}

impl fmt::Display for NumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NumberError::Empty => "is empty",
            NumberError::Malformed => "is not a plain decimal number",
            NumberError::NegativeNotAllowed => "must not be negative",
            NumberError::TooManyIntegerDigits => "has more than 15 integer digits",
            NumberError::TooManyFractionDigits => "has more than 8 fractional digits",
        })
    }
}

/// Parses `-?DIGITS(.DIGITS)?` with the protocol's digit bounds.
pub fn parse(text: &str, sign: Sign) -> Result<Decimal, NumberError> {
    if text.is_empty() {
        return Err(NumberError::Empty);
    }
    let unsigned = match text.strip_prefix('-') {
        Some(rest) if sign == Sign::Signed => rest,
        Some(rest) if is_plain(rest) => return Err(NumberError::NegativeNotAllowed),
        Some(_) => return Err(NumberError::Malformed),
        None => text,
    };
    if !is_plain(unsigned) {
        return Err(NumberError::Malformed);
    }
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if integer.len() > INTEGER_DIGITS_MAX {
        return Err(NumberError::TooManyIntegerDigits);
    }
    if fraction.len() > FRACTION_DIGITS_MAX {
        return Err(NumberError::TooManyFractionDigits);
    }
    // At most 23 significant digits: always representable in a 96-bit Decimal.
    Decimal::from_str_exact(text).map_err(|_| NumberError::Malformed)
}

/// `DIGITS` or `DIGITS.DIGITS`, nothing else.
fn is_plain(text: &str) -> bool {
    let (integer, fraction) = match text.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (text, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(integer) && fraction.is_none_or(all_digits)
}

/// The shortest exact form: `125`, `0.5`, `12.25`; never an exponent or trailing zeros.
pub fn render(value: Decimal) -> String {
    value.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_decimals() {
        let table = [
            ("100", Sign::Unsigned, "100"),
            ("0", Sign::Unsigned, "0"),
            ("-25", Sign::Signed, "-25"),
            ("145.67", Sign::Unsigned, "145.67"),
            ("0.5", Sign::Unsigned, "0.5"),
            ("007", Sign::Unsigned, "7"),
            (
                "999999999999999.99999999",
                Sign::Unsigned,
                "999999999999999.99999999",
            ),
            (
                "-999999999999999.99999999",
                Sign::Signed,
                "-999999999999999.99999999",
            ),
            ("1.10", Sign::Unsigned, "1.1"),
        ];
        for (text, sign, shortest) in table {
            let value = parse(text, sign).unwrap_or_else(|e| panic!("{text:?} rejected: {e}"));
            assert_eq!(render(value), shortest, "{text:?}");
        }
    }

    #[test]
    fn rejects_every_form_the_protocol_names() {
        use NumberError::*;
        let table = [
            ("", Empty),
            ("+5", Malformed),
            (".5", Malformed),
            ("5.", Malformed),
            ("1e3", Malformed),
            ("1E3", Malformed),
            ("NaN", Malformed),
            ("inf", Malformed),
            ("-inf", Malformed),
            ("Infinity", Malformed),
            ("1 000", Malformed),
            (" 5", Malformed),
            ("5 ", Malformed),
            ("1.2.3", Malformed),
            ("0x10", Malformed),
            ("--5", Malformed),
            ("-", Malformed),
            ("١٢", Malformed),
            ("1234567890123456", TooManyIntegerDigits),
            ("0.123456789", TooManyFractionDigits),
        ];
        for (text, why) in table {
            assert_eq!(parse(text, Sign::Signed), Err(why), "{text:?} signed");
            let unsigned_why = if text.starts_with('-') && why == Malformed {
                Malformed
            } else {
                why
            };
            assert_eq!(
                parse(text, Sign::Unsigned),
                Err(unsigned_why),
                "{text:?} unsigned"
            );
        }
    }

    #[test]
    fn minus_only_where_the_field_may_be_negative() {
        assert_eq!(
            parse("-5", Sign::Unsigned),
            Err(NumberError::NegativeNotAllowed)
        );
        assert_eq!(parse("-0", Sign::Signed).map(render), Ok("0".to_string()));
    }

    #[test]
    fn renders_shortest_exact_form() {
        let table = [
            ("125.00000000", "125"),
            ("12.250", "12.25"),
            ("0.50", "0.5"),
            ("1e2", "100"),
        ];
        for (input, expected) in table {
            let value = Decimal::from_scientific(input)
                .or_else(|_| Decimal::from_str_exact(input))
                .expect("test literal");
            assert_eq!(render(value), expected);
        }
    }
}
