//! The playground's API (`microgpt serve`), through HTTP on a free port: a run of micro
//! trained and followed on the event stream, generation with a prefix, the next-character
//! distribution, the checkpoint downloaded and loaded back, one run at a time, stop, a custom
//! shape on the dynamic engine, text sent by the page, and bad requests of every kind, after
//! which the server still answers.

mod serve_common;

use microgpt::checkpoint::Checkpoint;
use microgpt::serve::{CHECKPOINT_LIMIT, JSON_LIMIT, TEXT_LIMIT};
use serde_json::{Value, json};
use serve_common::TestServer;

/// Trains `settings` to its end, following the run on a stream opened before it starts (past
/// the replay of the run before).
fn train(s: &TestServer, settings: Value) -> Vec<(String, Value)> {
    let mut events = s.events();
    let (status, v) = s.post("/api/train", &settings);
    assert_eq!(status, 202, "{v}");
    loop {
        let e = events.next();
        if e.0 == "start" && e.1["run"] == v["run"] {
            let mut run = vec![e];
            run.extend(events.until_done());
            return run;
        }
    }
}

fn of<'a>(events: &'a [(String, Value)], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn trains_micro_and_streams_the_curve_the_speed_and_samples() {
    let s = TestServer::start();
    let steps = 600;
    let ev = train(
        &s,
        json!({ "data": "names", "model": "micro", "steps": steps, "batch_size": 2, "lr": 0.01 }),
    );
    assert_eq!(ev[0].0, "start", "{ev:?}");
    let start = &ev[0].1;
    assert_eq!(start["engine"], "static");
    assert_eq!(start["num_params"], 4192);
    assert_eq!(
        start["val_docs"], 500,
        "validation on at most 500 held-out documents"
    );
    let done = &ev.last().unwrap().1;
    assert_eq!(ev.last().unwrap().0, "done", "{done}");
    assert_eq!(done["reason"], "finished");
    assert_eq!(done["steps"], steps);
    assert!(done["tokens_per_s"].as_f64().unwrap() > 0.0);

    // every step is a point (600 < 400·2), in order, with a finite loss that falls
    let points = of(&ev, "step");
    let steps_seen: Vec<u64> = points.iter().map(|p| p["step"].as_u64().unwrap()).collect();
    assert_eq!(*steps_seen.last().unwrap(), steps as u64);
    assert!(steps_seen.windows(2).all(|w| w[0] < w[1]), "{steps_seen:?}");
    let losses: Vec<f64> = points.iter().map(|p| p["loss"].as_f64().unwrap()).collect();
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0));
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (first, last) = (mean(&losses[..50]), mean(&losses[losses.len() - 50..]));
    println!("train loss: first 50 points {first:.4}, last 50 {last:.4}");
    // ln 27 ≈ 3.30 at the start; micro falls below 2.4 within a few hundred steps
    assert!(
        losses[0] > 3.0 && last < first - 0.2,
        "{} → {first} → {last}",
        losses[0]
    );

    let val = of(&ev, "val");
    assert!(val.len() >= 20, "{} validation points", val.len());
    let v_end = val.last().unwrap()["loss"].as_f64().unwrap();
    assert_eq!(done["val_loss"].as_f64().unwrap(), v_end);
    assert!(v_end < 2.8, "val loss {v_end}");

    let samples = of(&ev, "samples");
    let last_samples = samples.last().expect("samples during the run");
    assert_eq!(last_samples["step"], steps);
    let names: Vec<&str> = last_samples["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 5);
    assert!(
        names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase())),
        "{names:?}"
    );

    // a stream opened after the run replays it: the same events
    let mut late = s.events();
    let replay = late.until_done();
    assert_eq!(
        replay.len(),
        of(&ev, "step").len() + of(&ev, "val").len() + 3
    );
    assert_eq!(replay.last().unwrap(), ev.last().unwrap());

    let (status, info) = s.call("GET", "/api/info", b"");
    assert_eq!(status, 200);
    assert_eq!(info["training"], false);
    assert_eq!(info["model"]["engine"], "static");
    assert_eq!(info["model"]["step"], steps);
}

#[test]
fn generates_with_a_prefix_and_reloads_the_downloaded_checkpoint() {
    let s = TestServer::start();
    train(
        &s,
        json!({ "model": "micro", "steps": 300, "batch_size": 4 }),
    );
    let ask = json!({ "n": 12, "temperature": 0.8, "top_k": 10, "prefix": "ma", "seed": 7 });
    let (status, g) = s.post("/api/generate", &ask);
    assert_eq!(status, 200, "{g}");
    let samples = g["samples"].as_array().unwrap().clone();
    assert_eq!(samples.len(), 12);
    for x in &samples {
        let x = x.as_str().unwrap();
        assert!(x.starts_with("ma") && x.len() <= 16, "{x:?}");
    }
    assert_eq!(
        s.post("/api/generate", &ask).1["samples"],
        json!(samples),
        "same seed, same samples"
    );

    // the next character's distribution: the whole vocabulary, summing to 1; top-k keeps k
    let (status, n) = s.post("/api/next", &json!({ "text": "ma", "temperature": 1.0 }));
    assert_eq!(status, 200, "{n}");
    let probs = n["probs"].as_array().unwrap();
    assert_eq!(probs.len(), 27);
    assert_eq!(probs[26]["end"], true, "BOS, the end, is the last id");
    let total: f64 = probs.iter().map(|p| p["p"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-12, "{total}");
    // micro: one layer of 4 heads, each weighing BOS, m and a
    let attention = n["attention"].as_array().unwrap();
    assert_eq!(attention.len(), 1);
    let heads = attention[0].as_array().unwrap();
    assert_eq!(heads.len(), 4);
    for h in heads {
        let w: Vec<f64> = h
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(w.len(), 3);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
    }
    let (_, k) = s.post("/api/next", &json!({ "text": "ma", "top_k": 3 }));
    let kept = k["probs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["p"].as_f64().unwrap() > 0.0)
        .count();
    assert_eq!(kept, 3);
    let (_, g0) = s.post("/api/next", &json!({ "text": "ma", "temperature": 0 }));
    let ones: Vec<f64> = g0["probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["p"].as_f64().unwrap())
        .filter(|&p| p > 0.0)
        .collect();
    assert_eq!(
        ones,
        [1.0],
        "greedy: all of it on the most likely character"
    );
    let full = "abcdefghijklmnop";
    let (status, f) = s.post("/api/next", &json!({ "text": full }));
    assert_eq!((status, &f["full"]), (200, &json!(true)));

    // the download is the CLI's checkpoint format
    let (status, bytes) = s.get("/api/checkpoint");
    assert_eq!(status, 200);
    let c = Checkpoint::from_bytes(&bytes).expect("a checkpoint");
    assert_eq!(c.model().unwrap(), "micro");
    assert_eq!(c.step().unwrap(), 300);
    assert_eq!(c.get("batch_size").unwrap(), "4");
    assert!(
        c.adam.is_some(),
        "with Adam's moments, as `train --out` writes"
    );

    // loaded back into a fresh server, it samples the same
    let t = TestServer::start();
    assert_eq!(t.post("/api/generate", &ask).0, 409, "no model yet");
    let (status, m) = t.call("POST", "/api/checkpoint", &bytes);
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["engine"], "static");
    assert_eq!(m["step"], 300);
    assert_eq!(t.post("/api/generate", &ask).1["samples"], json!(samples));
    let (_, bytes2) = t.get("/api/checkpoint");
    assert_eq!(bytes2, bytes, "the same file back");
}

#[test]
fn one_run_at_a_time_and_stop_ends_it() {
    let s = TestServer::start();
    let mut events = s.events();
    // 100,000 steps on the dynamic engine: about a minute, far longer than the test
    let long = json!({ "model": "micro", "engine": "dynamic", "steps": 100000 });
    let (status, v) = s.post("/api/train", &long);
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["engine"], "dynamic");
    let (status, second) = s.post("/api/train", &json!({ "model": "micro" }));
    assert_eq!(status, 409, "{second}");
    assert!(
        second["error"]
            .as_str()
            .unwrap()
            .contains("one run at a time"),
        "{second}"
    );
    assert_eq!(
        s.call("POST", "/api/checkpoint", b"x").0,
        409,
        "no checkpoint loaded mid-run"
    );
    let (name, start) = events.next();
    assert_eq!(name, "start");
    assert!(
        start["why"].as_str().unwrap().contains("autograd tape"),
        "{start}"
    );
    events.next(); // the first step is done: the run is under way
    assert_eq!(s.post("/api/stop", &json!({})).0, 200);
    let ev = events.until_done();
    let done = &ev.last().unwrap().1;
    assert_eq!(done["reason"], "stopped", "{done}");
    assert!(done["steps"].as_u64().unwrap() < 100000);
    assert_eq!(s.post("/api/stop", &json!({})).0, 409, "nothing to stop");
    // the stopped run's model is there to sample from, on the static engine (micro is compiled)
    let (status, g) = s.post("/api/generate", &json!({ "n": 3 }));
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["engine"], "static");
    // and a new run may start
    assert_eq!(
        train(&s, json!({ "steps": 5 })).last().unwrap().1["reason"],
        "finished"
    );
}

#[test]
fn the_engines_train_the_same_numbers() {
    let s = TestServer::start();
    let run = |engine: &str| -> Vec<f64> {
        let ev = train(
            &s,
            json!({ "model": "micro", "engine": engine, "steps": 30, "batch_size": 2, "seed": 3 }),
        );
        assert_eq!(ev[0].1["engine"], engine);
        of(&ev, "step")
            .iter()
            .map(|p| p["loss"].as_f64().unwrap())
            .collect()
    };
    let (st, dy) = (run("static"), run("dynamic"));
    assert_eq!(st.len(), 30);
    let worst = st
        .iter()
        .zip(&dy)
        .map(|(a, b)| (a - b).abs() / b)
        .fold(0.0, f64::max);
    println!("largest relative difference of the 30 losses: {worst:e}");
    // the static engine equals the reference to rounding (tests/static_reference.rs)
    assert!(worst < 1e-10, "{worst}");
}

#[test]
fn a_custom_shape_trains_on_the_dynamic_engine_and_its_checkpoint_loads() {
    let s = TestServer::start();
    let custom = json!({ "n_layer": 2, "n_embd": 8, "n_head": 2, "block_size": 8 });
    let ev = train(
        &s,
        json!({ "data": "elements", "model": "custom", "custom": custom, "steps": 40, "batch_size": 2 }),
    );
    let start = &ev[0].1;
    assert_eq!(start["engine"], "dynamic");
    assert_eq!(start["shape"]["n_layer"], 2);
    assert_eq!(start["shape"]["block_size"], 8);
    assert_eq!(start["train_docs"], 106, "118 elements, a tenth held out");
    assert!(
        start["why"].as_str().unwrap().contains("compile-time"),
        "{start}"
    );
    assert_eq!(ev.last().unwrap().1["reason"], "finished");
    let (_, bytes) = s.get("/api/checkpoint");
    let (status, m) = TestServer::start().call("POST", "/api/checkpoint", &bytes);
    assert_eq!(status, 200, "{m}");
    assert_eq!(
        (&m["engine"], &m["preset"]),
        (&json!("dynamic"), &json!("custom"))
    );
    // a custom shape that is micro's says so
    let micro = json!({ "n_layer": 1, "n_embd": 16, "n_head": 4, "block_size": 16 });
    let ev = train(
        &s,
        json!({ "model": "custom", "custom": micro, "steps": 2 }),
    );
    assert!(
        ev[0].1["why"]
            .as_str()
            .unwrap()
            .contains("compiled preset micro")
    );
}

#[test]
fn trains_on_text_sent_by_the_page() {
    let s = TestServer::start();
    assert_eq!(
        s.post("/api/train", &json!({ "data": "upload" })).0,
        400,
        "nothing sent yet"
    );
    let text = "ab\r\nabc\n\n  abd  \nbcd\nébé\n".repeat(3);
    let (status, d) = s.call("POST", "/api/data", text.as_bytes());
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["docs"], 15);
    assert_eq!(d["vocab"], "abcdé");
    let ev = train(&s, json!({ "data": "upload", "steps": 20 }));
    assert_eq!(ev[0].1["data"], "your text");
    assert_eq!(ev[0].1["shape"]["vocab"], 6);
    assert_eq!(ev.last().unwrap().1["reason"], "finished");
    let (status, g) = s.post("/api/generate", &json!({ "prefix": "é", "n": 2 }));
    assert_eq!(status, 200, "{g}");
}

#[test]
fn bad_requests_get_clear_4xx_and_the_server_goes_on() {
    let s = TestServer::start();
    let err = |(status, v): (u16, Value)| (status, v["error"].as_str().unwrap_or("").to_string());
    let cases: Vec<((u16, String), u16, &str)> = vec![
        (
            err(s.call("POST", "/api/train", b"{\"steps\": 10,")),
            400,
            "malformed JSON",
        ),
        (
            err(s.call("POST", "/api/train", b"[1, 2]")),
            400,
            "JSON object",
        ),
        (
            err(s.call("POST", "/api/train", b"{\"data\": \"\xff\xfe\"}")),
            400,
            "malformed JSON",
        ),
        (
            err(s.call("POST", "/api/data", b"abc\n\xc3\x28\n")),
            400,
            "not valid UTF-8",
        ),
        (
            err(s.call("POST", "/api/data", b"\n  \n")),
            400,
            "no documents",
        ),
        (
            err(s.call("POST", "/api/data", &vec![b'a'; TEXT_LIMIT + 1])),
            413,
            "limit",
        ),
        (
            err(s.call("POST", "/api/train", &vec![b' '; JSON_LIMIT + 1])),
            413,
            "limit",
        ),
        (
            err(s.call("POST", "/api/checkpoint", &vec![0; CHECKPOINT_LIMIT + 1])),
            413,
            "limit",
        ),
        (
            err(s.call("POST", "/api/checkpoint", b"not a safetensors file")),
            400,
            "not a microgpt checkpoint",
        ),
        (
            err(s.post("/api/train", &json!({ "model": "huge" }))),
            400,
            "unknown model",
        ),
        (
            err(s.post("/api/train", &json!({ "engine": "gpu" }))),
            400,
            "unknown engine",
        ),
        (
            err(s.post("/api/train", &json!({ "data": "poems" }))),
            400,
            "unknown dataset",
        ),
        (
            err(s.post("/api/train", &json!({ "steps": 0 }))),
            400,
            "`steps` must be",
        ),
        (
            err(s.post("/api/train", &json!({ "steps": "many" }))),
            400,
            "wrong type",
        ),
        (err(s.post("/api/train", &json!({ "lr": -1 }))), 400, "`lr`"),
        (
            err(s.post(
                "/api/train",
                &json!({ "model": "custom", "custom": { "n_embd": 10, "n_head": 4 } }),
            )),
            400,
            "not a multiple",
        ),
        (
            err(s.post(
                "/api/train",
                &json!({ "model": "custom", "custom": { "n_layer": 99 } }),
            )),
            400,
            "`n_layer` must be",
        ),
        (
            err(s.post("/api/generate", &json!({}))),
            409,
            "no model yet",
        ),
        (err(s.get_json("/api/nowhere")), 404, "no endpoint"),
    ];
    for ((status, message), want_status, want) in &cases {
        println!("{status} {message}");
        assert_eq!(status, want_status, "{message}");
        assert!(message.contains(want), "{message:?} should say {want:?}");
    }
    // with a model: bad sampling settings and prefixes
    train(&s, json!({ "steps": 3 }));
    for (body, want) in [
        (json!({ "prefix": "Ma" }), "'M' is not in the vocabulary"),
        (json!({ "prefix": "a".repeat(17) }), "block size is 16"),
        (json!({ "temperature": -1 }), "temperature"),
        (
            json!({ "top_k": 28 }),
            "top-k must be between 1 and the vocab size 27",
        ),
        (json!({ "n": 51 }), "`n` must be"),
    ] {
        let (status, message) = err(s.post("/api/generate", &body));
        println!("{status} {message}");
        assert_eq!(status, 400);
        assert!(message.contains(want), "{message:?} should say {want:?}");
    }
    let (status, info) = s.call("GET", "/api/info", b"");
    assert_eq!(status, 200);
    assert_eq!(info["model"]["step"], 3);
}

#[test]
fn another_sites_page_cannot_post() {
    let s = TestServer::start();
    let with_origin = |origin: &str| {
        let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
        use std::io::{Read, Write};
        let body = "{}";
        write!(
            c,
            "POST /api/train HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            s.addr,
            body.len()
        )
        .unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        r
    };
    let foreign = with_origin("http://example.com");
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    assert!(foreign.contains("another site"), "{foreign}");
    let own = with_origin(&format!("http://{}", s.addr));
    assert!(own.starts_with("HTTP/1.1 202"), "{own}");
}

#[test]
fn a_closed_tab_does_not_hurt_the_server() {
    let s = TestServer::start();
    // streams opened and dropped at once, as a closed tab leaves them
    for _ in 0..3 {
        drop(s.events());
    }
    let ev = train(&s, json!({ "steps": 50 }));
    assert_eq!(ev.last().unwrap().1["reason"], "finished");
    // the dropped streams were let go at the first event they could not take
    let (_, info) = s.call("GET", "/api/info", b"");
    assert_eq!(info["streams"], 1, "only the stream `train` opened");
    // a request cut off in its body, then the page itself
    let mut half = std::net::TcpStream::connect(&s.addr).unwrap();
    use std::io::Write;
    half.write_all(b"POST /api/train HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"st")
        .unwrap();
    drop(half);
    let (status, page) = s.get("/");
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("<canvas id=\"chart\""));
    for asset in ["/page.js", "/page.css"] {
        assert_eq!(s.get(asset).0, 200, "{asset}");
    }
}

#[test]
fn the_command_prints_its_url_and_serves() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_microgpt"))
        .args(["serve", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("microgpt playground: http://")
        .and_then(|a| a.strip_suffix('/'))
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "loopback by default: {addr}"
    );
    let (status, info) = TestServer { addr }.call("GET", "/api/info", b"");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
    assert_eq!(info["presets"][0]["name"], "micro");
}
