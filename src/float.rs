//! The static engine's scalar type, [`Float`]: `f64` (the default, the exact engine whose
//! losses are the reference's) or `f32` (half the memory traffic, twice the lanes per
//! register). One trait, so that the engine is one code path instantiated twice; the only
//! code written per type is here: the constants, the register widths and `exp`.
//!
//! It lives at the crate root, not in `gpt/`, because the optimizer and the dropout masks
//! (which the static engine calls, and which know nothing of it) are written over it too.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point scalar the static engine computes in.
pub trait Float:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + bytemuck::Pod
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
    /// `f64` or `f32`: what `--float` and a checkpoint's `float` key spell.
    const NAME: &'static str;
    const PRECISION: Precision;
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    /// The unit roundoff `u = 2^-p` (`2^-53`, `2^-24`): the relative error of one rounding,
    /// from which the tests derive their tolerances.
    const UNIT_ROUNDOFF: f64;
    /// Partial sums a reduction keeps (two 256-bit registers: 8 f64, 16 f32); 8, 16 or 32
    /// (the widths [`crate::gpt::kernels`] is instantiated for).
    const LANES: usize;
    /// Columns of a matrix-product tile: four vector registers, 256-bit (16 f64, 32 f32) or
    /// with AVX-512 512-bit (32 f64, 64 f32); 8, 16, 32 or 64.
    const TILE_COLS: usize;
    /// Rounded to nearest (exact for `f64`).
    fn from_f64(x: f64) -> Self;
    /// Exact.
    fn to_f64(self) -> f64;
    /// `n as Self`.
    fn from_usize(n: usize) -> Self;
    fn sqrt(self) -> Self;
    fn ln(self) -> Self;
    /// `self·b + c`, fused when the target has FMA (one rounding instead of two; the CPUs
    /// this is built for do), plain otherwise so that a portable build does not call libm's
    /// slow `fma`.
    fn fma(self, b: Self, c: Self) -> Self;
    /// `acc[j] = x·b[j] + acc[j]` for every lane, each as [`Float::fma`]: the inner loop of
    /// the matrix products. With AVX-512, in 512-bit registers (`crate::wide`).
    #[inline(always)]
    fn fma_row(acc: &mut [Self], x: Self, b: &[Self]) {
        for (a, &b) in acc.iter_mut().zip(b) {
            *a = x.fma(b, *a);
        }
    }
    /// The sum of [`Float::LANES`] partial sums folded pairwise, halving (lane `i` with lane
    /// `i + n/2`, then again, down to one: `crate::gpt::kernels`' order) in registers, where
    /// the target has AVX (`crate::wide`): LLVM's version of the portable fold reloads the
    /// lanes from memory, a stall when they were just stored.
    /// `None` elsewhere, and for any other number of lanes.
    #[inline(always)]
    fn sum_lanes(_a: &[Self]) -> Option<Self> {
        None
    }
    /// [`Float::sum_lanes`] with `max` for `+`, each fold `if a > b { a } else { b }` with `a`
    /// the lower lane.
    #[inline(always)]
    fn max_lanes(_a: &[Self]) -> Option<Self> {
        None
    }
    /// `t = tᵀ` for one tile in registers: element `(r, c)` goes to `(c, r)`, which swaps each
    /// bit of the row index with the same bit of the column index. One round per bit `s` (4,
    /// 2, 1) pairs rows `r` and `r + s` (bit `s` of `r` clear) and exchanges the lanes whose
    /// bit `s` differs. With AVX-512, each exchange is one two-register permute
    /// (`crate::wide`): written portably, LLVM turns the tile's loads and shuffles into
    /// gathers from the strided rows.
    #[inline(always)]
    fn transpose_tile(t: &mut [[Self; TRANSPOSE_TILE]; TRANSPOSE_TILE]) {
        transpose_tile_portable(t);
    }
    /// `e^x` in plain arithmetic, so that loops over it vectorize (libm's `exp` is a call per
    /// element); see the implementations for the accuracy.
    fn exp_fast(self) -> Self;
    /// 0 for a subnormal `f32` (what a CPU's flush-to-zero mode does, without the mode); the
    /// identity in `f64`. Adam's moments decay geometrically where a gradient is 0 (unseen
    /// tokens, unreached positions): in `f32` they reach the subnormals (< 1.2e-38) within a
    /// few hundred steps, where each operation on them takes a microcode assist of ~100
    /// cycles; their share of an update, `lr·m̂/(√v̂ + 1e-8)`, is < 1e-30 there.
    fn flush_subnormal(self) -> Self;
    /// 0 for a subnormal, in either precision: what the static engine's Adam does to its
    /// moments in `f64` too ([`crate::optim::AdamStep::update_flushing`]).
    fn flush_to_zero(self) -> Self;
    /// `x` as `f64`s: `x` itself for `f64`, else converted into the first `x.len()` values
    /// of `buf`.
    fn as_f64s<'a>(x: &'a [Self], buf: &'a mut [f64]) -> &'a [f64];
}

/// The side of [`Float::transpose_tile`]'s tiles: eight rows of eight.
pub const TRANSPOSE_TILE: usize = 8;

/// [`Float::transpose_tile`] without AVX-512.
#[inline(always)]
fn transpose_tile_portable<S: Copy>(t: &mut [[S; TRANSPOSE_TILE]; TRANSPOSE_TILE]) {
    swap_bit::<S, 4>(t);
    swap_bit::<S, 2>(t);
    swap_bit::<S, 1>(t);
}

/// One round of [`Float::transpose_tile`]: bit `B` of the row index with bit `B` of the
/// column's.
#[inline(always)]
fn swap_bit<S: Copy, const B: usize>(t: &mut [[S; TRANSPOSE_TILE]; TRANSPOSE_TILE]) {
    for r in 0..TRANSPOSE_TILE {
        if r & B == 0 {
            let (a, b) = (t[r], t[r + B]);
            t[r] = std::array::from_fn(|j| if j & B == 0 { a[j] } else { b[j - B] });
            t[r + B] = std::array::from_fn(|j| if j & B == 0 { a[j + B] } else { b[j] });
        }
    }
}

impl Float for f64 {
    const NAME: &'static str = "f64";
    const PRECISION: Precision = Precision::F64;
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    const NEG_INFINITY: f64 = f64::NEG_INFINITY;
    const UNIT_ROUNDOFF: f64 = f64::EPSILON / 2.0;
    const LANES: usize = 8;
    const TILE_COLS: usize = if cfg!(all(target_arch = "x86_64", target_feature = "avx512f")) {
        32
    } else {
        16
    };

    #[inline(always)]
    fn from_f64(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_usize(n: usize) -> f64 {
        n as f64
    }
    #[inline(always)]
    fn sqrt(self) -> f64 {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn ln(self) -> f64 {
        f64::ln(self)
    }
    #[inline(always)]
    fn fma(self, b: f64, c: f64) -> f64 {
        if cfg!(target_feature = "fma") {
            self.mul_add(b, c)
        } else {
            self * b + c
        }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    #[inline(always)]
    fn transpose_tile(t: &mut [[f64; TRANSPOSE_TILE]; TRANSPOSE_TILE]) {
        crate::wide::transpose8_f64(t);
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
    #[inline(always)]
    fn sum_lanes(a: &[f64]) -> Option<f64> {
        Some(crate::wide::sum8_f64(a.try_into().ok()?))
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
    #[inline(always)]
    fn max_lanes(a: &[f64]) -> Option<f64> {
        Some(crate::wide::max8_f64(a.try_into().ok()?))
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    #[inline(always)]
    fn fma_row(acc: &mut [f64], x: f64, b: &[f64]) {
        let (w, mut c) = (acc.len().min(b.len()), 0);
        while c + 8 <= w {
            let (a8, b8) = (
                acc[c..c + 8].try_into().unwrap(),
                b[c..c + 8].try_into().unwrap(),
            );
            acc[c..c + 8].copy_from_slice(&crate::wide::fma_f64(a8, x, b8));
            c += 8;
        }
        for j in c..w {
            acc[j] = x.fma(b[j], acc[j]);
        }
    }

    /// `x = k·ln2 + r` with `|r| ≤ ln2/2`, `e^r` by its Taylor series to `r¹³/13!`
    /// (truncation < 1e-17 relative), `2^k` put straight into the exponent bits. Within 2 ulp
    /// of libm's `exp` (tested); 0 below −708.4 (where `e^x` is subnormal) and ∞ above 709.7.
    #[inline(always)]
    fn exp_fast(self) -> f64 {
        let x = self;
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
        let kt = xc.fma(std::f64::consts::LOG2_E, SHIFT);
        let k = kt - SHIFT;
        let r = (-k).fma(LN2_LO, (-k).fma(LN2_HI, xc));
        let mut p = C[0];
        for c in &C[1..] {
            p = p.fma(r, *c);
        }
        p = p.fma(r, 1.0);
        p = p.fma(r, 1.0);
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

    #[inline(always)]
    fn flush_subnormal(self) -> f64 {
        self
    }

    #[inline(always)]
    fn flush_to_zero(self) -> f64 {
        if self.abs() < f64::MIN_POSITIVE {
            0.0
        } else {
            self
        }
    }

    #[inline(always)]
    fn as_f64s<'a>(x: &'a [f64], _buf: &'a mut [f64]) -> &'a [f64] {
        x
    }
}

impl Float for f32 {
    const NAME: &'static str = "f32";
    const PRECISION: Precision = Precision::F32;
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    const NEG_INFINITY: f32 = f32::NEG_INFINITY;
    const UNIT_ROUNDOFF: f64 = f32::EPSILON as f64 / 2.0;
    const LANES: usize = 16;
    const TILE_COLS: usize = if cfg!(all(target_arch = "x86_64", target_feature = "avx512f")) {
        64
    } else {
        32
    };

    #[inline(always)]
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_usize(n: usize) -> f32 {
        n as f32
    }
    #[inline(always)]
    fn sqrt(self) -> f32 {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn ln(self) -> f32 {
        f32::ln(self)
    }
    #[inline(always)]
    fn fma(self, b: f32, c: f32) -> f32 {
        if cfg!(target_feature = "fma") {
            self.mul_add(b, c)
        } else {
            self * b + c
        }
    }

    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "avx512vl"
    ))]
    #[inline(always)]
    fn transpose_tile(t: &mut [[f32; TRANSPOSE_TILE]; TRANSPOSE_TILE]) {
        crate::wide::transpose8_f32(t);
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
    #[inline(always)]
    fn sum_lanes(a: &[f32]) -> Option<f32> {
        Some(crate::wide::sum16_f32(a.try_into().ok()?))
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
    #[inline(always)]
    fn max_lanes(a: &[f32]) -> Option<f32> {
        Some(crate::wide::max16_f32(a.try_into().ok()?))
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    #[inline(always)]
    fn fma_row(acc: &mut [f32], x: f32, b: &[f32]) {
        let (w, mut c) = (acc.len().min(b.len()), 0);
        while c + 16 <= w {
            let (a16, b16) = (
                acc[c..c + 16].try_into().unwrap(),
                b[c..c + 16].try_into().unwrap(),
            );
            acc[c..c + 16].copy_from_slice(&crate::wide::fma_f32(a16, x, b16));
            c += 16;
        }
        for j in c..w {
            acc[j] = x.fma(b[j], acc[j]);
        }
    }

    /// As the `f64` one: `x = k·ln2 + r`, `|r| ≤ ln2/2`, `e^r` to `r⁷/7!` (truncation
    /// `r⁸/8! < 6e-9` relative, a tenth of f32's unit roundoff), `2^k` into the exponent
    /// bits. Within 2 ulp of libm's `expf` (tested); 0 below −87.3 (where `e^x` nears the
    /// subnormals) and ∞ above 88.3 (a little before f32 overflows, at 88.72: softmax only
    /// ever takes `x ≤ 0`).
    #[inline(always)]
    fn exp_fast(self) -> f32 {
        let x = self;
        // ln 2 split (Cephes'): LN2_HI has 9 significant bits, so k·LN2_HI is exact for |k| < 2¹⁵
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 − LN2_HI
        // adding 1.5·2²³ rounds to an integer (ties to even) and leaves it in the low bits
        const SHIFT: f32 = 12_582_912.0;
        // 1/n! for n = 7 down to 2
        const C: [f32; 6] = [
            1.0 / 5_040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
        ];
        let xc = x.clamp(-87.3, 88.3);
        let kt = xc.fma(std::f32::consts::LOG2_E, SHIFT);
        let k = kt - SHIFT;
        let r = (-k).fma(LN2_LO, (-k).fma(LN2_HI, xc));
        let mut p = C[0];
        for c in &C[1..] {
            p = p.fma(r, *c);
        }
        p = p.fma(r, 1.0);
        p = p.fma(r, 1.0);
        // the low 9 bits of kt's bits are k (mod 2⁹); k + 127 (in 1..=254 after the clamp) is
        // the biased exponent of 2^k
        let scale = f32::from_bits(kt.to_bits().wrapping_add(127) << 23);
        let y = p * scale;
        if x < -87.3 {
            0.0
        } else if x > 88.3 {
            f32::INFINITY
        } else {
            y
        }
    }

    #[inline(always)]
    fn flush_subnormal(self) -> f32 {
        self.flush_to_zero()
    }

    #[inline(always)]
    fn flush_to_zero(self) -> f32 {
        if self.abs() < f32::MIN_POSITIVE {
            0.0
        } else {
            self
        }
    }

    #[inline]
    fn as_f64s<'a>(x: &'a [f32], buf: &'a mut [f64]) -> &'a [f64] {
        let out = &mut buf[..x.len()];
        for (o, v) in out.iter_mut().zip(x) {
            *o = *v as f64;
        }
        out
    }
}

/// The precision of a static model, as the command line and a checkpoint name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// `f64`: the default, and the exact engine.
    #[default]
    F64,
    /// `f32`.
    F32,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F64 => f64::NAME,
            Precision::F32 => f32::NAME,
        }
    }

    pub fn from_name(s: &str) -> Option<Precision> {
        match s {
            "f64" => Some(Precision::F64),
            "f32" => Some(Precision::F32),
            _ => None,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Precision, String> {
        Precision::from_name(s).ok_or_else(|| format!("{s:?} is not f64 or f32"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable rounds (what a build without AVX-512 runs, so that a machine with it
    /// tests them too) move every element of a tile to its mirrored place.
    #[test]
    fn the_portable_tile_transpose_mirrors_every_element() {
        const N: usize = TRANSPOSE_TILE;
        let tile: [[usize; N]; N] = std::array::from_fn(|r| std::array::from_fn(|c| r * N + c));
        let mut t = tile;
        transpose_tile_portable(&mut t);
        for r in 0..N {
            for c in 0..N {
                assert_eq!(t[c][r], tile[r][c], "({r}, {c})");
            }
        }
    }
}
