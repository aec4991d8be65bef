//! What is recorded when a request is answered: its latency in the metrics and, past
//! `--slow-request-ms`, one line in the log saying what the request was and where its
//! time went (never its body, which may be large and is the client's business).

use crate::metrics::{self, RequestKind};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The slow-request threshold in milliseconds; `u64::MAX` when the log is off.
static SLOW_MS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Sets the threshold for this process (and the workers forked after).
pub fn log_slower_than(ms: Option<u64>) {
    SLOW_MS.store(ms.unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// A request once executed: what it was, and when and for how long the database had it.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub kind: RequestKind,
    /// The operations its answer holds (0 when it was rejected whole).
    pub operations: usize,
    /// Taken before its first statement was sent.
    pub began: Instant,
    pub database: Duration,
}

/// Records that `request`'s answer goes out now, after `durability` spent waiting for
/// the WAL on its behalf.
pub fn record(request: &Record, durability: Duration, stream: &TcpStream) {
    let total = request.began.elapsed();
    metrics::observe_request(total);
    if total.as_millis() < u128::from(SLOW_MS.load(Ordering::Relaxed)) {
        return;
    }
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "gone".to_string(), |a| a.to_string());
    tracing::warn!(
        kind = request.kind.label(),
        operations = request.operations,
        total_us = micros(total),
        database_us = micros(request.database),
        durability_us = micros(durability),
        peer = %peer,
        "slow request"
    );
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
