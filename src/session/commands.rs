//! The commands that read a checkpoint back (`sample`, `eval`), and the bigram baseline.

use std::collections::HashSet;
use std::path::Path;

use crate::bail;
use crate::bigram::Bigram;
use crate::checkpoint::Checkpoint;
use crate::data::{Docs, EncodedDocs, Source, Tokenizer};
use crate::error::Result;
use crate::float::Precision;
use crate::limits;
use crate::model::Model;
use crate::presets::{Engine, build_model};
use crate::rng::{Rng, RngKind};
use crate::sample::{self, Sampling};
use crate::train;

use super::settings::check_checkpoint_shape;
use super::train::cores;
use super::{Dataset, RawDocs, Settings, checkpoint_source};

/// The bigram baseline's validation loss on a dataset's split (`None` without a split).
pub fn bigram_baseline(data: &Dataset) -> Result<Option<f64>> {
    if data.val.is_empty() {
        return Ok(None);
    }
    let train = data.train.encoded();
    let b = Bigram::fit(
        data.tok.vocab_size(),
        train.iter(),
        Bigram::DEFAULT_SMOOTHING,
    )?;
    Ok(Some(b.mean_nll(data.val.iter(), None)?))
}

/// The metadata key of the precision a static model computed in (`f64`, `f32`). The tensors
/// are stored in `f64` whatever it is: an `f32` value is exactly an `f64` one, so an `f32`
/// checkpoint loads back bit for bit, into either precision, through the one reader.
pub const PRECISION_KEY: &str = "float";

/// The precision a checkpoint's model computed in ([`PRECISION_KEY`]; `f64` for checkpoints
/// from before the key).
pub fn checkpoint_precision(c: &Checkpoint) -> Result<Precision> {
    c.parse_or(PRECISION_KEY, Precision::F64)
}

/// A model with a checkpoint's weights, on the static engine in the checkpoint's precision
/// ([`checkpoint_precision`]; an `f32` model rounds `f64` values to nearest).
pub fn load_model(c: &Checkpoint) -> Result<(Box<dyn Model>, Tokenizer)> {
    check_checkpoint_shape(c)?;
    let tok = c.tokenizer()?;
    // the weights are overwritten; the stream only feeds the throwaway initialization
    let mut rng = Rng::pcg(0);
    let engine = Engine::static_in(checkpoint_precision(c)?);
    let mut model = build_model(engine, c.model()?, tok.vocab_size(), &mut rng)?;
    model.set_params_flat(&c.params)?;
    Ok((model, tok))
}

/// `microgpt sample`: `n` samples, each the prompt followed by what the model draws.
pub fn run_sample(
    c: &Checkpoint,
    n: usize,
    sampling: &Sampling,
    seed: u64,
    rng_kind: RngKind,
    prompt: &str,
) -> Result<Vec<String>> {
    let mut samples = Vec::new();
    each_sample(c, n, sampling, seed, rng_kind, prompt, |s| {
        samples.push(s.to_string());
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(samples)
}

/// [`run_sample`] streamed: `each` gets every sample as soon as it is drawn (so memory does
/// not grow with `n`), and stops the drawing by returning [`std::ops::ControlFlow::Break`].
pub fn each_sample(
    c: &Checkpoint,
    n: usize,
    sampling: &Sampling,
    seed: u64,
    rng_kind: RngKind,
    prompt: &str,
    mut each: impl FnMut(&str) -> std::ops::ControlFlow<()>,
) -> Result<()> {
    if n > limits::MAX_SAMPLES {
        bail!(
            "--num-samples must be at most {}, got {n}",
            limits::MAX_SAMPLES
        );
    }
    let (mut model, tok) = load_model(c)?;
    sampling.validate(tok.vocab_size())?;
    let ids = match tok.encode(prompt) {
        Ok(ids) => ids,
        Err(e) => bail!("prompt: {e} of the model"),
    };
    let block = model.shape().block_size;
    if ids.len() > block {
        bail!(
            "the prompt has {} characters but the model's block size is {block}",
            ids.len()
        );
    }
    let mut rng = Rng::new(rng_kind, seed);
    let mut probs = vec![0.0; tok.vocab_size()];
    let mut out = Vec::with_capacity(block);
    for _ in 0..n {
        sample::generate(
            model.as_mut(),
            tok.bos(),
            &ids,
            sampling,
            &mut rng,
            &mut probs,
            &mut out,
        );
        if each(&tok.decode(&out)).is_break() {
            break;
        }
    }
    Ok(())
}

/// The documents a checkpoint's run trained on: its dataset (`data`, else the path it
/// recorded), checked against its fingerprint, shuffled and split again with its settings.
pub fn training_docs(c: &Checkpoint, data: Option<&Path>) -> Result<HashSet<String>> {
    let settings = Settings::read_from(c)?;
    let raw = RawDocs::read(&checkpoint_source(c, data))?;
    raw.check_against(c)?;
    let mut rng = Rng::new(settings.rng, settings.recipe.seed);
    let d = raw.split(
        &mut rng,
        settings.val_fraction,
        settings.val_max,
        Some(c.tokenizer()?),
    )?;
    Ok(d.train.texts().map(String::from).collect())
}

/// `microgpt eval`: the token-weighted mean loss of a checkpoint over every document of a
/// file, and the numbers of tokens and documents.
pub fn run_eval(c: &Checkpoint, path: &Path) -> Result<(f64, usize, usize)> {
    let (mut model, tok) = load_model(c)?;
    let docs = Docs::read(&Source::File(path.to_path_buf()))?;
    let enc = match EncodedDocs::from_strs(&tok, docs.iter()) {
        Ok(e) => e,
        Err(e) => bail!("{}: {e} of the model", path.display()),
    };
    model.set_threads(cores())?;
    let (sum, n) = train::evaluate(model.as_mut(), &enc);
    Ok((sum / n as f64, n, enc.len()))
}
