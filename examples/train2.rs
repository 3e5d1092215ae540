//! Step 2 of the ladder: step 1's MLP, with the gradient from the autograd tape instead of by
//! hand. The forward pass is written once, as scalar operations on `microgpt::autograd::Tape`
//! (each pushes a node that knows its local derivative); `Tape::backward` sweeps the nodes in
//! reverse and fills in every gradient. Same weights, same documents, same SGD: the run is step
//! 1's to rounding (`tests/ladder.rs` checks the gradients agree), and nothing backward has to
//! be written again when the model grows.
//!
//! `cargo run --release --example train2` (`-- --seed N` for another shuffle and
//! initialization, `--steps N` for another budget)

use microgpt::autograd::{Tape, Var};
use microgpt::error::Result;
use microgpt::reference::{Mat, cross_entropy, linear};
use microgpt::rng::Rng;
use microgpt::session::Dataset;

mod common;
use common::{BLOCK_SIZE, Log, Report};

/// SGD's learning rate before the linear decay: step 1's.
pub const LR: f64 = 1.0;
/// Step 1's sizes: tokens of context, embedding width, hidden units.
const CONTEXT: usize = 3;
const N_EMBD: usize = 16;
const MLP: usize = 64;

/// The MLP's weights as the first leaves of a tape (`wte, mlp_fc1, lm_head`, row-major: step
/// 1's flat layout); each step builds its graph after them.
pub struct Mlp {
    tape: Tape,
    wte: Mat,
    mlp_fc1: Mat,
    lm_head: Mat,
    num_params: usize,
}

impl Mlp {
    /// Weights drawn from `gauss(0, 0.08)` in step 1's order, so both steps start alike.
    pub fn new(vocab: usize, rng: &mut Rng) -> Mlp {
        let n = vocab * N_EMBD + MLP * CONTEXT * N_EMBD + vocab * MLP;
        let flat: Vec<f64> = (0..n)
            .map(|_| rng.gauss(0.0, microgpt::shape::INIT_STD))
            .collect();
        Mlp::from_flat(vocab, &flat)
    }

    pub fn from_flat(vocab: usize, flat: &[f64]) -> Mlp {
        let mut tape = Tape::new();
        let mut rest = flat;
        let mut mat = |rows: usize, cols: usize| {
            let (head, tail) = rest.split_at(rows * cols);
            rest = tail;
            Mat::leaves(&mut tape, rows, cols, head)
        };
        let wte = mat(vocab, N_EMBD);
        let mlp_fc1 = mat(MLP, CONTEXT * N_EMBD);
        let lm_head = mat(vocab, MLP);
        assert!(rest.is_empty(), "{} parameters too many", rest.len());
        Mlp {
            num_params: tape.len() - 1,
            tape,
            wte,
            mlp_fc1,
            lm_head,
        }
    }

    pub fn num_params(&self) -> usize {
        self.num_params
    }

    /// The leaves 1..=num_params (node 0 is the tape's sink).
    fn params(&self) -> impl Iterator<Item = Var> + use<> {
        (1..=self.num_params).map(Var::from_index)
    }

    /// The gradient of the last [`Mlp::loss_and_grad`], in step 1's flat layout.
    pub fn grads(&self) -> &[f64] {
        &self.tape.grads()[1..=self.num_params]
    }

    /// The graph of one document's mean loss, built after the weights.
    fn forward(&mut self, tokens: &[usize]) -> Var {
        self.tape.truncate(self.num_params + 1);
        let t = &mut self.tape;
        let n = common::positions(tokens, BLOCK_SIZE);
        let mut losses = Vec::with_capacity(n);
        for pos in 0..n {
            // the embeddings of tokens pos+1−C ..= pos, BOS (tokens[0]) before the start
            let x: Vec<Var> = (pos + 1..pos + 1 + CONTEXT)
                .flat_map(|i| {
                    let id = i.checked_sub(CONTEXT).map_or(tokens[0], |j| tokens[j]);
                    self.wte.row(id)
                })
                .collect();
            let h = linear(t, &x, &self.mlp_fc1);
            let h: Vec<Var> = h.iter().map(|&hi| t.relu(hi)).collect();
            let logits = linear(t, &h, &self.lm_head);
            losses.push(cross_entropy(t, &logits, tokens[pos + 1]));
        }
        let total = t.sum(&losses);
        t.mul_const(total, 1.0 / n as f64)
    }

    /// A document's mean loss, forward only.
    pub fn loss(&mut self, tokens: &[usize]) -> f64 {
        let loss = self.forward(tokens);
        self.tape.data(loss)
    }

    /// A document's mean loss; its gradient is then in [`Mlp::grads`].
    pub fn loss_and_grad(&mut self, tokens: &[usize]) -> f64 {
        let loss = self.forward(tokens);
        // backward adds into what the leaves hold from the last step
        self.tape.zero_grad();
        self.tape.backward(loss);
        self.tape.data(loss)
    }

    /// `w ← w − lr·∂loss/∂w` for every weight leaf.
    pub fn sgd(&mut self, lr: f64) {
        for p in self.params() {
            let w = self.tape.data(p) - lr * self.tape.grad(p);
            self.tape.set_data(p, w);
        }
    }
}

/// `steps` SGD steps, one training document each, from weights drawn from `rng`.
pub fn train(data: &Dataset, rng: &mut Rng, steps: usize) -> Result<Report> {
    let mut model = Mlp::new(data.tok.vocab_size(), rng);
    let mut log = Log::new(steps);
    let start = common::timer();
    for step in 0..steps {
        let loss = model.loss_and_grad(&common::doc(data, step));
        model.sgd(common::lr_at(LR, step, steps));
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
    common::main("train2", "the same MLP on the autograd tape, SGD", train)
}
