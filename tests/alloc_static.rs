//! A training step and a sampling step of the static engine allocate nothing: a counting
//! global allocator sees zero allocations over 100+ training steps and a full sample.
//!
//! Only allocations made by the measuring thread while it measures are counted (a thread-local
//! flag), so the test harness's own threads cannot disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use microgpt::data::{EncodedDocs, Tokenizer, load_docs};
use microgpt::optim::Adam;
use microgpt::presets::Micro;
use microgpt::rng::Rng;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // const-initialized and without Drop: reading it never allocates and never fails
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the counting touches only an atomic and a const thread-local `Cell<bool>`, neither
// of which allocates.
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

/// Runs `f` with allocations on this thread counted; returns the count.
fn count_allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    MEASURING.with(|m| m.set(true));
    f();
    MEASURING.with(|m| m.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn training_steps_and_a_sample_allocate_nothing() {
    const V: usize = 27;
    const T: usize = 16;
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
    let vocab = tok.vocab_size();
    let bos = tok.bos();
    let mut model = Micro::new(vocab, &mut rng).unwrap();
    let adam = Adam::default();
    let mut losses = [0.0; 150];
    let mut sample = [0usize; T];
    let mut sample_len = 0;

    // the measuring code itself must not allocate: prove the counter counts
    assert_eq!(
        count_allocations(|| drop(std::hint::black_box(vec![1u8; 3]))),
        1
    );

    let n = count_allocations(|| {
        for (step, loss) in losses.iter_mut().enumerate() {
            *loss = model.train_step(enc.get(step % enc.len()), &adam.at(step, 1000));
        }
        // one sample at temperature 0.5, as microgpt.py draws them
        let temperature = 0.5;
        let mut token = bos;
        for pos in 0..T {
            let logits = model.forward_token(token, pos);
            let mut probs = [0.0; V];
            let max = logits.iter().fold(f64::NEG_INFINITY, |m, &l| m.max(l));
            let mut total = 0.0;
            for (p, &l) in probs.iter_mut().zip(logits) {
                *p = ((l - max) / temperature).exp();
                total += *p;
            }
            for p in &mut probs {
                *p /= total;
            }
            token = rng.choices(&probs[..vocab]);
            if token == bos {
                break;
            }
            sample[sample_len] = token;
            sample_len += 1;
        }
    });
    println!(
        "losses {:.4} … {:.4}; sample {:?}",
        losses[0],
        losses[149],
        tok.decode(&sample[..sample_len])
    );
    assert!(losses.iter().all(|l| l.is_finite()));
    assert_eq!(
        n, 0,
        "{n} heap allocations during 150 training steps and a sample"
    );
}
