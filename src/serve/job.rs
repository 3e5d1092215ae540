//! A training run of the playground, on its own thread, with the same loop as `microgpt train`
//! ([`train::train_until`]): it reports the training loss, the validation loss, the speed and
//! a few samples as events, keeps a checkpoint of the latest weights for generation, and stops
//! early when asked.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::data::EncodedDocs;
use crate::error::Result;
use crate::model::Model;
use crate::optim::Adam;
use crate::reference::Reference;
use crate::rng::{Rng, RngKind};
use crate::sample::{self, Sampling};
use crate::session::{self, Dataset, Engine, Settings};
use crate::shape::Shape;
use crate::train::{self, Recipe};

use super::{Current, State, lock};

/// Points of the training curve a run sends at most (the loss is averaged over each interval).
const CURVE_POINTS: usize = 400;
/// Validation passes a run makes at most, besides the one at the end (see [`SIDE_SHARE`]).
const VAL_POINTS: usize = 25;
/// The validation loss is the mean over at most this many held-out documents, so that a pass
/// on the dynamic engine stays short.
pub const VAL_DOCS: usize = 500;
/// How often the samples (and the checkpoint that generation reads) are refreshed.
const SAMPLES_EVERY: Duration = Duration::from_secs(1);
/// Validation and samples may take a second in all, and beyond that at most this share of the
/// training time so far; on the dynamic engine, whose forward passes are slow, some planned
/// ones are skipped then (never those of a finished run's last step).
const SIDE_SHARE: f64 = 0.5;
const SIDE_FREE: Duration = Duration::from_secs(1);
/// Samples shown per refresh.
const SAMPLES: usize = 5;

/// Which model a run trains.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelChoice {
    /// A compiled preset (`micro`, `small`) on either engine.
    Preset { name: String, engine: Engine },
    /// Any shape (its `vocab` is set from the data), on the dynamic engine only.
    Custom(Shape),
}

/// A run, checked and ready to start.
pub struct Plan {
    /// The run's number in this server (1, 2, …), in its events.
    pub run: u64,
    /// The dataset's name as the page shows it.
    pub data_name: String,
    pub data: Dataset,
    /// The documents' fingerprint (before the split), as a checkpoint records it.
    pub fingerprint: u64,
    /// The stream after the shuffle and the split, which next draws the initial weights.
    pub rng: Rng,
    pub model: ModelChoice,
    pub settings: Settings,
    /// Why this engine runs this model, in a sentence for the page.
    pub why: String,
}

impl Plan {
    pub fn engine(&self) -> Engine {
        match &self.model {
            ModelChoice::Preset { engine, .. } => *engine,
            ModelChoice::Custom(_) => Engine::Dynamic,
        }
    }
}

/// The settings of a playground run: microgpt's recipe with the page's steps, batch size and
/// learning rate, a tenth of the documents held out when there are at least ten.
pub fn settings(
    preset: &str,
    steps: usize,
    batch_size: usize,
    lr: f64,
    seed: u64,
    docs: usize,
) -> Settings {
    Settings {
        rng: RngKind::Pcg,
        preset: preset.to_string(),
        recipe: Recipe {
            batch_size,
            ..Recipe::microgpt(
                Adam {
                    lr,
                    ..Adam::default()
                },
                seed,
            )
        },
        total_steps: steps,
        val_fraction: if docs >= 10 { 0.1 } else { 0.0 },
        val_max: Some(crate::session::VAL_MAX),
    }
}

/// Runs `plan` to its end or until `stop` is set, reporting through `state`'s hub, and ends
/// the job. Errors and panics become a `failed` event (not `error`, which
/// `EventSource` fires itself when the connection drops): the server goes on.
pub fn run(plan: Plan, state: Arc<State>, stop: Arc<AtomicBool>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_inner(plan, &state, &stop)
    }));
    // the last event and the end of the job under the job's lock: a request that has seen
    // `done` finds no run going on
    let mut job = lock(&state.job);
    match outcome {
        Ok(Ok(done)) => state.hub.publish("done", &done),
        Ok(Err(e)) => state.hub.publish("failed", &json!({ "error": e.0 })),
        Err(_) => state.hub.publish(
            "failed",
            &json!({ "error": "the training thread failed (a bug: please report it)" }),
        ),
    }
    *job = None;
}

fn run_inner(plan: Plan, state: &State, stop: &AtomicBool) -> Result<Value> {
    let engine = plan.engine();
    let Plan {
        run,
        data_name,
        data,
        fingerprint,
        mut rng,
        model: choice,
        settings,
        why,
    } = plan;
    let vocab = data.tok.vocab_size();
    let mut model: Box<dyn Model> = match &choice {
        ModelChoice::Preset { name, engine } => {
            session::build_model(*engine, name, vocab, &mut rng)?
        }
        ModelChoice::Custom(shape) => {
            Box::new(Reference::new(Shape { vocab, ..*shape }, &mut rng)?)
        }
    };
    let batch_size = settings.recipe.batch_size;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    model.set_threads(threads.min(batch_size))?;
    let shape = model.shape();
    let steps = settings.total_steps;
    let val_docs: Vec<String> = data
        .val
        .iter()
        .take(VAL_DOCS)
        .map(|d| data.tok.decode(d))
        .collect();
    let val = EncodedDocs::new(&data.tok, &val_docs)?;
    state.hub.publish(
        "start",
        &json!({
            "run": run,
            "data": data_name,
            "engine": engine.name(),
            "why": why,
            "preset": settings.preset,
            "shape": super::shape_json(&shape),
            "num_params": model.num_params(),
            "train_docs": data.train.len(),
            "val_docs": val.len(),
            "steps": steps,
            "batch_size": batch_size,
            "lr": settings.recipe.adam.lr,
            // the dynamic engine has no threads
            "threads": if engine.is_static() { threads.min(batch_size) } else { 1 },
        }),
    );

    let every = steps.div_ceil(CURVE_POINTS);
    let val_every = steps.div_ceil(VAL_POINTS);
    let (mut loss_sum, mut losses) = (0.0, 0);
    let (mut tokens_done, mut train_time) = (0usize, Duration::ZERO);
    let mut lap = Instant::now();
    let mut last_samples = Instant::now();
    let mut side_time = Duration::ZERO;
    let mut sample_rng = Rng::pcg(settings.recipe.seed ^ 0x5a3b_1e55);
    let mut probs = vec![0.0; vocab];
    let mut ids = Vec::with_capacity(shape.block_size);
    let mut last_val = None;
    let mut failure = None;
    let done = train::train_until(
        model.as_mut(),
        &data.train,
        &settings.recipe,
        (0, steps, steps),
        |model, step, loss, tokens| {
            // the training time is the steps' own: what this callback does (events,
            // validation, samples) is left out
            train_time += lap.elapsed();
            let s = step + 1;
            tokens_done += tokens;
            loss_sum += loss;
            losses += 1;
            let stopping = stop.load(Ordering::Relaxed);
            let last = s == steps || stopping;
            if s % every == 0 || last {
                let t = train_time.as_secs_f64();
                state.hub.publish(
                    "step",
                    &json!({
                        "step": s,
                        "loss": loss_sum / losses as f64,
                        "tokens_per_s": tokens_done as f64 / t.max(1e-9),
                        "train_time": t,
                    }),
                );
                (loss_sum, losses) = (0.0, 0);
            }
            let affordable = side_time < SIDE_FREE
                || side_time.as_secs_f64() < SIDE_SHARE * train_time.as_secs_f64();
            // a run that finishes always ends with a validation pass; a stopped one, only
            // within the budget, so that Stop is quick on the dynamic engine too
            let val_now =
                !val.is_empty() && (s == steps || ((s % val_every == 0 || stopping) && affordable));
            let samples_now = last || (last_samples.elapsed() >= SAMPLES_EVERY && affordable);
            let side = Instant::now();
            if val_now {
                let (sum, n) = train::evaluate(model, &val);
                let v = sum / n as f64;
                last_val = Some(v);
                state.hub.publish("val", &json!({ "step": s, "loss": v }));
            }
            if samples_now {
                let samples: Vec<String> = (0..SAMPLES)
                    .map(|_| {
                        let bos = data.tok.bos();
                        sample::generate(
                            model,
                            bos,
                            &[],
                            &Sampling::MICROGPT,
                            &mut sample_rng,
                            &mut probs,
                            &mut ids,
                        );
                        data.tok.decode(&ids)
                    })
                    .collect();
                state
                    .hub
                    .publish("samples", &json!({ "step": s, "samples": samples }));
                let c = session::checkpoint_of(model, None, &settings, s, &data, fingerprint);
                match Current::new(c, &format!("trained on {data_name}, step {s} of {steps}")) {
                    Ok(c) => state.set_current(c),
                    Err(e) => failure = Some(e),
                }
                last_samples = Instant::now();
            }
            side_time += side.elapsed();
            lap = Instant::now();
            if stopping || failure.is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    if let Some(e) = failure {
        return Err(e);
    }
    // a diverged run (a non-finite loss or weights) ends with its one-line error
    let done = done?;
    let t = train_time.as_secs_f64();
    Ok(json!({
        "run": run,
        "reason": if done < steps { "stopped" } else { "finished" },
        "steps": done,
        "engine": engine.name(),
        "train_time": t,
        "tokens_per_s": tokens_done as f64 / t.max(1e-9),
        "val_loss": last_val,
    }))
}
