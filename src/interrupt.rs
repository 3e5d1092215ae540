//! Ctrl-C and SIGTERM as a request to stop, not a kill: [`install`] makes the first SIGINT or
//! SIGTERM only set a flag that a long loop polls between steps ([`requested`]), so a training
//! run can finish its step, save and exit; a second signal of either kind exits at once, with
//! the shell's code for the signal that ended it (130 for SIGINT, 143 for SIGTERM).
//!
//! The handlers are `signal-hook`'s iterator: they only write the signal's number to a pipe
//! (async-signal-safe), and one thread of ours reads the pipe and acts on each signal in
//! turn — the first sets the flag, the second exits with `_exit`, which runs no destructor and
//! flushes nothing (what a user who presses Ctrl-C twice asks for). One reader, so two signals
//! that arrive together, even on two threads of the process at once, still count as two (the
//! kernel may run each process-wide signal's handler on a different thread).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

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

    fn from_number(n: i32) -> Signal {
        if n == SIGTERM {
            Signal::Term
        } else {
            Signal::Int
        }
    }
}

/// Set by the first signal of either kind; the second one finds it set and exits.
static STOP: AtomicBool = AtomicBool::new(false);
/// The number of the last signal received (0: none).
static WHICH: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// Installs the handlers and starts the thread that reads them (once per process; later
/// calls return the first call's result).
pub fn install() -> Result<()> {
    let r = INSTALLED.get_or_init(|| {
        let mut signals = Signals::new([SIGINT, SIGTERM])
            .map_err(|e| format!("cannot install the SIGINT and SIGTERM handlers: {e}"))?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for n in signals.forever() {
                    let s = Signal::from_number(n);
                    if STOP.load(Ordering::SeqCst) {
                        signal_hook::low_level::exit(i32::from(s.exit_code()));
                    }
                    WHICH.store(n as usize, Ordering::SeqCst);
                    STOP.store(true, Ordering::SeqCst);
                }
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
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
    Some(Signal::from_number(WHICH.load(Ordering::SeqCst) as i32))
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
        // the signal thread acts on it a moment later
        let start = std::time::Instant::now();
        while requested().is_none() && start.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(requested(), Some(Signal::Term));
        assert_eq!(requested().map(Signal::exit_code), Some(143));
        install().unwrap();
    }
}
