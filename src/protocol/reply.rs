//! Reading a server's answer: the client side of [`super::render`].

use super::parse::{reject, ParseError};
use super::tree::{read_tree, Element};

/// The children of a response's `<results>` root, in order. A whole-request rejection
/// reads as a single `<error>` child without attributes.
pub fn read_reply(bytes: &[u8]) -> Result<Vec<Element>, ParseError> {
    let root = read_tree(bytes, 8, usize::MAX)?;
    if root.name != "results" {
        return reject(format!(
            "the answer's root is <{}>, not <results>",
            root.name
        ));
    }
    Ok(root.children)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{render, Outcome, Response};

    #[test]
    fn reads_what_the_server_renders() {
        let response = Response::Results(vec![Outcome::Error {
            attrs: vec![("sym", "A&B".into())],
            message: "why\nnot".into(),
        }]);
        let items = read_reply(&render(&response)).expect("reads");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].name, "error");
        assert_eq!(items[0].get("sym"), "A&B");
        assert_eq!(items[0].text, "why\nnot");
        assert!(read_reply(b"<other/>").is_err());
    }
}
