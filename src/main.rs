//! The `microgpt` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};

use microgpt::config::Shape;
use microgpt::data::{self, EncodedDocs, Tokenizer};
use microgpt::error::Result;
use microgpt::model::MicroGpt;
use microgpt::optim::Adam;
use microgpt::reference::Reference;
use microgpt::rng::{Rng, RngKind};
use microgpt::sample::{self, Sampling};
use microgpt::train::{self, Engine};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineKind {
    /// Const-generic arrays with hand-written derivatives.
    Static,
    /// The scalar autograd tape: microgpt.py's algorithm node by node.
    Dynamic,
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
/// With no arguments this is microgpt.py's run: 1,000 steps on data/names.txt (or
/// ../shared/data/names.txt), one document per step, then 20 samples at temperature 0.5.
/// Documents longer than the block size (16) are truncated to their first 16 positions,
/// as in microgpt.py.
#[derive(Debug, Parser)]
#[command(
    name = "microgpt",
    version,
    about,
    long_about,
    allow_negative_numbers = true
)]
struct Cli {
    #[command(flatten)]
    demo: DemoArgs,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Dataset: a UTF-8 text file, one document per line [default: data/names.txt, else ../shared/data/names.txt]
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Training steps (one document each)
    #[arg(long, default_value_t = 1000, value_parser = positive)]
    steps: u64,
    /// Seed of the random stream (shuffle, initial weights, samples)
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Adam's learning rate (decays linearly to 0)
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    lr: f64,
    /// Sampling temperature; 0 = greedy (always the most likely character)
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    temperature: f64,
    /// Number of samples to draw after training
    #[arg(long, default_value_t = 20)]
    num_samples: usize,
    /// Engine that trains and samples
    #[arg(long, value_enum, default_value_t = EngineKind::Static)]
    engine: EngineKind,
    /// Random stream: `python` reproduces microgpt.py's output exactly
    #[arg(long, value_enum, default_value_t = RngArg::Pcg)]
    rng: RngArg,
    /// Print the loss every N steps (and at the first and last) [default: 1 with --rng python, else 100]
    #[arg(long, value_name = "N", value_parser = positive)]
    print_every: Option<u64>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    match run_demo(&cli.demo) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--help` and `--version` print as clap prints them; any other command-line mistake is one
/// line on stderr (clap's first line, which names the problem) and exit code 2.
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
    eprintln!("{} (see --help)", parts.join(" "));
    ExitCode::from(2)
}

/// A count of at least 1.
fn positive(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

fn run_demo(a: &DemoArgs) -> Result<()> {
    let sampling = Sampling {
        temperature: a.temperature,
        top_k: None,
    };
    if !(a.lr > 0.0 && a.lr.is_finite()) {
        microgpt::bail!("--lr must be a positive number, got {}", a.lr);
    }
    if !(a.temperature > 0.0 && a.temperature.is_finite()) && a.temperature != 0.0 {
        microgpt::bail!(
            "--temperature must be a positive number (or 0 for greedy), got {}",
            a.temperature
        );
    }
    let path = match &a.data {
        Some(p) => p.clone(),
        None => data::default_data_path()?,
    };
    let mut docs = data::load_docs(&path)?;
    let mut rng = Rng::new(a.rng.into(), a.seed);
    data::shuffle_docs(&mut docs, &mut rng);
    let tok = Tokenizer::from_docs(&docs);
    let encoded = EncodedDocs::new(&tok, &docs)?;
    sampling.validate(tok.vocab_size())?;
    println!("num docs: {}", docs.len());
    println!("vocab size: {}", tok.vocab_size());

    let shape = Shape::micro(tok.vocab_size());
    let mut model: Box<dyn Engine> = match a.engine {
        EngineKind::Dynamic => Box::new(Reference::new(shape, &mut rng)?),
        EngineKind::Static => Box::new(MicroGpt::new(tok.vocab_size(), &mut rng)?),
    };
    println!("num params: {}", model.num_params());

    let steps = a.steps as usize;
    let every = a.print_every.unwrap_or(match a.rng {
        RngArg::Python => 1,
        RngArg::Pcg => 100,
    }) as usize;
    let adam = Adam {
        lr: a.lr,
        ..Adam::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let start = Instant::now();
    train::train(model.as_mut(), &encoded, &adam, 0, steps, |step, loss| {
        let s = step + 1;
        if s == 1 || s == steps || s % every == 0 {
            let _ = writeln!(out, "step {s:4} / {steps:4} | loss {loss:.4}");
        }
    });
    let elapsed = start.elapsed();
    let _ = writeln!(
        out,
        "training time: {:.1} ms ({} engine, {:.1} µs/step)",
        elapsed.as_secs_f64() * 1e3,
        match a.engine {
            EngineKind::Static => "static",
            EngineKind::Dynamic => "dynamic",
        },
        elapsed.as_secs_f64() * 1e6 / steps as f64
    );

    let _ = writeln!(out, "\n--- inference (new, hallucinated names) ---");
    let mut probs = vec![0.0; tok.vocab_size()];
    let mut ids = Vec::with_capacity(shape.block_size);
    for i in 0..a.num_samples {
        sample::generate(
            model.as_mut(),
            tok.bos(),
            &[],
            &sampling,
            &mut rng,
            &mut probs,
            &mut ids,
        );
        let _ = writeln!(out, "sample {:2}: {}", i + 1, tok.decode(&ids));
    }
    let _ = out.flush();
    Ok(())
}
