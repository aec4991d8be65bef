//! Ctrl-C during a load run: the first one asks the run to stop and report what it did
//! so far; a second one ends the process at once, as the user expects.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    REQUESTED.store(true, Ordering::Relaxed);
}

/// Catches the first SIGINT; SA_RESETHAND gives the second one its default action.
pub fn catch_first_ctrl_c() -> Result<(), String> {
    let action = SigAction::new(
        SigHandler::Handler(note),
        SaFlags::SA_RESETHAND | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { sigaction(Signal::SIGINT, &action) }
        .map(|_| ())
        .map_err(|e| format!("cannot catch Ctrl-C: {e}"))
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}
