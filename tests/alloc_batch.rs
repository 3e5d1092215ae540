//! A batched training step on several threads allocates nothing: a counting global allocator
//! sees zero allocations, on any thread of the process, over 25 steps of the micro and of the
//! small preset after a warm-up (which allocates the batch's buffers once).
//!
//! Every allocation of the process counts (the worker threads allocate through the same
//! global allocator), so this file holds a single test: the harness has no other test thread
//! to disturb the count.

mod common;

use common::counting_alloc::{Counting, count_in_process as count_allocations};
use microgpt::data::EncodedDocs;
use microgpt::model::StepInputs;
use microgpt::optim::Adam;
use microgpt::presets::static_model;
use microgpt::rng::Rng;

#[global_allocator]
static GLOBAL: Counting = Counting;

const STEPS: usize = 25;

/// `STEPS` steps of `batch_size` documents after 3 steps of warm-up; the losses and the
/// number of allocations during the measured steps.
fn measure<'d>(
    mut step: impl FnMut(&[&'d [usize]], usize) -> f64,
    docs: &'d EncodedDocs,
    batch_size: usize,
) -> ([f64; STEPS], usize) {
    let mut batch: Vec<&'d [usize]> = Vec::with_capacity(batch_size);
    let fill = |batch: &mut Vec<&'d [usize]>, s: usize| {
        batch.clear();
        batch.extend((0..batch_size).map(|i| docs.get((s * batch_size + i) % docs.len())));
    };
    for s in 0..3 {
        fill(&mut batch, s);
        step(&batch, s);
    }
    let mut losses = [0.0; STEPS];
    let n = count_allocations(|| {
        for (i, loss) in losses.iter_mut().enumerate() {
            fill(&mut batch, 3 + i);
            *loss = step(&batch, 3 + i);
        }
    });
    (losses, n)
}

#[test]
fn batched_steps_on_several_threads_allocate_nothing() {
    let mut rng = Rng::pcg(42);
    let (tok, enc) = common::names(&mut rng);
    let adam = Adam::default();

    // the measuring code itself must not allocate: prove the counter counts, on any thread
    assert_eq!(
        count_allocations(|| drop(std::hint::black_box(vec![1u8; 3]))),
        1
    );
    let on_a_thread = count_allocations(|| {
        std::thread::scope(|s| {
            s.spawn(|| drop(std::hint::black_box(vec![1u8; 3])));
        })
    });
    assert!(on_a_thread > 1, "a thread and its allocation are counted");

    let mut micro = static_model("micro", tok.vocab_size(), &mut rng.clone()).unwrap();
    micro.set_threads(2).unwrap();
    let (losses, n) = measure(
        |b, s| micro.train_batch(b, &adam.at(s, 1000), &StepInputs::MICROGPT),
        &enc,
        32,
    );
    println!(
        "micro, 2 threads, batches of 32: losses {:.4} … {:.4}",
        losses[0],
        losses[STEPS - 1]
    );
    assert!(losses.iter().all(|l| l.is_finite()));
    assert_eq!(
        n, 0,
        "{n} heap allocations during {STEPS} steps of micro on 2 threads"
    );

    let mut small = static_model("small", tok.vocab_size(), &mut rng.clone()).unwrap();
    small.set_threads(3).unwrap();
    let (losses, n) = measure(
        |b, s| small.train_batch(b, &adam.at(s, 1000), &StepInputs::MICROGPT),
        &enc,
        16,
    );
    println!(
        "small, 3 threads, batches of 16: losses {:.4} … {:.4}",
        losses[0],
        losses[STEPS - 1]
    );
    assert!(losses.iter().all(|l| l.is_finite()));
    assert_eq!(
        n, 0,
        "{n} heap allocations during {STEPS} steps of small on 3 threads"
    );
}
