//! The settings that define a run's numbers, checked in one place, and what a checkpoint
//! records of a run: the settings, the dataset's identity, and a shape this build can load.

use crate::checkpoint::{AdamMoments, Checkpoint};
use crate::ema::Ema;
use crate::error::Result;
use crate::model::Model;
use crate::optim::{Adam, Schedule};
use crate::rng::RngKind;
use crate::shape::{self, Shape};
use crate::{bail, limits, presets, train};

use super::Dataset;

/// Everything that defines a run's numbers. A checkpoint records all of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub rng: RngKind,
    pub preset: String,
    /// How the model trains: Adam, batch size, dropout, loss weighting, document order, and
    /// the seed (which also draws the shuffle, the split and the initial weights).
    pub recipe: train::Recipe,
    /// Length of the learning-rate schedule (`lr · (1 − step/total_steps)`).
    pub total_steps: usize,
    /// Share of the documents held out for validation (the last ones after the shuffle).
    pub val_fraction: f64,
    /// At most this many documents held out (makemore's 1,000: a bigger split costs more to
    /// score than it says); `None` in checkpoints from before the cap.
    pub val_max: Option<usize>,
}

impl Settings {
    /// microgpt.py's run: seed 42, micro, one document per step, 1,000 steps, no validation.
    pub fn microgpt() -> Settings {
        Settings {
            rng: RngKind::Pcg,
            preset: "micro".into(),
            recipe: train::Recipe::microgpt(Adam::default(), 42),
            total_steps: 1000,
            val_fraction: 0.0,
            val_max: None,
        }
    }

    /// Every number of a run checked in one place, for settings from the command line and from
    /// a checkpoint alike: each finite and in its range ([`crate::limits`] for the counts that
    /// drive memory), and consistent with the others ([`Adam::validate`]).
    pub fn validate(&self) -> Result<()> {
        let r = &self.recipe;
        if self.total_steps == 0 || self.total_steps > limits::MAX_STEPS {
            bail!(
                "the number of steps must be between 1 and {}, got {}",
                limits::MAX_STEPS,
                self.total_steps
            );
        }
        r.adam.validate(self.total_steps)?;
        if !(self.val_fraction >= 0.0 && self.val_fraction < 1.0) {
            bail!(
                "--val-fraction must be in [0, 1), got {}",
                self.val_fraction
            );
        }
        if self.val_max == Some(0) {
            bail!("--val-max must be at least 1");
        }
        if !(0.0..1.0).contains(&r.ema) {
            bail!("--ema must be in [0, 1), got {}", r.ema);
        }
        if !(0.0..1.0).contains(&r.dropout) {
            bail!("--dropout must be in [0, 1), got {}", r.dropout);
        }
        if r.batch_size == 0 || r.batch_size > limits::MAX_BATCH_SIZE {
            bail!(
                "--batch-size must be between 1 and {}, got {}",
                limits::MAX_BATCH_SIZE,
                r.batch_size
            );
        }
        if shape::preset_shape(&self.preset, 0).is_none() {
            bail!(
                "unknown model {:?}; compiled models: {}",
                self.preset,
                presets::preset_names()
            );
        }
        Ok(())
    }

    /// Records the settings in a checkpoint's metadata.
    pub fn write_to(&self, c: &mut Checkpoint) {
        let (r, a) = (&self.recipe, &self.recipe.adam);
        c.set("seed", r.seed);
        c.set("rng", self.rng.name());
        c.set("model", &self.preset);
        c.set("lr", a.lr);
        c.set("beta1", a.beta1);
        c.set("beta2", a.beta2);
        c.set("eps", a.eps);
        c.set("weight_decay", a.weight_decay);
        c.set("warmup", a.warmup);
        c.set("schedule", a.schedule.name());
        c.set("min_lr_fraction", a.min_lr_fraction);
        c.set("batch_size", r.batch_size);
        c.set("total_steps", self.total_steps);
        c.set("val_fraction", self.val_fraction);
        if let Some(m) = self.val_max {
            c.set("val_max", m);
        }
        c.set("dropout", r.dropout);
        // only when on, so that a run without an average saves what it saved before the option
        if r.ema > 0.0 {
            c.set("ema", r.ema);
        }
        c.set("token_mean", r.token_mean);
        c.set("reshuffle", r.reshuffle);
    }

    /// The settings a checkpoint recorded, checked as the command line's are
    /// ([`Settings::validate`]).
    pub fn read_from(c: &Checkpoint) -> Result<Settings> {
        let s = Settings {
            rng: c.rng()?,
            preset: c.model()?.to_string(),
            recipe: train::Recipe {
                seed: c.seed()?,
                adam: Adam {
                    lr: c.parse("lr")?,
                    beta1: c.parse("beta1")?,
                    beta2: c.parse("beta2")?,
                    eps: c.parse("eps")?,
                    weight_decay: c.parse("weight_decay")?,
                    warmup: c.parse("warmup")?,
                    schedule: match Schedule::from_name(c.get("schedule")?) {
                        Some(s) => s,
                        None => bail!("metadata `schedule` is not linear or cosine"),
                    },
                    min_lr_fraction: c.parse("min_lr_fraction")?,
                },
                batch_size: c.parse("batch_size")?,
                // checkpoints from before these options existed trained without them
                dropout: c.parse_or("dropout", 0.0)?,
                ema: c.parse_or("ema", 0.0)?,
                token_mean: c.parse_or("token_mean", false)?,
                reshuffle: c.parse_or("reshuffle", false)?,
            },
            total_steps: c.parse("total_steps")?,
            val_fraction: c.parse("val_fraction")?,
            val_max: match c.get("val_max") {
                Ok(_) => Some(c.parse("val_max")?),
                Err(_) => None,
            },
        };
        if let Err(e) = s.validate() {
            bail!("the checkpoint's settings are out of range: {e}");
        }
        Ok(s)
    }
}

/// A checkpoint of `model` after `step` steps of a run with these settings and data (whose
/// [`RawDocs::fingerprint`](super::RawDocs::fingerprint) is `fingerprint`). With the run's
/// average of the weights, `ema`, the checkpoint's weights are the average (what `eval` and
/// `sample` use) and the model's own go to [`Checkpoint::raw`] (what a resume trains on).
pub fn checkpoint_of(
    model: &dyn Model,
    ema: Option<&Ema>,
    settings: &Settings,
    step: usize,
    data: &Dataset,
    fingerprint: u64,
) -> Checkpoint {
    let tok = &data.tok;
    let (params, raw) = match ema {
        Some(e) => (e.weights().to_vec(), Some(model.params_flat())),
        None => (model.params_flat(), None),
    };
    let mut c = Checkpoint::new(
        model.shape(),
        tok.chars().to_vec(),
        params,
        step,
        settings.recipe.seed,
        settings.rng,
        &settings.preset,
    );
    c.raw = raw;
    settings.write_to(&mut c);
    c.set(super::PRECISION_KEY, model.precision().name());
    let (m, v) = model.adam_flat();
    c.adam = Some(AdamMoments { m, v });
    c.set("data", data.source.record());
    c.set("data_docs", data.num_docs);
    c.set("data_fingerprint", format!("{fingerprint:016x}"));
    c
}

/// The shape of a checkpoint's model must be the compiled shape of its preset.
pub(super) fn check_checkpoint_shape(c: &Checkpoint) -> Result<Shape> {
    let preset = c.model()?;
    let Some(expected) = shape::preset_shape(preset, c.shape.vocab) else {
        bail!(
            "the checkpoint holds model {preset:?}, which this build does not have (it has {})",
            presets::preset_names()
        );
    };
    if expected != c.shape {
        bail!(
            "the checkpoint's {preset} model has shape {:?}, but this build's {preset} is {:?}",
            c.shape,
            expected
        );
    }
    Ok(expected)
}
