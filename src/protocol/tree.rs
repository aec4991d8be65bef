//! A bounded, strict reader from XML bytes to a small element tree.
//!
//! It rejects everything PROTOCOL.md forbids in a document (DOCTYPE, entities,
//! invalid UTF-8, non-UTF-8 encodings, forbidden characters, duplicate attributes, two
//! roots, text outside the root) and caps nesting depth and element count. Requests
//! and responses are both read through it.

use super::parse::{reject, ParseError};
use quick_xml::escape::unescape;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// A parsed element; `text` collects its direct character data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The attribute's value, if present.
    pub fn attr(&self, key: &str) -> Option<String> {
        self.value(key).map(str::to_string)
    }

    /// The attribute as a string slice, or "" when absent.
    pub fn get(&self, key: &str) -> &str {
        self.value(key).unwrap_or("")
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a whole document into a tree, enforcing `depth_max` and `elements_max`.
pub fn read_tree(
    bytes: &[u8],
    depth_max: usize,
    elements_max: usize,
) -> Result<Element, ParseError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return reject("request is not valid UTF-8");
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    refuse_forbidden_chars(text)?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    // A lone `&` reaches the character data's own unescaping, which refuses it as it
    // refuses an unknown entity, rather than failing the read.
    reader.config_mut().allow_dangling_amp = true;
    let mut tree = Tree {
        stack: Vec::new(),
        root: None,
        elements: 0,
        depth_max,
        elements_max,
    };
    // The reader hands character data over in pieces, split at each reference: they
    // are put back together, as written, and unescaped whole once the run ends, so
    // that a run is checked as one, as the XML standard reads it.
    let mut run = String::new();
    loop {
        let event_start = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(Event::Text(piece)) => {
                run.push_str(&piece);
                continue;
            }
            Ok(Event::GeneralRef(reference)) => {
                run.push('&');
                run.push_str(&reference);
                run.push(';');
                continue;
            }
            Ok(event) => event,
            Err(e) => {
                take_text(&mut run, &mut tree.stack)?;
                return reject(format!(
                    "malformed XML at byte {}: {e}",
                    reader.error_position()
                ));
            }
        };
        take_text(&mut run, &mut tree.stack)?;
        if let Event::Eof = event {
            return tree.finish();
        }
        tree.take(event, event_start == 0)?;
    }
}

/// The tree as it is read: the elements still open, innermost last, and the root once
/// it has closed.
struct Tree {
    stack: Vec<Element>,
    root: Option<Element>,
    elements: usize,
    depth_max: usize,
    elements_max: usize,
}

impl Tree {
    /// Takes one event other than character data and the end of input; `first` when
    /// nothing came before it.
    fn take(&mut self, event: Event<'_>, first: bool) -> Result<(), ParseError> {
        match event {
            Event::Decl(_) if !first => {
                return reject("the XML declaration may only come first, with nothing before it");
            }
            Event::Decl(decl) => declaration(&decl)?,
            Event::DocType(_) => return reject("DOCTYPE is not allowed"),
            Event::PI(pi) if pi.target().eq_ignore_ascii_case("xml") => {
                return reject("the XML declaration may only come first, with nothing before it");
            }
            Event::Comment(comment) if comment.contains("--") || comment.ends_with('-') => {
                return reject("a comment may not contain -- or end with -");
            }
            Event::PI(_) | Event::Comment(_) => {}
            Event::Start(_) | Event::Empty(_) if self.root.is_some() => {
                return reject("more than one root element");
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                self.elements += 1;
                if self.stack.len() >= self.depth_max {
                    return reject(format!("elements nest deeper than {}", self.depth_max));
                }
                let opened = element(start)?;
                if matches!(event, Event::Start(_)) {
                    self.stack.push(opened);
                } else {
                    close(&mut self.stack, &mut self.root, opened);
                }
            }
            Event::End(_) => {
                // check_end_names guarantees the end tag matches the innermost open element.
                let Some(done) = self.stack.pop() else {
                    return reject("end tag without a start tag");
                };
                close(&mut self.stack, &mut self.root, done);
            }
            // Character data is taken in runs, and the end of input by `finish`.
            Event::Text(_) | Event::GeneralRef(_) | Event::Eof => {}
            Event::CData(data) => match self.stack.last_mut() {
                Some(open) => open.text.push_str(&data),
                None => return reject("CDATA outside the root element"),
            },
        }
        if self.elements > self.elements_max {
            return reject(format!(
                "request has more than {} elements",
                self.elements_max
            ));
        }
        Ok(())
    }

    /// The root, once the input has ended with every element closed.
    fn finish(self) -> Result<Element, ParseError> {
        if let Some(open) = self.stack.last() {
            return reject(format!("document ends inside <{}>", open.name));
        }
        match self.root {
            Some(root) => Ok(root),
            None => reject("request has no root element"),
        }
    }
}

/// Refuses an XML declaration that names an encoding other than UTF-8.
fn declaration(decl: &quick_xml::events::BytesDecl<'_>) -> Result<(), ParseError> {
    let Some(encoding) = decl.encoding() else {
        return Ok(());
    };
    let encoding = encoding.map_err(|e| ParseError(format!("malformed XML declaration: {e}")))?;
    if encoding.eq_ignore_ascii_case("utf-8") || encoding.eq_ignore_ascii_case("utf8") {
        Ok(())
    } else {
        reject(format!(
            "only UTF-8 is accepted, the declaration says {encoding}"
        ))
    }
}

/// Unescapes a run of character data, the predefined entities and character
/// references alone, and gives it to the open element; outside the root, only
/// white space may stand.
fn take_text(run: &mut String, stack: &mut [Element]) -> Result<(), ParseError> {
    if run.is_empty() {
        return Ok(());
    }
    let content = unescape(run).map_err(|e| ParseError(format!("bad character data: {e}")))?;
    refuse_forbidden_chars(&content)?;
    match stack.last_mut() {
        Some(open) => open.text.push_str(&content),
        None if content.trim().is_empty() => {}
        None => return reject("text outside the root element"),
    }
    run.clear();
    Ok(())
}

/// Puts a finished element into its parent, or makes it the root.
fn close(stack: &mut [Element], root: &mut Option<Element>, done: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(done),
        None => *root = Some(done),
    }
}

/// Refuses text holding a character XML 1.0 forbids, whether written as itself or as
/// a character reference (`&#1;` is no more allowed than the byte 0x01).
fn refuse_forbidden_chars(text: &str) -> Result<(), ParseError> {
    match text.chars().find(|&c| is_forbidden_char(c)) {
        Some(c) => reject(format!(
            "request contains the character U+{:04X}, which XML forbids",
            c as u32
        )),
        None => Ok(()),
    }
}

/// Characters XML 1.0 does not allow in a document.
fn is_forbidden_char(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}'
}

fn element(start: &BytesStart<'_>) -> Result<Element, ParseError> {
    let name = start.name().as_ref().to_string();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| ParseError(format!("bad attribute in <{name}>: {e}")))?;
        let key = attr.key.as_ref().to_string();
        // Unescaped as written: the reader's normalized values would also turn a
        // tab or line break written as itself into a space.
        let value = unescape(&attr.value)
            .map_err(|e| ParseError(format!("bad value of {key} in <{name}>: {e}")))?;
        refuse_forbidden_chars(&value)?;
        attrs.push((key, value.into_owned()));
    }
    Ok(Element {
        name,
        attrs,
        ..Element::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(xml: &str) -> Result<Element, ParseError> {
        read_tree(xml.as_bytes(), 8, 100)
    }

    fn refusal(xml: &str) -> String {
        match read(xml) {
            Ok(tree) => panic!("{xml:?} was read as {tree:?}"),
            Err(ParseError(why)) => why,
        }
    }

    #[test]
    fn text_split_by_references_is_read_as_one_run() {
        assert_eq!(read("<a>1&amp;2&#51;&#x34;</a>").unwrap().text, "1&234");
        assert_eq!(
            read("<a>x<![CDATA[&amp;]]>&lt;</a>").unwrap().text,
            "x&amp;<"
        );
        // White space written as references is still white space outside the root.
        assert!(read("<a/>&#32;&#10;").is_ok());
        assert!(refusal("<a/>&#49;").contains("text outside"));
    }

    #[test]
    fn attribute_values_keep_tabs_and_line_breaks_as_written() {
        let tree = read("<a v=\"1\t2\n3&#10;\"/>").unwrap();
        assert_eq!(tree.get("v"), "1\t2\n3\n");
    }

    #[test]
    fn a_lone_ampersand_or_an_unknown_entity_is_refused() {
        assert!(refusal("<a>1 & 2</a>").contains("bad character data"));
        assert!(refusal("<a>&nbsp;</a>").contains("bad character data"));
        assert!(refusal("<a v=\"&\"/>").contains("bad value of v in <a>"));
        assert!(refusal("<a v=\"&xxe;\"/>").contains("bad value of v in <a>"));
    }
}
