//! Weight averaging: an exponential moving average (EMA) of the parameters over training,
//! the weights that evaluation and sampling use when a recipe asks for it (`--ema DECAY`).
//!
//! After step `t` (counted from 0) the average moves towards the weights,
//! `ema ← d_t·ema + (1 − d_t)·w`, with the decay warmed up as
//! `d_t = min(d, (1 + t)/(10 + t))`: early on the average follows the fast-moving weights
//! closely (`d_0 = 0.1`) instead of remembering the random initialization for `1/(1 − d)`
//! steps. The decay is a function of the step alone, so a resumed run continues the same
//! average. Training itself never reads the average: the weights' trajectory is the same with
//! or without it.

use crate::bail;
use crate::error::Result;
use crate::model::Model;

/// The average of a model's parameters, in [`Model::params_flat`] layout; allocated once, and
/// updated in place at every step.
#[derive(Debug, Clone, PartialEq)]
pub struct Ema {
    decay: f64,
    weights: Vec<f64>,
}

impl Ema {
    /// An average with decay `decay` in `(0, 1)` that starts at the model's weights.
    pub fn new<M: Model + ?Sized>(model: &M, decay: f64) -> Ema {
        Ema {
            decay,
            weights: model.params_flat(),
        }
    }

    /// An average that continues from `weights` (a resumed run's), which must fit `model`.
    pub fn resume<M: Model + ?Sized>(model: &M, decay: f64, weights: Vec<f64>) -> Result<Ema> {
        if weights.len() != model.num_params() {
            bail!(
                "an average of {} values does not fit this model's {} parameters",
                weights.len(),
                model.num_params()
            );
        }
        Ok(Ema { decay, weights })
    }

    /// The recipe's decay `d`.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The decay used after step `t` (from 0): `min(d, (1 + t)/(10 + t))`.
    pub fn decay_at(&self, t: usize) -> f64 {
        let t = t as f64;
        self.decay.min((1.0 + t) / (10.0 + t))
    }

    /// Moves the average towards the model's weights after step `t` (from 0), allocating
    /// nothing.
    pub fn update<M: Model + ?Sized>(&mut self, model: &M, t: usize) {
        let d = self.decay_at(t);
        let mut rest = &mut self.weights[..];
        model.visit_params(&mut |w| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(w.len());
            for (e, &x) in head.iter_mut().zip(w) {
                *e = d * *e + (1.0 - d) * x;
            }
            rest = tail;
        });
        debug_assert!(rest.is_empty(), "the average covers every parameter");
    }

    /// The averaged weights, in [`Model::params_flat`] layout.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Runs `f` on the model with the averaged weights in place of its own, then puts its own
    /// back (bit for bit: training goes on from exactly where it was). Adam's moments are not
    /// touched.
    pub fn with_average<M: Model + ?Sized, R>(
        &self,
        model: &mut M,
        f: impl FnOnce(&mut M) -> R,
    ) -> Result<R> {
        let own = model.params_flat();
        model.set_params_flat(&self.weights)?;
        let r = f(model);
        model.set_params_flat(&own)?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Reference;
    use crate::rng::Rng;
    use crate::shape::Shape;

    #[test]
    fn the_decay_warms_up_to_the_recipe_s() {
        let m = Reference::new(Shape::micro(27), &mut Rng::pcg(1)).unwrap();
        let e = Ema::new(&m, 0.99);
        // (1 + t)/(10 + t): 1/10 at t = 0, 2/11 at t = 1, 0.99 from t = 890 on (891/900)
        assert_eq!(e.decay_at(0), 0.1);
        assert_eq!(e.decay_at(1), 2.0 / 11.0);
        assert_eq!(e.decay_at(889), 890.0 / 899.0);
        assert!(e.decay_at(889) < 0.99);
        assert_eq!(e.decay_at(890), 0.99);
        assert_eq!(e.decay_at(100_000), 0.99);
    }

    #[test]
    fn an_update_is_the_hand_computed_average_of_every_weight() {
        let mut m = Reference::new(Shape::micro(27), &mut Rng::pcg(2)).unwrap();
        let w0 = m.params_flat();
        let mut e = Ema::new(&m, 0.9);
        assert_eq!(e.weights(), &w0[..]);
        // new weights w1 = 2·w0 + 1 (each weight a different value)
        let w1: Vec<f64> = w0.iter().map(|x| 2.0 * x + 1.0).collect();
        m.set_params_flat(&w1).unwrap();
        e.update(&m, 0);
        // after step 0 the decay is 1/10: ema = 0.1·w0 + (1 − 0.1)·w1
        let d = 0.1;
        for (i, (&got, (&a, &b))) in e.weights().iter().zip(w0.iter().zip(&w1)).enumerate() {
            assert_eq!(got, d * a + (1.0 - d) * b, "weight {i}");
        }
        // at a late step the decay is the recipe's: ema ← 0.9·ema + (1 − 0.9)·w2
        let before = e.weights().to_vec();
        let w2: Vec<f64> = w0.iter().map(|x| -x).collect();
        m.set_params_flat(&w2).unwrap();
        e.update(&m, 1_000);
        for (i, (&got, (&a, &b))) in e.weights().iter().zip(before.iter().zip(&w2)).enumerate() {
            assert_eq!(got, 0.9 * a + (1.0 - 0.9) * b, "weight {i}");
        }
    }

    #[test]
    fn the_static_engine_visits_its_weights_in_params_flat_order() {
        let mut rng = Rng::pcg(3);
        let mut m = crate::presets::static_model("micro", 27, &mut rng).unwrap();
        let w0 = m.params_flat();
        let mut e = Ema::new(m.as_ref(), 0.5);
        let w1: Vec<f64> = (0..w0.len()).map(|i| i as f64).collect();
        m.set_params_flat(&w1).unwrap();
        e.update(m.as_ref(), 10_000);
        let expected: Vec<f64> = w0.iter().zip(&w1).map(|(a, b)| 0.5 * a + 0.5 * b).collect();
        assert_eq!(e.weights(), &expected[..]);
    }

    #[test]
    fn evaluating_the_average_puts_the_model_s_own_weights_back() {
        let mut m = Reference::new(Shape::micro(27), &mut Rng::pcg(4)).unwrap();
        let e = Ema::resume(&m, 0.9, vec![0.25; m.num_params()]).unwrap();
        let own = m.params_flat();
        let seen = e.with_average(&mut m, |m| m.params_flat()).unwrap();
        assert_eq!(seen, vec![0.25; own.len()]);
        assert_eq!(m.params_flat(), own);
        assert!(Ema::resume(&m, 0.9, vec![0.0; 3]).is_err());
    }
}
