//! The moving average of the weights (`--ema`): what a checkpoint saves is the average of the
//! run's weights, computed here by hand; a run split in two and resumed saves the same file as
//! the run in one go; a run without it (micro's default) saves what it saved before.

use std::path::PathBuf;
use std::process::{Command, Output};

use microgpt::checkpoint::Checkpoint;
use microgpt::data::Source;
use microgpt::presets::build_model;
use microgpt::rng::Rng;
use microgpt::session::{self, Engine, Event, RawDocs, Save, Settings, Start, TrainOptions};
use microgpt::train;

mod common;
use common::{bits, s};

fn microgpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_microgpt"))
        .args(args)
        .output()
        .expect("run microgpt")
}

fn ok(args: &[&str]) -> String {
    common::expect_ok(args, microgpt(args))
}

fn tmp(name: &str) -> PathBuf {
    common::scratch_file("ema", name)
}

/// The lines of a run's output that report a loss, training or validation.
fn losses(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("step ") && l.contains("loss"))
        .map(String::from)
        .collect()
}

const TRAIN: [&str; 6] = [
    "train",
    "--no-progress",
    "--print-every",
    "1",
    "--eval-every",
    "40",
];

#[test]
fn resume_with_an_average_of_the_weights_saves_the_uninterrupted_run_s_file() {
    // 120 steps with --ema 0.95 (the warm-up (1+t)/(10+t) reaches 0.95 at t = 171, so the
    // split at step 50 falls inside it: the resumed average must use the step's decay)
    let run: Vec<&str> = [
        &TRAIN[..],
        &[
            "--ema",
            "0.95",
            "--batch-size",
            "2",
            "--val-fraction",
            "0.1",
        ],
    ]
    .concat();
    let (whole, half, resumed) = (
        tmp("whole.safetensors"),
        tmp("half.safetensors"),
        tmp("resumed.safetensors"),
    );
    let a = ok(&[&run[..], &["--steps", "120", "--out", s(&whole)]].concat());
    let b1 = ok(&[
        &run[..],
        &["--steps", "50", "--total-steps", "120", "--out", s(&half)],
    ]
    .concat());
    let b2 = ok(&[&TRAIN[..], &["--resume", s(&half), "--out", s(&resumed)]].concat());
    assert!(b2.contains("resuming at step 50"), "{b2}");
    // every loss line, the validations of the average included (but the half run's own last
    // one, at step 50), and the files, byte for byte
    let mut first = losses(&b1);
    let end = first.pop().unwrap();
    assert!(end.starts_with("step   50 /  120 | val loss"), "{end}");
    let (la, lb) = (losses(&a), [first, losses(&b2)].concat());
    assert_eq!(la, lb);
    let val: Vec<&String> = la.iter().filter(|l| l.contains("val loss")).collect();
    assert_eq!(val.len(), 3, "{la:?}");
    assert!(
        val.iter().all(|l| l.contains("(EMA 0.95 weights")),
        "{val:?}"
    );
    let (fa, fb) = (
        std::fs::read(&whole).unwrap(),
        std::fs::read(&resumed).unwrap(),
    );
    assert!(
        fa == fb,
        "the resumed run's checkpoint differs from the whole run's"
    );
    let c = Checkpoint::load(&whole).unwrap();
    assert_eq!(c.get("ema").unwrap(), "0.95");
    let raw = c.raw.as_ref().expect("the training weights");
    assert_ne!(bits(raw), bits(&c.params), "the average is not the weights");
    // the half-way file resumed without its average is refused in one line
    let mut cut = Checkpoint::load(&half).unwrap();
    cut.raw = None;
    let no_raw = tmp("no-raw.safetensors");
    cut.save(&no_raw).unwrap();
    let o = microgpt(&[&TRAIN[..], &["--resume", s(&no_raw), "--no-save"]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no training weights (raw.*)"), "{err}");
}

#[test]
fn the_checkpoint_s_weights_are_the_hand_computed_average_and_eval_scores_them() {
    // the session's run with an average, and the same run through the bare loop with the
    // average computed here from every step's weights: d_t = min(d, (1+t)/(10+t)),
    // ema ← d_t·ema + (1 − d_t)·w, starting at the initial weights
    let decay = 0.9;
    let mut settings = Settings::microgpt();
    settings.total_steps = 30;
    settings.val_fraction = 0.1;
    settings.recipe.ema = decay;
    let out = tmp("hand.safetensors");
    let opts = TrainOptions {
        engine: Engine::Static,
        data: None,
        stop_at: 30,
        print_every: 10,
        eval_every: 10,
        eval_docs: Some(4096),
        save: Save::Named(out.clone()),
        save_every: None,
        log: None,
        threads: Some(1),
        start_file: None,
    };
    let mut val = None;
    let mut record = |e: Event<'_>| {
        if let Event::ValLoss { loss, ema, .. } = e {
            assert_eq!(ema, Some(decay));
            val = Some(loss);
        }
    };
    session::run_train(&settings, Start::Fresh, &opts, &mut record).unwrap();
    let c = Checkpoint::load(&out).unwrap();

    // the same split and initial weights as the session draws them
    let mut rng = Rng::new(settings.rng, settings.recipe.seed);
    let data = RawDocs::read(&Source::Names)
        .unwrap()
        .split(&mut rng, settings.val_fraction, settings.val_max, None)
        .unwrap();
    let mut model = build_model(Engine::Static, "micro", data.tok.vocab_size(), &mut rng).unwrap();
    let mut ema = model.params_flat();
    train::train(
        model.as_mut(),
        &data.train,
        &settings.recipe,
        (0, 30, 30),
        |m, t, _, _| {
            let d = decay.min((1.0 + t as f64) / (10.0 + t as f64));
            for (e, w) in ema.iter_mut().zip(m.params_flat()) {
                *e = d * *e + (1.0 - d) * w;
            }
        },
    )
    .unwrap();
    assert_eq!(
        bits(&c.params),
        bits(&ema),
        "the saved weights are not the average"
    );
    assert_eq!(
        bits(c.raw.as_ref().unwrap()),
        bits(&model.params_flat()),
        "the training weights"
    );
    // the final validation loss is the average's, which is what `eval` scores
    model.set_params_flat(&ema).unwrap();
    let (sum, n) = train::evaluate(model.as_mut(), &data.val);
    assert_eq!(val, Some(sum / n as f64));
}

#[test]
fn micro_s_default_run_keeps_no_average_and_saves_no_training_weights() {
    assert_eq!(microgpt::presets::MICRO_RECIPE.ema, 0.0);
    let out = tmp("micro.safetensors");
    let o = ok(&[&TRAIN[..], &["--steps", "40", "--out", s(&out)]].concat());
    assert!(!o.contains("EMA"), "{o}");
    let c = Checkpoint::load(&out).unwrap();
    assert!(c.raw.is_none());
    assert!(
        c.get("ema").is_err(),
        "no `ema` key: the file is what it was before --ema"
    );
    // --ema 0 is the same run and the same file
    let off = tmp("micro-off.safetensors");
    ok(&[
        &TRAIN[..],
        &["--steps", "40", "--ema", "0", "--out", s(&off)],
    ]
    .concat());
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&off).unwrap());
    // and the decay must be in [0, 1)
    let o = microgpt(&["train", "--ema", "1", "--no-save"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--ema must be in [0, 1)"),
        "{err}"
    );
}
