//! One op, forward + backward, for one position: the static engine's `ops` pair (in f64,
//! `static`, and in f32, `static_f32`, on the same inputs rounded) vs the same op built on the
//! autograd tape (`reference::{linear, attention, rmsnorm, cross_entropy}`), at the
//! micro model's sizes, on the same random inputs.
//!
//! The dynamic entry is what a training step pays for the op: build its graph on a tape that
//! already holds the inputs as leaves, sweep backward, and `truncate` back to the leaves, so
//! the tape's buffers are reused from one iteration to the next (as the reference model reuses
//! them from one step to the next). The tape seeds backward at one scalar node, so an op with a
//! vector output `y` gets the upstream gradient `dy` as the root `L = Σ dy_i·y_i` (one
//! `mul_const` node per output and one sum node, which the static entry does not need);
//! cross-entropy's output is the scalar loss itself.
//!
//! Gradients accumulate across iterations in both entries (the static backward `+=`s into its
//! gradient arrays, the tape keeps its leaves' gradients when it truncates); neither zeroes.
//! Throughput: one position per call (`op_adam_4192`: one parameter; `op_linear_64x256_224rows`,
//! the `small` model's largest product over a minibatch's rows: one position).

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use microgpt::autograd::{Tape, Var};
use microgpt::float::Float;
use microgpt::gpt::{kernels, ops};
use microgpt::reference::{self, Mat};
use microgpt::rng::Rng;

// microgpt's sizes: n_embd, heads, head dim, MLP width, block size, vocabulary of names.txt
const E: usize = 16;
const H: usize = 4;
const D: usize = 4;
const F: usize = 64;
const T: usize = 16;
const V: usize = 27;

fn randn<const N: usize>(rng: &mut Rng) -> [f64; N] {
    std::array::from_fn(|_| rng.gauss(0.0, 1.0))
}

fn randn_mat<const R: usize, const C: usize>(rng: &mut Rng) -> [[f64; C]; R] {
    std::array::from_fn(|_| randn(rng))
}

fn leaves(t: &mut Tape, xs: &[f64]) -> Vec<Var> {
    xs.iter().map(|&x| t.leaf(x)).collect()
}

/// `L = Σ dy_i·y_i`: the root whose backward hands `dy` to the outputs `y`.
fn seed(t: &mut Tape, y: &[Var], dy: &[f64]) -> Var {
    let first = t.len();
    for (&yi, &c) in y.iter().zip(dy) {
        t.mul_const(yi, c);
    }
    let last = t.len();
    t.sum_iter((first..last).map(Var::from_index))
}

/// `mlp_fc1`, the largest matrix of a block: `y = W x`, `x` of `E`, `y` of `F`.
fn linear(c: &mut Criterion) {
    let mut rng = Rng::pcg(1);
    let x: [f64; E] = randn(&mut rng);
    let w: [[f64; E]; F] = randn_mat(&mut rng);
    let dy: [f64; F] = randn(&mut rng);
    let mut g = c.benchmark_group("op_linear_16x64");
    g.throughput(Throughput::Elements(1));

    linear_static::<f64>(&mut g, "static", &x, &w, &dy);
    linear_static::<f32>(&mut g, "static_f32", &x, &w, &dy);

    let mut t = Tape::new();
    let xv = leaves(&mut t, &x);
    let wm = Mat::leaves(&mut t, F, E, w.as_flattened());
    let inputs = t.len();
    g.bench_function("dynamic", |b| {
        b.iter(|| {
            t.truncate(inputs);
            let y = reference::linear(&mut t, black_box(&xv), &wm);
            let root = seed(&mut t, &y, black_box(&dy));
            t.backward(root);
            black_box(t.grads());
        })
    });
    g.finish();
}

/// The static entry of [`linear`] in precision `S` (the inputs rounded to it).
fn linear_static<S: Float>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    x: &[f64; E],
    w: &[[f64; E]; F],
    dy: &[f64; F],
) {
    let (x, dy): ([S; E], [S; F]) = (to(x), to(dy));
    let w: [[S; E]; F] = w.map(|r| to(&r));
    // the ops take rows (here one) and the forward reads W through its transpose, which the
    // model keeps next to W
    let mut wt = [[S::ZERO; F]; E];
    kernels::transpose(&mut wt, &w);
    let (mut y, mut dx, mut dw) = ([[S::ZERO; F]], [[S::ZERO; E]], [[S::ZERO; E]; F]);
    g.bench_function(name, |b| {
        b.iter(|| {
            let (x, w, wt) = (black_box(&x), black_box(&w), black_box(&wt));
            ops::linear_forward(&mut y, std::slice::from_ref(x), wt);
            let dy = std::slice::from_ref(black_box(&dy));
            ops::linear_backward(
                &mut dx,
                &mut dw,
                dy,
                std::slice::from_ref(x),
                w,
                ops::Put::Add,
                ops::Put::Add,
            );
            black_box((&y, &dx, &dw));
        })
    });
}

/// The `small` model's `mlp_fc1` (`64 → 256`) forward and backward over the rows of one of
/// its minibatches (32 documents of 7 positions): where `small` spends most of its step, and
/// where the matrix products' 512-bit inner loop (`Float::fma_row`) is measured. Throughput:
/// one position.
fn linear_batch(c: &mut Criterion) {
    const IN: usize = 64;
    const OUT: usize = 256;
    const ROWS: usize = 32 * 7;
    let mut g = c.benchmark_group("op_linear_64x256_224rows");
    g.throughput(Throughput::Elements(ROWS as u64));
    batch_static::<f64>(&mut g, "static");
    batch_static::<f32>(&mut g, "static_f32");
    g.finish();

    fn batch_static<S: Float>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str) {
        let mut rng = Rng::pcg(5);
        let mut rows =
            |n: usize| -> Vec<[S; IN]> { (0..n).map(|_| to(&randn::<IN>(&mut rng))).collect() };
        let x = rows(ROWS);
        let w: Box<[[S; IN]; OUT]> = Box::new(std::array::from_fn(|_| to(&randn(&mut rng))));
        let dy: Vec<[S; OUT]> = (0..ROWS).map(|_| to(&randn::<OUT>(&mut rng))).collect();
        let mut wt = Box::new([[S::ZERO; OUT]; IN]);
        kernels::transpose(&mut wt, &w);
        let (mut y, mut dx) = (vec![[S::ZERO; OUT]; ROWS], vec![[S::ZERO; IN]; ROWS]);
        let mut dw = Box::new([[S::ZERO; IN]; OUT]);
        g.bench_function(name, |b| {
            b.iter(|| {
                ops::linear_forward(&mut y, black_box(&x), &wt);
                let (dy, x) = (black_box(&dy), black_box(&x));
                ops::linear_backward(&mut dx, &mut dw, dy, x, &w, ops::Put::Set, ops::Put::Set);
                black_box((&y, &dx, &dw));
            })
        });
    }
}

/// Causal attention of the last position of a block (`t = 15`, 16 keys and values), `H` heads.
fn attention(c: &mut Criterion) {
    let mut rng = Rng::pcg(2);
    let pos = T - 1;
    let q: [f64; E] = randn(&mut rng);
    let k: [[f64; E]; T] = randn_mat(&mut rng);
    let v: [[f64; E]; T] = randn_mat(&mut rng);
    let dy: [f64; E] = randn(&mut rng);
    let mut g = c.benchmark_group("op_attention_t15");
    g.throughput(Throughput::Elements(1));

    attention_static::<f64>(&mut g, "static", (&q, &k, &v), &dy, pos);
    attention_static::<f32>(&mut g, "static_f32", (&q, &k, &v), &dy, pos);

    let mut t = Tape::new();
    let qv = leaves(&mut t, &q);
    let kv: Vec<Vec<Var>> = k.iter().map(|r| leaves(&mut t, r)).collect();
    let vv: Vec<Vec<Var>> = v.iter().map(|r| leaves(&mut t, r)).collect();
    let inputs = t.len();
    g.bench_function("dynamic", |b| {
        b.iter(|| {
            t.truncate(inputs);
            let y = reference::attention(&mut t, black_box(&qv), &kv, &vv, H);
            let root = seed(&mut t, &y, black_box(&dy));
            t.backward(root);
            black_box(t.grads());
        })
    });
    g.finish();
}

/// The static entry of [`attention`] in precision `S`.
fn attention_static<S: Float>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    (q, k, v): (&[f64; E], &[[f64; E]; T], &[[f64; E]; T]),
    dy: &[f64; E],
    pos: usize,
) {
    let (q, dy): ([S; E], [S; E]) = (to(q), to(dy));
    let (k, v): ([[S; E]; T], [[S; E]; T]) = (k.map(|r| to(&r)), v.map(|r| to(&r)));
    let (mut y, mut att) = ([S::ZERO; E], [[S::ZERO; T]; H]);
    let (mut dq, mut dk, mut dv) = ([S::ZERO; E], [[S::ZERO; E]; T], [[S::ZERO; E]; T]);
    g.bench_function(name, |b| {
        b.iter(|| {
            let (q, k, v) = (black_box(&q), black_box(&k), black_box(&v));
            ops::attention_forward::<T, E, H, D, S>(&mut y, &mut att, q, k, v, pos);
            ops::attention_backward::<T, E, H, D, S>(
                &mut dq,
                &mut dk,
                &mut dv,
                black_box(&dy),
                &att,
                q,
                k,
                v,
                pos,
            );
            black_box((&y, &dq, &dk, &dv));
        })
    });
}

/// `y = x·(mean(x²) + eps)^-½` on one residual vector of `E`.
fn rmsnorm(c: &mut Criterion) {
    let mut rng = Rng::pcg(3);
    let x: [f64; E] = randn(&mut rng);
    let dy: [f64; E] = randn(&mut rng);
    let mut g = c.benchmark_group("op_rmsnorm_16");
    g.throughput(Throughput::Elements(1));

    rmsnorm_static::<f64>(&mut g, "static", &x, &dy);
    rmsnorm_static::<f32>(&mut g, "static_f32", &x, &dy);

    let mut t = Tape::new();
    let xv = leaves(&mut t, &x);
    let inputs = t.len();
    g.bench_function("dynamic", |b| {
        b.iter(|| {
            t.truncate(inputs);
            let y = reference::rmsnorm(&mut t, black_box(&xv));
            let root = seed(&mut t, &y, black_box(&dy));
            t.backward(root);
            black_box(t.grads());
        })
    });
    g.finish();
}

/// `−ln softmax(z)[target]` over the `V` logits of names.txt's vocabulary.
fn cross_entropy(c: &mut Criterion) {
    let mut rng = Rng::pcg(4);
    let z: [f64; V] = randn(&mut rng);
    let target = 5;
    let mut g = c.benchmark_group("op_cross_entropy_27");
    g.throughput(Throughput::Elements(1));

    cross_entropy_static::<f64>(&mut g, "static", &z, target);
    cross_entropy_static::<f32>(&mut g, "static_f32", &z, target);

    let mut t = Tape::new();
    let zv = leaves(&mut t, &z);
    let inputs = t.len();
    g.bench_function("dynamic", |b| {
        b.iter(|| {
            t.truncate(inputs);
            let loss = reference::cross_entropy(&mut t, black_box(&zv), target);
            t.backward(loss);
            black_box(t.grads());
        })
    });
    g.finish();
}

/// The static entry of [`rmsnorm`] in precision `S`.
fn rmsnorm_static<S: Float>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    x: &[f64; E],
    dy: &[f64; E],
) {
    let (x, dy): ([S; E], [S; E]) = (to(x), to(dy));
    let (mut y, mut dx) = ([S::ZERO; E], [S::ZERO; E]);
    g.bench_function(name, |b| {
        b.iter(|| {
            let r = ops::rmsnorm_forward(&mut y, black_box(&x));
            ops::rmsnorm_backward(&mut dx, black_box(&dy), &y, r);
            black_box((&y, &dx));
        })
    });
}

/// The static entry of [`cross_entropy`] in precision `S`.
fn cross_entropy_static<S: Float>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    z: &[f64; V],
    target: usize,
) {
    let z: [S; V] = to(z);
    let (mut probs, mut dz) = ([S::ZERO; V], [S::ZERO; V]);
    g.bench_function(name, |b| {
        b.iter(|| {
            let loss = ops::cross_entropy_forward(&mut probs, black_box(&z), target, V);
            ops::cross_entropy_backward(&mut dz, &probs, target, V, S::ONE, ops::Put::Set);
            black_box((loss, &dz));
        })
    });
}

/// `x` rounded to precision `S`.
fn to<S: Float, const N: usize>(x: &[f64; N]) -> [S; N] {
    x.map(S::from_f64)
}

/// Adam's update of the micro model's 4,192 parameters (one step's, on slices that stay in
/// L1/L2 between iterations), in f64 and f32: `update`, the optimizer's loop; and
/// `sqrt_and_divide`, only its square root and division per parameter
/// (`p −= a / (√b + eps)`), the part no vector unit pipelines: the floor of the update on
/// this CPU. Throughput: one parameter.
fn adam(c: &mut Criterion) {
    const N: usize = 4192;
    let mut g = c.benchmark_group("op_adam_4192");
    g.throughput(Throughput::Elements(N as u64));
    adam_static::<f64>(&mut g, ["update", "update_flushing", "sqrt_and_divide"]);
    adam_static::<f32>(
        &mut g,
        ["update_f32", "update_flushing_f32", "sqrt_and_divide_f32"],
    );
    g.finish();

    fn adam_static<S: Float>(g: &mut BenchmarkGroup<'_, WallTime>, names: [&str; 3]) {
        let [update, flushing, floor] = names;
        let mut rng = Rng::pcg(4);
        let grad: Vec<S> = (0..N).map(|_| S::from_f64(rng.gauss(0.0, 0.05))).collect();
        let mut p: Vec<S> = (0..N).map(|_| S::from_f64(rng.gauss(0.0, 0.08))).collect();
        let (mut m, mut v) = (vec![S::ZERO; N], vec![S::ZERO; N]);
        let step = microgpt::optim::Adam::default().at(10, 1000);
        g.bench_function(update, |b| {
            b.iter(|| step.update(&mut p, black_box(&grad), &mut m, &mut v))
        });
        g.bench_function(flushing, |b| {
            b.iter(|| step.update_flushing(&mut p, black_box(&grad), &mut m, &mut v))
        });
        let eps = S::from_f64(step.eps);
        let v = grad.iter().map(|&x| x * x).collect::<Vec<S>>();
        g.bench_function(floor, |b| {
            b.iter(|| {
                for ((p, &a), &b) in p.iter_mut().zip(black_box(&grad)).zip(&v) {
                    *p -= a / (b.sqrt() + eps);
                }
            })
        });
        black_box(&p);
    }
}

criterion_group!(
    op,
    linear,
    linear_batch,
    attention,
    rmsnorm,
    cross_entropy,
    adam
);
criterion_main!(op);
