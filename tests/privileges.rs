//! Least privilege: the schema belongs to an owner role, which runs the migrations; the
//! server runs as a role that may only read and write the exchange's tables, with the
//! grants docs/deployment.md shows, taken from the page as written. Without them the
//! server refuses to start; with them it serves under load with the audit clean, and
//! its role can change no schema and delete no row.

mod common;

use common::{
    admin_url, audit_holds, output_text, serves_a_second_without_permission_errors, sql, Server,
};
use std::process::Command;

/// The owner's and the server's roles, and a database the owner owns; their URLs.
struct Roles {
    owner_url: String,
    server_url: String,
    owner: String,
    server: String,
}

fn roles() -> Roles {
    let id = std::process::id();
    let (owner, server) = (format!("owner_{id}"), format!("trader_{id}"));
    let mut admin = sql(&admin_url());
    // One statement each: CREATE and DROP DATABASE refuse to run in a transaction.
    for statement in [
        format!("DROP DATABASE IF EXISTS {owner}"),
        format!("DROP ROLE IF EXISTS {server}"),
        format!("DROP ROLE IF EXISTS {owner}"),
        format!("CREATE ROLE {owner} LOGIN"),
        format!("CREATE ROLE {server} LOGIN"),
        format!("CREATE DATABASE {owner} OWNER {owner}"),
    ] {
        admin
            .batch_execute(&statement)
            .expect("roles and a database");
    }
    let admin_url = admin_url();
    let (base, _) = admin_url.rsplit_once('/').expect("a URL with a database");
    let url_as =
        |role: &str| format!("{base}/{owner}").replacen("postgres@", &format!("{role}@"), 1);
    Roles {
        owner_url: url_as(&owner),
        server_url: url_as(&server),
        owner,
        server,
    }
}

/// The grants of docs/deployment.md's section on roles, for these roles and database.
fn documented_grants(roles: &Roles) -> String {
    let doc = std::fs::read_to_string("docs/deployment.md").expect("docs/deployment.md");
    let section = doc.split("## Roles").nth(1).expect("a section on roles");
    let block = section
        .split("```sql\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("an sql block");
    assert!(block.contains("TO exchange;"), "{block}");
    block
        .replace("exchange_owner", &roles.owner)
        .replace("TO exchange;", &format!("TO {};", roles.server))
        .replace("DATABASE exchange ", &format!("DATABASE {} ", roles.owner))
}

#[test]
fn the_server_runs_as_a_role_that_only_reads_and_writes() {
    let roles = roles();
    let migrate = Command::new(common::server_bin())
        .args(["migrate", "--database-url", &roles.owner_url])
        .output()
        .expect("run migrate");
    assert!(migrate.status.success(), "{}", output_text(&migrate));

    // Without the grants the server's role may not even read the schema's version.
    let refused = Command::new(common::server_bin())
        .args(["--port", "0", "--database-url", &roles.server_url])
        .output()
        .expect("run the server");
    assert!(!refused.status.success());
    assert!(
        output_text(&refused).contains("permission denied"),
        "{}",
        output_text(&refused)
    );

    sql(&roles.owner_url)
        .batch_execute(&documented_grants(&roles))
        .expect("the documented grants");
    let server = Server::start(&roles.server_url, 2, &[]);
    serves_a_second_without_permission_errors(&server, "PRIV");
    drop(server);
    audit_holds(&roles.owner_url);

    // The server's role changes no schema and deletes nothing.
    let mut as_server = sql(&roles.server_url);
    for statement in [
        "CREATE TABLE intruder (id int)",
        "DROP TABLE orders",
        "ALTER TABLE accounts ADD COLUMN note text",
        "CREATE OR REPLACE FUNCTION symbol_lock_key(text) RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint'",
        "DELETE FROM trades",
        "TRUNCATE positions",
        "DELETE FROM exchange_schema_versions",
    ] {
        let error = as_server
            .batch_execute(statement)
            .expect_err(&format!("{} could run: {statement}", roles.server));
        let code = error.code().map(|c| c.code().to_string());
        assert!(
            matches!(code.as_deref(), Some("42501")),
            "{statement}: {error} ({code:?}), not a permission error"
        );
    }
}
