//! The parallel speed-up of a training step: tokens/s at 1 thread and at all cores, measured
//! by interleaving them in one process, beside what the machine allows.
//!
//! A virtual machine's speed drifts by 10-20% from minute to minute, so two separate runs (one
//! at 1 thread, then one at 2) compare two moments as much as two thread counts. Here a model
//! trains on names.txt in batches of 32 names (the README's `small` recipe's batch) in chunks
//! of steps, and every round runs three chunks, in an order that rotates from round to round:
//! - `1 thread`: the model on one thread;
//! - `all`: the same model on all cores (`set_threads`);
//! - `ceiling`: one independent single-threaded model per core, trained at the same time (no
//!   shared weights, no barriers): the speed-up this machine gives this work when nothing is
//!   shared, the ceiling for `all`.
//!
//! A round's speed-ups are the `all` and `ceiling` chunks' tokens/s over the `1 thread`
//! chunk's; the report has their medians over the rounds, with the range, and the median
//! tokens/s of each. Results do not depend on the thread count (`tests/minibatch.rs`), so
//! switching mid-run changes only the speed.
//!
//! `cargo bench --bench threads` (about two minutes); `MICROGPT_ROUNDS=N` sets the rounds per
//! preset (default 15).

use std::time::Instant;

use microgpt::data::{EncodedDocs, Tokenizer};
use microgpt::model::{Model, StepInputs};
use microgpt::optim::Adam;
use microgpt::presets::{Micro, Small};
use microgpt::rng::Rng;
use microgpt::train::positions;

const BATCH: usize = 32;

fn main() {
    let rounds: usize = match std::env::var("MICROGPT_ROUNDS") {
        Ok(s) => s.parse().expect("MICROGPT_ROUNDS: a number of rounds"),
        Err(_) => 15,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // the built-in names.txt, as the binary reads it by default
    let mut names = microgpt::data::names();
    let mut rng = Rng::pcg(42);
    rng.shuffle(&mut names);
    let tok = Tokenizer::from_docs(&names);
    let docs = EncodedDocs::new(&tok, &names).expect("every name encodes");
    let vocab = tok.vocab_size();
    println!("batches of {BATCH} names, 1 thread vs {cores} cores, {rounds} rounds per preset");
    // chunks of ≈ 0.5-1.5 s at one thread
    // names.txt has 27 tokens: the aliases of the bucket the binary builds
    let micro = || Micro::new(vocab, &mut rng.clone()).unwrap();
    measure("micro", 2000, micro, &docs, cores, rounds);
    let small = || Small::new(vocab, &mut rng.clone()).unwrap();
    measure("small", 100, small, &docs, cores, rounds);
}

/// Trains `steps` steps of a schedule of `total`, starting at `step`, on `threads`; returns
/// the tokens trained on and the seconds taken.
fn chunk(
    model: &mut impl Model,
    docs: &EncodedDocs,
    (step, steps, total): (usize, usize, usize),
    threads: usize,
) -> (usize, f64) {
    model.set_threads(threads).expect("worker threads");
    let block = model.shape().block_size;
    let adam = Adam::default();
    let mut batch: Vec<&[usize]> = Vec::with_capacity(BATCH);
    let start = Instant::now();
    let mut tokens = 0;
    for s in step..step + steps {
        batch.clear();
        batch.extend((0..BATCH).map(|j| docs.get((s * BATCH + j) % docs.len())));
        tokens += batch.iter().map(|d| positions(d, block)).sum::<usize>();
        model.train_batch(&batch, &adam.at(s, total), &StepInputs::MICROGPT);
    }
    (tokens, start.elapsed().as_secs_f64())
}

/// One unmeasured round, then `rounds` measured ones; prints the summary line.
fn measure<M: Model + Send>(
    name: &str,
    steps: usize,
    make: impl Fn() -> M,
    docs: &EncodedDocs,
    cores: usize,
    rounds: usize,
) {
    let mut models: Vec<M> = (0..cores).map(|_| make()).collect();
    let total = (rounds + 1) * (2 + cores) * steps;
    let mut step = 0;
    let (mut one, mut all, mut ceiling) = (vec![], vec![], vec![]);
    let (mut sp_all, mut sp_ceiling) = (vec![], vec![]);
    for round in 0..=rounds {
        let mut speed = [0.0; 3];
        for k in 0..3 {
            let which = (round + k) % 3;
            speed[which] = match which {
                0 | 1 => {
                    let threads = if which == 0 { 1 } else { cores };
                    let (tokens, secs) = chunk(&mut models[0], docs, (step, steps, total), threads);
                    step += steps;
                    tokens as f64 / secs
                }
                _ => {
                    // every model on its own thread at once: the sum of their speeds
                    let first = step;
                    step += cores * steps;
                    std::thread::scope(|s| {
                        let handles: Vec<_> = (models.iter_mut().enumerate())
                            .map(|(i, m)| {
                                let at = (first + i * steps, steps, total);
                                s.spawn(move || chunk(m, docs, at, 1))
                            })
                            .collect();
                        let done = handles.into_iter().map(|h| h.join().expect("a model"));
                        done.map(|(tokens, secs)| tokens as f64 / secs).sum()
                    })
                }
            };
        }
        if round > 0 {
            one.push(speed[0]);
            all.push(speed[1]);
            ceiling.push(speed[2]);
            sp_all.push(speed[1] / speed[0]);
            sp_ceiling.push(speed[2] / speed[0]);
        }
    }
    println!(
        "{name:<6} 1 thread {:>9.0} tok/s | {cores} threads {:>9.0} tok/s, speed-up {} | ceiling ({cores} independent models) {:>9.0} tok/s, {}",
        median(&mut one),
        median(&mut all),
        summary(&mut sp_all),
        median(&mut ceiling),
        summary(&mut sp_ceiling),
    );
}

/// `median× (min-max)`.
fn summary(xs: &mut [f64]) -> String {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(0.0, f64::max);
    format!("{:.2}× ({lo:.2}-{hi:.2})", median(xs))
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}
