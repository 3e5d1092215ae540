//! A count-based bigram baseline: the floor any loss of the GPT should be compared with.
//!
//! It sees the tokens the GPT sees: each document is `[BOS] doc [BOS]` and every adjacent pair
//! in it is one (context, next) event. With add-k smoothing,
//! `P(next | ctx) = (count(ctx, next) + k) / (count(ctx) + k·V)`; k = 1 (Laplace,
//! [`Bigram::DEFAULT_SMOOTHING`]) by default. With k = 0 the model is the maximum-likelihood one
//! and an unseen pair has probability 0 (an infinite negative log-likelihood).
//!
//! Documents are token slices, e.g. from [`EncodedDocs`](crate::data::EncodedDocs):
//! `(0..docs.len()).map(|i| docs.get(i))`.

use crate::bail;
use crate::error::Result;
use crate::limits::MAX_VOCAB;

#[derive(Debug, Clone, PartialEq)]
pub struct Bigram {
    vocab: usize,
    smoothing: f64,
    /// `counts[ctx·V + next]`
    counts: Vec<u64>,
    /// `ln P(next | ctx)` at `[ctx·V + next]`
    log_probs: Vec<f64>,
}

impl Bigram {
    /// Laplace smoothing: one imagined occurrence of every pair.
    pub const DEFAULT_SMOOTHING: f64 = 1.0;

    /// Counts every adjacent pair of every document. `vocab` is the number of token ids (BOS
    /// included); a token outside `0..vocab`, an empty vocabulary, one larger than a model's
    /// ([`MAX_VOCAB`]: the table is `vocab²` counts) or a negative or non-finite `smoothing` is
    /// an error.
    pub fn fit<'a, I>(vocab: usize, docs: I, smoothing: f64) -> Result<Bigram>
    where
        I: IntoIterator<Item = &'a [usize]>,
    {
        if vocab == 0 {
            bail!("bigram: the vocabulary is empty");
        }
        if vocab > MAX_VOCAB {
            bail!(
                "bigram: the vocabulary has {vocab} tokens, more than the {MAX_VOCAB} a model can have"
            );
        }
        if !(smoothing.is_finite() && smoothing >= 0.0) {
            bail!(
                "bigram: smoothing must be a finite number ≥ 0, not {}",
                smoothing
            );
        }
        let mut counts = vec![0u64; vocab * vocab];
        for doc in docs {
            check_tokens(doc, vocab)?;
            for w in doc.windows(2) {
                counts[w[0] * vocab + w[1]] += 1;
            }
        }
        let mut log_probs = vec![0.0; vocab * vocab];
        for ctx in 0..vocab {
            let row = &counts[ctx * vocab..(ctx + 1) * vocab];
            let total: u64 = row.iter().sum();
            let denom = total as f64 + smoothing * vocab as f64;
            for (lp, &c) in log_probs[ctx * vocab..(ctx + 1) * vocab]
                .iter_mut()
                .zip(row)
            {
                let num = c as f64 + smoothing;
                // k = 0 and a context never seen: 0/0; call it probability 0 like any unseen pair
                *lp = if num == 0.0 {
                    f64::NEG_INFINITY
                } else {
                    num.ln() - denom.ln()
                };
            }
        }
        Ok(Bigram {
            vocab,
            smoothing,
            counts,
            log_probs,
        })
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    pub fn smoothing(&self) -> f64 {
        self.smoothing
    }

    /// How often `next` followed `ctx` in the training documents.
    pub fn count(&self, ctx: usize, next: usize) -> u64 {
        self.counts[ctx * self.vocab + next]
    }

    /// `P(next | ctx)`.
    pub fn prob(&self, ctx: usize, next: usize) -> f64 {
        self.log_prob(ctx, next).exp()
    }

    /// `ln P(next | ctx)`.
    pub fn log_prob(&self, ctx: usize, next: usize) -> f64 {
        self.log_probs[ctx * self.vocab + next]
    }

    /// `(Σ −ln P(next | ctx), number of predicted tokens)` over every document. Each document
    /// of `n + 1` tokens predicts its last `n`; with `max_positions = Some(T)` only the first
    /// `min(T, n)` of them, as microgpt (block size `T`) does. `None` scores every position.
    pub fn nll<'a, I>(&self, docs: I, max_positions: Option<usize>) -> Result<(f64, usize)>
    where
        I: IntoIterator<Item = &'a [usize]>,
    {
        let mut sum = 0.0;
        let mut n = 0;
        for doc in docs {
            check_tokens(doc, self.vocab)?;
            let pairs = doc.len().saturating_sub(1);
            let scored = max_positions.map_or(pairs, |t| t.min(pairs));
            for w in doc.windows(2).take(scored) {
                sum -= self.log_prob(w[0], w[1]);
            }
            n += scored;
        }
        Ok((sum, n))
    }

    /// The mean negative log-likelihood per predicted token, in nats (token-weighted over all
    /// documents); an error if there is no token to predict.
    pub fn mean_nll<'a, I>(&self, docs: I, max_positions: Option<usize>) -> Result<f64>
    where
        I: IntoIterator<Item = &'a [usize]>,
    {
        let (sum, n) = self.nll(docs, max_positions)?;
        if n == 0 {
            bail!("bigram: no token to predict (every document is empty or max_positions is 0)");
        }
        Ok(sum / n as f64)
    }
}

fn check_tokens(doc: &[usize], vocab: usize) -> Result<()> {
    if let Some(&t) = doc.iter().find(|&&t| t >= vocab) {
        bail!(
            "bigram: token id {} is outside the vocabulary of {} ids",
            t,
            vocab
        );
    }
    Ok(())
}
