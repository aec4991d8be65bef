//! The server's log, as docs/operating.md describes it: every line names its time,
//! level, thread and process; `--log-format json` writes JSON lines with the same
//! fields; `RUST_LOG` filters; the start line says where the server listens and which
//! database it uses, never its password; `--slow-request-ms` logs a request's kind,
//! operations, times and peer, never its body.

mod common;

use common::{fresh_database, Server};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The test cluster trusts local connections, so a password in the URL is accepted
/// and ignored by the database: the log must still never show it.
const PASSWORD: &str = "hunter2-never-logged";
/// An account id that appears only in a request's body.
const BODY_MARKER: &str = "918273645";

fn with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
}

/// Waits until the server's log holds a line containing `text`.
fn await_line(server: &Server, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(line) = server.log_text().lines().find(|l| l.contains(text)) {
            return line.to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no line with {text:?} in:\n{}", server.log_text());
}

/// The field names of the JSON sample in docs/operating.md's section on the log.
fn documented_json_fields() -> Vec<String> {
    let doc = std::fs::read_to_string("docs/operating.md").expect("docs/operating.md");
    let sample = doc
        .split("## The log")
        .nth(1)
        .and_then(|section| section.split("```json\n").nth(1))
        .and_then(|block| block.lines().next())
        .expect("a JSON sample in the section on the log");
    let value: Value = serde_json::from_str(sample).expect("the sample is JSON");
    let mut names: Vec<String> = value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    names.extend(value["fields"].as_object().expect("fields").keys().cloned());
    names
}

#[test]
fn json_lines_name_time_level_process_and_thread_and_never_a_password_or_body() {
    let url = with_password(&fresh_database("log_json"));
    let mut server = Server::start_under(
        &[],
        &url,
        2,
        &["--log-format", "json", "--slow-request-ms", "0"],
    );
    let create = format!(r#"<create><account id="{BODY_MARKER}" balance="100"/></create>"#);
    assert_eq!(server.send(&create).len(), 1);
    server.try_send("<transactions").expect("an answer");
    await_line(&server, "malformed");
    await_line(&server, "\"create\"");
    assert!(server.stop().success());

    let log = server.log_text();
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
    assert!(
        !log.contains(BODY_MARKER),
        "a request's body is in the log:\n{log}"
    );
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for line in &lines {
        let timestamp = line["timestamp"].as_str().expect("a timestamp");
        assert!(
            timestamp.ends_with('Z') && timestamp.contains('T'),
            "{line}"
        );
        assert!(["ERROR", "WARN", "INFO"].contains(&line["level"].as_str().unwrap_or("")));
        assert!(line["threadName"].is_string(), "{line}");
        let process = &line["spans"][0];
        assert!(process["pid"].is_u64(), "no pid in {line}");
        assert!(process["name"].is_string(), "no process in {line}");
    }

    let start = lines
        .iter()
        .find(|l| l["fields"]["schema"].is_u64())
        .expect("a start line");
    let fields = &start["fields"];
    assert_eq!(start["spans"][0]["name"], "supervisor");
    assert!(fields["message"]
        .as_str()
        .unwrap_or("")
        .contains("2 workers x 2 handler threads"));
    let listen = fields["listen"].as_str().expect("where it listens");
    assert_eq!(listen, server.addr.to_string());
    let database = fields["database"].as_str().expect("the database");
    let name = url.rsplit('/').next().expect("a database name");
    assert!(database.starts_with("postgres@127.0.0.1:"), "{database}");
    assert!(database.ends_with(&format!("/{name}")), "{database}");
    assert_eq!(fields["schema"], exchange::migrations::latest());
    assert_eq!(fields["metrics"], "off");

    let slow: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "slow request")
        .collect();
    // The empty `<create/>`s of the start-up check are logged too, with 0 operations.
    let created = slow
        .iter()
        .find(|l| l["fields"]["kind"] == "create" && l["fields"]["operations"] == 1)
        .expect("the create request, logged as slow");
    assert_eq!(created["spans"][0]["name"], "worker");
    assert!(created["spans"][0]["slot"].is_u64(), "{created}");
    let total = created["fields"]["total_us"].as_u64().expect("total_us");
    let database_us = created["fields"]["database_us"]
        .as_u64()
        .expect("database_us");
    assert!(database_us > 0 && database_us <= total, "{created}");
    assert!(created["fields"]["durability_us"].is_u64(), "{created}");
    let peer = created["fields"]["peer"].as_str().expect("peer");
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
    let malformed = slow
        .iter()
        .find(|l| l["fields"]["kind"] == "malformed")
        .expect("the malformed request, logged as slow");
    assert_eq!(malformed["fields"]["operations"], 0);

    for name in documented_json_fields() {
        assert!(
            created.get(&name).is_some() || created["fields"].get(&name).is_some(),
            "docs/operating.md shows {name:?}, which the log does not have: {created}"
        );
    }
}

/// `2026-11-30T20:25:45.052838Z  WARN main supervisor{pid=4242}: ...`
fn is_text_line(line: &str, level: &str) -> bool {
    let mut words = line.split_whitespace();
    let timestamp = words.next().unwrap_or("");
    let well_timed = timestamp.len() == 27
        && timestamp.ends_with('Z')
        && timestamp.as_bytes()[10] == b'T'
        && timestamp[..4].chars().all(|c| c.is_ascii_digit());
    well_timed && words.next() == Some(level)
}

#[test]
fn rust_log_filters_the_text_log_and_the_threshold_holds_back_quick_requests() {
    let url = fresh_database("log_filter");
    let mut server = Server::start_under(
        &["env", "RUST_LOG=warn"],
        &url,
        1,
        &["--slow-request-ms", "600000"],
    );
    for _ in 0..20 {
        assert!(server.send("<create/>").is_empty());
    }
    let supervisor = nix::unistd::Pid::from_raw(server.pid());
    nix::sys::signal::kill(supervisor, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let line = await_line(&server, "SIGHUP");
    assert!(is_text_line(&line, "WARN"), "{line}");
    assert!(
        line.contains(&format!("main supervisor{{pid={}}}: ", server.pid())),
        "{line}"
    );
    assert!(server.stop().success());
    let log = server.log_text();
    assert!(
        !log.contains("INFO"),
        "RUST_LOG=warn let info through:\n{log}"
    );
    assert!(!log.contains("slow request"), "{log}");

    // A filter that does not parse is reported, and the default level holds.
    let mut server = Server::start_under(&["env", "RUST_LOG=[[nonsense"], &url, 1, &[]);
    let line = await_line(&server, "RUST_LOG ignored");
    assert!(is_text_line(&line, "WARN"), "{line}");
    let start = await_line(&server, "handler threads");
    assert!(is_text_line(&start, "INFO"), "{start}");
    assert!(start.contains(" metrics=off"), "{start}");
    assert!(server.stop().success());
}

#[test]
fn an_eviction_is_logged_with_the_limit_that_was_hit_and_its_value() {
    let url = fresh_database("log_limit");
    let server = Server::start_under(&[], &url, 1, &["--connections-max", "2"]);
    // Connections that start a request and never finish it: the third and later evict
    // the oldest.
    let stalled: Vec<std::net::TcpStream> = (0..5)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(server.addr).expect("connect");
            std::io::Write::write_all(&mut stream, b"100\n<create>").expect("write");
            std::thread::sleep(Duration::from_millis(50));
            stream
        })
        .collect();
    // The intake reports its counters at most once every 10 s.
    let deadline = Instant::now() + Duration::from_secs(25);
    let line = loop {
        let log = server.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("evicted for room")) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no eviction logged:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(is_text_line(&line, "WARN"), "{line}");
    assert!(line.contains("--connections-max 2,"), "{line}");
    assert!(line.contains("worker{slot=0 pid="), "{line}");
    let evicted: u64 = line
        .split("intake: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count of evictions");
    assert!(evicted >= 3, "{line}");
    drop(stalled);
}
