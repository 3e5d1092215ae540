//! The dataset (one document per line) and the character-level tokenizer.
//!
//! microgpt.py: `docs = [line.strip() for line in open(...) if line.strip()]`, `random.shuffle(docs)`,
//! `uchars = sorted(set(''.join(docs)))`, `BOS = len(uchars)`, `vocab_size = len(uchars) + 1`.

use std::path::{Path, PathBuf};

use crate::bail;
use crate::error::Result;
use crate::rng::Rng;

/// Where the names dataset is looked for when `--data` is not given, in order.
pub const DEFAULT_DATA_PATHS: [&str; 2] = ["data/names.txt", "../shared/data/names.txt"];

/// The first of [`DEFAULT_DATA_PATHS`] that exists, or an error that says where to get names.txt.
pub fn default_data_path() -> Result<PathBuf> {
    for p in DEFAULT_DATA_PATHS {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!(
        "no dataset: neither {} nor {} exists; download names.txt from https://github.com/karpathy/makemore (names.txt) into data/, or pass --data PATH",
        DEFAULT_DATA_PATHS[0],
        DEFAULT_DATA_PATHS[1]
    )
}

/// Splits text into documents: one per line, surrounding whitespace (and so `\r`) stripped,
/// empty lines skipped.
pub fn parse_docs(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Reads a UTF-8 file of documents, in file order. Errors (missing, unreadable, not a regular
/// file, larger than [`MAX_DATA_BYTES`](crate::limits::MAX_DATA_BYTES), not UTF-8, no
/// documents) are one line that names the file.
pub fn load_docs(path: &Path) -> Result<Vec<String>> {
    let bytes = crate::atomic::read_input(path, crate::limits::MAX_DATA_BYTES, "dataset")?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => bail!(
            "dataset {} is not valid UTF-8 (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ),
    };
    let docs = parse_docs(&text);
    if docs.is_empty() {
        bail!(
            "dataset {} has no documents (every line is empty)",
            path.display()
        );
    }
    Ok(docs)
}

/// `random.shuffle(docs)`: the one shuffle of the run, drawn from the seeded stream.
pub fn shuffle_docs(docs: &mut [String], rng: &mut Rng) {
    rng.shuffle(docs);
}

/// Character-level tokenizer: the sorted unique characters (Unicode scalar values) are ids
/// `0..n`, and BOS (which also ends a document) is id `n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenizer {
    chars: Vec<char>,
}

impl Tokenizer {
    /// Builds the vocabulary from the documents.
    pub fn from_docs<S: AsRef<str>>(docs: &[S]) -> Tokenizer {
        let mut chars: Vec<char> = docs.iter().flat_map(|d| d.as_ref().chars()).collect();
        chars.sort_unstable();
        chars.dedup();
        Tokenizer { chars }
    }

    /// A tokenizer with exactly these characters in id order (e.g. read from a checkpoint).
    /// They must be strictly increasing, as `from_docs` makes them.
    pub fn from_chars(chars: Vec<char>) -> Result<Tokenizer> {
        if chars.windows(2).any(|w| w[0] >= w[1]) {
            bail!("vocabulary characters are not sorted and unique");
        }
        Ok(Tokenizer { chars })
    }

    /// The characters in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The id of BOS, which also marks the end of a document.
    pub fn bos(&self) -> usize {
        self.chars.len()
    }

    /// Number of token ids, BOS included.
    pub fn vocab_size(&self) -> usize {
        self.chars.len() + 1
    }

    /// The id of one character, if it is in the vocabulary.
    pub fn id(&self, c: char) -> Option<usize> {
        self.chars.binary_search(&c).ok()
    }

    /// Encodes text into ids (no BOS); an unknown character is an error that names it.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>> {
        text.chars()
            .map(|c| match self.id(c) {
                Some(i) => Ok(i),
                None => bail!("character {:?} is not in the vocabulary", c),
            })
            .collect()
    }

    /// `[BOS] + encode(doc) + [BOS]`, the sequence a document is trained on.
    pub fn encode_doc(&self, doc: &str) -> Result<Vec<usize>> {
        let mut t = Vec::with_capacity(doc.len() + 2);
        t.push(self.bos());
        t.extend(self.encode(doc)?);
        t.push(self.bos());
        Ok(t)
    }

    /// Decodes ids to text; BOS is skipped.
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter().filter_map(|&i| self.chars.get(i)).collect()
    }
}

/// Every document encoded once, up front, as `[BOS] doc [BOS]`, in one flat buffer so that the
/// training loop only slices it.
#[derive(Debug, Clone)]
pub struct EncodedDocs {
    tokens: Vec<usize>,
    starts: Vec<usize>,
}

impl EncodedDocs {
    pub fn new<S: AsRef<str>>(tok: &Tokenizer, docs: &[S]) -> Result<EncodedDocs> {
        let mut tokens = Vec::new();
        let mut starts = vec![0];
        for d in docs {
            tokens.extend(tok.encode_doc(d.as_ref())?);
            starts.push(tokens.len());
        }
        Ok(EncodedDocs { tokens, starts })
    }

    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Document `i` as `[BOS] ids [BOS]`.
    pub fn get(&self, i: usize) -> &[usize] {
        &self.tokens[self.starts[i]..self.starts[i + 1]]
    }

    /// Every document in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[usize]> + Clone {
        (0..self.len()).map(|i| self.get(i))
    }
}
