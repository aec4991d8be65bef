//! Every example session in the docs runs: each fenced block line that starts with
//! `$ ` is run with bash against the real server (its port for 12345), one fresh
//! database per document, in document order, and must print exactly the lines shown
//! after it (times aside: `time="…"` attributes are compared as digits).

mod common;

use common::{fresh_database, Server};
use std::process::Command;

/// One example: the command after `$ `, and the output shown below it.
struct Example {
    line: usize,
    command: String,
    expected: String,
}

fn examples(markdown: &str) -> Vec<Example> {
    let mut found: Vec<Example> = Vec::new();
    let (mut in_block, mut in_example) = (false, false);
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            in_example = false;
        } else if let (true, Some(command)) = (in_block, line.strip_prefix("$ ")) {
            found.push(Example {
                line: index + 1,
                command: command.to_string(),
                expected: String::new(),
            });
            in_example = true;
        } else if let (true, Some(example)) = (in_example, found.last_mut()) {
            example.expected.push_str(line);
            example.expected.push('\n');
        }
    }
    found
}

/// Times differ from run to run; everything else must match to the byte.
fn without_times(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("time=\"") {
        let (head, tail) = rest.split_at(at + "time=\"".len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(if digits > 0 { "T" } else { "" });
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

fn run_document(path: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let examples = examples(&text);
    let server = Server::start(&fresh_database("docs"), 2, &[]);
    let port = server.addr.port().to_string();
    for example in &examples {
        let command = example.command.replace("12345", &port);
        let output = Command::new("bash")
            .args(["-c", &command])
            .output()
            .unwrap_or_else(|e| panic!("{path}:{}: {e}", example.line));
        let got = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{path}:{}: {} failed: {}",
            example.line,
            example.command,
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            without_times(&got),
            without_times(&example.expected),
            "{path}:{}: {}",
            example.line,
            example.command
        );
    }
    examples.len()
}

#[test]
fn the_readme_examples_run_as_shown() {
    assert!(run_document("README.md") >= 1);
}

#[test]
fn the_protocol_examples_run_as_shown() {
    assert!(run_document("docs/PROTOCOL.md") >= 1);
}
