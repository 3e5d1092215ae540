//! Step 3 of the ladder: a transformer's attention instead of step 2's MLP. Four things, all
//! on the same autograd tape:
//!
//! - **position embeddings** `wpe`: the input is `wte[token] + wpe[pos]`, so the model knows
//!   where in the name it is;
//! - **single-head causal attention**: each position's query is compared with the keys of
//!   itself and every earlier position (`q·k_s / √E`), the softmax of those scores weighs their
//!   values; a prediction can now draw on every earlier letter, not a fixed window of three;
//! - **rmsnorm**, `x·(mean(x²) + 1e-5)^−½`, of the embedding and again before the attention
//!   (microgpt's places), which keeps the scale of the vectors steady;
//! - a **residual**: the attention's output is added to its input (`x ← x + attn(x)`), so that
//!   the gradient reaches the embeddings through the sum unchanged.
//!
//! No MLP yet (step 4 adds it): between the embeddings and `lm_head` the only non-linearities
//! are the attention's softmax and the rmsnorms. This is `microgpt::reference::Reference` with
//! one head and its MLP switched off (`tests/ladder.rs` checks it).
//!
//! `cargo run --release --example train3` (`-- --seed N` for another shuffle and
//! initialization, `--steps N` for another budget)

use microgpt::autograd::{Tape, Var};
use microgpt::error::Result;
use microgpt::reference::{Mat, cross_entropy, linear, rmsnorm, softmax};
use microgpt::rng::Rng;
use microgpt::session::Dataset;
use microgpt::shape::Shape;

mod common;
use common::{BLOCK_SIZE, Log, Report};

/// SGD's learning rate before the linear decay: step 4's (on this budget 0.1-0.7 do about as
/// well, 1 diverges; see docs/progression.md).
pub const LR: f64 = 0.2;

/// microgpt's shape with a single attention head: V, T 16, E 16, one layer (its MLP, F 64,
/// is not used here).
pub fn shape(vocab: usize) -> Shape {
    Shape {
        n_head: 1,
        ..Shape::micro(vocab)
    }
}

/// This step's tensors as `(name, rows, cols)`: [`shape`]'s without the MLP, in microgpt's
/// order (`wte, wpe, lm_head, attn_wq, attn_wk, attn_wv, attn_wo`), which puts the MLP last,
/// so the weights drawn here are the first ones step 4 draws.
pub fn tensors(vocab: usize) -> Vec<(String, usize, usize)> {
    let mut t = shape(vocab).tensors();
    t.retain(|(name, _, _)| !name.contains("mlp_"));
    t
}

/// The weights as the first leaves of a tape, in [`tensors`] order.
pub struct Block {
    tape: Tape,
    m: Vec<Mat>,
    num_params: usize,
}

impl Block {
    /// Weights drawn from `gauss(0, 0.08)`, tensor after tensor, row by row.
    pub fn new(vocab: usize, rng: &mut Rng) -> Block {
        let n: usize = tensors(vocab).iter().map(|(_, r, c)| r * c).sum();
        let flat: Vec<f64> = (0..n)
            .map(|_| rng.gauss(0.0, microgpt::shape::INIT_STD))
            .collect();
        Block::from_flat(vocab, &flat)
    }

    pub fn from_flat(vocab: usize, flat: &[f64]) -> Block {
        let mut tape = Tape::new();
        let mut rest = flat;
        let mut m = Vec::new();
        for (_, rows, cols) in tensors(vocab) {
            let (head, tail) = rest.split_at(rows * cols);
            m.push(Mat::leaves(&mut tape, rows, cols, head));
            rest = tail;
        }
        assert!(rest.is_empty(), "{} parameters too many", rest.len());
        let num_params = tape.len() - 1;
        Block {
            tape,
            m,
            num_params,
        }
    }

    pub fn num_params(&self) -> usize {
        self.num_params
    }

    /// The gradient of the last [`Block::loss_and_grad`], in [`tensors`] layout.
    pub fn grads(&self) -> &[f64] {
        &self.tape.grads()[1..=self.num_params]
    }

    /// The graph of one document's mean loss, built after the weights.
    fn forward(&mut self, tokens: &[usize]) -> Var {
        self.tape.truncate(self.num_params + 1);
        let t = &mut self.tape;
        let [wte, wpe, lm_head, wq, wk, wv, wo] = self.m[..] else {
            unreachable!("one layer without its MLP: seven tensors")
        };
        let add = |t: &mut Tape, a: &[Var], b: &[Var]| -> Vec<Var> {
            a.iter().zip(b).map(|(&x, &y)| t.add(x, y)).collect()
        };
        let scale = (wq.rows as f64).sqrt(); // √E: one head as wide as the embedding
        let (mut keys, mut values): (Vec<Vec<Var>>, Vec<Vec<Var>>) = (Vec::new(), Vec::new());
        let n = common::positions(tokens, BLOCK_SIZE);
        let mut losses = Vec::with_capacity(n);
        for pos in 0..n {
            let emb: Vec<Var> = wte.row(tokens[pos]).collect();
            let x = add(t, &emb, &wpe.row(pos).collect::<Vec<_>>());
            let x = rmsnorm(t, &x);
            // attention: this position's query against the keys of positions 0..=pos
            let xn = rmsnorm(t, &x);
            let q = linear(t, &xn, &wq);
            keys.push(linear(t, &xn, &wk));
            values.push(linear(t, &xn, &wv));
            let scores: Vec<Var> = keys
                .iter()
                .map(|k| {
                    let s = t.dot(q.iter().copied(), k.iter().copied());
                    t.div_const(s, scale)
                })
                .collect();
            let w = softmax(t, &scores);
            let att: Vec<Var> = (0..q.len())
                .map(|j| t.dot(w.iter().copied(), values.iter().map(|v| v[j])))
                .collect();
            let out = linear(t, &att, &wo);
            let x = add(t, &out, &x);
            let logits = linear(t, &x, &lm_head);
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

    /// A document's mean loss; its gradient is then in [`Block::grads`].
    pub fn loss_and_grad(&mut self, tokens: &[usize]) -> f64 {
        let loss = self.forward(tokens);
        self.tape.zero_grad();
        self.tape.backward(loss);
        self.tape.data(loss)
    }

    /// `w ← w − lr·∂loss/∂w` for every weight leaf.
    pub fn sgd(&mut self, lr: f64) {
        for p in (1..=self.num_params).map(Var::from_index) {
            let w = self.tape.data(p) - lr * self.tape.grad(p);
            self.tape.set_data(p, w);
        }
    }
}

/// `steps` SGD steps, one training document each, from weights drawn from `rng`.
pub fn train(data: &Dataset, rng: &mut Rng, steps: usize) -> Result<Report> {
    let mut model = Block::new(data.tok.vocab_size(), rng);
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
    common::main(
        "train3",
        "position embeddings, single-head attention, rmsnorm, residual (no MLP)",
        train,
    )
}
