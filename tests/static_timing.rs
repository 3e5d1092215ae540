//! Timing of the static engine (not a pass/fail test; ignored by default):
//!
//! ```text
//! cargo test --release --test static_timing -- --ignored --nocapture
//! ```
//!
//! The default run — microgpt on names.txt, 1,000 steps of one document each — timed as a
//! whole and split into forward+backward and the Adam update, best of several repetitions
//! (the machine may be shared).

use std::hint::black_box;
use std::time::Instant;

mod common;

use microgpt::optim::Adam;
use microgpt::presets::Micro;
use microgpt::rng::Rng;

const STEPS: usize = 1000;
const REPS: usize = 7;

fn best_ms(mut run: impl FnMut()) -> f64 {
    (0..REPS)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
#[ignore = "timing, run with --ignored --nocapture"]
fn thousand_training_steps_on_names() {
    let mut rng = Rng::pcg(42);
    let (tok, enc) = common::names(&mut rng);
    let adam = Adam::default();
    let fresh = || Micro::new(tok.vocab_size(), &mut rng.clone()).unwrap();

    let mut last = 0.0;
    let train = best_ms(|| {
        let mut m = fresh();
        for step in 0..STEPS {
            last = m.train_step(enc.get(step % enc.len()), &adam.at(step, STEPS));
        }
    });
    let mut m = fresh();
    let fwd_bwd = best_ms(|| {
        for step in 0..STEPS {
            black_box(m.loss_and_grad(enc.get(step % enc.len())));
        }
    });
    let update = best_ms(|| {
        for step in 0..STEPS {
            m.adam_update(&adam.at(step, STEPS));
        }
    });
    let tokens: usize = (0..STEPS).map(|s| enc.get(s % enc.len()).len() - 1).sum();
    println!(
        "{STEPS} steps ({tokens} positions): train {train:.2} ms ({:.2} µs/step) = \
         forward+backward {fwd_bwd:.2} ms + Adam (and the Wᵀ refresh) {update:.2} ms; final loss {last:.4}",
        train * 1e3 / STEPS as f64
    );
}
