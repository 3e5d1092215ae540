//! The reference GPT: microgpt.py ported line by line onto the scalar autograd tape.
//!
//! This is the dynamic-graph engine. It is deliberately plain — every scalar operation is a
//! node, exactly as in microgpt.py — because it is the ground truth that the static engine's
//! hand-written derivatives are checked against, and the baseline the benchmarks compare with.
//! Put microgpt.py beside this file: [`linear`], [`softmax`], [`rmsnorm`] and [`Reference::gpt`]
//! match its functions of the same names, [`attention`] is the loop over heads inside `gpt`,
//! and [`Reference::loss_and_grad`] is its training-loop body.
//!
//! The one liberty: where Python divides every element by the same total (`e / total`), which
//! makes a fresh `total ** -1` node per element, the reciprocal is taken once. The values are
//! the same; the graph is smaller.

use crate::autograd::{Tape, Var};
use crate::bail;
use crate::dropout::{self, Dropout};
use crate::error::Result;
use crate::model::{Forward, Model, StepInputs};
use crate::optim::AdamStep;
use crate::rng::Rng;
use crate::shape::Shape;

// microgpt.py's `matrix = lambda nout, nin, std=0.08: ...` and rmsnorm's
// `scale = (ms + 1e-5) ** -0.5`
use crate::shape::{INIT_STD, RMSNORM_EPS};

/// A weight matrix on the tape: `rows × cols` consecutive leaves, row-major (`[out][in]`).
#[derive(Debug, Clone, Copy)]
pub struct Mat {
    first: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Mat {
    /// Puts a matrix on `tape` as leaves holding `values` (row-major).
    pub fn leaves(tape: &mut Tape, rows: usize, cols: usize, values: &[f64]) -> Mat {
        assert_eq!(values.len(), rows * cols);
        let first = tape.len();
        for &x in values {
            tape.leaf(x);
        }
        Mat { first, rows, cols }
    }

    /// Element `[r][c]`.
    #[inline]
    pub fn at(&self, r: usize, c: usize) -> Var {
        debug_assert!(r < self.rows && c < self.cols);
        Var::from_index(self.first + r * self.cols + c)
    }

    /// Row `r`, e.g. `state_dict['wte'][token_id]`.
    pub fn row(&self, r: usize) -> impl Iterator<Item = Var> + Clone + use<> {
        let start = self.first + r * self.cols;
        (start..start + self.cols).map(Var::from_index)
    }
}

/// `linear(x, w)`: `[sum(wi * xi for wi, xi in zip(wo, x)) for wo in w]`
pub fn linear(t: &mut Tape, x: &[Var], w: &Mat) -> Vec<Var> {
    assert_eq!(x.len(), w.cols);
    (0..w.rows)
        .map(|o| t.dot(w.row(o), x.iter().copied()))
        .collect()
}

/// `softmax(logits)`: subtract the max (a constant), exponentiate, normalize.
pub fn softmax(t: &mut Tape, logits: &[Var]) -> Vec<Var> {
    let max_val = logits
        .iter()
        .map(|&l| t.data(l))
        .fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<Var> = logits
        .iter()
        .map(|&l| {
            let shifted = t.add_const(l, -max_val);
            t.exp(shifted)
        })
        .collect();
    let total = t.sum(&exps);
    let inv = t.pow(total, -1.0);
    exps.iter().map(|&e| t.mul(e, inv)).collect()
}

/// `rmsnorm(x)`: `x · (mean(x²) + 1e-5)^(−½)`
pub fn rmsnorm(t: &mut Tape, x: &[Var]) -> Vec<Var> {
    let ms = t.dot(x.iter().copied(), x.iter().copied());
    let ms = t.div_const(ms, x.len() as f64);
    let ms = t.add_const(ms, RMSNORM_EPS);
    let scale = t.pow(ms, -0.5);
    x.iter().map(|&xi| t.mul(xi, scale)).collect()
}

/// Multi-head causal attention of one query position over the cached keys and values of
/// positions `0..=pos` (each `n_embd` long): per head `h`, the scaled dot products
/// `q_h · k_h[t] / √head_dim`, their softmax, and the weighted sum of `v_h[t]`; the heads'
/// outputs concatenated.
pub fn attention(
    t: &mut Tape,
    q: &[Var],
    keys: &[Vec<Var>],
    values: &[Vec<Var>],
    n_head: usize,
) -> Vec<Var> {
    let head_dim = q.len() / n_head;
    let scale = (head_dim as f64).powf(0.5);
    let mut x_attn = Vec::with_capacity(q.len());
    for h in 0..n_head {
        let hs = h * head_dim;
        let q_h = &q[hs..hs + head_dim];
        let attn_logits: Vec<Var> = keys
            .iter()
            .map(|k| {
                let s = t.dot(q_h.iter().copied(), k[hs..hs + head_dim].iter().copied());
                t.div_const(s, scale)
            })
            .collect();
        let attn_weights = softmax(t, &attn_logits);
        for j in 0..head_dim {
            let v_j = values.iter().map(|v| v[hs + j]);
            x_attn.push(t.dot(attn_weights.iter().copied(), v_j));
        }
    }
    x_attn
}

/// `-log(softmax(logits)[target])`
pub fn cross_entropy(t: &mut Tape, logits: &[Var], target: usize) -> Var {
    let probs = softmax(t, logits);
    let lp = t.log(probs[target]);
    t.neg(lp)
}

/// One layer's weights on the tape.
#[derive(Debug, Clone, Copy)]
struct Layer {
    attn_wq: Mat,
    attn_wk: Mat,
    attn_wv: Mat,
    attn_wo: Mat,
    mlp_fc1: Mat,
    mlp_fc2: Mat,
}

/// microgpt.py's model and optimizer state on a tape.
///
/// The parameters live in a flat vector ([`Shape::tensors`] layout). Each forward pass starts a
/// fresh graph on the same tape (its buffers are reused, not reallocated) whose first leaves,
/// `1..=num_params`, are the parameters.
pub struct Reference {
    shape: Shape,
    tape: Tape,
    wte: Mat,
    wpe: Mat,
    lm_head: Mat,
    layers: Vec<Layer>,
    num_params: usize,
    params: Vec<f64>,
    /// Adam's first and second moments, one per parameter.
    m: Vec<f64>,
    v: Vec<f64>,
    /// The KV cache: `keys[layer][pos]` is that position's key vector (`n_embd` nodes).
    keys: Vec<Vec<Vec<Var>>>,
    values: Vec<Vec<Vec<Var>>>,
    logits: Vec<f64>,
    /// a dropout mask's multipliers
    mask: Vec<f64>,
}

impl Reference {
    /// A model with weights drawn from `rng` as microgpt.py draws them: `gauss(0, 0.08)` for
    /// every element, matrix after matrix in [`Shape::tensors`] order, row by row.
    pub fn new(shape: Shape, rng: &mut Rng) -> Result<Reference> {
        let n = shape.num_params();
        let values: Vec<f64> = (0..n).map(|_| rng.gauss(0.0, INIT_STD)).collect();
        Reference::from_params(shape, &values)
    }

    /// A model holding the given flat parameters ([`Shape::tensors`] layout).
    pub fn from_params(shape: Shape, params: &[f64]) -> Result<Reference> {
        if shape.n_head == 0 || !shape.n_embd.is_multiple_of(shape.n_head) {
            bail!(
                "n_embd {} is not a multiple of n_head {}",
                shape.n_embd,
                shape.n_head
            );
        }
        if shape.vocab < 2 || shape.block_size == 0 {
            bail!("vocab must be at least 2 and block_size at least 1");
        }
        // the static engine's limit too, so that what one engine trains the other can load
        if shape.vocab > crate::limits::MAX_VOCAB {
            bail!(
                "the vocabulary has {} tokens but a model can have at most {}",
                shape.vocab,
                crate::limits::MAX_VOCAB
            );
        }
        let n = shape.num_params();
        if params.len() != n {
            bail!("expected {} parameters, got {}", n, params.len());
        }
        let mut tape = Tape::with_capacity(n + 1);
        let mut mats = Vec::new();
        let mut off = 0;
        for (_, rows, cols) in shape.tensors() {
            mats.push(Mat::leaves(
                &mut tape,
                rows,
                cols,
                &params[off..off + rows * cols],
            ));
            off += rows * cols;
        }
        let layers = mats[3..]
            .chunks(6)
            .map(|c| Layer {
                attn_wq: c[0],
                attn_wk: c[1],
                attn_wv: c[2],
                attn_wo: c[3],
                mlp_fc1: c[4],
                mlp_fc2: c[5],
            })
            .collect();
        Ok(Reference {
            shape,
            tape,
            wte: mats[0],
            wpe: mats[1],
            lm_head: mats[2],
            layers,
            num_params: n,
            params: params.to_vec(),
            m: vec![0.0; n],
            v: vec![0.0; n],
            keys: vec![Vec::new(); shape.n_layer],
            values: vec![Vec::new(); shape.n_layer],
            logits: Vec::with_capacity(shape.vocab),
            mask: vec![0.0; shape.n_embd],
        })
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn num_params(&self) -> usize {
        self.num_params
    }

    /// Nodes on the tape: the size of the last graph built.
    pub fn tape_len(&self) -> usize {
        self.tape.len()
    }

    /// The parameters, flat, in [`Shape::tensors`] layout.
    pub fn params(&self) -> &[f64] {
        &self.params
    }

    /// Their gradients from the last [`Reference::loss_and_grad`], same layout.
    pub fn grads(&self) -> &[f64] {
        &self.tape.grads()[1..1 + self.num_params]
    }

    /// Replaces the parameters (e.g. with a checkpoint's); Adam's moments are kept.
    pub fn set_params(&mut self, params: &[f64]) {
        assert_eq!(params.len(), self.num_params);
        self.params.copy_from_slice(params);
    }

    /// Adam's moments `(m, v)`, same layout.
    pub fn adam_moments(&self) -> (&[f64], &[f64]) {
        (&self.m, &self.v)
    }

    /// Starts a new graph holding only the parameters, and empties the KV cache.
    fn reset(&mut self) {
        self.tape.truncate(1);
        for &x in &self.params {
            self.tape.leaf(x);
        }
        self.clear_cache();
    }

    /// Empties the KV cache: `keys, values = [[] for _ in range(n_layer)], ...`
    fn clear_cache(&mut self) {
        self.keys.iter_mut().for_each(Vec::clear);
        self.values.iter_mut().for_each(Vec::clear);
    }

    /// `gpt(token_id, pos_id, keys, values)`: the logits for the next token, appending this
    /// position's keys and values to the cache.
    pub fn gpt(&mut self, token_id: usize, pos_id: usize) -> Vec<Var> {
        self.gpt_dropped(token_id, pos_id, None)
    }

    /// [`Reference::gpt`], with the dropout of the position whose row seed is given: each
    /// block's attention and MLP outputs are multiplied by their masks (as constants) before
    /// they join the residual stream.
    fn gpt_dropped(
        &mut self,
        token_id: usize,
        pos_id: usize,
        dropout: Option<(Dropout, u64)>,
    ) -> Vec<Var> {
        let t = &mut self.tape;
        let mask = &mut self.mask;
        let mut drop = |t: &mut Tape, x: Vec<Var>, site: usize| match dropout {
            None => x,
            Some((d, row)) => {
                d.fill(mask, row, site);
                x.iter()
                    .zip(mask.iter())
                    .map(|(&xi, &m)| t.mul_const(xi, m))
                    .collect()
            }
        };
        let tok_emb = self.wte.row(token_id);
        let pos_emb = self.wpe.row(pos_id);
        let x: Vec<Var> = tok_emb.zip(pos_emb).map(|(a, b)| t.add(a, b)).collect();
        let mut x = rmsnorm(t, &x);

        for (li, layer) in self.layers.iter().enumerate() {
            // 1) multi-head attention block
            let x_residual = x.clone();
            x = rmsnorm(t, &x);
            let q = linear(t, &x, &layer.attn_wq);
            let k = linear(t, &x, &layer.attn_wk);
            let v = linear(t, &x, &layer.attn_wv);
            self.keys[li].push(k);
            self.values[li].push(v);
            let x_attn = attention(t, &q, &self.keys[li], &self.values[li], self.shape.n_head);
            x = linear(t, &x_attn, &layer.attn_wo);
            x = drop(t, x, dropout::attn_site(li));
            x = x
                .iter()
                .zip(&x_residual)
                .map(|(&a, &b)| t.add(a, b))
                .collect();
            // 2) MLP block
            let x_residual = x.clone();
            x = rmsnorm(t, &x);
            x = linear(t, &x, &layer.mlp_fc1);
            x = x.iter().map(|&xi| t.relu(xi)).collect();
            x = linear(t, &x, &layer.mlp_fc2);
            x = drop(t, x, dropout::mlp_site(li));
            x = x
                .iter()
                .zip(&x_residual)
                .map(|(&a, &b)| t.add(a, b))
                .collect();
        }
        linear(t, &x, &self.lm_head)
    }

    /// The training loop's body up to `loss.backward()`: `tokens` is `[BOS] doc [BOS]`, the
    /// first `n = min(block_size, len − 1)` positions each predict the next token, and the loss
    /// is the mean of their cross-entropies. Parameter gradients are overwritten, not
    /// accumulated. Returns the loss.
    pub fn loss_and_grad(&mut self, tokens: &[usize]) -> f64 {
        self.loss_and_grad_batch(&[tokens], &StepInputs::MICROGPT)
    }

    /// A minibatch in one graph: the mean over the documents of their losses, so that the
    /// gradient is the mean of the documents' gradients (or, with `inputs.token_mean`, each
    /// document's loss weighted by its share `n/N` of the batch's positions: the mean over all
    /// positions), with `inputs.dropout`'s masks. Returns that loss.
    pub fn loss_and_grad_batch(&mut self, batch: &[&[usize]], inputs: &StepInputs) -> f64 {
        assert!(!batch.is_empty(), "an empty batch");
        self.reset();
        let t = self.shape.block_size;
        let positions: usize = batch.iter().map(|d| t.min(d.len() - 1)).sum();
        let mut doc_losses = Vec::with_capacity(batch.len());
        for (j, tokens) in batch.iter().enumerate() {
            let mut l = self.doc_loss(tokens, inputs.dropout.map(|d| (d, j)));
            if inputs.token_mean {
                let n = t.min(tokens.len() - 1);
                l = self.tape.mul_const(l, n as f64 / positions as f64);
            }
            doc_losses.push(l);
        }
        let total = self.tape.sum(&doc_losses);
        let scale = if inputs.token_mean {
            1.0
        } else {
            1.0 / batch.len() as f64
        };
        let loss = self.tape.mul_const(total, scale);
        self.tape.backward(loss);
        self.tape.data(loss)
    }

    /// The loss node of one document: `(1/n) * sum(losses)`, with its own KV cache; with
    /// the dropout of document `j` of the step's batch, if given.
    fn doc_loss(&mut self, tokens: &[usize], dropout: Option<(Dropout, usize)>) -> Var {
        assert!(tokens.len() >= 2, "a document is at least [BOS, BOS]");
        self.clear_cache();
        let n = self.shape.block_size.min(tokens.len() - 1);
        let mut losses = Vec::with_capacity(n);
        for pos_id in 0..n {
            let (token_id, target_id) = (tokens[pos_id], tokens[pos_id + 1]);
            let row = dropout.map(|(d, j)| (d, dropout::row_seed(d.key, j, pos_id)));
            let logits = self.gpt_dropped(token_id, pos_id, row);
            losses.push(cross_entropy(&mut self.tape, &logits, target_id));
        }
        let total = self.tape.sum(&losses);
        self.tape.mul_const(total, 1.0 / n as f64)
    }

    /// The loss of one document, without the backward pass.
    pub fn loss(&mut self, tokens: &[usize]) -> f64 {
        self.reset();
        let l = self.doc_loss(tokens, None);
        self.tape.data(l)
    }

    /// One step of training: forward, backward, and Adam on every parameter.
    pub fn train_step(&mut self, tokens: &[usize], adam: &AdamStep) -> f64 {
        self.train_batch(&[tokens], adam, &StepInputs::MICROGPT)
    }

    /// [`Reference::loss_and_grad_batch`], then Adam on every parameter.
    pub fn train_batch(&mut self, batch: &[&[usize]], adam: &AdamStep, inputs: &StepInputs) -> f64 {
        let loss = self.loss_and_grad_batch(batch, inputs);
        let grads = &self.tape.grads()[1..1 + self.num_params];
        adam.update(&mut self.params, grads, &mut self.m, &mut self.v);
        loss
    }

    /// Replaces Adam's moments (e.g. with a checkpoint's).
    pub fn set_adam_moments(&mut self, m: &[f64], v: &[f64]) -> Result<()> {
        if m.len() != self.num_params || v.len() != self.num_params {
            bail!(
                "Adam moments of {} and {} values do not fit {} parameters",
                m.len(),
                v.len(),
                self.num_params
            );
        }
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
        Ok(())
    }

    /// Inference with the KV cache: the logits (as numbers) after feeding `token` at `pos`.
    /// `pos == 0` starts a new sequence; positions must then come in order.
    pub fn forward_token(&mut self, token: usize, pos: usize) -> &[f64] {
        if pos == 0 {
            self.reset();
        }
        assert_eq!(self.keys[0].len(), pos, "positions must come in order");
        let logits = self.gpt(token, pos);
        self.logits.clear();
        self.logits
            .extend(logits.iter().map(|&l| self.tape.data(l)));
        &self.logits
    }
}

// ------------------------------------------------------------------------------------------
// The engine traits

impl Model for Reference {
    fn preset(&self) -> &'static str {
        self.shape().preset().unwrap_or("custom")
    }
    fn shape(&self) -> Shape {
        Reference::shape(self)
    }
    fn train_batch(&mut self, batch: &[&[usize]], adam: &AdamStep, inputs: &StepInputs) -> f64 {
        Reference::train_batch(self, batch, adam, inputs)
    }
    fn loss(&mut self, tokens: &[usize]) -> f64 {
        Reference::loss(self, tokens)
    }
    fn params_flat(&self) -> Vec<f64> {
        self.params().to_vec()
    }
    fn visit_params(&self, f: &mut dyn FnMut(&[f64])) {
        f(self.params())
    }
    fn set_params_flat(&mut self, flat: &[f64]) -> Result<()> {
        if flat.len() != self.num_params() {
            bail!(
                "{} values do not fit {} parameters",
                flat.len(),
                self.num_params()
            );
        }
        self.set_params(flat);
        Ok(())
    }
    fn adam_flat(&self) -> (Vec<f64>, Vec<f64>) {
        let (m, v) = self.adam_moments();
        (m.to_vec(), v.to_vec())
    }
    fn set_adam_flat(&mut self, m: &[f64], v: &[f64]) -> Result<()> {
        self.set_adam_moments(m, v)
    }
}

impl Forward for Reference {
    fn block_size(&self) -> usize {
        self.shape().block_size
    }
    fn forward_token(&mut self, token: usize, pos: usize) -> &[f64] {
        Reference::forward_token(self, token, pos)
    }
}
