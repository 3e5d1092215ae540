//! Faults and bad input end to end, as a demanding user meets them: outputs that are devices,
//! FIFOs or links; corrupted, non-finite or unprintable checkpoints; a process killed in the
//! middle of a save; a diverging run. Each test states what must hold and fails if it does not:
//! no panic, no abort, no destroyed file, no lost training.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use microgpt::checkpoint::{self, Checkpoint};
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

fn microgpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_microgpt"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run microgpt")
}

/// `microgpt train --data DATA --model micro --no-progress`, for a child the test drives.
fn micro_train(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_microgpt"));
    cmd.args([
        "train",
        "--data",
        s(data),
        "--model",
        "micro",
        "--no-progress",
    ]);
    cmd
}

/// A fresh, empty directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("faults")
        .join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small dataset (a few hundred made-up names of 3-7 letters) in `dir`: quick to load.
fn names(dir: &Path) -> PathBuf {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut text = String::new();
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 3 + (x % 5) as usize;
        let name: String = (0..len)
            .map(|i| (b'a' + ((x >> (5 * i + 8)) % 26) as u8) as char)
            .collect();
        text.push_str(&name);
        text.push('\n');
    }
    let p = dir.join("names.txt");
    fs::write(&p, text).unwrap();
    p
}

/// `train` on `data` for `steps` steps with `extra` arguments.
fn train(data: &Path, steps: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--data",
        s(data),
        "--model",
        "micro",
        "--steps",
        steps,
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    microgpt(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Failed, with exactly one line on stderr, no panic; returns that line.
fn one_line_error(o: &Output) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "succeeded; stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr is not one line:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[cfg(unix)]
fn file_kind(p: &Path) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = fs::symlink_metadata(p).unwrap().file_type();
    if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "char device"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_file() {
        "file"
    } else {
        "other"
    }
}

// ---- outputs that are not regular files ----

/// A FIFO as `--out` stays a FIFO, and the run fails with one line (nothing blocks on it).
#[cfg(unix)]
#[test]
fn a_fifo_as_out_is_refused_and_left_a_fifo() {
    let dir = scratch("fifo");
    let data = names(&dir);
    let fifo = dir.join("out.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mkfifo is not available here");
        return;
    }
    for flag in ["--out", "--log"] {
        let o = train(&data, "3", &[flag, s(&fifo)]);
        let err = one_line_error(&o);
        assert!(err.contains("FIFO"), "{flag}: {err}");
        assert_eq!(file_kind(&fifo), "fifo", "{flag}");
    }
}

/// A character device (a copy of /dev/null made with mknod) as `--out` stays a device.
#[cfg(unix)]
#[test]
fn a_device_as_out_is_refused_and_left_a_device() {
    let dir = scratch("device");
    let data = names(&dir);
    let dev = dir.join("null");
    let made = Command::new("mknod")
        .arg(&dev)
        .args(["c", "1", "3"])
        .stderr(Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mknod is not allowed here (not root, or no CAP_MKNOD)");
        return;
    }
    let o = train(&data, "3", &["--out", s(&dev)]);
    let err = one_line_error(&o);
    assert!(err.contains("character device"), "{err}");
    assert_eq!(file_kind(&dev), "char device");
}

/// A symbolic link as `--out`: its target is replaced, the link stays a link (and a link to a
/// FIFO is refused like the FIFO).
#[cfg(unix)]
#[test]
fn a_symlink_as_out_replaces_its_target_and_stays_a_link() {
    let dir = scratch("symlink");
    let data = names(&dir);
    let target = dir.join("real.safetensors");
    fs::write(&target, b"old contents").unwrap();
    let link = dir.join("link.safetensors");
    std::os::unix::fs::symlink("real.safetensors", &link).unwrap();
    let o = train(&data, "3", &["--out", s(&link)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(file_kind(&link), "symlink");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("real.safetensors"));
    let c = Checkpoint::load(&target).expect("the target is the new checkpoint");
    assert_eq!(c.step().unwrap(), 3);

    // a dangling link: its target is created
    let dangling = dir.join("dangling.safetensors");
    std::os::unix::fs::symlink("created.safetensors", &dangling).unwrap();
    let o = train(&data, "2", &["--out", s(&dangling)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(file_kind(&dangling), "symlink");
    assert!(Checkpoint::load(&dir.join("created.safetensors")).is_ok());

    // a link to a FIFO is a FIFO
    let fifo = dir.join("p.fifo");
    if Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        let to_fifo = dir.join("to_fifo.safetensors");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        let err = one_line_error(&train(&data, "2", &["--out", s(&to_fifo)]));
        assert!(err.contains("FIFO"), "{err}");
        assert_eq!(file_kind(&fifo), "fifo");
    }
}

// ---- path identity ----

/// Two names of one file are one file: the same path spelled differently, a symbolic link, a
/// hard link; a file and a path that does not exist yet in the same place, too.
#[cfg(unix)]
#[test]
fn same_file_sees_through_spellings_and_links() {
    use microgpt::io::{check_distinct, same_file};
    let dir = scratch("same_file");
    let a = dir.join("a.txt");
    fs::write(&a, b"a").unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    let spelled = dir.join("sub").join("..").join("a.txt");
    let soft = dir.join("soft.txt");
    std::os::unix::fs::symlink("a.txt", &soft).unwrap();
    let hard = dir.join("hard.txt");
    fs::hard_link(&a, &hard).unwrap();
    for b in [&spelled, &soft, &hard, &a] {
        assert!(same_file(&a, b), "{}", b.display());
    }
    let other = dir.join("b.txt");
    fs::write(&other, b"b").unwrap();
    assert!(!same_file(&a, &other));
    // not yet existing: by resolved path
    let new = dir.join("new.csv");
    assert!(same_file(&new, &dir.join("sub").join("..").join("new.csv")));
    assert!(!same_file(&new, &dir.join("new.svg")));
    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink("new.csv", &dangling).unwrap();
    assert!(same_file(&new, &dangling));

    let err = check_distinct(&[("--out", &soft), ("--log", &other)], &[("--data", &a)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--out") && err.contains("--data"), "{err}");
    let err = check_distinct(&[("--log", &new), ("the plot", &dangling)], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("the same file"), "{err}");
    assert!(check_distinct(&[("--out", &new), ("--log", &other)], &[("--data", &a)]).is_ok());
}

// ---- checkpoint integrity ----

/// A good checkpoint of a 3-step run, written into `dir`.
fn good_checkpoint(dir: &Path) -> PathBuf {
    let data = names(dir);
    let out = dir.join("good.safetensors");
    let o = train(&data, "3", &["--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

type Tensors = BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>;
type Meta = BTreeMap<String, String>;

/// The file re-serialized after `edit`; with `fix_checksum` its checksum is recomputed, so
/// that what is tested is the check after it.
fn rewrite(path: &Path, fix_checksum: bool, edit: impl FnOnce(&mut Tensors, &mut Meta)) -> Vec<u8> {
    let bytes = fs::read(path).unwrap();
    let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, (t.dtype(), t.shape().to_vec(), t.data().to_vec())))
        .collect();
    let mut meta: Meta = md.metadata().clone().unwrap().into_iter().collect();
    edit(&mut tensors, &mut meta);
    if fix_checksum {
        // a BTreeMap iterates in the sorted name order the checksum is defined over
        let sum = checkpoint::checksum(tensors.iter().map(|(n, (_, _, b))| (n.as_str(), &b[..])));
        meta.insert(
            checkpoint::CHECKSUM_KEY.into(),
            format!("fnv1a64w:{sum:016x}"),
        );
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, Some(meta.into_iter().collect())).unwrap()
}

/// `eval` of a checkpoint: one line naming it, containing `words`.
fn eval_refuses(dir: &Path, ckpt: &Path, words: &str) {
    let data = dir.join("names.txt");
    let o = microgpt(&["eval", "--checkpoint", s(ckpt), "--data", s(&data)]);
    let err = one_line_error(&o);
    assert!(err.contains(words), "want {words:?} in {err}");
    assert!(err.contains(s(ckpt)), "{err}");
}

#[test]
fn a_flipped_tensor_byte_is_refused() {
    let dir = scratch("flipped");
    let good = good_checkpoint(&dir);
    let bytes = fs::read(&good).unwrap();
    let (n, _) = SafeTensors::read_metadata(&bytes).unwrap();
    let data_start = 8 + n;
    for (i, pos) in [data_start, (data_start + bytes.len()) / 2, bytes.len() - 1]
        .into_iter()
        .enumerate()
    {
        let mut b = bytes.clone();
        b[pos] ^= 0x10;
        let bad = dir.join(format!("flipped{i}.safetensors"));
        fs::write(&bad, &b).unwrap();
        eval_refuses(&dir, &bad, "checksum");
    }
    // an old file (no checksum) with the same flip still loads: the key is optional
    let old = rewrite(&good, false, |_, m| {
        drop(m.remove(checkpoint::CHECKSUM_KEY))
    });
    let path = dir.join("old.safetensors");
    fs::write(&path, &old).unwrap();
    assert!(Checkpoint::load(&path).is_ok(), "an old-format file loads");
    let (n, _) = SafeTensors::read_metadata(&old).unwrap();
    let mut b = old.clone();
    b[8 + n + 3] ^= 0x01; // a low mantissa bit: the number stays finite
    fs::write(&path, &b).unwrap();
    assert!(
        Checkpoint::load(&path).is_ok(),
        "no checksum, nothing to catch it"
    );
}

#[test]
fn nan_and_infinite_weights_are_refused() {
    let dir = scratch("nan");
    let good = good_checkpoint(&dir);
    for (i, (tensor, value)) in [
        ("wte", f64::NAN),
        ("layer0.mlp_fc2", f64::INFINITY),
        ("adam.v.lm_head", f64::NAN),
    ]
    .into_iter()
    .enumerate()
    {
        let bytes = rewrite(&good, true, |t, _| {
            let (_, _, b) = t.get_mut(tensor).unwrap();
            b[8..16].copy_from_slice(&value.to_le_bytes());
        });
        let bad = dir.join(format!("bad{i}.safetensors"));
        fs::write(&bad, bytes).unwrap();
        eval_refuses(&dir, &bad, &format!("tensor `{tensor}` holds {value}"));
    }
}

#[test]
fn unprintable_vocabulary_characters_are_refused() {
    let dir = scratch("vocab");
    let good = good_checkpoint(&dir);
    let vocab = Checkpoint::load(&good).unwrap().chars;
    for c in ['\n', '\t', '\u{1b}', '\0'] {
        // the same length, still sorted: only the character's kind is wrong
        let v: String = std::iter::once(c)
            .chain(vocab[1..].iter().copied())
            .collect();
        let bytes = rewrite(&good, true, |_, m| drop(m.insert("vocab".into(), v)));
        let bad = dir.join("bad.safetensors");
        fs::write(&bad, bytes).unwrap();
        eval_refuses(&dir, &bad, "control character");
        let o = microgpt(&["sample", "--checkpoint", s(&bad), "--num-samples", "3"]);
        one_line_error(&o);
        assert!(o.stdout.is_empty(), "nothing printed");
    }
}

// ---- killed saves ----

/// The temporary files of `name` in `dir`.
fn temporaries(dir: &Path, name: &str) -> Vec<String> {
    let prefix = format!(".{name}.tmp-");
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    v.sort();
    v
}

/// `kill -9` at random moments of a run that saves after every step: each time, the checkpoint
/// on disk loads (old or new, never half-written), and the next save removes the temporary
/// files the killed processes left.
#[test]
fn kill_9_during_frequent_saves_leaves_a_loadable_checkpoint() {
    let dir = scratch("kill9");
    let data = names(&dir);
    let out = dir.join("run.safetensors");
    let mut x: u64 = 12345;
    let mut left = 0;
    let mut round = 0;
    // at least 6 kills, and until one of them has caught a save half-way (a temporary file
    // left behind), which the last run must then clean up
    while round < 6 || (left == 0 && round < 40) {
        round += 1;
        let mut child = Command::new(env!("CARGO_BIN_EXE_microgpt"))
            .args([
                "train",
                "--data",
                s(&data),
                "--model",
                "small",
                "--no-progress",
            ])
            .args(["--steps", "100000", "--save-every", "1", "--out", s(&out)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !out.exists() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(out.exists(), "round {round}: no checkpoint after 60 s");
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(20 + (x >> 33) % 200));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let c = Checkpoint::load(&out)
            .unwrap_or_else(|e| panic!("round {round}: the checkpoint does not load: {e}"));
        assert!(c.step().unwrap() >= 1);
        left += temporaries(&dir, "run.safetensors").len();
    }
    println!("{left} temporary files left by {round} kills");
    assert!(left > 0, "no kill caught a save in progress");
    // one more (short) run writes the file again: the dead writers' temporaries go
    let o = train(&data, "2", &["--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(temporaries(&dir, "run.safetensors"), Vec::<String>::new());
}

/// Temporaries of a live process are kept; of a dead one (or of a dead process that had this
/// process's PID) removed; files that only look similar are never touched.
#[test]
fn only_temporaries_of_dead_writers_are_removed() {
    let dir = scratch("stale");
    let me = std::process::id();
    // a PID above Linux's maximum (2^22) is no process
    let dead = 4_194_304 + 17;
    let names = [
        format!(".c.st.tmp-{dead}-0"),
        format!(".c.st.tmp-{me}-999999"),
        ".c.st.tmp-1-0".to_string(), // PID 1 is alive
        format!(".c.st.tmp-{dead}-x"),
        format!(".d.st.tmp-{dead}-0"),
        format!("c.st.tmp-{dead}-0"),
    ];
    for n in &names {
        fs::write(dir.join(n), b"x").unwrap();
    }
    let removed = microgpt::io::remove_stale_temporaries(&dir, "c.st");
    let mut left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut want: Vec<String> = names[2..].to_vec();
    want.sort();
    if Path::new("/proc/self").exists() {
        assert_eq!(removed, 2);
        assert_eq!(left, want);
    } else {
        eprintln!("no /proc: nothing can be known dead, so nothing is removed");
        assert_eq!(removed, 1, "only this process's own");
    }
}

// ---- diverging runs ----

/// `--lr 1e308` diverges: the run stops with one line that names the step, and the good
/// checkpoint already at `--out` is never replaced with non-finite weights.
#[test]
fn a_diverging_run_stops_naming_the_step_and_writes_no_nan() {
    let dir = scratch("diverge");
    let good = good_checkpoint(&dir);
    let before = fs::read(&good).unwrap();
    let data = dir.join("names.txt");
    let o = train(&data, "50", &["--lr", "1e308", "--out", s(&good)]);
    let err = one_line_error(&o);
    assert!(err.contains("step "), "{err}");
    assert!(err.contains("diverged"), "{err}");
    assert_eq!(
        fs::read(&good).unwrap(),
        before,
        "the good checkpoint is untouched"
    );

    // with a save at every step, what is on disk is always a finite, loadable checkpoint
    let o = train(
        &data,
        "50",
        &["--lr", "1e308", "--out", s(&good), "--save-every", "1"],
    );
    one_line_error(&o);
    let c = Checkpoint::load(&good).expect("whatever was saved loads");
    assert!(c.params.iter().all(|x| x.is_finite()));
}

// ---- path collisions and output checks, before any work ----

/// Every pair of a run's files that must differ: a one-line error at once, and every file
/// as it was.
#[test]
fn colliding_paths_are_refused_before_any_work() {
    let dir = scratch("collide");
    let data = names(&dir);
    let ck = good_checkpoint(&dir);
    let csv = dir.join("c.csv");
    fs::write(&csv, b"step\n").unwrap();
    let svg = dir.join("c.svg");
    let before = |p: &Path| fs::read(p).unwrap();
    let (data0, ck0, csv0) = (before(&data), before(&ck), before(&csv));
    let respelled = format!("{}/./names.txt", s(&dir));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--out", s(&data)], "--data"),
        (vec!["--log", s(&data)], "--data"),
        (vec!["--out", s(&csv), "--log", s(&csv)], "--log"),
        (vec!["--log", s(&svg)], "the plot beside --log"),
        (vec!["--init", s(&ck), "--out", s(&ck)], "--init"),
        (vec!["--init", s(&ck), "--log", s(&ck)], "--init"),
        // the same file under another name
        (vec!["--out", &respelled], "--data"),
    ];
    for (extra, words) in cases {
        let o = train(&data, "1000000000000", &extra);
        let err = one_line_error(&o);
        assert!(
            err.contains(words) && err.contains("same file"),
            "{extra:?}: {err}"
        );
    }
    let resume = |extra: &[&str]| {
        let mut args = vec!["train", "--resume", s(&ck), "--no-progress"];
        args.extend_from_slice(extra);
        microgpt(&args)
    };
    let err = one_line_error(&resume(&["--log", s(&ck)]));
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(before(&data), data0);
    assert_eq!(before(&ck), ck0);
    assert_eq!(before(&csv), csv0);
    assert!(!svg.exists());
    // --out may not be the --resume checkpoint either: the input of a run is not its output
    let part = dir.join("part.safetensors");
    let o = train(&data, "3", &["--total-steps", "10", "--out", s(&part)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let part0 = before(&part);
    let err = one_line_error(&microgpt(&[
        "train",
        "--resume",
        s(&part),
        "--out",
        s(&part),
        "--no-progress",
    ]));
    assert!(
        err.contains("--resume") && err.contains("same file"),
        "{err}"
    );
    assert_eq!(before(&part), part0);
}

/// `cmd` must end by itself within `limit` (it is killed and the test fails otherwise): a
/// check that hangs, not a timing.
fn finishes_within(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(limit);
        // harmless if it has exited (its PID is not reused while we have not waited on it)
        let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
    });
    let out = child.wait_with_output().unwrap();
    drop(watchdog);
    assert!(
        out.status.code().is_some(),
        "killed after {limit:?}: the check came too late"
    );
    out
}

/// An output that cannot be written fails a run of 10¹² steps at once, not after it.
#[test]
fn unwritable_outputs_fail_before_the_first_step() {
    let dir = scratch("unwritable");
    let data = names(&dir);
    let a_file = dir.join("plain.txt");
    fs::write(&a_file, b"x").unwrap();
    let sub = dir.join("sub");
    fs::create_dir(&sub).unwrap();
    let missing = dir.join("missing").join("x.safetensors");
    let under_file = a_file.join("x.csv");
    let cases: Vec<(&str, &Path, &str)> = vec![
        ("--out", &missing, "does not exist"),
        ("--out", &sub, "directory"),
        ("--log", &missing, "does not exist"),
        ("--log", &under_file, "not a directory"),
    ];
    for (flag, path, words) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_microgpt"));
        cmd.args([
            "train",
            "--data",
            s(&data),
            "--model",
            "micro",
            "--no-progress",
        ])
        .args(["--steps", "1000000000000", flag, s(path)]);
        let o = finishes_within(cmd, Duration::from_secs(30));
        let err = one_line_error(&o);
        assert!(
            err.to_lowercase().contains(words),
            "{flag} {}: {err}",
            path.display()
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(!out.contains("step "), "no step before the error: {out}");
    }
    assert!(sub.is_dir());
    // a read-only directory (root writes anyway, so only where the test is not root)
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        if fs::write(ro.join("probe"), b"").is_ok() {
            eprintln!("skipped the read-only directory: this user writes into it anyway (root)");
        } else {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_microgpt"));
            let out = ro.join("x.safetensors");
            cmd.args(["train", "--data", s(&data), "--no-progress"])
                .args(["--steps", "1000000000000", "--out", s(&out)]);
            let err = one_line_error(&finishes_within(cmd, Duration::from_secs(30)));
            assert!(err.contains("cannot"), "{err}");
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

// ---- interrupts ----

/// Sends `signal` (`INT`, `TERM`) to a long run once it has printed its first step.
fn interrupted_run(data: &Path, out: &Path, steps: &str, signal: &str) -> Output {
    use std::io::{BufRead, BufReader};
    let mut child = micro_train(data)
        .args([
            "--steps",
            steps,
            "--print-every",
            "1000000",
            "--eval-every",
            "1000000",
        ])
        .args(["--out", s(out)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("step    1 /") {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "ended early: {seen}"
        );
        seen.push_str(&line);
    }
    std::thread::sleep(Duration::from_millis(200));
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut o = child.wait_with_output().unwrap();
    o.stdout = (seen + &rest).into_bytes();
    o
}

/// A first SIGINT finishes the step, saves, says how to resume and exits 130; resuming from
/// that checkpoint ends bit-identical to a run that was never interrupted. SIGTERM: 143.
#[cfg(unix)]
#[test]
fn sigint_saves_and_the_resume_is_exact() {
    let dir = scratch("sigint");
    let data = names(&dir);
    let cut = dir.join("cut.safetensors");
    // far more steps than 200 ms can do, so the signal lands in the middle
    let steps = "2000000";
    let o = interrupted_run(&data, &cut, steps, "INT");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("SIGINT") && err.contains("--resume"), "{err}");
    assert!(err.contains(s(&cut)), "{err}");
    let c = Checkpoint::load(&cut).unwrap();
    let k: usize = c.step().unwrap();
    assert!((1..2_000_000).contains(&k), "stopped at step {k}");
    assert_eq!(temporaries(&dir, "cut.safetensors"), Vec::<String>::new());

    // resume to step k + 300, and compare with an uninterrupted run to the same step of the
    // same 2,000,000-step schedule
    let stop = (k + 300).to_string();
    let resumed = dir.join("resumed.safetensors");
    let o = microgpt(&[
        "train",
        "--resume",
        s(&cut),
        "--steps",
        &stop,
        "--out",
        s(&resumed),
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = dir.join("whole.safetensors");
    let o = train(
        &data,
        &stop,
        &[
            "--total-steps",
            steps,
            "--out",
            s(&whole),
            "--eval-every",
            "1000000",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (
        Checkpoint::load(&whole).unwrap(),
        Checkpoint::load(&resumed).unwrap(),
    );
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(a.step().unwrap(), b.step().unwrap());
    assert!(
        bits(&a.params) == bits(&b.params),
        "weights differ after the resume"
    );
    let (ma, mb) = (a.adam.unwrap(), b.adam.unwrap());
    assert!(
        bits(&ma.m) == bits(&mb.m) && bits(&ma.v) == bits(&mb.v),
        "Adam differs"
    );

    let term = dir.join("term.safetensors");
    let o = interrupted_run(&data, &term, steps, "TERM");
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    assert!(Checkpoint::load(&term).is_ok());
}

/// A periodic save that fails (here: the path is a directory for a while) is a warning; the
/// run goes on, and the final save, once the path is free again, succeeds.
#[cfg(unix)]
#[test]
fn a_failed_periodic_save_is_a_warning_and_the_final_save_happens() {
    let dir = scratch("periodic");
    let data = names(&dir);
    let out = dir.join("p.safetensors");
    let mut child = micro_train(&data)
        .args(["--steps", "2000000", "--save-every", "50", "--out", s(&out)])
        .args(["--print-every", "1000000", "--eval-every", "1000000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !out.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // the run saves every 50 steps, about every half millisecond, so a save can land between
    // the removal and the `mkdir`: remove and retry until the directory is in place
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fs::remove_file(&out) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{e}"),
            _ => {}
        }
        match fs::create_dir(&out) {
            Ok(()) => break,
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists && Instant::now() < deadline => {}
            Err(e) => panic!("{e}"),
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    fs::remove_dir(&out).unwrap();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("warning: step"), "{err}");
    assert!(Checkpoint::load(&out).is_ok(), "the final save: {err}");
}

// ---- stdout closed or full ----

/// `train … | head -1`: the reader goes away after one line; the run still finishes, saves
/// and succeeds.
#[test]
fn a_closed_stdout_stops_the_printing_not_the_run() {
    use std::io::{BufRead, BufReader};
    let dir = scratch("closed");
    let data = names(&dir);
    let out = dir.join("c.safetensors");
    let mut child = micro_train(&data)
        .args(["--steps", "3000", "--print-every", "1", "--out", s(&out)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // the reader is dropped here: stdout is a closed pipe
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(Checkpoint::load(&out).unwrap().step().unwrap(), 3000);

    // sample: a closed pipe ends the drawing of a billion samples at once
    let mut child = Command::new(env!("CARGO_BIN_EXE_microgpt"))
        .args([
            "sample",
            "--checkpoint",
            s(&out),
            "--num-samples",
            "1000000000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let id = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
    });
    let o = child.wait_with_output().unwrap();
    drop(watchdog);
    assert!(o.status.success(), "{:?} {}", o.status, stderr(&o));
}

/// stdout on a full disk (`/dev/full`): the checkpoint is saved, then one line and exit 1;
/// `eval` and `sample` fail the same way instead of exiting 0 having written nothing.
#[cfg(target_os = "linux")]
#[test]
fn a_full_stdout_is_an_error_after_the_checkpoint_is_saved() {
    let dir = scratch("full");
    let data = names(&dir);
    let out = dir.join("f.safetensors");
    let full = || Stdio::from(fs::File::create("/dev/full").unwrap());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_microgpt"))
            .args(args)
            .stdout(full())
            .output()
            .unwrap()
    };
    let o = run(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "micro",
        "--steps",
        "20",
        "--out",
        s(&out),
        "--no-progress",
    ]);
    let err = one_line_error(&o);
    assert!(err.contains("stdout"), "{err}");
    assert_eq!(Checkpoint::load(&out).unwrap().step().unwrap(), 20);
    for args in [
        vec!["eval", "--checkpoint", s(&out), "--data", s(&data)],
        vec!["sample", "--checkpoint", s(&out)],
        vec!["baseline", "--data", s(&data)],
    ] {
        let err = one_line_error(&run(&args));
        assert!(err.contains("stdout"), "{args:?}: {err}");
    }
}

// ---- memory bounded by the work ----

/// `cmd` under an address-space limit of `mib` MiB (prlimit), or `None` where prlimit is
/// missing.
fn limited(mib: u64, args: &[&str]) -> Option<Command> {
    let probe = Command::new("prlimit").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: prlimit is not available");
        return None;
    }
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--as={}", mib << 20))
        .arg(env!("CARGO_BIN_EXE_microgpt"))
        .args(args);
    Some(cmd)
}

/// Huge counts under a 1 GiB address-space limit: refused with one line where they exceed a
/// documented maximum, and otherwise run without reserving memory in proportion (an abort
/// would be "memory allocation of … failed" and a signal, not exit 1 or a clean interrupt).
#[cfg(unix)]
#[test]
fn huge_counts_under_a_memory_limit_are_errors_or_streams_never_aborts() {
    let dir = scratch("huge");
    let data = names(&dir);
    let ck = good_checkpoint(&dir);
    let refused: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--steps", "18446744073709551615"], "steps"),
        (vec!["--steps", "1000000000001"], "steps"),
        (vec!["--batch-size", "1000000000"], "--batch-size"),
        (vec!["--threads", "1000000"], "--threads"),
        (
            vec!["--engine", "dynamic", "--batch-size", "17"],
            "--batch-size",
        ),
        (
            vec!["--total-steps", "18446744073709551615", "--steps", "5"],
            "steps",
        ),
    ];
    for (extra, words) in refused {
        let mut args = vec!["train", "--data", s(&data), "--no-progress"];
        args.extend_from_slice(&extra);
        let Some(cmd) = limited(1024, &args) else {
            return;
        };
        let err = one_line_error(&finishes_within(cmd, Duration::from_secs(30)));
        assert!(err.contains(words), "{extra:?}: {err}");
    }
    let Some(cmd) = limited(
        1024,
        &[
            "sample",
            "--checkpoint",
            s(&ck),
            "--num-samples",
            "18446744073709551615",
        ],
    ) else {
        return;
    };
    one_line_error(&finishes_within(cmd, Duration::from_secs(30)));

    // 10¹² steps are allowed: the run starts (nothing reserved for them) and stops cleanly
    let out = dir.join("long.safetensors");
    let Some(mut cmd) = limited(
        1024,
        &[
            "train",
            "--data",
            s(&data),
            "--model",
            "micro",
            "--no-progress",
            "--steps",
            "1000000000000",
            "--out",
            s(&out),
            "--print-every",
            "1000000000",
        ],
    ) else {
        return;
    };
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    assert!(Checkpoint::load(&out).is_ok());

    // a billion samples stream: under the limit, the first lines come and the process is fine
    let Some(mut cmd) = limited(
        1024,
        &[
            "sample",
            "--checkpoint",
            s(&ck),
            "--num-samples",
            "1000000000",
        ],
    ) else {
        return;
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(!line.is_empty(), "a sample came out");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Datasets that are not regular files, or too large, are refused before they are read.
#[cfg(unix)]
#[test]
fn datasets_that_are_devices_or_too_large_are_refused_unread() {
    let dir = scratch("datasets");
    let big = dir.join("big.txt");
    // sparse: 1 byte over the limit costs no disk
    let f = fs::File::create(&big).unwrap();
    f.set_len(microgpt::limits::MAX_DATA_BYTES + 1).unwrap();
    drop(f);
    for (path, words) in [
        ("/dev/zero", "character device"),
        (s(&dir), "directory"),
        (s(&big), "bytes"),
    ] {
        let Some(cmd) = limited(1024, &["train", "--data", path, "--steps", "1"]) else {
            return;
        };
        let err = one_line_error(&finishes_within(cmd, Duration::from_secs(30)));
        assert!(err.contains(words), "{path}: {err}");
        let Some(cmd) = limited(1024, &["baseline", "--data", path]) else {
            return;
        };
        one_line_error(&finishes_within(cmd, Duration::from_secs(30)));
    }
}

// ---- vocabularies and numbers ----

/// Both engines take exactly the same vocabularies: 255 characters (+ BOS) train and load on
/// either; 300 are refused by either before any step, and by `baseline`; a tab in the data is
/// refused as it would be in a checkpoint.
#[test]
fn both_engines_accept_the_same_vocabularies() {
    let dir = scratch("vocabularies");
    let text = |n: u32| -> String {
        (0..n)
            .map(|i| char::from_u32(0x100 + i).unwrap())
            .collect::<Vec<_>>()
            .chunks(5)
            .map(|c| c.iter().collect::<String>() + "\n")
            .collect()
    };
    let ok = dir.join("ok.txt");
    fs::write(&ok, text(255)).unwrap();
    let wide = dir.join("wide.txt");
    fs::write(&wide, text(300)).unwrap();
    let tab = dir.join("tab.txt");
    fs::write(&tab, "ab\tc\nabc\n".repeat(20)).unwrap();
    for engine in ["static", "dynamic"] {
        let out = dir.join(format!("{engine}.safetensors"));
        let o = train(&ok, "2", &["--engine", engine, "--out", s(&out)]);
        assert!(o.status.success(), "{engine}: {}", stderr(&o));
        let o = microgpt(&["sample", "--checkpoint", s(&out), "--num-samples", "2"]);
        assert!(o.status.success(), "{engine}: {}", stderr(&o));
        for bad in [&wide, &tab] {
            let out = dir.join("no.safetensors");
            let o = train(
                bad,
                "1000000000000",
                &["--engine", engine, "--out", s(&out)],
            );
            let err = one_line_error(&o);
            assert!(err.contains("vocabulary"), "{engine}: {err}");
            assert!(!out.exists(), "{engine}: nothing saved");
        }
    }
    let err = one_line_error(&microgpt(&["baseline", "--data", s(&wide)]));
    assert!(err.contains("vocabulary"), "{err}");
}

/// Numbers out of range or inconsistent with each other: one line naming the option, for the
/// command line and for the settings a checkpoint holds alike.
#[test]
fn bad_numbers_are_refused_from_the_command_line_and_from_checkpoints() {
    let dir = scratch("numbers");
    let data = names(&dir);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--weight-decay", "nan"], "--weight-decay"),
        (vec!["--weight-decay", "-1"], "--weight-decay"),
        (
            vec!["--min-lr-fraction", "-5", "--schedule", "cosine"],
            "--min-lr-fraction",
        ),
        (vec!["--warmup", "20"], "--warmup"),
        (vec!["--lr", "inf"], "--lr"),
        (vec!["--lr", "nan"], "--lr"),
        (vec!["--beta1", "1"], "--beta1"),
        (vec!["--dropout", "nan"], "--dropout"),
        (vec!["--val-fraction", "-0.1"], "--val-fraction"),
    ];
    for (extra, words) in cases {
        let err = one_line_error(&train(&data, "10", &extra));
        assert!(err.contains(words), "{extra:?}: {err}");
    }
    let err = one_line_error(&microgpt(&[
        "--data",
        s(&data),
        "--num-samples",
        "18446744073709551615",
    ]));
    assert!(err.contains("--num-samples"), "{err}");

    // a checkpoint whose recorded settings are out of range is refused on --resume
    let good = good_checkpoint(&dir);
    for (key, value) in [
        ("batch_size", "1000000000000"),
        ("lr", "NaN"),
        ("warmup", "100000"),
    ] {
        let bytes = rewrite(&good, true, |_, m| drop(m.insert(key.into(), value.into())));
        let bad = dir.join("bad.safetensors");
        fs::write(&bad, bytes).unwrap();
        let o = microgpt(&["train", "--resume", s(&bad), "--no-progress"]);
        let err = one_line_error(&o);
        assert!(err.contains("out of range"), "{key}: {err}");
    }
}

/// A second signal exits at once, without the save the first one asked for. Made
/// deterministic by stopping the process (SIGSTOP) while two different signals are sent:
/// both are pending when it continues; whichever is delivered first sets the flag, and the
/// other finds it set and exits on the spot with its own code.
#[cfg(target_os = "linux")]
#[test]
fn a_second_signal_exits_at_once() {
    let dir = scratch("second");
    let data = names(&dir);
    let out = dir.join("s.safetensors");
    let mut child = micro_train(&data)
        .args([
            "--steps",
            "2000000",
            "--print-every",
            "1000000",
            "--out",
            s(&out),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the handlers are in place once training has begun
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("step    1 /") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0);
    }
    let pid = child.id().to_string();
    for sig in ["-STOP", "-INT", "-TERM", "-CONT"] {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(
        matches!(status.code(), Some(130 | 143)),
        "{status:?}: {err}"
    );
    assert!(!err.contains("interrupted by"), "it went on to save: {err}");
    assert!(!out.exists(), "nothing was saved");
}
