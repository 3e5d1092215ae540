//! The low-level kernels the static engine's ops are built from: a vectorizable dot product,
//! sum, max and `exp`, the tiled matrix products of the linear layers, and the transpose the
//! forward reads. No model knowledge; every sum has a fixed order.

/// Partial sums kept by reductions ([`dot`], [`sum`], [`max`]): 8 f64, two 256-bit registers.
const LANES: usize = 8;

/// `a·b + c`, fused when the target has FMA (one rounding instead of two; the CPUs this is
/// built for do), plain otherwise so that a portable build does not call libm's slow `fma`.
#[inline(always)]
pub fn fma(a: f64, b: f64, c: f64) -> f64 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `Σ a_i·b_i` with `LANES` partial sums (a single running sum is a serial chain that LLVM
/// must not reorder, so it would neither vectorize nor pipeline).
#[inline(always)]
pub fn dot<const N: usize>(a: &[f64; N], b: &[f64; N]) -> f64 {
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
// matrix products over a batch of rows

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
pub fn matmul<const K: usize, const N: usize, const ACC: bool>(
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
pub fn matmul_tn<const IN: usize, const OUT: usize, const ACC: bool>(
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

/// `wt = wᵀ`: the layout [`super::ops::linear_forward`] reads, band by band of
/// [`TILE`] rows ([`transpose_rows`]).
pub fn transpose<const IN: usize, const OUT: usize>(
    wt: &mut [[f64; OUT]; IN], // (IN, OUT)
    w: &[[f64; IN]; OUT],      // (OUT, IN)
) {
    for o0 in (0..OUT).step_by(TILE) {
        transpose_rows(wt, w, o0);
    }
}

/// The side of the tiles of [`transpose_rows`].
pub const TILE: usize = 8;

/// Columns `o0..o0 + TILE` of `wt` (fewer at the end) from rows `o0..` of `w`. In
/// `TILE × TILE` tiles, each read as contiguous rows into registers and written as contiguous
/// rows, so that the compiler turns the tile into shuffles rather than one scalar store per
/// element; the edges that do not fill a tile element by element.
#[inline]
pub fn transpose_rows<const IN: usize, const OUT: usize>(
    wt: &mut [[f64; OUT]; IN], // (IN, OUT)
    w: &[[f64; IN]; OUT],      // (OUT, IN)
    o0: usize,
) {
    const B: usize = TILE;
    if o0 + B > OUT {
        for (o, row) in w.iter().enumerate().skip(o0) {
            for (col, &x) in wt.iter_mut().zip(row) {
                col[o] = x;
            }
        }
        return;
    }
    let i_full = IN / B * B;
    for i0 in (0..i_full).step_by(B) {
        let mut tile = [[0.0; B]; B];
        for (t, row) in tile.iter_mut().zip(&w[o0..o0 + B]) {
            t.copy_from_slice(&row[i0..i0 + B]);
        }
        for (c, col) in wt[i0..i0 + B].iter_mut().enumerate() {
            let dst = &mut col[o0..o0 + B];
            for (d, t) in dst.iter_mut().zip(&tile) {
                *d = t[c];
            }
        }
    }
    for i in i_full..IN {
        for o in o0..o0 + B {
            wt[i][o] = w[o][i];
        }
    }
}

// ------------------------------------------------------------------------------------------
// exp, max, sum

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
pub fn max(x: &[f64]) -> f64 {
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
pub fn sum(x: &[f64]) -> f64 {
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
