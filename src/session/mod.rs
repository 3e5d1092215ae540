//! A training run as the command line sees it: the dataset and its validation split, the model
//! (fresh, started from a checkpoint's weights, or resumed exactly), the loop with its reports,
//! validation and checkpoints; and the commands that read a checkpoint back (sample, eval).
//!
//! Exact resume. A run is a function of its settings: the seed fixes the shuffle, the split
//! and the initial weights; training draws nothing at random (documents are taken in order);
//! the schedule depends only on the step and the total. So a checkpoint that records the
//! settings, the step, the weights and Adam's moments determines the rest of the run. Resuming
//! rebuilds the random stream by replaying the same draws (shuffle, initial weights) — which
//! leaves it in the very state it was in at every step of the original run — and then loads
//! the weights and moments over the fresh ones.
//!
//! - [`settings`]: [`Settings`], their checks, and what a checkpoint records of a run;
//! - [`dataset`]: the documents read, fingerprinted, shuffled and split;
//! - [`train`]: the `train` run, which reports what happens as [`Event`]s to a [`Report`]
//!   ([`report`]) and prints nothing;
//! - [`commands`]: `sample`, `eval` and the bigram baseline, over a checkpoint's model.

pub mod commands;
pub mod dataset;
pub mod report;
pub mod settings;
pub mod train;

pub use crate::presets::{Engine, build_model};
pub use commands::{
    PRECISION_KEY, bigram_baseline, checkpoint_precision, each_sample, load_model, run_eval,
    run_sample, training_docs,
};
pub use dataset::{Dataset, Fingerprint, RawDocs, checkpoint_source, fingerprint};
pub use report::{Event, Outline, Report};
pub use settings::{Settings, checkpoint_of};
pub use train::{
    MIN_EVAL_DOCS, Save, Start, TrainOptions, VAL_MAX, cores, default_eval_docs, free_path,
    run_train,
};
