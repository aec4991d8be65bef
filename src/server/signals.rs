//! Signals become flags: the handlers only store, the loops decide what to do.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

static STOP: AtomicBool = AtomicBool::new(false);
static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn note_hangup(_: libc::c_int) {
    HANGUP.store(true, Ordering::SeqCst);
}

/// SIGTERM and SIGINT ask for a graceful stop. No SA_RESTART: a blocking call is
/// interrupted so the loop sees the flag at once. SIGHUP, which would otherwise kill
/// the process (a closed terminal, or an operator expecting a reload), is only noted:
/// the server reads its settings once and logs to standard error, so there is nothing
/// to reload or reopen, and the supervisor says so.
pub fn install_stop_handlers() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(request_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action)? };
    }
    let hangup = SigAction::new(
        SigHandler::Handler(note_hangup),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: as above, the handler only stores to an atomic.
    unsafe { sigaction(Signal::SIGHUP, &hangup)? };
    // A client that disconnects mid-response must not kill the process.
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: ignoring a signal installs no code.
    unsafe { sigaction(Signal::SIGPIPE, &ignore)? };
    Ok(())
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// What tells a worker to stop: its process's SIGTERM, or, for a worker a test runs in
/// its own process, a flag of its own.
#[derive(Clone, Debug)]
pub struct Stop(Option<Arc<AtomicBool>>);

impl Stop {
    /// Stops when the process is asked to (SIGTERM, SIGINT).
    pub fn on_signal() -> Stop {
        Stop(None)
    }

    /// Stops only when [`Stop::request`] is called on it or a clone of it.
    pub fn own_flag() -> Stop {
        Stop(Some(Arc::new(AtomicBool::new(false))))
    }

    /// Asks for a stop as SIGTERM would: for a worker that cannot go on, or a test.
    pub fn request(&self) {
        self.flag().store(true, Ordering::SeqCst);
    }

    pub fn requested(&self) -> bool {
        self.flag().load(Ordering::SeqCst)
    }

    fn flag(&self) -> &AtomicBool {
        self.0.as_deref().unwrap_or(&STOP)
    }
}

/// Whether SIGHUP arrived since the last call.
pub fn hangup_received() -> bool {
    HANGUP.swap(false, Ordering::SeqCst)
}
