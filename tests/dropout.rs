//! Dropout: the static engine's masked forward and backward against the reference (which
//! multiplies by the same masks on its tape) and against central differences; the masks do
//! not depend on the thread count; evaluation never drops out.
//!
//! Tolerance against the reference: as in tests/minibatch.rs, both engines compute exact
//! derivatives in f64 in different summation orders, so per tensor the normwise relative
//! difference `max|static − reference| / max|reference|` must be ≤ 1e-10 (seen: ~1e-15).

mod common;

use common::max_rel;
use microgpt::dropout::{self, Dropout};
use microgpt::gpt::Gpt;
use microgpt::model::StepInputs;
use microgpt::optim::Adam;
use microgpt::reference::Reference;
use microgpt::rng::Rng;

/// V 11, T 8, E 8, H 2, D 4, F 32, L 2: two blocks, so every dropout site is exercised.
type Tiny = Gpt<11, 8, 8, 2, 4, 32, 2>;
const _: () = Tiny::CHECK;
const BOS: usize = 10;
const REL: f64 = 1e-10;

fn docs(n: usize) -> Vec<Vec<usize>> {
    (0..n)
        .map(|i| {
            let len = [1, 4, 7, 12, 3, 5][i % 6];
            std::iter::once(BOS)
                .chain((0..len).map(|k| (i + 3 * k) % BOS))
                .chain(std::iter::once(BOS))
                .collect()
        })
        .collect()
}

#[test]
fn dropout_gradient_equals_the_reference_at_any_thread_count() {
    let docs = docs(9);
    let batch: Vec<&[usize]> = docs.iter().map(Vec::as_slice).collect();
    let d = Dropout::at(0.3, 7, 11);
    for threads in [1, 2, 3] {
        let mut st = Tiny::new(BOS + 1, &mut Rng::pcg(5)).unwrap();
        st.set_threads(threads).unwrap();
        let mut rf = Reference::new(st.shape(), &mut Rng::pcg(5)).unwrap();
        let dropped = StepInputs {
            dropout: d,
            ..StepInputs::MICROGPT
        };
        let ls = st.loss_and_grad_batch(&batch, &dropped);
        let lr = rf.loss_and_grad_batch(&batch, &dropped);
        let rel = max_rel(&st.shape(), &st.grads_flat(), rf.grads());
        println!("{threads} thread(s): loss {ls:.15} vs {lr:.15}; gradient relative {rel:.2e}");
        assert!((ls - lr).abs() <= REL * lr, "loss {ls} vs reference {lr}");
        assert!(rel <= REL, "gradient relative difference {rel:.2e}");

        // and dropout really changed the step: without it, loss and gradient differ (at
        // initial weights the residual branches are small beside the normalized embedding,
        // so the loss moves by ~4e-4 only; the gradient, by tens of percent)
        let g_drop = st.grads_flat();
        let l0 = st.loss_and_grad_batch(&batch, &StepInputs::MICROGPT);
        let moved = max_rel(&st.shape(), &g_drop, &st.grads_flat());
        println!("without dropout: loss {l0:.6}, gradient relative difference {moved:.2e}");
        assert!(
            (l0 - ls).abs() > 1e-4,
            "loss {l0} with and {ls} without dropout"
        );
        assert!(moved > 1e-1, "gradient moved by {moved:.2e} only");
    }
}

#[test]
fn dropout_gradient_matches_central_differences() {
    // The masks are a function of (key, document, position, site) only, so with the key
    // fixed the dropped-out loss is an ordinary function of the weights: its central
    // difference (f(w+h) − f(w−h))/2h has truncation error ~h²·f'''/6 ≈ 1e-11 at h = 1e-5
    // and rounding error ~ε·|f|/h ≈ 2e-16·2.4/1e-5 ≈ 5e-11; a ReLU kink inside [w−h, w+h]
    // would break it (the worst difference seen, 2.6e-10, says none is crossed here).
    // Tolerance 1e-8 absolute, ~100× what those two bounds allow.
    let docs = docs(4);
    let batch: Vec<&[usize]> = docs.iter().map(Vec::as_slice).collect();
    let mut st = Tiny::new(BOS + 1, &mut Rng::pcg(9)).unwrap();
    let dropped = StepInputs {
        dropout: Dropout::at(0.25, 3, 0),
        ..StepInputs::MICROGPT
    };
    st.loss_and_grad_batch(&batch, &dropped);
    let grads = st.grads_flat();
    let params = st.params_flat();
    let h = 1e-5;
    let mut worst: f64 = 0.0;
    // a spread of parameters: every tensor is hit
    for i in (0..params.len()).step_by(7) {
        let mut p = params.clone();
        p[i] = params[i] + h;
        st.set_params_flat(&p).unwrap();
        let up = st.loss_and_grad_batch(&batch, &dropped);
        p[i] = params[i] - h;
        st.set_params_flat(&p).unwrap();
        let down = st.loss_and_grad_batch(&batch, &dropped);
        let fd = (up - down) / (2.0 * h);
        worst = worst.max((fd - grads[i]).abs());
    }
    println!("largest |finite difference − gradient|: {worst:.2e}");
    assert!(worst < 1e-8, "largest difference {worst:.2e}");
}

/// Dropout is an input of a gradient step only: a step with dropout leaves nothing behind
/// that the forward-only passes (the loss, the batched losses, inference) would see.
#[test]
fn evaluation_never_drops_out() {
    let docs = docs(3);
    let batch: Vec<&[usize]> = docs.iter().map(Vec::as_slice).collect();
    let dropped = StepInputs {
        dropout: Dropout::at(0.5, 1, 1),
        ..StepInputs::MICROGPT
    };
    let mut st = Tiny::new(BOS + 1, &mut Rng::pcg(1)).unwrap();
    let before: Vec<f64> = docs.iter().map(|d| st.loss(d)).collect();
    let logits = st.forward_token(BOS, 0).to_vec();
    st.loss_and_grad_batch(&batch, &dropped);
    let after: Vec<f64> = docs.iter().map(|d| st.loss(d)).collect();
    assert_eq!(before, after);
    let mut batched = vec![0.0; batch.len()];
    st.losses(&batch, &mut batched);
    assert_eq!(before, batched);
    assert_eq!(logits, st.forward_token(BOS, 0));
    let mut rf = Reference::new(st.shape(), &mut Rng::pcg(1)).unwrap();
    rf.loss_and_grad_batch(&batch, &dropped);
    for (d, l) in docs.iter().zip(&before) {
        let r = rf.loss(d);
        assert!((r - l).abs() <= REL * l, "reference {r} vs static {l}");
    }
}

#[test]
fn training_with_dropout_follows_the_reference() {
    // 6 Adam steps on batches of 3 with a fresh key per step, as the training loop does
    let docs = docs(6);
    let adam = Adam::default();
    let mut st = Tiny::new(BOS + 1, &mut Rng::pcg(2)).unwrap();
    st.set_threads(2).unwrap();
    let mut rf = Reference::new(st.shape(), &mut Rng::pcg(2)).unwrap();
    for step in 0..6 {
        let batch: Vec<&[usize]> = (0..3)
            .map(|i| docs[(3 * step + i) % 6].as_slice())
            .collect();
        let d = Dropout::at(0.2, 42, step);
        let dropped = StepInputs {
            dropout: d,
            ..StepInputs::MICROGPT
        };
        let ls = st.train_batch(&batch, &adam.at(step, 6), &dropped);
        let lr = rf.train_batch(&batch, &adam.at(step, 6), &dropped);
        assert!((ls - lr).abs() <= 1e-9 * lr, "step {step}: {ls} vs {lr}");
    }
    let rel = max_rel(&st.shape(), &st.params_flat(), rf.params());
    assert!(rel <= 1e-9, "weights after 6 steps: relative {rel:.2e}");
}

#[test]
fn masks_are_a_function_of_their_coordinates() {
    let d = Dropout::at(0.5, 1, 0).unwrap();
    let (mut a, mut b) = ([0.0; 8], [0.0; 8]);
    d.fill(&mut a, dropout::row_seed(d.key, 3, 2), dropout::mlp_site(1));
    d.fill(&mut b, dropout::row_seed(d.key, 3, 2), dropout::mlp_site(1));
    assert_eq!(a, b);
    assert!(a.iter().all(|&m| m == 0.0 || m == 2.0));
}
