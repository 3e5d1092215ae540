//! Step 0 of the ladder: a bigram count table. No parameters are learned by gradient: count
//! how often each token follows each other token in the training documents, add one to every
//! count (Laplace smoothing, so that an unseen pair is unlikely rather than impossible) and
//! normalize each row, `P(next | ctx) = (count(ctx, next) + 1) / (count(ctx) + V)`.
//!
//! It sees the same documents as the steps after it (the first `STEPS` training names, once
//! each), so its held-out loss is the floor a model of the previous token alone can reach on
//! them; `microgpt baseline` fits the same table on all 28,830 training names.
//!
//! `cargo run --release --example train0` (`-- --seed N` for another shuffle and
//! initialization, `--steps N` for another budget)

use microgpt::bigram::Bigram;
use microgpt::error::Result;
use microgpt::rng::Rng;
use microgpt::session::Dataset;

mod common;
use common::Report;

/// Counts the pairs of the first `steps` training documents; scores every held-out position.
pub fn train(data: &Dataset, _rng: &mut Rng, steps: usize) -> Result<Report> {
    let start = common::timer();
    let docs: Vec<Vec<usize>> = (0..steps).map(|step| common::doc(data, step)).collect();
    let docs = docs.iter().map(Vec::as_slice);
    let table = Bigram::fit(data.tok.vocab_size(), docs, Bigram::DEFAULT_SMOOTHING)?;
    let seconds = start.elapsed().as_secs_f64();

    let (nll, tokens) = table.nll(data.val.iter(), None)?;
    Ok(Report {
        loss: nll / tokens as f64,
        tokens,
        docs: data.val.len(),
        // the table's V·V entries are its parameters, counted rather than trained
        params: table.vocab() * table.vocab(),
        steps,
        seconds,
    })
}

#[allow(dead_code)] // tests include this file as a module and call `train`
fn main() -> std::process::ExitCode {
    common::main("train0", "bigram count table (no gradients)", train)
}
