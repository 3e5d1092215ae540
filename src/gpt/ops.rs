//! The static engine's ops: forward/backward pairs of free functions on fixed-size arrays, in
//! the order the forward pass meets them. No structs, no allocation.
//!
//! Shape letters: `V` vocab, `T` block size, `E` n_embd, `H` heads, `D` head dim (`E = H·D`),
//! `F` MLP width; a linear layer maps `IN` to `OUT`. Most calls handle one position (one row);
//! the linear layers take many rows at once (`n` of them: the positions of a group of
//! documents in training, one new position in inference) and multiply them in register tiles.
//!
//! Arguments: outputs first, then inputs, then weights. Forward caches what backward needs
//! (rmsnorm's reciprocal, the attention and output softmax probabilities). Backward always
//! *accumulates* (`+=`) into gradients the model zeroes once per step (per group of documents).
//!
//! The reductions and matrix products come from [`super::kernels`], whose partial sums are not
//! in the reference's left-to-right order: they agree with it to rounding (≈1e-16 relative in
//! f64). Every op is generic over the scalar `S` ([`Float`]), its last parameter.

use super::kernels::{Float, dot, exp, fma, matmul, matmul_tn, max, sum};
use crate::shape::RMSNORM_EPS;

// ------------------------------------------------------------------------------------------
// embedding (token + position)

/// `x = wte[token] + wpe[pos]`
pub fn embedding_forward<const V: usize, const T: usize, const E: usize, S: Float>(
    out: &mut [S; E],  // (E)
    token: usize,      // < V
    pos: usize,        // < T
    wte: &[[S; E]; V], // (V, E)
    wpe: &[[S; E]; T], // (T, E)
) {
    for ((o, &a), &b) in out.iter_mut().zip(&wte[token]).zip(&wpe[pos]) {
        *o = a + b;
    }
}

// x = wte[token] + wpe[pos]  ⇒  dwte[token] += dx, dwpe[pos] += dx
pub fn embedding_backward<const V: usize, const T: usize, const E: usize, S: Float>(
    dwte: &mut [[S; E]; V], // (V, E)
    dwpe: &mut [[S; E]; T], // (T, E)
    dout: &[S; E],          // (E)
    token: usize,
    pos: usize,
) {
    for ((a, b), &d) in dwte[token].iter_mut().zip(&mut dwpe[pos]).zip(dout) {
        *a += d;
        *b += d;
    }
}

// ------------------------------------------------------------------------------------------
// rmsnorm

/// `y = x·r` with `r = (mean(x²) + eps)^-½`; returns `r`, which backward needs.
pub fn rmsnorm_forward<const E: usize, S: Float>(
    out: &mut [S; E], // (E)
    x: &[S; E],       // (E)
) -> S {
    let ms = dot(x, x) / S::from_usize(E);
    let r = S::ONE / (ms + S::from_f64(RMSNORM_EPS)).sqrt();
    for (o, &xi) in out.iter_mut().zip(x) {
        *o = xi * r;
    }
    r
}

// y = x·r, r = (mean(x²)+eps)^-½  ⇒  dx = r·(dy − x·r²·mean(dy⊙x)) = r·dy − r·y·mean(dy⊙y)
// (written in the output y, so the cache keeps y and r only)
pub fn rmsnorm_backward<const E: usize, S: Float>(
    dx: &mut [S; E], // (E)
    dout: &[S; E],   // (E)
    out: &[S; E],    // (E) y from forward
    r: S,            // from forward
) {
    let c = r * (dot(dout, out) / S::from_usize(E));
    for ((d, &dy), &y) in dx.iter_mut().zip(dout).zip(out) {
        *d += r * dy - c * y;
    }
}

// ------------------------------------------------------------------------------------------
// linear (no bias) over a batch of rows (positions); row o of W is output o
//
// Forward reads W through its transpose `Wᵀ` (`[[S; OUT]; IN]`, row i = input i), which the
// model keeps next to W: `Y = X·Wᵀ` is then a sum of rows, the same vectorizable `y += a·row`
// loop as backward's `dX += dY·W`, where `y_o = W[o]·x` would need one horizontal reduction
// per output. All three products (those two and `dW += dYᵀ·X`) are the register-tiled
// [`matmul`] and [`matmul_tn`] of the kernels. Every output is a sum over k in order.

/// `y_t = W x_t` for every row t, computed as `Σ_i x_t,i·Wᵀ[i]`
pub fn linear_forward<const IN: usize, const OUT: usize, S: Float>(
    out: &mut [[S; OUT]], // (n, OUT)
    x: &[[S; IN]],        // (n, IN)
    wt: &[[S; OUT]; IN],  // (IN, OUT) the transpose of W
) {
    debug_assert_eq!(out.len(), x.len());
    matmul::<S, IN, OUT, false>(out, x, wt);
}

/// How a backward puts a gradient into its buffer: added to what is there (`Add`, llm.c's
/// `+=`, for a buffer that other ops add into as well or that was zeroed), or written over it
/// (`Set`, for the first or only contribution: the buffer then needs no zeroing, one pass
/// fewer over it). `Set` gives the same bits as `Add` into zeros: each sum starts from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    Add,
    Set,
}

// y_t = W x_t  ⇒  dx_t += Wᵀ dy_t (a sum of rows dy_t,o·W[o]),  dW += Σ_t dy_t x_tᵀ
// (row o: dW[o] += Σ_t dy_t,o·x_t); `+=` or `=` as `into_dx` and `into_dw` say
pub fn linear_backward<const IN: usize, const OUT: usize, S: Float>(
    dx: &mut [[S; IN]],      // (n, IN)
    dw: &mut [[S; IN]; OUT], // (OUT, IN)
    dout: &[[S; OUT]],       // (n, OUT)
    x: &[[S; IN]],           // (n, IN)
    w: &[[S; IN]; OUT],      // (OUT, IN)
    into_dx: Put,
    into_dw: Put,
) {
    debug_assert!(dx.len() == dout.len() && x.len() == dout.len());
    match into_dx {
        Put::Add => matmul::<S, OUT, IN, true>(dx, dout, w),
        Put::Set => matmul::<S, OUT, IN, false>(dx, dout, w),
    }
    match into_dw {
        Put::Add => matmul_tn::<S, IN, OUT, true>(dw, dout, x),
        Put::Set => matmul_tn::<S, IN, OUT, false>(dw, dout, x),
    }
}

// ------------------------------------------------------------------------------------------
// exp, and softmax over a run-time prefix (the real vocabulary, vocab ≤ V entries)

/// `p = exp(x − max x) / Σ exp(x − max x)`; `out` and `x` have the same length. Like the
/// reference, it multiplies by the reciprocal of the total.
pub fn softmax_forward<S: Float>(out: &mut [S], x: &[S]) {
    let m = max(x);
    for (o, &xi) in out.iter_mut().zip(x) {
        *o = exp(xi - m);
    }
    let inv = S::ONE / sum(out);
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// [`softmax_forward`] over a whole fixed-size array (entries at −∞ come out 0).
#[inline(always)]
fn softmax_fixed<const N: usize, S: Float>(out: &mut [S; N], x: &[S; N]) {
    let m = max(x);
    for (o, &xi) in out.iter_mut().zip(x) {
        *o = exp(xi - m);
    }
    let inv = S::ONE / sum(out);
    for o in out.iter_mut() {
        *o *= inv;
    }
}

// p = softmax(x)  ⇒  dx += p ⊙ (dp − p·dp)
pub fn softmax_backward<S: Float>(dx: &mut [S], dout: &[S], out: &[S]) {
    let pd: S = out.iter().zip(dout).map(|(&p, &d)| p * d).sum();
    for ((g, d), p) in dx.iter_mut().zip(dout).zip(out) {
        *g += *p * (*d - pd);
    }
}

// ------------------------------------------------------------------------------------------
// causal multi-head self-attention for position t (keys and values of positions 0..=t)

/// Per head h (columns `h·D..(h+1)·D`): `a_s = q_h·k_s,h / √D` for `s ≤ t`, `w = softmax(a)`,
/// `out_h = Σ_s w_s·v_s,h`. Caches `w` in `att[h]` (0 for the keys after `t`).
#[allow(clippy::needless_range_loop)] // h·D + d indexing is the head layout; H, D are constants
pub fn attention_forward<
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    S: Float,
>(
    out: &mut [S; E],      // (E) head outputs, concatenated
    att: &mut [[S; T]; H], // (H, T) softmax weights (0 after t)
    q: &[S; E],            // (E) query of position t
    k: &[[S; E]; T],       // (T, E) keys, rows 0..=t
    v: &[[S; E]; T],       // (T, E) values, rows 0..=t
    t: usize,
) {
    let scale = S::ONE / S::from_usize(D).sqrt();
    let n = t + 1;
    // the keys after t masked to −∞, so that the softmax runs over all T entries with loops
    // of a fixed length; exp(−∞) = 0 exactly, so the weights are the softmax over s ≤ t
    // (head by head: a head's row is written well before its softmax reads it back, so
    // that the read does not wait on the row's last scalar stores)
    let mut logits = [[S::NEG_INFINITY; T]; H];
    for h in 0..H {
        for (s, ks) in k[..n].iter().enumerate() {
            let mut a = S::ZERO;
            for d in 0..D {
                a = fma(q[h * D + d], ks[h * D + d], a);
            }
            logits[h][s] = a * scale;
        }
    }
    for (w, a) in att.iter_mut().zip(&logits) {
        softmax_fixed(w, a);
    }
    // head by head, each output a sum over s in order (as in the backward below)
    *out = [S::ZERO; E];
    for h in 0..H {
        for (s, vs) in v[..n].iter().enumerate() {
            let w = att[h][s];
            for d in 0..D {
                out[h * D + d] = fma(w, vs[h * D + d], out[h * D + d]);
            }
        }
    }
}

// out_h = Σ_s w_s v_s,h, w = softmax(a), a_s = q_h·k_s,h/√D  ⇒  dv_s += w_s·dout_h,
// dw_s = dout_h·v_s,h, da = w ⊙ (dw − w·dw), dq_h += Σ_s da_s·k_s,h/√D, dk_s,h += da_s·q_h/√D
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub fn attention_backward<
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    S: Float,
>(
    dq: &mut [S; E],      // (E)
    dk: &mut [[S; E]; T], // (T, E) rows 0..=t accumulate
    dv: &mut [[S; E]; T], // (T, E) rows 0..=t accumulate
    dout: &[S; E],        // (E)
    att: &[[S; T]; H],    // (H, T) softmax weights from forward
    q: &[S; E],           // (E)
    k: &[[S; E]; T],      // (T, E)
    v: &[[S; E]; T],      // (T, E)
    t: usize,
) {
    let scale = S::ONE / S::from_usize(D).sqrt();
    let n = t + 1;
    // dw[h][s] = dout_h · v_s,h, and dv_s,h += w[h][s]·dout_h; head by head, reading each
    // weight where it lies (a loop over s outermost makes LLVM gather each key's H weights)
    let mut dw = [[S::ZERO; T]; H];
    for h in 0..H {
        for (s, (vs, dvs)) in v[..n].iter().zip(&mut dv[..n]).enumerate() {
            let w = att[h][s];
            let mut a = S::ZERO;
            for d in 0..D {
                a = fma(dout[h * D + d], vs[h * D + d], a);
                dvs[h * D + d] = fma(w, dout[h * D + d], dvs[h * D + d]);
            }
            dw[h][s] = a;
        }
    }
    // through the softmax, into the logits' gradient (its 1/√D as each one is used below)
    let mut da = [[S::ZERO; T]; H];
    for ((dah, dwh), wh) in da.iter_mut().zip(&dw).zip(att) {
        softmax_backward(&mut dah[..n], &dwh[..n], &wh[..n]);
    }
    // dq_h a sum over s in order, head by head as above
    let mut dqa = *dq;
    for h in 0..H {
        for (s, (ks, dks)) in k[..n].iter().zip(&mut dk[..n]).enumerate() {
            let a = da[h][s] * scale;
            for d in 0..D {
                dqa[h * D + d] = fma(a, ks[h * D + d], dqa[h * D + d]);
                dks[h * D + d] = fma(a, q[h * D + d], dks[h * D + d]);
            }
        }
    }
    *dq = dqa;
}

// ------------------------------------------------------------------------------------------
// ReLU

/// `y = max(x, 0)`
pub fn relu_forward<const N: usize, S: Float>(
    out: &mut [S; N], // (N)
    x: &[S; N],       // (N)
) {
    for (o, &xi) in out.iter_mut().zip(x) {
        *o = if xi > S::ZERO { xi } else { S::ZERO };
    }
}

// y = max(x, 0)  ⇒  dx += dy·[y > 0]   (micrograd's `(out.data > 0) * out.grad`;
// with `Set`, dx = that)
pub fn relu_backward<const N: usize, S: Float>(
    dx: &mut [S; N], // (N)
    dout: &[S; N],   // (N)
    out: &[S; N],    // (N) y from forward
    into: Put,
) {
    for ((g, &d), &y) in dx.iter_mut().zip(dout).zip(out) {
        let pass = if y > S::ZERO { d } else { S::ZERO };
        // `0 +` in `Set`: `Add`'s bits into zeros, a −0 included
        *g = match into {
            Put::Add => *g + pass,
            Put::Set => S::ZERO + pass,
        };
    }
}

// ------------------------------------------------------------------------------------------
// residual add

/// `y = a + b`
pub fn residual_forward<const N: usize, S: Float>(
    out: &mut [S; N], // (N)
    a: &[S; N],       // (N)
    b: &[S; N],       // (N)
) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

// y = a + b  ⇒  da += dy, db += dy   (the model's backward does this in place: the gradient
// of the residual stream is passed on unchanged and the branch's gradient added into it)
pub fn residual_backward<const N: usize, S: Float>(
    da: &mut [S; N], // (N)
    db: &mut [S; N], // (N)
    dout: &[S; N],   // (N)
) {
    for ((x, y), &d) in da.iter_mut().zip(db).zip(dout) {
        *x += d;
        *y += d;
    }
}

// ------------------------------------------------------------------------------------------
// dropout (the masks are drawn by `crate::dropout`)

/// `y = x ⊙ m`, in place, `m` each 0 or `1/(1−p)`
pub fn dropout_forward<const N: usize, S: Float>(
    x: &mut [S; N], // (N)
    mask: &[S; N],  // (N) kept for backward
) {
    for (v, &m) in x.iter_mut().zip(mask) {
        *v *= m;
    }
}

// y = x ⊙ m  ⇒  dx = dy ⊙ m
pub fn dropout_backward<const N: usize, S: Float>(
    dx: &mut [S; N], // (N) written, not added to
    dout: &[S; N],   // (N)
    mask: &[S; N],   // (N) from forward
) {
    for ((g, &d), &m) in dx.iter_mut().zip(dout).zip(mask) {
        *g = d * m;
    }
}

// ------------------------------------------------------------------------------------------
// softmax cross-entropy over the real vocabulary (the first `vocab` of V logits)

/// `p = softmax(z[..vocab])` (the entries from `vocab` on are masked to −∞ and come out 0:
/// they are not tokens), returns `−ln p[target]`. The softmax runs over all `V` entries so
/// that its loops have a fixed length (on the logits themselves when all are tokens).
pub fn cross_entropy_forward<const V: usize, S: Float>(
    probs: &mut [S; V], // (V) cached for backward
    logits: &[S; V],    // (V)
    target: usize,      // < vocab
    vocab: usize,       // ≤ V
) -> S {
    if vocab == V {
        softmax_fixed(probs, logits);
    } else {
        let mut z = *logits;
        z[vocab..].fill(S::NEG_INFINITY);
        softmax_fixed(probs, &z);
    }
    -probs[target].ln()
}

// loss = −ln softmax(z)[target]  ⇒  dz += dloss·(p − onehot(target)), on the real vocabulary
// (with `Set`, dz = that, and 0 beyond the vocabulary)
pub fn cross_entropy_backward<const V: usize, S: Float>(
    dlogits: &mut [S; V], // (V)
    probs: &[S; V],       // (V) from forward
    target: usize,
    vocab: usize,
    dloss: S,
    into: Put,
) {
    let (real, rest) = dlogits.split_at_mut(vocab);
    match into {
        Put::Add => {
            for (g, p) in real.iter_mut().zip(&probs[..vocab]) {
                *g += dloss * *p;
            }
        }
        Put::Set => {
            // `0 +`: `Add`'s bits into zeros, a −0 product included
            for (g, p) in real.iter_mut().zip(&probs[..vocab]) {
                *g = S::ZERO + dloss * *p;
            }
            rest.fill(S::ZERO);
        }
    }
    dlogits[target] -= dloss;
}
