//! What it costs to hand data from one core to the other: the price of putting the second
//! core to work on a step of one document.
//!
//! `cargo run --release --example handoff`
//!
//! Two arrays of `n` f64, `a` and `b`. One round: the first thread writes `a` (from `b`), the
//! second thread reads `a` and writes `b` (from `a`), the first reads `b` back; each hand-over
//! is a release store of a round counter that the other thread spins on. The same round on
//! one thread does the same arithmetic with no hand-over. The difference is what moving the
//! two arrays' cache lines between the cores costs, plus two wake-ups of a spinning thread.
//! Sizes: one 7-row activation block (112), a layer's MLP weights (2,048) and the micro
//! model's 4,192 parameters (a step whose Adam runs on the other core moves the gradient one
//! way and the weights back).
//!
//! The arrays are atomics with relaxed loads and stores (plain moves on x86-64), so the
//! example needs no `unsafe`.
//!
//! Last, a [`Crew`] of one worker running a job that does nothing: the two meetings of every
//! run, which a step on two threads pays besides its own hand-overs.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use microgpt::parallel::{Crew, Job};

struct Shared {
    a: Vec<AtomicU64>,
    b: Vec<AtomicU64>,
    turn: AtomicUsize,
}

fn get(x: &AtomicU64) -> f64 {
    f64::from_bits(x.load(Ordering::Relaxed))
}

fn put(x: &AtomicU64, v: f64) {
    x.store(v.to_bits(), Ordering::Relaxed)
}

/// `dst_i = src_i·0.5 + c`: the first thread's work on its array.
fn first(dst: &[AtomicU64], src: &[AtomicU64], c: f64) {
    for (d, s) in dst.iter().zip(src) {
        put(d, get(s) * 0.5 + c);
    }
}

/// `dst_i = dst_i·0.999 + src_i·1e-3`: the second thread's work on its array.
fn second(dst: &[AtomicU64], src: &[AtomicU64]) {
    for (d, s) in dst.iter().zip(src) {
        put(d, get(d) * 0.999 + get(s) * 1e-3);
    }
}

fn wait(turn: &AtomicUsize, value: usize) {
    while turn.load(Ordering::Acquire) != value {
        std::hint::spin_loop();
    }
}

/// Microseconds per round on two threads and on one.
fn measure(n: usize, rounds: usize) -> (f64, f64) {
    let zeros = || (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
    let s = Arc::new(Shared {
        a: zeros(),
        b: zeros(),
        turn: AtomicUsize::new(0),
    });
    let other = Arc::clone(&s);
    let helper = std::thread::spawn(move || {
        for r in 0..rounds {
            wait(&other.turn, 2 * r + 1);
            second(&other.b, &other.a);
            other.turn.store(2 * r + 2, Ordering::Release);
        }
    });
    let start = Instant::now();
    for r in 0..rounds {
        first(&s.a, &s.b, r as f64);
        s.turn.store(2 * r + 1, Ordering::Release);
        wait(&s.turn, 2 * r + 2);
        black_box(get(&s.b[n / 2]));
    }
    let two = start.elapsed().as_secs_f64();
    helper.join().expect("the helper thread");
    let start = Instant::now();
    for r in 0..rounds {
        first(&s.a, &s.b, r as f64);
        second(&s.b, &s.a);
        black_box(get(&s.b[n / 2]));
    }
    let one = start.elapsed().as_secs_f64();
    let per_round = |t: f64| t * 1e6 / rounds as f64;
    (per_round(two), per_round(one))
}

/// A job with nothing to do.
struct Nothing;

impl Job for Nothing {
    type Local = ();
    fn run(&self, _: &mut (), _: usize) {}
}

fn main() {
    println!("| f64 each way | two threads, µs/round | one thread | hand-over cost |");
    println!("|---|---|---|---|");
    for n in [16, 112, 2048, 4192] {
        let rounds = (4_000_000 / n).clamp(2_000, 200_000);
        // the median of five measurements
        let mut runs: Vec<(f64, f64)> = (0..5).map(|_| measure(n, rounds)).collect();
        runs.sort_by(|x, y| (x.0 - x.1).total_cmp(&(y.0 - y.1)));
        let (two, one) = runs[2];
        println!("| {n} | {two:.2} | {one:.2} | {:.2} µs |", two - one);
    }
    let crew = Crew::spawn(Arc::new(Nothing), vec![()]).expect("a worker thread");
    let runs = 200_000;
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..runs {
                crew.run(&mut ());
            }
            start.elapsed().as_secs_f64() * 1e6 / runs as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "\na crew run with nothing to do, 1 worker: {:.2} µs",
        times[2]
    );
}
