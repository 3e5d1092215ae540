//! The reference (dynamic-graph) GPT: its gradients against finite differences, its size and
//! behaviour on names.txt, and determinism.

mod common;

use common::names;
use microgpt::data;
use microgpt::optim::Adam;
use microgpt::reference::Reference;
use microgpt::rng::Rng;
use microgpt::sample::{self, Sampling};
use microgpt::shape::Shape;

/// A small shape with two layers and two heads, so that every code path is exercised.
const TINY: Shape = Shape {
    vocab: 6,
    block_size: 5,
    n_embd: 4,
    n_head: 2,
    mlp: 16,
    n_layer: 2,
};

#[test]
fn every_gradient_matches_central_finite_differences() {
    // Step and tolerance: the loss is O(1) and smooth away from ReLU's kink, so with h = 1e-5
    // the truncation error h²·L'''/6 is ≈1e-11 and the rounding error ε·L/h ≈ 1e-11. An
    // absolute tolerance of 1e-8 on gradients of size ≈1e-3..1e-1 is therefore both safe and
    // far tighter than any real mistake (a wrong or missing term is off by ≥1e-4 here).
    const H: f64 = 1e-5;
    const TOL: f64 = 1e-8;
    let mut rng = Rng::pcg(7);
    let mut model = Reference::new(TINY, &mut rng).unwrap();
    // BOS = 5; longer than the block, so truncation is exercised too
    let tokens = [5, 0, 3, 1, 4, 2, 2, 5];
    model.loss_and_grad(&tokens);
    let grads = model.grads().to_vec();
    let params = model.params().to_vec();
    let mut worst: f64 = 0.0;
    for i in 0..params.len() {
        let mut p = params.clone();
        p[i] = params[i] + H;
        model.set_params(&p);
        let up = model.loss_and_grad(&tokens);
        p[i] = params[i] - H;
        model.set_params(&p);
        let down = model.loss_and_grad(&tokens);
        let fd = (up - down) / (2.0 * H);
        worst = worst.max((fd - grads[i]).abs());
        assert!(
            (fd - grads[i]).abs() <= TOL,
            "param {i}: autograd {} vs finite difference {fd}",
            grads[i]
        );
    }
    assert!(grads.iter().filter(|g| g.abs() > 1e-6).count() > params.len() / 2);
    eprintln!("largest |autograd − finite difference| = {worst:.2e}");
}

#[test]
fn micro_on_names_has_4192_params_and_starts_near_ln_27() {
    let mut rng = Rng::pcg(42);
    let (tok, docs) = names(&mut rng);
    assert_eq!(docs.len(), 32033);
    assert_eq!(tok.vocab_size(), 27);
    let mut model = Reference::new(Shape::micro(27), &mut rng).unwrap();
    assert_eq!(model.num_params(), 4192);
    // With N(0, 0.08) weights the logits are nearly equal, so the predicted distribution is
    // nearly uniform and the loss of an untrained model is ln 27 ≈ 3.2958 give or take a little.
    let mean: f64 = (0..50)
        .map(|i| model.loss_and_grad(docs.get(i)))
        .sum::<f64>()
        / 50.0;
    eprintln!(
        "untrained mean loss over 50 docs: {mean:.4} (ln 27 = {:.4})",
        27f64.ln()
    );
    assert!((mean - 27f64.ln()).abs() < 0.05, "mean {mean}");
}

#[test]
fn a_thousand_steps_lower_the_loss() {
    let mut rng = Rng::pcg(42);
    let (_, docs) = names(&mut rng);
    let mut model = Reference::new(Shape::micro(27), &mut rng).unwrap();
    let adam = Adam::default();
    let losses: Vec<f64> = (0..1000)
        .map(|s| model.train_step(docs.get(s % docs.len()), &adam.at(s, 1000)))
        .collect();
    assert!(
        (losses[0] - 27f64.ln()).abs() < 0.25,
        "step 1: {}",
        losses[0]
    );
    let first: f64 = losses[..100].iter().sum::<f64>() / 100.0;
    let last: f64 = losses[900..].iter().sum::<f64>() / 100.0;
    eprintln!("mean loss, steps 1-100: {first:.4}; steps 901-1000: {last:.4}");
    assert!(last < first - 0.3, "first 100: {first}, last 100: {last}");
}

/// Losses of a short run and a few samples, all from one seed.
fn short_run(seed: u64) -> (Vec<f64>, Vec<Vec<usize>>) {
    let mut rng = Rng::pcg(seed);
    let (tok, docs) = names(&mut rng);
    let mut model = Reference::new(Shape::micro(tok.vocab_size()), &mut rng).unwrap();
    let adam = Adam::default();
    let losses = (0..20)
        .map(|s| model.train_step(docs.get(s), &adam.at(s, 20)))
        .collect();
    let mut probs = vec![0.0; tok.vocab_size()];
    let samples = (0..5)
        .map(|_| {
            let mut out = Vec::new();
            sample::generate(
                &mut model,
                tok.bos(),
                &[],
                &Sampling::MICROGPT,
                &mut rng,
                &mut probs,
                &mut out,
            );
            out
        })
        .collect();
    (losses, samples)
}

#[test]
fn same_seed_same_run_and_another_seed_another() {
    let a = short_run(42);
    let b = short_run(42);
    let c = short_run(43);
    assert_eq!(a, b);
    assert_ne!(a.0, c.0);
    assert_ne!(a.1, c.1);
}

#[test]
fn python_stream_reproduces_microgpt_py_first_five_losses() {
    // microgpt.py with random.seed(42) on names.txt prints (CPython 3.11):
    // step 1..5 | loss 3.3660 3.4243 3.1778 3.0664 3.2209
    let mut rng = Rng::python(42);
    let (_, docs) = names(&mut rng);
    let mut model = Reference::new(Shape::micro(27), &mut rng).unwrap();
    let adam = Adam::default();
    let printed: Vec<String> = (0..5)
        .map(|s| format!("{:.4}", model.train_step(docs.get(s), &adam.at(s, 1000))))
        .collect();
    assert_eq!(printed, ["3.3660", "3.4243", "3.1778", "3.0664", "3.2209"]);
}

#[test]
fn python_stream_shuffles_and_draws_like_microgpt_py_bit_for_bit() {
    // python3 -c "import random; random.seed(42);
    //   docs = [l.strip() for l in open('data/names.txt') if l.strip()];
    //   random.shuffle(docs); print(docs[:3], docs[-1]);
    //   w = [random.gauss(0, 0.08) for _ in range(4192)]; print(repr(w[0]), repr(w[1]), repr(w[4191]))"
    // ['yuheng', 'diondre', 'xavien'] yovani
    // -0.04273180935726127 0.07696138795865093 -0.09496111892676082
    let mut rng = Rng::python(42);
    let mut docs = data::load_docs(&common::names_path()).unwrap();
    rng.shuffle(&mut docs);
    assert_eq!(docs[..3], ["yuheng", "diondre", "xavien"]);
    assert_eq!(docs[docs.len() - 1], "yovani");
    let model = Reference::new(Shape::micro(27), &mut rng).unwrap();
    let p = model.params();
    assert_eq!(p[0], -0.04273180935726127);
    assert_eq!(p[1], 0.07696138795865093);
    assert_eq!(p[4191], -0.09496111892676082);
}
