//! Minibatches on the static engine: the step's gradient is the mean of the documents'
//! gradients (against the reference, which builds one graph over the batch, and against the
//! static engine's own single-document gradients); the result does not depend on the number of
//! threads, to the bit; batched training follows the reference step by step; and the worker
//! threads come and go with the model.
//!
//! Tolerance against the reference: both engines compute exact derivatives in f64 in different
//! summation orders (the static one with fused multiply-adds), so they differ by rounding only.
//! Per tensor the normwise relative difference `max|static − reference| / max|reference|` must
//! be ≤ 1e-10; what is seen is ~1e-15.

mod common;

use std::sync::Mutex;

use common::{assert_tensors_close, max_rel};
use microgpt::gpt::{Gpt, num_groups};
use microgpt::model::StepInputs;
use microgpt::optim::Adam;
use microgpt::reference::Reference;
use microgpt::rng::Rng;

/// A small shape with everything different from microgpt's: V 11, T 8, E 8, H 2, D 4, F 32,
/// L 2.
type Tiny = Gpt<11, 8, 8, 2, 4, 32, 2>;
const _: () = Tiny::CHECK;
const BOS: usize = 10;

const REL: f64 = 1e-10;

/// The tests that count worker threads must not overlap with others that start some.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `[BOS] ids [BOS]` with `len` ids cycling through `0..BOS` from `start`.
fn doc(len: usize, start: usize) -> Vec<usize> {
    std::iter::once(BOS)
        .chain((0..len).map(|i| (start + 3 * i) % BOS))
        .chain(std::iter::once(BOS))
        .collect()
}

/// Documents of every kind: one character, typical, exactly `T` positions, longer than `T`
/// (truncated).
fn docs(n: usize) -> Vec<Vec<usize>> {
    (0..n).map(|i| doc([1, 4, 7, 12, 3, 5][i % 6], i)).collect()
}

#[test]
fn batch_gradient_is_the_mean_of_the_documents_gradients() {
    let _s = serial();
    let docs = docs(9);
    let batch: Vec<&[usize]> = docs.iter().map(Vec::as_slice).collect();
    let rows: usize = docs.iter().map(|d| (d.len() - 1).min(8)).sum();
    // several groups, so the sum over group gradients is exercised
    assert!(num_groups(batch.len(), rows) >= 4);
    for threads in [1, 2] {
        let mut st = Tiny::new(BOS + 1, &mut Rng::pcg(5)).unwrap();
        st.set_threads(threads).unwrap();
        let shape = st.shape();
        let mut rf = Reference::new(shape, &mut Rng::pcg(5)).unwrap();
        assert_eq!(st.params_flat(), rf.params(), "initial weights differ");

        // against the reference's one graph over the batch
        let ls = st.loss_and_grad_batch(&batch, &StepInputs::MICROGPT);
        let lr = rf.loss_and_grad_batch(&batch, &StepInputs::MICROGPT);
        assert!(
            (ls - lr).abs() <= REL * lr.abs(),
            "batch loss {ls} vs reference {lr}"
        );
        let g_batch = st.grads_flat();
        assert_tensors_close(
            &format!("{threads} thread(s), batch of 9 vs reference"),
            &shape,
            &g_batch,
            rf.grads(),
            REL,
        );

        // against the mean of the static engine's own single-document gradients
        let mut mean = vec![0.0; g_batch.len()];
        let mut loss = 0.0;
        for d in &batch {
            loss += st.loss_and_grad(d);
            for (m, g) in mean.iter_mut().zip(st.grads_flat()) {
                *m += g;
            }
        }
        for m in &mut mean {
            *m /= batch.len() as f64;
        }
        loss /= batch.len() as f64;
        assert!(
            (ls - loss).abs() <= REL * loss,
            "batch loss {ls} vs mean {loss}"
        );
        assert_tensors_close(
            &format!("{threads} thread(s), batch of 9 vs mean of 9 single documents"),
            &shape,
            &g_batch,
            &mean,
            REL,
        );
    }
}

#[test]
fn batched_training_follows_the_reference() {
    let _s = serial();
    let docs = docs(12);
    let mut st = Tiny::new(BOS + 1, &mut Rng::pcg(8)).unwrap();
    st.set_threads(2).unwrap();
    let shape = st.shape();
    let mut rf = Reference::new(shape, &mut Rng::pcg(8)).unwrap();
    let adam = Adam {
        weight_decay: 0.1,
        ..Adam::default()
    };
    for step in 0..6 {
        // batches of 5 documents, cycling through the 12
        let batch: Vec<&[usize]> = (0..5)
            .map(|i| docs[(step * 5 + i) % docs.len()].as_slice())
            .collect();
        let s = adam.at(step, 6);
        let ls = st.train_batch(&batch, &s, &StepInputs::MICROGPT);
        let lr = rf.train_batch(&batch, &s, &StepInputs::MICROGPT);
        assert!(
            (ls - lr).abs() <= 1e-9,
            "step {step}: static loss {ls} vs reference {lr}"
        );
    }
    assert_tensors_close(
        "parameters after 6 steps of 5 documents",
        &shape,
        &st.params_flat(),
        rf.params(),
        REL,
    );
}

/// Parameters, Adam's moments and losses after `steps` batched steps on `threads` threads.
fn train(threads: usize, steps: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let docs = docs(23);
    let mut m = Tiny::new(BOS + 1, &mut Rng::pcg(3)).unwrap();
    m.set_threads(threads).unwrap();
    assert_eq!(m.threads(), threads);
    let adam = Adam::default();
    let mut losses = Vec::new();
    for step in 0..steps {
        // batch sizes 1, 7 and 16: one group, a few, many
        let b = [1, 7, 16][step % 3];
        let batch: Vec<&[usize]> = (0..b)
            .map(|i| docs[(step * 7 + i) % docs.len()].as_slice())
            .collect();
        losses.push(m.train_batch(&batch, &adam.at(step, steps), &StepInputs::MICROGPT));
    }
    let (am, av) = m.adam_flat();
    (m.params_flat(), am, av, losses)
}

#[test]
fn the_thread_count_does_not_change_a_single_bit() {
    let _s = serial();
    let one = train(1, 9);
    for threads in [2, 3] {
        let other = train(threads, 9);
        assert_eq!(one.3, other.3, "losses differ at {threads} threads");
        assert!(one.0 == other.0, "parameters differ at {threads} threads");
        assert!(one.1 == other.1, "Adam's m differs at {threads} threads");
        assert!(one.2 == other.2, "Adam's v differs at {threads} threads");
    }
    assert!(one.3.iter().all(|l| l.is_finite()));
}

/// The worker threads of this process (named `microgpt-worker-N`; the kernel keeps 15 bytes
/// of a name). A new thread names itself once it runs, so a count that is still short is read
/// again for up to a second.
fn workers(expected: usize) -> usize {
    let count = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("microgpt-worke"))
            .count()
    };
    let mut n = count();
    for _ in 0..100 {
        if n >= expected {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        n = count();
    }
    n
}

#[test]
fn workers_start_with_set_threads_and_stop_with_the_model() {
    let _s = serial();
    if !std::path::Path::new("/proc/self/task").is_dir() {
        eprintln!("no /proc: skipped");
        return;
    }
    assert_eq!(workers(0), 0);
    let mut m = Tiny::new(BOS + 1, &mut Rng::pcg(1)).unwrap();
    let docs = docs(4);
    let batch: Vec<&[usize]> = docs.iter().map(Vec::as_slice).collect();
    let s = Adam::default().at(0, 10);
    // one thread: nothing is spawned, now or by a step
    m.set_threads(1).unwrap();
    m.train_batch(&batch, &s, &StepInputs::MICROGPT);
    assert_eq!((m.threads(), workers(0)), (1, 0));
    m.set_threads(3).unwrap();
    assert_eq!((m.threads(), workers(2)), (3, 2));
    m.train_batch(&batch, &s, &StepInputs::MICROGPT);
    // fewer: the old crew is joined before the new one starts
    m.set_threads(2).unwrap();
    assert_eq!((m.threads(), workers(1)), (2, 1));
    m.train_batch(&batch, &s, &StepInputs::MICROGPT);
    // back to one: the crew stays, parked, and serves the next two-thread pass (a run that
    // validates on every core between single-thread steps spawns it once)
    m.set_threads(1).unwrap();
    assert_eq!((m.threads(), workers(1)), (1, 1));
    m.train_batch(&batch, &s, &StepInputs::MICROGPT);
    m.set_threads(2).unwrap();
    assert_eq!((m.threads(), workers(1)), (2, 1));
    // dropping the model stops and joins them
    drop(m);
    assert_eq!(workers(0), 0);
    assert!(
        Tiny::new(BOS + 1, &mut Rng::pcg(1))
            .unwrap()
            .set_threads(0)
            .is_err()
    );
}

#[test]
fn a_bad_document_panics_on_the_caller_and_the_model_still_drops() {
    let _s = serial();
    let mut m = Tiny::new(BOS + 1, &mut Rng::pcg(1)).unwrap();
    m.set_threads(2).unwrap();
    let good = doc(3, 0);
    let bad = vec![BOS, 11, BOS]; // token 11 is not in the vocabulary of 11
    let s = Adam::default().at(0, 10);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        m.train_batch(&[&good, &bad], &s, &StepInputs::MICROGPT);
    }));
    assert!(r.is_err());
    // the workers were never woken: the model still works, and drops without hanging
    assert!(
        m.train_batch(&[&good, &good], &s, &StepInputs::MICROGPT)
            .is_finite()
    );
    drop(m);
}

#[test]
fn batched_forward_only_losses_equal_the_single_document_loss() {
    let _s = serial();
    let docs = docs(14);
    let batch: Vec<&[usize]> = docs.iter().map(Vec::as_slice).collect();
    let mut m = Tiny::new(BOS + 1, &mut Rng::pcg(6)).unwrap();
    let single: Vec<f64> = batch.iter().map(|d| m.loss(d)).collect();
    m.loss_and_grad_batch(&batch[..3], &StepInputs::MICROGPT);
    let grads = m.grads_flat();
    for threads in [1, 2, 3] {
        m.set_threads(threads).unwrap();
        let mut out = vec![0.0; batch.len()];
        m.losses(&batch, &mut out);
        // the same rows through the same ops: equal to the bit, whatever the grouping
        assert_eq!(out, single, "{threads} thread(s)");
        assert!(m.grads_flat() == grads, "forward only leaves the gradient");
    }
}

#[test]
fn any_batch_fits_the_preallocated_buffers() {
    // the model asserts, on the caller, that every group of a batch fits its threads'
    // buffers; batches of every size and mix of lengths (forward only, which groups alike)
    let _s = serial();
    let mut m = Tiny::new(BOS + 1, &mut Rng::pcg(2)).unwrap();
    m.set_threads(2).unwrap();
    let mut rng = Rng::pcg(99);
    let pool: Vec<Vec<usize>> = (0..300).map(|i| doc(1 + rng.randbelow(14), i)).collect();
    for b in (1..40).chain([64, 100, 199, 300]) {
        let start = rng.randbelow(pool.len());
        let batch: Vec<&[usize]> = (0..b)
            .map(|i| pool[(start + i) % pool.len()].as_slice())
            .collect();
        let mut out = vec![0.0; b];
        m.losses(&batch, &mut out);
        assert!(out.iter().all(|l| l.is_finite()));
    }
    // and all-short, all-long
    for len in [1, 7, 8, 20] {
        let d = doc(len, 1);
        let batch = vec![d.as_slice(); 150];
        m.losses(&batch, &mut [0.0; 150]);
    }
}

#[test]
fn token_mean_gradient_equals_the_reference_and_weighs_tokens_alike() {
    let _s = serial();
    let docs = docs(9);
    let batch: Vec<&[usize]> = docs.iter().map(Vec::as_slice).collect();
    let positions: Vec<usize> = docs.iter().map(|d| (d.len() - 1).min(8)).collect();
    let total: usize = positions.iter().sum();
    for threads in [1, 2] {
        let mut st = Tiny::new(BOS + 1, &mut Rng::pcg(4)).unwrap();
        st.set_threads(threads).unwrap();
        let shape = st.shape();
        let mut rf = Reference::new(shape, &mut Rng::pcg(4)).unwrap();
        let token_mean = StepInputs {
            token_mean: true,
            ..StepInputs::MICROGPT
        };
        let ls = st.loss_and_grad_batch(&batch, &token_mean);
        let lr = rf.loss_and_grad_batch(&batch, &token_mean);
        assert!((ls - lr).abs() <= REL * lr, "loss {ls} vs reference {lr}");
        assert_tensors_close(
            &format!("token mean, {threads} thread(s)"),
            &shape,
            &st.grads_flat(),
            rf.grads(),
            REL,
        );
        // the loss is Σ cross-entropies / N: each document's mean weighted by n/N, which
        // differs from the mean of the means on documents of different lengths
        let weighted: f64 = (batch.iter().zip(&positions))
            .map(|(d, &n)| st.loss(d) * n as f64)
            .sum::<f64>()
            / total as f64;
        assert!((ls - weighted).abs() <= REL * ls, "{ls} vs {weighted}");
        // (at initial weights every token's loss is near ln 11, so the two means are close;
        // the gradients, which weigh the documents differently, are not)
        let g_token = st.grads_flat();
        let per_doc = st.loss_and_grad_batch(&batch, &StepInputs::MICROGPT);
        let worst = max_rel(&shape, &g_token, &st.grads_flat());
        println!("mean of document means {per_doc:.6}, token mean {ls:.6}; gradients {worst:.2e}");
        assert!((per_doc - ls).abs() > 1e-4, "{per_doc} vs {ls}");
        assert!(worst > 1e-2, "gradients differ by {worst:.2e} only");
    }
}
