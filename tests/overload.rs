//! Hostile clients and overload against the real server, the slow cases: trickling
//! sockets, thousands of idle connections, requests that wait behind slow ones or for
//! a stopped worker, long answers and bursts of large uploads. Each test takes seconds
//! to tens of seconds; they run in parallel with one another.

mod common;

use common::{count, fresh_database, sql, Server};
use exchange::protocol::reply::read_reply;
use exchange::wire::frame;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const QUERY: &str = r#"<transactions id="2"><query id="1"/></transactions>"#;

fn server(hint: &str, workers: usize, extra: &[&str]) -> Server {
    let server = Server::start(&fresh_database(hint), workers, extra);
    server.send(
        r#"<create><account id="1" balance="1000000"/><account id="2" balance="0"/>
           <symbol sym="X"><account id="2">1000</account></symbol></create>"#,
    );
    let sell = server
        .send(r#"<transactions id="2"><order sym="X" amount="-10" limit="5"/></transactions>"#);
    assert_eq!(sell[0].get("id"), "1");
    server
}

/// How long a valid query takes to be answered, checking the answer; connecting and
/// each read may take 10 s at most.
fn timed_query(server: &Server) -> Duration {
    let asked = Instant::now();
    let answer = exchange::wire::round_trip(server.addr, QUERY.as_bytes(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("no answer after {:?}: {e}", asked.elapsed()));
    let items = read_reply(&answer).expect("a well-formed answer");
    assert_eq!(items[0].name, "status", "{items:?}");
    asked.elapsed()
}

fn percentile(mut samples: Vec<Duration>, p: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

#[test]
fn two_trickling_sockets_do_not_stop_the_server_and_meet_their_deadline() {
    let server = server("overload_trickle", 1, &["--request-timeout-ms", "3000"]);
    let mut head = b"1048576\n<create>".to_vec();
    head.extend("<x/>".repeat(125_000).as_bytes());
    let started = Instant::now();
    // Each trickles one `>` every 2 ms until the server closes it; says after how long.
    let tricklers: Vec<_> = (0..2)
        .map(|_| {
            let (addr, head) = (server.addr, head.clone());
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let _ = stream.write_all(&head);
                while started.elapsed() < Duration::from_secs(6) {
                    if stream.write_all(b">").is_err() {
                        return Some(started.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                None
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut waits = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        waits.push(timed_query(&server));
        std::thread::sleep(Duration::from_millis(50));
    }
    let worst = waits.iter().max().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_millis(500),
        "a valid client waited {worst:?}"
    );
    for trickler in tricklers {
        let cut = trickler.join().expect("trickler");
        let cut = cut.expect("a trickling socket was never closed");
        assert!(cut < Duration::from_millis(4500), "closed after {cut:?}");
    }
}

/// Raises this process's open-files limit to what thousands of sockets need.
fn allow_open_files(count: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(hard >= count, "the hard limit on open files is {hard}");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
}

#[test]
fn five_thousand_idle_connections_do_not_keep_valid_clients_out() {
    allow_open_files(12_000);
    let server = server("overload_idle", 1, &[]);
    let addr = server.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Five thousand connections that send one byte and wait, each replaced as soon as
    // the server closes it.
    let holder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let open = |_| {
                let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
                stream.write_all(b"9").ok()?;
                stream.set_nonblocking(true).ok()?;
                Some(stream)
            };
            let mut held: Vec<Option<TcpStream>> = (0..5000).map(open).collect();
            let mut replaced = 0u64;
            let mut sink = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for slot in held.iter_mut() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let closed = match slot {
                        Some(stream) => !matches!(stream.read(&mut sink),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                        None => true,
                    };
                    if closed {
                        *slot = open(0);
                        replaced += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            replaced
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let waits: Vec<Duration> = (0..60)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            timed_query(&server)
        })
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let replaced = holder.join().expect("holder");
    let p99 = percentile(waits, 99);
    eprintln!("p99 {p99:?} with 5,000 idle connections held ({replaced} replaced)");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
}

/// Holds the advisory lock of symbol X in an open transaction until dropped, so that an
/// order on X waits for it.
fn hold_symbol_lock(url: &str) -> postgres::Client {
    let mut client = sql(url);
    client
        .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(symbol_lock_key('X'))")
        .expect("take the lock");
    client
}

#[test]
fn complete_requests_never_wait_behind_a_slow_one_nor_read_as_incomplete() {
    let server = server("overload_behind", 1, &["--request-timeout-ms", "2000"]);
    // Twenty connections send half a request, so that both handlers hold some.
    let request = frame(QUERY.as_bytes());
    let half = request.len() / 2;
    let mut waiting: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).expect("connect");
            stream.write_all(&request[..half]).expect("half");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // One handler is then busy with an order that waits for the symbol's lock 3 s.
    let lock = hold_symbol_lock(&server.url);
    let addr = server.addr;
    let slow = std::thread::spawn(move || {
        let order = r#"<transactions id="1"><order sym="X" amount="1" limit="5"/></transactions>"#;
        TcpStream::connect(addr).and_then(|mut s| {
            s.write_all(&frame(order.as_bytes()))?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer)
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    for stream in &mut waiting {
        stream.write_all(&request[half..]).expect("rest");
    }
    for mut stream in waiting {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.contains("<status id=\"1\">"), "{answer}");
    }
    let took = sent.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "answered after {took:?}"
    );
    std::thread::sleep(Duration::from_millis(2700).saturating_sub(sent.elapsed()));
    drop(lock);
    let answer = slow.join().expect("slow client").expect("answered");
    assert!(answer.contains("<opened"), "{answer}");
}

#[test]
fn requests_abandoned_while_the_worker_was_stopped_are_not_executed() {
    let server = server("overload_stopped", 1, &["--request-timeout-ms", "2000"]);
    let orders_before = count(&server.url, "SELECT count(*) FROM orders");
    let worker = nix::unistd::Pid::from_raw(server.workers()[0]);
    nix::sys::signal::kill(worker, nix::sys::signal::Signal::SIGSTOP).expect("stop");
    // Stopping takes effect thread by thread: a handler still running could take a
    // request first, and that request would rightly run. Wait until all are stopped.
    let stopped = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .all(|task| {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                stat.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('T'))
            })
    };
    let asked = Instant::now();
    while !stopped(worker.as_raw()) {
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "the worker never stopped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let order =
        frame(br#"<transactions id="1"><order sym="X" amount="1" limit="1"/></transactions>"#);
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (addr, order) = (server.addr, order.clone());
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).expect("connect");
                stream.write_all(&order).expect("send");
                let sent = Instant::now();
                std::thread::sleep(Duration::from_secs(1));
                // The client gives up and goes.
                sent
            })
        })
        .collect();
    let last_sent = clients
        .into_iter()
        .map(|client| client.join().expect("client"))
        .max()
        .expect("clients");
    // The worker stays stopped well past the request timeout after the last send.
    std::thread::sleep(
        (last_sent + Duration::from_millis(3500)).saturating_duration_since(Instant::now()),
    );
    nix::sys::signal::kill(worker, nix::sys::signal::Signal::SIGCONT).expect("continue");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        count(&server.url, "SELECT count(*) FROM orders"),
        orders_before,
        "abandoned orders were executed"
    );
    let took = timed_query(&server);
    assert!(took < Duration::from_secs(1), "a valid query took {took:?}");
}

#[test]
fn a_client_that_keeps_reading_gets_its_whole_long_answer_after_slow_execution() {
    let server = server("overload_long", 1, &["--request-timeout-ms", "2000"]);
    // An order with 1,000 fills; two hundred queries of it make an answer of about
    // 11 MB, more than the kernel's buffers between server and client hold.
    server.send(r#"<create><symbol sym="Y"><account id="2">1000</account></symbol></create>"#);
    let sell = server
        .send(r#"<transactions id="2"><order sym="Y" amount="-1000" limit="1"/></transactions>"#);
    let buys = r#"<order sym="Y" amount="1" limit="1"/>"#.repeat(100);
    for _ in 0..10 {
        server.send(&format!(r#"<transactions id="1">{buys}</transactions>"#));
    }
    let queries = format!(r#"<query id="{}"/>"#, sell[0].get("id")).repeat(200);
    // Execution first waits 3 s for the symbol's lock: longer than the request timeout.
    let lock = hold_symbol_lock(&server.url);
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        drop(lock);
    });
    let request = format!(
        r#"<transactions id="2"><order sym="X" amount="-1" limit="5"/>{queries}</transactions>"#
    );
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.write_all(&frame(request.as_bytes())).expect("send");
    // The client keeps reading, at about 12 MB/s: slower than loopback, never stalled.
    let mut answer = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let answer = String::from_utf8(answer).expect("UTF-8");
    releaser.join().expect("releaser");
    let items = read_reply(answer.as_bytes()).expect("the whole answer");
    assert_eq!(items.len(), 201, "{} bytes", answer.len());
    assert!(items.iter().all(|i| i.name != "error"), "{:?}", items[0]);
    assert!(answer.len() > 10_000_000, "{} bytes", answer.len());
}

#[test]
fn worker_memory_returns_after_bursts_of_large_uploads() {
    allow_open_files(2_000);
    let server = server("overload_memory", 1, &["--request-timeout-ms", "3000"]);
    let worker = server.workers()[0];
    let head = b"1048576\n<create>";
    let chunk = "a".repeat(64 * 1024);
    let mut peaks = Vec::new();
    for _ in 0..3 {
        // 500 slow uploads of nearly 1 MiB each, 64 KiB at a time in turn, all
        // incomplete at once; then they go.
        let mut streams: Vec<TcpStream> = (0..500)
            .filter_map(|_| {
                let mut stream = TcpStream::connect(server.addr).ok()?;
                stream.write_all(head).ok()?;
                stream.set_nonblocking(true).ok()?;
                Some(stream)
            })
            .collect();
        for _ in 0..15 {
            for stream in &mut streams {
                let _ = stream.write(chunk.as_bytes());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        peaks.push(Server::memory_kib(worker).1);
        // Gone with a reset: a half-close would make each upload a complete request.
        for stream in streams {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let took = timed_query(&server);
    assert!(took < Duration::from_secs(1), "a valid query took {took:?}");
    let (idle, peak) = Server::memory_kib(worker);
    eprintln!("worker after bursts: {idle} KiB resident, peak {peak} KiB ({peaks:?})");
    assert!(idle < 64 * 1024, "idle worker keeps {idle} KiB");
    // --pending-bytes-max (128 MiB) plus the fixed cost of a worker.
    assert!(peak < 256 * 1024, "peak {peak} KiB");
}

/// CPU time a process has used so far, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // utime and stime: the 14th and 15th fields, 12th and 13th after the name.
    fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
}

#[test]
fn out_of_descriptors_the_server_neither_spins_nor_shuts_valid_clients_out() {
    // 64 descriptors in all: a few dozen connections use up what the worker has left.
    let server = Server::start_under(
        &["prlimit", "--nofile=64"],
        &fresh_database("overload_descriptors"),
        1,
        &[],
    );
    server.send(
        r#"<create><account id="1" balance="1000000"/><account id="2" balance="0"/>
           <symbol sym="X"><account id="2">1000</account></symbol></create>"#,
    );
    server.send(r#"<transactions id="2"><order sym="X" amount="-10" limit="5"/></transactions>"#);
    let worker = server.workers()[0];
    let idle: Vec<TcpStream> = (0..100)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(server.addr).ok()?;
            stream.write_all(b"9").ok()?;
            Some(stream)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(worker);
    let waits: Vec<Duration> = (0..10)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(200));
            timed_query(&server)
        })
        .collect();
    let ticks = cpu_ticks(worker) - before;
    let worst = waits.iter().max().copied().unwrap_or_default();
    drop(idle);
    assert!(
        worst < Duration::from_secs(1),
        "a valid client waited {worst:?}"
    );
    // About 2 s passed: a spinning worker would have used about 200 ticks.
    assert!(
        ticks < 50,
        "the worker used {ticks} ticks of CPU in about 2 s"
    );
}
