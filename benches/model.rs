//! The whole model, static engine vs dynamic (the reference on the autograd tape), side by side.
//!
//! Every group has a `static`, a `static_f32` and a `dynamic` entry on the same inputs and the
//! same weights: the static model is drawn from the binary's stream (`Rng::pcg(42)` after the
//! shuffle of names.txt), the f32 one from the same stream (the same draws, rounded), and the
//! dynamic one is built from the f64 model's `params_flat()`. Setup checks that both
//! compute the same loss before anything is timed. Throughput is in positions (tokens
//! processed), so criterion reports tokens/s.
//!
//! Groups:
//! - `forward_token`: inference with the KV cache, a whole block (16 positions, `pos` 0..16,
//!   one `forward_token` call each) of the longest name;
//! - `forward_backward_typical`: `loss_and_grad` on a name of the median length of names.txt
//!   (6 letters, 7 positions);
//! - `forward_backward_full_block`: `loss_and_grad` on a 15-letter name (16 positions);
//! - `train_step`: `train_step` (forward, backward, Adam) on the median-length name;
//! - `train_run`: microgpt.py's whole run, 1,000 steps through the shuffled names with the
//!   learning-rate decay, through the loop the binary runs (`microgpt::train::train`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use microgpt::data::{EncodedDocs, Tokenizer};
use microgpt::model::Model;
use microgpt::optim::{Adam, AdamStep};
use microgpt::presets::{Micro, Micro32};
use microgpt::reference::Reference;
use microgpt::rng::Rng;
use microgpt::shape::Shape;
use microgpt::train::{Recipe, positions, train};

/// microgpt.py's run: seed 42, 1,000 steps, one document per step.
const SEED: u64 = 42;
const STEPS: usize = 1000;

/// Everything both engines are given: the data as the binary sees it and the initial weights.
struct Setup {
    docs: EncodedDocs,
    vocab: usize,
    /// The model's shape, with the real vocabulary.
    shape: Shape,
    /// The stream right after the shuffle: a fresh static model drawn from a clone of it has
    /// the binary's initial weights.
    rng: Rng,
    /// Those weights, flat (`Shape::tensors` layout).
    init: Vec<f64>,
    /// `[BOS] name [BOS]` of the first name (in shuffled order) of the median length.
    typical: Vec<usize>,
    /// `[BOS] name [BOS]` of the first name at least `block_size − 1` letters long.
    full_block: Vec<usize>,
    /// The Adam scalars of steps `0..STEPS`.
    adam: Vec<AdamStep>,
}

impl Setup {
    /// Reads names.txt, shuffles it with `Rng::pcg(42)` and draws the weights, as `microgpt`
    /// (no arguments) does.
    fn new() -> Setup {
        // the built-in names.txt, as the binary reads it by default
        let mut names = microgpt::data::names();
        let mut rng = Rng::pcg(SEED);
        rng.shuffle(&mut names);
        let tok = Tokenizer::from_docs(&names);
        let docs = EncodedDocs::new(&tok, &names).expect("every name encodes");
        let vocab = tok.vocab_size();
        let first = Micro::new(vocab, &mut rng.clone()).expect("names fit the micro model");
        let (shape, init) = (first.shape(), first.params_flat());
        let block = shape.block_size;

        let mut lengths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
        lengths.sort_unstable();
        let median = lengths[lengths.len() / 2];
        let pick = |pred: &dyn Fn(usize) -> bool| {
            let name = names
                .iter()
                .find(|n| pred(n.chars().count()))
                .expect("such a name");
            (name.clone(), tok.encode_doc(name).unwrap())
        };
        let (typical_name, typical) = pick(&|n| n == median);
        let (full_name, full_block) = pick(&|n| n + 1 >= block);
        eprintln!(
            "names.txt: {} names, vocab {vocab}; typical {typical_name:?} ({} positions), full block {full_name:?} ({} positions)",
            names.len(),
            positions(&typical, block),
            positions(&full_block, block),
        );

        let adam = Adam::default();
        let s = Setup {
            docs,
            vocab,
            shape,
            rng,
            init,
            typical,
            full_block,
            adam: (0..STEPS).map(|k| adam.at(k, STEPS)).collect(),
        };
        // identical inputs and weights: the engines agree on the loss and every gradient (to
        // rounding: the static sums are reassociated) before anything is timed
        let (mut st, mut dy) = (s.static_model(), s.dynamic_model());
        let (ls, ld) = (st.loss_and_grad(&s.typical), dy.loss_and_grad(&s.typical));
        let dg = st
            .grads_flat()
            .iter()
            .zip(dy.grads())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            (ls - ld).abs() < 1e-12 && dg < 1e-12,
            "the engines disagree: static loss {ls}, dynamic {ld}, largest gradient difference {dg:e}"
        );
        s
    }

    /// A fresh static model with the binary's initial weights (names.txt's 27 tokens are the
    /// bucket the binary builds too).
    fn static_model(&self) -> Micro {
        let m = Micro::new(self.vocab, &mut self.rng.clone()).unwrap();
        debug_assert_eq!(m.params_flat(), self.init);
        m
    }

    /// [`Setup::static_model`] in f32 (the same draws, rounded).
    fn static_f32(&self) -> Micro32 {
        Micro32::new(self.vocab, &mut self.rng.clone()).unwrap()
    }

    /// A fresh dynamic model with the same weights.
    fn dynamic_model(&self) -> Reference {
        Reference::from_params(self.shape, &self.init).unwrap()
    }

    fn block_size(&self) -> usize {
        self.shape.block_size
    }
}

// ------------------------------------------------------------------------------------------
// forward only

fn forward_token(c: &mut Criterion, s: &Setup) {
    let seq: Vec<usize> = s.full_block[..s.block_size()].to_vec();
    let mut g = c.benchmark_group("forward_token");
    g.throughput(Throughput::Elements(seq.len() as u64));
    let mut st = s.static_model();
    g.bench_function("static", |b| {
        b.iter(|| {
            for (pos, &token) in black_box(&seq).iter().enumerate() {
                black_box(st.forward_token(token, pos));
            }
        })
    });
    let mut st32 = s.static_f32();
    g.bench_function("static_f32", |b| {
        b.iter(|| {
            for (pos, &token) in black_box(&seq).iter().enumerate() {
                black_box(st32.forward_token(token, pos));
            }
        })
    });
    let mut dy = s.dynamic_model();
    g.bench_function("dynamic", |b| {
        b.iter(|| {
            for (pos, &token) in black_box(&seq).iter().enumerate() {
                black_box(dy.forward_token(token, pos));
            }
        })
    });
    g.finish();
}

// ------------------------------------------------------------------------------------------
// forward + backward of one document

fn forward_backward(c: &mut Criterion, s: &Setup, group: &str, doc: &[usize]) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(positions(doc, s.block_size()) as u64));
    let mut st = s.static_model();
    g.bench_function("static", |b| {
        b.iter(|| black_box(st.loss_and_grad(black_box(doc))))
    });
    let mut st32 = s.static_f32();
    g.bench_function("static_f32", |b| {
        b.iter(|| black_box(st32.loss_and_grad(black_box(doc))))
    });
    let mut dy = s.dynamic_model();
    g.bench_function("dynamic", |b| {
        b.iter(|| black_box(dy.loss_and_grad(black_box(doc))))
    });
    g.finish();
}

// ------------------------------------------------------------------------------------------
// one training step

/// Times `iters` calls of `step(model, k)` in runs of at most `STEPS`, `k` counting the steps
/// of the run; before each run (untimed) the model gets its initial weights and zero Adam
/// moments back. A model trained on one name for ever would drift (and its gradients towards
/// subnormal numbers); this keeps every timed step a step of a real 1,000-step schedule.
fn timed_steps<M>(
    iters: u64,
    model: &mut M,
    reset: impl Fn(&mut M),
    mut step: impl FnMut(&mut M, usize),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        reset(model);
        let run = (iters - done).min(STEPS as u64) as usize;
        let start = Instant::now();
        for k in 0..run {
            step(model, k);
        }
        total += start.elapsed();
        done += run as u64;
    }
    total
}

fn train_step(c: &mut Criterion, s: &Setup) {
    let doc = &s.typical[..];
    let zeros = vec![0.0; s.init.len()];
    let mut g = c.benchmark_group("train_step");
    g.throughput(Throughput::Elements(positions(doc, s.block_size()) as u64));
    let mut st = s.static_model();
    g.bench_function("static", |b| {
        b.iter_custom(|iters| {
            timed_steps(
                iters,
                &mut st,
                |m| {
                    m.set_params_flat(&s.init).unwrap();
                    m.set_adam_flat(&zeros, &zeros).unwrap();
                },
                |m, k| {
                    black_box(m.train_step(black_box(doc), &s.adam[k]));
                },
            )
        })
    });
    let mut st32 = s.static_f32();
    g.bench_function("static_f32", |b| {
        b.iter_custom(|iters| {
            timed_steps(
                iters,
                &mut st32,
                |m| {
                    m.set_params_flat(&s.init).unwrap();
                    m.set_adam_flat(&zeros, &zeros).unwrap();
                },
                |m, k| {
                    black_box(m.train_step(black_box(doc), &s.adam[k]));
                },
            )
        })
    });
    let mut dy = s.dynamic_model();
    g.bench_function("dynamic", |b| {
        b.iter_custom(|iters| {
            timed_steps(
                iters,
                &mut dy,
                |m| {
                    m.set_params(&s.init);
                    m.set_adam_moments(&zeros, &zeros).unwrap();
                },
                |m, k| {
                    black_box(m.train_step(black_box(doc), &s.adam[k]));
                },
            )
        })
    });
    g.finish();
}

// ------------------------------------------------------------------------------------------
// microgpt.py's whole run

/// `STEPS` steps of one document each, through the binary's training loop; the model is
/// returned so that it is dropped outside the timing.
fn run<M: Model>(mut model: M, docs: &EncodedDocs) -> M {
    train(
        &mut model,
        black_box(docs),
        &Recipe::microgpt(Adam::default(), 42),
        (0, STEPS, STEPS),
        |_, _, loss, _| {
            black_box(loss);
        },
    )
    .expect("a finite run");
    model
}

fn train_run(c: &mut Criterion, s: &Setup) {
    let block = s.block_size();
    let tokens: usize = (0..STEPS)
        .map(|k| positions(s.docs.get(k % s.docs.len()), block))
        .sum();
    let mut g = c.benchmark_group("train_run");
    g.throughput(Throughput::Elements(tokens as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10);
    // a fresh model per run, built (drawn, allocated) outside the timing
    g.bench_function("static", |b| {
        b.iter_batched(
            || s.static_model(),
            |m| run(m, &s.docs),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("static_f32", |b| {
        b.iter_batched(
            || s.static_f32(),
            |m| run(m, &s.docs),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("dynamic", |b| {
        b.iter_batched(
            || s.dynamic_model(),
            |m| run(m, &s.docs),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let s = Setup::new();
    forward_token(c, &s);
    forward_backward(c, &s, "forward_backward_typical", &s.typical);
    forward_backward(c, &s, "forward_backward_full_block", &s.full_block);
    train_step(c, &s);
    train_run(c, &s);
}

criterion_group!(model, benches);
criterion_main!(model);
