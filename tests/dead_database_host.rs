//! A database host that dies without a word must not hang the server. Two hosts made
//! of network namespaces (the server's and the database's, see common/netns.rs): under
//! load, the database host's link goes down and its
//! PostgreSQL is SIGKILLed, so no reset ever reaches the server. Every request must
//! still be answered, with an error, within a bound; once the host is back, service
//! must resume without restarting the server; and no acknowledged order may be lost.
//!
//! Needs root (namespaces, and PostgreSQL run as the postgres user), as in CI.

mod common;

use common::netns::{is_root, run, Host, Network};
use common::{audit_holds, count, Load, Outcome, Server};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long the database host stays dead: longer than any bound the server keeps, so
/// a handler stuck in TCP retransmission shows as an unanswered request.
const DEAD_FOR: Duration = Duration::from_secs(12);
/// The longest a request may wait for its answer while the host is dead: the TCP user
/// timeout, a connect timeout and a margin.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// How soon after the host is back the server must serve again.
const RESUME_WITHIN: Duration = Duration::from_secs(20);

/// A PostgreSQL cluster of its own, listening only on the db host's address, with the
/// distribution's default durability.
struct Database {
    data: std::path::PathBuf,
    namespace: String,
    address: String,
}

impl Database {
    fn create(db: &Host, app: &Host) -> Database {
        let data = common::postgres_scratch_dir("dead-host-pg");
        let database = Database {
            data,
            namespace: db.namespace.clone(),
            address: db.address.clone(),
        };
        database.pg(
            &["initdb", "-A", "trust", "-U", "postgres", "--no-locale"],
            &[],
        );
        let hba = database.data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        rules.push_str(&format!("host all all {}/32 trust\n", app.address));
        std::fs::write(&hba, rules).expect("pg_hba.conf");
        database.start();
        database
    }

    /// Runs a pg_ctl or initdb command on the cluster, in the db host, as postgres.
    fn pg(&self, command: &[&str], extra: &[&str]) {
        let bin = std::env::var("EXCHANGE_TEST_PG_BIN")
            .expect("EXCHANGE_TEST_PG_BIN: run with scripts/test");
        let program = format!("{bin}/{}", command[0]);
        let data = self.data.to_str().expect("a path");
        let mut args = vec![
            "netns",
            "exec",
            &self.namespace,
            "runuser",
            "-u",
            "postgres",
            "--",
        ];
        args.push(&program);
        args.extend(["-D", data]);
        args.extend(&command[1..]);
        args.extend(extra);
        run("ip", &args);
    }

    fn start(&self) {
        let options = format!(
            "-c listen_addresses={} -c port=5432 -c unix_socket_directories={}",
            self.address,
            self.data.display()
        );
        let log = self.data.join("server.log");
        self.pg(
            &["pg_ctl", "-s", "-w", "-t", "60", "start"],
            &["-o", &options, "-l", log.to_str().expect("a path")],
        );
    }

    /// Kills the postmaster and every backend at once: nothing is said to the clients.
    fn kill(&self) {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("postmaster.pid")
            .lines()
            .next()
            .expect("the postmaster's pid")
            .to_string();
        let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
        run("kill", &["-KILL", &pid]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@{}:5432/postgres", self.address)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Quietly: this may run while a failed test unwinds.
        let bin = std::env::var("EXCHANGE_TEST_PG_BIN").unwrap_or_default();
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{bin}/pg_ctl")])
            .args(["-s", "-m", "immediate", "stop", "-D"])
            .arg(&self.data)
            .current_dir("/")
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[test]
fn a_database_host_that_dies_silently_gets_answers_not_hangs_and_service_resumes() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root (CI runs as root)");
        return;
    }
    let network = Network::new();
    let app = network.host("app", 1);
    let db = network.host("db", 2);
    let database = Database::create(&db, &app);
    let url = database.url();
    app.enter(|| {
        exchange::migrations::migrate(&mut common::sql(&url)).expect("the schema");
        let server = Server::start(&url, 2, &[]);
        let load = Load::start(&server, 6, "DEAD");
        std::thread::sleep(Duration::from_secs(2));

        db.set_link(false);
        database.kill();
        let died = Instant::now();
        // A request sent while the host is dead: answered, with an error, in time.
        std::thread::sleep(Duration::from_secs(2));
        let asked = Instant::now();
        let answer = server
            .try_send(
                r#"<transactions id="0"><order sym="DEAD" amount="1" limit="1"/></transactions>"#,
            )
            .unwrap_or_else(|e| panic!("no answer while the database host was dead: {e}"));
        let waited = asked.elapsed();
        assert!(
            waited < ANSWER_WITHIN,
            "a request waited {waited:?} for its answer"
        );
        assert!(answer.contains("<error"), "{answer}");
        std::thread::sleep(DEAD_FOR.saturating_sub(died.elapsed()));

        db.set_link(true);
        database.start();
        let back = Instant::now();
        let resumed = loop {
            let answer = server.try_send(
                r#"<transactions id="1"><order sym="DEAD" amount="1" limit="1"/></transactions>"#,
            );
            if answer.is_ok_and(|a| a.contains("<opened")) {
                break back.elapsed();
            }
            assert!(
                back.elapsed() < RESUME_WITHIN,
                "no order succeeded {RESUME_WITHIN:?} after the database came back"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        std::thread::sleep(Duration::from_secs(1));
        let outcomes = load.finish();
        eprintln!(
            "dead database host: a request answered in {waited:?} while it was dead; \
             service resumed {resumed:?} after it came back"
        );

        // Every request of the load was answered, in time.
        let unanswered: Vec<_> = outcomes
            .iter()
            .filter(|(_, outcome)| !matches!(outcome, Outcome::Answered { .. }))
            .collect();
        assert!(unanswered.is_empty(), "unanswered requests: {unanswered:?}");
        // Every acknowledged order is in the database that came back.
        let acknowledged = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Answered { errors } if errors.is_empty()))
            .count() as i64;
        let kept = count(&url, "SELECT count(*) FROM orders WHERE symbol = 'DEAD'");
        assert!(
            kept > acknowledged,
            "{acknowledged} orders acknowledged, {kept} in the database (one more was placed after)"
        );
        audit_holds(&url);
    });
}
