//! Step 1 of the ladder: a neural network with gradients written by hand, trained by SGD.
//! Bengio et al.'s (2003) MLP language model: the next token from the previous `C` = 3
//! (BOS before the start of the name). Per position t of a document:
//!
//! ```text
//! x = [wte[token_t−2], wte[token_t−1], wte[token_t]]   (C·E)  the embeddings, concatenated
//! h = relu(mlp_fc1 · x)                                (F)
//! logits = lm_head · h                                 (V)  loss_t = −ln softmax(logits)[token_t+1]
//! ```
//!
//! and the document's loss is the mean over its positions. Step 0's table knows one token;
//! this knows three, through learned embeddings that let similar letters share what they
//! learn, which is why it does better on the same documents.
//!
//! Written the way the crate writes its fast engine: the shapes are const generics, matrices
//! are `[[f64; IN]; OUT]` (row `o` is output `o`), and each forward op has its backward op,
//! derivative in a comment, from `microgpt::ops`. The gradient is checked against central
//! finite differences in `tests/ladder.rs`.
//!
//! `cargo run --release --example train1` (`-- --seed N` for another shuffle and
//! initialization, `--steps N` for another budget)

use microgpt::bail;
use microgpt::error::Result;
use microgpt::gpt::kernels::transpose;
use microgpt::gpt::ops::{
    Put, cross_entropy_backward, cross_entropy_forward, linear_backward, linear_forward,
    relu_backward, relu_forward,
};
use microgpt::rng::Rng;
use microgpt::session::Dataset;

mod common;
use common::{Log, Report};

/// SGD's learning rate before the linear decay (on this budget 0.5 and 1.5 are 0.017 worse, 2
/// diverges; see docs/progression.md).
pub const LR: f64 = 1.0;

/// The step-1 model on names.txt: V 27, T 16, a context of C 3 tokens, E 16 (so C·E 48),
/// F 64 hidden units.
pub type Mlp = MlpOf<27, 16, 3, 16, 48, 64>;
const _: () = Mlp::CHECK;

/// `V` vocab, `T` positions per document (microgpt's block size), `C` context tokens, `E`
/// embedding, `CE` = C·E the concatenated input, `F` hidden. The gradient of the weights is a
/// value of the same type.
pub struct MlpOf<
    const V: usize,
    const T: usize,
    const C: usize,
    const E: usize,
    const CE: usize,
    const F: usize,
> {
    pub wte: [[f64; E]; V],
    pub mlp_fc1: [[f64; CE]; F],
    pub lm_head: [[f64; F]; V],
}

impl<
    const V: usize,
    const T: usize,
    const C: usize,
    const E: usize,
    const CE: usize,
    const F: usize,
> MlpOf<V, T, C, E, CE, F>
{
    /// Stable Rust cannot write `[f64; C * E]`, so `CE` is a parameter of its own, checked here.
    pub const CHECK: () = assert!(CE == C * E && C >= 1, "CE must be C·E");
    pub const NUM_PARAMS: usize = V * E + F * CE + V * F;

    /// Every weight drawn from `gauss(0, 0.08)`, tensor after tensor, row by row.
    pub fn new(rng: &mut Rng) -> Box<Self> {
        let flat: Vec<f64> = (0..Self::NUM_PARAMS)
            .map(|_| rng.gauss(0.0, microgpt::shape::INIT_STD))
            .collect();
        Self::from_flat(&flat)
    }

    pub fn zeros() -> Box<Self> {
        Box::new(MlpOf {
            wte: [[0.0; E]; V],
            mlp_fc1: [[0.0; CE]; F],
            lm_head: [[0.0; F]; V],
        })
    }

    /// The tensors as one flat slice each, in the order `wte, mlp_fc1, lm_head`.
    pub fn tensors(&self) -> [&[f64]; 3] {
        [
            self.wte.as_flattened(),
            self.mlp_fc1.as_flattened(),
            self.lm_head.as_flattened(),
        ]
    }

    fn tensors_mut(&mut self) -> [&mut [f64]; 3] {
        [
            self.wte.as_flattened_mut(),
            self.mlp_fc1.as_flattened_mut(),
            self.lm_head.as_flattened_mut(),
        ]
    }

    /// The weights from one flat vector (the layout of [`MlpOf::to_flat`]).
    pub fn from_flat(flat: &[f64]) -> Box<Self> {
        assert_eq!(flat.len(), Self::NUM_PARAMS);
        let mut m = Self::zeros();
        let mut rest = flat;
        for t in m.tensors_mut() {
            let (head, tail) = rest.split_at(t.len());
            t.copy_from_slice(head);
            rest = tail;
        }
        m
    }

    pub fn to_flat(&self) -> Vec<f64> {
        self.tensors().concat()
    }

    /// `w ← w − lr·g`, every tensor.
    pub fn sgd(&mut self, grad: &Self, lr: f64) {
        for (w, g) in self.tensors_mut().into_iter().zip(grad.tensors()) {
            for (w, g) in w.iter_mut().zip(g.iter()) {
                *w -= lr * g;
            }
        }
    }

    /// The mean loss of a document's positions, and with `grad` its gradient *added* into
    /// `grad` (zero it first). `tokens` is `[BOS] name [BOS]`.
    pub fn loss(&self, tokens: &[usize], grad: Option<&mut Self>) -> f64 {
        let n = common::positions(tokens, T);
        let targets = &tokens[1..=n];
        // the context of position t: tokens t+1−C ..= t, BOS (the document's first token)
        // before the start, so that the first letter is predicted from C BOS
        let mut ctx = [[0; C]; T];
        for (t, c) in ctx.iter_mut().enumerate().take(n) {
            for (j, id) in c.iter_mut().enumerate() {
                *id = (t + 1 + j).checked_sub(C).map_or(tokens[0], |i| tokens[i]);
            }
        }
        // forward reads each matrix through its transpose (see `gpt::ops::linear_forward`)
        let (mut fc1_t, mut lm_head_t) = ([[0.0; F]; CE], [[0.0; V]; F]);
        transpose(&mut fc1_t, &self.mlp_fc1);
        transpose(&mut lm_head_t, &self.lm_head);

        // forward, all n positions at once (one row each); each op keeps what backward reads
        let mut x = [[0.0; CE]; T];
        for (xt, c) in x.iter_mut().zip(&ctx).take(n) {
            for (slot, &id) in xt.chunks_exact_mut(E).zip(c) {
                slot.copy_from_slice(&self.wte[id]);
            }
        }
        let (mut pre, mut h) = ([[0.0; F]; T], [[0.0; F]; T]);
        linear_forward(&mut pre[..n], &x[..n], &fc1_t);
        for (ht, pt) in h.iter_mut().zip(&pre).take(n) {
            relu_forward(ht, pt);
        }
        let mut logits = [[0.0; V]; T];
        linear_forward(&mut logits[..n], &h[..n], &lm_head_t);
        let mut probs = [[0.0; V]; T];
        let mut loss = 0.0;
        for t in 0..n {
            loss += cross_entropy_forward(&mut probs[t], &logits[t], targets[t], V);
        }
        let loss = loss / n as f64;

        let Some(g) = grad else { return loss };
        // backward: the ops in reverse order, each under the derivative of its forward op;
        // weight gradients accumulate (`Put::Add`), activation gradients are written (`Set`)
        // loss = (1/n)·Σ_t −ln p_t[target_t]  ⇒  dlogits_t = (p_t − onehot(target_t)) / n
        let mut dlogits = [[0.0; V]; T];
        for t in 0..n {
            let dloss = 1.0 / n as f64;
            cross_entropy_backward(&mut dlogits[t], &probs[t], targets[t], V, dloss, Put::Set);
        }
        // logits_t = lm_head·h_t  ⇒  dh_t = lm_headᵀ·dlogits_t, dlm_head += Σ_t dlogits_t·h_tᵀ
        let mut dh = [[0.0; F]; T];
        linear_backward(
            &mut dh[..n],
            &mut g.lm_head,
            &dlogits[..n],
            &h[..n],
            &self.lm_head,
            Put::Set,
            Put::Add,
        );
        // h = relu(pre)  ⇒  dpre = dh·[h > 0]
        let mut dpre = [[0.0; F]; T];
        for t in 0..n {
            relu_backward(&mut dpre[t], &dh[t], &h[t], Put::Set);
        }
        // pre_t = mlp_fc1·x_t  ⇒  dx_t = mlp_fc1ᵀ·dpre_t, dmlp_fc1 += Σ_t dpre_t·x_tᵀ
        let mut dx = [[0.0; CE]; T];
        linear_backward(
            &mut dx[..n],
            &mut g.mlp_fc1,
            &dpre[..n],
            &x[..n],
            &self.mlp_fc1,
            Put::Set,
            Put::Add,
        );
        // x_t = [wte[ctx_t,0], …, wte[ctx_t,C−1]]  ⇒  dwte[ctx_t,j] += dx_t[jE .. (j+1)E]
        // (a token twice in a context, e.g. the padding BOS, collects both slices)
        for (dxt, c) in dx.iter().zip(&ctx).take(n) {
            for (slot, &id) in dxt.chunks_exact(E).zip(c) {
                for (d, e) in g.wte[id].iter_mut().zip(slot) {
                    *d += e;
                }
            }
        }
        loss
    }
}

/// `steps` SGD steps, one training document each, from weights drawn from `rng`.
pub fn train(data: &Dataset, rng: &mut Rng, steps: usize) -> Result<Report> {
    if data.tok.vocab_size() != 27 {
        bail!(
            "train1 is compiled for names.txt's 27 tokens, the data has {}",
            data.tok.vocab_size()
        );
    }
    let mut model = Mlp::new(rng);
    let mut grad = Mlp::zeros();
    let mut log = Log::new(steps);
    let start = common::timer();
    for step in 0..steps {
        grad.tensors_mut().iter_mut().for_each(|g| g.fill(0.0));
        let loss = model.loss(&common::doc(data, step), Some(&mut grad));
        model.sgd(&grad, common::lr_at(LR, step, steps));
        log.step(step, loss);
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(common::evaluate(
        &data.val,
        Mlp::NUM_PARAMS,
        steps,
        seconds,
        |d| model.loss(d, None),
    ))
}

#[allow(dead_code)] // tests include this file as a module and call `train`
fn main() -> std::process::ExitCode {
    common::main(
        "train1",
        "MLP of 3 tokens, hand-written gradients, SGD",
        train,
    )
}
