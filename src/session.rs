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

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::bigram::Bigram;
use crate::checkpoint::{AdamMoments, Checkpoint};
use crate::curve::Curve;
use crate::data::{self, Docs, EncodedDocs, Source, Tokenizer};
use crate::error::Result;
use crate::io::{check_distinct, check_output};
use crate::limits;
use crate::model::Model;
use crate::optim::{Adam, Schedule};
use crate::progress::Progress;
use crate::rng::{Rng, RngKind};
use crate::sample::{self, Sampling};
use crate::shape::{self, Shape};
use crate::train;
use crate::{bail, console, interrupt, say};

use crate::presets;
pub use crate::presets::{Engine, build_model};

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
        c.set("dropout", r.dropout);
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
                token_mean: c.parse_or("token_mean", false)?,
                reshuffle: c.parse_or("reshuffle", false)?,
            },
            total_steps: c.parse("total_steps")?,
            val_fraction: c.parse("val_fraction")?,
        };
        if let Err(e) = s.validate() {
            bail!("the checkpoint's settings are out of range: {e}");
        }
        Ok(s)
    }
}

/// A dataset read, shuffled and split.
pub struct Dataset {
    pub source: Source,
    /// Documents in the file.
    pub num_docs: usize,
    pub tok: Tokenizer,
    pub train: EncodedDocs,
    pub val: EncodedDocs,
}

/// FNV-1a (64-bit) of the documents joined by newlines.
pub fn fingerprint<S: AsRef<str>>(docs: &[S]) -> u64 {
    fingerprint_of(docs.iter().map(AsRef::as_ref))
}

fn fingerprint_of<'a>(docs: impl Iterator<Item = &'a str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for d in docs {
        for b in d.bytes().chain([b'\n']) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A dataset read but not yet shuffled.
pub struct RawDocs {
    pub source: Source,
    pub docs: Docs,
}

impl RawDocs {
    pub fn read(source: &Source) -> Result<RawDocs> {
        Ok(RawDocs {
            source: source.clone(),
            docs: Docs::read(source)?,
        })
    }

    /// FNV-1a of the documents in file order, which a checkpoint records so that a resumed
    /// run can check it sees the same data. Computed on demand: it is one serial pass over
    /// every byte (≈ 0.4 ms for names.txt) that a run without checkpoints does not need.
    pub fn fingerprint(&self) -> u64 {
        fingerprint_of(self.docs.iter())
    }

    /// Checks that this is the dataset a checkpoint was trained on.
    pub fn check_against(&self, c: &Checkpoint) -> Result<()> {
        let fp = format!("{:016x}", self.fingerprint());
        if c.get("data_fingerprint").ok() != Some(fp.as_str()) {
            bail!(
                "{} is not the dataset the checkpoint was trained on ({} documents, fingerprint {}; this file: {} documents, {})",
                self.source,
                c.get("data_docs").unwrap_or("?"),
                c.get("data_fingerprint").unwrap_or("?"),
                self.docs.len(),
                fp
            );
        }
        Ok(())
    }

    /// Shuffles the documents with `rng` (microgpt.py's `random.shuffle(docs)`) and holds out
    /// the last `round(n · val_fraction)`. The vocabulary is `tok` if given (a checkpoint's:
    /// every character must be in it), else every character of the file.
    pub fn split(
        self,
        rng: &mut Rng,
        val_fraction: f64,
        tok: Option<Tokenizer>,
    ) -> Result<Dataset> {
        let RawDocs { source, mut docs } = self;
        let num_docs = docs.len();
        docs.shuffle(rng);
        let n_val = (num_docs as f64 * val_fraction).round() as usize;
        if val_fraction > 0.0 && (n_val == 0 || n_val >= num_docs) {
            bail!(
                "--val-fraction {val_fraction} of {num_docs} documents leaves {n_val} for validation and {} for training; both need at least one",
                num_docs - n_val.min(num_docs)
            );
        }
        let tok = match tok {
            Some(t) => t,
            None => Tokenizer::from_strs(docs.iter()),
        };
        // the same rule for both engines and the checkpoint, before any work is done with it
        if let Err(e) = limits::check_vocab(tok.chars()) {
            bail!("dataset {source}: {e}");
        }
        let n_train = num_docs - n_val;
        let encode = |range| match EncodedDocs::from_strs(&tok, docs.iter_range(range)) {
            Ok(e) => Ok(e),
            Err(e) => bail!("{source}: {e} of the model"),
        };
        let (train, val) = (encode(0..n_train)?, encode(n_train..num_docs)?);
        Ok(Dataset {
            source,
            num_docs,
            tok,
            train,
            val,
        })
    }
}

impl Dataset {
    /// [`RawDocs::read`] then [`RawDocs::split`].
    pub fn load(
        source: &Source,
        rng: &mut Rng,
        val_fraction: f64,
        tok: Option<Tokenizer>,
    ) -> Result<Dataset> {
        RawDocs::read(source)?.split(rng, val_fraction, tok)
    }
}

/// The dataset of a checkpoint's run: `data` if given, else the one it recorded. A recorded
/// file that is no longer there but whose fingerprint is the built-in names' (a run trained
/// on a copy of names.txt) is the built-in names; checkpoints without a record trained on them.
pub fn checkpoint_source(c: &Checkpoint, data: Option<&Path>) -> Source {
    if let Some(p) = data {
        return Source::File(p.to_path_buf());
    }
    match c.get("data").ok().map(Source::from_record) {
        None => Source::Names,
        Some(Source::File(p)) if !p.exists() && is_names(c) => Source::Names,
        Some(s) => s,
    }
}

/// Whether a checkpoint's recorded fingerprint is the built-in names'.
fn is_names(c: &Checkpoint) -> bool {
    let names = fingerprint_of(Docs::parse(data::NAMES.into()).iter());
    c.get("data_fingerprint").ok() == Some(format!("{names:016x}").as_str())
}

/// A checkpoint of `model` after `step` steps of a run with these settings and data (whose
/// [`RawDocs::fingerprint`] is `fingerprint`).
pub fn checkpoint_of(
    model: &dyn Model,
    settings: &Settings,
    step: usize,
    data: &Dataset,
    fingerprint: u64,
) -> Checkpoint {
    let tok = &data.tok;
    let mut c = Checkpoint::new(
        model.shape(),
        tok.chars().to_vec(),
        model.params_flat(),
        step,
        settings.recipe.seed,
        settings.rng,
        &settings.preset,
    );
    settings.write_to(&mut c);
    let (m, v) = model.adam_flat();
    c.adam = Some(AdamMoments { m, v });
    c.set("data", data.source.record());
    c.set("data_docs", data.num_docs);
    c.set("data_fingerprint", format!("{fingerprint:016x}"));
    c
}

/// How a `train` run starts.
pub enum Start {
    /// Fresh weights from the seed.
    Fresh,
    /// A checkpoint's weights, a fresh optimizer and schedule.
    Init(Checkpoint),
    /// Exactly where the checkpoint stopped.
    Resume(Checkpoint),
}

/// Where a `train` run saves its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Save {
    /// Nowhere (`--no-save`).
    Nothing,
    /// Here, replacing what is there (`--out`).
    Named(PathBuf),
    /// Here or, if a file is there, at the first free `stem-2.ext`, `stem-3.ext`, …: a file
    /// the user did not name is never replaced.
    Default(PathBuf),
}

/// The periodic validation losses are over at most this many validation documents (a fixed
/// sample); the last one is over all. Above names.txt's 3,203, so that its runs evaluate
/// the whole split every time.
pub const EVAL_DOCS: usize = 4096;

/// `path` if nothing is there, else the first of `stem-2.ext`, `stem-3.ext`, … that is free.
pub fn free_path(path: &Path) -> PathBuf {
    if !path.exists() {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map_or("checkpoint".into(), |s| s.to_string_lossy());
    let ext = path.extension().map(|e| e.to_string_lossy());
    (2..)
        .map(|i| {
            let name = match &ext {
                Some(e) => format!("{stem}-{i}.{e}"),
                None => format!("{stem}-{i}"),
            };
            path.with_file_name(name)
        })
        .find(|p| !p.exists())
        .expect("a free name")
}

/// Everything about a `train` run besides its [`Settings`].
pub struct TrainOptions {
    pub engine: Engine,
    pub data: Option<PathBuf>,
    /// Stop after this step (the schedule runs over `settings.total_steps`).
    pub stop_at: usize,
    pub print_every: usize,
    /// Validation loss every N steps (and at the end).
    pub eval_every: usize,
    /// The periodic validation losses are over the first this many validation documents;
    /// the last one is over all of them.
    pub eval_docs: usize,
    pub save: Save,
    pub save_every: Option<usize>,
    pub progress: bool,
    pub log: Option<PathBuf>,
    /// Worker threads for a step's documents (`None`: all cores).
    pub threads: Option<usize>,
    /// The checkpoint file `--init` or `--resume` read, if any: no output may overwrite it
    /// (but `--out` may continue a resumed run in place).
    pub start_file: Option<PathBuf>,
}

/// The shape of a checkpoint's model must be the compiled shape of its preset.
fn check_checkpoint_shape(c: &Checkpoint) -> Result<Shape> {
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

/// Before any work: every output of a run can be written ([`check_output`]), and no two of the
/// run's files are one (an output over the dataset, a checkpoint read, or another output).
fn check_files(
    out: Option<&Path>,
    opts: &TrainOptions,
    start: &Start,
    source: &Source,
) -> Result<()> {
    let svg = opts.log.as_ref().map(|l| l.with_extension("svg"));
    let out: Vec<(&str, &Path)> = out.iter().map(|p| ("--out", *p)).collect();
    let mut curve: Vec<(&str, &Path)> = Vec::new();
    if let (Some(log), Some(svg)) = (&opts.log, &svg) {
        curve.push(("--log", log));
        curve.push(("the plot beside --log", svg));
    }
    for (p, what) in out.iter().map(|o| (o.1, "checkpoint")) {
        check_output(p, what)?;
    }
    for (p, what) in curve.iter().map(|c| (c.1, "loss curve")) {
        check_output(p, what)?;
    }
    let all: Vec<(&str, &Path)> = out.iter().chain(&curve).copied().collect();
    let mut inputs: Vec<(&str, &Path)> = Vec::new();
    if let Source::File(p) = source {
        inputs.push(("--data", p));
    }
    match (start, opts.start_file.as_deref()) {
        (Start::Init(_), Some(p)) => inputs.push(("--init", p)),
        (Start::Resume(_), Some(p)) => inputs.push(("--resume", p)),
        _ => {}
    }
    check_distinct(&all, &inputs)
}

/// `microgpt train`: returns the final validation loss, if there is a validation set.
pub fn run_train(settings: &Settings, start: Start, opts: &TrainOptions) -> Result<Option<f64>> {
    settings.validate()?;
    if let Some(n) = opts.threads
        && !(1..=limits::MAX_THREADS).contains(&n)
    {
        bail!(
            "--threads must be between 1 and {}, got {n}",
            limits::MAX_THREADS
        );
    }
    if opts.engine == Engine::Dynamic && settings.recipe.batch_size > limits::MAX_DYNAMIC_BATCH_SIZE
    {
        bail!(
            "--engine dynamic records one tape per step (about 1 MB per micro document, 60 MB per small one): at most {} documents per step, got --batch-size {}",
            limits::MAX_DYNAMIC_BATCH_SIZE,
            settings.recipe.batch_size
        );
    }
    let mut out = match &opts.save {
        Save::Nothing => None,
        Save::Named(p) => Some(p.clone()),
        Save::Default(p) => Some(free_path(p)),
    };
    let (source, tok, first_step) = match &start {
        Start::Fresh => (Source::new(opts.data.as_deref()), None, 0),
        Start::Init(c) => {
            check_checkpoint_shape(c)?;
            (Source::new(opts.data.as_deref()), Some(c.tokenizer()?), 0)
        }
        Start::Resume(c) => {
            check_checkpoint_shape(c)?;
            let source = checkpoint_source(c, opts.data.as_deref());
            (source, Some(c.tokenizer()?), c.step()?)
        }
    };
    check_files(out.as_deref(), opts, &start, &source)?;
    let raw = RawDocs::read(&source)?;
    let fingerprint = raw.fingerprint();
    if let Start::Resume(c) = &start {
        raw.check_against(c)?;
        if first_step >= settings.total_steps {
            bail!(
                "the checkpoint has done all {} steps of its schedule",
                settings.total_steps
            );
        }
    }
    let mut rng = Rng::new(settings.rng, settings.recipe.seed);
    let data = raw.split(&mut rng, settings.val_fraction, tok)?;
    let mut model = build_model(
        opts.engine,
        &settings.preset,
        data.tok.vocab_size(),
        &mut rng,
    )?;
    match &start {
        Start::Fresh => {}
        Start::Init(c) => model.set_params_flat(&c.params)?,
        Start::Resume(c) => {
            model.set_params_flat(&c.params)?;
            let Some(adam) = &c.adam else {
                bail!(
                    "the checkpoint has no optimizer state to resume from (use --init to start from its weights)"
                );
            };
            model.set_adam_flat(&adam.m, &adam.v)?;
        }
    }
    // training shares a step's documents, so more threads than documents only wait; an
    // evaluation has thousands to share
    let eval_threads = opts.threads.unwrap_or_else(cores);
    let train_threads = eval_threads.min(settings.recipe.batch_size);
    model.set_threads(train_threads)?;
    let last = opts.stop_at.min(settings.total_steps);
    if last <= first_step {
        bail!("nothing to do: the run is at step {first_step} and would stop at step {last}");
    }

    say!("num docs: {}", data.num_docs);
    say!("vocab size: {}", data.tok.vocab_size());
    say!("num params: {}", model.num_params());
    say!(
        "model: {} ({} engine), train docs: {}, val docs: {}, batch size: {}",
        settings.preset,
        opts.engine.name(),
        data.train.len(),
        data.val.len(),
        settings.recipe.batch_size
    );
    if first_step > 0 {
        say!("resuming at step {first_step}");
    }
    // the periodic evaluations on the first `eval_docs` of the split: the split is drawn
    // after the seeded shuffle, so they are a random sample, the same one every time
    let val_sample = (data.val.len() > opts.eval_docs).then(|| data.val.head(opts.eval_docs));
    if !data.val.is_empty() {
        let threads = if eval_threads == 1 {
            "1 thread".to_string()
        } else {
            format!("{eval_threads} threads")
        };
        match &val_sample {
            None => say!(
                "validation: all {} held-out docs every {} steps and at the end ({threads})",
                data.val.len(),
                opts.eval_every
            ),
            Some(v) => say!(
                "validation: every {} steps on a fixed sample of {} of the {} held-out docs, at the end on all of them ({threads})",
                opts.eval_every,
                v.len(),
                data.val.len()
            ),
        }
    }
    match (&opts.save, &out) {
        (Save::Default(p), Some(o)) if o != p => say!(
            "checkpoint: {} at the end ({} exists; --out PATH to choose, --no-save for none)",
            o.display(),
            p.display()
        ),
        (Save::Default(_), Some(o)) => say!(
            "checkpoint: {} at the end (--out PATH to choose, --no-save for none)",
            o.display()
        ),
        (Save::Named(_), Some(o)) => say!("checkpoint: {} at the end", o.display()),
        _ => say!("checkpoint: none (--no-save)"),
    }

    let total = settings.total_steps;
    let mut curve = Curve::new(last - first_step);
    let mut progress = Progress::new(last - first_step, opts.progress);
    let mut tokens_done = 0;
    let mut train_time = 0.0;
    let mut lap = Instant::now();
    let validate = |model: &mut dyn Model, step: usize, progress: &Progress| {
        let (docs, note) = match &val_sample {
            Some(v) if step != last => (v, format!(" (sample of {})", v.len())),
            _ => (&data.val, String::new()),
        };
        // errors here are a thread that cannot be spawned; the pass then runs on fewer
        let _ = model.set_threads(eval_threads);
        let (sum, n) = train::evaluate(model, docs);
        let _ = model.set_threads(train_threads);
        let loss = sum / n as f64;
        progress.println(format!(
            "step {step:4} / {total:4} | val loss {loss:.4}{note}"
        ));
        loss
    };
    // a default path that someone else's file took during the run moves on to a free one
    let mut ours = matches!(opts.save, Save::Named(_));
    let mut claim = |out: &mut PathBuf| {
        if !ours && out.exists() {
            *out = free_path(out);
        }
        ours = true;
    };
    let mut final_val = None;
    let done = train::train_until(
        model.as_mut(),
        &data.train,
        &settings.recipe,
        (first_step, last, total),
        |model, step, loss, tokens| {
            let s = step + 1;
            tokens_done += tokens;
            curve.push_train(s, loss);
            progress.update(s - first_step, loss, tokens_done);
            if s == first_step + 1 || s == last || s % opts.print_every == 0 {
                progress.println(format!("step {s:4} / {total:4} | loss {loss:.4}"));
            }
            let eval_now = !data.val.is_empty() && (s % opts.eval_every == 0 || s == last);
            let save_now = opts.save_every.is_some_and(|k| s % k == 0 && s != last);
            if eval_now || save_now {
                train_time += lap.elapsed().as_secs_f64();
            }
            if eval_now {
                let v = validate(model, s, &progress);
                curve.push_val(s, v);
                final_val = Some(v);
            }
            if save_now && let Some(out) = &mut out {
                claim(out);
                let c = checkpoint_of(model, settings, s, &data, fingerprint);
                // a disk full for a moment must not cost the run: the next save may succeed
                if let Err(e) = c.save(out) {
                    progress.suspend(|| {
                        console::warn(format!(
                            "warning: step {s}: {e}; training goes on, the next save will try again"
                        ))
                    });
                }
            }
            if eval_now || save_now {
                lap = Instant::now();
            }
            // a first Ctrl-C or SIGTERM: stop after this step, then save as at the end
            if interrupt::requested().is_some() {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        },
    )?;
    train_time += lap.elapsed().as_secs_f64();
    progress.finish();
    let interrupted = interrupt::requested().filter(|_| done < last);
    let last = done;
    say!(
        "training time: {} ({} steps, {:.0} tokens/s)",
        human_time(train_time),
        last - first_step,
        tokens_done as f64 / train_time
    );
    if let Some(out) = &mut out {
        claim(out);
        checkpoint_of(model.as_ref(), settings, last, &data, fingerprint).save(out)?;
        say!("saved {} (step {last} of {total})", out.display());
    }
    if let Some(sig) = interrupted {
        console::warn(match &out {
            Some(out) => format!(
                "interrupted by {} after step {last} of {total}: saved {}; continue with `microgpt train --resume {}`",
                sig.name(),
                out.display(),
                out.display()
            ),
            None => format!(
                "interrupted by {} after step {last} of {total}: nothing saved (--no-save)",
                sig.name()
            ),
        });
    }
    if let Some(log) = &opts.log {
        let bigram = bigram_baseline(&data)?;
        if let Some(b) = bigram {
            curve.add_reference(format!("bigram baseline {b:.3}"), b);
        }
        curve.write_csv(log)?;
        let svg = log.with_extension("svg");
        curve.write_svg(&svg, &format!("{} on {}", settings.preset, data.source))?;
        say!("wrote {} and {}", log.display(), svg.display());
    }
    Ok(final_val)
}

/// The number of cores (1 if unknown): the default number of threads.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `12.3 ms`, `4.56 s` or `3 min 12 s`.
pub fn human_time(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.1} ms", secs * 1e3)
    } else if secs < 120.0 {
        format!("{secs:.2} s")
    } else {
        format!("{} min {:.0} s", (secs / 60.0).floor(), secs % 60.0)
    }
}

/// The bigram baseline's validation loss on a dataset's split (`None` without a split).
pub fn bigram_baseline(data: &Dataset) -> Result<Option<f64>> {
    if data.val.is_empty() {
        return Ok(None);
    }
    let b = Bigram::fit(
        data.tok.vocab_size(),
        data.train.iter(),
        Bigram::DEFAULT_SMOOTHING,
    )?;
    Ok(Some(b.mean_nll(data.val.iter(), None)?))
}

/// A model with a checkpoint's weights, on the static engine.
pub fn load_model(c: &Checkpoint) -> Result<(Box<dyn Model>, Tokenizer)> {
    check_checkpoint_shape(c)?;
    let tok = c.tokenizer()?;
    // the weights are overwritten; the stream only feeds the throwaway initialization
    let mut rng = Rng::pcg(0);
    let mut model = build_model(Engine::Static, c.model()?, tok.vocab_size(), &mut rng)?;
    model.set_params_flat(&c.params)?;
    Ok((model, tok))
}

/// `microgpt sample`: `n` samples, each the prompt followed by what the model draws.
pub fn run_sample(
    c: &Checkpoint,
    n: usize,
    sampling: &Sampling,
    seed: u64,
    rng_kind: RngKind,
    prompt: &str,
) -> Result<Vec<String>> {
    let mut samples = Vec::new();
    each_sample(c, n, sampling, seed, rng_kind, prompt, |s| {
        samples.push(s.to_string());
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(samples)
}

/// [`run_sample`] streamed: `each` gets every sample as soon as it is drawn (so memory does
/// not grow with `n`), and stops the drawing by returning [`std::ops::ControlFlow::Break`].
pub fn each_sample(
    c: &Checkpoint,
    n: usize,
    sampling: &Sampling,
    seed: u64,
    rng_kind: RngKind,
    prompt: &str,
    mut each: impl FnMut(&str) -> std::ops::ControlFlow<()>,
) -> Result<()> {
    if n > limits::MAX_SAMPLES {
        bail!(
            "--num-samples must be at most {}, got {n}",
            limits::MAX_SAMPLES
        );
    }
    let (mut model, tok) = load_model(c)?;
    sampling.validate(tok.vocab_size())?;
    let ids = match tok.encode(prompt) {
        Ok(ids) => ids,
        Err(e) => bail!("prompt: {e} of the model"),
    };
    let block = model.shape().block_size;
    if ids.len() > block {
        bail!(
            "the prompt has {} characters but the model's block size is {block}",
            ids.len()
        );
    }
    let mut rng = Rng::new(rng_kind, seed);
    let mut probs = vec![0.0; tok.vocab_size()];
    let mut out = Vec::with_capacity(block);
    for _ in 0..n {
        sample::generate(
            model.as_mut(),
            tok.bos(),
            &ids,
            sampling,
            &mut rng,
            &mut probs,
            &mut out,
        );
        if each(&tok.decode(&out)).is_break() {
            break;
        }
    }
    Ok(())
}

/// The documents a checkpoint's run trained on: its dataset (`data`, else the path it
/// recorded), checked against its fingerprint, shuffled and split again with its settings.
pub fn training_docs(c: &Checkpoint, data: Option<&Path>) -> Result<HashSet<String>> {
    let settings = Settings::read_from(c)?;
    let raw = RawDocs::read(&checkpoint_source(c, data))?;
    raw.check_against(c)?;
    let mut rng = Rng::new(settings.rng, settings.recipe.seed);
    let d = raw.split(&mut rng, settings.val_fraction, Some(c.tokenizer()?))?;
    Ok(d.train.iter().map(|t| d.tok.decode(t)).collect())
}

/// `microgpt eval`: the token-weighted mean loss of a checkpoint over every document of a
/// file, and the numbers of tokens and documents.
pub fn run_eval(c: &Checkpoint, path: &Path) -> Result<(f64, usize, usize)> {
    let (mut model, tok) = load_model(c)?;
    let docs = Docs::read(&Source::File(path.to_path_buf()))?;
    let enc = match EncodedDocs::from_strs(&tok, docs.iter()) {
        Ok(e) => e,
        Err(e) => bail!("{}: {e} of the model", path.display()),
    };
    model.set_threads(cores())?;
    let (sum, n) = train::evaluate(model.as_mut(), &enc);
    Ok((sum / n as f64, n, enc.len()))
}
