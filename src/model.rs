//! What training, evaluation and sampling need from a model, whichever engine computes it.
//! Each engine implements these traits once, in its own module: the reference in
//! [`crate::reference`], the static engine in [`crate::gpt`]; [`crate::presets`] builds either
//! behind a `Box<dyn Model>`.

use crate::dropout::Dropout;
use crate::error::Result;
use crate::float::Precision;
use crate::optim::AdamStep;
use crate::shape::Shape;

/// What a gradient step is given besides its documents and Adam's scalars.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepInputs {
    /// This step's dropout masks (`None`: none, as microgpt); forward-only passes never drop
    /// out.
    pub dropout: Option<Dropout>,
    /// The step's loss is the mean over all the batch's tokens (makemore's) rather than the
    /// mean of the documents' means (microgpt's).
    pub token_mean: bool,
}

impl StepInputs {
    /// microgpt's: no dropout, the mean of the documents' means.
    pub const MICROGPT: StepInputs = StepInputs {
        dropout: None,
        token_mean: false,
    };
}

/// Anything that can run the model one token at a time with a KV cache.
pub trait Forward {
    /// The block size: the most positions a sequence can have.
    fn block_size(&self) -> usize;
    /// The logits after feeding `token` at position `pos` (`pos == 0` starts a new sequence).
    fn forward_token(&mut self, token: usize, pos: usize) -> &[f64];
}

/// A trainable model: either engine, any compiled configuration.
pub trait Model: Forward {
    /// The configuration's name as `--model` and checkpoints spell it (e.g. `micro`).
    fn preset(&self) -> &'static str;
    /// The shape, with the real vocabulary.
    fn shape(&self) -> Shape;
    /// The scalar the model computes in (the reference: `f64`).
    fn precision(&self) -> Precision {
        Precision::F64
    }
    /// Number of trained parameters.
    fn num_params(&self) -> usize {
        self.shape().num_params()
    }
    /// One step on a batch of documents (each `[BOS] doc [BOS]`): the gradient of the step's
    /// loss (the mean of the documents' losses, or with `inputs.token_mean` of their tokens'),
    /// then one Adam update. Returns that loss.
    fn train_batch(&mut self, batch: &[&[usize]], adam: &AdamStep, inputs: &StepInputs) -> f64;
    /// Spreads the documents of a batch over `n` threads (the results do not depend on `n`).
    /// Engines without threads ignore it.
    fn set_threads(&mut self, n: usize) -> Result<()> {
        let _ = n;
        Ok(())
    }
    /// The loss of one document (mean over its positions), forward only.
    fn loss(&mut self, tokens: &[usize]) -> f64;
    /// [`Model::loss`] of each document of `batch` into `out`; engines with threads spread
    /// the documents over them.
    fn losses(&mut self, batch: &[&[usize]], out: &mut [f64]) {
        for (doc, l) in batch.iter().zip(out) {
            *l = self.loss(doc);
        }
    }
    /// Parameters, flat, in [`Shape::tensors`] layout.
    fn params_flat(&self) -> Vec<f64>;
    /// Calls `f` on each parameter tensor in turn, in [`Model::params_flat`] order and layout,
    /// copying and allocating nothing: what a per-step average of the weights
    /// ([`crate::ema::Ema`]) reads.
    fn visit_params(&self, f: &mut dyn FnMut(&[f64]));
    fn set_params_flat(&mut self, flat: &[f64]) -> Result<()>;
    /// Adam's moments `(m, v)`, same layout.
    fn adam_flat(&self) -> (Vec<f64>, Vec<f64>);
    fn set_adam_flat(&mut self, m: &[f64], v: &[f64]) -> Result<()>;
}
