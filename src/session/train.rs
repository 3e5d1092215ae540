//! The `train` run: its options, the checks before any work, the loop with its validation and
//! checkpoints, and the end (the last save, the loss curve).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checkpoint::Checkpoint;
use crate::curve::Curve;
use crate::data::Source;
use crate::error::Result;
use crate::io::{check_distinct, check_output};
use crate::limits;
use crate::model::Model;
use crate::presets::{Engine, build_model};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::train;
use crate::{bail, console, interrupt, say};

use super::settings::check_checkpoint_shape;
use super::{RawDocs, Settings, bigram_baseline, checkpoint_of, checkpoint_source};

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
