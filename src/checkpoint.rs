//! Checkpoints: a model's weights, vocabulary and run state in one `.safetensors` file that
//! PyTorch, numpy and candle load as is.
//!
//! The file holds one F64 tensor per weight matrix, named as in microgpt.py's `state_dict`
//! ([`Shape::tensors`]: `wte` `[V,E]`, `wpe` `[T,E]`, `lm_head` `[V,E]`,
//! `layer{i}.attn_wq/wk/wv/wo` `[E,E]`, `layer{i}.mlp_fc1` `[F,E]`, `layer{i}.mlp_fc2` `[E,F]`),
//! row-major `[out, in]`, with only the real vocabulary rows. Optionally, for an exact resume,
//! Adam's moments as tensors of the same shapes named `adam.m.<name>` and `adam.v.<name>`.
//! A run that averages its weights (`ema` in the metadata, [`crate::ema`]) saves the average
//! as the weights (what `eval` and `sample` use) and the weights training goes on from as
//! `raw.<name>` ([`RAW_PREFIX`]).
//!
//! The header metadata (string → string) holds the configuration, written from
//! [`Checkpoint::shape`] and [`Checkpoint::chars`]: `format` ([`FORMAT`]), `vocab` (the
//! characters in id order as one string; BOS is the next id), `n_layer`, `n_embd`, `n_head`,
//! `block_size`, `mlp` ([`STRUCTURAL_KEYS`]); and the run state from [`Checkpoint::meta`], which
//! must hold at least `step`, `seed`, `rng` and `model` ([`REQUIRED_KEYS`]) and may hold anything
//! else.
//!
//! Integrity: the metadata key `tensor_checksum` ([`CHECKSUM_KEY`]) holds
//! `fnv1a64w:` and 16 hex digits, a checksum of every tensor's name and bytes ([`checksum`]);
//! [`Checkpoint::load`] refuses a file whose tensors do not match it (one flipped bit is always
//! caught), and files written before the key existed load without the check. Weights and
//! moments must be finite, and the vocabulary must obey [`limits::check_vocab`].
//!
//! In Python: `safetensors.numpy.load_file(path)` gives the tensors and
//! `safetensors.safe_open(path, "np").metadata()` the metadata.
//!
//! The header's keys are written sorted (the `safetensors` crate writes the metadata from a
//! `HashMap`, in an order that changes from process to process; `sorted_header` rewrites
//! it), so a checkpoint's bytes are a function of its contents: the same run saves the same
//! file.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;

use safetensors::tensor::{Metadata, TensorView};
use safetensors::{Dtype, SafeTensors};

use crate::bail;
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::io::{read_input, write_atomic};
use crate::limits::{self, MAX_CHECKPOINT_BYTES};
use crate::rng::RngKind;
use crate::shape::Shape;

/// The value of the `format` key this build writes and reads.
pub const FORMAT: &str = "microgpt-1";

/// Metadata keys `save` writes from the typed fields (`shape`, `chars`) and the format version;
/// they never appear in [`Checkpoint::meta`].
pub const STRUCTURAL_KEYS: [&str; 7] = [
    "format",
    "vocab",
    "n_layer",
    "n_embd",
    "n_head",
    "block_size",
    "mlp",
];

/// Run-state keys every checkpoint's [`Checkpoint::meta`] must hold: steps done, the seed and
/// word source of the run's random stream (`pcg` | `python`), and the model's preset name.
pub const REQUIRED_KEYS: [&str; 4] = ["step", "seed", "rng", "model"];

/// The metadata key of the tensors' checksum ([`checksum`]), written by
/// [`Checkpoint::to_bytes`] and checked, where present, by [`Checkpoint::from_bytes`]; like the
/// [`STRUCTURAL_KEYS`], never in [`Checkpoint::meta`].
pub const CHECKSUM_KEY: &str = "tensor_checksum";

/// The algorithm tag before the checksum's hex digits.
const CHECKSUM_TAG: &str = "fnv1a64w:";

/// FNV-1a (64-bit) over the tensors in the order given (the writer and the reader both use the
/// names' sorted order): for each, the bytes of its name, then `0xff` (never in UTF-8), then its
/// data as 64-bit little-endian words, each one step `h = (h ^ x) · 0x100000001b3` from
/// `h = 0xcbf29ce484222325`. Every step is a bijection of `h`, so any change of one byte or
/// word changes the result; words rather than bytes make it 8× faster than byte-wise FNV.
/// In Python: `for x in words: h = ((h ^ x) * 0x100000001b3) % 2**64`.
pub fn checksum<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, data) in tensors {
        for &b in name.as_bytes().iter().chain(&[0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
        let words = data.chunks_exact(8);
        debug_assert!(words.remainder().is_empty(), "F64 data is whole words");
        for w in words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            h = (h ^ u64::from_le_bytes(a)).wrapping_mul(PRIME);
        }
    }
    h
}

/// Name prefixes of Adam's first and second moments.
pub const ADAM_M_PREFIX: &str = "adam.m.";
pub const ADAM_V_PREFIX: &str = "adam.v.";

/// Name prefix of the training weights when the weights are their average ([`Checkpoint::raw`]).
pub const RAW_PREFIX: &str = "raw.";

/// Adam's first (`m`) and second (`v`) moments, each in the layout of [`Checkpoint::params`].
#[derive(Debug, Clone, PartialEq)]
pub struct AdamMoments {
    pub m: Vec<f64>,
    pub v: Vec<f64>,
}

/// Everything a checkpoint file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The model's dimensions; `shape.vocab` is `chars.len() + 1` (the real vocabulary + BOS).
    pub shape: Shape,
    /// The vocabulary's characters in id order (strictly increasing); BOS is id `chars.len()`.
    pub chars: Vec<char>,
    /// Every weight, flat, the matrices in [`Shape::tensors`] order, each row-major [out, in].
    pub params: Vec<f64>,
    /// Adam's moments, present when the run can be resumed exactly.
    pub adam: Option<AdamMoments>,
    /// When `params` is an average of the weights over training ([`crate::ema`]): the
    /// weights themselves, which training goes on from, in the same layout.
    pub raw: Option<Vec<f64>>,
    /// The run state: the [`REQUIRED_KEYS`] and whatever else the caller records. Never holds a
    /// [`STRUCTURAL_KEYS`] key.
    pub meta: BTreeMap<String, String>,
}

impl Checkpoint {
    /// A checkpoint of these weights with the required run state set.
    pub fn new(
        shape: Shape,
        chars: Vec<char>,
        params: Vec<f64>,
        step: usize,
        seed: u64,
        rng: RngKind,
        model: &str,
    ) -> Checkpoint {
        let mut c = Checkpoint {
            shape,
            chars,
            params,
            adam: None,
            raw: None,
            meta: BTreeMap::new(),
        };
        c.set("step", step);
        c.set("seed", seed);
        c.set("rng", rng.name());
        c.set("model", model);
        c
    }

    /// Sets one run-state key.
    pub fn set(&mut self, key: &str, value: impl Display) {
        self.meta.insert(key.to_string(), value.to_string());
    }

    /// One run-state value; missing is an error that names the key.
    pub fn get(&self, key: &str) -> Result<&str> {
        match self.meta.get(key) {
            Some(v) => Ok(v),
            None => bail!("metadata has no `{}`", key),
        }
    }

    /// [`Checkpoint::parse`], or `default` when the key is missing (a setting that older
    /// checkpoints do not record because it did not exist yet).
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.meta.get(key) {
            Some(_) => self.parse(key),
            None => Ok(default),
        }
    }

    /// One run-state value parsed as `T`; missing or unparsable is an error that names the key
    /// and quotes the value.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<T> {
        let v = self.get(key)?;
        match v.parse() {
            Ok(x) => Ok(x),
            Err(_) => bail!(
                "metadata `{}` is {:?}, not a valid {}",
                key,
                v,
                short_type_name::<T>()
            ),
        }
    }

    /// Steps of training done.
    pub fn step(&self) -> Result<usize> {
        self.parse_uint("step")
    }

    /// The run's seed.
    pub fn seed(&self) -> Result<u64> {
        self.parse_uint("seed")
    }

    fn parse_uint<T: FromStr>(&self, key: &str) -> Result<T> {
        let v = self.get(key)?;
        match v.parse() {
            Ok(x) => Ok(x),
            Err(_) => bail!("metadata `{}` is {:?}, not a non-negative integer", key, v),
        }
    }

    /// The word source of the run's random stream.
    pub fn rng(&self) -> Result<RngKind> {
        let v = self.get("rng")?;
        match RngKind::from_name(v) {
            Some(k) => Ok(k),
            None => bail!("metadata `rng` is {:?}, not `pcg` or `python`", v),
        }
    }

    /// The model's preset name (e.g. `micro`).
    pub fn model(&self) -> Result<&str> {
        let v = self.get("model")?;
        if v.is_empty() {
            bail!("metadata `model` is empty");
        }
        Ok(v)
    }

    /// The tokenizer of this vocabulary.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        Tokenizer::from_chars(self.chars.clone())
            .map_err(|_| Error("the vocabulary is not sorted and unique".to_string()))
    }

    /// The weights of one matrix (row-major), by its [`Shape::tensors`] name.
    pub fn tensor(&self, name: &str) -> Option<&[f64]> {
        let mut offset = 0;
        for (n, rows, cols) in self.shape.tensors() {
            if n == name {
                return self.params.get(offset..offset + rows * cols);
            }
            offset += rows * cols;
        }
        None
    }

    /// Checks everything [`Checkpoint::save`] relies on and [`Checkpoint::load`] guarantees:
    /// positive dimensions, `n_embd % n_head == 0`, a non-empty sorted unique vocabulary with
    /// `shape.vocab == chars.len() + 1`, parameter and moment vectors of the right length, no
    /// structural key in `meta`, and every required run-state key present and well-formed.
    pub fn validate(&self) -> Result<()> {
        check_shape(&self.shape)?;
        limits::check_vocab(&self.chars)?;
        self.tokenizer()?;
        if self.shape.vocab != self.chars.len() + 1 {
            bail!(
                "shape.vocab is {} but the vocabulary has {} characters (+ BOS = {})",
                self.shape.vocab,
                self.chars.len(),
                self.chars.len() + 1
            );
        }
        let n = match checked_num_params(&self.shape) {
            Some(n) => n,
            None => bail!("the shape {:?} is too large", self.shape),
        };
        if self.params.len() != n {
            bail!(
                "{} parameters for a shape that has {}",
                self.params.len(),
                n
            );
        }
        if let Some(a) = &self.adam
            && (a.m.len() != n || a.v.len() != n)
        {
            bail!(
                "Adam moments have {} (m) and {} (v) values for {} parameters",
                a.m.len(),
                a.v.len(),
                n
            );
        }
        if let Some(r) = &self.raw
            && r.len() != n
        {
            bail!(
                "the training weights have {} values for {} parameters",
                r.len(),
                n
            );
        }
        self.check_finite("", &self.params)?;
        if let Some(r) = &self.raw {
            self.check_finite(RAW_PREFIX, r)?;
        }
        if let Some(a) = &self.adam {
            self.check_finite(ADAM_M_PREFIX, &a.m)?;
            self.check_finite(ADAM_V_PREFIX, &a.v)?;
        }
        if let Some(k) = self
            .meta
            .keys()
            .find(|k| STRUCTURAL_KEYS.contains(&k.as_str()) || k.as_str() == CHECKSUM_KEY)
        {
            bail!(
                "metadata key `{}` is written from the shape and vocabulary, not from meta",
                k
            );
        }
        self.step()?;
        self.seed()?;
        self.rng()?;
        self.model()?;
        Ok(())
    }

    /// An error naming the first tensor of `values` (in [`Shape::tensors`] layout, names with
    /// `prefix`) that holds a NaN or an infinity, and where.
    fn check_finite(&self, prefix: &str, values: &[f64]) -> Result<()> {
        let Some(i) = values.iter().position(|x| !x.is_finite()) else {
            return Ok(());
        };
        let mut offset = 0;
        for (name, rows, cols) in self.shape.tensors() {
            if i < offset + rows * cols {
                let k = i - offset;
                bail!(
                    "tensor `{prefix}{name}` holds {} at [{}, {}]: the weights are not finite (a diverged run?)",
                    values[i],
                    k / cols,
                    k % cols
                );
            }
            offset += rows * cols;
        }
        bail!("value {i} is {}, not finite", values[i])
    }

    /// The file's bytes (after [`Checkpoint::validate`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let s = &self.shape;
        let mut info = self.meta.clone();
        info.insert("format".into(), FORMAT.into());
        info.insert("vocab".into(), self.chars.iter().collect());
        info.insert("n_layer".into(), s.n_layer.to_string());
        info.insert("n_embd".into(), s.n_embd.to_string());
        info.insert("n_head".into(), s.n_head.to_string());
        info.insert("block_size".into(), s.block_size.to_string());
        info.insert("mlp".into(), s.mlp.to_string());

        // (name, [rows, cols], little-endian bytes) of every tensor to write
        let mut blobs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut push_all = |prefix: &str, values: &[f64]| {
            let mut offset = 0;
            for (name, rows, cols) in s.tensors() {
                let w = &values[offset..offset + rows * cols];
                offset += rows * cols;
                let bytes = w.iter().flat_map(|x| x.to_le_bytes()).collect();
                blobs.push((format!("{prefix}{name}"), vec![rows, cols], bytes));
            }
        };
        push_all("", &self.params);
        if let Some(r) = &self.raw {
            push_all(RAW_PREFIX, r);
        }
        if let Some(a) = &self.adam {
            push_all(ADAM_M_PREFIX, &a.m);
            push_all(ADAM_V_PREFIX, &a.v);
        }
        blobs.sort_by(|a, b| a.0.cmp(&b.0));
        let sum = checksum(blobs.iter().map(|(n, _, b)| (n.as_str(), b.as_slice())));
        info.insert(CHECKSUM_KEY.into(), format!("{CHECKSUM_TAG}{sum:016x}"));
        let mut views = Vec::with_capacity(blobs.len());
        for (name, shape, bytes) in &blobs {
            match TensorView::new(Dtype::F64, shape.clone(), bytes) {
                Ok(v) => views.push((name.as_str(), v)),
                Err(e) => bail!("cannot build tensor `{}`: {}", name, e),
            }
        }
        // (the crate's map type: `hashbrown`'s, as safetensors is built without `std`)
        let bytes = safetensors::serialize(views, Some(info.into_iter().collect()))
            .map_err(|e| Error(format!("cannot serialize the checkpoint: {e}")))?;
        Ok(sorted_header(bytes))
    }

    /// Parses and validates a checkpoint file's bytes: every tensor present with dtype F64 and
    /// the shape the metadata's configuration gives, no unknown tensor, the optimizer state
    /// complete or absent, and [`Checkpoint::validate`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint> {
        let header = read_header(bytes)?;
        let st = match SafeTensors::deserialize(bytes) {
            Ok(st) => st,
            Err(e) => bail!("corrupted or not a safetensors file ({e})"),
        };
        let Some(kv) = header.metadata() else {
            bail!("not a microgpt checkpoint: the file has no metadata");
        };
        let get = |key: &str| kv.get(key).map(String::as_str);
        check_format(get)?;
        let (shape, chars) = shape_of(get)?;
        limits::check_vocab(&chars)?;
        let names = st.names();
        check_tensor_names(&names, &shape)?;
        let read = |prefix: &str| read_tensors(&st, prefix, &shape);
        let params = read("")?;
        let has_adam = names.iter().any(|n| is_adam(n));
        let adam = if has_adam {
            Some(AdamMoments {
                m: read(ADAM_M_PREFIX)?,
                v: read(ADAM_V_PREFIX)?,
            })
        } else {
            None
        };
        let raw = if names.iter().any(|n| n.starts_with(RAW_PREFIX)) {
            Some(read(RAW_PREFIX)?)
        } else {
            None
        };
        // after the structural checks, whose errors say more than a checksum's
        if let Some(recorded) = kv.get(CHECKSUM_KEY) {
            let Some(want) = recorded
                .strip_prefix(CHECKSUM_TAG)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            else {
                bail!(
                    "metadata `{CHECKSUM_KEY}` is {recorded:?}, not {CHECKSUM_TAG} and 16 hex digits"
                );
            };
            let mut sorted = names.clone();
            sorted.sort();
            let mut tensors = Vec::with_capacity(sorted.len());
            for name in sorted {
                match st.tensor(name) {
                    Ok(t) => tensors.push((name, t.data())),
                    Err(e) => bail!("corrupted: tensor `{name}`: {e}"),
                }
            }
            let got = checksum(tensors);
            if got != want {
                bail!(
                    "corrupted: the tensors' checksum is {CHECKSUM_TAG}{got:016x}, the metadata records {recorded}"
                );
            }
        }
        let meta = kv
            .iter()
            .filter(|(k, _)| !STRUCTURAL_KEYS.contains(&k.as_str()) && k.as_str() != CHECKSUM_KEY)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let ckpt = Checkpoint {
            shape,
            chars,
            params,
            adam,
            raw,
            meta,
        };
        ckpt.validate()?;
        Ok(ckpt)
    }

    /// Writes the checkpoint atomically ([`write_atomic`]): to a temporary file in the same
    /// directory, synced, then renamed over `path`. On any failure the temporary file is
    /// removed and an existing file at `path` is left as it was. The directory must exist.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes().map_err(|e| {
            Error(format!(
                "cannot save checkpoint {}: {}",
                path.display(),
                e.0
            ))
        })?;
        write_atomic(path, |w| w.write_all(&bytes)).map_err(|e| {
            let why = if path.is_dir() {
                format!(
                    "cannot save checkpoint {}: it is a directory",
                    path.display()
                )
            } else {
                format!("cannot save checkpoint: {e}")
            };
            Error(why)
        })
    }

    /// Reads and validates a checkpoint; every failure is one line that names the file. What is
    /// not a regular file, or is larger than [`MAX_CHECKPOINT_BYTES`], is refused unread.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = read_input(path, MAX_CHECKPOINT_BYTES, "checkpoint")?;
        Checkpoint::from_bytes(&bytes)
            .map_err(|e| Error(format!("checkpoint {}: {}", path.display(), e.0)))
    }
}

/// Positive dimensions and whole heads.
fn check_shape(s: &Shape) -> Result<()> {
    for (key, v) in [
        ("n_layer", s.n_layer),
        ("n_embd", s.n_embd),
        ("n_head", s.n_head),
        ("block_size", s.block_size),
        ("mlp", s.mlp),
    ] {
        if v == 0 {
            bail!("{} is 0; it must be at least 1", key);
        }
    }
    if !s.n_embd.is_multiple_of(s.n_head) {
        bail!(
            "n_embd {} is not divisible by n_head {}",
            s.n_embd,
            s.n_head
        );
    }
    Ok(())
}

/// [`Shape::num_params`] without overflow (a shape read from a file may be absurd).
fn checked_num_params(s: &Shape) -> Option<usize> {
    let (v, t, e, f) = (s.vocab, s.block_size, s.n_embd, s.mlp);
    let embed = v
        .checked_mul(e)?
        .checked_mul(2)?
        .checked_add(t.checked_mul(e)?)?;
    let layer = e
        .checked_mul(e)?
        .checked_mul(4)?
        .checked_add(f.checked_mul(e)?.checked_mul(2)?)?;
    embed.checked_add(layer.checked_mul(s.n_layer)?)
}

/// A serialized safetensors file with its JSON header's object keys sorted (the metadata's,
/// the tensors' names, each tensor's fields), padded with spaces to its old length as the
/// format allows: the same file with bytes that do not depend on a map's order. The
/// tensors' bytes are untouched. Sorting cannot lengthen the header; should it not parse or
/// fit, the bytes are returned as they were.
fn sorted_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return bytes;
    };
    let n = u64::from_le_bytes(*len) as usize;
    let Some(header) = rest.get(..n) else {
        return bytes;
    };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return bytes;
    };
    value.sort_all_objects();
    let Ok(sorted) = serde_json::to_vec(&value) else {
        return bytes;
    };
    debug_assert!(sorted.len() <= n, "a sorted header is no longer");
    if sorted.len() <= n {
        bytes[8..8 + sorted.len()].copy_from_slice(&sorted);
        bytes[8 + sorted.len()..8 + n].fill(b' ');
    }
    bytes
}

/// The metadata (its values by key, `get`) says this is a checkpoint in this build's format.
fn check_format<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<()> {
    let format = match get("format") {
        Some(f) => f,
        None => bail!("not a microgpt checkpoint: the metadata has no `format`"),
    };
    if format != FORMAT {
        if format.starts_with("microgpt-") {
            bail!(
                "format {:?} is not supported (this build reads {:?})",
                format,
                FORMAT
            );
        }
        bail!("not a microgpt checkpoint (its format is {:?})", format);
    }
    Ok(())
}

/// The shape and the vocabulary's characters the metadata (`get`) records, checked.
fn shape_of<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<(Shape, Vec<char>)> {
    let structural = |key: &str| -> Result<usize> {
        let Some(v) = get(key) else {
            bail!("metadata has no `{}`", key);
        };
        match v.parse::<usize>() {
            Ok(x) => Ok(x),
            Err(_) => bail!("metadata `{}` is {:?}, not a non-negative integer", key, v),
        }
    };
    let chars: Vec<char> = match get("vocab") {
        Some(v) => v.chars().collect(),
        None => bail!("metadata has no `vocab`"),
    };
    let shape = Shape {
        vocab: chars.len() + 1,
        block_size: structural("block_size")?,
        n_embd: structural("n_embd")?,
        n_head: structural("n_head")?,
        mlp: structural("mlp")?,
        n_layer: structural("n_layer")?,
    };
    check_shape(&shape)?;
    Ok((shape, chars))
}

/// A tensor of Adam's moments.
fn is_adam(name: &str) -> bool {
    name.starts_with(ADAM_M_PREFIX) || name.starts_with(ADAM_V_PREFIX)
}

/// A tensor of the run's state, Adam's moments or the training weights (rather than a weight).
fn is_state(name: &str) -> bool {
    is_adam(name) || name.starts_with(RAW_PREFIX)
}

/// Every tensor of the file is a weight of `shape` (or its moment).
fn check_tensor_names(names: &[&str], shape: &Shape) -> Result<()> {
    let n_weights = names.iter().filter(|n| !is_state(n)).count();
    // 3 + 6·n_layer weight tensors are expected; refuse an absurd n_layer before listing them
    if shape.n_layer > n_weights {
        bail!(
            "metadata says n_layer = {}, but the file has only {} weight tensors",
            shape.n_layer,
            n_weights
        );
    }
    let expected = shape.tensors();
    let known: HashSet<&str> = expected.iter().map(|(n, _, _)| n.as_str()).collect();
    for name in names {
        let base = name
            .strip_prefix(ADAM_M_PREFIX)
            .or_else(|| name.strip_prefix(ADAM_V_PREFIX))
            .or_else(|| name.strip_prefix(RAW_PREFIX))
            .unwrap_or(name);
        if !known.contains(base) {
            bail!(
                "unexpected tensor `{}` (not a weight of a {}-layer model)",
                name,
                shape.n_layer
            );
        }
    }
    Ok(())
}

/// The tensors `prefix + name` of every weight of `shape`, in [`Shape::tensors`] order, as
/// one flat vector; each must be F64 of its weight's shape.
fn read_tensors(st: &SafeTensors<'_>, prefix: &str, shape: &Shape) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for (name, rows, cols) in shape.tensors() {
        let full = format!("{prefix}{name}");
        let Ok(t) = st.tensor(&full) else {
            if prefix.is_empty() {
                bail!("missing tensor `{}`", full);
            }
            if prefix == RAW_PREFIX {
                bail!("incomplete training weights: missing tensor `{}`", full);
            }
            bail!("incomplete optimizer state: missing tensor `{}`", full);
        };
        if t.dtype() != Dtype::F64 {
            bail!("tensor `{}` has dtype {}, expected F64", full, t.dtype());
        }
        if t.shape() != [rows, cols] {
            bail!(
                "tensor `{}` has shape {:?}, but the metadata (vocab of {} characters + BOS, block_size {}, n_embd {}, mlp {}) needs [{}, {}]",
                full,
                t.shape(),
                shape.vocab - 1,
                shape.block_size,
                shape.n_embd,
                shape.mlp,
                rows,
                cols
            );
        }
        out.extend(t.data().chunks_exact(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            f64::from_le_bytes(a)
        }));
    }
    Ok(out)
}

/// Checks the header before handing the bytes to `safetensors`: the header length against
/// the file size, the JSON, and that the tensor data the header describes is exactly what
/// follows. The crate computes `data_len + 8 + header_len` unchecked, which overflows (a panic in
/// debug builds) for a header that claims an enormous tensor.
fn read_header(bytes: &[u8]) -> Result<Metadata> {
    let Some((len_bytes, rest)) = bytes.split_first_chunk::<8>() else {
        bail!(
            "truncated or not a safetensors file ({} bytes, less than the 8-byte header length)",
            bytes.len()
        );
    };
    let n = u64::from_le_bytes(*len_bytes);
    if n > rest.len() as u64 {
        bail!(
            "truncated or not a safetensors file (the header length says {} bytes, {} follow)",
            n,
            rest.len()
        );
    }
    let (header, data) = rest.split_at(n as usize);
    let metadata: Metadata = match serde_json::from_slice(header) {
        Ok(m) => m,
        Err(e) => bail!("corrupted header or not a safetensors file ({e})"),
    };
    let need = metadata.data_len();
    if need > data.len() {
        bail!(
            "truncated: the header describes {} bytes of tensor data, {} follow",
            need,
            data.len()
        );
    }
    if need < data.len() {
        bail!(
            "corrupted: {} unexpected bytes after the tensor data",
            data.len() - need
        );
    }
    Ok(metadata)
}

/// `usize` for `usize`, etc.: the last path segment of a type name, for error messages.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}
