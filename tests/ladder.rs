//! The ladder's examples (`examples/train0.rs` … `train5.rs`), included as modules: step 1's
//! hand-written gradient against central finite differences, step 2's tape gradient against
//! step 1's, step 3 against the reference GPT with one head and no MLP, every step end to end,
//! and the table's claim: on the default run each step's held-out loss is below the last's.

// Each example is a program of its own that declares the shared `examples/common` module, so
// this binary holds one copy per example (their types are not mixed: each step's report is
// read through its own module's `Report`).
#![allow(clippy::duplicate_mod)]

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "../examples/train0.rs"]
mod train0;
#[path = "../examples/train1.rs"]
mod train1;
#[path = "../examples/train2.rs"]
mod train2;
#[path = "../examples/train3.rs"]
mod train3;
#[path = "../examples/train4.rs"]
mod train4;
#[path = "../examples/train5.rs"]
mod train5;

use microgpt::reference::Reference;
use microgpt::rng::Rng;

use train1::Mlp;

/// The tensors of step 1's (and step 2's) flat layout.
const MLP_TENSORS: [(&str, usize); 3] = [
    ("wte", 27 * 16),
    ("mlp_fc1", 64 * 3 * 16),
    ("lm_head", 27 * 64),
];

/// Per tensor of `tensors`, the largest `|a − b|` and that over `max|b|`; printed, then
/// returned as the largest of each over all tensors.
fn compare(tensors: &[(&str, usize)], a: &[f64], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    assert_eq!(tensors.iter().map(|t| t.1).sum::<usize>(), a.len());
    let (mut off, mut worst_abs, mut worst_rel) = (0, 0.0_f64, 0.0_f64);
    for &(name, len) in tensors {
        let (x, y) = (&a[off..off + len], &b[off..off + len]);
        let abs = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        let scale = y.iter().map(|q| q.abs()).fold(0.0, f64::max);
        let rel = if scale > 0.0 { abs / scale } else { abs };
        println!("{name:>10}: max |diff| {abs:.3e}, relative to max |grad| {rel:.3e}");
        (worst_abs, worst_rel) = (worst_abs.max(abs), worst_rel.max(rel));
        off += len;
    }
    (worst_abs, worst_rel)
}

/// "emma" and "anna" as names.txt's tokenizer has them (a-z are 0-25, BOS is 26), so that the
/// gradient tests do not need the data file; both repeat a letter, and the first contexts
/// repeat BOS, so that rows of `wte` collect more than one slot and position.
const EMMA: [usize; 6] = [26, 4, 12, 12, 0, 26];
const ANNA: [usize; 6] = [26, 0, 13, 13, 0, 26];

/// Step 1's gradient of one document's loss.
fn step1_grad(model: &Mlp, tokens: &[usize]) -> (f64, Vec<f64>) {
    let mut grad = Mlp::zeros();
    let loss = model.loss(tokens, Some(&mut grad));
    (loss, grad.to_flat())
}

/// `(f(w + h·e_i) − f(w − h·e_i)) / 2h` for every weight i.
fn central_differences(flat: &[f64], tokens: &[usize], h: f64) -> Vec<f64> {
    let mut w = flat.to_vec();
    (0..w.len())
        .map(|i| {
            let w0 = w[i];
            w[i] = w0 + h;
            let up = Mlp::from_flat(&w).loss(tokens, None);
            w[i] = w0 - h;
            let down = Mlp::from_flat(&w).loss(tokens, None);
            w[i] = w0;
            (up - down) / (2.0 * h)
        })
        .collect()
}

// Step h = 1e-5, tolerance 1e-9 absolute. The central difference's truncation error is
// h²/6·|f'''| ≈ 2e-11·|f'''| (|f'''| ≲ 1 at these weights) and its rounding error ≈ ε·|f|/h ≈
// 1.1e-16·3.3/1e-5 ≈ 4e-11, so the expected error is ~1e-10 (measured: ≤ 7.6e-11, see the
// printed table) and the tolerance is 10× that. The gradients' largest entries are 1e-2 - 5e-2
// in every tensor, so a derivative wrong in any term is off by orders more (one entry wrong by
// 1e-4 of the largest is caught: the test after this one). ReLU's kink could spoil a
// difference whose ±h straddles it: a pre-activation (48 products of N(0, 0.08) values, std
// ≈ 0.044) moves by ~h·0.08 ≈ 1e-6, so it straddles 0 with probability ≈ 2e-5 per
// pre-activation, and it would fail loudly, not pass; these seeds have none.
const FD_STEP: f64 = 1e-5;
const FD_TOLERANCE: f64 = 1e-9;

/// `Err` with the largest difference if `grad` is not the finite differences' gradient.
fn check_against_differences(flat: &[f64], tokens: &[usize], grad: &[f64]) -> Result<f64, f64> {
    let fd = central_differences(flat, tokens, FD_STEP);
    let (abs, _) = compare(&MLP_TENSORS, grad, &fd);
    if abs <= FD_TOLERANCE {
        Ok(abs)
    } else {
        Err(abs)
    }
}

#[test]
fn step1_gradient_matches_central_differences() {
    for (seed, tokens) in [(1, &EMMA), (2, &ANNA)] {
        let model = Mlp::new(&mut Rng::pcg(seed));
        let (_, grad) = step1_grad(&model, tokens);
        assert!(grad.iter().any(|&g| g != 0.0));
        let diff = check_against_differences(&model.to_flat(), tokens, &grad);
        assert!(diff.is_ok(), "seed {seed}: off by {diff:?}");
    }
}

#[test]
fn the_difference_check_catches_a_wrong_gradient() {
    // a gradient wrong in one entry of one tensor, by 1e-4 of the largest: the check must fail
    let model = Mlp::new(&mut Rng::pcg(1));
    let (_, mut grad) = step1_grad(&model, &EMMA);
    let scale = grad.iter().map(|g| g.abs()).fold(0.0, f64::max);
    let i = 27 * 16 + 5; // mlp_fc1[0][5]
    grad[i] += 1e-4 * scale;
    assert!(check_against_differences(&model.to_flat(), &EMMA, &grad).is_err());
}

#[test]
fn step2_tape_gradient_equals_step1() {
    let mut rng = Rng::pcg(3);
    let one = Mlp::new(&mut rng);
    let mut two = train2::Mlp::from_flat(27, &one.to_flat());
    assert_eq!(two.num_params(), Mlp::NUM_PARAMS);
    for tokens in [&EMMA[..], &ANNA[..]] {
        let (loss1, grad1) = step1_grad(&one, tokens);
        let loss2 = two.loss_and_grad(tokens);
        println!("loss: step 1 {loss1:.17}, step 2 {loss2:.17}");
        assert!((loss1 - loss2).abs() <= 1e-14 * loss2.abs());
        // the two sum in different orders (step 1 in the crate's vector tiles, the tape left
        // to right), so they agree to rounding, not bit for bit
        let (_, rel) = compare(&MLP_TENSORS, &grad1, two.grads());
        assert!(rel <= 1e-12, "relative difference {rel:e}");
    }
}

#[test]
fn step3_is_the_reference_gpt_with_one_head_and_no_mlp() {
    // the reference with step 3's weights, any mlp_fc1 and mlp_fc2 = 0: its MLP block adds
    // exactly 0 to the residual stream and passes back exactly 0, so its loss and the other
    // tensors' gradients must be step 3's bit for bit
    let shape = train3::shape(27);
    let tensors: Vec<(String, usize)> = train3::tensors(27)
        .into_iter()
        .map(|(name, r, c)| (name, r * c))
        .collect();
    let tensors: Vec<(&str, usize)> = tensors.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    let n: usize = tensors.iter().map(|t| t.1).sum();
    assert_eq!(n, 2144);
    let mut rng = Rng::pcg(4);
    let mut flat: Vec<f64> = (0..n)
        .map(|_| rng.gauss(0.0, microgpt::shape::INIT_STD))
        .collect();
    let mut block = train3::Block::from_flat(27, &flat);
    let (fc1, fc2) = (shape.mlp * shape.n_embd, shape.n_embd * shape.mlp);
    flat.extend((0..fc1).map(|_| rng.gauss(0.0, microgpt::shape::INIT_STD)));
    flat.extend(std::iter::repeat_n(0.0, fc2));
    let mut reference = Reference::from_params(shape, &flat).unwrap();
    for tokens in [&EMMA[..], &ANNA[..]] {
        let (a, b) = (block.loss_and_grad(tokens), reference.loss_and_grad(tokens));
        println!("loss: step 3 {a:.17}, reference {b:.17}");
        assert_eq!(a, b);
        let (abs, _) = compare(&tensors, block.grads(), &reference.grads()[..n]);
        assert_eq!(abs, 0.0);
        // and the MLP really was in the graph: mlp_fc2's gradient is not 0
        assert!(reference.grads()[n + fc1..].iter().any(|&g| g != 0.0));
    }
}

#[test]
fn every_step_runs_and_learns() {
    let (data, rng) = common::names().unwrap();
    let val_tokens: usize = data
        .val
        .iter()
        .map(|d| common::positions(d, common::BLOCK_SIZE))
        .sum();
    let ln_v = (data.tok.vocab_size() as f64).ln();
    // each step untrained and after 100 documents: same held-out set, a lower loss
    macro_rules! check {
        ($step:ident, $params:expr) => {{
            let before = $step::train(&data, &mut rng.clone(), 0).unwrap();
            let after = $step::train(&data, &mut rng.clone(), 100).unwrap();
            println!(
                "{}: held-out loss {:.4} untrained, {:.4} after 100 steps",
                stringify!($step),
                before.loss,
                after.loss
            );
            for r in [&before, &after] {
                assert_eq!((r.tokens, r.docs), (val_tokens, data.val.len()));
                assert_eq!(r.params, $params);
            }
            // no counts (add-one: exactly uniform) or weights of N(0, 0.08): nearly uniform
            // (the GPT's untrained loss is ln V + 0.04 with these weights)
            assert!(
                (before.loss - ln_v).abs() < 0.1,
                "untrained: {}",
                before.loss
            );
            assert!(after.loss.is_finite() && after.loss < before.loss - 0.01);
            after.loss
        }};
    }
    check!(train0, 27 * 27);
    let one = check!(train1, 5232);
    let two = check!(train2, 5232);
    // the same run: the same weights, documents and updates, gradients equal to rounding
    assert!((one - two).abs() < 1e-9, "step 1 {one}, step 2 {two}");
    check!(train3, 2144);
    check!(train4, 4192);
    check!(train5, 4192);
}

#[test]
fn the_default_run_goes_down_step_by_step() {
    // the table of docs/progression.md: seed 42, microgpt's 1,000 documents; steps 1 and 2
    // are the same run (equal to rounding), every other step must beat the one before it
    let (data, rng) = common::names().unwrap();
    let steps = common::STEPS;
    let losses = [
        train0::train(&data, &mut rng.clone(), steps).unwrap().loss,
        train1::train(&data, &mut rng.clone(), steps).unwrap().loss,
        train2::train(&data, &mut rng.clone(), steps).unwrap().loss,
        train3::train(&data, &mut rng.clone(), steps).unwrap().loss,
        train4::train(&data, &mut rng.clone(), steps).unwrap().loss,
        train5::train(&data, &mut rng.clone(), steps).unwrap().loss,
    ];
    for (i, l) in losses.iter().enumerate() {
        println!("train{i}: held-out loss {l:.4}");
    }
    assert!((losses[1] - losses[2]).abs() < 1e-9, "{losses:?}");
    for i in [1, 3, 4, 5] {
        assert!(
            losses[i] < losses[i - 1],
            "train{i} {} is not below train{} {}",
            losses[i],
            i - 1,
            losses[i - 1]
        );
    }
}
