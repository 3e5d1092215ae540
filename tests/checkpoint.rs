//! The checkpoint file: bit-exact round trips, the exact tensor list, atomic saves, and one clear
//! error line (never a panic) for every kind of bad file, including truncated and bit-flipped
//! ones.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

mod common;

use common::bits;
use microgpt::checkpoint::{AdamMoments, Checkpoint, FORMAT};
use microgpt::rng::{Rng, RngKind};
use microgpt::shape::Shape;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// A fresh, empty directory for one test under cargo's per-target scratch space.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("checkpoint")
        .join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A checkpoint with N(0, 0.08) weights (and moments), plus values a lossy path would change:
/// 1/3, −0, a subnormal, 1e300 and the largest finite number (non-finite weights are refused).
fn sample(shape: Shape, chars: &str, adam: bool) -> Checkpoint {
    let mut rng = Rng::pcg(7);
    let n = shape.num_params();
    let mut draw = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.gauss(0.0, 0.08)).collect() };
    let mut params = draw(n);
    params[..5].copy_from_slice(&[1.0 / 3.0, -0.0, f64::MIN_POSITIVE / 4.0, 1e300, f64::MAX]);
    let chars: Vec<char> = chars.chars().collect();
    assert_eq!(chars.len() + 1, shape.vocab, "test setup");
    let mut c = Checkpoint::new(shape, chars, params, 1234, 42, RngKind::Python, "micro");
    if adam {
        c.adam = Some(AdamMoments {
            m: draw(n),
            v: draw(n).iter().map(|x| x * x).collect(),
        });
    }
    c.set("lr", 0.01);
    c.set("note", "names, ünïcödé ✓");
    c
}

/// 26 letters and non-ASCII characters of 2, 3 and 4 UTF-8 bytes, in code point order.
const CHARS: &str = "abcdefghijklmnopqrstuvwxyzßé中😀";

fn micro() -> Checkpoint {
    sample(Shape::micro(CHARS.chars().count() + 1), CHARS, true)
}

fn two_layer() -> Checkpoint {
    let shape = Shape {
        vocab: 6,
        block_size: 8,
        n_embd: 12,
        n_head: 3,
        mlp: 20,
        n_layer: 2,
    };
    sample(shape, "'-azü", false)
}

fn assert_same(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(a.shape, b.shape);
    assert_eq!(a.chars, b.chars);
    assert_eq!(bits(&a.params), bits(&b.params), "params differ");
    match (&a.adam, &b.adam) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            assert_eq!(bits(&x.m), bits(&y.m), "adam.m differs");
            assert_eq!(bits(&x.v), bits(&y.v), "adam.v differs");
        }
        _ => panic!("adam present in one and not the other"),
    }
    assert_eq!(
        a.raw.as_deref().map(bits),
        b.raw.as_deref().map(bits),
        "raw differs"
    );
    assert_eq!(a.meta, b.meta);
}

#[test]
fn the_training_weights_of_an_averaged_run_round_trip_and_must_be_complete() {
    let dir = scratch("raw_round_trip");
    let path = dir.join("ema.safetensors");
    let mut c = micro();
    // the weights are an average; the training weights differ from them in every value
    c.raw = Some(c.params.iter().map(|x| x / 2.0 - 1.0).collect());
    c.set("ema", 0.999);
    c.save(&path).unwrap();
    let d = Checkpoint::load(&path).unwrap();
    assert_same(&c, &d);
    let bytes = fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    let raw: Vec<&str> = names
        .iter()
        .filter(|n| n.starts_with("raw."))
        .copied()
        .collect();
    assert_eq!(raw.len(), 9, "{names:?}");
    assert!(raw.contains(&"raw.layer0.attn_wq"), "{raw:?}");
    // a file with one of them missing is refused
    let cut = rewrite(&bytes, |t, _| drop(t.remove("raw.wpe")));
    let err = load_err(&dir, &cut);
    assert!(
        err.contains("incomplete training weights: missing tensor `raw.wpe`"),
        "{err}"
    );
    // and one of the wrong length, or not finite, is not saved
    let mut short = c.clone();
    short.raw.as_mut().unwrap().pop();
    let err = short.to_bytes().unwrap_err().to_string();
    assert!(err.contains("training weights have"), "{err}");
    let mut nan = c.clone();
    nan.raw.as_mut().unwrap()[3] = f64::NAN;
    let err = nan.to_bytes().unwrap_err().to_string();
    assert!(err.contains("tensor `raw.wte` holds NaN"), "{err}");
}

#[test]
fn micro_round_trips_bit_for_bit() {
    let dir = scratch("micro_round_trip");
    let path = dir.join("micro.safetensors");
    let c = micro();
    c.save(&path).unwrap();
    let d = Checkpoint::load(&path).unwrap();
    assert_same(&c, &d);
    assert_eq!(d.step().unwrap(), 1234);
    assert_eq!(d.seed().unwrap(), 42);
    assert_eq!(d.rng().unwrap(), RngKind::Python);
    assert_eq!(d.model().unwrap(), "micro");
    assert_eq!(d.get("note").unwrap(), "names, ünïcödé ✓");
    assert_eq!(d.parse::<f64>("lr").unwrap(), 0.01);
    assert_eq!(d.tokenizer().unwrap().chars(), c.chars.as_slice());
    assert_eq!(
        files_in(&dir),
        ["micro.safetensors"],
        "no temporary file left"
    );
}

#[test]
fn two_layer_round_trips_bit_for_bit_without_adam() {
    let dir = scratch("two_layer_round_trip");
    let path = dir.join("two.safetensors");
    let c = two_layer();
    c.save(&path).unwrap();
    let d = Checkpoint::load(&path).unwrap();
    assert!(d.adam.is_none());
    assert_same(&c, &d);
    // a second save over the first works and reads back the same
    c.save(&path).unwrap();
    assert_same(&c, &Checkpoint::load(&path).unwrap());
    assert_eq!(files_in(&dir), ["two.safetensors"]);
}

#[test]
fn the_file_holds_exactly_the_expected_tensors_and_metadata() {
    let c = micro();
    let bytes = c.to_bytes().unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut got: Vec<(String, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            assert_eq!(t.dtype(), Dtype::F64, "{n}");
            (n, t.shape().to_vec())
        })
        .collect();
    got.sort();
    let (v, t, e, f) = (31, 16, 16, 64);
    let mut want: Vec<(String, Vec<usize>)> = Vec::new();
    for prefix in ["", "adam.m.", "adam.v."] {
        for (name, shape) in [
            ("wte", [v, e]),
            ("wpe", [t, e]),
            ("lm_head", [v, e]),
            ("layer0.attn_wq", [e, e]),
            ("layer0.attn_wk", [e, e]),
            ("layer0.attn_wv", [e, e]),
            ("layer0.attn_wo", [e, e]),
            ("layer0.mlp_fc1", [f, e]),
            ("layer0.mlp_fc2", [e, f]),
        ] {
            want.push((format!("{prefix}{name}"), shape.to_vec()));
        }
    }
    want.sort();
    assert_eq!(got, want);

    // row-major [out, in]: wte row 1 is params[E..2E]; mlp_fc2 is the last matrix
    let wte = st.tensor("wte").unwrap();
    let row1: Vec<u64> = wte.data()[e * 8..2 * e * 8]
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(row1, bits(&c.params[e..2 * e]));
    let fc2 = st.tensor("layer0.mlp_fc2").unwrap().data();
    let last = f64::from_le_bytes(fc2[fc2.len() - 8..].try_into().unwrap());
    assert_eq!(last.to_bits(), c.params.last().unwrap().to_bits());

    let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta: BTreeMap<String, String> = md.metadata().clone().unwrap().into_iter().collect();
    // the checksum as the module's documentation defines it, recomputed from the file
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut names = st.names();
    names.sort();
    for name in names {
        let words = name.bytes().chain([0xff]).map(u64::from).chain(
            st.tensor(name)
                .unwrap()
                .data()
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap())),
        );
        for x in words {
            h = (h ^ x).wrapping_mul(0x100_0000_01b3);
        }
    }
    assert_eq!(
        meta.remove("tensor_checksum"),
        Some(format!("fnv1a64w:{h:016x}"))
    );
    let want: BTreeMap<String, String> = [
        ("format", FORMAT),
        ("vocab", CHARS),
        ("n_layer", "1"),
        ("n_embd", "16"),
        ("n_head", "4"),
        ("block_size", "16"),
        ("mlp", "64"),
        ("step", "1234"),
        ("seed", "42"),
        ("rng", "python"),
        ("model", "micro"),
        ("lr", "0.01"),
        ("note", "names, ünïcödé ✓"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(meta, want);
}

#[test]
fn tensor_gives_one_matrix_by_name() {
    let c = two_layer();
    let (v, t, e, f) = (6, 8, 12, 20);
    let start = 2 * v * e + t * e + 4 * e * e + f * e + e * f + 4 * e * e;
    assert_eq!(
        bits(c.tensor("layer1.mlp_fc1").unwrap()),
        bits(&c.params[start..start + f * e])
    );
    assert!(c.tensor("layer2.mlp_fc1").is_none());
}

// ---- atomic saves ----

#[test]
fn saving_into_a_missing_directory_errors_and_creates_nothing() {
    let dir = scratch("missing_dir");
    let path = dir.join("nope").join("a.safetensors");
    let err = micro().save(&path).unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        err.contains(&dir.join("nope").display().to_string()),
        "{err}"
    );
    assert!(!err.contains('\n'));
    assert!(files_in(&dir).is_empty());
}

#[test]
fn a_failed_save_leaves_the_existing_checkpoint_byte_identical() {
    let dir = scratch("failed_save");
    let path = dir.join("a.safetensors");
    two_layer().save(&path).unwrap();
    let before = fs::read(&path).unwrap();

    // a save that fails at the rename (the target's directory entry is replaced by a
    // directory for the attempt) leaves no temporary file behind; the shared writer's own
    // failure cases are in tests/curve.rs
    let other = dir.join("b.safetensors");
    fs::create_dir(&other).unwrap();
    let err = micro().save(&other).unwrap_err().to_string();
    assert!(err.starts_with("cannot save checkpoint"), "{err}");
    assert!(!err.contains('\n'));
    assert_eq!(fs::read(&path).unwrap(), before);
    fs::remove_dir(&other).unwrap();

    // an invalid checkpoint is refused before anything is written
    let mut bad = micro();
    bad.params.pop();
    let err = bad.save(&path).unwrap_err().to_string();
    assert!(err.contains("parameters"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(files_in(&dir), ["a.safetensors"]);
}

#[test]
fn saving_over_a_directory_errors_and_leaves_it() {
    let dir = scratch("save_over_dir");
    let path = dir.join("d.safetensors");
    fs::create_dir(&path).unwrap();
    let err = micro().save(&path).unwrap_err().to_string();
    assert!(err.contains("is a directory"), "{err}");
    assert!(path.is_dir());
    // the temporary file was written, the rename failed, and it was removed
    assert_eq!(files_in(&dir), ["d.safetensors"]);
}

#[test]
fn save_refuses_what_load_would_refuse() {
    type EditCheckpoint = Box<dyn Fn(&mut Checkpoint)>;
    let cases: Vec<(&str, EditCheckpoint)> = vec![
        ("vocabulary", Box::new(|c| c.chars.swap(0, 1))),
        (
            "shape.vocab",
            Box::new(|c| c.chars.pop().map(|_| ()).unwrap()),
        ),
        ("Adam", Box::new(|c| c.adam.as_mut().unwrap().v.push(0.0))),
        ("`n_embd`", Box::new(|c| c.set("n_embd", 16))),
        ("`step`", Box::new(|c| c.set("step", "-1"))),
        ("`rng`", Box::new(|c| c.set("rng", "mt"))),
        ("no `seed`", Box::new(|c| drop(c.meta.remove("seed")))),
        ("not divisible", Box::new(|c| c.shape.n_head = 5)),
        ("n_head is 0", Box::new(|c| c.shape.n_head = 0)),
    ];
    for (words, edit) in cases {
        let mut c = micro();
        edit(&mut c);
        let err = c.to_bytes().unwrap_err().to_string();
        assert!(err.contains(words), "want {words:?} in {err:?}");
    }
}

// ---- bad input ----

type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;
type Meta = Option<BTreeMap<String, String>>;

/// Re-serializes a valid file after `edit` changed its tensors or metadata.
fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut Tensors, &mut Meta)) -> Vec<u8> {
    let (_, md) = SafeTensors::read_metadata(bytes).unwrap();
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, (t.dtype(), t.shape().to_vec(), t.data().to_vec())))
        .collect();
    let mut meta: Meta = md.metadata().clone().map(|m| m.into_iter().collect());
    edit(&mut tensors, &mut meta);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, meta.map(|m| m.into_iter().collect())).unwrap()
}

type Edit = Box<dyn FnOnce(&mut Tensors, &mut Meta)>;

fn set_meta(key: &'static str, value: &'static str) -> Edit {
    Box::new(move |_, m| {
        m.as_mut().unwrap().insert(key.into(), value.into());
    })
}

fn remove_meta(key: &'static str) -> Edit {
    Box::new(move |_, m| {
        m.as_mut().unwrap().remove(key);
    })
}

/// Writes `bytes` to a file, loads it, and returns the error line, checking it is one line
/// that names the file.
fn load_err(dir: &Path, bytes: &[u8]) -> String {
    let path = dir.join("bad.safetensors");
    fs::write(&path, bytes).unwrap();
    let err = match Checkpoint::load(&path) {
        Ok(_) => panic!("a bad checkpoint loaded"),
        Err(e) => e.to_string(),
    };
    assert!(!err.contains('\n'), "{err:?}");
    assert!(err.contains(&path.display().to_string()), "{err:?}");
    err
}

#[test]
fn a_missing_file_is_one_clear_line() {
    let dir = scratch("missing_file");
    let path = dir.join("absent.safetensors");
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(err.starts_with("cannot read checkpoint"), "{err}");
    assert!(err.contains("absent.safetensors"), "{err}");
    assert!(err.contains("No such file"), "{err}");
    let err = Checkpoint::load(&dir).unwrap_err().to_string();
    assert!(err.starts_with("cannot read checkpoint"), "{err}");
}

/// A file of this JSON header (length-prefixed) followed by `data`.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    bytes
}

#[test]
fn files_that_are_not_safetensors_are_refused() {
    let dir = scratch("not_safetensors");
    for (bytes, words) in [
        (vec![], "truncated or not a safetensors file"),
        (vec![8, 0, 0], "truncated or not a safetensors file"),
        (
            b"name,count\nemma,1\nolivia,2\n".to_vec(),
            "truncated or not a safetensors file",
        ),
        (raw("{}{}", b""), "corrupted header"),
        (raw("[]", b""), "corrupted header"),
        (raw("{\"x\":1}", b""), "corrupted header"),
        (raw("{}", b""), "no metadata"),
        (raw("{}", b"trailing"), "unexpected bytes"),
        (
            raw("{\"__metadata__\":{\"format\":\"pytorch\"}}", b""),
            "not a microgpt checkpoint (its format is \"pytorch\")",
        ),
        (
            raw("{\"__metadata__\":{\"step\":\"3\"}}", b""),
            "no `format`",
        ),
    ] {
        let err = load_err(&dir, &bytes);
        assert!(err.contains(words), "want {words:?} in {err:?}");
    }
}

#[test]
fn a_header_that_claims_enormous_tensors_is_an_error_not_an_overflow() {
    // eight tensors of usize::MAX / 8 bytes end at 2^64 − 8: the crate's own check computes
    // end + 8 + header length unchecked, which overflows (a panic in a debug build); the reader
    // must refuse the file before
    let size = usize::MAX / 8;
    let tensors: Vec<String> = (0..8)
        .map(|i| {
            format!(
                "\"t{i}\":{{\"dtype\":\"U8\",\"shape\":[{size}],\"data_offsets\":[{},{}]}}",
                i * size,
                (i + 1) * size
            )
        })
        .collect();
    let bytes = raw(&format!("{{{}}}", tensors.join(",")), &[0u8; 16]);
    let dir = scratch("enormous");
    let err = load_err(&dir, &bytes);
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn each_kind_of_bad_content_gets_its_own_clear_error() {
    let dir = scratch("bad_content");
    let good = micro().to_bytes().unwrap();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "tensor `wpe` has dtype F32, expected F64",
            Box::new(|t, _| {
                let (d, _, b) = t.get_mut("wpe").unwrap();
                *d = Dtype::F32;
                *b = b
                    .chunks_exact(8)
                    .flat_map(|x| (f64::from_le_bytes(x.try_into().unwrap()) as f32).to_le_bytes())
                    .collect();
            }),
        ),
        (
            "missing tensor `layer0.mlp_fc1`",
            Box::new(|t, _| drop(t.remove("layer0.mlp_fc1"))),
        ),
        (
            "incomplete optimizer state: missing tensor `adam.v.wpe`",
            Box::new(|t, _| drop(t.remove("adam.v.wpe"))),
        ),
        (
            "unexpected tensor `layer1.attn_wq`",
            Box::new(|t, _| {
                let q = t["layer0.attn_wq"].clone();
                t.insert("layer1.attn_wq".into(), q);
            }),
        ),
        (
            "tensor `layer0.attn_wo` has shape [16, 8]",
            Box::new(|t, _| {
                let (_, s, b) = t.get_mut("layer0.attn_wo").unwrap();
                *s = vec![16, 8];
                b.truncate(16 * 8 * 8);
            }),
        ),
        // a vocabulary one character short of wte's rows
        (
            "tensor `wte` has shape [31, 16], but the metadata (vocab of 29 characters + BOS",
            set_meta("vocab", "abcdefghijklmnopqrstuvwxyzßé中"),
        ),
        // n_embd that disagrees with the tensors
        ("needs [31, 8]", set_meta("n_embd", "8")),
        (
            "metadata `n_embd` is \"sixteen\", not a non-negative integer",
            set_meta("n_embd", "sixteen"),
        ),
        ("metadata `mlp` is \"-64\"", set_meta("mlp", "-64")),
        ("metadata has no `n_head`", remove_meta("n_head")),
        ("metadata has no `vocab`", remove_meta("vocab")),
        (
            "n_embd 16 is not divisible by n_head 3",
            set_meta("n_head", "3"),
        ),
        ("n_head is 0", set_meta("n_head", "0")),
        ("n_layer is 0", set_meta("n_layer", "0")),
        ("missing tensor `layer1.attn_wq`", set_meta("n_layer", "2")),
        (
            "n_layer = 1000000000000000000, but the file has only 9 weight tensors",
            set_meta("n_layer", "1000000000000000000"),
        ),
        (
            "vocabulary is not sorted",
            set_meta("vocab", "bacdefghijklmnopqrstuvwxyzßé中😀"),
        ),
        (
            "format \"microgpt-0\" is not supported",
            set_meta("format", "microgpt-0"),
        ),
        ("metadata has no `step`", remove_meta("step")),
        (
            "metadata `seed` is \"0x2a\", not a non-negative integer",
            set_meta("seed", "0x2a"),
        ),
        ("metadata `rng` is \"mt\"", set_meta("rng", "mt")),
        ("metadata `model` is empty", set_meta("model", "")),
        ("no metadata", Box::new(|_, m| *m = None)),
    ];
    for (words, edit) in cases {
        let err = load_err(&dir, &rewrite(&good, edit));
        assert!(err.contains(words), "want {words:?} in {err:?}");
    }
}

#[test]
fn truncation_at_any_offset_is_an_error() {
    let dir = scratch("truncation");
    let good = micro().to_bytes().unwrap();
    let (header_len, _) = SafeTensors::read_metadata(&good).unwrap();
    let mut cuts: Vec<usize> = (0..300).collect();
    cuts.extend([header_len, header_len + 7, header_len + 8, header_len + 9]);
    cuts.extend([good.len() / 2, good.len() - 8, good.len() - 1]);
    for cut in cuts {
        let err = match Checkpoint::from_bytes(&good[..cut]) {
            Ok(_) => panic!("a file cut at {cut} of {} loaded", good.len()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("truncated"), "cut at {cut}: {err}");
    }
    // and through load, the message names the file
    let err = load_err(&dir, &good[..good.len() - 1]);
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn flipped_bytes_never_panic_and_a_flip_in_the_data_changes_exactly_one_number() {
    let good_ckpt = micro();
    let good = good_ckpt.to_bytes().unwrap();
    let (header_len, _) = SafeTensors::read_metadata(&good).unwrap();
    let data_start = 8 + header_len;
    let values = |c: &Checkpoint| -> Vec<u64> {
        let a = c.adam.as_ref().unwrap();
        bits(&c.params)
            .into_iter()
            .chain(bits(&a.m))
            .chain(bits(&a.v))
            .collect()
    };
    let before = values(&good_ckpt);
    let mut rng = Rng::pcg(2024);
    let mut header_errors = 0;

    // every byte of the length prefix and the JSON header, with three masks each
    for pos in 0..data_start {
        for mask in [0x01, 0x80, 1 + rng.randbelow(255) as u8] {
            let mut b = good.clone();
            b[pos] ^= mask;
            // Ok happens (a changed digit of `step`, a letter of `model`, padding that stays
            // whitespace); what matters is that nothing panics
            if let Err(e) = Checkpoint::from_bytes(&b) {
                assert!(!e.to_string().contains('\n'));
                header_errors += 1;
            }
        }
    }
    assert!(header_errors > data_start, "most header flips are errors");

    // random bytes of the tensor data: the checksum refuses the file; without the checksum
    // (a file written before it existed) it loads, with one number changed, unless that
    // number is no longer finite
    let old = rewrite(&good, remove_meta("tensor_checksum"));
    let (old_header_len, _) = SafeTensors::read_metadata(&old).unwrap();
    let old_start = 8 + old_header_len;
    assert_eq!(old.len() - old_start, good.len() - data_start);
    let mut loaded = 0;
    for _ in 0..2000 {
        let off = rng.randbelow(good.len() - data_start);
        let mask = 1 + rng.randbelow(255) as u8;
        let mut b = good.clone();
        b[data_start + off] ^= mask;
        let err = Checkpoint::from_bytes(&b).unwrap_err().to_string();
        assert!(err.contains("checksum"), "flip at {off}: {err}");
        let mut b = old.clone();
        b[old_start + off] ^= mask;
        match Checkpoint::from_bytes(&b) {
            Ok(c) => {
                let after = values(&c);
                let changed = before.iter().zip(&after).filter(|(x, y)| x != y).count();
                assert_eq!(changed, 1, "flip at {off}");
                loaded += 1;
            }
            Err(e) => assert!(e.to_string().contains("not finite"), "flip at {off}: {e}"),
        }
    }
    assert!(
        loaded > 1900,
        "most flips leave a finite number ({loaded} of 2000)"
    );
}

#[test]
fn accessors_name_the_key_that_is_missing_or_malformed() {
    let mut c = micro();
    c.set("step", "ten");
    c.meta.remove("seed");
    c.set("rng", "Pcg");
    let e = c.step().unwrap_err().to_string();
    assert_eq!(e, "metadata `step` is \"ten\", not a non-negative integer");
    assert_eq!(c.seed().unwrap_err().to_string(), "metadata has no `seed`");
    assert!(
        c.rng()
            .unwrap_err()
            .to_string()
            .contains("`pcg` or `python`")
    );
    assert!(
        c.parse::<f64>("note")
            .unwrap_err()
            .to_string()
            .contains("not a valid f64")
    );
}

/// Not a test: writes the file the Python check in the README reads.
/// `MICROGPT_PYCHECK=/tmp/py.safetensors cargo test --release --test checkpoint -- --ignored`
/// Weights `p[i] = ((i·7919) mod 10007)/4096 − 1`, `m[i] = i/8`, `v[i] = 1/(i+1)`: every value
/// is a correctly rounded IEEE operation, so numpy recomputes the same bits.
#[test]
#[ignore]
fn write_the_python_check_file() {
    let path = std::env::var("MICROGPT_PYCHECK")
        .map(PathBuf::from)
        .unwrap_or_else(|_| scratch("python").join("py.safetensors"));
    let chars: Vec<char> = CHARS.chars().collect();
    let shape = Shape::micro(chars.len() + 1);
    let n = shape.num_params();
    let params = (0..n)
        .map(|i| ((i * 7919) % 10007) as f64 / 4096.0 - 1.0)
        .collect();
    let mut c = Checkpoint::new(shape, chars, params, 500, 42, RngKind::Pcg, "micro");
    c.adam = Some(AdamMoments {
        m: (0..n).map(|i| i as f64 / 8.0).collect(),
        v: (0..n).map(|i| 1.0 / (i + 1) as f64).collect(),
    });
    c.save(&path).unwrap();
    println!("wrote {}", path.display());
}

#[test]
fn settings_added_later_default_when_an_older_checkpoint_lacks_them() {
    use microgpt::session::Settings;
    let mut c = micro();
    let mut s = Settings::microgpt();
    s.recipe.dropout = 0.25;
    s.recipe.token_mean = true;
    s.recipe.reshuffle = true;
    s.write_to(&mut c);
    assert_eq!(Settings::read_from(&c).unwrap(), s);
    // a checkpoint written before --dropout, --token-mean and --reshuffle existed
    for key in ["dropout", "token_mean", "reshuffle"] {
        c.meta.remove(key);
    }
    let old = Settings::read_from(&c).unwrap().recipe;
    assert_eq!(
        (old.dropout, old.token_mean, old.reshuffle),
        (0.0, false, false)
    );
    // present but unparsable is still an error that names the key
    c.set("reshuffle", "maybe");
    let err = Settings::read_from(&c).unwrap_err().to_string();
    assert!(err.contains("reshuffle") && err.contains("maybe"), "{err}");
}
