//! The deployment of docs/deployment.md, on hosts made of network namespaces: a
//! pg_auto_failover monitor, three PostgreSQL data nodes with synchronous replication,
//! two exchange-server hosts on a multi-host URL with `target_session_attrs=read-write`,
//! and HAProxy in TCP mode in front of them with `deploy/haproxy.cfg` as shipped. All
//! from Debian's packages. Clients on the proxy's host place and cancel orders through
//! HAProxy the whole time and record every answer; meanwhile:
//!
//! 1. a server host stops gracefully and a new instance starts on it: no error at all,
//!    and no order waits more than 100 ms longer than before;
//! 2. the other server host is SIGKILLed: only the requests it was running go
//!    unanswered, and HAProxy sends the rest to the survivor;
//! 3. the primary's host dies (link down, every process killed): the servers follow
//!    the promoted standby without a restart, within a measured bound;
//! 4. the new primary is cut off from the monitor and its standby but not from the
//!    servers (a split): whatever it commits alone is never acknowledged.
//!
//! At the end, every order and cancel a client was told of is on the last primary,
//! exactly as told, and the audit passes there.
//!
//! Needs root (namespaces, and PostgreSQL run as the postgres user), as in CI.

mod common;

use common::netns::{is_root, run, Host, Network};
use common::{normalize, Server};
use exchange::protocol::reply::read_reply;
use exchange::protocol::tree::Element;
use exchange::rejection::is_service_failure;
use exchange::wire::frame;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PG_AUTOCTL: &str = "/usr/bin/pg_autoctl";
const HAPROXY: &str = "/usr/sbin/haproxy";
/// The exchange's port on every server host, and HAProxy's.
const EXCHANGE_PORT: u16 = 12345;
const MONITOR_PORT: u16 = 6010;
/// Clients placing and canceling orders through HAProxy.
const CLIENTS: usize = 6;
/// How much longer than before a new server instance may make an order wait.
const START_COSTS_AT_MOST: Duration = Duration::from_millis(100);
/// The longest the exchange may go without a successful answer when the primary's
/// host dies or is split off: the monitor's detection and the demote timeout (set
/// below), a connect timeout for each host of the URL, and a margin for 2 CPUs.
const FAILOVER_WITHIN: Duration = Duration::from_secs(45);

/// pg_autoctl as the postgres user inside `host`, with its configuration, state and
/// pid files under `dir` instead of the postgres user's home and /tmp.
fn autoctl(host: &Host, dir: &Path) -> Command {
    let bin =
        std::env::var("EXCHANGE_TEST_PG_BIN").expect("EXCHANGE_TEST_PG_BIN: run with scripts/test");
    let mut command = host.command("runuser");
    command.args(["-u", "postgres", "--", "env"]);
    for (variable, folder) in [
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "share"),
        ("XDG_RUNTIME_DIR", "run"),
    ] {
        command.arg(format!("{variable}={}", dir.join(folder).display()));
    }
    command.arg(format!("PATH={bin}:/usr/bin:/bin"));
    command.arg(PG_AUTOCTL);
    command
}

fn succeed(mut command: Command, what: &str) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what}: {}",
        common::output_text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A pg_auto_failover formation: the monitor and its data nodes, each a host with a
/// `pg_autoctl run` keeping its PostgreSQL.
struct Formation {
    dir: PathBuf,
    monitor: Host,
    nodes: Vec<Host>,
    keepers: Vec<Child>,
}

impl Formation {
    /// The monitor, then a primary, then standbys made from it with pg_basebackup.
    fn create(monitor: Host, nodes: Vec<Host>) -> Formation {
        assert!(
            Path::new(PG_AUTOCTL).exists(),
            "{PG_AUTOCTL} is missing: install postgresql-15-auto-failover (scripts/test does)"
        );
        let bin = std::env::var("EXCHANGE_TEST_PG_BIN").expect("EXCHANGE_TEST_PG_BIN");
        let pg_ctl = format!("{bin}/pg_ctl");
        let mut formation = Formation {
            dir: common::postgres_scratch_dir("formation"),
            monitor,
            nodes: Vec::new(),
            keepers: Vec::new(),
        };
        let monitor = formation.monitor.clone();
        let data = formation.data_of(&monitor);
        let mut create = autoctl(&monitor, &formation.home_of(&monitor));
        create.args(["create", "monitor", "--pgctl", &pg_ctl, "--pgdata"]);
        create.arg(&data).args([
            "--pgport",
            &MONITOR_PORT.to_string(),
            "--hostname",
            &monitor.address,
            "--auth",
            "trust",
            "--no-ssl",
        ]);
        succeed(create, "pg_autoctl create monitor");
        formation.run_keeper(&monitor);
        wait_for(
            || formation.try_on_monitor("SELECT 1").is_ok(),
            "the monitor",
        );
        formation.tune_monitor();
        for (number, node) in nodes.into_iter().enumerate() {
            let home = formation.home_of(&node);
            let mut create = autoctl(&node, &home);
            create.args(["create", "postgres", "--pgctl", &pg_ctl, "--pgdata"]);
            create.arg(formation.data_of(&node)).args([
                "--pgport",
                &node_port(number).to_string(),
                "--hostname",
                &node.address,
                "--name",
                &node.name,
                "--dbname",
                "exchange",
                "--monitor",
                &formation.monitor_url(),
                "--auth",
                "trust",
                "--no-ssl",
                // Lets the server hosts in: they share the data nodes' /24.
                "--pg-hba-lan",
            ]);
            succeed(
                create,
                &format!("pg_autoctl create postgres on {}", node.name),
            );
            // A primary cut off from the monitor and every standby demotes itself after
            // this long; it must be shorter than the monitor's demote timeout below.
            let mut set = autoctl(&node, &home);
            set.args(["config", "set", "--pgdata"])
                .arg(formation.data_of(&node))
                .args(["timeout.network_partition_timeout", "4"]);
            succeed(set, "pg_autoctl config set");
            formation.run_keeper(&node);
            if number == 0 {
                // A primary's keeper counts the partition timeout from the last time it
                // saw a standby after losing the monitor; one whose WAL senders timed
                // out before it noticed the monitor was gone never counts it, and its
                // primary never stops (pg_auto_failover 2.0). So the WAL senders must
                // outlast that notice: the keeper's loop (1 s) and its call to the
                // monitor (the monitor URL's bounds below, 3 s at most). And they and
                // the partition timeout together must end before the monitor's demote
                // timeout, or two primaries run at once. (pg_autoctl sets 30 s; the
                // standbys copy this setting with the data folder.)
                let port = node_port(number);
                wait_for(
                    || psql(&node, port, "exchange", "SELECT 1").is_ok(),
                    &node.name,
                );
                // Surviving an OS crash is not under test here (nor in scripts/test's
                // cluster): without fsync, a stall of the shared disk cannot hold up
                // every answer at once and be taken for what a server start costs.
                for sql in [
                    "ALTER SYSTEM SET fsync = off",
                    "ALTER SYSTEM SET wal_sender_timeout = '6s'",
                    "SELECT pg_reload_conf()",
                ] {
                    psql(&node, port, "exchange", sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
            }
            formation.nodes.push(node);
            // Alone, the first node is "single"; with a standby, "primary".
            let want: Vec<&str> = match formation.nodes.len() {
                1 => vec!["single"],
                n => std::iter::once("primary")
                    .chain(std::iter::repeat_n("secondary", n - 1))
                    .collect(),
            };
            formation.wait_for_states(&want, Duration::from_secs(60));
        }
        formation
    }

    fn home_of(&self, host: &Host) -> PathBuf {
        let home = self.dir.join(&host.name);
        if !home.exists() {
            std::fs::create_dir_all(&home).expect("a node's folder");
            run("chown", &["postgres:", home.to_str().expect("a path")]);
        }
        home
    }

    fn data_of(&self, host: &Host) -> PathBuf {
        self.home_of(host).join("pgdata")
    }

    fn run_keeper(&mut self, host: &Host) {
        let log = std::fs::File::create(self.home_of(host).join("keeper.log")).expect("a log");
        let mut run = autoctl(host, &self.home_of(host));
        let keeper = run
            .args(["run", "--pgdata"])
            .arg(self.data_of(host))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("a log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("pg_autoctl run");
        self.keepers.push(keeper);
    }

    /// The monitor as the keepers reach it. The TCP bounds matter: a keeper whose call
    /// to the monitor is under way when its host is cut off would otherwise wait in TCP
    /// retransmission for about 15 minutes, and its primary, which no longer hears
    /// from anyone, would not stop itself after the partition timeout.
    fn monitor_url(&self) -> String {
        format!(
            "postgres://autoctl_node@{}:{MONITOR_PORT}/pg_auto_failover?sslmode=disable\
             &connect_timeout=2&keepalives_idle=1&keepalives_interval=1&keepalives_count=2\
             &tcp_user_timeout=3000",
            self.monitor.address
        )
    }

    /// SQL on the monitor's database, as postgres over its local socket.
    fn on_monitor(&self, sql: &str) -> String {
        self.try_on_monitor(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn try_on_monitor(&self, sql: &str) -> Result<String, String> {
        psql(&self.monitor, MONITOR_PORT, "pg_auto_failover", sql)
    }

    /// Detection in seconds rather than tens of them: checks every second, a node is
    /// unhealthy 3 s after its last answer, and a lost primary gets 15 s to demote
    /// itself before its standby is promoted: its WAL senders' timeout (6 s), then the
    /// keepers' partition timeout (4 s), and a margin for the keeper's loop.
    fn tune_monitor(&self) {
        for (setting, value) in [
            ("health_check_period", "1000"),
            ("health_check_timeout", "1000"),
            ("health_check_max_retries", "1"),
            ("health_check_retry_delay", "500"),
            ("node_considered_unhealthy_timeout", "3000"),
            ("primary_demote_timeout", "15000"),
        ] {
            self.on_monitor(&format!(
                "ALTER SYSTEM SET pgautofailover.{setting} = {value}"
            ));
        }
        self.on_monitor("SELECT pg_reload_conf()");
    }

    /// Each node's name, reported state and goal state, in node order.
    fn states(&self) -> Vec<(String, String, String)> {
        self.on_monitor(
            "SELECT nodename, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid",
        )
        .lines()
        .filter_map(|line| {
            let mut parts = line.split('|').map(str::to_string);
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .collect()
    }

    /// Waits until the nodes' reported states, in any order, are `want` and each has
    /// reached its goal. In any order: after a failover, either standby may have won.
    fn wait_for_states(&self, want: &[&str], within: Duration) {
        let mut want = want.to_vec();
        want.sort_unstable();
        let started = Instant::now();
        loop {
            let states = self.states();
            let mut reached: Vec<&str> = states
                .iter()
                .filter(|(_, reported, goal)| reported == goal)
                .map(|(_, reported, _)| reported.as_str())
                .collect();
            reached.sort_unstable();
            if reached == want {
                return;
            }
            assert!(
                started.elapsed() < within,
                "the formation never reached {want:?}: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The node whose reported and goal state are both primary (or, alone, single),
    /// once there is one other than `not`.
    fn primary_other_than(&self, not: Option<&Host>, within: Duration) -> &Host {
        let started = Instant::now();
        loop {
            if let Some((name, _, _)) = self.states().into_iter().find(|(name, reported, goal)| {
                reported == goal
                    && ["primary", "wait_primary", "single"].contains(&reported.as_str())
                    && not.is_none_or(|n| n.name != *name)
            }) {
                return self.node(&name);
            }
            assert!(
                started.elapsed() < within,
                "no primary after {within:?}: {:?}",
                self.states()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn node(&self, name: &str) -> &Host {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The multi-host URL the servers use: every data node, the first that accepts
    /// writes wins.
    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(number, node)| format!("{}:{}", node.address, node_port(number)))
            .collect();
        format!(
            "postgres://postgres@{}/exchange?target_session_attrs=read-write",
            hosts.join(",")
        )
    }

    /// One node's own URL.
    fn url_of(&self, node: &Host) -> String {
        let number = self
            .nodes
            .iter()
            .position(|n| n.name == node.name)
            .expect("a node of the formation");
        format!(
            "postgres://postgres@{}:{}/exchange",
            node.address,
            node_port(number)
        )
    }

    /// Tells the monitor that `node`'s host is gone for good, as its operator would:
    /// until then a lost node that was in the write quorum blocks the next failover
    /// (the monitor cannot know whether it held commits no one else has).
    fn forget(&self, node: &Host) {
        let mut drop = autoctl(&self.monitor, &self.home_of(&self.monitor));
        drop.args(["drop", "node", "--monitor", &self.monitor_url()])
            .args(["--formation", "default", "--name", &node.name, "--force"]);
        succeed(drop, "pg_autoctl drop node");
    }

    /// The keepers' logs, for a failing test.
    fn print_logs(&self) {
        for host in std::iter::once(&self.monitor).chain(&self.nodes) {
            let bytes = std::fs::read(self.home_of(host).join("keeper.log")).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("{}'s pg_autoctl log ends:", host.name);
            for line in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("  {line}");
            }
        }
    }
}

/// SQL as postgres over the local socket of the PostgreSQL on `host` at `port`.
fn psql(host: &Host, port: u16, database: &str, sql: &str) -> Result<String, String> {
    let output = host
        .command("runuser")
        .args(["-u", "postgres", "--", "psql", "-X", "-qAt", "-p"])
        .arg(port.to_string())
        .args(["-d", database, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(common::output_text(&output));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Each data node its own port, so that their Unix sockets, in the one folder all
/// namespaces share, never clash.
fn node_port(number: usize) -> u16 {
    6011 + number as u16
}

impl Drop for Formation {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        for host in std::iter::once(&self.monitor).chain(&self.nodes) {
            host.kill_all();
        }
        for keeper in &mut self.keepers {
            let _ = keeper.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// HAProxy with `deploy/haproxy.cfg` as shipped, its addresses from the environment.
struct Proxy {
    child: Child,
}

impl Proxy {
    fn start(host: &Host, servers: [&Host; 2]) -> Proxy {
        assert!(
            Path::new(HAPROXY).exists(),
            "{HAPROXY} is missing: install haproxy (scripts/test does)"
        );
        let config = std::fs::canonicalize("deploy/haproxy.cfg").expect("deploy/haproxy.cfg");
        let mut command = host.command(HAPROXY);
        let child = command
            .arg("-db")
            .arg("-f")
            .arg(config)
            .env("EXCHANGE_LISTEN", format!(":{EXCHANGE_PORT}"))
            .env(
                "EXCHANGE_SERVER_1",
                format!("{}:{EXCHANGE_PORT}", servers[0].address),
            )
            .env(
                "EXCHANGE_SERVER_2",
                format!("{}:{EXCHANGE_PORT}", servers[1].address),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start haproxy");
        Proxy { child }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        if let Ok(output) = self.child_output() {
            if std::thread::panicking() {
                eprintln!("haproxy said: {output}");
            }
        }
    }
}

impl Proxy {
    fn child_output(&mut self) -> std::io::Result<String> {
        let _ = self.child.wait();
        let mut text = String::new();
        if let Some(stderr) = self.child.stderr.as_mut() {
            stderr.read_to_string(&mut text)?;
        }
        Ok(text)
    }
}

/// The exchange server on a server host, on the exchange's port of its address.
fn start_server(host: &Host, url: &str) -> Server {
    let port = EXCHANGE_PORT.to_string();
    Server::start_under(
        &host.wrapper(),
        url,
        2,
        &["--bind", &host.address, "--port", &port],
    )
}

/// What a client asked.
#[derive(Clone, Debug)]
enum Request {
    Order {
        account: String,
        amount: i64,
        limit: u32,
    },
    Cancel {
        id: String,
    },
}

/// One request and what came of it.
#[derive(Debug)]
struct Record {
    sent: Instant,
    answered: Instant,
    request: Request,
    /// The answer's one element, or why there was none.
    outcome: Result<Element, String>,
}

impl Record {
    /// Whether the client was told its order opened or its cancel happened.
    fn acknowledged(&self) -> bool {
        matches!(&self.outcome, Ok(e) if e.name == "opened" || e.name == "canceled")
    }

    fn latency(&self) -> Duration {
        self.answered - self.sent
    }
}

/// Clients on their own threads, each with an account, placing orders on one symbol
/// (buys and sells that cross, so trades happen) and canceling one of its own open
/// orders every fourth request, one connection per request, until stopped.
struct Clients {
    stop: Arc<AtomicBool>,
    /// When the last acknowledgement arrived.
    last_ack: Arc<Mutex<Instant>>,
    threads: Vec<std::thread::JoinHandle<Vec<Record>>>,
}

const SYMBOL: &str = "HA";

impl Clients {
    fn start(proxy: SocketAddr) -> Clients {
        let mut setup = String::from("<create>");
        for c in 0..CLIENTS {
            setup += &format!(r#"<account id="{c}" balance="100000000"/>"#);
        }
        setup += &format!(r#"<symbol sym="{SYMBOL}">"#);
        for c in 0..CLIENTS {
            setup += &format!(r#"<account id="{c}">10000000</account>"#);
        }
        setup += "</symbol></create>";
        let answer = one_request(proxy, &setup).expect("the setup's answer");
        assert!(answer.iter().all(|e| e.name == "created"), "{answer:?}");
        let stop = Arc::new(AtomicBool::new(false));
        let last_ack = Arc::new(Mutex::new(Instant::now()));
        let threads = (0..CLIENTS)
            .map(|c| {
                let (stop, last_ack) = (stop.clone(), last_ack.clone());
                std::thread::spawn(move || client(c, proxy, &stop, &last_ack))
            })
            .collect();
        Clients {
            stop,
            last_ack,
            threads,
        }
    }

    /// Waits until a request sent after `since` is acknowledged.
    fn wait_for_ack_after(&self, since: Instant, within: Duration) {
        loop {
            let last = *self.last_ack.lock().expect("the clients' clock");
            if last > since + Duration::from_millis(100) {
                return;
            }
            assert!(
                since.elapsed() < within,
                "nothing acknowledged for {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn finish(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Record> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().expect("a client thread"))
            .collect();
        all.sort_by_key(|r| r.sent);
        all
    }
}

fn client(
    c: usize,
    proxy: SocketAddr,
    stop: &AtomicBool,
    last_ack: &Mutex<Instant>,
) -> Vec<Record> {
    let account = c.to_string();
    let mut records = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let request = match open.pop() {
            Some(id) if n.is_multiple_of(4) => Request::Cancel { id },
            other => {
                open.extend(other);
                let amount = if (n + c as u64).is_multiple_of(2) {
                    3
                } else {
                    -3
                };
                Request::Order {
                    account: account.clone(),
                    amount,
                    limit: 100 + (n % 5) as u32,
                }
            }
        };
        let xml = match &request {
            Request::Order {
                account,
                amount,
                limit,
            } => format!(
                r#"<transactions id="{account}"><order sym="{SYMBOL}" amount="{amount}" limit="{limit}"/></transactions>"#
            ),
            Request::Cancel { id } => {
                format!(r#"<transactions id="{account}"><cancel id="{id}"/></transactions>"#)
            }
        };
        let sent = Instant::now();
        let outcome = one_request(proxy, &xml).and_then(|mut items| match items.len() {
            1 => Ok(items.remove(0)),
            _ => Err(format!("{} answers to one operation", items.len())),
        });
        let answered = Instant::now();
        if let Ok(element) = &outcome {
            if element.name == "opened" {
                open.extend(element.attr("id"));
            }
        }
        let record = Record {
            sent,
            answered,
            request,
            outcome,
        };
        if record.acknowledged() {
            *last_ack.lock().expect("the clients' clock") = sent;
        }
        records.push(record);
    }
    records
}

fn one_request(addr: SocketAddr, xml: &str) -> Result<Vec<Element>, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&frame(xml.as_bytes()))
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if answer.is_empty() {
        return Err("closed without an answer".into());
    }
    read_reply(&answer).map_err(|e| format!("a broken answer: {e}"))
}

/// Records sent in `[from, to)`.
fn during(records: &[Record], from: Instant, to: Instant) -> Vec<&Record> {
    records
        .iter()
        .filter(|r| r.sent >= from && r.sent < to)
        .collect()
}

/// The longest time in `[from, to)` in which no request was acknowledged.
fn longest_silence(records: &[Record], from: Instant, to: Instant) -> Duration {
    let mut acks: Vec<Instant> = records
        .iter()
        .filter(|r| r.acknowledged() && r.answered >= from && r.answered < to)
        .map(|r| r.answered)
        .collect();
    acks.sort();
    let mut last = from;
    let mut longest = Duration::ZERO;
    for at in acks.into_iter().chain(std::iter::once(to)) {
        longest = longest.max(at - last);
        last = at;
    }
    longest
}

/// The requests that the service failed (business rejections, such as a cancel that
/// came after its order filled, are answers), each with when it was sent after `since`.
fn failures(records: &[&Record], since: Instant) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| {
            let why = match &r.outcome {
                Ok(e) if e.name == "error" && is_service_failure(&e.text) => {
                    format!("error: {}", e.text)
                }
                Ok(_) => return None,
                Err(why) => why.clone(),
            };
            Some(format!(
                "{why}, sent at +{:?}",
                r.sent.saturating_duration_since(since)
            ))
        })
        .collect()
}

/// The six slowest answered requests: when each was sent, after `since`, and its wait.
fn slowest(records: &[&Record], since: Instant) -> Vec<(Duration, Duration)> {
    let mut answered: Vec<&&Record> = records.iter().filter(|r| r.outcome.is_ok()).collect();
    answered.sort_by_key(|r| std::cmp::Reverse(r.latency()));
    answered
        .iter()
        .take(6)
        .map(|r| (r.sent.saturating_duration_since(since), r.latency()))
        .collect()
}

fn max_latency(records: &[&Record]) -> Duration {
    records
        .iter()
        .filter(|r| r.outcome.is_ok())
        .map(|r| r.latency())
        .max()
        .unwrap_or_default()
}

/// Checks, on the database at `url`, that every acknowledged order exists as the
/// client placed it and every acknowledged cancel canceled what its answer said.
/// Returns how many acknowledgements it checked.
fn every_acknowledgement_is_in(url: &str, records: &[Record]) -> usize {
    let mut db = common::sql(url);
    let rows = db
        .query(
            "SELECT id::text, account_id::text, is_buy, amount::text, limit_price::text, \
                    canceled_shares::text FROM orders WHERE symbol = $1",
            &[&SYMBOL],
        )
        .expect("read the orders");
    let orders: HashMap<String, (String, bool, String, String, String)> = rows
        .iter()
        .map(|row| {
            (
                row.get(0),
                (
                    row.get(1),
                    row.get(2),
                    normalize(row.get(3)),
                    normalize(row.get(4)),
                    normalize(row.get(5)),
                ),
            )
        })
        .collect();
    let mut checked = 0;
    let mut missing = Vec::new();
    for record in records.iter().filter(|r| r.acknowledged()) {
        let Ok(answer) = &record.outcome else {
            continue;
        };
        let id = answer.attr("id").unwrap_or_default();
        let found = orders.get(&id);
        let as_told = match (&record.request, found) {
            (
                Request::Order {
                    account,
                    amount,
                    limit,
                },
                Some((owner, is_buy, shares, price, _)),
            ) => {
                owner == account
                    && *is_buy == (*amount > 0)
                    && *shares == amount.abs().to_string()
                    && *price == limit.to_string()
            }
            (Request::Cancel { .. }, Some((_, _, _, _, canceled))) => {
                let told: Vec<String> = answer
                    .children
                    .iter()
                    .filter(|c| c.name == "canceled")
                    .filter_map(|c| c.attr("shares"))
                    .collect();
                told.len() == 1 && normalize(told[0].clone()) == *canceled
            }
            (_, None) => false,
        };
        if !as_told {
            missing.push(format!(
                "{:?} answered {answer:?}, found {found:?}",
                record.request
            ));
        }
        checked += 1;
    }
    assert!(
        missing.is_empty(),
        "{} of {checked} acknowledgements are not on the primary as told, e.g. {:#?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    checked
}

#[test]
fn the_deployment_keeps_every_acknowledged_order_through_server_and_database_failures() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root (CI runs as root)");
        return;
    }
    let network = Network::new();
    let nodes: Vec<Host> = (1..=3)
        .map(|n| network.host(&format!("pg{n}"), 10 + n))
        .collect();
    let formation = Formation::create(network.host("monitor", 10), nodes);
    let app1 = network.host("app1", 21);
    let app2 = network.host("app2", 22);
    let proxy_host = network.host("proxy", 30);
    let url = formation.url();

    proxy_host.enter(|| {
        exchange::migrations::migrate(&mut common::sql(&url)).expect("the schema");
        let mut first = start_server(&app1, &url);
        let mut second = start_server(&app2, &url);
        let _proxy = Proxy::start(&proxy_host, [&app1, &app2]);
        let proxy: SocketAddr = format!("127.0.0.1:{EXCHANGE_PORT}")
            .parse()
            .expect("an address");
        wait_for(|| one_request(proxy, "<create/>").is_ok(), "HAProxy");
        let clients = Clients::start(proxy);
        let pause = |seconds| std::thread::sleep(Duration::from_secs(seconds));
        pause(2);

        // 1. A graceful stop, then a new instance.
        let stopping = Instant::now();
        let status = first.stop();
        assert!(status.success(), "the first server stopped with {status}");
        pause(2);
        let alone = Instant::now();
        pause(3);
        let starting = Instant::now();
        first = start_server(&app1, &url);
        pause(3);
        let restarted = Instant::now();

        // 2. A host crash: every process of the second server at once.
        let killed = Instant::now();
        app2.kill_all();
        let _ = second.child.wait();
        // Until its last process is gone the listening socket still takes connections,
        // which then die with it: those are in flight at the kill too. A dying process
        // leaves its host's list of processes a moment before the kernel closes its
        // files, so the end is when the port refuses.
        wait_for(|| !app2.has_processes(), "the killed host's end");
        let app2_port: std::net::SocketAddr = format!("{}:{EXCHANGE_PORT}", app2.address)
            .parse()
            .expect("an address");
        wait_for(
            || {
                std::net::TcpStream::connect_timeout(&app2_port, Duration::from_millis(200))
                    .is_err()
            },
            "the killed host's port to refuse",
        );
        let gone = Instant::now();
        pause(2);
        second = start_server(&app2, &url);
        pause(2);

        // 3. The primary's host dies.
        let primary = formation
            .primary_other_than(None, Duration::from_secs(5))
            .clone();
        primary.set_link(false);
        primary.kill_all();
        let died = Instant::now();
        let successor = formation
            .primary_other_than(Some(&primary), FAILOVER_WITHIN)
            .clone();
        clients.wait_for_ack_after(died, FAILOVER_WITHIN);
        formation.forget(&primary);
        formation.wait_for_states(&["primary", "secondary"], Duration::from_secs(30));
        pause(2);

        // 4. A split: the new primary loses the monitor and its standby, not the servers.
        let others: Vec<&Host> = std::iter::once(&formation.monitor)
            .chain(formation.nodes.iter().filter(|n| n.name != successor.name))
            .collect();
        successor.cut_off_from(&others);
        let split = Instant::now();
        let last = formation
            .primary_other_than(Some(&successor), FAILOVER_WITHIN)
            .clone();
        assert_ne!(last.name, primary.name, "the dead host came back");
        clients.wait_for_ack_after(split, FAILOVER_WITHIN);
        pause(4);
        let records = clients.finish();
        let end = Instant::now();
        drop(first);
        drop(second);

        // 1 and 2. From the graceful stop until the primary's host died, the only
        // requests that failed are those the killed host was running: a SIGKILL ends
        // their connections without an answer (their outcome is unknown to the client,
        // as with any crash); the graceful stop and the start failed none.
        let servers_phase: Vec<&Record> = during(&records, stopping, died)
            .into_iter()
            .filter(|r| r.answered < died)
            .collect();
        let in_flight_at_kill = |r: &Record| r.sent <= gone && r.answered >= killed;
        let others: Vec<&Record> = servers_phase
            .iter()
            .copied()
            .filter(|r| !in_flight_at_kill(r))
            .collect();
        assert_eq!(
            failures(&others, stopping),
            Vec::<String>::new(),
            "requests failed through HAProxy besides those in flight at the SIGKILL \
             (the stop at +0, the start at +{:?}, the kill at +{:?})",
            starting - stopping,
            killed - stopping
        );
        let broken = servers_phase
            .iter()
            .filter(|r| in_flight_at_kill(r) && r.outcome.is_err())
            .count();
        let unknown = failures(
            &servers_phase
                .iter()
                .copied()
                .filter(|r| in_flight_at_kill(r))
                .collect::<Vec<_>>(),
            killed,
        );
        assert!(
            unknown.len() <= CLIENTS && unknown.iter().all(|f| !f.starts_with("error")),
            "{unknown:?}"
        );
        let before = max_latency(&during(&records, alone, starting));
        let after = max_latency(&during(&records, starting, restarted));
        assert!(
            after <= before + START_COSTS_AT_MOST,
            "a new instance made an order wait {after:?}, against {before:?} without it; \
             the slowest requests after the start (sent at +, waited): {:?}",
            slowest(&during(&records, starting, restarted), starting)
        );
        // 3 and 4: service came back after each, by itself.
        let host_death = longest_silence(&records, died, split);
        let split_off = longest_silence(&records, split, end);
        eprintln!(
            "deployment: {} requests, {} acknowledged; a start under load: worst latency \
             {after:?} (before {before:?}); {} unanswered at the SIGKILL; without answers \
             {host_death:?} when the primary's host died, {split_off:?} after the split",
            records.len(),
            records.iter().filter(|r| r.acknowledged()).count(),
            broken
        );
        assert!(
            host_death < FAILOVER_WITHIN,
            "{host_death:?} without answers"
        );
        assert!(split_off < FAILOVER_WITHIN, "{split_off:?} without answers");

        // Every acknowledgement is on the last primary, exactly as told.
        let last_url = formation.url_of(&last);
        let checked = every_acknowledgement_is_in(&last_url, &records);
        assert!(checked > 100, "only {checked} acknowledgements");
        common::audit_holds(&last_url);
    });
}

/// Polls `ready` for up to 20 s.
fn wait_for(ready: impl Fn() -> bool, what: &str) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
