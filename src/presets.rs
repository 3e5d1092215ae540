//! The compiled configurations: the only module that names concrete shapes of the static
//! engine, and both engines.
//!
//! The positional const parameters are spelled here and nowhere else; each alias forces the
//! compile-time shape check (`Gpt::CHECK`) with an item-level `const _`, so a wrong alias
//! fails `cargo check`.

use crate::gpt::Gpt;

/// microgpt.py's model on names.txt: V 27, T 16, E 16, H 4, D 4, F 64, L 1 (4,192 parameters).
pub type Micro = Gpt<27, 16, 16, 4, 4, 64, 1>;
const _: () = Micro::CHECK;

/// The micro model compiled for vocabularies of up to 64 tokens (the real one is a run-time
/// value; unused rows are masked).
pub type Micro64 = Gpt<64, 16, 16, 4, 4, 64, 1>;
const _: () = Micro64::CHECK;

/// The micro model for vocabularies of up to 128 tokens.
pub type Micro128 = Gpt<128, 16, 16, 4, 4, 64, 1>;
const _: () = Micro128::CHECK;

/// The micro model for vocabularies of up to 256 tokens.
pub type Micro256 = Gpt<256, 16, 16, 4, 4, 64, 1>;
const _: () = Micro256::CHECK;

/// The shape of makemore's ~200k-parameter transformer on names.txt, with microgpt's blocks:
/// V 27, T 16, E 64, H 4, D 16, F 256, L 4 (201,088 parameters on names).
pub type Small = Gpt<27, 16, 64, 4, 16, 256, 4>;
const _: () = Small::CHECK;

/// The small model for vocabularies of up to 64 tokens.
pub type Small64 = Gpt<64, 16, 64, 4, 16, 256, 4>;
const _: () = Small64::CHECK;

/// The small model for vocabularies of up to 128 tokens.
pub type Small128 = Gpt<128, 16, 64, 4, 16, 256, 4>;
const _: () = Small128::CHECK;

/// The small model for vocabularies of up to 256 tokens.
pub type Small256 = Gpt<256, 16, 64, 4, 16, 256, 4>;
const _: () = Small256::CHECK;
