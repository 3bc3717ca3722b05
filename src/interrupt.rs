//! Ctrl-C / SIGTERM: long work checks a flag and stops cleanly (temp files
//! removed by their guards, nothing half-done left looking done). A second
//! signal terminates at once, as the user expects.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static CANCELLED: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: two atomic stores and signal().
    SIGNAL.store(sig, Ordering::SeqCst);
    CANCELLED.store(true, Ordering::SeqCst);
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// Install the handlers for SIGINT and SIGTERM.
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches atomics and resets itself.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// The flag long-running loops poll.
pub fn flag() -> &'static AtomicBool {
    &CANCELLED
}

pub fn cancelled() -> bool {
    CANCELLED.load(Ordering::Relaxed)
}

/// 128 + the signal number, once one arrived (130 for SIGINT, 143 for SIGTERM).
pub fn exit_code() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(128 + s),
    }
}
