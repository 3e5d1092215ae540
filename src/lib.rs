//! microgpt: Karpathy's microgpt.py as a Rust crate, twice over.
//!
//! - The **reference** (dynamic) engine is a faithful port: a scalar autograd tape
//!   ([`autograd`]) and the GPT written on it line by line ([`reference`](mod@reference)).
//! - The **static** engine ([`gpt`]) has the model's dimensions as const generics, forward and
//!   backward as explicit pairs of functions over fixed-size arrays ([`gpt::ops`]), allocates
//!   nothing per step, and spreads a minibatch over threads without changing a bit of the
//!   result. Every hand-written derivative is checked against the reference.
//!
//! The modules, bottom to top (each uses only those above it):
//!
//! | module | what |
//! |---|---|
//! | [`error`], [`rng`], [`io`] | one-line errors; the random streams (PCG, CPython's MT19937); atomic file writes |
//! | [`shape`] | [`shape::Shape`], the presets' shapes, `INIT_STD`, `RMSNORM_EPS`: no engine |
//! | [`data`], [`dropout`], [`optim`], `wide` | documents and tokenizer; dropout masks; Adam; with AVX-512, the matrix products' 512-bit inner loop and the transpose's tiles; with AVX, the reductions' folds |
//! | [`model`] | the engine-neutral traits: what training, evaluation and sampling need |
//! | [`autograd`], [`reference`](mod@reference) | the dynamic engine: the tape and the GPT on it |
//! | [`parallel`] | the crew of worker threads the static engine's steps run on |
//! | [`gpt`] | the static engine, cut like llm.c's `train_gpt2.c` (its own table) |
//! | [`presets`] | the compiled configurations and engine selection: the only module naming concrete shapes and both engines |
//! | [`sample`], [`train`], [`ema`], [`bigram`] | sampling, the training loop, the weights' moving average, the count baseline |
//! | [`checkpoint`], [`curve`] | safetensors checkpoints, loss curves |
//! | [`session`] | the commands' work, for `main.rs`: settings, the dataset's split, the `train` run (which reports [`session::Event`]s and prints nothing), sample and eval |
//! | [`console`], [`progress`] | the terminal, for `main.rs` only: lines that never panic, the progress bar |

pub mod autograd;
pub mod bigram;
pub mod checkpoint;
pub mod console;
pub mod curve;
pub mod data;
pub mod dropout;
pub mod ema;
pub mod error;
pub mod float;
pub mod gpt;
pub mod interrupt;
pub mod io;
pub mod limits;
pub mod model;
pub mod optim;
pub mod parallel;
pub mod presets;
pub mod progress;
pub mod reference;
pub mod rng;
pub mod sample;
pub mod serve;
pub mod session;
pub mod shape;
pub mod train;
#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
pub mod wide;
