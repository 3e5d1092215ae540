//! The `microgpt` binary end to end: the classic run's output, and every kind of bad input
//! getting one clear line on stderr and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn microgpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_microgpt"))
        .args(args)
        .output()
        .expect("run microgpt")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("microgpt-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tmp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = tmp_dir("files").join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Asserts a failed run: non-zero exit, nothing on stdout that looks like a panic, and exactly
/// one line on stderr containing `what`.
fn assert_one_line_error(o: &Output, what: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "exit status {:?}; stderr: {err}",
        o.status
    );
    assert_eq!(err.lines().count(), 1, "stderr is not one line:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(what), "expected {what:?} in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

#[test]
fn classic_run_prints_what_microgpt_py_prints() {
    for engine in ["dynamic", "static"] {
        let o = microgpt(&["--steps", "30", "--engine", engine]);
        let out = stdout(&o);
        assert!(o.status.success(), "{engine}: {}", stderr(&o));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "num docs: 32033");
        assert_eq!(lines[1], "vocab size: 27");
        assert_eq!(lines[2], "num params: 4192");
        assert!(
            lines[3].starts_with("step    1 /   30 | loss 3."),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].starts_with("step   30 /   30 | loss "),
            "{}",
            lines[4]
        );
        assert!(lines[5].starts_with("training time: "), "{}", lines[5]);
        assert!(lines.contains(&"--- inference (new, hallucinated names) ---"));
        let samples: Vec<&&str> = lines.iter().filter(|l| l.starts_with("sample ")).collect();
        assert_eq!(samples.len(), 20);
        assert!(samples[0].starts_with("sample  1: "));
        assert!(samples[19].starts_with("sample 20: "));
    }
}

#[test]
fn help_documents_every_flag_and_the_truncation() {
    let o = microgpt(&["--help"]);
    assert!(o.status.success());
    let h = stdout(&o);
    for flag in [
        "--data",
        "--steps",
        "--seed",
        "--lr",
        "--temperature",
        "--num-samples",
        "--engine",
        "--rng",
    ] {
        assert!(h.contains(flag), "--help lacks {flag}");
    }
    assert!(
        h.contains("truncated"),
        "--help does not say long documents are truncated"
    );
}

#[test]
fn bad_input_is_one_line_and_a_nonzero_exit() {
    let names = concat!(env!("CARGO_MANIFEST_DIR"), "/data/names.txt");
    let empty = tmp_file("empty.txt", b"\n \r\n\n");
    let latin1 = tmp_file("latin1.txt", b"ren\xe9e\nemma\n");
    let dir = tmp_dir("a-directory");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--data", "/nonexistent/names.txt"],
            "/nonexistent/names.txt",
        ),
        (vec!["--data", dir.to_str().unwrap()], "cannot read dataset"),
        (vec!["--data", empty.to_str().unwrap()], "no documents"),
        (vec!["--data", latin1.to_str().unwrap()], "not valid UTF-8"),
        (vec!["--data", names, "--steps", "0"], "at least 1"),
        (vec!["--data", names, "--steps", "-5"], "--steps"),
        (vec!["--data", names, "--temperature", "-1"], "temperature"),
        (vec!["--data", names, "--temperature", "nan"], "temperature"),
        (vec!["--data", names, "--lr", "0"], "--lr"),
        (vec!["--data", names, "--engine", "gpu"], "possible values"),
        (vec!["--data", names, "--bogus"], "--bogus"),
    ];
    for (args, what) in cases {
        let o = microgpt(&args);
        assert_one_line_error(&o, what);
    }
}

#[test]
fn the_default_run_needs_no_file_beside_it() {
    // from a directory with no data/ (as after `cargo install`): the built-in names.txt, and
    // the same run as from the repository, whose data/names.txt is the same bytes
    let dir = tmp_dir("nodata").join("deeper");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(!dir.join("data").exists());
    let run = |cwd: &Path, extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_microgpt"))
            .current_dir(cwd)
            .args(["--steps", "5", "--num-samples", "3"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(stderr(&o).is_empty(), "{}", stderr(&o));
        // everything but the timing
        out.lines()
            .filter(|l| !l.starts_with("training time"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let built_in = run(&dir, &[]);
    assert_eq!(
        built_in[..3],
        ["num docs: 32033", "vocab size: 27", "num params: 4192"]
    );
    // microgpt.py's first loss is ln 27 ≈ 3.2958 give or take the initial weights; the
    // binary's seed-42 stream gives this one (as the full-length run in the README)
    assert_eq!(built_in[3], "step    1 /    5 | loss 3.2811");
    let names = concat!(env!("CARGO_MANIFEST_DIR"), "/data/names.txt");
    assert_eq!(built_in, run(&dir, &["--data", names]));
    // nothing was written where it ran
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn documents_longer_than_the_block_are_truncated_not_rejected() {
    let long = tmp_file(
        "long.txt",
        b"abcdefghijklmnopqrstuvwxyzabcdefghij\nshort\nabcdefghijklmnopqrstuvwxyz\n",
    );
    let o = microgpt(&["--data", long.to_str().unwrap(), "--steps", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("num docs: 3"));
}
