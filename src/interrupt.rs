//! Ctrl-C and SIGTERM as a request to stop, not a kill: [`install`] makes the first SIGINT or
//! SIGTERM only set a flag that a long loop polls between steps ([`requested`]), so a training
//! run can finish its step, save and exit; a second signal of either kind exits at once, with
//! the shell's code for the signal that ended it (130 for SIGINT, 143 for SIGTERM).
//!
//! The handlers are `signal-hook`'s: they only store to atomics (async-signal-safe), and the
//! immediate exit is its `_exit`, which runs no destructor and flushes nothing — what a user who
//! presses Ctrl-C twice asks for.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::bail;
use crate::error::Result;

/// A signal that asks the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Int,
    /// `kill`'s default.
    Term,
}

impl Signal {
    /// `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
        }
    }

    /// The exit code a shell reports for a process ended by this signal: 128 + its number.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Int => 130,
            Signal::Term => 143,
        }
    }

    fn number(self) -> i32 {
        match self {
            Signal::Int => SIGINT,
            Signal::Term => SIGTERM,
        }
    }
}

/// Set by the first signal of either kind; the second one finds it set and exits.
static STOP: AtomicBool = AtomicBool::new(false);
/// The number of the last signal received (0: none).
static WHICH: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// Installs the handlers (once per process; later calls return the first call's result).
pub fn install() -> Result<()> {
    let r = INSTALLED.get_or_init(|| {
        for s in [Signal::Int, Signal::Term] {
            let n = s.number();
            // Registration order is the order the actions run in: the exit is checked before
            // the flag is set, so only a signal that finds the flag already set exits.
            signal_hook::flag::register_conditional_shutdown(n, i32::from(s.exit_code()), &STOP)
                .and_then(|_| signal_hook::flag::register_usize(n, &WHICH, n as usize))
                .and_then(|_| signal_hook::flag::register(n, &STOP))
                .map_err(|e| format!("cannot install the {} handler: {e}", s.name()))?;
        }
        Ok(())
    });
    match r {
        Ok(()) => Ok(()),
        Err(e) => bail!("{e}"),
    }
}

/// The signal that asked the process to stop, if one has arrived since [`install`].
pub fn requested() -> Option<Signal> {
    if !STOP.load(Ordering::SeqCst) {
        return None;
    }
    let n = WHICH.load(Ordering::SeqCst) as i32;
    Some(if n == SIGTERM {
        Signal::Term
    } else {
        Signal::Int
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One signal, raised at this very process: it must set the flag and not kill the test
    /// binary (a second one would end it, so this is the only test that raises one).
    #[test]
    fn the_first_signal_is_only_a_request() {
        install().unwrap();
        assert_eq!(requested(), None);
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert_eq!(requested(), Some(Signal::Term));
        assert_eq!(requested().map(Signal::exit_code), Some(143));
        install().unwrap();
    }
}
