//! A dataset as a run sees it: read ([`RawDocs`]), identified by its fingerprint, then
//! shuffled and split ([`Dataset`]); and which dataset a checkpoint's run trained on.

use std::path::Path;

use crate::bail;
use crate::checkpoint::Checkpoint;
use crate::data::{self, Docs, EncodedDocs, Source, TextDocs, Tokenizer};
use crate::error::Result;
use crate::limits;
use crate::rng::Rng;

/// A dataset read, shuffled and split.
pub struct Dataset {
    pub source: Source,
    /// Documents in the file.
    pub num_docs: usize,
    pub tok: Tokenizer,
    /// Encoded as they are drawn.
    pub train: TextDocs,
    pub val: EncodedDocs,
    /// [`RawDocs::fingerprint`] of the documents read.
    pub fingerprint: u64,
}

/// FNV-1a (64-bit) of the documents joined by newlines.
pub fn fingerprint<S: AsRef<str>>(docs: &[S]) -> u64 {
    fingerprint_of(docs.iter().map(AsRef::as_ref))
}

fn fingerprint_of<'a>(docs: impl Iterator<Item = &'a str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for d in docs {
        for b in d.bytes().chain([b'\n']) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A dataset read but not yet shuffled.
pub struct RawDocs {
    pub source: Source,
    pub docs: Docs,
}

impl RawDocs {
    pub fn read(source: &Source) -> Result<RawDocs> {
        Ok(RawDocs {
            source: source.clone(),
            docs: Docs::read(source)?,
        })
    }

    /// FNV-1a of the documents in file order, which a checkpoint records so that a resumed
    /// run can check it sees the same data. Computed on demand: it is one serial pass over
    /// every byte (≈ 0.4 ms for names.txt) that a run without checkpoints does not need.
    pub fn fingerprint(&self) -> u64 {
        fingerprint_of(self.docs.iter())
    }

    /// Checks that this is the dataset a checkpoint was trained on.
    pub fn check_against(&self, c: &Checkpoint) -> Result<()> {
        let fp = format!("{:016x}", self.fingerprint());
        if c.get("data_fingerprint").ok() != Some(fp.as_str()) {
            bail!(
                "{} is not the dataset the checkpoint was trained on ({} documents, fingerprint {}; this file: {} documents, {})",
                self.source,
                c.get("data_docs").unwrap_or("?"),
                c.get("data_fingerprint").unwrap_or("?"),
                self.docs.len(),
                fp
            );
        }
        Ok(())
    }

    /// Shuffles the documents with `rng` (microgpt.py's `random.shuffle(docs)`) and holds out
    /// the last `round(n · val_fraction)`, at most `val_max`. The vocabulary is `tok` if given
    /// (a checkpoint's: every character must be in it), else every character of the file.
    pub fn split(
        self,
        rng: &mut Rng,
        val_fraction: f64,
        val_max: Option<usize>,
        tok: Option<Tokenizer>,
    ) -> Result<Dataset> {
        let RawDocs { source, docs } = self;
        // the fingerprint (a serial pass over every byte) on another core, beside the rest
        let (fingerprint, parts) = std::thread::scope(|s| {
            let fp = std::thread::Builder::new()
                .spawn_scoped(s, || fingerprint_of(docs.iter()))
                .ok();
            let parts = shuffle_and_hold_out(&docs, &source, rng, val_fraction, val_max, tok);
            let fp = match fp.map(|h| h.join()) {
                Some(Ok(fp)) => fp,
                _ => fingerprint_of(docs.iter()),
            };
            (fp, parts)
        });
        let (order, n_train, tok, val) = parts?;
        let train = TextDocs::new_unchecked(docs.select(&order[..n_train]), tok.clone());
        Ok(Dataset {
            source,
            num_docs: order.len(),
            tok,
            train,
            val,
            fingerprint,
        })
    }
}

/// [`RawDocs::split`] but for the training documents: the shuffled order, how many of it
/// train, the vocabulary and the held-out documents encoded.
fn shuffle_and_hold_out(
    docs: &Docs,
    source: &Source,
    rng: &mut Rng,
    val_fraction: f64,
    val_max: Option<usize>,
    tok: Option<Tokenizer>,
) -> Result<(Vec<u32>, usize, Tokenizer, EncodedDocs)> {
    let num_docs = docs.len();
    // the shuffle's draws and swaps on the documents' indices: the same order as on the
    // documents, while the text is scanned front to back (at random it is a cache miss per
    // document)
    let mut order: Vec<u32> = (0..num_docs as u32).collect();
    rng.shuffle(&mut order);
    let share = (num_docs as f64 * val_fraction).round() as usize;
    let n_val = val_max.map_or(share, |m| share.min(m));
    if val_fraction > 0.0 && (n_val == 0 || n_val >= num_docs) {
        bail!(
            "--val-fraction {val_fraction} of {num_docs} documents leaves {n_val} for validation and {} for training; both need at least one",
            num_docs - n_val.min(num_docs)
        );
    }
    let tok = match tok {
        // a checkpoint's vocabulary: every character of the file must be in it
        Some(tok) => match TextDocs::check(docs, &tok) {
            Ok(()) => tok,
            Err(e) => bail!("{source}: {e} of the model"),
        },
        None => docs.tokenizer(),
    };
    // the same rule for both engines and the checkpoint, before any work is done with it
    if let Err(e) = limits::check_vocab(tok.chars()) {
        bail!("dataset {source}: {e}");
    }
    let n_train = num_docs - n_val;
    let held_out = order[n_train..].iter().map(|&i| docs.get(i as usize));
    let val = EncodedDocs::from_strs(&tok, held_out).expect("every character is in it");
    Ok((order, n_train, tok, val))
}

impl Dataset {
    /// [`RawDocs::read`] then [`RawDocs::split`].
    pub fn load(
        source: &Source,
        rng: &mut Rng,
        val_fraction: f64,
        val_max: Option<usize>,
        tok: Option<Tokenizer>,
    ) -> Result<Dataset> {
        RawDocs::read(source)?.split(rng, val_fraction, val_max, tok)
    }
}

/// The dataset of a checkpoint's run: `data` if given, else the one it recorded. A recorded
/// file that is no longer there but whose fingerprint is the built-in names' (a run trained
/// on a copy of names.txt) is the built-in names; checkpoints without a record trained on them.
pub fn checkpoint_source(c: &Checkpoint, data: Option<&Path>) -> Source {
    if let Some(p) = data {
        return Source::File(p.to_path_buf());
    }
    match c.get("data").ok().map(Source::from_record) {
        None => Source::Names,
        Some(Source::File(p)) if !p.exists() && is_names(c) => Source::Names,
        Some(s) => s,
    }
}

/// Whether a checkpoint's recorded fingerprint is the built-in names'.
fn is_names(c: &Checkpoint) -> bool {
    let names = fingerprint_of(Docs::parse(data::NAMES.into()).iter());
    c.get("data_fingerprint").ok() == Some(format!("{names:016x}").as_str())
}
