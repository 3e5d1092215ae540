//! A minibatch step on several threads: the documents in groups, each group one
//! [`forward`] and [`backward`] into its own gradient, then the groups' gradients summed and
//! Adam's update, part by part, as soon as every backward has left the part. This module
//! alone knows of locks, counters and the crew ([`crate::parallel`]); the maths is in
//! [`super::pass`].
//!
//! The documents are cut into groups of consecutive documents of about [`GROUP_ROWS`] rows
//! (a function of the batch alone, never of the thread count). Each document's loss is
//! scaled by `1/B`. Then, part by part ([`Part`]: three per block — `mlp_fc2`, `mlp_fc1`, the
//! attention — from the last block down, then the embeddings and head), the group gradients
//! are summed in group order — the gradient is the mean of the documents' gradients — and
//! Adam updates the part. Groups and parts are claimed by the caller and the worker threads
//! from atomic counters, in one phase: a thread that runs out of groups goes on to the parts
//! that every group's backward has left while the last groups are still running below them.
//! Since every sum has a fixed order, the result is bit-identical for any number of threads.
//!
//! A batch of one document (microgpt's step) is one group with nothing to sum: it runs on the
//! caller alone ([`Shared::run_alone`]), every part locked for the step and updated as soon as
//! the backward leaves it, with the same bits; or, on two threads and in a model of at least
//! [`SPLIT_MIN_PARAMS`], split between them by parts of the model, the attention on one and
//! the MLPs and head on the other, each updating its parts while the other goes on
//! ([`Shared::split_side`]), with the same bits again.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::acts::Buffers;
use super::kernels::Float;
use super::params::{
    Attn, AttnGrad, BlockPart, Embed, EmbedParams, Flat, Param, ParamArray, add, zeroed_box,
};
use super::pass::{self, BlockRef, Lease, ParamsRef, Row};
use crate::dropout::{self, Dropout};
use crate::error::Result;
use crate::optim::AdamStep;
use crate::parallel::Job;

/// The smallest model (parameters, the vocabulary bucket's rows counted) whose step of one
/// document is split between two threads by parts of the model (`Shared::split_side`) when it
/// has them: the split hands the residual stream across at every branch and meets twice a
/// step, which costs more than the overlapped updates save on the micro model (4,192
/// parameters: 1.01× the one-thread time in f64, 1.20× in f32) and less on `small` (201,088:
/// 0.78×); see docs/performance.md.
pub const SPLIT_MIN_PARAMS: usize = 1 << 16;

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

/// Rows a thread's buffers hold: a group has fewer than `max(GROUP_ROWS, T) + T` rows (its
/// documents start within `rows/groups ≤ max(GROUP_ROWS, T)` rows of each other and are at
/// most `T` long), and attention views `T` rows from a document's first.
pub(super) const fn buffer_rows<const T: usize>() -> usize {
    (if GROUP_ROWS > T { GROUP_ROWS } else { T }) + 2 * T
}

/// A part of the parameters that a step sums and updates as one, in the order the backward
/// leaves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    /// block `l`'s `mlp_fc2`
    MlpFc2(usize),
    /// block `l`'s `mlp_fc1`
    MlpFc1(usize),
    /// block `l`'s four attention matrices
    Attention(usize),
    /// the embeddings and the head
    Embed,
}

impl Part {
    /// The number of parts of a model of `L` blocks.
    pub const fn count<const L: usize>() -> usize {
        3 * L + 1
    }

    /// The part the `claim`-th claim of a step gets: from the last block down, each block's
    /// `mlp_fc2`, `mlp_fc1`, attention, then the embeddings and head.
    pub fn claimed<const L: usize>(claim: usize) -> Part {
        if claim >= 3 * L {
            return Part::Embed;
        }
        let l = L - 1 - claim / 3;
        match claim % 3 {
            0 => Part::MlpFc2(l),
            1 => Part::MlpFc1(l),
            _ => Part::Attention(l),
        }
    }

    /// The part's counter: `3·l`, `3·l + 1`, `3·l + 2` for block `l`'s, `3·L` for the
    /// embeddings.
    pub fn index<const L: usize>(self) -> usize {
        match self {
            Part::MlpFc2(l) => 3 * l,
            Part::MlpFc1(l) => 3 * l + 1,
            Part::Attention(l) => 3 * l + 2,
            Part::Embed => 3 * L,
        }
    }
}

/// The two sides of a step of one document split between two threads
/// ([`Shared::split_side`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// the embeddings and every block's attention
    Attention,
    /// every block's MLP and the head
    Mlp,
}

// A panic inside a locked section is a bug that the caller re-raises (see `parallel`); the
// locks are taken past poisoning so that dropping the model afterwards cannot panic again.
pub(super) fn read<X>(l: &RwLock<X>) -> RwLockReadGuard<'_, X> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}
pub(super) fn write<X>(l: &RwLock<X>) -> RwLockWriteGuard<'_, X> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
pub(super) fn lock<X>(l: &Mutex<X>) -> MutexGuard<'_, X> {
    l.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One block's parameters in its three parts, each behind its own lock so that Adam can
/// update different parts on different threads, and a part as soon as every backward has
/// left it.
pub(super) struct Block<const E: usize, const F: usize, S: Float> {
    fc2: RwLock<Box<Param<F, E, S>>>,
    fc1: RwLock<Box<Param<E, F, S>>>,
    attn: RwLock<Box<Attn<E, S>>>,
}

/// A block's parts, read-locked.
pub(super) struct BlockRead<'a, const E: usize, const F: usize, S: Float> {
    fc2: RwLockReadGuard<'a, Box<Param<F, E, S>>>,
    fc1: RwLockReadGuard<'a, Box<Param<E, F, S>>>,
    attn: RwLockReadGuard<'a, Box<Attn<E, S>>>,
}

impl<const E: usize, const F: usize, S: Float> Block<E, F, S> {
    pub fn new() -> Result<Self> {
        Ok(Block {
            fc2: RwLock::new(zeroed_box()?),
            fc1: RwLock::new(zeroed_box()?),
            attn: RwLock::new(zeroed_box()?),
        })
    }

    fn read(&self) -> BlockRead<'_, E, F, S> {
        BlockRead {
            fc2: read(&self.fc2),
            fc1: read(&self.fc1),
            attn: read(&self.attn),
        }
    }

    /// Overwrites the per-parameter array `which` of each matrix, in
    /// [`Shape::tensors`](crate::shape::Shape::tensors) order, with the next values of `src`,
    /// which advances; the transposes follow.
    pub fn set_from(&self, which: ParamArray, src: &mut &[f64]) {
        for p in write(&self.attn).iter_mut() {
            p.set_from(which, src);
        }
        write(&self.fc1).set_from(which, src);
        write(&self.fc2).set_from(which, src);
    }
}

impl<const E: usize, const F: usize, S: Float> BlockRead<'_, E, F, S> {
    /// The per-parameter array `which` of each matrix, in
    /// [`Shape::tensors`](crate::shape::Shape::tensors) order.
    pub fn tensors(&self, which: ParamArray) -> [&[S]; 6] {
        let [q, k, v, o] = &**self.attn;
        let (fc1, fc2) = (&self.fc1, &self.fc2);
        [
            q.get(which),
            k.get(which),
            v.get(which),
            o.get(which),
            fc1.get(which),
            fc2.get(which),
        ]
    }
}

/// Read locks on every parameter part: what a forward reads.
pub(super) struct ParamsRead<
    'a,
    const V: usize,
    const T: usize,
    const E: usize,
    const F: usize,
    const L: usize,
    S: Float,
> {
    pub embed: RwLockReadGuard<'a, Box<EmbedParams<V, T, E, S>>>,
    pub blocks: [BlockRead<'a, E, F, S>; L],
}

impl<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize, S: Float>
    ParamsRead<'_, V, T, E, F, L, S>
{
    pub fn view(&self) -> ParamsRef<'_, V, T, E, F, L, S> {
        ParamsRef {
            embed: &self.embed,
            blocks: std::array::from_fn(|l| {
                let b = &self.blocks[l];
                BlockRef {
                    attn: &b.attn,
                    fc1: &b.fc1,
                    fc2: &b.fc2,
                }
            }),
        }
    }
}

/// One block's gradient, in the parts of [`Block`].
struct BlockGrad<const E: usize, const F: usize, S: Float> {
    fc2: Mutex<Box<[[S; F]; E]>>,
    fc1: Mutex<Box<[[S; E]; F]>>,
    attn: Mutex<Box<AttnGrad<E, S>>>,
}

/// A gradient (the layout of [`super::Weights`]) in parts that different threads can hold
/// at once: the embeddings and head, and the parts of each block.
pub(super) struct Grad<
    const V: usize,
    const T: usize,
    const E: usize,
    const F: usize,
    const L: usize,
    S: Float,
> {
    embed: Mutex<Box<Embed<V, T, E, S>>>,
    blocks: [BlockGrad<E, F, S>; L],
}

impl<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize, S: Float>
    Grad<V, T, E, F, L, S>
{
    /// A zero gradient.
    pub fn new() -> Result<Self> {
        let mut blocks = Vec::with_capacity(L);
        for _ in 0..L {
            blocks.push(BlockGrad {
                fc2: Mutex::new(zeroed_box()?),
                fc1: Mutex::new(zeroed_box()?),
                attn: Mutex::new(zeroed_box()?),
            });
        }
        let Ok(blocks) = <[_; L]>::try_from(blocks) else {
            unreachable!("L blocks")
        };
        Ok(Grad {
            embed: Mutex::new(zeroed_box()?),
            blocks,
        })
    }

    /// Appends every tensor (real rows), flattened, in
    /// [`Shape::tensors`](crate::shape::Shape::tensors) order.
    pub fn extend_flat(&self, vocab: usize, out: &mut Vec<f64>) {
        let mut extend = |t: &[S]| out.extend(t.iter().map(|x| x.to_f64()));
        for t in lock(&self.embed).tensors(vocab) {
            extend(t);
        }
        for b in &self.blocks {
            for a in lock(&b.attn).iter() {
                extend(a.as_flattened());
            }
            extend(lock(&b.fc1).as_flattened());
            extend(lock(&b.fc2).as_flattened());
        }
    }
}

/// The backward's [`Lease`] on the shared parameters and one gradient: each part read- and
/// mutex-locked while the backward works in it, then marked done for the threads that wait
/// to sum and update it.
struct Locked<
    'a,
    const V: usize,
    const T: usize,
    const E: usize,
    const F: usize,
    const L: usize,
    S: Float,
> {
    embed: &'a RwLock<Box<EmbedParams<V, T, E, S>>>,
    blocks: &'a [Block<E, F, S>; L],
    grad: &'a Grad<V, T, E, F, L, S>,
    /// the tables are zeroed before the backward adds into them (else they are zero already)
    zero_tables: bool,
    /// the counters the waiting threads read (`None`: nobody waits, in a split step)
    done: Option<&'a [AtomicUsize]>,
}

impl<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize, S: Float>
    Locked<'_, V, T, E, F, L, S>
{
    fn done(&self, part: Part) {
        if let Some(done) = self.done {
            done[part.index::<L>()].fetch_add(1, Ordering::Release);
        }
    }
}

impl<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize, S: Float>
    Lease<V, T, E, F, S> for Locked<'_, V, T, E, F, L, S>
{
    fn head(&mut self, f: impl FnOnce(&[[S; E]; V], &mut [[S; E]; V])) {
        f(
            &read(self.embed).w.lm_head,
            &mut lock(&self.grad.embed).lm_head,
        );
    }

    fn mlp_fc2(&mut self, l: usize, f: impl FnOnce(&[[S; F]; E], &mut [[S; F]; E])) {
        f(
            &read(&self.blocks[l].fc2).w,
            &mut lock(&self.grad.blocks[l].fc2),
        );
        self.done(Part::MlpFc2(l));
    }

    fn mlp_fc1(&mut self, l: usize, f: impl FnOnce(&[[S; E]; F], &mut [[S; E]; F])) {
        f(
            &read(&self.blocks[l].fc1).w,
            &mut lock(&self.grad.blocks[l].fc1),
        );
        self.done(Part::MlpFc1(l));
    }

    fn attention(&mut self, l: usize, f: impl FnOnce([&[[S; E]; E]; 4], [&mut [[S; E]; E]; 4])) {
        {
            let p = read(&self.blocks[l].attn);
            let mut g = lock(&self.grad.blocks[l].attn);
            let [dq, dk, dv, dout] = &mut **g;
            f([&p[0].w, &p[1].w, &p[2].w, &p[3].w], [dq, dk, dv, dout]);
        }
        self.done(Part::Attention(l));
    }

    fn tables(&mut self, f: impl FnOnce(&mut [[S; E]; V], &mut [[S; E]; T])) {
        {
            let mut g = lock(&self.grad.embed);
            if self.zero_tables {
                g.zero_tables();
            }
            let g = &mut **g;
            f(&mut g.wte, &mut g.wpe);
        }
        self.done(Part::Embed);
    }
}

/// The backward's [`Lease`] for a step of one document on the caller's thread: every part
/// locked for the whole step, and with `adam` each part updated as soon as the backward
/// leaves it, while its gradient is still in cache (there is no other group's gradient to
/// add to it first).
struct Alone<
    'a,
    const V: usize,
    const T: usize,
    const E: usize,
    const F: usize,
    const L: usize,
    S: Float,
> {
    embed: RwLockWriteGuard<'a, Box<EmbedParams<V, T, E, S>>>,
    blocks: [BlockWrite<'a, E, F, S>; L],
    grad: MutexGuard<'a, Box<Embed<V, T, E, S>>>,
    grads: [BlockGradLock<'a, E, F, S>; L],
    vocab: usize,
    adam: Option<AdamStep>,
}

/// A block's parts, write-locked.
struct BlockWrite<'a, const E: usize, const F: usize, S: Float> {
    fc2: RwLockWriteGuard<'a, Box<Param<F, E, S>>>,
    fc1: RwLockWriteGuard<'a, Box<Param<E, F, S>>>,
    attn: RwLockWriteGuard<'a, Box<Attn<E, S>>>,
}

/// A block's gradient, locked.
struct BlockGradLock<'a, const E: usize, const F: usize, S: Float> {
    fc2: MutexGuard<'a, Box<[[S; F]; E]>>,
    fc1: MutexGuard<'a, Box<[[S; E]; F]>>,
    attn: MutexGuard<'a, Box<AttnGrad<E, S>>>,
}

impl<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize, S: Float>
    Alone<'_, V, T, E, F, L, S>
{
    /// What the forward reads.
    fn view(&self) -> ParamsRef<'_, V, T, E, F, L, S> {
        ParamsRef {
            embed: &self.embed,
            blocks: std::array::from_fn(|l| {
                let b = &self.blocks[l];
                BlockRef {
                    attn: &b.attn,
                    fc1: &b.fc1,
                    fc2: &b.fc2,
                }
            }),
        }
    }
}

impl<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize, S: Float>
    Lease<V, T, E, F, S> for Alone<'_, V, T, E, F, L, S>
{
    fn head(&mut self, f: impl FnOnce(&[[S; E]; V], &mut [[S; E]; V])) {
        f(&self.embed.w.lm_head, &mut self.grad.lm_head);
        if let Some(adam) = &self.adam {
            self.embed.adam_head(&self.grad.lm_head, self.vocab, adam);
        }
    }

    fn mlp_fc2(&mut self, l: usize, f: impl FnOnce(&[[S; F]; E], &mut [[S; F]; E])) {
        let (p, g) = (&mut self.blocks[l].fc2, &mut self.grads[l].fc2);
        f(&p.w, g);
        if let Some(adam) = &self.adam {
            p.adam(g, adam);
        }
    }

    fn mlp_fc1(&mut self, l: usize, f: impl FnOnce(&[[S; E]; F], &mut [[S; E]; F])) {
        let (p, g) = (&mut self.blocks[l].fc1, &mut self.grads[l].fc1);
        f(&p.w, g);
        if let Some(adam) = &self.adam {
            p.adam(g, adam);
        }
    }

    fn attention(&mut self, l: usize, f: impl FnOnce([&[[S; E]; E]; 4], [&mut [[S; E]; E]; 4])) {
        let (p, g) = (&mut **self.blocks[l].attn, &mut **self.grads[l].attn);
        {
            let [dq, dk, dv, dout] = &mut *g;
            f([&p[0].w, &p[1].w, &p[2].w, &p[3].w], [dq, dk, dv, dout]);
        }
        if let Some(adam) = &self.adam {
            p.adam(g, adam);
        }
    }

    fn tables(&mut self, f: impl FnOnce(&mut [[S; E]; V], &mut [[S; E]; T])) {
        let g = &mut **self.grad;
        g.zero_tables();
        f(&mut g.wte, &mut g.wpe);
        if let Some(adam) = &self.adam {
            self.embed.adam_tables(&g.wte, &g.wpe, self.vocab, adam);
        }
    }
}

/// A step as the threads see it: written by the caller before a run ([`Shared::prepare`]),
/// read during it.
pub(super) struct Plan<
    const V: usize,
    const T: usize,
    const E: usize,
    const F: usize,
    const L: usize,
    S: Float,
> {
    /// every position of every document, document after document
    pub rows: Vec<Row>,
    /// the rows of each document
    pub docs: Vec<Range<usize>>,
    /// the documents of each group (possibly none)
    pub groups: Vec<Range<usize>>,
    /// the groups in the order the threads claim them: most rows first, so that the last
    /// ones claimed, whose ends decide when the threads meet, are the shortest (ties in
    /// group order); the order changes no result
    claim_order: Vec<usize>,
    /// the gradient of group `g ≥ 1` is `group_grads[g − 1]`, whose embedding tables are
    /// zero between steps (allocated zeroed, zeroed again as they are added; the backward
    /// writes over every other tensor); group 0's goes straight into the step's gradient,
    /// whose tables are zeroed first
    group_grads: Vec<Grad<V, T, E, F, L, S>>,
    /// whether the groups run backward (else only the forward and the losses)
    backward: bool,
    /// the number of groups that run backward: those with documents, if `backward`
    backward_groups: usize,
    /// the Adam update after the gradient, if any
    adam: Option<AdamStep>,
    /// dropout in the forward and backward, if any (only when the groups run backward)
    dropout: Option<Dropout>,
}

/// Everything the threads share: the parameters, the step's gradient, the plan and the
/// counters the threads claim work from.
pub(super) struct Shared<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
    S: Float,
> {
    pub vocab: usize,
    pub embed: RwLock<Box<EmbedParams<V, T, E, S>>>,
    pub blocks: [Block<E, F, S>; L],
    /// the mean gradient of the last step
    pub grad: Grad<V, T, E, F, L, S>,
    pub plan: RwLock<Plan<V, T, E, F, L, S>>,
    /// the loss of each document of the batch
    pub doc_loss: Mutex<Vec<f64>>,
    /// the next group to claim (an index into `claim_order`), and the next parameter part
    /// to claim (see [`Part::claimed`])
    next_group: AtomicUsize,
    next_part: AtomicUsize,
    /// per part ([`Part::index`]), the groups whose backward has left it
    done: Box<[AtomicUsize]>,
    /// a thread panicked during the step (see [`AbortOnPanic`])
    abort: AtomicBool,
    /// a split step's activations, one set per side (allocated with the crew; only the
    /// residual stream's rows, or their gradient, are copied from one to the other), and the
    /// number of segments done
    pub split_buffers: [Mutex<Option<Buffers<V, T, E, H, F, L, S>>>; 2],
    split_stage: AtomicUsize,
    /// the step is one document split between two threads ([`Shared::prepare_split`]): an
    /// atomic rather than a field of the plan, so that the threads need not lock the plan
    /// to find out
    split: AtomicBool,
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
> Shared<V, T, E, H, D, F, L, S>
{
    pub fn new(
        vocab: usize,
        embed: Box<EmbedParams<V, T, E, S>>,
        blocks: [Block<E, F, S>; L],
    ) -> Result<Self> {
        Ok(Shared {
            vocab,
            embed: RwLock::new(embed),
            blocks,
            grad: Grad::new()?,
            // room for one document, so that microgpt's steps never allocate
            plan: RwLock::new(Plan {
                rows: Vec::with_capacity(T),
                docs: Vec::with_capacity(1),
                groups: Vec::with_capacity(1),
                claim_order: Vec::with_capacity(1),
                group_grads: Vec::new(),
                backward: false,
                backward_groups: 0,
                adam: None,
                dropout: None,
            }),
            doc_loss: Mutex::new(Vec::with_capacity(1)),
            next_group: AtomicUsize::new(0),
            next_part: AtomicUsize::new(0),
            done: (0..Part::count::<L>())
                .map(|_| AtomicUsize::new(0))
                .collect(),
            abort: AtomicBool::new(false),
            split_buffers: [Mutex::new(None), Mutex::new(None)],
            split_stage: AtomicUsize::new(0),
            split: AtomicBool::new(false),
        })
    }

    pub fn read_params(&self) -> ParamsRead<'_, V, T, E, F, L, S> {
        ParamsRead {
            embed: read(&self.embed),
            blocks: std::array::from_fn(|l| self.blocks[l].read()),
        }
    }

    /// Writes the step's plan for the threads: the rows of every document (truncated to `T`
    /// positions, each weighted `1/B · 1/n`, or with `token_mean` `1/N` for the batch's `N`
    /// positions), the groups, the gradient buffers they need, dropout (for a backward
    /// only) and the Adam step; resets the counters. The caller has checked the tokens.
    pub fn prepare(
        &self,
        batch: &[&[usize]],
        backward: bool,
        adam: Option<AdamStep>,
        dropout: Option<Dropout>,
        token_mean: bool,
    ) {
        let mut plan = write(&self.plan);
        let plan = &mut *plan;
        let dropout = dropout.filter(|_| backward);
        plan.rows_of(batch, dropout, token_mean);
        let groups = plan.cut_into_groups();
        let b = batch.len();
        let most = if backward { num_groups(b, b * T) } else { 0 };
        while plan.group_grads.len() + 1 < most {
            let grad = Grad::new().expect("memory for a gradient buffer");
            plan.group_grads.push(grad);
        }
        plan.backward = backward;
        plan.backward_groups = if backward {
            plan.groups.iter().filter(|d| !d.is_empty()).count()
        } else {
            0
        };
        plan.adam = adam;
        plan.dropout = dropout;
        self.split.store(false, Ordering::Relaxed);
        let mut losses = lock(&self.doc_loss);
        losses.clear();
        losses.reserve(b);
        losses.resize(b, 0.0);
        self.next_group.store(0, Ordering::Relaxed);
        for d in &self.done {
            d.store(0, Ordering::Relaxed);
        }
        self.abort.store(false, Ordering::Relaxed);
        // the parts are summed and updated when there is either to do
        let first_part = if adam.is_some() || (backward && groups > 1) {
            0
        } else {
            Part::count::<L>()
        };
        self.next_part.store(first_part, Ordering::Relaxed);
    }

    /// A step of one document, `rows`, on the caller's thread: forward, loss and backward
    /// into the step's gradient and, with `adam`, each part's update as the backward leaves
    /// it. The bits of the threaded step on a batch of one ([`Job::run`]), whose only group's
    /// gradient is the step's, without its plan, counters and waits. Returns the document's
    /// loss.
    pub fn run_alone(
        &self,
        buf: &mut Buffers<V, T, E, H, F, L, S>,
        rows: &[Row],
        adam: Option<AdamStep>,
        dropout: Option<&Dropout>,
    ) -> f64 {
        let mut lease = Alone {
            embed: write(&self.embed),
            blocks: std::array::from_fn(|l| BlockWrite {
                fc2: write(&self.blocks[l].fc2),
                fc1: write(&self.blocks[l].fc1),
                attn: write(&self.blocks[l].attn),
            }),
            grad: lock(&self.grad.embed),
            grads: std::array::from_fn(|l| BlockGradLock {
                fc2: lock(&self.grad.blocks[l].fc2),
                fc1: lock(&self.grad.blocks[l].fc1),
                attn: lock(&self.grad.blocks[l].attn),
            }),
            vocab: self.vocab,
            adam,
        };
        pass::forward::<V, T, E, H, D, F, L, S>(buf, &lease.view(), rows, 0, dropout);
        pass::cross_entropy(buf, rows, self.vocab);
        let n = rows.len();
        let total: f64 = buf.acts.ce[..n].iter().map(|c| c.to_f64()).sum();
        pass::backward::<V, T, E, H, D, F, L, S>(
            buf,
            &mut lease,
            rows,
            self.vocab,
            dropout.is_some(),
        );
        (1.0 / n as f64) * total
    }

    /// Writes the plan of a step of one document split between two threads by parts of the
    /// model ([`Shared::split_side`]); the caller has checked the tokens.
    pub fn prepare_split(
        &self,
        batch: &[&[usize]],
        adam: Option<AdamStep>,
        dropout: Option<Dropout>,
        token_mean: bool,
    ) {
        debug_assert_eq!(batch.len(), 1);
        self.prepare(batch, true, adam, dropout, token_mean);
        self.split.store(true, Ordering::Relaxed);
        self.split_stage.store(0, Ordering::Relaxed);
    }

    /// One side of a step of one document on two threads, split by parts of the model: the
    /// attention side owns the embeddings and every block's attention, the MLP side every
    /// block's MLP and the head — their forward, backward and Adam — so that only the
    /// residual stream and its gradient cross between the cores, not the weights. The step is
    /// a chain of `4L − 1` segments, run by the sides in turn in the shared activations:
    /// segment `2l` (attention side) block `l`'s attention, after the embeddings for `l = 0`;
    /// segment `2l + 1` (MLP side) block `l`'s MLP, and for the last block also the head, the
    /// loss and the backward of both; then down the blocks, the attention's backward on the
    /// attention side, the next MLP's below it on the MLP side, and the tables' last. After a
    /// backward segment a side hands on and then runs Adam on the parts it has left, while the
    /// other side goes on: the MLPs' and the head's updates overlap the attention's backward.
    /// The ops and every sum are the one-thread step's, so are the bits.
    fn split_side(&self, side: Side) {
        let plan = read(&self.plan);
        let rows = &plan.rows[..];
        let (dropout, adam) = (plan.dropout.as_ref(), plan.adam.as_ref());
        let mut lease = Locked {
            embed: &self.embed,
            blocks: &self.blocks,
            grad: &self.grad,
            zero_tables: true,
            done: None,
        };
        let (mine, other) = match side {
            Side::Attention => (0, 1),
            Side::Mlp => (1, 0),
        };
        let n = rows.len();
        for k in (mine..4 * L - 1).step_by(2) {
            if !self.wait_stage(k) {
                return;
            }
            {
                let mut buf = lock(&self.split_buffers[mine]);
                let buf = buf.as_mut().expect("a split step's buffers");
                if k > 0 {
                    // the residual stream (forward) or its gradient (backward) as the other
                    // side left it
                    let from = lock(&self.split_buffers[other]);
                    let from = &from.as_ref().expect("a split step's buffers").scratch;
                    let (dst, src) = if k < 2 * L {
                        (&mut buf.scratch.x, &from.x)
                    } else {
                        (&mut buf.scratch.dx, &from.dx)
                    };
                    dst[..n].copy_from_slice(&src[..n]);
                }
                self.split_segment(k, buf, &mut lease, rows, dropout);
            }
            self.split_stage.store(k + 1, Ordering::Release);
            if let Some(adam) = adam {
                self.split_adam(k, adam);
            }
        }
    }

    /// Segment `k` of a split step (see [`Shared::split_side`]).
    fn split_segment(
        &self,
        k: usize,
        buf: &mut Buffers<V, T, E, H, F, L, S>,
        lease: &mut Locked<'_, V, T, E, F, L, S>,
        rows: &[Row],
        dropout: Option<&Dropout>,
    ) {
        let (n, vocab) = (rows.len(), self.vocab);
        if k < 2 * L {
            let l = k / 2;
            let drop = dropout.map(|d| (d, l));
            if k.is_multiple_of(2) {
                if l == 0 {
                    pass::embed_forward(buf, &read(&self.embed).w, rows, 0);
                }
                let attn = read(&self.blocks[l].attn);
                let (la, s) = (&mut buf.acts.blocks[l], &mut buf.scratch);
                pass::attention_branch_forward::<V, T, E, H, D, F, S>(la, s, &attn, rows, 0, drop);
                return;
            }
            {
                let (fc1, fc2) = (read(&self.blocks[l].fc1), read(&self.blocks[l].fc2));
                let (la, s) = (&mut buf.acts.blocks[l], &mut buf.scratch);
                pass::mlp_branch_forward(la, s, (&fc1, &fc2), rows, 0, drop);
            }
            if l < L - 1 {
                return;
            }
            pass::head_forward(buf, &read(&self.embed).lm_head_t, 0, n);
            pass::cross_entropy(buf, rows, vocab);
            let total: f64 = buf.acts.ce[..n].iter().map(|c| c.to_f64()).sum();
            lock(&self.doc_loss)[0] = (1.0 / n as f64) * total;
            pass::head_backward(buf, lease, rows, vocab);
            let (a, s) = (&buf.acts, &mut buf.scratch);
            pass::mlp_branch_backward(&a.blocks[l], s, lease, l, n, dropout.is_some());
            return;
        }
        let j = k - 2 * L;
        let (a, s) = (&buf.acts, &mut buf.scratch);
        if j % 2 == 1 {
            let l = L - 2 - j / 2;
            pass::mlp_branch_backward(&a.blocks[l], s, lease, l, n, dropout.is_some());
            return;
        }
        let l = L - 1 - j / 2;
        let la = &a.blocks[l];
        pass::attention_branch_backward::<V, T, E, H, D, F, S>(
            la,
            s,
            lease,
            l,
            rows,
            dropout.is_some(),
        );
        if l == 0 {
            pass::tables_backward(buf, lease, rows);
        }
    }

    /// Adam on the parts that segment `k`'s backward left (see [`Shared::split_side`]).
    fn split_adam(&self, k: usize, adam: &AdamStep) {
        // no other group's gradient to add first
        use std::iter::empty as none;
        let mlp = |l: usize| {
            let (block, sum) = (&self.blocks[l], &self.grad.blocks[l]);
            update_part(&block.fc2, &sum.fc2, none(), Some(adam));
            update_part(&block.fc1, &sum.fc1, none(), Some(adam));
        };
        if k == 2 * L - 1 {
            let g = lock(&self.grad.embed);
            write(&self.embed).adam_head(&g.lm_head, self.vocab, adam);
            drop(g);
            mlp(L - 1);
        } else if k >= 2 * L {
            let j = k - 2 * L;
            if j % 2 == 1 {
                mlp(L - 2 - j / 2);
                return;
            }
            let l = L - 1 - j / 2;
            let (block, sum) = (&self.blocks[l], &self.grad.blocks[l]);
            update_part(&block.attn, &sum.attn, none(), Some(adam));
            if l == 0 {
                let g = lock(&self.grad.embed);
                write(&self.embed).adam_tables(&g.wte, &g.wpe, self.vocab, adam);
            }
        }
    }

    /// Waits until the split step's stage is `k`; `false` if a thread panicked meanwhile.
    fn wait_stage(&self, k: usize) -> bool {
        self.wait_until(|| self.split_stage.load(Ordering::Acquire) == k)
    }

    /// Claims groups until none is left; for each, forward, the documents' losses and
    /// backward into the group's gradient, marking each part of it done as the backward
    /// leaves it.
    fn work_groups(&self, buf: &mut Buffers<V, T, E, H, F, L, S>) {
        let plan = read(&self.plan);
        let n_groups = plan.groups.len();
        loop {
            let k = self.next_group.fetch_add(1, Ordering::Relaxed);
            if k >= n_groups {
                break;
            }
            let g = plan.claim_order[k];
            let docs = plan.groups[g].clone();
            if docs.is_empty() {
                continue;
            }
            let first = plan.docs[docs.start].start;
            let rows = &plan.rows[first..plan.docs[docs.end - 1].end];
            pass::forward::<V, T, E, H, D, F, L, S>(
                buf,
                &self.read_params().view(),
                rows,
                0,
                plan.dropout.as_ref(),
            );
            pass::cross_entropy(buf, rows, self.vocab);
            {
                let mut losses = lock(&self.doc_loss);
                for j in docs {
                    let r = plan.docs[j].start - first..plan.docs[j].end - first;
                    let n = r.len();
                    let total: f64 = buf.acts.ce[r].iter().map(|c| c.to_f64()).sum();
                    losses[j] = (1.0 / n as f64) * total;
                }
            }
            if !plan.backward {
                continue;
            }
            let mut lease = Locked {
                embed: &self.embed,
                blocks: &self.blocks,
                // group 0's tables are the step's, which hold the last step's sum
                grad: if g == 0 {
                    &self.grad
                } else {
                    &plan.group_grads[g - 1]
                },
                zero_tables: g == 0,
                done: Some(&self.done),
            };
            let dropout = plan.dropout.is_some();
            pass::backward::<V, T, E, H, D, F, L, S>(buf, &mut lease, rows, self.vocab, dropout);
        }
    }

    /// Claims parameter parts until none is left, in the order the backward finishes them
    /// ([`Part::claimed`]). For each, waits until every group's backward has left it, adds
    /// the groups' gradients into the step's in group order (each element's sum in the same
    /// order, whichever thread adds it), then Adam updates the part. A thread that runs out
    /// of groups thus updates the top parts while the last groups are still below them,
    /// instead of waiting for them.
    fn work_parts(&self) {
        if self.next_part.load(Ordering::Relaxed) >= Part::count::<L>() {
            return;
        }
        let plan = read(&self.plan);
        // the gradients of the groups after the first that have documents
        let group_grads = || {
            let groups = plan.groups.iter().enumerate().skip(1);
            let ran = groups.filter(|(_, d)| plan.backward && !d.is_empty());
            ran.map(|(g, _)| &plan.group_grads[g - 1])
        };
        let (vocab, adam) = (self.vocab, plan.adam.as_ref());
        loop {
            let claim = self.next_part.fetch_add(1, Ordering::Relaxed);
            if claim >= Part::count::<L>() {
                break;
            }
            let part = Part::claimed::<L>(claim);
            if !self.wait_done(part, plan.backward_groups) {
                return;
            }
            let grads = group_grads();
            match part {
                Part::Embed => {
                    let mut sum = lock(&self.grad.embed);
                    for grad in grads {
                        let mut grad = lock(&grad.embed);
                        for (dst, src) in
                            sum.tensors_mut(vocab).into_iter().zip(grad.tensors(vocab))
                        {
                            add(dst, src);
                        }
                        grad.zero_tables();
                    }
                    if let Some(adam) = adam {
                        write(&self.embed).adam(&sum, vocab, adam);
                    }
                }
                Part::MlpFc2(l) => {
                    let (block, sum) = (&self.blocks[l], &self.grad.blocks[l]);
                    let grads = grads.map(|g| &g.blocks[l].fc2);
                    update_part(&block.fc2, &sum.fc2, grads, adam);
                }
                Part::MlpFc1(l) => {
                    let (block, sum) = (&self.blocks[l], &self.grad.blocks[l]);
                    let grads = grads.map(|g| &g.blocks[l].fc1);
                    update_part(&block.fc1, &sum.fc1, grads, adam);
                }
                Part::Attention(l) => {
                    let (block, sum) = (&self.blocks[l], &self.grad.blocks[l]);
                    let grads = grads.map(|g| &g.blocks[l].attn);
                    update_part(&block.attn, &sum.attn, grads, adam);
                }
            }
        }
    }

    /// Waits until `groups` backwards have marked `part` done (spinning, then yielding the
    /// core); `false` if a thread panicked meanwhile, and the part will never be done.
    fn wait_done(&self, part: Part, groups: usize) -> bool {
        let done = &self.done[part.index::<L>()];
        self.wait_until(|| done.load(Ordering::Acquire) >= groups)
    }

    /// Waits until `ready()` (spinning, then yielding the core); `false` if a thread
    /// panicked meanwhile, and it may never be.
    fn wait_until(&self, ready: impl Fn() -> bool) -> bool {
        let mut spins = 0u32;
        while !ready() {
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

impl<const V: usize, const T: usize, const E: usize, const F: usize, const L: usize, S: Float>
    Plan<V, T, E, F, L, S>
{
    /// The rows and documents of `batch` (see [`Shared::prepare`]).
    fn rows_of(&mut self, batch: &[&[usize]], dropout: Option<Dropout>, token_mean: bool) {
        let b = batch.len();
        // capacity for any batch of this size: later steps reuse it
        self.rows.clear();
        self.rows.reserve(b * T);
        self.docs.clear();
        self.docs.reserve(b);
        let per_doc = 1.0 / b as f64;
        let positions: usize = batch.iter().map(|d| T.min(d.len() - 1)).sum();
        let per_token = 1.0 / positions as f64;
        let key = dropout.map_or(0, |d| d.key);
        for (j, tokens) in batch.iter().enumerate() {
            let n = T.min(tokens.len() - 1);
            let first = self.rows.len();
            let dloss = if token_mean {
                per_token
            } else {
                per_doc * (1.0 / n as f64)
            };
            self.rows.extend((0..n).map(|pos| Row {
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
            self.docs.push(first..first + n);
        }
    }

    /// Cuts the documents into groups (document `j`, starting at row `c_j` of `R`, goes to
    /// group `⌊c_j·G/R⌋`) and orders the claims; returns the number of groups `G`.
    fn cut_into_groups(&mut self) -> usize {
        let b = self.docs.len();
        let total = self.rows.len();
        let groups = num_groups(b, total);
        self.groups.clear();
        self.groups.reserve(b);
        let mut next = 0;
        for g in 0..groups {
            let first = next;
            while next < b && self.docs[next].start * groups / total == g {
                next += 1;
            }
            if next > first {
                // the bound `buffer_rows` is computed from
                let rows = self.docs[next - 1].end - self.docs[first].start;
                assert!(rows + T <= buffer_rows::<T>());
            }
            self.groups.push(first..next);
        }
        self.claim_order.clear();
        self.claim_order.reserve(b);
        self.claim_order.extend(0..groups);
        let (docs, spans) = (&self.docs, &self.groups);
        let rows = |g: usize| spans[g].clone().map(|j| docs[j].len()).sum::<usize>();
        // the keys are distinct, so the unstable sort (which never allocates) is deterministic
        self.claim_order
            .sort_unstable_by_key(|&g| (std::cmp::Reverse(rows(g)), g));
        groups
    }
}

/// A block part's step: the groups' gradients `grads` added into the step's, `sum` (group
/// 0's), in group order, then (with `adam`) the update of `param`.
fn update_part<'a, P: BlockPart>(
    param: &RwLock<Box<P>>,
    sum: &'a Mutex<Box<P::Grad>>,
    grads: impl Iterator<Item = &'a Mutex<Box<P::Grad>>>,
    adam: Option<&AdamStep>,
) {
    let mut sum = lock(sum);
    for grad in grads {
        add(sum.flat_mut(), lock(grad).flat());
    }
    if let Some(adam) = adam {
        write(param).adam(&sum, adam);
    }
}

/// Spins a thread waits for a part before it yields its core at every check: the part is
/// usually done within microseconds, but a thread that ran out of groups can wait for most
/// of another group (see docs/measurements.md).
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
    S: Float,
> Job for Shared<V, T, E, H, D, F, L, S>
{
    type Local = Buffers<V, T, E, H, F, L, S>;

    /// The groups, then the parameter parts, each waiting only for what it needs.
    fn run(&self, local: &mut Self::Local, party: usize) {
        let _abort = AbortOnPanic(&self.abort);
        if self.split.load(Ordering::Relaxed) {
            // the same side on the same thread at every step, so that each side's weights,
            // moments and gradients stay in its core's cache
            match party {
                0 => self.split_side(Side::Attention),
                1 => self.split_side(Side::Mlp),
                _ => {}
            }
            return;
        }
        self.work_groups(local);
        self.work_parts();
    }
}
