//! The shared counters (`crate::metrics`) in Prometheus' text format, through the
//! prometheus-client crate: a collector that reads every block at each scrape.
//! Counters are for the whole server unless a `worker` label (the slot) is worth
//! having: where a worker that stopped serving would show.

use crate::metrics::{
    self, ConnectionEnd, Histogram, OperationOutcome, RequestKind, Shared, BATCH_BUCKETS,
    SECONDS_BUCKETS, SQLSTATE_CLASSES, WORKER_EXITS,
};
use crate::rejection::REASONS;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The whole server's metrics, as the text a scrape gets.
pub fn render(shared: &'static Shared) -> String {
    let mut registry = Registry::with_prefix("exchange");
    registry.register_collector(Box::new(Server { shared }));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

struct Server {
    shared: &'static Shared,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the shared counters of {} workers",
            self.shared.workers.len()
        )
    }
}

fn sum(shared: &Shared, counter: impl Fn(&metrics::Worker) -> &AtomicU64) -> u64 {
    shared
        .workers
        .iter()
        .map(|w| counter(w).load(Relaxed))
        .sum()
}

/// One counter family: a value per label set.
fn counters<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = ([(&'static str, String); N], u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in values {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One histogram family summed over the workers. Bounds and sums are floats because
/// Prometheus' format carries them so; they are seconds or answer counts, never money.
fn histogram<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    bounds: &[f64; N],
    blocks: impl Iterator<Item = &'static Histogram<N>>,
) -> Result<(), std::fmt::Error> {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let (mut count, mut total) = (0, 0.0);
    for block in blocks {
        let (these, n, s) = block.read(bounds);
        if buckets.is_empty() {
            buckets = these;
        } else {
            for (sum, (_, add)) in buckets.iter_mut().zip(these) {
                sum.1 += add;
            }
        }
        count += n;
        total += s;
    }
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Histogram)?;
    family.encode_histogram::<Vec<(String, String)>>(total, count, &buckets, None)
}

impl Collector for Server {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (shared, e) = (self.shared, &mut encoder);
        requests(e, shared)?;
        connections(e, shared)?;
        database(e, shared)?;
        latencies(e, shared)?;
        processes(e, shared)?;
        Ok(())
    }
}

/// Requests, their operations and the rejections among them.
fn requests(e: &mut DescriptorEncoder, shared: &Shared) -> Result<(), std::fmt::Error> {
    let workers = shared.workers;
    counters(
        e,
        "requests",
        "Requests answered, by root element (malformed: unparsable) and outcome (service_failure: the database failed part or all of it)",
        RequestKind::ALL.iter().enumerate().flat_map(|(k, kind)| {
            ["answered", "service_failure"].iter().enumerate().map(move |(o, outcome)| {
                (
                    [("kind", kind.label().to_string()), ("outcome", outcome.to_string())],
                    workers.iter().map(|w| w.requests[k][o].load(Relaxed)).sum(),
                )
            })
        }),
    )?;
    counters(
        e,
        "operations",
        "Operations answered, by outcome",
        OperationOutcome::ALL
            .iter()
            .enumerate()
            .map(|(i, outcome)| {
                (
                    [("outcome", outcome.label().to_string())],
                    sum(shared, |w| &w.operations[i]),
                )
            }),
    )?;
    counters(
        e,
        "rejections",
        "Operations answered with an error, by reason",
        REASONS.iter().enumerate().map(|(i, (reason, _))| {
            (
                [("reason", reason.to_string())],
                sum(shared, |w| &w.rejections[i]),
            )
        }),
    )?;
    Ok(())
}

/// Connections: accepted, ended, waiting, and accepts short of descriptors.
fn connections(e: &mut DescriptorEncoder, shared: &Shared) -> Result<(), std::fmt::Error> {
    let workers = shared.workers;
    counters(
        e,
        "connections_accepted",
        "Connections accepted, by worker slot",
        workers.iter().enumerate().map(|(slot, w)| {
            (
                [("worker", slot.to_string())],
                w.connections_accepted.load(Relaxed),
            )
        }),
    )?;
    counters(
        e,
        "connections_ended",
        "Connections ended, by how: served, timed_out (request incomplete within --request-timeout-ms), evicted (to make room under --connections-max or --pending-bytes-max), abandoned (dropped unexecuted)",
        ConnectionEnd::ALL.iter().enumerate().map(|(i, end)| {
            (
                [("end", end.label().to_string())],
                sum(shared, |w| &w.connections_ended[i]),
            )
        }),
    )?;
    let mut gauge = e.encode_descriptor(
        "connections_waiting",
        "Connections held while their requests arrive, by worker slot",
        None,
        MetricType::Gauge,
    )?;
    for (slot, w) in workers.iter().enumerate() {
        let waiting = w.connections_waiting.load(Relaxed) as i64;
        ConstGauge::new(waiting).encode(gauge.encode_family(&[("worker", slot.to_string())])?)?;
    }
    counters(
        e,
        "accepts_without_descriptors",
        "Accepts that found no file descriptor free (the worker pauses accepting)",
        [([], sum(shared, |w| &w.accepts_without_descriptors))],
    )?;
    Ok(())
}

/// The database: errors, retries, answers not made durable, sessions opened.
fn database(e: &mut DescriptorEncoder, shared: &Shared) -> Result<(), std::fmt::Error> {
    counters(
        e,
        "database_errors",
        "Database errors met, by SQLSTATE class (other: none, or a class not listed)",
        SQLSTATE_CLASSES.iter().enumerate().map(|(i, class)| {
            (
                [("sqlstate_class", class.to_string())],
                sum(shared, |w| &w.database_errors[i]),
            )
        }),
    )?;
    counters(
        e,
        "database_retries",
        "Statements run again after a deadlock or a serialization failure",
        [([], sum(shared, |w| &w.retries))],
    )?;
    counters(
        e,
        "answers_not_durable",
        "Answers that became 'outcome unknown' because their commits could not be confirmed durable (their requests and operations were counted as executed)",
        [([], sum(shared, |w| &w.answers_not_durable))],
    )?;
    counters(
        e,
        "database_sessions_opened",
        "Database sessions opened by handlers and flushers",
        [([], sum(shared, |w| &w.sessions_opened))],
    )?;
    Ok(())
}

/// Where a request's time goes, and how many answers one flush covers.
fn latencies(e: &mut DescriptorEncoder, shared: &Shared) -> Result<(), std::fmt::Error> {
    let workers = shared.workers;
    let seconds = Unit::Seconds;
    histogram(
        e,
        "request",
        "Time from a request's start to its answer being handed over for sending",
        Some(&seconds),
        &SECONDS_BUCKETS,
        workers.iter().map(|w| &w.request_seconds),
    )?;
    histogram(
        e,
        "database",
        "Time a request spent executing in the database",
        Some(&seconds),
        &SECONDS_BUCKETS,
        workers.iter().map(|w| &w.database_seconds),
    )?;
    histogram(
        e,
        "durability_wait",
        "Time one wait for the WAL took (one per flush, covering a batch of answers)",
        Some(&seconds),
        &SECONDS_BUCKETS,
        workers.iter().map(|w| &w.durability_seconds),
    )?;
    histogram(
        e,
        "flush_batch_answers",
        "Answers one wait for the WAL vouched for",
        None,
        &BATCH_BUCKETS,
        workers.iter().map(|w| &w.flush_batch_answers),
    )?;
    Ok(())
}

/// The worker processes: starts, exits, and when each was last seen serving.
fn processes(e: &mut DescriptorEncoder, shared: &Shared) -> Result<(), std::fmt::Error> {
    let workers = shared.workers;
    counters(
        e,
        "workers_started",
        "Worker processes started, the first ones included",
        [([], shared.supervisor.workers_started.load(Relaxed))],
    )?;
    counters(
        e,
        "worker_exits",
        "Worker processes that ended, by how",
        WORKER_EXITS.iter().enumerate().map(|(i, how)| {
            (
                [("how", how.to_string())],
                shared.supervisor.worker_exits[i].load(Relaxed),
            )
        }),
    )?;
    let now = metrics::now_ms();
    let mut gauge = e.encode_descriptor(
        "worker_last_seen",
        "Seconds since each worker slot's process last showed life (its intake loop notes it every 100 ms or so)",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for (slot, w) in workers.iter().enumerate() {
        let at = w.alive_at_ms.load(Relaxed);
        // Seconds as a float, as Prometheus reads a gauge: a time, never money.
        let age = if at == 0 {
            -1.0
        } else {
            now.saturating_sub(at) as f64 / 1000.0
        };
        ConstGauge::new(age).encode(gauge.encode_family(&[("worker", slot.to_string())])?)?;
    }
    Ok(())
}
