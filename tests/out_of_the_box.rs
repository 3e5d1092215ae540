//! What a new user meets: `train --model NAME` runs the preset's recipe (each flag given
//! overrides its one setting, a resumed run keeps its checkpoint's), and a run without `--out`
//! saves its model without replacing any file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use microgpt::checkpoint::Checkpoint;

/// A fresh, empty working directory for one test.
fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("microgpt-ootb-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_microgpt"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run microgpt")
}

fn ok(cwd: &Path, args: &[&str]) -> String {
    let o = run(cwd, args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{out}"))
}

/// The files in a directory, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut f: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    f.sort();
    f
}

/// A checkpoint's run settings (its metadata without the ones that name the file or data).
fn settings(path: &Path) -> BTreeMap<String, String> {
    let mut m = Checkpoint::load(path).unwrap().meta;
    m.retain(|k, _| !k.starts_with("data"));
    m
}

const SMALL: [&str; 5] = ["train", "--no-progress", "--model", "small", "--steps"];

#[test]
fn small_alone_runs_its_recipe_and_a_flag_overrides_exactly_that_setting() {
    let dir = workdir("recipe");
    let out = ok(
        &dir,
        &[&SMALL[..], &["2", "--out", "a.safetensors"]].concat(),
    );
    assert_eq!(
        line(&out, "recipe: "),
        "recipe: small (batch 32, lr 0.003, betas 0.9/0.99, weight decay 0.1, warm-up 300, \
         cosine to 0.02·lr, dropout 0.1, EMA 0.9998 of the weights, token mean, reshuffle, \
         32000 steps, val fraction 0.0313, eval every 2000, print every 4000); given: --steps 2"
    );
    // 3.13% of 32,033 held out (1,003), at most --val-max's 1,000; batches of 32
    assert!(
        out.contains("train docs: 31033, val docs: 1000, batch size: 32"),
        "{out}"
    );
    let a = settings(&dir.join("a.safetensors"));
    for (key, value) in [
        ("model", "small"),
        ("batch_size", "32"),
        ("lr", "0.003"),
        ("beta1", "0.9"),
        ("beta2", "0.99"),
        ("weight_decay", "0.1"),
        // the recipe's 300 steps of warm-up, cut to the 2-step run
        ("warmup", "2"),
        ("schedule", "cosine"),
        ("min_lr_fraction", "0.02"),
        ("dropout", "0.1"),
        ("ema", "0.9998"),
        ("token_mean", "true"),
        ("reshuffle", "true"),
        ("val_fraction", "0.0313"),
        ("total_steps", "2"),
    ] {
        assert_eq!(a[key], value, "{key}");
    }

    // one flag: that setting changes, and nothing else
    let out = ok(
        &dir,
        &[
            &SMALL[..],
            &["2", "--lr", "0.001", "--out", "b.safetensors"],
        ]
        .concat(),
    );
    assert!(
        line(&out, "recipe: ").ends_with("; given: --steps 2, --lr 0.001"),
        "{out}"
    );
    let b = settings(&dir.join("b.safetensors"));
    let differ: Vec<&String> = a.keys().filter(|k| a[*k] != b[*k]).collect();
    assert_eq!(differ, ["lr"], "{a:?}\n{b:?}");
    assert_eq!(b["lr"], "0.001");
    // and a boolean of the recipe can be turned off
    let out = ok(
        &dir,
        &[&SMALL[..], &["1", "--reshuffle=false", "--no-save"]].concat(),
    );
    assert!(
        line(&out, "recipe: ").ends_with("--reshuffle false"),
        "{out}"
    );
}

#[test]
fn micro_s_recipe_is_microgpt_s_and_a_resumed_run_keeps_its_checkpoint_s() {
    let dir = workdir("resume");
    let out = ok(
        &dir,
        &["train", "--no-progress", "--steps", "3", "--no-save"],
    );
    assert!(
        line(&out, "recipe: ").starts_with(
            "recipe: micro (batch 1, lr 0.01, betas 0.85/0.99, weight decay 0, warm-up 0, \
             linear decay, dropout 0, document mean, same order every epoch, 1000 steps"
        ),
        "{out}"
    );
    // a small run with settings off its recipe, split and resumed: the checkpoint's
    // settings hold, not the preset's
    let half = &[
        &SMALL[..],
        &[
            "2",
            "--total-steps",
            "4",
            "--lr",
            "0.001",
            "--batch-size",
            "4",
            "--out",
            "half.safetensors",
        ],
    ]
    .concat();
    ok(&dir, half);
    let out = ok(
        &dir,
        &[
            "train",
            "--no-progress",
            "--resume",
            "half.safetensors",
            "--out",
            "whole.safetensors",
        ],
    );
    assert!(out.contains("resuming at step 2"), "{out}");
    assert!(
        line(&out, "recipe: ").starts_with("recipe: the checkpoint's (small, batch 4, lr 0.001,"),
        "{out}"
    );
    let (h, w) = (
        settings(&dir.join("half.safetensors")),
        settings(&dir.join("whole.safetensors")),
    );
    assert_eq!(w["lr"], "0.001");
    assert_eq!(w["batch_size"], "4");
    assert_eq!(w["step"], "4");
    let differ: Vec<&String> = h.keys().filter(|k| h[*k] != w[*k]).collect();
    assert_eq!(differ, ["step"]);
}

#[test]
fn a_run_saves_by_default_and_never_replaces_a_file_it_was_not_given() {
    let dir = workdir("save");
    let train = ["train", "--no-progress"];
    let out = ok(&dir, &[&train[..], &["--steps", "3"]].concat());
    assert!(
        out.contains(
            "checkpoint: micro.safetensors at the end (--out PATH to choose, --no-save for none)"
        ),
        "{out}"
    );
    assert!(
        out.contains("saved micro.safetensors (step 3 of 3)"),
        "{out}"
    );
    let first = std::fs::read(dir.join("micro.safetensors")).unwrap();
    assert_eq!(
        Checkpoint::load(&dir.join("micro.safetensors"))
            .unwrap()
            .step()
            .unwrap(),
        3
    );

    // a second run, and a file that is not a checkpoint at all, where a third would go
    std::fs::write(dir.join("micro-3.safetensors"), b"keep me").unwrap();
    let out = ok(&dir, &[&train[..], &["--steps", "4"]].concat());
    assert!(
        out.contains("checkpoint: micro-2.safetensors at the end (micro.safetensors exists;"),
        "{out}"
    );
    let out = ok(&dir, &[&train[..], &["--steps", "5"]].concat());
    assert!(
        out.contains("saved micro-4.safetensors (step 5 of 5)"),
        "{out}"
    );
    assert_eq!(std::fs::read(dir.join("micro.safetensors")).unwrap(), first);
    assert_eq!(
        std::fs::read(dir.join("micro-3.safetensors")).unwrap(),
        b"keep me"
    );
    assert_eq!(
        files(&dir),
        [
            "micro-2.safetensors",
            "micro-3.safetensors",
            "micro-4.safetensors",
            "micro.safetensors"
        ]
    );

    // --no-save writes nothing; --out replaces the file it names
    let out = ok(&dir, &[&train[..], &["--steps", "3", "--no-save"]].concat());
    assert!(out.contains("checkpoint: none (--no-save)"), "{out}");
    assert!(!out.contains("saved "), "{out}");
    assert_eq!(files(&dir).len(), 4);
    ok(
        &dir,
        &[
            &train[..],
            &["--steps", "6", "--out", "micro-3.safetensors"],
        ]
        .concat(),
    );
    let c = Checkpoint::load(&dir.join("micro-3.safetensors")).unwrap();
    assert_eq!(c.step().unwrap(), 6);
    assert_eq!(files(&dir).len(), 4);
    // --no-save with --out is a usage error
    let o = run(
        &dir,
        &[&train[..], &["--no-save", "--out", "x.safetensors"]].concat(),
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_help_lists_each_preset_with_its_shape_parameters_and_recipe() {
    let h = ok(Path::new("."), &["train", "--help"]);
    assert!(
        h.contains(
            "micro: 1 layer(s), n_embd 16, 4 heads, block 16, MLP 64; 4,192 parameters on names.txt"
        ),
        "{h}"
    );
    assert!(h.contains("small: 4 layer(s), n_embd 64, 4 heads, block 16, MLP 256; 201,088 parameters on names.txt"), "{h}");
    assert!(h.contains("recipe: batch 32, lr 0.003"), "{h}");
    assert!(h.contains("--no-save"), "{h}");
    let top = ok(Path::new("."), &["--help"]);
    assert!(top.contains("built into the binary"), "{top}");
}

#[test]
fn checkpoints_of_the_built_in_names_and_of_the_file_resume_with_either() {
    let dir = workdir("data");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/data/names.txt");
    let half = [
        "train",
        "--no-progress",
        "--steps",
        "2",
        "--total-steps",
        "4",
    ];
    // built in, resumed on the file
    ok(&dir, &[&half[..], &["--out", "a.safetensors"]].concat());
    let a = Checkpoint::load(&dir.join("a.safetensors")).unwrap();
    assert_eq!(a.get("data").unwrap(), "builtin:names.txt");
    let resume = |ck: &str, extra: &[&str]| {
        let args = [
            &["train", "--no-progress", "--no-save", "--resume", ck][..],
            extra,
        ]
        .concat();
        ok(&dir, &args)
    };
    let on_file = resume("a.safetensors", &["--data", file]);
    let built_in = resume("a.safetensors", &[]);
    let losses = |o: &str| -> Vec<String> {
        o.lines()
            .filter(|l| l.starts_with("step "))
            .map(String::from)
            .collect()
    };
    assert_eq!(losses(&on_file), losses(&built_in));
    assert_eq!(losses(&built_in).len(), 3, "{built_in}");
    // a copy of the file, gone by the time the run resumes: the built-in copy has its
    // fingerprint
    std::fs::copy(file, dir.join("copy.txt")).unwrap();
    ok(
        &dir,
        &[&half[..], &["--data", "copy.txt", "--out", "b.safetensors"]].concat(),
    );
    std::fs::remove_file(dir.join("copy.txt")).unwrap();
    assert_eq!(losses(&resume("b.safetensors", &[])), losses(&built_in));
    // and the samples marked as training names, from the built-in copy
    let out = ok(
        &dir,
        &["sample", "--checkpoint", "a.safetensors", "--mark-seen"],
    );
    let mut docs = microgpt::data::load_docs(Path::new(file)).unwrap();
    microgpt::rng::Rng::pcg(42).shuffle(&mut docs);
    let distinct: std::collections::HashSet<&String> = docs[..31033].iter().collect();
    assert!(
        out.ends_with(&format!(
            "(* = one of the {} distinct training documents)\n",
            distinct.len()
        )),
        "{out}"
    );
}

#[test]
fn periodic_validation_is_on_a_fixed_sample_the_last_on_the_whole_split() {
    let dir = workdir("eval");
    let names: Vec<String> = microgpt::data::names().into_iter().take(400).collect();
    std::fs::write(dir.join("400.txt"), names.join("\n")).unwrap();
    let train = |extra: &[&str]| {
        let args = [
            &[
                "train",
                "--no-progress",
                "--no-save",
                "--data",
                "400.txt",
                "--val-fraction",
                "0.5",
                "--steps",
                "4",
                "--eval-every",
                "2",
            ][..],
            extra,
        ]
        .concat();
        ok(&dir, &args)
    };
    let val = |o: &str| -> Vec<String> {
        o.lines()
            .filter(|l| l.contains("val loss"))
            .map(String::from)
            .collect()
    };
    let sampled = train(&["--eval-docs", "50"]);
    assert!(
        sampled.contains(
            "validation: every 2 steps on a fixed sample of 50 of the 200 held-out docs, at the end on all of them"
        ),
        "{sampled}"
    );
    let v = val(&sampled);
    assert_eq!(v.len(), 2, "{sampled}");
    assert!(
        v[0].starts_with("step    2 /    4 | val loss "),
        "{sampled}"
    );
    assert!(v[0].ends_with(" (sample of 50)"), "{sampled}");
    assert!(!v[1].contains("sample"), "{sampled}");
    // the whole split every time: the last loss is the same, the first over more documents
    let whole = train(&["--eval-docs", "200"]);
    assert!(whole.contains("validation: all 200 held-out docs every 2 steps and at the end"));
    let w = val(&whole);
    assert_eq!(w[1], v[1]);
    assert_ne!(w[0], v[0].trim_end_matches(" (sample of 50)"));
    // and the numbers do not depend on the threads that compute them
    for threads in ["1", "2", "3"] {
        let o = train(&["--eval-docs", "50", "--threads", threads]);
        assert_eq!(val(&o), v, "--threads {threads}");
    }
}

/// A big file holds out at most `--val-max` documents (1,000 unless told), which the
/// checkpoint records and a resumed run keeps; a checkpoint from before the cap resumes
/// with the whole share held out, as it trained. The periodic losses are over as many
/// documents as are trained on between two of them (at least 100), which the run says.
#[test]
fn at_most_val_max_documents_are_held_out_and_the_periodic_sample_is_said() {
    let dir = workdir("val-max");
    let out = ok(&dir, &["train", "--steps", "2", "--out", "a.safetensors"]);
    assert!(out.contains("train docs: 31033, val docs: 1000,"), "{out}");
    assert!(
        line(&out, "validation: ").starts_with(
            "validation: every 250 steps on a fixed sample of 250 of the 1000 held-out docs, at the end on all of them ("
        ),
        "{out}"
    );
    assert_eq!(settings(&dir.join("a.safetensors"))["val_max"], "1000");
    let flags = ["--steps", "4", "--total-steps", "8", "--eval-every", "2"];
    let out = ok(
        &dir,
        &[
            &["train", "--val-max", "3203", "--out", "b.safetensors"],
            &flags[..],
        ]
        .concat(),
    );
    assert!(out.contains("train docs: 28830, val docs: 3203,"), "{out}");
    assert!(
        out.contains("on a fixed sample of 100 of the 3203"),
        "{out}"
    );
    let out = ok(
        &dir,
        &[
            "train",
            "--resume",
            "b.safetensors",
            "--out",
            "c.safetensors",
        ],
    );
    assert!(out.contains("train docs: 28830, val docs: 3203,"), "{out}");
    // the same checkpoint without the key, as written before the cap existed
    let mut old = Checkpoint::load(&dir.join("b.safetensors")).unwrap();
    assert!(old.meta.remove("val_max").is_some());
    old.save(&dir.join("old.safetensors")).unwrap();
    let out = ok(
        &dir,
        &[
            "train",
            "--resume",
            "old.safetensors",
            "--out",
            "d.safetensors",
        ],
    );
    assert!(out.contains("train docs: 28830, val docs: 3203,"), "{out}");
    assert!(
        !settings(&dir.join("d.safetensors")).contains_key("val_max"),
        "a resumed run keeps the settings it trained with"
    );
}
