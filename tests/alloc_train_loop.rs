//! The training loop allocates nothing per step either: `train::train_until` over a run's
//! training split (documents kept as text and encoded as they are drawn, into buffers sized
//! once) is counted by a global allocator from the fourth step to the last, on one thread and
//! on two.
//!
//! Every allocation of the process counts, so this file holds a single test.

mod common;

use std::cell::Cell;
use std::ops::ControlFlow;

use common::counting_alloc::{Counting, start_in_process, stop_in_process};
use microgpt::data::Source;
use microgpt::optim::Adam;
use microgpt::presets::static_model;
use microgpt::rng::Rng;
use microgpt::session::Dataset;
use microgpt::train::{self, Recipe};

#[global_allocator]
static GLOBAL: Counting = Counting;

const STEPS: usize = 30;
const WARM_UP: usize = 3;

#[test]
fn training_steps_through_the_loop_allocate_nothing() {
    let mut rng = Rng::pcg(42);
    let data = Dataset::load(&Source::Names, &mut rng, 0.1, Some(1000), None).unwrap();
    for (preset, batch_size, threads) in [("micro", 1, 1), ("small", 8, 2)] {
        let mut model = static_model(preset, data.tok.vocab_size(), &mut rng.clone()).unwrap();
        model.set_threads(threads).unwrap();
        let recipe = Recipe {
            batch_size,
            dropout: 0.1,
            token_mean: true,
            reshuffle: true,
            ..Recipe::microgpt(Adam::default(), 7)
        };
        let (count, before) = (Cell::new(None), Cell::new(0));
        let done = train::train_until(
            model.as_mut(),
            &data.train,
            &recipe,
            (0, STEPS, STEPS),
            |_, step, loss, tokens| {
                assert!(loss.is_finite() && tokens > 0);
                if step + 1 == WARM_UP {
                    before.set(start_in_process());
                } else if step + 1 == STEPS {
                    count.set(Some(stop_in_process(before.get())));
                }
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(done, STEPS);
        let n = count.get().expect("the last step was counted");
        assert_eq!(
            n,
            0,
            "{n} heap allocations in {} steps of {preset}, batches of {batch_size}, {threads} thread(s)",
            STEPS - WARM_UP
        );
    }
}
