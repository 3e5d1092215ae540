//! The static GPT's forward and backward passes, llm.c's `gpt2_forward` and `gpt2_backward`:
//! one op of [`super::ops`] at a time over all rows, the backward in reverse op order.
//!
//! A row is one position of one document; the rows of several documents are laid out one
//! document after the other, and attention reads the keys and values of the earlier rows of
//! the same document only, its backward adding into their gradients, so the gradient is exact
//! (as microgpt.py's autograd computes it).
//!
//! The passes know nothing of threads. The forward reads the parameters through plain
//! references ([`ParamsRef`]); the backward borrows each part's weights and gradient, in the
//! order it finishes with them, through a [`Lease`]: the scheduler ([`super::step`])
//! implements it with its locks and counters, so that other threads can update a part as soon
//! as every backward has left it; a single thread can implement it with plain references (the
//! unit test in `gpt/mod.rs` does, and gets the scheduler's bits).

use super::acts::{BlockActs, Buffers, Scratch};
use super::kernels::Float;
use super::ops::{self, Put::Add, Put::Set};
use super::params::{Attn, Embed, EmbedParams, Param, WK, WO, WQ, WV};
use crate::dropout::{self, Dropout};

/// One position of one document: its input token and position, the token it predicts, the
/// weight of its cross-entropy in the step's loss (`1/(B·n)` for a document of `n`
/// positions in a batch of `B`) and the seed of its dropout masks ([`dropout::row_seed`]).
#[derive(Clone, Copy, Default)]
pub(super) struct Row {
    pub token: usize,
    pub pos: usize,
    pub target: usize,
    pub dloss: f64,
    pub seed: u64,
}

/// What the forward reads: every parameter, borrowed.
pub(super) struct ParamsRef<
    'a,
    const V: usize,
    const T: usize,
    const E: usize,
    const F: usize,
    const L: usize,
    S: Float,
> {
    pub embed: &'a EmbedParams<V, T, E, S>,
    pub blocks: [BlockRef<'a, E, F, S>; L],
}

/// One block's parameters, borrowed.
pub(super) struct BlockRef<'a, const E: usize, const F: usize, S: Float> {
    pub attn: &'a Attn<E, S>,
    pub fc1: &'a Param<E, F, S>,
    pub fc2: &'a Param<F, E, S>,
}

/// How the backward borrows the weights it reads and the gradients it writes, one part at a
/// time, in the order it finishes with them: `lm_head`, then from the last block down each
/// block's `mlp_fc2`, `mlp_fc1` and attention, then the embedding tables. A part is left when
/// its closure returns. The backward writes over the gradients of `lm_head` and of the
/// blocks' matrices ([`Set`]) and adds into those of the tables, which the lessor zeroes
/// before each step.
pub(super) trait Lease<const V: usize, const T: usize, const E: usize, const F: usize, S: Float> {
    /// `lm_head` and its gradient.
    fn head(&mut self, f: impl FnOnce(&[[S; E]; V], &mut [[S; E]; V]));
    /// Block `l`'s `mlp_fc2` and its gradient.
    fn mlp_fc2(&mut self, l: usize, f: impl FnOnce(&[[S; F]; E], &mut [[S; F]; E]));
    /// Block `l`'s `mlp_fc1` and its gradient.
    fn mlp_fc1(&mut self, l: usize, f: impl FnOnce(&[[S; E]; F], &mut [[S; E]; F]));
    /// Block `l`'s `attn_wq`, `attn_wk`, `attn_wv`, `attn_wo` and their gradients.
    fn attention(&mut self, l: usize, f: impl FnOnce([&[[S; E]; E]; 4], [&mut [[S; E]; E]; 4]));
    /// The gradients of `wte` and `wpe`: the last part the backward leaves.
    fn tables(&mut self, f: impl FnOnce(&mut [[S; E]; V], &mut [[S; E]; T]));
}

/// The `T` rows of keys (or values) starting at a document's first row: what attention reads
/// at any position of that document. The buffers have `T` rows beyond the last row a group
/// can use, so the view always exists.
fn doc_rows<const T: usize, const E: usize, S>(rows: &[[S; E]], first: usize) -> &[[S; E]; T] {
    rows[first..first + T].try_into().expect("T rows")
}

fn doc_rows_mut<const T: usize, const E: usize, S>(
    rows: &mut [[S; E]],
    first: usize,
) -> &mut [[S; E]; T] {
    (&mut rows[first..first + T]).try_into().expect("T rows")
}

/// Forward of `rows` into buffer rows `start..start + rows.len()`, given the KV cache of the
/// earlier rows of their documents; fills the activation cache and the logits. With
/// `dropout`, every block's attention and MLP outputs are masked ([`crate::dropout`]) and the
/// masks kept.
pub(super) fn forward<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
    S: Float,
>(
    buf: &mut Buffers<V, T, E, H, F, L, S>,
    p: &ParamsRef<'_, V, T, E, F, L, S>,
    rows: &[Row],
    start: usize,
    dropout: Option<&Dropout>,
) {
    embed_forward(buf, &p.embed.w, rows, start);
    for (l, bp) in p.blocks.iter().enumerate() {
        let drop = dropout.map(|d| (d, l));
        let (la, s) = (&mut buf.acts.blocks[l], &mut buf.scratch);
        attention_branch_forward::<V, T, E, H, D, F, S>(la, s, bp.attn, rows, start, drop);
        mlp_branch_forward(la, s, (bp.fc1, bp.fc2), rows, start, drop);
    }
    head_forward(buf, &p.embed.lm_head_t, start, rows.len());
}

/// `x = rmsnorm(wte[token] + wpe[pos])` on rows `start..`: the residual stream's start.
pub(super) fn embed_forward<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
    S: Float,
>(
    buf: &mut Buffers<V, T, E, H, F, L, S>,
    w: &Embed<V, T, E, S>,
    rows: &[Row],
    start: usize,
) {
    let (a, s) = (&mut buf.acts, &mut buf.scratch);
    for (r, row) in (start..).zip(rows) {
        let mut emb = [S::ZERO; E];
        ops::embedding_forward(&mut emb, row.token, row.pos, &w.wte, &w.wpe);
        a.r0[r] = ops::rmsnorm_forward(&mut a.xn0[r], &emb);
        s.x[r] = a.xn0[r];
    }
}

/// `logits = lm_head·x` (no final norm) on rows `start..start + n`, `lm_head_t` the head's
/// transpose.
pub(super) fn head_forward<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
    S: Float,
>(
    buf: &mut Buffers<V, T, E, H, F, L, S>,
    lm_head_t: &[[S; V]; E],
    start: usize,
    n: usize,
) {
    let (a, s) = (&mut buf.acts, &buf.scratch);
    let end = start + n;
    a.x_out[start..end].copy_from_slice(&s.x[start..end]);
    let (x_out, logits) = (&a.x_out[start..end], &mut a.logits[start..end]);
    ops::linear_forward(logits, x_out, lm_head_t);
}

/// `x = drop(Wo·attn(rmsnorm(x))) + x` on rows `start..`, block `l` of `dropout`'s `(_, l)`.
pub(super) fn attention_branch_forward<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    S: Float,
>(
    la: &mut BlockActs<T, E, H, F, S>,
    s: &mut Scratch<V, E, F, S>,
    attn: &Attn<E, S>,
    rows: &[Row],
    start: usize,
    dropout: Option<(&Dropout, usize)>,
) {
    let end = start + rows.len();
    for r in start..end {
        la.r1[r] = ops::rmsnorm_forward(&mut la.xn1[r], &s.x[r]);
    }
    let xn1 = &la.xn1[start..end];
    ops::linear_forward(&mut la.q[start..end], xn1, &attn[WQ].wt);
    ops::linear_forward(&mut la.k[start..end], xn1, &attn[WK].wt);
    ops::linear_forward(&mut la.v[start..end], xn1, &attn[WV].wt);
    for (r, row) in (start..end).zip(rows) {
        let first = r - row.pos;
        let (keys, values) = (doc_rows(&la.k, first), doc_rows(&la.v, first));
        ops::attention_forward::<T, E, H, D, S>(
            &mut la.ctx[r],
            &mut la.att[r],
            &la.q[r],
            keys,
            values,
            row.pos,
        );
    }
    ops::linear_forward(&mut s.y[start..end], &la.ctx[start..end], &attn[WO].wt);
    if let Some((d, l)) = dropout {
        for (r, row) in (start..end).zip(rows) {
            d.fill(&mut la.m_attn[r], row.seed, dropout::attn_site(l));
            ops::dropout_forward(&mut s.y[r], &la.m_attn[r]);
        }
    }
    for r in start..end {
        let x_in = s.x[r];
        ops::residual_forward(&mut s.x[r], &s.y[r], &x_in);
    }
}

/// `x = drop(fc2·relu(fc1·rmsnorm(x))) + x` on rows `start..`, block `l` of `dropout`'s
/// `(_, l)`.
pub(super) fn mlp_branch_forward<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    S: Float,
>(
    la: &mut BlockActs<T, E, H, F, S>,
    s: &mut Scratch<V, E, F, S>,
    (fc1, fc2): (&Param<E, F, S>, &Param<F, E, S>),
    rows: &[Row],
    start: usize,
    dropout: Option<(&Dropout, usize)>,
) {
    let end = start + rows.len();
    for r in start..end {
        la.r2[r] = ops::rmsnorm_forward(&mut la.xn2[r], &s.x[r]);
    }
    ops::linear_forward(&mut s.pre[start..end], &la.xn2[start..end], &fc1.wt);
    for r in start..end {
        ops::relu_forward(&mut la.h[r], &s.pre[r]);
    }
    ops::linear_forward(&mut s.y[start..end], &la.h[start..end], &fc2.wt);
    if let Some((d, l)) = dropout {
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

/// The cross-entropy of each of rows `0..rows.len()` (after [`forward`]), into `acts.ce`,
/// caching the probabilities for the backward.
pub(super) fn cross_entropy<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
    S: Float,
>(
    buf: &mut Buffers<V, T, E, H, F, L, S>,
    rows: &[Row],
    vocab: usize,
) {
    let a = &mut buf.acts;
    for (r, row) in rows.iter().enumerate() {
        a.ce[r] = ops::cross_entropy_forward(&mut a.probs[r], &a.logits[r], row.target, vocab);
    }
}

/// Backward of `Σ_rows dloss·cross-entropy` over rows `0..rows.len()` (after [`forward`] and
/// [`cross_entropy`] from row 0) into the gradients `lease` lends: the ops in reverse, each
/// over all rows. The attention backward of every query adds into the gradients of the keys
/// and values it saw (earlier rows of its document) before those reach `attn_wk` and
/// `attn_wv`. `dropout`: whether the forward dropped out (its masks are in the cache).
pub(super) fn backward<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
    S: Float,
>(
    buf: &mut Buffers<V, T, E, H, F, L, S>,
    lease: &mut impl Lease<V, T, E, F, S>,
    rows: &[Row],
    vocab: usize,
    dropout: bool,
) {
    head_backward(buf, lease, rows, vocab);
    let (a, s) = (&buf.acts, &mut buf.scratch);
    for (l, la) in a.blocks.iter().enumerate().rev() {
        mlp_branch_backward(la, s, lease, l, rows.len(), dropout);
        attention_branch_backward::<V, T, E, H, D, F, S>(la, s, lease, l, rows, dropout);
    }
    tables_backward(buf, lease, rows);
}

/// Backward of `loss = Σ dloss·cross-entropy(lm_head·x_out)` into `lm_head`'s gradient and
/// `dx`, the residual stream's gradient at the last block's output.
pub(super) fn head_backward<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
    S: Float,
>(
    buf: &mut Buffers<V, T, E, H, F, L, S>,
    lease: &mut impl Lease<V, T, E, F, S>,
    rows: &[Row],
    vocab: usize,
) {
    let (a, s) = (&buf.acts, &mut buf.scratch);
    let n = rows.len();
    for (r, row) in rows.iter().enumerate() {
        let (dlogits, probs) = (&mut s.dlogits[r], &a.probs[r]);
        let dloss = S::from_f64(row.dloss);
        ops::cross_entropy_backward(dlogits, probs, row.target, vocab, dloss, Set);
    }
    lease.head(|lm_head, dlm_head| {
        let (dx, dlogits, x_out) = (&mut s.dx[..n], &s.dlogits[..n], &a.x_out[..n]);
        ops::linear_backward(dx, dlm_head, dlogits, x_out, lm_head, Set, Set);
    });
}

/// Backward of `x = rmsnorm(wte[token] + wpe[pos])` from `dx`, the first block's input's
/// gradient, into the tables' gradients (added: the lessor zeroes them).
pub(super) fn tables_backward<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
    S: Float,
>(
    buf: &mut Buffers<V, T, E, H, F, L, S>,
    lease: &mut impl Lease<V, T, E, F, S>,
    rows: &[Row],
) {
    let (a, s) = (&buf.acts, &buf.scratch);
    lease.tables(|dwte, dwpe| {
        for (r, row) in rows.iter().enumerate() {
            let mut demb = [S::ZERO; E];
            ops::rmsnorm_backward(&mut demb, &s.dx[r], &a.xn0[r], a.r0[r]);
            ops::embedding_backward(dwte, dwpe, &demb, row.token, row.pos);
        }
    });
}

/// Backward of `x_out = drop(fc2·relu(fc1·xn2)) + x_mid`, `xn2 = rmsnorm(x_mid)`, on rows
/// `0..n`. The residual hands `dx` to both branches, so `dx` is the MLP output's gradient as
/// it stands (through its mask, with dropout) and becomes `dx_mid` once the rmsnorm's share
/// is added into it.
pub(super) fn mlp_branch_backward<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    S: Float,
>(
    la: &BlockActs<T, E, H, F, S>,
    s: &mut Scratch<V, E, F, S>,
    lease: &mut impl Lease<V, T, E, F, S>,
    l: usize,
    n: usize,
    dropout: bool,
) {
    let dy = through_mask(&mut s.dy[..n], &s.dx[..n], &la.m_mlp[..n], dropout);
    lease.mlp_fc2(l, |fc2, dfc2| {
        ops::linear_backward(&mut s.dh[..n], dfc2, dy, &la.h[..n], fc2, Set, Set);
    });
    for r in 0..n {
        ops::relu_backward(&mut s.dpre[r], &s.dh[r], &la.h[r], Set);
    }
    lease.mlp_fc1(l, |fc1, dfc1| {
        let (dxn, dpre, xn2) = (&mut s.dxn[..n], &s.dpre[..n], &la.xn2[..n]);
        ops::linear_backward(dxn, dfc1, dpre, xn2, fc1, Set, Set);
    });
    for r in 0..n {
        ops::rmsnorm_backward(&mut s.dx[r], &s.dxn[r], &la.xn2[r], la.r2[r]);
    }
}

/// Backward of `x_mid = drop(Wo·ctx) + x_in`, `ctx` the attention of `xn1 = rmsnorm(x_in)`,
/// on `rows`; like [`mlp_branch_backward`].
pub(super) fn attention_branch_backward<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    S: Float,
>(
    la: &BlockActs<T, E, H, F, S>,
    s: &mut Scratch<V, E, F, S>,
    lease: &mut impl Lease<V, T, E, F, S>,
    l: usize,
    rows: &[Row],
    dropout: bool,
) {
    let n = rows.len();
    let dy = through_mask(&mut s.dy[..n], &s.dx[..n], &la.m_attn[..n], dropout);
    lease.attention(l, |[wq, wk, wv, wo], [dwq, dwk, dwv, dwo]| {
        ops::linear_backward(&mut s.dctx[..n], dwo, dy, &la.ctx[..n], wo, Set, Set);
        s.dq[..n].fill([S::ZERO; E]);
        s.dk[..n].fill([S::ZERO; E]);
        s.dv[..n].fill([S::ZERO; E]);
        for (r, row) in rows.iter().enumerate() {
            let first = r - row.pos;
            ops::attention_backward::<T, E, H, D, S>(
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
        ops::linear_backward(&mut s.dxn[..n], dwq, &s.dq[..n], xn1, wq, Set, Set);
        ops::linear_backward(&mut s.dxn[..n], dwk, &s.dk[..n], xn1, wk, Add, Set);
        ops::linear_backward(&mut s.dxn[..n], dwv, &s.dv[..n], xn1, wv, Add, Set);
    });
    for r in 0..n {
        ops::rmsnorm_backward(&mut s.dx[r], &s.dxn[r], &la.xn1[r], la.r1[r]);
    }
}

/// The gradient of a branch output before its dropout mask: `dx ⊙ mask` into `dy` when the
/// forward dropped out, else `dx` itself (no copy).
fn through_mask<'a, const E: usize, S: Float>(
    dy: &'a mut [[S; E]],
    dx: &'a [[S; E]],
    masks: &[[S; E]],
    dropout: bool,
) -> &'a [[S; E]] {
    if !dropout {
        return dx;
    }
    for ((d, g), m) in dy.iter_mut().zip(dx).zip(masks) {
        ops::dropout_backward(d, g, m);
    }
    dy
}
