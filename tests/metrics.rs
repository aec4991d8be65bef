//! The operator's view over HTTP (`--metrics-port`): the metrics pass `promtool check
//! metrics` and a real Prometheus (Debian's) scraping them while `exchange-client load`
//! runs reads back what the client and the database counted; `/live` and `/ready` say
//! what a load balancer or a container health check needs, a database that goes away
//! included.

mod common;

use common::cluster::Cluster;
use common::{count, fresh_database, output_text, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// A GET over HTTP/1.0: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metrics_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Prometheus scraping `target` every second; killed when dropped.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        assert!(
            std::path::Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install prometheus (scripts/test does)"
        );
        let dir = std::env::temp_dir().join(format!("exchange-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a folder for Prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: exchange\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus.yml");
        let addr = metrics_addr(common::free_port());
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("prometheus.log")).expect("a log"),
            ))
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, dir, addr };
        wait_for("Prometheus ready", Duration::from_secs(30), || {
            get(addr, "/-/ready").is_ok_and(|(code, _)| code == 200)
        });
        prometheus
    }

    /// The value of an instant query that returns one sample, if it does.
    fn value(&self, query: &str) -> Option<f64> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (code, body) = get(self.addr, &format!("/api/v1/query?query={encoded}")).ok()?;
        if code != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("prometheus' log ends:");
            for line in &lines[lines.len().saturating_sub(10)..] {
                eprintln!("  {line}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn prometheus_reads_back_what_the_client_and_the_database_counted() {
    let url = fresh_database("metrics_scrape");
    let port = common::free_port();
    let server = Server::start(&url, 2, &["--metrics-port", &port.to_string()]);
    let status = metrics_addr(port);
    wait_for("/ready", Duration::from_secs(10), || {
        get(status, "/ready").is_ok_and(|(code, _)| code == 200)
    });
    assert_eq!(get(status, "/live").expect("/live").0, 200);
    assert_eq!(get(status, "/nothing").expect("a 404").0, 404);

    // A worker killed: the supervisor counts its end and its replacement.
    server.kill_worker(server.workers()[0], 2);

    let prometheus = Prometheus::start(status);
    let load = Command::new(common::client_bin())
        .args(["load", "--port", &server.addr.port().to_string()])
        .args(["--duration", "3", "--connections", "4", "--json"])
        .output()
        .expect("run the load");
    assert!(load.status.success(), "{}", output_text(&load));
    let report: serde_json::Value = serde_json::from_slice(&load.stdout).expect("JSON");
    let requests = report["requests"].as_u64().expect("requests") as f64;

    // The exposition as it is now passes promtool.
    let (code, text) = get(status, "/metrics").expect("/metrics");
    assert_eq!(code, 200);
    let mut promtool = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (the prometheus package)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "{}\n{text}",
        output_text(&checked)
    );

    // Prometheus has scraped the end of the load: its counts are the client's...
    let transactions = r#"sum(exchange_requests_total{kind="transactions",outcome="answered"})"#;
    wait_for(
        "Prometheus scraping the load's end",
        Duration::from_secs(20),
        || prometheus.value(transactions) == Some(requests),
    );
    let value = |query: &str| {
        prometheus
            .value(query)
            .unwrap_or_else(|| panic!("Prometheus has no value for {query}"))
    };
    // The load's setup, and the `<create/>` with which the test saw the server serve.
    assert_eq!(value(r#"sum(exchange_requests_total{kind="create"})"#), 2.0);
    // ... and the database's.
    let opened = count(&url, "SELECT count(*) FROM orders") as f64;
    assert_eq!(
        value(r#"exchange_operations_total{outcome="opened"}"#),
        opened
    );
    let accounts = count(&url, "SELECT count(*) FROM accounts") as f64;
    assert_eq!(
        value(r#"exchange_operations_total{outcome="account_created"}"#),
        accounts
    );
    let canceled = count(
        &url,
        "SELECT count(*) FROM orders WHERE canceled_shares > 0",
    ) as f64;
    assert_eq!(
        value(r#"exchange_operations_total{outcome="canceled"}"#),
        canceled
    );
    assert_eq!(
        value("exchange_request_seconds_count"),
        requests + 2.0,
        "every request's time, the creates' included"
    );
    assert_eq!(
        value(r#"exchange_request_seconds_bucket{le="+Inf"}"#),
        requests + 2.0,
        "the last bucket holds every observation"
    );
    assert!(
        value(r#"exchange_request_seconds_bucket{le="0.0005"}"#) < requests,
        "not every request took under half a millisecond"
    );
    assert_eq!(value(r#"exchange_worker_exits_total{how="signaled"}"#), 1.0);
    assert_eq!(value("exchange_workers_started_total"), 3.0);
    assert!(value("exchange_flush_batch_answers_count") > 0.0);
}

#[test]
fn ready_follows_the_database_and_live_the_server() {
    let cluster = Cluster::start("metrics-ready", &[], &[]);
    cluster.sql("CREATE DATABASE exchange");
    let url = cluster.url("postgres", "exchange");
    exchange::migrations::migrate(&mut common::sql(&url)).expect("the schema");
    let port = common::free_port();
    let server = Server::start(&url, 2, &["--metrics-port", &port.to_string()]);
    let status = metrics_addr(port);
    let ready = || get(status, "/ready").expect("/ready");
    wait_for("ready", Duration::from_secs(10), || ready().0 == 200);
    assert!(
        compose_health_check(port),
        "the compose file's check, when ready"
    );

    cluster.halt();
    wait_for(
        "not ready without the database",
        Duration::from_secs(10),
        || ready().0 == 503,
    );
    let (_, why) = ready();
    assert!(why.starts_with("not ready: database"), "{why}");
    assert_eq!(get(status, "/live").expect("/live").0, 200);
    assert!(
        !compose_health_check(port),
        "the compose file's check, when not"
    );

    cluster.resume();
    wait_for("ready again", Duration::from_secs(20), || ready().0 == 200);
    assert!(server.send("<create/>").is_empty());
}

/// Runs the server's health check from docker-compose.yml (its `bash -c` command, with
/// the metrics port it names replaced by `port`); true if it passes.
fn compose_health_check(port: u16) -> bool {
    let compose = std::fs::read_to_string("docker-compose.yml").expect("docker-compose.yml");
    let script = compose
        .lines()
        .find(|line| line.contains("/ready HTTP"))
        .and_then(|line| line.split_once(r#""bash", "-c", ""#))
        .and_then(|(_, rest)| rest.strip_suffix(r#""]"#))
        .expect("the server's health check in docker-compose.yml")
        .replace(r"\\", r"\")
        .replace("/9187", &format!("/{port}"));
    Command::new("bash")
        .args(["-c", &script])
        .status()
        .expect("run bash")
        .success()
}
