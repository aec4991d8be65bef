//! Every rule of PROTOCOL.md's `<create>`, `<transactions>`, matching, query and cancel,
//! executed in-process against a real PostgreSQL database.

mod common;

use common::{count, parts, sql, Exchange};
use postgres::error::SqlState;

#[test]
fn create_runs_children_in_document_order_each_on_its_own() {
    let mut ex = Exchange::new("create_order");
    let items = ex.send(
        r#"<create>
            <account id="1" balance="1000"/>
            <account id="1" balance="5"/>
            <account id="007" balance="0"/>
            <symbol sym="SPY"><account id="1">100</account><account id="404">5</account><account id="007">0.5</account></symbol>
            <account id="x1" balance="5"/>
            <account id="2" balance="-5"/>
            <account id="3" balance="1e3"/>
            <account id="4"/>
            <symbol sym="BAD-SYM"><account id="1">5</account></symbol>
            <symbol sym="SPY"><account id="1">0</account><account id="1">-3</account><account id="1">abc</account></symbol>
            <symbol sym="EMPTY"/>
            <portfolio/>
        </create>"#,
    );
    let summary: Vec<String> = items
        .iter()
        .map(|i| {
            let attrs: Vec<String> = i.attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} {}", i.name, attrs.join(" "))
        })
        .collect();
    assert_eq!(
        summary,
        [
            "created id=1",
            "error id=1",
            "created id=007",
            "created sym=SPY id=1",
            "error sym=SPY id=404",
            "created sym=SPY id=007",
            "error id=x1",
            "error id=2",
            "error id=3",
            "error id=4",
            "error sym=BAD-SYM id=1",
            "error sym=SPY id=1",
            "error sym=SPY id=1",
            "error sym=SPY id=1",
            "error sym=EMPTY",
            "error ",
        ]
    );
    assert!(items[1].text.contains("already exists"));
    assert!(items[4].text.contains("does not exist"));
    assert!(items[15].text.contains("<portfolio>"));
    // `007` and `7` are different accounts; the failed duplicate left the first intact.
    assert_eq!(ex.balance("1"), "1000");
    assert_eq!(ex.balance("007"), "0");
    assert_eq!(ex.shares("1", "SPY"), "100");
    assert_eq!(ex.shares("007", "SPY"), "0.5");
    let rows = sql(&ex.url)
        .query(
            "SELECT 1 FROM accounts WHERE id IN ('7', '2', '3', '4')",
            &[],
        )
        .unwrap();
    assert!(rows.is_empty(), "rejected accounts were created");
}

#[test]
fn empty_create_answers_empty_results() {
    let mut ex = Exchange::new("empty_create");
    assert!(ex.raw("<create/>").contains("<results/>"));
    assert!(ex.raw("<create></create>").contains("<results/>"));
}

#[test]
fn creating_shares_again_adds_to_the_position() {
    let mut ex = Exchange::new("add_shares");
    ex.setup(&[("1", "0")], &[("X", "1", "10"), ("X", "1", "2.5")]);
    assert_eq!(ex.shares("1", "X"), "12.5");
}

/// docs/PROTOCOL.md, "Which error you get": what the request alone shows wrong comes
/// before what only the database knows, however much of the request came before.
#[test]
fn rules_of_form_come_before_what_the_database_knows() {
    let mut ex = Exchange::new("precedence");
    let items = ex.tx(
        "404",
        r#"<order sym="S" amount="1" limit="1"/><order sym="!" amount="1" limit="1"/><query id="x"/><query id="1"/>"#,
    );
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    assert!(texts[0].starts_with("account does not exist"), "{texts:?}");
    assert!(texts[1].starts_with("symbol must"), "{texts:?}");
    assert!(texts[2].starts_with("order id must"), "{texts:?}");
    assert!(texts[3].starts_with("account does not exist"), "{texts:?}");
}

#[test]
fn every_child_of_a_missing_account_gets_an_error() {
    let mut ex = Exchange::new("missing_account");
    for account in ["999", "abc"] {
        let items = ex.tx(
            account,
            r#"<order sym="X" amount="5" limit="1"/><query id="1"/><cancel id="2"/>"#,
        );
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(|i| i.name == "error"), "{items:?}");
        assert_eq!(
            (
                items[0].get("sym"),
                items[0].get("amount"),
                items[0].get("limit")
            ),
            ("X", "5", "1")
        );
        assert_eq!(items[1].get("id"), "1");
        assert_eq!(items[2].get("id"), "2");
    }
}

#[test]
fn transactions_without_children_is_an_error() {
    let mut ex = Exchange::new("no_children");
    let answer = ex.raw(r#"<transactions id="1"></transactions>"#);
    assert!(answer.contains("<results>\n  <error>"), "{answer}");
}

#[test]
fn order_rejections_echo_what_was_sent_and_change_nothing() {
    let mut ex = Exchange::new("order_rejections");
    ex.setup(&[("1", "100")], &[("X", "1", "10")]);
    let table = [
        (r#"sym="B-D" amount="1" limit="1""#, "symbol"),
        (r#"sym="" amount="1" limit="1""#, "symbol"),
        (r#"sym="X" amount="0" limit="1""#, "zero"),
        (r#"sym="X" amount="-0.0" limit="1""#, "zero"),
        (r#"sym="X" amount="+5" limit="1""#, "amount"),
        (r#"sym="X" amount="1e3" limit="1""#, "amount"),
        (r#"sym="X" amount="" limit="1""#, "amount"),
        (r#"sym="X" amount="1" limit="0""#, "limit"),
        (r#"sym="X" amount="1" limit="-1""#, "limit"),
        (r#"sym="X" amount="1" limit="NaN""#, "limit"),
        (r#"sym="X" amount="1" limit=".5""#, "limit"),
        (r#"sym="X" amount="1" limit="0.000000001""#, "limit"),
        (r#"sym="X" amount="101" limit="1""#, "insufficient funds"),
        (
            r#"sym="X" amount="1" limit="100.00000001""#,
            "insufficient funds",
        ),
        (r#"sym="X" amount="-11" limit="1""#, "insufficient shares"),
        (r#"sym="Y" amount="-1" limit="1""#, "insufficient shares"),
        (r#"amount="1" limit="1""#, "missing attribute sym"),
        (r#"sym="X" limit="1""#, "missing attribute amount"),
        (r#"sym="X" amount="1""#, "missing attribute limit"),
    ];
    for (attrs, why) in table {
        let items = ex.tx("1", &format!("<order {attrs}/>"));
        assert_eq!(items[0].name, "error", "{attrs} was accepted");
        assert!(
            items[0].text.contains(why),
            "{attrs}: {:?} lacks {why:?}",
            items[0].text
        );
        let echoed: Vec<String> = items[0]
            .attrs
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        assert_eq!(echoed.join(" "), attrs, "echo differs");
    }
    assert_eq!(ex.balance("1"), "100");
    assert_eq!(ex.shares("1", "X"), "10");
    let orders = count(&ex.url, "SELECT count(*) FROM orders");
    assert_eq!(orders, 0);
}

#[test]
fn opening_reserves_cash_or_shares_at_once() {
    let mut ex = Exchange::new("reserve");
    ex.setup(&[("1", "1000"), ("2", "0")], &[("X", "2", "10")]);
    let items = ex.tx("1", r#"<order sym="X" amount="0100" limit="2.50"/>"#);
    assert_eq!(items[0].name, "opened");
    // Echoed exactly as received.
    assert_eq!(
        (items[0].get("amount"), items[0].get("limit")),
        ("0100", "2.50")
    );
    assert_eq!(ex.balance("1"), "750");
    ex.order("2", "X", "-4", "3");
    assert_eq!(ex.shares("2", "X"), "6");
}

#[test]
fn a_buy_for_a_symbol_nobody_holds_rests_until_shares_are_offered() {
    let mut ex = Exchange::new("unheld_symbol");
    ex.setup(&[("1", "100"), ("2", "0")], &[]);
    let buy = ex.order("1", "NEW", "10", "5");
    ex.setup(&[], &[("NEW", "2", "10")]);
    ex.order("2", "NEW", "-10", "5");
    let status = ex.tx("1", &format!(r#"<query id="{buy}"/>"#));
    assert_eq!(parts(&status[0]), ["executed shares=10 price=5"]);
    assert_eq!(ex.shares("1", "NEW"), "10");
    assert_eq!(ex.balance("2"), "50");
}

/// PROTOCOL.md's price-time priority example, order for order.
#[test]
fn the_seven_order_example_comes_out_exactly() {
    let mut ex = Exchange::new("seven");
    ex.setup(&[("1", "1000000"), ("2", "0")], &[("X", "2", "10000")]);
    let o1 = ex.order("1", "X", "300", "125");
    let _o2 = ex.order("2", "X", "-100", "130");
    let o3 = ex.order("1", "X", "200", "127");
    let _o4 = ex.order("2", "X", "-500", "128");
    let _o5 = ex.order("2", "X", "-200", "140");
    let o6 = ex.order("1", "X", "400", "125");
    let trades_before = count(&ex.url, "SELECT count(*) FROM trades");
    assert_eq!(trades_before, 0, "nothing trades before order 7");
    let o7 = ex.order("2", "X", "-400", "124");

    let q1 = ex.tx("1", &format!(r#"<query id="{o1}"/>"#));
    assert_eq!(q1[0].name, "status");
    assert_eq!(q1[0].get("id"), o1);
    assert_eq!(
        parts(&q1[0]),
        ["open shares=100", "executed shares=200 price=125"]
    );
    let q3 = ex.tx("1", &format!(r#"<query id="{o3}"/>"#));
    assert_eq!(parts(&q3[0]), ["executed shares=200 price=127"]);
    let q7 = ex.tx("2", &format!(r#"<query id="{o7}"/>"#));
    assert_eq!(
        parts(&q7[0]),
        [
            "executed shares=200 price=127",
            "executed shares=200 price=125"
        ]
    );
    let q6 = ex.tx("1", &format!(r#"<query id="{o6}"/>"#));
    assert_eq!(parts(&q6[0]), ["open shares=400"]);

    // The seller received 200*127 + 200*125; buyers paid their own limits, no refunds due.
    assert_eq!(ex.balance("2"), "50400");
    assert_eq!(ex.shares("1", "X"), "400");
    let reserved = 300 * 125 + 200 * 127 + 400 * 125;
    assert_eq!(ex.balance("1"), (1_000_000 - reserved).to_string());
}

#[test]
fn a_buy_trading_below_its_limit_gets_the_difference_back() {
    let mut ex = Exchange::new("refund");
    ex.setup(&[("1", "1000"), ("2", "0")], &[("X", "2", "10")]);
    ex.order("2", "X", "-10", "20");
    let buy = ex.order("1", "X", "10", "30");
    // 10 trade at the resting 20: 300 reserved, 200 paid, 100 back.
    assert_eq!(ex.balance("1"), "800");
    assert_eq!(ex.balance("2"), "200");
    assert_eq!(ex.shares("1", "X"), "10");
    let status = ex.tx("1", &format!(r#"<query id="{buy}"/>"#));
    assert_eq!(parts(&status[0]), ["executed shares=10 price=20"]);
}

#[test]
fn a_sell_into_resting_buys_trades_at_each_buy_limit_best_first() {
    let mut ex = Exchange::new("sell_sweep");
    ex.setup(&[("1", "10000"), ("2", "0")], &[("X", "2", "100")]);
    let low = ex.order("1", "X", "10", "10");
    let high = ex.order("1", "X", "10", "12");
    let sell = ex.order("2", "X", "-15", "9");
    let status = ex.tx("2", &format!(r#"<query id="{sell}"/>"#));
    assert_eq!(
        parts(&status[0]),
        ["executed shares=10 price=12", "executed shares=5 price=10"]
    );
    assert_eq!(ex.balance("2"), "170");
    let low_status = ex.tx("1", &format!(r#"<query id="{low}"/><query id="{high}"/>"#));
    assert_eq!(
        parts(&low_status[0]),
        ["open shares=5", "executed shares=5 price=10"]
    );
    assert_eq!(parts(&low_status[1]), ["executed shares=10 price=12"]);
}

#[test]
fn incompatible_prices_do_not_trade() {
    let mut ex = Exchange::new("no_cross");
    ex.setup(&[("1", "1000"), ("2", "0")], &[("X", "2", "10")]);
    ex.order("2", "X", "-10", "11");
    let buy = ex.order("1", "X", "10", "10.99999999");
    let status = ex.tx("1", &format!(r#"<query id="{buy}"/>"#));
    assert_eq!(parts(&status[0]), ["open shares=10"]);
}

#[test]
fn partial_fills_keep_time_priority_among_equal_prices() {
    let mut ex = Exchange::new("priority");
    ex.setup(
        &[("1", "10000"), ("2", "0"), ("3", "0")],
        &[("X", "2", "100"), ("X", "3", "100")],
    );
    let first = ex.order("2", "X", "-100", "10");
    let second = ex.order("3", "X", "-100", "10");
    ex.order("1", "X", "50", "10");
    ex.order("1", "X", "100", "10");
    let a = ex.tx("2", &format!(r#"<query id="{first}"/>"#));
    let b = ex.tx("3", &format!(r#"<query id="{second}"/>"#));
    assert_eq!(
        parts(&a[0]),
        ["executed shares=50 price=10", "executed shares=50 price=10"]
    );
    assert_eq!(
        parts(&b[0]),
        ["open shares=50", "executed shares=50 price=10"]
    );
}

#[test]
fn fractional_amounts_are_exact() {
    let mut ex = Exchange::new("fractions");
    ex.setup(&[("1", "1"), ("2", "0")], &[("X", "2", "0.3")]);
    ex.order("2", "X", "-0.1", "0.1");
    ex.order("2", "X", "-0.2", "0.2");
    let buy = ex.order("1", "X", "0.3", "3.33333333");
    // Reserved 0.999999999, paid 0.01 + 0.04 = 0.05: balance 1 - 0.05 = 0.95 exactly.
    assert_eq!(ex.balance("1"), "0.95");
    assert_eq!(ex.balance("2"), "0.05");
    assert_eq!(ex.shares("1", "X"), "0.3");
    let status = ex.tx("1", &format!(r#"<query id="{buy}"/>"#));
    assert_eq!(
        parts(&status[0]),
        [
            "executed shares=0.1 price=0.1",
            "executed shares=0.2 price=0.2"
        ]
    );
}

#[test]
fn cancel_after_partial_fill_returns_the_open_part_and_never_trades_again() {
    let mut ex = Exchange::new("cancel_partial");
    ex.setup(&[("1", "1000"), ("2", "0")], &[("X", "2", "100")]);
    let buy = ex.order("1", "X", "10", "20");
    ex.order("2", "X", "-4", "20");
    assert_eq!(ex.balance("1"), "800");
    let canceled = ex.tx("1", &format!(r#"<cancel id="{buy}"/>"#));
    assert_eq!(canceled[0].name, "canceled");
    assert_eq!(canceled[0].get("id"), buy);
    assert_eq!(
        parts(&canceled[0]),
        ["canceled shares=6", "executed shares=4 price=20"]
    );
    assert!(canceled[0].children[0].get("time").parse::<i64>().unwrap() > 1_600_000_000);
    assert_eq!(ex.balance("1"), "920");
    // A canceled order never trades again.
    ex.order("2", "X", "-6", "1");
    assert_eq!(ex.balance("1"), "920");
    let again = ex.tx("1", &format!(r#"<cancel id="{buy}"/><query id="{buy}"/>"#));
    assert_eq!(again[0].name, "error");
    assert!(again[0].text.contains("nothing open"));
    assert_eq!(
        parts(&again[1]),
        ["canceled shares=6", "executed shares=4 price=20"]
    );
}

#[test]
fn cancel_of_a_sell_returns_its_shares() {
    let mut ex = Exchange::new("cancel_sell");
    ex.setup(&[("2", "0")], &[("X", "2", "10")]);
    let sell = ex.order("2", "X", "-7.5", "3");
    assert_eq!(ex.shares("2", "X"), "2.5");
    let canceled = ex.tx("2", &format!(r#"<cancel id="{sell}"/>"#));
    assert_eq!(parts(&canceled[0]), ["canceled shares=7.5"]);
    assert_eq!(ex.shares("2", "X"), "10");
}

#[test]
fn a_fully_executed_order_cannot_be_canceled() {
    let mut ex = Exchange::new("cancel_filled");
    ex.setup(&[("1", "100"), ("2", "0")], &[("X", "2", "10")]);
    let sell = ex.order("2", "X", "-10", "1");
    ex.order("1", "X", "10", "1");
    let items = ex.tx("2", &format!(r#"<cancel id="{sell}"/>"#));
    assert_eq!(items[0].name, "error");
    assert_eq!(items[0].get("id"), sell);
}

#[test]
fn only_the_owner_may_query_or_cancel() {
    let mut ex = Exchange::new("ownership");
    ex.setup(&[("1", "100"), ("2", "100")], &[]);
    let buy = ex.order("1", "X", "1", "1");
    let items = ex.tx("2", &format!(r#"<query id="{buy}"/><cancel id="{buy}"/><query id="999999"/><cancel id="0"/><query id="x"/>"#));
    assert!(items.iter().all(|i| i.name == "error"), "{items:?}");
    let ids: Vec<&str> = items.iter().map(|i| i.get("id")).collect();
    assert_eq!(ids, [buy.as_str(), buy.as_str(), "999999", "0", "x"]);
    // Still open for its owner.
    assert_eq!(ex.balance("1"), "99");
    let mine = ex.tx("1", &format!(r#"<query id="{buy}"/>"#));
    assert_eq!(parts(&mine[0]), ["open shares=1"]);
}

#[test]
fn an_account_may_trade_with_itself() {
    let mut ex = Exchange::new("self_trade");
    ex.setup(&[("1", "100")], &[("X", "1", "10")]);
    ex.order("1", "X", "-5", "4");
    ex.order("1", "X", "5", "6");
    assert_eq!(ex.balance("1"), "100");
    assert_eq!(ex.shares("1", "X"), "10");
}

#[test]
fn answers_come_in_request_order_for_mixed_children() {
    let mut ex = Exchange::new("mixed");
    ex.setup(&[("1", "100")], &[("X", "1", "10")]);
    let items = ex.tx(
        "1",
        r#"<order sym="X" amount="-1" limit="5"/><query id="1"/><bogus/><order sym="X" amount="1" limit="4"/><cancel id="1"/>"#,
    );
    let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["opened", "status", "error", "opened", "canceled"]);
    assert_eq!(items[0].get("id"), "1");
    assert_eq!(parts(&items[1]), ["open shares=1"]);
    assert_eq!(parts(&items[4]), ["canceled shares=1"]);
}

#[test]
fn order_ids_increase() {
    let mut ex = Exchange::new("ids");
    ex.setup(&[("1", "100")], &[]);
    let ids: Vec<i64> = (0..5)
        .map(|_| ex.order("1", "X", "1", "1").parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

/// The rules on amounts, enforced by the database too (see the head of migrations/0001_schema.sql).
#[test]
fn constraints_back_up_the_code() {
    let ex = Exchange::new("constraints");
    let mut db = sql(&ex.url);
    // Valid rows first, so that every statement below is refused for its one bad value.
    db.batch_execute(
        "INSERT INTO accounts VALUES ('1', 10, 10);
         INSERT INTO positions VALUES ('1', 'X', 5);
         INSERT INTO orders (account_id, symbol, is_buy, amount, limit_price, open_shares)
              VALUES ('1', 'X', true, 2, 1, 2);",
    )
    .unwrap();
    let order = "INSERT INTO orders (account_id, symbol, is_buy, amount, limit_price, open_shares, filled_shares, canceled_shares, canceled_at) VALUES";
    let bad = [
        "UPDATE accounts SET balance = -1".to_string(),
        "UPDATE accounts SET deposited = -1".into(),
        "INSERT INTO accounts VALUES ('2', -1, 0)".into(),
        "INSERT INTO positions VALUES ('1', 'Y', -1)".into(),
        "UPDATE positions SET shares = shares - 6".into(),
        "INSERT INTO share_issues (account_id, symbol, shares) VALUES ('1', 'X', 0)".into(),
        format!("{order} ('1', 'X', true, 0, 1, 0, 0, 0, NULL)"),
        format!("{order} ('1', 'X', true, 1, 0, 1, 0, 0, NULL)"),
        format!("{order} ('1', 'X', true, 1, 1, -1, 2, 0, NULL)"),
        format!("{order} ('1', 'X', true, 1, 1, 2, -1, 0, NULL)"),
        format!("{order} ('1', 'X', true, 1, 1, 2, 0, -1, now())"),
        "UPDATE orders SET open_shares = open_shares - 3, filled_shares = filled_shares + 3".into(),
        "INSERT INTO trades (buy_order_id, sell_order_id, shares, price) SELECT id, id, 0, 1 FROM orders".into(),
        "INSERT INTO trades (buy_order_id, sell_order_id, shares, price) SELECT id, id, 1, 0 FROM orders".into(),
    ];
    each_refused_with(&mut db, &bad, &SqlState::CHECK_VIOLATION);
    // The same kinds of change, within the rules, are accepted.
    db.batch_execute(&format!(
        "UPDATE accounts SET balance = 0;
         UPDATE positions SET shares = 0;
         UPDATE orders SET open_shares = 0, canceled_shares = 2, canceled_at = now();
         {order} ('1', 'X', false, 3, 2, 1, 1, 1, now());
         INSERT INTO trades (buy_order_id, sell_order_id, shares, price) SELECT min(id), max(id), 1, 2 FROM orders;"
    ))
    .unwrap();
}

/// Runs each statement on its own and requires that the database refused it with
/// `code`, not with some other error that a typo in the statement could cause.
fn each_refused_with(db: &mut postgres::Client, statements: &[impl AsRef<str>], code: &SqlState) {
    for statement in statements {
        let statement = statement.as_ref();
        let refused = db.batch_execute(statement).err();
        assert_eq!(
            refused.as_ref().and_then(|e| e.code()),
            Some(code),
            "{statement}: {refused:?}"
        );
    }
}

#[test]
fn accounts_and_orders_are_never_deleted_or_renumbered() {
    let mut ex = Exchange::new("ledger_kept");
    ex.setup(&[("1", "100")], &[]);
    ex.order("1", "X", "1", "1");
    let mut db = sql(&ex.url);
    let kept = [
        "DELETE FROM accounts",
        "DELETE FROM accounts WHERE id = '404'",
        "TRUNCATE accounts CASCADE",
        "UPDATE accounts SET id = '2'",
        "DELETE FROM orders",
        "TRUNCATE orders",
        "UPDATE orders SET id = DEFAULT",
    ];
    each_refused_with(&mut db, &kept, &SqlState::RESTRICT_VIOLATION);
    assert_eq!(count(&ex.url, "SELECT count(*) FROM accounts"), 1);
    assert_eq!(count(&ex.url, "SELECT count(*) FROM orders"), 1);
    // Other columns of the same rows still change.
    db.batch_execute(
        "UPDATE orders SET limit_price = limit_price; UPDATE accounts SET balance = balance",
    )
    .unwrap();
}

/// What no constraint forbids on orders and trades, the audit finds: each change below
/// breaks one rule, and is undone before the next.
#[test]
fn the_audit_finds_what_the_constraints_leave_to_it() {
    let mut ex = Exchange::new("audit_rules");
    ex.setup(&[("1", "1000"), ("2", "0")], &[("X", "2", "10")]);
    let sell: i64 = ex.order("2", "X", "-4", "5").parse().unwrap();
    ex.order("1", "X", "3", "5");
    let dangling = format!("trades refer to order {}, which does not exist", sell + 100);
    let mut db = sql(&ex.url);
    let findings = |db: &mut postgres::Client| exchange::audit::audit(db).unwrap().discrepancies;
    assert_eq!(findings(&mut db), Vec::<String>::new());
    let cases = [
        (
            "UPDATE orders SET filled_shares = filled_shares + 1 WHERE is_buy",
            "UPDATE orders SET filled_shares = filled_shares - 1 WHERE is_buy",
            "+ filled 4 + canceled 0 <> amount 3",
        ),
        (
            "UPDATE orders SET canceled_at = now() WHERE is_buy",
            "UPDATE orders SET canceled_at = NULL WHERE is_buy",
            "0 canceled shares, but cancel time 20",
        ),
        (
            "UPDATE orders SET canceled_shares = 1, open_shares = 0 WHERE NOT is_buy",
            "UPDATE orders SET canceled_shares = 0, open_shares = 1 WHERE NOT is_buy",
            "1 canceled shares, but cancel time none",
        ),
        (
            "UPDATE orders SET account_id = '404' WHERE is_buy",
            "UPDATE orders SET account_id = '1' WHERE is_buy",
            "belongs to account 404, which does not exist",
        ),
        (
            "UPDATE trades SET sell_order_id = sell_order_id + 100",
            "UPDATE trades SET sell_order_id = sell_order_id - 100",
            &dangling,
        ),
    ];
    for (break_it, undo, finding) in cases {
        db.batch_execute(break_it).unwrap();
        let found = findings(&mut db);
        assert!(
            found.iter().any(|f| f.contains(finding)),
            "{break_it}: {found:?}"
        );
        db.batch_execute(undo).unwrap();
        assert_eq!(findings(&mut db), Vec::<String>::new(), "{undo}");
    }
}

#[test]
fn a_buy_sweeps_resting_sells_cheapest_first() {
    let mut ex = Exchange::new("buy_sweep");
    ex.setup(&[("1", "10000"), ("2", "0")], &[("X", "2", "100")]);
    ex.order("2", "X", "-10", "12");
    ex.order("2", "X", "-10", "10");
    ex.order("2", "X", "-10", "11");
    let buy = ex.order("1", "X", "25", "12");
    let status = ex.tx("1", &format!(r#"<query id="{buy}"/>"#));
    assert_eq!(
        parts(&status[0]),
        [
            "executed shares=10 price=10",
            "executed shares=10 price=11",
            "executed shares=5 price=12"
        ]
    );
    // Reserved 300, paid 100 + 110 + 60 = 270.
    assert_eq!(ex.balance("1"), "9730");
}
