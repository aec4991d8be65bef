//! Whether a complete request was abandoned before its execution could start: it came
//! too late, or its client is gone. Such a request is dropped unexecuted, so that a
//! client that gave up and retried does not get its order twice.

use crate::server::intake::Job;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Why `job` must not be executed now, if it must not; `timeout` is the request
/// timeout, within which a request must start after its connection was accepted and
/// after its last byte arrived (it may have waited in the kernel's backlog before).
pub fn abandoned(job: &Job, timeout: Duration) -> Option<String> {
    let late = || Some(too_late(timeout));
    if job.accepted.elapsed() > timeout {
        return late();
    }
    let info = tcp_info(job)?;
    if info.tcpi_state == TCP_CLOSE {
        // The client reset the connection: nobody is left to answer.
        return Some("not executed: the client is gone".into());
    }
    if Duration::from_millis(info.tcpi_last_data_recv.into()) > timeout {
        return late();
    }
    None
}

/// The answer to a complete request that could not start in time.
pub fn too_late(timeout: Duration) -> String {
    format!(
        "not executed: the server could not start it within {} ms",
        timeout.as_millis()
    )
}

/// `TCP_CLOSE` of the kernel's `tcp_states.h`: a connection that was reset.
const TCP_CLOSE: u8 = 7;

fn tcp_info(job: &Job) -> Option<libc::tcp_info> {
    // SAFETY: tcp_info is plain integers, for which all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the pointers are to a live tcp_info and its length, as getsockopt expects.
    let status = unsafe {
        libc::getsockopt(
            job.stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut length,
        )
    };
    (status == 0).then_some(info)
}
