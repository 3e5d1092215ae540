//! The event stream of the current training run, as server-sent events: every event is kept
//! (so a page opened or reloaded mid-run redraws the whole curve) and pushed to each open
//! stream. A stream whose tab has closed is dropped at the next event it fails to take.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Events of one run, and the streams that follow it.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    history: Vec<Arc<str>>,
    /// Where the latest `samples` event sits in `history`: each new one replaces it, so that
    /// a long run's history grows with its curve only.
    samples_at: Option<usize>,
    streams: Vec<Sender<Arc<str>>>,
}

impl Hub {
    /// Forgets the previous run's events (the streams stay open).
    pub fn reset(&self) {
        let mut h = self.lock();
        h.history.clear();
        h.samples_at = None;
    }

    /// Sends `event` with `data` (one line of JSON) to every stream and keeps it for later ones.
    pub fn publish(&self, event: &str, data: &Value) {
        let text: Arc<str> = format!("event: {event}\ndata: {data}\n\n").into();
        let mut h = self.lock();
        match (event, h.samples_at) {
            ("samples", Some(i)) => h.history[i] = text.clone(),
            ("samples", None) => {
                h.samples_at = Some(h.history.len());
                h.history.push(text.clone());
            }
            _ => h.history.push(text.clone()),
        }
        h.streams.retain(|s| s.send(text.clone()).is_ok());
    }

    /// A new stream: the events so far, and a receiver of the ones to come (taken under one
    /// lock, so none is missed or seen twice).
    pub fn subscribe(&self) -> (Vec<Arc<str>>, Receiver<Arc<str>>) {
        let (tx, rx) = mpsc::channel();
        let mut h = self.lock();
        h.streams.push(tx);
        (h.history.clone(), rx)
    }

    /// The number of open streams (as of the last event sent).
    pub fn streams(&self) -> usize {
        self.lock().streams.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
