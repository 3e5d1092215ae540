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
//! in the reference's left-to-right order: they agree with it to rounding (≈1e-16 relative).

use super::kernels::{dot, exp, fma, matmul, matmul_tn, max, sum};
use crate::shape::RMSNORM_EPS;

// ------------------------------------------------------------------------------------------
// embedding (token + position)

/// `x = wte[token] + wpe[pos]`
pub fn embedding_forward<const V: usize, const T: usize, const E: usize>(
    out: &mut [f64; E],  // (E)
    token: usize,        // < V
    pos: usize,          // < T
    wte: &[[f64; E]; V], // (V, E)
    wpe: &[[f64; E]; T], // (T, E)
) {
    for ((o, a), b) in out.iter_mut().zip(&wte[token]).zip(&wpe[pos]) {
        *o = a + b;
    }
}

// x = wte[token] + wpe[pos]  ⇒  dwte[token] += dx, dwpe[pos] += dx
pub fn embedding_backward<const V: usize, const T: usize, const E: usize>(
    dwte: &mut [[f64; E]; V], // (V, E)
    dwpe: &mut [[f64; E]; T], // (T, E)
    dout: &[f64; E],          // (E)
    token: usize,
    pos: usize,
) {
    for ((a, b), d) in dwte[token].iter_mut().zip(&mut dwpe[pos]).zip(dout) {
        *a += d;
        *b += d;
    }
}

// ------------------------------------------------------------------------------------------
// rmsnorm

/// `y = x·r` with `r = (mean(x²) + eps)^-½`; returns `r`, which backward needs.
pub fn rmsnorm_forward<const E: usize>(
    out: &mut [f64; E], // (E)
    x: &[f64; E],       // (E)
) -> f64 {
    let ms = dot(x, x) / E as f64;
    let r = 1.0 / (ms + RMSNORM_EPS).sqrt();
    for (o, xi) in out.iter_mut().zip(x) {
        *o = xi * r;
    }
    r
}

// y = x·r, r = (mean(x²)+eps)^-½  ⇒  dx = r·(dy − x·r²·mean(dy⊙x)) = r·dy − r·y·mean(dy⊙y)
// (written in the output y, so the cache keeps y and r only)
pub fn rmsnorm_backward<const E: usize>(
    dx: &mut [f64; E], // (E)
    dout: &[f64; E],   // (E)
    out: &[f64; E],    // (E) y from forward
    r: f64,            // from forward
) {
    let c = r * (dot(dout, out) / E as f64);
    for ((d, dy), y) in dx.iter_mut().zip(dout).zip(out) {
        *d += r * dy - c * y;
    }
}

// ------------------------------------------------------------------------------------------
// linear (no bias) over a batch of rows (positions); row o of W is output o
//
// Forward reads W through its transpose `Wᵀ` (`[[f64; OUT]; IN]`, row i = input i), which the
// model keeps next to W: `Y = X·Wᵀ` is then a sum of rows, the same vectorizable `y += a·row`
// loop as backward's `dX += dY·W`, where `y_o = W[o]·x` would need one horizontal reduction
// per output. All three products (those two and `dW += dYᵀ·X`) are the register-tiled
// [`matmul`] and [`matmul_tn`] of the kernels. Every output is a sum over k in order.

/// `y_t = W x_t` for every row t, computed as `Σ_i x_t,i·Wᵀ[i]`
pub fn linear_forward<const IN: usize, const OUT: usize>(
    out: &mut [[f64; OUT]], // (n, OUT)
    x: &[[f64; IN]],        // (n, IN)
    wt: &[[f64; OUT]; IN],  // (IN, OUT) the transpose of W
) {
    debug_assert_eq!(out.len(), x.len());
    matmul::<IN, OUT, false>(out, x, wt);
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
pub fn linear_backward<const IN: usize, const OUT: usize>(
    dx: &mut [[f64; IN]],      // (n, IN)
    dw: &mut [[f64; IN]; OUT], // (OUT, IN)
    dout: &[[f64; OUT]],       // (n, OUT)
    x: &[[f64; IN]],           // (n, IN)
    w: &[[f64; IN]; OUT],      // (OUT, IN)
    into_dx: Put,
    into_dw: Put,
) {
    debug_assert!(dx.len() == dout.len() && x.len() == dout.len());
    match into_dx {
        Put::Add => matmul::<OUT, IN, true>(dx, dout, w),
        Put::Set => matmul::<OUT, IN, false>(dx, dout, w),
    }
    match into_dw {
        Put::Add => matmul_tn::<IN, OUT, true>(dw, dout, x),
        Put::Set => matmul_tn::<IN, OUT, false>(dw, dout, x),
    }
}

// ------------------------------------------------------------------------------------------
// exp, and softmax over a run-time prefix (the real vocabulary, vocab ≤ V entries)

/// `p = exp(x − max x) / Σ exp(x − max x)`; `out` and `x` have the same length. Like the
/// reference, it multiplies by the reciprocal of the total.
pub fn softmax_forward(out: &mut [f64], x: &[f64]) {
    let m = max(x);
    for (o, &xi) in out.iter_mut().zip(x) {
        *o = exp(xi - m);
    }
    let inv = 1.0 / sum(out);
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// [`softmax_forward`] over a whole fixed-size array (entries at −∞ come out 0).
#[inline(always)]
fn softmax_fixed<const N: usize>(out: &mut [f64; N], x: &[f64; N]) {
    let m = max(x);
    for (o, &xi) in out.iter_mut().zip(x) {
        *o = exp(xi - m);
    }
    let inv = 1.0 / sum(out);
    for o in out.iter_mut() {
        *o *= inv;
    }
}

// p = softmax(x)  ⇒  dx += p ⊙ (dp − p·dp)
pub fn softmax_backward(dx: &mut [f64], dout: &[f64], out: &[f64]) {
    let pd: f64 = out.iter().zip(dout).map(|(p, d)| p * d).sum();
    for ((g, d), p) in dx.iter_mut().zip(dout).zip(out) {
        *g += p * (d - pd);
    }
}

// ------------------------------------------------------------------------------------------
// causal multi-head self-attention for position t (keys and values of positions 0..=t)

/// Per head h (columns `h·D..(h+1)·D`): `a_s = q_h·k_s,h / √D` for `s ≤ t`, `w = softmax(a)`,
/// `out_h = Σ_s w_s·v_s,h`. Caches `w` in `att[h]` (0 for the keys after `t`).
#[allow(clippy::needless_range_loop)] // h·D + d indexing is the head layout; H, D are constants
pub fn attention_forward<const T: usize, const E: usize, const H: usize, const D: usize>(
    out: &mut [f64; E],      // (E) head outputs, concatenated
    att: &mut [[f64; T]; H], // (H, T) softmax weights (0 after t)
    q: &[f64; E],            // (E) query of position t
    k: &[[f64; E]; T],       // (T, E) keys, rows 0..=t
    v: &[[f64; E]; T],       // (T, E) values, rows 0..=t
    t: usize,
) {
    let scale = 1.0 / (D as f64).sqrt();
    let n = t + 1;
    // the keys after t masked to −∞, so that the softmax runs over all T entries with loops
    // of a fixed length; exp(−∞) = 0 exactly, so the weights are the softmax over s ≤ t
    let mut logits = [[f64::NEG_INFINITY; T]; H];
    for (s, ks) in k[..n].iter().enumerate() {
        for h in 0..H {
            let mut a = 0.0;
            for d in 0..D {
                a = fma(q[h * D + d], ks[h * D + d], a);
            }
            logits[h][s] = a * scale;
        }
    }
    for (w, a) in att.iter_mut().zip(&logits) {
        softmax_fixed(w, a);
    }
    *out = [0.0; E];
    for (s, vs) in v[..n].iter().enumerate() {
        for h in 0..H {
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
pub fn attention_backward<const T: usize, const E: usize, const H: usize, const D: usize>(
    dq: &mut [f64; E],      // (E)
    dk: &mut [[f64; E]; T], // (T, E) rows 0..=t accumulate
    dv: &mut [[f64; E]; T], // (T, E) rows 0..=t accumulate
    dout: &[f64; E],        // (E)
    att: &[[f64; T]; H],    // (H, T) softmax weights from forward
    q: &[f64; E],           // (E)
    k: &[[f64; E]; T],      // (T, E)
    v: &[[f64; E]; T],      // (T, E)
    t: usize,
) {
    let scale = 1.0 / (D as f64).sqrt();
    let n = t + 1;
    // dw[h][s] = dout_h · v_s,h, and dv_s,h += w[h][s]·dout_h
    let mut dw = [[0.0; T]; H];
    for (s, (vs, dvs)) in v[..n].iter().zip(&mut dv[..n]).enumerate() {
        for h in 0..H {
            let w = att[h][s];
            let mut a = 0.0;
            for d in 0..D {
                a = fma(dout[h * D + d], vs[h * D + d], a);
                dvs[h * D + d] = fma(w, dout[h * D + d], dvs[h * D + d]);
            }
            dw[h][s] = a;
        }
    }
    // through the softmax and the 1/√D, into dlogits (scaled)
    let mut da = [[0.0; T]; H];
    for ((dah, dwh), wh) in da.iter_mut().zip(&dw).zip(att) {
        softmax_backward(&mut dah[..n], &dwh[..n], &wh[..n]);
        for x in &mut dah[..n] {
            *x *= scale;
        }
    }
    let mut dqa = *dq;
    for (s, (ks, dks)) in k[..n].iter().zip(&mut dk[..n]).enumerate() {
        for h in 0..H {
            let a = da[h][s];
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
pub fn relu_forward<const N: usize>(
    out: &mut [f64; N], // (N)
    x: &[f64; N],       // (N)
) {
    for (o, &xi) in out.iter_mut().zip(x) {
        *o = if xi > 0.0 { xi } else { 0.0 };
    }
}

// y = max(x, 0)  ⇒  dx += dy·[y > 0]   (micrograd's `(out.data > 0) * out.grad`)
pub fn relu_backward<const N: usize>(
    dx: &mut [f64; N], // (N)
    dout: &[f64; N],   // (N)
    out: &[f64; N],    // (N) y from forward
) {
    for ((g, &d), &y) in dx.iter_mut().zip(dout).zip(out) {
        *g += if y > 0.0 { d } else { 0.0 };
    }
}

// ------------------------------------------------------------------------------------------
// residual add

/// `y = a + b`
pub fn residual_forward<const N: usize>(
    out: &mut [f64; N], // (N)
    a: &[f64; N],       // (N)
    b: &[f64; N],       // (N)
) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

// y = a + b  ⇒  da += dy, db += dy   (the model's backward does this in place: the gradient
// of the residual stream is passed on unchanged and the branch's gradient added into it)
pub fn residual_backward<const N: usize>(
    da: &mut [f64; N], // (N)
    db: &mut [f64; N], // (N)
    dout: &[f64; N],   // (N)
) {
    for ((x, y), d) in da.iter_mut().zip(db).zip(dout) {
        *x += d;
        *y += d;
    }
}

// ------------------------------------------------------------------------------------------
// dropout (the masks are drawn by `crate::dropout`)

/// `y = x ⊙ m`, in place, `m` each 0 or `1/(1−p)`
pub fn dropout_forward<const N: usize>(
    x: &mut [f64; N], // (N)
    mask: &[f64; N],  // (N) kept for backward
) {
    for (v, m) in x.iter_mut().zip(mask) {
        *v *= m;
    }
}

// y = x ⊙ m  ⇒  dx = dy ⊙ m
pub fn dropout_backward<const N: usize>(
    dx: &mut [f64; N], // (N) written, not added to
    dout: &[f64; N],   // (N)
    mask: &[f64; N],   // (N) from forward
) {
    for ((g, d), m) in dx.iter_mut().zip(dout).zip(mask) {
        *g = d * m;
    }
}

// ------------------------------------------------------------------------------------------
// softmax cross-entropy over the real vocabulary (the first `vocab` of V logits)

/// `p = softmax(z[..vocab])` (the entries from `vocab` on are masked to −∞ and come out 0:
/// they are not tokens), returns `−ln p[target]`. The softmax runs over all `V` entries so
/// that its loops have a fixed length.
pub fn cross_entropy_forward<const V: usize>(
    probs: &mut [f64; V], // (V) cached for backward
    logits: &[f64; V],    // (V)
    target: usize,        // < vocab
    vocab: usize,         // ≤ V
) -> f64 {
    let mut z = *logits;
    z[vocab..].fill(f64::NEG_INFINITY);
    softmax_fixed(probs, &z);
    -probs[target].ln()
}

// loss = −ln softmax(z)[target]  ⇒  dz += dloss·(p − onehot(target)), on the real vocabulary
pub fn cross_entropy_backward<const V: usize>(
    dlogits: &mut [f64; V], // (V)
    probs: &[f64; V],       // (V) from forward
    target: usize,
    vocab: usize,
    dloss: f64,
) {
    for (g, p) in dlogits[..vocab].iter_mut().zip(&probs[..vocab]) {
        *g += dloss * p;
    }
    dlogits[target] -= dloss;
}
