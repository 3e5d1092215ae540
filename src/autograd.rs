//! A scalar reverse-mode autograd engine: micrograd's `Value`, as a tape.
//!
//! Every operation appends one node to the tape, so creation order is already a topological
//! order and `backward` is a single reverse sweep — no recursion (a recursive `Rc` graph
//! overflows the stack on deep graphs, and again when it is dropped).
//!
//! Primitives, each with its local derivative beside it, as in micrograd: add, mul, pow by a
//! constant, log, exp, relu, the constant forms `x + c` and `x · c` (Python makes a leaf
//! `Value(c)` for the constant; its gradient is never read, so here it is folded into the node),
//! and an n-ary `sum` (Python's `sum(...)`). neg, sub and div are composed from them, as in
//! microgpt.py.
//!
//! Why `sum` is one node: a chain of n−1 additions passes the same gradient down a serial
//! chain of read-modify-writes in `backward`; one n-ary node hands it to its n inputs
//! independently. The values and gradients are bit for bit those of the chain (the forward sum
//! is the same left fold, and every input receives exactly `g` either way).
//!
//! The tape is general: nothing here knows about GPTs. Between training steps the caller
//! [`Tape::truncate`]s it and builds the next graph in the same buffers.

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

/// A node: its value and how to pass a gradient to its parents. 32 bytes, so that building
/// the graph is one push per operation.
///
/// - Leaf, unary or binary: parents `a` and `b` with local derivatives `da = ∂node/∂a` and
///   `db = ∂node/∂b`; a missing parent is node 0, a sink whose gradient is never read, so the
///   sweep has no branch for arity.
/// - Sum: `b` has its top bit ([`SUM`]) set; its inputs are `inputs[a .. a + (b & !SUM)]`,
///   each with local derivative 1.
#[derive(Debug, Clone, Copy)]
struct Node {
    data: f64,
    da: f64,
    db: f64,
    a: u32,
    b: u32,
}

const SINK: u32 = 0;
const SUM: u32 = 1 << 31;

/// `nodes[first].data + Σ nodes[i].data` over `rest`, left to right. A function of its own
/// (not inlined) so that the running total stays in a register: inlined into the graph
/// builders, LLVM kept it in memory, a store-to-load chain through every addition.
#[inline(never)]
fn sum_data(nodes: &[Node], first: u32, rest: &[u32]) -> f64 {
    rest.iter().fold(nodes[first as usize].data, |t, &x| {
        t + nodes[x as usize].data
    })
}

/// The graph: nodes in creation order, the input lists of the sum nodes, and the gradients
/// (grown to the length of the graph when `backward` runs, so that building the graph writes
/// one array, not two).
#[derive(Debug, Clone)]
pub struct Tape {
    nodes: Vec<Node>,
    inputs: Vec<u32>,
    grad: Vec<f64>,
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
            nodes: Vec::with_capacity(n),
            inputs: Vec::new(),
            grad: Vec::with_capacity(n),
        };
        t.push(0.0, SINK, 0.0, SINK, 0.0); // node 0: the sink
        t
    }

    #[inline(always)]
    fn push(&mut self, data: f64, a: u32, da: f64, b: u32, db: f64) -> Var {
        let id = self.nodes.len();
        assert!(id < SUM as usize, "tape is full");
        self.nodes.push(Node { data, da, db, a, b });
        Var(id as u32)
    }

    #[inline(always)]
    fn unary(&mut self, data: f64, a: Var, da: f64) -> Var {
        self.push(data, a.0, da, SINK, 0.0)
    }

    #[inline(always)]
    fn binary(&mut self, data: f64, a: Var, da: f64, b: Var, db: f64) -> Var {
        self.push(data, a.0, da, b.0, db)
    }

    /// A leaf: an input or a parameter.
    pub fn leaf(&mut self, x: f64) -> Var {
        self.push(x, SINK, 0.0, SINK, 0.0)
    }

    /// Number of nodes, the sink included: pass it to [`Tape::truncate`] to forget what comes
    /// after.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// Drops every node from index `len` on, keeping the buffers' capacity.
    pub fn truncate(&mut self, len: usize) {
        assert!(len >= 1, "the sink stays");
        self.nodes.truncate(len);
        self.grad.truncate(len);
        // the input lists of the sums that remain end where the last of them ends
        let used = self.nodes[1..]
            .iter()
            .rev()
            .find(|n| n.b & SUM != 0)
            .map_or(0, |n| n.a as usize + (n.b & !SUM) as usize);
        self.inputs.truncate(used);
    }

    #[inline(always)]
    pub fn data(&self, v: Var) -> f64 {
        self.nodes[v.index()].data
    }

    /// The gradient of `v` from the last [`Tape::backward`] (0 for a node created since).
    pub fn grad(&self, v: Var) -> f64 {
        self.grad.get(v.index()).copied().unwrap_or(0.0)
    }

    /// Every node's gradient from the last [`Tape::backward`], by index (nodes created since
    /// are not covered).
    pub fn grads(&self) -> &[f64] {
        &self.grad
    }

    pub fn set_data(&mut self, v: Var, x: f64) {
        self.nodes[v.index()].data = x;
    }

    /// Sets every gradient to zero (micrograd's `p.grad = 0` for every node).
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }

    // ---- primitives: value, and the local derivative towards each parent ----

    /// `a + b`: ∂/∂a = 1, ∂/∂b = 1
    #[inline]
    pub fn add(&mut self, a: Var, b: Var) -> Var {
        self.binary(self.data(a) + self.data(b), a, 1.0, b, 1.0)
    }

    /// `a · b`: ∂/∂a = b, ∂/∂b = a
    #[inline]
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

    /// `max(0, a)`: ∂/∂a = `[a > 0]` (1 if a > 0, else 0)
    pub fn relu(&mut self, a: Var) -> Var {
        let x = self.data(a);
        self.unary(x.max(0.0), a, if x > 0.0 { 1.0 } else { 0.0 })
    }

    /// `x₀ + x₁ + … + xₙ₋₁`, added left to right as Python's `sum(xs)` does: ∂/∂xᵢ = 1
    pub fn sum(&mut self, xs: &[Var]) -> Var {
        self.sum_iter(xs.iter().copied())
    }

    /// [`Tape::sum`] of the nodes an iterator yields.
    pub fn sum_iter(&mut self, xs: impl IntoIterator<Item = Var>) -> Var {
        let start = self.inputs.len();
        self.inputs.extend(xs.into_iter().map(|x| x.0));
        let inputs = &self.inputs[start..];
        let (&first, rest) = inputs.split_first().expect("sum of no values");
        let total = sum_data(&self.nodes, first, rest);
        assert!(self.inputs.len() < u32::MAX as usize, "tape is full");
        let len = inputs.len() as u32;
        self.push(total, start as u32, 0.0, SUM | len, 0.0)
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

    /// `sum(a_i * b_i for …)`: one multiplication node per term, then their sum.
    pub fn dot(
        &mut self,
        a: impl IntoIterator<Item = Var>,
        b: impl IntoIterator<Item = Var>,
    ) -> Var {
        let first = self.nodes.len();
        for (ai, bi) in a.into_iter().zip(b) {
            self.mul(ai, bi);
        }
        // the products are the consecutive nodes first..len
        let end = self.nodes.len();
        self.sum_iter((first..end).map(|i| Var(i as u32)))
    }

    /// Reverse-mode sweep from `root`: `root.grad = 1`, then for every node in reverse creation
    /// order, `parent.grad += local · node.grad`. Gradients accumulate into whatever the nodes
    /// already hold, as micrograd's do; call [`Tape::zero_grad`] (or [`Tape::truncate`]
    /// and rebuild) between steps.
    pub fn backward(&mut self, root: Var) {
        let r = root.index();
        self.grad.resize(self.nodes.len(), 0.0);
        self.grad[r] = 1.0;
        let grad = &mut self.grad[..=r];
        for (i, n) in self.nodes[..=r].iter().enumerate().skip(1).rev() {
            let g = grad[i];
            if n.b & SUM == 0 {
                if n.a == SINK {
                    // a leaf: nothing to pass on (and no serial chain of writes to the sink)
                    continue;
                }
                grad[n.a as usize] += n.da * g;
                grad[n.b as usize] += n.db * g;
            } else {
                let start = n.a as usize;
                for &x in &self.inputs[start..start + (n.b & !SUM) as usize] {
                    grad[x as usize] += g;
                }
            }
        }
    }
}
