//! The inner loop of the static engine's matrix products, `acc += x·b` over a row of lanes,
//! in 512-bit registers on a CPU with AVX-512 ([`crate::float::Float::fma_row`]).
//!
//! LLVM vectorizes the portable loop for these CPUs with 256-bit registers (its tuning for
//! them prefers 256 bits, and rustc has no stable switch for that preference); written with
//! the 512-bit instructions, each fused multiply-add does twice the lanes. The arithmetic
//! is the same per lane (one `fma` each, in the same order), so the bits are too.
//!
//! And the 8×8 tiles of the weights' per-step transpose ([`crate::float::Float::transpose_tile`])
//! as register permutes, where LLVM compiles the portable tile into gathers from the strided
//! rows (docs/performance.md). Moves only, no arithmetic.

use std::arch::x86_64::{
    __m256, __m256i, __m512, __m512d, __m512i, _mm256_permutex2var_ps, _mm512_fmadd_pd,
    _mm512_fmadd_ps, _mm512_permutex2var_pd, _mm512_set1_pd, _mm512_set1_ps,
};

/// `acc[j] += x·b[j]`, fused, for eight `f64` lanes.
#[inline(always)]
pub fn fma_f64(acc: [f64; 8], x: f64, b: [f64; 8]) -> [f64; 8] {
    // SAFETY: `fma_f64_avx512` needs AVX-512F only; this module is compiled only when the
    // whole crate is built for it (`cfg(target_feature = "avx512f")` in `lib.rs`), so the CPU
    // running this code runs the crate's other AVX-512 instructions too.
    unsafe { fma_f64_avx512(acc, x, b) }
}

/// `acc[j] += x·b[j]`, fused, for sixteen `f32` lanes.
#[inline(always)]
pub fn fma_f32(acc: [f32; 16], x: f32, b: [f32; 16]) -> [f32; 16] {
    // SAFETY: as `fma_f64`.
    unsafe { fma_f32_avx512(acc, x, b) }
}

#[target_feature(enable = "avx512f")]
#[inline]
fn fma_f64_avx512(acc: [f64; 8], x: f64, b: [f64; 8]) -> [f64; 8] {
    let (a, b): (__m512d, __m512d) = (bytemuck::cast(acc), bytemuck::cast(b));
    bytemuck::cast(_mm512_fmadd_pd(_mm512_set1_pd(x), b, a))
}

#[target_feature(enable = "avx512f")]
#[inline]
fn fma_f32_avx512(acc: [f32; 16], x: f32, b: [f32; 16]) -> [f32; 16] {
    let (a, b): (__m512, __m512) = (bytemuck::cast(acc), bytemuck::cast(b));
    bytemuck::cast(_mm512_fmadd_ps(_mm512_set1_ps(x), b, a))
}

/// `t = tᵀ` for an 8×8 tile of `f64`, a 512-bit register per row
/// ([`crate::float::Float::transpose_tile`]'s rounds, each exchange one `vpermt2pd`).
#[inline(always)]
pub fn transpose8_f64(t: &mut [[f64; 8]; 8]) {
    // SAFETY: as `fma_f64`.
    unsafe { transpose8_f64_avx512(t) }
}

/// `t = tᵀ` for an 8×8 tile of `f32`, a 256-bit register per row (`vpermt2ps`, AVX-512F
/// with AVX-512VL, which every CPU with AVX-512 has but the first Xeon Phi).
#[inline(always)]
pub fn transpose8_f32(t: &mut [[f32; 8]; 8]) {
    // SAFETY: as `fma_f64`, for AVX-512VL too: `float.rs` calls this only when the crate is
    // built for both (`cfg(target_feature = "avx512vl")`).
    unsafe { transpose8_f32_avx512(t) }
}

/// The lanes of the two rows after exchanging those whose bit `S` differs, as indices into
/// the pair `(a, b)` (`b`'s from 8): row `r` keeps `a`'s lanes with bit `S` clear and takes
/// `b`'s others; row `r + S` takes the rest.
const fn exchange<const S: usize>() -> ([usize; 8], [usize; 8]) {
    let (mut lo, mut hi, mut j) = ([0; 8], [0; 8], 0);
    while j < 8 {
        (lo[j], hi[j]) = if j & S == 0 {
            (j, j + S)
        } else {
            (8 + j - S, 8 + j)
        };
        j += 1;
    }
    (lo, hi)
}

#[target_feature(enable = "avx512f")]
#[inline]
fn transpose8_f64_avx512(t: &mut [[f64; 8]; 8]) {
    let mut r: [__m512d; 8] = t.map(bytemuck::cast);
    exchange_f64::<4>(&mut r);
    exchange_f64::<2>(&mut r);
    exchange_f64::<1>(&mut r);
    *t = r.map(bytemuck::cast);
}

#[target_feature(enable = "avx512f")]
#[inline]
fn exchange_f64<const S: usize>(r: &mut [__m512d; 8]) {
    let (lo, hi) = const { exchange::<S>() };
    let lo: __m512i = bytemuck::cast(lo.map(|i| i as i64));
    let hi: __m512i = bytemuck::cast(hi.map(|i| i as i64));
    for i in 0..8 {
        if i & S == 0 {
            let (a, b) = (r[i], r[i + S]);
            r[i] = _mm512_permutex2var_pd(a, lo, b);
            r[i + S] = _mm512_permutex2var_pd(a, hi, b);
        }
    }
}

#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
fn transpose8_f32_avx512(t: &mut [[f32; 8]; 8]) {
    let mut r: [__m256; 8] = t.map(bytemuck::cast);
    exchange_f32::<4>(&mut r);
    exchange_f32::<2>(&mut r);
    exchange_f32::<1>(&mut r);
    *t = r.map(bytemuck::cast);
}

#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
fn exchange_f32<const S: usize>(r: &mut [__m256; 8]) {
    let (lo, hi) = const { exchange::<S>() };
    let lo: __m256i = bytemuck::cast(lo.map(|i| i as i32));
    let hi: __m256i = bytemuck::cast(hi.map(|i| i as i32));
    for i in 0..8 {
        if i & S == 0 {
            let (a, b) = (r[i], r[i + S]);
            r[i] = _mm256_permutex2var_ps(a, lo, b);
            r[i + S] = _mm256_permutex2var_ps(a, hi, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::float::Float;
    use crate::rng::Rng;

    /// Every length from 0 to 70 lanes (whole registers, a tail, both), in both precisions:
    /// the bits of the portable loop, one fused multiply-add per lane.
    fn matches_the_lane_by_lane_fma<S: Float>() {
        let mut rng = Rng::pcg(9);
        for n in 0..=70 {
            let draw = |rng: &mut Rng| -> Vec<S> {
                (0..n).map(|_| S::from_f64(rng.gauss(0.0, 1.0))).collect()
            };
            let (acc0, b, x) = (
                draw(&mut rng),
                draw(&mut rng),
                S::from_f64(rng.gauss(0.0, 1.0)),
            );
            let mut acc = acc0.clone();
            S::fma_row(&mut acc, x, &b);
            for j in 0..n {
                let want = x.fma(b[j], acc0[j]);
                assert!(
                    acc[j].to_f64().to_bits() == want.to_f64().to_bits(),
                    "{n} lanes, lane {j}"
                );
            }
        }
    }

    #[test]
    fn the_512_bit_row_is_the_lane_by_lane_fma() {
        matches_the_lane_by_lane_fma::<f64>();
        matches_the_lane_by_lane_fma::<f32>();
    }
}
