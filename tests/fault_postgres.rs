//! PostgreSQL restarted under load: during the outage requests get an `<error>` within
//! the request deadline, afterwards the same server serves again, and the audit holds.
//! PostgreSQL crashing: every result a client was told of is still there afterwards.
//!
//! Alone in its test binary: stopping the cluster must not disturb other tests
//! (cargo runs test binaries one after another).

mod common;

use common::{admin_url, audit_holds, balance, count, fresh_database, sql, Load, Outcome, Server};
use exchange::rejection::{is_service_failure, OUTCOME_UNKNOWN};

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Both tests restart the one cluster: one at a time.
static CLUSTER: Mutex<()> = Mutex::new(());

/// A PostgreSQL program (pg_ctl, initdb), run as the postgres user when we are root.
fn pg_tool(program: &str) -> Command {
    let bin =
        std::env::var("EXCHANGE_TEST_PG_BIN").expect("EXCHANGE_TEST_PG_BIN: run with scripts/test");
    let program = format!("{bin}/{program}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        // From /: the postgres user may not enter the repository (under /root, say).
        c.args(["-u", "postgres", "--", &program]).current_dir("/");
        c
    } else {
        Command::new(&program)
    }
}

/// Runs pg_ctl on the test cluster.
fn pg_ctl(args: &[&str]) {
    let data = std::env::var("EXCHANGE_TEST_PG_DATA")
        .expect("EXCHANGE_TEST_PG_DATA: run with scripts/test");
    let status = pg_tool("pg_ctl")
        .args([
            "-D",
            &data,
            // Silent: its progress lines would read like the test's own output.
            "-s",
            "-w",
            "-t",
            "60",
            "-l",
            &format!("{data}/server.log"),
        ])
        .args(args)
        .status()
        .expect("run pg_ctl");
    assert!(status.success(), "pg_ctl {args:?} failed");
}

/// A cluster-wide setting changed with ALTER SYSTEM for one test, reset when dropped.
struct ClusterSetting {
    url: String,
    name: &'static str,
}

impl ClusterSetting {
    fn set(url: &str, name: &'static str, value: &str) -> ClusterSetting {
        let mut db = sql(url);
        // Two statements: ALTER SYSTEM refuses to run in a (multi-statement) transaction.
        db.batch_execute(&format!("ALTER SYSTEM SET {name} = '{value}'"))
            .and_then(|()| db.batch_execute("SELECT pg_reload_conf()"))
            .expect("ALTER SYSTEM");
        // Background processes read the new value when they next wake.
        std::thread::sleep(Duration::from_millis(500));
        ClusterSetting {
            url: url.to_string(),
            name,
        }
    }
}

impl Drop for ClusterSetting {
    fn drop(&mut self) {
        let mut db = sql(&self.url);
        let reset = db
            .batch_execute(&format!("ALTER SYSTEM RESET {}", self.name))
            .and_then(|()| db.batch_execute("SELECT pg_reload_conf()"));
        if let Err(e) = reset {
            eprintln!("could not reset {}: {e}", self.name);
        }
    }
}

#[test]
fn every_answered_order_survives_a_crash_of_postgres_right_after() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let url = fresh_database("fault_pg_crash");
    // Orders commit without waiting for their WAL, and the answer waits for it instead.
    // Left alone, the WAL writer would write deferred commits within 200 ms anyway and
    // hide a missing wait; this test gives it 10 s.
    let _slow_writer = ClusterSetting::set(&url, "wal_writer_delay", "10s");
    let server = Server::start(&url, 2, &[]);
    server.send(r#"<create><account id="1" balance="1000"/></create>"#);
    let mut answered: Vec<i64> = Vec::new();
    for _ in 0..30 {
        let answer = server
            .send(r#"<transactions id="1"><order sym="X" amount="1" limit="2"/></transactions>"#);
        assert_eq!(answer[0].name, "opened", "{answer:?}");
        let id = answer[0]
            .attr("id")
            .expect("an id")
            .parse()
            .expect("a number");
        answered.push(id);
    }
    // An immediate stop is a crash: nothing is written on the way down, and the cluster
    // recovers from its WAL when it starts.
    pg_ctl(&["-m", "immediate", "stop"]);
    pg_ctl(&["start"]);
    let mut db = sql(&url);
    let kept: i64 = db
        .query_one(
            "SELECT count(*) FROM orders WHERE id = ANY ($1)",
            &[&answered],
        )
        .expect("count orders")
        .get(0);
    assert_eq!(kept, 30, "answered orders lost in the crash");
    assert_eq!(
        balance(&url, "1"),
        "940",
        "the reservations of the answered orders"
    );
    audit_holds(&url);
}

/// The server's backend that waits for a lock in `url`'s database, once there is one.
fn waiting_backend(url: &str) -> i32 {
    let mut db = sql(url);
    for _ in 0..200 {
        let row = db
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                  WHERE application_name = 'exchange-server' AND wait_event_type = 'Lock'
                    AND datname = current_database()",
                &[],
            )
            .expect("pg_stat_activity");
        if let Some(row) = row {
            return row.get(0);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no backend of the server waited for a lock");
}

#[test]
fn a_connection_lost_during_an_order_is_answered_outcome_unknown() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let url = fresh_database("fault_pg_lost");
    let server = Server::start(&url, 1, &["--threads", "1"]);
    server.send(r#"<create><account id="1" balance="1000"/></create>"#);
    // Hold the symbol's lock, so that the server's order waits inside place_order.
    let mut holder = sql(&url);
    let mut held = holder.transaction().expect("BEGIN");
    held.execute("SELECT pg_advisory_xact_lock(symbol_lock_key('X'))", &[])
        .expect("take the symbol's lock");
    let answer = std::thread::scope(|scope| {
        let order = scope.spawn(|| {
            server.send(
                r#"<transactions id="1"><order sym="X" amount="1" limit="2"/></transactions>"#,
            )
        });
        let backend = waiting_backend(&url);
        // SIGKILL makes PostgreSQL drop every connection and recover: to the server, its
        // connection just breaks in the middle of the statement.
        // SAFETY: kill takes plain integers.
        assert_eq!(unsafe { libc::kill(backend, libc::SIGKILL) }, 0);
        order.join().expect("the order's thread")
    });
    assert_eq!(answer[0].name, "error", "{answer:?}");
    assert!(
        answer[0].text.starts_with(OUTCOME_UNKNOWN),
        "a statement cut off may have committed: {answer:?}"
    );
    drop(held);
    // After recovery the server serves again, on a new connection.
    let started = Instant::now();
    loop {
        let answer = server.send(r#"<transactions id="1"><query id="1"/></transactions>"#);
        if answer[0].text.contains("no such order") || answer[0].name == "status" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{answer:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    audit_holds(&url);
}

/// The last statement each of the server's sessions in `url`'s database ran, by pid.
fn last_statements(url: &str) -> Vec<(i32, String)> {
    sql(url)
        .query(
            "SELECT pid, query FROM pg_stat_activity
              WHERE application_name = 'exchange-server' AND datname = current_database()",
            &[],
        )
        .expect("pg_stat_activity")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The flusher's session is the one that last asked for the WAL.
fn is_wait_for_wal(statement: &str) -> bool {
    statement.contains("pg_logical_emit_message")
}

/// The backend of the one session that waits for the WAL: the flusher's.
fn flusher_pid(url: &str) -> i32 {
    let flusher: Vec<i32> = last_statements(url)
        .into_iter()
        .filter(|(_, statement)| is_wait_for_wal(statement))
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(
        flusher.len(),
        1,
        "one session waits for the WAL: {flusher:?}"
    );
    flusher[0]
}

#[test]
fn an_order_begun_before_the_flusher_lost_its_session_is_vouched_for_by_its_own() {
    // Other tests here restart the cluster, which would end every session.
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let url = fresh_database("fault_pg_flusher");
    // One worker, so that every order goes through the one flusher.
    let server = Server::start(&url, 1, &["--threads", "2"]);
    let order = |sym: &str| {
        let xml = format!(
            r#"<transactions id="1"><order sym="{sym}" amount="1" limit="2"/></transactions>"#
        );
        let answer = server.send(&xml);
        assert_eq!(answer[0].name, "opened", "{answer:?}");
    };
    server.send(r#"<create><account id="1" balance="1000"/></create>"#);
    order("Y");
    let flusher = flusher_pid(&url);

    let mut holder = sql(&url);
    let mut held = holder.transaction().expect("BEGIN");
    held.execute("SELECT pg_advisory_xact_lock(symbol_lock_key('X'))", &[])
        .expect("take the symbol's lock");
    let waiting = std::thread::scope(|scope| {
        // The order on X begins, and waits for the symbol's lock.
        let blocked = scope.spawn(|| order("X"));
        let waiting = waiting_backend(&url);
        let mut db = sql(&url);
        db.execute("SELECT pg_terminate_backend($1)", &[&flusher])
            .expect("end the flusher's session");
        // An order on the other handler meets the ended session, and the flusher opens
        // a new one: younger than the order on X, so it cannot vouch for it.
        order("Y");
        drop(held);
        blocked.join().expect("the order on X");
        waiting
    });
    let vouched = last_statements(&url)
        .into_iter()
        .any(|(pid, statement)| pid == waiting && is_wait_for_wal(&statement));
    assert!(
        vouched,
        "the order on X must be made durable by the session that placed it"
    );
    order("Z");
    audit_holds(&url);
}

#[test]
fn a_postgres_restart_under_load_gives_errors_not_hangs_and_then_service_resumes() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(
        &fresh_database("fault_pg"),
        2,
        &["--request-timeout-ms", "10000"],
    );
    let load = Load::start(&server, 6, "R");
    std::thread::sleep(Duration::from_millis(700));
    let down_at = Instant::now();
    pg_ctl(&["-m", "fast", "stop"]);
    std::thread::sleep(Duration::from_secs(3));
    pg_ctl(&["start"]);
    let up_at = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let outcomes = load.finish();

    let mut outage_errors = 0;
    for (at, outcome) in &outcomes {
        match outcome {
            Outcome::Answered { errors } => {
                for e in errors {
                    // Outcome unknown: the database went away between a request's
                    // commits and the wait for their durability.
                    let outage = is_service_failure(e);
                    assert!(
                        e.contains("insufficient") || outage,
                        "unexpected error {e:?}"
                    );
                    if outage {
                        outage_errors += 1;
                        // Only around the outage, never long after the database is back.
                        assert!(
                            *at + Duration::from_secs(11) > down_at,
                            "error before the outage: {e}"
                        );
                        assert!(
                            *at < up_at + Duration::from_secs(2),
                            "error long after the restart: {e}"
                        );
                    }
                }
            }
            other => panic!("a request was not answered: {other:?}"),
        }
    }
    let served_after = outcomes
        .iter()
        .filter(|(at, o)| {
            *at > up_at + Duration::from_secs(2)
                && matches!(o, Outcome::Answered { errors } if errors.is_empty())
        })
        .count();
    eprintln!(
        "{} requests; {outage_errors} errors during the outage; {served_after} served after it",
        outcomes.len()
    );
    assert!(outage_errors > 0, "the outage went unnoticed");
    assert!(served_after > 10, "service did not resume: {served_after}");
    audit_holds(&server.url);
}

#[test]
fn the_first_request_after_a_quiet_restart_succeeds() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(&fresh_database("fault_pg_quiet"), 2, &[]);
    server.send(r#"<create><account id="1" balance="1000"/></create>"#);
    // Give every handler thread a session, then end them all with a restart.
    for _ in 0..20 {
        assert_eq!(
            server.send(
                r#"<transactions id="1"><order sym="X" amount="1" limit="1"/></transactions>"#
            )[0]
            .name,
            "opened"
        );
    }
    pg_ctl(&["-m", "fast", "restart"]);
    for _ in 0..20 {
        let answer = server
            .send(r#"<transactions id="1"><order sym="X" amount="1" limit="1"/></transactions>"#);
        assert_eq!(answer[0].name, "opened", "{answer:?}");
    }
}

/// Cancels, until `answered` is set, every wait of the server's sessions for a
/// synchronous standby in `url`'s database, as an operator might; returns how many.
fn cancel_waits_for_the_standby(url: &str, answered: &std::sync::atomic::AtomicBool) -> i64 {
    let mut db = sql(url);
    let mut canceled = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answered.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity
                  WHERE application_name = 'exchange-server' AND wait_event = 'SyncRep'
                    AND datname = current_database()",
                &[],
            )
            .expect("pg_cancel_backend")
            .get(0);
        canceled += n;
        std::thread::sleep(Duration::from_millis(100));
    }
    canceled
}

/// PostgreSQL answers a commit whose wait for a synchronous standby was cancelled with
/// a warning and a success: the transaction committed on the primary, but a failover to
/// the standby may lose it. The client must hear "outcome unknown", never a success.
#[test]
fn a_commit_whose_wait_for_the_standby_was_cancelled_is_not_a_success() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let url = fresh_database("fault_pg_syncrep");
    // A database set to hide warnings from its clients must not hide this one.
    let name = url.rsplit('/').next().expect("a database name");
    sql(&admin_url())
        .batch_execute(&format!(
            "ALTER DATABASE {name} SET client_min_messages = error"
        ))
        .expect("ALTER DATABASE");
    let server = Server::start(&url, 1, &[]);
    server.send(r#"<create><account id="1" balance="1000"/></create>"#);
    // A standby that never connects: every commit that waits for it waits until cancelled.
    let standby = ClusterSetting::set(&url, "synchronous_standby_names", "no_such_standby");
    let answered = std::sync::atomic::AtomicBool::new(false);
    let (answer, canceled) = std::thread::scope(|scope| {
        let canceler = scope.spawn(|| cancel_waits_for_the_standby(&url, &answered));
        let answer = server
            .send(r#"<transactions id="1"><order sym="X" amount="1" limit="2"/></transactions>"#);
        answered.store(true, std::sync::atomic::Ordering::SeqCst);
        (answer, canceler.join().expect("the canceler"))
    });
    drop(standby);
    assert!(canceled >= 1, "no wait for the standby was seen");
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0].name, "error", "{answer:?}");
    assert!(
        answer[0].text.starts_with("outcome unknown"),
        "{}",
        answer[0].text
    );
    // It did commit on the primary, as PostgreSQL said.
    assert_eq!(count(&url, "SELECT count(*) FROM orders"), 1);
    audit_holds(&url);
}

/// A primary cut off from its synchronous standbys but not from the servers: every
/// commit that waits for a standby waits until cancelled, and PostgreSQL's
/// statement_timeout does not count that wait. The server bounds it by the statement
/// timeout itself, answers "outcome unknown" (the flusher's wait, then the handler's
/// own, each within the bound), leaves no session waiting, and serves again once a
/// standby is no longer needed, without a restart.
#[test]
fn a_wait_for_a_standby_that_never_answers_ends_within_the_statement_timeout() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let url = fresh_database("fault_pg_syncrep_bound");
    let mut server = Server::start(&url, 1, &["--statement-timeout-ms", "1000"]);
    server.send(r#"<create><account id="1" balance="1000"/></create>"#);
    let order = r#"<transactions id="1"><order sym="X" amount="1" limit="2"/></transactions>"#;
    let sessions = "SELECT pid FROM pg_stat_activity
                     WHERE application_name = 'exchange-server' AND datname = current_database()";
    let pids = |db: &mut postgres::Client| -> Vec<i32> {
        let rows = db.query(sessions, &[]).expect("the server's sessions");
        rows.iter().map(|row| row.get(0)).collect()
    };
    let mut db = sql(&url);
    let before = pids(&mut db);
    let standby = ClusterSetting::set(&url, "synchronous_standby_names", "no_such_standby");
    let began = Instant::now();
    let answer = server.try_send(order).expect("an answer, not a hang");
    let waited = began.elapsed();
    let answer = exchange::protocol::reply::read_reply(answer.as_bytes()).expect("an answer");
    assert_eq!(answer[0].name, "error", "{answer:?}");
    assert!(
        answer[0].text.starts_with("outcome unknown") && answer[0].text.contains("1000 ms"),
        "{}",
        answer[0].text
    );
    // Two waits of 1 s, each cancelled within a tick of its bound, and the time to send
    // the cancels: anything near the client's 30 s would be a hang.
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    let waiting = "SELECT count(*) FROM pg_stat_activity
                    WHERE application_name = 'exchange-server' AND wait_event = 'SyncRep'
                      AND datname = current_database()";
    assert_eq!(
        count(&url, waiting),
        0,
        "a session still waits for the standby"
    );
    // The flusher's session and the handler's waited: both were given up, not handed
    // out again by the pool.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = pids(&mut db);
        let gone = before.iter().filter(|pid| !now.contains(pid)).count();
        if gone >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sessions that waited are still open: {before:?} then {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(standby);
    let answer = server.send(order);
    assert_eq!(answer[0].name, "opened", "{answer:?}");
    // Both orders committed on the primary; only the second was confirmed.
    assert_eq!(count(&url, "SELECT count(*) FROM orders"), 2);
    audit_holds(&url);
    let stopping = Instant::now();
    assert!(server.stop().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the stop waited"
    );
}

/// A second cluster of the test's own on 127.0.0.1, removed when dropped: the other
/// writable server of a split.
struct SecondCluster {
    data: std::path::PathBuf,
    port: u16,
}

impl SecondCluster {
    fn start() -> SecondCluster {
        let data = common::postgres_scratch_dir("second-pg");
        let port = common::free_port();
        let cluster = SecondCluster { data, port };
        let initdb = pg_tool("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args(["-A", "trust", "-U", "postgres", "--no-locale"])
            .output()
            .expect("initdb");
        assert!(initdb.status.success(), "initdb: {initdb:?}");
        let options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            cluster.data.display()
        );
        let start = pg_tool("pg_ctl")
            .arg("-D")
            .arg(&cluster.data)
            .args(["-s", "-w", "-o", &options, "-l"])
            .arg(cluster.data.join("server.log"))
            .arg("start")
            .status();
        assert!(start.is_ok_and(|s| s.success()), "start the second cluster");
        cluster
    }
}

impl Drop for SecondCluster {
    fn drop(&mut self) {
        let _ = pg_tool("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-s", "-m", "immediate", "stop"])
            .status();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The split of two writable servers: a standby promoted while the old primary still
/// runs. The server's sessions follow a multi-host URL, and the flusher's new session
/// lands on the other server while the handlers stay where they were. A wait for the
/// WAL there says nothing about the handlers' commits: every acknowledged order must
/// survive a crash of the server that made it.
#[test]
fn a_flush_on_another_server_vouches_for_nothing() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let url = fresh_database("fault_pg_split");
    let name = url.rsplit('/').next().expect("a database name").to_string();
    let first = common::port_of(&url);
    let second = SecondCluster::start();
    let second_url = format!("postgres://postgres@127.0.0.1:{}/postgres", second.port);
    sql(&second_url)
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("the database on the other server");
    let second_db = format!("postgres://postgres@127.0.0.1:{}/{name}", second.port);
    exchange::migrations::migrate(&mut sql(&second_db)).expect("its schema");

    // As in the crash test: deferred commits reach the disk only when someone waits.
    let _slow_writer = ClusterSetting::set(&admin_url(), "wal_writer_delay", "10s");
    let both = format!(
        "host=127.0.0.1,127.0.0.1 port={first},{} user=postgres dbname={name} \
         target_session_attrs=read-write",
        second.port
    );
    let server = Server::start(&both, 1, &["--threads", "2"]);
    server.send(r#"<create><account id="1" balance="1000"/></create>"#);
    let order = || {
        server.send(r#"<transactions id="1"><order sym="X" amount="1" limit="2"/></transactions>"#)
    };
    assert_eq!(order()[0].name, "opened");
    // Both handlers take their sessions on the first server before the split: queries
    // in parallel until the flusher and two handlers have used theirs. (The pool also
    // keeps idle connections, which have run nothing but the read-write check, the
    // settings check and the warm-up; one of those could otherwise take a handler to
    // the other server.)
    let idle = |statement: &str| {
        statement.is_empty()
            || statement.starts_with("SHOW ")
            || statement.starts_with("DO $check$")
            || statement.contains("'warm-up'")
    };
    let used = || {
        last_statements(&url)
            .into_iter()
            .filter(|(_, statement)| !idle(statement))
            .count()
    };
    for _ in 0..50 {
        if used() == 3 {
            break;
        }
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    server.send(r#"<transactions id="1"><query id="1"/></transactions>"#)
                });
            }
        });
    }
    assert_eq!(used(), 3, "the flusher and two handlers");

    // The first server takes no new writable session (the sessions it has keep
    // writing), and the flusher's session there ends: it reopens on the second.
    let mut admin = sql(&admin_url());
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} SET default_transaction_read_only = on"
        ))
        .expect("ALTER DATABASE");
    let flusher = flusher_pid(&url);
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&flusher])
        .expect("end the flusher's session");

    let mut acknowledged: Vec<i64> = Vec::new();
    for _ in 0..30 {
        let answer = order();
        if answer[0].name == "opened" {
            let id = answer[0].attr("id").expect("an id");
            acknowledged.push(id.parse().expect("a number"));
        }
    }
    let split = last_statements(&second_db)
        .iter()
        .any(|(_, statement)| is_wait_for_wal(statement));
    assert!(split, "the flusher's session should be on the other server");
    assert!(
        acknowledged.len() >= 25,
        "{} acknowledged",
        acknowledged.len()
    );

    // The first server crashes: what it had not flushed is gone.
    pg_ctl(&["-m", "immediate", "stop"]);
    pg_ctl(&["start"]);
    admin = sql(&admin_url());
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} RESET default_transaction_read_only"
        ))
        .expect("ALTER DATABASE");
    let kept: i64 = sql(&url)
        .query_one(
            "SELECT count(*) FROM orders WHERE id = ANY ($1)",
            &[&acknowledged],
        )
        .expect("count orders")
        .get(0);
    assert_eq!(
        kept,
        acknowledged.len() as i64,
        "acknowledged orders lost: vouched for by a flush on the other server"
    );
    audit_holds(&url);
}
