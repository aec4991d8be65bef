//! The schema's versions: the migrations in `migrations/`, applied in order by
//! `exchange-server migrate`, and the check a server makes at start that the database
//! is at exactly its own version.
//!
//! Why an explicit step: a server that applied its schema at start did DDL under load
//! (every order waited for it) and, in a rolling upgrade, let whichever binary started
//! last install its own functions. Now a start does no DDL, and a server refuses a
//! database at another version than its own.
//!
//! Why not a migration crate (refinery, say): what is needed is a list of embedded
//! files, one table of applied versions and an advisory lock; a crate would bring its
//! own table, checksums and dependencies for the same loop.

use crate::store::StoreError;
use postgres::Client;

/// Every version, in order: (version, name, SQL). A version once released is never
/// edited; a change to the schema is a new file.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "schema", include_str!("../migrations/0001_schema.sql")),
    (
        2,
        "earlier_databases",
        include_str!("../migrations/0002_earlier_databases.sql"),
    ),
];

/// The version this build's server runs on.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// One migrator at a time, however many servers and operators run `migrate` at once.
/// A key of two integers: PostgreSQL keeps those apart from single bigint keys, so no
/// symbol's lock (`symbol_lock_key`, a bigint hash a client could aim) can be this one.
const MIGRATION_LOCK_KEY: (i32, i32) = (0x6578_6368, 1);

const VERSIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS exchange_schema_versions (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Applies every migration the database lacks, each in a transaction of its own, and
/// returns the versions applied (none if it was current). Refuses a database at a
/// newer version, or whose applied versions are not this build's.
pub fn migrate(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    let (class, object) = MIGRATION_LOCK_KEY;
    client.execute("SELECT pg_advisory_lock($1, $2)", &[&class, &object])?;
    let outcome = migrate_locked(client);
    let unlocked = client.execute("SELECT pg_advisory_unlock($1, $2)", &[&class, &object]);
    let applied = outcome?;
    unlocked?;
    Ok(applied)
}

fn migrate_locked(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    client.batch_execute(VERSIONS_TABLE)?;
    let current = applied_version(client)?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let mut transaction = client.transaction()?;
        transaction.batch_execute(sql)?;
        transaction.execute(
            "INSERT INTO exchange_schema_versions (version, name) VALUES ($1, $2)",
            &[version, name],
        )?;
        transaction.commit()?;
        applied.push(*version);
    }
    Ok(applied)
}

/// The version the database is at, once its applied versions are checked against
/// this build's: the same names in the same places, and none newer than ours.
fn applied_version(client: &mut Client) -> Result<i32, StoreError> {
    let rows = client.query(
        "SELECT version, name FROM exchange_schema_versions ORDER BY version",
        &[],
    )?;
    let mut current = 0;
    for row in rows {
        let (version, name): (i32, String) = (row.try_get(0)?, row.try_get(1)?);
        let ours = MIGRATIONS.iter().find(|m| m.0 == version);
        match ours {
            Some((_, our_name, _)) if *our_name == name => current = version,
            Some((_, our_name, _)) => {
                return Err(StoreError::Schema(format!(
                    "the database's version {version} is {name:?}, this server's is \
                     {our_name:?}: they come from different histories"
                )))
            }
            None => {
                return Err(StoreError::Schema(format!(
                    "the database's schema is at version {version}, newer than this \
                     server's {}: run a server of that version or later",
                    latest()
                )))
            }
        }
    }
    Ok(current)
}

/// Refuses, in one line saying what to do, a database that is not at this server's
/// version. Reads only: a server start makes no change to the schema.
pub fn check(client: &mut Client) -> Result<(), StoreError> {
    let row = client.query_one(
        "SELECT to_regclass('exchange_schema_versions') IS NOT NULL, to_regclass('orders') IS NOT NULL",
        &[],
    )?;
    let (versioned, has_tables): (bool, bool) = (row.try_get(0)?, row.try_get(1)?);
    if !versioned {
        return Err(StoreError::Schema(if has_tables {
            "the database was made by a version of the server before migrations: run \
             `exchange-server migrate` to bring it up to date"
                .into()
        } else {
            "the database has no schema yet: run `exchange-server migrate` first".into()
        }));
    }
    let current = applied_version(client)?;
    if current < latest() {
        return Err(StoreError::Schema(format!(
            "the database's schema is at version {current}, this server needs version {}: \
             run `exchange-server migrate`",
            latest()
        )));
    }
    Ok(())
}
