//! A counting global allocator for the allocation tests: every call goes to `System`; while a
//! measurement is on, allocations are counted, either those of the measuring thread only
//! ([`count_on_this_thread`]: the harness's other threads cannot disturb the count) or those of
//! every thread of the process ([`count_in_process`]: the worker threads allocate through it
//! too). A test binary installs it with
//! `#[global_allocator] static GLOBAL: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static IN_PROCESS: AtomicBool = AtomicBool::new(false);

thread_local! {
    // const-initialized and without Drop: reading it never allocates and never fails
    static ON_THIS_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if IN_PROCESS.load(Ordering::SeqCst) || ON_THIS_THREAD.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the counting touches only atomics and a const thread-local `Cell<bool>`, none of
// which allocates.
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

/// Runs `f` with the allocations of this thread counted; returns the count.
pub fn count_on_this_thread(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    ON_THIS_THREAD.with(|m| m.set(true));
    f();
    ON_THIS_THREAD.with(|m| m.set(false));
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

/// Runs `f` with every allocation of the process counted; returns the count.
pub fn count_in_process(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    IN_PROCESS.store(true, Ordering::SeqCst);
    f();
    IN_PROCESS.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

/// Starts counting every allocation of the process, for a count that starts and ends inside
/// code the test does not drive (a training loop's callback); [`stop_in_process`] ends it.
pub fn start_in_process() -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    IN_PROCESS.store(true, Ordering::SeqCst);
    before
}

/// Ends a count begun by [`start_in_process`] (which returned `before`); returns it.
pub fn stop_in_process(before: usize) -> usize {
    IN_PROCESS.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst) - before
}
