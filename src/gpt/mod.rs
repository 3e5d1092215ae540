//! The static GPT: microgpt.py's model with its dimensions as const generics, forward and
//! backward written out over fixed-size rows (see [`ops`]), Adam in place, and
//! minibatches spread over worker threads.
//!
//! Dimension letters, always in this order: `V` vocab (compiled), `T` block size, `E` n_embd,
//! `H` heads, `D` head dim, `F` MLP width, `L` layers. Configurations are type aliases in
//! [`crate::presets`]. All big state — parameters, the transposed weights the forward reads,
//! Adam's moments, gradients, activations and the backward's buffers — is allocated once,
//! directly on the heap, when the model (or a batch size, or a thread count) is first seen; a
//! training step and a token of inference allocate nothing.
//!
//! Forward and backward run like llm.c's: one op at a time over all rows, the backward in
//! reverse op order. A row is one position of one document; the rows of several documents
//! are laid out one document after the other, and attention reads the keys and values of the
//! earlier rows of the same document only, its backward adding into their gradients, so the
//! gradient is exact (as microgpt.py's autograd computes it).
//!
//! A minibatch step: the documents are cut into groups of consecutive documents of about
//! [`GROUP_ROWS`] rows (a function of the batch alone, never of the thread count). Each group
//! is one forward and backward — its linear layers multiply all of its rows at once — into
//! its own gradient buffer, each document's loss scaled by `1/B`. Then, part by part (three
//! per block — `mlp_fc2`, `mlp_fc1`, the attention — from the last block down, then the
//! embeddings and head), the group gradients are summed in group order — the gradient is the
//! mean of the documents' gradients — and Adam updates the part. Groups and parts are
//! claimed by the caller and the worker threads ([`Gpt::set_threads`]) from atomic
//! counters, in one phase: a thread that runs out of groups goes on to the parts that every
//! group's backward has left while the last groups are still running below them. Since
//! every sum has a fixed order, the result is bit-identical for any number of threads.
//!
//! `V` is a bucket: the real vocabulary `vocab ≤ V` is a run-time value. Only the first `vocab`
//! rows of `wte` and `lm_head` are ever drawn, trained or read, and only the first `vocab`
//! logits enter the softmax, so the maths is that of an exact-vocab model.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytemuck::Zeroable;

use crate::bail;
use crate::dropout::{self, Dropout};
use crate::error::{Error, Result};
use crate::shape::{INIT_STD, Shape};
pub mod kernels;
pub mod ops;

use self::kernels::transpose;
use self::ops::Put::{Add, Set};
use crate::optim::AdamStep;
use crate::parallel::{Crew, Job};
use crate::rng::Rng;

/// Rows (positions) a group of a minibatch aims at: enough that the linear layers read each
/// weight once for many rows, few enough that a batch has several groups to share out.
pub const GROUP_ROWS: usize = 64;

/// A batch of at least this many documents is cut into at least this many groups, so that a
/// few threads have work to share even when the documents are short.
pub const MIN_GROUPS: usize = 4;

/// The number of groups a batch of `docs` documents with `rows` rows in all is cut into:
/// `min(docs, max(MIN_GROUPS, ⌈rows / GROUP_ROWS⌉))`.
pub fn num_groups(docs: usize, rows: usize) -> usize {
    docs.min(MIN_GROUPS.max(rows.div_ceil(GROUP_ROWS)))
}

// ------------------------------------------------------------------------------------------
// Weights

/// One transformer block's weights; microgpt's names. Matrices are `[[f64; IN]; OUT]`.
#[derive(Zeroable)]
pub struct Layer<const E: usize, const F: usize> {
    pub attn_wq: [[f64; E]; E],
    pub attn_wk: [[f64; E]; E],
    pub attn_wv: [[f64; E]; E],
    pub attn_wo: [[f64; E]; E],
    pub mlp_fc1: [[f64; E]; F],
    pub mlp_fc2: [[f64; F]; E],
}

impl<const E: usize, const F: usize> Layer<E, F> {
    /// The six matrices, flattened, in [`Shape::tensors`] order.
    pub fn tensors(&self) -> [&[f64]; 6] {
        [
            self.attn_wq.as_flattened(),
            self.attn_wk.as_flattened(),
            self.attn_wv.as_flattened(),
            self.attn_wo.as_flattened(),
            self.mlp_fc1.as_flattened(),
            self.mlp_fc2.as_flattened(),
        ]
    }

    /// [`Layer::tensors`], mutable.
    pub fn tensors_mut(&mut self) -> [&mut [f64]; 6] {
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
pub struct Embed<const V: usize, const T: usize, const E: usize> {
    pub wte: [[f64; E]; V],
    pub wpe: [[f64; E]; T],
    pub lm_head: [[f64; E]; V],
}

impl<const V: usize, const T: usize, const E: usize> Embed<V, T, E> {
    /// `wte`, `wpe`, `lm_head` (real rows only), flattened.
    pub fn tensors(&self, vocab: usize) -> [&[f64]; 3] {
        [
            self.wte[..vocab].as_flattened(),
            self.wpe.as_flattened(),
            self.lm_head[..vocab].as_flattened(),
        ]
    }

    /// [`Embed::tensors`], mutable.
    pub fn tensors_mut(&mut self, vocab: usize) -> [&mut [f64]; 3] {
        [
            self.wte[..vocab].as_flattened_mut(),
            self.wpe.as_flattened_mut(),
            self.lm_head[..vocab].as_flattened_mut(),
        ]
    }
}

/// Every weight of the model in one struct: the layout of a gradient (and of a copy of the
/// parameters, [`Gpt::weights`]).
#[derive(Zeroable)]
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
        .chain(self.layers.iter().flat_map(Layer::tensors))
    }

    /// [`Weights::tensors`], mutable.
    pub fn tensors_mut(&mut self, vocab: usize) -> impl Iterator<Item = &mut [f64]> {
        [
            self.wte[..vocab].as_flattened_mut(),
            self.wpe.as_flattened_mut(),
            self.lm_head[..vocab].as_flattened_mut(),
        ]
        .into_iter()
        .chain(self.layers.iter_mut().flat_map(Layer::tensors_mut))
    }
}

// ------------------------------------------------------------------------------------------
// The parameter parts: each holds its weights and all the optimizer keeps for them, behind
// its own lock, so that Adam can update different parts on different threads, and a part as
// soon as every backward has left it.

/// The embeddings and the head: weights, `lm_head`'s transpose (kept in step with it) and
/// Adam's moments.
#[derive(Zeroable)]
struct EmbedPart<const V: usize, const T: usize, const E: usize> {
    w: Embed<V, T, E>,
    lm_head_t: [[f64; V]; E],
    m: Embed<V, T, E>,
    v: Embed<V, T, E>,
}

impl<const V: usize, const T: usize, const E: usize> EmbedPart<V, T, E> {
    fn refresh(&mut self) {
        transpose(&mut self.lm_head_t, &self.w.lm_head);
    }

    fn adam(&mut self, g: &Embed<V, T, E>, vocab: usize, adam: &AdamStep) {
        let tensors = (self.w.tensors_mut(vocab).into_iter())
            .zip(g.tensors(vocab))
            .zip(self.m.tensors_mut(vocab))
            .zip(self.v.tensors_mut(vocab));
        for (((p, g), m), v) in tensors {
            adam.update(p, g, m, v);
        }
        self.refresh();
    }
}

/// One weight matrix `[[f64; I]; O]`: its weights, their transpose (what the forward reads,
/// kept in step) and Adam's moments.
#[derive(Zeroable)]
struct Param<const I: usize, const O: usize> {
    w: [[f64; I]; O],
    t: [[f64; O]; I],
    m: [[f64; I]; O],
    v: [[f64; I]; O],
}

impl<const I: usize, const O: usize> Param<I, O> {
    fn refresh(&mut self) {
        transpose(&mut self.t, &self.w);
    }

    /// The per-parameter array `which`, flattened.
    fn get(&self, which: Which) -> &[f64] {
        match which {
            Which::Params => self.w.as_flattened(),
            Which::AdamM => self.m.as_flattened(),
            Which::AdamV => self.v.as_flattened(),
        }
    }

    /// Overwrites the per-parameter array `which` with the next values of `src`, which
    /// advances; the transpose follows.
    fn set_from(&mut self, which: Which, src: &mut &[f64]) {
        let dst = match which {
            Which::Params => &mut self.w,
            Which::AdamM => &mut self.m,
            Which::AdamV => &mut self.v,
        };
        take(dst.as_flattened_mut(), src);
        self.refresh();
    }

    /// One Adam update from the gradient `g`; the transpose follows.
    fn adam(&mut self, g: &[[f64; I]; O], adam: &AdamStep) {
        let (w, m, v) = (&mut self.w, &mut self.m, &mut self.v);
        adam.update(
            w.as_flattened_mut(),
            g.as_flattened(),
            m.as_flattened_mut(),
            v.as_flattened_mut(),
        );
        self.refresh();
    }
}

/// Overwrites `dst` with the next `dst.len()` values of `src`, which advances past them.
fn take(dst: &mut [f64], src: &mut &[f64]) {
    let (head, tail) = src.split_at(dst.len());
    dst.copy_from_slice(head);
    *src = tail;
}

/// The attention's matrices, in microgpt's order: `attn[WQ]` … `attn[WO]`.
const WQ: usize = 0;
const WK: usize = 1;
const WV: usize = 2;
const WO: usize = 3;

/// One transformer block's parameters in the three parts that its backward finishes one
/// after the other, of `4·E²` numbers each (`F = 4·E`): `mlp_fc2`, `mlp_fc1`, then the
/// attention's four matrices. [`part`] numbers them.
struct Block<const E: usize, const F: usize> {
    fc2: RwLock<Box<Param<F, E>>>,
    fc1: RwLock<Box<Param<E, F>>>,
    attn: RwLock<Box<[Param<E, E>; 4]>>,
}

/// A block's parts, read-locked: what the forward and backward read.
struct BlockRead<'a, const E: usize, const F: usize> {
    fc2: RwLockReadGuard<'a, Box<Param<F, E>>>,
    fc1: RwLockReadGuard<'a, Box<Param<E, F>>>,
    attn: RwLockReadGuard<'a, Box<[Param<E, E>; 4]>>,
}

impl<const E: usize, const F: usize> Block<E, F> {
    fn new() -> Result<Self> {
        Ok(Block {
            fc2: RwLock::new(zeroed_box()?),
            fc1: RwLock::new(zeroed_box()?),
            attn: RwLock::new(zeroed_box()?),
        })
    }

    fn read(&self) -> BlockRead<'_, E, F> {
        BlockRead {
            fc2: read(&self.fc2),
            fc1: read(&self.fc1),
            attn: read(&self.attn),
        }
    }

    /// Overwrites the per-parameter array `which` of each matrix, in [`Shape::tensors`]
    /// order, with the next values of `src`, which advances; the transposes follow.
    fn set_from(&self, which: Which, src: &mut &[f64]) {
        for p in write(&self.attn).iter_mut() {
            p.set_from(which, src);
        }
        write(&self.fc1).set_from(which, src);
        write(&self.fc2).set_from(which, src);
    }
}

impl<const E: usize, const F: usize> BlockRead<'_, E, F> {
    /// The per-parameter array `which` of each matrix, in [`Shape::tensors`] order.
    fn tensors(&self, which: Which) -> [&[f64]; 6] {
        let a = &self.attn;
        [
            a[WQ].get(which),
            a[WK].get(which),
            a[WV].get(which),
            a[WO].get(which),
            self.fc1.get(which),
            self.fc2.get(which),
        ]
    }
}

/// Read locks on every parameter part: what the forward reads, and what the backward
/// releases part by part.
struct ParamsGuard<
    'a,
    const V: usize,
    const T: usize,
    const E: usize,
    const F: usize,
    const L: usize,
> {
    embed: RwLockReadGuard<'a, Box<EmbedPart<V, T, E>>>,
    blocks: [BlockRead<'a, E, F>; L],
}

// A panic inside a locked section is a bug that the caller re-raises (see `parallel`); the
// locks are taken past poisoning so that dropping the model afterwards cannot panic again.
fn read<X>(l: &RwLock<X>) -> RwLockReadGuard<'_, X> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}
fn write<X>(l: &RwLock<X>) -> RwLockWriteGuard<'_, X> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
fn lock<X>(l: &Mutex<X>) -> MutexGuard<'_, X> {
    l.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The part of a step's update that the `claim`-th claim gets. Part `3·l + k` is part `k` of
/// block `l` (`k` = [`FC2`], [`FC1`] or [`ATTN`]) and part `3·L` the embeddings and head.
/// Claims go in the order the backward leaves the parts: from the last block down, each
/// block's `mlp_fc2`, `mlp_fc1`, attention, then the embeddings and head.
fn part<const L: usize>(claim: usize) -> usize {
    if claim < 3 * L {
        3 * (L - 1 - claim / 3) + claim % 3
    } else {
        claim
    }
}
const FC2: usize = 0;
const FC1: usize = 1;
const ATTN: usize = 2;

// ------------------------------------------------------------------------------------------
// Gradients

/// One block's gradient, in the parts of [`Block`].
struct BlockGrad<const E: usize, const F: usize> {
    fc2: Mutex<Box<[[f64; F]; E]>>,
    fc1: Mutex<Box<[[f64; E]; F]>>,
    attn: Mutex<Box<[[[f64; E]; E]; 4]>>,
}

/// A block's gradient, locked: what a backward writes, and releases part by part.
struct BlockGradGuard<'a, const E: usize, const F: usize> {
    fc2: MutexGuard<'a, Box<[[f64; F]; E]>>,
    fc1: MutexGuard<'a, Box<[[f64; E]; F]>>,
    attn: MutexGuard<'a, Box<[[[f64; E]; E]; 4]>>,
}

impl<const E: usize, const F: usize> BlockGrad<E, F> {
    /// A zero gradient.
    fn new() -> Result<Self> {
        Ok(BlockGrad {
            fc2: Mutex::new(zeroed_box()?),
            fc1: Mutex::new(zeroed_box()?),
            attn: Mutex::new(zeroed_box()?),
        })
    }

    fn lock(&self) -> BlockGradGuard<'_, E, F> {
        BlockGradGuard {
            fc2: lock(&self.fc2),
            fc1: lock(&self.fc1),
            attn: lock(&self.attn),
        }
    }
}

impl<const E: usize, const F: usize> BlockGradGuard<'_, E, F> {
    /// Each matrix, flattened, in [`Shape::tensors`] order.
    fn tensors(&self) -> [&[f64]; 6] {
        let a = &self.attn;
        [
            a[WQ].as_flattened(),
            a[WK].as_flattened(),
            a[WV].as_flattened(),
            a[WO].as_flattened(),
            self.fc1.as_flattened(),
            self.fc2.as_flattened(),
        ]
    }
}

/// A gradient (the layout of [`Weights`]) in parts that different threads can hold at once:
/// the embeddings and head, and the parts of each block.
struct Grad<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize> {
    embed: Mutex<Box<Embed<V, T, E>>>,
    layers: [BlockGrad<E, F>; L],
}

/// All parts of a [`Grad`], locked: what a backward writes.
struct GradGuard<'a, const V: usize, const T: usize, const E: usize, const F: usize, const L: usize>
{
    embed: MutexGuard<'a, Box<Embed<V, T, E>>>,
    layers: [BlockGradGuard<'a, E, F>; L],
}

impl<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize>
    Grad<V, T, E, F, L>
{
    /// A zero gradient.
    fn new() -> Result<Self> {
        let mut layers = Vec::with_capacity(L);
        for _ in 0..L {
            layers.push(BlockGrad::new()?);
        }
        let Ok(layers) = <[_; L]>::try_from(layers) else {
            unreachable!("L layers")
        };
        Ok(Grad {
            embed: Mutex::new(zeroed_box()?),
            layers,
        })
    }

    fn lock(&self) -> GradGuard<'_, V, T, E, F, L> {
        GradGuard {
            embed: lock(&self.embed),
            layers: std::array::from_fn(|l| self.layers[l].lock()),
        }
    }
}

impl<const V: usize, const T: usize, const E: usize> Embed<V, T, E> {
    /// Zeroes the gradients a backward adds into, the embedding tables: every other gradient
    /// tensor (`lm_head` and the blocks' matrices) it writes over ([`ops::Put::Set`]), so
    /// they need no zeroing between steps.
    fn zero_tables(&mut self) {
        self.wte.as_flattened_mut().fill(0.0);
        self.wpe.as_flattened_mut().fill(0.0);
    }
}

/// A gradient part as one slice.
trait Flat {
    fn flat(&self) -> &[f64];
    fn flat_mut(&mut self) -> &mut [f64];
}

impl<const I: usize, const O: usize> Flat for [[f64; I]; O] {
    fn flat(&self) -> &[f64] {
        self.as_flattened()
    }
    fn flat_mut(&mut self) -> &mut [f64] {
        self.as_flattened_mut()
    }
}

impl<const E: usize> Flat for [[[f64; E]; E]; 4] {
    fn flat(&self) -> &[f64] {
        self.as_flattened().as_flattened()
    }
    fn flat_mut(&mut self) -> &mut [f64] {
        self.as_flattened_mut().as_flattened_mut()
    }
}

/// A part of a block ([`Block`]): what Adam updates from a gradient of type `Grad`.
trait BlockPart {
    type Grad: Flat;
    fn adam(&mut self, g: &Self::Grad, adam: &AdamStep);
}

impl<const I: usize, const O: usize> BlockPart for Param<I, O> {
    type Grad = [[f64; I]; O];
    fn adam(&mut self, g: &Self::Grad, adam: &AdamStep) {
        Param::adam(self, g, adam);
    }
}

impl<const E: usize> BlockPart for [Param<E, E>; 4] {
    type Grad = [[[f64; E]; E]; 4];
    fn adam(&mut self, g: &Self::Grad, adam: &AdamStep) {
        for (p, g) in self.iter_mut().zip(g) {
            p.adam(g, adam);
        }
    }
}

/// A block part's step: the groups' gradients `slots` added into the step's, `sum` (group
/// 0's), in group order, then (with `adam`) the update of `param`.
fn update_part<'a, P: BlockPart>(
    param: &RwLock<Box<P>>,
    sum: &'a Mutex<Box<P::Grad>>,
    slots: impl Iterator<Item = &'a Mutex<Box<P::Grad>>>,
    adam: Option<&AdamStep>,
) {
    let mut g = lock(sum);
    for slot in slots {
        add(g.flat_mut(), lock(slot).flat());
    }
    if let Some(adam) = adam {
        write(param).adam(&g, adam);
    }
}

/// `dst += src`, element by element.
fn add(dst: &mut [f64], src: &[f64]) {
    for (x, y) in dst.iter_mut().zip(src) {
        *x += *y;
    }
}

// ------------------------------------------------------------------------------------------
// Activations and buffers: one set per thread, rows 0..capacity

/// One position of one document: its input token and position, the token it predicts, the
/// weight of its cross-entropy in the step's loss (`1/(B·n)` for a document of `n`
/// positions in a batch of `B`) and the seed of its dropout masks ([`dropout::row_seed`]).
#[derive(Clone, Copy, Default)]
struct Row {
    token: usize,
    pos: usize,
    target: usize,
    dloss: f64,
    seed: u64,
}

/// One block's activations at every row, what its backward reads.
struct LayerActs<const T: usize, const E: usize, const H: usize, const F: usize> {
    /// rmsnorm before attention: output and reciprocal
    xn1: Vec<[f64; E]>,
    r1: Vec<f64>,
    /// queries, and this block's KV cache
    q: Vec<[f64; E]>,
    k: Vec<[f64; E]>,
    v: Vec<[f64; E]>,
    /// attention softmax weights: head, key position (0 after the row's position)
    att: Vec<[[f64; T]; H]>,
    /// head outputs concatenated (the input of `attn_wo`)
    ctx: Vec<[f64; E]>,
    /// rmsnorm before the MLP: output and reciprocal
    xn2: Vec<[f64; E]>,
    r2: Vec<f64>,
    /// ReLU output (the input of `mlp_fc2`)
    h: Vec<[f64; F]>,
    /// dropout masks of the attention and MLP outputs (only with dropout)
    m_attn: Vec<[f64; E]>,
    m_mlp: Vec<[f64; E]>,
}

/// The activation cache of a group of documents.
struct Acts<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
> {
    /// rmsnorm of the embedding (the first block's input) and its reciprocal
    xn0: Vec<[f64; E]>,
    r0: Vec<f64>,
    layers: [LayerActs<T, E, H, F>; L],
    /// residual stream after the last block (the input of `lm_head`)
    x_out: Vec<[f64; E]>,
    logits: Vec<[f64; V]>,
    /// softmax of the real logits (0 beyond the real vocabulary)
    probs: Vec<[f64; V]>,
    /// cross-entropy of each row
    ce: Vec<f64>,
}

/// Buffers that need not outlive a step: the forward's residual stream and pre-activations,
/// and every activation gradient of the backward, one row per position.
struct Scratch<const V: usize, const E: usize, const F: usize> {
    /// residual stream (forward)
    x: Vec<[f64; E]>,
    /// output of `attn_wo` or `mlp_fc2`, before it is added to the residual stream
    y: Vec<[f64; E]>,
    /// output of `mlp_fc1`, before the ReLU
    pre: Vec<[f64; F]>,
    dlogits: Vec<[f64; V]>,
    /// gradient of the residual stream at the current point of the backward
    dx: Vec<[f64; E]>,
    dh: Vec<[f64; F]>,
    dpre: Vec<[f64; F]>,
    /// gradient of an rmsnorm's output (xn2, then xn1)
    dxn: Vec<[f64; E]>,
    /// gradient of a dropped-out branch output, before its mask (only with dropout)
    dy: Vec<[f64; E]>,
    dctx: Vec<[f64; E]>,
    dq: Vec<[f64; E]>,
    /// gradients of the block's keys and values: later queries add into earlier rows
    dk: Vec<[f64; E]>,
    dv: Vec<[f64; E]>,
}

/// What one thread computes a group (or a sequence, in inference) with.
struct Buffers<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
> {
    a: Acts<V, T, E, H, F, L>,
    s: Scratch<V, E, F>,
}

/// The `T` rows of keys (or values) starting at a document's first row: what attention reads
/// at any position of that document. The buffers have `T` rows beyond the last row a group
/// can use, so the view always exists.
fn doc_rows<const T: usize, const E: usize>(rows: &[[f64; E]], first: usize) -> &[[f64; E]; T] {
    rows[first..first + T].try_into().expect("T rows")
}

fn doc_rows_mut<const T: usize, const E: usize>(
    rows: &mut [[f64; E]],
    first: usize,
) -> &mut [[f64; E]; T] {
    (&mut rows[first..first + T]).try_into().expect("T rows")
}

impl<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
> Buffers<V, T, E, H, D, F, L>
{
    /// Rows a thread's buffers hold: a group has fewer than `max(GROUP_ROWS, T) + T` rows
    /// (its documents start within `rows/groups ≤ max(GROUP_ROWS, T)` rows of each other and
    /// are at most `T` long), and attention views `T` rows from a document's first.
    const CAPACITY: usize = if GROUP_ROWS > T { GROUP_ROWS } else { T } + 2 * T;

    fn new() -> Self {
        // zeroed allocations: `vec![[0.0; E]; n]` clones an array per row, which costs LLVM
        // seconds per shape to optimize
        fn rows<X: Zeroable + Copy>(n: usize) -> Vec<X> {
            bytemuck::zeroed_vec(n)
        }
        let n = Self::CAPACITY;
        let layer = || LayerActs {
            xn1: rows(n),
            r1: rows(n),
            q: rows(n),
            k: rows(n),
            v: rows(n),
            att: rows(n),
            ctx: rows(n),
            xn2: rows(n),
            r2: rows(n),
            h: rows(n),
            m_attn: rows(n),
            m_mlp: rows(n),
        };
        Buffers {
            a: Acts {
                xn0: rows(n),
                r0: rows(n),
                layers: std::array::from_fn(|_| layer()),
                x_out: rows(n),
                logits: rows(n),
                probs: rows(n),
                ce: rows(n),
            },
            s: Scratch {
                x: rows(n),
                y: rows(n),
                pre: rows(n),
                dlogits: rows(n),
                dx: rows(n),
                dh: rows(n),
                dpre: rows(n),
                dxn: rows(n),
                dy: rows(n),
                dctx: rows(n),
                dq: rows(n),
                dk: rows(n),
                dv: rows(n),
            },
        }
    }

    /// Forward of `rows` into buffer rows `start..start + rows.len()`, one op at a time over
    /// all of them, given the KV cache of the earlier rows of their documents; fills the
    /// activation cache and the logits. With `dropout`, every block's attention and MLP
    /// outputs are masked ([`crate::dropout`]) and the masks kept.
    fn forward(
        &mut self,
        p: &ParamsGuard<'_, V, T, E, F, L>,
        rows: &[Row],
        start: usize,
        dropout: Option<&Dropout>,
    ) {
        let (a, s) = (&mut self.a, &mut self.s);
        let w = &p.embed.w;
        let end = start + rows.len();
        // x = wte[token] + wpe[pos]; x = rmsnorm(x)
        for (r, row) in (start..end).zip(rows) {
            let mut emb = [0.0; E];
            ops::embedding_forward(&mut emb, row.token, row.pos, &w.wte, &w.wpe);
            a.r0[r] = ops::rmsnorm_forward(&mut a.xn0[r], &emb);
            s.x[r] = a.xn0[r];
        }
        let blocks = p.blocks.iter().zip(a.layers.iter_mut()).enumerate();
        for (l, (bp, la)) in blocks {
            let (attn, fc1, fc2) = (&bp.attn, &bp.fc1, &bp.fc2);
            // attention: x = Wo·attn(rmsnorm(x)) + x
            for r in start..end {
                la.r1[r] = ops::rmsnorm_forward(&mut la.xn1[r], &s.x[r]);
            }
            let xn1 = &la.xn1[start..end];
            ops::linear_forward(&mut la.q[start..end], xn1, &attn[WQ].t);
            ops::linear_forward(&mut la.k[start..end], xn1, &attn[WK].t);
            ops::linear_forward(&mut la.v[start..end], xn1, &attn[WV].t);
            for (r, row) in (start..end).zip(rows) {
                let first = r - row.pos;
                ops::attention_forward::<T, E, H, D>(
                    &mut la.ctx[r],
                    &mut la.att[r],
                    &la.q[r],
                    doc_rows(&la.k, first),
                    doc_rows(&la.v, first),
                    row.pos,
                );
            }
            ops::linear_forward(&mut s.y[start..end], &la.ctx[start..end], &attn[WO].t);
            if let Some(d) = dropout {
                for (r, row) in (start..end).zip(rows) {
                    d.fill(&mut la.m_attn[r], row.seed, dropout::attn_site(l));
                    ops::dropout_forward(&mut s.y[r], &la.m_attn[r]);
                }
            }
            for r in start..end {
                let x_in = s.x[r];
                ops::residual_forward(&mut s.x[r], &s.y[r], &x_in);
            }
            // MLP: x = fc2·relu(fc1·rmsnorm(x)) + x
            for r in start..end {
                la.r2[r] = ops::rmsnorm_forward(&mut la.xn2[r], &s.x[r]);
            }
            ops::linear_forward(&mut s.pre[start..end], &la.xn2[start..end], &fc1.t);
            for r in start..end {
                ops::relu_forward(&mut la.h[r], &s.pre[r]);
            }
            ops::linear_forward(&mut s.y[start..end], &la.h[start..end], &fc2.t);
            if let Some(d) = dropout {
                for (r, row) in (start..end).zip(rows) {
                    d.fill(&mut la.m_mlp[r], row.seed, dropout::mlp_site(l));
                    ops::dropout_forward(&mut s.y[r], &la.m_mlp[r]);
                }
            }
            for r in start..end {
                let x_mid = s.x[r];
                ops::residual_forward(&mut s.x[r], &s.y[r], &x_mid);
            }
        }
        // logits = lm_head·x (no final norm)
        a.x_out[start..end].copy_from_slice(&s.x[start..end]);
        ops::linear_forward(
            &mut a.logits[start..end],
            &a.x_out[start..end],
            &p.embed.lm_head_t,
        );
    }

    /// The cross-entropy of each of rows `0..rows.len()` (after [`Buffers::forward`]), into
    /// `a.ce`, caching the probabilities for the backward.
    fn cross_entropy(&mut self, rows: &[Row], vocab: usize) {
        let a = &mut self.a;
        for (r, row) in rows.iter().enumerate() {
            a.ce[r] = ops::cross_entropy_forward(&mut a.probs[r], &a.logits[r], row.target, vocab);
        }
    }

    /// Backward of `Σ_rows dloss·cross-entropy` over rows `0..rows.len()` into `g`, whose
    /// embedding tables the caller zeroed (the other tensors are written over, see
    /// [`Embed::zero_tables`]): the ops in reverse, each over all rows. The attention backward
    /// of every query adds into the gradients of the keys and values it saw (earlier rows of
    /// its document) before those reach `attn_wk` and `attn_wv`. `dropout`: whether the
    /// forward dropped out (its masks are in the activation cache).
    ///
    /// The locks are taken by value and released part by part as the backward leaves them —
    /// each part of a block ([`Block`]: `mlp_fc2`, `mlp_fc1`, the attention) once its
    /// matrices' gradients are written, from the last block down, the embeddings and head
    /// at the end — calling `done(part)` after each (numbered as in [`part`]), so that other
    /// threads can sum and update a part while this backward goes on below it.
    fn backward(
        &mut self,
        p: ParamsGuard<'_, V, T, E, F, L>,
        g: GradGuard<'_, V, T, E, F, L>,
        rows: &[Row],
        vocab: usize,
        dropout: bool,
        mut done: impl FnMut(usize),
    ) {
        let (a, s) = (&self.a, &mut self.s);
        let ParamsGuard { embed: pe, blocks } = p;
        let GradGuard {
            embed: mut ge,
            layers,
        } = g;
        let n = rows.len();
        for (r, row) in rows.iter().enumerate() {
            s.dlogits[r] = [0.0; V];
            ops::cross_entropy_backward(
                &mut s.dlogits[r],
                &a.probs[r],
                row.target,
                vocab,
                row.dloss,
            );
        }
        ops::linear_backward(
            &mut s.dx[..n],
            &mut ge.lm_head,
            &s.dlogits[..n],
            &a.x_out[..n],
            &pe.w.lm_head,
            Set,
            Set,
        );
        let blocks = blocks.into_iter().zip(layers).zip(&a.layers).enumerate();
        for (l, ((bp, lg), la)) in blocks.rev() {
            let BlockRead { fc2, fc1, attn } = bp;
            let BlockGradGuard {
                fc2: mut g2,
                fc1: mut g1,
                attn: mut ga,
            } = lg;
            // MLP: x_out = drop(fc2·relu(fc1·xn2)) + x_mid with xn2 = rmsnorm(x_mid). The
            // residual hands dx to both branches, so dx is the MLP output's gradient as it
            // stands (through its mask, with dropout) and becomes dx_mid once the rmsnorm's
            // share is added into it.
            let dy = through_mask(&mut s.dy[..n], &s.dx[..n], &la.m_mlp[..n], dropout);
            ops::linear_backward(&mut s.dh[..n], &mut g2, dy, &la.h[..n], &fc2.w, Set, Set);
            drop((fc2, g2));
            done(3 * l + FC2);
            for r in 0..n {
                s.dpre[r] = [0.0; F];
                ops::relu_backward(&mut s.dpre[r], &s.dh[r], &la.h[r]);
            }
            ops::linear_backward(
                &mut s.dxn[..n],
                &mut g1,
                &s.dpre[..n],
                &la.xn2[..n],
                &fc1.w,
                Set,
                Set,
            );
            drop((fc1, g1));
            done(3 * l + FC1);
            for r in 0..n {
                ops::rmsnorm_backward(&mut s.dx[r], &s.dxn[r], &la.xn2[r], la.r2[r]);
            }
            // attention: x_mid = drop(Wo·ctx) + x_in with ctx from xn1 = rmsnorm(x_in),
            // likewise
            let dy = through_mask(&mut s.dy[..n], &s.dx[..n], &la.m_attn[..n], dropout);
            ops::linear_backward(
                &mut s.dctx[..n],
                &mut ga[WO],
                dy,
                &la.ctx[..n],
                &attn[WO].w,
                Set,
                Set,
            );
            s.dq[..n].fill([0.0; E]);
            s.dk[..n].fill([0.0; E]);
            s.dv[..n].fill([0.0; E]);
            for (r, row) in rows.iter().enumerate() {
                let first = r - row.pos;
                ops::attention_backward::<T, E, H, D>(
                    &mut s.dq[r],
                    doc_rows_mut(&mut s.dk, first),
                    doc_rows_mut(&mut s.dv, first),
                    &s.dctx[r],
                    &la.att[r],
                    &la.q[r],
                    doc_rows(&la.k, first),
                    doc_rows(&la.v, first),
                    row.pos,
                );
            }
            // dxn: the three projections' shares, the first written, the others added
            let xn1 = &la.xn1[..n];
            ops::linear_backward(
                &mut s.dxn[..n],
                &mut ga[WQ],
                &s.dq[..n],
                xn1,
                &attn[WQ].w,
                Set,
                Set,
            );
            ops::linear_backward(
                &mut s.dxn[..n],
                &mut ga[WK],
                &s.dk[..n],
                xn1,
                &attn[WK].w,
                Add,
                Set,
            );
            ops::linear_backward(
                &mut s.dxn[..n],
                &mut ga[WV],
                &s.dv[..n],
                xn1,
                &attn[WV].w,
                Add,
                Set,
            );
            for r in 0..n {
                ops::rmsnorm_backward(&mut s.dx[r], &s.dxn[r], &la.xn1[r], la.r1[r]);
            }
            drop((attn, ga));
            done(3 * l + ATTN);
        }
        // x = rmsnorm(wte[token] + wpe[pos])
        let ge_tables = &mut **ge;
        for (r, row) in rows.iter().enumerate() {
            let mut demb = [0.0; E];
            ops::rmsnorm_backward(&mut demb, &s.dx[r], &a.xn0[r], a.r0[r]);
            ops::embedding_backward(
                &mut ge_tables.wte,
                &mut ge_tables.wpe,
                &demb,
                row.token,
                row.pos,
            );
        }
        drop((pe, ge));
        done(3 * L);
    }
}

/// The gradient of a branch output before its dropout mask: `dx ⊙ mask` into `dy` when the
/// forward dropped out, else `dx` itself (no copy).
fn through_mask<'a, const E: usize>(
    dy: &'a mut [[f64; E]],
    dx: &'a [[f64; E]],
    masks: &[[f64; E]],
    dropout: bool,
) -> &'a [[f64; E]] {
    if !dropout {
        return dx;
    }
    for ((d, g), m) in dy.iter_mut().zip(dx).zip(masks) {
        ops::dropout_backward(d, g, m);
    }
    dy
}

// ------------------------------------------------------------------------------------------
// The shared state and a step's work

/// A step as the threads see it: written by the caller before a run, read during it.
struct Batch<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize> {
    /// every position of every document, document after document
    rows: Vec<Row>,
    /// the rows of each document
    docs: Vec<Range<usize>>,
    /// the documents of each group (possibly none)
    groups: Vec<Range<usize>>,
    /// the groups in the order the threads claim them: most rows first, so that the last
    /// ones claimed, whose ends decide when the threads meet, are the shortest (ties in
    /// group order). Modelled with a group's time proportional to its rows, over 2,000 of
    /// names.txt's batches of 32 (4 groups, 2 threads), this halves the mean time a thread
    /// waits for the other, from 2.3% to 1.3% of the groups' work; that is below what this
    /// machine's noise lets a benchmark see. The order does not change any result.
    claims: Vec<usize>,
    /// the gradient of group `g ≥ 1` is `slots[g − 1]`, whose embedding tables are zero
    /// between steps (allocated zeroed, zeroed again as they are added; the backward writes
    /// over every other tensor); group 0's goes straight into the step's gradient, whose
    /// tables are zeroed first
    slots: Vec<Grad<V, T, E, F, L>>,
    /// whether the groups run backward (else only the forward and the losses)
    backward: bool,
    /// the groups that run backward: those with documents, if `backward`
    filled: usize,
    /// the Adam update after the gradient, if any
    adam: Option<AdamStep>,
    /// dropout in the forward and backward, if any (only when the groups run backward)
    dropout: Option<Dropout>,
}

/// Everything the threads share.
struct State<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
> {
    vocab: usize,
    embed: RwLock<Box<EmbedPart<V, T, E>>>,
    blocks: [Block<E, F>; L],
    /// the mean gradient of the last step
    grad: Grad<V, T, E, F, L>,
    batch: RwLock<Batch<V, T, E, F, L>>,
    /// the loss of each document of the batch
    doc_loss: Mutex<Vec<f64>>,
    /// the next group to claim (an index into `claims`), and the next parameter part to
    /// claim (see [`part`])
    next_group: AtomicUsize,
    next_part: AtomicUsize,
    /// per part (numbered as in [`part`]), the groups whose backward has left it
    done: Box<[AtomicUsize]>,
    /// a thread panicked during the step (see [`AbortOnPanic`])
    abort: AtomicBool,
}

impl<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
> State<V, T, E, H, D, F, L>
{
    fn read_params(&self) -> ParamsGuard<'_, V, T, E, F, L> {
        ParamsGuard {
            embed: read(&self.embed),
            blocks: std::array::from_fn(|l| self.blocks[l].read()),
        }
    }

    /// Claims groups until none is left; for each, forward, the documents' losses and
    /// backward into the group's gradient, marking each part of it done as the backward
    /// leaves it.
    fn work_groups(&self, buf: &mut Buffers<V, T, E, H, D, F, L>) {
        let job = read(&self.batch);
        let n_groups = job.groups.len();
        loop {
            let k = self.next_group.fetch_add(1, Ordering::Relaxed);
            if k >= n_groups {
                break;
            }
            let g = job.claims[k];
            let docs = job.groups[g].clone();
            if docs.is_empty() {
                continue;
            }
            let first = job.docs[docs.start].start;
            let rows = &job.rows[first..job.docs[docs.end - 1].end];
            let dropout = job.dropout.filter(|_| job.backward);
            let params = self.read_params();
            buf.forward(&params, rows, 0, dropout.as_ref());
            buf.cross_entropy(rows, self.vocab);
            {
                let mut losses = lock(&self.doc_loss);
                for j in docs {
                    let r = job.docs[j].start - first..job.docs[j].end - first;
                    let n = r.len();
                    let total: f64 = buf.a.ce[r].iter().sum();
                    losses[j] = (1.0 / n as f64) * total;
                }
            }
            if !job.backward {
                continue;
            }
            let grad = if g == 0 {
                let mut grad = self.grad.lock();
                grad.embed.zero_tables();
                grad
            } else {
                // its tables were zeroed as they were added (by `work_parts`)
                job.slots[g - 1].lock()
            };
            let done = |part: usize| {
                self.done[part].fetch_add(1, Ordering::Release);
            };
            buf.backward(params, grad, rows, self.vocab, dropout.is_some(), done);
        }
    }

    /// Claims parameter parts until none is left, in the order the backward finishes them
    /// ([`part`]). For each, waits until every group's backward has left it, adds the
    /// groups' gradients into the step's in group order (each element's sum in the same
    /// order, whichever thread adds it), then Adam updates the part. A thread that runs out
    /// of groups thus updates the top parts while the last groups are still below them,
    /// instead of waiting for them.
    fn work_parts(&self) {
        if self.next_part.load(Ordering::Relaxed) > 3 * L {
            return;
        }
        let job = read(&self.batch);
        // the slots of the groups after the first that have documents
        let slots = || {
            let groups = job.groups.iter().enumerate().skip(1);
            let filled = groups.filter(|(_, d)| job.backward && !d.is_empty());
            filled.map(|(g, _)| &job.slots[g - 1])
        };
        let (vocab, adam) = (self.vocab, job.adam.as_ref());
        loop {
            let claim = self.next_part.fetch_add(1, Ordering::Relaxed);
            if claim > 3 * L {
                break;
            }
            let part = part::<L>(claim);
            if !self.wait_done(part, job.filled) {
                return;
            }
            if part == 3 * L {
                let mut g = lock(&self.grad.embed);
                for slot in slots() {
                    let mut slot = lock(&slot.embed);
                    for (dst, src) in g.tensors_mut(vocab).into_iter().zip(slot.tensors(vocab)) {
                        add(dst, src);
                    }
                    slot.zero_tables();
                }
                if let Some(adam) = adam {
                    write(&self.embed).adam(&g, vocab, adam);
                }
                continue;
            }
            let l = part / 3;
            let (block, grad) = (&self.blocks[l], &self.grad.layers[l]);
            let slots = slots().map(|s| &s.layers[l]);
            match part % 3 {
                FC2 => update_part(&block.fc2, &grad.fc2, slots.map(|s| &s.fc2), adam),
                FC1 => update_part(&block.fc1, &grad.fc1, slots.map(|s| &s.fc1), adam),
                _ => update_part(&block.attn, &grad.attn, slots.map(|s| &s.attn), adam),
            }
        }
    }

    /// Waits until `groups` backwards have marked `part` done (spinning, then yielding the
    /// core); `false` if a thread panicked meanwhile, and the part will never be done.
    fn wait_done(&self, part: usize, groups: usize) -> bool {
        let mut spins = 0u32;
        while self.done[part].load(Ordering::Acquire) < groups {
            if self.abort.load(Ordering::Relaxed) {
                return false;
            }
            spins = spins.saturating_add(1);
            if spins < WAIT_SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        true
    }
}

/// Spins (≈ 21 ns each on the README's machine) a thread waits for a part before it yields
/// its core at every check: the part is usually done within microseconds, but a thread
/// that ran out of groups can wait for most of another group.
const WAIT_SPINS: u32 = 2000;

/// Sets the flag when dropped by a panicking thread, so that the threads waiting for its
/// parts give up the step instead of waiting forever (the crew re-raises the panic).
struct AbortOnPanic<'a>(&'a AtomicBool);

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
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
> Job for State<V, T, E, H, D, F, L>
{
    type Local = Buffers<V, T, E, H, D, F, L>;
    /// one phase: the groups, then the parameter parts, each waiting only for what it needs
    const PHASES: usize = 1;

    fn phase(&self, _phase: usize, local: &mut Self::Local) {
        let _abort = AbortOnPanic(&self.abort);
        self.work_groups(local);
        self.work_parts();
    }
}

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
> {
    state: Arc<State<V, T, E, H, D, F, L>>,
    /// the caller's buffers (the workers own theirs)
    own: Buffers<V, T, E, H, D, F, L>,
    /// the worker threads, if more than one thread computes a batch
    crew: Option<Crew<State<V, T, E, H, D, F, L>>>,
    /// dropout for the gradient steps, until changed ([`Gpt::set_dropout`])
    dropout: Option<Dropout>,
    /// a batch's loss is the mean over its positions ([`Gpt::set_token_mean`])
    token_mean: bool,
}

/// A boxed, zeroed `X`, allocated directly on the heap (never on the stack first).
fn zeroed_box<X: Zeroable>() -> Result<Box<X>> {
    bytemuck::try_zeroed_box().map_err(|_| {
        Error(format!(
            "cannot allocate {} bytes for the model",
            std::mem::size_of::<X>()
        ))
    })
}

/// Which per-parameter array of the blocks.
#[derive(Clone, Copy)]
enum Which {
    Params,
    AdamM,
    AdamV,
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
        let mut embed: Box<EmbedPart<V, T, E>> = zeroed_box()?;
        for t in embed.w.tensors_mut(vocab) {
            for p in t {
                *p = rng.gauss(0.0, INIT_STD);
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
            block.set_from(Which::Params, &mut &draws[..]);
            blocks.push(block);
        }
        let Ok(blocks) = <[Block<E, F>; L]>::try_from(blocks) else {
            unreachable!("L blocks")
        };
        let state = State {
            vocab,
            embed: RwLock::new(embed),
            blocks,
            grad: Grad::new()?,
            // room for one document, so that microgpt's steps never allocate
            batch: RwLock::new(Batch {
                rows: Vec::with_capacity(T),
                docs: Vec::with_capacity(1),
                groups: Vec::with_capacity(1),
                claims: Vec::with_capacity(1),
                slots: Vec::new(),
                backward: false,
                filled: 0,
                adam: None,
                dropout: None,
            }),
            doc_loss: Mutex::new(Vec::with_capacity(1)),
            next_group: AtomicUsize::new(0),
            next_part: AtomicUsize::new(0),
            done: (0..=3 * L).map(|_| AtomicUsize::new(0)).collect(),
            abort: AtomicBool::new(false),
        };
        Ok(Gpt {
            state: Arc::new(state),
            own: Buffers::new(),
            crew: None,
            dropout: None,
            token_mean: false,
        })
    }

    /// The real vocabulary size (BOS included).
    pub fn vocab(&self) -> usize {
        self.state.vocab
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
    /// caller and `n − 1` workers, spawned now and parked between steps. `n = 1` runs
    /// everything on the caller and spawns nothing. The results do not depend on `n`.
    pub fn set_threads(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            bail!("the number of threads must be at least 1");
        }
        if n == self.threads() {
            return Ok(());
        }
        // joins the old workers
        self.crew = None;
        if n > 1 {
            let locals = (1..n).map(|_| Buffers::new()).collect();
            self.crew = Some(Crew::spawn(Arc::clone(&self.state), locals)?);
        }
        Ok(())
    }

    /// The number of threads that compute a batch.
    pub fn threads(&self) -> usize {
        self.crew.as_ref().map_or(1, |c| c.workers() + 1)
    }

    /// How a batch's loss averages: `false` (microgpt's, the default) the mean over the
    /// documents of each document's mean over its positions; `true` (makemore's) the mean
    /// over all the batch's positions, so that every token weighs the same.
    pub fn set_token_mean(&mut self, token_mean: bool) {
        self.token_mean = token_mean;
    }

    /// Dropout for the following gradient steps ([`Gpt::loss_and_grad_batch`],
    /// [`Gpt::train_batch`]; the forward-only passes never drop out): `None` is microgpt's
    /// training. Its key says the step: set it before each step.
    pub fn set_dropout(&mut self, dropout: Option<Dropout>) {
        self.dropout = dropout;
    }

    /// Writes the step's batch for the threads: the rows of every document (truncated to `T`
    /// positions, each weighted `1/B · 1/n`, or `1/N` for a token mean over the batch's `N`
    /// positions), the groups, the gradient buffers they need, and
    /// the Adam step; resets the counters.
    fn post(&mut self, batch: &[&[usize]], backward: bool, adam: Option<AdamStep>) {
        let vocab = self.vocab();
        for tokens in batch {
            assert!(
                tokens.len() >= 2,
                "a document needs at least two tokens ([BOS] ... [BOS])"
            );
            let n = T.min(tokens.len() - 1);
            for &t in &tokens[..=n] {
                assert!(t < vocab, "token {t} is not in the vocabulary of {vocab}");
            }
        }
        let b = batch.len();
        let st = &*self.state;
        let mut job = write(&st.batch);
        let job = &mut *job;
        // capacity for any batch of this size: later steps reuse it
        job.rows.clear();
        job.rows.reserve(b * T);
        job.docs.clear();
        job.docs.reserve(b);
        let per_doc = 1.0 / b as f64;
        let positions: usize = batch.iter().map(|d| T.min(d.len() - 1)).sum();
        let per_token = 1.0 / positions as f64;
        let dropout = self.dropout.filter(|_| backward);
        let key = dropout.map_or(0, |d| d.key);
        for (j, tokens) in batch.iter().enumerate() {
            let n = T.min(tokens.len() - 1);
            let first = job.rows.len();
            let dloss = if self.token_mean {
                per_token
            } else {
                per_doc * (1.0 / n as f64)
            };
            job.rows.extend((0..n).map(|pos| Row {
                token: tokens[pos],
                pos,
                target: tokens[pos + 1],
                dloss,
                seed: if dropout.is_some() {
                    dropout::row_seed(key, j, pos)
                } else {
                    0
                },
            }));
            job.docs.push(first..first + n);
        }
        // document j, starting at row c_j, goes to group ⌊c_j·G/R⌋
        let total = job.rows.len();
        let groups = num_groups(b, total);
        job.groups.clear();
        job.groups.reserve(b);
        let mut next = 0;
        for g in 0..groups {
            let first = next;
            while next < b && job.docs[next].start * groups / total == g {
                next += 1;
            }
            if next > first {
                // the bound `Buffers::CAPACITY` is computed from
                let rows = job.docs[next - 1].end - job.docs[first].start;
                assert!(rows + T <= Buffers::<V, T, E, H, D, F, L>::CAPACITY);
            }
            job.groups.push(first..next);
        }
        job.claims.clear();
        job.claims.reserve(b);
        job.claims.extend(0..groups);
        let (docs, spans) = (&job.docs, &job.groups);
        let rows = |g: usize| spans[g].clone().map(|j| docs[j].len()).sum::<usize>();
        // the keys are distinct, so the unstable sort (which never allocates) is deterministic
        job.claims
            .sort_unstable_by_key(|&g| (std::cmp::Reverse(rows(g)), g));
        let most = if backward { num_groups(b, b * T) } else { 0 };
        while job.slots.len() + 1 < most {
            let slot = Grad::new().expect("memory for a gradient buffer");
            job.slots.push(slot);
        }
        job.backward = backward;
        job.filled = if backward {
            job.groups.iter().filter(|d| !d.is_empty()).count()
        } else {
            0
        };
        job.adam = adam;
        job.dropout = dropout;
        let mut losses = lock(&st.doc_loss);
        losses.clear();
        losses.reserve(b);
        losses.resize(b, 0.0);
        st.next_group.store(0, Ordering::Relaxed);
        for d in &st.done {
            d.store(0, Ordering::Relaxed);
        }
        st.abort.store(false, Ordering::Relaxed);
        // the parts are summed and updated when there is either to do
        let first_part = if adam.is_some() || (backward && groups > 1) {
            0
        } else {
            3 * L + 1
        };
        st.next_part.store(first_part, Ordering::Relaxed);
    }

    /// Runs the posted step on every thread.
    fn run(&mut self) {
        match &self.crew {
            Some(crew) => crew.run(&mut self.own),
            None => {
                for phase in 0..<State<V, T, E, H, D, F, L> as Job>::PHASES {
                    self.state.phase(phase, &mut self.own);
                }
            }
        }
    }

    /// Posts and runs a step; returns the mean of the documents' losses (in document order),
    /// or with [`Gpt::set_token_mean`] their mean weighted by their positions.
    fn step(&mut self, batch: &[&[usize]], adam: Option<AdamStep>) -> f64 {
        self.post(batch, true, adam);
        self.run();
        let losses = lock(&self.state.doc_loss);
        if self.token_mean {
            let n = |d: &[usize]| T.min(d.len() - 1) as f64;
            let total: f64 = losses.iter().zip(batch).map(|(l, d)| l * n(d)).sum();
            let positions: f64 = batch.iter().map(|d| n(d)).sum();
            total / positions
        } else {
            let total: f64 = losses.iter().sum();
            total * (1.0 / batch.len() as f64)
        }
    }

    /// The gradient of the mean loss over a minibatch — the mean of the documents'
    /// gradients, each document's loss the mean over its positions — into [`Gpt::grads_flat`];
    /// returns the mean loss.
    pub fn loss_and_grad_batch(&mut self, batch: &[&[usize]]) -> f64 {
        assert!(!batch.is_empty(), "an empty batch");
        self.step(batch, None)
    }

    /// One step on a minibatch: [`Gpt::loss_and_grad_batch`], then one Adam update. Returns
    /// the mean loss.
    pub fn train_batch(&mut self, batch: &[&[usize]], adam: &AdamStep) -> f64 {
        assert!(!batch.is_empty(), "an empty batch");
        self.step(batch, Some(*adam))
    }

    /// Zeroes the gradients, runs forward and backward over the document `tokens`
    /// (`[BOS] ids [BOS]`, truncated to `T` positions like microgpt.py) and returns the mean
    /// loss `(1/n)·Σ −ln p(target)`.
    pub fn loss_and_grad(&mut self, tokens: &[usize]) -> f64 {
        self.loss_and_grad_batch(&[tokens])
    }

    /// One Adam update of every tensor's real rows from the current gradients.
    pub fn adam_update(&mut self, adam: &AdamStep) {
        self.post(&[], false, Some(*adam));
        self.run();
    }

    /// The loss of each document of `batch` (the mean cross-entropy over its positions) into
    /// `out`, forward only: like [`Gpt::loss`] per document, but the documents in groups on
    /// every thread, which is what a validation pass wants. The gradients are left as they
    /// are.
    pub fn losses(&mut self, batch: &[&[usize]], out: &mut [f64]) {
        assert_eq!(batch.len(), out.len(), "one loss per document");
        self.post(batch, false, None);
        self.run();
        out.copy_from_slice(&lock(&self.state.doc_loss));
    }

    /// [`Gpt::loss_and_grad`] then [`Gpt::adam_update`]; returns the loss.
    pub fn train_step(&mut self, tokens: &[usize], adam: &AdamStep) -> f64 {
        self.train_batch(&[tokens], adam)
    }

    /// The loss of one document (mean cross-entropy over its positions), forward only, on
    /// the caller's thread.
    pub fn loss(&mut self, tokens: &[usize]) -> f64 {
        assert!(tokens.len() >= 2, "a document needs at least two tokens");
        let vocab = self.vocab();
        let n = T.min(tokens.len() - 1);
        let mut rows = [Row::default(); T];
        for (pos, row) in rows[..n].iter_mut().enumerate() {
            assert!(
                tokens[pos] < vocab && tokens[pos + 1] < vocab,
                "token out of vocabulary"
            );
            *row = Row {
                token: tokens[pos],
                pos,
                target: tokens[pos + 1],
                ..Row::default()
            };
        }
        let guard = self.state.read_params();
        self.own.forward(&guard, &rows[..n], 0, None);
        self.own.cross_entropy(&rows[..n], vocab);
        let total: f64 = self.own.a.ce[..n].iter().sum();
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
        let guard = self.state.read_params();
        self.own.forward(&guard, &[row], pos, None);
        &self.own.a.logits[pos][..vocab]
    }

    /// The per-parameter arrays `which` of every block, in [`Shape::tensors`] order.
    fn flat(&self, which: Which) -> Vec<f64> {
        let vocab = self.vocab();
        let guard = self.state.read_params();
        let mut out = Vec::with_capacity(self.num_params());
        let e = &guard.embed;
        let embed = match which {
            Which::Params => &e.w,
            Which::AdamM => &e.m,
            Which::AdamV => &e.v,
        };
        for t in embed.tensors(vocab) {
            out.extend_from_slice(t);
        }
        for b in &guard.blocks {
            for t in b.tensors(which) {
                out.extend_from_slice(t);
            }
        }
        out
    }

    /// Replaces the per-parameter arrays `which` from a vector laid out like
    /// [`Gpt::params_flat`] (whose length the caller has checked).
    fn set_flat(&mut self, which: Which, flat: &[f64]) {
        let vocab = self.vocab();
        let mut rest = flat;
        let mut e = write(&self.state.embed);
        let embed = match which {
            Which::Params => &mut e.w,
            Which::AdamM => &mut e.m,
            Which::AdamV => &mut e.v,
        };
        for t in embed.tensors_mut(vocab) {
            take(t, &mut rest);
        }
        e.refresh();
        for b in &self.state.blocks {
            b.set_from(which, &mut rest);
        }
    }

    /// All parameters in one vector, in [`Shape::tensors`] order and layout.
    pub fn params_flat(&self) -> Vec<f64> {
        self.flat(Which::Params)
    }

    /// The gradient of the last [`Gpt::loss_and_grad`] or step, like [`Gpt::params_flat`].
    pub fn grads_flat(&self) -> Vec<f64> {
        let vocab = self.vocab();
        let g = self.state.grad.lock();
        let mut out = Vec::with_capacity(self.num_params());
        for t in g.embed.tensors(vocab) {
            out.extend_from_slice(t);
        }
        for l in &g.layers {
            for t in l.tensors() {
                out.extend_from_slice(t);
            }
        }
        out
    }

    /// A copy of the weights (all `V` rows; rows from `vocab` on are 0).
    pub fn weights(&self) -> Box<Weights<V, T, E, F, L>> {
        let mut w: Box<Weights<V, T, E, F, L>> = zeroed_box().expect("memory for a copy");
        let guard = self.state.read_params();
        let e = &guard.embed.w;
        let embed = [&mut w.wte[..], &mut w.lm_head[..]];
        for (dst, src) in embed.into_iter().zip([&e.wte[..], &e.lm_head[..]]) {
            dst.as_flattened_mut().copy_from_slice(src.as_flattened());
        }
        w.wpe
            .as_flattened_mut()
            .copy_from_slice(e.wpe.as_flattened());
        for (l, b) in w.layers.iter_mut().zip(&guard.blocks) {
            for (dst, src) in l.tensors_mut().into_iter().zip(b.tensors(Which::Params)) {
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
        self.set_flat(Which::Params, flat);
        Ok(())
    }

    /// Adam's moments `(m, v)`, each laid out like [`Gpt::params_flat`].
    pub fn adam_flat(&self) -> (Vec<f64>, Vec<f64>) {
        (self.flat(Which::AdamM), self.flat(Which::AdamV))
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
        self.set_flat(Which::AdamM, m);
        self.set_flat(Which::AdamV, v);
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// A preset in every compiled vocabulary bucket

/// `vocab_buckets!` defines an enum over one configuration compiled for several vocabulary
/// sizes (`Variant(Alias) = V`, smallest first): the constructor picks the smallest bucket
/// that holds the real vocabulary, and every method forwards to the model in it.
macro_rules! vocab_buckets {
    (
        $(#[$doc:meta])*
        pub enum $name:ident = $preset:literal {
            $($variant:ident($alias:ty) = $bucket:literal),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        pub enum $name {
            $($variant($alias)),+
        }

        // each variant's alias is compiled for the vocabulary its name says
        $(const _: () = assert!(<$alias>::V == $bucket);)+

        impl $name {
            /// The configuration's name, as `--model` spells it.
            pub const PRESET: &'static str = $preset;

            /// The compiled vocabulary sizes, smallest first.
            pub const BUCKETS: &'static [usize] = &[$($bucket),+];

            /// The model for a real vocabulary of `vocab` tokens, in the smallest bucket that
            /// fits; the initial weights are those of the exact-vocab model from the same
            /// `rng`.
            pub fn new(vocab: usize, rng: &mut Rng) -> Result<$name> {
                $(
                    if vocab <= $bucket {
                        return Ok($name::$variant(<$alias>::new(vocab, rng)?));
                    }
                )+
                bail!(
                    "the vocabulary has {vocab} tokens but the largest compiled vocabulary of model {} holds {}",
                    $preset,
                    Self::BUCKETS[Self::BUCKETS.len() - 1]
                )
            }

            /// The compiled vocabulary size `V` of the bucket in use.
            pub fn bucket(&self) -> usize {
                match self { $($name::$variant(_) => $bucket),+ }
            }

            pub fn vocab(&self) -> usize {
                match self { $($name::$variant(m) => m.vocab()),+ }
            }

            pub fn shape(&self) -> Shape {
                match self { $($name::$variant(m) => m.shape()),+ }
            }

            pub fn num_params(&self) -> usize {
                match self { $($name::$variant(m) => m.num_params()),+ }
            }

            pub fn set_threads(&mut self, n: usize) -> Result<()> {
                match self { $($name::$variant(m) => m.set_threads(n)),+ }
            }

            pub fn threads(&self) -> usize {
                match self { $($name::$variant(m) => m.threads()),+ }
            }

            pub fn set_token_mean(&mut self, token_mean: bool) {
                match self { $($name::$variant(m) => m.set_token_mean(token_mean)),+ }
            }

            pub fn set_dropout(&mut self, dropout: Option<crate::dropout::Dropout>) {
                match self { $($name::$variant(m) => m.set_dropout(dropout)),+ }
            }

            pub fn loss_and_grad(&mut self, tokens: &[usize]) -> f64 {
                match self { $($name::$variant(m) => m.loss_and_grad(tokens)),+ }
            }

            pub fn loss_and_grad_batch(&mut self, batch: &[&[usize]]) -> f64 {
                match self { $($name::$variant(m) => m.loss_and_grad_batch(batch)),+ }
            }

            pub fn train_step(&mut self, tokens: &[usize], adam: &AdamStep) -> f64 {
                match self { $($name::$variant(m) => m.train_step(tokens, adam)),+ }
            }

            pub fn train_batch(&mut self, batch: &[&[usize]], adam: &AdamStep) -> f64 {
                match self { $($name::$variant(m) => m.train_batch(batch, adam)),+ }
            }

            pub fn adam_update(&mut self, adam: &AdamStep) {
                match self { $($name::$variant(m) => m.adam_update(adam)),+ }
            }

            pub fn loss(&mut self, tokens: &[usize]) -> f64 {
                match self { $($name::$variant(m) => m.loss(tokens)),+ }
            }

            pub fn losses(&mut self, batch: &[&[usize]], out: &mut [f64]) {
                match self { $($name::$variant(m) => m.losses(batch, out)),+ }
            }

            pub fn forward_token(&mut self, token: usize, pos: usize) -> &[f64] {
                match self { $($name::$variant(m) => m.forward_token(token, pos)),+ }
            }

            pub fn params_flat(&self) -> Vec<f64> {
                match self { $($name::$variant(m) => m.params_flat()),+ }
            }

            pub fn grads_flat(&self) -> Vec<f64> {
                match self { $($name::$variant(m) => m.grads_flat()),+ }
            }

            pub fn set_params_flat(&mut self, flat: &[f64]) -> Result<()> {
                match self { $($name::$variant(m) => m.set_params_flat(flat)),+ }
            }

            pub fn adam_flat(&self) -> (Vec<f64>, Vec<f64>) {
                match self { $($name::$variant(m) => m.adam_flat()),+ }
            }

            pub fn set_adam_flat(&mut self, m: &[f64], v: &[f64]) -> Result<()> {
                match self { $($name::$variant(g) => g.set_adam_flat(m, v)),+ }
            }
        }
    };
}

vocab_buckets! {
    /// The micro model in the smallest compiled vocabulary bucket that holds the real
    /// vocabulary: what the CLI trains on an arbitrary text file.
    pub enum MicroGpt = "micro" {
        V27(crate::presets::Micro) = 27,
        V64(crate::presets::Micro64) = 64,
        V128(crate::presets::Micro128) = 128,
        V256(crate::presets::Micro256) = 256,
    }
}

vocab_buckets! {
    /// The small model (4 layers, n_embd 64) in the smallest compiled vocabulary bucket that
    /// holds the real vocabulary.
    pub enum SmallGpt = "small" {
        V27(crate::presets::Small) = 27,
        V64(crate::presets::Small64) = 64,
        V128(crate::presets::Small128) = 128,
        V256(crate::presets::Small256) = 256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::Adam;

    type Micro = Gpt<27, 16, 16, 4, 4, 64, 1>;

    /// Every part is claimed exactly once, in the order the backward leaves them: block by
    /// block from the last, `mlp_fc2`, `mlp_fc1`, the attention, then the embeddings and head.
    #[test]
    fn the_parts_are_claimed_in_the_order_the_backward_leaves_them() {
        let claims: Vec<usize> = (0..=3 * 4).map(part::<4>).collect();
        let expected = [9, 10, 11, 6, 7, 8, 3, 4, 5, 0, 1, 2, 12];
        assert_eq!(claims, expected);
        let one: Vec<usize> = (0..=3).map(part::<1>).collect();
        assert_eq!(one, [0, 1, 2, 3]);
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
            m.post(&batch, true, Some(Adam::default().at(0, 10)));
            {
                let mut job = write(&m.state.batch);
                assert_eq!(job.groups.len(), 4);
                // the second group's first token is beyond the tables: its forward panics
                let row = job.docs[job.groups[1].start].start;
                job.rows[row].token = 1000;
            }
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.run()));
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
