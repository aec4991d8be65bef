//! Hostile input against the real server: every case gets an `<error>` or a close
//! within the request deadline, changes no data, and the same server answers a valid
//! request right after.

mod common;

use common::{count, fresh_database, snapshot, Server};
use exchange::wire::frame;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const DEADLINE_MS: u64 = 1500;

fn server(hint: &str) -> Server {
    let server = Server::start(
        &fresh_database(hint),
        2,
        &[
            "--request-timeout-ms",
            &DEADLINE_MS.to_string(),
            "--threads",
            "2",
        ],
    );
    server.send(
        r#"<create><account id="1" balance="1000"/><account id="2" balance="0"/>
           <symbol sym="X"><account id="2">100</account></symbol></create>"#,
    );
    server.send(r#"<transactions id="2"><order sym="X" amount="-10" limit="5"/></transactions>"#);
    server
}

/// Sends `bytes`, keeps the connection open, and returns what came back and when.
fn exchange_bytes(server: &Server, bytes: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

/// Whatever the server still sends on `stream` until it closes (or 10 s pass).
fn read_what_comes(mut stream: TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn assert_refused_harmlessly(server: &Server, name: &str, bytes: &[u8]) {
    let before = snapshot(&server.url);
    let (answer, took) = exchange_bytes(server, bytes);
    assert!(
        answer.is_empty() || (answer.contains("<results>") && answer.contains("<error")),
        "{name}: answered {answer:?}"
    );
    assert!(
        !answer.contains("<created") && !answer.contains("<opened"),
        "{name}: executed something"
    );
    assert!(
        took < Duration::from_millis(DEADLINE_MS + 1500),
        "{name}: took {took:?}"
    );
    assert_eq!(snapshot(&server.url), before, "{name}: data changed");
    let ok = server.send(r#"<transactions id="2"><query id="1"/></transactions>"#);
    assert_eq!(ok[0].name, "status", "{name}: the server stopped answering");
}

fn framed(xml: &str) -> Vec<u8> {
    frame(xml.as_bytes())
}

#[test]
fn bad_length_lines() {
    let server = server("hostile_length");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("twenty digits", b"99999999999999999999\n<create/>".to_vec()),
        ("negative", b"-9\n<create/>".to_vec()),
        ("non-numeric", b"abc\n<create/>".to_vec()),
        ("hex", b"0x9\n<create/>".to_vec()),
        ("zero", b"0\n<create/>".to_vec()),
        ("above the bound", b"1048577\n<create/>".to_vec()),
        ("no newline ever", b"12345".to_vec()),
        ("a long line without newline", vec![b'7'; 100]),
        (
            "declared longer than sent, incomplete",
            b"500\n<create><account id=\"9\" balance=\"1\"/>".to_vec(),
        ),
        (
            "declared shorter than sent",
            b"5\n<create><account id=\"9\" balance=\"1\"/></create>".to_vec(),
        ),
        ("nothing at all", Vec::new()),
    ];
    for (name, bytes) in cases {
        assert_refused_harmlessly(&server, name, &bytes);
    }
}

#[test]
fn hostile_xml() {
    let server = server("hostile_xml");
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><create><account id="9" balance="&lol3;"/></create>"#;
    let external = r#"<?xml version="1.0"?><!DOCTYPE create [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><create><account id="9" balance="&xxe;"/></create>"#;
    let deep = format!(
        r#"<create>{}{}</create>"#,
        "<a>".repeat(20),
        "</a>".repeat(20)
    );
    let too_many = format!(
        r#"<transactions id="1">{}</transactions>"#,
        r#"<order sym="X" amount="1" limit="1"/>"#.repeat(10_001)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "doctype",
            framed(r#"<!DOCTYPE create><create><account id="9" balance="1"/></create>"#),
        ),
        ("entity bomb", framed(bomb)),
        ("external entity", framed(external)),
        (
            "undeclared entity",
            framed(r#"<create><account id="9" balance="&x;"/></create>"#),
        ),
        (
            "mismatched tags",
            framed(r#"<create><account id="9" balance="1"></symbol></create>"#),
        ),
        (
            "duplicate attributes",
            framed(r#"<create><account id="9" id="8" balance="1"/></create>"#),
        ),
        ("nesting deeper than the bound", framed(&deep)),
        ("more operations than the bound", framed(&too_many)),
        ("invalid UTF-8", {
            let mut b = b"<create><account id=\"9\" balance=\"1\"/>".to_vec();
            b.extend_from_slice(&[0xC3, 0x28, 0xFF]);
            b.extend_from_slice(b"</create>");
            frame(&b)
        }),
        (
            "a non-UTF-8 encoding",
            framed(
                r#"<?xml version="1.0" encoding="ISO-8859-1"?><create><account id="9" balance="1"/></create>"#,
            ),
        ),
        (
            "NUL character",
            framed("<create><account id=\"9\" balance=\"1\"/>\0</create>"),
        ),
        (
            "unknown root",
            framed(r#"<delete><account id="1"/></delete>"#),
        ),
        ("not XML", framed("SELECT * FROM accounts;")),
        (
            "unclosed",
            framed(r#"<create><account id="9" balance="1"/>"#),
        ),
    ];
    for (name, bytes) in cases {
        assert_refused_harmlessly(&server, name, &bytes);
    }
}

#[test]
fn hostile_values_are_rejected_one_by_one_and_change_nothing() {
    let server = server("hostile_values");
    let bad_numbers = [
        "",
        "+5",
        ".5",
        "5.",
        "1e3",
        "NaN",
        "inf",
        "1 0",
        "1234567890123456",
        "0.123456789",
        "0x10",
        "--1",
    ];
    let before = snapshot(&server.url);
    for bad in bad_numbers {
        let answers = server.send(&format!(
            r#"<create><account id="9" balance="{bad}"/><symbol sym="X"><account id="1">{bad}</account></symbol></create>"#
        ));
        assert!(
            answers.iter().all(|a| a.name == "error"),
            "{bad:?}: {answers:?}"
        );
        let answers = server.send(&format!(
            r#"<transactions id="1"><order sym="X" amount="{bad}" limit="1"/><order sym="X" amount="1" limit="{bad}"/></transactions>"#
        ));
        assert!(
            answers.iter().all(|a| a.name == "error"),
            "{bad:?}: {answers:?}"
        );
        assert_eq!(answers[0].get("amount"), bad, "echoed exactly");
    }
    let long = "9".repeat(33);
    let long_sym = "S".repeat(33);
    let sneaky = [
        format!(r#"<create><account id="{long}" balance="1"/></create>"#),
        r#"<create><account id="1; DROP TABLE accounts" balance="1"/></create>"#.to_string(),
        r#"<create><account id="1' OR '1'='1" balance="1"/></create>"#.to_string(),
        format!(r#"<create><symbol sym="{long_sym}"><account id="1">5</account></symbol></create>"#),
        r#"<create><symbol sym="X'); DELETE FROM positions; --"><account id="1">5</account></symbol></create>"#.to_string(),
        r#"<create><symbol sym="X Y"><account id="1">5</account></symbol></create>"#.to_string(),
        r#"<create><symbol sym="Ä"><account id="1">5</account></symbol></create>"#.to_string(),
        r#"<transactions id="1"><order sym="X;--" amount="1" limit="1"/><query id="1 OR 1=1"/><cancel id="-1"/></transactions>"#.to_string(),
        r#"<transactions id="1' OR '1'='1"><query id="1"/></transactions>"#.to_string(),
        format!(r#"<transactions id="{long}"><query id="1"/></transactions>"#),
    ];
    for xml in &sneaky {
        let answers = server.send(xml);
        assert!(
            answers.iter().all(|a| a.name == "error"),
            "{xml}: {answers:?}"
        );
    }
    assert_eq!(
        snapshot(&server.url),
        before,
        "rejected values changed data"
    );
    let tables = count(&server.url, "SELECT count(*) FROM pg_tables WHERE tablename IN ('accounts','positions','orders','trades','share_issues')");
    assert_eq!(tables, 5);
}

#[test]
fn fifty_slow_clients_do_not_delay_a_valid_one() {
    let server = server("hostile_slow");
    // Thirty trickle a byte now and then; twenty send half a request and go silent.
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    for (i, stream) in slow.iter_mut().enumerate() {
        let _ = stream.write_all(if i < 30 {
            b"9"
        } else {
            b"500\n<create><account"
        });
    }
    let started = Instant::now();
    for _ in 0..5 {
        for stream in slow.iter_mut().take(30) {
            let _ = stream.write_all(b"9");
        }
        let asked = Instant::now();
        let answer = server.send(r#"<transactions id="2"><query id="1"/></transactions>"#);
        assert_eq!(answer[0].name, "status");
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "a valid client waited {:?}",
            asked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every slow client is cut off at the deadline with an error or a close.
    for stream in slow {
        let answer = read_what_comes(stream);
        assert!(answer.is_empty() || answer.contains("<error>"), "{answer}");
    }
    assert!(started.elapsed() < Duration::from_millis(DEADLINE_MS + 3000));
}

/// Connects with a receive buffer so small that a large answer cannot be written at once.
fn connect_with_small_buffer(server: &Server) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&server.addr.into()).expect("connect");
    socket.into()
}

#[test]
fn clients_that_never_read_large_answers_do_not_delay_a_valid_one() {
    let deadline = Duration::from_millis(5000);
    let deadline_ms = deadline.as_millis().to_string();
    let server = Server::start(
        &fresh_database("hostile_unread"),
        2,
        &["--request-timeout-ms", &deadline_ms, "--threads", "2"],
    );
    // An order with a thousand fills: each query of it is answered with about 50 kB.
    server.send(
        r#"<create><account id="1" balance="1000"/><account id="2" balance="0"/>
           <symbol sym="Y"><account id="2">1000</account></symbol></create>"#,
    );
    let sell = server
        .send(r#"<transactions id="2"><order sym="Y" amount="-1000" limit="1"/></transactions>"#);
    let sell_id = sell[0].get("id").to_string();
    let buys = r#"<order sym="Y" amount="1" limit="1"/>"#.repeat(100);
    let bought: Vec<_> = (0..10)
        .map(|_| server.send(&format!(r#"<transactions id="1">{buys}</transactions>"#)))
        .collect();
    let valid = format!(
        r#"<transactions id="1"><query id="{}"/></transactions>"#,
        bought[0][0].get("id")
    );
    let queries = format!(r#"<query id="{sell_id}"/>"#).repeat(60);
    let request = framed(&format!(r#"<transactions id="2">{queries}</transactions>"#));
    // As many clients as the server has handler threads each ask for 3 MB (more than
    // the kernel buffers between them and the server hold) and never read it.
    let mut unread = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_with_small_buffer(&server);
        stream.write_all(&request).expect("write");
        unread.push(stream);
    }
    let sent = Instant::now();
    // Time to work out the answers (a million rows in all) and get stuck writing them.
    std::thread::sleep(Duration::from_millis(2000));
    for _ in 0..5 {
        let asked = Instant::now();
        let answer = server.send(&valid);
        assert_eq!(answer[0].name, "status", "{answer:?}");
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "a valid client waited {:?}",
            asked.elapsed()
        );
    }
    // Once they have taken nothing for a deadline the server gives up on them: each
    // connection ends short of its answer, and the server still serves.
    std::thread::sleep(
        (sent + 2 * deadline + Duration::from_millis(500))
            .saturating_duration_since(Instant::now()),
    );
    for stream in unread {
        let answer = read_what_comes(stream);
        assert!(
            !answer.trim_end().ends_with("</results>"),
            "a whole answer of {} bytes",
            answer.len()
        );
    }
    assert_eq!(server.send(&valid)[0].name, "status");
}

#[test]
fn a_burst_of_a_thousand_connections_is_answered_in_full() {
    let server = server("hostile_burst");
    let request = framed(r#"<transactions id="2"><query id="1"/></transactions>"#);
    let mut streams = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream.write_all(&request).expect("write");
        streams.push(stream);
    }
    let mut answered = 0;
    for mut stream in streams {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        if answer.contains("<status id=\"1\">") {
            answered += 1;
        }
    }
    assert_eq!(answered, 1000);
}
