//! The conservation audit: in one consistent snapshot, every cent and every share is
//! where the ledger says it must be.
//!
//! - cash: balances plus cash reserved by open buys equal all cash ever deposited;
//! - each symbol: positions plus shares reserved by open sells equal all shares created;
//! - nothing is negative;
//! - every order's open + filled + canceled equals its amount, its filled part equals
//!   the sum of its trades, and it has a cancel time exactly when shares were canceled;
//! - every order's account and every trade's two orders exist;
//! - every trade's price lies between its sell's and its buy's limits.
//!
//! The rules that span columns or tables are checked here and not by constraints on
//! orders and trades, which would tax every order (see the head of
//! `migrations/0001_schema.sql`).
//!
//! Sums are compared inside PostgreSQL, in NUMERIC, so no total can overflow or round.

use postgres::{Client, IsolationLevel};

/// One broken rule, in words.
pub type Discrepancy = String;

/// What the audit saw.
#[derive(Debug, Default)]
pub struct AuditReport {
    pub accounts: i64,
    pub orders: i64,
    pub trades: i64,
    pub symbols: i64,
    pub discrepancies: Vec<Discrepancy>,
}

/// Each check is a query returning one text column per discrepancy found.
const CHECKS: &[&str] = &[
    "WITH totals AS (
            SELECT (SELECT coalesce(sum(balance), 0) FROM accounts) AS balances,
                   (SELECT coalesce(sum(open_shares * limit_price), 0) FROM orders WHERE is_buy) AS reserved,
                   (SELECT coalesce(sum(deposited), 0) FROM accounts) AS deposited)
         SELECT format('cash: balances %s + reserved by open buys %s = %s, but deposits total %s',
                       balances, reserved, balances + reserved, deposited)
           FROM totals WHERE balances + reserved <> deposited",
    "WITH held AS (SELECT symbol, sum(shares) AS shares FROM positions GROUP BY symbol),
              reserved AS (SELECT symbol, sum(open_shares) AS shares FROM orders WHERE NOT is_buy GROUP BY symbol),
              issued AS (SELECT symbol, sum(shares) AS shares FROM share_issues GROUP BY symbol),
              symbols AS (SELECT symbol FROM held UNION SELECT symbol FROM reserved UNION SELECT symbol FROM issued)
         SELECT format('shares of %s: positions %s + reserved by open sells %s = %s, but %s were created',
                       s.symbol, coalesce(h.shares, 0), coalesce(r.shares, 0),
                       coalesce(h.shares, 0) + coalesce(r.shares, 0), coalesce(i.shares, 0))
           FROM symbols s
           LEFT JOIN held h USING (symbol) LEFT JOIN reserved r USING (symbol) LEFT JOIN issued i USING (symbol)
          WHERE coalesce(h.shares, 0) + coalesce(r.shares, 0) <> coalesce(i.shares, 0)",
    "SELECT format('account %s has a negative balance %s', id, balance) FROM accounts WHERE balance < 0
         UNION ALL
         SELECT format('account %s holds %s shares of %s', account_id, shares, symbol) FROM positions WHERE shares < 0
         UNION ALL
         SELECT format('order %s has negative parts: open %s, filled %s, canceled %s', id, open_shares, filled_shares, canceled_shares)
           FROM orders WHERE open_shares < 0 OR filled_shares < 0 OR canceled_shares < 0",
    "SELECT format('order %s: open %s + filled %s + canceled %s <> amount %s', id, open_shares, filled_shares, canceled_shares, amount)
           FROM orders WHERE open_shares + filled_shares + canceled_shares <> amount
         UNION ALL
         SELECT format('order %s: %s canceled shares, but cancel time %s', id, canceled_shares, coalesce(canceled_at::text, 'none'))
           FROM orders WHERE (canceled_at IS NULL) <> (canceled_shares = 0)
         UNION ALL
         -- One pass over the trades for two rules: an order's fills, and (the FULL
         -- JOIN's other side) trades whose order does not exist.
         SELECT CASE WHEN o.id IS NULL
                     THEN format('trades refer to order %s, which does not exist', t.order_id)
                     ELSE format('order %s: filled %s, but its trades sum to %s', o.id, o.filled_shares, coalesce(t.shares, 0))
                END
           FROM orders o
           FULL JOIN (SELECT order_id, sum(shares) AS shares FROM (
                          SELECT buy_order_id AS order_id, shares FROM trades
                          UNION ALL SELECT sell_order_id, shares FROM trades) sides
                      GROUP BY order_id) t ON t.order_id = o.id
          WHERE o.id IS NULL OR o.filled_shares <> coalesce(t.shares, 0)",
    "SELECT format('order %s belongs to account %s, which does not exist', o.id, o.account_id)
           FROM orders o WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = o.account_id)",
    "SELECT format('trade %s at %s lies outside the limits: buy %s, sell %s', t.id, t.price, b.limit_price, s.limit_price)
           FROM trades t JOIN orders b ON b.id = t.buy_order_id JOIN orders s ON s.id = t.sell_order_id
          WHERE NOT (s.limit_price <= t.price AND t.price <= b.limit_price)
             OR NOT b.is_buy OR s.is_buy OR b.symbol <> s.symbol",
];

/// Runs every check in one REPEATABLE READ snapshot.
pub fn audit(client: &mut Client) -> Result<AuditReport, postgres::Error> {
    let mut snapshot = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let counts = snapshot.query_one(
        "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM orders),
                (SELECT count(*) FROM trades), (SELECT count(DISTINCT symbol) FROM share_issues)",
        &[],
    )?;
    let mut report = AuditReport {
        accounts: counts.get(0),
        orders: counts.get(1),
        trades: counts.get(2),
        symbols: counts.get(3),
        discrepancies: Vec::new(),
    };
    for sql in CHECKS {
        for row in snapshot.query(*sql, &[])? {
            report.discrepancies.push(row.get(0));
        }
    }
    snapshot.commit()?;
    Ok(report)
}
