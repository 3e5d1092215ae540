//! The low-level kernels the static engine's ops are built from: a vectorizable dot product,
//! sum, max and `exp`, the tiled matrix products of the linear layers, and the transpose the
//! forward reads, generic over the scalar ([`Float`]). No model knowledge; every sum has a
//! fixed order.

pub use crate::float::Float;

/// `a·b + c`, fused when the target has FMA ([`Float::fma`]).
#[inline(always)]
pub fn fma<S: Float>(a: S, b: S, c: S) -> S {
    a.fma(b, c)
}

// The widths come from the scalar ([`Float::LANES`], [`Float::TILE_COLS`]) but an array's
// length cannot be computed from a type parameter on stable Rust: each kernel takes its width
// as a const parameter, and the public entry point picks it with a `match` on the associated
// const, which folds away when the kernel is instantiated, leaving plain fixed-size arrays
// (what LLVM keeps in registers, where slices of an associated array type were not).

/// `$call` with `$W` a constant equal to `$w` (one of the widths the scalars have).
macro_rules! with_width {
    ($w:expr, $W:ident => $call:expr) => {
        match $w {
            8 => {
                const $W: usize = 8;
                $call
            }
            16 => {
                const $W: usize = 16;
                $call
            }
            32 => {
                const $W: usize = 32;
                $call
            }
            64 => {
                const $W: usize = 64;
                $call
            }
            w => unreachable!("no kernel of width {w}"),
        }
    };
}

/// The lanes of a reduction folded pairwise, halving: lane `i` with lane `i + n/2`, and so
/// on down to one — the order a vector register is reduced in.
#[inline(always)]
fn halve<S: Float, const W: usize>(mut a: [S; W], op: impl Fn(S, S) -> S) -> S {
    let mut n = W;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            a[i] = op(a[i], a[i + n]);
        }
    }
    a[0]
}

/// [`halve`] with `+`, in one register where the scalar has one of `W` lanes
/// ([`Float::sum_lanes`]).
#[inline(always)]
fn halve_sum<S: Float, const W: usize>(a: [S; W]) -> S {
    S::sum_lanes(&a).unwrap_or_else(|| halve(a, |x, y| x + y))
}

/// `Σ a_i·b_i` with [`Float::LANES`] partial sums (a single running sum is a serial chain
/// that LLVM must not reorder, so it would neither vectorize nor pipeline).
#[inline(always)]
pub fn dot<S: Float, const N: usize>(a: &[S; N], b: &[S; N]) -> S {
    with_width!(S::LANES, W => dot_w::<S, N, W>(a, b))
}

#[inline(always)]
fn dot_w<S: Float, const N: usize, const W: usize>(a: &[S; N], b: &[S; N]) -> S {
    let (ac, bc) = (a.chunks_exact(W), b.chunks_exact(W));
    let mut tail = S::ZERO;
    for (x, y) in ac.remainder().iter().zip(bc.remainder()) {
        tail = fma(*x, *y, tail);
    }
    let mut acc = [S::ZERO; W];
    for (x, y) in ac.zip(bc) {
        for j in 0..W {
            acc[j] = fma(x[j], y[j], acc[j]);
        }
    }
    halve_sum(acc) + tail
}

// ------------------------------------------------------------------------------------------
// matrix products over a batch of rows

/// Rows of a tile of [`matmul`]: each vector of the right-hand matrix that is loaded serves
/// this many output rows. Four with 256-bit rows (16 accumulators of the 16 registers), six
/// with 512-bit rows (24 of the 32 AVX-512 has).
const TILE_ROWS: usize = if REST_AS_TILE { 6 } else { 4 };
/// Rows of `dw` in a tile of [`matmul_tn`], as many as [`TILE_ROWS`].
const TN_ROWS: usize = TILE_ROWS;

// Columns of a tile: `S::TILE_COLS`, four vector registers per row, so that a tile's
// accumulators stay in registers with room for the operands (wider tiles spill): 256-bit
// registers (LLVM's choice of vector width for these CPUs), or 512-bit ones with AVX-512,
// where `Float::fma_row` writes the inner loop with the 512-bit instructions.

/// `out_t (+)= Σ_k a_t,k·b_k` for every row t — overwriting `out` or, with `ACC`, adding into
/// it — in tiles of `TILE_ROWS` rows × [`Float::TILE_COLS`] columns, column block by column
/// block, so that a block of `b` (`K × TILE_COLS`) stays in L1 while every row tile passes
/// over it.
#[inline(always)]
pub fn matmul<S: Float, const K: usize, const N: usize, const ACC: bool>(
    out: &mut [[S; N]], // (n, N)
    a: &[[S; K]],       // (n, K)
    b: &[[S; N]; K],    // (K, N)
) {
    with_width!(S::TILE_COLS, TC => matmul_w::<S, K, N, ACC, TC>(out, a, b))
}

#[inline(always)]
fn matmul_w<S: Float, const K: usize, const N: usize, const ACC: bool, const TC: usize>(
    out: &mut [[S; N]],
    a: &[[S; K]],
    b: &[[S; N]; K],
) {
    for c in 0..N / TC {
        matmul_block::<S, K, N, ACC, TC>(out, a, b, c * TC, TC);
    }
    if !N.is_multiple_of(TC) {
        matmul_block::<S, K, N, ACC, TC>(out, a, b, N - N % TC, N % TC);
    }
}

/// [`matmul`] on columns `c0..c0 + w`, all rows.
#[inline(always)]
fn matmul_block<S: Float, const K: usize, const N: usize, const ACC: bool, const TC: usize>(
    out: &mut [[S; N]],
    a: &[[S; K]],
    b: &[[S; N]; K],
    c0: usize,
    w: usize,
) {
    let mut oc = out.chunks_exact_mut(TILE_ROWS);
    let mut ac = a.chunks_exact(TILE_ROWS);
    for (o, x) in (&mut oc).zip(&mut ac) {
        let o: &mut [[S; N]; TILE_ROWS] = o.try_into().unwrap();
        let x: &[[S; K]; TILE_ROWS] = x.try_into().unwrap();
        matmul_cols::<S, TILE_ROWS, K, N, ACC, TC>(o, x, b, c0, w);
    }
    // the last rows (fewer than a tile) with 512-bit rows as one tile of their own count: a
    // row's accumulators are a chain of dependent FMAs, and more rows give the FMA units
    // more chains to overlap; with 256-bit rows (four chains a row) row by row was faster
    let (o, x) = (oc.into_remainder(), ac.remainder());
    match o.len() {
        5 if REST_AS_TILE => matmul_rest::<S, 5, K, N, ACC, TC>(o, x, b, c0, w),
        4 if REST_AS_TILE => matmul_rest::<S, 4, K, N, ACC, TC>(o, x, b, c0, w),
        3 if REST_AS_TILE => matmul_rest::<S, 3, K, N, ACC, TC>(o, x, b, c0, w),
        2 if REST_AS_TILE => matmul_rest::<S, 2, K, N, ACC, TC>(o, x, b, c0, w),
        _ => {
            for (o, x) in o.chunks_exact_mut(1).zip(x.chunks_exact(1)) {
                matmul_rest::<S, 1, K, N, ACC, TC>(o, x, b, c0, w);
            }
        }
    }
}

/// Whether [`matmul`] takes the rows after the last whole tile as one tile (see there).
const REST_AS_TILE: bool = cfg!(all(target_arch = "x86_64", target_feature = "avx512f"));

/// [`matmul_cols`] on the `R` rows of `out` and `a`.
#[inline(always)]
fn matmul_rest<
    S: Float,
    const R: usize,
    const K: usize,
    const N: usize,
    const ACC: bool,
    const TC: usize,
>(
    out: &mut [[S; N]],
    a: &[[S; K]],
    b: &[[S; N]; K],
    c0: usize,
    w: usize,
) {
    matmul_cols::<S, R, K, N, ACC, TC>(out.try_into().unwrap(), a.try_into().unwrap(), b, c0, w);
}

/// [`matmul`] on `R` rows and columns `c0..c0 + w` (`w ≤ S::TILE_COLS`, a constant where it is
/// called, so that the loops over it have fixed lengths). Each output sums over k in order.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // r and j index several arrays in step
fn matmul_cols<
    S: Float,
    const R: usize,
    const K: usize,
    const N: usize,
    const ACC: bool,
    const TC: usize,
>(
    out: &mut [[S; N]; R],
    a: &[[S; K]; R],
    b: &[[S; N]; K],
    c0: usize,
    w: usize,
) {
    let mut acc = [[S::ZERO; TC]; R];
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
            S::fma_row(&mut acc[r][..w], x, bk);
        }
    }
    for r in 0..R {
        for j in 0..w {
            out[r][c0 + j] = acc[r][j];
        }
    }
}

/// `dw_o (+)= Σ_t dy_t,o·x_t` (`dW (+)= dYᵀ X`) — overwriting `dw` or, with `ACC`, adding
/// into it — `TN_ROWS` rows of `dw` at a time (the last ones as [`matmul`]'s), each row
/// summing over t in order.
#[inline(always)]
pub fn matmul_tn<S: Float, const IN: usize, const OUT: usize, const ACC: bool>(
    dw: &mut [[S; IN]; OUT], // (OUT, IN)
    dy: &[[S; OUT]],         // (n, OUT)
    x: &[[S; IN]],           // (n, IN)
) {
    let mut chunks = dw.chunks_exact_mut(TN_ROWS);
    let mut o0 = 0;
    for d in &mut chunks {
        let d: &mut [[S; IN]; TN_ROWS] = d.try_into().unwrap();
        matmul_tn_tile::<S, TN_ROWS, IN, OUT, ACC>(d, dy, x, o0);
        o0 += TN_ROWS;
    }
    // the last rows as one tile with 512-bit rows, row by row otherwise (as in `matmul`)
    let d = chunks.into_remainder();
    match d.len() {
        5 if REST_AS_TILE => matmul_tn_rest::<S, 5, IN, OUT, ACC>(d, dy, x, o0),
        4 if REST_AS_TILE => matmul_tn_rest::<S, 4, IN, OUT, ACC>(d, dy, x, o0),
        3 if REST_AS_TILE => matmul_tn_rest::<S, 3, IN, OUT, ACC>(d, dy, x, o0),
        2 if REST_AS_TILE => matmul_tn_rest::<S, 2, IN, OUT, ACC>(d, dy, x, o0),
        _ => {
            for d in d {
                matmul_tn_tile::<S, 1, IN, OUT, ACC>(std::array::from_mut(d), dy, x, o0);
                o0 += 1;
            }
        }
    }
}

/// [`matmul_tn_tile`] on the `R` rows of `dw`.
#[inline(always)]
fn matmul_tn_rest<S: Float, const R: usize, const IN: usize, const OUT: usize, const ACC: bool>(
    dw: &mut [[S; IN]],
    dy: &[[S; OUT]],
    x: &[[S; IN]],
    o0: usize,
) {
    matmul_tn_tile::<S, R, IN, OUT, ACC>(dw.try_into().unwrap(), dy, x, o0);
}

#[inline(always)]
fn matmul_tn_tile<S: Float, const R: usize, const IN: usize, const OUT: usize, const ACC: bool>(
    dw: &mut [[S; IN]; R],
    dy: &[[S; OUT]],
    x: &[[S; IN]],
    o0: usize,
) {
    with_width!(S::TILE_COLS, TC => {
        for c in 0..IN / TC {
            matmul_tn_cols::<S, R, IN, OUT, ACC, TC>(dw, dy, x, o0, c * TC, TC);
        }
        if !IN.is_multiple_of(TC) {
            matmul_tn_cols::<S, R, IN, OUT, ACC, TC>(dw, dy, x, o0, IN - IN % TC, IN % TC);
        }
    })
}

#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn matmul_tn_cols<
    S: Float,
    const R: usize,
    const IN: usize,
    const OUT: usize,
    const ACC: bool,
    const TC: usize,
>(
    dw: &mut [[S; IN]; R],
    dy: &[[S; OUT]],
    x: &[[S; IN]],
    o0: usize,
    c0: usize,
    w: usize,
) {
    let mut acc = [[S::ZERO; TC]; R];
    if ACC {
        for r in 0..R {
            for j in 0..w {
                acc[r][j] = dw[r][c0 + j];
            }
        }
    }
    for (dyt, xt) in dy.iter().zip(x) {
        let xt = &xt[c0..c0 + w];
        let a: &[S; R] = dyt[o0..o0 + R].try_into().unwrap();
        for r in 0..R {
            S::fma_row(&mut acc[r][..w], a[r], xt);
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
pub fn transpose<S: Float, const IN: usize, const OUT: usize>(
    wt: &mut [[S; OUT]; IN], // (IN, OUT)
    w: &[[S; IN]; OUT],      // (OUT, IN)
) {
    for o0 in (0..OUT).step_by(TILE) {
        transpose_rows(wt, w, o0);
    }
}

/// The side of the tiles of [`transpose_rows`].
pub const TILE: usize = crate::float::TRANSPOSE_TILE;

/// Columns `o0..o0 + TILE` of `wt` (fewer at the end) from rows `o0..` of `w`. In
/// `TILE × TILE` tiles, each read as contiguous rows into registers, transposed there
/// ([`Float::transpose_tile`]) and written as contiguous rows; the edges that do not fill a
/// tile element by element.
#[inline]
pub fn transpose_rows<S: Float, const IN: usize, const OUT: usize>(
    wt: &mut [[S; OUT]; IN], // (IN, OUT)
    w: &[[S; IN]; OUT],      // (OUT, IN)
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
        let mut tile = [[S::ZERO; B]; B];
        for (t, row) in tile.iter_mut().zip(&w[o0..o0 + B]) {
            t.copy_from_slice(&row[i0..i0 + B]);
        }
        S::transpose_tile(&mut tile);
        for (t, col) in tile.iter().zip(&mut wt[i0..i0 + B]) {
            col[o0..o0 + B].copy_from_slice(t);
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

/// `e^x` in plain arithmetic, vectorizable ([`Float::exp_fast`]: within 2 ulp of libm's).
#[inline(always)]
pub fn exp<S: Float>(x: S) -> S {
    x.exp_fast()
}

/// `max_i x_i` with [`Float::LANES`] partial maxima (a serial chain of `max` does not
/// vectorize).
#[inline(always)]
pub fn max<S: Float>(x: &[S]) -> S {
    with_width!(S::LANES, W => max_w::<S, W>(x))
}

#[inline(always)]
fn max_w<S: Float, const W: usize>(x: &[S]) -> S {
    // `if a > b` rather than `f64::max`, whose NaN rules cost a compare and a blend per lane
    fn larger<S: Float>(a: S, b: S) -> S {
        if a > b { a } else { b }
    }
    let mut m = [S::NEG_INFINITY; W];
    let chunks = x.chunks_exact(W);
    let tail = chunks
        .remainder()
        .iter()
        .fold(S::NEG_INFINITY, |a, &b| larger(a, b));
    for c in chunks {
        for j in 0..W {
            m[j] = larger(m[j], c[j]);
        }
    }
    let folded = S::max_lanes(&m).unwrap_or_else(|| halve(m, larger));
    larger(folded, tail)
}

/// `Σ_i x_i` with [`Float::LANES`] partial sums.
#[inline(always)]
pub fn sum<S: Float>(x: &[S]) -> S {
    with_width!(S::LANES, W => sum_w::<S, W>(x))
}

#[inline(always)]
fn sum_w<S: Float, const W: usize>(x: &[S]) -> S {
    let mut s = [S::ZERO; W];
    let chunks = x.chunks_exact(W);
    let tail: S = chunks.remainder().iter().copied().sum();
    for c in chunks {
        for j in 0..W {
            s[j] += c[j];
        }
    }
    halve_sum(s) + tail
}
