//! Delivery of answers: written at once when the socket has room, otherwise finished by
//! one courier thread per worker that waits on all such sockets at once.
//!
//! Whoever has an answer ready (a handler thread, the flusher) must never wait for a
//! client to read: that would hold a database session, or every answer behind it,
//! hostage to the slowest reader. Almost every answer fits the socket's buffer, so the
//! courier thread sees only the rare large answer to a slow reader.
//!
//! A client that keeps reading gets its whole answer, however long it is; one that
//! takes nothing for `stall` is cut off. The answers the courier holds add up to at
//! most `unsent_bytes_max`: past it, the one that has waited longest is cut off.

use crossbeam_channel::{Receiver, Sender};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How long the courier waits on blocked sockets before it looks for new deliveries.
const SLICE: Duration = Duration::from_millis(10);

/// An answer on its way to a client.
struct Delivery {
    /// Non-blocking, as the intake left it.
    stream: TcpStream,
    bytes: Vec<u8>,
    written: usize,
    /// The client must take more of it before then, or the connection is dropped.
    deadline: Instant,
}

enum Progress {
    /// Written and closed, or the client is gone.
    Done,
    /// The socket's buffer is full.
    Blocked,
}

impl Delivery {
    fn advance(&mut self, stall: Duration) -> Progress {
        let mut writer = &self.stream;
        while self.written < self.bytes.len() {
            match writer.write(&self.bytes[self.written..]) {
                Ok(0) => return Progress::Done,
                Ok(n) => {
                    self.written += n;
                    self.deadline = Instant::now() + stall;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Blocked,
                Err(_) => return Progress::Done,
            }
        }
        close_politely(&self.stream);
        Progress::Done
    }
}

/// Bounds of delivery.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryLimits {
    /// How long a client may take no byte of its answer.
    pub stall: Duration,
    /// What the answers waiting for slow readers may add up to.
    pub unsent_bytes_max: usize,
}

/// A handle for delivering answers; cheap to clone, one per thread that answers.
#[derive(Clone)]
pub struct Courier {
    blocked: Sender<Delivery>,
    stall: Duration,
}

impl Courier {
    /// A handle, and the loop to run on the courier's own thread. The loop returns once
    /// every handle is dropped and every blocked delivery finished or expired.
    pub fn new(limits: DeliveryLimits) -> (Courier, impl FnOnce() + Send + 'static) {
        let (blocked, deliveries) = crossbeam_channel::unbounded();
        let courier = Courier {
            blocked,
            stall: limits.stall,
        };
        (courier, move || run(deliveries, limits))
    }

    /// Writes `bytes` and closes the connection, now or on the courier thread.
    pub fn deliver(&self, stream: TcpStream, bytes: Vec<u8>) {
        let mut delivery = Delivery {
            stream,
            bytes,
            written: 0,
            deadline: Instant::now() + self.stall,
        };
        if let Progress::Blocked = delivery.advance(self.stall) {
            // Fails only once the courier has gone, at the very end of a stop.
            let _ = self.blocked.send(delivery);
        }
    }
}

fn run(deliveries: Receiver<Delivery>, limits: DeliveryLimits) {
    // Oldest first, so that the bound cuts off the answer that has waited longest.
    let mut blocked: VecDeque<Delivery> = VecDeque::new();
    loop {
        if blocked.is_empty() {
            match deliveries.recv() {
                Ok(delivery) => blocked.push_back(delivery),
                Err(_) => return,
            }
        }
        blocked.extend(deliveries.try_iter());
        let mut unsent: usize = blocked.iter().map(Delivery::unsent).sum();
        while unsent > limits.unsent_bytes_max {
            let Some(cut) = blocked.pop_front() else {
                break;
            };
            unsent -= cut.unsent();
            cut.cut_off();
        }
        wait_writable(blocked.make_contiguous());
        let now = Instant::now();
        blocked.retain_mut(|d| match d.advance(limits.stall) {
            Progress::Blocked if d.deadline <= now => {
                d.cut_off();
                false
            }
            Progress::Blocked => true,
            Progress::Done => false,
        });
    }
}

impl Delivery {
    /// Ends the connection with a reset, so that the client sees its answer was cut
    /// off rather than a normal end of a document that is not whole.
    fn cut_off(&self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
    }

    /// Bytes held for the client, counted at the buffer's capacity.
    fn unsent(&self) -> usize {
        self.bytes.capacity()
    }
}

/// Waits until one of the sockets has room, a deadline passes, or a slice is over.
fn wait_writable(blocked: &[Delivery]) {
    let now = Instant::now();
    let timeout = blocked
        .iter()
        .map(|d| d.deadline.saturating_duration_since(now))
        .fold(SLICE, Duration::min);
    let mut fds: Vec<PollFd<'_>> = blocked
        .iter()
        .map(|d| PollFd::new(d.stream.as_fd(), PollFlags::POLLOUT))
        .collect();
    let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    // An error (EINTR, say) only means looking at every socket once more.
    let _ = poll(&mut fds, PollTimeout::from(millis));
}

/// Half-closes, then discards what the client already sent: closing a socket with
/// unread input makes the kernel send a reset, which can destroy the answer in flight.
/// The socket is non-blocking here, so this discards only what already arrived.
pub fn close_politely(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let mut reader = stream;

    let mut sink = [0u8; 16 * 1024];
    for _ in 0..64 {
        match reader.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}
