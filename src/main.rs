//! The `microgpt` command line: the classic train-then-sample run, and the `train`, `sample`,
//! `eval` and `baseline` commands. The work is in the library ([`microgpt::session`]), which
//! prints nothing: this file turns arguments into settings, and results and a training run's
//! events ([`microgpt::session::Event`]) into lines.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};

use microgpt::checkpoint::Checkpoint;
use microgpt::data::Source;
use microgpt::error::Result;
use microgpt::float::Precision;
use microgpt::optim::{Adam, Schedule};
use microgpt::progress::Progress;
use microgpt::rng::{Rng, RngKind};
use microgpt::sample::{self, Sampling};
use microgpt::session::{
    self, Dataset, Engine, Event, Outline, Report, Save, Settings, Start, TrainOptions,
};
use microgpt::train::{self, Recipe};
use microgpt::{bail, console, interrupt, limits, presets, say, shape};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineArg {
    /// Const-generic arrays with hand-written derivatives.
    Static,
    /// The scalar autograd tape: microgpt.py's algorithm node by node.
    Dynamic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FloatArg {
    /// 64-bit: the exact engine, whose losses are the reference's
    F64,
    /// 32-bit (the static engine only)
    F32,
}

impl From<FloatArg> for Precision {
    fn from(f: FloatArg) -> Precision {
        match f {
            FloatArg::F64 => Precision::F64,
            FloatArg::F32 => Precision::F32,
        }
    }
}

/// The engine `--engine` and `--float` name together (`precision`: `--float`, else what the
/// run starts from); the dynamic engine is `f64` only.
fn engine_of(engine: EngineArg, precision: Precision) -> Result<Engine> {
    match (engine, precision) {
        (EngineArg::Static, p) => Ok(Engine::static_in(p)),
        (EngineArg::Dynamic, Precision::F64) => Ok(Engine::Dynamic),
        (EngineArg::Dynamic, p) => bail!(
            "--float {} is for the static engine; the dynamic engine computes in f64",
            p.name()
        ),
    }
}

/// A checkpoint to read with `--float`: converted to that precision when it differs from the
/// checkpoint's (f32 to f64 is exact; f64 to f32 rounds each value to nearest).
fn checkpoint_as(path: &Path, float: Option<FloatArg>) -> Result<Checkpoint> {
    let mut c = Checkpoint::load(path)?;
    if let Some(f) = float {
        c.set(session::PRECISION_KEY, Precision::from(f).name());
    }
    Ok(c)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScheduleArg {
    /// lr·(1 − s): microgpt's
    Linear,
    /// lr·(min + (1 − min)·(1 + cos πs)/2)
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RngArg {
    /// rand_pcg's Pcg64 seeded with --seed.
    Pcg,
    /// CPython's MT19937 and random.seed(--seed): reproduces microgpt.py's own output.
    Python,
}

impl From<RngArg> for RngKind {
    fn from(r: RngArg) -> RngKind {
        match r {
            RngArg::Pcg => RngKind::Pcg,
            RngArg::Python => RngKind::Python,
        }
    }
}

/// Train a tiny GPT on a list of names (one document per line), then sample new ones.
///
/// With no command this is microgpt.py's run: 1,000 steps on names.txt (makemore's 32,033
/// names, built into the binary), one document per step, then 20 samples at temperature 0.5.
/// Documents longer than the block size (16) are truncated to their first 16 positions,
/// as in microgpt.py.
#[derive(Debug, Parser)]
#[command(
    name = "microgpt",
    version,
    about,
    long_about,
    allow_negative_numbers = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    demo: DemoArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model, with validation, checkpoints and exact resume
    #[command(allow_negative_numbers = true)]
    Train(Box<TrainArgs>),
    /// Sample from a checkpoint, optionally continuing a prompt
    #[command(allow_negative_numbers = true)]
    Sample(SampleArgs),
    /// Mean loss per predicted token of a checkpoint over every document of a file
    Eval(EvalArgs),
    /// The count-based bigram baseline's loss on the same split as `train`
    #[command(allow_negative_numbers = true)]
    Baseline(BaselineArgs),
    /// A playground in the browser: train live, generate, step through a sample
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Port to listen on (0 = any free port; the URL printed says which)
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Address to listen on (loopback by default: the playground has no authentication)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Dataset: a UTF-8 text file, one document per line [default: the built-in names.txt]
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Training steps (one document each)
    #[arg(long, default_value_t = 1000, value_parser = positive)]
    steps: usize,
    /// Seed of the random stream (shuffle, initial weights, samples)
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Adam's learning rate (decays linearly to 0)
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Sampling temperature; 0 = greedy (always the most likely character)
    #[arg(long, default_value_t = 0.5)]
    temperature: f64,
    /// Number of samples to draw after training
    #[arg(long, default_value_t = 20)]
    num_samples: usize,
    /// Engine that trains and samples
    #[arg(long, value_enum, default_value_t = EngineArg::Static)]
    engine: EngineArg,
    /// Precision of the static engine (f64 is exact; f32 is faster) [default: f64]
    #[arg(long, value_enum)]
    float: Option<FloatArg>,
    /// Random stream: `python` reproduces microgpt.py's output exactly
    #[arg(long, value_enum, default_value_t = RngArg::Pcg)]
    rng: RngArg,
    /// Print the loss every N steps (and at the first and last) [default: 1 with --rng python, else 100]
    #[arg(long, value_name = "N", value_parser = positive)]
    print_every: Option<usize>,
}

/// `train`. Documents longer than the block size are truncated, as in microgpt.py.
///
/// Each preset (`--model`) comes with its recipe: the settings below marked "[default: the
/// recipe's]" take the preset's value unless given (see the list of presets at the end).
#[derive(Debug, Args)]
#[command(after_help = presets_help())]
struct TrainArgs {
    /// Dataset: a UTF-8 text file, one document per line [default: the built-in names.txt;
    /// with --resume, the checkpoint's]
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Steps to train [default: the recipe's; with --resume, to the end of its schedule]
    #[arg(long, value_parser = positive)]
    steps: Option<usize>,
    /// Length of the learning-rate schedule, if longer than --steps: train the first --steps
    /// steps of a longer run (e.g. to --resume it later) [default: --steps]
    #[arg(long, value_name = "N", value_parser = positive)]
    total_steps: Option<usize>,
    /// Seed of the shuffle, the validation split and the initial weights
    #[arg(long, default_value_t = 42, conflicts_with = "resume")]
    seed: u64,
    /// Random stream
    #[arg(long, value_enum, default_value_t = RngArg::Pcg, conflicts_with = "resume")]
    rng: RngArg,
    /// Adam's learning rate [default: the recipe's]
    #[arg(long, conflicts_with = "resume")]
    lr: Option<f64>,
    /// Compiled model and its recipe: `micro` (microgpt's model and run) or `small`
    /// (4 layers, n_embd 64; the bigger model's recipe); see the list at the end
    #[arg(long, default_value = "micro", conflicts_with = "resume")]
    model: String,
    /// Documents per step; the gradient is their mean [default: the recipe's]
    #[arg(long, value_parser = positive, conflicts_with = "resume")]
    batch_size: Option<usize>,
    /// Threads that share a step's documents and the validation passes [default: all
    /// cores]; the result does not depend on it
    #[arg(long, value_parser = positive)]
    threads: Option<usize>,
    /// Adam's β1 [default: the recipe's]
    #[arg(long, conflicts_with = "resume")]
    beta1: Option<f64>,
    /// Adam's β2 [default: the recipe's]
    #[arg(long, conflicts_with = "resume")]
    beta2: Option<f64>,
    /// AdamW's decoupled weight decay (0 = plain Adam) [default: the recipe's]
    #[arg(long, conflicts_with = "resume")]
    weight_decay: Option<f64>,
    /// Steps of linear learning-rate warm-up [default: the recipe's]
    #[arg(long, value_name = "N", conflicts_with = "resume")]
    warmup: Option<usize>,
    /// Learning-rate decay after the warm-up: linear to 0 (microgpt) or cosine to
    /// --min-lr-fraction [default: the recipe's]
    #[arg(long, value_enum, conflicts_with = "resume")]
    schedule: Option<ScheduleArg>,
    /// Floor of the cosine schedule, as a fraction of --lr [default: the recipe's]
    #[arg(long, conflicts_with = "resume")]
    min_lr_fraction: Option<f64>,
    /// Share of the documents held out for validation (the last ones after the seeded
    /// shuffle) [default: the recipe's]
    #[arg(long, conflicts_with = "resume")]
    val_fraction: Option<f64>,
    /// At most this many documents held out, whatever --val-fraction says (makemore's rule:
    /// scoring a bigger split costs more than it tells)
    #[arg(long, value_name = "N", default_value_t = session::VAL_MAX, value_parser = positive, conflicts_with = "resume")]
    val_max: usize,
    /// Dropout probability on each block's attention and MLP outputs during training
    /// (0 = none, as microgpt) [default: the recipe's]
    #[arg(long, value_name = "P", conflicts_with = "resume")]
    dropout: Option<f64>,
    /// Average the weights over training, an exponential moving average with this decay
    /// (warmed up as min(DECAY, (1+t)/(10+t)) at step t), and evaluate, save and sample the
    /// average (0 = off, as microgpt) [default: the recipe's]
    #[arg(long, value_name = "DECAY", conflicts_with = "resume")]
    ema: Option<f64>,
    /// A step's loss is the mean over all the batch's tokens (makemore's), not the mean of
    /// the documents' means (microgpt's); `--token-mean=false` turns it off [default: the
    /// recipe's]
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        conflicts_with = "resume"
    )]
    token_mean: Option<bool>,
    /// Visit the training documents in a new order every epoch (drawn from --seed), not in
    /// the same order every time (microgpt's); `--reshuffle=false` turns it off [default:
    /// the recipe's]
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        conflicts_with = "resume"
    )]
    reshuffle: Option<bool>,
    /// Print the validation loss every N steps (and at the end) [default: the recipe's]
    #[arg(long, value_name = "N", value_parser = positive)]
    eval_every: Option<usize>,
    /// The periodic validation losses are over a fixed sample of this many validation
    /// documents (the first N of the split, itself a random draw); the last one is over all
    /// [default: as many as are trained on between two evaluations, at least 100]
    #[arg(long, value_name = "N", value_parser = positive)]
    eval_docs: Option<usize>,
    /// Print the training loss every N steps (and at the first and last) [default: the
    /// recipe's]
    #[arg(long, value_name = "N", value_parser = positive)]
    print_every: Option<usize>,
    /// Save the checkpoint (.safetensors) here at the end, replacing what is there
    /// [default: MODEL.safetensors in the current directory, or MODEL-2.safetensors, … if
    /// that exists: an existing file is never replaced unless named here]
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Save nothing (for scripts and quick trials)
    #[arg(long, conflicts_with_all = ["out", "save_every"])]
    no_save: bool,
    /// Also save it every N steps
    #[arg(long, value_name = "N", value_parser = positive)]
    save_every: Option<usize>,
    /// Start from a checkpoint's weights, with a fresh optimizer and schedule
    #[arg(long, value_name = "PATH", conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Continue a checkpoint's run exactly where it stopped (weights, Adam, step, schedule,
    /// data order, random stream); runs to its --total-steps unless --steps says where to stop
    #[arg(long, value_name = "PATH")]
    resume: Option<PathBuf>,
    /// Engine that trains
    #[arg(long, value_enum, default_value_t = EngineArg::Static)]
    engine: EngineArg,
    /// Precision of the static engine (f64 is exact; f32 is faster); a checkpoint of the
    /// other precision is converted [default: f64; with --resume or --init, the checkpoint's]
    #[arg(long, value_enum)]
    float: Option<FloatArg>,
    /// Write the loss curve as CSV here, and a plot of it beside it (.svg)
    #[arg(long, value_name = "PATH")]
    log: Option<PathBuf>,
    /// No progress bar (it is also off when stderr is not a terminal)
    #[arg(long)]
    no_progress: bool,
}

/// The presets for `train --help`: each one's shape, parameter count on names.txt and recipe.
fn presets_help() -> String {
    let names_vocab = 27;
    let mut h = String::from("Presets (--model) and their recipes:\n");
    for (name, _) in shape::PRESETS {
        let shape = shape::preset_shape(name, names_vocab).expect("a preset");
        let recipe = presets::preset_recipe(name).expect("every preset has a recipe");
        h += &format!(
            "  {name}: {} layer(s), n_embd {}, {} heads, block {}, MLP {}; {} parameters on names.txt\n    recipe: {recipe}\n",
            shape.n_layer,
            shape.n_embd,
            shape.n_head,
            shape.block_size,
            shape.mlp,
            group_digits(shape.num_params()),
        );
    }
    h
}

/// `201088` → `201,088`.
fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, Args)]
struct SampleArgs {
    /// A checkpoint written by `train --out`
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// Number of samples
    #[arg(long, default_value_t = 20)]
    num_samples: usize,
    /// Sampling temperature; 0 = greedy (always the most likely character)
    #[arg(long, default_value_t = 0.5)]
    temperature: f64,
    /// Draw only among the K most likely characters
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// Seed of the sampling stream
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Random stream
    #[arg(long, value_enum, default_value_t = RngArg::Pcg)]
    rng: RngArg,
    /// Continue this text; it is the start of every sample
    #[arg(long, default_value = "")]
    prompt: String,
    /// Mark with `*` the samples that are documents the model trained on (the checkpoint's
    /// dataset is read again and split as in training)
    #[arg(long)]
    mark_seen: bool,
    /// Precision to sample in; a checkpoint of the other precision is converted [default:
    /// the checkpoint's]
    #[arg(long, value_enum)]
    float: Option<FloatArg>,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// A checkpoint written by `train --out`
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// Documents to evaluate, one per line (each wrapped in BOS as in training)
    #[arg(long, value_name = "PATH")]
    data: PathBuf,
    /// Precision to evaluate in; a checkpoint of the other precision is converted [default:
    /// the checkpoint's]
    #[arg(long, value_enum)]
    float: Option<FloatArg>,
}

#[derive(Debug, Args)]
struct BaselineArgs {
    /// Dataset [default: the built-in names.txt]
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Seed of the shuffle and split (as for `train`)
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Random stream
    #[arg(long, value_enum, default_value_t = RngArg::Pcg)]
    rng: RngArg,
    /// Share held out for validation (as for `train`)
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// At most this many documents held out (as for `train`)
    #[arg(long, value_name = "N", default_value_t = session::VAL_MAX, value_parser = positive)]
    val_max: usize,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        None => run_demo(&cli.demo),
        Some(Command::Train(a)) => run_train(*a),
        Some(Command::Sample(a)) => run_sample(&a),
        Some(Command::Eval(a)) => run_eval(&a),
        Some(Command::Baseline(a)) => run_baseline(&a),
        Some(Command::Serve(a)) => microgpt::serve::Server::bind(&a.host, a.port).map(|s| {
            say!("microgpt playground: {}", s.url());
            s.run()
        }),
    };
    // an output error is reported after the work it did not stop (a checkpoint is saved by now)
    let result = result.and_then(|()| console::status());
    if let Err(e) = &result {
        console::warn(format!("error: {e}"));
    }
    match (interrupt::requested(), result) {
        // the run saved what it had and said where; the shell learns it was interrupted
        (Some(sig), _) => ExitCode::from(sig.exit_code()),
        (None, Ok(())) => ExitCode::SUCCESS,
        (None, Err(_)) => ExitCode::from(1),
    }
}

/// `--help` and `--version` print as clap prints them; any other command-line mistake is one
/// line on stderr and exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    // clap's message is several lines (the problem, possible values or a tip, usage); keep the
    // informative ones and join them into one
    let text = e.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    console::warn(format!("{} (see --help)", parts.join(" ")));
    ExitCode::from(2)
}

/// A count of at least 1.
fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// The classic run: microgpt.py's output, line for line.
fn run_demo(a: &DemoArgs) -> Result<()> {
    let engine = engine_of(a.engine, a.float.map_or(Precision::F64, Precision::from))?;
    let adam = Adam {
        lr: a.lr,
        ..Adam::default()
    };
    let settings = Settings {
        rng: a.rng.into(),
        recipe: Recipe::microgpt(adam, a.seed),
        total_steps: a.steps,
        ..Settings::microgpt()
    };
    settings.validate()?;
    let sampling = Sampling {
        temperature: a.temperature,
        top_k: None,
    };
    // before training: the vocabulary is not known yet, and no top-k needs it
    sampling.validate(limits::MAX_VOCAB)?;
    if a.num_samples > limits::MAX_SAMPLES {
        bail!(
            "--num-samples must be at most {}, got {}",
            limits::MAX_SAMPLES,
            a.num_samples
        );
    }
    let mut rng = Rng::new(settings.rng, settings.recipe.seed);
    let data = Dataset::load(&Source::new(a.data.as_deref()), &mut rng, 0.0, None, None)?;
    say!("num docs: {}", data.num_docs);
    say!("vocab size: {}", data.tok.vocab_size());
    let mut model =
        session::build_model(engine, &settings.preset, data.tok.vocab_size(), &mut rng)?;
    say!("num params: {}", model.num_params());

    let steps = settings.total_steps;
    let every = a.print_every.unwrap_or(match a.rng {
        RngArg::Python => 1,
        RngArg::Pcg => 100,
    });
    let start = Instant::now();
    train::train(
        model.as_mut(),
        &data.train,
        &settings.recipe,
        (0, steps, steps),
        |_, step, loss, _| {
            let s = step + 1;
            if s == 1 || s == steps || s % every == 0 {
                say!("step {s:4} / {steps:4} | loss {loss:.4}");
            }
        },
    )?;
    let elapsed = start.elapsed().as_secs_f64();
    say!(
        "training time: {:.1} ms ({} engine, {:.1} µs/step)",
        elapsed * 1e3,
        engine.name(),
        elapsed * 1e6 / steps as f64
    );

    say!("\n--- inference (new, hallucinated names) ---");
    let mut probs = vec![0.0; data.tok.vocab_size()];
    let mut ids = Vec::with_capacity(model.shape().block_size);
    for i in 0..a.num_samples {
        if !console::is_open() {
            break;
        }
        sample::generate(
            model.as_mut(),
            data.tok.bos(),
            &[],
            &sampling,
            &mut rng,
            &mut probs,
            &mut ids,
        );
        say!("sample {:2}: {}", i + 1, data.tok.decode(&ids));
    }
    Ok(())
}

fn run_train(a: TrainArgs) -> Result<()> {
    interrupt::install()?;
    let (settings, start, recipe) = match &a.resume {
        Some(path) => resumed_settings(&a, path)?,
        None => fresh_settings(&a)?,
    };
    let stop_at = match (&start, a.steps) {
        (Start::Resume(_), Some(s)) => s,
        (Start::Resume(_), None) => settings.total_steps,
        (_, s) => s.unwrap_or(recipe.steps),
    };
    let save = if a.no_save {
        Save::Nothing
    } else if let Some(p) = a.out {
        Save::Named(p)
    } else {
        Save::Default(PathBuf::from(format!("{}.safetensors", settings.preset)))
    };
    // the dynamic engine reads any checkpoint in f64 (an f32 one exactly)
    let precision = match (a.float, &start) {
        (Some(f), _) => f.into(),
        (None, Start::Resume(c) | Start::Init(c)) if a.engine == EngineArg::Static => {
            session::checkpoint_precision(c)?
        }
        (None, _) => Precision::F64,
    };
    let opts = TrainOptions {
        engine: engine_of(a.engine, precision)?,
        data: a.data,
        stop_at,
        print_every: a.print_every.unwrap_or(recipe.print_every),
        eval_every: a.eval_every.unwrap_or(recipe.eval_every),
        eval_docs: a.eval_docs,
        save,
        save_every: a.save_every,
        log: a.log,
        threads: a.threads,
        start_file: a.resume.or(a.init),
    };
    let mut lines = TrainLines {
        bar: !a.no_progress,
        progress: None,
    };
    session::run_train(&settings, start, &opts, &mut lines)?;
    Ok(())
}

/// `--resume`: the checkpoint's settings, whatever the preset's recipe says.
fn resumed_settings(
    a: &TrainArgs,
    path: &Path,
) -> Result<(Settings, Start, presets::PresetRecipe)> {
    let c = Checkpoint::load(path)?;
    let mut s = Settings::read_from(&c)?;
    if let Some(t) = a.total_steps {
        bail!(
            "--total-steps cannot change a resumed run's schedule ({} steps), got {t}",
            s.total_steps
        );
    }
    s.total_steps = s.total_steps.max(1);
    let recipe = presets::preset_recipe(&s.preset).unwrap_or(presets::MICRO_RECIPE);
    say!(
        "recipe: the checkpoint's ({})",
        describe_settings(
            &s,
            a.eval_every.unwrap_or(recipe.eval_every),
            a.print_every.unwrap_or(recipe.print_every)
        )
    );
    Ok((s, Start::Resume(c), recipe))
}

/// A new run (fresh or `--init`): the preset's recipe, with the flags given over it.
fn fresh_settings(a: &TrainArgs) -> Result<(Settings, Start, presets::PresetRecipe)> {
    let Some(recipe) = presets::preset_recipe(&a.model) else {
        bail!(
            "unknown model {:?}; compiled models: {}",
            a.model,
            presets::preset_names()
        );
    };
    let steps = a.steps.unwrap_or(recipe.steps);
    let total = a.total_steps.unwrap_or(steps);
    if total < steps {
        bail!("--total-steps {total} is shorter than --steps {steps}");
    }
    let r = &recipe.adam;
    let s = Settings {
        rng: a.rng.into(),
        preset: a.model.clone(),
        recipe: Recipe {
            seed: a.seed,
            adam: Adam {
                lr: a.lr.unwrap_or(r.lr),
                beta1: a.beta1.unwrap_or(r.beta1),
                beta2: a.beta2.unwrap_or(r.beta2),
                eps: r.eps,
                weight_decay: a.weight_decay.unwrap_or(r.weight_decay),
                // a recipe's warm-up is for a run of its own length: a shorter run warms
                // up over all of it at most (a --warmup longer than the run is an error)
                warmup: a.warmup.unwrap_or(r.warmup.min(total)),
                schedule: match a.schedule {
                    Some(ScheduleArg::Linear) => Schedule::Linear,
                    Some(ScheduleArg::Cosine) => Schedule::Cosine,
                    None => r.schedule,
                },
                min_lr_fraction: a.min_lr_fraction.unwrap_or(r.min_lr_fraction),
            },
            batch_size: a.batch_size.unwrap_or(recipe.batch_size),
            dropout: a.dropout.unwrap_or(recipe.dropout),
            ema: a.ema.unwrap_or(recipe.ema),
            token_mean: a.token_mean.unwrap_or(recipe.token_mean),
            reshuffle: a.reshuffle.unwrap_or(recipe.reshuffle),
        },
        total_steps: total,
        val_fraction: a.val_fraction.unwrap_or(recipe.val_fraction),
        val_max: Some(a.val_max),
    };
    say!("recipe: {} ({recipe}){}", a.model, overrides(a));
    let start = match &a.init {
        Some(p) => Start::Init(Checkpoint::load(p)?),
        None => Start::Fresh,
    };
    Ok((s, start, recipe))
}

/// A `train` run's [`Event`]s as lines: results on stdout, warnings on stderr, and the
/// progress bar on stderr when it is a terminal (and not `--no-progress`).
struct TrainLines {
    bar: bool,
    /// The bar (or, off, the loss average); from the run's first step on.
    progress: Option<Progress>,
}

impl TrainLines {
    /// A line on stdout that does not tear the bar.
    fn println(&self, line: String) {
        match &self.progress {
            Some(p) => p.println(line),
            None => console::line(line),
        }
    }
}

impl Report for TrainLines {
    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Begin(o) => {
                print_outline(o);
                self.progress = Some(Progress::new(o.steps, self.bar));
            }
            Event::Step { done, loss, tokens } => {
                if let Some(p) = &mut self.progress {
                    p.update(done, loss, tokens);
                }
            }
            Event::Loss { step, total, loss } => {
                self.println(format!("step {step:4} / {total:4} | loss {loss:.4}"));
            }
            Event::ValLoss {
                step,
                total,
                loss,
                sample,
                ema,
            } => {
                let notes: Vec<String> = [
                    ema.map(|d| format!("EMA {d} weights")),
                    sample.map(|n| format!("sample of {n}")),
                ]
                .into_iter()
                .flatten()
                .collect();
                let note = if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join(", "))
                };
                self.println(format!(
                    "step {step:4} / {total:4} | val loss {loss:.4}{note}"
                ));
            }
            Event::SaveFailed { step, error } => {
                let warn = || {
                    console::warn(format!(
                        "warning: step {step}: {error}; training goes on, the next save will try again"
                    ))
                };
                match &self.progress {
                    Some(p) => p.suspend(warn),
                    None => warn(),
                }
            }
            Event::Trained {
                secs,
                steps,
                tokens,
            } => {
                if let Some(p) = &mut self.progress {
                    p.finish();
                }
                say!(
                    "training time: {} ({steps} steps, {:.0} tokens/s)",
                    human_time(secs),
                    tokens as f64 / secs
                );
            }
            Event::Saved { path, step, total } => {
                say!("saved {} (step {step} of {total})", path.display());
            }
            Event::Interrupted {
                signal,
                step,
                total,
                saved,
            } => console::warn(match saved {
                Some(out) => format!(
                    "interrupted by {} after step {step} of {total}: saved {}; continue with `microgpt train --resume {}`",
                    signal.name(),
                    out.display(),
                    out.display()
                ),
                None => format!(
                    "interrupted by {} after step {step} of {total}: nothing saved (--no-save)",
                    signal.name()
                ),
            }),
            Event::WroteCurve { csv, svg } => {
                say!("wrote {} and {}", csv.display(), svg.display());
            }
        }
    }
}

/// The lines before a run's first step: the data, the model, the validation and the
/// checkpoint it will write.
fn print_outline(o: &Outline) {
    say!("num docs: {}", o.num_docs);
    say!("vocab size: {}", o.vocab_size);
    say!("num params: {}", o.num_params);
    say!(
        "model: {} ({} engine), train docs: {}, val docs: {}, batch size: {}",
        o.preset,
        o.engine.name(),
        o.train_docs,
        o.val_docs,
        o.batch_size
    );
    if o.first_step > 0 {
        say!("resuming at step {}", o.first_step);
    }
    if o.val_docs > 0 {
        let threads = if o.eval_threads == 1 {
            "1 thread".to_string()
        } else {
            format!("{} threads", o.eval_threads)
        };
        match o.val_sample {
            None => say!(
                "validation: all {} held-out docs every {} steps and at the end ({threads})",
                o.val_docs,
                o.eval_every
            ),
            Some(n) => say!(
                "validation: every {} steps on a fixed sample of {n} of the {} held-out docs, at the end on all of them ({threads})",
                o.eval_every,
                o.val_docs
            ),
        }
    }
    match (o.save, o.out) {
        (Save::Default(p), Some(out)) if out != p => say!(
            "checkpoint: {} at the end ({} exists; --out PATH to choose, --no-save for none)",
            out.display(),
            p.display()
        ),
        (Save::Default(_), Some(out)) => say!(
            "checkpoint: {} at the end (--out PATH to choose, --no-save for none)",
            out.display()
        ),
        (Save::Named(_), Some(out)) => say!("checkpoint: {} at the end", out.display()),
        _ => say!("checkpoint: none (--no-save)"),
    }
}

/// `12.3 ms`, `4.56 s` or `3 min 12 s`.
fn human_time(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.1} ms", secs * 1e3)
    } else if secs < 120.0 {
        format!("{secs:.2} s")
    } else {
        format!("{} min {:.0} s", (secs / 60.0).floor(), secs % 60.0)
    }
}

/// `; given: --lr 0.001, --steps 100`: the recipe's settings that flags replaced.
fn overrides(a: &TrainArgs) -> String {
    let mut given = Vec::new();
    let mut note = |flag: &str, v: Option<String>| {
        if let Some(v) = v {
            given.push(format!("{flag} {v}"));
        }
    };
    note("--steps", a.steps.map(|v| v.to_string()));
    note("--batch-size", a.batch_size.map(|v| v.to_string()));
    note("--lr", a.lr.map(|v| v.to_string()));
    note("--beta1", a.beta1.map(|v| v.to_string()));
    note("--beta2", a.beta2.map(|v| v.to_string()));
    note("--weight-decay", a.weight_decay.map(|v| v.to_string()));
    note("--warmup", a.warmup.map(|v| v.to_string()));
    note(
        "--schedule",
        a.schedule.map(|v| match v {
            ScheduleArg::Linear => "linear".to_string(),
            ScheduleArg::Cosine => "cosine".to_string(),
        }),
    );
    note(
        "--min-lr-fraction",
        a.min_lr_fraction.map(|v| v.to_string()),
    );
    note("--dropout", a.dropout.map(|v| v.to_string()));
    note("--ema", a.ema.map(|v| v.to_string()));
    note("--token-mean", a.token_mean.map(|v| v.to_string()));
    note("--reshuffle", a.reshuffle.map(|v| v.to_string()));
    note("--val-fraction", a.val_fraction.map(|v| v.to_string()));
    note("--eval-every", a.eval_every.map(|v| v.to_string()));
    note("--print-every", a.print_every.map(|v| v.to_string()));
    if given.is_empty() {
        String::new()
    } else {
        format!("; given: {}", given.join(", "))
    }
}

/// A resumed run's settings in the recipe's terms (the intervals are this run's).
fn describe_settings(s: &Settings, eval_every: usize, print_every: usize) -> String {
    let r = &s.recipe;
    let recipe = presets::PresetRecipe {
        adam: r.adam,
        batch_size: r.batch_size,
        dropout: r.dropout,
        ema: r.ema,
        token_mean: r.token_mean,
        reshuffle: r.reshuffle,
        steps: s.total_steps,
        val_fraction: s.val_fraction,
        eval_every,
        print_every,
    };
    format!("{}, {recipe}", s.preset)
}

fn run_sample(a: &SampleArgs) -> Result<()> {
    let c = checkpoint_as(&a.checkpoint, a.float)?;
    let sampling = Sampling {
        temperature: a.temperature,
        top_k: a.top_k,
    };
    let seen = if a.mark_seen {
        Some(session::training_docs(&c, None)?)
    } else {
        None
    };
    // each sample is printed as it is drawn; a closed stdout ends the drawing
    session::each_sample(
        &c,
        a.num_samples,
        &sampling,
        a.seed,
        a.rng.into(),
        &a.prompt,
        |s| {
            let mark = match &seen {
                Some(set) if set.contains(s) => " *",
                _ => "",
            };
            say!("{s}{mark}");
            if console::is_open() {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        },
    )?;
    if let Some(set) = &seen {
        say!("(* = one of the {} distinct training documents)", set.len());
    }
    Ok(())
}

fn run_eval(a: &EvalArgs) -> Result<()> {
    let c = checkpoint_as(&a.checkpoint, a.float)?;
    let (loss, tokens, docs) = session::run_eval(&c, &a.data)?;
    say!("loss {loss:.4} ({tokens} tokens, {docs} docs)");
    Ok(())
}

fn run_baseline(a: &BaselineArgs) -> Result<()> {
    if !(a.val_fraction > 0.0 && a.val_fraction < 1.0) {
        bail!("--val-fraction must be in (0, 1), got {}", a.val_fraction);
    }
    let mut rng = Rng::new(a.rng.into(), a.seed);
    let source = Source::new(a.data.as_deref());
    let data = Dataset::load(&source, &mut rng, a.val_fraction, Some(a.val_max), None)?;
    let Some(loss) = session::bigram_baseline(&data)? else {
        bail!("no validation documents to score the baseline on");
    };
    let tokens: usize = data.val.iter().map(|d| d.len() - 1).sum();
    say!(
        "bigram baseline (add-one smoothing), fit on {} train docs: val loss {loss:.4} ({tokens} tokens, {} docs)",
        data.train.len(),
        data.val.len()
    );
    Ok(())
}
