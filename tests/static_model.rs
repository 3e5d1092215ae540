//! The whole static model: its gradient against central finite differences of its loss, the
//! vocabulary buckets against the exact-vocab model, the constructor's checks, and a large
//! configuration on a test thread's 2 MiB stack.

mod common;

use common::{per_tensor, report};
use microgpt::gpt::Gpt;
use microgpt::model::StepInputs;
use microgpt::optim::Adam;
use microgpt::presets;
use microgpt::presets::{Micro, Micro64, Micro256};
use microgpt::rng::Rng;
use microgpt::shape::Shape;

/// A second shape: 2 layers, everything different from microgpt's.
type Small = Gpt<7, 4, 8, 2, 4, 32, 2>;
const _: () = Small::CHECK;

/// The model's gradient against central differences of its loss, for every parameter.
///
/// Step `h = 1e-5` and tolerance 1e-8 (absolute; the gradients are O(0.01–1)): with the
/// weights scaled up the loss is ≈ 5–8 and strongly curved — at `h = 1e-4` the truncation
/// error `h²·|L'''|/6` was measured at 3e-8, so at 1e-5 it is ≈ 3e-10 — and the rounding error
/// is `ε·|L|/h ≈ 2e-16·8/1e-5 ≈ 2e-10`. The largest error per tensor is printed; a wrong
/// derivative anywhere (e.g. no gradient into earlier positions' keys) is off by far more.
#[test]
fn small_model_gradient_matches_finite_differences() {
    const H_STEP: f64 = 1e-5;
    let mut rng = Rng::pcg(3);
    let mut m = Small::new(7, &mut rng).unwrap();
    // scale the weights up from N(0, 0.08) so that every path carries a sizable gradient
    let p0: Vec<f64> = m.params_flat().iter().map(|p| p * 5.0).collect();
    m.set_params_flat(&p0).unwrap();
    let shape = m.shape();
    // BOS = 6; one character, and a document longer than T = 4 (truncated)
    for doc in [vec![6, 2, 6], vec![6, 0, 3, 3, 1, 5, 6]] {
        let loss = m.loss_and_grad(&doc);
        assert!(loss.is_finite());
        let analytic = m.grads_flat();
        let mut p = p0.clone();
        let numeric: Vec<f64> = (0..p.len())
            .map(|j| {
                p[j] = p0[j] + H_STEP;
                m.set_params_flat(&p).unwrap();
                let lp = m.loss_and_grad(&doc);
                p[j] = p0[j] - H_STEP;
                m.set_params_flat(&p).unwrap();
                let lm = m.loss_and_grad(&doc);
                p[j] = p0[j];
                (lp - lm) / (2.0 * H_STEP)
            })
            .collect();
        m.set_params_flat(&p0).unwrap();
        let diffs = per_tensor(&shape, &analytic, &numeric);
        let worst = diffs.iter().map(|d| d.abs).fold(0.0, f64::max);
        println!(
            "doc {doc:?}: loss {loss:.6}, analytic vs numeric: {}",
            report(&diffs)
        );
        assert!(worst < 1e-8, "doc {doc:?}: per tensor {}", report(&diffs));
        // and the gradient is not trivially zero where it must not be
        let norm: f64 = analytic.iter().map(|g| g * g).sum::<f64>().sqrt();
        assert!(norm > 0.1, "gradient norm {norm}");
    }
}

/// Equal to rounding: relative 1e-12 per component (absolute 1e-15 near 0). The masked models
/// compute the same sums, but the vectorized loops group a 27-wide and a 64-wide row
/// differently, so the last bit can differ; a leak of a masked row would be O(1).
fn assert_close(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs()) + 1e-15,
            "{what}: component {i}: {x} vs {y}"
        );
    }
}

/// A V = 64 (and V = 256) model holding the 27-token vocabulary is the 27-token model: the
/// same initial weights from the same seed, and the same loss and gradients (on the real rows)
/// step after step; the unused rows stay exactly 0.
#[test]
fn vocab_bucket_equals_exact_vocab_model() {
    let docs: [&[usize]; 4] = [
        &[26, 0, 26],
        &[26, 4, 12, 12, 0, 26],
        &[26, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 26],
        &[
            26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 26,
        ],
    ];
    let mut exact = Micro::new(27, &mut Rng::pcg(7)).unwrap();
    let mut bucket = Micro64::new(27, &mut Rng::pcg(7)).unwrap();
    let mut big = presets::static_model("micro", 27, &mut Rng::pcg(7)).unwrap();
    assert_eq!(presets::bucket(27), Some(27));
    let mut b256 = Micro256::new(27, &mut Rng::pcg(7)).unwrap();
    assert_eq!(exact.params_flat(), bucket.params_flat());
    assert_eq!(exact.params_flat(), b256.params_flat());
    assert_eq!(bucket.shape(), Shape::micro(27));
    assert_eq!(bucket.num_params(), 4192);
    // unused rows are zero and stay zero
    assert!(
        bucket.weights().wte[27..]
            .iter()
            .flatten()
            .all(|&x| x == 0.0)
    );
    let adam = Adam::default();
    for step in 0..12 {
        let doc = docs[step % docs.len()];
        let s = adam.at(step, 1000);
        let le = exact.train_step(doc, &s);
        let lb = bucket.train_step(doc, &s);
        let l2 = b256.train_step(doc, &s);
        let l3 = big.train_batch(&[doc], &s, &StepInputs::MICROGPT);
        assert_close(&format!("step {step} loss"), &[le], &[lb]);
        assert_close(&format!("step {step} loss"), &[le], &[l2]);
        assert_eq!(le, l3, "step {step}: static_model picks the V = 27 bucket");
        let g = exact.grads_flat();
        assert_close(&format!("step {step} gradients"), &g, &bucket.grads_flat());
        assert_close(&format!("step {step} gradients"), &g, &b256.grads_flat());
        assert_close(
            &format!("step {step} parameters"),
            &exact.params_flat(),
            &bucket.params_flat(),
        );
    }
    assert!(
        bucket.weights().wte[27..]
            .iter()
            .flatten()
            .all(|&x| x == 0.0)
    );
    assert!(
        bucket.weights().lm_head[27..]
            .iter()
            .flatten()
            .all(|&x| x == 0.0)
    );
    // inference: logits of the real vocabulary only, equal too
    for (pos, &tok) in docs[1].iter().enumerate() {
        let a = exact.forward_token(tok, pos).to_vec();
        let b = bucket.forward_token(tok, pos);
        assert_eq!(b.len(), 27);
        assert_close(&format!("logits at {pos}"), &a, b);
    }
}

#[test]
fn initial_weights_follow_the_exact_vocab_stream() {
    // wte rows 0..vocab, wpe, lm_head rows 0..vocab, then per layer wq wk wv wo fc1 fc2
    let m = Micro64::new(27, &mut Rng::pcg(11)).unwrap();
    let mut rng = Rng::pcg(11);
    let expected: Vec<f64> = (0..4192).map(|_| rng.gauss(0.0, 0.08)).collect();
    assert_eq!(m.params_flat(), expected);
    let w = m.weights();
    assert_eq!(w.wte[26][15], expected[26 * 16 + 15]);
    assert_eq!(w.wpe[0][0], expected[27 * 16]);
    assert_eq!(w.lm_head[0][0], expected[27 * 16 + 256]);
    assert_eq!(w.blocks[0].attn_wq[0][0], expected[2 * 27 * 16 + 256]);
    assert_eq!(w.blocks[0].mlp_fc2[15][63], expected[4191]);
}

#[test]
fn constructor_and_flat_parameters_report_size_errors() {
    let err = Micro::new(28, &mut Rng::pcg(1)).err().unwrap().to_string();
    assert!(err.contains("28") && err.contains("27"), "{err}");
    let err = presets::static_model("micro", 300, &mut Rng::pcg(1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("300") && err.contains("256"), "{err}");
    assert_eq!(presets::bucket(28), Some(64));
    assert_eq!(presets::bucket(200), Some(256));
    let err = presets::static_model("tiny", 27, &mut Rng::pcg(1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tiny"), "{err}");
    let mut m = Micro::new(27, &mut Rng::pcg(1)).unwrap();
    let err = m.set_params_flat(&[0.0; 10]).unwrap_err().to_string();
    assert!(err.contains("10") && err.contains("4192"), "{err}");
    let p = m.params_flat();
    m.set_params_flat(&p).unwrap();
    assert_eq!(m.params_flat(), p);
}

/// A configuration with ≥ 1 MB of parameters is built and trained on a test thread (2 MiB of
/// stack, debug builds included): the big state never passes through the stack.
#[test]
fn large_config_trains_on_a_test_thread() {
    type Large = Gpt<64, 32, 128, 4, 32, 512, 2>;
    const _: () = Large::CHECK;
    let mut m = Large::new(50, &mut Rng::pcg(5)).unwrap();
    let bytes = m.num_params() * std::mem::size_of::<f64>();
    assert!(bytes >= 1 << 20, "{bytes} bytes of parameters");
    let doc: Vec<usize> = std::iter::once(49)
        .chain((0..40).map(|i| (i * 7) % 49))
        .chain(std::iter::once(49))
        .collect();
    let s = Adam::default().at(0, 1000);
    let l0 = m.train_step(&doc, &s);
    let l1 = m.loss_and_grad(&doc);
    println!("{bytes} bytes of parameters; loss {l0:.4} then {l1:.4}");
    assert!(l0.is_finite() && l0 > 1.0, "initial loss {l0}");
    assert!(
        l1 < l0,
        "one Adam step on the document lowers its loss: {l0} → {l1}"
    );
}
