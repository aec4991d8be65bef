//! A book of dust: 200,000 resting sells of 0.00000001 shares each. One buy that
//! crosses them all must trade with every one, in price-time order, within the
//! server's statement timeout, through the real server binary, and leave the ledger
//! whole. The time a sweep takes grows with its fills, and the symbol waits for it.

mod common;

use common::{audit_holds, balance, count, fresh_database, normalize, sql, Server};
use std::time::Instant;

const RESTING: i64 = 200_000;
const SELLERS: i64 = 100;

#[test]
fn a_buy_sweeps_two_hundred_thousand_dust_sells_within_the_statement_timeout() {
    let url = fresh_database("dust_book");
    let server = Server::start(&url, 2, &[]);

    // Sellers 1..=100 hold 0.00002 shares of DUST each, 2,000 dust sells' worth; buyer
    // 9999 holds cash.
    let mut setup = String::from(r#"<create><account id="9999" balance="1"/>"#);
    for s in 1..=SELLERS {
        setup += &format!(r#"<account id="{s}" balance="0"/>"#);
    }
    setup += r#"<symbol sym="DUST">"#;
    for s in 1..=SELLERS {
        setup += &format!(r#"<account id="{s}">0.00002</account>"#);
    }
    setup += "</symbol></create>";
    let created = server.send(&setup);
    assert!(
        created.iter().all(|i| i.name == "created"),
        "setup failed: {created:?}"
    );

    // The resting sells, in bulk (placing them one by one would take minutes): round
    // robin over the sellers, in runs of 100 at 1.00, 1.01, 1.02, 1.03 in turn, so each
    // seller has 500 at each price; each seller's position reduced by exactly what its
    // sells reserve, as place_order would have. Then analysed, as autovacuum would.
    let started = Instant::now();
    sql(&url)
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO orders (account_id, symbol, is_buy, amount, limit_price, open_shares)
             SELECT (1 + i % {SELLERS})::text, 'DUST', false, 0.00000001,
                    1.00 + (i / {SELLERS} % 4) * 0.01, 0.00000001
               FROM generate_series(0, {RESTING} - 1) i;
             UPDATE positions p SET shares = p.shares - r.reserved
               FROM (SELECT account_id, sum(open_shares) AS reserved FROM orders
                      WHERE symbol = 'DUST' AND NOT is_buy GROUP BY account_id) r
              WHERE p.account_id = r.account_id AND p.symbol = 'DUST';
             COMMIT;
             ANALYZE orders;"
        ))
        .expect("the resting dust sells");
    println!(
        "{RESTING} resting sells inserted in {:?}",
        started.elapsed()
    );
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM positions WHERE symbol = 'DUST' AND shares <> 0"
        ),
        0
    );
    audit_holds(&url);

    // One buy of all 0.002 shares at a limit of 2: a trade with every resting sell,
    // each at its sell's limit, and the buyer refunded what that leaves unspent.
    let started = Instant::now();
    let answer = server.send(
        r#"<transactions id="9999"><order sym="DUST" amount="0.002" limit="2"/></transactions>"#,
    );
    let elapsed = started.elapsed();
    println!(
        "a buy sweeping {RESTING} resting sells answered in {elapsed:?}, {:?} a fill",
        elapsed / RESTING as u32
    );
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0].name, "opened", "{answer:?}");

    assert_eq!(count(&url, "SELECT count(*) FROM trades"), RESTING);
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM orders WHERE NOT is_buy AND open_shares > 0"
        ),
        0
    );
    // Trades in the order made: best price first, then oldest.
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM (
                 SELECT price, sell_order_id, lag(price) OVER w AS price0,
                        lag(sell_order_id) OVER w AS sell0
                   FROM trades WINDOW w AS (ORDER BY id)) t
              WHERE (price, sell_order_id) < (price0, sell0)"
        ),
        0
    );
    // 50,000 sells at each price, 0.0005 shares a price: 0.00203 spent in all, and
    // 0.0000203 earned by each seller.
    assert_eq!(balance(&url, "9999"), "0.99797");
    assert_eq!(balance(&url, "1"), "0.0000203");
    let bought: String = sql(&url)
        .query_one(
            "SELECT shares::text FROM positions WHERE account_id = '9999' AND symbol = 'DUST'",
            &[],
        )
        .expect("the buyer's position")
        .get(0);
    assert_eq!(normalize(bought), "0.002");
    audit_holds(&url);
}
