//! The scalar autograd engine: every op's gradient against its analytic value and against
//! central finite differences, gradient accumulation on reused nodes, and a deep graph.

use approx::assert_relative_eq;
use microgpt::autograd::{Tape, Var};

/// Central difference `(f(x+h) − f(x−h)) / 2h` of a one-input function built on a tape.
///
/// Step and tolerance: the truncation error is `h²·f'''/6` and the rounding error about
/// `ε·|f|/h` (ε = 2.2e-16). With h = 1e-5 and the smooth, O(1) functions below, these are
/// ≈1e-10 and ≈1e-11, so a relative tolerance of 1e-7 has three orders of magnitude of margin
/// while still catching any wrong derivative (which is off by O(1)).
const H: f64 = 1e-5;
const FD_TOL: f64 = 1e-7;

fn finite_difference(f: impl Fn(&mut Tape, Var) -> Var, x: f64) -> f64 {
    let eval = |x: f64| {
        let mut t = Tape::new();
        let v = t.leaf(x);
        let y = f(&mut t, v);
        t.data(y)
    };
    (eval(x + H) - eval(x - H)) / (2.0 * H)
}

/// Value and gradient of `f` at `x` from the tape.
fn autograd(f: impl Fn(&mut Tape, Var) -> Var, x: f64) -> (f64, f64) {
    let mut t = Tape::new();
    let v = t.leaf(x);
    let y = f(&mut t, v);
    t.backward(y);
    (t.data(y), t.grad(v))
}

/// Checks `f` at `x` against the analytic value and derivative, and the derivative against
/// finite differences.
fn check(
    name: &str,
    f: impl Fn(&mut Tape, Var) -> Var + Copy,
    x: f64,
    value: f64,
    derivative: f64,
) {
    let (y, g) = autograd(f, x);
    assert_relative_eq!(y, value, max_relative = 1e-15);
    assert_relative_eq!(g, derivative, max_relative = 1e-14);
    let fd = finite_difference(f, x);
    assert!(
        (g - fd).abs() <= FD_TOL * g.abs().max(1.0),
        "{name} at {x}: autograd {g}, finite difference {fd}"
    );
}

#[test]
fn add_and_mul_with_a_second_leaf() {
    // d(x + c)/dx = 1, d(x · c)/dx = c with c a leaf (not a constant)
    let mut t = Tape::new();
    let x = t.leaf(1.5);
    let c = t.leaf(-2.0);
    let s = t.add(x, c);
    let p = t.mul(s, c); // (x + c) · c ⇒ ∂/∂x = c, ∂/∂c = x + 2c
    t.backward(p);
    assert_eq!(t.data(p), (1.5 - 2.0) * -2.0);
    assert_eq!(t.grad(x), -2.0);
    assert_eq!(t.grad(c), 1.5 + 2.0 * -2.0);
}

#[test]
fn every_primitive_against_analytic_and_finite_differences() {
    let x: f64 = 0.7;
    check("add_const", |t, v| t.add_const(v, 3.0), x, x + 3.0, 1.0);
    check("mul_const", |t, v| t.mul_const(v, -2.5), x, -2.5 * x, -2.5);
    check("pow 3", |t, v| t.pow(v, 3.0), x, x.powi(3), 3.0 * x * x);
    check(
        "pow -0.5",
        |t, v| t.pow(v, -0.5),
        x,
        x.powf(-0.5),
        -0.5 * x.powf(-1.5),
    );
    check("log", |t, v| t.log(v), x, x.ln(), 1.0 / x);
    check("exp", |t, v| t.exp(v), x, x.exp(), x.exp());
    check("relu +", |t, v| t.relu(v), x, x, 1.0);
    check("relu -", |t, v| t.relu(v), -x, 0.0, 0.0);
    check("neg", |t, v| t.neg(v), x, -x, -1.0);
    check("div_const", |t, v| t.div_const(v, 4.0), x, x / 4.0, 0.25);
}

#[test]
fn composed_ops_against_analytic_and_finite_differences() {
    let x: f64 = 1.3;
    // sub: (x² − x) ⇒ 2x − 1
    check(
        "sub",
        |t, v| {
            let sq = t.mul(v, v);
            t.sub(sq, v)
        },
        x,
        x * x - x,
        2.0 * x - 1.0,
    );
    // div: exp(x) / x ⇒ exp(x)(x − 1)/x²
    check(
        "div",
        |t, v| {
            let e = t.exp(v);
            t.div(e, v)
        },
        x,
        x.exp() / x,
        x.exp() * (x - 1.0) / (x * x),
    );
    // sum and dot: Σ_i (x·i) and Σ_i x·x = 3x² ⇒ Σ i and 6x
    check(
        "sum",
        |t, v| {
            let terms: Vec<Var> = (1..=4).map(|i| t.mul_const(v, i as f64)).collect();
            t.sum(&terms)
        },
        x,
        10.0 * x,
        10.0,
    );
    check(
        "dot",
        |t, v| t.dot([v, v, v], [v, v, v]),
        x,
        3.0 * x * x,
        6.0 * x,
    );
}

#[test]
fn a_reused_node_gets_the_sum_of_its_gradients() {
    // x·x ⇒ 2x
    let (_, g) = autograd(|t, v| t.mul(v, v), 3.0);
    assert_eq!(g, 6.0);
    // x + x ⇒ 2
    let (_, g) = autograd(|t, v| t.add(v, v), 3.0);
    assert_eq!(g, 2.0);
    // y = exp(x) feeds two paths: y·log(x) + y  ⇒  y·log x + y/x + y
    let x: f64 = 2.0;
    let (_, g) = autograd(
        |t, v| {
            let y = t.exp(v);
            let l = t.log(v);
            let a = t.mul(y, l);
            t.add(a, y)
        },
        x,
    );
    assert_relative_eq!(
        g,
        x.exp() * x.ln() + x.exp() / x + x.exp(),
        max_relative = 1e-15
    );
}

#[test]
fn backward_through_a_million_node_chain_does_not_overflow_the_stack() {
    // y = x · c^N built as N multiplications: dy/dx = c^N. Runs on a test thread (2 MiB of
    // stack): a recursive topological sort would overflow long before a million nodes.
    const N: usize = 1_000_000;
    let c = 1.000_000_1_f64;
    let mut t = Tape::with_capacity(N + 2);
    let x = t.leaf(1.0);
    let mut y = x;
    for _ in 0..N {
        y = t.mul_const(y, c);
    }
    assert_eq!(t.len(), N + 2);
    t.backward(y);
    assert_relative_eq!(t.grad(x), c.powi(N as i32), max_relative = 1e-9);
}

#[test]
fn truncate_forgets_the_graph_and_leaves_accumulate_until_zeroed() {
    let mut t = Tape::new();
    let w = t.leaf(2.0);
    let keep = t.len();
    let mut expected = 0.0;
    for step in 0..3 {
        t.truncate(keep);
        let x = t.leaf(step as f64);
        let y = t.mul(w, x); // ∂y/∂w = x, accumulated over the steps as in micrograd
        t.backward(y);
        expected += step as f64;
        assert_eq!(t.grad(w), expected, "step {step}");
        assert_eq!(t.len(), keep + 2);
    }
    t.zero_grad();
    t.truncate(keep);
    let x = t.leaf(5.0);
    let y = t.mul(w, x);
    t.backward(y);
    assert_eq!(t.grad(w), 5.0);
}

#[test]
fn sums_survive_truncation_of_the_nodes_after_them() {
    // s1 = a + b + c is kept; s2 (built after) is dropped; s3 = s1 + a·a then reuses the space
    let mut t = Tape::new();
    let a = t.leaf(1.0);
    let b = t.leaf(2.0);
    let c = t.leaf(3.0);
    let s1 = t.sum(&[a, b, c]);
    let keep = t.len();
    let s2 = t.sum(&[c, c, c, c]);
    let _ = t.mul(s2, s2);
    t.truncate(keep);
    let aa = t.mul(a, a);
    let s3 = t.sum(&[s1, aa]);
    t.backward(s3);
    // s3 = a + b + c + a² ⇒ ∂/∂a = 1 + 2a, ∂/∂b = 1, ∂/∂c = 1
    assert_eq!(t.data(s3), 7.0);
    assert_eq!(t.grad(a), 3.0);
    assert_eq!(t.grad(b), 1.0);
    assert_eq!(t.grad(c), 1.0);
}

#[test]
fn n_ary_sum_equals_a_chain_of_additions_bit_for_bit() {
    // microgpt.py's sum() is a chain of additions; the n-ary node must give the same value
    // and the same gradients, to the bit
    let xs = [0.1, 0.7, -0.3, 1e-8, 2.5, -1.75, 0.33];
    let run = |nary: bool| {
        let mut t = Tape::new();
        let v: Vec<Var> = xs.iter().map(|&x| t.leaf(x)).collect();
        let sq: Vec<Var> = v.iter().map(|&x| t.mul(x, x)).collect();
        let s = if nary {
            t.sum(&sq)
        } else {
            sq[1..].iter().fold(sq[0], |acc, &x| t.add(acc, x))
        };
        let y = t.log(s);
        t.backward(y);
        (
            t.data(y),
            v.iter().map(|&x| t.grad(x)).collect::<Vec<f64>>(),
        )
    };
    assert_eq!(run(true), run(false));
}
