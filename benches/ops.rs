//! One op, forward + backward, for one position: the static engine's `ops` pair vs the same op
//! built on the autograd tape (`reference::{linear, attention, rmsnorm, cross_entropy}`), at the
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
//! Throughput: one position per call.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use microgpt::autograd::{Tape, Var};
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

    // the ops take rows (here one) and the forward reads W through its transpose, which the
    // model keeps next to W
    let mut wt = [[0.0; F]; E];
    kernels::transpose(&mut wt, &w);
    let (mut y, mut dx, mut dw) = ([[0.0; F]], [[0.0; E]], [[0.0; E]; F]);
    g.bench_function("static", |b| {
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

    let (mut y, mut att) = ([0.0; E], [[0.0; T]; H]);
    let (mut dq, mut dk, mut dv) = ([0.0; E], [[0.0; E]; T], [[0.0; E]; T]);
    g.bench_function("static", |b| {
        b.iter(|| {
            let (q, k, v) = (black_box(&q), black_box(&k), black_box(&v));
            ops::attention_forward::<T, E, H, D, f64>(&mut y, &mut att, q, k, v, pos);
            ops::attention_backward::<T, E, H, D, f64>(
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

/// `y = x·(mean(x²) + eps)^-½` on one residual vector of `E`.
fn rmsnorm(c: &mut Criterion) {
    let mut rng = Rng::pcg(3);
    let x: [f64; E] = randn(&mut rng);
    let dy: [f64; E] = randn(&mut rng);
    let mut g = c.benchmark_group("op_rmsnorm_16");
    g.throughput(Throughput::Elements(1));

    let (mut y, mut dx) = ([0.0; E], [0.0; E]);
    g.bench_function("static", |b| {
        b.iter(|| {
            let r = ops::rmsnorm_forward(&mut y, black_box(&x));
            ops::rmsnorm_backward(&mut dx, black_box(&dy), &y, r);
            black_box((&y, &dx));
        })
    });

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

    let (mut probs, mut dz) = ([0.0; V], [0.0; V]);
    g.bench_function("static", |b| {
        b.iter(|| {
            let loss = ops::cross_entropy_forward(&mut probs, black_box(&z), target, V);
            ops::cross_entropy_backward(&mut dz, &probs, target, V, 1.0);
            black_box((loss, &dz));
        })
    });

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

criterion_group!(op, linear, attention, rmsnorm, cross_entropy);
criterion_main!(op);
