//! Every command the README and the protocol show runs, and prints what they show.
//! Each line of a fenced block that starts with `$ ` is a command; the lines after it,
//! up to the next command or the block's end, are its output. Per document, one fresh
//! database and one server (its port for 12345), commands in document order:
//!
//! - a request (`nc`, `exchange-client send`) must print exactly what is shown, times
//!   aside (`time="…"` attributes are compared as digits);
//! - a server launch (`exchange-server`, under `taskset` or not) runs in the
//!   background until it has printed as many lines as shown, which must match but for
//!   its pid and port, and is then stopped;
//! - the load client's reports (`load`, `audit`, `flip`) vary from run to run: the
//!   lines shown must appear in that order, figures masked;
//! - the scripts and Docker run elsewhere; a table here names where, and the test
//!   checks that the place named really runs the command.
//!
//! No fenced block may be marked as a shell script (`sh`, `bash`, `shell`): a command
//! there would escape all this.

mod common;

use common::{client_bin, fresh_database, server_bin, Server};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

const DOCUMENTS: &[&str] = &["README.md", "docs/PROTOCOL.md"];

/// Commands too slow or too large for a test, each with the file that runs it (and
/// must name it) and how.
const RUN_ELSEWHERE: &[(&str, &str, &str)] = &[
    (
        "scripts/run",
        "scripts/fresh-machine-check",
        "on a fresh Debian 12, twice, with a request answered and its output checked against the README",
    ),
    (
        "scripts/test",
        ".ci/run",
        "by CI, and by scripts/fresh-machine-check on a fresh Debian 12",
    ),
    (
        "scripts/compose-secrets",
        "tests/compose.rs",
        "into a scratch folder, its passwords then used as the compose file uses them",
    ),
    (
        "docker compose",
        "scripts/test",
        "docker-compose config validates the compose file (no Docker engine on the development machines)",
    ),
];

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

/// A server's line with what changes from run to run masked: the time, its pid, the
/// port it listens on and the database it uses (the test's own). The CPUs it names
/// must match, and so must the schema version and the metrics address.
fn pid_and_port_masked(line: &str) -> String {
    let line = match line.strip_prefix("listening on ") {
        Some(address) => match address.rsplit_once(':') {
            Some((host, _)) => format!("listening on {host}:PORT"),
            None => line.to_string(),
        },
        None => line.to_string(),
    };
    // A log line: `TIMESTAMP LEVEL thread process{pid=N}: message field=value ...`.
    let timestamped = line.len() > 20 && line.as_bytes()[4] == b'-' && line.as_bytes()[10] == b'T';
    if !timestamped {
        return line;
    }
    let (_, rest) = line.split_once(' ').unwrap_or(("", &line));
    std::iter::once("TIME".to_string())
        .chain(rest.split(' ').filter(|w| !w.is_empty()).map(|word| {
            if let Some((before, after)) = word.split_once("pid=") {
                let digits = after.trim_start_matches(|c: char| c.is_ascii_digit());
                format!("{before}pid=PID{digits}")
            } else if let Some(address) = word.strip_prefix("listen=") {
                let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
                format!("listen={host}:PORT")
            } else if word.starts_with("database=") {
                "database=URL".to_string()
            } else {
                word.to_string()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every figure (a run of digits, with any decimal point inside it) as `N`, so that a
/// report's shape is compared and not its numbers.
fn figures_masked(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars
                .peek()
                .is_some_and(|n| n.is_ascii_digit() || *n == '.')
            {
                chars.next();
            }
            out.push('N');
        } else {
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

enum Kind {
    Request,
    ServerLaunch,
    Report,
    Elsewhere(&'static str, &'static str),
}

fn kind(command: &str) -> Kind {
    if let Some((name, runner, _)) = RUN_ELSEWHERE
        .iter()
        .find(|(name, ..)| command.starts_with(name) || command.contains(&format!(" {name}")))
    {
        return Kind::Elsewhere(name, runner);
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    if words.contains(&"exchange-server") {
        Kind::ServerLaunch
    } else if words
        .windows(2)
        .any(|w| w[0] == "exchange-client" && ["load", "audit", "flip"].contains(&w[1]))
    {
        Kind::Report
    } else {
        Kind::Request
    }
}

/// A folder holding `exchange-server` and `exchange-client` of this build, to put first
/// on the PATH, as the README tells its reader to. Made once per test process: the
/// documents' tests run in parallel, and one's links, removed and made again under
/// the other's, would fail its own.
fn bin_dir() -> std::path::PathBuf {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-bin");
        std::fs::create_dir_all(&dir).expect("create the bin folder");
        for (name, target) in [
            ("exchange-server", server_bin()),
            ("exchange-client", client_bin()),
        ] {
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(target, &link).expect("link a binary");
        }
        dir
    })
    .clone()
}

/// The environment every command runs in: this build first on the PATH, the document's
/// database, and the document's server for the client.
fn shell(command: &str, server: &Server) -> Command {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = Command::new("bash");
    shell
        .args(["-c", command])
        .env("PATH", path)
        .env("DATABASE_URL", &server.url)
        .env("EXCHANGE_PORT", server.addr.port().to_string())
        .env("EXCHANGE_HOST", server.addr.ip().to_string());
    shell
}

fn run_request(at: &str, example: &Example, server: &Server) {
    let command = example
        .command
        .replace("12345", &server.addr.port().to_string());
    let output = shell(&command, server)
        .output()
        .unwrap_or_else(|e| panic!("{at}: {e}"));
    assert!(
        output.status.success(),
        "{at}: {} failed: {}",
        example.command,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        without_times(&String::from_utf8_lossy(&output.stdout)),
        without_times(&example.expected),
        "{at}: {}",
        example.command
    );
}

/// Starts the server the example starts (on a free port), collects as many lines as
/// the example shows, stops it, and compares them with figures masked.
fn run_server_launch(at: &str, example: &Example, server: &Server) {
    let shown: Vec<String> = example.expected.lines().map(pid_and_port_masked).collect();
    let mut child = shell(&format!("exec {} --port 0 2>&1", example.command), server)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{at}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < shown.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => got.push(pid_and_port_masked(&line)),
            Err(_) => break,
        }
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let status = child.wait().expect("wait for the server");
    assert_eq!(got, shown, "{at}: {}", example.command);
    assert!(
        status.success(),
        "{at}: {} exited {status}",
        example.command
    );
}

/// Runs a report and checks that the lines shown appear in order, figures masked.
fn run_report(at: &str, example: &Example, server: &Server) {
    let output = shell(&example.command, server)
        .output()
        .unwrap_or_else(|e| panic!("{at}: {e}"));
    let got = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{at}: {} failed: {got}{}",
        example.command,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut got_lines = got.lines().map(figures_masked);
    for shown in example.expected.lines().map(figures_masked) {
        assert!(
            got_lines.any(|line| line == shown),
            "{at}: {}: the line {shown:?} is not in the output, in order:\n{got}",
            example.command
        );
    }
}

/// The runner must exist and name the command: a renamed script or a dropped step
/// shows here.
fn check_elsewhere(at: &str, name: &str, runner: &str) {
    let text = std::fs::read_to_string(runner).unwrap_or_else(|e| panic!("{at}: {runner}: {e}"));
    let needle = if name == "docker compose" {
        "docker-compose"
    } else {
        name
    };
    assert!(
        text.contains(needle),
        "{at}: {runner} is said to run {name}, and does not name it"
    );
}

fn run_document(path: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (index, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        assert!(
            !["```sh", "```bash", "```shell"].contains(&fence.trim_end()),
            "{path}:{}: commands go in ```console blocks, as `$ command`, so that a test runs them",
            index + 1
        );
    }
    let examples = examples(&text);
    let server = Server::start(&fresh_database("docs"), 2, &[]);
    for example in &examples {
        let at = format!("{path}:{}", example.line);
        match kind(&example.command) {
            Kind::Request => run_request(&at, example, &server),
            Kind::ServerLaunch => run_server_launch(&at, example, &server),
            Kind::Report => run_report(&at, example, &server),
            Kind::Elsewhere(name, runner) => check_elsewhere(&at, name, runner),
        }
    }
    examples.len()
}

#[test]
fn the_readme_examples_run_as_shown() {
    assert!(run_document(DOCUMENTS[0]) >= 10);
}

#[test]
fn the_protocol_examples_run_as_shown() {
    assert!(run_document(DOCUMENTS[1]) >= 5);
}

/// The README's table of flags names every flag `exchange-server --help` lists, and no
/// other.
#[test]
fn the_readme_names_every_server_flag() {
    let help = Command::new(server_bin())
        .arg("--help")
        .output()
        .expect("exchange-server --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let section = readme
        .split("## Running the server")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a section 'Running the server'");
    let in_help: std::collections::BTreeSet<String> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', '<']).next())
        .map(|f| format!("--{f}"))
        .filter(|f| !["--help", "--version"].contains(&f.as_str()))
        .collect();
    let in_readme: std::collections::BTreeSet<String> = section
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && !w.trim_start_matches('-').is_empty())
        .filter(|w| !["--help", "--version"].contains(w))
        .map(str::to_string)
        .collect();
    assert_eq!(in_readme, in_help, "README.md's flags against --help");
}

/// The other documents show no commands, and no block where one could hide.
#[test]
fn no_document_hides_a_command_in_a_shell_block() {
    let docs = std::fs::read_dir("docs").expect("docs/");
    for entry in docs.map(|e| e.expect("an entry").path()) {
        if entry.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let path = entry.display().to_string();
        let text = std::fs::read_to_string(&entry).expect("a document");
        if !DOCUMENTS.contains(&path.as_str()) {
            assert!(
                examples(&text).is_empty(),
                "{path} shows commands no test runs"
            );
        }
        for (index, line) in text.lines().enumerate() {
            assert!(
                !["```sh", "```bash", "```shell"].contains(&line.trim()),
                "{path}:{}: a shell block",
                index + 1
            );
        }
    }
}

#[test]
fn every_command_kind_is_recognised() {
    assert!(matches!(
        kind("scripts/run"),
        Kind::Elsewhere("scripts/run", _)
    ));
    assert!(matches!(
        kind("EXCHANGE_CPUSET=0-3 docker compose up"),
        Kind::Elsewhere("docker compose", _)
    ));
    assert!(matches!(
        kind("taskset -c 1 exchange-server --pin"),
        Kind::ServerLaunch
    ));
    assert!(matches!(
        kind("exchange-client load --duration 3"),
        Kind::Report
    ));
    assert!(matches!(
        kind("echo '<create/>' | exchange-client send"),
        Kind::Request
    ));
    assert_eq!(
        figures_masked("requests  14774 in 3.008 s (4911.5/s)"),
        "requests  N in N s (N/s)"
    );
    assert_eq!(
        pid_and_port_masked(
            "2026-11-30T20:25:45.052838Z  INFO main supervisor{pid=4242}: 1 worker x 2 handler \
             threads, on CPUs [0, 1] listen=0.0.0.0:12345 \
             database=postgres@127.0.0.1:54329/exchange schema=2 metrics=off"
        ),
        "TIME INFO main supervisor{pid=PID}: 1 worker x 2 handler threads, on CPUs [0, 1] \
         listen=0.0.0.0:PORT database=URL schema=2 metrics=off"
    );
    assert_eq!(
        pid_and_port_masked("listening on 0.0.0.0:41234"),
        "listening on 0.0.0.0:PORT"
    );
}
