//! The client side of the framing: one request per connection, answer read to the end.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The bytes to send for `document`: its length line, then the document.
pub fn frame(document: &[u8]) -> Vec<u8> {
    let mut framed = format!("{}\n", document.len()).into_bytes();
    framed.extend_from_slice(document);
    framed
}

/// Sends one request and returns the whole answer; `timeout` bounds each I/O call,
/// the connect included.
pub fn round_trip(
    addr: SocketAddr,
    document: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Linux bounds a blocking connect by the send timeout: three system calls fewer
    // per request than a non-blocking connect and a poll.
    socket.set_write_timeout(Some(timeout))?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(&SockAddr::from(addr)).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINPROGRESS) {
            std::io::Error::new(ErrorKind::TimedOut, "connect timed out")
        } else {
            e
        }
    })?;
    let mut stream = TcpStream::from(socket);
    stream.write_all(&frame(document))?;
    let mut answer = Vec::with_capacity(512);
    stream.read_to_end(&mut answer)?;
    // The server has answered and closed its side; closing ours with a reset spares both
    // kernels the closing handshake and the server a socket waiting in TIME_WAIT.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A listener that never accepts: once its queue is full the kernel drops new
    /// handshakes, and only the timeout can end the connect.
    #[test]
    fn a_connect_that_never_completes_times_out() {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        listener.bind(&any.into()).expect("bind");
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .expect("local address")
            .as_socket()
            .expect("an IP address");
        let timeout = Duration::from_millis(200);
        let mut kinds = Vec::new();
        for _ in 0..4 {
            let started = Instant::now();
            let outcome = round_trip(addr, b"<create/>", timeout);
            assert!(started.elapsed() < Duration::from_secs(2), "{outcome:?}");
            kinds.push(outcome.expect_err("nothing answers").kind());
        }
        assert!(kinds.contains(&ErrorKind::TimedOut), "{kinds:?}");
    }

    #[test]
    fn nothing_listening_is_refused_at_once() {
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("local address")
        };
        let error = round_trip(addr, b"<create/>", Duration::from_secs(5)).expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
    }
}
