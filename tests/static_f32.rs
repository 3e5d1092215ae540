//! The static engine in `f32` against the same engine in `f64`, which the other tests check
//! against the autograd reference (to 1e-10) and finite differences: `exp`, each op's forward
//! and backward, the whole model's gradient, a training run on names, allocation-free steps,
//! and checkpoints across the two precisions.
//!
//! Tolerances. f32's unit roundoff is `u = 2^-24 ≈ 6e-8` (f64's, 1e-16, is negligible beside
//! it). A sum of `n` terms computed in floating point is off by at most `γ_n·Σ|terms|`,
//! `γ_n = n·u/(1 − n·u) ≈ n·u` (Higham, *Accuracy and Stability of Numerical Algorithms*,
//! §3.1). So an output that passes through roundings along a chain of `n` of them (the
//! lengths of its sums plus one per elementwise step) is within `n·u·M` of the exact value,
//! `M` a bound on the magnitudes summed. Each test computes both precisions from the same
//! inputs (drawn, then rounded to f32, so that both see exactly the same numbers), states its
//! `n` and `M`, and asserts that bound — loose by design (rounding errors of random sign grow
//! like √n, not n), but a wrong lane, tail or tile shows up as an error of the size of the
//! values themselves, orders of magnitude above it.

mod common;

use std::process::{Command, Output};

use common::counting_alloc::{Counting, count_on_this_thread as count_allocations};
use common::{names, per_tensor, report};
use microgpt::float::{Float, Precision};
use microgpt::gpt::{Gpt, kernels, ops};
use microgpt::model::StepInputs;
use microgpt::optim::Adam;
use microgpt::presets::{self, Micro, Micro32, Small32};
use microgpt::rng::Rng;
use microgpt::shape::Shape;

#[global_allocator]
static GLOBAL: Counting = Counting;

const U: f64 = <f32 as Float>::UNIT_ROUNDOFF;

/// `n` standard normal draws, rounded to f32 (exact in either precision from then on).
fn randn(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gauss(0.0, 1.0) as f32 as f64).collect()
}

fn arr<S: Float, const N: usize>(x: &[f64]) -> [S; N] {
    std::array::from_fn(|i| S::from_f64(x[i]))
}

fn mat<S: Float, const R: usize, const C: usize>(x: &[f64]) -> [[S; C]; R] {
    std::array::from_fn(|r| arr::<S, C>(&x[r * C..]))
}

fn flat<S: Float>(x: &[S]) -> Vec<f64> {
    x.iter().map(|v| v.to_f64()).collect()
}

/// Asserts `max|a − b| ≤ n·u·m` (the bound of the module comment) and prints both.
fn assert_within(what: &str, a32: &[f64], a64: &[f64], n: usize, m: f64) {
    assert_eq!(a32.len(), a64.len());
    let diff = a32
        .iter()
        .zip(a64)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let bound = n as f64 * U * m;
    println!("{what}: max |f32 − f64| {diff:.2e}, bound n·u·M = {n}·u·{m:.2} = {bound:.2e}");
    assert!(diff <= bound, "{what}: {diff:e} > {bound:e}");
    assert!(a32.iter().all(|x| x.is_finite()), "{what}: not finite");
}

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[test]
fn f32_exp_is_within_2_ulp_of_libm_and_0_or_infinite_outside_its_range() {
    let mut worst = 0u32;
    let mut x = -87.3f32;
    while x <= 88.3 {
        let (got, want) = (kernels::exp(x), x.exp());
        let ulps = got.to_bits().abs_diff(want.to_bits());
        worst = worst.max(ulps);
        assert!(ulps <= 2, "exp({x}) = {got}, libm {want}: {ulps} ulp");
        x += 0.000_731;
    }
    println!("largest difference from libm's expf: {worst} ulp");
    assert_eq!(kernels::exp(-87.4f32), 0.0);
    assert_eq!(kernels::exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(kernels::exp(88.4f32), f32::INFINITY);
    assert_eq!(kernels::exp(0.0f32), 1.0);
}

/// `y = W x` and its backward in both precisions: `(y, dx, dW)` flattened.
fn linear<S: Float, const IN: usize, const OUT: usize, const N: usize>(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let xs: Vec<[S; IN]> = x.chunks(IN).map(arr::<S, IN>).collect();
    let dys: Vec<[S; OUT]> = dy.chunks(OUT).map(arr::<S, OUT>).collect();
    let w: [[S; IN]; OUT] = mat::<S, OUT, IN>(w);
    let mut wt = [[S::ZERO; OUT]; IN];
    kernels::transpose(&mut wt, &w);
    let mut y = vec![[S::ZERO; OUT]; N];
    ops::linear_forward(&mut y, &xs, &wt);
    let mut dx = vec![[S::ZERO; IN]; N];
    let mut dw = [[S::ZERO; IN]; OUT];
    ops::linear_backward(
        &mut dx,
        &mut dw,
        &dys,
        &xs,
        &w,
        ops::Put::Set,
        ops::Put::Set,
    );
    (
        flat(y.as_flattened()),
        flat(dx.as_flattened()),
        flat(dw.as_flattened()),
    )
}

/// Each output of a linear layer is one sum: of IN products (y), OUT (dx) or N rows (dW);
/// `M = (terms)·max|a|·max|b|` bounds its Σ|terms|. Shapes that fill the f32 tiles and
/// lanes and ones that leave tails.
#[test]
fn f32_linear_forward_and_backward_are_within_the_rounding_bound() {
    fn case<const IN: usize, const OUT: usize, const N: usize>(seed: u64) {
        let mut rng = Rng::pcg(seed);
        let (x, w, dy) = (
            randn(&mut rng, N * IN),
            randn(&mut rng, OUT * IN),
            randn(&mut rng, N * OUT),
        );
        let (y32, dx32, dw32) = linear::<f32, IN, OUT, N>(&x, &w, &dy);
        let (y64, dx64, dw64) = linear::<f64, IN, OUT, N>(&x, &w, &dy);
        let (mx, mw, mdy) = (max_abs(&x), max_abs(&w), max_abs(&dy));
        let what = format!("linear {IN}→{OUT}, {N} rows");
        assert_within(&format!("{what}: y"), &y32, &y64, IN, IN as f64 * mx * mw);
        assert_within(
            &format!("{what}: dx"),
            &dx32,
            &dx64,
            OUT,
            OUT as f64 * mdy * mw,
        );
        assert_within(&format!("{what}: dW"), &dw32, &dw64, N, N as f64 * mdy * mx);
    }
    case::<16, 16, 7>(1);
    case::<16, 27, 5>(2); // lm_head of micro
    case::<64, 256, 9>(3); // small's mlp_fc1: whole 32-column f32 tiles
    case::<256, 64, 3>(4);
    case::<13, 19, 6>(5); // tails everywhere
}

/// rmsnorm: `r = (Σx²/E + eps)^-½` is a sum of E squares (`M = Σx² `, relative error E·u,
/// halved by the square root), then one product per output; backward adds a dot product of E
/// terms and two more roundings. `n = E + 4` on outputs of size ≤ `max|y|`, `|dy|·r`.
#[test]
fn f32_rmsnorm_is_within_the_rounding_bound() {
    fn run<S: Float, const E: usize>(x: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let mut y = [S::ZERO; E];
        let r = ops::rmsnorm_forward(&mut y, &arr::<S, E>(x));
        let mut dx = [S::ZERO; E];
        ops::rmsnorm_backward(&mut dx, &arr::<S, E>(dy), &y, r);
        (flat(&y), flat(&dx))
    }
    fn case<const E: usize>(seed: u64) {
        let mut rng = Rng::pcg(seed);
        let (x, dy) = (randn(&mut rng, E), randn(&mut rng, E));
        let (y32, dx32) = run::<f32, E>(&x, &dy);
        let (y64, dx64) = run::<f64, E>(&x, &dy);
        let r = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / E as f64).sqrt();
        // |dx_i| ≤ r·|dy_i| + r·|y_i|·mean|dy⊙y|: both terms ≤ r·max|dy|·(1 + max|y|²)
        let m_dx = r * max_abs(&dy) * (1.0 + max_abs(&y64).powi(2));
        assert_within(&format!("rmsnorm {E}: y"), &y32, &y64, E + 4, max_abs(&y64));
        assert_within(&format!("rmsnorm {E}: dx"), &dx32, &dx64, 2 * E + 4, m_dx);
    }
    case::<16>(1);
    case::<64>(2);
    case::<13>(3); // not a multiple of the 16 lanes
}

/// Attention at position t. A logit `a_s = q·k_s/√D` is a sum of D products: off by ≤
/// `D·u·Λ`, `Λ = max Σ_d|q_d·k_s,d|/√D`; the softmax weights then by a relative ≤ `2·D·u·Λ`
/// (a shift δ of the logits moves `w_s` by a relative ≤ 2δ), plus exp's 2 ulp and a sum of
/// t+1 terms; `y = Σ w_s·v_s` (Σ w = 1) by ≤ `max|v|·u·(2DΛ + T + 8)`. Backward: `g_s = dy·v_s`
/// (≤ `P = max Σ_d|dy_d·v_s,d|`, D more roundings), `da = w ⊙ (g − w·g)` (Σ|da| ≤ 2P), then
/// `dq = Σ da_s·k_s/√D` and `dk_s = da_s·q/√D` (T more) and `dv_s = w_s·dy`.
#[test]
fn f32_attention_is_within_the_rounding_bound() {
    const T: usize = 16;
    const E: usize = 64;
    const H: usize = 4;
    const D: usize = 16;
    type Out = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);
    fn run<S: Float>(q: &[f64], k: &[f64], v: &[f64], dy: &[f64], t: usize) -> Out {
        let (qa, ka, va) = (arr::<S, E>(q), mat::<S, T, E>(k), mat::<S, T, E>(v));
        let mut y = [S::ZERO; E];
        let mut att = [[S::ZERO; T]; H];
        ops::attention_forward::<T, E, H, D, S>(&mut y, &mut att, &qa, &ka, &va, t);
        let mut dq = [S::ZERO; E];
        let mut dk = [[S::ZERO; E]; T];
        let mut dv = [[S::ZERO; E]; T];
        let dya = arr::<S, E>(dy);
        ops::attention_backward::<T, E, H, D, S>(
            &mut dq, &mut dk, &mut dv, &dya, &att, &qa, &ka, &va, t,
        );
        (
            flat(&y),
            flat(&dq),
            flat(dk.as_flattened()),
            flat(dv.as_flattened()),
        )
    }
    let mut rng = Rng::pcg(11);
    let (q, k, v, dy) = (
        randn(&mut rng, E),
        randn(&mut rng, T * E),
        randn(&mut rng, T * E),
        randn(&mut rng, E),
    );
    for t in [0, 5, T - 1] {
        let (y32, dq32, dk32, dv32) = run::<f32>(&q, &k, &v, &dy, t);
        let (y64, dq64, dk64, dv64) = run::<f64>(&q, &k, &v, &dy, t);
        let (mq, mk, mv, mdy) = (max_abs(&q), max_abs(&k), max_abs(&v), max_abs(&dy));
        // Λ and P over the heads and the keys 0..=t, as whole numbers of roundings
        let head_dot = |a: &[f64], b: &[f64], s: usize, h: usize| {
            (0..D)
                .map(|d| (a[h * D + d] * b[s * E + h * D + d]).abs())
                .sum::<f64>()
        };
        let pairs = || (0..=t).flat_map(|s| (0..H).map(move |h| (s, h)));
        let lambda = pairs()
            .map(|(s, h)| head_dot(&q, &k, s, h))
            .fold(0.0, f64::max);
        let lambda = (lambda / (D as f64).sqrt()).ceil() as usize;
        let p = pairs()
            .map(|(s, h)| head_dot(&dy, &v, s, h))
            .fold(0.0, f64::max);
        let n = 2 * D * lambda + D + 2 * T + 8;
        let (m_y, m_dv) = (mv, mdy);
        let (m_dq, m_dk) = (
            2.0 * p * mk / (D as f64).sqrt(),
            2.0 * p * mq / (D as f64).sqrt(),
        );
        assert_within(&format!("attention t {t}: y"), &y32, &y64, n, m_y);
        assert_within(&format!("attention t {t}: dq"), &dq32, &dq64, n, m_dq);
        assert_within(&format!("attention t {t}: dk"), &dk32, &dk64, n, m_dk);
        assert_within(&format!("attention t {t}: dv"), &dv32, &dv64, n, m_dv);
    }
}

/// Cross-entropy over V logits: max, exp (2 ulp), a sum of V terms, a product, a log; its
/// gradient `p − onehot` is within the same `(V + 8)·u` of the probabilities (≤ 1), the loss
/// within it of `1 + |loss|` (the log's absolute error is the relative one of its argument).
#[test]
fn f32_cross_entropy_is_within_the_rounding_bound() {
    const V: usize = 64;
    fn run<S: Float>(z: &[f64], target: usize, vocab: usize) -> (f64, Vec<f64>) {
        let mut p = [S::ZERO; V];
        let loss = ops::cross_entropy_forward(&mut p, &arr::<S, V>(z), target, vocab);
        let mut dz = [S::ONE; V];
        ops::cross_entropy_backward(&mut dz, &p, target, vocab, S::ONE, ops::Put::Set);
        (loss.to_f64(), flat(&dz))
    }
    let mut rng = Rng::pcg(5);
    let z: Vec<f64> = randn(&mut rng, V).iter().map(|x| 3.0 * x).collect();
    for (target, vocab) in [(3, 27), (0, 64), (40, 41)] {
        let (l32, dz32) = run::<f32>(&z, target, vocab);
        let (l64, dz64) = run::<f64>(&z, target, vocab);
        let what = format!("cross-entropy, vocab {vocab}");
        assert_within(
            &format!("{what}: loss"),
            &[l32],
            &[l64],
            V + 8,
            1.0 + l64.abs(),
        );
        assert_within(&format!("{what}: dz"), &dz32, &dz64, V + 8, 1.0);
    }
}

/// The f32 model and an f64 model with the same (f32) weights.
fn pair<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const D: usize,
    const F: usize,
    const L: usize,
>(
    seed: u64,
    vocab: usize,
) -> (Gpt<V, T, E, H, D, F, L, f32>, Gpt<V, T, E, H, D, F, L, f64>) {
    let m32 = Gpt::<V, T, E, H, D, F, L, f32>::new(vocab, &mut Rng::pcg(seed)).unwrap();
    let mut m64 = Gpt::<V, T, E, H, D, F, L, f64>::new(vocab, &mut Rng::pcg(seed)).unwrap();
    m64.set_params_flat(&m32.params_flat()).unwrap();
    assert_eq!(m64.params_flat(), m32.params_flat());
    (m32, m64)
}

/// The whole model's loss and every gradient tensor, f32 against f64 on the same weights and
/// documents. Each gradient element is the end of a chain of the ops above, forward then
/// backward: for micro, along the longest path, rmsnorm (E), q/k/v (E), attention
/// (D + 2T), attn_wo (E), rmsnorm (E), fc1 (E), fc2 (F), lm_head (E), the softmax (V) and
/// back through each, ≈ 2·(7·16 + 4 + 32 + 64 + 27) ≈ 480 roundings (small: ≈ 4 blocks of
/// 64-wide sums and F = 256, ≈ 2·(4·(5·64 + 256 + 36) + 64 + 27) ≈ 5,100). Per tensor the
/// normwise error `max|Δ| / max|g|` is then ≲ n·u·κ, κ the ratio of the terms' magnitudes to
/// the result's; with κ ≤ 10 that is ≤ 3e-4 (micro) and ≤ 3e-3 (small).
#[test]
fn f32_whole_model_loss_and_gradients_are_within_the_rounding_bound() {
    let mut rng = Rng::pcg(42);
    let (_, docs) = names(&mut rng);
    let batch: Vec<&[usize]> = (0..8).map(|i| docs.get(i)).collect();
    let inputs = StepInputs {
        dropout: None,
        token_mean: true,
    };
    fn check(
        what: &str,
        (l32, l64): (f64, f64),
        g32: &[f64],
        g64: &[f64],
        shape: &Shape,
        rel: f64,
    ) {
        let rows = per_tensor(shape, g32, g64);
        println!("{what}: loss {l32} vs {l64}; {}", report(&rows));
        assert!(
            (l32 - l64).abs() <= rel * l64,
            "{what}: loss {l32} vs {l64}"
        );
        for r in &rows {
            assert!(r.rel <= rel, "{what}: {} {:e} > {rel:e}", r.name, r.rel);
        }
    }
    {
        let (mut m32, mut m64) = pair::<27, 16, 16, 4, 4, 64, 1>(1, 27);
        let l32 = m32.loss_and_grad_batch(&batch, &inputs);
        let l64 = m64.loss_and_grad_batch(&batch, &inputs);
        let shape = m64.shape();
        check(
            "micro",
            (l32, l64),
            &m32.grads_flat(),
            &m64.grads_flat(),
            &shape,
            480.0 * U * 10.0,
        );
    }
    {
        let (mut m32, mut m64) = pair::<27, 16, 64, 4, 16, 256, 4>(2, 27);
        let l32 = m32.loss_and_grad_batch(&batch, &inputs);
        let l64 = m64.loss_and_grad_batch(&batch, &inputs);
        let shape = m64.shape();
        check(
            "small",
            (l32, l64),
            &m32.grads_flat(),
            &m64.grads_flat(),
            &shape,
            5100.0 * U * 10.0,
        );
    }
}

/// microgpt's 1,000 steps on names in f32 and f64 from the same initial (f32) weights: f32
/// learns as f64 does. Rounding differences compound through Adam's updates, so no per-step
/// bound is derived; instead the mean loss over the last 100 steps (the same 100 documents
/// for both) must agree within 0.01, a quarter of the standard error of such a mean
/// (per-document losses spread by ≈ 0.4, so ≈ 0.04 for 100), and both must have learnt
/// (from ln 27 ≈ 3.3 to below 2.5).
#[test]
fn f32_training_on_names_follows_f64() {
    let mut rng = Rng::pcg(42);
    let (tok, docs) = names(&mut rng);
    let (mut m32, mut m64) = pair::<27, 16, 16, 4, 4, 64, 1>(42, tok.vocab_size());
    let adam = Adam::default();
    let (mut l32, mut l64) = (Vec::new(), Vec::new());
    for step in 0..1000 {
        let a = adam.at(step, 1000);
        l32.push(m32.train_step(docs.get(step % docs.len()), &a));
        l64.push(m64.train_step(docs.get(step % docs.len()), &a));
    }
    let worst = l32
        .iter()
        .zip(&l64)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let mean = |l: &[f64]| l[900..].iter().sum::<f64>() / 100.0;
    let (e32, e64) = (mean(&l32), mean(&l64));
    println!(
        "last 100 steps: mean loss f32 {e32:.5}, f64 {e64:.5}; largest per-step |Δ| {worst:.2e}"
    );
    assert!((e32 - e64).abs() <= 0.01, "{e32} vs {e64}");
    assert!(e32 < 2.5 && e64 < 2.5, "{e32}, {e64}");
}

/// Where the gradient is 0, Adam's moments decay geometrically: in f32 they are flushed to 0
/// on reaching the subnormals (which are slow, and negligible in an update); in f64 the same
/// code computes the plain formula, bit for bit.
#[test]
fn f32_adam_flushes_moments_that_decay_into_the_subnormals() {
    let adam = Adam::default();
    let (mut p, mut m, mut v) = ([1.0f32], [1e-30f32], [1e-30f32]);
    let (mut p64, mut m64, mut v64) = ([1.0f64], [1e-30f64], [1e-30f64]);
    let mut m_plain = 1e-30f64;
    for step in 0..1000 {
        let a = adam.at(step, 1000);
        a.update(&mut p, &[0.0], &mut m, &mut v);
        a.update(&mut p64, &[0.0], &mut m64, &mut v64);
        m_plain *= adam.beta1;
        for x in [m[0], v[0]] {
            assert!(
                x == 0.0 || x >= f32::MIN_POSITIVE,
                "step {step}: subnormal {x:e}"
            );
        }
        assert_eq!(m64[0].to_bits(), m_plain.to_bits(), "step {step}");
    }
    assert_eq!(
        m[0], 0.0,
        "decayed below 1.2e-38 within 1,000 steps of β1 = 0.85"
    );
    assert!(
        m64[0] > 0.0 && m64[0] < 1e-100,
        "f64 keeps decaying: {:e}",
        m64[0]
    );
}

/// f32 training steps (micro, one thread; small, a batch on two threads) and a sample
/// allocate nothing, as f64's do.
#[test]
fn f32_training_steps_and_sampling_allocate_nothing() {
    let mut rng = Rng::pcg(42);
    let (tok, docs) = names(&mut rng);
    let vocab = tok.vocab_size();
    let adam = Adam::default();
    let mut micro = Micro32::new(vocab, &mut rng).unwrap();
    let mut small = Small32::new(vocab, &mut rng).unwrap();
    small.set_threads(2).unwrap();
    let batch: Vec<&[usize]> = (0..8).map(|i| docs.get(i)).collect();
    let inputs = StepInputs {
        dropout: microgpt::dropout::Dropout::at(0.1, 1, 0),
        token_mean: true,
    };
    // warm-up: the first batch of a size sizes its buffers
    small.train_batch(&batch, &adam.at(0, 100), &inputs);
    let mut last = 0.0;
    let n = count_allocations(|| {
        for step in 0..100 {
            last = micro.train_step(docs.get(step), &adam.at(step, 1000));
        }
        for step in 1..5 {
            small.train_batch(&batch, &adam.at(step, 100), &inputs);
        }
        for pos in 0..16 {
            std::hint::black_box(micro.forward_token(tok.bos(), pos));
        }
    });
    assert!(last.is_finite());
    assert_eq!(n, 0, "{n} allocations in f32 training and sampling");
}

/// Weights move between the precisions through the engine-neutral f64 vectors: f32 → f64 is
/// exact (the f64 model holds the same numbers), f64 → f32 rounds to nearest, and back to f32
/// again is the identity. Adam's moments too. `static_model_in` builds either.
#[test]
fn weights_and_moments_go_from_f32_to_f64_and_back_exactly() {
    let mut rng = Rng::pcg(42);
    let (tok, docs) = names(&mut rng);
    let mut m32 =
        presets::static_model_in(Precision::F32, "micro", tok.vocab_size(), &mut Rng::pcg(3))
            .unwrap();
    assert_eq!(m32.precision(), Precision::F32);
    let adam = Adam::default();
    for step in 0..20 {
        m32.train_batch(
            &[docs.get(step)],
            &adam.at(step, 1000),
            &StepInputs::MICROGPT,
        );
    }
    let (p, (m, v)) = (m32.params_flat(), m32.adam_flat());
    assert!(p.iter().all(|x| *x as f32 as f64 == *x), "f32 values");
    let mut m64 = Micro::new(tok.vocab_size(), &mut Rng::pcg(9)).unwrap();
    m64.set_params_flat(&p).unwrap();
    m64.set_adam_flat(&m, &v).unwrap();
    assert_eq!(common::bits(&m64.params_flat()), common::bits(&p));
    assert_eq!(common::bits(&m64.adam_flat().1), common::bits(&v));
    // one f64 step moves the weights off the f32 grid; into f32 they round to nearest
    m64.train_step(docs.get(20), &adam.at(20, 1000));
    let p64 = m64.params_flat();
    let mut back = Micro32::new(tok.vocab_size(), &mut Rng::pcg(9)).unwrap();
    back.set_params_flat(&p64).unwrap();
    let rounded: Vec<f64> = p64.iter().map(|x| *x as f32 as f64).collect();
    assert_eq!(common::bits(&back.params_flat()), common::bits(&rounded));
    assert!(p64.iter().zip(&rounded).any(|(a, b)| a != b));
}

// ------------------------------------------------------------------------------------------
// the command line: --float, and checkpoints of either precision

fn microgpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_microgpt"))
        .args(args)
        .output()
        .expect("run microgpt")
}

fn ok(o: Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An f32 run records `float: f32`; resumed in f32 it continues exactly (the same checkpoint
/// bytes as the run in one go); `sample` and `eval` read it in its own precision, and with
/// `--float f64` convert it (exactly: the eval loss agrees to rounding). `--float` on the
/// dynamic engine is one line of error.
#[test]
fn f32_checkpoints_record_their_precision_resume_exactly_and_load_in_f64() {
    let dir = std::env::temp_dir().join(format!("microgpt-f32-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let (whole, half, resumed) = (path("whole.st"), path("half.st"), path("resumed.st"));
    let common = [
        "--model",
        "small",
        "--batch-size",
        "4",
        "--no-progress",
        "--float",
        "f32",
    ];
    let run = |extra: &[&str]| ok(microgpt(&[&["train"], &common[..], extra].concat()));
    run(&["--steps", "12", "--out", &whole]);
    run(&["--steps", "6", "--total-steps", "12", "--out", &half]);
    ok(microgpt(&[
        "train",
        "--resume",
        &half,
        "--no-progress",
        "--out",
        &resumed,
    ]));
    assert_eq!(
        std::fs::read(&whole).unwrap(),
        std::fs::read(&resumed).unwrap()
    );
    let c = microgpt::checkpoint::Checkpoint::load(std::path::Path::new(&whole)).unwrap();
    assert_eq!(c.get("float").unwrap(), "f32");
    // the weights trained on are f32 values (small's recipe saves its average of them, kept
    // in f64, as the weights and the f32 ones beside it)
    let trained = c.raw.as_ref().unwrap_or(&c.params);
    assert!(trained.iter().all(|x| *x as f32 as f64 == *x));

    let docs = path("docs.txt");
    std::fs::write(&docs, "emma\nolivia\nava\nisabella\nsophia\n").unwrap();
    let loss = |float: Option<&str>| {
        let mut args = vec!["eval", "--checkpoint", &whole, "--data", &docs];
        if let Some(f) = float {
            args.extend(["--float", f]);
        }
        let out = ok(microgpt(&args));
        out.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let (own, as64) = (loss(None), loss(Some("f64")));
    // printed to 4 decimals, so they may differ by a unit of the last from rounding ~1e-5 apart
    assert!((own - as64).abs() <= 1.5e-4, "{own} vs {as64}");
    let s = ok(microgpt(&[
        "sample",
        "--checkpoint",
        &whole,
        "--num-samples",
        "3",
        "--float",
        "f64",
    ]));
    assert_eq!(s.lines().count(), 3);

    let o = microgpt(&["--engine", "dynamic", "--float", "f32", "--steps", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--float f32 is for the static engine"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
