//! A handler thread's intake: accepts connections and reads requests, many at once,
//! each under one deadline, and gives only complete requests to the thread's handler.
//!
//! Reading happens in one poll loop, so that slow or silent clients cost a buffer each
//! and never hold up the handler (which holds a database connection). The handler
//! executes a complete request on the same thread, with no hand-off in between: on
//! 2 CPUs a separate intake thread cost a wake-up and a context switch per request,
//! and about a fifth of the throughput.

use crate::framing::{self, Frame};
use crate::protocol::{render, Response};
use crate::server::courier::close_politely;
use crate::server::signals;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{accept4, SockFlag};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A complete request for the handler.
pub struct Job {
    /// Non-blocking, as the intake left it.
    pub stream: TcpStream,
    pub document: Vec<u8>,
    /// Until when the handler may take to write the answer.
    pub deadline: Instant,
}

/// Bounds of the intake.
#[derive(Clone, Copy, Debug)]
pub struct IntakeLimits {
    pub request_bytes_max: usize,
    pub request_timeout: Duration,
    pub connections_max: usize,
}

/// What the intake gives complete requests to: its own thread's handler.
pub trait Serve {
    /// Executes one complete request and sees its answer on its way.
    fn serve(&mut self, job: Job);
    /// Called once on every turn of the loop, after serving, and so at least once a
    /// tick, for work that reaches the handler from elsewhere.
    fn tend(&mut self);
}

/// How long pending reads may go on after a stop was requested.
const DRAIN_ON_STOP: Duration = Duration::from_secs(2);
/// How often the loop wakes to look at the stop flag and deadlines.
const TICK: Duration = Duration::from_millis(100);
const READ_CHUNK_BYTES: usize = 64 * 1024;

struct Pending {
    stream: TcpStream,
    buffer: Vec<u8>,
    deadline: Instant,
}

enum Progress {
    Waiting,
    /// The connection was answered or dropped.
    Done,
    /// The request is `buffer[range]`.
    Complete(std::ops::Range<usize>),
}

/// Runs until a stop is requested (or the parent dies), every pending read ended and
/// every complete request was served.
pub fn run(
    listener: TcpListener,
    handler: &mut impl Serve,
    limits: IntakeLimits,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = Some(listener);
    let parent = nix::unistd::getppid();
    let mut pending: Vec<Pending> = Vec::new();
    // One read buffer for the loop's life: zeroing 64 KiB for every read would cost
    // more than most reads move.
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    // The parent's death also arrives as SIGTERM (PR_SET_PDEATHSIG); asking the kernel
    // once a tick covers a death before that was set, without a system call per request.
    let mut parent_checked = Instant::now();
    let mut orphaned = false;
    // Complete requests of one turn; kept across turns to spare an allocation each.
    let mut complete = Vec::new();
    loop {
        if parent_checked.elapsed() >= TICK {
            parent_checked = Instant::now();
            orphaned = orphaned || nix::unistd::getppid() != parent;
        }
        let stopping = signals::stop_requested() || orphaned;
        if let Some(open) = listener.take_if(|_| stopping) {
            // Whatever already waits in the backlog was sent in good faith: take it, then
            // close this thread's copy so that new connections are refused, not stranded.
            while accept_one(&open, &mut pending, limits) {}
            drop(open);
            let drain_until = Instant::now() + DRAIN_ON_STOP;
            for p in &mut pending {
                p.deadline = p.deadline.min(drain_until);
            }
        }
        let listening = listener
            .as_ref()
            .filter(|_| pending.len() < limits.connections_max);
        if listener.is_none() && pending.is_empty() {
            return Ok(());
        }
        let (listener_ready, readable) = wait(listening, &pending)?;
        // Walk backwards so swap_remove leaves the unvisited indices intact.
        for index in readable.into_iter().rev() {
            read_into(&mut pending, index, &mut chunk, limits, &mut complete);
        }
        // Every idle handler is woken for a new connection. One that is about to serve
        // leaves it to them, and the others take one each, so that no connection waits
        // behind another's request while a handler sits idle.
        if let (true, true, Some(open)) = (listener_ready, complete.is_empty(), &listener) {
            // By the time a handler has woken and accepted, the request has usually
            // arrived: reading at once spares a second wait in poll.
            if accept_one(open, &mut pending, limits) {
                let newest = pending.len() - 1;
                read_into(&mut pending, newest, &mut chunk, limits, &mut complete);
            }
        }
        for job in complete.drain(..) {
            handler.serve(job);
        }
        // After serving, so that answers given back meanwhile do not wait out a poll.
        handler.tend();
        expire(&mut pending, limits);
    }
}

/// Polls the listener and pending connections; returns which are ready.
fn wait(
    listener: Option<&TcpListener>,
    pending: &[Pending],
) -> std::io::Result<(bool, Vec<usize>)> {
    let now = Instant::now();
    let next_deadline = pending.iter().map(|p| p.deadline).min();
    let timeout = next_deadline.map_or(TICK, |d| d.saturating_duration_since(now).min(TICK));
    let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(pending.len() + 1);
    if let Some(listener) = listener {
        fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
    }
    fds.extend(
        pending
            .iter()
            .map(|p| PollFd::new(p.stream.as_fd(), PollFlags::POLLIN)),
    );
    let millis = u16::try_from(timeout.as_millis())
        .unwrap_or(u16::MAX)
        .max(1);
    match poll(&mut fds, PollTimeout::from(millis)) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok((false, Vec::new())),
        Err(e) => return Err(e.into()),
    }
    let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
    let offset = usize::from(listener.is_some());
    let listener_ready = listener.is_some() && ready(&fds[0]);
    let readable = fds[offset..]
        .iter()
        .enumerate()
        .filter(|(_, fd)| ready(fd))
        .map(|(i, _)| i)
        .collect();
    Ok((listener_ready, readable))
}

/// Accepts one connection, if one waits and there is room; says whether it did.
fn accept_one(listener: &TcpListener, pending: &mut Vec<Pending>, limits: IntakeLimits) -> bool {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    while pending.len() < limits.connections_max {
        // accept4 hands the socket over non-blocking already: one system call, not two.
        // No TCP_NODELAY: the answer is one write followed by a FIN, which Nagle never holds.
        let accepted = accept4(listener.as_raw_fd(), flags).map(|fd| {
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) })
        });
        match accepted.map_err(std::io::Error::from) {
            Ok(stream) => {
                pending.push(Pending {
                    stream,
                    buffer: Vec::new(),
                    deadline: Instant::now() + limits.request_timeout,
                });
                return true;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // WouldBlock: another handler took it, or the backlog is empty.
            // ECONNABORTED and friends concern one connection; EMFILE passes with time.
            Err(_) => return false,
        }
    }
    false
}

/// Reads what `pending[index]` has sent; a connection whose request is complete leaves
/// `pending` for `complete`, and one that was answered or dropped leaves it too.
fn read_into(
    pending: &mut Vec<Pending>,
    index: usize,
    chunk: &mut [u8],
    limits: IntakeLimits,
    complete: &mut Vec<Job>,
) {
    match read_some(&mut pending[index], chunk, limits) {
        Progress::Waiting => {}
        Progress::Done => drop(pending.swap_remove(index)),
        Progress::Complete(range) => {
            let Pending {
                stream, mut buffer, ..
            } = pending.swap_remove(index);
            buffer.truncate(range.end);
            buffer.drain(..range.start);
            complete.push(Job {
                stream,
                document: buffer,
                deadline: Instant::now() + limits.request_timeout,
            });
        }
    }
}

/// Reads what is there and says whether the request is complete.
fn read_some(p: &mut Pending, chunk: &mut [u8], limits: IntakeLimits) -> Progress {
    loop {
        let (peer_closed, got) = match p.stream.read(chunk) {
            Ok(0) => (true, 0),
            Ok(n) => (false, n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Waiting,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Progress::Done,
        };
        p.buffer.extend_from_slice(&chunk[..got]);
        match framing::examine(&p.buffer, peer_closed, limits.request_bytes_max) {
            Frame::Incomplete if !peer_closed => continue,
            Frame::Incomplete => return Progress::Done,
            Frame::Invalid(why) => {
                answer_and_close(&p.stream, &Response::Rejected(why));
                return Progress::Done;
            }
            Frame::Complete(range) => return Progress::Complete(range),
        }
    }
}

/// Answers and closes connections whose deadline passed before the request was complete.
fn expire(pending: &mut Vec<Pending>, limits: IntakeLimits) {
    let now = Instant::now();
    pending.retain(|p| {
        if p.deadline > now {
            return true;
        }
        let why = format!(
            "the request was not complete within {} ms",
            limits.request_timeout.as_millis()
        );
        answer_and_close(&p.stream, &Response::Rejected(why));
        false
    });
}

/// Best effort: writes a short answer without blocking, then closes politely.
fn answer_and_close(stream: &TcpStream, response: &Response) {
    let mut writer = stream;
    let _ = writer.write_all(&render(response));
    close_politely(stream);
}
