//! What a forward caches for its backward (llm.c's `ActivationTensors`) and the scratch rows
//! both passes work in: one set per thread, allocated once with room for a group of
//! documents (or one sequence, in inference), one row per position.

use bytemuck::Zeroable;

use super::kernels::Float;

/// One block's activations at every row, what its backward reads.
pub(super) struct BlockActs<
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    S: Float,
> {
    /// rmsnorm before attention: output and reciprocal
    pub xn1: Vec<[S; E]>,
    pub r1: Vec<S>,
    /// queries, and this block's KV cache
    pub q: Vec<[S; E]>,
    pub k: Vec<[S; E]>,
    pub v: Vec<[S; E]>,
    /// attention softmax weights: head, key position (0 after the row's position)
    pub att: Vec<[[S; T]; H]>,
    /// head outputs concatenated (the input of `attn_wo`)
    pub ctx: Vec<[S; E]>,
    /// rmsnorm before the MLP: output and reciprocal
    pub xn2: Vec<[S; E]>,
    pub r2: Vec<S>,
    /// ReLU output (the input of `mlp_fc2`)
    pub h: Vec<[S; F]>,
    /// dropout masks of the attention and MLP outputs (only with dropout)
    pub m_attn: Vec<[S; E]>,
    pub m_mlp: Vec<[S; E]>,
}

/// The activation cache of a group of documents.
pub(super) struct Acts<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
    S: Float,
> {
    /// rmsnorm of the embedding (the first block's input) and its reciprocal
    pub xn0: Vec<[S; E]>,
    pub r0: Vec<S>,
    pub blocks: [BlockActs<T, E, H, F, S>; L],
    /// residual stream after the last block (the input of `lm_head`)
    pub x_out: Vec<[S; E]>,
    pub logits: Vec<[S; V]>,
    /// softmax of the real logits (0 beyond the real vocabulary)
    pub probs: Vec<[S; V]>,
    /// cross-entropy of each row
    pub ce: Vec<S>,
}

/// Rows that need not outlive a pass: the forward's residual stream and pre-activations,
/// and every activation gradient of the backward.
pub(super) struct Scratch<const V: usize, const E: usize, const F: usize, S: Float> {
    /// residual stream (forward)
    pub x: Vec<[S; E]>,
    /// output of `attn_wo` or `mlp_fc2`, before it is added to the residual stream
    pub y: Vec<[S; E]>,
    /// output of `mlp_fc1`, before the ReLU
    pub pre: Vec<[S; F]>,
    pub dlogits: Vec<[S; V]>,
    /// gradient of the residual stream at the current point of the backward
    pub dx: Vec<[S; E]>,
    pub dh: Vec<[S; F]>,
    pub dpre: Vec<[S; F]>,
    /// gradient of an rmsnorm's output (xn2, then xn1)
    pub dxn: Vec<[S; E]>,
    /// gradient of a dropped-out branch output, before its mask (only with dropout)
    pub dy: Vec<[S; E]>,
    pub dctx: Vec<[S; E]>,
    pub dq: Vec<[S; E]>,
    /// gradients of the block's keys and values: later queries add into earlier rows
    pub dk: Vec<[S; E]>,
    pub dv: Vec<[S; E]>,
}

/// What one thread computes a group (or a sequence, in inference) with.
pub(super) struct Buffers<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
    S: Float,
> {
    pub acts: Acts<V, T, E, H, F, L, S>,
    pub scratch: Scratch<V, E, F, S>,
}

impl<
    const V: usize,
    const T: usize,
    const E: usize,
    const H: usize,
    const F: usize,
    const L: usize,
    S: Float,
> Buffers<V, T, E, H, F, L, S>
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
