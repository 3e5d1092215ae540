//! A progress bar for training runs, on stderr so stdout stays clean for scripts:
//!
//! `00:01:12 [██████████░░░░░░] 12,000/40,000 · loss 2.1034 · 41.3k tok/s · eta 2m`
//!
//! The loss shown is the bias-corrected EMA of the per-step loss ([`crate::curve::Ema`] with
//! β = [`crate::curve::EMA_BETA`], the same value the loss curve stores); tokens/s is the
//! average since the reporter was created. The bar is off when stderr is not a terminal or when
//! it is disabled: then [`Progress::update`] only updates the EMA and [`Progress::println`] is a
//! line on stdout ([`crate::console::line`]).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::console;
use crate::curve::Ema;

/// The bar is redrawn at most this often, so `update` may be called at every step: between
/// redraws it costs a clock read.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

const TEMPLATE: &str =
    "{elapsed_precise} [{wide_bar:.cyan/blue}] {human_pos}/{human_len} · {msg} · eta {eta}";

pub struct Progress {
    bar: Option<ProgressBar>,
    ema: Ema,
    total: usize,
    start: Instant,
    next_draw: Instant,
    step: usize,
    tokens: usize,
}

impl Progress {
    /// A reporter for a run of `total_steps` steps, shown only if `enabled` and stderr is a
    /// terminal. Create it right before the first step: tokens/s is measured from here.
    pub fn new(total_steps: usize, enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let style = ProgressStyle::with_template(TEMPLATE)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("█▓░");
            let bar = ProgressBar::with_draw_target(
                Some(total_steps as u64),
                ProgressDrawTarget::stderr(),
            );
            bar.set_style(style);
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            ema: Ema::default(),
            total: total_steps,
            start: now,
            next_draw: now,
            step: 0,
            tokens: 0,
        }
    }

    /// Whether a bar is being drawn.
    pub fn is_enabled(&self) -> bool {
        self.bar.is_some()
    }

    /// Reports that `step` steps are done (1 after the first), the last step's `loss` and the
    /// number of tokens processed so far. Cheap enough to call at every step.
    #[inline]
    pub fn update(&mut self, step: usize, loss: f64, tokens_done: usize) {
        self.ema.push(loss);
        if self.bar.is_none() {
            return;
        }
        self.step = step;
        self.tokens = tokens_done;
        let now = Instant::now();
        if now >= self.next_draw || step >= self.total {
            self.next_draw = now + REDRAW_EVERY;
            self.draw(now);
        }
    }

    #[cold]
    fn draw(&self, now: Instant) {
        let Some(bar) = &self.bar else { return };
        let secs = now.duration_since(self.start).as_secs_f64();
        let rate = if secs > 0.0 {
            self.tokens as f64 / secs
        } else {
            0.0
        };
        let loss = self.ema.value().unwrap_or(f64::NAN);
        bar.set_message(format!("loss {loss:.4} · {} tok/s", si(rate)));
        bar.set_position(self.step as u64);
    }

    /// The smoothed loss shown on the bar, `None` before the first update.
    pub fn loss_ema(&self) -> Option<f64> {
        self.ema.value()
    }

    /// Prints a line on stdout (e.g. a validation loss) with [`console::line`], which never
    /// panics; the bar is cleared first and redrawn below it, so the two do not mix.
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.bar {
            Some(bar) => bar.suspend(|| console::line(line.as_ref())),
            None => console::line(line.as_ref()),
        }
    }

    /// Runs `f` (e.g. a warning on stderr) with the bar cleared, then redraws the bar.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Draws the last reported state and leaves the bar on screen; later `println`s go straight
    /// to stdout.
    pub fn finish(&mut self) {
        if self.bar.is_some() {
            self.draw(Instant::now());
        }
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

/// `41.3k`, `1.25M`: three significant figures or so.
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}
