//! Heap allocations per training step, static engine vs dynamic, counted by a
//! `#[global_allocator]` that forwards to the system allocator.
//!
//! `cargo run --release --example alloc_per_step`
//!
//! Both engines run microgpt.py's 1,000 steps (names.txt shuffled with `Rng::pcg(42)`, the
//! same initial weights); every step is counted on its own. The first steps of the dynamic
//! engine also grow its tape (a graph larger than any before it reallocates the tape's
//! buffers), so the table shows the first step, the steady state (the steps after the longest
//! document has been seen once) and allocations per position.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use microgpt::data::{EncodedDocs, Tokenizer};
use microgpt::model::StepInputs;
use microgpt::optim::Adam;
use microgpt::presets::static_model;
use microgpt::reference::Reference;
use microgpt::rng::Rng;
use microgpt::train::positions;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the counting only touches two atomics, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and bytes requested while `f` runs (this program is single-threaded).
fn count<R>(f: impl FnOnce() -> R) -> (R, usize, usize) {
    let (a, b) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let r = f();
    (
        r,
        ALLOCATIONS.load(Ordering::Relaxed) - a,
        BYTES.load(Ordering::Relaxed) - b,
    )
}

const STEPS: usize = 1000;

/// Per step: (positions, allocations, bytes).
type Counts = Vec<(usize, usize, usize)>;

fn report(engine: &str, counts: &Counts, block: usize) {
    let total: usize = counts.iter().map(|c| c.1).sum();
    let bytes: usize = counts.iter().map(|c| c.2).sum();
    // steady state: every step after the first one on a document of the longest length
    let longest = counts.iter().map(|c| c.0).max().unwrap();
    let warm = counts.iter().position(|c| c.0 == longest).unwrap() + 1;
    let steady = &counts[warm..];
    let (min, max) = steady
        .iter()
        .map(|c| c.1)
        .fold((usize::MAX, 0), |(lo, hi), a| (lo.min(a), hi.max(a)));
    let steady_allocs: usize = steady.iter().map(|c| c.1).sum();
    let steady_bytes: usize = steady.iter().map(|c| c.2).sum();
    let steady_pos: usize = steady.iter().map(|c| c.0).sum();
    println!("{engine} engine, {STEPS} steps (block size {block}):");
    println!(
        "  all steps: {total} allocations ({:.1} per step), {:.1} MB requested",
        total as f64 / STEPS as f64,
        bytes as f64 / 1e6
    );
    println!(
        "  first step: {} allocations, {} bytes ({} positions)",
        counts[0].1, counts[0].2, counts[0].0
    );
    if steady.is_empty() {
        return;
    }
    println!(
        "  steady state (steps {warm}..{STEPS}): {:.1} allocations per step (min {min}, max {max}), {:.1} per position, {:.0} bytes per step",
        steady_allocs as f64 / steady.len() as f64,
        steady_allocs as f64 / steady_pos as f64,
        steady_bytes as f64 / steady.len() as f64
    );
    // allocations as a function of the document's length, in the steady state
    let mut by_len: Vec<(usize, usize)> = steady.iter().map(|c| (c.0, c.1)).collect();
    by_len.sort_unstable();
    by_len.dedup();
    let shown: Vec<String> = by_len
        .iter()
        .map(|(n, a)| format!("{n} pos: {a}"))
        .collect();
    println!("  per step by positions: {}", shown.join(", "));
}

fn main() {
    // the built-in names.txt, as the binary reads it by default
    let mut names = microgpt::data::names();
    let mut rng = Rng::pcg(42);
    rng.shuffle(&mut names);
    let tok = Tokenizer::from_docs(&names);
    let docs = EncodedDocs::new(&tok, &names).unwrap();
    let adam = Adam::default();

    let mut st = static_model("micro", tok.vocab_size(), &mut rng).unwrap();
    let mut dy = Reference::from_params(st.shape(), &st.params_flat()).unwrap();
    let block = st.shape().block_size;

    let mut counts_st: Counts = Vec::with_capacity(STEPS);
    let mut counts_dy: Counts = Vec::with_capacity(STEPS);
    let mut nodes = Vec::with_capacity(STEPS);
    let mut worst = 0.0f64;
    for step in 0..STEPS {
        let doc = docs.get(step % docs.len());
        let n = positions(doc, block);
        let a = adam.at(step, STEPS);
        let (ls, ca, cb) = count(|| st.train_batch(&[doc], &a, &StepInputs::MICROGPT));
        counts_st.push((n, ca, cb));
        let (ld, ca, cb) = count(|| dy.train_step(doc, &a));
        counts_dy.push((n, ca, cb));
        nodes.push((n, dy.tape_len()));
        worst = worst.max((ls - ld).abs());
    }
    println!("same run on both engines: largest loss difference over {STEPS} steps {worst:.2e}");
    report("static", &counts_st, block);
    report("dynamic", &counts_dy, block);
    let (pos, total): (usize, usize) = nodes
        .iter()
        .fold((0, 0), |(p, t), &(n, len)| (p + n, t + len));
    let params = st.num_params();
    println!(
        "dynamic tape: {:.0} nodes per step on average ({params} parameter leaves + {:.0} per position)",
        total as f64 / STEPS as f64,
        (total - STEPS * (params + 1)) as f64 / pos as f64
    );
    assert_eq!(
        counts_st.iter().map(|c| c.1).sum::<usize>(),
        0,
        "the static engine allocated during training"
    );
}
