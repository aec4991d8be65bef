//! The server's counters, in memory shared by all its processes: one block per worker
//! slot and one for the supervisor.
//!
//! Why shared memory: the server is several processes (a supervisor, its workers, and
//! the status process that serves the metrics), and a scrape must see the whole server.
//! The supervisor maps one anonymous shared region before it forks, so every child sees
//! the same pages; a worker adds to its own slot's block with relaxed atomic adds (no
//! lock, no system call, no message), and the status process reads every block at each
//! scrape. A respawned worker takes over its slot's block, so every counter only grows,
//! as Prometheus expects, and a worker's death loses none of its counts.
//!
//! Outside a server (the tests that run a handler in-process, `migrate`), recording
//! goes to a block of the process's own that nobody reads.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

/// A request by its root element, or unparsable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Create,
    Transactions,
    Malformed,
}

impl RequestKind {
    pub const ALL: [RequestKind; 3] = [Self::Create, Self::Transactions, Self::Malformed];

    pub fn label(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Transactions => "transactions",
            Self::Malformed => "malformed",
        }
    }
}

/// What came of one operation. An `<error>` does not say which kind of operation it
/// answers, so the successes name their kind and the errors their reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationOutcome {
    AccountCreated,
    PositionCreated,
    Opened,
    Queried,
    Canceled,
    Rejected,
    ServiceFailure,
}

impl OperationOutcome {
    pub const ALL: [OperationOutcome; 7] = [
        Self::AccountCreated,
        Self::PositionCreated,
        Self::Opened,
        Self::Queried,
        Self::Canceled,
        Self::Rejected,
        Self::ServiceFailure,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::AccountCreated => "account_created",
            Self::PositionCreated => "position_created",
            Self::Opened => "opened",
            Self::Queried => "queried",
            Self::Canceled => "canceled",
            Self::Rejected => "rejected",
            Self::ServiceFailure => "service_failure",
        }
    }
}

/// What ended a connection the intake held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// Its request ran (and its answer went, or was cut off).
    Served,
    /// Not complete within the request timeout.
    TimedOut,
    /// Closed to make room (connections or bytes).
    Evicted,
    /// Complete, but dropped unexecuted: too late, or the client was gone.
    Abandoned,
}

impl ConnectionEnd {
    pub const ALL: [ConnectionEnd; 4] =
        [Self::Served, Self::TimedOut, Self::Evicted, Self::Abandoned];

    pub fn label(self) -> &'static str {
        match self {
            Self::Served => "served",
            Self::TimedOut => "timed_out",
            Self::Evicted => "evicted",
            Self::Abandoned => "abandoned",
        }
    }
}

/// The SQLSTATE classes worth telling apart; the rest count as "other".
pub const SQLSTATE_CLASSES: [&str; 8] = ["08", "23", "40", "53", "54", "55", "57", "other"];

/// Upper bounds of the latency buckets, in seconds.
pub const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the flusher's batch sizes, in answers.
pub const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Counts per bucket (not cumulative; the last is above every bound), with the sum of
/// the observations in millionths and their number.
#[repr(C)]
pub struct Histogram<const N: usize> {
    buckets: [AtomicU64; N],
    above: AtomicU64,
    sum_millionths: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn observe(&self, bounds: &[f64; N], value: f64) {
        let bucket = bounds.iter().position(|bound| value <= *bound);
        match bucket {
            Some(i) => self.buckets[i].fetch_add(1, Relaxed),
            None => self.above.fetch_add(1, Relaxed),
        };
        self.sum_millionths
            .fetch_add((value * 1e6).round() as u64, Relaxed);
    }

    /// The count in each bucket (not cumulative: the encoder adds them up), ending
    /// with the one above every bound, then the count and the sum.
    pub fn read(&self, bounds: &[f64; N]) -> (Vec<(f64, u64)>, u64, f64) {
        let mut buckets: Vec<(f64, u64)> = bounds
            .iter()
            .zip(&self.buckets)
            .map(|(bound, count)| (*bound, count.load(Relaxed)))
            .collect();
        buckets.push((f64::INFINITY, self.above.load(Relaxed)));
        let total = buckets.iter().map(|(_, count)| count).sum();
        let sum = self.sum_millionths.load(Relaxed) as f64 / 1e6;
        (buckets, total, sum)
    }
}

/// One worker slot's counters.
#[repr(C)]
pub struct Worker {
    pub requests: [[AtomicU64; 2]; RequestKind::ALL.len()],
    pub operations: [AtomicU64; OperationOutcome::ALL.len()],
    pub rejections: [AtomicU64; crate::rejection::REASONS.len()],
    pub connections_accepted: AtomicU64,
    /// Connections the worker holds while their requests arrive (a gauge).
    pub connections_waiting: AtomicU64,
    pub connections_ended: [AtomicU64; ConnectionEnd::ALL.len()],
    pub accepts_without_descriptors: AtomicU64,
    pub database_errors: [AtomicU64; SQLSTATE_CLASSES.len()],
    pub retries: AtomicU64,
    /// Answers that became "outcome unknown" because their commits could not be made
    /// durable (counted as executed in `requests` and `operations` already).
    pub answers_not_durable: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub request_seconds: Histogram<{ SECONDS_BUCKETS.len() }>,
    pub database_seconds: Histogram<{ SECONDS_BUCKETS.len() }>,
    pub durability_seconds: Histogram<{ SECONDS_BUCKETS.len() }>,
    pub flush_batch_answers: Histogram<{ BATCH_BUCKETS.len() }>,
    /// Milliseconds since the epoch of the worker's last sign of life: its intake loop
    /// notes it at least once a tick. Zero before the slot's first worker serves.
    pub alive_at_ms: AtomicU64,
    /// The pid of the worker in the slot now.
    pub pid: AtomicU64,
}

/// The supervisor's counters.
#[repr(C)]
pub struct Supervisor {
    /// Workers that ended, by how: exited 0, exited non-zero, killed by a signal.
    pub worker_exits: [AtomicU64; 3],
    pub workers_started: AtomicU64,
}

pub const WORKER_EXITS: [&str; 3] = ["exited_zero", "exited_nonzero", "signaled"];

/// The whole region.
pub struct Shared {
    pub supervisor: &'static Supervisor,
    pub workers: &'static [Worker],
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static SLOT: OnceLock<usize> = OnceLock::new();

/// Maps the region for `workers` slots; called once, by the supervisor, before it
/// forks. Anonymous mappings start zeroed, which is every counter at zero.
pub fn map(workers: usize) -> std::io::Result<&'static Shared> {
    let supervisor_bytes = std::mem::size_of::<Supervisor>();
    let worker_offset = supervisor_bytes.next_multiple_of(std::mem::align_of::<Worker>());
    let bytes = worker_offset + workers * std::mem::size_of::<Worker>();
    // SAFETY: a fresh anonymous shared mapping; no existing memory is touched.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes.max(1),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the mapping is page-aligned, zeroed, large enough for both parts, and
    // never unmapped; all-zero bytes are valid for structs of atomics; every access
    // afterwards goes through atomics, so processes sharing it never race.
    let shared = unsafe {
        Shared {
            supervisor: &*(base as *const Supervisor),
            workers: std::slice::from_raw_parts(
                (base as *const u8).add(worker_offset) as *const Worker,
                workers,
            ),
        }
    };
    Ok(SHARED.get_or_init(|| shared))
}

/// The region, in the supervisor and the processes it forked after mapping it.
pub fn shared() -> Option<&'static Shared> {
    SHARED.get()
}

/// Makes this process record into `slot`'s block: called by a worker right after fork.
pub fn enter_slot(slot: usize) {
    let _ = SLOT.set(slot);
    let me = worker();
    me.pid.store(u64::from(std::process::id()), Relaxed);
    note_alive();
}

/// This process's block: its slot's, or a private one outside a server.
pub fn worker() -> &'static Worker {
    static PRIVATE: OnceLock<&'static Worker> = OnceLock::new();
    if let (Some(shared), Some(slot)) = (SHARED.get(), SLOT.get()) {
        if let Some(block) = shared.workers.get(*slot) {
            return block;
        }
    }
    PRIVATE.get_or_init(|| {
        // SAFETY: all-zero bytes are a valid Worker (atomics only); leaked on purpose,
        // once per process.
        Box::leak(Box::new(unsafe { std::mem::zeroed::<Worker>() }))
    })
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn note_alive() {
    worker().alive_at_ms.store(now_ms(), Relaxed);
}

pub fn count_request(kind: RequestKind, service_failure: bool) {
    let kind = RequestKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0);
    worker().requests[kind][usize::from(service_failure)].fetch_add(1, Relaxed);
}

pub fn count_operation(outcome: OperationOutcome) {
    let i = OperationOutcome::ALL
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or(0);
    worker().operations[i].fetch_add(1, Relaxed);
}

pub fn count_rejection(message: &str) {
    let i = crate::rejection::reason_index(message);
    worker().rejections[i].fetch_add(1, Relaxed);
}

pub fn count_connection_end(end: ConnectionEnd) {
    let i = ConnectionEnd::ALL
        .iter()
        .position(|e| *e == end)
        .unwrap_or(0);
    worker().connections_ended[i].fetch_add(1, Relaxed);
}

/// Counts a database error by its SQLSTATE's class (its first two characters).
pub fn count_database_error(sqlstate: Option<&str>) {
    let class = sqlstate.and_then(|code| code.get(..2)).unwrap_or("other");
    let i = SQLSTATE_CLASSES
        .iter()
        .position(|c| *c == class)
        .unwrap_or(SQLSTATE_CLASSES.len() - 1);
    worker().database_errors[i].fetch_add(1, Relaxed);
}

pub fn observe_request(took: Duration) {
    worker()
        .request_seconds
        .observe(&SECONDS_BUCKETS, took.as_secs_f64());
}

pub fn observe_database(took: Duration) {
    worker()
        .database_seconds
        .observe(&SECONDS_BUCKETS, took.as_secs_f64());
}

pub fn observe_durability(took: Duration) {
    worker()
        .durability_seconds
        .observe(&SECONDS_BUCKETS, took.as_secs_f64());
}

pub fn observe_flush_batch(answers: usize) {
    worker()
        .flush_batch_answers
        .observe(&BATCH_BUCKETS, answers as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_read_per_bucket_with_the_rest_above_the_last_bound() {
        let histogram: Histogram<3> = unsafe { std::mem::zeroed() };
        let bounds = [1.0, 2.0, 4.0];
        for value in [0.5, 1.0, 3.0, 9.0] {
            histogram.observe(&bounds, value);
        }
        let (buckets, count, sum) = histogram.read(&bounds);
        assert_eq!(buckets, [(1.0, 2), (2.0, 0), (4.0, 1), (f64::INFINITY, 1)]);
        assert_eq!((count, sum), (4, 13.5));
    }

    #[test]
    fn the_shared_region_is_seen_by_a_forked_child() {
        let shared = map(2).expect("map");
        // SAFETY: the test process may have threads; the child only adds and exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                shared.workers[1].retries.fetch_add(7, Relaxed);
                // SAFETY: exits at once without running the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(shared.workers[1].retries.load(Relaxed), 7);
                assert_eq!(shared.workers[0].retries.load(Relaxed), 0);
            }
        }
    }
}
