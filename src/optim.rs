//! Adam with bias correction and a learning-rate schedule, on flat slices so that both engines
//! share it: the reference calls it once on its whole parameter vector, the static model once
//! per weight matrix.
//!
//! The default is microgpt.py's optimizer exactly: lr 0.01, β 0.85/0.99, eps 1e-8, no weight
//! decay, no warm-up, `lr_t = lr · (1 − step/steps)`. Larger models train better with AdamW's
//! decoupled weight decay, a linear warm-up and a cosine decay; those are options.

use crate::bail;
use crate::error::Result;
use crate::float::Float;

/// The shape of the learning rate over a run, after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// `lr · (1 − s)`, `s` the fraction of the post-warm-up steps done: microgpt's.
    Linear,
    /// `lr · (min + (1 − min)·(1 + cos πs)/2)`, with `min` = [`Adam::min_lr_fraction`].
    Cosine,
}

impl Schedule {
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Linear => "linear",
            Schedule::Cosine => "cosine",
        }
    }

    pub fn from_name(s: &str) -> Option<Schedule> {
        match s {
            "linear" => Some(Schedule::Linear),
            "cosine" => Some(Schedule::Cosine),
            _ => None,
        }
    }
}

/// Optimizer settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// AdamW's decoupled weight decay: `p ← p − lr_t·wd·p` before the Adam step.
    pub weight_decay: f64,
    /// Steps of linear warm-up from 0 to `lr`.
    pub warmup: usize,
    pub schedule: Schedule,
    /// The cosine schedule's floor, as a fraction of `lr`.
    pub min_lr_fraction: f64,
}

impl Default for Adam {
    /// `learning_rate, beta1, beta2, eps_adam = 0.01, 0.85, 0.99, 1e-8`, linear decay to 0.
    fn default() -> Adam {
        Adam {
            lr: 0.01,
            beta1: 0.85,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            warmup: 0,
            schedule: Schedule::Linear,
            min_lr_fraction: 0.0,
        }
    }
}

/// The step's scalars, computed once per step and shared by every tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// The learning rate of this step.
    pub lr_t: f64,
    /// `1 / (1 − β1^(step+1))`
    pub m_corr: f64,
    /// `1 / (1 − β2^(step+1))`
    pub v_corr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// `1 − lr_t·weight_decay`: the decay's factor on the weights (1 without decay).
    pub decay: f64,
}

impl Adam {
    /// Checks every number against its range and the others, for a run whose schedule is
    /// `total_steps` long: `lr` finite and > 0, the betas in [0, 1), `eps` finite and > 0,
    /// `weight_decay` finite, ≥ 0 and with `lr · weight_decay < 1` (else the decay zeroes or
    /// negates the weights), `warmup` within the schedule, `min_lr_fraction` in [0, 1] (the
    /// linear schedule ignores it). Errors name the option.
    pub fn validate(&self, total_steps: usize) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be a finite number > 0, got {}", self.lr);
        }
        for (name, b) in [("--beta1", self.beta1), ("--beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                bail!("{name} must be in [0, 1), got {b}");
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            bail!("Adam's eps must be a finite number > 0, got {}", self.eps);
        }
        let wd = self.weight_decay;
        if !(wd >= 0.0 && wd.is_finite()) {
            bail!("--weight-decay must be a finite number >= 0, got {wd}");
        }
        if self.lr * wd >= 1.0 {
            bail!(
                "--weight-decay {wd} with --lr {} shrinks the weights by lr·wd = {} >= 1 per step (to zero or past it); lower one of them",
                self.lr,
                self.lr * wd
            );
        }
        if self.warmup > total_steps {
            bail!(
                "--warmup {} is longer than the schedule ({total_steps} steps)",
                self.warmup
            );
        }
        let f = self.min_lr_fraction;
        if !(0.0..=1.0).contains(&f) {
            bail!("--min-lr-fraction must be in [0, 1], got {f}");
        }
        Ok(())
    }

    /// The learning rate at step `step` (0-based) of a run of `steps` steps.
    pub fn lr_at(&self, step: usize, steps: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        match self.schedule {
            // microgpt.py: lr_t = learning_rate * (1 - step / num_steps) (with no warm-up)
            Schedule::Linear => {
                let (s, n) = (step - self.warmup, steps.saturating_sub(self.warmup).max(1));
                self.lr * (1.0 - s as f64 / n as f64)
            }
            Schedule::Cosine => {
                let (s, n) = (step - self.warmup, steps.saturating_sub(self.warmup).max(1));
                let c = 0.5 * (1.0 + (std::f64::consts::PI * s as f64 / n as f64).cos());
                self.lr * (self.min_lr_fraction + (1.0 - self.min_lr_fraction) * c)
            }
        }
    }

    /// The scalars of step `step` (0-based) of a run of `steps` steps.
    pub fn at(&self, step: usize, steps: usize) -> AdamStep {
        let t = (step + 1) as f64;
        let lr_t = self.lr_at(step, steps);
        AdamStep {
            lr_t,
            // powf, as CPython's float ** does, so that the python-stream run matches microgpt.py
            m_corr: 1.0 / (1.0 - self.beta1.powf(t)),
            v_corr: 1.0 / (1.0 - self.beta2.powf(t)),
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            decay: 1.0 - lr_t * self.weight_decay,
        }
    }
}

impl AdamStep {
    /// One update of `p` in place from gradient `g`, moments `m` and `v` (all the same length):
    /// `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `p ← p − lr_t·m̂ / (√v̂ + eps)`, with
    /// `p ← p·(1 − lr_t·wd)` first when there is weight decay. In the slices' precision,
    /// the step's scalars rounded to it (in `f64`: as they are).
    #[inline]
    pub fn update<S: Float>(&self, p: &mut [S], g: &[S], m: &mut [S], v: &mut [S]) {
        self.update_with::<S, false>(p, g, m, v);
    }

    /// [`AdamStep::update`] with a moment that decays into the subnormals flushed to 0 in
    /// `f64` as well, as the static engine updates: a moment of a parameter whose gradient
    /// stays 0 (an unreached position's `wpe` row, a rare character's `wte` row) gets there
    /// after ≈ 4,300 such steps, and each operation on a subnormal takes a microcode assist
    /// (a `--steps 30000` micro run trained 1.6× slower). The weights do not see it: a
    /// subnormal `v` leaves `√v̂ + eps` at `eps` (√v̂ < 1.5e-154 is far below half an ulp of
    /// 1e-8), and a subnormal `m` contributes at most `lr·2.3e-308/eps` to an update, with
    /// microgpt's eps and any lr ≤ 1 below 2.3e-300: under half an ulp of any weight above
    /// 2.1e-284. No run of microgpt.py's 1,000 steps comes near the subnormals.
    #[inline]
    pub fn update_flushing<S: Float>(&self, p: &mut [S], g: &[S], m: &mut [S], v: &mut [S]) {
        self.update_with::<S, true>(p, g, m, v);
    }

    #[inline(always)]
    fn update_with<S: Float, const FLUSH: bool>(
        &self,
        p: &mut [S],
        g: &[S],
        m: &mut [S],
        v: &mut [S],
    ) {
        let flush = |x: S| {
            if FLUSH {
                x.flush_to_zero()
            } else {
                x.flush_subnormal()
            }
        };
        assert!(p.len() == g.len() && p.len() == m.len() && p.len() == v.len());
        let (b1, b2) = (S::from_f64(self.beta1), S::from_f64(self.beta2));
        let (c1, c2) = (S::from_f64(1.0 - self.beta1), S::from_f64(1.0 - self.beta2));
        let (m_corr, v_corr) = (S::from_f64(self.m_corr), S::from_f64(self.v_corr));
        let (lr_t, eps, decay) = (
            S::from_f64(self.lr_t),
            S::from_f64(self.eps),
            S::from_f64(self.decay),
        );
        let decays = self.decay != 1.0;
        for i in 0..p.len() {
            // (in f32, or with FLUSH, a moment that decays into the subnormals is flushed to 0)
            m[i] = flush(b1 * m[i] + c1 * g[i]);
            v[i] = flush(b2 * v[i] + c2 * (g[i] * g[i]));
            // m̂ = m / (1 − β1^t) as a multiplication by the reciprocal: the one division and
            // the one square root per parameter are what bound this loop
            let m_hat = m[i] * m_corr;
            let v_hat = v[i] * v_corr;
            if decays {
                p[i] *= decay;
            }
            p[i] -= lr_t * m_hat / (v_hat.sqrt() + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_microgpts_linear_decay() {
        let a = Adam::default();
        for (step, steps) in [(0, 1000), (1, 1000), (500, 1000), (999, 1000), (3, 7)] {
            let expected = 0.01 * (1.0 - step as f64 / steps as f64);
            assert_eq!(a.lr_at(step, steps), expected);
        }
        assert_eq!(a.at(5, 10).decay, 1.0);
    }

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let a = Adam {
            lr: 1.0,
            warmup: 10,
            schedule: Schedule::Cosine,
            min_lr_fraction: 0.1,
            ..Adam::default()
        };
        assert_eq!(a.lr_at(0, 110), 0.1);
        assert_eq!(a.lr_at(9, 110), 1.0);
        assert_eq!(a.lr_at(10, 110), 1.0); // cos 0: the peak
        assert!((a.lr_at(60, 110) - 0.55).abs() < 1e-15); // halfway: (1 + 0.1)/2
        assert!((a.lr_at(109, 110) - 0.1).abs() < 1e-3);
    }

    #[test]
    fn every_bad_number_is_refused_by_name() {
        let ok = Adam::default();
        assert!(ok.validate(100).is_ok());
        let cosine = Adam {
            schedule: Schedule::Cosine,
            min_lr_fraction: 0.1,
            warmup: 100,
            ..ok
        };
        assert!(cosine.validate(100).is_ok());
        let cases = [
            (Adam { lr: f64::NAN, ..ok }, "--lr"),
            (Adam { lr: 0.0, ..ok }, "--lr"),
            (
                Adam {
                    lr: f64::INFINITY,
                    ..ok
                },
                "--lr",
            ),
            (Adam { beta1: 1.0, ..ok }, "--beta1"),
            (Adam { beta2: -0.1, ..ok }, "--beta2"),
            (Adam { eps: 0.0, ..ok }, "eps"),
            (
                Adam {
                    weight_decay: f64::NAN,
                    ..ok
                },
                "--weight-decay",
            ),
            (
                Adam {
                    weight_decay: -1.0,
                    ..ok
                },
                "--weight-decay",
            ),
            (
                Adam {
                    weight_decay: 100.0,
                    ..ok
                },
                "lr·wd",
            ),
            (Adam { warmup: 101, ..ok }, "--warmup"),
            (
                Adam {
                    min_lr_fraction: -5.0,
                    ..cosine
                },
                "--min-lr-fraction",
            ),
            (
                Adam {
                    min_lr_fraction: f64::NAN,
                    ..cosine
                },
                "--min-lr-fraction",
            ),
        ];
        for (a, words) in cases {
            let e = a.validate(100).unwrap_err().to_string();
            assert!(e.contains(words), "want {words:?} in {e:?}");
        }
    }

    /// With a zero gradient a moment decays by β per step: from just above the smallest
    /// normal f64 it goes subnormal on the next step or so. `update_flushing` sets it to 0
    /// there, `update` (the reference's, microgpt.py's arithmetic) keeps it; the weights
    /// come out the same bits either way, step after step.
    #[test]
    fn the_static_update_flushes_f64_moments_that_go_subnormal_and_the_weights_do_not_see_it() {
        let s = Adam::default().at(5000, 100_000);
        let tiny = 1.2 * f64::MIN_POSITIVE;
        let (mut p1, mut m1, mut v1) = (
            [0.3, -0.02],
            [tiny, -tiny],
            [1.01 * f64::MIN_POSITIVE, 1e-300],
        );
        let (mut p2, mut m2, mut v2) = (p1, m1, v1);
        let g = [0.0, 0.0];
        for _ in 0..3 {
            s.update(&mut p1, &g, &mut m1, &mut v1);
            s.update_flushing(&mut p2, &g, &mut m2, &mut v2);
        }
        assert!(m1.iter().all(|m| m.is_subnormal()), "{m1:?}");
        assert!(v1[0].is_subnormal());
        assert_eq!(m2, [0.0, 0.0]);
        assert_eq!(v2[0], 0.0);
        // a normal moment is left as it is
        assert_eq!(v2[1], v1[1]);
        assert!(v2[1] > 0.0 && !v2[1].is_subnormal());
        assert_eq!(p1.map(f64::to_bits), p2.map(f64::to_bits));
    }

    #[test]
    fn weight_decay_is_decoupled() {
        // with g = 0 and zero moments, only the decay moves p: p·(1 − lr·wd)
        let a = Adam {
            lr: 0.5,
            weight_decay: 0.1,
            ..Adam::default()
        };
        let s = a.at(0, 2);
        let (mut p, g, mut m, mut v) = ([2.0], [0.0], [0.0], [0.0]);
        s.update(&mut p, &g, &mut m, &mut v);
        assert_eq!(p[0], 2.0 * (1.0 - 0.5 * 0.1));
    }
}
