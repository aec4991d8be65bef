//! The wire framing: a base-10 length line, then the XML document.
//!
//! A [`Framer`] follows one connection's bytes as they arrive and says whether the
//! request is complete, needs more bytes, or can never become valid. The request ends
//! at the first of: the declared length, the end of the root element, or the client's
//! half-close; bytes after it are not part of it. So the outcome is the same however
//! the bytes were split into reads, and each byte is looked at once.

mod root_end;

use root_end::RootEnd;
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

/// One connection's framing state, kept between reads.
#[derive(Clone, Debug)]
pub struct Framer {
    request_bytes_max: usize,
    /// Once the length line is in: where the body starts, and its declared length.
    body: Option<(usize, usize)>,
    root: RootEnd,
}

impl Framer {
    pub fn new(request_bytes_max: usize) -> Framer {
        Framer {
            request_bytes_max,
            body: None,
            root: RootEnd::default(),
        }
    }

    /// How many more bytes could still belong to the request, given `buffered` read so
    /// far; None while the length line is incomplete.
    pub fn bytes_wanted(&self, buffered: usize) -> Option<usize> {
        self.body
            .map(|(start, declared)| (start + declared).saturating_sub(buffered))
    }

    /// Looks at `buffer` (everything read so far; it only ever grows) and says what it
    /// amounts to. `peer_closed` is true once the client has half-closed: whatever has
    /// arrived is then all there is.
    pub fn advance(&mut self, buffer: &[u8], peer_closed: bool) -> Frame {
        let (start, declared) = match self.body {
            Some(body) => body,
            None => match length_line(buffer, peer_closed, self.request_bytes_max) {
                Ok(Some(body)) => *self.body.insert(body),
                Ok(None) => return Frame::Incomplete,
                Err(why) => return Frame::Invalid(why),
            },
        };
        let end = buffer.len().min(start + declared);
        let body = &buffer[start..end];
        if let Some(root_end) = self.root.scan(body) {
            Frame::Complete(start..start + root_end)
        } else if body.len() == declared {
            Frame::Complete(start..end)
        } else if !peer_closed {
            Frame::Incomplete
        } else if body.iter().all(u8::is_ascii_whitespace) {
            Frame::Invalid("the connection closed before the request arrived".into())
        } else {
            Frame::Complete(start..end)
        }
    }
}

/// Decides whether `buffer` holds a whole request, as a [`Framer`] fed all of it at
/// once would: for tests and the fuzz target.
pub fn examine(buffer: &[u8], peer_closed: bool, request_bytes_max: usize) -> Frame {
    Framer::new(request_bytes_max).advance(buffer, peer_closed)
}

/// The body's start and declared length once the length line is in.
fn length_line(
    buffer: &[u8],
    peer_closed: bool,
    request_bytes_max: usize,
) -> Result<Option<(usize, usize)>, String> {
    let Some(newline) = buffer
        .iter()
        .take(LENGTH_LINE_BYTES_MAX)
        .position(|&b| b == b'\n')
    else {
        return if buffer.len() >= LENGTH_LINE_BYTES_MAX {
            Err("the length line is too long".into())
        } else if peer_closed {
            Err("the connection closed before a complete length line".into())
        } else {
            Ok(None)
        };
    };
    let line = &buffer[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let declared = declared_length(line, request_bytes_max)?;
    Ok(Some((newline + 1, declared)))
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
            Frame::Complete(4..13)
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

    #[test]
    fn the_request_ends_at_its_root_element_however_the_bytes_were_split() {
        let bytes = b"44\n<create><account id=\"1\"/></create><create/>junk";
        let whole = examine(bytes, false, MAX);
        assert_eq!(whole, Frame::Complete(3..37));
        for split in 0..bytes.len() {
            let mut framer = Framer::new(MAX);
            let first = framer.advance(&bytes[..split], false);
            let outcome = match first {
                Frame::Incomplete => framer.advance(bytes, false),
                done => done,
            };
            assert_eq!(outcome, whole, "split at {split}");
        }
    }

    #[test]
    fn wants_no_byte_past_the_declared_length() {
        let mut framer = Framer::new(MAX);
        assert_eq!(framer.bytes_wanted(0), None);
        assert_eq!(framer.advance(b"20\n<cre", false), Frame::Incomplete);
        assert_eq!(framer.bytes_wanted(7), Some(16));
    }
}
