//! The protocol's limits and strict rules against the real server: answers bounded in
//! bytes, connections that must fit the database, XML that XML forbids, one rule for
//! where a request ends however it was segmented, and the small cases a review found.

mod common;

use common::{count, fresh_database, snapshot, sql, Server};
use exchange::protocol::reply::read_reply;
use exchange::wire::frame;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An account 1 with cash, an account 2 whose sell of 1,000 shares of Y was filled by
/// 1,000 buys of one share each: the sell's state lists 1,000 fills. Returns its id.
fn order_with_a_thousand_fills(server: &Server) -> String {
    server.send(
        r#"<create><account id="1" balance="100000"/><account id="2" balance="0"/>
           <symbol sym="Y"><account id="2">2000</account></symbol></create>"#,
    );
    let sell = server
        .send(r#"<transactions id="2"><order sym="Y" amount="-2000" limit="1"/></transactions>"#);
    let buys = r#"<order sym="Y" amount="1" limit="1"/>"#.repeat(100);
    for _ in 0..10 {
        let bought = server.send(&format!(r#"<transactions id="1">{buys}</transactions>"#));
        assert!(bought.iter().all(|b| b.name == "opened"));
    }
    sell[0].get("id").to_string()
}

/// The `(fills listed, fills left out)` of each `<status>` or `<canceled>` in `items`.
fn fills_shown(items: &[exchange::protocol::tree::Element]) -> Vec<(usize, usize)> {
    items
        .iter()
        .map(|item| {
            let listed = item
                .children
                .iter()
                .filter(|c| c.name == "executed")
                .count();
            let omitted = item.get("executed-omitted").parse().unwrap_or(0);
            (listed, omitted)
        })
        .collect()
}

#[test]
fn answers_stay_within_the_response_bound() {
    let bound = 200_000;
    let server = Server::start(
        &fresh_database("limit_answer"),
        2,
        &[
            "--response-bytes-max",
            &bound.to_string(),
            "--operations-max",
            "100",
        ],
    );
    let sell = order_with_a_thousand_fills(&server);
    // Each whole state of the sell is about 55 kB: ten do not fit. Every query is
    // answered, listing the fills that fit and counting the rest.
    let queries = format!(r#"<query id="{sell}"/>"#).repeat(10);
    let answer = server
        .try_send(&format!(r#"<transactions id="2">{queries}</transactions>"#))
        .expect("answered");
    assert!(answer.len() <= bound, "{} bytes", answer.len());
    let items = read_reply(answer.as_bytes()).expect("well-formed");
    assert!(items.iter().all(|i| i.name == "status"), "{items:?}");
    let shown = fills_shown(&items);
    assert!(
        shown
            .iter()
            .all(|&(listed, omitted)| listed + omitted == 1000),
        "{shown:?}"
    );
    assert_eq!(shown[0], (1000, 0));
    assert!(shown[9].1 > 0, "{shown:?}");

    // A cancel is carried out whatever its answer holds: the cash it frees is the
    // owner's, however many fills others made on the order.
    let queries = format!(r#"<query id="{sell}"/>"#).repeat(4);
    let items = server.send(&format!(
        r#"<transactions id="2">{queries}<cancel id="{sell}"/></transactions>"#
    ));
    assert_eq!(items[4].name, "canceled", "{:?}", items[4]);
    let (listed, omitted) = fills_shown(&items[4..])[0];
    assert_eq!((listed + omitted, omitted > 0), (1000, true));
    let open = count(
        &server.url,
        &format!("SELECT open_shares::bigint FROM orders WHERE id = {sell}"),
    );
    assert_eq!(open, 0);

    // An error that would echo more than fits goes without the echo.
    let quotes = "&quot;".repeat(40_000);
    let answer = server
        .try_send(&format!(
            r#"<transactions id="1"><order sym="{quotes}" amount="1" limit="1"/><query id="{sell}"/></transactions>"#
        ))
        .expect("answered");
    assert!(answer.len() <= bound, "{} bytes", answer.len());
    let items = read_reply(answer.as_bytes()).expect("well-formed");
    assert_eq!(items[0].name, "error");
    assert!(
        items[0].attrs.is_empty(),
        "an echo of {} bytes",
        answer.len()
    );
    assert!(items[0].text.contains("symbol"), "{}", items[0].text);
    common::audit_holds(&server.url);
}

/// A database owned by a new role that may open at most `limit` connections; returns
/// its URL, with the schema applied by that role.
fn database_with_connection_limit(hint: &str, limit: u32) -> String {
    let name = format!("t_{hint}_{}", std::process::id());
    let admin_url = common::admin_url();
    let mut admin = sql(&admin_url);
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("DROP ROLE IF EXISTS r_{name}"),
        format!("CREATE ROLE r_{name} LOGIN CONNECTION LIMIT {limit}"),
        format!("CREATE DATABASE {name} OWNER r_{name}"),
    ] {
        admin
            .batch_execute(&statement)
            .expect("a role and its database");
    }
    let (base, _) = admin_url.rsplit_once('/').expect("URL with a database");
    let url = format!(
        "{}/{name}",
        base.replacen("postgres://postgres@", &format!("postgres://r_{name}@"), 1)
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect as the role");
    exchange::migrations::migrate(&mut client).expect("the role sets up its database");
    url
}

fn log_of(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Runs the server with `args`, which it must refuse within 10 s; returns its log.
fn refused_at_start(args: &[&str]) -> String {
    let started = Instant::now();
    let mut child = Command::new(common::server_bin())
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the server");
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the server started with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("the server's log");
    assert!(!output.status.success(), "started with {args:?}");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(log.trim().lines().count(), 1, "one line: {log}");
    log
}

#[test]
fn the_server_refuses_to_start_with_more_connections_than_the_database_has_free() {
    let url = database_with_connection_limit("limit_slots", 5);
    let log = refused_at_start(&["--workers", "2", "--threads", "2", "--database-url", &url]);
    assert!(
        log.contains(" 6 ") && log.contains(" 5 "),
        "names both: {log}"
    );
}

#[test]
fn the_server_refuses_an_answer_bound_too_small_for_the_operations() {
    let log = refused_at_start(&[
        "--response-bytes-max",
        "20000",
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
    ]);
    assert!(
        log.contains("--response-bytes-max") && log.contains("2560064"),
        "{log}"
    );
}

#[test]
fn workers_short_of_connections_say_why_and_recover_when_slots_free() {
    let url = database_with_connection_limit("limit_respawn", 5);
    let log = std::env::temp_dir().join(format!("exchange-limit-{}.log", std::process::id()));
    // Two workers of one handler: 4 of the 5 connections.
    let server = Server::start_logged(&url, 2, &["--threads", "1"], &log);
    // The role's limit falls to 3: now only one worker's two connections fit.
    let role = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .expect("role");
    let set_limit = |limit: u32| {
        sql(&common::admin_url())
            .batch_execute(&format!("ALTER ROLE {role} CONNECTION LIMIT {limit}"))
            .expect("set the role's limit");
    };
    set_limit(3);
    for victim in server.workers() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log_of(&log).contains("53300") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = log_of(&log);
    assert!(
        text.contains("53300") && text.contains("too many connections"),
        "the real cause is logged: {text}"
    );
    set_limit(5);
    // With the slots free again both workers come back, and the server answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let serving = server.workers().len() == 2
            && server
                .try_send("<create/>")
                .is_ok_and(|a| a.contains("<results/>"));
        if serving {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", log_of(&log));
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_file(log);
}

fn server(hint: &str) -> Server {
    let server = Server::start(&fresh_database(hint), 2, &[]);
    server.send(
        r#"<create><account id="1" balance="1000"/><account id="2" balance="0"/>
           <symbol sym="X"><account id="2">100</account></symbol></create>"#,
    );
    server
}

#[test]
fn what_xml_forbids_is_refused_whole() {
    let server = server("limit_xml");
    let before = snapshot(&server.url);
    let mut cases: Vec<String> = ["&#1;", "&#x1F;", "&#xB;", "&#xFFFE;", "&#xFFFF;", "&#0;"]
        .iter()
        .flat_map(|reference| {
            [
                format!(r#"<create><symbol sym="X"><account id="1">5{reference}</account></symbol></create>"#),
                format!(r#"<create><account id="7" balance="5{reference}"/></create>"#),
            ]
        })
        .collect();
    cases.extend([
        r#" <?xml version="1.0"?><create><account id="7" balance="1"/></create>"#.into(),
        "\n<?xml version=\"1.0\"?><create><account id=\"7\" balance=\"1\"/></create>".into(),
        r#"<create><!-- a -- b --><account id="7" balance="1"/></create>"#.into(),
        r#"<create><!-- ends with a dash ---><account id="7" balance="1"/></create>"#.into(),
        r#"<?xml version="1.0"?><?xml version="1.0"?><create><account id="7" balance="1"/></create>"#.into(),
    ]);
    for xml in &cases {
        let answer = server.try_send(xml).expect("answered");
        let items = read_reply(answer.as_bytes()).unwrap_or_else(|e| panic!("{xml}: {e}"));
        assert_eq!(items.len(), 1, "{xml}: {answer}");
        assert_eq!(items[0].name, "error", "{xml}: {answer}");
        assert!(
            !items[0].attrs.iter().any(|(k, _)| k == "id"),
            "whole: {answer}"
        );
    }
    assert_eq!(snapshot(&server.url), before);
}

/// Sends `first`, waits until the server has surely read it, then `second`.
fn send_in_two_segments(server: &Server, first: &[u8], second: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(first).expect("first");
    std::thread::sleep(Duration::from_millis(300));
    let _ = stream.write_all(second);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn a_request_ends_at_its_root_element_however_it_was_segmented() {
    let server = server("limit_segments");
    let document =
        |id: &str| format!(r#"<create><account id="{id}" balance="1"/></create><create/>garbage"#);
    let whole = server
        .send_bytes(&frame(document("51").as_bytes()))
        .expect("answered");
    let bytes = frame(document("52").as_bytes());
    let split = bytes.len() - "<create/>garbage".len();
    let segmented = send_in_two_segments(&server, &bytes[..split], &bytes[split..]);
    assert_eq!(whole.replace("51", "52"), segmented);
    let items = read_reply(whole.as_bytes()).expect("well-formed");
    assert_eq!(items[0].name, "created", "{whole}");
    assert_eq!(
        count(
            &server.url,
            "SELECT count(*) FROM accounts WHERE id IN ('51', '52')"
        ),
        2
    );
}

#[test]
fn a_second_request_on_the_same_connection_is_not_executed() {
    let server = server("limit_pipelined");
    let mut bytes = frame(br#"<create><account id="61" balance="1"/></create>"#);
    bytes.extend(frame(br#"<create><account id="62" balance="1"/></create>"#));
    let answer = server.send_bytes(&bytes).expect("answered");
    let items = read_reply(answer.as_bytes()).expect("one answer");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].get("id"), "61");
    assert_eq!(
        count(&server.url, "SELECT count(*) FROM accounts WHERE id = '62'"),
        0
    );
}

#[test]
fn small_cases_answer_what_they_are() {
    let server = server("limit_small");
    // A 19-digit id is a well-formed order id that names no order.
    let items = server.send(
        r#"<transactions id="1"><query id="9223372036854775807"/><cancel id="9223372036854775808"/><query id="0"/></transactions>"#,
    );
    assert_eq!(items[0].text, "no such order for this account");
    assert_eq!(items[1].text, "no such order for this account");
    assert_eq!(
        items[2].text,
        "order id must be a positive integer of at most 32 digits"
    );
    let before = snapshot(&server.url);
    // Only XML's own whitespace is trimmed around a share count, and the count is text
    // alone, not text around elements.
    for content in ["\u{a0}5", "5\u{a0}", "\u{2003}5", "1<b/>0", "<b/>5"] {
        let items = server.send(&format!(
            r#"<create><symbol sym="X"><account id="1">{content}</account></symbol></create>"#
        ));
        assert_eq!(items[0].name, "error", "{content:?}: {items:?}");
        assert!(items[0].text.contains("share count"), "{:?}", items[0]);
    }
    assert_eq!(snapshot(&server.url), before);
    let items =
        server.send(r#"<create><symbol sym="X"><account id="1"> 5 </account></symbol></create>"#);
    assert_eq!(items[0].name, "created");
}
