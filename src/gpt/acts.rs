//! What a forward caches for its backward (llm.c's `ActivationTensors`) and the scratch rows
//! both passes work in: one set per thread, allocated once with room for a group of
//! documents (or one sequence, in inference), one row per position.

use bytemuck::Zeroable;

/// One block's activations at every row, what its backward reads.
pub(super) struct BlockActs<const T: usize, const E: usize, const H: usize, const F: usize> {
    /// rmsnorm before attention: output and reciprocal
    pub xn1: Vec<[f64; E]>,
    pub r1: Vec<f64>,
    /// queries, and this block's KV cache
    pub q: Vec<[f64; E]>,
    pub k: Vec<[f64; E]>,
    pub v: Vec<[f64; E]>,
    /// attention softmax weights: head, key position (0 after the row's position)
    pub att: Vec<[[f64; T]; H]>,
    /// head outputs concatenated (the input of `attn_wo`)
    pub ctx: Vec<[f64; E]>,
    /// rmsnorm before the MLP: output and reciprocal
    pub xn2: Vec<[f64; E]>,
    pub r2: Vec<f64>,
    /// ReLU output (the input of `mlp_fc2`)
    pub h: Vec<[f64; F]>,
    /// dropout masks of the attention and MLP outputs (only with dropout)
    pub m_attn: Vec<[f64; E]>,
    pub m_mlp: Vec<[f64; E]>,
}

/// The activation cache of a group of documents.
pub(super) struct Acts<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
> {
    /// rmsnorm of the embedding (the first block's input) and its reciprocal
    pub xn0: Vec<[f64; E]>,
    pub r0: Vec<f64>,
    pub blocks: [BlockActs<T, E, H, F>; L],
    /// residual stream after the last block (the input of `lm_head`)
    pub x_out: Vec<[f64; E]>,
    pub logits: Vec<[f64; V]>,
    /// softmax of the real logits (0 beyond the real vocabulary)
    pub probs: Vec<[f64; V]>,
    /// cross-entropy of each row
    pub ce: Vec<f64>,
}

/// Rows that need not outlive a pass: the forward's residual stream and pre-activations,
/// and every activation gradient of the backward.
pub(super) struct Scratch<const V: usize, const E: usize, const F: usize> {
    /// residual stream (forward)
    pub x: Vec<[f64; E]>,
    /// output of `attn_wo` or `mlp_fc2`, before it is added to the residual stream
    pub y: Vec<[f64; E]>,
    /// output of `mlp_fc1`, before the ReLU
    pub pre: Vec<[f64; F]>,
    pub dlogits: Vec<[f64; V]>,
    /// gradient of the residual stream at the current point of the backward
    pub dx: Vec<[f64; E]>,
    pub dh: Vec<[f64; F]>,
    pub dpre: Vec<[f64; F]>,
    /// gradient of an rmsnorm's output (xn2, then xn1)
    pub dxn: Vec<[f64; E]>,
    /// gradient of a dropped-out branch output, before its mask (only with dropout)
    pub dy: Vec<[f64; E]>,
    pub dctx: Vec<[f64; E]>,
    pub dq: Vec<[f64; E]>,
    /// gradients of the block's keys and values: later queries add into earlier rows
    pub dk: Vec<[f64; E]>,
    pub dv: Vec<[f64; E]>,
}

/// What one thread computes a group (or a sequence, in inference) with.
pub(super) struct Buffers<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
> {
    pub acts: Acts<V, T, E, H, F, L>,
    pub scratch: Scratch<V, E, F>,
}

impl<const V: usize, const T: usize, const E: usize, const H: usize, const F: usize, const L: usize>
    Buffers<V, T, E, H, F, L>
{
    /// Buffers of `n` rows each, zeroed.
    pub fn new(n: usize) -> Self {
        // zeroed allocations: `vec![[0.0; E]; n]` clones an array per row, which costs LLVM
        // seconds per shape to optimize
        fn rows<X: Zeroable + Copy>(n: usize) -> Vec<X> {
            bytemuck::zeroed_vec(n)
        }
        let block = || BlockActs {
            xn1: rows(n),
            r1: rows(n),
            q: rows(n),
            k: rows(n),
            v: rows(n),
            att: rows(n),
            ctx: rows(n),
            xn2: rows(n),
            r2: rows(n),
            h: rows(n),
            m_attn: rows(n),
            m_mlp: rows(n),
        };
        Buffers {
            acts: Acts {
                xn0: rows(n),
                r0: rows(n),
                blocks: std::array::from_fn(|_| block()),
                x_out: rows(n),
                logits: rows(n),
                probs: rows(n),
                ce: rows(n),
            },
            scratch: Scratch {
                x: rows(n),
                y: rows(n),
                pre: rows(n),
                dlogits: rows(n),
                dx: rows(n),
                dh: rows(n),
                dpre: rows(n),
                dxn: rows(n),
                dy: rows(n),
                dctx: rows(n),
                dq: rows(n),
                dk: rows(n),
                dv: rows(n),
            },
        }
    }
}
