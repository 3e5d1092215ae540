//! The inner loop of the static engine's matrix products, `acc += x·b` over a row of lanes,
//! in 512-bit registers on a CPU with AVX-512 ([`crate::float::Float::fma_row`]).
//!
//! LLVM vectorizes the portable loop for these CPUs with 256-bit registers (its tuning for
//! them prefers 256 bits, and rustc has no stable switch for that preference); written with
//! the 512-bit instructions, each fused multiply-add does twice the lanes. The arithmetic
//! is the same per lane (one `fma` each, in the same order), so the bits are too.

use std::arch::x86_64::{
    __m512, __m512d, _mm512_fmadd_pd, _mm512_fmadd_ps, _mm512_set1_pd, _mm512_set1_ps,
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
