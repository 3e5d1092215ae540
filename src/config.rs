//! Model shapes.
//!
//! [`Shape`] is the run-time description of a model: what the reference (dynamic) engine is
//! built from and what a checkpoint records. The static engine carries the same numbers as
//! const generics; see the configuration aliases below.

/// The dimensions of one GPT, in the letters used throughout: `V` vocab, `T` block size,
/// `E` n_embd, `H` heads (head dim `D = E / H`), `F` MLP width (`4·E` in microgpt), `L` layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub vocab: usize,
    pub block_size: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub mlp: usize,
    pub n_layer: usize,
}

impl Shape {
    /// microgpt.py's model for a vocabulary of `vocab` tokens (BOS included):
    /// 1 layer, n_embd 16, 4 heads, block 16, MLP 64.
    pub const fn micro(vocab: usize) -> Shape {
        Shape {
            vocab,
            block_size: 16,
            n_embd: 16,
            n_head: 4,
            mlp: 64,
            n_layer: 1,
        }
    }

    /// The named configuration this shape is (whatever its vocabulary), if any.
    pub fn preset(&self) -> Option<&'static str> {
        PRESETS
            .iter()
            .find(|(_, p)| {
                Shape {
                    vocab: self.vocab,
                    ..*p
                } == *self
            })
            .map(|(name, _)| *name)
    }

    pub const fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Every weight matrix as `(name, rows, cols)` in microgpt.py's `state_dict` order, which
    /// is also the order the initial weights are drawn in (row by row) and the layout of a
    /// flat parameter vector.
    pub fn tensors(&self) -> Vec<(String, usize, usize)> {
        let (v, t, e, f) = (self.vocab, self.block_size, self.n_embd, self.mlp);
        let mut out = vec![
            ("wte".to_string(), v, e),
            ("wpe".to_string(), t, e),
            ("lm_head".to_string(), v, e),
        ];
        for i in 0..self.n_layer {
            for (name, rows, cols) in [
                ("attn_wq", e, e),
                ("attn_wk", e, e),
                ("attn_wv", e, e),
                ("attn_wo", e, e),
                ("mlp_fc1", f, e),
                ("mlp_fc2", e, f),
            ] {
                out.push((format!("layer{i}.{name}"), rows, cols));
            }
        }
        out
    }

    /// Number of parameters (4,192 for `micro(27)`).
    pub fn num_params(&self) -> usize {
        self.tensors().iter().map(|(_, r, c)| r * c).sum()
    }
}

// ------------------------------------------------------------------------------------------
// The static engine's configurations. The positional const parameters are spelled here and
// nowhere else; each alias forces the compile-time shape check (`Gpt::CHECK`) with an
// item-level `const _`, so a wrong alias fails `cargo check`.

use crate::model::Gpt;

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

/// The compiled configurations by name (`--model`), with a placeholder vocabulary of 0: the
/// real one comes from the data.
pub const PRESETS: [(&str, Shape); 2] = [
    ("micro", Shape::micro(0)),
    (
        "small",
        Shape {
            vocab: 0,
            block_size: 16,
            n_embd: 64,
            n_head: 4,
            mlp: 256,
            n_layer: 4,
        },
    ),
];

/// The shape of preset `name` for a vocabulary of `vocab` tokens.
pub fn preset_shape(name: &str, vocab: usize) -> Option<Shape> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| Shape { vocab, ..*s })
}

// ------------------------------------------------------------------------------------------
// The presets' recipes: how `train --model NAME` trains when no flag says otherwise (each flag
// given overrides its one setting). Retune a preset here.

use crate::optim::{Adam, Schedule};

/// A preset's training recipe: the optimizer, the batch and its loss, the length of the run,
/// the validation split and how often it reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PresetRecipe {
    pub adam: Adam,
    pub batch_size: usize,
    pub dropout: f64,
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
    token_mean: false,
    reshuffle: false,
    steps: 1000,
    val_fraction: 0.1,
    eval_every: 250,
    print_every: 100,
};

/// The bigger model's recipe (the README's result): AdamW with warm-up and a cosine decay,
/// batches of 32 with makemore's token mean, dropout, a new order every epoch, 32,000 steps
/// (≈ 33 epochs); a validation split of 1,003 names (3.13%, makemore's 1,000).
pub const SMALL_RECIPE: PresetRecipe = PresetRecipe {
    adam: Adam {
        lr: 2e-3,
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
    token_mean: true,
    reshuffle: true,
    steps: 32000,
    val_fraction: 0.0313,
    eval_every: 2000,
    print_every: 4000,
};

/// Each preset's recipe, by name (the names of [`PRESETS`]).
pub const RECIPES: [(&str, PresetRecipe); 2] = [("micro", MICRO_RECIPE), ("small", SMALL_RECIPE)];

/// The recipe of preset `name`.
pub fn preset_recipe(name: &str) -> Option<PresetRecipe> {
    RECIPES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

impl std::fmt::Display for PresetRecipe {
    /// One line, in the flags' terms: `batch 32, lr 0.002, betas 0.9/0.99, …`.
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
        write!(
            f,
            ", dropout {}, {}, {}, {} steps, val fraction {}, eval every {}, print every {}",
            self.dropout,
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
        let presets: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        let recipes: Vec<&str> = RECIPES.iter().map(|(n, _)| *n).collect();
        assert_eq!(presets, recipes);
        assert_eq!(MICRO_RECIPE.adam, Adam::default());
        assert_eq!(preset_recipe("small"), Some(SMALL_RECIPE));
        assert_eq!(preset_recipe("huge"), None);
    }

    #[test]
    fn micro_on_names_has_4192_parameters() {
        // 27·16 (wte) + 16·16 (wpe) + 27·16 (lm_head) + 4·16·16 (attention) + 2·64·16 (MLP)
        assert_eq!(Shape::micro(27).num_params(), 432 + 256 + 432 + 1024 + 2048);
        assert_eq!(Shape::micro(27).num_params(), 4192);
    }
}
