//! Adam with bias correction and microgpt's linear learning-rate decay, on flat slices so that
//! both engines share it: the reference calls it once on its whole parameter vector, the static
//! model once per weight matrix.

/// microgpt.py's optimizer settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for Adam {
    /// `learning_rate, beta1, beta2, eps_adam = 0.01, 0.85, 0.99, 1e-8`
    fn default() -> Adam {
        Adam {
            lr: 0.01,
            beta1: 0.85,
            beta2: 0.99,
            eps: 1e-8,
        }
    }
}

/// The step's scalars, computed once per step and shared by every tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// `lr · (1 − step/steps)`
    pub lr_t: f64,
    /// `1 / (1 − β1^(step+1))`
    pub m_corr: f64,
    /// `1 / (1 − β2^(step+1))`
    pub v_corr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Adam {
    /// The scalars of step `step` (0-based) of a run of `steps` steps.
    pub fn at(&self, step: usize, steps: usize) -> AdamStep {
        let t = (step + 1) as f64;
        AdamStep {
            lr_t: self.lr * (1.0 - step as f64 / steps as f64),
            // powf, as CPython's float ** does, so that the python-stream run matches to the bit
            m_corr: 1.0 / (1.0 - self.beta1.powf(t)),
            v_corr: 1.0 / (1.0 - self.beta2.powf(t)),
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
        }
    }
}

impl AdamStep {
    /// One update of `p` in place from gradient `g`, moments `m` and `v` (all the same length):
    /// `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `p ← p − lr_t·m̂ / (√v̂ + eps)`.
    #[inline]
    pub fn update(&self, p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64]) {
        assert!(p.len() == g.len() && p.len() == m.len() && p.len() == v.len());
        let (b1, b2) = (self.beta1, self.beta2);
        for i in 0..p.len() {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * (g[i] * g[i]);
            // m̂ = m / (1 − β1^t) as a multiplication by the reciprocal: one division and one
            // square root per parameter are what bound this loop
            let m_hat = m[i] * self.m_corr;
            let v_hat = v[i] * self.v_corr;
            p[i] -= self.lr_t * m_hat / (v_hat.sqrt() + self.eps);
        }
    }
}
