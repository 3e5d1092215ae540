//! What the six steps of the ladder (`train0` … `train5`) share, so that their numbers compare:
//! the same split of names.txt, the same budget, the same held-out loss and the same report.
//!
//! The split is `microgpt train --val-max 3203`'s and `microgpt baseline --val-max 3203`'s:
//! the documents shuffled by `Rng::pcg(42)`, the last 10% (3,203 names) held out. Every step sees the same
//! [`STEPS`] training documents (or `--steps N`), one per step, in order (microgpt's
//! `docs[step % len]`), and is scored on every held-out position: the token-weighted mean of
//! `−ln p(next)`.

// Each example uses only part of this module.
#![allow(dead_code)]

use std::process::ExitCode;
use std::time::Instant;

use microgpt::bail;
use microgpt::data::{EncodedDocs, Source};
use microgpt::error::Result;
use microgpt::rng::Rng;
use microgpt::session::Dataset;

/// Training documents, one per step: microgpt.py's `num_steps`.
pub const STEPS: usize = 1000;
/// The seed of the shuffle (and then of the initial weights), unless `--seed N` is given.
pub const SEED: u64 = 42;
/// Share of the shuffled documents held out (the last ones).
pub const VAL_FRACTION: f64 = 0.1;
/// Positions scored per document, microgpt's block size (names have at most 15 letters, so
/// every position of every name).
pub const BLOCK_SIZE: usize = 16;

/// names.txt split as `microgpt train --seed seed` splits it, and the stream after the shuffle
/// (which then draws the initial weights, as in microgpt.py).
pub fn names_with_seed(seed: u64) -> Result<(Dataset, Rng)> {
    let mut rng = Rng::pcg(seed);
    let data = Dataset::load(&Source::Names, &mut rng, VAL_FRACTION, None, None)?;
    Ok((data, rng))
}

/// [`names_with_seed`] of [`SEED`].
pub fn names() -> Result<(Dataset, Rng)> {
    names_with_seed(SEED)
}

/// What a step's command line asks for: `[--seed N] [--steps N]`.
pub struct Args {
    /// The shuffle's and the initialization's seed, [`SEED`] unless `--seed N`.
    pub seed: u64,
    /// Training documents (steps), [`STEPS`] unless `--steps N`.
    pub steps: usize,
}

/// The step's [`Args`]; anything else is a one-line error.
pub fn args() -> Result<Args> {
    let mut args = Args {
        seed: SEED,
        steps: STEPS,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next();
        match (flag.as_str(), value) {
            ("--seed", Some(n)) => match n.parse() {
                Ok(seed) => args.seed = seed,
                Err(_) => bail!("--seed wants a non-negative integer, not {n:?}"),
            },
            ("--steps", Some(n)) => match n.parse() {
                Ok(steps) if steps > 0 => args.steps = steps,
                _ => bail!("--steps wants a positive integer, not {n:?}"),
            },
            ("--seed" | "--steps", None) => bail!("{flag} wants a value"),
            _ => bail!("unexpected argument {flag:?}; the options are --seed N and --steps N"),
        }
    }
    Ok(args)
}

/// The training document of `step`, encoded.
pub fn doc(data: &Dataset, step: usize) -> Vec<usize> {
    data.train.get(step % data.train.len())
}

/// SGD's learning rate at `step` of `steps`: microgpt's linear decay, `lr·(1 − step/steps)`,
/// so that the only thing step 5 changes is the update rule.
pub fn lr_at(lr: f64, step: usize, steps: usize) -> f64 {
    lr * (1.0 - step as f64 / steps as f64)
}

/// Positions a document is scored on: `min(T, len − 1)` (every one, for names and T = 16).
pub fn positions(doc: &[usize], block_size: usize) -> usize {
    block_size.min(doc.len() - 1)
}

/// What a step reports: the held-out loss, the model's size and how long training took.
pub struct Report {
    pub loss: f64,
    pub tokens: usize,
    pub docs: usize,
    pub params: usize,
    pub steps: usize,
    pub seconds: f64,
}

/// Token-weighted mean over `val` of `doc_nll(doc)`, which returns a document's summed
/// negative log-likelihood and the number of positions it scored.
pub fn held_out(val: &EncodedDocs, mut doc_nll: impl FnMut(&[usize]) -> (f64, usize)) -> Report {
    let (mut sum, mut tokens) = (0.0, 0);
    for d in val.iter() {
        let (s, n) = doc_nll(d);

        sum += s;
        tokens += n;
    }
    Report {
        loss: sum / tokens as f64,
        tokens,
        docs: val.len(),
        params: 0,
        steps: 0,
        seconds: 0.0,
    }
}

/// The held-out report of a model trained `steps` steps in `seconds`, from `mean_loss(doc)`: its
/// mean loss per position on one document.
pub fn evaluate(
    val: &EncodedDocs,
    params: usize,
    steps: usize,
    seconds: f64,
    mut mean_loss: impl FnMut(&[usize]) -> f64,
) -> Report {
    let report = held_out(val, |d| {
        let n = positions(d, BLOCK_SIZE);
        (mean_loss(d) * n as f64, n)
    });
    Report {
        params,
        steps,
        seconds,
        ..report
    }
}

/// A step's `main`: `--seed N` and `--steps N`, the split, `train`, the two report lines.
pub fn main(
    name: &str,
    what: &str,
    train: impl FnOnce(&Dataset, &mut Rng, usize) -> Result<Report>,
) -> ExitCode {
    run(|| {
        let args = args()?;
        let (data, mut rng) = names_with_seed(args.seed)?;
        train(&data, &mut rng, args.steps)?.print(name, what);
        Ok(())
    })
}

/// A stopwatch for the training loop (the held-out pass is not counted).
pub fn timer() -> Instant {
    Instant::now()
}

/// The mean training loss of the last `EVERY` steps, printed every `EVERY` steps of a run of
/// `steps`.
pub struct Log {
    steps: usize,
    sum: f64,
}

impl Log {
    const EVERY: usize = 250;

    pub fn new(steps: usize) -> Log {
        Log { steps, sum: 0.0 }
    }

    pub fn step(&mut self, step: usize, loss: f64) {
        self.sum += loss;
        if (step + 1).is_multiple_of(Self::EVERY) {
            let mean = self.sum / Self::EVERY as f64;
            println!(
                "step {:4} / {} | train loss {mean:.4}",
                step + 1,
                self.steps
            );
            self.sum = 0.0;
        }
    }
}

impl Report {
    /// The two lines every step ends with, in one format.
    pub fn print(&self, name: &str, what: &str) {
        println!(
            "{name}: {what} | {} params | {} steps | training {:.3} s",
            self.params, self.steps, self.seconds
        );
        println!(
            "held-out loss {:.4} ({} tokens, {} docs)",
            self.loss, self.tokens, self.docs
        );
    }
}

/// Runs a step's `main`: an error is one line on stderr and exit code 1.
pub fn run(main: impl FnOnce() -> Result<()>) -> ExitCode {
    match main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
