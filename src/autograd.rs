//! A scalar reverse-mode autograd engine: micrograd's `Value`, as a tape.
//!
//! Every operation appends one node to the tape, so creation order is already a topological
//! order and `backward` is a single reverse sweep — no recursion (a recursive `Rc` graph
//! overflows the stack on deep graphs, and again when it is dropped). A node stores its value,
//! its gradient, and up to two parents with the local derivative towards each; a missing parent
//! points at node 0, a sink whose gradient is never read, so the sweep has no branches.
//!
//! Primitives, each with its local derivative beside it, as in micrograd: add, mul, pow by a
//! constant, log, exp, relu, and the constant forms `x + c`, `x · c` (Python makes a leaf
//! `Value(c)` for the constant; its gradient is never read, so here it is folded into the node).
//! neg, sub and div are composed from them, as in microgpt.py.
//!
//! The tape is general: nothing here knows about GPTs. Between training steps the caller keeps
//! the leading nodes (the parameters) and [`Tape::truncate`]s the rest, so the buffers are reused
//! rather than reallocated.

/// A node on a [`Tape`]: an index, cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var(u32);

impl Var {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The node at position `i` of a tape, e.g. the `i`-th leaf of a block of consecutive
    /// leaves. Using it on a tape with fewer than `i + 1` nodes panics on access.
    pub fn from_index(i: usize) -> Var {
        Var(u32::try_from(i).expect("tape index fits in u32"))
    }
}

/// The parents of a node and the local derivatives `∂node/∂parent`.
#[derive(Debug, Clone, Copy)]
struct Edges {
    a: u32,
    b: u32,
    da: f64,
    db: f64,
}

const SINK: u32 = 0;
const NO_EDGES: Edges = Edges {
    a: SINK,
    b: SINK,
    da: 0.0,
    db: 0.0,
};

#[derive(Debug, Clone)]
pub struct Tape {
    data: Vec<f64>,
    grad: Vec<f64>,
    edges: Vec<Edges>,
}

impl Default for Tape {
    fn default() -> Tape {
        Tape::new()
    }
}

impl Tape {
    pub fn new() -> Tape {
        Tape::with_capacity(1)
    }

    /// A tape with room for `n` nodes before it grows.
    pub fn with_capacity(n: usize) -> Tape {
        let mut t = Tape {
            data: Vec::with_capacity(n),
            grad: Vec::with_capacity(n),
            edges: Vec::with_capacity(n),
        };
        t.push(0.0, NO_EDGES); // node 0: the sink
        t
    }

    #[inline]
    fn push(&mut self, data: f64, e: Edges) -> Var {
        let id = self.data.len();
        assert!(id < u32::MAX as usize, "tape is full");
        self.data.push(data);
        self.grad.push(0.0);
        self.edges.push(e);
        Var(id as u32)
    }

    #[inline]
    fn unary(&mut self, data: f64, a: Var, da: f64) -> Var {
        self.push(
            data,
            Edges {
                a: a.0,
                b: SINK,
                da,
                db: 0.0,
            },
        )
    }

    #[inline]
    fn binary(&mut self, data: f64, a: Var, da: f64, b: Var, db: f64) -> Var {
        self.push(
            data,
            Edges {
                a: a.0,
                b: b.0,
                da,
                db,
            },
        )
    }

    /// A leaf: an input or a parameter.
    pub fn leaf(&mut self, x: f64) -> Var {
        self.push(x, NO_EDGES)
    }

    /// Number of nodes, the sink included: pass it to [`Tape::truncate`] to forget what comes
    /// after.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.len() <= 1
    }

    /// Drops every node from index `len` on, keeping the buffers' capacity.
    pub fn truncate(&mut self, len: usize) {
        assert!(len >= 1, "the sink stays");
        self.data.truncate(len);
        self.grad.truncate(len);
        self.edges.truncate(len);
    }

    #[inline]
    pub fn data(&self, v: Var) -> f64 {
        self.data[v.index()]
    }

    #[inline]
    pub fn grad(&self, v: Var) -> f64 {
        self.grad[v.index()]
    }

    /// Every node's value, by index.
    pub fn values(&self) -> &[f64] {
        &self.data
    }

    /// Every node's gradient, by index.
    pub fn grads(&self) -> &[f64] {
        &self.grad
    }

    pub fn set_data(&mut self, v: Var, x: f64) {
        self.data[v.index()] = x;
    }

    /// Values and gradients of the nodes `range` (e.g. the parameters, for the optimizer).
    pub fn data_and_grad_mut(&mut self, range: std::ops::Range<usize>) -> (&mut [f64], &mut [f64]) {
        (&mut self.data[range.clone()], &mut self.grad[range])
    }

    /// Sets every gradient to zero (micrograd's `p.grad = 0` for every node).
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }

    // ---- primitives: value, and the local derivative towards each parent ----

    /// `a + b`: ∂/∂a = 1, ∂/∂b = 1
    pub fn add(&mut self, a: Var, b: Var) -> Var {
        self.binary(self.data(a) + self.data(b), a, 1.0, b, 1.0)
    }

    /// `a · b`: ∂/∂a = b, ∂/∂b = a
    pub fn mul(&mut self, a: Var, b: Var) -> Var {
        let (x, y) = (self.data(a), self.data(b));
        self.binary(x * y, a, y, b, x)
    }

    /// `a + c` for a constant c: ∂/∂a = 1
    pub fn add_const(&mut self, a: Var, c: f64) -> Var {
        self.unary(self.data(a) + c, a, 1.0)
    }

    /// `a · c` for a constant c: ∂/∂a = c
    pub fn mul_const(&mut self, a: Var, c: f64) -> Var {
        self.unary(self.data(a) * c, a, c)
    }

    /// `a^k` for a constant k: ∂/∂a = k·a^(k−1)
    pub fn pow(&mut self, a: Var, k: f64) -> Var {
        let x = self.data(a);
        self.unary(x.powf(k), a, k * x.powf(k - 1.0))
    }

    /// `ln a`: ∂/∂a = 1/a
    pub fn log(&mut self, a: Var) -> Var {
        let x = self.data(a);
        self.unary(x.ln(), a, 1.0 / x)
    }

    /// `exp a`: ∂/∂a = exp a
    pub fn exp(&mut self, a: Var) -> Var {
        let y = self.data(a).exp();
        self.unary(y, a, y)
    }

    /// `max(0, a)`: ∂/∂a = [a > 0]
    pub fn relu(&mut self, a: Var) -> Var {
        let x = self.data(a);
        self.unary(x.max(0.0), a, if x > 0.0 { 1.0 } else { 0.0 })
    }

    // ---- composed, as microgpt.py composes them ----

    /// `−a = a · (−1)`
    pub fn neg(&mut self, a: Var) -> Var {
        self.mul_const(a, -1.0)
    }

    /// `a − b = a + (−b)`
    pub fn sub(&mut self, a: Var, b: Var) -> Var {
        let nb = self.neg(b);
        self.add(a, nb)
    }

    /// `a / b = a · b^(−1)`
    pub fn div(&mut self, a: Var, b: Var) -> Var {
        let inv = self.pow(b, -1.0);
        self.mul(a, inv)
    }

    /// `a / c = a · c^(−1)` for a constant c
    pub fn div_const(&mut self, a: Var, c: f64) -> Var {
        self.mul_const(a, c.powf(-1.0))
    }

    /// Python's `sum(xs)`: a left fold of additions (Python starts from the integer 0, which
    /// adds nothing to the value).
    pub fn sum(&mut self, xs: &[Var]) -> Var {
        let (&first, rest) = xs.split_first().expect("sum of no values");
        rest.iter().fold(first, |acc, &x| self.add(acc, x))
    }

    /// `Σ a_i · b_i`, as `sum(a_i * b_i for …)`: a multiplication node and an addition node per
    /// term, folded left to right.
    pub fn dot(&mut self, a: &[Var], b: &[Var]) -> Var {
        assert_eq!(a.len(), b.len());
        let mut acc = self.mul(a[0], b[0]);
        for i in 1..a.len() {
            let p = self.mul(a[i], b[i]);
            acc = self.add(acc, p);
        }
        acc
    }

    /// Reverse-mode sweep from `root`: `root.grad = 1`, then for every node in reverse creation
    /// order, `parent.grad += local · node.grad`. Gradients accumulate into whatever the nodes
    /// already hold, as micrograd's do; call [`Tape::zero_grad`] (or zero the leaves you own)
    /// between steps.
    pub fn backward(&mut self, root: Var) {
        let r = root.index();
        self.grad[r] = 1.0;
        let grad = &mut self.grad[..=r];
        let edges = &self.edges[..=r];
        for i in (1..=r).rev() {
            let g = grad[i];
            let e = edges[i];
            grad[e.a as usize] += e.da * g;
            grad[e.b as usize] += e.db * g;
        }
    }
}
