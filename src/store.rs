//! The PostgreSQL side: connection settings, the pool, the start check, and one
//! session per handler thread with its statements prepared once.
//!
//! All matching and money movement happens in the schema's functions (`migrations/`),
//! each called as one statement and so as one database transaction. Deadlocks and
//! serialization failures are retried here, in [`Session::retrying`], and nowhere else.
//! (A session the server ended is another matter: it needs a new connection, so
//! `durability::Connection::run` replaces it and runs the operation once more.)
//!
//! Durability is deferred to the end of a request. Each write commits without waiting
//! for its WAL to reach disk, so it releases its symbol's lock (and its rows) at once
//! instead of holding them through an fsync; before the request is answered,
//! [`Session::make_durable`] waits until the WAL holds everything the request wrote or
//! read (in the server, once for many requests: see `durability`). A client is
//! never told of a result that a crash could take back.

use crate::model::{AccountId, Fill, OrderId, OrderState, Symbol};
use crate::tls::Tls;
use crate::watchdog::{self, Canceller};
use postgres::error::SqlState;
use postgres::{Client, Statement};
use r2d2::{ManageConnection, Pool, PooledConnection};
use r2d2_postgres::PostgresConnectionManager;
use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The pool's connections: r2d2_postgres' manager, with connections a session can
/// retire so that the pool opens a new one in their place instead of handing them out
/// again, and with what the watchdog needs to cancel a wait on them.
pub struct Manager {
    inner: PostgresConnectionManager<Tls>,
    tls: Tls,
    /// How long a wait the watchdog watches may last.
    wait_bound: Duration,
}

/// A pooled connection: the client, how to cancel what it runs, and whether it is
/// retired.
pub struct Pooled {
    client: Client,
    canceller: Arc<Canceller>,
    retired: bool,
}

impl std::ops::Deref for Pooled {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl ManageConnection for Manager {
    type Connection = Pooled;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Pooled, postgres::Error> {
        let client = self.inner.connect()?;
        let canceller = Arc::new(Canceller::new(
            client.cancel_token(),
            self.tls.clone(),
            self.wait_bound,
        ));
        Ok(Pooled {
            client,
            canceller,
            retired: false,
        })
    }

    fn is_valid(&self, conn: &mut Pooled) -> Result<(), postgres::Error> {
        self.inner.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut Pooled) -> bool {
        conn.retired || self.inner.has_broken(&mut conn.client)
    }
}

/// How a re-run operation is bounded.
const ATTEMPTS_MAX: u32 = 8;

/// Timeouts that keep one stuck statement from holding a worker thread.
#[derive(Clone, Copy, Debug)]
pub struct DatabaseTimeouts {
    pub connect_ms: u64,
    pub statement_ms: u64,
    pub idle_in_transaction_ms: u64,
}

impl Default for DatabaseTimeouts {
    fn default() -> Self {
        DatabaseTimeouts {
            connect_ms: 3_000,
            statement_ms: 10_000,
            idle_in_transaction_ms: 20_000,
        }
    }
}

/// A database failure that is not a business outcome.
#[derive(Debug)]
pub enum StoreError {
    /// The database could not be reached or the connection broke.
    Unavailable(Cause),
    /// The server ended the session (a restart or an administrator): the statement was
    /// rolled back or never ran, so it may run again on a new connection.
    SessionEnded(Cause),
    /// The connection broke while a statement was under way: it may have committed
    /// before the answer was lost, or not at all.
    ConnectionLost(Cause),
    /// Anything else the database refused (a timeout, a retried deadlock that persisted).
    Failed(Cause),
    /// The wait for durability returned with a warning: the commits are on this server
    /// but may not be on its synchronous standby, so a failover may lose them.
    NotConfirmed(String),
    /// The database's schema is not at this server's version.
    Schema(String),
}

/// What a failure came from: PostgreSQL's own error, kept whole (its SQLSTATE, message
/// and the I/O error under it), or the server's own words.
#[derive(Debug)]
pub enum Cause {
    Postgres(postgres::Error),
    Said(String),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Postgres(e) => match (e.as_db_error(), std::error::Error::source(e)) {
                (Some(db), _) => write!(f, "{} ({})", db.message(), db.code().code()),
                (None, Some(cause)) => write!(f, "{e}: {cause}"),
                (None, None) => write!(f, "{e}"),
            },
            Cause::Said(why) => f.write_str(why),
        }
    }
}

impl From<String> for Cause {
    fn from(why: String) -> Cause {
        Cause::Said(why)
    }
}

impl From<&str> for Cause {
    fn from(why: &str) -> Cause {
        Cause::Said(why.to_string())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            StoreError::SessionEnded(why) => write!(f, "database session ended: {why}"),
            StoreError::ConnectionLost(why) => write!(f, "database connection lost: {why}"),
            StoreError::Failed(why) => write!(f, "database error: {why}"),
            StoreError::Schema(why) => write!(f, "{why}"),
            StoreError::NotConfirmed(why) => {
                write!(f, "the commit was not confirmed as durable: {why}")
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.cause()? {
            Cause::Postgres(e) => Some(e),
            Cause::Said(_) => None,
        }
    }
}

impl StoreError {
    fn cause(&self) -> Option<&Cause> {
        match self {
            StoreError::Unavailable(cause)
            | StoreError::SessionEnded(cause)
            | StoreError::ConnectionLost(cause)
            | StoreError::Failed(cause) => Some(cause),
            StoreError::NotConfirmed(_) | StoreError::Schema(_) => None,
        }
    }

    /// The SQLSTATE PostgreSQL gave, if the failure came from it with one.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match self.cause()? {
            Cause::Postgres(e) => e.code(),
            Cause::Said(_) => None,
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        crate::metrics::count_database_error(e.code().map(|code| code.code()));
        let ended = [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN];
        if e.code().is_some_and(|code| ended.contains(code)) {
            StoreError::SessionEnded(Cause::Postgres(e))
        } else if e.is_closed() || e.as_db_error().is_none() {
            StoreError::Unavailable(Cause::Postgres(e))
        } else {
            StoreError::Failed(Cause::Postgres(e))
        }
    }
}

impl StoreError {
    /// `e` as met by a statement already sent, when a broken connection leaves the
    /// statement's fate unknown.
    fn during_statement(e: postgres::Error) -> StoreError {
        let broke = e.is_closed()
            || std::error::Error::source(&e).is_some_and(|cause| cause.is::<std::io::Error>());
        match StoreError::from(e) {
            StoreError::Unavailable(why) if broke => StoreError::ConnectionLost(why),
            other => other,
        }
    }
}

/// How long a database host may leave sent data unacknowledged before its connection
/// counts as dead (TCP_USER_TIMEOUT), and the keepalive probes that find a dead host
/// while a session waits for an answer: idle seconds, seconds between probes, probes.
/// A host that died without a reset (power, link, kernel) would otherwise hold every
/// handler in TCP retransmission for the kernel's default of about 15 minutes.
///
/// The user timeout is longer than the keepalives' idle time plus their probes: Linux
/// ends a connection whose user timeout has passed at the first unanswered probe, and
/// a statement may legitimately keep a session silent (waiting for a lock, or for a
/// standby) for longer than the idle time.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(8);
pub const KEEPALIVES: (Duration, Duration, u32) =
    (Duration::from_secs(3), Duration::from_secs(1), 3);

/// libpq's and rust-postgres' default keepalive idle time, which means "not set".
const KEEPALIVES_IDLE_UNSET: Duration = Duration::from_secs(2 * 60 * 60);

/// Connection settings for `url`, with the server-side timeouts every session runs under.
/// The URL's own `connect_timeout`, `tcp_user_timeout` and `keepalives*` win over ours
/// (a value of 0 reads as unset, as rust-postgres reads it), and its own `options` go
/// before ours.
pub fn config(url: &str, timeouts: DatabaseTimeouts) -> Result<Target, StoreError> {
    let Target { mut config, tls } = parse_url(url)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_millis(timeouts.connect_ms));
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_keepalives() {
        let (idle, interval, retries) = KEEPALIVES;
        if config.get_keepalives_idle() == KEEPALIVES_IDLE_UNSET {
            config.keepalives_idle(idle);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(interval);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(retries);
        }
    }
    config.notice_callback(note_warning);
    config.application_name("exchange-server");
    // Every statement the server runs is an index lookup by design. A plan cached while
    // a table was small (a fresh database) would otherwise keep scanning it whole as it
    // grows, and every order would get slower (docs/benchmarks.md has the figures).
    // Generic plans, then, because their shape never depends on the values and planning
    // each call would cost more.
    // After the URL's own options, if it has any: later settings win.
    let theirs = config
        .get_options()
        .map_or(String::new(), |o| format!("{o} "));
    config.options(&format!(
        "{theirs}-c enable_seqscan=off -c plan_cache_mode=force_generic_plan -c statement_timeout={} -c idle_in_transaction_session_timeout={}",
        timeouts.statement_ms, timeouts.idle_in_transaction_ms
    ));
    Ok(Target { config, tls })
}

/// Where and how to connect: rust-postgres' settings, and the TLS connector that checks
/// the server's certificate as the URL's `sslmode` asks (`crate::tls`).
#[derive(Clone)]
pub struct Target {
    pub config: postgres::Config,
    pub tls: Tls,
}

impl Target {
    pub fn connect(&self) -> Result<Client, postgres::Error> {
        self.config.connect(self.tls.clone())
    }
}

/// Parses a connection URL (either form libpq takes), with its TLS settings and, when
/// it names no password, one taken as libpq would (`passfile`): for the server, and for
/// tools such as the audit that connect with their own settings.
pub fn parse_url(url: &str) -> Result<Target, StoreError> {
    let bad = |e: String| StoreError::Failed(format!("bad database URL: {e}").into());
    let (url, wanted) = crate::tls::split(url).map_err(bad)?;
    let tls = crate::tls::connector(&wanted).map_err(|e| StoreError::Failed(e.into()))?;
    let mut config = postgres::Config::from_str(&url).map_err(|e| bad(e.to_string()))?;
    if config.get_password().is_none() {
        let user = config.get_user().unwrap_or_default();
        let lookup = crate::passfile::Lookup {
            hosts: crate::passfile::hosts_of(&config),
            database: config.get_dbname().unwrap_or(user),
            user,
        };
        let found = crate::passfile::find(&lookup).map_err(|e| StoreError::Failed(e.into()))?;
        if let Some(password) = found {
            config.password(password);
        }
    }
    Ok(Target { config, tls })
}

/// Where a URL points, for the log: `user@host:port[,host:port...]/dbname`, without
/// the password or any other parameter.
pub fn describe(url: &str) -> String {
    let parsed = crate::tls::split(url)
        .ok()
        .and_then(|(url, _)| postgres::Config::from_str(&url).ok());
    let Some(config) = parsed else {
        return "(a URL that does not parse)".into();
    };
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                postgres::config::Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    format!(
        "{}@{}/{}",
        config.get_user().unwrap_or("?"),
        hosts.join(","),
        config.get_dbname().unwrap_or("?")
    )
}

/// Connects once, checks that the session took the server's settings and that the
/// schema is at this server's version (changing nothing: see `migrations`), and that
/// `connections` more sessions fit the slots the database has free.
pub fn prepare_database(
    target: &Target,
    timeouts: DatabaseTimeouts,
    connections: usize,
) -> Result<(), StoreError> {
    let mut client = target.connect()?;
    check_session_settings(&mut client, timeouts)?;
    crate::migrations::check(&mut client)?;
    let free = free_connection_slots(&mut client)?;
    if connections as i64 > free {
        return Err(StoreError::Failed(Cause::Said(format!(
            "the server would open {connections} database connections (workers x (threads \
             + 1)), but the database has {free} free for this role and database; lower \
             --workers or --threads, or raise max_connections"
        ))));
    }
    Ok(())
}

/// Sessions this role may still open on this database, counting the one asking as
/// free: the least of what the cluster, the role's and the database's connection
/// limits leave. A superuser may also take the slots reserved for superusers, and
/// no role or database limit binds it.
fn free_connection_slots(client: &mut Client) -> Result<i64, StoreError> {
    let row = client.query_one(
        "SELECT least(
                current_setting('max_connections')::int
                  - CASE WHEN r.rolsuper THEN 0
                         ELSE current_setting('superuser_reserved_connections')::int END
                  - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
                CASE WHEN r.rolconnlimit < 0 OR r.rolsuper THEN NULL
                     ELSE r.rolconnlimit - (SELECT count(*) FROM pg_stat_activity
                                             WHERE usesysid = r.oid
                                               AND backend_type = 'client backend') END,
                CASE WHEN d.datconnlimit < 0 OR r.rolsuper THEN NULL
                     ELSE d.datconnlimit - (SELECT count(*) FROM pg_stat_activity
                                             WHERE datid = d.oid
                                               AND backend_type = 'client backend') END
              )::bigint + 1
           FROM pg_roles r, pg_database d
          WHERE r.rolname = current_user AND d.datname = current_database()",
        &[],
    )?;
    Ok(row.try_get(0)?)
}

/// How long taking a connection from the pool may wait: long enough to try every host
/// of a multi-host URL in turn, each for its connect timeout (a dead first host, then
/// the next), and a little more.
fn checkout_timeout(config: &postgres::Config) -> Duration {
    let per_host = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(3));
    let hosts = config.get_hosts().len().max(1) as u32;
    per_host * hosts + Duration::from_secs(1)
}

/// A pool of `size` connections; fails if the database cannot be reached now, naming
/// the database's own reason (SQLSTATE and message) when it gave one. Each connection
/// is checked for the server's session settings and warmed as it opens (`SessionSetup`).
pub fn pool(
    Target { config, tls }: Target,
    size: u32,
    timeouts: DatabaseTimeouts,
) -> Result<Pool<Manager>, StoreError> {
    let last_error = LastError::default();
    let checkout_timeout = checkout_timeout(&config);
    let manager = Manager {
        inner: PostgresConnectionManager::new(config, tls.clone()),
        tls,
        wait_bound: Duration::from_millis(timeouts.statement_ms),
    };
    Pool::builder()
        .max_size(size)
        .connection_timeout(checkout_timeout)
        .connection_customizer(Box::new(SessionSetup(timeouts)))
        .error_handler(Box::new(last_error.clone()))
        .build(manager)
        .map_err(|e| {
            let cause = last_error
                .take()
                .map_or_else(|| e.to_string(), |c| c.to_string());
            StoreError::Unavailable(format!("cannot open {size} connections: {cause}").into())
        })
}

thread_local! {
    /// The last warning PostgreSQL sent this thread's session. A session's messages are
    /// read on the thread that made the call (the `postgres` crate drives each
    /// connection on its caller's thread), so a warning lands with the call it
    /// belongs to.
    static WARNING: std::cell::Cell<Option<String>> = const { std::cell::Cell::new(None) };
}

/// The notice callback of every session: keeps, for [`Session::make_durable`], the
/// warnings that may concern replication. Those come from PostgreSQL's syncrep.c; the
/// source file is reported untranslated, unlike the message. A warning of unknown
/// source counts too; one known to be about something else (a database nearing
/// transaction-id wraparound warns on every new transaction id) does not, or it would
/// make every answer "outcome unknown".
fn note_warning(notice: postgres::error::DbError) {
    let warning = notice.parsed_severity() == Some(postgres::error::Severity::Warning);
    let replication = notice.file().is_none_or(|file| file == "syncrep.c");
    if warning && replication {
        let text = match notice.detail() {
            Some(detail) => format!("{} {detail}", notice.message()),
            None => notice.message().to_string(),
        };
        WARNING.with(|w| w.set(Some(text)));
    }
}

/// Readies each new session before it serves: refuses it if the settings the server
/// sends at connection time did not take effect, then warms its plans if it can
/// (`warm_up`).
/// A connection pooler such as PgBouncer refuses the `options` startup parameter the
/// settings travel in, or, told to ignore it, drops them silently: then no statement
/// timeout, and plans that scan whole tables. The database raises the error itself, so
/// that it reaches the pool's error handler like any other refusal.
#[derive(Debug)]
struct SessionSetup(DatabaseTimeouts);

impl r2d2::CustomizeConnection<Pooled, postgres::Error> for SessionSetup {
    fn on_acquire(&self, client: &mut Pooled) -> Result<(), postgres::Error> {
        check_session_settings(client, self.0)?;
        // Only an optimisation: a session that cannot warm up (a read-only database
        // refuses even an UPDATE that matches nothing) still serves, and its orders
        // get the database's own answer, as they did before there was a warm-up.
        if let Err(e) = warm_up(client) {
            client.batch_execute("ROLLBACK")?;
            tracing::warn!("a new database session could not warm up: {e}");
        }
        Ok(())
    }
}

/// Plans, before the session's first order, the statements every order runs up to
/// its rejection for want of an account, in both directions, and the first of a
/// cancel. A session plans each statement of `place_order` the first time it runs it,
/// under the symbol's lock, which every other order on the symbol waits for: without
/// this, a server instance that starts under load makes all of them wait while its
/// new sessions plan. The account '' and the symbol 'warm-up' are outside their
/// domains, so no row can match, and the lock taken is keyed by the hash of a name no
/// symbol can have; the rollback leaves nothing. The trade paths stay for the first
/// orders to plan: reaching them inserts an order, which would take an order id.
fn warm_up(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute(
        "BEGIN;
         SELECT place_order('', 'warm-up', 1, 1);
         SELECT place_order('', 'warm-up', -1, 1);
         SELECT cancel_order('', 0);
         ROLLBACK",
    )
}

/// Fails, with the database's own error naming each setting that is not as sent, if
/// the session does not run under the settings `config` asks for.
fn check_session_settings(
    client: &mut Client,
    timeouts: DatabaseTimeouts,
) -> Result<(), postgres::Error> {
    let DatabaseTimeouts {
        statement_ms,
        idle_in_transaction_ms,
        ..
    } = timeouts;
    client.batch_execute(&format!(
        "DO $check$
             DECLARE
                 wrong text;
             BEGIN
                 SELECT string_agg(format('%s is %s, not %s', name, setting, wanted), '; ')
                   INTO wrong
                   FROM pg_settings
                   JOIN (VALUES ('enable_seqscan', 'off'),
                                ('plan_cache_mode', 'force_generic_plan'),
                                ('statement_timeout', '{statement_ms}'),
                                ('idle_in_transaction_session_timeout', '{idle_in_transaction_ms}'))
                        AS w(name, wanted) USING (name)
                  WHERE setting <> wanted;
                 IF wrong IS NOT NULL THEN
                     RAISE EXCEPTION 'the server''s session settings did not take effect (%): a '
                         'connection pooler may have dropped the options startup parameter; set '
                         'them for the role with ALTER ROLE ... SET (docs/deployment.md)', wrong;
                 END IF;
             END
             $check$"
    ))
}

/// Keeps the pool's last connection error: r2d2's own error says only "db error".
#[derive(Clone, Debug, Default)]
struct LastError(std::sync::Arc<std::sync::Mutex<Option<StoreError>>>);

impl LastError {
    fn take(&self) -> Option<StoreError> {
        self.0.lock().ok()?.take()
    }
}

impl r2d2::HandleError<postgres::Error> for LastError {
    fn handle_error(&self, error: postgres::Error) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(StoreError::from(error));
        }
    }
}

/// Why an order was not opened, as the database saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderRefusal {
    NoAccount,
    InsufficientFunds,
    InsufficientShares,
}

/// What opening an order did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    Opened(OrderId),
    Refused(OrderRefusal),
}

/// What a cancel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canceled {
    Canceled,
    NotFound,
    NothingOpen,
}

struct Statements {
    account_exists: Statement,
    create_account: Statement,
    issue_shares: Statement,
    place_order: Statement,
    cancel_order: Statement,
    order_state: Statement,
    fill_count: Statement,
    make_durable: Statement,
}

/// Appended to every statement that writes: its transaction commits without waiting for
/// the WAL flush, which `make_durable` does once for the whole request.
const COMMIT_DEFERRED: &str = "set_config('synchronous_commit', 'off', true)";

impl Statements {
    fn prepare(client: &mut Client) -> Result<Statements, postgres::Error> {
        Ok(Statements {
            account_exists: client.prepare("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)")?,
            create_account: client
                .prepare(&format!("SELECT create_account($1, $2), {COMMIT_DEFERRED}"))?,
            issue_shares: client
                .prepare(&format!("SELECT issue_shares($1, $2, $3), {COMMIT_DEFERRED}"))?,
            place_order: client.prepare(&format!(
                "SELECT rejection, order_id, {COMMIT_DEFERRED} FROM place_order($1, $2, $3, $4)"
            ))?,
            cancel_order: client
                .prepare(&format!("SELECT cancel_order($1, $2), {COMMIT_DEFERRED}"))?,
            order_state: client.prepare(
                "SELECT o.open_shares, o.canceled_shares, floor(extract(epoch FROM o.canceled_at))::bigint,
                        t.shares, t.price, floor(extract(epoch FROM t.traded_at))::bigint
                   FROM orders o
                   LEFT JOIN LATERAL (
                        SELECT id, shares, price, traded_at FROM trades WHERE buy_order_id = o.id
                        UNION ALL
                        SELECT id, shares, price, traded_at FROM trades WHERE sell_order_id = o.id
                   ) t ON true
                  WHERE o.id = $1 AND o.account_id = $2
                  ORDER BY t.id
                  LIMIT $3::bigint + 1",
            )?,
            fill_count: client.prepare(
                "SELECT (SELECT count(*) FROM trades WHERE buy_order_id = $1)
                      + (SELECT count(*) FROM trades WHERE sell_order_id = $1)",
            )?,
            // A commit waits for the WAL only if its transaction has an id and wrote
            // WAL; an empty transactional logical message is the smallest write that
            // gives it both. (Logical decoding consumers see it as a message with this
            // prefix; pgoutput passes messages on only to subscribers that ask.)
            // client_min_messages: a cluster, database or role set above `warning`
            // would hide the warning that a wait for a synchronous standby was
            // cancelled (see `make_durable`); set for this transaction alone, it
            // holds through the commit's wait.
            make_durable: client.prepare(
                "SELECT pg_logical_emit_message(true, 'exchange-server', ''),
                        set_config('client_min_messages', 'warning', true)",
            )?,
        })
    }
}

/// Which running PostgreSQL server a session is on: its cluster's system identifier
/// and its postmaster's start time. One session's wait for the WAL vouches for another
/// session's commits only when both are on the same server.
///
/// Why these two: a physical standby shares its primary's system identifier, so that
/// alone cannot tell an old primary from a promoted standby, but two running servers
/// were not started at the same microsecond. (Crash recovery keeps the postmaster and
/// its start time, but ends every session, and the flusher vouches only for requests
/// begun after its session opened; so a pooler in transaction mode, which would hide
/// that end, is not supported: docs/deployment.md.) The server's address identifies nothing: one
/// address may lead to several servers in turn (a proxy, a moved virtual IP), and one
/// server may have several. The timeline is not needed beside the start time, and as
/// SQL shows it (the last checkpoint's) it lags a fast promotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerId {
    system_identifier: i64,
    started_us: i64,
}

/// One pooled connection with its prepared statements, kept by a handler thread.
pub struct Session {
    client: PooledConnection<Manager>,
    statements: Statements,
    server: ServerId,
}

impl Session {
    pub fn open(pool: &Pool<Manager>) -> Result<Session, StoreError> {
        let mut client = pool
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string().into()))?;
        let statements = Statements::prepare(&mut client)?;
        let row = client.query_one(
            "SELECT system_identifier,
                    (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint
               FROM pg_control_system()",
            &[],
        )?;
        let server = ServerId {
            system_identifier: row.try_get(0)?,
            started_us: row.try_get(1)?,
        };
        crate::metrics::worker()
            .sessions_opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Session {
            client,
            statements,
            server,
        })
    }

    /// The server this session is on.
    pub fn server(&self) -> ServerId {
        self.server
    }

    /// True once the connection is gone or retired; the session must then be dropped.
    pub fn is_broken(&self) -> bool {
        self.client.retired || self.client.is_closed()
    }

    /// Runs `operation` as a whole, again after a deadlock or serialization failure.
    /// Every operation is one statement, so a failed attempt has changed nothing.
    fn retrying<T>(
        &mut self,
        mut operation: impl FnMut(&mut Client, &Statements) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut attempt = 1;
        loop {
            match operation(&mut self.client, &self.statements) {
                Ok(value) => return Ok(value),
                Err(e) if attempt < ATTEMPTS_MAX && is_transient(&e) => {
                    crate::metrics::worker()
                        .retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Back off a little, differently per attempt, so the rivals part ways.
                    std::thread::sleep(Duration::from_micros(200 * u64::from(attempt * attempt)));
                    attempt += 1;
                }
                Err(e) => return Err(StoreError::during_statement(e)),
            }
        }
    }

    pub fn account_exists(&mut self, account: &AccountId) -> Result<bool, StoreError> {
        self.retrying(|c, s| {
            c.query_one(&s.account_exists, &[&account.as_str()])?
                .try_get(0)
        })
    }

    pub fn create_account(
        &mut self,
        account: &AccountId,
        balance: Decimal,
    ) -> Result<bool, StoreError> {
        self.retrying(|c, s| {
            c.query_one(&s.create_account, &[&account.as_str(), &balance])?
                .try_get(0)
        })
    }

    /// Adds shares to a position, creating the symbol if new; false if no such account.
    pub fn issue_shares(
        &mut self,
        account: &AccountId,
        symbol: &Symbol,
        shares: Decimal,
    ) -> Result<bool, StoreError> {
        self.retrying(|c, s| {
            c.query_one(
                &s.issue_shares,
                &[&account.as_str(), &symbol.as_str(), &shares],
            )?
            .try_get(0)
        })
    }

    pub fn place_order(
        &mut self,
        account: &AccountId,
        symbol: &Symbol,
        amount: Decimal,
        limit: Decimal,
    ) -> Result<Placed, StoreError> {
        let row = self.retrying(|c, s| {
            c.query_one(
                &s.place_order,
                &[&account.as_str(), &symbol.as_str(), &amount, &limit],
            )
        })?;
        // The statement has committed: a result that does not read as the schema's
        // contract says is a broken invariant, never "not executed".
        let contract = |e: postgres::Error| -> ! { panic!("place_order's result: {e}") };
        let rejection: Option<&str> = row.try_get(0).unwrap_or_else(|e| contract(e));
        let placed = match rejection {
            None => Placed::Opened(OrderId(row.try_get(1).unwrap_or_else(|e| contract(e)))),
            Some("no_account") => Placed::Refused(OrderRefusal::NoAccount),
            Some("insufficient_funds") => Placed::Refused(OrderRefusal::InsufficientFunds),
            Some("insufficient_shares") => Placed::Refused(OrderRefusal::InsufficientShares),
            // The schema's function and this code are one contract (migrations/).
            Some(other) => panic!("place_order answered {other:?}, which the server does not know"),
        };
        Ok(placed)
    }

    pub fn cancel_order(
        &mut self,
        account: &AccountId,
        order: OrderId,
    ) -> Result<Canceled, StoreError> {
        let row =
            self.retrying(|c, s| c.query_one(&s.cancel_order, &[&account.as_str(), &order.0]))?;
        // Committed, as for place_order: a result that does not read is a broken invariant.
        let status: &str = row
            .try_get(0)
            .unwrap_or_else(|e| panic!("cancel_order's result: {e}"));
        match status {
            "canceled" => Ok(Canceled::Canceled),
            "not_found" => Ok(Canceled::NotFound),
            "not_open" => Ok(Canceled::NothingOpen),
            other => panic!("cancel_order answered {other:?}, which the server does not know"),
        }
    }

    /// Returns once the WAL is on disk up to this call: so everything this session has
    /// committed, and every commit its reads could have seen, survives a crash.
    ///
    /// Why that holds: a deferred commit writes its record before it becomes visible,
    /// the record written here follows every such record, and the WAL is flushed in
    /// order. (With the cluster itself set to `synchronous_commit = off` nothing waits,
    /// as its operator chose.)
    ///
    /// A warning about replication during the wait fails it: PostgreSQL warns, and yet
    /// reports success, when a commit's wait for a synchronous standby was cancelled
    /// (the transaction committed here but might not have been replicated), and a
    /// failover may then lose it. See [`note_warning`] for which warnings count.
    ///
    /// The wait is bounded by the statement timeout, which PostgreSQL does not apply
    /// to a commit's wait for a standby: past it the watchdog cancels the wait, and the
    /// session is retired, so that the next one goes to whichever host of the URL
    /// takes writes then (a primary cut off from its standbys may have been replaced).
    pub fn make_durable(&mut self) -> Result<(), StoreError> {
        WARNING.with(|w| w.take());
        let watch = watchdog::watch(&self.client.canceller);
        let waited = self.retrying(|c, s| c.execute(&s.make_durable, &[]));
        let cancelled = watch.finish();
        if cancelled {
            self.client.retired = true;
        }
        match (waited, WARNING.with(|w| w.take())) {
            // Durable. (A cancel that had landed would have left an error or a warning:
            // if one was sent, the wait ended first.)
            (Ok(_), None) => Ok(()),
            (waited, warning) if cancelled => {
                let why = waited
                    .err()
                    .map_or_else(|| warning.unwrap_or_default(), |e| e.to_string());
                Err(StoreError::NotConfirmed(format!(
                    "no confirmation within the statement timeout ({} ms), so the wait \
                     was cancelled: {why}",
                    self.client.canceller.bound.as_millis()
                )))
            }
            (Err(e), _) => Err(e),
            (Ok(_), Some(warning)) => Err(StoreError::NotConfirmed(warning)),
        }
    }

    /// The order's state if it exists and belongs to `account`, with its oldest
    /// `fills_max` fills at the most, and how many more it has.
    pub fn order_state(
        &mut self,
        account: &AccountId,
        order: OrderId,
        fills_max: i64,
    ) -> Result<Option<OrderState>, StoreError> {
        let rows = self
            .retrying(|c, s| c.query(&s.order_state, &[&order.0, &account.as_str(), &fills_max]))?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let canceled_shares: Decimal = first.try_get(1)?;
        let canceled_at: Option<i64> = first.try_get(2)?;
        let mut state = OrderState {
            open_shares: first.try_get(0)?,
            canceled: canceled_at.map(|time| (canceled_shares, time)),
            fills: Vec::with_capacity(rows.len()),
            fills_omitted: 0,
        };
        for row in &rows {
            let shares: Option<Decimal> = row.try_get(3)?;
            if let Some(shares) = shares {
                state.fills.push(Fill {
                    shares,
                    price: row.try_get(4)?,
                    time: row.try_get(5)?,
                });
            }
        }
        // One row more than fit was read: only then is it worth counting them all.
        if state.fills.len() as i64 > fills_max {
            state.fills.truncate(fills_max.max(0) as usize);
            let total: i64 = self
                .retrying(|c, s| c.query_one(&s.fill_count, &[&order.0]))?
                .try_get(0)?;
            state.fills_omitted = (total as u64).saturating_sub(state.fills.len() as u64);
        }
        Ok(Some(state))
    }
}

/// Deadlock and serialization failure: the operation may simply be run again.
fn is_transient(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
    )
}
