//! Start-up: what the classic run (`microgpt` with no command) does before its first step, on
//! the built-in names.txt (32,033 names).
//!
//! Groups:
//! - `read`: the documents and their fingerprint (`RawDocs::read`), built in vs from the file;
//! - `split`: read, shuffle with `Rng::pcg(42)`, build the vocabulary, fingerprint, hold out
//!   makemore's 10% at most 1,000 and encode those (`Dataset::load`; the training documents
//!   are encoded as steps draw them) — the data side of start-up;
//! - `split_big`: the same for a file ten times larger (names.txt eleven times, each copy's
//!   names with one more `x` than the last: 352,363 documents, a dictionary's word list);
//! - `startup`: `split` and then the micro model drawn from the same stream
//!   (`session::build_model`), i.e. everything before the first training step.
//!
//! The whole process is measured beside it with
//! `hyperfine -N './target/release/microgpt --steps 1 --num-samples 1'` (see docs/).
//! Throughput is in documents.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use microgpt::data::{NAMES, Source};
use microgpt::rng::Rng;
use microgpt::session::{self, Dataset, Engine, RawDocs};

fn sources() -> [(&'static str, Source); 2] {
    let file = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/names.txt"));
    [("built_in", Source::Names), ("file", Source::File(file))]
}

fn bench(c: &mut Criterion) {
    let num_docs = NAMES.lines().count() as u64;

    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(num_docs));
    for (name, source) in sources() {
        g.bench_function(name, |b| {
            b.iter(|| RawDocs::read(black_box(&source)).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("split");
    g.throughput(Throughput::Elements(num_docs));
    for (name, source) in sources() {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut rng = Rng::pcg(42);
                Dataset::load(black_box(&source), &mut rng, 0.1, Some(1000), None).unwrap()
            })
        });
    }
    g.finish();

    let big = std::env::temp_dir().join(format!("microgpt-bench-big-{}.txt", std::process::id()));
    let copies: Vec<String> = (0..11)
        .map(|k| {
            NAMES
                .lines()
                .map(|n| format!("{n}{}\n", "x".repeat(k)))
                .collect()
        })
        .collect();
    std::fs::write(&big, copies.concat()).unwrap();
    let mut g = c.benchmark_group("split_big");
    g.throughput(Throughput::Elements(11 * num_docs));
    g.bench_function("file", |b| {
        b.iter(|| {
            let mut rng = Rng::pcg(42);
            let source = Source::File(big.clone());
            Dataset::load(black_box(&source), &mut rng, 0.1, Some(1000), None).unwrap()
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&big);

    let mut g = c.benchmark_group("startup");
    g.throughput(Throughput::Elements(num_docs));
    g.bench_function("built_in", |b| {
        b.iter(|| {
            let mut rng = Rng::pcg(42);
            let data =
                Dataset::load(black_box(&Source::Names), &mut rng, 0.1, Some(1000), None).unwrap();
            let model =
                session::build_model(Engine::Static, "micro", data.tok.vocab_size(), &mut rng)
                    .unwrap();
            (data, model)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
