//! The JSON API. Every answer is JSON (`{"error": "…"}` with a 4xx status when the request is
//! wrong), except the checkpoint download and the event stream.
//!
//! | endpoint | body | answer |
//! | --- | --- | --- |
//! | `GET /api/info` | | presets, datasets, limits, the uploaded text, the current model, whether a run is on |
//! | `POST /api/data` | UTF-8 text, one document per line (≤ [`TEXT_LIMIT`]) | its documents and vocabulary; it becomes dataset `upload` |
//! | `POST /api/train` | `{data, model, engine, custom, steps, batch_size, lr, seed}` | 202 and the run's engine and why; 409 if a run is on |
//! | `POST /api/stop` | | 200, or 409 if no run is on |
//! | `GET /api/events` | | server-sent events: `start`, `step`, `val`, `samples`, `done`, `failed` |
//! | `POST /api/generate` | `{n, temperature, top_k, prefix, seed}` | `{samples}` |
//! | `POST /api/next` | `{text, temperature, top_k}` | the next character's distribution after `text`, and each head's attention weights |
//! | `GET /api/checkpoint` | | the current model as `.safetensors` (the CLI's format) |
//! | `POST /api/checkpoint` | a `.safetensors` file (≤ [`CHECKPOINT_LIMIT`]) | the loaded model |

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::checkpoint::Checkpoint;
use crate::data::{self, Source, Tokenizer};
use crate::rng::{Rng, RngKind};
use crate::sample::{self, Sampling};
use crate::session::{Engine, RawDocs};
use crate::shape::{self, Shape};

use super::attention;
use super::job::{self, ModelChoice, Plan};
use super::{
    CHECKPOINT_LIMIT, Current, ELEMENTS, JSON_LIMIT, Job, NAMES, Reply, State, TEXT_LIMIT, Upload,
    lock,
};

/// Most distinct characters a dataset may have: the static engine is compiled for
/// vocabularies of up to 256 tokens, BOS included.
pub const MAX_CHARS: usize = 255;
/// Bounds of a run's settings.
pub const MAX_STEPS: usize = 100_000;
pub const MAX_BATCH: usize = 256;
/// Bounds of a custom shape (the dynamic engine is slow: a larger one would not train live).
pub const MAX_LAYERS: usize = 6;
pub const MAX_EMBD: usize = 64;
pub const MAX_BLOCK: usize = 32;
/// Most samples per generate call.
pub const MAX_SAMPLES: usize = 50;

/// The shipped datasets: id, name as shown, text, where it comes from.
fn shipped() -> [(&'static str, &'static str, &'static str, &'static str); 2] {
    [
        (
            "names",
            "names",
            NAMES,
            "32,033 first names (makemore's names.txt)",
        ),
        (
            "elements",
            "chemical elements",
            ELEMENTS,
            "the 118 chemical elements' names (IUPAC)",
        ),
    ]
}

/// `GET /api/info`.
pub(crate) fn info(state: &State) -> Reply {
    let presets: Vec<Value> = shape::PRESETS
        .iter()
        .map(|(name, s)| {
            let mut v = super::shape_json(s);
            v["name"] = json!(name);
            v["num_params_names"] = json!(Shape { vocab: 27, ..*s }.num_params());
            v
        })
        .collect();
    let datasets: Vec<Value> = shipped()
        .iter()
        .map(|(id, name, text, about)| {
            let docs = text.lines().filter(|l| !l.trim().is_empty()).count();
            json!({ "id": id, "name": name, "docs": docs, "about": about })
        })
        .collect();
    let upload = lock(&state.upload)
        .as_ref()
        .map(|u| json!({ "docs": u.docs.len(), "bytes": u.bytes }));
    Reply::json(
        200,
        &json!({
            "presets": presets,
            "datasets": datasets,
            "upload": upload,
            "model": state.current().map(|c| c.describe()),
            "training": state.training(),
            "streams": state.hub.streams(),
            "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "limits": {
                "json_bytes": JSON_LIMIT,
                "text_bytes": TEXT_LIMIT,
                "checkpoint_bytes": CHECKPOINT_LIMIT,
                "chars": MAX_CHARS,
                "steps": MAX_STEPS,
                "batch_size": MAX_BATCH,
                "n_layer": MAX_LAYERS,
                "n_embd": MAX_EMBD,
                "block_size": MAX_BLOCK,
                "samples": MAX_SAMPLES,
                "val_docs": job::VAL_DOCS,
            },
        }),
    )
}

/// `POST /api/data`: the text becomes the `upload` dataset.
pub(crate) fn upload_text(state: &State, body: &[u8]) -> Reply {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            return Reply::error(
                400,
                format!(
                    "the text is not valid UTF-8 (invalid byte at offset {}); save it as UTF-8 and try again",
                    e.valid_up_to()
                ),
            );
        }
    };
    let docs = data::parse_docs(text);
    if docs.is_empty() {
        return Reply::error(400, "the text has no documents: every line is empty");
    }
    let tok = Tokenizer::from_docs(&docs);
    if tok.chars().len() > MAX_CHARS {
        return Reply::error(
            400,
            format!(
                "the text has {} distinct characters; the limit is {MAX_CHARS} (the static engine is compiled for vocabularies of up to 256 tokens)",
                tok.chars().len()
            ),
        );
    }
    let longest = docs.iter().map(|d| d.chars().count()).max().unwrap_or(0);
    let summary = json!({
        "docs": docs.len(),
        "bytes": body.len(),
        "vocab": tok.chars().iter().collect::<String>(),
        "longest": longest,
    });
    *lock(&state.upload) = Some(Arc::new(Upload {
        docs,
        bytes: body.len(),
    }));
    Reply::json(200, &summary)
}

/// A field of a JSON object, or `default` when absent or null.
fn field<'a, T>(
    v: &'a Value,
    key: &str,
    default: T,
    read: impl Fn(&'a Value) -> Option<T>,
) -> Result<T, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => read(x).ok_or_else(|| format!("`{key}` has the wrong type: {x}")),
    }
}

fn count(v: &Value, key: &str, default: usize, min: usize, max: usize) -> Result<usize, String> {
    let n = field(v, key, default as u64, Value::as_u64)?;
    if n < min as u64 || n > max as u64 {
        return Err(format!(
            "`{key}` must be a whole number from {min} to {max}, got {n}"
        ));
    }
    Ok(n as usize)
}

fn number(v: &Value, key: &str, default: f64) -> Result<f64, String> {
    field(v, key, default, Value::as_f64)
}

fn text<'a>(v: &'a Value, key: &str, default: &'a str) -> Result<&'a str, String> {
    field(v, key, default, Value::as_str)
}

/// `POST /api/train`.
pub(crate) fn train(state: &Arc<State>, v: &Value) -> Reply {
    let mut plan = match plan(state, v) {
        Ok(p) => p,
        Err(e) => return Reply::error(400, e),
    };
    let mut job = lock(&state.job);
    if job.is_some() {
        return Reply::error(
            409,
            "a training run is already going on; stop it first (one run at a time)",
        );
    }
    plan.run = state.runs.fetch_add(1, Ordering::Relaxed) + 1;
    let answer = json!({ "run": plan.run, "engine": plan.engine().name(), "why": plan.why, "preset": plan.settings.preset });
    state.hub.reset();
    let stop = Arc::new(AtomicBool::new(false));
    let (st, sp) = (state.clone(), stop.clone());
    if let Err(e) = std::thread::Builder::new()
        .name("serve-train".into())
        .spawn(move || job::run(plan, st, sp))
    {
        return Reply::error(503, format!("cannot start the training thread: {e}"));
    }
    *job = Some(Job { stop });
    Reply::json(202, &answer)
}

fn plan(state: &State, v: &Value) -> Result<Plan, String> {
    let data_id = text(v, "data", "names")?;
    let (data_name, docs) = match shipped().iter().find(|d| d.0 == data_id) {
        Some((_, name, t, _)) => (name.to_string(), data::parse_docs(t)),
        None if data_id == "upload" => match lock(&state.upload).as_ref() {
            Some(u) => ("your text".to_string(), u.docs.clone()),
            None => return Err("no text has been sent yet (POST /api/data)".into()),
        },
        None => {
            return Err(format!(
                "unknown dataset {data_id:?}: names, elements or upload"
            ));
        }
    };
    let model = text(v, "model", "micro")?;
    let steps = count(v, "steps", 1000, 1, MAX_STEPS)?;
    let batch_size = count(v, "batch_size", 1, 1, MAX_BATCH)?;
    let lr = number(v, "lr", 0.01)?;
    if !(lr > 0.0 && lr <= 1.0) {
        return Err(format!("`lr` must be in (0, 1], got {lr}"));
    }
    let seed = field(v, "seed", 42, Value::as_u64)?;
    let (choice, why) = if model == "custom" {
        let c = v.get("custom").cloned().unwrap_or(json!({}));
        let n_layer = count(&c, "n_layer", 1, 1, MAX_LAYERS)?;
        let n_embd = count(&c, "n_embd", 16, 1, MAX_EMBD)?;
        let n_head = count(&c, "n_head", 4, 1, n_embd)?;
        let block_size = count(&c, "block_size", 16, 1, MAX_BLOCK)?;
        if n_embd % n_head != 0 {
            return Err(format!(
                "n_embd {n_embd} is not a multiple of the number of heads {n_head}"
            ));
        }
        let shape = Shape {
            vocab: 0,
            block_size,
            n_embd,
            n_head,
            mlp: 4 * n_embd,
            n_layer,
        };
        let mut why = "The static engine's shapes are compile-time constants (const generics), so a custom shape runs on the dynamic engine, the scalar autograd tape.".to_string();
        if let Some(p) = shape.preset() {
            why += &format!(
                " This shape is the compiled preset {p}: pick it to train on the static engine."
            );
        }
        (ModelChoice::Custom(shape), why)
    } else if shape::preset_shape(model, 0).is_some() {
        let engine = match text(v, "engine", "static")? {
            "static" => Engine::Static,
            "dynamic" => Engine::Dynamic,
            e => return Err(format!("unknown engine {e:?}: static or dynamic")),
        };
        let why = match engine {
            Engine::Static | Engine::StaticF32 => format!(
                "{model} is compiled into the binary (its shape is a const generic), so the static engine runs it: fixed-size arrays, hand-written backward."
            ),
            Engine::Dynamic => format!(
                "You picked the dynamic engine: the scalar autograd tape, microgpt.py's algorithm node by node, on {model}'s shape."
            ),
        };
        (
            ModelChoice::Preset {
                name: model.to_string(),
                engine,
            },
            why,
        )
    } else {
        return Err(format!("unknown model {model:?}: micro, small or custom"));
    };
    let preset = match &choice {
        ModelChoice::Preset { name, .. } => name.clone(),
        ModelChoice::Custom(_) => "custom".to_string(),
    };
    let settings = job::settings(&preset, steps, batch_size, lr, seed, docs.len());
    let raw = RawDocs::from_text(
        Source::File(format!("{data_name} (playground)").into()),
        docs.join("\n"),
    );
    let mut rng = Rng::new(RngKind::Pcg, seed);
    let data = raw
        .split(&mut rng, settings.val_fraction, settings.val_max, None)
        .map_err(|e| e.0)?;
    let fingerprint = data.fingerprint.get();
    Ok(Plan {
        run: 0,
        data_name,
        data,
        fingerprint,
        rng,
        model: choice,
        settings,
        why,
    })
}

/// `POST /api/stop`.
pub(crate) fn stop(state: &State) -> Reply {
    match lock(&state.job).as_ref() {
        Some(j) => {
            j.stop.store(true, Ordering::Relaxed);
            Reply::json(200, &json!({ "stopping": true }))
        }
        None => Reply::error(409, "no training run is going on"),
    }
}

fn current(state: &State) -> Result<Arc<Current>, Reply> {
    state
        .current()
        .ok_or_else(|| Reply::error(409, "no model yet: train one or load a checkpoint"))
}

fn sampling(v: &Value, vocab: usize, default_t: f64) -> Result<Sampling, String> {
    let temperature = number(v, "temperature", default_t)?;
    let top_k = match v.get("top_k") {
        None | Some(Value::Null) => None,
        Some(k) => match k.as_u64() {
            Some(0) => None,
            Some(k) => Some(k as usize),
            None => return Err(format!("`top_k` has the wrong type: {k}")),
        },
    };
    let s = Sampling { temperature, top_k };
    s.validate(vocab)
        .map_err(|e| e.0.replace("--top-k", "top-k"))?;
    if temperature > 10.0 {
        return Err(format!("temperature must be at most 10, got {temperature}"));
    }
    Ok(s)
}

/// The prefix as tokens, checked against the vocabulary and the block size.
fn prefix(c: &Current, s: &str) -> Result<Vec<usize>, String> {
    let ids = c
        .tok
        .encode(s)
        .map_err(|e| format!("prefix: {e} of this model"))?;
    let block = c.checkpoint.shape.block_size;
    if ids.len() > block {
        return Err(format!(
            "the prefix has {} characters but the model's block size is {block}",
            ids.len()
        ));
    }
    Ok(ids)
}

/// `POST /api/generate`.
pub(crate) fn generate(state: &State, v: &Value) -> Reply {
    let c = match current(state) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let go = || -> Result<Value, String> {
        let s = sampling(v, c.tok.vocab_size(), 0.5)?;
        let n = count(v, "n", 10, 1, MAX_SAMPLES)?;
        let ids = prefix(&c, text(v, "prefix", "")?)?;
        let seed = field(v, "seed", 42, Value::as_u64)?;
        let mut model = c.model().map_err(|e| e.0)?;
        let mut rng = Rng::pcg(seed);
        let mut probs = vec![0.0; c.tok.vocab_size()];
        let mut out = Vec::new();
        let samples: Vec<String> = (0..n)
            .map(|_| {
                sample::generate(
                    model.as_mut(),
                    c.tok.bos(),
                    &ids,
                    &s,
                    &mut rng,
                    &mut probs,
                    &mut out,
                );
                c.tok.decode(&out)
            })
            .collect();
        Ok(json!({ "samples": samples, "engine": c.engine.name(), "source": c.source }))
    };
    match go() {
        Ok(v) => Reply::json(200, &v),
        Err(e) => Reply::error(400, e),
    }
}

/// `POST /api/next`: after BOS and `text`, the distribution the sampler would draw the next
/// character from (temperature and top-k applied; temperature 0 puts all of it on the most
/// likely one). `end` is BOS, which ends the document.
pub(crate) fn next(state: &State, v: &Value) -> Reply {
    let c = match current(state) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let go = || -> Result<Value, String> {
        let vocab = c.tok.vocab_size();
        let s = sampling(v, vocab, 1.0)?;
        let ids = prefix(&c, text(v, "text", "")?)?;
        let block = c.checkpoint.shape.block_size;
        if ids.len() == block {
            return Ok(json!({ "full": true, "probs": [], "block_size": block }));
        }
        let mut model = c.model().map_err(|e| e.0)?;
        let mut token = c.tok.bos();
        let mut logits = Vec::new();
        for pos in 0..=ids.len() {
            logits = model.forward_token(token, pos).to_vec();
            if pos < ids.len() {
                token = ids[pos];
            }
        }
        // each head's attention at the last position, over BOS and the text
        let tokens: Vec<usize> = std::iter::once(c.tok.bos())
            .chain(ids.iter().copied())
            .collect();
        let seen = attention::inspect(&c.checkpoint.shape, &c.checkpoint.params, &tokens);
        let mut probs = vec![0.0; vocab];
        if s.temperature == 0.0 {
            probs[sample::argmax(&logits)] = 1.0;
        } else {
            // the sampler fills `probs` with the distribution it draws from; the draw itself
            // is thrown away
            s.next_token(&logits, &mut probs, &mut Rng::pcg(0));
        }
        let entries: Vec<Value> = probs
            .iter()
            .enumerate()
            .map(|(i, &p)| match c.tok.chars().get(i) {
                Some(ch) => json!({ "char": ch.to_string(), "p": p }),
                None => json!({ "char": null, "end": true, "p": p }),
            })
            .collect();
        Ok(json!({
            "full": false,
            "probs": entries,
            "position": ids.len() + 1,
            "block_size": block,
            "attention": seen.attention,
        }))
    };
    match go() {
        Ok(v) => Reply::json(200, &v),
        Err(e) => Reply::error(400, e),
    }
}

/// `GET /api/checkpoint`.
pub(crate) fn download(state: &State) -> Reply {
    let c = match current(state) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let step = c.checkpoint.step().unwrap_or(0);
    Reply {
        status: 200,
        content_type: "application/octet-stream",
        body: c.bytes.clone(),
        download: Some(format!(
            "microgpt-{}-step{step}.safetensors",
            c.checkpoint.model().unwrap_or("model")
        )),
    }
}

/// `POST /api/checkpoint`.
pub(crate) fn upload_checkpoint(state: &State, body: &[u8]) -> Reply {
    if state.training() {
        return Reply::error(
            409,
            "a training run is going on; stop it before loading a checkpoint",
        );
    }
    let loaded = Checkpoint::from_bytes(body)
        .and_then(|c| {
            let step = c.step().unwrap_or(0);
            Current::new(c, &format!("uploaded checkpoint (step {step})"))
        })
        .map_err(|e| format!("not a microgpt checkpoint: {e}"));
    match loaded {
        Ok(c) => {
            let d = c.describe();
            state.set_current(c);
            Reply::json(200, &d)
        }
        Err(e) => Reply::error(400, e),
    }
}
