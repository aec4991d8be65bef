//! Shared by the integration tests: a fresh database per test, the exchange driven
//! in-process against it, and the real `exchange-server` binary over TCP.
//!
//! Tests need a real PostgreSQL; `scripts/test` starts one and exports its URL as
//! `EXCHANGE_TEST_DATABASE_URL`. Without it a test fails, never skips.

#![allow(dead_code)]

pub mod cluster;
pub mod netns;

use clap::Parser;
use exchange::protocol::reply::read_reply;
use exchange::protocol::tree::Element;
use exchange::server::signals::Stop;
use exchange::server::{worker, Settings};
use exchange::store;
use exchange::wire::frame;
use postgres::NoTls;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The URL of a database on the test cluster where databases may be created.
pub fn admin_url() -> String {
    std::env::var("EXCHANGE_TEST_DATABASE_URL")
        .expect("EXCHANGE_TEST_DATABASE_URL is not set: run the tests with scripts/test")
}

/// Creates an empty database with the schema applied and returns its URL.
pub fn fresh_database(hint: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t_{}_{}_{}",
        hint.to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let admin = admin_url();
    let mut client = postgres::Client::connect(&admin, NoTls).expect("connect to the test cluster");
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        client
            .batch_execute(&statement)
            .expect("create a test database");
    }
    let url = with_database(&admin, &name);
    let mut client = postgres::Client::connect(&url, NoTls).expect("connect to the test database");
    exchange::migrations::migrate(&mut client).expect("migrate the test database");
    url
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let slash = base.rfind('/').expect("URL with a database path");
    let tail = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{tail}", &base[..slash])
}

pub fn sql(url: &str) -> postgres::Client {
    postgres::Client::connect(url, NoTls).expect("connect to the test database")
}

/// A worker of the exchange run in this process (`server::worker::serve`, no fork) on
/// its own database and a port of its own, spoken to over TCP like the real server.
pub struct Exchange {
    pub url: String,
    pub addr: SocketAddr,
    stop: Stop,
    worker: Option<std::thread::JoinHandle<i32>>,
}

impl Exchange {
    pub fn new(hint: &str) -> Exchange {
        let url = fresh_database(hint);
        Exchange::on(&url)
    }

    /// A worker with one handler thread, so that requests run one at a time in the
    /// order sent, and the server's default bounds.
    pub fn on(url: &str) -> Exchange {
        Exchange::with(url, &["--threads", "1"])
    }

    /// A worker under the server's flags `args`.
    pub fn with(url: &str, args: &[&str]) -> Exchange {
        let settings = Settings::try_parse_from(["exchange-server"].iter().chain(args))
            .expect("the worker's settings");
        let timeouts = settings.database_timeouts();
        let config = store::config(url, timeouts).expect("test URL");
        let pool = store::pool(config, settings.threads as u32 + 1, timeouts).expect("pool");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let addr = listener.local_addr().expect("its address");
        let stop = Stop::own_flag();
        let worker = {
            let stop = stop.clone();
            std::thread::spawn(move || worker::serve(listener, pool, &[], &settings, stop))
        };
        Exchange {
            url: url.to_string(),
            addr,
            stop,
            worker: Some(worker),
        }
    }

    /// The raw answer to a request document.
    pub fn raw(&mut self, xml: &str) -> String {
        let answer = exchange::wire::round_trip(self.addr, xml.as_bytes(), Duration::from_secs(30))
            .expect("an answer from the worker");
        String::from_utf8(answer).expect("UTF-8 answer")
    }

    /// Stops the worker and returns its exit code, once it has wound down.
    pub fn stop(mut self) -> i32 {
        self.stop.request();
        self.worker
            .take()
            .map_or(0, |w| w.join().expect("the worker's thread"))
    }

    /// The answer's items.
    pub fn send(&mut self, xml: &str) -> Vec<Element> {
        read_reply(self.raw(xml).as_bytes()).expect("a well-formed answer")
    }

    /// Sends one `<transactions>` with the given children for `account`.
    pub fn tx(&mut self, account: &str, children: &str) -> Vec<Element> {
        self.send(&format!(
            "<transactions id=\"{account}\">{children}</transactions>"
        ))
    }

    /// Creates accounts and, per `(symbol, account, shares)`, positions; asserts success.
    pub fn setup(&mut self, accounts: &[(&str, &str)], positions: &[(&str, &str, &str)]) {
        let mut xml = String::from("<create>");
        for (id, balance) in accounts {
            xml += &format!("<account id=\"{id}\" balance=\"{balance}\"/>");
        }
        for (sym, id, shares) in positions {
            xml +=
                &format!("<symbol sym=\"{sym}\"><account id=\"{id}\">{shares}</account></symbol>");
        }
        xml += "</create>";
        for item in self.send(&xml) {
            assert_eq!(item.name, "created", "setup failed: {item:?}");
        }
    }

    /// Places an order and returns its id; panics if it is not opened.
    pub fn order(&mut self, account: &str, sym: &str, amount: &str, limit: &str) -> String {
        let items = self.tx(
            account,
            &format!("<order sym=\"{sym}\" amount=\"{amount}\" limit=\"{limit}\"/>"),
        );
        assert_eq!(items[0].name, "opened", "order not opened: {items:?}");
        items[0].get("id").to_string()
    }

    pub fn balance(&self, account: &str) -> String {
        balance(&self.url, account)
    }

    pub fn shares(&self, account: &str, sym: &str) -> String {
        let rows = sql(&self.url)
            .query(
                "SELECT shares::text FROM positions WHERE account_id = $1 AND symbol = $2",
                &[&account, &sym],
            )
            .expect("positions");
        rows.first()
            .map_or_else(|| "0".into(), |r| normalize(r.get(0)))
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.stop.request();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Drops trailing fractional zeros of a NUMERIC's text: "12.500" -> "12.5".
pub fn normalize(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The `(name, attrs)` of each child of a `<status>` or `<canceled>`, times left out.
pub fn parts(item: &Element) -> Vec<String> {
    item.children
        .iter()
        .map(|c| {
            let attrs: Vec<String> = c
                .attrs
                .iter()
                .filter(|(k, _)| k != "time")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{} {}", c.name, attrs.join(" "))
        })
        .collect()
}

/// The server binary under test: this build's, or with EXCHANGE_TEST_SERVER_BIN
/// another build's (an older one, to see a test fail before its fix).
pub fn server_bin() -> String {
    std::env::var("EXCHANGE_TEST_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_exchange-server").to_string())
}

/// The `exchange-client` binary of this build. It is a package of its own, so cargo
/// neither builds it for these tests nor names it in a `CARGO_BIN_EXE_` variable:
/// the first call builds it (`cargo build -p exchange-client`, a no-op when
/// `scripts/test` or a workspace build has already built it) in the profile and target
/// folder of this test build, found beside the server binary, which is of this
/// package.
pub fn client_bin() -> String {
    static CLIENT: OnceLock<String> = OnceLock::new();
    CLIENT.get_or_init(build_client).clone()
}

fn build_client() -> String {
    let server = Path::new(env!("CARGO_BIN_EXE_exchange-server"));
    let profile_dir = server.parent().expect("the server binary's folder");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile folder above {}", server.display()),
    };
    let mut cargo = Command::new(env!("CARGO"));
    // Without what cargo set for this test process alone: a build script that reads
    // CARGO_MANIFEST_DIR (ring's does) would otherwise rebuild for this build and again
    // for the next one outside the tests.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref())
        {
            cargo.env_remove(name.as_ref());
        }
    }
    cargo.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "-q",
        "-p",
        "exchange-client",
        "--profile",
        profile,
    ]);
    // target/<profile>, or target/<triple>/<profile> when the tests were built with
    // --target: only the target folder itself holds cargo's CACHEDIR.TAG.
    let above = profile_dir.parent().expect("the target folder");
    if above.join("CACHEDIR.TAG").exists() {
        cargo.arg("--target-dir").arg(above);
    } else {
        let triple = above.file_name().expect("a target triple's folder");
        let target_dir = above.parent().expect("the target folder");
        cargo
            .arg("--target")
            .arg(triple)
            .arg("--target-dir")
            .arg(target_dir);
    }
    let built = cargo.output().expect("run cargo build for exchange-client");
    assert!(
        built.status.success(),
        "building exchange-client failed:\n{}",
        output_text(&built)
    );
    let client = profile_dir.join("exchange-client");
    assert!(client.exists(), "cargo built no {}", client.display());
    client
        .to_str()
        .expect("a UTF-8 path, as the server's is")
        .to_string()
}

/// The real server binary, started on a free port; stopped with SIGTERM on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub url: String,
    /// Where its log goes: a file of its own, so that the restarts and errors the fault
    /// tests cause on purpose do not read as failures in the test run's output. Its
    /// last lines are printed if the test fails.
    log: Option<std::path::PathBuf>,
}

/// A command's standard output, then its standard error, as text: what a failing
/// assertion shows.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The port of a postgres:// URL.
pub fn port_of(url: &str) -> u16 {
    url.rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .expect("a port in the URL")
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A fresh folder for a PostgreSQL cluster or a pooler that a test runs as the postgres
/// user (when the tests run as root), named `name`: under the system's temporary
/// folder, which that user can reach, unlike a repository under /root, say.
pub fn postgres_scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("exchange-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let chown = Command::new("chown").arg("postgres:").arg(&dir).status();
        assert!(chown.is_ok_and(|s| s.success()), "chown the scratch folder");
    }
    dir
}

/// A log file for one server of this test run, under cargo's scratch folder.
fn server_log_path() -> std::path::PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("server-logs");
    std::fs::create_dir_all(&dir).expect("create the server log folder");
    dir.join(format!(
        "{}-{}.log",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Server {
    pub fn start(url: &str, workers: usize, extra: &[&str]) -> Server {
        Server::start_under(&[], url, workers, extra)
    }

    /// Like [`Server::start`], with the server's log going to `log` instead of ours.
    pub fn start_logged(
        url: &str,
        workers: usize,
        extra: &[&str],
        log: &std::path::Path,
    ) -> Server {
        let file = std::fs::File::create(log).expect("create the log file");
        Server::spawn(&[], url, workers, extra, Stdio::from(file))
    }

    /// Starts the server through a wrapper command such as `taskset -c 1`, which must
    /// exec it (so the wrapper's pid is the supervisor's).
    pub fn start_under(wrapper: &[&str], url: &str, workers: usize, extra: &[&str]) -> Server {
        let log = server_log_path();
        let file = std::fs::File::create(&log).expect("create the log file");
        let mut server = Server::spawn(wrapper, url, workers, extra, Stdio::from(file));
        server.log = Some(log);
        server
    }

    fn spawn(wrapper: &[&str], url: &str, workers: usize, extra: &[&str], stderr: Stdio) -> Server {
        let server = server_bin();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&server);
                command
            }
            None => Command::new(&server),
        };
        let mut child = command
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--workers",
                &workers.to_string(),
                "--threads",
                "2",
            ])
            // Later flags win, so a test's own --threads overrides the default above.
            .args(extra)
            .arg("--database-url")
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start exchange-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        let server = Server {
            child,
            addr,
            url: url.to_string(),
            log: None,
        };
        server.wait_until_serving();
        server
    }

    fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(answer) = self.try_send("<create/>") {
                if answer.contains("<results/>") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server at {} never answered", self.addr);
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the server has logged so far (when its log goes to a file of the test's).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .map(|log| std::fs::read_to_string(log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Sends raw bytes on a new connection and reads the answer until the server closes.
    pub fn send_bytes(&self, bytes: &[u8]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(bytes)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    pub fn try_send(&self, xml: &str) -> std::io::Result<String> {
        self.send_bytes(&frame(xml.as_bytes()))
    }

    pub fn send(&self, xml: &str) -> Vec<Element> {
        let answer = self.try_send(xml).expect("a TCP round trip");
        read_reply(answer.as_bytes()).unwrap_or_else(|e| panic!("bad answer {answer:?}: {e}"))
    }

    /// Sends SIGTERM and waits; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        self.child.wait().expect("wait for the server")
    }

    /// A process's resident memory and its peak, in KiB, from /proc.
    pub fn memory_kib(pid: i32) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The worker processes: the supervisor's children.
    pub fn workers(&self) -> Vec<i32> {
        let path = format!("/proc/{}/task/{}/children", self.pid(), self.pid());
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// SIGKILLs worker `victim` and waits until `workers` run again without it; returns
    /// when it was killed and how long the replacement took. Fails after 5 s.
    pub fn kill_worker(&self, victim: i32, workers: usize) -> (Instant, Duration) {
        let killed_at = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the worker");
        loop {
            let now = self.workers();
            if now.len() == workers && !now.contains(&victim) {
                return (killed_at, killed_at.elapsed());
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(5),
                "worker {victim} not replaced: {now:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop();
        }
        let Some(log) = &self.log else { return };
        if std::thread::panicking() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("the server's log, {}, ends:", log.display());
            for line in &lines[lines.len().saturating_sub(20)..] {
                eprintln!("  {line}");
            }
        } else {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// What happened to one request sent under load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A complete answer; `errors` holds the texts of any `<error>` in it.
    Answered { errors: Vec<String> },
    /// The connection was refused: the server was not listening.
    Refused,
    /// Connected, but no complete answer came.
    Broken(String),
}

/// Background clients placing orders in a loop until stopped; records every outcome.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<(Instant, Outcome)>>>,
}

impl Load {
    /// Creates `clients` accounts holding cash and shares of `sym`, then starts trading.
    pub fn start(server: &Server, clients: usize, sym: &str) -> Load {
        let mut setup = String::from("<create>");
        for c in 0..clients {
            setup += &format!(r#"<account id="{c}" balance="1000000"/>"#);
        }
        setup += &format!(r#"<symbol sym="{sym}">"#);
        for c in 0..clients {
            setup += &format!(r#"<account id="{c}">100000</account>"#);
        }
        setup += "</symbol></create>";
        assert!(server.send(&setup).iter().all(|i| i.name == "created"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..clients)
            .map(|c| {
                let (stop, addr, sym) = (stop.clone(), server.addr, sym.to_string());
                std::thread::spawn(move || {
                    let mut outcomes = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let amount = if (n + c as u64).is_multiple_of(2) { "3" } else { "-3" };
                        let limit = 100 + (n % 5);
                        let xml = format!(r#"<transactions id="{c}"><order sym="{sym}" amount="{amount}" limit="{limit}"/></transactions>"#);
                        outcomes.push((Instant::now(), one_request(addr, &xml)));
                    }
                    outcomes
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the clients and returns every outcome with its start time.
    pub fn finish(self) -> Vec<(Instant, Outcome)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<(Instant, Outcome)> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().expect("load thread"))
            .collect();
        all.sort_by_key(|(at, _)| *at);
        all
    }
}

fn one_request(addr: SocketAddr, xml: &str) -> Outcome {
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Outcome::Refused,
        Err(e) => return Outcome::Broken(format!("connect: {e}")),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    if let Err(e) = stream.write_all(&frame(xml.as_bytes())) {
        return Outcome::Broken(format!("write: {e}"));
    }
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        return Outcome::Broken(format!("read: {e}"));
    }
    match read_reply(&answer) {
        Ok(items) => Outcome::Answered {
            errors: items
                .into_iter()
                .filter(|i| i.name == "error")
                .map(|i| i.text)
                .collect(),
        },
        Err(_) if answer.is_empty() => Outcome::Broken("closed without an answer".into()),
        Err(e) => Outcome::Broken(format!("partial answer: {e}")),
    }
}

/// Everything a request could have changed, as text.
pub fn snapshot(url: &str) -> String {
    let mut db = sql(url);
    let mut out = String::new();
    for query in [
        "SELECT id || ':' || balance FROM accounts ORDER BY id",
        "SELECT account_id || ':' || symbol || ':' || shares FROM positions ORDER BY 1",
        "SELECT id || ':' || open_shares || ':' || canceled_shares FROM orders ORDER BY id",
        "SELECT count(*)::text FROM trades",
        "SELECT count(*)::text FROM share_issues",
    ] {
        for row in db.query(query, &[]).expect("snapshot query") {
            out += &row.get::<_, String>(0);
            out.push('\n');
        }
    }
    out
}

/// Asserts the conservation audit finds nothing wrong in the database at `url`.
pub fn audit_holds(url: &str) {
    let report = exchange::audit::audit(&mut sql(url)).expect("audit runs");
    assert!(
        report.discrepancies.is_empty(),
        "audit: {:#?}",
        report.discrepancies
    );
}

/// The one integer `query` answers in the database at `url` (a count, say).
pub fn count(url: &str, query: &str) -> i64 {
    sql(url)
        .query_one(query, &[])
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .get(0)
}

/// An account's balance in the database at `url`, in shortest form.
pub fn balance(url: &str, account: &str) -> String {
    let row = sql(url)
        .query_one(
            "SELECT balance::text FROM accounts WHERE id = $1",
            &[&account],
        )
        .expect("account row");
    normalize(row.get(0))
}

/// Runs a load of 4 connections for a second: every request is answered (more than
/// 20), and none is refused for want of a database privilege.
pub fn serves_a_second_without_permission_errors(server: &Server, prefix: &str) {
    let load = Load::start(server, 4, prefix);
    std::thread::sleep(Duration::from_secs(1));
    let outcomes = load.finish();
    assert!(outcomes.len() > 20, "{} requests", outcomes.len());
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| match o {
            Outcome::Answered { errors } => errors.iter().any(|e| e.contains("permission")),
            _ => true,
        })
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}
