//! What several integration tests share: names.txt as microgpt.py shuffles it, per-tensor
//! gradient comparisons (the difference of two flat vectors laid out as `shape.tensors()`,
//! tensor by tensor, with the largest difference of each printed by name before a test says
//! whether it is within tolerance), bit patterns, and the allocation tests' counting
//! allocator ([`counting_alloc`]).

// Each test binary compiles its own copy of this module and uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use microgpt::data::{self, EncodedDocs, Tokenizer};
use microgpt::rng::Rng;
use microgpt::shape::Shape;

pub mod counting_alloc;

/// The bit pattern of each value: for comparisons that must be exact (NaN payloads, −0).
pub fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The committed data/names.txt (the binary's built-in dataset).
pub fn names_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/names.txt"))
}

/// names.txt shuffled by `rng` as microgpt.py does, with its tokenizer.
pub fn names(rng: &mut Rng) -> (Tokenizer, EncodedDocs) {
    let mut docs = data::load_docs(&names_path()).unwrap();
    rng.shuffle(&mut docs);
    let tok = Tokenizer::from_docs(&docs);
    let enc = EncodedDocs::new(&tok, &docs).unwrap();
    (tok, enc)
}

/// One tensor of a comparison of `a` against `b`.
#[derive(Debug)]
pub struct TensorDiff {
    pub name: String,
    /// Largest |a − b| over the tensor.
    pub abs: f64,
    /// `abs / max|b|`, the normwise relative difference (`abs` itself where `b` is all 0).
    pub rel: f64,
}

/// `a` against `b`, per tensor of `shape`.
pub fn per_tensor(shape: &Shape, a: &[f64], b: &[f64]) -> Vec<TensorDiff> {
    assert_eq!(a.len(), b.len());
    let mut off = 0;
    let mut out = Vec::new();
    for (name, r, c) in shape.tensors() {
        let (x, y) = (&a[off..off + r * c], &b[off..off + r * c]);
        let abs = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        let scale = y.iter().map(|q| q.abs()).fold(0.0, f64::max);
        let rel = if scale > 0.0 { abs / scale } else { abs };
        out.push(TensorDiff { name, abs, rel });
        off += r * c;
    }
    assert_eq!(off, a.len());
    out
}

/// The rows in one line: `name: max |Δ| … (relative …)`, comma-separated.
pub fn report(rows: &[TensorDiff]) -> String {
    rows.iter()
        .map(|t| format!("{}: max |Δ| {:.2e} (relative {:.2e})", t.name, t.abs, t.rel))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every tensor's relative difference is ≤ `rel`; a NaN is not.
pub fn within(rows: &[TensorDiff], rel: f64) -> bool {
    rows.iter().all(|t| t.rel <= rel)
}

/// The largest relative difference over the tensors of `shape` (`f64::max` skips a NaN).
pub fn max_rel(shape: &Shape, a: &[f64], b: &[f64]) -> f64 {
    per_tensor(shape, a, b)
        .iter()
        .map(|t| t.rel)
        .fold(0.0, f64::max)
}

/// Prints the comparison of `a` against `b` per tensor, then asserts every tensor within `rel`.
pub fn assert_tensors_close(what: &str, shape: &Shape, a: &[f64], b: &[f64], rel: f64) {
    let rows = per_tensor(shape, a, b);
    println!("{what}: {}", report(&rows));
    assert!(within(&rows, rel), "{what}: per tensor: {}", report(&rows));
}

/// The stdout of a run of the binary (`args` are for the failure message), which must have
/// succeeded.
pub fn expect_ok(args: &[&str], o: Output) -> String {
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// File `name` in this test process's scratch directory `microgpt-<tag>-<pid>` (made if
/// missing).
pub fn scratch_file(tag: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("microgpt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
