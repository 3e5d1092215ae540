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
//! Inner loops keep `LANES` independent partial sums where they reduce, so that LLVM (which may
//! not reassociate floating-point sums) can still vectorize them; the sums are therefore not
//! in the reference's left-to-right order and agree with it to rounding (≈1e-16 relative).

/// Partial sums kept by reductions ([`dot`], `sum`, `max`): 8 f64, two 256-bit registers.
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
// linear (no bias) over a batch of rows (positions); row o of W is output o
//
// Forward reads W through its transpose `Wᵀ` (`[[f64; OUT]; IN]`, row i = input i), which the
// model keeps next to W: `Y = X·Wᵀ` is then a sum of rows, the same vectorizable `y += a·row`
// loop as backward's `dX += dY·W`, where `y_o = W[o]·x` would need one horizontal reduction
// per output. All three products (those two and `dW += dYᵀ·X`) work on register tiles of
// `TILE_ROWS` output rows × `TILE_COLS` columns: each vector of the right-hand matrix loaded
// serves `TILE_ROWS` rows, so a product over many rows (a group of documents) runs at the
// FMA units' rate rather than at the cache's. Every output is a sum over k in order.

/// Rows of a tile of the matrix products below: each vector of the right-hand matrix that is
/// loaded serves this many output rows.
const TILE_ROWS: usize = 4;

/// Columns of a tile: four 256-bit registers per row (LLVM's choice of vector width for this
/// CPU), so that a tile's 16 accumulator registers stay in registers with room for the
/// operands; wider tiles spill.
const TILE_COLS: usize = 16;

/// `out_t (+)= Σ_k a_t,k·b_k` for every row t — overwriting `out` or, with `ACC`, adding into
/// it — in tiles of `TILE_ROWS` rows × `TILE_COLS` columns, column block by column block, so
/// that a block of `b` (`K × TILE_COLS`) stays in L1 while every row tile passes over it.
#[inline(always)]
fn matmul<const K: usize, const N: usize, const ACC: bool>(
    out: &mut [[f64; N]], // (n, N)
    a: &[[f64; K]],       // (n, K)
    b: &[[f64; N]; K],    // (K, N)
) {
    for c in 0..N / TILE_COLS {
        matmul_block::<K, N, ACC>(out, a, b, c * TILE_COLS, TILE_COLS);
    }
    if N % TILE_COLS != 0 {
        matmul_block::<K, N, ACC>(out, a, b, N - N % TILE_COLS, N % TILE_COLS);
    }
}

/// [`matmul`] on columns `c0..c0 + w`, all rows.
#[inline(always)]
fn matmul_block<const K: usize, const N: usize, const ACC: bool>(
    out: &mut [[f64; N]],
    a: &[[f64; K]],
    b: &[[f64; N]; K],
    c0: usize,
    w: usize,
) {
    let mut oc = out.chunks_exact_mut(TILE_ROWS);
    let mut ac = a.chunks_exact(TILE_ROWS);
    for (o, x) in (&mut oc).zip(&mut ac) {
        let o: &mut [[f64; N]; TILE_ROWS] = o.try_into().unwrap();
        let x: &[[f64; K]; TILE_ROWS] = x.try_into().unwrap();
        matmul_cols::<TILE_ROWS, K, N, ACC>(o, x, b, c0, w);
    }
    for (o, x) in oc.into_remainder().iter_mut().zip(ac.remainder()) {
        let (o, x) = (std::array::from_mut(o), std::array::from_ref(x));
        matmul_cols::<1, K, N, ACC>(o, x, b, c0, w);
    }
}

/// [`matmul`] on `R` rows and columns `c0..c0 + w` (`w ≤ TILE_COLS`, a constant where it is
/// called, so that the loops over it have fixed lengths). Each output sums over k in order.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // r and j index several arrays in step
fn matmul_cols<const R: usize, const K: usize, const N: usize, const ACC: bool>(
    out: &mut [[f64; N]; R],
    a: &[[f64; K]; R],
    b: &[[f64; N]; K],
    c0: usize,
    w: usize,
) {
    let mut acc = [[0.0; TILE_COLS]; R];
    if ACC {
        for r in 0..R {
            for j in 0..w {
                acc[r][j] = out[r][c0 + j];
            }
        }
    }
    for (k, bk) in b.iter().enumerate() {
        let bk = &bk[c0..c0 + w];
        for r in 0..R {
            let x = a[r][k];
            for j in 0..w {
                acc[r][j] = fma(x, bk[j], acc[r][j]);
            }
        }
    }
    for r in 0..R {
        for j in 0..w {
            out[r][c0 + j] = acc[r][j];
        }
    }
}

/// `dw_o (+)= Σ_t dy_t,o·x_t` (`dW (+)= dYᵀ X`) — overwriting `dw` or, with `ACC`, adding
/// into it — `TILE_ROWS` rows of `dw` at a time, each row summing over t in order.
#[inline(always)]
fn matmul_tn<const IN: usize, const OUT: usize, const ACC: bool>(
    dw: &mut [[f64; IN]; OUT], // (OUT, IN)
    dy: &[[f64; OUT]],         // (n, OUT)
    x: &[[f64; IN]],           // (n, IN)
) {
    let mut chunks = dw.chunks_exact_mut(TILE_ROWS);
    let mut o0 = 0;
    for d in &mut chunks {
        let d: &mut [[f64; IN]; TILE_ROWS] = d.try_into().unwrap();
        matmul_tn_tile::<TILE_ROWS, IN, OUT, ACC>(d, dy, x, o0);
        o0 += TILE_ROWS;
    }
    for d in chunks.into_remainder() {
        matmul_tn_tile::<1, IN, OUT, ACC>(std::array::from_mut(d), dy, x, o0);
        o0 += 1;
    }
}

#[inline(always)]
fn matmul_tn_tile<const R: usize, const IN: usize, const OUT: usize, const ACC: bool>(
    dw: &mut [[f64; IN]; R],
    dy: &[[f64; OUT]],
    x: &[[f64; IN]],
    o0: usize,
) {
    for c in 0..IN / TILE_COLS {
        matmul_tn_cols::<R, IN, OUT, ACC>(dw, dy, x, o0, c * TILE_COLS, TILE_COLS);
    }
    if IN % TILE_COLS != 0 {
        matmul_tn_cols::<R, IN, OUT, ACC>(dw, dy, x, o0, IN - IN % TILE_COLS, IN % TILE_COLS);
    }
}

#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn matmul_tn_cols<const R: usize, const IN: usize, const OUT: usize, const ACC: bool>(
    dw: &mut [[f64; IN]; R],
    dy: &[[f64; OUT]],
    x: &[[f64; IN]],
    o0: usize,
    c0: usize,
    w: usize,
) {
    let mut acc = [[0.0; TILE_COLS]; R];
    if ACC {
        for r in 0..R {
            for j in 0..w {
                acc[r][j] = dw[r][c0 + j];
            }
        }
    }
    for (dyt, xt) in dy.iter().zip(x) {
        let xt = &xt[c0..c0 + w];
        let a: &[f64; R] = dyt[o0..o0 + R].try_into().unwrap();
        for r in 0..R {
            for j in 0..w {
                acc[r][j] = fma(a[r], xt[j], acc[r][j]);
            }
        }
    }
    for r in 0..R {
        for j in 0..w {
            dw[r][c0 + j] = acc[r][j];
        }
    }
}

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
pub enum Write {
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
    into_dx: Write,
    into_dw: Write,
) {
    debug_assert!(dx.len() == dout.len() && x.len() == dout.len());
    match into_dx {
        Write::Add => matmul::<OUT, IN, true>(dx, dout, w),
        Write::Set => matmul::<OUT, IN, false>(dx, dout, w),
    }
    match into_dw {
        Write::Add => matmul_tn::<IN, OUT, true>(dw, dout, x),
        Write::Set => matmul_tn::<IN, OUT, false>(dw, dout, x),
    }
}

/// `wt = wᵀ`: the layout [`linear_forward`] reads. In 8×8 blocks, so that the strided side
/// touches each cache line once per block rather than once per element.
pub fn transpose<const IN: usize, const OUT: usize>(
    wt: &mut [[f64; OUT]; IN], // (IN, OUT)
    w: &[[f64; IN]; OUT],      // (OUT, IN)
) {
    const B: usize = 8;
    for o0 in (0..OUT).step_by(B) {
        for i0 in (0..IN).step_by(B) {
            for (o, row) in w.iter().enumerate().skip(o0).take(B) {
                for (col, &x) in wt[i0..].iter_mut().zip(&row[i0..]).take(B) {
                    col[o] = x;
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// exp, and softmax over a run-time prefix (the real vocabulary, vocab ≤ V entries)

/// `e^x` in plain arithmetic, so that loops over it vectorize (libm's `exp` is a call per
/// element). `x = k·ln2 + r` with `|r| ≤ ln2/2`, `e^r` by its Taylor series to `r¹³/13!`
/// (truncation < 1e-17 relative), `2^k` put straight into the exponent bits. Within 2 ulp of
/// libm's `exp` (tested); 0 below −708.4 (where `e^x` is subnormal) and ∞ above 709.7.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    // ln 2 split (fdlibm's): LN2_HI has 32 significant bits, so k·LN2_HI is exact
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // ln 2 − LN2_HI
    // adding 1.5·2⁵² rounds to an integer (ties to even) and leaves it in the low bits
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    // 1/n! for n = 13 down to 2
    const C: [f64; 12] = [
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
    ];
    let xc = x.clamp(-708.0, 709.0);
    let kt = fma(xc, std::f64::consts::LOG2_E, SHIFT);
    let k = kt - SHIFT;
    let r = fma(-k, LN2_LO, fma(-k, LN2_HI, xc));
    let mut p = C[0];
    for c in &C[1..] {
        p = fma(p, r, *c);
    }
    p = fma(p, r, 1.0);
    p = fma(p, r, 1.0);
    // the low 12 bits of kt's bits are k (mod 2¹²); k + 1023 is the biased exponent of 2^k
    let scale = f64::from_bits(kt.to_bits().wrapping_add(1023) << 52);
    let y = p * scale;
    if x < -708.4 {
        0.0
    } else if x > 709.7 {
        f64::INFINITY
    } else {
        y
    }
}

/// `max_i x_i` with `LANES` partial maxima (a serial chain of `max` does not vectorize).
#[inline(always)]
fn max(x: &[f64]) -> f64 {
    // `if a > b` rather than `f64::max`, whose NaN rules cost a compare and a blend per lane
    fn larger(a: f64, b: f64) -> f64 {
        if a > b { a } else { b }
    }
    let mut m = [f64::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f64::NEG_INFINITY, |a, &b| larger(a, b));
    for c in chunks {
        for j in 0..LANES {
            m[j] = larger(m[j], c[j]);
        }
    }
    let m4 = [
        larger(m[0], m[4]),
        larger(m[1], m[5]),
        larger(m[2], m[6]),
        larger(m[3], m[7]),
    ];
    larger(larger(larger(m4[0], m4[2]), larger(m4[1], m4[3])), tail)
}

/// `Σ_i x_i` with `LANES` partial sums.
#[inline(always)]
fn sum(x: &[f64]) -> f64 {
    let mut s = [0.0; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().sum();
    for c in chunks {
        for j in 0..LANES {
            s[j] += c[j];
        }
    }
    let s4 = [s[0] + s[4], s[1] + s[5], s[2] + s[6], s[3] + s[7]];
    (s4[0] + s4[2]) + (s4[1] + s4[3]) + tail
}

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
