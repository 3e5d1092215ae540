//! The loss curve: exact CSV, a plausible SVG, and files that are replaced atomically.

use std::fs;
use std::path::PathBuf;

use microgpt::curve::{Curve, Ema};
use microgpt::io::write_atomic;

/// A fresh, empty directory for one test under cargo's per-target scratch directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("curve-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Names of the files in `dir`, sorted (so a leftover temporary file shows up).
fn listing(dir: &PathBuf) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn csv_is_exact() {
    // β = ½ keeps every number exact: the bias-corrected EMA after x₁, x₂, x₃ is
    // x₁, (x₁ + 2x₂)/3, (x₁ + 2x₂ + 4x₃)/7 = 3, (3 + 3)/3 = 2, (3 + 3 + 1)/7 = 1.
    let mut c = Curve::with_ema_beta(3, 0.5).unwrap();
    c.push_val(0, 3.5);
    c.push_train(0, 3.0);
    c.push_train(1, 1.5);
    c.push_train(2, 0.25);
    c.push_val(2, 1.75);
    c.push_val(3, 1.25);
    let dir = scratch("csv");
    let path = dir.join("loss.csv");
    c.write_csv(&path).unwrap();
    let got = fs::read_to_string(&path).unwrap();
    let want = "step,train_loss,train_loss_ema,val_loss\n\
                0,3.0,3.0,3.5\n\
                1,1.5,2.0,\n\
                2,0.25,1.0,1.75\n\
                3,,,1.25\n";
    assert_eq!(got, want, "\ngot:\n{got}\nwant:\n{want}");
    assert_eq!(listing(&dir), ["loss.csv"]);
}

#[test]
fn ema_is_bias_corrected() {
    // A constant loss has a constant average from the first step; uncorrected, the first value
    // would be (1 − 0.99)·2 = 0.02.
    let mut c = Curve::new(5);
    for step in 0..5 {
        c.push_train(step, 2.0);
    }
    for p in c.train() {
        assert!(
            (p.loss_ema - 2.0).abs() < 1e-12,
            "step {}: {}",
            p.step,
            p.loss_ema
        );
    }
    let mut e = Ema::default();
    assert_eq!(e.value(), None);
    assert_eq!(e.push(3.0), 3.0);
}

#[test]
fn bad_smoothing_factor_is_one_line_error() {
    for beta in [1.0, -0.1, f64::NAN] {
        let e = Curve::with_ema_beta(10, beta).unwrap_err().to_string();
        assert!(e.contains("[0, 1)") && !e.contains('\n'), "{e}");
    }
}

/// Loss 3.3 decaying to about 2.0 with deterministic noise over 2,000 steps, validation every
/// 200 steps, and the two reference lines the train command draws.
fn realistic() -> Curve {
    let mut c = Curve::new(2000);
    let mut seed = 12345u64;
    for step in 0..2000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.8;
        let mean = 2.0 + 1.3 * (-(step as f64) / 350.0).exp();
        c.push_train(step, mean + noise);
        if step % 200 == 0 {
            c.push_val(step, mean + 0.03);
        }
    }
    c.push_val(2000, 2.03);
    c.add_reference("bigram baseline 2.45", 2.45);
    c.add_reference("makemore 1.92", 1.92);
    c
}

#[test]
fn svg_has_both_series_legend_and_references() {
    let c = realistic();
    let dir = scratch("svg");
    let path = dir.join("loss.svg");
    c.write_svg(&path, "names.txt, small").unwrap();
    let svg = fs::read_to_string(&path).unwrap();
    assert_eq!(svg, c.render_svg("names.txt, small").unwrap());
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    for text in [
        "names.txt, small",
        "train (mean of 81 steps)",
        "validation",
        "bigram baseline 2.45",
        "makemore 1.92",
        "step",
        "loss (nats per token)",
    ] {
        assert!(svg.contains(text), "no {text:?} in the SVG");
    }
    // One polyline per series (in the legend too), told apart by colour.
    for (series, color) in [("train", "#1F77B4"), ("validation", "#D62728")] {
        let lines = svg
            .lines()
            .filter(|l| l.starts_with("<polyline") && l.contains(color))
            .count();
        assert!(lines >= 1, "no polyline for {series} ({color})");
    }
    // The train line has a point per step (2,000 is below the decimation limit).
    let longest = svg
        .lines()
        .filter(|l| l.starts_with("<polyline") && l.contains("#1F77B4"))
        .map(|l| l.matches(',').count())
        .max()
        .unwrap();
    assert_eq!(longest, 2000);
}

#[test]
fn long_run_is_decimated() {
    let mut c = Curve::new(100_000);
    for step in 0..100_000 {
        c.push_train(step, 2.0 + 1.0 / (1.0 + step as f64));
    }
    let svg = c.render_svg("long").unwrap();
    let longest = svg
        .lines()
        .filter(|l| l.starts_with("<polyline") && l.contains("#1F77B4"))
        .map(|l| l.matches(',').count())
        .max()
        .unwrap();
    assert!((1000..=2001).contains(&longest), "{longest} points");
    assert!(svg.contains("train (mean of 4001 steps)"));
    assert!(svg.len() < 200_000, "{} bytes", svg.len());
}

#[test]
fn svg_of_empty_or_nan_curve_still_renders() {
    let mut c = Curve::new(0);
    assert!(c.render_svg("empty").unwrap().starts_with("<svg"));
    c.push_train(0, f64::NAN);
    c.push_train(1, 2.0);
    c.push_val(1, f64::INFINITY);
    let svg = c.render_svg("nan").unwrap();
    assert!(
        !svg.contains("NaN") && !svg.contains("inf"),
        "non-finite coordinates"
    );
}

#[test]
fn missing_directory_is_one_line_error_and_writes_nothing() {
    let dir = scratch("missing");
    let path = dir.join("no/such/dir/loss.csv");
    let e = realistic().write_csv(&path).unwrap_err().to_string();
    assert!(
        e.contains("no/such/dir") && e.contains("does not exist") && !e.contains('\n'),
        "{e}"
    );
    assert!(!path.exists());
    assert!(listing(&dir).is_empty());
}

#[test]
fn overwrites_an_existing_file() {
    let dir = scratch("overwrite");
    let path = dir.join("loss.csv");
    fs::write(
        &path,
        "old contents that are longer than the new ones ".repeat(1000),
    )
    .unwrap();
    let mut c = Curve::with_ema_beta(1, 0.5).unwrap();
    c.push_train(7, 2.5);
    c.write_csv(&path).unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "step,train_loss,train_loss_ema,val_loss\n7,2.5,2.5,\n"
    );
    assert_eq!(listing(&dir), ["loss.csv"]);
}

#[test]
fn failing_write_leaves_old_file_untouched() {
    let dir = scratch("failing");
    let path = dir.join("loss.svg");
    let old: Vec<u8> = (0..=255).cycle().take(10_000).collect();
    fs::write(&path, &old).unwrap();
    let e = write_atomic(&path, |w| {
        w.write_all(b"half a file")?;
        Err(std::io::Error::other("disk on fire"))
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("loss.svg") && e.contains("disk on fire"), "{e}");
    assert_eq!(fs::read(&path).unwrap(), old);
    assert_eq!(listing(&dir), ["loss.svg"], "temporary file left behind");
}

#[test]
fn target_that_is_a_directory_is_an_error_and_stays() {
    let dir = scratch("isdir");
    let target = dir.join("loss.csv");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), "kept").unwrap();
    let e = realistic().write_csv(&target).unwrap_err().to_string();
    assert!(e.contains("loss.csv") && !e.contains('\n'), "{e}");
    assert!(target.is_dir());
    assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "kept");
    assert_eq!(listing(&dir), ["loss.csv"], "temporary file left behind");
}

#[test]
fn ema_stays_exact_on_long_runs() {
    // βⁿ is flushed to 0 before it turns subnormal (slow); the average must not notice.
    let mut e = Ema::default();
    for _ in 0..200_000 {
        e.push(1.5);
    }
    assert!((e.value().unwrap() - 1.5).abs() < 1e-12, "{:?}", e.value());
}

#[test]
fn disabled_progress_still_tracks_the_smoothed_loss() {
    let mut p = microgpt::progress::Progress::new(3, false);
    assert!(!p.is_enabled());
    assert_eq!(p.loss_ema(), None);
    p.update(1, 2.0, 10);
    p.update(2, 2.0, 20);
    assert!((p.loss_ema().unwrap() - 2.0).abs() < 1e-12);
    p.finish();
}
