//! The static engine's ops: forward/backward pairs of free functions on fixed-size arrays, in
//! the order the forward pass meets them. No structs, no allocation.
//!
//! Shape letters: `V` vocab, `T` block size, `E` n_embd, `H` heads, `D` head dim (`E = H·D`),
//! `F` MLP width; a linear layer maps `IN` to `OUT`. One call handles one position (one row),
//! which is what inference with a KV cache needs and what the model loops over in training.
//!
//! Arguments: outputs first, then inputs, then weights. Forward caches what backward needs
//! (rmsnorm's reciprocal, the attention and output softmax probabilities). Backward always
//! *accumulates* (`+=`) into gradients the model zeroes once per step.
//!
//! Inner loops keep `LANES` independent partial sums where they reduce, so that LLVM (which may
//! not reassociate floating-point sums) can still vectorize them; the sums are therefore not
//! in the reference's left-to-right order and agree with it to rounding (≈1e-16 relative).

/// Partial sums kept by [`dot`]: one AVX-512 register of f64.
const LANES: usize = 8;

/// `a·b + c`, fused when the target has FMA (one rounding instead of two; the CPUs this is
/// built for do), plain otherwise so that a portable build does not call libm's slow `fma`.
#[inline(always)]
fn fma(a: f64, b: f64, c: f64) -> f64 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `Σ a_i·b_i` with `LANES` partial sums (a single running sum is a serial chain that LLVM
/// must not reorder, so it would neither vectorize nor pipeline).
#[inline(always)]
fn dot<const N: usize>(a: &[f64; N], b: &[f64; N]) -> f64 {
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let mut tail = 0.0;
    for (x, y) in ac.remainder().iter().zip(bc.remainder()) {
        tail = fma(*x, *y, tail);
    }
    let mut acc = [0.0; LANES];
    for (x, y) in ac.zip(bc) {
        for j in 0..LANES {
            acc[j] = fma(x[j], y[j], acc[j]);
        }
    }
    // halving tree: the order a vector register is reduced in
    let s4 = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (s4[0] + s4[2]) + (s4[1] + s4[3]) + tail
}

/// `y += a·x`
#[inline(always)]
fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = fma(a, *xi, *yi);
    }
}

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

/// microgpt.py's `1e-5` under the square root.
pub const RMSNORM_EPS: f64 = 1e-5;

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
// linear (no bias); row o of W is output o

/// `y = W x`
pub fn linear_forward<const IN: usize, const OUT: usize>(
    out: &mut [f64; OUT], // (OUT)
    x: &[f64; IN],        // (IN)
    w: &[[f64; IN]; OUT], // (OUT, IN)
) {
    for (o, row) in out.iter_mut().zip(w) {
        *o = dot(x, row);
    }
}

// y = W x  ⇒  dx += Wᵀ dy (a sum of rows dy[o]·W[o]),  dW += dy xᵀ (row o: dW[o] += dy[o]·x)
pub fn linear_backward<const IN: usize, const OUT: usize>(
    dx: &mut [f64; IN],        // (IN)
    dw: &mut [[f64; IN]; OUT], // (OUT, IN)
    dout: &[f64; OUT],         // (OUT)
    x: &[f64; IN],             // (IN)
    w: &[[f64; IN]; OUT],      // (OUT, IN)
) {
    // dx in a local so that it lives in registers across the rows
    let mut acc = *dx;
    for ((dwo, wo), &dy) in dw.iter_mut().zip(w).zip(dout) {
        axpy(&mut acc, dy, wo);
        axpy(dwo, dy, x);
    }
    *dx = acc;
}

// ------------------------------------------------------------------------------------------
// softmax over a run-time prefix: a causal attention row (t + 1 ≤ T entries) or the real
// vocabulary (vocab ≤ V entries)

/// `p = exp(x − max x) / Σ exp(x − max x)`; `out` and `x` have the same length.
pub fn softmax_forward(out: &mut [f64], x: &[f64]) {
    let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    let mut total = 0.0;
    for (o, &xi) in out.iter_mut().zip(x) {
        *o = (xi - max).exp();
        total += *o;
    }
    for o in out.iter_mut() {
        *o /= total;
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
/// `out_h = Σ_s w_s·v_s,h`. Caches `w` in `att[h][..=t]`.
#[allow(clippy::needless_range_loop)] // h·D + d indexing is the head layout; H, D are constants
pub fn attention_forward<const T: usize, const E: usize, const H: usize, const D: usize>(
    out: &mut [f64; E],      // (E) head outputs, concatenated
    att: &mut [[f64; T]; H], // (H, T) softmax weights, entries 0..=t
    q: &[f64; E],            // (E) query of position t
    k: &[[f64; E]; T],       // (T, E) keys, rows 0..=t
    v: &[[f64; E]; T],       // (T, E) values, rows 0..=t
    t: usize,
) {
    let scale = 1.0 / (D as f64).sqrt();
    let n = t + 1;
    let mut logits = [[0.0; T]; H];
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
        softmax_forward(&mut w[..n], &a[..n]);
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

// y = a + b  ⇒  da += dy, db += dy
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
// softmax cross-entropy over the real vocabulary (the first `vocab` of V logits)

/// `p = softmax(z[..vocab])` (the entries from `vocab` on are set to 0: they are not tokens),
/// returns `−ln p[target]`.
pub fn cross_entropy_forward<const V: usize>(
    probs: &mut [f64; V], // (V) cached for backward
    logits: &[f64; V],    // (V)
    target: usize,        // < vocab
    vocab: usize,         // ≤ V
) -> f64 {
    softmax_forward(&mut probs[..vocab], &logits[..vocab]);
    probs[vocab..].fill(0.0);
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
