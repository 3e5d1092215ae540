//! microgpt: Karpathy's microgpt.py as a Rust crate, twice over.
//!
//! - The **reference** (dynamic) engine is a faithful port: a scalar autograd tape
//!   ([`autograd`]) and the GPT written on it line by line ([`reference`](mod@reference)).
//! - The **static** engine has the model's dimensions as const generics ([`config`]), forward
//!   and backward as explicit pairs of functions over fixed-size arrays ([`ops`]), a model that
//!   allocates nothing per step ([`model`]) and Adam ([`optim`]). Every hand-written derivative
//!   is checked against the reference.

pub mod autograd;
pub mod bigram;
pub mod checkpoint;
pub mod curve;
pub mod data;
pub mod dropout;
pub mod error;
pub mod gpt;
pub mod io;
pub mod optim;
pub mod parallel;
pub mod presets;
pub mod progress;
pub mod reference;
pub mod rng;
pub mod sample;
pub mod session;
pub mod shape;
pub mod train;
