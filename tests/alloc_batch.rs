//! A batched training step on several threads allocates nothing: a counting global allocator
//! sees zero allocations, on any thread of the process, over 25 steps of the micro and of the
//! small preset after a warm-up (which allocates the batch's buffers once).
//!
//! Every allocation of the process counts (the worker threads allocate through the same
//! global allocator), so this file holds a single test: the harness has no other test thread
//! to disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use microgpt::data::{EncodedDocs, Tokenizer, load_docs};
use microgpt::model::StepInputs;
use microgpt::optim::Adam;
use microgpt::presets::static_model;
use microgpt::rng::Rng;

struct Counting;

static MEASURING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn note_allocation() {
    if MEASURING.load(Ordering::SeqCst) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the counting touches only two atomics, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with every allocation of the process counted; returns the count.
fn count_allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    MEASURING.store(true, Ordering::SeqCst);
    f();
    MEASURING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

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
    let path = microgpt::data::DEFAULT_DATA_PATHS
        .iter()
        .map(std::path::Path::new)
        .find(|p| p.is_file())
        .unwrap_or(std::path::Path::new("/work/shared/data/names.txt"));
    let mut docs = load_docs(path).unwrap();
    let mut rng = Rng::pcg(42);
    rng.shuffle(&mut docs);
    let tok = Tokenizer::from_docs(&docs);
    let enc = EncodedDocs::new(&tok, &docs).unwrap();
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
