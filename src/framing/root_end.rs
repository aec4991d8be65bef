//! Where a request's root element ends, found byte by byte as the bytes arrive.
//!
//! [`RootEnd`] keeps its state between reads, so every byte a connection sends is
//! looked at once, whatever the segmentation: the cost is linear in the bytes received
//! over the connection's life. It only finds the end of a well-formed document's root
//! element; whether the document is well-formed is `protocol::parse`'s to say. On
//! malformed input it may stop early or never: the parser then refuses what it got,
//! or the request deadline ends the connection.

/// Where the scanner is in the markup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Character data, outside any markup.
    Text,
    /// After `<`.
    Open,
    /// Inside a start tag; `quote` is the open attribute quote, `slash` whether the
    /// last byte outside quotes was `/` (so a `>` now ends an empty element).
    StartTag { quote: Option<u8>, slash: bool },
    /// Inside an end tag.
    EndTag,
    /// After `<?`, until `?>`; `question` whether the last byte was `?`.
    Instruction { question: bool },
    /// After `<!`.
    Bang,
    /// After `<!-`.
    BangDash,
    /// After `<!`, `matched` bytes of `[CDATA[`.
    CDataOpen { matched: usize },
    /// Inside `<!--`, until `-->`; `dashes` counts the `-` just seen.
    Comment { dashes: u8 },
    /// Inside `<![CDATA[`, until `]]>`; `brackets` counts the `]` just seen.
    CData { brackets: u8 },
    /// Any other `<!` declaration (DOCTYPE), until a `>` outside quotes and brackets.
    Declaration { quote: Option<u8>, brackets: usize },
}

const CDATA_OPEN: &[u8] = b"[CDATA[";

/// The incremental scanner.
#[derive(Clone, Debug)]
pub struct RootEnd {
    state: State,
    depth: usize,
    /// Bytes looked at so far.
    scanned: usize,
}

impl Default for RootEnd {
    fn default() -> Self {
        RootEnd {
            state: State::Text,
            depth: 0,
            scanned: 0,
        }
    }
}

impl RootEnd {
    /// Looks at the bytes of `body` not yet seen; returns the length of the document up
    /// to and including the end of its root element, once that has arrived.
    pub fn scan(&mut self, body: &[u8]) -> Option<usize> {
        while self.scanned < body.len() {
            let byte = body[self.scanned];
            self.scanned += 1;
            if self.step(byte) {
                return Some(self.scanned);
            }
        }
        None
    }

    /// Takes one byte; true if it ended the root element.
    fn step(&mut self, byte: u8) -> bool {
        match (self.state, byte) {
            (State::StartTag { quote: None, slash }, b'>') => {
                self.state = State::Text;
                if slash {
                    return self.depth == 0;
                }
                self.depth += 1;
                false
            }
            (State::EndTag, b'>') => {
                self.state = State::Text;
                // An end tag with nothing open ends the document too: the parser refuses it.
                self.depth = self.depth.saturating_sub(1);
                self.depth == 0
            }
            (state, byte) => {
                self.state = state.next(byte);
                false
            }
        }
    }
}

impl State {
    /// The state after `byte`, for every byte that does not close an element (those
    /// are [`RootEnd::step`]'s, which counts the depth).
    fn next(self, byte: u8) -> State {
        use State::*;
        match (self, byte) {
            (Text, b'<') => Open,
            (Text, _) => Text,
            (Open, b'/') => EndTag,
            (Open, b'?') => Instruction { question: false },
            (Open, b'!') => Bang,
            (Open, _) => StartTag {
                quote: None,
                slash: false,
            },
            (StartTag { quote: Some(q), .. }, b) if b == q => StartTag {
                quote: None,
                slash: false,
            },
            (state @ StartTag { quote: Some(_), .. }, _) => state,
            (StartTag { quote: None, .. }, q @ (b'"' | b'\'')) => StartTag {
                quote: Some(q),
                slash: false,
            },
            (StartTag { quote: None, .. }, b) => StartTag {
                quote: None,
                slash: b == b'/',
            },
            (EndTag, _) => EndTag,
            (Instruction { question: true }, b'>') => Text,
            (Instruction { .. }, b) => Instruction {
                question: b == b'?',
            },
            (Bang, b'-') => BangDash,
            (BangDash, b'-') => Comment { dashes: 0 },
            (Bang, b'[') => CDataOpen { matched: 1 },
            (CDataOpen { matched }, b) if CDATA_OPEN.get(matched) == Some(&b) => {
                if matched + 1 == CDATA_OPEN.len() {
                    CData { brackets: 0 }
                } else {
                    CDataOpen {
                        matched: matched + 1,
                    }
                }
            }
            (Bang | BangDash | CDataOpen { .. }, b) => Declaration {
                quote: None,
                brackets: 0,
            }
            .after(b),
            (Comment { dashes }, b'-') => Comment {
                dashes: (dashes + 1).min(2),
            },
            (Comment { dashes: 2 }, b'>') => Text,
            (Comment { .. }, _) => Comment { dashes: 0 },
            (CData { brackets }, b']') => CData {
                brackets: (brackets + 1).min(2),
            },
            (CData { brackets: 2 }, b'>') => Text,
            (CData { .. }, _) => CData { brackets: 0 },
            (state @ Declaration { .. }, b) => state.after(b),
        }
    }

    /// A declaration's next state after `byte` (the declaration state machine alone).
    fn after(self, byte: u8) -> State {
        let State::Declaration { quote, brackets } = self else {
            return self;
        };
        match (quote, byte) {
            (Some(q), b) if b == q => State::Declaration {
                quote: None,
                brackets,
            },
            (Some(_), _) => self,
            (None, q @ (b'"' | b'\'')) => State::Declaration {
                quote: Some(q),
                brackets,
            },
            (None, b'[') => State::Declaration {
                quote: None,
                brackets: brackets + 1,
            },
            (None, b']') => State::Declaration {
                quote: None,
                brackets: brackets.saturating_sub(1),
            },
            (None, b'>') if brackets == 0 => State::Text,
            _ => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(doc: &str) -> Option<usize> {
        RootEnd::default().scan(doc.as_bytes())
    }

    #[test]
    fn finds_the_end_of_the_root_element() {
        let table: [(&str, Option<usize>); 16] = [
            ("<create/>", Some(9)),
            ("<create/>trailing", Some(9)),
            ("<create></create><create/>", Some(17)),
            ("  <create a='1' b=\"2\"/>", Some(23)),
            ("<?xml version=\"1.0\"?><create/>", Some(30)),
            ("<create><a/><b></b></create>", Some(28)),
            ("<create a=\"x>y/\">", None),
            ("<create a=\"/\">", None),
            ("<create><!-- </create> --></create>", Some(35)),
            ("<create><![CDATA[</create>]]></create>", Some(38)),
            ("<create><?pi </create> ?></create>", Some(34)),
            ("<!DOCTYPE x [<!ENTITY a '>'>]><x/>", Some(34)),
            ("<create><a>", None),
            ("<create", None),
            ("</stray>", Some(8)),
            ("<!-- <x/> --><x/>", Some(17)),
        ];
        for (doc, expected) in table {
            assert_eq!(end(doc), expected, "{doc:?}");
        }
    }

    #[test]
    fn any_split_finds_the_same_end() {
        let doc = b"<create><!-- x -- y --><![CDATA[>]]><a b='>'/><?p ?></create>tail";
        let whole = RootEnd::default().scan(doc);
        assert_eq!(whole, Some(doc.len() - 4));
        for split in 0..doc.len() {
            let mut scanner = RootEnd::default();
            let first = scanner.scan(&doc[..split]);
            let got = first.or_else(|| scanner.scan(doc));
            assert_eq!(got, whole, "split at {split}");
        }
    }
}
