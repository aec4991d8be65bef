//! The wire framing: a base-10 length line, then the XML document.
//!
//! [`examine`] looks at everything read so far on a connection and says whether the
//! request is complete, needs more bytes, or can never become valid. It is a pure
//! function so that the I/O loop stays small and the rules are tested alone.

use quick_xml::events::Event;
use quick_xml::Reader;
use std::ops::Range;

/// The longest length line accepted, newline included (`1048576\r\n` is 9 bytes).
pub const LENGTH_LINE_BYTES_MAX: usize = 24;

/// What the bytes read so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Keep reading.
    Incomplete,
    /// The request's document is `buffer[range]`.
    Complete(Range<usize>),
    /// Not a request of this protocol; the text goes to the client.
    Invalid(String),
}

/// Decides whether `buffer` holds a whole request. `peer_closed` is true once the
/// client has half-closed (read returned 0): whatever has arrived is then all there is.
pub fn examine(buffer: &[u8], peer_closed: bool, request_bytes_max: usize) -> Frame {
    let Some(newline) = buffer
        .iter()
        .take(LENGTH_LINE_BYTES_MAX)
        .position(|&b| b == b'\n')
    else {
        return if buffer.len() >= LENGTH_LINE_BYTES_MAX {
            Frame::Invalid("the length line is too long".into())
        } else if peer_closed {
            Frame::Invalid("the connection closed before a complete length line".into())
        } else {
            Frame::Incomplete
        };
    };
    let line = &buffer[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let declared = match declared_length(line, request_bytes_max) {
        Ok(declared) => declared,
        Err(why) => return Frame::Invalid(why),
    };
    let start = newline + 1;
    let body = &buffer[start..];
    if body.len() >= declared {
        // Bytes beyond the declared length are ignored, as the declared length says.
        Frame::Complete(start..start + declared)
    } else if peer_closed {
        if body.iter().all(u8::is_ascii_whitespace) {
            Frame::Invalid("the connection closed before the request arrived".into())
        } else {
            Frame::Complete(start..buffer.len())
        }
    } else if root_is_complete(body) {
        Frame::Complete(start..buffer.len())
    } else {
        Frame::Incomplete
    }
}

fn declared_length(line: &[u8], request_bytes_max: usize) -> Result<usize, String> {
    let shown = String::from_utf8_lossy(line);
    if line.is_empty() || !line.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "the length line must be base-10 digits, got {:?}",
            shown.chars().take(32).collect::<String>()
        ));
    }
    // Digits only, at most 23 of them: a u128 cannot overflow.
    let declared: u128 = shown
        .parse()
        .map_err(|_| "the length line is not a number".to_string())?;
    if declared == 0 {
        return Err("the declared length is 0: there is no request".into());
    }
    if declared > request_bytes_max as u128 {
        return Err(format!(
            "the declared length {declared} exceeds the limit of {request_bytes_max} bytes"
        ));
    }
    Ok(declared as usize)
}

/// True when the bytes hold a root element that has been closed. Cheap to call
/// repeatedly: it scans only when the data ends in `>`.
fn root_is_complete(body: &[u8]) -> bool {
    if body.iter().rev().find(|b| !b.is_ascii_whitespace()) != Some(&b'>') {
        return false;
    }
    let mut reader = Reader::from_reader(body);
    let mut depth = 0usize;
    let mut scratch = Vec::new();
    loop {
        match reader.read_event_into(&mut scratch) {
            Ok(Event::Start(_)) => depth += 1,
            Ok(Event::Empty(_)) if depth == 0 => return true,
            Ok(Event::End(_)) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return true;
                }
            }
            Ok(Event::Eof) | Err(_) => return false,
            Ok(_) => {}
        }
        scratch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn invalid(buffer: &[u8]) -> String {
        match examine(buffer, false, MAX) {
            Frame::Invalid(why) => why,
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(buffer)),
        }
    }

    #[test]
    fn complete_when_the_declared_bytes_arrived() {
        assert_eq!(examine(b"9\n<create/>", false, MAX), Frame::Complete(2..11));
        assert_eq!(
            examine(b"9\r\n<create/>", false, MAX),
            Frame::Complete(3..12)
        );
        // Declared shorter than sent: only the declared bytes count.
        assert_eq!(examine(b"3\n<create/>", false, MAX), Frame::Complete(2..5));
    }

    #[test]
    fn complete_when_the_root_closed_before_the_declared_length() {
        assert_eq!(
            examine(b"500\n<create/>\n", false, MAX),
            Frame::Complete(4..14)
        );
        let doc = b"500\n<?xml version=\"1.0\"?><create><account id=\"1\" balance=\"1\"/></create>";
        assert_eq!(examine(doc, false, MAX), Frame::Complete(4..doc.len()));
    }

    #[test]
    fn incomplete_while_the_root_is_open() {
        assert_eq!(examine(b"", false, MAX), Frame::Incomplete);
        assert_eq!(examine(b"12", false, MAX), Frame::Incomplete);
        assert_eq!(
            examine(b"500\n<create><account id=\"1\"/>", false, MAX),
            Frame::Incomplete
        );
        assert_eq!(examine(b"500\n<create", false, MAX), Frame::Incomplete);
    }

    #[test]
    fn a_half_close_ends_the_request() {
        assert_eq!(examine(b"500\n<create>", true, MAX), Frame::Complete(4..12));
        assert!(matches!(examine(b"500\n", true, MAX), Frame::Invalid(_)));
        assert!(matches!(examine(b"12", true, MAX), Frame::Invalid(_)));
    }

    #[test]
    fn rejects_bad_length_lines() {
        let table: [(&[u8], &str); 8] = [
            (b"-5\n<create/>", "base-10"),
            (b"abc\n<create/>", "base-10"),
            (b"0x10\n<create/>", "base-10"),
            (b" 9\n<create/>", "base-10"),
            (b"\n<create/>", "base-10"),
            (b"0\n", "is 0"),
            (b"99999999999999999999\n", "exceeds"),
            (b"1048577\n", "exceeds"),
        ];
        for (buffer, why) in table {
            let got = invalid(buffer);
            assert!(
                got.contains(why),
                "{:?}: {got}",
                String::from_utf8_lossy(buffer)
            );
        }
        assert!(invalid(&[b'1'; 30]).contains("too long"));
    }
}
