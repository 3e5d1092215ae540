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
    use microgpt::atomic::{check_distinct, same_file};
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
    let removed = microgpt::atomic::remove_stale_temporaries(&dir, "c.st");
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
