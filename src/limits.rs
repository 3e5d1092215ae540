//! The documented maxima: what the tool refuses with a one-line error rather than try to
//! allocate, and the one rule for a vocabulary that every engine, every command and the
//! checkpoint reader apply alike.

use crate::bail;
use crate::error::Result;

/// Token ids a model can have, BOS included: the static engine's largest compiled vocabulary
/// bucket. The reference engine and the checkpoint reader hold to it too, so whatever one
/// engine trains, the other and every command can load.
pub const MAX_VOCAB: usize = 256;

// the static engine must hold every vocabulary this allows, and nothing more is promised
const _: () = {
    let buckets = crate::presets::BUCKETS;
    assert!(buckets[buckets.len() - 1] == MAX_VOCAB);
};

/// Documents per step (`--batch-size`, and a checkpoint's `batch_size`): a step's list of
/// documents is built per step, 16 bytes per document.
pub const MAX_BATCH_SIZE: usize = 1 << 16;

/// Documents per step on the dynamic engine, which records one autograd tape for the whole
/// step: about 1.2 MB per document for `micro` and 60 MB for `small` (measured peak memory of
/// one step), so 16 documents stay under 1 GB.
pub const MAX_DYNAMIC_BATCH_SIZE: usize = 16;

/// Worker threads (`--threads`); each holds its own gradient and activations. Beyond the batch
/// size, threads would have nothing to do, so fewer are started.
pub const MAX_THREADS: usize = 64;

/// Training steps (`--steps`, `--total-steps`, a checkpoint's `total_steps`): far more than a
/// run can do (a micro step takes microseconds: 10¹² of them are weeks), and small enough that
/// `step × batch_size` cannot overflow.
pub const MAX_STEPS: usize = 1_000_000_000_000;

/// Samples per `sample` command (`--num-samples`); they are printed as they are drawn.
pub const MAX_SAMPLES: usize = 1_000_000_000;

/// Size of a dataset file. Every character becomes an 8-byte token id, so a dataset costs about
/// nine times its size in memory.
pub const MAX_DATA_BYTES: u64 = 64 << 20;

/// Size of a checkpoint file: the largest compiled model with Adam's moments is under 6 MB.
pub const MAX_CHECKPOINT_BYTES: u64 = 64 << 20;

/// Whether `c` may be in a vocabulary: a character that would break the output's one sample per
/// line cannot (a line break, or any other control character such as a tab or an escape).
pub fn allowed_char(c: char) -> bool {
    !(c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

/// A vocabulary's characters (BOS not included) against the rules: at least one, at most
/// [`MAX_VOCAB`] − 1, each [`allowed_char`]. (That they are sorted and unique is the
/// tokenizer's rule.)
pub fn check_vocab(chars: &[char]) -> Result<()> {
    if chars.is_empty() {
        bail!("the vocabulary is empty");
    }
    if chars.len() >= MAX_VOCAB {
        bail!(
            "the vocabulary has {} characters, more than the {} a model can have (+ BOS = {MAX_VOCAB} tokens)",
            chars.len(),
            MAX_VOCAB - 1
        );
    }
    if let Some(&c) = chars.iter().find(|&&c| !allowed_char(c)) {
        bail!(
            "the vocabulary holds {c:?} (U+{:04X}), a control character or line break, which would break the one-sample-per-line output",
            c as u32
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_line_breaks_are_refused() {
        for c in [
            '\n', '\r', '\t', '\0', '\u{1b}', '\u{7f}', '\u{85}', '\u{2028}',
        ] {
            assert!(!allowed_char(c), "{c:?}");
            assert!(check_vocab(&['a', c]).is_err(), "{c:?}");
        }
        for c in [' ', 'a', 'é', '-', '\u{a0}', '語'] {
            assert!(allowed_char(c), "{c:?}");
        }
        assert!(check_vocab(&['a', 'b']).is_ok());
    }

    #[test]
    fn the_vocabulary_holds_at_most_max_vocab_tokens() {
        let chars: Vec<char> = (0..MAX_VOCAB as u32)
            .map(|i| char::from_u32(0x100 + i).unwrap())
            .collect();
        assert!(check_vocab(&chars[..MAX_VOCAB - 1]).is_ok());
        let e = check_vocab(&chars).unwrap_err().to_string();
        assert!(e.contains("256 characters"), "{e}");
        assert!(check_vocab(&[]).is_err());
    }
}
