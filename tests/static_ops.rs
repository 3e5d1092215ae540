//! Every op's backward against central finite differences of its forward.
//!
//! Each op's output `y` is reduced to a scalar `L = Σ c_i·y_i` with fixed random `c`; backward
//! is called with `dy = c`, and each input/weight gradient is compared with
//! `(L(x + h·e_j) − L(x − h·e_j)) / 2h`.
//!
//! Step and tolerance: with `h = 1e-5` the truncation error is `h²·|L'''|/6 ≈ 1e-11` for the
//! O(1) inputs used here, and the rounding error is `≈ ε·|L|/h`, with `|L| ≲ 50` here
//! `≈ 2e-16·50/1e-5 = 1e-9` (absolute; the largest seen is 1.1e-9, in the 16→64 linear).
//! So a gradient component passes when it agrees within 1e-7 relative or 1e-8 absolute (for
//! components near 0); a wrong derivative is off by O(|gradient|) ≈ 0.01–10.

use approx::assert_relative_eq;
use microgpt::gpt::{kernels, ops};
use microgpt::rng::Rng;

const H_STEP: f64 = 1e-5;
const ABS_TOL: f64 = 1e-8;
const REL_TOL: f64 = 1e-7;

fn randn(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gauss(0.0, 1.0)).collect()
}

fn arr<const N: usize>(s: &[f64]) -> [f64; N] {
    s.try_into().unwrap()
}

fn mat<const R: usize, const C: usize>(s: &[f64]) -> [[f64; C]; R] {
    let mut m = [[0.0; C]; R];
    m.as_flattened_mut().copy_from_slice(s);
    m
}

/// Central differences of `f` at `x`, one component at a time.
fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|j| {
            let x0 = xp[j];
            xp[j] = x0 + H_STEP;
            let lp = f(&xp);
            xp[j] = x0 - H_STEP;
            let lm = f(&xp);
            xp[j] = x0;
            (lp - lm) / (2.0 * H_STEP)
        })
        .collect()
}

fn check(what: &str, analytic: &[f64], numeric: &[f64]) {
    let worst = analytic
        .iter()
        .zip(numeric)
        .map(|(a, n)| (a - n).abs())
        .fold(0.0, f64::max);
    println!("{what}: largest |analytic − numeric| = {worst:.3e}");
    assert_relative_eq!(
        analytic[..],
        numeric[..],
        epsilon = ABS_TOL,
        max_relative = REL_TOL
    );
}

fn weighted(c: &[f64], y: &[f64]) -> f64 {
    c.iter().zip(y).map(|(a, b)| a * b).sum()
}

#[test]
fn embedding_backward_matches_finite_differences() {
    const V: usize = 5;
    const T: usize = 4;
    const E: usize = 6;
    let mut rng = Rng::pcg(1);
    let wte = randn(&mut rng, V * E);
    let wpe = randn(&mut rng, T * E);
    let c = randn(&mut rng, E);
    let (token, pos) = (3, 2);
    let loss = |wte: &[f64], wpe: &[f64]| {
        let mut y = [0.0; E];
        ops::embedding_forward(&mut y, token, pos, &mat::<V, E>(wte), &mat::<T, E>(wpe));
        weighted(&c, &y)
    };
    let mut dwte = [[0.0; E]; V];
    let mut dwpe = [[0.0; E]; T];
    ops::embedding_backward(&mut dwte, &mut dwpe, &arr::<E>(&c), token, pos);
    check(
        "embedding dwte",
        dwte.as_flattened(),
        &numeric_grad(&wte, |w| loss(w, &wpe)),
    );
    check(
        "embedding dwpe",
        dwpe.as_flattened(),
        &numeric_grad(&wpe, |w| loss(&wte, w)),
    );
}

#[test]
fn rmsnorm_backward_matches_finite_differences() {
    fn case<const E: usize>(seed: u64) {
        let mut rng = Rng::pcg(seed);
        let x = randn(&mut rng, E);
        let c = randn(&mut rng, E);
        let loss = |x: &[f64]| {
            let mut y = [0.0; E];
            ops::rmsnorm_forward(&mut y, &arr::<E>(x));
            weighted(&c, &y)
        };
        let mut y = [0.0; E];
        let r = ops::rmsnorm_forward(&mut y, &arr::<E>(&x));
        // forward: r = (mean(x²) + 1e-5)^-½
        let ms = x.iter().map(|v| v * v).sum::<f64>() / E as f64;
        assert_relative_eq!(r, (ms + 1e-5).powf(-0.5), max_relative = 1e-15);
        // backward accumulates: start from a non-zero gradient
        let mut dx = [0.5; E];
        ops::rmsnorm_backward(&mut dx, &arr::<E>(&c), &y, r);
        let numeric: Vec<f64> = numeric_grad(&x, loss).iter().map(|g| g + 0.5).collect();
        check(&format!("rmsnorm dx (E {E})"), &dx, &numeric);
    }
    case::<16>(2);
    case::<13>(3); // not a multiple of the 8 lanes: exercises the tail of the dot product
}

/// `kernels::transpose` moves every element to its mirrored place, for sizes that fill its
/// 8×8 tiles exactly, leave edges on either side, or are smaller than one tile; in both
/// precisions (with AVX-512 each has its own tile permutes, `wide::transpose8_*`).
#[test]
fn transpose_mirrors_every_element() {
    fn case<const IN: usize, const OUT: usize>(seed: u64) {
        let mut rng = Rng::pcg(seed);
        let w = mat::<OUT, IN>(&randn(&mut rng, IN * OUT));
        let mut wt = [[f64::NAN; OUT]; IN];
        kernels::transpose(&mut wt, &w);
        let w32 = w.map(|row| row.map(|x| x as f32));
        let mut wt32 = [[f32::NAN; OUT]; IN];
        kernels::transpose(&mut wt32, &w32);
        for (o, row) in w.iter().enumerate() {
            for (i, &x) in row.iter().enumerate() {
                assert_eq!(
                    wt[i][o].to_bits(),
                    x.to_bits(),
                    "({IN}, {OUT}) at o {o}, i {i}"
                );
                assert_eq!(
                    wt32[i][o].to_bits(),
                    w32[o][i].to_bits(),
                    "f32 ({IN}, {OUT}) at o {o}, i {i}"
                );
            }
        }
    }
    case::<16, 16>(1);
    case::<16, 27>(2); // lm_head of micro: 27 rows
    case::<64, 16>(3);
    case::<13, 19>(4);
    case::<5, 3>(5);
}

/// Rows of `N` from a flat slice.
fn rows<const N: usize>(s: &[f64]) -> Vec<[f64; N]> {
    s.chunks(N).map(arr::<N>).collect()
}

/// `y_t = W x_t` for the rows of `x` through `ops::linear_forward` (which reads `Wᵀ`).
fn linear<const IN: usize, const OUT: usize>(x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut wt = [[0.0; OUT]; IN];
    kernels::transpose(&mut wt, &mat::<OUT, IN>(w));
    let x = rows::<IN>(x);
    let mut y = vec![[0.0; OUT]; x.len()];
    ops::linear_forward(&mut y, &x, &wt);
    y.as_flattened().to_vec()
}

/// `ops::linear_backward` on the rows of `x` with `dy = c`, accumulating into `dx` and `dw`.
fn linear_grad<const IN: usize, const OUT: usize>(
    dx: &mut [f64],
    dw: &mut [[f64; IN]; OUT],
    c: &[f64],
    x: &[f64],
    w: &[f64],
) {
    let mut dxr = rows::<IN>(dx);
    ops::linear_backward(
        &mut dxr,
        dw,
        &rows::<OUT>(c),
        &rows::<IN>(x),
        &mat::<OUT, IN>(w),
        ops::Put::Add,
        ops::Put::Add,
    );
    dx.copy_from_slice(dxr.as_flattened());
}

#[test]
fn linear_backward_matches_finite_differences() {
    fn case<const IN: usize, const OUT: usize>(seed: u64, n: usize) {
        let mut rng = Rng::pcg(seed);
        let x = randn(&mut rng, n * IN);
        let w = randn(&mut rng, OUT * IN);
        let c = randn(&mut rng, n * OUT);
        let loss = |x: &[f64], w: &[f64]| weighted(&c, &linear::<IN, OUT>(x, w));
        // forward against the definition y_t,o = Σ_i W[o][i]·x_t,i
        let y = linear::<IN, OUT>(&x, &w);
        let mut naive = vec![0.0; n * OUT];
        for t in 0..n {
            for o in 0..OUT {
                naive[t * OUT + o] = (0..IN).map(|i| w[o * IN + i] * x[t * IN + i]).sum();
            }
        }
        assert_relative_eq!(y[..], naive[..], epsilon = 1e-14, max_relative = 1e-13);

        let mut dx = vec![0.0; n * IN];
        let mut dw = [[0.0; IN]; OUT];
        linear_grad(&mut dx, &mut dw, &c, &x, &w);
        let what = format!("linear {IN}→{OUT} over {n} rows");
        check(
            &format!("{what} dx"),
            &dx,
            &numeric_grad(&x, |x| loss(x, &w)),
        );
        check(
            &format!("{what} dW"),
            dw.as_flattened(),
            &numeric_grad(&w, |w| loss(&x, w)),
        );
        // a second backward accumulates: twice the gradient (to rounding: the sums are split
        // over partial accumulators, so the second pass rounds differently; overwriting instead
        // of accumulating would be off by a factor 2)
        let (dx1, dw1) = (dx.clone(), dw);
        linear_grad(&mut dx, &mut dw, &c, &x, &w);
        let twice = |a: &[f64]| a.iter().map(|v| 2.0 * v).collect::<Vec<f64>>();
        assert_relative_eq!(dx[..], twice(&dx1)[..], max_relative = 1e-12);
        assert_relative_eq!(
            dw.as_flattened()[..],
            twice(dw1.as_flattened())[..],
            max_relative = 1e-12
        );
    }
    case::<16, 16>(4, 1);
    case::<16, 64>(5, 3);
    case::<64, 16>(6, 2);
    case::<5, 3>(7, 4);
    case::<13, 27>(8, 5);
    // every remainder after whole tiles of six or four rows, on both sides of the product:
    // dW rows (OUT) 5, 11, 8, 13, 7; batch rows (n) 7, 6, 2, 5, 1
    case::<4, 5>(14, 7);
    case::<7, 11>(15, 6);
    case::<9, 8>(16, 2);
    case::<3, 13>(17, 5);
    case::<10, 7>(18, 1);
}

/// `Put::Set` writes the gradient over whatever the buffers hold and gives the bits `Add`
/// gives into zeroed buffers; mixed, each buffer follows its own mode.
#[test]
fn linear_backward_set_overwrites_with_the_bits_of_add_into_zeros() {
    fn case<const IN: usize, const OUT: usize>(seed: u64, n: usize) {
        let mut rng = Rng::pcg(seed);
        let x: Vec<[f64; IN]> = (0..n).map(|_| arr(&randn(&mut rng, IN))).collect();
        let dy: Vec<[f64; OUT]> = (0..n).map(|_| arr(&randn(&mut rng, OUT))).collect();
        let w = mat::<OUT, IN>(&randn(&mut rng, OUT * IN));
        let old_dx: Vec<[f64; IN]> = (0..n).map(|_| arr(&randn(&mut rng, IN))).collect();
        let old_dw = mat::<OUT, IN>(&randn(&mut rng, OUT * IN));
        let run = |dx0: &[[f64; IN]], dw0: &[[f64; IN]; OUT], into_dx, into_dw| {
            let (mut dx, mut dw) = (dx0.to_vec(), *dw0);
            ops::linear_backward(&mut dx, &mut dw, &dy, &x, &w, into_dx, into_dw);
            (dx, dw)
        };
        let zeros = vec![[0.0; IN]; n];
        let (add_dx, add_dw) = run(&zeros, &[[0.0; IN]; OUT], ops::Put::Add, ops::Put::Add);
        let (set_dx, set_dw) = run(&old_dx, &old_dw, ops::Put::Set, ops::Put::Set);
        let bits = |a: &[f64]| a.iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
        assert_eq!(bits(set_dx.as_flattened()), bits(add_dx.as_flattened()));
        assert_eq!(bits(set_dw.as_flattened()), bits(add_dw.as_flattened()));
        // Add keeps what was there, Set replaces it: dx added, dW written over
        let (mixed_dx, mixed_dw) = run(&old_dx, &old_dw, ops::Put::Add, ops::Put::Set);
        assert_eq!(bits(mixed_dw.as_flattened()), bits(add_dw.as_flattened()));
        let sum: Vec<f64> = (old_dx.as_flattened().iter())
            .zip(add_dx.as_flattened())
            .map(|(a, b)| a + b)
            .collect();
        assert_relative_eq!(mixed_dx.as_flattened()[..], sum[..], max_relative = 1e-12);
        assert!(mixed_dx != add_dx, "Add dropped what dx held");
    }
    case::<16, 64>(11, 3);
    case::<64, 16>(12, 5);
    case::<13, 27>(13, 1);
}

#[test]
fn softmax_backward_matches_finite_differences() {
    let mut rng = Rng::pcg(9);
    let x = randn(&mut rng, 7);
    let c = randn(&mut rng, 7);
    let loss = |x: &[f64]| {
        let mut p = [0.0; 7];
        ops::softmax_forward(&mut p, x);
        weighted(&c, &p)
    };
    let mut p = [0.0; 7];
    ops::softmax_forward(&mut p, &x);
    assert_relative_eq!(p.iter().sum::<f64>(), 1.0, max_relative = 1e-15);
    let mut dx = [0.0; 7];
    ops::softmax_backward(&mut dx, &c, &p);
    check("softmax dx", &dx, &numeric_grad(&x, loss));
}

#[test]
fn attention_backward_matches_finite_differences() {
    fn case<const T: usize, const E: usize, const H: usize, const D: usize>(seed: u64, t: usize) {
        let mut rng = Rng::pcg(seed);
        let q = randn(&mut rng, E);
        let k = randn(&mut rng, T * E);
        let v = randn(&mut rng, T * E);
        let c = randn(&mut rng, E);
        let loss = |q: &[f64], k: &[f64], v: &[f64]| {
            let mut y = [0.0; E];
            let mut att = [[0.0; T]; H];
            ops::attention_forward::<T, E, H, D, f64>(
                &mut y,
                &mut att,
                &arr::<E>(q),
                &mat::<T, E>(k),
                &mat::<T, E>(v),
                t,
            );
            weighted(&c, &y)
        };
        let mut y = [0.0; E];
        let mut att = [[0.0; T]; H];
        let (qa, ka, va) = (arr::<E>(&q), mat::<T, E>(&k), mat::<T, E>(&v));
        ops::attention_forward::<T, E, H, D, f64>(&mut y, &mut att, &qa, &ka, &va, t);
        for w in &att {
            assert_relative_eq!(w[..=t].iter().sum::<f64>(), 1.0, max_relative = 1e-15);
        }
        let mut dq = [0.0; E];
        let mut dk = [[0.0; E]; T];
        let mut dv = [[0.0; E]; T];
        ops::attention_backward::<T, E, H, D, f64>(
            &mut dq,
            &mut dk,
            &mut dv,
            &arr::<E>(&c),
            &att,
            &qa,
            &ka,
            &va,
            t,
        );
        let what = format!("attention T {T} E {E} H {H} D {D} at t {t}");
        check(
            &format!("{what} dq"),
            &dq,
            &numeric_grad(&q, |q| loss(q, &k, &v)),
        );
        // rows after t are not attended to: their numeric gradient is exactly 0 and so is ours
        check(
            &format!("{what} dk"),
            dk.as_flattened(),
            &numeric_grad(&k, |k| loss(&q, k, &v)),
        );
        check(
            &format!("{what} dv"),
            dv.as_flattened(),
            &numeric_grad(&v, |v| loss(&q, &k, v)),
        );
    }
    case::<5, 8, 2, 4>(10, 3);
    case::<5, 8, 2, 4>(11, 0);
    case::<5, 8, 2, 4>(12, 4);
    case::<16, 16, 4, 4>(13, 9);
    case::<6, 12, 4, 3>(14, 5); // √D irrational
}

#[test]
fn relu_backward_matches_finite_differences() {
    let mut rng = Rng::pcg(15);
    // keep inputs away from the kink at 0, where the derivative is not defined
    let x: Vec<f64> = randn(&mut rng, 12)
        .into_iter()
        .map(|v| if v.abs() < 0.1 { v + 0.3 } else { v })
        .collect();
    let c = randn(&mut rng, 12);
    let loss = |x: &[f64]| {
        let mut y = [0.0; 12];
        ops::relu_forward(&mut y, &arr::<12>(x));
        weighted(&c, &y)
    };
    let mut y = [0.0; 12];
    ops::relu_forward(&mut y, &arr::<12>(&x));
    assert!(y.contains(&0.0) && y.iter().any(|&v| v > 0.0));
    let mut dx = [0.0; 12];
    ops::relu_backward(&mut dx, &arr::<12>(&c), &y, ops::Put::Add);
    check("relu dx", &dx, &numeric_grad(&x, loss));
    // `Set` writes over whatever is there: the bits of `Add` into 0
    let mut set = [7.0; 12];
    ops::relu_backward(&mut set, &arr::<12>(&c), &y, ops::Put::Set);
    assert_eq!(set.map(f64::to_bits), dx.map(f64::to_bits));
}

#[test]
fn residual_backward_matches_finite_differences() {
    let mut rng = Rng::pcg(16);
    let a = randn(&mut rng, 9);
    let b = randn(&mut rng, 9);
    let c = randn(&mut rng, 9);
    let loss = |a: &[f64], b: &[f64]| {
        let mut y = [0.0; 9];
        ops::residual_forward(&mut y, &arr::<9>(a), &arr::<9>(b));
        weighted(&c, &y)
    };
    let mut da = [0.0; 9];
    let mut db = [0.0; 9];
    ops::residual_backward(&mut da, &mut db, &arr::<9>(&c));
    check("residual da", &da, &numeric_grad(&a, |a| loss(a, &b)));
    check("residual db", &db, &numeric_grad(&b, |b| loss(&a, b)));
}

#[test]
fn cross_entropy_backward_matches_finite_differences_on_the_real_vocabulary() {
    const V: usize = 10;
    let vocab = 7;
    let target = 4;
    let mut rng = Rng::pcg(17);
    let mut z = randn(&mut rng, V);
    // garbage beyond the real vocabulary must not matter
    for x in &mut z[vocab..] {
        *x = 1e3;
    }
    let loss = |z: &[f64]| {
        let mut p = [0.0; V];
        ops::cross_entropy_forward(&mut p, &arr::<V>(z), target, vocab)
    };
    let mut p = [0.0; V];
    let l = ops::cross_entropy_forward(&mut p, &arr::<V>(&z), target, vocab);
    // −ln softmax(z[..vocab])[target], written out
    let m = z[..vocab].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z[..vocab].iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    assert_relative_eq!(l, lse - z[target], max_relative = 1e-14);
    assert!(p[vocab..].iter().all(|&v| v == 0.0));
    let dloss = 0.25;
    let mut dz = [0.0; V];
    ops::cross_entropy_backward(&mut dz, &p, target, vocab, dloss, ops::Put::Add);
    let numeric: Vec<f64> = numeric_grad(&z, loss).iter().map(|g| g * dloss).collect();
    check("cross-entropy dz", &dz, &numeric);
    assert!(dz[vocab..].iter().all(|&v| v == 0.0));
    // `Set` writes over whatever is there, beyond the vocabulary too: the bits of `Add` into 0
    let mut set = [7.0; V];
    ops::cross_entropy_backward(&mut set, &p, target, vocab, dloss, ops::Put::Set);
    assert_eq!(set.map(f64::to_bits), dz.map(f64::to_bits));
}

// ------------------------------------------------------------------------------------------
// Against the autograd tape: the same op built from the reference's scalar nodes, the same
// `L = Σ c_i·y_i`, `backward`, and the leaves' gradients. Both are exact derivatives computed
// in f64 in different orders, so they agree to rounding: relative 1e-10 per component, with
// an absolute floor of 1e-14 for components that are 0 up to cancellation.

use microgpt::autograd::{Tape, Var};
use microgpt::reference::{self, Mat};

const TAPE_REL: f64 = 1e-10;
const TAPE_ABS: f64 = 1e-14;

/// Puts each input on a fresh tape as leaves, builds `y = build(tape, leaves)` and
/// `L = Σ c_i·y_i`, runs backward; returns the values of `y` and each input's gradient.
fn on_tape(
    inputs: &[&[f64]],
    c: &[f64],
    build: impl FnOnce(&mut Tape, &[Vec<Var>]) -> Vec<Var>,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut t = Tape::new();
    let leaves: Vec<Vec<Var>> = inputs
        .iter()
        .map(|xs| xs.iter().map(|&x| t.leaf(x)).collect())
        .collect();
    let y = build(&mut t, &leaves);
    assert_eq!(y.len(), c.len());
    let cs: Vec<Var> = c.iter().map(|&x| t.leaf(x)).collect();
    let l = t.dot(cs, y.iter().copied());
    t.backward(l);
    let values = y.iter().map(|&v| t.data(v)).collect();
    let grads = leaves
        .iter()
        .map(|ls| ls.iter().map(|&v| t.grad(v)).collect())
        .collect();
    (values, grads)
}

fn check_tape(what: &str, ours: &[f64], tape: &[f64]) {
    assert_eq!(ours.len(), tape.len(), "{what}");
    let worst = ours
        .iter()
        .zip(tape)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!("{what}: largest |static − tape| = {worst:.3e}");
    assert_relative_eq!(ours, tape, epsilon = TAPE_ABS, max_relative = TAPE_REL);
}

#[test]
fn embedding_matches_the_tape() {
    const V: usize = 5;
    const T: usize = 4;
    const E: usize = 6;
    let mut rng = Rng::pcg(21);
    let (wte, wpe, c) = (
        randn(&mut rng, V * E),
        randn(&mut rng, T * E),
        randn(&mut rng, E),
    );
    let (token, pos) = (1, 3);
    let (y_tape, g) = on_tape(&[&wte, &wpe], &c, |t, l| {
        (0..E)
            .map(|i| t.add(l[0][token * E + i], l[1][pos * E + i]))
            .collect()
    });
    let mut y = [0.0; E];
    ops::embedding_forward(&mut y, token, pos, &mat::<V, E>(&wte), &mat::<T, E>(&wpe));
    check_tape("embedding y", &y, &y_tape);
    let mut dwte = [[0.0; E]; V];
    let mut dwpe = [[0.0; E]; T];
    ops::embedding_backward(&mut dwte, &mut dwpe, &arr::<E>(&c), token, pos);
    check_tape("embedding dwte", dwte.as_flattened(), &g[0]);
    check_tape("embedding dwpe", dwpe.as_flattened(), &g[1]);
}

#[test]
fn rmsnorm_matches_the_tape() {
    const E: usize = 16;
    let mut rng = Rng::pcg(22);
    let (x, c) = (randn(&mut rng, E), randn(&mut rng, E));
    let (y_tape, g) = on_tape(&[&x], &c, |t, l| reference::rmsnorm(t, &l[0]));
    let mut y = [0.0; E];
    let r = ops::rmsnorm_forward(&mut y, &arr::<E>(&x));
    check_tape("rmsnorm y", &y, &y_tape);
    let mut dx = [0.0; E];
    ops::rmsnorm_backward(&mut dx, &arr::<E>(&c), &y, r);
    check_tape("rmsnorm dx", &dx, &g[0]);
}

#[test]
fn linear_matches_the_tape() {
    fn case<const IN: usize, const OUT: usize>(seed: u64) {
        let mut rng = Rng::pcg(seed);
        let (x, w, c) = (
            randn(&mut rng, IN),
            randn(&mut rng, OUT * IN),
            randn(&mut rng, OUT),
        );
        // W goes on the tape as a `Mat` (consecutive leaves), so this one is built by hand
        let mut t = Tape::new();
        let xl: Vec<Var> = x.iter().map(|&v| t.leaf(v)).collect();
        let m = Mat::leaves(&mut t, OUT, IN, &w);
        let y = reference::linear(&mut t, &xl, &m);
        let cs: Vec<Var> = c.iter().map(|&v| t.leaf(v)).collect();
        let l = t.dot(cs, y.iter().copied());
        t.backward(l);
        let y_tape: Vec<f64> = y.iter().map(|&v| t.data(v)).collect();
        let dx_tape: Vec<f64> = xl.iter().map(|&v| t.grad(v)).collect();
        let dw_tape: Vec<f64> = (0..OUT)
            .flat_map(|o| m.row(o).collect::<Vec<_>>())
            .map(|v| t.grad(v))
            .collect();

        check_tape(
            &format!("linear {IN}→{OUT} y"),
            &linear::<IN, OUT>(&x, &w),
            &y_tape,
        );
        let mut dx = [0.0; IN];
        let mut dw = [[0.0; IN]; OUT];
        linear_grad(&mut dx, &mut dw, &c, &x, &w);
        check_tape(&format!("linear {IN}→{OUT} dx"), &dx, &dx_tape);
        check_tape(
            &format!("linear {IN}→{OUT} dW"),
            dw.as_flattened(),
            &dw_tape,
        );
    }
    case::<16, 16>(23);
    case::<16, 64>(24);
    case::<64, 16>(25);
    case::<13, 27>(26);
}

#[test]
fn softmax_matches_the_tape() {
    let mut rng = Rng::pcg(27);
    let (x, c) = (randn(&mut rng, 9), randn(&mut rng, 9));
    let (y_tape, g) = on_tape(&[&x], &c, |t, l| reference::softmax(t, &l[0]));
    let mut p = [0.0; 9];
    ops::softmax_forward(&mut p, &x);
    check_tape("softmax y", &p, &y_tape);
    let mut dx = [0.0; 9];
    ops::softmax_backward(&mut dx, &c, &p);
    check_tape("softmax dx", &dx, &g[0]);
}

#[test]
fn attention_matches_the_tape() {
    fn case<const T: usize, const E: usize, const H: usize, const D: usize>(seed: u64, t: usize) {
        let mut rng = Rng::pcg(seed);
        let (q, k, v) = (
            randn(&mut rng, E),
            randn(&mut rng, T * E),
            randn(&mut rng, T * E),
        );
        let c = randn(&mut rng, E);
        let (y_tape, g) = on_tape(&[&q, &k, &v], &c, |tape, l| {
            // the reference's KV cache holds exactly positions 0..=t
            let keys: Vec<Vec<Var>> = l[1].chunks(E).take(t + 1).map(<[Var]>::to_vec).collect();
            let values: Vec<Vec<Var>> = l[2].chunks(E).take(t + 1).map(<[Var]>::to_vec).collect();
            reference::attention(tape, &l[0], &keys, &values, H)
        });
        let (qa, ka, va) = (arr::<E>(&q), mat::<T, E>(&k), mat::<T, E>(&v));
        let mut y = [0.0; E];
        let mut att = [[0.0; T]; H];
        ops::attention_forward::<T, E, H, D, f64>(&mut y, &mut att, &qa, &ka, &va, t);
        let what = format!("attention T {T} E {E} H {H} D {D} at t {t}");
        check_tape(&format!("{what} y"), &y, &y_tape);
        let mut dq = [0.0; E];
        let mut dk = [[0.0; E]; T];
        let mut dv = [[0.0; E]; T];
        ops::attention_backward::<T, E, H, D, f64>(
            &mut dq,
            &mut dk,
            &mut dv,
            &arr::<E>(&c),
            &att,
            &qa,
            &ka,
            &va,
            t,
        );
        check_tape(&format!("{what} dq"), &dq, &g[0]);
        check_tape(&format!("{what} dk"), dk.as_flattened(), &g[1]);
        check_tape(&format!("{what} dv"), dv.as_flattened(), &g[2]);
    }
    case::<16, 16, 4, 4>(28, 0);
    case::<16, 16, 4, 4>(29, 7);
    case::<16, 16, 4, 4>(30, 15);
    case::<8, 8, 2, 4>(31, 5);
    case::<6, 12, 4, 3>(32, 5);
}

#[test]
fn relu_and_residual_match_the_tape() {
    let mut rng = Rng::pcg(33);
    let (a, b, c) = (
        randn(&mut rng, 16),
        randn(&mut rng, 16),
        randn(&mut rng, 16),
    );
    let (y_tape, g) = on_tape(&[&a], &c, |t, l| l[0].iter().map(|&x| t.relu(x)).collect());
    let mut y = [0.0; 16];
    ops::relu_forward(&mut y, &arr::<16>(&a));
    check_tape("relu y", &y, &y_tape);
    let mut dx = [0.0; 16];
    ops::relu_backward(&mut dx, &arr::<16>(&c), &y, ops::Put::Add);
    check_tape("relu dx", &dx, &g[0]);

    let (y_tape, g) = on_tape(&[&a, &b], &c, |t, l| {
        l[0].iter().zip(&l[1]).map(|(&x, &y)| t.add(x, y)).collect()
    });
    ops::residual_forward(&mut y, &arr::<16>(&a), &arr::<16>(&b));
    check_tape("residual y", &y, &y_tape);
    let (mut da, mut db) = ([0.0; 16], [0.0; 16]);
    ops::residual_backward(&mut da, &mut db, &arr::<16>(&c));
    check_tape("residual da", &da, &g[0]);
    check_tape("residual db", &db, &g[1]);
}

#[test]
fn cross_entropy_matches_the_tape_on_the_real_vocabulary() {
    const V: usize = 32;
    let vocab = 27;
    let mut rng = Rng::pcg(34);
    let z = randn(&mut rng, V);
    for target in [0, 13, 26] {
        // the tape sees only the real logits
        let (loss_tape, g) = on_tape(&[&z[..vocab]], &[1.0], |t, l| {
            vec![reference::cross_entropy(t, &l[0], target)]
        });
        let mut p = [0.0; V];
        let loss = ops::cross_entropy_forward(&mut p, &arr::<V>(&z), target, vocab);
        check_tape("cross-entropy loss", &[loss], &loss_tape);
        let mut dz = [0.0; V];
        ops::cross_entropy_backward(&mut dz, &p, target, vocab, 1.0, ops::Put::Add);
        check_tape("cross-entropy dz", &dz[..vocab], &g[0]);
        assert!(dz[vocab..].iter().all(|&x| x == 0.0));
    }
}

#[test]
fn exp_is_within_two_ulp_of_libm() {
    // the range the softmaxes use (x − max ≤ 0) and beyond, on a fine grid plus random points
    let mut rng = Rng::pcg(35);
    let grid = (0..200_001).map(|i| -700.0 + 0.0035 * i as f64);
    let random = (0..100_000).map(|_| rng.gauss(0.0, 20.0));
    let mut worst: f64 = 0.0;
    for x in grid
        .chain(random)
        .chain([0.0, -0.0, 1e-300, -1e-300, 0.5, -0.5, 709.0, -708.0])
    {
        let (ours, libm) = (kernels::exp(x), x.exp());
        let ulp = (libm.to_bits() as i64 - ours.to_bits() as i64).abs();
        worst = worst.max(ulp as f64);
        assert!(ulp <= 2, "exp({x:e}) = {ours:e}, libm {libm:e} ({ulp} ulp)");
    }
    println!("largest difference from libm: {worst} ulp");
    assert_eq!(kernels::exp(-800.0), 0.0);
    assert_eq!(kernels::exp(f64::NEG_INFINITY), 0.0);
    assert_eq!(kernels::exp(800.0), f64::INFINITY);
}
