//! The dataset (one document per line) and the character-level tokenizer.
//!
//! microgpt.py: `docs = [line.strip() for line in open(...) if line.strip()]`, `random.shuffle(docs)`,
//! `uchars = sorted(set(''.join(docs)))`, `BOS = len(uchars)`, `vocab_size = len(uchars) + 1`.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bail;
use crate::error::Result;
use crate::rng::Rng;

/// makemore's `names.txt` (32,033 names; source and licence in `data/README.md`), built into
/// the binary: the dataset when no `--data` is given, so that a fresh clone or an installed
/// binary runs from any directory.
pub const NAMES: &str = include_str!("../data/names.txt");

/// Where a run's documents come from: the built-in [`NAMES`] or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Names,
    File(PathBuf),
}

impl Source {
    /// How a checkpoint's `data` entry names the built-in names (a path is recorded as is).
    pub const NAMES_RECORD: &'static str = "builtin:names.txt";

    /// `--data`, else the built-in names.
    pub fn new(data: Option<&Path>) -> Source {
        match data {
            Some(p) => Source::File(p.to_path_buf()),
            None => Source::Names,
        }
    }

    /// The source a checkpoint's `data` entry names.
    pub fn from_record(recorded: &str) -> Source {
        if recorded == Self::NAMES_RECORD {
            Source::Names
        } else {
            Source::File(PathBuf::from(recorded))
        }
    }

    /// What a checkpoint records as its `data` entry.
    pub fn record(&self) -> String {
        match self {
            Source::Names => Self::NAMES_RECORD.to_string(),
            Source::File(p) => p.display().to_string(),
        }
    }

    /// The text: the built-in names, or the file read as UTF-8. Errors (missing, unreadable,
    /// not a regular file, larger than [`MAX_DATA_BYTES`](crate::limits::MAX_DATA_BYTES), not
    /// UTF-8) are one line that names the file.
    pub fn text(&self) -> Result<Cow<'static, str>> {
        let path = match self {
            Source::Names => return Ok(Cow::Borrowed(NAMES)),
            Source::File(p) => p,
        };
        // not a device, a FIFO or a directory, nor larger than the documented maximum
        let bytes = crate::io::read_input(path, crate::limits::MAX_DATA_BYTES, "dataset")?;
        match String::from_utf8(bytes) {
            Ok(t) => Ok(Cow::Owned(t)),
            Err(e) => bail!(
                "dataset {} is not valid UTF-8 (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Names => f.write_str("names.txt (built in)"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A dataset's text, shared: by its documents and by a thread that scans it beside them.
pub type SharedText = Arc<Cow<'static, str>>;

/// The documents of a text, in file order until shuffled: one per line, surrounding
/// whitespace (and so `\r`) stripped, empty lines skipped. Each is a byte range of the text,
/// so that reading a dataset allocates two buffers, not one string per line.
#[derive(Debug, Clone)]
pub struct Docs {
    text: SharedText,
    /// Byte ranges (u32: half the memory to fault in; [`Docs::read`] refuses bigger texts).
    spans: Vec<(u32, u32)>,
}

impl Docs {
    /// The documents of a text of less than 4 GiB.
    pub fn parse(text: Cow<'static, str>) -> Docs {
        Self::parse_lines(Arc::new(text)).0
    }

    /// [`Docs::parse`], and whether the documents are the text's lines as they stand (no
    /// line empty, none trimmed): then the documents, each followed by a newline, are the
    /// text, with a newline added if its last line has none.
    pub fn parse_lines(text: SharedText) -> (Docs, bool) {
        assert!(u32::try_from(text.len()).is_ok(), "a text of 4 GiB or more");
        // split at '\n' and trim: the same documents as `text.lines().map(str::trim)` (a
        // line's `\r` is whitespace). The newlines are found eight bytes at a time without a
        // branch per line ([`line_ends`]), and lines with ASCII letters at both ends, the
        // common case, are taken without `trim`'s checks.
        let bytes = text.as_bytes();
        let count = bytes.iter().filter(|&&b| b == b'\n').count();
        let mut ends = line_ends(bytes, count);
        ends.push(bytes.len() as u32);
        let mut spans = Vec::with_capacity(count + 1);
        let mut start = 0;
        let mut lines_are_docs = true;
        for &end in &ends {
            let (s, e) = (start as usize, end as usize);
            let line = &bytes[s..e];
            let span = match (line.first(), line.last()) {
                (Some(f), Some(l)) if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() => {
                    (start, end)
                }
                _ => {
                    let t = text[s..e].trim();
                    let a = s + (t.as_ptr() as usize - line.as_ptr() as usize);
                    (a as u32, (a + t.len()) as u32)
                }
            };
            let kept = span.0 < span.1;
            // (the empty "line" after a final newline is no line)
            let after_last_newline = s == e && e == bytes.len();
            lines_are_docs &= after_last_newline || (kept && span == (start, end));
            if kept {
                spans.push(span);
            }
            start = end + 1;
        }
        (Docs { text, spans }, lines_are_docs)
    }

    /// [`Source::text`] then [`Docs::parse`]; a text without documents is an error.
    pub fn read(source: &Source) -> Result<Docs> {
        Ok(Self::read_lines(source, |_| ())?.0)
    }

    /// [`Docs::read`] with [`Docs::parse_lines`]'s flag, and the text shared before it is
    /// parsed: `scan` gets it first (e.g. to start a thread that reads it beside the parse).
    pub fn read_lines<R>(
        source: &Source,
        scan: impl FnOnce(&SharedText) -> R,
    ) -> Result<(Docs, bool, R)> {
        let text = Arc::new(source.text()?);
        if u32::try_from(text.len()).is_err() {
            bail!("dataset {source} is larger than 4 GiB");
        }
        let r = scan(&text);
        let (docs, lines_are_docs) = Docs::parse_lines(text);
        if docs.is_empty() {
            bail!("dataset {source} has no documents (every line is empty)");
        }
        Ok((docs, lines_are_docs, r))
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Document `i`.
    pub fn get(&self, i: usize) -> &str {
        let (a, b) = self.spans[i];
        &self.text[a as usize..b as usize]
    }

    /// Documents `range`, in order.
    pub fn iter_range(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl ExactSizeIterator<Item = &str> + Clone {
        let text: &str = &self.text;
        self.spans[range]
            .iter()
            .map(move |&(a, b)| &text[a as usize..b as usize])
    }

    /// Every document, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        self.iter_range(0..self.len())
    }

    /// Keeps the first `n` documents.
    pub fn truncate(&mut self, n: usize) {
        self.spans.truncate(n);
    }

    /// [`Tokenizer::from_strs`] of these documents, from one pass over the whole text rather
    /// than one per document ([`Docs::tokenizer_of`]).
    pub fn tokenizer(&self) -> Tokenizer {
        self.tokenizer_of(&CharScan::of(&self.text))
    }

    /// [`Docs::tokenizer`] from `scan`, the characters of the whole text: the text outside the
    /// documents is line ends and the whitespace trimmed off them, so a character seen in the
    /// text is in a document unless it is whitespace, and only those few are looked for in
    /// the documents.
    pub fn tokenizer_of(&self, scan: &CharScan) -> Tokenizer {
        // (a line end is never in a document: the documents are split at them)
        let in_a_doc =
            |c: char| !c.is_whitespace() || (c != '\n' && self.iter().any(|d| d.contains(c)));
        let ascii = (0u8..128)
            .filter(|&b| scan.seen[b as usize])
            .map(char::from)
            .filter(|&c| in_a_doc(c));
        let chars = ascii
            .chain(scan.wide.chars().filter(|&c| in_a_doc(c)))
            .collect();
        Tokenizer::with_chars(chars)
    }

    /// `random.shuffle(docs)`: the same draws and swaps as [`shuffle_docs`] on the strings.
    pub fn shuffle(&mut self, rng: &mut Rng) {
        rng.shuffle(&mut self.spans);
    }

    /// The documents as strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(String::from).collect()
    }
}

/// The offsets of the `count` newlines of `bytes`, eight bytes at a time: a word's bytes
/// XOR `\n` are zero where it has one, and `!(((v & 0x7f…) + 0x7f…) | v | 0x7f…)` sets the
/// high bit of exactly those bytes. The first four of a word's are written whatever their
/// number (a names.txt line is 7 bytes: a branch per line would mispredict on every one),
/// and the count moves on by how many there were.
fn line_ends(bytes: &[u8], count: usize) -> Vec<u32> {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const NEWLINES: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    // room for the four writes past the last newline
    let mut ends = vec![0u32; count + 4];
    let mut n = 0;
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    for (k, w) in words.enumerate() {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes")) ^ NEWLINES;
        let mut m = !(((v & LOW7) + LOW7) | v | LOW7);
        let found = m.count_ones() as usize;
        let base = (8 * k) as u32;
        for e in &mut ends[n..n + 4] {
            *e = base + m.trailing_zeros() / 8;
            m &= m.wrapping_sub(1);
        }
        let mut at = n + 4;
        while m != 0 {
            ends[at] = base + m.trailing_zeros() / 8;
            m &= m - 1;
            at += 1;
        }
        n += found;
    }
    let base = bytes.len() - tail.len();
    for (i, &b) in tail.iter().enumerate() {
        ends[n] = (base + i) as u32;
        n += usize::from(b == b'\n');
    }
    ends.truncate(count);
    ends
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
    Ok(Docs::read(&Source::File(path.to_path_buf()))?.to_vec())
}

/// The built-in names, in file order.
pub fn names() -> Vec<String> {
    parse_docs(NAMES)
}

/// `random.shuffle(docs)`: the one shuffle of the run, drawn from the seeded stream.
pub fn shuffle_docs(docs: &mut [String], rng: &mut Rng) {
    rng.shuffle(docs);
}

/// A set of non-ASCII characters: a bit each for the two-byte ones (Latin, Greek, Cyrillic,
/// …: no search), an ordered set for the rest.
#[derive(Default)]
struct CharSet {
    two_byte: [u64; 0x800 / 64],
    other: BTreeSet<char>,
}

impl CharSet {
    fn insert(&mut self, c: char) {
        match c as usize {
            u @ ..0x800 => self.two_byte[u / 64] |= 1 << (u % 64),
            _ => {
                self.other.insert(c);
            }
        }
    }

    /// The characters in order.
    fn chars(&self) -> impl Iterator<Item = char> + '_ {
        let two_byte = (0x80..0x800u32)
            .filter(|&u| self.two_byte[u as usize / 64] >> (u % 64) & 1 == 1)
            .filter_map(char::from_u32);
        two_byte.chain(self.other.iter().copied())
    }
}

/// FNV-1a (64-bit)'s starting value.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a (64-bit): the hash `h` carried on over `bytes`.
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The characters of a text, from one pass over its bytes (for [`Docs::tokenizer_of`]).
pub struct CharScan {
    seen: [bool; 256],
    wide: CharSet,
}

impl CharScan {
    pub fn of(text: &str) -> CharScan {
        let bytes = text.as_bytes();
        let mut seen = [false; 256];
        let mut wide = CharSet::default();
        for (i, &b) in bytes.iter().enumerate() {
            seen[b as usize] = true;
            // a UTF-8 lead byte: the character it starts (the text is valid UTF-8, so a
            // two-byte one is `110xxxxx 10yyyyyy`: xxxxxyyyyyy)
            if b >= 0xE0 {
                let len = b.leading_ones() as usize;
                let c = text[i..i + len].chars().next().expect("a character");
                wide.insert(c);
            } else if b >= 0xC0 {
                let u = (b as usize & 0x1F) << 6 | (bytes[i + 1] as usize & 0x3F);
                wide.two_byte[u / 64] |= 1 << (u % 64);
            }
        }
        CharScan { seen, wide }
    }
}

/// Character-level tokenizer: the sorted unique characters (Unicode scalar values) are ids
/// `0..n`, and BOS (which also ends a document) is id `n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenizer {
    chars: Vec<char>,
    /// The id of each ASCII character by its byte (`NONE` if it is not in the vocabulary, and
    /// for the bytes from 0x80 on): the common case of [`Tokenizer::id`] without a search.
    ascii: [u32; 256],
}

/// No id, in [`Tokenizer`]'s ASCII table.
const NONE: u32 = u32::MAX;

impl Tokenizer {
    /// Builds the vocabulary from the documents.
    pub fn from_docs<S: AsRef<str>>(docs: &[S]) -> Tokenizer {
        Self::from_strs(docs.iter().map(AsRef::as_ref))
    }

    /// [`Tokenizer::from_docs`] of documents given one by one.
    pub fn from_strs<'a>(docs: impl IntoIterator<Item = &'a str>) -> Tokenizer {
        // a table of the bytes seen and a set of the other characters: sorted and unique as
        // `sorted(set(...))`, without sorting every character of the dataset
        let mut seen = [false; 256];
        let mut wide = CharSet::default();
        for d in docs {
            let mut high = false;
            for b in d.bytes() {
                seen[b as usize] = true;
                high |= b >= 0x80;
            }
            if high {
                d.chars()
                    .filter(|c| !c.is_ascii())
                    .for_each(|c| wide.insert(c));
            }
        }
        let chars = (0u8..128)
            .filter(|&b| seen[b as usize])
            .map(char::from)
            .chain(wide.chars())
            .collect();
        Self::with_chars(chars)
    }

    /// A tokenizer with exactly these characters in id order (e.g. read from a checkpoint).
    /// They must be strictly increasing, as `from_docs` makes them.
    pub fn from_chars(chars: Vec<char>) -> Result<Tokenizer> {
        if chars.windows(2).any(|w| w[0] >= w[1]) {
            bail!("vocabulary characters are not sorted and unique");
        }
        Ok(Self::with_chars(chars))
    }

    fn with_chars(chars: Vec<char>) -> Tokenizer {
        let mut ascii = [NONE; 256];
        for (i, &c) in chars.iter().enumerate() {
            if c.is_ascii() {
                ascii[c as usize] = i as u32;
            }
        }
        Tokenizer { chars, ascii }
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
        if c.is_ascii() {
            let i = self.ascii[c as usize];
            (i != NONE).then_some(i as usize)
        } else {
            self.chars.binary_search(&c).ok()
        }
    }

    /// Appends the ids of `text` (no BOS) to `out`; an unknown character is an error that
    /// names it.
    fn encode_into(&self, text: &str, out: &mut Vec<usize>) -> Result<()> {
        if text.is_ascii() {
            // a table look-up per byte, checked once for the whole text
            let start = out.len();
            out.extend(text.bytes().map(|b| self.ascii[b as usize] as usize));
            if !out[start..].contains(&(NONE as usize)) {
                return Ok(());
            }
            out.truncate(start);
        }
        for c in text.chars() {
            match self.id(c) {
                Some(i) => out.push(i),
                None => bail!("character {:?} is not in the vocabulary", c),
            }
        }
        Ok(())
    }

    /// Appends the ids of the first `max` characters of `text`, which must all be in the
    /// vocabulary (an unknown one is skipped).
    fn encode_prefix(&self, text: &str, max: usize, out: &mut Vec<usize>) {
        if text.is_ascii() {
            let ids = text
                .bytes()
                .take(max)
                .map(|b| self.ascii[b as usize] as usize);
            out.extend(ids.filter(|&i| i != NONE as usize));
        } else {
            out.extend(text.chars().take(max).filter_map(|c| self.id(c)));
        }
    }

    /// The first character of `text` not in the vocabulary, if any.
    pub fn unknown_char(&self, text: &str) -> Option<char> {
        if text.bytes().all(|b| self.ascii[b as usize] != NONE) {
            return None;
        }
        text.chars().find(|&c| self.id(c).is_none())
    }

    /// Encodes text into ids (no BOS); an unknown character is an error that names it.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>> {
        let mut ids = Vec::with_capacity(text.len());
        self.encode_into(text, &mut ids)?;
        Ok(ids)
    }

    /// `[BOS] + encode(doc) + [BOS]`, the sequence a document is trained on.
    pub fn encode_doc(&self, doc: &str) -> Result<Vec<usize>> {
        let mut t = Vec::with_capacity(doc.len() + 2);
        t.push(self.bos());
        self.encode_into(doc, &mut t)?;
        t.push(self.bos());
        Ok(t)
    }

    /// Decodes ids to text; BOS is skipped.
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter().filter_map(|&i| self.chars.get(i)).collect()
    }
}

/// Documents encoded once, up front, as `[BOS] doc [BOS]`: slices of one flat buffer in
/// which consecutive documents share the BOS between them, so that the training loop only
/// slices it. The buffer is shared by a set and the samples of it ([`EncodedDocs::head`]).
#[derive(Debug, Clone)]
pub struct EncodedDocs {
    tokens: Arc<Vec<usize>>,
    /// Each document's `start..end` in `tokens`, BOS at both ends included.
    spans: Vec<(usize, usize)>,
}

impl EncodedDocs {
    pub fn new<S: AsRef<str>>(tok: &Tokenizer, docs: &[S]) -> Result<EncodedDocs> {
        Self::from_strs(tok, docs.iter().map(AsRef::as_ref))
    }

    /// [`EncodedDocs::new`] of documents given one by one.
    pub fn from_strs<'a>(
        tok: &Tokenizer,
        docs: impl ExactSizeIterator<Item = &'a str> + Clone,
    ) -> Result<EncodedDocs> {
        // bytes bound characters, so one pass sizes the buffer and the loop never reallocates
        let bound: usize = 1 + docs.clone().map(|d| d.len() + 1).sum::<usize>();
        let mut tokens = Vec::with_capacity(bound);
        let mut spans = Vec::with_capacity(docs.len());
        let bos = tok.bos();
        tokens.push(bos);
        for d in docs {
            let start = tokens.len() - 1;
            tok.encode_into(d, &mut tokens)?;
            tokens.push(bos);
            spans.push((start, tokens.len()));
        }
        Ok(EncodedDocs {
            tokens: Arc::new(tokens),
            spans,
        })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Document `i` as `[BOS] ids [BOS]`.
    pub fn get(&self, i: usize) -> &[usize] {
        let (a, b) = self.spans[i];
        &self.tokens[a..b]
    }

    /// Every document in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[usize]> + Clone {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The first `n` documents (all of them if there are fewer).
    pub fn head(&self, n: usize) -> EncodedDocs {
        EncodedDocs {
            tokens: Arc::clone(&self.tokens),
            spans: self.spans[..n.min(self.len())].to_vec(),
        }
    }
}

/// Documents a run draws from, one at a time: what [`crate::train::train`] reads.
pub trait DocSet {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends document `i` as `[BOS] ids [BOS]`, cut to its first `max` tokens (a model
    /// of block size `t` reads `t + 1`), so that a buffer of the batch's `max`s never grows.
    fn write(&self, i: usize, max: usize, out: &mut Vec<usize>);
}

impl DocSet for EncodedDocs {
    fn len(&self) -> usize {
        EncodedDocs::len(self)
    }

    fn write(&self, i: usize, max: usize, out: &mut Vec<usize>) {
        let d = self.get(i);
        out.extend_from_slice(&d[..d.len().min(max)]);
    }
}

/// Documents kept as text and encoded when drawn: a run's training split. A run reads a few
/// documents per step, so it does not need all of them encoded up front (most of a big
/// file's are never visited in a short run, and encoded they take 8 bytes a character).
/// Every character is in the tokenizer's vocabulary (checked by [`TextDocs::new`]).
#[derive(Debug, Clone)]
pub struct TextDocs {
    docs: Docs,
    tok: Tokenizer,
}

impl TextDocs {
    /// `docs` encoded by `tok`; a character outside its vocabulary is an error that names it.
    pub fn new(docs: Docs, tok: Tokenizer) -> Result<TextDocs> {
        Self::check(&docs, &tok)?;
        Ok(TextDocs { docs, tok })
    }

    /// Every character of `docs` is in `tok`'s vocabulary, or an error names the first that
    /// is not.
    pub fn check(docs: &Docs, tok: &Tokenizer) -> Result<()> {
        if let Some(c) = docs.iter().find_map(|d| tok.unknown_char(d)) {
            bail!("character {c:?} is not in the vocabulary");
        }
        Ok(())
    }

    /// [`TextDocs::new`] of documents whose vocabulary `tok` was built from.
    pub(crate) fn new_unchecked(docs: Docs, tok: Tokenizer) -> TextDocs {
        TextDocs { docs, tok }
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Document `i` as text.
    pub fn text(&self, i: usize) -> &str {
        self.docs.get(i)
    }

    /// Every document as text, in order.
    pub fn texts(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        self.docs.iter()
    }

    /// Document `i` as `[BOS] ids [BOS]`.
    pub fn get(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        self.write(i, usize::MAX, &mut out);
        out
    }

    /// All of them encoded, in order.
    pub fn encoded(&self) -> EncodedDocs {
        EncodedDocs::from_strs(&self.tok, self.texts()).expect("checked by TextDocs::new")
    }
}

impl DocSet for TextDocs {
    fn len(&self) -> usize {
        TextDocs::len(self)
    }

    fn write(&self, i: usize, max: usize, out: &mut Vec<usize>) {
        if max == 0 {
            return;
        }
        let bos = self.tok.bos();
        let start = out.len();
        out.push(bos);
        self.tok.encode_prefix(self.docs.get(i), max - 1, out);
        if out.len() - start < max {
            out.push(bos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::line_ends;

    #[test]
    fn line_ends_are_every_newline_in_order() {
        // lines of every length from 0 to 19, runs of newlines filling whole words, and
        // tails of every length after the last word
        let mut texts: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\n".to_vec(),
            vec![b'\n'; 8],
            vec![b'\n'; 19],
        ];
        let mut t = Vec::new();
        for len in 0..20 {
            t.extend(std::iter::repeat_n(b'a', len));
            t.push(b'\n');
        }
        for tail in 0..9 {
            let mut u = t.clone();
            u.extend(std::iter::repeat_n(0x8a, tail)); // 0x8a ^ 0x0a = 0x80: not a newline
            texts.push(u);
        }
        for text in texts {
            let want: Vec<u32> = (0..text.len() as u32)
                .filter(|&i| text[i as usize] == b'\n')
                .collect();
            assert_eq!(line_ends(&text, want.len()), want, "{text:?}");
        }
    }
}
