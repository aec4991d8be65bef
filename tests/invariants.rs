//! A broken invariant is a bug, not an answer: when the database says what the contract
//! between the server and its schema rules out (a status `cancel_order` never returns),
//! the worker logs it and dies, and the supervisor replaces it. The client gets no
//! answer rather than a wrong one, and the next request is served.

mod common;

use common::{fresh_database, sql, Server};
use std::time::{Duration, Instant};

#[test]
fn a_status_the_schema_never_returns_kills_the_worker_which_is_logged_and_replaced() {
    let url = fresh_database("invariant");
    let server = Server::start(&url, 2, &[]);
    let created = server.send(r#"<create><account id="1" balance="100"/></create>"#);
    assert_eq!(created[0].name, "created");
    sql(&url)
        .batch_execute(
            "CREATE OR REPLACE FUNCTION cancel_order(p_account text, p_order bigint)
             RETURNS text LANGUAGE sql AS $$ SELECT 'bogus' $$",
        )
        .expect("a cancel_order that breaks the contract");
    let workers = server.workers();
    assert_eq!(workers.len(), 2, "two workers at the start: {workers:?}");

    let answer = server.try_send(r#"<transactions id="1"><cancel id="1"/></transactions>"#);
    assert!(
        answer.as_ref().map_or(true, |a| !a.contains("<results")),
        "a broken invariant was answered: {answer:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log_text();
        let logged = log.lines().any(|line| {
            line.contains("ERROR") && line.contains(r#"cancel_order answered "bogus""#)
        });
        let now = server.workers();
        let replaced = now.len() == 2 && now != workers;
        if logged && replaced {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 10 s: logged {logged}, workers {workers:?} -> {now:?}; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let balance = server.send(r#"<transactions id="1"><query id="1"/></transactions>"#);
    assert_eq!(balance[0].name, "error", "no order 1: {balance:?}");
    assert!(balance[0].text.contains("no such order"), "{balance:?}");
}
