//! The compiled presets: `small`'s size, its buckets, its gradient against the reference, a
//! few batched training steps on a test thread's 2 MiB stack, and that every preset builds on
//! both engines with the shape `shape::PRESETS` gives it, trains, evaluates and samples.
//!
//! The throughput of each preset (tokens/s at 1 and at 2 threads) is an ignored test:
//!
//! ```text
//! cargo test --release --test presets -- --ignored --nocapture
//! ```

use std::time::Instant;

mod common;
use common::names;

use microgpt::data::EncodedDocs;
use microgpt::model::StepInputs;
use microgpt::optim::Adam;
use microgpt::presets::{self, BUCKETS, Small};
use microgpt::reference::Reference;
use microgpt::rng::Rng;
use microgpt::session::{Engine, build_model};
use microgpt::shape::{self, PRESETS, Shape};

#[test]
fn small_on_names_has_201_088_parameters() {
    let shape = shape::preset_shape("small", 27).unwrap();
    // 27·64 (wte) + 16·64 (wpe) + 27·64 (lm_head) = 4,480
    // per layer 4·64·64 (attention) + 2·256·64 (MLP) = 16,384 + 32,768 = 49,152; 4 layers 196,608
    assert_eq!(
        shape.num_params(),
        1728 + 1024 + 1728 + 4 * (16_384 + 32_768)
    );
    assert_eq!(shape.num_params(), 201_088);
    let m = Small::new(27, &mut Rng::pcg(1)).unwrap();
    assert_eq!(m.shape(), shape);
    assert_eq!(m.num_params(), 201_088);
    assert_eq!(shape.preset(), Some("small"));
}

#[test]
fn small_picks_the_smallest_bucket_that_fits() {
    for (vocab, bucket) in [(1, 27), (27, 27), (28, 64), (64, 64), (65, 128), (256, 256)] {
        assert_eq!(presets::bucket(vocab), Some(bucket));
        let m = presets::static_model("small", vocab, &mut Rng::pcg(1)).unwrap();
        assert_eq!(m.shape(), shape::preset_shape("small", vocab).unwrap());
    }
    assert_eq!(presets::bucket(257), None);
    let err = presets::static_model("small", 257, &mut Rng::pcg(1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("257") && err.contains("256"), "{err}");
    assert_eq!(BUCKETS, [27, 64, 128, 256]);
}

/// The whole small model against the reference on one short document: the same initial
/// weights, loss and gradient of every tensor, to rounding (normwise relative ≤ 1e-10 per
/// tensor, as tests/static_reference.rs; ~1e-15 is seen).
#[test]
fn small_gradient_equals_the_reference() {
    let mut st = Small::new(27, &mut Rng::pcg(9)).unwrap();
    let shape = st.shape();
    let mut rf = Reference::new(shape, &mut Rng::pcg(9)).unwrap();
    assert_eq!(st.params_flat(), rf.params());
    // "emma" and "ava": two documents, one batch
    let (emma, ava) = ([26, 4, 12, 12, 0, 26], [26, 0, 21, 0, 26]);
    let batch: [&[usize]; 2] = [&emma, &ava];
    let ls = st.loss_and_grad_batch(&batch, &StepInputs::MICROGPT);
    let lr = rf.loss_and_grad_batch(&batch, &StepInputs::MICROGPT);
    assert!((ls - lr).abs() <= 1e-10 * lr, "loss {ls} vs reference {lr}");
    let (g, r) = (st.grads_flat(), rf.grads());
    let mut off = 0;
    let mut report = Vec::new();
    for (name, rows, cols) in shape.tensors() {
        let n = rows * cols;
        let diff = (g[off..off + n].iter().zip(&r[off..off + n]))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let scale = r[off..off + n].iter().map(|b| b.abs()).fold(0.0, f64::max);
        report.push((name, diff, diff / scale));
        off += n;
    }
    let text = report
        .iter()
        .map(|(n, d, r)| format!("{n}: max |Δ| {d:.2e} (relative {r:.2e})"))
        .collect::<Vec<_>>()
        .join(", ");
    println!("small, loss {ls:.6}: {text}");
    assert!(report.iter().all(|(_, _, r)| *r <= 1e-10), "{text}");
}

#[test]
fn small_trains_a_few_batched_steps_on_a_2_mib_stack() {
    let run = || {
        let mut rng = Rng::pcg(42);
        let (tok, docs) = names(&mut rng);
        let mut m = Small::new(tok.vocab_size(), &mut rng).unwrap();
        m.set_threads(2).unwrap();
        let adam = Adam {
            lr: 1e-3,
            ..Adam::default()
        };
        let batch: Vec<&[usize]> = (0..16).map(|i| docs.get(i)).collect();
        let first = m.loss(batch[0]);
        // near ln 27 = 3.30 at the start: the weights are small, the output not far from
        // uniform (3.65 here: four residual blocks and no final norm spread the logits)
        assert!((first - 27f64.ln()).abs() < 0.5, "initial loss {first}");
        let losses: Vec<f64> = (0..4)
            .map(|s| m.train_batch(&batch, &adam.at(s, 4), &StepInputs::MICROGPT))
            .collect();
        let after = m.loss_and_grad_batch(&batch, &StepInputs::MICROGPT);
        println!("small, 16 names: losses {losses:.4?} then {after:.4}");
        assert!(losses.iter().all(|l| l.is_finite()));
        assert!(after < losses[0], "4 steps on the batch lower its loss");
    };
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn every_preset_builds_trains_evaluates_and_samples_on_both_engines() {
    let doc = [26, 4, 12, 12, 0, 26];
    for (name, _) in PRESETS {
        for engine in [Engine::Static, Engine::Dynamic] {
            let mut m = build_model(engine, name, 27, &mut Rng::pcg(4)).unwrap();
            let expected = shape::preset_shape(name, 27).unwrap();
            assert_eq!(m.shape(), expected, "{name} on {engine:?}");
            assert_eq!(m.preset(), name);
            m.set_threads(2).unwrap();
            let s = Adam::default().at(0, 10);
            let l = m.train_batch(&[&doc, &doc[..3]], &s, &StepInputs::MICROGPT);
            let v = m.loss(&doc);
            assert!(l.is_finite() && v.is_finite(), "{name} on {engine:?}");
            // the forward-only loss is the one the sampling forward gives, position by position
            let mut nll = 0.0;
            for pos in 0..doc.len() - 1 {
                let logits = m.forward_token(doc[pos], pos);
                let max = logits.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                let z: f64 = logits.iter().map(|&x| (x - max).exp()).sum();
                nll -= logits[doc[pos + 1]] - max - z.ln();
            }
            let nll = nll / (doc.len() - 1) as f64;
            assert!(
                (nll - v).abs() < 1e-12,
                "{name} on {engine:?}: loss {v} but the token-by-token forward gives {nll}"
            );
        }
        // the engines start from the same weights
        let a = build_model(Engine::Static, name, 27, &mut Rng::pcg(4)).unwrap();
        let b = build_model(Engine::Dynamic, name, 27, &mut Rng::pcg(4)).unwrap();
        assert_eq!(a.params_flat(), b.params_flat(), "{name}");
    }
}

/// Tokens (positions trained on) per second of training steps of `batch_size` names, best of
/// three runs of `steps` steps after a warm-up.
fn tokens_per_second(
    mut step: impl FnMut(&[&[usize]], usize) -> f64,
    docs: &EncodedDocs,
    batch_size: usize,
    steps: usize,
) -> f64 {
    let mut batch: Vec<&[usize]> = Vec::with_capacity(batch_size);
    let mut best: f64 = 0.0;
    let mut s = 0;
    for run in 0..4 {
        let mut tokens = 0;
        let t = Instant::now();
        for _ in 0..steps {
            batch.clear();
            batch.extend((0..batch_size).map(|i| docs.get((s * batch_size + i) % docs.len())));
            tokens += batch.iter().map(|d| (d.len() - 1).min(16)).sum::<usize>();
            step(&batch, s);
            s += 1;
        }
        // the first run warms up
        if run > 0 {
            best = best.max(tokens as f64 / t.elapsed().as_secs_f64());
        }
    }
    best
}

/// Training and forward-only throughput of one preset at 1 and 2 threads.
macro_rules! throughput {
    ($name:literal, $steps:expr, $docs:expr, $rng:expr, $batch_size:expr) => {{
        let adam = Adam::default();
        let mut train = Vec::new();
        let mut eval = Vec::new();
        for threads in [1, 2] {
            let mut m = presets::static_model($name, $docs.0.vocab_size(), &mut $rng.clone()).unwrap();
            m.set_threads(threads).unwrap();
            let total = 4 * $steps;
            train.push(tokens_per_second(
                |b, s| m.train_batch(b, &adam.at(s, total), &StepInputs::MICROGPT),
                &$docs.1,
                $batch_size,
                $steps,
            ));
            // validation: forward only, 256 documents per call
            let mut out = vec![0.0; 256];
            eval.push(tokens_per_second(
                |b, _| {
                    m.losses(b, &mut out);
                    out[0]
                },
                &$docs.1,
                256,
                $steps / 4 + 1,
            ));
        }
        let mut m = presets::static_model($name, $docs.0.vocab_size(), &mut $rng.clone()).unwrap();
        let one_by_one = tokens_per_second(
            |b, _| b.iter().map(|d| m.loss(d)).sum(),
            &$docs.1,
            256,
            $steps / 4 + 1,
        );
        println!(
            "{:6} train: 1 thread {:8.0}  2 threads {:8.0}  ({:.2}x) | forward only: 1 thread {:8.0}  2 threads {:8.0}  ({:.2}x), one document at a time {:8.0}",
            $name,
            train[0],
            train[1],
            train[1] / train[0],
            eval[0],
            eval[1],
            eval[1] / eval[0],
            one_by_one,
        );
    }};
}

#[test]
#[ignore = "timing, run with --ignored --nocapture"]
fn throughput_of_each_preset_at_one_and_two_threads() {
    let mut rng = Rng::pcg(42);
    let docs = names(&mut rng);
    let batch_size = 32;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    println!("tokens (positions) per second; training in batches of {batch_size} names:");
    throughput!("micro", 200, docs, rng, batch_size);
    throughput!("small", 20, docs, rng, batch_size);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
}

/// A `Shape` literal is what the session builds for `small`.
#[test]
fn the_small_preset_entry_matches_the_alias() {
    let p = PRESETS.iter().find(|(n, _)| *n == "small").unwrap().1;
    let s = Small::new(27, &mut Rng::pcg(0)).unwrap().shape();
    assert_eq!(Shape { vocab: 0, ..s }, p);
}
