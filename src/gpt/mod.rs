//! The static GPT: microgpt.py's model with its dimensions as const generics, cut like llm.c's
//! `train_gpt2.c`:
//!
//! | file | what | llm.c |
//! |---|---|---|
//! | [`kernels`] | dot, sum, max, `exp`, tiled matrix products, transpose | the inner loops |
//! | [`ops`] | forward/backward pairs, in forward order | `*_forward`, `*_backward` |
//! | `params` | weights, gradients, Adam's moments: plain structs | `ParameterTensors` |
//! | `acts` | the activation cache and the passes' scratch rows | `ActivationTensors` |
//! | `pass` | `forward()` and `backward()` over borrowed tensors | `gpt2_forward`, `gpt2_backward` |
//! | `step` | minibatch groups, threads, locks, the summed update by parts | the `#pragma omp` |
//! | this file | [`Gpt`]: the shape check, construction, the public API | `gpt2_build_from_*`, `gpt2_update` |
//!
//! Dimension letters, always in this order: `V` vocab (compiled), `T` block size, `E` n_embd,
//! `H` heads, `D` head dim, `F` MLP width, `L` layers; then the scalar `S` ([`Float`]: `f64`
//! unless named, the exact engine, or `f32`), one code path for both. Configurations are type aliases in
//! [`crate::presets`]. All big state — parameters, the transposed weights the forward reads,
//! Adam's moments, gradients, activations and the backward's buffers — is allocated once,
//! directly on the heap, when the model (or a batch size, or a thread count) is first seen; a
//! training step and a token of inference allocate nothing.
//!
//! `V` is a bucket: the real vocabulary `vocab ≤ V` is a run-time value. Only the first `vocab`
//! rows of `wte` and `lm_head` are ever drawn, trained or read, and only the first `vocab`
//! logits enter the softmax, so the maths is that of an exact-vocab model.

use std::sync::Arc;

use crate::bail;
use crate::error::Result;
use crate::float::{Float, Precision};
use crate::model::{Forward, Model, StepInputs};
use crate::optim::AdamStep;
use crate::parallel::{Crew, Job};
use crate::rng::Rng;
use crate::shape::{INIT_STD, Shape};

mod acts;
pub mod kernels;
pub mod ops;
mod params;
mod pass;
mod step;

use self::acts::Buffers;
pub use self::params::{BlockWeights, Embed, Weights};
use self::params::{EmbedParams, ParamArray, zeroed_box};
use self::pass::Row;
use self::step::{Block, Shared, buffer_rows, lock, write};
pub use self::step::{GROUP_ROWS, MIN_GROUPS, SPLIT_MIN_PARAMS, num_groups};

// ------------------------------------------------------------------------------------------
// The model

/// The statically shaped GPT. Use it through a configuration alias (e.g.
/// [`crate::presets::Micro`]).
pub struct Gpt<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
    S: Float = f64,
> {
    shared: Arc<Shared<V, T, E, H, D, F, L, S>>,
    /// the caller's buffers (the workers own theirs)
    caller_buffers: Buffers<V, T, E, H, F, L, S>,
    /// the worker threads, if more than one thread has computed a batch; kept (parked) when
    /// the count drops to 1, so that a run that validates on every core between steps of one
    /// does not spawn them again for each validation
    crew: Option<Crew<Shared<V, T, E, H, D, F, L, S>>>,
    /// the threads that compute a batch: the caller, and the crew's workers if more than 1
    threads: usize,
    /// [`Gpt::forward_token`]'s logits as `f64` (unused in `f64`, which returns its own)
    logits_f64: Vec<f64>,
}

impl<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
    S: Float,
> Gpt<V, T, E, H, D, F, L, S>
{
    /// The compile-time shape check: `E = H·D`, `F = 4·E`, and nothing empty. Every
    /// configuration alias forces it with an item-level `const _: () = Alias::CHECK;` so that
    /// `cargo check` rejects a bad alias; [`Gpt::new`] forces it for generic code.
    ///
    /// ```compile_fail,E0080
    /// // E = 16 but H·D = 4·3 = 12
    /// type Bad = microgpt::gpt::Gpt<27, 16, 16, 4, 3, 64, 1>;
    /// const _: () = Bad::CHECK;
    /// ```
    /// ```compile_fail,E0080
    /// // F = 48 is not 4·E = 64
    /// type Bad = microgpt::gpt::Gpt<27, 16, 16, 4, 4, 48, 1>;
    /// const _: () = Bad::CHECK;
    /// ```
    /// The same lines with a consistent shape compile:
    /// ```
    /// type Good = microgpt::gpt::Gpt<27, 16, 16, 4, 4, 64, 1>;
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

    /// The compiled vocabulary size (the bucket).
    pub const V: usize = V;

    /// Whether a step of one document on more than one thread is split between two of them
    /// by parts of the model ([`step::SPLIT_MIN_PARAMS`]); else it runs on the caller alone.
    const SPLITS: bool = 2 * V * E + T * E + L * (4 * E * E + 2 * E * F) >= step::SPLIT_MIN_PARAMS;

    /// A model for a real vocabulary of `vocab ≤ V` tokens (BOS included), with microgpt's
    /// initial weights N(0, 0.08) drawn from `rng` row by row: `wte` rows `0..vocab`, `wpe`,
    /// `lm_head` rows `0..vocab`, then per layer `attn_wq`, `attn_wk`, `attn_wv`, `attn_wo`,
    /// `mlp_fc1`, `mlp_fc2` — the stream of an exact-vocab model. Unused rows stay 0. One
    /// thread computes everything until [`Gpt::set_threads`].
    pub fn new(vocab: usize, rng: &mut Rng) -> Result<Self> {
        let () = Self::CHECK;
        if vocab > V {
            bail!("the vocabulary has {vocab} tokens but this model is compiled for at most {V}");
        }
        if vocab == 0 {
            bail!("the vocabulary is empty (it needs at least the BOS token)");
        }
        let mut embed: Box<EmbedParams<V, T, E, S>> = zeroed_box()?;
        for t in embed.w.tensors_mut(vocab) {
            for p in t {
                *p = S::from_f64(rng.gauss(0.0, INIT_STD));
            }
        }
        embed.refresh();
        let mut blocks = Vec::with_capacity(L);
        let mut draws = vec![0.0; 4 * E * E + 2 * E * F];
        for _ in 0..L {
            for p in &mut draws {
                *p = rng.gauss(0.0, INIT_STD);
            }
            let block = Block::new()?;
            block.set_from(ParamArray::Weights, &mut &draws[..]);
            blocks.push(block);
        }
        let Ok(blocks) = <[Block<E, F, S>; L]>::try_from(blocks) else {
            unreachable!("L blocks")
        };
        let shared = Shared::new(vocab, embed, blocks)?;
        Ok(Gpt {
            shared: Arc::new(shared),
            caller_buffers: Buffers::new(buffer_rows::<T>()),
            crew: None,
            threads: 1,
            logits_f64: vec![0.0; V],
        })
    }

    /// The real vocabulary size (BOS included).
    pub fn vocab(&self) -> usize {
        self.shared.vocab
    }

    /// The run-time shape, with the real vocabulary.
    pub fn shape(&self) -> Shape {
        Shape {
            vocab: self.vocab(),
            block_size: T,
            n_embd: E,
            n_head: H,
            mlp: F,
            n_layer: L,
        }
    }

    /// Number of parameters of the exact-vocab model (4,192 for microgpt on names).
    pub fn num_params(&self) -> usize {
        2 * self.vocab() * E + T * E + L * (4 * E * E + 2 * E * F)
    }

    /// Spreads the groups of a batch (and the Adam update's parts) over `n` threads: the
    /// caller and `n − 1` workers, spawned now (unless the crew of that size is there, parked
    /// since the count last dropped to 1) and parked between steps. `n = 1` runs everything on
    /// the caller. The results do not depend on `n`.
    pub fn set_threads(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            bail!("the number of threads must be at least 1");
        }
        let workers = self.crew.as_ref().map_or(0, |c| c.workers());
        if n > 1 && workers != n - 1 {
            // joins the old workers
            self.crew = None;
            self.threads = 1;
            let locals = (1..n).map(|_| Buffers::new(buffer_rows::<T>())).collect();
            self.crew = Some(Crew::spawn(Arc::clone(&self.shared), locals)?);
            for b in &self.shared.split_buffers {
                lock(b).get_or_insert_with(|| Buffers::new(T));
            }
        }
        self.threads = n;
        Ok(())
    }

    /// The number of threads that compute a batch.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Checks the documents of `batch` and writes the step's plan for the threads
    /// ([`step::Shared::prepare`]).
    fn prepare(
        &mut self,
        batch: &[&[usize]],
        backward: bool,
        adam: Option<AdamStep>,
        inputs: &StepInputs,
    ) {
        for tokens in batch {
            self.check(tokens);
        }
        let (dropout, token_mean) = (inputs.dropout, inputs.token_mean);
        self.shared
            .prepare(batch, backward, adam, dropout, token_mean);
    }

    /// Checks a document: at least two tokens, those the model reads in the vocabulary.
    fn check(&self, tokens: &[usize]) {
        let vocab = self.vocab();
        assert!(
            tokens.len() >= 2,
            "a document needs at least two tokens ([BOS] ... [BOS])"
        );
        let n = T.min(tokens.len() - 1);
        for &t in &tokens[..=n] {
            assert!(t < vocab, "token {t} is not in the vocabulary of {vocab}");
        }
    }

    /// The rows of the document `tokens` (checked), truncated to `T` positions, each
    /// weighted `1/n`, with the dropout seeds of `key` if any (the first document's of a
    /// batch); and their number `n`.
    fn rows_of(&self, tokens: &[usize], key: Option<u64>) -> ([Row; T], usize) {
        self.check(tokens);
        let n = T.min(tokens.len() - 1);
        let mut rows = [Row::default(); T];
        for (pos, row) in rows[..n].iter_mut().enumerate() {
            *row = Row {
                token: tokens[pos],
                pos,
                target: tokens[pos + 1],
                dloss: 1.0 / n as f64,
                seed: key.map_or(0, |k| crate::dropout::row_seed(k, 0, pos)),
            };
        }
        (rows, n)
    }

    /// Runs the prepared step on every thread.
    fn run_on_threads(&mut self) {
        match &self.crew {
            Some(crew) if self.threads > 1 => crew.run(&mut self.caller_buffers),
            _ => self.shared.run(&mut self.caller_buffers, 0),
        }
    }

    /// Prepares and runs a step; returns the mean of the documents' losses (in document order),
    /// or with `inputs.token_mean` their mean weighted by their positions.
    fn gradient_step(
        &mut self,
        batch: &[&[usize]],
        adam: Option<AdamStep>,
        inputs: &StepInputs,
    ) -> f64 {
        if let [tokens] = batch
            && self.threads > 1
            && Self::SPLITS
        {
            // one document on two threads: split by parts of the model (`Shared::split_side`)
            self.check(tokens);
            let (dropout, token_mean) = (inputs.dropout, inputs.token_mean);
            self.shared.prepare_split(batch, adam, dropout, token_mean);
            self.run_on_threads();
            return mean_loss(&lock(&self.shared.doc_loss), batch, inputs.token_mean, T);
        }
        if let [tokens] = batch {
            // one document is one group: no plan, no threads (see `Shared::run_alone`)
            let (rows, n) = self.rows_of(tokens, inputs.dropout.map(|d| d.key));
            let buf = &mut self.caller_buffers;
            let dropout = inputs.dropout.as_ref();
            let loss = self.shared.run_alone(buf, &rows[..n], adam, dropout);
            return mean_loss(&[loss], batch, inputs.token_mean, T);
        }
        self.prepare(batch, true, adam, inputs);
        self.run_on_threads();
        mean_loss(&lock(&self.shared.doc_loss), batch, inputs.token_mean, T)
    }

    /// The gradient of the mean loss over a minibatch — the mean of the documents'
    /// gradients, each document's loss the mean over its positions (or with
    /// `inputs.token_mean` the mean over all its positions), with `inputs.dropout`'s masks —
    /// into [`Gpt::grads_flat`]; returns the mean loss.
    pub fn loss_and_grad_batch(&mut self, batch: &[&[usize]], inputs: &StepInputs) -> f64 {
        assert!(!batch.is_empty(), "an empty batch");
        self.gradient_step(batch, None, inputs)
    }

    /// One step on a minibatch: [`Gpt::loss_and_grad_batch`], then one Adam update. Returns
    /// the mean loss.
    pub fn train_batch(&mut self, batch: &[&[usize]], adam: &AdamStep, inputs: &StepInputs) -> f64 {
        assert!(!batch.is_empty(), "an empty batch");
        self.gradient_step(batch, Some(*adam), inputs)
    }

    /// Zeroes the gradients, runs forward and backward over the document `tokens`
    /// (`[BOS] ids [BOS]`, truncated to `T` positions like microgpt.py) and returns the mean
    /// loss `(1/n)·Σ −ln p(target)`.
    pub fn loss_and_grad(&mut self, tokens: &[usize]) -> f64 {
        self.loss_and_grad_batch(&[tokens], &StepInputs::MICROGPT)
    }

    /// One Adam update of every tensor's real rows from the current gradients.
    pub fn adam_update(&mut self, adam: &AdamStep) {
        self.prepare(&[], false, Some(*adam), &StepInputs::MICROGPT);
        self.run_on_threads();
    }

    /// The loss of each document of `batch` (the mean cross-entropy over its positions) into
    /// `out`, forward only: like [`Gpt::loss`] per document, but the documents in groups on
    /// every thread, which is what a validation pass wants. The gradients are left as they
    /// are.
    pub fn losses(&mut self, batch: &[&[usize]], out: &mut [f64]) {
        assert_eq!(batch.len(), out.len(), "one loss per document");
        self.prepare(batch, false, None, &StepInputs::MICROGPT);
        self.run_on_threads();
        out.copy_from_slice(&lock(&self.shared.doc_loss));
    }

    /// [`Gpt::loss_and_grad`] then [`Gpt::adam_update`]; returns the loss.
    pub fn train_step(&mut self, tokens: &[usize], adam: &AdamStep) -> f64 {
        self.train_batch(&[tokens], adam, &StepInputs::MICROGPT)
    }

    /// The loss of one document (mean cross-entropy over its positions), forward only, on
    /// the caller's thread.
    pub fn loss(&mut self, tokens: &[usize]) -> f64 {
        let vocab = self.vocab();
        let (rows, n) = self.rows_of(tokens, None);
        let buf = &mut self.caller_buffers;
        let params = self.shared.read_params();
        pass::forward::<V, T, E, H, D, F, L, S>(buf, &params.view(), &rows[..n], 0, None);
        pass::cross_entropy(buf, &rows[..n], vocab);
        let total: f64 = buf.acts.ce[..n].iter().map(|c| c.to_f64()).sum();
        (1.0 / n as f64) * total
    }

    /// Inference with the KV cache: feeds `token` at position `pos` (`pos` 0 starts a new
    /// sequence; positions must come in order) and returns the logits of the real vocabulary.
    pub fn forward_token(&mut self, token: usize, pos: usize) -> &[f64] {
        let vocab = self.vocab();
        assert!(pos < T, "position {pos} is beyond the block size {T}");
        assert!(
            token < vocab,
            "token {token} is not in the vocabulary of {vocab}"
        );
        let row = Row {
            token,
            pos,
            ..Row::default()
        };
        let buf = &mut self.caller_buffers;
        let params = self.shared.read_params();
        pass::forward::<V, T, E, H, D, F, L, S>(buf, &params.view(), &[row], pos, None);
        S::as_f64s(&buf.acts.logits[pos][..vocab], &mut self.logits_f64)
    }

    /// The per-parameter arrays `which` of every block, in [`Shape::tensors`] order.
    fn flat(&self, which: ParamArray) -> Vec<f64> {
        let vocab = self.vocab();
        let guard = self.shared.read_params();
        let mut out = Vec::with_capacity(self.num_params());
        let mut extend = |t: &[S]| out.extend(t.iter().map(|x| x.to_f64()));
        for t in guard.embed.array(which).tensors(vocab) {
            extend(t);
        }
        for b in &guard.blocks {
            for t in b.tensors(which) {
                extend(t);
            }
        }
        out
    }

    /// Replaces the per-parameter arrays `which` from a vector laid out like
    /// [`Gpt::params_flat`] (whose length the caller has checked).
    fn set_flat(&mut self, which: ParamArray, flat: &[f64]) {
        let vocab = self.vocab();
        let mut rest = flat;
        write(&self.shared.embed).set_from(which, vocab, &mut rest);
        for b in &self.shared.blocks {
            b.set_from(which, &mut rest);
        }
    }

    /// All parameters in one vector, in [`Shape::tensors`] order and layout.
    pub fn params_flat(&self) -> Vec<f64> {
        self.flat(ParamArray::Weights)
    }

    /// The gradient of the last [`Gpt::loss_and_grad`] or step, like [`Gpt::params_flat`].
    pub fn grads_flat(&self) -> Vec<f64> {
        let vocab = self.vocab();
        let mut out = Vec::with_capacity(self.num_params());
        self.shared.grad.extend_flat(vocab, &mut out);
        out
    }

    /// A copy of the weights (all `V` rows; rows from `vocab` on are 0).
    pub fn weights(&self) -> Box<Weights<V, T, E, F, L, S>> {
        let mut w: Box<Weights<V, T, E, F, L, S>> = zeroed_box().expect("memory for a copy");
        let guard = self.shared.read_params();
        let e = &guard.embed.w;
        let embed = [&mut w.wte[..], &mut w.lm_head[..]];
        for (dst, src) in embed.into_iter().zip([&e.wte[..], &e.lm_head[..]]) {
            dst.as_flattened_mut().copy_from_slice(src.as_flattened());
        }
        w.wpe
            .as_flattened_mut()
            .copy_from_slice(e.wpe.as_flattened());
        for (l, b) in w.blocks.iter_mut().zip(&guard.blocks) {
            for (dst, src) in l
                .tensors_mut()
                .into_iter()
                .zip(b.tensors(ParamArray::Weights))
            {
                dst.copy_from_slice(src);
            }
        }
        w
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
        self.set_flat(ParamArray::Weights, flat);
        Ok(())
    }

    /// Adam's moments `(m, v)`, each laid out like [`Gpt::params_flat`].
    pub fn adam_flat(&self) -> (Vec<f64>, Vec<f64>) {
        (self.flat(ParamArray::AdamM), self.flat(ParamArray::AdamV))
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
        self.set_flat(ParamArray::AdamM, m);
        self.set_flat(ParamArray::AdamV, v);
        Ok(())
    }
}

/// A step's loss from its documents' losses: their mean or, with `token_mean`, their mean
/// weighted by their positions (at most `t` each).
fn mean_loss(losses: &[f64], batch: &[&[usize]], token_mean: bool, t: usize) -> f64 {
    if token_mean {
        let n = |d: &[usize]| t.min(d.len() - 1) as f64;
        let total: f64 = losses.iter().zip(batch).map(|(l, d)| l * n(d)).sum();
        let positions: f64 = batch.iter().map(|d| n(d)).sum();
        total / positions
    } else {
        let total: f64 = losses.iter().sum();
        total * (1.0 / batch.len() as f64)
    }
}

// ------------------------------------------------------------------------------------------
// The engine traits

impl<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
    S: Float,
> Model for Gpt<V, T, E, H, D, F, L, S>
{
    fn precision(&self) -> Precision {
        S::PRECISION
    }
    fn preset(&self) -> &'static str {
        self.shape().preset().unwrap_or("custom")
    }
    fn shape(&self) -> Shape {
        Gpt::shape(self)
    }
    fn num_params(&self) -> usize {
        Gpt::num_params(self)
    }
    fn train_batch(&mut self, batch: &[&[usize]], adam: &AdamStep, inputs: &StepInputs) -> f64 {
        Gpt::train_batch(self, batch, adam, inputs)
    }
    fn set_threads(&mut self, n: usize) -> Result<()> {
        Gpt::set_threads(self, n)
    }
    fn loss(&mut self, tokens: &[usize]) -> f64 {
        Gpt::loss(self, tokens)
    }
    fn losses(&mut self, batch: &[&[usize]], out: &mut [f64]) {
        Gpt::losses(self, batch, out)
    }
    fn params_flat(&self) -> Vec<f64> {
        Gpt::params_flat(self)
    }
    fn visit_params(&self, f: &mut dyn FnMut(&[f64])) {
        let vocab = self.vocab();
        let guard = self.shared.read_params();
        // in f64 the tensors themselves; in f32 converted a chunk at a time, on the stack
        let mut buf = [0.0; 256];
        let mut each = |t: &[S]| {
            for c in t.chunks(buf.len()) {
                f(S::as_f64s(c, &mut buf));
            }
        };
        for t in guard.embed.w.tensors(vocab) {
            each(t);
        }
        for b in &guard.blocks {
            for t in b.tensors(ParamArray::Weights) {
                each(t);
            }
        }
    }
    fn set_params_flat(&mut self, flat: &[f64]) -> Result<()> {
        Gpt::set_params_flat(self, flat)
    }
    fn adam_flat(&self) -> (Vec<f64>, Vec<f64>) {
        Gpt::adam_flat(self)
    }
    fn set_adam_flat(&mut self, m: &[f64], v: &[f64]) -> Result<()> {
        Gpt::set_adam_flat(self, m, v)
    }
}

impl<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
    S: Float,
> Forward for Gpt<V, T, E, H, D, F, L, S>
{
    fn block_size(&self) -> usize {
        T
    }
    fn forward_token(&mut self, token: usize, pos: usize) -> &[f64] {
        Gpt::forward_token(self, token, pos)
    }
}

#[cfg(test)]
mod tests {
    use super::pass::{Lease, ParamsRef};
    use super::step::Part;
    use super::*;
    use crate::dropout::Dropout;
    use crate::optim::Adam;

    type Micro = Gpt<27, 16, 16, 4, 4, 64, 1>;

    /// Every part is claimed exactly once, in the order the backward leaves them: block by
    /// block from the last, `mlp_fc2`, `mlp_fc1`, the attention, then the embeddings and head.
    #[test]
    fn the_parts_are_claimed_in_the_order_the_backward_leaves_them() {
        let claims: Vec<usize> = (0..Part::count::<4>())
            .map(|c| Part::claimed::<4>(c).index::<4>())
            .collect();
        let expected = [9, 10, 11, 6, 7, 8, 3, 4, 5, 0, 1, 2, 12];
        assert_eq!(claims, expected);
        let one: Vec<usize> = (0..Part::count::<1>())
            .map(|c| Part::claimed::<1>(c).index::<1>())
            .collect();
        assert_eq!(one, [0, 1, 2, 3]);
        assert_eq!(Part::claimed::<4>(0), Part::MlpFc2(3));
        assert_eq!(Part::claimed::<4>(12), Part::Embed);
    }

    /// The backward's lease over plain references, as a single-threaded caller without locks
    /// would implement it: the parameters borrowed, one gradient in [`Weights`] layout.
    struct Borrowed<
        'a,
        'p,
        const V: usize,
        const T: usize,
        const E: usize,
        const F: usize,
        const L: usize,
    > {
        params: &'a ParamsRef<'p, V, T, E, F, L, f64>,
        grad: &'a mut Weights<V, T, E, F, L>,
    }

    impl<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize>
        Lease<V, T, E, F, f64> for Borrowed<'_, '_, V, T, E, F, L>
    {
        fn head(&mut self, f: impl FnOnce(&[[f64; E]; V], &mut [[f64; E]; V])) {
            f(&self.params.embed.w.lm_head, &mut self.grad.lm_head);
        }
        fn mlp_fc2(&mut self, l: usize, f: impl FnOnce(&[[f64; F]; E], &mut [[f64; F]; E])) {
            f(
                &self.params.blocks[l].fc2.w,
                &mut self.grad.blocks[l].mlp_fc2,
            );
        }
        fn mlp_fc1(&mut self, l: usize, f: impl FnOnce(&[[f64; E]; F], &mut [[f64; E]; F])) {
            f(
                &self.params.blocks[l].fc1.w,
                &mut self.grad.blocks[l].mlp_fc1,
            );
        }
        fn attention(
            &mut self,
            l: usize,
            f: impl FnOnce([&[[f64; E]; E]; 4], [&mut [[f64; E]; E]; 4]),
        ) {
            let [q, k, v, o] = self.params.blocks[l].attn;
            let g = &mut self.grad.blocks[l];
            let dw = [
                &mut g.attn_wq,
                &mut g.attn_wk,
                &mut g.attn_wv,
                &mut g.attn_wo,
            ];
            f([&q.w, &k.w, &v.w, &o.w], dw);
        }
        fn tables(&mut self, f: impl FnOnce(&mut [[f64; E]; V], &mut [[f64; E]; T])) {
            f(&mut self.grad.wte, &mut self.grad.wpe);
        }
    }

    /// The passes over plain references give the bits of the threaded step (two blocks, with
    /// dropout, two threads): the maths does not depend on the locks around it. One document
    /// is one group, whose gradient is the step's unsummed.
    #[test]
    fn the_passes_with_plain_references_give_the_threaded_steps_gradient() {
        type Two = Gpt<27, 16, 16, 4, 4, 64, 2>;
        let doc: Vec<usize> = vec![26, 3, 1, 18, 12, 1, 26];
        let dropout = Dropout::at(0.2, 9, 4);
        let mut m = Two::new(27, &mut Rng::pcg(3)).unwrap();
        m.set_threads(2).unwrap();
        let inputs = StepInputs {
            dropout,
            token_mean: false,
        };
        m.loss_and_grad_batch(&[&doc], &inputs);
        let n = doc.len() - 1;
        let key = dropout.map_or(0, |d| d.key);
        let rows: Vec<Row> = (0..n)
            .map(|pos| Row {
                token: doc[pos],
                pos,
                target: doc[pos + 1],
                dloss: 1.0 / n as f64,
                seed: crate::dropout::row_seed(key, 0, pos),
            })
            .collect();
        let mut buf: Buffers<27, 16, 16, 4, 64, 2, f64> = Buffers::new(buffer_rows::<16>());
        let mut grad: Box<Weights<27, 16, 16, 64, 2>> = zeroed_box().unwrap();
        let params = m.shared.read_params();
        let view = params.view();
        pass::forward::<27, 16, 16, 4, 4, 64, 2, f64>(&mut buf, &view, &rows, 0, dropout.as_ref());
        pass::cross_entropy(&mut buf, &rows, 27);
        let mut lease = Borrowed {
            params: &view,
            grad: &mut grad,
        };
        pass::backward::<27, 16, 16, 4, 4, 64, 2, f64>(&mut buf, &mut lease, &rows, 27, true);
        drop(params);
        let plain: Vec<f64> = grad.tensors(27).flatten().copied().collect();
        let threaded = m.grads_flat();
        assert_eq!(plain.len(), threaded.len());
        let differ = plain
            .iter()
            .zip(&threaded)
            .filter(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(differ.count(), 0, "every gradient bit the same");
        assert!(plain.iter().any(|g| *g != 0.0));
    }

    /// A batch of one document, which takes the caller-only path with each part's update
    /// right behind its backward (`Shared::run_alone`), gives the bits of the same step
    /// through the threads' plan (two threads, two blocks, dropout, a few steps of Adam):
    /// losses, gradients, weights and moments.
    #[test]
    fn one_document_alone_gives_the_bits_of_the_planned_step() {
        type Two = Gpt<27, 16, 16, 4, 4, 64, 2>;
        let docs: [Vec<usize>; 3] = [
            vec![26, 3, 1, 18, 12, 1, 26],
            vec![26, 0, 13, 13, 0, 26],
            (0..20).map(|i| (i * 7) % 27).collect(),
        ];
        let mut alone = Two::new(27, &mut Rng::pcg(5)).unwrap();
        let mut planned = Two::new(27, &mut Rng::pcg(5)).unwrap();
        planned.set_threads(2).unwrap();
        let adam = Adam {
            weight_decay: 0.1,
            ..Adam::default()
        };
        for step in 0..6 {
            let doc = &docs[step % docs.len()];
            let inputs = StepInputs {
                dropout: Dropout::at(0.2 * (step % 2) as f64, 9, step),
                token_mean: step % 3 == 0,
            };
            let s = adam.at(step, 6);
            let a = alone.train_batch(&[doc], &s, &inputs);
            planned.prepare(&[doc], true, Some(s), &inputs);
            planned.run_on_threads();
            let b = mean_loss(
                &lock(&planned.shared.doc_loss),
                &[doc],
                inputs.token_mean,
                16,
            );
            assert_eq!(a.to_bits(), b.to_bits(), "step {step}: loss");
            let bits = |x: Vec<f64>| x.into_iter().map(f64::to_bits).collect::<Vec<_>>();
            assert_eq!(bits(alone.grads_flat()), bits(planned.grads_flat()));
            assert_eq!(bits(alone.params_flat()), bits(planned.params_flat()));
            let ((ma, va), (mb, vb)) = (alone.adam_flat(), planned.adam_flat());
            assert_eq!((bits(ma), bits(va)), (bits(mb), bits(vb)));
        }
        assert!(alone.grads_flat().iter().any(|g| *g != 0.0));
    }

    /// A step of one document split between two threads by parts of the model
    /// (`Shared::split_side`: the attention on one, the MLPs and the head on the other) gives
    /// the bits of the step on the caller alone, over steps with dropout, weight decay and the
    /// token mean, in a model of two blocks (forced here: the engine splits only models of
    /// `SPLIT_MIN_PARAMS` or more) and, through the public API, in one that large.
    #[test]
    fn one_document_split_between_two_threads_gives_the_bits_of_the_step_alone() {
        fn bits(x: Vec<f64>) -> Vec<u64> {
            x.into_iter().map(f64::to_bits).collect()
        }
        let docs: [Vec<usize>; 3] = [
            vec![26, 3, 1, 18, 12, 1, 26],
            vec![26, 0, 13, 13, 0, 26],
            (0..20).map(|i| (i * 7) % 27).collect(),
        ];
        let adam = Adam {
            weight_decay: 0.1,
            ..Adam::default()
        };
        let inputs = |step: usize| StepInputs {
            dropout: Dropout::at(0.2 * (step % 2) as f64, 9, step),
            token_mean: step.is_multiple_of(3),
        };
        type Two = Gpt<27, 16, 16, 4, 4, 64, 2>;
        const { assert!(!Two::SPLITS) };
        let mut alone = Two::new(27, &mut Rng::pcg(5)).unwrap();
        let mut split = Two::new(27, &mut Rng::pcg(5)).unwrap();
        split.set_threads(2).unwrap();
        for step in 0..6 {
            let doc = &docs[step % docs.len()];
            let (s, inputs) = (adam.at(step, 6), inputs(step));
            let a = alone.train_batch(&[doc], &s, &inputs);
            split.check(doc);
            split
                .shared
                .prepare_split(&[doc], Some(s), inputs.dropout, inputs.token_mean);
            split.run_on_threads();
            let b = mean_loss(&lock(&split.shared.doc_loss), &[doc], inputs.token_mean, 16);
            assert_eq!(a.to_bits(), b.to_bits(), "step {step}: loss");
            assert_eq!(bits(alone.grads_flat()), bits(split.grads_flat()));
            assert_eq!(bits(alone.params_flat()), bits(split.params_flat()));
            let ((ma, va), (mb, vb)) = (alone.adam_flat(), split.adam_flat());
            assert_eq!((bits(ma), bits(va)), (bits(mb), bits(vb)));
        }
        // 102,528 parameters: `train_batch` on two threads splits
        type Wide = Gpt<27, 16, 64, 4, 16, 256, 2>;
        const { assert!(Wide::SPLITS) };
        let mut one = Wide::new(27, &mut Rng::pcg(6)).unwrap();
        let mut two = Wide::new(27, &mut Rng::pcg(6)).unwrap();
        two.set_threads(2).unwrap();
        for step in 0..3 {
            let doc = &docs[step % docs.len()];
            let (s, inputs) = (adam.at(step, 3), inputs(step));
            let a = one.train_batch(&[doc], &s, &inputs);
            let b = two.train_batch(&[doc], &s, &inputs);
            assert_eq!(a.to_bits(), b.to_bits(), "step {step}: loss");
            assert_eq!(bits(one.params_flat()), bits(two.params_flat()));
        }
        assert!(two.grads_flat().iter().any(|g| *g != 0.0));
    }

    /// A thread whose group panics never marks its parts done; the threads waiting for them
    /// must give up the step (and the crew re-raise the panic) instead of waiting forever.
    #[test]
    fn a_group_that_panics_mid_step_fails_the_step_instead_of_hanging_the_threads() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut m = Micro::new(27, &mut Rng::pcg(1)).unwrap();
            m.set_threads(2).unwrap();
            let doc: Vec<usize> = vec![26, 1, 2, 3, 4, 5, 6, 7, 26];
            // 32 documents of 8 positions: 4 groups of 64 rows
            let batch = vec![doc.as_slice(); 32];
            let adam = Adam::default().at(0, 10);
            m.prepare(&batch, true, Some(adam), &StepInputs::MICROGPT);
            {
                let mut plan = write(&m.shared.plan);
                assert_eq!(plan.groups.len(), 4);
                // the second group's first token is beyond the tables: its forward panics
                let row = plan.docs[plan.groups[1].start].start;
                plan.rows[row].token = 1000;
            }
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.run_on_threads()));
            drop(m);
            tx.send(r.is_err()).unwrap();
        });
        let failed = rx.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(
            failed,
            Ok(true),
            "the step panicked, and every thread returned"
        );
    }
}
