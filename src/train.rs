//! The training loop shared by both engines ([`Model`]): `batch_size` documents per step
//! (microgpt: one), cycling through the shuffled list, Adam with microgpt's linear decay; and
//! the evaluation pass.

use std::ops::ControlFlow;

use crate::bail;
use crate::data::{DocSet, EncodedDocs};
use crate::dropout::Dropout;
use crate::error::Result;
use crate::model::{Model, StepInputs};
use crate::optim::Adam;
use crate::rng::{Rng, mix64};

/// Positions a document is trained on: `min(block_size, len − 1)`.
pub fn positions(tokens: &[usize], block_size: usize) -> usize {
    block_size.min(tokens.len() - 1)
}

/// Documents per batch of an evaluation pass.
const EVAL_BATCH: usize = 256;

/// Token-weighted mean loss over `docs` (each document's positions count once): the sum of
/// the negative log-likelihoods of every predicted token, the number of tokens. The documents
/// go through [`Model::losses`] in batches, in order.
pub fn evaluate<M: Model + ?Sized>(model: &mut M, docs: &EncodedDocs) -> (f64, usize) {
    let t = model.shape().block_size;
    let mut sum = 0.0;
    let mut n = 0;
    let mut batch: Vec<&[usize]> = Vec::with_capacity(EVAL_BATCH);
    let mut losses = [0.0; EVAL_BATCH];
    let mut docs = docs.iter().peekable();
    while docs.peek().is_some() {
        batch.clear();
        batch.extend(docs.by_ref().take(EVAL_BATCH));
        let out = &mut losses[..batch.len()];
        model.losses(&batch, out);
        for (doc, l) in batch.iter().zip(out.iter()) {
            let k = positions(doc, t);
            sum += l * k as f64;
            n += k;
        }
    }
    (sum, n)
}

/// How a run trains, besides its model and data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    pub adam: Adam,
    /// Documents per step.
    pub batch_size: usize,
    /// Dropout probability (0: none, as microgpt).
    pub dropout: f64,
    /// Decay of the weights' moving average ([`crate::ema::Ema`]; 0: none, as microgpt). The
    /// loop here never reads it: the `train` session keeps the average beside the model.
    pub ema: f64,
    /// A step's loss is the mean over its tokens rather than over its documents.
    pub token_mean: bool,
    /// Visit the documents in a new order every epoch rather than in the same order.
    pub reshuffle: bool,
    /// Seed of the dropout masks and of the epochs' orders.
    pub seed: u64,
}

impl Recipe {
    /// microgpt's: Adam as given, one document per step, nothing else.
    pub fn microgpt(adam: Adam, seed: u64) -> Recipe {
        Recipe {
            adam,
            batch_size: 1,
            dropout: 0.0,
            ema: 0.0,
            token_mean: false,
            reshuffle: false,
            seed,
        }
    }
}

/// The order documents are visited in: the `k`-th document of the run is
/// `order[k mod n]` of epoch `⌊k / n⌋`. Without reshuffling every epoch is the list's own
/// order (microgpt's `docs[step % len(docs)]`); with it, epoch 0 is too and each later epoch
/// `e` is a permutation drawn from the run's seed and `e` alone, so that a resumed run visits
/// the same documents.
pub struct Order {
    num_docs: usize,
    reshuffle: Option<u64>,
    epoch: usize,
    /// The epoch's permutation; empty without reshuffling (a run in list order need not
    /// allocate, and fault in, one index per document).
    perm: Vec<usize>,
}

impl Order {
    pub fn new(num_docs: usize, reshuffle: bool, seed: u64) -> Order {
        Order {
            num_docs,
            reshuffle: reshuffle.then_some(seed),
            epoch: 0,
            perm: if reshuffle {
                (0..num_docs).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The index of the run's `k`-th document.
    pub fn doc(&mut self, k: usize) -> usize {
        let n = self.num_docs;
        let Some(seed) = self.reshuffle else {
            return k % n;
        };
        let epoch = k / n;
        if epoch != self.epoch {
            self.epoch = epoch;
            self.perm.iter_mut().enumerate().for_each(|(i, p)| *p = i);
            if epoch > 0 {
                let key = mix64(mix64(seed) ^ mix64(epoch as u64));
                Rng::pcg(key).shuffle(&mut self.perm);
            }
        }
        self.perm[k % n]
    }
}

/// Runs steps `first..last` of a schedule of `total` steps, `recipe.batch_size` documents
/// per step (the run's documents `step·batch_size + i`, see [`Order`]), and calls
/// `on_step(step, loss, tokens)` after each with the number of positions trained on.
///
/// A step whose loss is not finite ends the run with an error that names it, before `on_step`
/// sees it, and so does a run that ends with weights that are not finite (a step's update can
/// overflow before any loss does): the model is then garbage and must not be saved.
pub fn train<M: Model + ?Sized>(
    model: &mut M,
    docs: &(impl DocSet + ?Sized),
    recipe: &Recipe,
    steps: (usize, usize, usize),
    mut on_step: impl FnMut(&mut M, usize, f64, usize),
) -> Result<()> {
    train_until(model, docs, recipe, steps, |m, step, loss, tokens| {
        on_step(m, step, loss, tokens);
        ControlFlow::Continue(())
    })?;
    Ok(())
}

/// [`train`], stopping early after any step whose `on_step` returns `Break` (the playground's
/// stop button, a first Ctrl-C: see [`crate::interrupt`]). Returns the number of the last step
/// done plus one.
pub fn train_until<M: Model + ?Sized>(
    model: &mut M,
    docs: &(impl DocSet + ?Sized),
    recipe: &Recipe,
    (first, last, total): (usize, usize, usize),
    mut on_step: impl FnMut(&mut M, usize, f64, usize) -> ControlFlow<()>,
) -> Result<usize> {
    let t = model.shape().block_size;
    let (adam, batch_size) = (&recipe.adam, recipe.batch_size);
    let mut order = Order::new(docs.len(), recipe.reshuffle, recipe.seed);
    // the step's documents, each cut to the `t + 1` tokens the model reads, so that neither
    // buffer ever grows: a step allocates nothing
    let mut buf: Vec<usize> = Vec::with_capacity(batch_size * (t + 1));
    let mut ends: Vec<usize> = Vec::with_capacity(batch_size);
    let mut spare: Vec<&[usize]> = Vec::with_capacity(batch_size);
    // what is done if no step runs (`first ≥ last`)
    let mut done = first.max(last);
    for step in first..last {
        buf.clear();
        ends.clear();
        for i in 0..batch_size {
            docs.write(order.doc(step * batch_size + i), t + 1, &mut buf);
            ends.push(buf.len());
        }
        let mut batch = recycle(spare);
        let starts = std::iter::once(0).chain(ends.iter().copied());
        batch.extend(starts.zip(&ends).map(|(a, &b)| &buf[a..b]));
        let tokens = batch.iter().map(|d| positions(d, t)).sum();
        let inputs = StepInputs {
            dropout: Dropout::at(recipe.dropout, recipe.seed, step),
            token_mean: recipe.token_mean,
        };
        let loss = model.train_batch(&batch, &adam.at(step, total), &inputs);
        spare = recycle(batch);
        done = step + 1;
        if !loss.is_finite() {
            bail!(
                "step {done}: the loss is {loss}: training diverged (try a lower --lr); nothing was saved from this step on"
            );
        }
        if on_step(model, step, loss, tokens).is_break() {
            break;
        }
    }
    if model.params_flat().iter().any(|x| !x.is_finite()) {
        bail!(
            "step {done}: the weights are no longer finite: training diverged (try a lower --lr); nothing was saved from this step on"
        );
    }
    Ok(done)
}

/// An empty vector with `v`'s allocation, for slices of another lifetime: one batch vector
/// serves every step although each borrows that step's buffer. (Collecting a vector's own
/// iterator into a vector of the same layout reuses its allocation; the counting-allocator
/// tests check that a step allocates nothing.)
fn recycle<'b>(mut v: Vec<&[usize]>) -> Vec<&'b [usize]> {
    v.clear();
    v.into_iter()
        .map(|_| -> &'b [usize] { unreachable!() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Order;

    #[test]
    fn without_reshuffle_the_documents_cycle_in_order() {
        let mut o = Order::new(5, false, 1);
        let seen: Vec<usize> = (0..12).map(|k| o.doc(k)).collect();
        assert_eq!(seen, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]);
    }

    #[test]
    fn reshuffled_epochs_are_fresh_permutations_that_a_resume_redraws() {
        let n = 50;
        let mut o = Order::new(n, true, 7);
        let epochs: Vec<Vec<usize>> = (0..4)
            .map(|e| (0..n).map(|i| o.doc(e * n + i)).collect())
            .collect();
        // epoch 0 is the list's own order, as without reshuffling
        assert_eq!(epochs[0], (0..n).collect::<Vec<_>>());
        for e in 1..4 {
            let mut sorted = epochs[e].clone();
            sorted.sort();
            assert_eq!(
                sorted,
                (0..n).collect::<Vec<_>>(),
                "epoch {e} is a permutation"
            );
            assert_ne!(
                epochs[e],
                epochs[e - 1],
                "epoch {e} differs from the one before"
            );
        }
        // a run resumed in the middle of epoch 2 (a fresh Order) visits the same documents
        let mut resumed = Order::new(n, true, 7);
        let tail: Vec<usize> = (2 * n + 17..4 * n).map(|k| resumed.doc(k)).collect();
        let expected: Vec<usize> = epochs[2][17..].iter().chain(&epochs[3]).copied().collect();
        assert_eq!(tail, expected);
        // and another seed gives other orders
        let mut other = Order::new(n, true, 8);
        let e1: Vec<usize> = (n..2 * n).map(|k| other.doc(k)).collect();
        assert_ne!(e1, epochs[1]);
    }
}
