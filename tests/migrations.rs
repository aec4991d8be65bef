//! The schema's versions, through the real binary: `exchange-server migrate` brings
//! databases made by earlier versions (the first schema, and the last one applied at
//! start) to the current schema with their data; a server start changes nothing and
//! waits for no lock an order holds; a server refuses a database at another version,
//! in one line; migrations started together apply each version once.

mod common;

use common::{admin_url, audit_holds, count, fresh_database, output_text, server_bin, sql, Server};
use std::process::{Command, Output};

/// A database with nothing in it, not even the schema.
fn empty_database(hint: &str) -> String {
    let name = format!("m_{hint}_{}", std::process::id());
    let mut admin = sql(&admin_url());
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&statement).expect("an empty database");
    }
    let admin = admin_url();
    let (base, _) = admin.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

fn migrate(url: &str) -> Output {
    Command::new(server_bin())
        .args(["migrate", "--database-url", url])
        .output()
        .expect("run exchange-server migrate")
}

/// Starts a server on `url` and expects it to refuse; returns its one line.
fn refusal(url: &str) -> String {
    let output = Command::new(server_bin())
        .args(["--port", "0", "--bind", "127.0.0.1", "--database-url", url])
        .output()
        .expect("run exchange-server");
    assert!(
        !output.status.success(),
        "the server started: {}",
        output_text(&output)
    );
    let log = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(log.lines().count(), 1, "one line: {log}");
    log
}

/// Creates data through an earlier schema's own functions, as its server did.
fn trade_the_old_way(url: &str) {
    sql(url)
        .batch_execute(
            "SELECT create_account('1', 1000);
             SELECT create_account('2', 0);
             SELECT issue_shares('2', 'OLD', 10);
             SELECT * FROM place_order('2', 'OLD', -6, 3);
             SELECT * FROM place_order('1', 'OLD', 4, 5);",
        )
        .expect("trade through the earlier schema");
}

fn brings_to_the_current_schema(fixture: &str) {
    let url = empty_database(
        fixture
            .trim_start_matches("schema-")
            .replace('-', "_")
            .as_str(),
    );
    let schema = std::fs::read_to_string(format!("tests/fixtures/{fixture}.sql")).expect("fixture");
    sql(&url)
        .batch_execute(&schema)
        .expect("the earlier schema");
    trade_the_old_way(&url);
    assert!(refusal(&url).contains("before migrations: run `exchange-server migrate`"));

    let output = migrate(&url);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(
        output_text(&output).trim(),
        "schema at version 2: applied 1, 2"
    );

    // What earlier versions had and this one has not.
    let table_checks = count(
        &url,
        "SELECT count(*) FROM pg_constraint WHERE contype = 'c' AND conrelid IN
           ('accounts'::regclass, 'positions'::regclass, 'share_issues'::regclass,
            'orders'::regclass, 'trades'::regclass)",
    );
    assert_eq!(table_checks, 0, "table CHECKs left");
    let foreign_keys = count(
        &url,
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f'
            AND conrelid IN ('orders'::regclass, 'trades'::regclass)",
    );
    assert_eq!(foreign_keys, 0, "foreign keys on orders or trades left");
    let not_domains = count(
        &url,
        "SELECT count(*) FROM information_schema.columns
          WHERE table_name IN ('accounts', 'positions', 'share_issues', 'orders', 'trades')
            AND column_name IN ('id', 'account_id', 'symbol', 'balance', 'deposited', 'shares',
                                'amount', 'limit_price', 'open_shares', 'filled_shares',
                                'canceled_shares', 'price')
            AND data_type IN ('text', 'numeric') AND domain_name IS NULL
            AND NOT (table_name IN ('share_issues', 'orders', 'trades') AND column_name = 'id')",
    );
    assert_eq!(not_domains, 0, "columns not of the domains");
    let trade_count = count(
        &url,
        "SELECT count(*) FROM pg_proc WHERE proname = 'place_order'
            AND 'trade_count' = ANY (proargnames)",
    );
    assert_eq!(trade_count, 0, "place_order still returns trade_count");

    // The data came through, and the current server trades on it.
    assert_eq!(count(&url, "SELECT count(*) FROM orders"), 2);
    let server = Server::start(&url, 2, &[]);
    let answer = server
        .send(r#"<transactions id="1"><order sym="OLD" amount="2" limit="3"/></transactions>"#);
    assert_eq!(answer[0].name, "opened", "{answer:?}");
    audit_holds(&url);
}

#[test]
fn a_database_of_the_first_schema_is_brought_to_the_current_one() {
    brings_to_the_current_schema("schema-330e9d6");
}

#[test]
fn a_database_made_by_the_last_server_before_migrations_is_brought_to_the_current_one() {
    brings_to_the_current_schema("schema-before-migrations");
}

#[test]
fn a_start_changes_nothing_and_waits_for_no_lock_an_order_holds() {
    let url = fresh_database("migrations_start");
    let before = count(&url, "SELECT count(*) FROM exchange_schema_versions");
    // An order under way holds these until it commits; DDL at start would wait for it.
    let mut db = sql(&url);
    let mut order = db.transaction().expect("BEGIN");
    order
        .batch_execute("LOCK TABLE accounts, positions, orders, trades IN ROW EXCLUSIVE MODE")
        .expect("the locks of an order in flight");
    let server = Server::start(&url, 2, &[]);
    assert!(server.try_send("<create/>").is_ok());
    order.rollback().expect("ROLLBACK");
    assert_eq!(
        count(&url, "SELECT count(*) FROM exchange_schema_versions"),
        before
    );
}

#[test]
fn a_server_refuses_a_database_at_another_version() {
    let url = empty_database("refusals");
    assert!(refusal(&url).contains("no schema yet: run `exchange-server migrate` first"));

    assert!(migrate(&url).status.success());
    sql(&url)
        .batch_execute("DELETE FROM exchange_schema_versions WHERE version = 2")
        .expect("pretend to be at version 1");
    assert!(refusal(&url)
        .contains("at version 1, this server needs version 2: run `exchange-server migrate`"));

    assert!(migrate(&url).status.success());
    sql(&url)
        .batch_execute("INSERT INTO exchange_schema_versions (version, name) VALUES (3, 'later')")
        .expect("pretend to be at version 3");
    assert!(refusal(&url).contains("at version 3, newer than this server's 2"));
    let output = migrate(&url);
    assert!(
        !output.status.success(),
        "migrate went back: {}",
        output_text(&output)
    );
}

#[test]
fn migrations_started_together_apply_each_version_once() {
    let url = empty_database("together");
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(server_bin())
                .args(["migrate", "--database-url", &url])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("run exchange-server migrate")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    assert_eq!(
        count(&url, "SELECT count(*) FROM exchange_schema_versions"),
        2,
        "each version applied once"
    );
}
