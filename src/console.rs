//! Lines on stdout that never panic (`println!` does when stdout is a closed pipe or a full
//! disk), and a record of what went wrong so the command can still finish its work first:
//!
//! - stdout closed by its reader (`| head -1`: a broken pipe) is what the reader asked for:
//!   printing stops quietly, and the command goes on and saves;
//! - any other write error (`> /dev/full`) is remembered; printing stops, and [`status`]
//!   returns it as a one-line error for the command to report after it saved its work.
//!
//! Rust ignores SIGPIPE, so a closed pipe is an `EPIPE` error here, not a silent death.

use std::fmt::Display;
use std::io::{self, Write};
use std::sync::Mutex;

use crate::error::{Error, Result};

struct State {
    /// No more lines are written: the pipe closed or a write failed.
    stopped: bool,
    /// The first write error that was not a closed pipe.
    error: Option<String>,
}

static STATE: Mutex<State> = Mutex::new(State {
    stopped: false,
    error: None,
});

/// Writes `text` and a newline to stdout (flushed), unless printing has stopped.
pub fn line(text: impl Display) {
    let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if st.stopped {
        return;
    }
    let mut out = io::stdout().lock();
    let r = writeln!(out, "{text}").and_then(|()| out.flush());
    if let Err(e) = r {
        st.stopped = true;
        if e.kind() != io::ErrorKind::BrokenPipe {
            st.error = Some(e.to_string());
        }
    }
}

/// Writes a line to stderr; a failure there has nowhere to be reported, so it is ignored.
pub fn warn(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Whether stdout still takes lines (false once its reader is gone or a write failed).
pub fn is_open() -> bool {
    !STATE.lock().unwrap_or_else(|e| e.into_inner()).stopped
}

/// Flushes stdout and returns the first write error other than a closed pipe, as one line.
pub fn status() -> Result<()> {
    let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if !st.stopped
        && let Err(e) = io::stdout().lock().flush()
    {
        st.stopped = true;
        if e.kind() != io::ErrorKind::BrokenPipe {
            st.error = Some(e.to_string());
        }
    }
    match &st.error {
        Some(e) => Err(Error(format!("cannot write to stdout: {e}"))),
        None => Ok(()),
    }
}

/// `say!("...", args)`: [`line()`](crate::console::line) of a `format!`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::line(format_args!($($arg)*))
    };
}
