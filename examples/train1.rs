//! Step 1 of the ladder: an MLP of the current token, trained by SGD with gradients written by
//! hand. Per position t of a document:
//!
//! ```text
//! x = wte[token_t]            (E)  the token's embedding
//! h = relu(mlp_fc1 · x)       (F)
//! y = mlp_fc2 · h             (E)
//! logits = lm_head · y        (V)  loss_t = −ln softmax(logits)[token_t+1]
//! ```
//!
//! and the document's loss is the mean over its positions. It still sees one token only, so
//! it can at best learn the bigram table of step 0; what it adds is the machinery: parameters,
//! a forward pass, its backward pass and a gradient step. (`mlp_fc2 · lm_head` is a product of
//! two linear maps, one too many for now; it is microgpt's MLP block, which step 3 puts in a
//! residual stream where the pair is no longer redundant.)
//!
//! Written the way the crate writes its fast engine: the shapes are const generics, matrices
//! are `[[f64; IN]; OUT]` (row `o` is output `o`), and each forward op has its backward op,
//! derivative in a comment, from `microgpt::ops`. The gradient is checked against central
//! finite differences in `tests/ladder.rs`.
//!
//! `cargo run --release --example train1` (`-- --seed N` for another shuffle and initialization)

use microgpt::bail;
use microgpt::error::Result;
use microgpt::ops::{
    Write, cross_entropy_backward, cross_entropy_forward, linear_backward, linear_forward,
    relu_backward, relu_forward, transpose,
};
use microgpt::rng::Rng;
use microgpt::session::Dataset;

mod common;
use common::{Log, Report, STEPS};

/// SGD's learning rate before the linear decay (on this budget 0.75-1.5 do about as well, 2
/// diverges; see docs/progression.md).
pub const LR: f64 = 1.0;

/// The step-1 model on names.txt: V 27, T 16, E 16, F 64 (microgpt's sizes).
pub type Mlp = MlpOf<27, 16, 16, 64>;

/// `V` vocab, `T` positions per document (microgpt's block size), `E` embedding, `F` hidden.
/// The gradient of the weights is a value of the same type.
pub struct MlpOf<const V: usize, const T: usize, const E: usize, const F: usize> {
    pub wte: [[f64; E]; V],
    pub mlp_fc1: [[f64; E]; F],
    pub mlp_fc2: [[f64; F]; E],
    pub lm_head: [[f64; E]; V],
}

impl<const V: usize, const T: usize, const E: usize, const F: usize> MlpOf<V, T, E, F> {
    pub const NUM_PARAMS: usize = V * E + F * E + E * F + V * E;

    /// Every weight drawn from `gauss(0, 0.08)`, tensor after tensor, row by row.
    pub fn new(rng: &mut Rng) -> Box<Self> {
        let flat: Vec<f64> = (0..Self::NUM_PARAMS)
            .map(|_| rng.gauss(0.0, common::INIT_STD))
            .collect();
        Self::from_flat(&flat)
    }

    pub fn zeros() -> Box<Self> {
        Box::new(MlpOf {
            wte: [[0.0; E]; V],
            mlp_fc1: [[0.0; E]; F],
            mlp_fc2: [[0.0; F]; E],
            lm_head: [[0.0; E]; V],
        })
    }

    /// The tensors as one flat slice each, in the order `wte, mlp_fc1, mlp_fc2, lm_head`.
    pub fn tensors(&self) -> [&[f64]; 4] {
        [
            self.wte.as_flattened(),
            self.mlp_fc1.as_flattened(),
            self.mlp_fc2.as_flattened(),
            self.lm_head.as_flattened(),
        ]
    }

    fn tensors_mut(&mut self) -> [&mut [f64]; 4] {
        [
            self.wte.as_flattened_mut(),
            self.mlp_fc1.as_flattened_mut(),
            self.mlp_fc2.as_flattened_mut(),
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
        let (inputs, targets) = (&tokens[..n], &tokens[1..=n]);
        // forward reads each matrix through its transpose (see `ops::linear_forward`)
        let (mut fc1_t, mut fc2_t, mut lm_head_t) = ([[0.0; F]; E], [[0.0; E]; F], [[0.0; V]; E]);
        transpose(&mut fc1_t, &self.mlp_fc1);
        transpose(&mut fc2_t, &self.mlp_fc2);
        transpose(&mut lm_head_t, &self.lm_head);

        // forward, all n positions at once (one row each); each op keeps what backward reads
        let mut x = [[0.0; E]; T];
        for (xt, &tok) in x.iter_mut().zip(inputs) {
            *xt = self.wte[tok];
        }
        let (mut pre, mut h) = ([[0.0; F]; T], [[0.0; F]; T]);
        linear_forward(&mut pre[..n], &x[..n], &fc1_t);
        for (ht, pt) in h.iter_mut().zip(&pre).take(n) {
            relu_forward(ht, pt);
        }
        let mut y = [[0.0; E]; T];
        linear_forward(&mut y[..n], &h[..n], &fc2_t);
        let mut logits = [[0.0; V]; T];
        linear_forward(&mut logits[..n], &y[..n], &lm_head_t);
        let mut probs = [[0.0; V]; T];
        let mut loss = 0.0;
        for t in 0..n {
            loss += cross_entropy_forward(&mut probs[t], &logits[t], targets[t], V);
        }
        let loss = loss / n as f64;

        let Some(g) = grad else { return loss };
        // backward: the ops in reverse order, each under the derivative of its forward op;
        // weight gradients accumulate (`Write::Add`), activation gradients are written (`Set`)
        // loss = (1/n)·Σ_t −ln p_t[target_t]  ⇒  dlogits_t = (p_t − onehot(target_t)) / n
        let mut dlogits = [[0.0; V]; T];
        for t in 0..n {
            cross_entropy_backward(&mut dlogits[t], &probs[t], targets[t], V, 1.0 / n as f64);
        }
        // logits_t = lm_head·y_t  ⇒  dy_t = lm_headᵀ·dlogits_t, dlm_head += Σ_t dlogits_t·y_tᵀ
        let mut dy = [[0.0; E]; T];
        linear_backward(
            &mut dy[..n],
            &mut g.lm_head,
            &dlogits[..n],
            &y[..n],
            &self.lm_head,
            Write::Set,
            Write::Add,
        );
        // y_t = mlp_fc2·h_t  ⇒  dh_t = mlp_fc2ᵀ·dy_t, dmlp_fc2 += Σ_t dy_t·h_tᵀ
        let mut dh = [[0.0; F]; T];
        linear_backward(
            &mut dh[..n],
            &mut g.mlp_fc2,
            &dy[..n],
            &h[..n],
            &self.mlp_fc2,
            Write::Set,
            Write::Add,
        );
        // h = relu(pre)  ⇒  dpre = dh·[h > 0]
        let mut dpre = [[0.0; F]; T];
        for t in 0..n {
            relu_backward(&mut dpre[t], &dh[t], &h[t]);
        }
        // pre_t = mlp_fc1·x_t  ⇒  dx_t = mlp_fc1ᵀ·dpre_t, dmlp_fc1 += Σ_t dpre_t·x_tᵀ
        let mut dx = [[0.0; E]; T];
        linear_backward(
            &mut dx[..n],
            &mut g.mlp_fc1,
            &dpre[..n],
            &x[..n],
            &self.mlp_fc1,
            Write::Set,
            Write::Add,
        );
        // x_t = wte[token_t]  ⇒  dwte[token_t] += dx_t
        for (dxt, &tok) in dx.iter().zip(inputs).take(n) {
            for (d, e) in g.wte[tok].iter_mut().zip(dxt) {
                *d += e;
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
        let loss = model.loss(common::doc(data, step), Some(&mut grad));
        model.sgd(&grad, common::lr_at(LR, step, steps));
        log.step(step, loss);
    }
    let seconds = start.elapsed().as_secs_f64();
    let report = common::held_out(&data.val, |d| {
        let n = common::positions(d, common::BLOCK_SIZE);
        (model.loss(d, None) * n as f64, n)
    });
    Ok(Report {
        params: Mlp::NUM_PARAMS,
        steps,
        seconds,
        ..report
    })
}

#[allow(dead_code)] // tests include this file as a module and call `train`
fn main() -> std::process::ExitCode {
    common::run(|| {
        let (data, mut rng) = common::names_with_seed(common::seed_from_args()?)?;
        let report = train(&data, &mut rng, STEPS)?;
        report.print("train1", "MLP, hand-written gradients, SGD");
        Ok(())
    })
}
