//! Exactness under concurrency, through the real server with several workers: a
//! barrier burst of 60 clients, the races that matter, and cross-symbol trading
//! between two accounts in opposite directions.

mod common;

use common::{audit_holds, balance, count, fresh_database, Server};
use exchange::protocol::tree::Element;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::sync::{Arc, Barrier};

fn server(hint: &str) -> Arc<Server> {
    Arc::new(Server::start(&fresh_database(hint), 3, &["--threads", "4"]))
}

/// Errors a correct exchange may answer under load: business rejections only.
fn assert_business_only(item: &Element) {
    if item.name == "error" {
        let allowed = ["insufficient", "nothing open", "no such order"];
        assert!(
            allowed.iter().any(|a| item.text.contains(a)),
            "unexpected error: {item:?}"
        );
    }
}

/// How many answers are `<name>` elements.
fn answered(answers: &[Element], name: &str) -> usize {
    answers.iter().filter(|a| a.name == name).count()
}

/// Runs `n` threads that wait at one barrier, then each run `work(i)`.
fn burst<T: Send + 'static>(n: usize, work: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let work = Arc::new(work);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, work) = (barrier.clone(), work.clone());
            std::thread::spawn(move || {
                barrier.wait();
                work(i)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect()
}

#[test]
fn a_barrier_burst_of_sixty_clients_conserves_everything() {
    let server = server("burst");
    let mut setup = String::from("<create>");
    for a in 0..20 {
        setup += &format!(r#"<account id="{a}" balance="100000"/>"#);
    }
    for s in ["AAA", "BBB", "CCC", "DDD"] {
        setup += &format!(r#"<symbol sym="{s}">"#);
        for a in 0..20 {
            setup += &format!(r#"<account id="{a}">1000</account>"#);
        }
        setup += "</symbol>";
    }
    setup += "</create>";
    assert!(server.send(&setup).iter().all(|i| i.name == "created"));

    const CLIENTS: usize = 60;
    const REQUESTS: usize = 25;
    let s = server.clone();
    let answered: Vec<(usize, usize)> = burst(CLIENTS, move |client| {
        let mut rng = SmallRng::seed_from_u64(client as u64);
        let mut mine: Vec<(usize, String)> = Vec::new();
        let mut operations = 0;
        for _ in 0..REQUESTS {
            let account = rng.random_range(0..20);
            let mut body = String::new();
            let cancel_candidates: Vec<String> = mine
                .iter()
                .filter(|(a, _)| *a == account)
                .map(|(_, id)| id.clone())
                .collect();
            let ops = rng.random_range(1..=3);
            for _ in 0..ops {
                if !cancel_candidates.is_empty() && rng.random_bool(0.25) {
                    body += &format!(
                        r#"<cancel id="{}"/>"#,
                        cancel_candidates[rng.random_range(0..cancel_candidates.len())]
                    );
                } else {
                    let sym = ["AAA", "BBB", "CCC", "DDD"][rng.random_range(0..4)];
                    let amount =
                        rng.random_range(1..=30) * if rng.random_bool(0.5) { 1 } else { -1 };
                    let limit =
                        format!("{}.{}", rng.random_range(95..105), rng.random_range(0..100));
                    body += &format!(r#"<order sym="{sym}" amount="{amount}" limit="{limit}"/>"#);
                }
            }
            let answer = s
                .try_send(&format!(
                    r#"<transactions id="{account}">{body}</transactions>"#
                ))
                .expect("no transport failure");
            let items = exchange::protocol::reply::read_reply(answer.as_bytes())
                .expect("a readable answer");
            assert_eq!(items.len(), ops);
            for item in &items {
                assert_business_only(item);
                if item.name == "opened" {
                    mine.push((account, item.get("id").to_string()));
                }
            }
            operations += ops;
        }
        (operations, mine.len())
    });
    // Every operation was answered, and every order answered "opened" is in the book.
    let sent: usize = answered.iter().map(|(operations, _)| operations).sum();
    assert!(sent >= CLIENTS * REQUESTS);
    let opened: usize = answered.iter().map(|(_, opened)| opened).sum();
    let in_book = count(&server.url, "SELECT count(*) FROM orders");
    assert_eq!(
        in_book as usize, opened,
        "orders in the database against answers 'opened'"
    );
    let trades = count(&server.url, "SELECT count(*) FROM trades");
    assert!(trades > 100, "the burst should trade a lot, saw {trades}");
    audit_holds(&server.url);
}

#[test]
fn concurrent_buys_open_exactly_the_affordable_ones() {
    let server = server("race_cash");
    server.send(r#"<create><account id="1" balance="1000"/></create>"#);
    let s = server.clone();
    let answers = burst(40, move |_| {
        s.send(r#"<transactions id="1"><order sym="X" amount="1" limit="100"/></transactions>"#)
            .remove(0)
    });
    assert_eq!(answered(&answers, "opened"), 10, "{answers:?}");
    assert!(answers
        .iter()
        .filter(|a| a.name == "error")
        .all(|a| a.text.contains("insufficient funds")));
    assert_eq!(balance(&server.url, "1"), "0");
    audit_holds(&server.url);
}

#[test]
fn the_same_shares_cannot_be_sold_twice() {
    let server = server("race_shares");
    server.send(r#"<create><account id="1" balance="0"/><symbol sym="X"><account id="1">10</account></symbol></create>"#);
    let s = server.clone();
    let answers = burst(20, move |_| {
        s.send(r#"<transactions id="1"><order sym="X" amount="-10" limit="5"/></transactions>"#)
            .remove(0)
    });
    assert_eq!(answered(&answers, "opened"), 1, "{answers:?}");
    audit_holds(&server.url);
}

#[test]
fn a_cancel_racing_a_match_wins_or_loses_whole() {
    let server = server("race_cancel_match");
    server.send(
        r#"<create><account id="1" balance="100000"/><account id="2" balance="0"/>
           <symbol sym="X"><account id="2">1000</account></symbol></create>"#,
    );
    let (mut cancels_won, mut trades_won) = (0, 0);
    for _ in 0..20 {
        let sell = server
            .send(r#"<transactions id="2"><order sym="X" amount="-10" limit="5"/></transactions>"#);
        let sell_id = sell[0].get("id").to_string();
        let s = server.clone();
        let answers = burst(2, move |i| {
            if i == 0 {
                s.send(&format!(
                    r#"<transactions id="2"><cancel id="{sell_id}"/></transactions>"#
                ))
                .remove(0)
            } else {
                s.send(
                    r#"<transactions id="1"><order sym="X" amount="10" limit="5"/></transactions>"#,
                )
                .remove(0)
            }
        });
        let (cancel, buy) = (&answers[0], &answers[1]);
        assert_eq!(buy.name, "opened");
        let buy_status = server.send(&format!(
            r#"<transactions id="1"><query id="{}"/></transactions>"#,
            buy.get("id")
        ));
        let bought = buy_status[0].children.iter().any(|c| c.name == "executed");
        match cancel.name.as_str() {
            "canceled" => {
                cancels_won += 1;
                assert!(!bought, "canceled and traded: {cancel:?} {buy_status:?}");
                assert!(cancel.children.iter().all(|c| c.name != "executed"));
                // Leave the book empty for the next round.
                server.send(&format!(
                    r#"<transactions id="1"><cancel id="{}"/></transactions>"#,
                    buy.get("id")
                ));
            }
            _ => {
                trades_won += 1;
                assert!(cancel.text.contains("nothing open"), "{cancel:?}");
                assert!(bought, "neither canceled nor traded");
            }
        }
    }
    // Each round the buy won traded its 10 shares once; a won cancel left no trade.
    let trades = count(&server.url, "SELECT count(*) FROM trades");
    assert_eq!(trades, trades_won, "{cancels_won} cancels won");
    assert_eq!(
        balance(&server.url, "2"),
        (trades_won * 50).to_string(),
        "the seller got 50 per trade"
    );
    audit_holds(&server.url);
}

#[test]
fn of_two_simultaneous_cancels_exactly_one_succeeds() {
    let server = server("race_double_cancel");
    server.send(r#"<create><account id="1" balance="1000"/></create>"#);
    for _ in 0..20 {
        let buy = server
            .send(r#"<transactions id="1"><order sym="X" amount="1" limit="10"/></transactions>"#);
        let id = buy[0].get("id").to_string();
        let s = server.clone();
        let answers = burst(2, move |_| {
            s.send(&format!(
                r#"<transactions id="1"><cancel id="{id}"/></transactions>"#
            ))
            .remove(0)
        });
        assert_eq!(answered(&answers, "canceled"), 1, "{answers:?}");
    }
    assert_eq!(
        balance(&server.url, "1"),
        "1000",
        "every cancel refunded exactly once"
    );
    audit_holds(&server.url);
}

#[test]
fn two_accounts_trading_two_symbols_in_opposite_directions_never_deadlock() {
    let server = server("cross_symbol");
    server.send(
        r#"<create><account id="1" balance="10000000"/><account id="2" balance="10000000"/>
           <symbol sym="P"><account id="1">100000</account><account id="2">100000</account></symbol>
           <symbol sym="Q"><account id="1">100000</account><account id="2">100000</account></symbol></create>"#,
    );
    let deadlocks = |url: &str| {
        count(
            url,
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
        )
    };
    let before = deadlocks(&server.url);
    const ITERATIONS: usize = 150;
    let s = server.clone();
    // Thread 0: 2 rests sells of P, 1 buys them. Thread 1: 1 rests sells of Q, 2 buys them.
    // Each buy locks the buyer's and the seller's balances: opposite orders, every time.
    let errors = burst(4, move |i| {
        let (seller, buyer, sym) = [
            ("2", "1", "P"),
            ("1", "2", "Q"),
            ("2", "1", "P"),
            ("1", "2", "Q"),
        ][i];
        let mut errors = Vec::new();
        for _ in 0..ITERATIONS {
            let xml = format!(
                r#"<transactions id="{seller}"><order sym="{sym}" amount="-1" limit="10"/><order sym="{sym}" amount="-1" limit="10"/></transactions>"#
            );
            let mut items = s.send(&xml);
            let xml = format!(
                r#"<transactions id="{buyer}"><order sym="{sym}" amount="2" limit="11"/></transactions>"#
            );
            items.extend(s.send(&xml));
            errors.extend(
                items
                    .into_iter()
                    .filter(|i| i.name == "error")
                    .map(|i| i.text),
            );
        }
        errors
    });
    let errors: Vec<String> = errors.into_iter().flatten().collect();
    assert!(errors.is_empty(), "{errors:?}");
    let trades = count(&server.url, "SELECT count(*) FROM trades");
    assert!(trades >= (4 * ITERATIONS) as i64, "saw {trades} trades");
    // Stronger than "retries absorbed them": the lock order left nothing to absorb.
    assert_eq!(
        deadlocks(&server.url),
        before,
        "PostgreSQL detected deadlocks"
    );
    audit_holds(&server.url);
}
