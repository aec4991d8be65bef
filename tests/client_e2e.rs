//! The `exchange-client` binary against the real server: send, load then audit, the
//! load's share of queries, a load that outlives its server, a tampered database
//! failing the audit, and the flip scenario.

mod common;

use common::{client_bin, count, fresh_database, output_text, Server};
use std::process::{Command, Output};

fn client(args: &[&str]) -> Output {
    Command::new(client_bin())
        .args(args)
        .output()
        .expect("run exchange-client")
}

#[test]
fn send_round_trips_a_file() {
    let server = Server::start(&fresh_database("client_send"), 2, &[]);
    let dir = std::env::temp_dir().join(format!("exchange-send-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("create.xml");
    std::fs::write(
        &file,
        r#"<create><account id="42" balance="10.50"/></create>"#,
    )
    .unwrap();
    let port = server.addr.port().to_string();
    let output = client(&["send", "--port", &port, file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert!(
        output_text(&output).contains(r#"<created id="42"/>"#),
        "{}",
        output_text(&output)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn load_then_audit_passes_and_the_report_is_json() {
    let server = Server::start(&fresh_database("client_load"), 2, &[]);
    let port = server.addr.port().to_string();
    let output = client(&[
        "load",
        "--port",
        &port,
        "--duration",
        "3",
        "--connections",
        "6",
        "--accounts",
        "20",
        "--symbols",
        "3",
        "--orders-per-request",
        "3",
        "--json",
    ]);
    assert!(output.status.success(), "{}", output_text(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert!(report["requests"].as_u64().unwrap() > 50, "{report}");
    assert!(report["requests_per_sec"].is_number());
    assert!(report["latency_ms"]["p50"].is_number() && report["latency_ms"]["p99"].is_number());
    assert_eq!(report["transport_failures"].as_u64(), Some(0), "{report}");
    assert_eq!(report["server_errors"].as_u64(), Some(0), "{report}");
    let trades = count(&server.url, "SELECT count(*) FROM trades");
    assert!(
        trades > 10,
        "the workload should trade, saw {trades} trades"
    );

    let audit = client(&["audit", "--database-url", &server.url]);
    assert!(audit.status.success(), "{}", output_text(&audit));
    assert!(output_text(&audit).contains("audit passed"));
}

#[test]
fn a_load_whose_server_stops_backs_off_instead_of_hammering() {
    let mut server = Server::start(&fresh_database("client_backoff"), 2, &[]);
    let port = server.addr.port().to_string();
    let load = Command::new(client_bin())
        .args(["load", "--port", &port, "--duration", "4"])
        .args(["--connections", "4", "--accounts", "8", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run exchange-client");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(server.stop().success());
    let output = load.wait_with_output().expect("the load's report");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    // About 2 s against a closed port: 4 threads, each waiting 10, 20, 40 ms and so
    // on up to 1 s between attempts, make a few dozen; without a pause, tens of
    // thousands.
    let failures = report["transport_failures"].as_u64().expect("a count");
    assert!(
        (1..=100).contains(&failures),
        "{failures} failed attempts: {report}"
    );
    assert_eq!(output.status.code(), Some(2), "transport failures exit 2");
}

#[test]
fn load_queries_and_cancels_in_the_share_asked() {
    let server = Server::start(&fresh_database("client_mix"), 2, &[]);
    let port = server.addr.port().to_string();
    // Of single-operation requests, those that are not orders are queries or cancels.
    let share_not_orders = |percent: &str| {
        let output = client(&[
            "load",
            "--port",
            &port,
            "--requests",
            "400",
            "--connections",
            "4",
            "--queries-percent",
            percent,
            "--json",
        ]);
        assert!(output.status.success(), "{}", output_text(&output));
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("one JSON object");
        assert_eq!(report["queries_percent"].as_u64(), percent.parse().ok());
        let (requests, orders) = (report["requests"].as_u64(), report["orders"].as_u64());
        let (requests, orders) = (requests.expect("requests"), orders.expect("orders"));
        assert_eq!(requests, 400, "{report}");
        (requests - orders) * 100 / requests
    };
    assert_eq!(share_not_orders("0"), 0);
    let half = share_not_orders("50");
    assert!((35..=60).contains(&half), "asked for 50%, got {half}%");
}

#[test]
fn load_shows_its_setup_and_reports_orders_per_second() {
    let server = Server::start(&fresh_database("client_report"), 2, &[]);
    let port = server.addr.port().to_string();
    // 300 accounts x 20 symbols is 6,300 setup operations: two requests.
    let output = client(&[
        "load",
        "--port",
        &port,
        "--requests",
        "100",
        "--accounts",
        "300",
        "--symbols",
        "20",
    ]);
    assert!(output.status.success(), "{}", output_text(&output));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        stderr.contains("setting up 300 accounts with shares of 20 symbols (2 requests)")
            && stderr.contains("set up in "),
        "{stderr}"
    );
    let orders = stdout
        .lines()
        .find(|l| l.starts_with("orders "))
        .unwrap_or_else(|| panic!("no orders line in {stdout}"));
    assert!(orders.ends_with("/s)"), "{orders}");
    assert_eq!(count(&server.url, "SELECT count(*) FROM accounts"), 300);
}

#[test]
fn ctrl_c_stops_load_and_reports_what_was_done() {
    let server = Server::start(&fresh_database("client_ctrl_c"), 2, &[]);
    let port = server.addr.port().to_string();
    let mut load = Command::new(client_bin())
        .args(["load", "--port", &port, "--duration", "120", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run exchange-client");
    let stderr = load.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.starts_with("set up in "))),
        "setup did not finish"
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let interrupted = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(load.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let output = load.wait_with_output().expect("wait for load");
    assert!(
        interrupted.elapsed() < std::time::Duration::from_secs(15),
        "load took {:?} to stop",
        interrupted.elapsed()
    );
    assert_eq!(output.status.code(), Some(130), "{}", output_text(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(
        report["interrupted"],
        serde_json::Value::Bool(true),
        "{report}"
    );
    assert!(report["requests"].as_u64().unwrap_or(0) > 0, "{report}");
}

#[test]
fn two_loads_started_together_do_not_collide() {
    let server = Server::start(&fresh_database("client_twins"), 2, &[]);
    let port = server.addr.port().to_string();
    let start = || {
        Command::new(client_bin())
            .args([
                "load",
                "--port",
                &port,
                "--requests",
                "50",
                "--connections",
                "2",
                "--json",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run exchange-client")
    };
    let (first, second) = (start(), start());
    for load in [first, second] {
        let output = load.wait_with_output().expect("wait for load");
        assert!(output.status.success(), "{}", output_text(&output));
    }
    assert_eq!(count(&server.url, "SELECT count(*) FROM accounts"), 200);
}

#[test]
fn audit_fails_when_a_balance_was_changed_by_hand() {
    let url = fresh_database("client_tamper");
    let server = Server::start(&url, 2, &[]);
    server.send(r#"<create><account id="1" balance="100"/><account id="2" balance="0"/><symbol sym="X"><account id="2">10</account></symbol></create>"#);
    server.send(r#"<transactions id="1"><order sym="X" amount="5" limit="3"/></transactions>"#);
    server.send(r#"<transactions id="2"><order sym="X" amount="-2" limit="1"/></transactions>"#);
    assert!(client(&["audit", "--database-url", &url]).status.success());

    let mut db = common::sql(&url);
    db.batch_execute("UPDATE accounts SET balance = balance + 0.01 WHERE id = '2'")
        .unwrap();
    let audit = client(&["audit", "--database-url", &url]);
    assert!(!audit.status.success(), "{}", output_text(&audit));
    assert!(
        output_text(&audit).contains("DISCREPANCY cash"),
        "{}",
        output_text(&audit)
    );

    db.batch_execute("UPDATE accounts SET balance = balance - 0.01 WHERE id = '2'; UPDATE positions SET shares = shares - 1 WHERE account_id = '2'").unwrap();
    let audit = client(&["audit", "--database-url", &url]);
    assert!(!audit.status.success());
    assert!(
        output_text(&audit).contains("DISCREPANCY shares of X"),
        "{}",
        output_text(&audit)
    );
}

#[test]
fn flip_with_twenty_users_flips_every_holding() {
    let server = Server::start(&fresh_database("client_flip"), 2, &[]);
    let port = server.addr.port().to_string();
    let output = client(&["flip", "--port", &port, "--users", "20"]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert!(output_text(&output).contains("every holding flipped exactly"));
    assert!(client(&["audit", "--database-url", &server.url])
        .status
        .success());
}
