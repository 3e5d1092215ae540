//! A training step and a sampling step of the static engine allocate nothing: a counting
//! global allocator sees zero allocations over 100+ training steps and a full sample.
//!
//! Only allocations made by the measuring thread while it measures are counted (a thread-local
//! flag), so the test harness's own threads cannot disturb the count.

mod common;

use common::counting_alloc::{Counting, count_on_this_thread as count_allocations};
use microgpt::optim::Adam;
use microgpt::presets::Micro;
use microgpt::rng::Rng;

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn training_steps_and_a_sample_allocate_nothing() {
    const V: usize = 27;
    const T: usize = 16;
    let mut rng = Rng::pcg(42);
    let (tok, enc) = common::names(&mut rng);
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
