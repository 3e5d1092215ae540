//! The compiled configurations and the choice of engine: the only module that names concrete
//! shapes of the static engine, and both engines.
//!
//! The positional const parameters are spelled here and nowhere else; each alias forces the
//! compile-time shape check ([`Gpt::CHECK`]) with an item-level `const _`, so a wrong alias
//! fails `cargo check`. Each preset is compiled for the vocabulary sizes of [`BUCKETS`]; a
//! model is built in the smallest that holds the real vocabulary ([`static_model`]).

use crate::bail;
use crate::error::Result;
use crate::gpt::Gpt;
use crate::model::Model;
use crate::optim::{Adam, Schedule};
use crate::reference::Reference;
use crate::rng::Rng;
use crate::shape;

/// microgpt.py's model on names.txt: V 27, T 16, E 16, H 4, D 4, F 64, L 1 (4,192 parameters).
pub type Micro = Gpt<27, 16, 16, 4, 4, 64, 1>;
const _: () = Micro::CHECK;

/// The micro model compiled for vocabularies of up to 64 tokens (the real one is a run-time
/// value; unused rows are masked).
pub type Micro64 = Gpt<64, 16, 16, 4, 4, 64, 1>;
const _: () = Micro64::CHECK;

/// The micro model for vocabularies of up to 128 tokens.
pub type Micro128 = Gpt<128, 16, 16, 4, 4, 64, 1>;
const _: () = Micro128::CHECK;

/// The micro model for vocabularies of up to 256 tokens.
pub type Micro256 = Gpt<256, 16, 16, 4, 4, 64, 1>;
const _: () = Micro256::CHECK;

/// The shape of makemore's ~200k-parameter transformer on names.txt, with microgpt's blocks:
/// V 27, T 16, E 64, H 4, D 16, F 256, L 4 (201,088 parameters on names).
pub type Small = Gpt<27, 16, 64, 4, 16, 256, 4>;
const _: () = Small::CHECK;

/// The small model for vocabularies of up to 64 tokens.
pub type Small64 = Gpt<64, 16, 64, 4, 16, 256, 4>;
const _: () = Small64::CHECK;

/// The small model for vocabularies of up to 128 tokens.
pub type Small128 = Gpt<128, 16, 64, 4, 16, 256, 4>;
const _: () = Small128::CHECK;

/// The small model for vocabularies of up to 256 tokens.
pub type Small256 = Gpt<256, 16, 64, 4, 16, 256, 4>;
const _: () = Small256::CHECK;

/// The compiled vocabulary sizes of every preset, smallest first.
pub const BUCKETS: [usize; 4] = [27, 64, 128, 256];

// each alias is compiled for the bucket its position says
const _: () = assert!(Micro::V == BUCKETS[0] && Small::V == BUCKETS[0]);
const _: () = assert!(Micro64::V == BUCKETS[1] && Small64::V == BUCKETS[1]);
const _: () = assert!(Micro128::V == BUCKETS[2] && Small128::V == BUCKETS[2]);
const _: () = assert!(Micro256::V == BUCKETS[3] && Small256::V == BUCKETS[3]);

/// Builds one alias for a real vocabulary, its weights drawn from the stream.
type Build = fn(usize, &mut Rng) -> Result<Box<dyn Model>>;

fn boxed<M: Model + 'static>(model: Result<M>) -> Result<Box<dyn Model>> {
    Ok(Box::new(model?))
}

/// `micro` in each bucket of [`BUCKETS`].
const MICRO: [Build; 4] = [
    |vocab, rng| boxed(Micro::new(vocab, rng)),
    |vocab, rng| boxed(Micro64::new(vocab, rng)),
    |vocab, rng| boxed(Micro128::new(vocab, rng)),
    |vocab, rng| boxed(Micro256::new(vocab, rng)),
];

/// `small` in each bucket of [`BUCKETS`].
const SMALL: [Build; 4] = [
    |vocab, rng| boxed(Small::new(vocab, rng)),
    |vocab, rng| boxed(Small64::new(vocab, rng)),
    |vocab, rng| boxed(Small128::new(vocab, rng)),
    |vocab, rng| boxed(Small256::new(vocab, rng)),
];

/// The compiled vocabulary size a model for `vocab` tokens is built in: the smallest bucket
/// that holds it.
pub fn bucket(vocab: usize) -> Option<usize> {
    BUCKETS.iter().copied().find(|&b| vocab <= b)
}

/// The static model of preset `name` for a real vocabulary of `vocab` tokens, in the smallest
/// bucket that holds it; the initial weights are those of the exact-vocab model from the same
/// `rng`.
pub fn static_model(name: &str, vocab: usize, rng: &mut Rng) -> Result<Box<dyn Model>> {
    let builds = match name {
        "micro" => &MICRO,
        "small" => &SMALL,
        other => bail!("no static build of model {other:?}"),
    };
    let Some(i) = BUCKETS.iter().position(|&b| vocab <= b) else {
        bail!(
            "the vocabulary has {vocab} tokens but the largest compiled vocabulary of model {name} holds {}",
            BUCKETS[BUCKETS.len() - 1]
        )
    };
    builds[i](vocab, rng)
}

/// Which engine computes the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Const-generic arrays with hand-written derivatives.
    Static,
    /// The scalar autograd tape.
    Dynamic,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Static => "static",
            Engine::Dynamic => "dynamic",
        }
    }
}

/// A fresh model of preset `name` for `vocab` tokens on `engine`, its weights drawn from `rng`.
pub fn build_model(
    engine: Engine,
    name: &str,
    vocab: usize,
    rng: &mut Rng,
) -> Result<Box<dyn Model>> {
    let Some(shape) = shape::preset_shape(name, vocab) else {
        bail!(
            "unknown model {name:?}; compiled models: {}",
            preset_names()
        );
    };
    match engine {
        Engine::Dynamic => Ok(Box::new(Reference::new(shape, rng)?)),
        Engine::Static => static_model(name, vocab, rng),
    }
}

/// The presets' names, comma-separated.
/// The compiled presets' names, for messages (`micro, small`).
pub fn preset_names() -> String {
    shape::PRESETS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

// ------------------------------------------------------------------------------------------
// The presets' recipes: how `train --model NAME` trains when no flag says otherwise (each flag
// given overrides its one setting). Retune a preset here.

/// A preset's training recipe: the optimizer, the batch and its loss, the length of the run,
/// the validation split and how often it reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PresetRecipe {
    pub adam: Adam,
    pub batch_size: usize,
    pub dropout: f64,
    /// Decay of the weights' moving average that is evaluated and saved (0: none).
    pub ema: f64,
    /// A step's loss is the mean over its tokens (makemore's), not over its documents.
    pub token_mean: bool,
    /// A new document order every epoch.
    pub reshuffle: bool,
    pub steps: usize,
    pub val_fraction: f64,
    pub eval_every: usize,
    pub print_every: usize,
}

/// microgpt.py's: Adam (0.01, 0.85, 0.99) decaying linearly to 0 over 1,000 steps of one
/// document each; 10% held out, evaluated every 250 steps.
pub const MICRO_RECIPE: PresetRecipe = PresetRecipe {
    adam: Adam {
        lr: 0.01,
        beta1: 0.85,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.0,
        warmup: 0,
        schedule: Schedule::Linear,
        min_lr_fraction: 0.0,
    },
    batch_size: 1,
    dropout: 0.0,
    ema: 0.0,
    token_mean: false,
    reshuffle: false,
    steps: 1000,
    val_fraction: 0.1,
    eval_every: 250,
    print_every: 100,
};

/// The bigger model's recipe (the README's result): AdamW with warm-up and a cosine decay,
/// batches of 32 with makemore's token mean, dropout, a new order every epoch, 32,000 steps
/// (≈ 33 epochs), and the moving average of the weights over roughly the last 5,000 steps
/// evaluated and saved; a validation split of 1,003 names (3.13%, makemore's 1,000). The lr
/// and the average were chosen on three held-out splits (docs/quality.md).
pub const SMALL_RECIPE: PresetRecipe = PresetRecipe {
    adam: Adam {
        lr: 3e-3,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.2,
        warmup: 300,
        schedule: Schedule::Cosine,
        min_lr_fraction: 0.02,
    },
    batch_size: 32,
    dropout: 0.1,
    ema: 0.9998,
    token_mean: true,
    reshuffle: true,
    steps: 32000,
    val_fraction: 0.0313,
    eval_every: 2000,
    print_every: 4000,
};

/// Each preset's recipe, by name (the names of [`PRESETS`](shape::PRESETS)).
pub const RECIPES: [(&str, PresetRecipe); 2] = [("micro", MICRO_RECIPE), ("small", SMALL_RECIPE)];

/// The recipe of preset `name`.
pub fn preset_recipe(name: &str) -> Option<PresetRecipe> {
    RECIPES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

impl std::fmt::Display for PresetRecipe {
    /// One line, in the flags' terms: `batch 32, lr 0.003, betas 0.9/0.99, …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.adam;
        write!(
            f,
            "batch {}, lr {}, betas {}/{}, weight decay {}, warm-up {}, ",
            self.batch_size, a.lr, a.beta1, a.beta2, a.weight_decay, a.warmup
        )?;
        match a.schedule {
            Schedule::Linear => write!(f, "linear decay")?,
            Schedule::Cosine => write!(f, "cosine to {}·lr", a.min_lr_fraction)?,
        }
        write!(f, ", dropout {}, ", self.dropout)?;
        if self.ema > 0.0 {
            write!(f, "EMA {} of the weights, ", self.ema)?;
        }
        write!(
            f,
            "{}, {}, {} steps, val fraction {}, eval every {}, print every {}",
            if self.token_mean {
                "token mean"
            } else {
                "document mean"
            },
            if self.reshuffle {
                "reshuffle"
            } else {
                "same order every epoch"
            },
            self.steps,
            self.val_fraction,
            self.eval_every,
            self.print_every
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_has_a_recipe_and_micro_s_is_microgpt_s() {
        let presets: Vec<&str> = shape::PRESETS.iter().map(|(n, _)| *n).collect();
        let recipes: Vec<&str> = RECIPES.iter().map(|(n, _)| *n).collect();
        assert_eq!(presets, recipes);
        assert_eq!(MICRO_RECIPE.adam, Adam::default());
        assert_eq!(preset_recipe("small"), Some(SMALL_RECIPE));
        assert_eq!(preset_recipe("huge"), None);
    }
}
