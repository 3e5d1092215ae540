//! Dropout masks as a pure function of where they apply, so that both engines draw the same
//! ones and a step's result does not depend on which thread computes which document.
//!
//! Inverted dropout: during training an activation `y` becomes `y·m` with `m = 0` (with
//! probability `p`) or `m = 1/(1−p)`; evaluation and sampling use `y` as it is. The mask of
//! element `i` at dropout site `site` of position `pos` of document `doc` of a step's batch is
//! a function of `(key, doc, pos, site, i)` alone, `key` being the step's ([`step_key`]):
//!
//! ```text
//! row  = mix(key ⊕ mix(doc·2³² + pos))          one per position ([`row_seed`])
//! base = mix(row ⊕ mix(site + 1))               one per site of that position
//! u_i  = mix(base + (i+1)·γ)                    splitmix64's stream from `base`
//! m_i  = 0 if u_i < p·2⁶⁴ else 1/(1−p)
//! ```
//!
//! Sites: `2l` is the attention output of layer `l` (after `attn_wo`) and `2l + 1` its MLP
//! output (after `mlp_fc2`), each before it is added to the residual stream (GPT-2's residual
//! dropout). The embedding and the attention weights are not dropped.

/// splitmix64's increment (2⁶⁴/φ).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

use crate::float::Float;
use crate::rng::mix64 as mix;

/// The key of step `step` of a run seeded with `seed`.
pub fn step_key(seed: u64, step: usize) -> u64 {
    mix(mix(seed).wrapping_add((step as u64).wrapping_mul(GAMMA)))
}

/// The seed of position `pos` of document `doc` (its index in the step's batch).
#[inline]
pub fn row_seed(key: u64, doc: usize, pos: usize) -> u64 {
    mix(key ^ mix(((doc as u64) << 32) | pos as u64))
}

/// The site of layer `layer`'s attention output.
pub const fn attn_site(layer: usize) -> usize {
    2 * layer
}

/// The site of layer `layer`'s MLP output.
pub const fn mlp_site(layer: usize) -> usize {
    2 * layer + 1
}

/// Dropout during a training step: the probability and the step's key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub p: f64,
    pub key: u64,
}

impl Dropout {
    /// Dropout with probability `p` at step `step` of a run seeded with `seed`; `None` when
    /// `p` is 0, which is microgpt's training exactly.
    pub fn at(p: f64, seed: u64, step: usize) -> Option<Dropout> {
        (p > 0.0).then(|| Dropout {
            p,
            key: step_key(seed, step),
        })
    }

    /// Fills `mask` with site `site`'s multipliers for the position whose [`row_seed`] is
    /// `row`: each `0` or `1/(1−p)`.
    #[inline]
    pub fn fill<S: Float>(&self, mask: &mut [S], row: u64, site: usize) {
        // u < p·2⁶⁴, in integers: exact for every p that is a multiple of 2⁻⁶⁴
        let threshold = (self.p * 18_446_744_073_709_551_616.0) as u64;
        let scale = S::from_f64(1.0 / (1.0 - self.p));
        let base = mix(row ^ mix(site as u64 + 1));
        for (i, m) in mask.iter_mut().enumerate() {
            let u = mix(base.wrapping_add((i as u64 + 1).wrapping_mul(GAMMA)));
            *m = if u < threshold { S::ZERO } else { scale };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_about_p_and_keeps_the_expectation() {
        let d = Dropout { p: 0.2, key: 7 };
        let mut mask = [0.0; 64];
        let (mut dropped, mut sum, mut n) = (0usize, 0.0, 0usize);
        for doc in 0..32 {
            for pos in 0..16 {
                for site in 0..9 {
                    d.fill(&mut mask, row_seed(d.key, doc, pos), site);
                    dropped += mask.iter().filter(|&&m| m == 0.0).count();
                    sum += mask.iter().sum::<f64>();
                    n += mask.len();
                }
            }
        }
        // n = 294,912 Bernoulli(0.2) draws: the dropped fraction has std
        // sqrt(0.2·0.8/n) ≈ 7.4e-4, so 0.2 ± 0.004 is more than 5 std
        let frac = dropped as f64 / n as f64;
        assert!((frac - 0.2).abs() < 0.004, "dropped {frac}");
        // E[m] = 1: the mean multiplier is 1 within 5 std (std of m is 0.5, /sqrt(n))
        let mean = sum / n as f64;
        assert!(
            (mean - 1.0).abs() < 5.0 * 0.5 / (n as f64).sqrt(),
            "mean {mean}"
        );
    }

    #[test]
    fn masks_differ_by_every_coordinate() {
        let d = Dropout { p: 0.5, key: 1 };
        let mask = |key: u64, doc, pos, site| {
            let mut m = [0.0; 64];
            Dropout { key, ..d }.fill(&mut m, row_seed(key, doc, pos), site);
            m
        };
        let base = mask(1, 0, 0, 0);
        assert_ne!(base, mask(2, 0, 0, 0));
        assert_ne!(base, mask(1, 1, 0, 0));
        assert_ne!(base, mask(1, 0, 1, 0));
        assert_ne!(base, mask(1, 0, 0, 1));
        assert_eq!(base, mask(1, 0, 0, 0));
    }

    #[test]
    fn no_dropout_at_zero() {
        assert_eq!(Dropout::at(0.0, 1, 2), None);
        assert_eq!(Dropout::at(0.1, 1, 2).map(|d| d.p), Some(0.1));
        assert_ne!(step_key(1, 2), step_key(1, 3));
        assert_ne!(step_key(1, 2), step_key(2, 2));
    }
}
