//! Model shapes, and the constants both engines share.
//!
//! [`Shape`] is the run-time description of a model: what the reference (dynamic) engine is
//! built from and what a checkpoint records. The static engine carries the same numbers as
//! const generics (see [`crate::presets`], which names its configurations). Nothing here knows
//! of either engine.

/// microgpt.py's `std=0.08` of the initial weights.
pub const INIT_STD: f64 = 0.08;

/// microgpt.py's `1e-5` under rmsnorm's square root.
pub const RMSNORM_EPS: f64 = 1e-5;

/// The dimensions of one GPT, in the letters used throughout: `V` vocab, `T` block size,
/// `E` n_embd, `H` heads (head dim `D = E / H`), `F` MLP width (`4·E` in microgpt), `L` layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub vocab: usize,
    pub block_size: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub mlp: usize,
    pub n_layer: usize,
}

impl Shape {
    /// microgpt.py's model for a vocabulary of `vocab` tokens (BOS included):
    /// 1 layer, n_embd 16, 4 heads, block 16, MLP 64.
    pub const fn micro(vocab: usize) -> Shape {
        Shape {
            vocab,
            block_size: 16,
            n_embd: 16,
            n_head: 4,
            mlp: 64,
            n_layer: 1,
        }
    }

    /// The named configuration this shape is (whatever its vocabulary), if any.
    pub fn preset(&self) -> Option<&'static str> {
        PRESETS
            .iter()
            .find(|(_, p)| {
                Shape {
                    vocab: self.vocab,
                    ..*p
                } == *self
            })
            .map(|(name, _)| *name)
    }

    pub const fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Every weight matrix as `(name, rows, cols)` in microgpt.py's `state_dict` order, which
    /// is also the order the initial weights are drawn in (row by row) and the layout of a
    /// flat parameter vector.
    pub fn tensors(&self) -> Vec<(String, usize, usize)> {
        let (v, t, e, f) = (self.vocab, self.block_size, self.n_embd, self.mlp);
        let mut out = vec![
            ("wte".to_string(), v, e),
            ("wpe".to_string(), t, e),
            ("lm_head".to_string(), v, e),
        ];
        for i in 0..self.n_layer {
            for (name, rows, cols) in [
                ("attn_wq", e, e),
                ("attn_wk", e, e),
                ("attn_wv", e, e),
                ("attn_wo", e, e),
                ("mlp_fc1", f, e),
                ("mlp_fc2", e, f),
            ] {
                out.push((format!("layer{i}.{name}"), rows, cols));
            }
        }
        out
    }

    /// Number of parameters (4,192 for `micro(27)`).
    pub fn num_params(&self) -> usize {
        self.tensors().iter().map(|(_, r, c)| r * c).sum()
    }
}

/// The compiled configurations by name (`--model`), with a placeholder vocabulary of 0: the
/// real one comes from the data.
pub const PRESETS: [(&str, Shape); 2] = [
    ("micro", Shape::micro(0)),
    (
        "small",
        Shape {
            vocab: 0,
            block_size: 16,
            n_embd: 64,
            n_head: 4,
            mlp: 256,
            n_layer: 4,
        },
    ),
];

/// The shape of preset `name` for a vocabulary of `vocab` tokens.
pub fn preset_shape(name: &str, vocab: usize) -> Option<Shape> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| Shape { vocab, ..*s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_on_names_has_4192_parameters() {
        // 27·16 (wte) + 16·16 (wpe) + 27·16 (lm_head) + 4·16·16 (attention) + 2·64·16 (MLP)
        assert_eq!(Shape::micro(27).num_params(), 432 + 256 + 432 + 1024 + 2048);
        assert_eq!(Shape::micro(27).num_params(), 4192);
    }
}
