//! The status process: serves the metrics (`/metrics`, Prometheus' text format) and the
//! health checks (`/live`, `/ready`) over HTTP on `--metrics-bind`:`--metrics-port`.
//!
//! A process of its own, forked by the supervisor like a worker and replaced like one
//! if it dies: the supervisor must stay single-threaded to fork safely, and a worker's
//! threads are for the exchange, so a slow scraper or a check of the database here
//! holds up no order. It reads the counters every worker writes (`crate::metrics`).
//!
//! `/live` answers 200 while the supervisor runs. `/ready` answers 200 when every worker
//! slot has a worker that showed life within `SILENT_AFTER`, and the database answered
//! a check of the schema's version within the last `DATABASE_CHECK_EVERY` or so;
//! otherwise 503, with the reason in one line. Both fit HAProxy's `option httpchk` and
//! a container health check.

use crate::metrics::{self, Shared};
use crate::server::{exposition, signals, Settings};
use crate::store;
use std::net::TcpListener;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A worker that has not shown life for this long makes the server not ready.
const SILENT_AFTER: Duration = Duration::from_secs(5);
/// How often the database is checked for `/ready`.
const DATABASE_CHECK_EVERY: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(100);

/// Serves until a stop is requested or the supervisor is gone; returns the exit code.
pub fn run(listener: TcpListener, settings: &Settings) -> i32 {
    let process = tracing::error_span!(parent: None, "status", pid = std::process::id());
    let _process = process.clone().entered();
    let Some(shared) = metrics::shared() else {
        tracing::error!("the shared counters are not mapped");
        return 1;
    };
    let server = match tiny_http::Server::from_listener(listener, None) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("cannot serve: {e}");
            return 1;
        }
    };
    let supervisor = nix::unistd::getppid();
    let database = Arc::new(Mutex::new(Err("not checked yet".to_string())));
    let checker = database.clone();
    let url = settings.database_url.clone();
    let timeouts = settings.database_timeouts();
    let spawned = std::thread::Builder::new()
        .name("database-check".into())
        .spawn(move || {
            let _process = process.entered();
            check_database(&url, timeouts, &checker)
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the database check: {e}");
        return 1;
    }
    while !signals::stop_requested() && nix::unistd::getppid() == supervisor {
        let request = match server.recv_timeout(TICK) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!("cannot receive a request: {e}");
                continue;
            }
        };
        // A scraper that went away is its own concern.
        let response = answer(request.url(), shared, &database);
        let _ = request.respond(response);
    }
    0
}

/// The answer to a GET of `path`.
fn answer(
    path: &str,
    shared: &'static Shared,
    database: &Mutex<Result<(), String>>,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let (code, body) = match path {
        "/metrics" => (200, exposition::render(shared)),
        "/live" => (200, "live\n".to_string()),
        "/ready" => match readiness(shared, database) {
            Ok(()) => (200, "ready\n".to_string()),
            Err(why) => (503, format!("not ready: {why}\n")),
        },
        _ => (
            404,
            "not found: try /metrics, /live or /ready\n".to_string(),
        ),
    };
    let content_type = if path == "/metrics" {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    tiny_http::Response::from_string(body)
        .with_status_code(code)
        .with_header(header("Content-Type", content_type))
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    // Both are fixed ASCII strings here, which a header always accepts.
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| unreachable!("a fixed ASCII header"))
}

/// Why the server is not ready, if it is not.
fn readiness(shared: &Shared, database: &Mutex<Result<(), String>>) -> Result<(), String> {
    let now = metrics::now_ms();
    for (slot, worker) in shared.workers.iter().enumerate() {
        let seen = worker.alive_at_ms.load(Relaxed);
        if seen == 0 {
            return Err(format!("worker {slot} has not started serving"));
        }
        let silent = Duration::from_millis(now.saturating_sub(seen));
        if silent > SILENT_AFTER {
            return Err(format!(
                "worker {slot} has shown no life for {} ms",
                silent.as_millis()
            ));
        }
    }
    match database.lock() {
        Ok(state) => state.clone(),
        Err(_) => Err("the database check failed".into()),
    }
}

/// Keeps one session and checks the schema's version on it every second, noting the
/// outcome for `/ready`; a failure drops the session, and the next check opens another.
fn check_database(url: &str, timeouts: store::DatabaseTimeouts, state: &Mutex<Result<(), String>>) {
    let mut client: Option<postgres::Client> = None;
    loop {
        let outcome = store::config(url, timeouts).and_then(|target| {
            let session = match client.take() {
                Some(session) if !session.is_closed() => session,
                _ => target.connect()?,
            };
            let session = client.insert(session);
            crate::migrations::check(session)
        });
        if outcome.is_err() {
            client = None;
        }
        if let Ok(mut noted) = state.lock() {
            *noted = outcome.map_err(|e| e.to_string());
        }
        std::thread::sleep(DATABASE_CHECK_EVERY);
    }
}
