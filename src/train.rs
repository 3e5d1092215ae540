//! The training loop shared by both engines: one document per step, cycling through the
//! shuffled list, Adam with microgpt's linear decay.

use crate::data::EncodedDocs;
use crate::optim::{Adam, AdamStep};
use crate::sample::Forward;

/// A model that can take a training step.
pub trait Engine: Forward {
    /// Number of trained parameters.
    fn num_params(&self) -> usize;
    /// Forward and backward on `tokens` (`[BOS] doc [BOS]`), then one Adam update; the loss.
    fn train_step(&mut self, tokens: &[usize], adam: &AdamStep) -> f64;
}

impl Engine for crate::reference::Reference {
    fn num_params(&self) -> usize {
        crate::reference::Reference::num_params(self)
    }
    fn train_step(&mut self, tokens: &[usize], adam: &AdamStep) -> f64 {
        crate::reference::Reference::train_step(self, tokens, adam)
    }
}

impl Engine for crate::model::MicroGpt {
    fn num_params(&self) -> usize {
        crate::model::MicroGpt::num_params(self)
    }
    fn train_step(&mut self, tokens: &[usize], adam: &AdamStep) -> f64 {
        crate::model::MicroGpt::train_step(self, tokens, adam)
    }
}

/// Trains steps `first..steps` of a run of `steps` steps (document `step % docs.len()` at each
/// step) and calls `on_step(step, loss)` after each.
pub fn train<E: Engine + ?Sized>(
    model: &mut E,
    docs: &EncodedDocs,
    adam: &Adam,
    first: usize,
    steps: usize,
    mut on_step: impl FnMut(usize, f64),
) {
    for step in first..steps {
        let tokens = docs.get(step % docs.len());
        let loss = model.train_step(tokens, &adam.at(step, steps));
        on_step(step, loss);
    }
}
