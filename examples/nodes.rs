use microgpt::{config::Shape, optim::Adam, reference::Reference, rng::Rng};
fn main() {
    let mut rng = Rng::pcg(1);
    let mut m = Reference::new(Shape::micro(27), &mut rng).unwrap();
    let doc = [26, 4, 12, 12, 0, 26]; // emma
    let t = std::time::Instant::now();
    let adam = Adam::default();
    for s in 0..3000 {
        m.train_step(&doc, &adam.at(s, 2000));
    }
    eprintln!(
        "{:.1} us/step (5 positions)",
        t.elapsed().as_secs_f64() * 1e6 / 3000.0
    );
    eprintln!("nodes {}", m.tape_len());
}
