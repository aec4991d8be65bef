//! The client side of the framing: one request per connection, answer read to the end.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The bytes to send for `document`: its length line, then the document.
pub fn frame(document: &[u8]) -> Vec<u8> {
    let mut framed = format!("{}\n", document.len()).into_bytes();
    framed.extend_from_slice(document);
    framed
}

/// Sends one request and returns the whole answer; `timeout` bounds each I/O call.
pub fn round_trip(
    addr: SocketAddr,
    document: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&frame(document))?;
    let mut answer = Vec::with_capacity(512);
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}
