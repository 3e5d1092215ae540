//! The static engine's tensors as plain structs (no locks): the weights of a block, of the
//! embeddings and head and of the whole model (also the layout of a gradient), and each weight
//! matrix with what the optimizer and the forward keep beside it. Like llm.c's
//! `ParameterTensors`, one layout for parameters, gradients and Adam's moments; the
//! scheduler ([`super::step`]) puts its locks around these, never inside them.

use bytemuck::Zeroable;

use super::kernels::{Float, TILE, transpose, transpose_rows};
use crate::error::{Error, Result};
use crate::optim::AdamStep;

/// One transformer block's weights; microgpt's names. Matrices are `[[S; IN]; OUT]`,
/// `S` the scalar ([`Float`]).
#[derive(Zeroable)]
pub struct BlockWeights<const E: usize, const F: usize, S = f64> {
    pub attn_wq: [[S; E]; E],
    pub attn_wk: [[S; E]; E],
    pub attn_wv: [[S; E]; E],
    pub attn_wo: [[S; E]; E],
    pub mlp_fc1: [[S; E]; F],
    pub mlp_fc2: [[S; F]; E],
}

impl<const E: usize, const F: usize, S: Float> BlockWeights<E, F, S> {
    /// The six matrices, flattened, in [`Shape::tensors`](crate::shape::Shape::tensors) order.
    pub fn tensors(&self) -> [&[S]; 6] {
        [
            self.attn_wq.as_flattened(),
            self.attn_wk.as_flattened(),
            self.attn_wv.as_flattened(),
            self.attn_wo.as_flattened(),
            self.mlp_fc1.as_flattened(),
            self.mlp_fc2.as_flattened(),
        ]
    }

    /// [`BlockWeights::tensors`], mutable.
    pub fn tensors_mut(&mut self) -> [&mut [S]; 6] {
        [
            self.attn_wq.as_flattened_mut(),
            self.attn_wk.as_flattened_mut(),
            self.attn_wv.as_flattened_mut(),
            self.attn_wo.as_flattened_mut(),
            self.mlp_fc1.as_flattened_mut(),
            self.mlp_fc2.as_flattened_mut(),
        ]
    }
}

/// The embeddings and the output head.
#[derive(Zeroable)]
pub struct Embed<const V: usize, const T: usize, const E: usize, S = f64> {
    pub wte: [[S; E]; V],
    pub wpe: [[S; E]; T],
    pub lm_head: [[S; E]; V],
}

impl<const V: usize, const T: usize, const E: usize, S: Float> Embed<V, T, E, S> {
    /// `wte`, `wpe`, `lm_head` (real rows only), flattened.
    pub fn tensors(&self, vocab: usize) -> [&[S]; 3] {
        [
            self.wte[..vocab].as_flattened(),
            self.wpe.as_flattened(),
            self.lm_head[..vocab].as_flattened(),
        ]
    }

    /// [`Embed::tensors`], mutable.
    pub fn tensors_mut(&mut self, vocab: usize) -> [&mut [S]; 3] {
        [
            self.wte[..vocab].as_flattened_mut(),
            self.wpe.as_flattened_mut(),
            self.lm_head[..vocab].as_flattened_mut(),
        ]
    }

    /// Zeroes the gradients a backward adds into, the embedding tables: every other gradient
    /// tensor (`lm_head` and the blocks' matrices) it writes over
    /// ([`Put::Set`](super::ops::Put::Set)), so they need no zeroing between steps.
    pub(super) fn zero_tables(&mut self) {
        self.wte.as_flattened_mut().fill(S::ZERO);
        self.wpe.as_flattened_mut().fill(S::ZERO);
    }
}

/// Every weight of the model in one struct: the layout of a gradient (and of a copy of the
/// parameters, [`Gpt::weights`](super::Gpt::weights)).
#[derive(Zeroable)]
pub struct Weights<
    const V: usize,
    const T: usize,
    const E: usize,
    const F: usize,
    const L: usize,
    S = f64,
> {
    pub wte: [[S; E]; V],
    pub wpe: [[S; E]; T],
    pub lm_head: [[S; E]; V],
    pub blocks: [BlockWeights<E, F, S>; L],
}

impl<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize, S: Float>
    Weights<V, T, E, F, L, S>
{
    /// Each tensor's real rows (`wte` and `lm_head` cut to `vocab`), flattened row-major, in
    /// [`Shape::tensors`](crate::shape::Shape::tensors) order. Allocates nothing.
    pub fn tensors(&self, vocab: usize) -> impl Iterator<Item = &[S]> {
        [
            self.wte[..vocab].as_flattened(),
            self.wpe.as_flattened(),
            self.lm_head[..vocab].as_flattened(),
        ]
        .into_iter()
        .chain(self.blocks.iter().flat_map(BlockWeights::tensors))
    }

    /// [`Weights::tensors`], mutable.
    pub fn tensors_mut(&mut self, vocab: usize) -> impl Iterator<Item = &mut [S]> {
        [
            self.wte[..vocab].as_flattened_mut(),
            self.wpe.as_flattened_mut(),
            self.lm_head[..vocab].as_flattened_mut(),
        ]
        .into_iter()
        .chain(self.blocks.iter_mut().flat_map(BlockWeights::tensors_mut))
    }
}

/// Which per-parameter array: the weights or one of Adam's moments.
#[derive(Clone, Copy)]
pub(super) enum ParamArray {
    Weights,
    AdamM,
    AdamV,
}

/// The embeddings and the head as the optimizer keeps them: weights, `lm_head`'s transpose
/// (what the forward reads, kept in step) and Adam's moments.
#[derive(Zeroable)]
pub(super) struct EmbedParams<const V: usize, const T: usize, const E: usize, S> {
    pub w: Embed<V, T, E, S>,
    pub lm_head_t: [[S; V]; E],
    pub m: Embed<V, T, E, S>,
    pub v: Embed<V, T, E, S>,
}

impl<const V: usize, const T: usize, const E: usize, S: Float> EmbedParams<V, T, E, S> {
    pub fn refresh(&mut self) {
        transpose(&mut self.lm_head_t, &self.w.lm_head);
    }

    /// The array `which` of the three tensors.
    pub fn array(&self, which: ParamArray) -> &Embed<V, T, E, S> {
        match which {
            ParamArray::Weights => &self.w,
            ParamArray::AdamM => &self.m,
            ParamArray::AdamV => &self.v,
        }
    }

    /// Overwrites the array `which` (real rows) with the next values of `src`, which
    /// advances; the transpose follows.
    pub fn set_from(&mut self, which: ParamArray, vocab: usize, src: &mut &[f64]) {
        let dst = match which {
            ParamArray::Weights => &mut self.w,
            ParamArray::AdamM => &mut self.m,
            ParamArray::AdamV => &mut self.v,
        };
        for t in dst.tensors_mut(vocab) {
            take(t, src);
        }
        self.refresh();
    }

    /// One Adam update of the three tensors (real rows) from `g`.
    pub fn adam(&mut self, g: &Embed<V, T, E, S>, vocab: usize, adam: &AdamStep) {
        self.adam_tables(&g.wte, &g.wpe, vocab, adam);
        self.adam_head(&g.lm_head, vocab, adam);
    }

    /// One Adam update of `wte` (real rows) and `wpe` from their gradients.
    pub fn adam_tables(
        &mut self,
        dwte: &[[S; E]; V],
        dwpe: &[[S; E]; T],
        vocab: usize,
        adam: &AdamStep,
    ) {
        let (w, m, v) = (&mut self.w, &mut self.m, &mut self.v);
        adam.update_flushing(
            w.wte[..vocab].as_flattened_mut(),
            dwte[..vocab].as_flattened(),
            m.wte[..vocab].as_flattened_mut(),
            v.wte[..vocab].as_flattened_mut(),
        );
        adam.update_flushing(
            w.wpe.as_flattened_mut(),
            dwpe.as_flattened(),
            m.wpe.as_flattened_mut(),
            v.wpe.as_flattened_mut(),
        );
    }

    /// One Adam update of `lm_head` (real rows) from its gradient; the transpose follows.
    pub fn adam_head(&mut self, dlm_head: &[[S; E]; V], vocab: usize, adam: &AdamStep) {
        let (w, m, v) = (&mut self.w, &mut self.m, &mut self.v);
        adam_transposed(
            &mut w.lm_head,
            &mut self.lm_head_t,
            dlm_head,
            &mut m.lm_head,
            &mut v.lm_head,
            vocab,
            adam,
        );
    }
}

/// One weight matrix `[[S; I]; O]`: its weights, their transpose (what the forward reads,
/// kept in step) and Adam's moments.
#[derive(Zeroable)]
pub(super) struct Param<const I: usize, const O: usize, S> {
    pub w: [[S; I]; O],
    pub wt: [[S; O]; I],
    pub m: [[S; I]; O],
    pub v: [[S; I]; O],
}

impl<const I: usize, const O: usize, S: Float> Param<I, O, S> {
    fn refresh(&mut self) {
        transpose(&mut self.wt, &self.w);
    }

    /// The per-parameter array `which`, flattened.
    pub fn get(&self, which: ParamArray) -> &[S] {
        match which {
            ParamArray::Weights => self.w.as_flattened(),
            ParamArray::AdamM => self.m.as_flattened(),
            ParamArray::AdamV => self.v.as_flattened(),
        }
    }

    /// Overwrites the per-parameter array `which` with the next values of `src`, which
    /// advances; the transpose follows.
    pub fn set_from(&mut self, which: ParamArray, src: &mut &[f64]) {
        let dst = match which {
            ParamArray::Weights => &mut self.w,
            ParamArray::AdamM => &mut self.m,
            ParamArray::AdamV => &mut self.v,
        };
        take(dst.as_flattened_mut(), src);
        self.refresh();
    }

    /// One Adam update from the gradient `g`; the transpose follows.
    pub fn adam(&mut self, g: &[[S; I]; O], adam: &AdamStep) {
        let (w, wt, m, v) = (&mut self.w, &mut self.wt, &mut self.m, &mut self.v);
        adam_transposed(w, wt, g, m, v, O, adam);
    }
}

/// One Adam update of the first `rows` rows of `w` from `g`, and their columns of `wt = wᵀ`
/// refreshed band by band one band behind it, while the rows just updated are still in L1
/// (a band's transpose then reads rows whose divisions finished a band ago, instead of
/// waiting for the last of them): the same values as the update of those rows and then a
/// [`transpose`] (each parameter's update reads only its own values, so the order of the
/// bands changes nothing).
fn adam_transposed<const I: usize, const O: usize, S: Float>(
    w: &mut [[S; I]; O],  // (O, I)
    wt: &mut [[S; O]; I], // (I, O)
    g: &[[S; I]; O],      // (O, I)
    m: &mut [[S; I]; O],  // (O, I)
    v: &mut [[S; I]; O],  // (O, I)
    rows: usize,          // ≤ O
    adam: &AdamStep,
) {
    let mut behind = None;
    for o0 in (0..rows).step_by(TILE) {
        let band = o0..rows.min(o0 + TILE);
        adam.update_flushing(
            w[band.clone()].as_flattened_mut(),
            g[band.clone()].as_flattened(),
            m[band.clone()].as_flattened_mut(),
            v[band].as_flattened_mut(),
        );
        if let Some(b) = behind.replace(o0) {
            transpose_rows(wt, w, b);
        }
    }
    if let Some(b) = behind {
        transpose_rows(wt, w, b);
    }
}

/// The attention's four matrices, in microgpt's order: `attn[WQ]` … `attn[WO]`.
pub(super) type Attn<const E: usize, S> = [Param<E, E, S>; 4];
/// Their gradient.
pub(super) type AttnGrad<const E: usize, S> = [[[S; E]; E]; 4];
pub(super) const WQ: usize = 0;
pub(super) const WK: usize = 1;
pub(super) const WV: usize = 2;
pub(super) const WO: usize = 3;

/// A part of a block that Adam updates as one, from a gradient of type `Grad`: a matrix, or
/// the attention's four.
pub(super) trait BlockPart {
    type Grad: Flat;
    fn adam(&mut self, g: &Self::Grad, adam: &AdamStep);
}

impl<const I: usize, const O: usize, S: Float> BlockPart for Param<I, O, S> {
    type Grad = [[S; I]; O];
    fn adam(&mut self, g: &Self::Grad, adam: &AdamStep) {
        Param::adam(self, g, adam);
    }
}

impl<const E: usize, S: Float> BlockPart for Attn<E, S> {
    type Grad = AttnGrad<E, S>;
    fn adam(&mut self, g: &Self::Grad, adam: &AdamStep) {
        for (p, g) in self.iter_mut().zip(g) {
            p.adam(g, adam);
        }
    }
}

/// A gradient part as one slice.
pub(super) trait Flat {
    type Scalar: Float;
    fn flat(&self) -> &[Self::Scalar];
    fn flat_mut(&mut self) -> &mut [Self::Scalar];
}

impl<const I: usize, const O: usize, S: Float> Flat for [[S; I]; O] {
    type Scalar = S;
    fn flat(&self) -> &[S] {
        self.as_flattened()
    }
    fn flat_mut(&mut self) -> &mut [S] {
        self.as_flattened_mut()
    }
}

impl<const E: usize, S: Float> Flat for AttnGrad<E, S> {
    type Scalar = S;
    fn flat(&self) -> &[S] {
        self.as_flattened().as_flattened()
    }
    fn flat_mut(&mut self) -> &mut [S] {
        self.as_flattened_mut().as_flattened_mut()
    }
}

/// Overwrites `dst` with the next `dst.len()` values of `src`, which advances past them
/// (rounded to nearest into `f32`; exact into `f64`, and from values an `f32` model wrote).
pub(super) fn take<S: Float>(dst: &mut [S], src: &mut &[f64]) {
    let (head, tail) = src.split_at(dst.len());
    for (d, x) in dst.iter_mut().zip(head) {
        *d = S::from_f64(*x);
    }
    *src = tail;
}

/// `dst += src`, element by element.
pub(super) fn add<S: Float>(dst: &mut [S], src: &[S]) {
    for (x, y) in dst.iter_mut().zip(src) {
        *x += *y;
    }
}

/// A boxed, zeroed `X`, allocated directly on the heap (never on the stack first).
pub(super) fn zeroed_box<X: Zeroable>() -> Result<Box<X>> {
    bytemuck::try_zeroed_box().map_err(|_| {
        Error(format!(
            "cannot allocate {} bytes for the model",
            std::mem::size_of::<X>()
        ))
    })
}
