//! A worker run in the test's own process (`server::worker::serve`, no fork), on a
//! port of its own: a stop requested while answers are in flight ends it promptly, and
//! every request it took is answered whole.

mod common;

use common::{audit_holds, count, Exchange};
use exchange::protocol::reply::read_reply;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 8;

#[test]
fn a_stop_with_answers_in_flight_ends_the_worker_and_answers_every_request_it_took() {
    let url = common::fresh_database("stop_in_flight");
    let mut exchange = Exchange::with(&url, &["--threads", "2"]);
    exchange.setup(
        &[("1", "100000000"), ("2", "0")],
        &[("S", "2", "100000000")],
    );
    let addr = exchange.addr;
    let stopping = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let stopping = stopping.clone();
            std::thread::spawn(move || {
                let (account, amount) = if i % 2 == 0 { ("1", "1") } else { ("2", "-1") };
                let order = format!(
                    r#"<transactions id="{account}"><order sym="S" amount="{amount}" limit="10"/></transactions>"#
                );
                let (mut opened, mut refused) = (0, 0);
                loop {
                    match exchange::wire::round_trip(addr, order.as_bytes(), Duration::from_secs(20)) {
                        Ok(answer) => {
                            let items = read_reply(&answer).unwrap_or_else(|e| {
                                panic!("a cut or empty answer {:?}: {e}", String::from_utf8_lossy(&answer))
                            });
                            assert_eq!(items[0].name, "opened", "{items:?}");
                            opened += 1;
                        }
                        // Refused or reset once the listener has closed.
                        Err(_) if stopping.load(Ordering::SeqCst) => refused += 1,
                        Err(e) => panic!("a request failed before the stop: {e}"),
                    }
                    if refused > 0 {
                        return opened;
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));

    stopping.store(true, Ordering::SeqCst);
    let asked = Instant::now();
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(exchange.stop()));
    let code = stopped
        .recv_timeout(Duration::from_secs(15))
        .expect("the worker wound down within 15 s of the stop");
    let took = asked.elapsed();
    assert_eq!(code, 0, "the worker's exit code");

    let opened: i64 = clients
        .into_iter()
        .map(|c| c.join().expect("a client"))
        .sum();
    assert!(opened > 0, "no order was answered before the stop");
    assert_eq!(
        count(&url, "SELECT count(*) FROM orders"),
        opened,
        "every order the worker took was answered, and only those ran"
    );
    audit_holds(&url);
    eprintln!("{opened} orders answered; the stop took {took:?}");
}
