//! `microgpt serve`: a playground in the browser. One page (HTML, CSS and JS compiled into the
//! binary: no CDN, works offline) and a small JSON API over HTTP on loopback: pick a dataset or
//! send your own text, pick a compiled preset (static engine) or any shape (dynamic engine),
//! train it live (server-sent events carry the curves, the speed and samples), generate with a
//! temperature, top-k and prefix, step through a sample one character at a time, download the
//! checkpoint or load one.
//!
//! Each request runs on its own thread; training runs on one more, one run at a time. The
//! endpoints are listed in [`api`] and in docs/serve.md.

pub mod api;
pub mod attention;
mod hub;
mod job;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response};

use crate::bail;
use crate::checkpoint::Checkpoint;
use crate::data::Tokenizer;
use crate::error::Result;
use crate::model::Model;
use crate::reference::Reference;
use crate::session::{self, Engine};
use crate::shape::{self, Shape};

use hub::Hub;

/// The shipped names (32,033 documents): the binary's default dataset.
pub use crate::data::NAMES;
/// The 118 chemical elements' names (see data/README.md), compiled in.
pub const ELEMENTS: &str = include_str!("../../data/elements.txt");

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// Largest request body of a JSON call.
pub const JSON_LIMIT: usize = 64 * 1024;
/// Largest text upload (names.txt is 228 kB).
pub const TEXT_LIMIT: usize = 1024 * 1024;
/// Largest checkpoint upload (`small` with its Adam moments is 4.8 MB).
pub const CHECKPOINT_LIMIT: usize = 16 * 1024 * 1024;
/// An idle event stream sends a comment this often, so that a closed tab is noticed.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// The server: bound, not yet serving.
pub struct Server {
    http: tiny_http::Server,
    url: String,
    state: Arc<State>,
}

impl Server {
    /// Binds `host:port` (port 0: a free one, see [`Server::url`]).
    pub fn bind(host: &str, port: u16) -> Result<Server> {
        let http = match tiny_http::Server::http((host, port)) {
            Ok(s) => s,
            Err(e) => bail!("cannot listen on {host}:{port}: {e}"),
        };
        let url = match http.server_addr().to_ip() {
            Some(a) if a.is_ipv6() => format!("http://[{}]:{}/", a.ip(), a.port()),
            Some(a) => format!("http://{}:{}/", a.ip(), a.port()),
            None => bail!("the server is not listening on an IP address"),
        };
        Ok(Server {
            http,
            url,
            state: Arc::new(State::default()),
        })
    }

    /// The address the page is at, with the port actually bound.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves until the process ends, each request on a thread of its own.
    pub fn run(self) {
        for request in self.http.incoming_requests() {
            let state = self.state.clone();
            // a failed spawn drops the request, which answers 500
            let _ = std::thread::Builder::new()
                .name("serve-request".into())
                .spawn(move || route(&state, request));
        }
    }
}

/// What the server holds between requests.
#[derive(Default)]
pub(crate) struct State {
    hub: Hub,
    job: Mutex<Option<Job>>,
    current: Mutex<Option<Arc<Current>>>,
    upload: Mutex<Option<Arc<Upload>>>,
    /// Runs started so far.
    runs: AtomicU64,
}

/// The run going on: its thread clears it when it ends.
struct Job {
    stop: Arc<AtomicBool>,
}

/// The model that generation uses: the latest of a run's checkpoints, or an uploaded one.
pub(crate) struct Current {
    checkpoint: Checkpoint,
    tok: Tokenizer,
    /// The static engine when the shape is a compiled preset's, else the dynamic one.
    engine: Engine,
    source: String,
    /// The checkpoint file's bytes, made once.
    bytes: Vec<u8>,
}

/// Text sent by the page, split into documents.
pub(crate) struct Upload {
    docs: Vec<String>,
    bytes: usize,
}

impl Current {
    fn new(checkpoint: Checkpoint, source: &str) -> Result<Current> {
        let tok = checkpoint.tokenizer()?;
        let c = &checkpoint;
        let compiled = c
            .model()
            .ok()
            .and_then(|p| shape::preset_shape(p, c.shape.vocab))
            .is_some_and(|s| s == c.shape);
        let engine = if compiled && session::load_model(c).is_ok() {
            Engine::Static
        } else {
            Reference::from_params(c.shape, &c.params)?;
            Engine::Dynamic
        };
        let bytes = checkpoint.to_bytes()?;
        Ok(Current {
            checkpoint,
            tok,
            engine,
            source: source.to_string(),
            bytes,
        })
    }

    /// A fresh model with these weights (each request builds its own: the engines keep a KV
    /// cache, and the static one is not shared between threads).
    fn model(&self) -> Result<Box<dyn Model>> {
        let c = &self.checkpoint;
        Ok(match self.engine {
            Engine::Static | Engine::StaticF32 => session::load_model(c)?.0,
            Engine::Dynamic => Box::new(Reference::from_params(c.shape, &c.params)?),
        })
    }

    fn describe(&self) -> Value {
        let c = &self.checkpoint;
        json!({
            "source": self.source,
            "preset": c.model().unwrap_or("?"),
            "engine": self.engine.name(),
            "shape": shape_json(&c.shape),
            "num_params": c.shape.num_params(),
            "step": c.step().ok(),
            "vocab": self.tok.chars().iter().collect::<String>(),
        })
    }
}

impl State {
    fn set_current(&self, c: Current) {
        *lock(&self.current) = Some(Arc::new(c));
    }

    fn current(&self) -> Option<Arc<Current>> {
        lock(&self.current).clone()
    }

    fn training(&self) -> bool {
        lock(&self.job).is_some()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn shape_json(s: &Shape) -> Value {
    json!({
        "vocab": s.vocab,
        "block_size": s.block_size,
        "n_embd": s.n_embd,
        "n_head": s.n_head,
        "mlp": s.mlp,
        "n_layer": s.n_layer,
    })
}

/// An answer to a request.
pub(crate) struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// Sent as an attachment with this file name.
    download: Option<String>,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
            download: None,
        }
    }

    /// `{"error": message}`: the page shows the message as it is.
    fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({ "error": message.into() }))
    }

    fn asset(content_type: &'static str, text: &str) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: text.as_bytes().to_vec(),
            download: None,
        }
    }
}

/// The value of a request header.
fn header_value(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
}

/// A POST sent by a page of another site (its browser says so in `Origin`): refused, so that a
/// web page cannot start runs or replace the model of a playground it does not belong to.
fn foreign_origin(request: &Request) -> bool {
    match (
        header_value(request, "Origin"),
        header_value(request, "Host"),
    ) {
        (Some(origin), Some(host)) => origin != format!("http://{host}"),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn route(state: &Arc<State>, mut request: Request) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let reply = match (request.method(), path.as_str()) {
        (Method::Post, _) if foreign_origin(&request) => Reply::error(
            403,
            "this request comes from another site's page (its Origin is not this server)",
        ),
        (Method::Get, "/") => Reply::asset("text/html; charset=utf-8", PAGE),
        (Method::Get, "/page.js") => Reply::asset("text/javascript; charset=utf-8", SCRIPT),
        (Method::Get, "/page.css") => Reply::asset("text/css; charset=utf-8", STYLE),
        (Method::Get, "/api/events") => return stream_events(state, request),
        (Method::Get, "/api/info") => api::info(state),
        (Method::Get, "/api/checkpoint") => api::download(state),
        (Method::Post, p) => {
            let limit = match p {
                "/api/data" => TEXT_LIMIT,
                "/api/checkpoint" => CHECKPOINT_LIMIT,
                _ => JSON_LIMIT,
            };
            match read_body(&mut request, limit) {
                Err(r) => r,
                Ok(body) => match p {
                    "/api/data" => api::upload_text(state, &body),
                    "/api/checkpoint" => api::upload_checkpoint(state, &body),
                    _ => match parse_json(&body) {
                        Err(r) => r,
                        Ok(v) => match p {
                            "/api/train" => api::train(state, &v),
                            "/api/stop" => api::stop(state),
                            "/api/generate" => api::generate(state, &v),
                            "/api/next" => api::next(state, &v),
                            _ => Reply::error(404, format!("no endpoint POST {p}")),
                        },
                    },
                },
            }
        }
        (m, p) => Reply::error(404, format!("no endpoint {m} {p}")),
    };
    respond(request, reply);
}

fn respond(request: Request, r: Reply) {
    let mut response = Response::from_data(r.body)
        .with_status_code(r.status)
        .with_header(header("Content-Type", r.content_type))
        .with_header(header("Cache-Control", "no-store"))
        // tiny_http sends bodies above 32 KiB chunked by default; a length is simpler for
        // every client
        .with_chunked_threshold(usize::MAX);
    if let Some(name) = r.download {
        let value = format!("attachment; filename=\"{name}\"");
        response = response.with_header(header("Content-Disposition", &value));
    }
    // the client may have gone; nothing to do then
    let _ = request.respond(response);
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid ASCII header")
}

/// The request's body, at most `limit` bytes (413 beyond).
fn read_body(request: &mut Request, limit: usize) -> std::result::Result<Vec<u8>, Reply> {
    let too_large = |n: &str| {
        Reply::error(
            413,
            format!("the request body is {n} bytes; the limit here is {limit} bytes"),
        )
    };
    if let Some(n) = request.body_length()
        && n > limit
    {
        return Err(too_large(&n.to_string()));
    }
    let mut body = Vec::new();
    match request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
    {
        Ok(_) if body.len() > limit => Err(too_large("more than")),
        Ok(_) => Ok(body),
        Err(e) => Err(Reply::error(
            400,
            format!("cannot read the request body: {e}"),
        )),
    }
}

fn parse_json(body: &[u8]) -> std::result::Result<Value, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(Reply::error(400, "the request body must be a JSON object")),
        Err(e) => Err(Reply::error(400, format!("malformed JSON: {e}"))),
    }
}

/// `GET /api/events`: the current run's events so far, then each new one as it comes, until
/// the client goes away.
fn stream_events(state: &Arc<State>, request: Request) {
    let (replay, events) = state.hub.subscribe();
    let mut w = request.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nretry: 1000\n\n";
    let mut ok = w.write_all(head.as_bytes()).is_ok();
    for e in &replay {
        ok = ok && w.write_all(e.as_bytes()).is_ok();
    }
    ok = ok && w.flush().is_ok();
    while ok {
        let sent = match events.recv_timeout(KEEPALIVE) {
            Ok(e) => w.write_all(e.as_bytes()),
            Err(RecvTimeoutError::Timeout) => w.write_all(b": keepalive\n\n"),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        ok = sent.is_ok() && w.flush().is_ok();
    }
}
