//! The static GPT: microgpt.py's model with its dimensions as const generics, forward and
//! backward written out over fixed-size arrays (see [`crate::ops`]), Adam in place.
//!
//! Dimension letters, always in this order: `V` vocab (compiled), `T` block size, `E` n_embd,
//! `H` heads, `D` head dim, `F` MLP width, `L` layers. Configurations are type aliases in
//! [`crate::config`]. All big state — parameters, gradients, Adam moments (four [`Weights`]),
//! the transposed weights the forward reads ([`Transposed`]), the activation cache and the
//! backward's buffers — is allocated once, zeroed directly on the heap, when the model is
//! created; a training step and a token of inference allocate nothing.
//!
//! Forward and backward run like llm.c's: one op at a time over all positions of the document
//! (inference: over the one new position), the backward in reverse op order. Attention reads
//! the keys and values of every earlier position, and its backward adds into their gradients,
//! so the gradient is exact (as microgpt.py's autograd computes it).
//!
//! `V` is a bucket: the real vocabulary `vocab ≤ V` is a run-time value. Only the first `vocab`
//! rows of `wte` and `lm_head` are ever drawn, trained or read, and only the first `vocab`
//! logits enter the softmax, so the maths is that of an exact-vocab model.

use zerocopy::FromZeros;

use crate::bail;
use crate::config::Shape;
use crate::error::{Error, Result};
use crate::ops;
use crate::optim::AdamStep;
use crate::rng::Rng;

/// microgpt.py's `std=0.08` of the initial weights.
pub const INIT_STD: f64 = 0.08;

/// One transformer block's weights; microgpt's names. Matrices are `[[f64; IN]; OUT]`.
#[derive(FromZeros)]
pub struct Layer<const E: usize, const F: usize> {
    pub attn_wq: [[f64; E]; E],
    pub attn_wk: [[f64; E]; E],
    pub attn_wv: [[f64; E]; E],
    pub attn_wo: [[f64; E]; E],
    pub mlp_fc1: [[f64; E]; F],
    pub mlp_fc2: [[f64; F]; E],
}

/// Every weight of the model. The same layout holds the parameters, their gradients and
/// Adam's two moments.
#[derive(FromZeros)]
pub struct Weights<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize> {
    pub wte: [[f64; E]; V],
    pub wpe: [[f64; E]; T],
    pub lm_head: [[f64; E]; V],
    pub layers: [Layer<E, F>; L],
}

impl<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize>
    Weights<V, T, E, F, L>
{
    /// Each tensor's real rows (`wte` and `lm_head` cut to `vocab`), flattened row-major, in
    /// [`Shape::tensors`] order. Allocates nothing.
    pub fn tensors(&self, vocab: usize) -> impl Iterator<Item = &[f64]> {
        [
            self.wte[..vocab].as_flattened(),
            self.wpe.as_flattened(),
            self.lm_head[..vocab].as_flattened(),
        ]
        .into_iter()
        .chain(self.layers.iter().flat_map(|l| {
            [
                l.attn_wq.as_flattened(),
                l.attn_wk.as_flattened(),
                l.attn_wv.as_flattened(),
                l.attn_wo.as_flattened(),
                l.mlp_fc1.as_flattened(),
                l.mlp_fc2.as_flattened(),
            ]
        }))
    }

    /// [`Weights::tensors`], mutable.
    pub fn tensors_mut(&mut self, vocab: usize) -> impl Iterator<Item = &mut [f64]> {
        [
            self.wte[..vocab].as_flattened_mut(),
            self.wpe.as_flattened_mut(),
            self.lm_head[..vocab].as_flattened_mut(),
        ]
        .into_iter()
        .chain(self.layers.iter_mut().flat_map(|l| {
            [
                l.attn_wq.as_flattened_mut(),
                l.attn_wk.as_flattened_mut(),
                l.attn_wv.as_flattened_mut(),
                l.attn_wo.as_flattened_mut(),
                l.mlp_fc1.as_flattened_mut(),
                l.mlp_fc2.as_flattened_mut(),
            ]
        }))
    }
}

/// One block's weights transposed (`[[f64; OUT]; IN]`), the layout the forward reads (see
/// [`ops::linear_forward`]).
#[derive(FromZeros)]
pub struct LayerT<const E: usize, const F: usize> {
    pub attn_wq: [[f64; E]; E],
    pub attn_wk: [[f64; E]; E],
    pub attn_wv: [[f64; E]; E],
    pub attn_wo: [[f64; E]; E],
    pub mlp_fc1: [[f64; F]; E],
    pub mlp_fc2: [[f64; E]; F],
}

/// The transposes of the weights the forward multiplies by, rebuilt from [`Weights`] whenever
/// the parameters change (after each Adam update).
#[derive(FromZeros)]
pub struct Transposed<const V: usize, const E: usize, const F: usize, const L: usize> {
    pub lm_head: [[f64; V]; E],
    pub layers: [LayerT<E, F>; L],
}

impl<const V: usize, const E: usize, const F: usize, const L: usize> Transposed<V, E, F, L> {
    fn refresh<const T: usize>(&mut self, w: &Weights<V, T, E, F, L>) {
        ops::transpose(&mut self.lm_head, &w.lm_head);
        for (t, l) in self.layers.iter_mut().zip(&w.layers) {
            ops::transpose(&mut t.attn_wq, &l.attn_wq);
            ops::transpose(&mut t.attn_wk, &l.attn_wk);
            ops::transpose(&mut t.attn_wv, &l.attn_wv);
            ops::transpose(&mut t.attn_wo, &l.attn_wo);
            ops::transpose(&mut t.mlp_fc1, &l.mlp_fc1);
            ops::transpose(&mut t.mlp_fc2, &l.mlp_fc2);
        }
    }
}

/// One block's activations at every position, what its backward reads.
#[derive(FromZeros)]
pub struct LayerActs<const T: usize, const E: usize, const H: usize, const F: usize> {
    /// rmsnorm before attention: output and reciprocal
    pub xn1: [[f64; E]; T],
    pub r1: [f64; T],
    /// queries, and this block's KV cache
    pub q: [[f64; E]; T],
    pub k: [[f64; E]; T],
    pub v: [[f64; E]; T],
    /// attention softmax weights: position, head, key position (0 after the position)
    pub att: [[[f64; T]; H]; T],
    /// head outputs concatenated (the input of `attn_wo`)
    pub ctx: [[f64; E]; T],
    /// rmsnorm before the MLP: output and reciprocal
    pub xn2: [[f64; E]; T],
    pub r2: [f64; T],
    /// ReLU output (the input of `mlp_fc2`)
    pub h: [[f64; F]; T],
}

/// The activation cache of a whole document.
#[derive(FromZeros)]
pub struct Acts<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
> {
    /// rmsnorm of the embedding (the first block's input) and its reciprocal
    pub xn0: [[f64; E]; T],
    pub r0: [f64; T],
    pub layers: [LayerActs<T, E, H, F>; L],
    /// residual stream after the last block (the input of `lm_head`)
    pub x_out: [[f64; E]; T],
    pub logits: [[f64; V]; T],
    /// softmax of the real logits (0 beyond the real vocabulary)
    pub probs: [[f64; V]; T],
}

/// Per-step buffers that need not outlive a step: the forward's residual stream and
/// pre-activations, and every activation gradient of the backward, one row per position.
#[derive(FromZeros)]
struct Scratch<const V: usize, const T: usize, const E: usize, const F: usize> {
    /// residual stream (forward)
    x: [[f64; E]; T],
    /// output of `attn_wo` or `mlp_fc2`, before it is added to the residual stream
    y: [[f64; E]; T],
    /// output of `mlp_fc1`, before the ReLU
    pre: [[f64; F]; T],
    dlogits: [[f64; V]; T],
    /// gradient of the residual stream at the current point of the backward
    dx: [[f64; E]; T],
    dh: [[f64; F]; T],
    dpre: [[f64; F]; T],
    /// gradient of an rmsnorm's output (xn2, then xn1)
    dxn: [[f64; E]; T],
    dctx: [[f64; E]; T],
    dq: [[f64; E]; T],
    /// gradients of the block's keys and values: later queries add into earlier rows
    dk: [[f64; E]; T],
    dv: [[f64; E]; T],
}

/// The statically shaped GPT. Use it through a configuration alias (e.g.
/// [`crate::config::Micro`]).
pub struct Gpt<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
> {
    vocab: usize,
    params: Box<Weights<V, T, E, F, L>>,
    /// `params`' matrices transposed, for the forward; always in step with `params`
    params_t: Box<Transposed<V, E, F, L>>,
    grads: Box<Weights<V, T, E, F, L>>,
    adam_m: Box<Weights<V, T, E, F, L>>,
    adam_v: Box<Weights<V, T, E, F, L>>,
    acts: Box<Acts<V, T, E, H, F, L>>,
    scratch: Box<Scratch<V, T, E, F>>,
}

/// A boxed, zeroed `X`, allocated directly on the heap (never on the stack first).
fn zeroed_box<X: FromZeros>() -> Result<Box<X>> {
    X::new_box_zeroed().map_err(|_| {
        Error(format!(
            "cannot allocate {} bytes for the model",
            std::mem::size_of::<X>()
        ))
    })
}

impl<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
> Gpt<V, T, E, H, D, F, L>
{
    /// The compile-time shape check: `E = H·D`, `F = 4·E`, and nothing empty. Every
    /// configuration alias forces it with an item-level `const _: () = Alias::CHECK;` so that
    /// `cargo check` rejects a bad alias; [`Gpt::new`] forces it for generic code.
    ///
    /// ```compile_fail,E0080
    /// // E = 16 but H·D = 4·3 = 12
    /// type Bad = microgpt::model::Gpt<27, 16, 16, 4, 3, 64, 1>;
    /// const _: () = Bad::CHECK;
    /// ```
    /// ```compile_fail,E0080
    /// // F = 48 is not 4·E = 64
    /// type Bad = microgpt::model::Gpt<27, 16, 16, 4, 4, 48, 1>;
    /// const _: () = Bad::CHECK;
    /// ```
    /// The same lines with a consistent shape compile:
    /// ```
    /// type Good = microgpt::model::Gpt<27, 16, 16, 4, 4, 64, 1>;
    /// const _: () = Good::CHECK;
    /// ```
    pub const CHECK: () = {
        assert!(E == H * D, "n_embd E must equal n_head H times head dim D");
        assert!(F == 4 * E, "MLP width F must be 4 * n_embd E");
        assert!(
            V >= 1 && T >= 1 && H >= 1 && D >= 1 && L >= 1,
            "empty dimension"
        );
    };

    /// A model for a real vocabulary of `vocab ≤ V` tokens (BOS included), with microgpt's
    /// initial weights N(0, 0.08) drawn from `rng` row by row: `wte` rows `0..vocab`, `wpe`,
    /// `lm_head` rows `0..vocab`, then per layer `attn_wq`, `attn_wk`, `attn_wv`, `attn_wo`,
    /// `mlp_fc1`, `mlp_fc2` — the stream of an exact-vocab model. Unused rows stay 0.
    pub fn new(vocab: usize, rng: &mut Rng) -> Result<Self> {
        let () = Self::CHECK;
        if vocab > V {
            bail!("the vocabulary has {vocab} tokens but this model is compiled for at most {V}");
        }
        if vocab == 0 {
            bail!("the vocabulary is empty (it needs at least the BOS token)");
        }
        let mut m = Gpt {
            vocab,
            params: zeroed_box()?,
            params_t: zeroed_box()?,
            grads: zeroed_box()?,
            adam_m: zeroed_box()?,
            adam_v: zeroed_box()?,
            acts: zeroed_box()?,
            scratch: zeroed_box()?,
        };
        for t in m.params.tensors_mut(vocab) {
            for p in t {
                *p = rng.gauss(0.0, INIT_STD);
            }
        }
        m.params_t.refresh(&m.params);
        Ok(m)
    }

    /// The real vocabulary size (BOS included).
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The run-time shape, with the real vocabulary.
    pub fn shape(&self) -> Shape {
        Shape {
            vocab: self.vocab,
            block_size: T,
            n_embd: E,
            n_head: H,
            mlp: F,
            n_layer: L,
        }
    }

    /// Number of parameters of the exact-vocab model (4,192 for microgpt on names).
    pub fn num_params(&self) -> usize {
        2 * self.vocab * E + T * E + L * (4 * E * E + 2 * E * F)
    }

    /// The parameters, per tensor (real rows, flattened), in [`Shape::tensors`] order.
    pub fn params(&self) -> impl Iterator<Item = &[f64]> {
        self.params.tensors(self.vocab)
    }

    /// The gradients of the last [`Gpt::loss_and_grad`], like [`Gpt::params`].
    pub fn grads(&self) -> impl Iterator<Item = &[f64]> {
        self.grads.tensors(self.vocab)
    }

    /// The weights themselves (all `V` rows; rows from `vocab` on are 0).
    pub fn weights(&self) -> &Weights<V, T, E, F, L> {
        &self.params
    }

    /// The activation cache of the last forward pass.
    pub fn acts(&self) -> &Acts<V, T, E, H, F, L> {
        &self.acts
    }

    /// All parameters in one vector, in [`Shape::tensors`] order and layout.
    pub fn params_flat(&self) -> Vec<f64> {
        self.params().flatten().copied().collect()
    }

    /// All gradients of the last [`Gpt::loss_and_grad`], like [`Gpt::params_flat`].
    pub fn grads_flat(&self) -> Vec<f64> {
        self.grads().flatten().copied().collect()
    }

    /// Replaces all parameters from a vector laid out like [`Gpt::params_flat`]. Adam's moments
    /// are left as they are.
    pub fn set_params_flat(&mut self, flat: &[f64]) -> Result<()> {
        let n = self.num_params();
        if flat.len() != n {
            bail!(
                "a parameter vector of {} values does not fit this model's {n} parameters",
                flat.len()
            );
        }
        let mut rest = flat;
        for t in self.params.tensors_mut(self.vocab) {
            let (head, tail) = rest.split_at(t.len());
            t.copy_from_slice(head);
            rest = tail;
        }
        self.params_t.refresh(&self.params);
        Ok(())
    }

    /// Forward of positions `start..start + tokens.len()` (token `tokens[i]` at position
    /// `start + i`), one op at a time over all of them, given the KV cache of positions
    /// `0..start`; fills the activation cache and `acts.logits` at those positions.
    fn forward(&mut self, tokens: &[usize], start: usize) {
        let (w, wt, a, s) = (
            &*self.params,
            &*self.params_t,
            &mut *self.acts,
            &mut *self.scratch,
        );
        let end = start + tokens.len();
        // x = wte[token] + wpe[pos]; x = rmsnorm(x)
        for (pos, &token) in (start..end).zip(tokens) {
            let mut emb = [0.0; E];
            ops::embedding_forward(&mut emb, token, pos, &w.wte, &w.wpe);
            a.r0[pos] = ops::rmsnorm_forward(&mut a.xn0[pos], &emb);
            s.x[pos] = a.xn0[pos];
        }
        for (lw, la) in wt.layers.iter().zip(a.layers.iter_mut()) {
            // attention: x = Wo·attn(rmsnorm(x)) + x
            for pos in start..end {
                la.r1[pos] = ops::rmsnorm_forward(&mut la.xn1[pos], &s.x[pos]);
            }
            let xn1 = &la.xn1[start..end];
            ops::linear_forward(&mut la.q[start..end], xn1, &lw.attn_wq);
            ops::linear_forward(&mut la.k[start..end], xn1, &lw.attn_wk);
            ops::linear_forward(&mut la.v[start..end], xn1, &lw.attn_wv);
            for pos in start..end {
                ops::attention_forward::<T, E, H, D>(
                    &mut la.ctx[pos],
                    &mut la.att[pos],
                    &la.q[pos],
                    &la.k,
                    &la.v,
                    pos,
                );
            }
            ops::linear_forward(&mut s.y[start..end], &la.ctx[start..end], &lw.attn_wo);
            for pos in start..end {
                let x_in = s.x[pos];
                ops::residual_forward(&mut s.x[pos], &s.y[pos], &x_in);
            }
            // MLP: x = fc2·relu(fc1·rmsnorm(x)) + x
            for pos in start..end {
                la.r2[pos] = ops::rmsnorm_forward(&mut la.xn2[pos], &s.x[pos]);
            }
            ops::linear_forward(&mut s.pre[start..end], &la.xn2[start..end], &lw.mlp_fc1);
            for pos in start..end {
                ops::relu_forward(&mut la.h[pos], &s.pre[pos]);
            }
            ops::linear_forward(&mut s.y[start..end], &la.h[start..end], &lw.mlp_fc2);
            for pos in start..end {
                let x_mid = s.x[pos];
                ops::residual_forward(&mut s.x[pos], &s.y[pos], &x_mid);
            }
        }
        // logits = lm_head·x (no final norm)
        a.x_out[start..end].copy_from_slice(&s.x[start..end]);
        ops::linear_forward(&mut a.logits[start..end], &a.x_out[start..end], &wt.lm_head);
    }

    /// Inference with the KV cache: feeds `token` at position `pos` (`pos` 0 starts a new
    /// sequence; positions must come in order) and returns the logits of the real vocabulary.
    pub fn forward_token(&mut self, token: usize, pos: usize) -> &[f64] {
        assert!(pos < T, "position {pos} is beyond the block size {T}");
        assert!(
            token < self.vocab,
            "token {token} is not in the vocabulary of {}",
            self.vocab
        );
        self.forward(&[token], pos);
        &self.acts.logits[pos][..self.vocab]
    }

    /// Zeroes the gradients, runs forward and backward over the document `tokens`
    /// (`[BOS] ids [BOS]`, truncated to `T` positions like microgpt.py) and returns the mean
    /// loss `(1/n)·Σ −ln p(target)`.
    pub fn loss_and_grad(&mut self, tokens: &[usize]) -> f64 {
        assert!(
            tokens.len() >= 2,
            "a document needs at least two tokens ([BOS] ... [BOS])"
        );
        let n = T.min(tokens.len() - 1);
        let tokens = &tokens[..=n];
        for &t in tokens {
            assert!(
                t < self.vocab,
                "token {t} is not in the vocabulary of {}",
                self.vocab
            );
        }
        self.grads.zero();
        self.forward(&tokens[..n], 0);
        let a = &mut *self.acts;
        let mut total = 0.0;
        for pos in 0..n {
            total += ops::cross_entropy_forward(
                &mut a.probs[pos],
                &a.logits[pos],
                tokens[pos + 1],
                self.vocab,
            );
        }
        self.backward(tokens, n);
        (1.0 / n as f64) * total
    }

    /// Backward of the mean loss over positions `0..n`, into `self.grads` (zeroed by the
    /// caller): the ops in reverse, each over all positions. The attention backward of every
    /// query adds into the gradients of the keys and values it saw (earlier positions
    /// included) before those reach `attn_wk` and `attn_wv`.
    fn backward(&mut self, tokens: &[usize], n: usize) {
        let (w, g, a, s) = (
            &*self.params,
            &mut *self.grads,
            &*self.acts,
            &mut *self.scratch,
        );
        let dloss = 1.0 / n as f64;
        for pos in 0..n {
            s.dlogits[pos] = [0.0; V];
            let target = tokens[pos + 1];
            ops::cross_entropy_backward(
                &mut s.dlogits[pos],
                &a.probs[pos],
                target,
                self.vocab,
                dloss,
            );
        }
        s.dx[..n].fill([0.0; E]);
        ops::linear_backward(
            &mut s.dx[..n],
            &mut g.lm_head,
            &s.dlogits[..n],
            &a.x_out[..n],
            &w.lm_head,
        );
        for ((lw, lg), la) in w.layers.iter().zip(&mut g.layers).zip(&a.layers).rev() {
            // MLP: x_out = fc2·relu(fc1·xn2) + x_mid with xn2 = rmsnorm(x_mid). The residual
            // hands dx to both branches, so dx is the MLP output's gradient as it stands and
            // becomes dx_mid once the rmsnorm's share is added into it.
            s.dh[..n].fill([0.0; F]);
            ops::linear_backward(
                &mut s.dh[..n],
                &mut lg.mlp_fc2,
                &s.dx[..n],
                &la.h[..n],
                &lw.mlp_fc2,
            );
            for pos in 0..n {
                s.dpre[pos] = [0.0; F];
                ops::relu_backward(&mut s.dpre[pos], &s.dh[pos], &la.h[pos]);
            }
            s.dxn[..n].fill([0.0; E]);
            ops::linear_backward(
                &mut s.dxn[..n],
                &mut lg.mlp_fc1,
                &s.dpre[..n],
                &la.xn2[..n],
                &lw.mlp_fc1,
            );
            for pos in 0..n {
                ops::rmsnorm_backward(&mut s.dx[pos], &s.dxn[pos], &la.xn2[pos], la.r2[pos]);
            }
            // attention: x_mid = Wo·ctx + x_in with ctx from xn1 = rmsnorm(x_in), likewise
            s.dctx[..n].fill([0.0; E]);
            ops::linear_backward(
                &mut s.dctx[..n],
                &mut lg.attn_wo,
                &s.dx[..n],
                &la.ctx[..n],
                &lw.attn_wo,
            );
            s.dq[..n].fill([0.0; E]);
            s.dk[..n].fill([0.0; E]);
            s.dv[..n].fill([0.0; E]);
            for pos in 0..n {
                ops::attention_backward::<T, E, H, D>(
                    &mut s.dq[pos],
                    &mut s.dk,
                    &mut s.dv,
                    &s.dctx[pos],
                    &la.att[pos],
                    &la.q[pos],
                    &la.k,
                    &la.v,
                    pos,
                );
            }
            s.dxn[..n].fill([0.0; E]);
            let xn1 = &la.xn1[..n];
            ops::linear_backward(
                &mut s.dxn[..n],
                &mut lg.attn_wq,
                &s.dq[..n],
                xn1,
                &lw.attn_wq,
            );
            ops::linear_backward(
                &mut s.dxn[..n],
                &mut lg.attn_wk,
                &s.dk[..n],
                xn1,
                &lw.attn_wk,
            );
            ops::linear_backward(
                &mut s.dxn[..n],
                &mut lg.attn_wv,
                &s.dv[..n],
                xn1,
                &lw.attn_wv,
            );
            for pos in 0..n {
                ops::rmsnorm_backward(&mut s.dx[pos], &s.dxn[pos], &la.xn1[pos], la.r1[pos]);
            }
        }
        // x = rmsnorm(wte[token] + wpe[pos])
        for (pos, &token) in tokens[..n].iter().enumerate() {
            let mut demb = [0.0; E];
            ops::rmsnorm_backward(&mut demb, &s.dx[pos], &a.xn0[pos], a.r0[pos]);
            ops::embedding_backward(&mut g.wte, &mut g.wpe, &demb, token, pos);
        }
    }

    /// One Adam update of every tensor's real rows from the current gradients.
    pub fn adam_update(&mut self, adam: &AdamStep) {
        let vocab = self.vocab;
        let tensors = self
            .params
            .tensors_mut(vocab)
            .zip(self.grads.tensors(vocab))
            .zip(self.adam_m.tensors_mut(vocab))
            .zip(self.adam_v.tensors_mut(vocab));
        for (((p, g), m), v) in tensors {
            adam.update(p, g, m, v);
        }
        self.params_t.refresh(&self.params);
    }

    /// [`Gpt::loss_and_grad`] then [`Gpt::adam_update`]; returns the loss.
    pub fn train_step(&mut self, tokens: &[usize], adam: &AdamStep) -> f64 {
        let loss = self.loss_and_grad(tokens);
        self.adam_update(adam);
        loss
    }
}

/// The micro model in the smallest compiled vocabulary bucket
/// ([`crate::config::MICRO_VOCAB_BUCKETS`]) that holds the real vocabulary: what the CLI
/// trains on an arbitrary text file.
pub enum MicroGpt {
    V27(crate::config::Micro),
    V64(crate::config::Micro64),
    V128(crate::config::Micro128),
    V256(crate::config::Micro256),
}

/// `dispatch!(self, m => expr)` evaluates `expr` with `m` bound to the model in any bucket.
macro_rules! dispatch {
    ($s:expr, $m:ident => $e:expr) => {
        match $s {
            MicroGpt::V27($m) => $e,
            MicroGpt::V64($m) => $e,
            MicroGpt::V128($m) => $e,
            MicroGpt::V256($m) => $e,
        }
    };
}

impl MicroGpt {
    /// The micro model for a real vocabulary of `vocab` tokens, in the smallest bucket that
    /// fits; the initial weights are those of the exact-vocab model from the same `rng`.
    pub fn new(vocab: usize, rng: &mut Rng) -> Result<MicroGpt> {
        use crate::config::{MICRO_VOCAB_BUCKETS, Micro, Micro64, Micro128, Micro256};
        Ok(match vocab {
            0..=27 => MicroGpt::V27(Micro::new(vocab, rng)?),
            28..=64 => MicroGpt::V64(Micro64::new(vocab, rng)?),
            65..=128 => MicroGpt::V128(Micro128::new(vocab, rng)?),
            129..=256 => MicroGpt::V256(Micro256::new(vocab, rng)?),
            _ => bail!(
                "the vocabulary has {vocab} tokens but the largest compiled vocabulary holds {}",
                MICRO_VOCAB_BUCKETS[MICRO_VOCAB_BUCKETS.len() - 1]
            ),
        })
    }

    /// The compiled vocabulary size `V` of the bucket in use.
    pub fn bucket(&self) -> usize {
        match self {
            MicroGpt::V27(_) => 27,
            MicroGpt::V64(_) => 64,
            MicroGpt::V128(_) => 128,
            MicroGpt::V256(_) => 256,
        }
    }

    pub fn vocab(&self) -> usize {
        dispatch!(self, m => m.vocab())
    }

    pub fn shape(&self) -> Shape {
        dispatch!(self, m => m.shape())
    }

    pub fn num_params(&self) -> usize {
        dispatch!(self, m => m.num_params())
    }

    pub fn loss_and_grad(&mut self, tokens: &[usize]) -> f64 {
        dispatch!(self, m => m.loss_and_grad(tokens))
    }

    pub fn train_step(&mut self, tokens: &[usize], adam: &AdamStep) -> f64 {
        dispatch!(self, m => m.train_step(tokens, adam))
    }

    pub fn adam_update(&mut self, adam: &AdamStep) {
        dispatch!(self, m => m.adam_update(adam))
    }

    pub fn forward_token(&mut self, token: usize, pos: usize) -> &[f64] {
        dispatch!(self, m => m.forward_token(token, pos))
    }

    pub fn params_flat(&self) -> Vec<f64> {
        dispatch!(self, m => m.params_flat())
    }

    pub fn grads_flat(&self) -> Vec<f64> {
        dispatch!(self, m => m.grads_flat())
    }

    pub fn set_params_flat(&mut self, flat: &[f64]) -> Result<()> {
        dispatch!(self, m => m.set_params_flat(flat))
    }
}

// ------------------------------------------------------------------------------------------
// Run state for checkpoints, forward-only evaluation, minibatches.

impl<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
> Gpt<V, T, E, H, D, F, L>
{
    /// Adam's moments `(m, v)`, each laid out like [`Gpt::params_flat`].
    pub fn adam_flat(&self) -> (Vec<f64>, Vec<f64>) {
        let flat = |w: &Weights<V, T, E, F, L>| w.tensors(self.vocab).flatten().copied().collect();
        (flat(&self.adam_m), flat(&self.adam_v))
    }

    /// Replaces Adam's moments from vectors laid out like [`Gpt::params_flat`].
    pub fn set_adam_flat(&mut self, m: &[f64], v: &[f64]) -> Result<()> {
        let n = self.num_params();
        if m.len() != n || v.len() != n {
            bail!(
                "Adam moments of {} and {} values do not fit this model's {n} parameters",
                m.len(),
                v.len()
            );
        }
        let vocab = self.vocab;
        for (w, flat) in [(&mut self.adam_m, m), (&mut self.adam_v, v)] {
            let mut rest = flat;
            for t in w.tensors_mut(vocab) {
                let (head, tail) = rest.split_at(t.len());
                t.copy_from_slice(head);
                rest = tail;
            }
        }
        Ok(())
    }

    /// The loss of one document (mean cross-entropy over its positions), forward only.
    pub fn loss(&mut self, tokens: &[usize]) -> f64 {
        assert!(tokens.len() >= 2, "a document needs at least two tokens");
        let n = T.min(tokens.len() - 1);
        self.forward(&tokens[..n], 0);
        let mut probs = [0.0; V];
        let mut sum = 0.0;
        for pos in 0..n {
            let logits = &self.acts.logits[pos];
            sum += ops::cross_entropy_forward(&mut probs, logits, tokens[pos + 1], self.vocab);
        }
        sum / n as f64
    }

    /// One step on a minibatch: the mean of the documents' gradients, one Adam update.
    /// Returns the mean loss.
    pub fn train_batch(&mut self, batch: &[&[usize]], adam: &AdamStep) -> f64 {
        assert_eq!(batch.len(), 1, "minibatches are not implemented yet");
        self.train_step(batch[0], adam)
    }
}

impl MicroGpt {
    pub fn adam_flat(&self) -> (Vec<f64>, Vec<f64>) {
        dispatch!(self, m => m.adam_flat())
    }

    pub fn set_adam_flat(&mut self, m: &[f64], v: &[f64]) -> Result<()> {
        dispatch!(self, g => g.set_adam_flat(m, v))
    }

    pub fn loss(&mut self, tokens: &[usize]) -> f64 {
        dispatch!(self, m => m.loss(tokens))
    }

    pub fn train_batch(&mut self, batch: &[&[usize]], adam: &AdamStep) -> f64 {
        dispatch!(self, m => m.train_batch(batch, adam))
    }
}
