// microgpt playground: the page's script. No framework, no build step; it talks to the JSON
// API of `microgpt serve` (see docs/serve.md) and follows a run through server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;          // GET /api/info
let run = null;           // the run the events describe: {start, train: [[step, loss]], val: [...]}
const runs = new Map();   // run number -> row of the runs table
let compare = null;       // {settings, first: run number} while "Compare engines" goes on
let tokIds = [];          // token-by-token view: the characters chosen so far (strings)
let tokPrefixLen = 0;

// ---- small helpers ----------------------------------------------------------------------
function msg(id, text, kind) {
  const el = $(id);
  el.textContent = text || "";
  el.className = "msg" + (kind ? " " + kind : "");
}

// Every call answers JSON; a 4xx/5xx carries {"error": "..."}, shown as it is.
async function api(path, body, raw) {
  const opts = body === undefined ? {} : {
    method: "POST",
    body: raw ? body : JSON.stringify(body),
    headers: { "Content-Type": raw ? "application/octet-stream" : "application/json" },
  };
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new Error("the server does not answer (is `microgpt serve` still running?)");
  }
  let data;
  try {
    data = await res.json();
  } catch (e) {
    throw new Error(`the server answered ${res.status} without JSON`);
  }
  if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
  return data;
}

const fmt = (x, d = 4) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
function fmtSpeed(x) {
  if (!isFinite(x)) return "–";
  return x >= 1e6 ? (x / 1e6).toFixed(2) + " M" : x >= 1e3 ? (x / 1e3).toFixed(1) + " k" : x.toFixed(0);
}
function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = "status" + (kind ? " " + kind : "");
}

// ---- info, data and model panels --------------------------------------------------------
async function loadInfo() {
  info = await api("/api/info");
  const box = $("datasets");
  if (!box.children.length) {
    for (const d of info.datasets) {
      const l = document.createElement("label");
      l.className = "choice";
      l.title = d.about;
      l.innerHTML = `<input type="radio" name="data" value="${d.id}"> ${d.name} <span class="muted">(${d.docs.toLocaleString()})</span>`;
      box.appendChild(l);
    }
    box.querySelector("input").checked = true;
    const sel = $("model");
    for (const p of info.presets) {
      const o = document.createElement("option");
      o.value = p.name;
      o.textContent = `${p.name}: ${p.n_layer} layer${p.n_layer > 1 ? "s" : ""}, n_embd ${p.n_embd}, ${p.n_head} heads, block ${p.block_size} (${p.num_params_names.toLocaleString()} params on names)`;
      sel.appendChild(o);
    }
    const o = document.createElement("option");
    o.value = "custom";
    o.textContent = "custom shape (dynamic engine)";
    sel.appendChild(o);
    const L = info.limits;
    $("data-limits").textContent = `Limits: ${(L.text_bytes / 1024).toFixed(0)} KiB of UTF-8 text, at most ${L.chars} distinct characters; documents longer than the block size are cut. Checkpoints up to ${(L.checkpoint_bytes / 1048576).toFixed(0)} MiB. Validation loss on up to ${L.val_docs} held-out documents (a tenth of the data).`;
    for (const [id, max] of [["n_layer", L.n_layer], ["n_embd", L.n_embd], ["block_size", L.block_size], ["steps", L.steps], ["batch_size", L.batch_size], ["n", L.samples]]) {
      $(id).max = max;
    }
  }
  if (info.upload) $("upload-info").textContent = `(${info.upload.docs.toLocaleString()} documents sent)`;
  showModel(info.model);
  setTraining(info.training);
  updateWhy();
}

function showModel(m) {
  $("model-line").textContent = m
    ? `model: ${m.preset}, ${m.num_params.toLocaleString()} params, ${m.source}; generation runs on the ${m.engine} engine`
    : "no model yet: train one or load a checkpoint";
  $("download").classList.toggle("hidden", !m);
}

function setTraining(on) {
  $("train").disabled = on;
  $("compare").disabled = on;
  $("stop").disabled = !on;
  if (on) setStatus("training", "training");
  else if ($("status").textContent === "training" || $("status").textContent.startsWith("connecting")) setStatus("idle");
}

function updateWhy() {
  const m = $("model").value;
  const custom = m === "custom";
  $("custom").classList.toggle("hidden", !custom);
  $("engine").disabled = custom;
  if (custom) $("engine").value = "dynamic";
  $("why").textContent = custom
    ? "Dynamic engine: the static engine's shapes are compile-time constants (const generics: fixed-size arrays, hand-written backward), so only the compiled presets can run on it. A custom shape runs on the scalar autograd tape — microgpt.py's algorithm, node by node."
    : $("engine").value === "static"
      ? `Static engine: ${m} is compiled into the binary, its shape a const generic; fixed-size arrays, hand-written backward, no allocation per step.`
      : `Dynamic engine: the scalar autograd tape (microgpt.py's algorithm, node by node) on ${m}'s shape — the same numbers as the static engine, more slowly. "Compare engines" runs both.`;
}

function dataChoice() {
  const r = document.querySelector('input[name="data"]:checked');
  return r ? r.value : "names";
}

async function sendText(bytes) {
  msg("data-msg", "sending…");
  try {
    const r = await api("/api/data", bytes, true);
    $("data-upload").checked = true;
    $("upload-info").textContent = `(${r.docs.toLocaleString()} documents sent)`;
    msg("data-msg", `${r.docs.toLocaleString()} documents, ${[...r.vocab].length} distinct characters, longest ${r.longest}: "${r.vocab}"`, "ok");
  } catch (e) {
    msg("data-msg", e.message, "err");
  }
}

function settings(engine) {
  const num = (id) => Number($(id).value);
  const s = {
    data: dataChoice(),
    model: $("model").value,
    engine: engine || $("engine").value,
    steps: num("steps"),
    batch_size: num("batch_size"),
    lr: num("lr"),
    seed: num("seed"),
  };
  if (s.model === "custom") {
    s.custom = { n_layer: num("n_layer"), n_embd: num("n_embd"), n_head: num("n_head"), block_size: num("block_size") };
  }
  return s;
}

async function startTraining(s) {
  msg("train-msg", "");
  try {
    const r = await api("/api/train", s);
    setTraining(true);
    return r;
  } catch (e) {
    msg("train-msg", e.message, "err");
    compare = null;
    return null;
  }
}

// ---- the chart: drawn by hand on a canvas -----------------------------------------------
let drawPending = false;
function redraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; drawChart(); });
}

function drawChart() {
  const cv = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth || 640, h = cv.clientHeight || 260;
  if (cv.width !== Math.round(w * dpr)) { cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr); }
  const g = cv.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const train = run ? run.train : [], val = run ? run.val : [];
  cv.dataset.points = String(train.length + val.length);
  const pad = { l: 48, r: 12, t: 10, b: 26 };
  const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#6b7385";
  if (!train.length) {
    g.fillText("the loss curves appear here while a model trains", pad.l + 10, pad.t + ph / 2);
    return;
  }
  const steps = run.start.steps;
  const all = train.concat(val).map((p) => p[1]);
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi - lo < 1e-6) { hi += 0.5; lo -= 0.5; }
  const m = (hi - lo) * 0.06; lo -= m; hi += m;
  const X = (s) => pad.l + (s / steps) * pw;
  const Y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * ph;
  // grid and axes
  g.strokeStyle = "#e8ebf0"; g.lineWidth = 1;
  const ticks = niceTicks(lo, hi, 5);
  g.textAlign = "right"; g.textBaseline = "middle";
  for (const t of ticks) {
    g.beginPath(); g.moveTo(pad.l, Y(t)); g.lineTo(pad.l + pw, Y(t)); g.stroke();
    g.fillText(t.toFixed(2), pad.l - 6, Y(t));
  }
  g.textAlign = "center"; g.textBaseline = "top";
  for (const t of niceTicks(0, steps, 6)) {
    g.beginPath(); g.moveTo(X(t), pad.t); g.lineTo(X(t), pad.t + ph); g.stroke();
    g.fillText(String(t), X(t), pad.t + ph + 6);
  }
  g.strokeStyle = "#9aa3b5";
  g.strokeRect(pad.l, pad.t, pw, ph);
  // the curves
  const line = (pts, color, width) => {
    g.strokeStyle = color; g.lineWidth = width; g.beginPath();
    pts.forEach(([s, v], i) => (i ? g.lineTo(X(s), Y(v)) : g.moveTo(X(s), Y(v))));
    g.stroke();
  };
  // the points as they come (pale) and their exponential moving average (β 0.9)
  line(train, "#a9c1ee", 1);
  let ema = null;
  line(train.map(([s, v]) => [s, (ema = ema === null ? v : 0.9 * ema + 0.1 * v)]), "#2f6fdf", 2);
  if (val.length) {
    line(val, "#e0782b", 2);
    g.fillStyle = "#e0782b";
    for (const [s, v] of val) { g.beginPath(); g.arc(X(s), Y(v), 2.5, 0, 2 * Math.PI); g.fill(); }
  }
}

function niceTicks(lo, hi, n) {
  const span = hi - lo;
  const step0 = Math.pow(10, Math.floor(Math.log10(span / n)));
  const step = [1, 2, 5, 10].map((k) => k * step0).find((s) => span / s <= n) || step0 * 10;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(+t.toFixed(10));
  return out;
}

// ---- events of the current run ----------------------------------------------------------
function connect() {
  const es = new EventSource("/api/events");
  es.onopen = () => { if ($("status").textContent.startsWith("connecting")) setStatus("idle"); };
  es.onerror = () => setStatus("connecting…");
  const on = (name, f) => es.addEventListener(name, (e) => f(JSON.parse(e.data)));
  on("start", (d) => {
    run = { start: d, train: [], val: [] };
    $("st-engine").textContent = `${d.preset} on ${d.data}, ${d.engine} engine, ${d.num_params.toLocaleString()} params, ${d.train_docs.toLocaleString()} train / ${d.val_docs.toLocaleString()} val docs, ${d.threads} thread${d.threads > 1 ? "s" : ""}`;
    $("why").textContent = d.why;
    $("live-samples").innerHTML = "";
    for (const id of ["st-step", "st-loss", "st-val", "st-speed", "st-time"]) $(id).textContent = "–";
    addRun(d);
    redraw();
  });
  on("step", (d) => {
    if (!run) return;
    run.train.push([d.step, d.loss]);
    $("st-step").textContent = `${d.step} / ${run.start.steps}`;
    $("st-loss").textContent = fmt(d.loss);
    $("st-speed").textContent = fmtSpeed(d.tokens_per_s);
    $("st-time").textContent = d.train_time.toFixed(2) + " s";
    redraw();
  });
  on("val", (d) => {
    if (!run) return;
    run.val.push([d.step, d.loss]);
    $("st-val").textContent = fmt(d.loss);
    redraw();
  });
  on("samples", (d) => {
    const ol = $("live-samples");
    ol.innerHTML = "";
    for (const s of d.samples) {
      const li = document.createElement("li");
      li.textContent = s || "(empty)";
      ol.appendChild(li);
    }
    $("samples-step").textContent = `(step ${d.step})`;
  });
  on("done", (d) => {
    finishRun(d);
    setTraining(false);
    setStatus(d.reason === "stopped" ? `stopped at step ${d.steps}` : "finished");
    loadInfo().then(() => { if (!tokIds.length || tokEnded) tokReset(); }).catch(() => {});
    if (compare && compare.first === d.run) {
      const s = compare.settings;
      compare.first = -1;
      startTraining({ ...s, engine: "dynamic" }).then((r) => { if (r) compare.second = r.run; });
    } else if (compare && compare.second === d.run) {
      compare = null;
    }
  });
  // `failed`, not `error`: EventSource fires `error` itself when the connection drops
  on("failed", (d) => {
    setTraining(false);
    setStatus("error", "error");
    msg("train-msg", d.error, "err");
  });
}

function addRun(d) {
  if (runs.has(d.run)) return;
  const tr = document.createElement("tr");
  tr.innerHTML = `<td>${d.run}</td><td></td><td></td><td>${d.engine}</td><td class="steps">…</td><td>${d.batch_size}</td><td class="speed">…</td><td class="val">…</td><td class="ratio"></td>`;
  tr.children[1].textContent = d.data;
  tr.children[2].textContent = d.preset;
  tr.dataset.engine = d.engine;
  tr.dataset.key = JSON.stringify([d.data, d.preset, d.shape, d.steps, d.batch_size, d.lr]);
  $("runs").tBodies[0].prepend(tr);
  runs.set(d.run, tr);
}

function finishRun(d) {
  const tr = runs.get(d.run);
  if (!tr || tr.dataset.done) return;
  tr.dataset.done = "1";
  tr.dataset.speed = d.tokens_per_s;
  tr.querySelector(".steps").textContent = d.steps + (d.reason === "stopped" ? " (stopped)" : "");
  tr.querySelector(".speed").textContent = fmtSpeed(d.tokens_per_s);
  tr.querySelector(".val").textContent = fmt(d.val_loss);
  // the speed-up against the latest finished run of the same setup on the other engine
  for (const other of runs.values()) {
    if (other !== tr && other.dataset.done && other.dataset.key === tr.dataset.key && other.dataset.engine !== tr.dataset.engine) {
      const [st, dy] = tr.dataset.engine === "static" ? [tr, other] : [other, tr];
      tr.querySelector(".ratio").textContent = `static ${(st.dataset.speed / dy.dataset.speed).toFixed(1)}× faster`;
      break;
    }
  }
}

// ---- generate and the token-by-token view -----------------------------------------------
function sampling() {
  const k = Number($("top_k").value);
  return { temperature: Number($("temperature").value), top_k: k > 0 ? k : null };
}

async function generate() {
  msg("gen-msg", "");
  try {
    const r = await api("/api/generate", { ...sampling(), n: Number($("n").value), prefix: $("prefix").value, seed: Number($("gen_seed").value) });
    const ol = $("gen-samples");
    ol.innerHTML = "";
    for (const s of r.samples) {
      const li = document.createElement("li");
      li.textContent = s || "(empty)";
      ol.appendChild(li);
    }
    msg("gen-msg", `${r.samples.length} samples, ${r.engine} engine (${r.source})`, "ok");
    $("gen_seed").value = Number($("gen_seed").value) + 1;
    return r.samples;
  } catch (e) {
    msg("gen-msg", e.message, "err");
    return null;
  }
}

let tokEnded = false;
let tokSeq = 0; // the latest view asked for: an older answer arriving late is dropped
async function tokShow() {
  const seq = ++tokSeq;
  const box = $("tok-text");
  box.innerHTML = "";
  const pre = document.createElement("span");
  pre.className = "prefix";
  pre.textContent = tokIds.slice(0, tokPrefixLen).join("");
  const rest = document.createElement("span");
  rest.textContent = tokIds.slice(tokPrefixLen).join("");
  box.append(pre, rest);
  if (tokEnded) {
    const e = document.createElement("span");
    e.className = "end";
    e.textContent = " ⏎ end";
    box.append(e);
  }
  const bars = $("bars");
  bars.innerHTML = "";
  bars.dataset.count = "0";
  $("attn").innerHTML = "";
  if (tokEnded) { msg("tok-msg", "the model ended the document (BOS)."); return null; }
  let r;
  try {
    r = await api("/api/next", { ...sampling(), text: tokIds.join("") });
    if (seq !== tokSeq) return null;
  } catch (e) {
    if (seq !== tokSeq) return null;
    msg("tok-msg", e.message, e.message.startsWith("no model") ? "" : "err");
    return null;
  }
  if (r.full) { msg("tok-msg", `the block is full (${r.block_size} positions).`); return r; }
  const hidden = r.probs.filter((p) => p.p > 0).length - Math.min(20, r.probs.filter((p) => p.p > 0).length);
  msg("tok-msg", `position ${r.position} of ${r.block_size}: the next character's distribution` + (hidden > 0 ? ` (the 20 most likely; ${hidden} more below)` : ""));
  // the 20 most likely characters (the rest have little chance at any sensible temperature)
  const shown = r.probs.filter((p) => p.p > 0).sort((a, b) => b.p - a.p).slice(0, 20);
  for (const p of shown) {
    const ch = document.createElement("span");
    ch.className = "ch";
    ch.textContent = p.end ? "end" : p.char === " " ? "␠" : p.char;
    const cell = document.createElement("div");
    const bar = document.createElement("div");
    bar.className = "bar" + (p.end ? " end" : "");
    bar.style.width = Math.max(0.3, 100 * p.p / shown[0].p) + "%";
    bar.title = `${p.end ? "end of document" : JSON.stringify(p.char)}: ${(100 * p.p).toFixed(2)}%`;
    bar.dataset.char = p.end ? "" : p.char;
    bar.addEventListener("click", () => tokPick(p));
    cell.appendChild(bar);
    const pc = document.createElement("span");
    pc.className = "pc";
    pc.textContent = (100 * p.p).toFixed(1) + "%";
    bars.append(ch, cell, pc);
  }
  bars.dataset.count = String(shown.length);
  drawAttention(r.attention);
  tokShow.last = r;
  return r;
}

// attention[layer][head][t]: one table per layer, a row per head, a column per position
function drawAttention(attention) {
  const box = $("attn");
  box.innerHTML = "";
  const labels = ["BOS", ...tokIds];
  attention.forEach((layer, l) => {
    const t = document.createElement("table");
    const head = t.insertRow();
    head.appendChild(Object.assign(document.createElement("th"), { textContent: `layer ${l}` }));
    for (const c of labels) head.appendChild(Object.assign(document.createElement("th"), { textContent: c === " " ? "␠" : c }));
    layer.forEach((weights, h) => {
      const row = t.insertRow();
      row.appendChild(Object.assign(document.createElement("th"), { textContent: `head ${h}` }));
      weights.forEach((w, i) => {
        const td = row.insertCell();
        td.style.background = `rgba(47, 111, 223, ${w.toFixed(3)})`;
        td.title = `head ${h} → ${labels[i]}: ${(100 * w).toFixed(1)}%`;
      });
    });
    box.appendChild(t);
  });
  box.dataset.heads = String(attention.reduce((n, l) => n + l.length, 0));
}

function tokPick(p) {
  if (p.end) tokEnded = true;
  else tokIds.push(p.char);
  return tokShow();
}

function tokReset() {
  tokIds = [...$("prefix").value];
  tokPrefixLen = tokIds.length;
  tokEnded = false;
  return tokShow();
}

function tokSample() {
  const r = tokShow.last;
  if (!r || r.full || tokEnded) return;
  let u = Math.random(), pick = null;
  for (const p of r.probs) { if ((u -= p.p) <= 0) { pick = p; break; } }
  tokPick(pick || r.probs.find((p) => p.p > 0));
}

// ---- checkpoints ------------------------------------------------------------------------
async function uploadCheckpoint(file) {
  msg("ckpt-msg", "loading…");
  try {
    if (file.size > info.limits.checkpoint_bytes) throw new Error(`the file is ${file.size} bytes; the limit is ${info.limits.checkpoint_bytes}`);
    const m = await api("/api/checkpoint", await file.arrayBuffer(), true);
    showModel(m);
    msg("ckpt-msg", `loaded: ${m.preset}, ${m.num_params.toLocaleString()} params, step ${m.step}, ${m.engine} engine`, "ok");
    tokReset();
  } catch (e) {
    msg("ckpt-msg", e.message, "err");
  }
}

// ---- wiring -----------------------------------------------------------------------------
function wire() {
  $("model").addEventListener("change", updateWhy);
  $("engine").addEventListener("change", updateWhy);
  $("send-text").addEventListener("click", () => sendText(new TextEncoder().encode($("text").value)));
  $("text-file").addEventListener("change", async (e) => {
    const f = e.target.files[0];
    if (!f) return;
    if (f.size > info.limits.text_bytes) {
      msg("data-msg", `${f.name} is ${f.size.toLocaleString()} bytes; the limit is ${info.limits.text_bytes.toLocaleString()}`, "err");
      return;
    }
    sendText(await f.arrayBuffer());
  });
  $("train").addEventListener("click", () => { compare = null; startTraining(settings()); });
  $("compare").addEventListener("click", async () => {
    if ($("model").value === "custom") { msg("train-msg", "a custom shape runs on the dynamic engine only: pick a preset to compare", "err"); return; }
    const s = settings("static");
    compare = { settings: s, first: null };
    const r = await startTraining(s);
    if (r && compare) compare.first = r.run;
  });
  $("stop").addEventListener("click", () => api("/api/stop", {}).catch((e) => msg("train-msg", e.message, "err")));
  $("generate").addEventListener("click", generate);
  $("tok-reset").addEventListener("click", tokReset);
  $("tok-back").addEventListener("click", () => {
    if (tokEnded) tokEnded = false;
    else if (tokIds.length > tokPrefixLen) tokIds.pop();
    tokShow();
  });
  $("tok-sample").addEventListener("click", tokSample);
  $("prefix").addEventListener("change", tokReset);
  $("ckpt-file").addEventListener("change", (e) => { if (e.target.files[0]) uploadCheckpoint(e.target.files[0]); });
  window.addEventListener("resize", redraw);
}

// ---- self-test (?selftest=1): the browser test's scenario, run by the page itself --------
// It trains micro on the names for a few hundred steps through the page's own controls, waits
// for the chart and the samples, generates with a prefix, clicks a bar of the token view, and
// writes PASS or FAIL with the details into <pre id="selftest">.
async function selftest() {
  const out = $("selftest");
  // with &screenshot the verdict stays out of the picture (it is still in the DOM)
  if (!new URLSearchParams(location.search).has("screenshot")) out.classList.remove("hidden");
  const log = [];
  const note = (s) => { log.push(s); out.textContent = "RUNNING\n" + log.join("\n"); };
  const until = async (what, cond, ms) => {
    const t0 = Date.now();
    while (!cond()) {
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  try {
    await until("the page's info", () => info, 10000);
    // bad text gets a message in the page, and the page goes on
    await sendText(new Uint8Array([0x61, 0x0a, 0xff, 0xfe]));
    if (!$("data-msg").classList.contains("err") || !$("data-msg").textContent.includes("UTF-8")) {
      throw new Error(`invalid UTF-8 text: the page says ${JSON.stringify($("data-msg").textContent)}`);
    }
    note(`bad text: ${$("data-msg").textContent}`);
    if (new URLSearchParams(location.search).has("screenshot")) msg("data-msg", "");
    $("model").value = "micro"; $("engine").value = "static"; updateWhy();
    $("steps").value = 300; $("batch_size").value = 4;
    $("train").click();
    await until("training to start", () => run && run.train.length > 0, 20000);
    await until("training to finish", () => $("status").textContent === "finished", 60000);
    const points = Number($("chart").dataset.points);
    if (!(points > 10)) throw new Error(`the chart has ${points} points`);
    note(`chart points: ${points}`);
    const live = [...$("live-samples").children].map((li) => li.textContent);
    if (!live.length) throw new Error("no samples appeared while training");
    note(`live samples: ${live.join(", ")}`);
    $("prefix").value = "ma";
    $("n").value = 8;
    const gen = await generate();
    if (!gen || gen.length !== 8) throw new Error(`generate gave ${gen && gen.length} samples: ${$("gen-msg").textContent}`);
    const bad = gen.filter((s) => !s.startsWith("ma"));
    if (bad.length) throw new Error(`samples without the prefix: ${bad.join(", ")}`);
    note(`generated: ${gen.join(", ")}`);
    await tokReset();
    const n = Number($("bars").dataset.count);
    if (!(n > 1)) throw new Error(`the token view shows ${n} bars`);
    const first = $("bars").querySelector(".bar:not(.end)");
    const before = $("tok-text").textContent;
    first.click();
    await until("the pick to show", () => $("tok-text").textContent !== before && Number($("bars").dataset.count) > 1, 5000);
    const heads = Number($("attn").dataset.heads);
    if (heads !== 4) throw new Error(`the attention view shows ${heads} heads, not micro's 4`);
    note(`token view: ${n} bars, ${heads} heads of attention; clicked ${JSON.stringify(first.dataset.char)} → "${$("tok-text").textContent}"`);
    // the same setup on both engines, one after the other, and the speed-up
    $("steps").value = 100;
    $("compare").click();
    await until("both engines' runs", () => [...$("runs").tBodies[0].rows].filter((r) => r.dataset.done).length === 3, 60000);
    const ratio = $("runs").tBodies[0].rows[0].querySelector(".ratio").textContent;
    if (!/static [0-9.]+× faster/.test(ratio)) throw new Error(`no speed-up shown: ${JSON.stringify(ratio)}`);
    note(`compare engines: ${ratio}`);
    out.textContent = "PASS\n" + log.join("\n");
  } catch (e) {
    out.textContent = "FAIL: " + e.message + "\n" + log.join("\n");
  }
  document.title = out.textContent.split("\n")[0];
}

wire();
connect();
loadInfo().then(() => tokReset()).catch((e) => { setStatus("error", "error"); msg("train-msg", e.message, "err"); });
drawChart();
if (new URLSearchParams(location.search).has("selftest")) selftest();
