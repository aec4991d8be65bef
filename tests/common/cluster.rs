//! A PostgreSQL cluster of a test's own, on a free port of 127.0.0.1, for what the shared
//! test cluster cannot be: one that asks for passwords, or speaks TLS. Run as the
//! postgres user when the tests run as root; stopped and removed when dropped.

use std::path::PathBuf;
use std::process::Command;

pub struct Cluster {
    pub data: PathBuf,
    pub port: u16,
}

fn pg_bin(program: &str) -> String {
    let bin =
        std::env::var("EXCHANGE_TEST_PG_BIN").expect("EXCHANGE_TEST_PG_BIN: run with scripts/test");
    format!("{bin}/{program}")
}

/// `program` with `args`, as the postgres user when we are root, from / (which that
/// user may enter); fails the test with its output unless it succeeds.
fn as_postgres(program: &str, args: &[&str]) {
    let mut command = if super::netns::is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        Command::new(program)
    };
    let output = command
        .args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        super::output_text(&output)
    );
}

impl Cluster {
    /// initdb with `initdb_args`, then `settings` appended to postgresql.conf, then a
    /// start listening on 127.0.0.1 only.
    pub fn start(name: &str, initdb_args: &[&str], settings: &[&str]) -> Cluster {
        let data = super::postgres_scratch_dir(name).join("pgdata");
        let port = super::free_port();
        let path = data.to_str().expect("a path").to_string();
        let mut args = vec!["-D", path.as_str(), "-U", "postgres", "--no-locale", "-N"];
        args.extend(initdb_args);
        as_postgres(&pg_bin("initdb"), &args);
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        for setting in settings {
            text.push_str(setting);
            text.push('\n');
        }
        std::fs::write(&conf, text).expect("postgresql.conf");
        let cluster = Cluster { data, port };
        cluster.resume();
        cluster
    }

    /// Starts the cluster's server (again).
    pub fn resume(&self) {
        let path = self.data.to_str().expect("a path");
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={path}",
            self.port
        );
        let log = format!("{path}/server.log");
        as_postgres(
            &pg_bin("pg_ctl"),
            &[
                "-D", path, "-s", "-w", "-t", "60", "-o", &options, "-l", &log, "start",
            ],
        );
    }

    /// Stops the cluster's server at once, ending every session.
    pub fn halt(&self) {
        let path = self.data.to_str().expect("a path");
        as_postgres(
            &pg_bin("pg_ctl"),
            &["-D", path, "-s", "-w", "-m", "immediate", "stop"],
        );
    }

    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL as postgres over the local socket (which every cluster here trusts).
    pub fn sql(&self, sql: &str) {
        let socket = self.data.to_str().expect("a path");
        as_postgres(
            "psql",
            &[
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                socket,
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ],
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let path = self.data.to_str().unwrap_or_default().to_string();
        let mut command = if super::netns::is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", &pg_bin("pg_ctl")]);
            command
        } else {
            Command::new(pg_bin("pg_ctl"))
        };
        // Quietly: this may run while a failed test unwinds.
        let _ = command
            .args(["-D", &path, "-s", "-m", "immediate", "stop"])
            .current_dir("/")
            .output();
        if let Some(dir) = self.data.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
