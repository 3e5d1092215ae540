//! Step 5 of the ladder: microgpt. Step 4's GPT with **Adam** instead of SGD: each weight
//! keeps running means of its gradient (`m`, momentum) and of its square (`v`), and moves by
//! `lr_t·m̂ / (√v̂ + eps)` (`m̂`, `v̂` corrected for starting at 0). Every weight then takes steps
//! of about `lr_t` whatever the scale of its gradient, where SGD's step is proportional to it.
//! microgpt.py's settings: lr 0.01 decaying linearly to 0, β 0.85 / 0.99, eps 1e-8.
//!
//! This is `microgpt train --engine dynamic` (same split, same weights, same 1,000 documents),
//! so the two print the same held-out loss.
//!
//! `cargo run --release --example train5` (`-- --seed N` for another shuffle and
//! initialization, `--steps N` for another budget)

use microgpt::error::Result;
use microgpt::optim::Adam;
use microgpt::reference::Reference;
use microgpt::rng::Rng;
use microgpt::session::Dataset;
use microgpt::shape::Shape;

mod common;
use common::{Log, Report};

/// `steps` Adam steps, one training document each, from weights drawn from `rng`.
pub fn train(data: &Dataset, rng: &mut Rng, steps: usize) -> Result<Report> {
    let mut model = Reference::new(Shape::micro(data.tok.vocab_size()), rng)?;
    let adam = Adam::default();
    let mut log = Log::new(steps);
    let start = common::timer();
    for step in 0..steps {
        let loss = model.train_step(&common::doc(data, step), &adam.at(step, steps));
        log.step(step, loss);
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(common::evaluate(
        &data.val,
        model.num_params(),
        steps,
        seconds,
        |d| model.loss(d),
    ))
}

#[allow(dead_code)] // tests include this file as a module and call `train`
fn main() -> std::process::ExitCode {
    common::main("train5", "+ Adam = microgpt", train)
}
