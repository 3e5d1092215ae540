//! A dataset as a run sees it: read ([`RawDocs`]), identified by its fingerprint, then
//! shuffled and split ([`Dataset`]); and which dataset a checkpoint's run trained on.

use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;

use crate::bail;
use crate::checkpoint::Checkpoint;
use crate::data::{self, CharScan, Docs, EncodedDocs, SharedText, Source, TextDocs, Tokenizer};
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
    pub fingerprint: Fingerprint,
}

/// FNV-1a (64-bit) of the documents joined by newlines.
pub fn fingerprint<S: AsRef<str>>(docs: &[S]) -> u64 {
    fingerprint_of(docs.iter().map(AsRef::as_ref))
}

fn fingerprint_of<'a>(docs: impl Iterator<Item = &'a str>) -> u64 {
    docs.fold(data::FNV_OFFSET, |h, d| {
        data::fnv1a(data::fnv1a(h, d.as_bytes()), b"\n")
    })
}

/// A dataset read but not yet shuffled.
pub struct RawDocs {
    pub source: Source,
    pub docs: Docs,
    /// the text's characters and hash, on another core
    scan: PendingScan,
    /// whether the documents are the text's lines as they stand ([`Docs::parse_lines`])
    lines_are_docs: bool,
}

impl RawDocs {
    /// The documents of `source`. The passes over every byte that a run needs beside the
    /// parse (the characters, then the hash for the fingerprint) start on another core as
    /// soon as the text is read.
    pub fn read(source: &Source) -> Result<RawDocs> {
        let (docs, lines_are_docs, scan) = Docs::read_lines(source, PendingScan::start)?;
        Ok(RawDocs {
            source: source.clone(),
            docs,
            scan,
            lines_are_docs,
        })
    }

    /// The documents of `text`, as [`RawDocs::read`] of a file that holds it.
    pub fn from_text(source: Source, text: String) -> RawDocs {
        let text: SharedText = Arc::new(text.into());
        let scan = PendingScan::start(&text);
        let (docs, lines_are_docs) = Docs::parse_lines(text);
        RawDocs {
            source,
            docs,
            scan,
            lines_are_docs,
        }
    }

    /// FNV-1a of the documents in file order, which a checkpoint records so that a resumed
    /// run can check it sees the same data ([`RawDocs::split`] has it too, from the scan).
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
        let RawDocs {
            source,
            mut docs,
            scan,
            lines_are_docs,
        } = self;
        let num_docs = docs.len();
        let share = (num_docs as f64 * val_fraction).round() as usize;
        let n_val = val_max.map_or(share, |m| share.min(m));
        if val_fraction > 0.0 && (n_val == 0 || n_val >= num_docs) {
            bail!(
                "--val-fraction {val_fraction} of {num_docs} documents leaves {n_val} for validation and {} for training; both need at least one",
                num_docs - n_val.min(num_docs)
            );
        }
        // in file order, so that an error names the file's first unknown character
        if let Some(tok) = &tok
            && let Err(e) = TextDocs::check(&docs, tok)
        {
            bail!("{source}: {e} of the model");
        }
        // the text's hash is the documents' only when they are its lines as they stand
        let file_order_fingerprint = (!lines_are_docs).then(|| fingerprint_of(docs.iter()));
        docs.shuffle(rng);
        let (chars, fingerprint) = scan.finish(file_order_fingerprint);
        let tok = match tok {
            Some(tok) => tok,
            None => docs.tokenizer_of(&chars),
        };
        // the same rule for both engines and the checkpoint, before any work is done with it
        if let Err(e) = limits::check_vocab(tok.chars()) {
            bail!("dataset {source}: {e}");
        }
        let n_train = num_docs - n_val;
        let held_out = docs.iter_range(n_train..num_docs);
        let val = EncodedDocs::from_strs(&tok, held_out).expect("every character is in it");
        docs.truncate(n_train);
        Ok(Dataset {
            source,
            num_docs,
            tok: tok.clone(),
            train: TextDocs::new_unchecked(docs, tok),
            val,
            fingerprint,
        })
    }
}

/// A text's [`CharScan`] and then its FNV-1a hash, on a thread of its own. The characters
/// are sent as soon as they are known (the split waits for them); the hash, which a run needs
/// only for its checkpoints, goes on beside the first steps ([`Fingerprint`]). A thread that
/// cannot be started leaves both to the caller.
struct PendingScan {
    text: SharedText,
    chars: Option<Receiver<CharScan>>,
    hash: Option<JoinHandle<u64>>,
}

impl PendingScan {
    fn start(text: &SharedText) -> PendingScan {
        let shared = Arc::clone(text);
        let (send, chars) = mpsc::sync_channel(1);
        let hash = std::thread::Builder::new()
            .name("scan".into())
            .spawn(move || {
                // (the receiver is gone only if the split failed: the hash is then unused)
                let _ = send.send(CharScan::of(&shared));
                data::fnv1a(data::FNV_OFFSET, shared.as_bytes())
            })
            .ok();
        PendingScan {
            text: Arc::clone(text),
            chars: hash.is_some().then_some(chars),
            hash,
        }
    }

    /// The characters, and the fingerprint: `known` if given (the documents' own hash),
    /// else the text's hash, which is theirs when the lines are the documents as they stand.
    fn finish(mut self, known: Option<u64>) -> (CharScan, Fingerprint) {
        let chars = match self.chars.take().map(|r| r.recv()) {
            Some(Ok(chars)) => chars,
            _ => CharScan::of(&self.text),
        };
        let fingerprint = Fingerprint {
            value: OnceLock::new(),
            pending: Mutex::new(Some((self.text.clone(), self.hash.take()))),
        };
        if let Some(fp) = known {
            fingerprint.value.get_or_init(|| fp);
        }
        (chars, fingerprint)
    }
}

impl Drop for PendingScan {
    fn drop(&mut self) {
        if let Some(t) = self.hash.take() {
            let _ = t.join();
        }
    }
}

/// A dataset's fingerprint ([`RawDocs::fingerprint`]), perhaps still being hashed on
/// another core: [`Fingerprint::get`] waits for it.
pub struct Fingerprint {
    value: OnceLock<u64>,
    /// the text and the thread that hashes it, until the value is known
    pending: Mutex<Option<(SharedText, Option<JoinHandle<u64>>)>>,
}

impl Fingerprint {
    pub fn get(&self) -> u64 {
        *self.value.get_or_init(|| {
            let pending = self
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            let (text, thread) = pending.expect("a fingerprint not yet known is pending");
            let hash = match thread.map(JoinHandle::join) {
                Some(Ok(h)) => h,
                _ => data::fnv1a(data::FNV_OFFSET, text.as_bytes()),
            };
            // the documents each followed by a newline are the text, plus the last newline
            // if the text has none
            if text.ends_with('\n') {
                hash
            } else {
                data::fnv1a(hash, b"\n")
            }
        })
    }
}

impl Drop for Fingerprint {
    fn drop(&mut self) {
        let pending = self
            .pending
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, Some(t))) = pending.take() {
            let _ = t.join();
        }
    }
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
