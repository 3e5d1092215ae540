//! The compiled configurations and the choice of engine: the only module that names concrete
//! shapes of the static engine, and both engines.
//!
//! The positional const parameters are spelled here and nowhere else; each alias forces the
//! compile-time shape check ([`Gpt::CHECK`]) with an item-level `const _`, so a wrong alias
//! fails `cargo check`. Each preset is compiled for the vocabulary sizes of [`BUCKETS`]; a
//! model is built in the smallest that holds the real vocabulary ([`static_model`]).

use crate::bail;
use crate::error::Result;
use crate::float::{Float, Precision};
use crate::gpt::Gpt;
use crate::model::Model;
use crate::optim::{Adam, Schedule};
use crate::reference::Reference;
use crate::rng::Rng;
use crate::shape;

/// microgpt.py's model on names.txt in scalar `S`: V 27, T 16, E 16, H 4, D 4, F 64, L 1
/// (4,192 parameters).
pub type MicroOf<S> = Gpt<27, 16, 16, 4, 4, 64, 1, S>;
/// [`MicroOf`] in `f64`: microgpt.py's model, exactly.
pub type Micro = MicroOf<f64>;
const _: () = Micro::CHECK;
/// [`MicroOf`] in `f32`.
pub type Micro32 = MicroOf<f32>;

/// The micro model compiled for vocabularies of up to 64 tokens (the real one is a run-time
/// value; unused rows are masked).
pub type Micro64Of<S> = Gpt<64, 16, 16, 4, 4, 64, 1, S>;
pub type Micro64 = Micro64Of<f64>;
const _: () = Micro64::CHECK;

/// The micro model for vocabularies of up to 128 tokens.
pub type Micro128Of<S> = Gpt<128, 16, 16, 4, 4, 64, 1, S>;
pub type Micro128 = Micro128Of<f64>;
const _: () = Micro128::CHECK;

/// The micro model for vocabularies of up to 256 tokens.
pub type Micro256Of<S> = Gpt<256, 16, 16, 4, 4, 64, 1, S>;
pub type Micro256 = Micro256Of<f64>;
const _: () = Micro256::CHECK;

/// The shape of makemore's ~200k-parameter transformer on names.txt, with microgpt's blocks,
/// in scalar `S`: V 27, T 16, E 64, H 4, D 16, F 256, L 4 (201,088 parameters on names).
pub type SmallOf<S> = Gpt<27, 16, 64, 4, 16, 256, 4, S>;
/// [`SmallOf`] in `f64`.
pub type Small = SmallOf<f64>;
const _: () = Small::CHECK;
/// [`SmallOf`] in `f32`.
pub type Small32 = SmallOf<f32>;

/// The small model for vocabularies of up to 64 tokens.
pub type Small64Of<S> = Gpt<64, 16, 64, 4, 16, 256, 4, S>;
pub type Small64 = Small64Of<f64>;
const _: () = Small64::CHECK;

/// The small model for vocabularies of up to 128 tokens.
pub type Small128Of<S> = Gpt<128, 16, 64, 4, 16, 256, 4, S>;
pub type Small128 = Small128Of<f64>;
const _: () = Small128::CHECK;

/// The small model for vocabularies of up to 256 tokens.
pub type Small256Of<S> = Gpt<256, 16, 64, 4, 16, 256, 4, S>;
pub type Small256 = Small256Of<f64>;
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

/// `micro` in each bucket of [`BUCKETS`], in scalar `S`.
fn micro<S: Float>() -> [Build; 4] {
    [
        |vocab, rng| boxed(MicroOf::<S>::new(vocab, rng)),
        |vocab, rng| boxed(Micro64Of::<S>::new(vocab, rng)),
        |vocab, rng| boxed(Micro128Of::<S>::new(vocab, rng)),
        |vocab, rng| boxed(Micro256Of::<S>::new(vocab, rng)),
    ]
}

/// `small` in each bucket of [`BUCKETS`], in scalar `S`.
fn small<S: Float>() -> [Build; 4] {
    [
        |vocab, rng| boxed(SmallOf::<S>::new(vocab, rng)),
        |vocab, rng| boxed(Small64Of::<S>::new(vocab, rng)),
        |vocab, rng| boxed(Small128Of::<S>::new(vocab, rng)),
        |vocab, rng| boxed(Small256Of::<S>::new(vocab, rng)),
    ]
}

/// The compiled vocabulary size a model for `vocab` tokens is built in: the smallest bucket
/// that holds it.
pub fn bucket(vocab: usize) -> Option<usize> {
    BUCKETS.iter().copied().find(|&b| vocab <= b)
}

/// The static model of preset `name` for a real vocabulary of `vocab` tokens, in the smallest
/// bucket that holds it; the initial weights are those of the exact-vocab model from the same
/// `rng`. In `f64`; [`static_model_in`] for either precision.
pub fn static_model(name: &str, vocab: usize, rng: &mut Rng) -> Result<Box<dyn Model>> {
    static_model_in(Precision::F64, name, vocab, rng)
}

/// [`static_model`] in `precision` (in `f32` the initial weights are the `f64` draws rounded).
pub fn static_model_in(
    precision: Precision,
    name: &str,
    vocab: usize,
    rng: &mut Rng,
) -> Result<Box<dyn Model>> {
    let builds = match (name, precision) {
        ("micro", Precision::F64) => micro::<f64>(),
        ("micro", Precision::F32) => micro::<f32>(),
        ("small", Precision::F64) => small::<f64>(),
        ("small", Precision::F32) => small::<f32>(),
        (other, _) => bail!("no static build of model {other:?}"),
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
    /// Const-generic arrays with hand-written derivatives, in `f64`: the exact engine.
    Static,
    /// The static engine in `f32`.
    StaticF32,
    /// The scalar autograd tape (`f64`).
    Dynamic,
}

impl Engine {
    /// `static`, `static f32`, `dynamic`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Static => "static",
            Engine::StaticF32 => "static f32",
            Engine::Dynamic => "dynamic",
        }
    }

    /// The static engine in `precision`.
    pub fn static_in(precision: Precision) -> Engine {
        match precision {
            Precision::F64 => Engine::Static,
            Precision::F32 => Engine::StaticF32,
        }
    }

    /// The scalar the engine computes in.
    pub fn precision(self) -> Precision {
        match self {
            Engine::StaticF32 => Precision::F32,
            Engine::Static | Engine::Dynamic => Precision::F64,
        }
    }

    /// Whether it is the static engine (in either precision).
    pub fn is_static(self) -> bool {
        self != Engine::Dynamic
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
        Engine::Static | Engine::StaticF32 => static_model_in(engine.precision(), name, vocab, rng),
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
/// and the average were chosen on three held-out splits, the weight decay on the same three
/// (docs/quality.md).
pub const SMALL_RECIPE: PresetRecipe = PresetRecipe {
    adam: Adam {
        lr: 3e-3,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
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
