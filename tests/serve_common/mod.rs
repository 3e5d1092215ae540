//! What the playground's tests share: a server started in-process on a free port, and a
//! minimal HTTP/1.1 client (one request per connection) and event-stream reader, so that the
//! tests depend on nothing but the standard library.

// Each test binary compiles its own copy of this module and uses only some of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// A running server: its `host:port`.
pub struct TestServer {
    pub addr: String,
}

impl TestServer {
    /// `microgpt serve` on 127.0.0.1, any free port, serving on a thread of this process.
    pub fn start() -> TestServer {
        let server = microgpt::serve::Server::bind("127.0.0.1", 0).expect("bind a free port");
        let addr = server
            .url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        std::thread::spawn(move || server.run());
        TestServer { addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// One request; the status and the body.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        // the server may answer (413) and close before it has read a large body
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the response");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response head");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("a status line in {head:?}"));
        (status, raw[split + 4..].to_vec())
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        self.request("GET", path, b"")
    }

    /// A call of the JSON API: the status and the answer as JSON.
    pub fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let (status, body) = self.request(method, path, body);
        let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{method} {path} answered {status} with no JSON ({e}): {:?}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, v)
    }

    pub fn get_json(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, b"")
    }

    pub fn post(&self, path: &str, v: &Value) -> (u16, Value) {
        self.call("POST", path, v.to_string().as_bytes())
    }

    /// Opens `GET /api/events`, past the response head.
    pub fn events(&self) -> Events {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write!(
            s,
            "GET /api/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "status line {line:?}");
        let mut content_type = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if line.to_ascii_lowercase().starts_with("content-type:") {
                content_type = line.clone();
            }
        }
        assert!(
            content_type.contains("text/event-stream"),
            "{content_type:?}"
        );
        Events { r }
    }
}

/// A server-sent event stream.
pub struct Events {
    r: BufReader<TcpStream>,
}

impl Events {
    /// The next event: its name and its data as JSON (comments and `retry:` skipped).
    pub fn next(&mut self) -> (String, Value) {
        let (mut event, mut data) = (String::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.r.read_line(&mut line).expect("read the event stream");
            assert!(n > 0, "the event stream ended");
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if !event.is_empty() {
                    let v = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("event {event}: data {data:?}: {e}"));
                    return (event, v);
                }
            } else if let Some(e) = l.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = l.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
    }

    /// Every event up to and including the next `done` (or `failed`).
    pub fn until_done(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        loop {
            let e = self.next();
            let end = e.0 == "done" || e.0 == "failed";
            out.push(e);
            if end {
                return out;
            }
        }
    }
}
