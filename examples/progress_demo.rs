//! Drives the progress bar like a short training run, then measures what `update` costs per call
//! with the bar off and on: `cargo run --release --example progress_demo`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use microgpt::progress::Progress;

fn main() {
    let steps = 3000;
    let mut p = Progress::new(steps, true);
    for step in 1..=steps {
        std::thread::sleep(Duration::from_micros(800));
        let noise = (step * 7919 % 101) as f64 / 200.0 - 0.25;
        let loss = 2.0 + 1.3 * (-(step as f64) / 600.0).exp() + noise;
        p.update(step, loss, step * 16 * 8);
        if step % 1000 == 0 {
            p.println(format!("step {step:5} | val loss {:.4}", loss - noise));
        }
    }
    p.finish();

    let n = 5_000_000;
    for enabled in [false, true] {
        let mut p = Progress::new(n, enabled);
        let on = p.is_enabled();
        let t = Instant::now();
        for step in 1..=n {
            p.update(black_box(step), black_box(2.0), black_box(step * 128));
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        p.finish();
        p.println(format!(
            "update with the bar {}: {ns:.1} ns per call",
            ["off", "on"][on as usize]
        ));
    }
}
