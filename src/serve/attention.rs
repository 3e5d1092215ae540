//! What the token-by-token view shows besides the next character: each head's attention
//! weights over the earlier positions. Neither engine exposes them (the static one keeps them
//! in its activation cache, the dynamic one as tape nodes), so this is microgpt's forward pass
//! once more, in plain numbers from a checkpoint's flat weights, written for reading rather
//! than speed. Its logits are checked against the reference engine's in the tests below, so
//! the weights shown are the ones the model computes.

use crate::shape::RMSNORM_EPS;
use crate::shape::Shape;

/// One pass over a sequence: the logits after its last token, and at that last position
/// `attention[layer][head][t]`, the weight of position `t` (`0..len`).
pub struct Inspection {
    pub logits: Vec<f64>,
    pub attention: Vec<Vec<Vec<f64>>>,
}

/// A weight matrix `[rows][cols]`, row-major, borrowed from the flat parameters.
struct Mat<'a> {
    w: &'a [f64],
    cols: usize,
}

impl Mat<'_> {
    fn row(&self, r: usize) -> &[f64] {
        &self.w[r * self.cols..(r + 1) * self.cols]
    }

    /// `y[o] = Σᵢ w[o][i]·x[i]`
    fn apply(&self, x: &[f64]) -> Vec<f64> {
        self.w.chunks(self.cols).map(|row| dot(row, x)).collect()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `x · (mean(x²) + ε)^-½`
fn rmsnorm(x: &[f64]) -> Vec<f64> {
    let scale = (dot(x, x) / x.len() as f64 + RMSNORM_EPS).powf(-0.5);
    x.iter().map(|v| v * scale).collect()
}

fn softmax(x: &[f64]) -> Vec<f64> {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - max).exp()).collect();
    let inv = e.iter().sum::<f64>().powf(-1.0);
    e.iter().map(|v| v * inv).collect()
}

/// Runs `tokens` (BOS first, at most `block_size` of them) through the model.
pub fn inspect(shape: &Shape, params: &[f64], tokens: &[usize]) -> Inspection {
    let mut mats = Vec::new();
    let mut off = 0;
    for (_, rows, cols) in shape.tensors() {
        mats.push(Mat {
            w: &params[off..off + rows * cols],
            cols,
        });
        off += rows * cols;
    }
    let (wte, wpe, lm_head) = (&mats[0], &mats[1], &mats[2]);
    let (n_head, d) = (shape.n_head, shape.head_dim());
    let scale = (d as f64).powf(0.5);
    // per layer, the keys and values of every position so far
    let mut keys = vec![Vec::<Vec<f64>>::new(); shape.n_layer];
    let mut values = vec![Vec::<Vec<f64>>::new(); shape.n_layer];
    let mut attention = vec![vec![Vec::new(); n_head]; shape.n_layer];
    let mut x = Vec::new();
    for (pos, &token) in tokens.iter().enumerate() {
        let emb: Vec<f64> = wte
            .row(token)
            .iter()
            .zip(wpe.row(pos))
            .map(|(a, b)| a + b)
            .collect();
        x = rmsnorm(&emb);
        for (l, layer) in mats[3..].chunks(6).enumerate() {
            let h = rmsnorm(&x);
            let q = layer[0].apply(&h);
            keys[l].push(layer[1].apply(&h));
            values[l].push(layer[2].apply(&h));
            let mut x_attn = vec![0.0; shape.n_embd];
            for (head, seen) in attention[l].iter_mut().enumerate() {
                let hs = head * d..(head + 1) * d;
                let logits: Vec<f64> = keys[l]
                    .iter()
                    .map(|k| dot(&q[hs.clone()], &k[hs.clone()]) / scale)
                    .collect();
                let w = softmax(&logits);
                for j in hs.clone() {
                    x_attn[j] = w.iter().zip(&values[l]).map(|(wt, v)| wt * v[j]).sum();
                }
                *seen = w;
            }
            let out = layer[3].apply(&x_attn);
            x = x.iter().zip(&out).map(|(a, b)| a + b).collect();
            let h = rmsnorm(&x);
            let h: Vec<f64> = layer[4].apply(&h).into_iter().map(|v| v.max(0.0)).collect();
            let out = layer[5].apply(&h);
            x = x.iter().zip(&out).map(|(a, b)| a + b).collect();
        }
    }
    Inspection {
        logits: lm_head.apply(&x),
        attention,
    }
}

#[cfg(test)]
mod tests {
    use super::inspect;
    use crate::reference::Reference;
    use crate::rng::Rng;
    use crate::shape::Shape;

    #[test]
    fn the_logits_are_the_reference_engines_and_each_head_weighs_to_one() {
        let shape = Shape {
            vocab: 11,
            block_size: 8,
            n_embd: 12,
            n_head: 3,
            mlp: 20,
            n_layer: 2,
        };
        let mut model = Reference::new(shape, &mut Rng::pcg(5)).unwrap();
        let params = model.params().to_vec();
        let tokens = [10, 3, 7, 7, 0, 9];
        let mut worst: f64 = 0.0;
        for n in 1..=tokens.len() {
            let expected = model.forward_token(tokens[n - 1], n - 1).to_vec();
            let got = inspect(&shape, &params, &tokens[..n]);
            for (a, b) in got.logits.iter().zip(&expected) {
                worst = worst.max((a - b).abs() / b.abs().max(1e-3));
            }
            assert_eq!(got.attention.len(), 2);
            for head in got.attention.iter().flatten() {
                assert_eq!(head.len(), n, "one weight per position so far");
                let total: f64 = head.iter().sum();
                assert!((total - 1.0).abs() < 1e-12, "{total}");
            }
        }
        println!("largest relative difference of the logits: {worst:e}");
        // the same operations in the same order as the tape's, up to the summation order of
        // a few dot products: rounding only
        assert!(worst < 1e-12, "{worst}");
    }
}
