//! Sampling: turning logits into the next token, and a whole sample from either engine.
//!
//! microgpt.py: `probs = softmax([l / temperature for l in logits])`, then
//! `random.choices(range(vocab_size), weights=probs)`, stopping at BOS or at the block size.

use crate::bail;
use crate::error::Result;
use crate::model::Forward;
use crate::rng::Rng;

/// How the next token is chosen from the logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Divides the logits before the softmax. `0` means greedy: always the most likely token.
    pub temperature: f64,
    /// Only the `k` most likely tokens can be drawn (`None`: all of them).
    pub top_k: Option<usize>,
}

impl Sampling {
    /// microgpt.py's setting: temperature 0.5, no top-k.
    pub const MICROGPT: Sampling = Sampling {
        temperature: 0.5,
        top_k: None,
    };

    /// Checks the settings against a vocabulary of `vocab` tokens.
    pub fn validate(&self, vocab: usize) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            bail!(
                "temperature must be a finite number >= 0 (0 = greedy), got {}",
                self.temperature
            );
        }
        if let Some(k) = self.top_k
            && (k == 0 || k > vocab)
        {
            bail!("--top-k must be between 1 and the vocab size {vocab}, got {k}");
        }
        Ok(())
    }

    /// Draws the next token from `logits`, using `probs` (same length) as scratch space.
    /// Allocates nothing.
    pub fn next_token(&self, logits: &[f64], probs: &mut [f64], rng: &mut Rng) -> usize {
        let n = logits.len();
        let probs = &mut probs[..n];
        if self.temperature == 0.0 {
            return argmax(logits);
        }
        // softmax([l / temperature ...]) as microgpt.py computes it: l · temperature^-1,
        // minus the max, exp, then each times total^-1
        let inv_t = self.temperature.powf(-1.0);
        let max = logits
            .iter()
            .fold(f64::NEG_INFINITY, |m, &l| m.max(l * inv_t));
        let mut total = 0.0;
        for (p, &l) in probs.iter_mut().zip(logits) {
            *p = (l * inv_t - max).exp();
            total += *p;
        }
        let inv_total = total.powf(-1.0);
        for p in probs.iter_mut() {
            *p *= inv_total;
        }
        if let Some(k) = self.top_k
            && k < n
        {
            // zero every probability below the k-th largest (ties at the threshold are kept
            // in index order until k are kept)
            let mut kept = 0;
            let threshold = kth_largest(logits, k);
            for (p, &l) in probs.iter_mut().zip(logits) {
                if l > threshold {
                    kept += 1;
                } else {
                    *p = 0.0;
                }
            }
            for (p, &l) in probs.iter_mut().zip(logits) {
                if kept < k && l == threshold {
                    *p = (l * inv_t - max).exp() * inv_total;
                    kept += 1;
                }
            }
        }
        rng.choices(probs)
    }
}

/// The index of the largest value (the first, on ties).
pub fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// The k-th largest value of `xs` (1-based), without allocating: O(n·k), fine for a vocabulary.
fn kth_largest(xs: &[f64], k: usize) -> f64 {
    // the k-th largest is the largest x such that at least k values are >= x
    let mut best = f64::NEG_INFINITY;
    for &x in xs {
        if x > best && xs.iter().filter(|&&y| y >= x).count() >= k {
            best = x;
        }
    }
    best
}

/// One sample: BOS, then the prompt's tokens fed in turn, then tokens drawn until BOS or until
/// the block is full. `out` receives the prompt followed by the drawn tokens (BOS excluded);
/// `probs` is scratch space at least as long as the logits.
pub fn generate<M: Forward + ?Sized>(
    model: &mut M,
    bos: usize,
    prompt: &[usize],
    sampling: &Sampling,
    rng: &mut Rng,
    probs: &mut [f64],
    out: &mut Vec<usize>,
) {
    out.clear();
    out.extend_from_slice(prompt);
    let mut token = bos;
    for pos in 0..model.block_size() {
        let logits = model.forward_token(token, pos);
        if pos < prompt.len() {
            token = prompt[pos];
            continue;
        }
        token = sampling.next_token(logits, probs, rng);
        if token == bos {
            break;
        }
        out.push(token);
    }
}
