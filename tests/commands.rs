//! The `train`, `sample`, `eval` and `baseline` commands end to end: checkpoints round-trip,
//! resume is exact, sampling options behave, and bad input is one clear line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use microgpt::checkpoint::Checkpoint;

mod common;
use common::s;

/// Runs the binary in a scratch directory, where a `train` without `--out` saves its
/// checkpoint (so that tests do not litter the repository).
fn microgpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_microgpt"))
        .current_dir(scratch())
        .args(args)
        .output()
        .expect("run microgpt")
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("microgpt-cmd-{}-cwd", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(args: &[&str]) -> String {
    common::expect_ok(args, microgpt(args))
}

fn tmp(name: &str) -> PathBuf {
    common::scratch_file("cmd", name)
}

/// The checkpoints of an uninterrupted run and of its resumed twin.
fn load_both(whole: &Path, resumed: &Path) -> (Checkpoint, Checkpoint) {
    (
        Checkpoint::load(whole).unwrap(),
        Checkpoint::load(resumed).unwrap(),
    )
}

/// The bit patterns of `v`, for comparisons that must be exact.
fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The `step N / T | loss X` lines of a run's output.
fn loss_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("step ") && l.contains("| loss"))
        .map(String::from)
        .collect()
}

fn assert_one_line_error(o: &Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "succeeded; stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr is not one line:\n{err}");
    assert!(err.contains(what), "expected {what:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

const TRAIN: [&str; 8] = [
    "train",
    "--no-progress",
    "--print-every",
    "1",
    "--eval-every",
    "50",
    // every validation over the whole split: a run stopped early scores the whole split at
    // its last step, where the run it is half of scores the periodic sample
    "--eval-docs",
    "1000",
];

#[test]
fn the_same_run_saves_the_same_bytes() {
    // two processes (the metadata map's order differs from process to process), one command:
    // the checkpoint header's keys are sorted, so the files are identical
    let (a, b) = (tmp("same-a.safetensors"), tmp("same-b.safetensors"));
    ok(&[&TRAIN[..], &["--steps", "20", "--out", s(&a)]].concat());
    ok(&[&TRAIN[..], &["--steps", "20", "--out", s(&b)]].concat());
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(ba == bb, "two saves of the same run differ");
    // the metadata keys stand in sorted order in the header
    let n = u64::from_le_bytes(ba[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&ba[8..8 + n]).unwrap();
    let meta = &header[header.find("\"__metadata__\":{").unwrap()..];
    let meta = &meta[..meta.find('}').unwrap()];
    let keys: Vec<&str> = meta
        .split("\",\"")
        .map(|kv| kv.split("\":\"").next().unwrap())
        .collect();
    assert!(keys.len() > 20, "{keys:?}");
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    assert_eq!(Checkpoint::load(&a).unwrap().step().unwrap(), 20);
}

#[test]
fn resume_is_exact() {
    // one run of 200 steps, and the same run split at step 100 and resumed: every step's loss
    // and the final weights and Adam moments are identical, bit for bit
    let whole = tmp("whole.safetensors");
    let half = tmp("half.safetensors");
    let resumed = tmp("resumed.safetensors");
    let a = ok(&[&TRAIN[..], &["--steps", "200", "--out", s(&whole)]].concat());
    let b1 = ok(&[
        &TRAIN[..],
        &["--steps", "100", "--total-steps", "200", "--out", s(&half)],
    ]
    .concat());
    let b2 = ok(&[&TRAIN[..], &["--resume", s(&half), "--out", s(&resumed)]].concat());
    assert!(b2.contains("resuming at step 100"), "{b2}");
    let (la, lb) = (loss_lines(&a), [loss_lines(&b1), loss_lines(&b2)].concat());
    assert_eq!(la.len(), 200);
    assert_eq!(la, lb);
    let (ca, cb) = load_both(&whole, &resumed);
    assert_eq!(bits(&ca.params), bits(&cb.params));
    let (ma, mb) = (ca.adam.as_ref().unwrap(), cb.adam.as_ref().unwrap());
    assert_eq!(bits(&ma.m), bits(&mb.m));
    assert_eq!(bits(&ma.v), bits(&mb.v));
    assert_eq!(ca.step().unwrap(), 200);
    // the validation losses agree too
    let val = |o: &str| -> Vec<String> {
        o.lines()
            .filter(|l| l.contains("val loss"))
            .map(String::from)
            .collect()
    };
    assert_eq!(val(&a), [val(&b1), val(&b2)].concat());
}

#[test]
fn resume_is_exact_with_dropout_token_mean_and_reshuffled_epochs() {
    // 40 names, 36 for training in batches of 4: an epoch is 9 steps, so 60 steps are 6⅔
    // epochs and the split at step 22 falls inside the third; the masks and the epochs'
    // orders are drawn again on resume, from the seed and the step alone
    let data = tmp("forty.txt");
    let names: Vec<String> = (0..40)
        .map(|i| {
            let letters = b"abcdefghijklmnopqrstuvwxyz";
            (0..3 + i % 7)
                .map(|k| letters[(i * 7 + k * 3) % 26] as char)
                .collect()
        })
        .collect();
    std::fs::write(&data, names.join("\n")).unwrap();
    let run: Vec<&str> = [
        &TRAIN[..],
        &["--data", s(&data), "--batch-size", "4", "--dropout", "0.2"],
        &["--token-mean", "--reshuffle", "--lr", "0.005"],
    ]
    .concat();
    let whole = tmp("whole-recipe.safetensors");
    let half = tmp("half-recipe.safetensors");
    let resumed = tmp("resumed-recipe.safetensors");
    let a = ok(&[&run[..], &["--steps", "60", "--out", s(&whole)]].concat());
    let b1 = ok(&[
        &run[..],
        &["--steps", "22", "--total-steps", "60", "--out", s(&half)],
    ]
    .concat());
    let b2 = ok(&[&TRAIN[..], &["--resume", s(&half), "--out", s(&resumed)]].concat());
    let (la, lb) = (loss_lines(&a), [loss_lines(&b1), loss_lines(&b2)].concat());
    assert_eq!(la.len(), 60);
    assert_eq!(la, lb);
    let (ca, cb) = load_both(&whole, &resumed);
    assert_eq!(bits(&ca.params), bits(&cb.params));
    assert_eq!(ca.get("reshuffle").unwrap(), "true");
    assert_eq!(ca.get("token_mean").unwrap(), "true");
    assert_eq!(ca.get("dropout").unwrap(), "0.2");
    // each option changes the run: without it, the losses differ (the first epoch is the
    // same order either way, so reshuffling shows from step 10 on)
    for off in ["--dropout", "--token-mean", "--reshuffle"] {
        let args: Vec<&str> = run
            .iter()
            .enumerate()
            .filter(|&(i, a)| *a != off && !(off == "--dropout" && i > 0 && run[i - 1] == off))
            .map(|(_, a)| *a)
            .collect();
        let c = loss_lines(&ok(&[&args[..], &["--steps", "60"]].concat()));
        assert_ne!(c[10..], la[10..], "without {off}");
        if off == "--reshuffle" {
            assert_eq!(
                c[..9],
                la[..9],
                "the first epoch does not depend on --reshuffle"
            );
        }
    }
}

#[test]
fn eval_of_a_saved_model_equals_the_validation_loss_in_process() {
    // with --val-fraction 0.5 on a file of 10 names, `train` prints the validation loss of the
    // final model; `eval` of the saved model on exactly those 5 names must print the same
    let data = tmp("ten.txt");
    std::fs::write(
        &data,
        "emma\nolivia\nava\nisabella\nsophia\ncharlotte\nmia\namelia\nharper\nevelyn\n",
    )
    .unwrap();
    let ck = tmp("ten.safetensors");
    let out = ok(&[
        "train",
        "--no-progress",
        "--data",
        s(&data),
        "--steps",
        "30",
        "--val-fraction",
        "0.5",
        "--out",
        s(&ck),
    ]);
    let in_process: f64 = out
        .lines()
        .rfind(|l| l.contains("val loss"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    // the validation names: the last half of the seeded shuffle
    let mut docs = microgpt::data::load_docs(&data).unwrap();
    microgpt::rng::Rng::pcg(42).shuffle(&mut docs);
    let val = tmp("ten-val.txt");
    std::fs::write(&val, docs[5..].join("\n")).unwrap();
    let e = ok(&["eval", "--checkpoint", s(&ck), "--data", s(&val)]);
    let tokens: usize = docs[5..].iter().map(|d| d.chars().count() + 1).sum();
    assert_eq!(
        e.trim(),
        format!("loss {in_process:.4} ({tokens} tokens, 5 docs)")
    );
    // and the library agrees to the last bit with a model rebuilt from the file
    let c = Checkpoint::load(&ck).unwrap();
    let (loss, n, m) = microgpt::session::run_eval(&c, &val).unwrap();
    assert_eq!((n, m), (tokens, 5));
    assert!((loss - in_process).abs() < 5e-5, "{loss} vs {in_process}");
}

/// A micro checkpoint trained 300 steps, once per test process (the tests that share it run
/// in parallel: the first trains it, the others wait for it).
fn trained_checkpoint() -> PathBuf {
    static CHECKPOINT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKPOINT
        .get_or_init(|| {
            let ck = tmp("sampler.safetensors");
            ok(&["train", "--no-progress", "--steps", "300", "--out", s(&ck)]);
            ck
        })
        .clone()
}

#[test]
fn prompted_samples_start_with_the_prompt_and_greedy_is_deterministic() {
    let ck = trained_checkpoint();
    let out = ok(&[
        "sample",
        "--checkpoint",
        s(&ck),
        "--prompt",
        "ma",
        "--num-samples",
        "10",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 10);
    assert!(lines.iter().all(|l| l.starts_with("ma")), "{out}");
    assert!(lines.iter().any(|l| l.len() > 2), "{out}");

    let greedy = |extra: &[&str], seed: &str| {
        ok(&[
            &[
                "sample",
                "--checkpoint",
                s(&ck),
                "--num-samples",
                "3",
                "--seed",
                seed,
            ][..],
            extra,
        ]
        .concat())
    };
    let t0 = greedy(&["--temperature", "0"], "1");
    // greedy: every sample is the same, whatever the seed
    assert_eq!(t0.lines().count(), 3);
    assert!(t0.lines().all(|l| l == t0.lines().next().unwrap()), "{t0}");
    assert_eq!(t0, greedy(&["--temperature", "0"], "2"));
    // top-k 1 at the default temperature draws the same as greedy
    assert_eq!(greedy(&["--top-k", "1"], "3"), t0);
    // at temperature 0.5 without top-k, seeds differ
    assert_ne!(greedy(&[], "1"), greedy(&[], "2"));
}

#[test]
fn baseline_reports_the_bigram_loss_on_the_split() {
    let out = ok(&["baseline"]);
    assert!(
        out.starts_with("bigram baseline") && out.contains("val loss 2.4"),
        "{out}"
    );
}

#[test]
fn bad_checkpoints_and_sampling_options_are_one_line_errors() {
    let ck = trained_checkpoint();
    let bytes = std::fs::read(&ck).unwrap();
    let truncated = tmp("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let garbage = tmp("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint at all").unwrap();
    // a checkpoint whose shape is not the compiled micro model's
    let mut c = Checkpoint::load(&ck).unwrap();
    c.shape.block_size = 8;
    let n = c.shape.num_params();
    c.params.truncate(n);
    c.adam = None;
    c.params.resize(n, 0.0);
    let mismatched = tmp("mismatched.safetensors");
    c.save(&mismatched).unwrap();

    let sample = |path: &Path, extra: &[&str]| {
        microgpt(&[&["sample", "--checkpoint", s(path)][..], extra].concat())
    };
    assert_one_line_error(&sample(&tmp("missing.safetensors"), &[]), "missing");
    assert_one_line_error(&sample(&truncated, &[]), "truncated");
    assert_one_line_error(&sample(&garbage, &[]), "garbage");
    assert_one_line_error(&sample(&mismatched, &[]), "shape");
    assert_one_line_error(&sample(&ck, &["--prompt", "Émile"]), "'É'");
    assert_one_line_error(
        &sample(&ck, &["--prompt", "abcdefghijklmnopq"]),
        "block size is 16",
    );
    assert_one_line_error(&sample(&ck, &["--top-k", "0"]), "--top-k");
    assert_one_line_error(&sample(&ck, &["--top-k", "28"]), "--top-k");
    assert_one_line_error(&sample(&ck, &["--temperature", "-0.5"]), "temperature");

    // an output path in a missing directory fails before training, and writes nothing
    let o = microgpt(&[
        "train",
        "--steps",
        "5",
        "--out",
        "/nonexistent-dir/x.safetensors",
    ]);
    assert_one_line_error(&o, "/nonexistent-dir");
    // --resume of a checkpoint trained on other data
    let other = tmp("other.txt");
    std::fs::write(&other, "anna\nbob\n").unwrap();
    let o = microgpt(&["train", "--resume", s(&ck), "--data", s(&other)]);
    assert_one_line_error(&o, "other.txt");
    // eval on data with characters the model does not know
    let o = microgpt(&[
        "eval",
        "--checkpoint",
        s(&ck),
        "--data",
        s(&tmp("ten-val.txt")),
    ]);
    assert!(o.status.success() || String::from_utf8_lossy(&o.stderr).lines().count() == 1);
    let upper = tmp("upper.txt");
    std::fs::write(&upper, "Anna\n").unwrap();
    let o = microgpt(&["eval", "--checkpoint", s(&ck), "--data", s(&upper)]);
    assert_one_line_error(&o, "'A'");
}

#[test]
fn a_failed_save_keeps_the_existing_checkpoint() {
    // a checkpoint path that is a directory cannot be replaced: the run fails with one line,
    // and what was there is untouched
    let dir = tmp("a-dir.safetensors");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep"), b"x").unwrap();
    let o = microgpt(&["train", "--no-progress", "--steps", "3", "--out", s(&dir)]);
    assert_one_line_error(&o, "a-dir.safetensors");
    assert_eq!(std::fs::read(dir.join("keep")).unwrap(), b"x");
}

#[test]
fn mark_seen_marks_samples_that_are_training_documents() {
    // a dataset of one name: the trained model's greedy sample is that name, which is in the
    // training split, so it is marked
    let data = tmp("anna.txt");
    std::fs::write(&data, "anna\n".repeat(40)).unwrap();
    let ck = tmp("anna.safetensors");
    ok(&[
        "train",
        "--no-progress",
        "--data",
        s(&data),
        "--steps",
        "200",
        "--out",
        s(&ck),
    ]);
    let out = ok(&[
        "sample",
        "--checkpoint",
        s(&ck),
        "--temperature",
        "0",
        "--num-samples",
        "2",
        "--mark-seen",
    ]);
    assert_eq!(
        out,
        "anna *\nanna *\n(* = one of the 1 distinct training documents)\n"
    );
}

/// The library's `train` run prints nothing and says what happens as events, in order: the
/// outline, each step, the loss lines, the validations, the end and the save; and its
/// checkpoint is the command line's, byte for byte.
#[test]
fn the_train_run_reports_events_in_order_and_saves_what_the_cli_saves() {
    use microgpt::session::{self, Engine, Event, Save, Settings, Start, TrainOptions};
    let (lib_out, cli_out) = (tmp("events-lib.safetensors"), tmp("events-cli.safetensors"));
    let mut settings = Settings::microgpt();
    settings.total_steps = 4;
    settings.val_fraction = 0.1;
    settings.val_max = Some(session::VAL_MAX);
    let opts = TrainOptions {
        engine: Engine::Static,
        data: None,
        stop_at: 4,
        print_every: 3,
        eval_every: 2,
        eval_docs: Some(100),
        save: Save::Named(lib_out.clone()),
        save_every: None,
        log: None,
        threads: Some(1),
        start_file: None,
    };
    let mut seen = Vec::new();
    let mut last_val = None;
    let mut record = |e: Event<'_>| {
        seen.push(match e {
            Event::Begin(o) => format!("begin {} steps, val sample {:?}", o.steps, o.val_sample),
            Event::Step { done, .. } => format!("step {done}"),
            Event::Loss { step, total, .. } => format!("loss {step}/{total}"),
            Event::ValLoss {
                step, sample, loss, ..
            } => {
                last_val = Some(loss);
                format!("val {step} {sample:?}")
            }
            Event::Trained { steps, .. } => format!("trained {steps}"),
            Event::Saved { path, step, .. } => format!("saved {} {step}", path.display()),
            other => format!("unexpected {other:?}"),
        })
    };
    let final_val = session::run_train(&settings, Start::Fresh, &opts, &mut record).unwrap();
    let saved = format!("saved {} 4", lib_out.display());
    let expected = [
        "begin 4 steps, val sample Some(100)",
        "step 1",
        "loss 1/4",
        "step 2",
        "val 2 Some(100)",
        "step 3",
        "loss 3/4",
        "step 4",
        "loss 4/4",
        "val 4 None",
        "trained 4",
        &saved,
    ];
    assert_eq!(seen, expected);
    assert_eq!(final_val, last_val);
    ok(&[
        "train",
        "--steps",
        "4",
        "--threads",
        "1",
        "--eval-every",
        "2",
        "--out",
        s(&cli_out),
    ]);
    let (a, b) = (
        std::fs::read(&lib_out).unwrap(),
        std::fs::read(&cli_out).unwrap(),
    );
    assert!(
        a == b,
        "the library's checkpoint differs from the command line's"
    );
}
