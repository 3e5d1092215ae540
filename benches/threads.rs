//! The parallel speed-up of a training step: tokens/s at 1 thread and at all cores, measured
//! by interleaving the two in one process.
//!
//! A virtual machine's speed drifts by 10-20% from minute to minute, so two separate runs (one
//! at 1 thread, then one at 2) compare two moments as much as two thread counts. Here one
//! model trains on names.txt in batches of 32 names (the README's `small` recipe's batch) and
//! switches thread count every chunk of steps — 1, all, all, 1, 1, all, … — so both counts see
//! the same minutes. Each round's speed-up is the ratio of its two chunks' tokens/s; the report
//! is the median of those ratios with their range, and the median tokens/s of each count.
//!
//! `cargo bench --bench threads` (about a minute); `MICROGPT_ROUNDS=N` sets the rounds per
//! preset (default 15). Results do not depend on the thread count (`tests/minibatch.rs`), so
//! switching mid-run changes only the speed.

use std::time::Instant;

use microgpt::data::{EncodedDocs, Tokenizer, default_data_path, load_docs};
use microgpt::model::{MicroGpt, SmallGpt};
use microgpt::optim::Adam;
use microgpt::rng::Rng;
use microgpt::train::{Model, positions};

const BATCH: usize = 32;

/// A preset and the steps of one chunk (≈ 0.5-1.5 s at one thread).
struct Case {
    name: &'static str,
    steps: usize,
}

fn main() {
    let rounds: usize = match std::env::var("MICROGPT_ROUNDS") {
        Ok(s) => s.parse().expect("MICROGPT_ROUNDS: a number of rounds"),
        Err(_) => 15,
    };
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let path = default_data_path().expect("names.txt (see the README's Data section)");
    let mut names = load_docs(&path).expect("a readable dataset");
    let mut rng = Rng::pcg(42);
    rng.shuffle(&mut names);
    let tok = Tokenizer::from_docs(&names);
    let docs = EncodedDocs::new(&tok, &names).expect("every name encodes");
    let vocab = tok.vocab_size();
    println!("batches of {BATCH} names, 1 thread vs {all} threads, {rounds} rounds per preset");
    for case in [
        Case {
            name: "micro",
            steps: 2000,
        },
        Case {
            name: "small",
            steps: 100,
        },
    ] {
        let mut model: Box<dyn Model> = match case.name {
            "micro" => Box::new(MicroGpt::new(vocab, &mut rng.clone()).unwrap()),
            _ => Box::new(SmallGpt::new(vocab, &mut rng.clone()).unwrap()),
        };
        measure(&mut *model, &case, &docs, all, rounds);
    }
}

/// Trains `model` for `rounds` pairs of chunks, alternating which thread count goes first,
/// after one unmeasured pair; prints the summary line.
fn measure(model: &mut dyn Model, case: &Case, docs: &EncodedDocs, all: usize, rounds: usize) {
    let block = model.shape().block_size;
    let adam = Adam::default();
    let total = (rounds + 1) * 2 * case.steps;
    let mut step = 0;
    let mut chunk = |model: &mut dyn Model, threads: usize| -> f64 {
        model.set_threads(threads).expect("worker threads");
        let start = Instant::now();
        let mut tokens = 0;
        for _ in 0..case.steps {
            let first = step * BATCH % docs.len();
            let batch: Vec<&[usize]> = (0..BATCH)
                .map(|j| docs.get((first + j) % docs.len()))
                .collect();
            tokens += batch.iter().map(|d| positions(d, block)).sum::<usize>();
            model.train_batch(&batch, &adam.at(step, total));
            step += 1;
        }
        tokens as f64 / start.elapsed().as_secs_f64()
    };
    let (mut one, mut many, mut ratio) = (vec![], vec![], vec![]);
    for round in 0..=rounds {
        let (a, b) = if round % 2 == 0 {
            let a = chunk(model, 1);
            (a, chunk(model, all))
        } else {
            let b = chunk(model, all);
            (chunk(model, 1), b)
        };
        if round > 0 {
            one.push(a);
            many.push(b);
            ratio.push(b / a);
        }
    }
    let lo = ratio.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratio.iter().copied().fold(0.0, f64::max);
    println!(
        "{:<6} 1 thread {:>9.0} tok/s   {all} threads {:>9.0} tok/s   speed-up {:.2}× (median of {} rounds; {:.2}-{:.2})",
        case.name,
        median(&mut one),
        median(&mut many),
        median(&mut ratio),
        ratio.len(),
        lo,
        hi,
    );
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
