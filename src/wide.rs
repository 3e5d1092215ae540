//! SIMD written out where LLVM's own is slower; the same arithmetic per lane in the same
//! order, so the same bits as the portable code.
//!
//! With AVX-512, the inner loop of the static engine's matrix products, `acc += x·b` over a
//! row of lanes, in 512-bit registers ([`crate::float::Float::fma_row`]): LLVM vectorizes the
//! portable loop for these CPUs with 256-bit registers (its tuning for them prefers 256 bits,
//! and rustc has no stable switch for that preference), and each 512-bit fused multiply-add
//! does twice the lanes. And the 8×8 tiles of the weights' per-step transpose
//! ([`crate::float::Float::transpose_tile`]) as register permutes, where LLVM compiles the
//! portable tile into gathers from the strided rows (docs/performance.md). Moves only.
//!
//! With AVX, the last folds of the kernels' reductions ([`crate::float::Float::sum_lanes`])
//! in registers, halves added to halves, where LLVM reloads the lanes of the portable fold
//! from memory just after they were stored (a store-forwarding stall in every rmsnorm and
//! softmax). The same additions (or `max`es) in the same order.

use std::arch::x86_64::{
    __m128, __m128d, __m256, __m256d, _mm_add_pd, _mm_add_ps, _mm_add_sd, _mm_add_ss,
    _mm_cvtsd_f64, _mm_cvtss_f32, _mm_max_pd, _mm_max_ps, _mm_max_sd, _mm_max_ss, _mm_movehdup_ps,
    _mm_movehl_ps, _mm_unpackhi_pd, _mm256_add_pd, _mm256_add_ps, _mm256_castpd256_pd128,
    _mm256_castps256_ps128, _mm256_extractf128_pd, _mm256_extractf128_ps, _mm256_max_pd,
    _mm256_max_ps,
};

#[cfg(target_feature = "avx512f")]
pub use avx512::{fma_f32, fma_f64, transpose8_f32, transpose8_f64};

/// The parts that need AVX-512: compiled only when the crate is built for it.
#[cfg(target_feature = "avx512f")]
mod avx512 {
    use std::arch::x86_64::{
        __m256, __m256i, __m512, __m512d, __m512i, _mm256_permutex2var_ps, _mm512_fmadd_pd,
        _mm512_fmadd_ps, _mm512_permutex2var_pd, _mm512_set1_pd, _mm512_set1_ps,
    };

    /// `acc[j] += x·b[j]`, fused, for eight `f64` lanes.
    #[inline(always)]
    pub fn fma_f64(acc: [f64; 8], x: f64, b: [f64; 8]) -> [f64; 8] {
        // SAFETY: `fma_f64_avx512` needs AVX-512F only; this module is compiled only when the
        // whole crate is built for it (`cfg(target_feature = "avx512f")` on `mod avx512`), so
        // the CPU running this code runs the crate's other AVX-512 instructions too.
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
}

/// The eight lanes of `a` folded with `+` as [`crate::float::Float::sum_lanes`] says: lane
/// `i` with `i + 4`, then `i + 2`, then `i + 1`, each a register's halves.
#[inline(always)]
pub fn sum8_f64(a: [f64; 8]) -> f64 {
    // SAFETY: `fold8_f64_avx` needs AVX only; this module is compiled only when the whole
    // crate is built for it (`cfg(target_feature = "avx")` in `lib.rs`).
    unsafe { fold8_f64_avx::<false>(a) }
}

/// [`sum8_f64`] with `max` (`vmaxpd`: `a > b ? a : b`, `a` the lower lane) for `+`.
#[inline(always)]
pub fn max8_f64(a: [f64; 8]) -> f64 {
    // SAFETY: as `sum8_f64`.
    unsafe { fold8_f64_avx::<true>(a) }
}

/// The sixteen lanes of `a` folded with `+`: lane `i` with `i + 8`, `i + 4`, `i + 2`, `i + 1`.
#[inline(always)]
pub fn sum16_f32(a: [f32; 16]) -> f32 {
    // SAFETY: as `sum8_f64`.
    unsafe { fold16_f32_avx::<false>(a) }
}

/// [`sum16_f32`] with `max` (`vmaxps`) for `+`.
#[inline(always)]
pub fn max16_f32(a: [f32; 16]) -> f32 {
    // SAFETY: as `sum8_f64`.
    unsafe { fold16_f32_avx::<true>(a) }
}

/// The two halves of `a`, each as one value of half its size (a 256-bit register here).
#[inline(always)]
fn halves<T: bytemuck::Pod, const N: usize, H: bytemuck::Pod>(a: [T; N]) -> (H, H) {
    let (lo, hi) = a.split_at(N / 2);
    let half = |x: &[T]| bytemuck::pod_read_unaligned(bytemuck::cast_slice(x));
    (half(lo), half(hi))
}

#[target_feature(enable = "avx")]
#[inline]
fn fold8_f64_avx<const MAX: bool>(a: [f64; 8]) -> f64 {
    let (lo, hi): (__m256d, __m256d) = halves(a);
    let v = if MAX {
        _mm256_max_pd(lo, hi)
    } else {
        _mm256_add_pd(lo, hi)
    };
    let (lo, hi): (__m128d, __m128d) = (_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
    let v = if MAX {
        _mm_max_pd(lo, hi)
    } else {
        _mm_add_pd(lo, hi)
    };
    let hi = _mm_unpackhi_pd(v, v);
    _mm_cvtsd_f64(if MAX {
        _mm_max_sd(v, hi)
    } else {
        _mm_add_sd(v, hi)
    })
}

#[target_feature(enable = "avx")]
#[inline]
fn fold16_f32_avx<const MAX: bool>(a: [f32; 16]) -> f32 {
    let (lo, hi): (__m256, __m256) = halves(a);
    let v = if MAX {
        _mm256_max_ps(lo, hi)
    } else {
        _mm256_add_ps(lo, hi)
    };
    let (lo, hi): (__m128, __m128) = (_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let v = if MAX {
        _mm_max_ps(lo, hi)
    } else {
        _mm_add_ps(lo, hi)
    };
    let hi = _mm_movehl_ps(v, v); // lanes 2, 3 into 0, 1
    let v = if MAX {
        _mm_max_ps(v, hi)
    } else {
        _mm_add_ps(v, hi)
    };
    let hi = _mm_movehdup_ps(v); // lane 1 into 0
    _mm_cvtss_f32(if MAX {
        _mm_max_ss(v, hi)
    } else {
        _mm_add_ss(v, hi)
    })
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

    /// The lanes folded pairwise, halving, written out: the order the register folds keep.
    fn fold<S: Float>(mut a: Vec<S>, op: impl Fn(S, S) -> S) -> S {
        while a.len() > 1 {
            let n = a.len() / 2;
            a = (0..n).map(|i| op(a[i], a[i + n])).collect();
        }
        a[0]
    }

    /// Lanes of mixed magnitudes (so that another order of the sums changes their bits) and
    /// repeated values, ±0 and −∞ among them (so that `max`'s choice between equal lanes
    /// shows in the sign of a zero); the bits of the written-out fold.
    fn folds_match<S: Float>(sum: fn(&[S]) -> Option<S>, max: fn(&[S]) -> Option<S>) {
        let mut rng = Rng::pcg(11);
        let larger = |a: S, b: S| if a > b { a } else { b };
        for trial in 0..2000 {
            let a: Vec<S> = (0..S::LANES)
                // every fourth trial lanes of ±0, −∞ and −1 only, where the folds meet ties
                .map(|_| match (rng.random() * 8.0) as u32 {
                    k if trial % 4 == 3 => {
                        [S::ZERO, -S::ZERO, S::NEG_INFINITY, -S::ONE][k as usize % 4]
                    }
                    0 if trial % 2 == 0 => S::ZERO,
                    1 if trial % 2 == 0 => -S::ZERO,
                    2 => S::NEG_INFINITY,
                    _ => S::from_f64(
                        rng.gauss(0.0, 1.0) * 10f64.powi((rng.random() * 12.0) as i32 - 6),
                    ),
                })
                .collect();
            let bits = |x: S| x.to_f64().to_bits();
            let want = fold(a.clone(), |x, y| x + y);
            assert_eq!(sum(&a).map(bits), Some(bits(want)), "sum of {a:?}");
            let want = fold(a.clone(), larger);
            assert_eq!(max(&a).map(bits), Some(bits(want)), "max of {a:?}");
        }
    }

    #[test]
    fn the_register_folds_are_the_portable_folds() {
        folds_match::<f64>(f64::sum_lanes, f64::max_lanes);
        folds_match::<f32>(f32::sum_lanes, f32::max_lanes);
    }

    #[test]
    fn the_512_bit_row_is_the_lane_by_lane_fma() {
        matches_the_lane_by_lane_fma::<f64>();
        matches_the_lane_by_lane_fma::<f32>();
    }
}
