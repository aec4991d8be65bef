//! The load report: counters and a latency histogram per connection, merged at the
//! end, printed for people or as one JSON object for scripts.

use exchange::rejection::is_service_failure;
use hdrhistogram::Histogram;
use serde_json::{json, Number, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Microseconds; the histogram keeps three significant figures up to a minute.
const LATENCY_US_MAX: u64 = 60_000_000;

/// What one connection (or, merged, the whole run) saw.
pub struct Tally {
    pub requests: u64,
    pub operations: u64,
    /// Of the operations, how many were orders (the rest are queries and cancels).
    pub orders: u64,
    pub latency_us: Histogram<u64>,
    /// Rejections and errors in answers, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Connections that failed or answers that could not be read, by kind.
    pub transport_failures: BTreeMap<String, u64>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            requests: 0,
            operations: 0,
            orders: 0,
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("valid histogram bounds"),
            errors: BTreeMap::new(),
            transport_failures: BTreeMap::new(),
        }
    }

    pub fn record_latency(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(micros.clamp(1, LATENCY_US_MAX));
    }

    pub fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.operations += other.operations;
        self.orders += other.orders;
        let _ = self.latency_us.add(&other.latency_us);
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        for (kind, n) in other.transport_failures {
            *self.transport_failures.entry(kind).or_default() += n;
        }
    }

    /// Errors that are not business rejections: the server could not do its job.
    pub fn server_errors(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(kind, _)| is_service_failure(kind))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn transport_failure_count(&self) -> u64 {
        self.transport_failures.values().sum()
    }
}

/// The kind of an error text: up to its first colon, so figures do not split kinds.
pub fn error_kind(text: &str) -> String {
    text.split(':')
        .next()
        .unwrap_or(text)
        .trim()
        .chars()
        .take(60)
        .collect()
}

/// `n` per second over `elapsed`, to one decimal, exactly.
fn per_second(n: u64, elapsed: Duration) -> String {
    let millis = elapsed.as_millis().max(1);
    let tenths = u128::from(n) * 10_000 / millis;
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// Microseconds as milliseconds with three decimals.
fn millis(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

fn number(text: &str) -> Value {
    text.parse::<Number>().map_or(Value::Null, Value::Number)
}

pub struct Summary<'a> {
    pub tally: &'a Tally,
    /// Ctrl-C ended the run early: the figures cover what was done until then.
    pub interrupted: bool,
    pub elapsed: Duration,
    pub connections: usize,
    pub orders_per_request: usize,
    pub queries_percent: u8,
    pub client_cpu: Duration,
}

impl Summary<'_> {
    /// The latency below which `per_mille` thousandths of requests fall (999 for p99.9),
    /// found by counting, in integers.
    fn percentile(&self, per_mille: u64) -> u64 {
        let histogram = &self.tally.latency_us;
        let rank = (histogram.len() * per_mille).div_ceil(1000).max(1);
        let mut seen = 0;
        for bucket in histogram.iter_recorded() {
            seen += bucket.count_at_value();
            if seen >= rank {
                return histogram.highest_equivalent(bucket.value_iterated_to());
            }
        }
        histogram.max()
    }

    fn client_cpu_us_per_request(&self) -> u128 {
        self.client_cpu.as_micros() / u128::from(self.tally.requests.max(1))
    }

    pub fn print(&self) {
        let t = self.tally;
        println!(
            "connections        {} x {} operations per request, {}% queries and cancels",
            self.connections, self.orders_per_request, self.queries_percent
        );
        println!(
            "requests           {} in {} s ({}/s){}",
            t.requests,
            millis(self.elapsed.as_micros() as u64 / 1000),
            per_second(t.requests, self.elapsed),
            if self.interrupted {
                ", interrupted by Ctrl-C"
            } else {
                ""
            }
        );
        println!(
            "operations         {} ({}/s)",
            t.operations,
            per_second(t.operations, self.elapsed)
        );
        println!(
            "orders             {} ({}/s)",
            t.orders,
            per_second(t.orders, self.elapsed)
        );
        println!(
            "latency ms         p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            millis(self.percentile(500)),
            millis(self.percentile(900)),
            millis(self.percentile(990)),
            millis(self.percentile(999)),
            millis(t.latency_us.max())
        );
        println!(
            "client CPU         {} us per request",
            self.client_cpu_us_per_request()
        );
        println!("transport failures {}", t.transport_failure_count());
        for (kind, n) in &t.transport_failures {
            println!("  {n:>8}  {kind}");
        }
        println!(
            "errors in answers  {} ({} not business rejections)",
            t.errors.values().sum::<u64>(),
            t.server_errors()
        );
        for (kind, n) in &t.errors {
            println!("  {n:>8}  {kind}");
        }
    }

    pub fn json(&self) -> Value {
        let t = self.tally;
        json!({
            "connections": self.connections,
            "orders_per_request": self.orders_per_request,
            "queries_percent": self.queries_percent,
            "interrupted": self.interrupted,
            "requests": t.requests,
            "operations": t.operations,
            "elapsed_sec": number(&millis(self.elapsed.as_micros() as u64 / 1000)),
            "requests_per_sec": number(&per_second(t.requests, self.elapsed)),
            "operations_per_sec": number(&per_second(t.operations, self.elapsed)),
            "orders": t.orders,
            "orders_per_sec": number(&per_second(t.orders, self.elapsed)),
            "latency_ms": {
                "p50": number(&millis(self.percentile(500))),
                "p90": number(&millis(self.percentile(900))),
                "p99": number(&millis(self.percentile(990))),
                "p99_9": number(&millis(self.percentile(999))),
                "max": number(&millis(t.latency_us.max())),
            },
            "client_cpu_us_per_request": self.client_cpu_us_per_request() as u64,
            "transport_failures": t.transport_failure_count(),
            "transport_failure_kinds": t.transport_failures,
            "errors": t.errors,
            "server_errors": t.server_errors(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_the_failures_of_the_service_only() {
        let mut tally = Tally::new();
        for (text, n) in [
            (
                "insufficient funds: the balance does not cover amount times limit",
                5,
            ),
            ("not executed: database unavailable: refused", 1),
            ("outcome unknown: database connection lost: closed", 2),
        ] {
            *tally.errors.entry(error_kind(text)).or_default() += n;
        }
        assert_eq!(tally.server_errors(), 3);
    }
}
