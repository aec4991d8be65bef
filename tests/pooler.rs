//! The server behind a connection pooler: Debian's PgBouncer, run with
//! `deploy/pgbouncer.ini` as shipped. PgBouncer drops the session settings the server
//! sends (`ignore_startup_parameters = options`): the server must refuse to start,
//! naming them, rather than run without a statement timeout; with the settings set for
//! its role by the statements `docs/deployment.md` shows, it serves through the pooler.

mod common;

use common::netns::is_root;
use common::{admin_url, sql, Server};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A PgBouncer of the test's own on a free port, in front of the test cluster, with
/// the roles in `users` allowed; stopped when dropped.
struct Pooler {
    dir: PathBuf,
    port: u16,
}

impl Pooler {
    fn start(name: &str, users: &[&str]) -> Pooler {
        assert!(
            Path::new(PGBOUNCER).exists(),
            "{PGBOUNCER} is missing: install pgbouncer (scripts/test does)"
        );
        let dir = common::postgres_scratch_dir(&format!("pgbouncer-{name}"));
        let port = common::free_port();
        let database_port = common::port_of(&admin_url()).to_string();
        let auth_file = dir.join("users.txt");
        let users: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
        std::fs::write(&auth_file, users).expect("users.txt");
        let shipped =
            std::fs::read_to_string("deploy/pgbouncer.ini").expect("deploy/pgbouncer.ini");
        let config = shipped
            .replace("@PGHOST@", "127.0.0.1")
            .replace("@PGPORT@", &database_port)
            .replace("@LISTEN_ADDR@", "127.0.0.1")
            .replace("@LISTEN_PORT@", &port.to_string())
            .replace("@AUTH_TYPE@", "trust")
            .replace("@AUTH_FILE@", &auth_file.display().to_string())
            .replace("@RUN_DIR@", &dir.display().to_string());
        assert!(!config.contains('@'), "a placeholder left: {config}");
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(&ini, config).expect("pgbouncer.ini");
        // PgBouncer refuses to run as root.
        let mut command = if is_root() {
            let chown = Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&dir)
                .status();
            assert!(
                chown.is_ok_and(|s| s.success()),
                "chown the pooler's folder"
            );
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", PGBOUNCER]).current_dir("/");
            c
        } else {
            Command::new(PGBOUNCER)
        };
        let status = command
            .arg("-d")
            .arg(&ini)
            .status()
            .expect("start pgbouncer");
        assert!(status.success(), "pgbouncer did not start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Pooler { dir, port }
    }

    fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A role of its own with a database it owns, at the server's schema version.
fn role_and_database(name: &str) -> (String, String) {
    let role = format!("{name}_{}", std::process::id());
    let mut admin = sql(&admin_url());
    // One statement each: CREATE and DROP DATABASE refuse to run in a transaction.
    for statement in [
        format!("DROP DATABASE IF EXISTS {role}"),
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
        format!("CREATE DATABASE {role} OWNER {role}"),
    ] {
        admin
            .batch_execute(&statement)
            .expect("a role and its database");
    }
    let admin_url = admin_url();
    let (base, _) = admin_url.rsplit_once('/').expect("a URL with a database");
    let direct = format!("{base}/{role}").replacen("postgres@", &format!("{role}@"), 1);
    exchange::migrations::migrate(&mut sql(&direct)).expect("the role's schema");
    (role.clone(), role)
}

/// The SQL block of docs/deployment.md's section on poolers, for role `role`.
fn documented_role_settings(role: &str) -> String {
    let doc = std::fs::read_to_string("docs/deployment.md").expect("docs/deployment.md");
    let section = doc
        .split("## Connection poolers")
        .nth(1)
        .expect("a section on connection poolers");
    let block = section
        .split("```sql\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("an sql block");
    assert!(block.contains("ALTER ROLE exchange SET"), "{block}");
    block.replace("ALTER ROLE exchange ", &format!("ALTER ROLE {role} "))
}

#[test]
fn through_a_pooler_that_drops_the_settings_the_server_refuses_to_start() {
    let (role, database) = role_and_database("pooled_bare");
    let pooler = Pooler::start("bare", &[&role]);
    let mut server = Command::new(common::server_bin())
        .args(["--port", "0", "--bind", "127.0.0.1", "--workers", "1"])
        .arg("--database-url")
        .arg(pooler.url(&role, &database))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run exchange-server");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.try_wait().expect("wait for the server") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            let _ = server.wait();
            panic!("the server ran through the pooler without its session settings");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().expect("stderr"), &mut log)
        .expect("the server's log");
    assert!(!status.success(), "{log}");
    for named in [
        "session settings did not take effect",
        "plan_cache_mode is auto, not force_generic_plan",
        "statement_timeout is 0, not 10000",
        "docs/deployment.md",
    ] {
        assert!(log.contains(named), "{named:?} not in: {log}");
    }
    assert_eq!(log.lines().count(), 1, "one line: {log}");
}

#[test]
fn with_the_settings_set_for_its_role_the_server_serves_through_the_pooler() {
    let (role, database) = role_and_database("pooled_set");
    sql(&admin_url())
        .batch_execute(&documented_role_settings(&role))
        .expect("the statements docs/deployment.md shows");
    let pooler = Pooler::start("set", &[&role]);
    let server = Server::start(&pooler.url(&role, &database), 2, &[]);
    let created = server.send(
        r#"<create><account id="1" balance="100"/><symbol sym="P"><account id="1">5</account></symbol></create>"#,
    );
    assert!(created.iter().all(|i| i.name == "created"), "{created:?}");
    let answer = server
        .send(r#"<transactions id="1"><order sym="P" amount="-5" limit="2"/></transactions>"#);
    assert_eq!(answer[0].name, "opened", "{answer:?}");
}
