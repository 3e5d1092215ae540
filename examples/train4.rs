//! Step 4 of the ladder: the full GPT. Three things are added to step 3:
//!
//! - **multi-head attention**: the query, keys and values are cut into `H` heads of `D = E/H`
//!   columns each; every head runs step 3's attention on its own slice (scores `q_h·k_h / √D`)
//!   and the heads' outputs are concatenated before `attn_wo`. Same weights, same parameter
//!   count; four small attention patterns instead of one wide one;
//! - **the MLP block** after the attention, in a residual of its own: `x ← x +
//!   mlp_fc2·relu(mlp_fc1·rmsnorm(x))`, step 1's hidden layer applied at every position to
//!   what the attention gathered;
//! - **the layer loop**: the block (attention + MLP) is repeated `n_layer` times, each layer
//!   with weights of its own (microgpt: one layer).
//!
//! That is microgpt.py's model, which the crate has as `microgpt::reference::Reference`, the
//! scalar-tape port the static engine is checked against; this step trains it with step 3's SGD.
//!
//! `cargo run --release --example train4` (`-- --seed N` for another shuffle and
//! initialization, `--steps N` for another budget)

use microgpt::error::Result;
use microgpt::reference::Reference;
use microgpt::rng::Rng;
use microgpt::session::Dataset;
use microgpt::shape::Shape;

mod common;
use common::{Log, Report};

/// SGD's learning rate before the linear decay: step 3's (1 diverges here too).
pub const LR: f64 = 0.2;

/// `steps` SGD steps, one training document each, from weights drawn from `rng`.
pub fn train(data: &Dataset, rng: &mut Rng, steps: usize) -> Result<Report> {
    // V, T 16, E 16, H 4 (D 4), F 64, L 1
    let mut model = Reference::new(Shape::micro(data.tok.vocab_size()), rng)?;
    let mut params = model.params().to_vec();
    let mut log = Log::new(steps);
    let start = common::timer();
    for step in 0..steps {
        let loss = model.loss_and_grad(&common::doc(data, step));
        let lr = common::lr_at(LR, step, steps);
        for (w, g) in params.iter_mut().zip(model.grads()) {
            *w -= lr * g;
        }
        model.set_params(&params);
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
    common::main(
        "train4",
        "+ multi-head attention, MLP block, layer loop = the GPT, SGD",
        train,
    )
}
