//! The `train` run: its options, the checks before any work, the loop with its validation and
//! checkpoints, and the end (the last save, the loss curve).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checkpoint::Checkpoint;
use crate::curve::Curve;
use crate::data::{EncodedDocs, Source, Tokenizer};
use crate::ema::Ema;
use crate::error::Result;
use crate::io::{check_distinct, check_output};
use crate::limits;
use crate::model::Model;
use crate::presets::{Engine, build_model};
use crate::rng::Rng;
use crate::train;
use crate::{bail, interrupt};

use super::report::{Event, Outline, Report};
use super::settings::check_checkpoint_shape;
use super::{Dataset, RawDocs, Settings, bigram_baseline, checkpoint_of, checkpoint_source};

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

/// The fewest documents a periodic validation loss is over, unless `--eval-docs` says.
pub const MIN_EVAL_DOCS: usize = 100;

/// How many validation documents the periodic losses are over (a fixed sample; the last
/// loss is over all) unless `--eval-docs` says: as many as the run trains on between two of
/// them, at least [`MIN_EVAL_DOCS`]. A forward pass costs about a third of a training step,
/// so the periodic evaluations cost about a third of the training they interrupt, whatever
/// the interval, the batch or the dataset.
pub fn default_eval_docs(eval_every: usize, batch_size: usize) -> usize {
    eval_every.saturating_mul(batch_size).max(MIN_EVAL_DOCS)
}

/// The most documents a run holds out unless told otherwise (`--val-max`): makemore's
/// `min(1000, 10%)`. A thousand names score the loss to about ±0.01; a bigger split costs
/// every evaluation more than it tells.
pub const VAL_MAX: usize = 1000;

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
    /// The periodic validation losses are over the first this many validation documents
    /// (`None`: [`default_eval_docs`]); the last one is over all of them.
    pub eval_docs: Option<usize>,
    pub save: Save,
    pub save_every: Option<usize>,
    pub log: Option<PathBuf>,
    /// Worker threads for a step's documents (`None`: all cores).
    pub threads: Option<usize>,
    /// The checkpoint file `--init` or `--resume` read, if any: no output may overwrite it
    /// (but `--out` may continue a resumed run in place).
    pub start_file: Option<PathBuf>,
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

/// `microgpt train`: returns the final validation loss, if there is a validation set. What
/// happens on the way goes to `report` ([`Event`]).
pub fn run_train(
    settings: &Settings,
    start: Start,
    opts: &TrainOptions,
    report: &mut dyn Report,
) -> Result<Option<f64>> {
    check_options(settings, opts)?;
    let (mut model, ema, run, out) = prepare(settings, &start, opts)?;
    report.event(Event::Begin(
        &run.outline(model.as_ref(), out.path.as_deref()),
    ));
    let mut tally = Tally::new(out, ema, run.last - run.first_step);
    let done = train::train_until(
        model.as_mut(),
        &run.data.train,
        &settings.recipe,
        (run.first_step, run.last, settings.total_steps),
        |model, step, loss, tokens| tally.after_step(&run, model, step + 1, loss, tokens, report),
    )?;
    finish(&run, model.as_ref(), tally, done, report)
}

/// The options that [`Settings::validate`] does not cover.
fn check_options(settings: &Settings, opts: &TrainOptions) -> Result<()> {
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
    Ok(())
}

/// A run checked and built, ready for its first step (the model apart, which the loop
/// borrows mutably).
struct Run<'a> {
    settings: &'a Settings,
    opts: &'a TrainOptions,
    data: Dataset,
    /// The periodic validations' documents, if fewer than the split's: the split is drawn
    /// after the seeded shuffle, so they are a random sample, the same one every time.
    val_sample: Option<EncodedDocs>,
    first_step: usize,
    /// The step the run stops after.
    last: usize,
    eval_threads: usize,
    train_threads: usize,
}

/// Every check and every file read before the first step, in the order that reports the
/// cheapest mistakes first: the outputs, the data, the checkpoint's fit, the step range.
/// Returns the model, its average if the recipe keeps one, the run and its output.
#[allow(clippy::type_complexity)]
fn prepare<'a>(
    settings: &'a Settings,
    start: &Start,
    opts: &'a TrainOptions,
) -> Result<(Box<dyn Model>, Option<Ema>, Run<'a>, Output)> {
    let out = Output::new(&opts.save);
    let (source, tok, first_step) = start_point(start, opts)?;
    check_files(out.path.as_deref(), opts, start, &source)?;
    let raw = RawDocs::read(&source)?;
    if let Start::Resume(c) = start {
        raw.check_against(c)?;
        if first_step >= settings.total_steps {
            bail!(
                "the checkpoint has done all {} steps of its schedule",
                settings.total_steps
            );
        }
    }
    let mut rng = Rng::new(settings.rng, settings.recipe.seed);
    let data = raw.split(&mut rng, settings.val_fraction, settings.val_max, tok)?;
    let vocab = data.tok.vocab_size();
    let mut model = build_model(opts.engine, &settings.preset, vocab, &mut rng)?;
    let ema = load_start(model.as_mut(), start, settings.recipe.ema)?;
    // training shares a step's documents, so more threads than documents only wait (one
    // document splits between two threads by parts of the model); an evaluation has
    // thousands to share
    let eval_threads = opts.threads.unwrap_or_else(cores);
    let train_threads = eval_threads.min(settings.recipe.batch_size.max(2));
    model.set_threads(train_threads)?;
    let last = opts.stop_at.min(settings.total_steps);
    if last <= first_step {
        bail!("nothing to do: the run is at step {first_step} and would stop at step {last}");
    }
    let eval_docs = opts
        .eval_docs
        .unwrap_or_else(|| default_eval_docs(opts.eval_every, settings.recipe.batch_size));
    let val_sample = (data.val.len() > eval_docs).then(|| data.val.head(eval_docs));
    let run = Run {
        settings,
        opts,
        data,
        val_sample,
        first_step,
        last,
        eval_threads,
        train_threads,
    };
    Ok((model, ema, run, out))
}

/// The dataset, the vocabulary (a checkpoint's, if the run starts from one) and the steps
/// already done.
fn start_point(start: &Start, opts: &TrainOptions) -> Result<(Source, Option<Tokenizer>, usize)> {
    Ok(match start {
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
    })
}

/// Loads a checkpoint's weights over the fresh ones (`--init`: the weights `eval` uses, the
/// average if the run kept one), and for a resumed run the weights it trained on, Adam's
/// moments and the average. Returns the average of the weights, if `ema > 0`: a fresh one
/// starts at the model's weights.
fn load_start(model: &mut dyn Model, start: &Start, ema: f64) -> Result<Option<Ema>> {
    match start {
        Start::Fresh => {}
        Start::Init(c) => model.set_params_flat(&c.params)?,
        Start::Resume(c) => {
            let Some(adam) = &c.adam else {
                bail!(
                    "the checkpoint has no optimizer state to resume from (use --init to start from its weights)"
                );
            };
            model.set_adam_flat(&adam.m, &adam.v)?;
            return match (&c.raw, ema > 0.0) {
                (Some(raw), true) => {
                    model.set_params_flat(raw)?;
                    Ok(Some(Ema::resume(&*model, ema, c.params.clone())?))
                }
                (None, false) => {
                    model.set_params_flat(&c.params)?;
                    Ok(None)
                }
                (None, true) => bail!(
                    "the checkpoint records `ema` but has no training weights (raw.*) to resume from (use --init to start from its weights)"
                ),
                (Some(_), false) => bail!(
                    "the checkpoint has training weights (raw.*) but records no `ema`: it cannot be resumed exactly"
                ),
            };
        }
    }
    Ok((ema > 0.0).then(|| Ema::new(&*model, ema)))
}

impl Run<'_> {
    fn outline<'b>(&'b self, model: &dyn Model, out: Option<&'b Path>) -> Outline<'b> {
        let (settings, data) = (self.settings, &self.data);
        Outline {
            num_docs: data.num_docs,
            vocab_size: data.tok.vocab_size(),
            num_params: model.num_params(),
            preset: &settings.preset,
            engine: self.opts.engine,
            train_docs: data.train.len(),
            val_docs: data.val.len(),
            batch_size: settings.recipe.batch_size,
            first_step: self.first_step,
            steps: self.last - self.first_step,
            eval_every: self.opts.eval_every,
            val_sample: self.val_sample.as_ref().map(EncodedDocs::len),
            eval_threads: self.eval_threads,
            save: &self.opts.save,
            out,
        }
    }

    /// The validation loss after `step` (of the average of the weights, if the run keeps
    /// one): on the fixed sample, except at the last step.
    fn validate(
        &self,
        model: &mut dyn Model,
        ema: Option<&Ema>,
        step: usize,
        report: &mut dyn Report,
    ) -> Result<f64> {
        let (docs, sample) = match &self.val_sample {
            Some(v) if step != self.last => (v, Some(v.len())),
            _ => (&self.data.val, None),
        };
        // errors here are a thread that cannot be spawned; the pass then runs on fewer
        let _ = model.set_threads(self.eval_threads);
        let (sum, n) = match ema {
            Some(e) => e.with_average(model, |m| train::evaluate(m, docs))?,
            None => train::evaluate(model, docs),
        };
        let _ = model.set_threads(self.train_threads);
        let loss = sum / n as f64;
        let total = self.settings.total_steps;
        report.event(Event::ValLoss {
            step,
            total,
            loss,
            sample,
            ema: ema.map(Ema::decay),
        });
        Ok(loss)
    }

    fn checkpoint(&self, model: &dyn Model, ema: Option<&Ema>, step: usize) -> Checkpoint {
        checkpoint_of(
            model,
            ema,
            self.settings,
            step,
            &self.data,
            self.data.fingerprint.get(),
        )
    }
}

/// Where the checkpoint goes.
struct Output {
    path: Option<PathBuf>,
    /// Whether a file at `path` is ours to replace: the user named it, or we wrote it.
    ours: bool,
}

impl Output {
    fn new(save: &Save) -> Output {
        let path = match save {
            Save::Nothing => None,
            Save::Named(p) => Some(p.clone()),
            Save::Default(p) => Some(free_path(p)),
        };
        let ours = matches!(save, Save::Named(_));
        Output { path, ours }
    }

    /// The path to write now: a default path that someone else's file took during the run
    /// moves on to a free one.
    fn claim(&mut self) -> Option<&Path> {
        let path = self.path.as_mut()?;
        if !self.ours && path.exists() {
            *path = free_path(path);
        }
        self.ours = true;
        Some(path)
    }
}

/// What the loop accumulates.
struct Tally {
    out: Output,
    /// The average of the weights, if the recipe keeps one.
    ema: Option<Ema>,
    /// A failure of the average's evaluation, which stops the run (it cannot happen with
    /// the average's own model, whose parameter count it has).
    failed: Option<crate::error::Error>,
    curve: Curve,
    tokens_done: usize,
    /// Seconds of training, without validation and saves.
    train_time: f64,
    /// When the current stretch of training began.
    lap: Instant,
    final_val: Option<f64>,
}

impl Tally {
    /// Create it right before the first step: the training time is measured from here.
    fn new(out: Output, ema: Option<Ema>, steps: usize) -> Tally {
        Tally {
            out,
            ema,
            failed: None,
            curve: Curve::new(steps),
            tokens_done: 0,
            train_time: 0.0,
            lap: Instant::now(),
            final_val: None,
        }
    }

    /// After step `s` (counted from 1): report, validate, save as the options ask; stop
    /// after a first Ctrl-C or SIGTERM (the end then saves as usual).
    fn after_step(
        &mut self,
        run: &Run,
        model: &mut dyn Model,
        s: usize,
        loss: f64,
        tokens: usize,
        report: &mut dyn Report,
    ) -> ControlFlow<()> {
        let (opts, total) = (run.opts, run.settings.total_steps);
        if let Some(e) = &mut self.ema {
            e.update(model, s - 1);
        }
        self.tokens_done += tokens;
        self.curve.push_train(s, loss);
        report.event(Event::Step {
            done: s - run.first_step,
            loss,
            tokens: self.tokens_done,
        });
        if s == run.first_step + 1 || s == run.last || s.is_multiple_of(opts.print_every) {
            report.event(Event::Loss {
                step: s,
                total,
                loss,
            });
        }
        let eval_now =
            !run.data.val.is_empty() && (s.is_multiple_of(opts.eval_every) || s == run.last);
        let save_now = opts
            .save_every
            .is_some_and(|k| s.is_multiple_of(k) && s != run.last);
        if eval_now || save_now {
            self.train_time += self.lap.elapsed().as_secs_f64();
        }
        if eval_now {
            match run.validate(model, self.ema.as_ref(), s, report) {
                Ok(v) => {
                    self.curve.push_val(s, v);
                    self.final_val = Some(v);
                }
                Err(e) => {
                    self.failed = Some(e);
                    return ControlFlow::Break(());
                }
            }
        }
        if save_now && let Some(out) = self.out.claim() {
            // a disk full for a moment must not cost the run: the next save may succeed
            if let Err(error) = run.checkpoint(model, self.ema.as_ref(), s).save(out) {
                report.event(Event::SaveFailed {
                    step: s,
                    error: &error,
                });
            }
        }
        if eval_now || save_now {
            self.lap = Instant::now();
        }
        if interrupt::requested().is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// After the loop stopped at step `done`: the last checkpoint, the interruption if any, the
/// loss curve.
fn finish(
    run: &Run,
    model: &dyn Model,
    mut tally: Tally,
    done: usize,
    report: &mut dyn Report,
) -> Result<Option<f64>> {
    if let Some(e) = tally.failed.take() {
        return Err(e);
    }
    tally.train_time += tally.lap.elapsed().as_secs_f64();
    let interrupted = interrupt::requested().filter(|_| done < run.last);
    report.event(Event::Trained {
        secs: tally.train_time,
        steps: done - run.first_step,
        tokens: tally.tokens_done,
    });
    let total = run.settings.total_steps;
    let saved = match tally.out.claim() {
        Some(out) => {
            run.checkpoint(model, tally.ema.as_ref(), done).save(out)?;
            report.event(Event::Saved {
                path: out,
                step: done,
                total,
            });
            Some(out)
        }
        None => None,
    };
    if let Some(signal) = interrupted {
        report.event(Event::Interrupted {
            signal,
            step: done,
            total,
            saved,
        });
    }
    if let Some(log) = &run.opts.log {
        write_curve(run, tally.curve, log, report)?;
    }
    Ok(tally.final_val)
}

/// `--log`: the loss curve as CSV, and as SVG beside it, with the bigram baseline's loss as
/// a reference line when there is a validation split.
fn write_curve(run: &Run, mut curve: Curve, log: &Path, report: &mut dyn Report) -> Result<()> {
    if let Some(b) = bigram_baseline(&run.data)? {
        curve.add_reference(format!("bigram baseline {b:.3}"), b);
    }
    curve.write_csv(log)?;
    let svg = log.with_extension("svg");
    let title = format!("{} on {}", run.settings.preset, run.data.source);
    curve.write_svg(&svg, &title)?;
    report.event(Event::WroteCurve {
        csv: log,
        svg: &svg,
    });
    Ok(())
}

/// The number of cores (1 if unknown): the default number of threads.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
