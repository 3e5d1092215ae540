//! What a `train` run tells its caller while it runs, as data: the library formats and prints
//! nothing; the command line turns each [`Event`] into its line, the playground runs its own
//! loop and sends its own events.

use std::path::Path;

use crate::error::Error;
use crate::interrupt::Signal;
use crate::presets::Engine;

use super::Save;

/// Receives a run's [`Event`]s, in the order they happen.
pub trait Report {
    fn event(&mut self, e: Event<'_>);
}

/// Any closure over events is a [`Report`] (a test collects them, a quiet caller drops them).
impl<F: FnMut(Event<'_>)> Report for F {
    fn event(&mut self, e: Event<'_>) {
        self(e)
    }
}

/// One moment of a `train` run. Steps count from 1; `total` is the schedule's length.
#[derive(Debug)]
pub enum Event<'a> {
    /// Everything is checked and built; the first step comes next.
    Begin(&'a Outline<'a>),
    /// After every step: `done` steps of this run so far, the step's loss, the tokens
    /// processed so far. Cheap to receive: it comes at every step.
    Step {
        done: usize,
        loss: f64,
        tokens: usize,
    },
    /// A training loss to show: the run's first and last steps and every `print_every`.
    Loss {
        step: usize,
        total: usize,
        loss: f64,
    },
    /// A validation loss, over the fixed sample of `sample` documents if not over all; of the
    /// average of the weights with decay `ema`, if the run keeps one.
    ValLoss {
        step: usize,
        total: usize,
        loss: f64,
        sample: Option<usize>,
        ema: Option<f64>,
    },
    /// A periodic save failed; training goes on and the next save tries again.
    SaveFailed { step: usize, error: &'a Error },
    /// The last step is done: `secs` of training (validation and saves not counted) for
    /// `steps` steps and `tokens` tokens.
    Trained {
        secs: f64,
        steps: usize,
        tokens: usize,
    },
    /// The checkpoint at the end is written.
    Saved {
        path: &'a Path,
        step: usize,
        total: usize,
    },
    /// A signal stopped the run after `step`; `saved` is where its checkpoint went, if any.
    Interrupted {
        signal: Signal,
        step: usize,
        total: usize,
        saved: Option<&'a Path>,
    },
    /// The loss curve is written (`--log`), as a table and as a plot.
    WroteCurve { csv: &'a Path, svg: &'a Path },
}

/// A run as it is about to start.
#[derive(Debug)]
pub struct Outline<'a> {
    /// Documents in the file.
    pub num_docs: usize,
    pub vocab_size: usize,
    pub num_params: usize,
    pub preset: &'a str,
    pub engine: Engine,
    pub train_docs: usize,
    pub val_docs: usize,
    pub batch_size: usize,
    /// Steps already done (a resumed run's checkpoint step, else 0).
    pub first_step: usize,
    /// Steps this run will do.
    pub steps: usize,
    pub eval_every: usize,
    /// The periodic validations' fixed sample, if smaller than the split.
    pub val_sample: Option<usize>,
    /// Threads of a validation pass.
    pub eval_threads: usize,
    /// What was asked for ...
    pub save: &'a Save,
    /// ... and where the checkpoint at the end goes (the first free name for a default one).
    pub out: Option<&'a Path>,
}
