//! A worker's intake: accepts connections and reads requests, many at once, each under
//! one deadline, and gives each complete request to the handler thread that read it.
//!
//! All the worker's handler threads share one intake: one epoll set holding the
//! listener and every connection whose request is still arriving, and one table of
//! those connections. Whichever handler is idle waits on the set, takes one event,
//! does one bounded piece of work (an accept or one read), and if that completes a
//! request, executes it on the same thread with no hand-off. So a connection never
//! waits behind another request's execution while a handler is idle, and slow or
//! silent clients cost a table entry and a buffer each, never a handler.
//!
//! Bounds (docs/PROTOCOL.md, "Limits"): at most `connections_max` connections and
//! `pending_bytes_max` bytes of incomplete requests per worker. Past either, the
//! connection that has waited longest is evicted: it has had the most time, and a
//! client that trickles or stalls cannot keep its place against newcomers.

use crate::framing::{Frame, Framer};
use crate::metrics::{self, ConnectionEnd};
use crate::protocol::{render, Response};
use crate::server::abandoned::too_late;
use crate::server::courier::close_politely;
use crate::server::signals::Stop;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{accept4, SockFlag};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A complete request for the handler.
pub struct Job {
    /// Non-blocking, as the intake left it.
    pub stream: TcpStream,
    pub document: Vec<u8>,
    /// When its connection was accepted: the request must start within the timeout.
    pub accepted: Instant,
}

/// Bounds of the intake, per worker.
#[derive(Clone, Copy, Debug)]
pub struct IntakeLimits {
    pub request_bytes_max: usize,
    pub request_timeout: Duration,
    pub connections_max: usize,
    pub pending_bytes_max: usize,
}

/// What one turn of a handler at the intake gave. A handler takes a turn at least once
/// a tick, so it can see to work that reaches it from elsewhere in between.
pub enum Turn {
    /// A complete request, for the handler that read it to execute.
    Request(Job),
    /// Nothing complete this time.
    Nothing,
    /// A stop was requested and every pending read has ended: the handler is done.
    Finished,
}

/// A handler's own tools at the intake, kept for its life.
pub struct Reader {
    /// One read buffer: zeroing 64 KiB for every read would cost more than most reads
    /// move.
    chunk: Vec<u8>,
    events: [EpollEvent; 1],
}

/// How long pending reads may go on after a stop was requested.
const DRAIN_ON_STOP: Duration = Duration::from_secs(2);
/// How often a waiting handler wakes to look at the stop flag and deadlines.
const TICK: Duration = Duration::from_millis(100);
/// The most one read takes from a connection.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// How often the intake's counters are logged, when they changed.
const REPORT_EVERY: Duration = Duration::from_secs(10);
const LISTENER: u64 = u64::MAX;
/// How long accepting rests when no descriptor is free and none can be freed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A connection whose request is still arriving.
struct Pending {
    stream: TcpStream,
    buffer: Vec<u8>,
    framer: Framer,
    accepted: Instant,
    /// Tells this connection from an earlier one in the same table slot.
    generation: u32,
}

/// What one read did to a pending connection.
enum AfterRead {
    /// Still arriving.
    Waiting,
    /// Answered with an error, or gone.
    Done,
    /// The request is `buffer[range]`.
    Complete(std::ops::Range<usize>),
}

/// The intake's shared table, behind one lock.
struct Table {
    listener: Option<TcpListener>,
    slots: Vec<Option<Pending>>,
    free: Vec<usize>,
    /// Slots in accept order, which is deadline order; entries of slots since freed
    /// are skipped when met.
    by_age: VecDeque<(usize, u32)>,
    held: usize,
    /// Capacity of every pending buffer.
    buffered_bytes: usize,
    next_generation: u32,
    drain_until: Option<Instant>,
    /// Set while accepting waits for descriptors to be freed.
    accept_paused_until: Option<Instant>,
    descriptors_logged: Instant,
    parent_checked: Instant,
    orphaned: bool,
}

pub struct Intake {
    epoll: Epoll,
    limits: IntakeLimits,
    table: Mutex<Table>,
    parent: nix::unistd::Pid,
    stop: Stop,
    reported: Mutex<(Instant, [u64; 3])>,
}

impl Intake {
    pub fn new(listener: TcpListener, limits: IntakeLimits, stop: Stop) -> std::io::Result<Intake> {
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
        let now = Instant::now();
        Ok(Intake {
            epoll,
            limits,
            table: Mutex::new(Table {
                listener: Some(listener),
                slots: Vec::new(),
                free: Vec::new(),
                by_age: VecDeque::new(),
                held: 0,
                buffered_bytes: 0,
                next_generation: 0,
                drain_until: None,
                accept_paused_until: None,
                descriptors_logged: now.checked_sub(REPORT_EVERY).unwrap_or(now),
                parent_checked: now,
                orphaned: false,
            }),
            parent: nix::unistd::getppid(),
            stop,
            reported: Mutex::new((now, [0; 3])),
        })
    }

    pub fn limits(&self) -> IntakeLimits {
        self.limits
    }

    /// Answers a complete request that will not be executed (it came too late, or its
    /// client is gone), and counts it.
    pub fn drop_abandoned(&self, job: Job, why: String) {
        metrics::count_connection_end(ConnectionEnd::Abandoned);
        answer_and_close(&job.stream, &Response::Rejected(why));
    }

    /// A handler's own buffers for its turns.
    pub fn reader(&self) -> Reader {
        Reader {
            chunk: vec![0u8; READ_CHUNK_BYTES],
            events: [EpollEvent::empty(); 1],
        }
    }

    /// One turn of a handler's share of the work: one wait for an event, and one
    /// bounded piece of work (an accept or one read) if one came. Turns end with
    /// [`Turn::Finished`] once a stop is requested (or the parent died) and every
    /// pending read has ended.
    pub fn turn(&self, reader: &mut Reader) -> std::io::Result<Turn> {
        metrics::note_alive();
        let timeout = {
            let mut table = self.lock();
            self.watch_stop(&mut table);
            self.resume_accepting(&mut table);
            self.expire(&mut table, &mut reader.chunk);
            if table.listener.is_none() && table.held == 0 {
                return Ok(Turn::Finished);
            }
            metrics::worker()
                .connections_waiting
                .store(table.held as u64, Ordering::Relaxed);
            self.next_wake(&mut table)
        };
        self.report();
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        match self
            .epoll
            .wait(&mut reader.events, EpollTimeout::from(millis.max(1)))
        {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(Turn::Nothing),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let job = {
            let mut table = self.lock();
            match reader.events[0].data() {
                LISTENER => self.accept(&mut table, &mut reader.chunk),
                token => self.read(&mut table, token, &mut reader.chunk),
            }
        };
        Ok(match job {
            Some(job) => {
                metrics::count_connection_end(ConnectionEnd::Served);
                Turn::Request(job)
            }
            None => Turn::Nothing,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A handler that panicked aborts the worker, so a poisoned lock is never seen
        // by anyone who could go on; taking it anyway keeps this path free of unwrap.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// On a stop: takes what already waits in the backlog (sent in good faith), closes
    /// the listener so that new connections are refused rather than stranded, and gives
    /// pending reads a short while to finish.
    fn watch_stop(&self, table: &mut Table) {
        if table.parent_checked.elapsed() >= TICK {
            // The parent's death also arrives as SIGTERM (PR_SET_PDEATHSIG); asking once
            // a tick covers a death before that was set.
            table.parent_checked = Instant::now();
            table.orphaned = table.orphaned || nix::unistd::getppid() != self.parent;
        }
        if !(self.stop.requested() || table.orphaned) {
            return;
        }
        let Some(listener) = table.listener.take() else {
            return;
        };
        while table.held < self.limits.connections_max {
            match accept_from(&listener) {
                Ok(stream) => self.hold(table, stream, Instant::now()),
                Err(_) => break,
            }
        }
        let _ = self.epoll.delete(&listener);
        drop(listener);
        table.drain_until = Some(Instant::now() + DRAIN_ON_STOP);
    }

    /// How long a handler may wait for an event: until the oldest connection's
    /// deadline, and never more than a tick.
    fn next_wake(&self, table: &mut Table) -> Duration {
        let (now, drain_until) = (Instant::now(), table.drain_until);
        oldest(table)
            .map_or(TICK, |p| {
                self.deadline(drain_until, p).saturating_duration_since(now)
            })
            .min(TICK)
    }

    fn deadline(&self, drain_until: Option<Instant>, pending: &Pending) -> Instant {
        let deadline = pending.accepted + self.limits.request_timeout;
        drain_until.map_or(deadline, |d| d.min(deadline))
    }

    /// Accepts one connection and reads it at once: by the time a handler has woken and
    /// accepted, the request has usually arrived, and this spares a second wait.
    fn accept(&self, table: &mut Table, chunk: &mut [u8]) -> Option<Job> {
        let stream = match accept_from(table.listener.as_ref()?) {
            Ok(stream) => stream,
            Err(e) if out_of_descriptors(e) => {
                self.short_of_descriptors(table, e);
                return None;
            }
            Err(_) => return None,
        };
        let accepted = Instant::now();
        let mut pending = self.pending(table, stream, accepted);
        match self.read_once(&mut pending, chunk) {
            AfterRead::Waiting => {
                self.insert(table, pending);
                None
            }
            AfterRead::Done => None,
            AfterRead::Complete(range) => Some(job(pending, range)),
        }
    }

    /// Reads once from the connection behind `token`, if it is still there.
    fn read(&self, table: &mut Table, token: u64, chunk: &mut [u8]) -> Option<Job> {
        let (slot, generation) = untoken(token);
        let mut pending = table
            .slots
            .get_mut(slot)?
            .take_if(|p| p.generation == generation)?;
        table.buffered_bytes -= pending.buffer.capacity();
        let outcome = self.read_once(&mut pending, chunk);
        if let AfterRead::Waiting = outcome {
            let mut rearm = EpollEvent::new(interest(), token);
            if self.epoll.modify(&pending.stream, &mut rearm).is_ok() {
                table.buffered_bytes += pending.buffer.capacity();
                table.slots[slot] = Some(pending);
                self.keep_within_budget(table);
                return None;
            }
        }
        table.free.push(slot);
        table.held -= 1;
        match outcome {
            AfterRead::Complete(range) => Some(job(pending, range)),
            AfterRead::Waiting | AfterRead::Done => None,
        }
    }

    /// One read of at most a chunk, and no byte past what the request may still need.
    fn read_once(&self, pending: &mut Pending, chunk: &mut [u8]) -> AfterRead {
        let buffered = pending.buffer.len();
        let wanted = pending
            .framer
            .bytes_wanted(buffered)
            .unwrap_or(chunk.len())
            .clamp(1, chunk.len());
        let (got, peer_closed) = loop {
            match pending.stream.read(&mut chunk[..wanted]) {
                Ok(0) => break (0, true),
                Ok(n) => break (n, false),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return AfterRead::Waiting,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return AfterRead::Done,
            }
        };
        pending.buffer.extend_from_slice(&chunk[..got]);
        match pending.framer.advance(&pending.buffer, peer_closed) {
            Frame::Incomplete if !peer_closed => AfterRead::Waiting,
            Frame::Incomplete => AfterRead::Done,
            Frame::Invalid(why) => {
                answer_and_close(&pending.stream, &Response::Rejected(why));
                AfterRead::Done
            }
            Frame::Complete(range) => AfterRead::Complete(range),
        }
    }

    fn pending(&self, table: &mut Table, stream: TcpStream, accepted: Instant) -> Pending {
        table.next_generation = table.next_generation.wrapping_add(1);
        Pending {
            stream,
            buffer: Vec::new(),
            framer: Framer::new(self.limits.request_bytes_max),
            accepted,
            generation: table.next_generation,
        }
    }

    /// Holds a connection accepted during a stop, to be read when its bytes arrive.
    fn hold(&self, table: &mut Table, stream: TcpStream, accepted: Instant) {
        let pending = self.pending(table, stream, accepted);
        self.insert(table, pending);
    }

    /// Adds a new connection to the table and the epoll set, making room first.
    fn insert(&self, table: &mut Table, pending: Pending) {
        while table.held >= self.limits.connections_max && self.evict_oldest(table) {}
        let slot = table.free.pop().unwrap_or_else(|| {
            table.slots.push(None);
            table.slots.len() - 1
        });
        let event = EpollEvent::new(interest(), token_of(slot, pending.generation));
        if self.epoll.add(&pending.stream, event).is_err() {
            table.free.push(slot);
            return;
        }
        table.by_age.push_back((slot, pending.generation));
        table.held += 1;
        table.buffered_bytes += pending.buffer.capacity();
        table.slots[slot] = Some(pending);
        self.keep_within_budget(table);
    }

    /// With no descriptor left, the connection waiting longest for its request gives up
    /// its own to the newcomers, as when the table is full. With none waiting, the
    /// listener is left alone for a moment rather than woken for again at once: it
    /// stays readable, and the handlers would spin. Logged once in a while.
    fn short_of_descriptors(&self, table: &mut Table, e: nix::errno::Errno) {
        metrics::worker()
            .accepts_without_descriptors
            .fetch_add(1, Ordering::Relaxed);
        if self.evict_oldest(table) {
            return;
        }
        if let Some(listener) = table.listener.as_ref() {
            let mut none = EpollEvent::new(EpollFlags::empty(), LISTENER);
            if self.epoll.modify(listener, &mut none).is_ok() {
                table.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            }
        }
        if table.descriptors_logged.elapsed() >= REPORT_EVERY {
            table.descriptors_logged = Instant::now();
            tracing::warn!(
                "intake: cannot accept a connection ({e}); every descriptor is in use \
                 by requests under way: accepting again in {} ms",
                ACCEPT_PAUSE.as_millis()
            );
        }
    }

    /// Listens again once a pause for want of descriptors is over.
    fn resume_accepting(&self, table: &mut Table) {
        if table
            .accept_paused_until
            .is_some_and(|until| Instant::now() >= until)
        {
            table.accept_paused_until = None;
            if let Some(listener) = table.listener.as_ref() {
                let mut readable = EpollEvent::new(EpollFlags::EPOLLIN, LISTENER);
                let _ = self.epoll.modify(listener, &mut readable);
            }
        }
    }

    /// Evicts the longest-waiting connections while the buffers pass their bound.
    fn keep_within_budget(&self, table: &mut Table) {
        while table.buffered_bytes > self.limits.pending_bytes_max && self.evict_oldest(table) {}
    }

    /// Ends the connection that has waited longest; false if there is none.
    fn evict_oldest(&self, table: &mut Table) -> bool {
        let Some(pending) = take_oldest(table) else {
            return false;
        };
        metrics::count_connection_end(ConnectionEnd::Evicted);
        let why = "the server is at its limit of connections waiting for their requests; \
                   this one waited longest and was closed (docs/PROTOCOL.md, Limits)";
        answer_and_close(&pending.stream, &Response::Rejected(why.into()));
        true
    }

    /// Ends connections whose deadline passed. Each gets one last read first, so that a
    /// request that did arrive (while every handler was busy) is never called incomplete.
    fn expire(&self, table: &mut Table, chunk: &mut [u8]) {
        let (now, drain_until) = (Instant::now(), table.drain_until);
        loop {
            let expired = oldest(table).is_some_and(|p| self.deadline(drain_until, p) <= now);
            let Some(mut pending) = expired.then(|| take_oldest(table)).flatten() else {
                return;
            };
            let timeout_ms = self.limits.request_timeout.as_millis();
            let why = match self.read_once(&mut pending, chunk) {
                AfterRead::Done => continue,
                AfterRead::Complete(_) => {
                    metrics::count_connection_end(ConnectionEnd::Abandoned);
                    too_late(self.limits.request_timeout)
                }
                AfterRead::Waiting => {
                    metrics::count_connection_end(ConnectionEnd::TimedOut);
                    format!("the request was not complete within {timeout_ms} ms")
                }
            };
            answer_and_close(&pending.stream, &Response::Rejected(why));
        }
    }

    /// Logs the counters once in a while, when they changed.
    fn report(&self) {
        let Ok(mut reported) = self.reported.try_lock() else {
            return;
        };
        if reported.0.elapsed() < REPORT_EVERY {
            return;
        }
        let ended = &metrics::worker().connections_ended;
        let now = [
            ConnectionEnd::Evicted,
            ConnectionEnd::TimedOut,
            ConnectionEnd::Abandoned,
        ]
        .map(|end| ended[end as usize].load(Ordering::Relaxed));
        if now != reported.1 {
            let limits = &self.limits;
            tracing::warn!(
                "intake: {} connections evicted for room (limits: --connections-max {}, \
                 --pending-bytes-max {} bytes), {} not complete within \
                 --request-timeout-ms {}, {} requests dropped unexecuted (too late or \
                 client gone), since start",
                now[0],
                limits.connections_max,
                limits.pending_bytes_max,
                now[1],
                limits.request_timeout.as_millis(),
                now[2]
            );
        }
        *reported = (Instant::now(), now);
    }
}

/// The longest-waiting live connection, after dropping the entries of those gone.
fn oldest(table: &mut Table) -> Option<&Pending> {
    while let Some(&(slot, generation)) = table.by_age.front() {
        if table.slots[slot]
            .as_ref()
            .is_some_and(|p| p.generation == generation)
        {
            return table.slots[slot].as_ref();
        }
        table.by_age.pop_front();
    }
    None
}

/// Removes the longest-waiting live connection from the table.
fn take_oldest(table: &mut Table) -> Option<Pending> {
    while let Some((slot, generation)) = table.by_age.pop_front() {
        if let Some(pending) = table.slots[slot].take_if(|p| p.generation == generation) {
            table.free.push(slot);
            table.held -= 1;
            table.buffered_bytes -= pending.buffer.capacity();
            return Some(pending);
        }
    }
    None
}

fn job(pending: Pending, range: std::ops::Range<usize>) -> Job {
    let Pending {
        stream,
        mut buffer,
        accepted,
        ..
    } = pending;
    buffer.truncate(range.end);
    buffer.drain(..range.start);
    Job {
        stream,
        document: buffer,
        accepted,
    }
}

/// Readable, once: the handler that takes the event owns the connection until it
/// re-arms it, so no two handlers read one connection.
fn interest() -> EpollFlags {
    EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT
}

fn token_of(slot: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | slot as u64
}

fn untoken(token: u64) -> (usize, u32) {
    ((token & u64::from(u32::MAX)) as usize, (token >> 32) as u32)
}

/// Accepts one waiting connection, if any.
fn accept_from(listener: &TcpListener) -> Result<TcpStream, nix::errno::Errno> {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    loop {
        // accept4 hands the socket over non-blocking already: one system call, not two.
        // No TCP_NODELAY: the answer is one write followed by a FIN, which Nagle never holds.
        match accept4(listener, flags) {
            Ok(fd) => {
                metrics::worker()
                    .connections_accepted
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(TcpStream::from(fd));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            // EAGAIN: another handler took it, or the backlog is empty. ECONNABORTED
            // and friends concern one connection. Out of descriptors: see accept.
            Err(e) => return Err(e),
        }
    }
}

/// The process or the system has no descriptor left for a new connection.
fn out_of_descriptors(e: nix::errno::Errno) -> bool {
    use nix::errno::Errno;
    matches!(
        e,
        Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM
    )
}

/// Best effort: writes a short answer without blocking, then closes politely.
pub fn answer_and_close(stream: &TcpStream, response: &Response) {
    let mut writer = stream;
    let _ = writer.write_all(&render(response));
    close_politely(stream);
}
