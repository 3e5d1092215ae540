//! The loss curve of a run: train loss at every step, validation loss when it is evaluated,
//! written as CSV and drawn as an SVG plot. Every file is replaced atomically ([`write_atomic`]).
//!
//! The raw per-step train loss is the loss of one minibatch and is noisy, so it is smoothed twice,
//! for two purposes:
//! - the CSV's `train_loss_ema` column is a bias-corrected exponential moving average ([`Ema`],
//!   β = [`EMA_BETA`] by default). It is online: the value at a step is the one the progress bar
//!   showed at that step and it never changes as the run goes on. Its price is a lag of about
//!   `1/(1−β)` steps (100 for 0.99) while the loss falls fast.
//! - the plot's train line is a centred mean over 4% of the run, which does not lag, so the train
//!   line can be compared with the validation points at the same step.

use std::io::{self, Write};
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::bail;
use crate::error::Result;
use crate::io::write_atomic;

/// Default smoothing of the train loss: an average over roughly the last 100 steps.
pub const EMA_BETA: f64 = 0.99;

/// Exponential moving average with Adam-style bias correction, so the first values are not
/// pulled towards zero: `m ← β·m + (1−β)·x`, value `m / (1 − βⁿ)` after `n` samples (the first
/// value is the first sample).
#[derive(Debug, Clone, Copy)]
pub struct Ema {
    beta: f64,
    m: f64,
    beta_pow: f64,
}

impl Ema {
    /// An empty average; `beta` must be in `[0, 1)` (0 means no smoothing).
    pub fn new(beta: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&beta) {
            bail!("EMA smoothing factor must be in [0, 1), got {beta}");
        }
        Ok(Ema {
            beta,
            m: 0.0,
            beta_pow: 1.0,
        })
    }

    /// Adds a sample and returns the new average.
    #[inline]
    pub fn push(&mut self, x: f64) -> f64 {
        self.m = self.beta * self.m + (1.0 - self.beta) * x;
        // Below 2⁻⁵³ ≈ 1.1e-16, 1 − βⁿ rounds to 1 anyway, so βⁿ is set to 0 once it is tiny:
        // left alone it turns subnormal after ~70k steps at β = 0.99, and every multiplication
        // by a subnormal costs ~100 cycles (it made `Progress::update` 14× slower).
        self.beta_pow = if self.beta_pow > 1e-18 {
            self.beta_pow * self.beta
        } else {
            0.0
        };
        self.m / (1.0 - self.beta_pow)
    }

    /// The current average, `None` before the first sample.
    pub fn value(&self) -> Option<f64> {
        (self.beta_pow < 1.0).then(|| self.m / (1.0 - self.beta_pow))
    }

    pub fn beta(&self) -> f64 {
        self.beta
    }
}

impl Default for Ema {
    /// β = [`EMA_BETA`].
    fn default() -> Self {
        Ema {
            beta: EMA_BETA,
            m: 0.0,
            beta_pow: 1.0,
        }
    }
}

/// One recorded train step: the raw loss and its moving average at that step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainPoint {
    pub step: usize,
    pub loss: f64,
    pub loss_ema: f64,
}

/// The train and validation loss of a run, plus labelled horizontal reference lines for the plot.
#[derive(Debug, Clone)]
pub struct Curve {
    train: Vec<TrainPoint>,
    val: Vec<(usize, f64)>,
    references: Vec<(String, f64)>,
    ema: Ema,
}

impl Curve {
    /// The most train points [`Curve::new`] reserves (24 bytes each: 24 MiB).
    pub const RESERVED: usize = 1 << 20;

    /// An empty curve with room for `steps` train points (so recording allocates nothing),
    /// smoothed with [`EMA_BETA`]. At most [`Curve::RESERVED`] points are reserved up front,
    /// whatever `steps` says: past them the curve grows as the run goes, with the work done.
    pub fn new(steps: usize) -> Self {
        Curve {
            train: Vec::with_capacity(steps.min(Self::RESERVED)),
            val: Vec::new(),
            references: Vec::new(),
            ema: Ema::default(),
        }
    }

    /// Like [`Curve::new`] with another smoothing factor, in `[0, 1)`.
    pub fn with_ema_beta(steps: usize, beta: f64) -> Result<Self> {
        let mut c = Curve::new(steps);
        c.ema = Ema::new(beta)?;
        Ok(c)
    }

    /// Records the train loss of `step`; steps are expected in increasing order.
    #[inline]
    pub fn push_train(&mut self, step: usize, loss: f64) {
        let loss_ema = self.ema.push(loss);
        self.train.push(TrainPoint {
            step,
            loss,
            loss_ema,
        });
    }

    /// Records a validation loss measured at `step`.
    pub fn push_val(&mut self, step: usize, loss: f64) {
        self.val.push((step, loss));
    }

    /// Adds a dashed horizontal line at `loss` to the plot, labelled e.g. "bigram baseline 2.45".
    pub fn add_reference(&mut self, label: impl Into<String>, loss: f64) {
        self.references.push((label.into(), loss));
    }

    pub fn train(&self) -> &[TrainPoint] {
        &self.train
    }

    pub fn val(&self) -> &[(usize, f64)] {
        &self.val
    }

    /// The smoothing factor of the `train_loss_ema` column.
    pub fn ema_beta(&self) -> f64 {
        self.ema.beta
    }

    /// Writes `step,train_loss,train_loss_ema,val_loss`, one row per step in increasing step
    /// order; a step with both a train and a validation loss is one row, a missing value is an
    /// empty field. Numbers are printed in Rust's shortest round-trip form (no precision lost).
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        write_atomic(path, |w| self.csv(w))
    }

    fn csv(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "step,train_loss,train_loss_ema,val_loss")?;
        let mut train = self.train.clone();
        let mut val = self.val.clone();
        // Stable sorts: already-sorted input (the normal case) costs one pass.
        train.sort_by_key(|p| p.step);
        val.sort_by_key(|v| v.0);
        let (mut i, mut j) = (0, 0);
        while i < train.len() || j < val.len() {
            let ts = train.get(i).map(|p| p.step);
            let vs = val.get(j).map(|v| v.0);
            match (ts, vs) {
                (Some(t), Some(v)) if t == v => {
                    let p = train[i];
                    writeln!(w, "{t},{:?},{:?},{:?}", p.loss, p.loss_ema, val[j].1)?;
                    i += 1;
                    j += 1;
                }
                (Some(t), v) if v.is_none_or(|v| t < v) => {
                    let p = train[i];
                    writeln!(w, "{t},{:?},{:?},", p.loss, p.loss_ema)?;
                    i += 1;
                }
                _ => {
                    let (s, l) = val[j];
                    writeln!(w, "{s},,,{l:?}")?;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// Draws the train loss (a centred mean over 4% of the run) and the validation loss against
    /// the step, with the reference lines, as an SVG file titled `title`.
    pub fn write_svg(&self, path: &Path, title: &str) -> Result<()> {
        let svg = self.render_svg(title)?;
        write_atomic(path, |w| w.write_all(svg.as_bytes()))
    }

    /// The SVG document that [`Curve::write_svg`] writes.
    pub fn render_svg(&self, title: &str) -> Result<String> {
        let mut svg = String::new();
        if let Err(e) = self.draw(&mut svg, title) {
            bail!("cannot draw the loss curve: {e}");
        }
        Ok(svg)
    }

    /// The plotted train line: at each recorded step the mean of the finite raw losses within
    /// `half` points on either side, `half` = 2% of the run. Unlike the EMA it does not lag, so it
    /// can be compared with the validation points at the same step, and it smooths a run of any
    /// length to the same look. The window is cut at the ends of the run (so the first and last
    /// 2% lean towards the inside) rather than narrowed to a single noisy point.
    fn centred_means(&self) -> (usize, Vec<(f64, f64)>) {
        let n = self.train.len();
        let half = n / 50;
        // prefix[k] = (sum, count) of the finite losses among the first k points.
        let mut prefix = Vec::with_capacity(n + 1);
        prefix.push((0.0, 0usize));
        let (mut sum, mut count) = (0.0, 0);
        for p in &self.train {
            if p.loss.is_finite() {
                sum += p.loss;
                count += 1;
            }
            prefix.push((sum, count));
        }
        let means = (0..n)
            .map(|k| {
                let (lo, hi) = (k.saturating_sub(half), (k + half + 1).min(n));
                let (s, c) = (prefix[hi].0 - prefix[lo].0, prefix[hi].1 - prefix[lo].1);
                let mean = if c > 0 { s / c as f64 } else { f64::NAN };
                (self.train[k].step as f64, mean)
            })
            .collect();
        (half, means)
    }

    fn draw(
        &self,
        svg: &mut String,
        title: &str,
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        const SIZE: (u32, u32) = (1000, 600);
        // A path of more points than pixels only makes the file bigger.
        const MAX_TRAIN_POINTS: usize = 2000;
        let train_color = RGBColor(31, 119, 180);
        let val_color = RGBColor(214, 39, 40);
        let ref_color = RGBColor(90, 90, 90);

        let (half, means) = self.centred_means();
        let stride = means.len().div_ceil(MAX_TRAIN_POINTS).max(1);
        let last = means.len().saturating_sub(1);
        let train: Vec<(f64, f64)> = means
            .into_iter()
            .enumerate()
            .filter(|&(k, (_, m))| (k % stride == 0 || k == last) && m.is_finite())
            .map(|(_, p)| p)
            .collect();
        let val: Vec<(f64, f64)> = self
            .val
            .iter()
            .filter(|v| v.1.is_finite())
            .map(|&(s, l)| (s as f64, l))
            .collect();
        let refs: Vec<&(String, f64)> =
            self.references.iter().filter(|r| r.1.is_finite()).collect();

        let xs = train.iter().chain(&val).map(|p| p.0);
        let (x0, x1) = padded_range(xs, 0.0);
        let ys = train.iter().chain(&val).map(|p| p.1);
        let (y0, y1) = padded_range(ys.chain(refs.iter().map(|r| r.1)), 0.05);

        let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss (nats per token)")
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 14))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(RGBColor(245, 245, 245))
            .draw()?;

        for (label, y) in &refs {
            let style = ref_color.stroke_width(1);
            chart.draw_series(DashedLineSeries::new([(x0, *y), (x1, *y)], 8, 5, style))?;
            let font = ("sans-serif", 14)
                .into_font()
                .color(&ref_color)
                .pos(Pos::new(HPos::Left, VPos::Bottom));
            // Labels sit at the left end, just above the line: a falling loss curve is high
            // there, so the text stays clear of it.
            chart.draw_series(std::iter::once(
                EmptyElement::at((x0, *y)) + Text::new(label.clone(), (8, -4), font),
            ))?;
        }

        let label = match half {
            0 => "train".to_string(),
            h => format!("train (mean of {} steps)", 2 * h + 1),
        };
        chart
            .draw_series(LineSeries::new(train, train_color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 24, y)], train_color.stroke_width(2))
            });
        chart
            .draw_series(LineSeries::new(
                val.iter().copied(),
                val_color.stroke_width(2),
            ))?
            .label("validation")
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new([(0, 0), (24, 0)], val_color.stroke_width(2))
                    + Circle::new((12, 0), 3, val_color.filled())
            });
        chart.draw_series(val.iter().map(|&p| Circle::new(p, 3, val_color.filled())))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// `[min, max]` of the finite values widened by `pad` of its width on each side; never empty or
/// degenerate (plotters needs `lo < hi`), `[0, 1]` when there are no values.
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    if lo == hi {
        return (lo - 0.5, hi + 0.5);
    }
    let p = (hi - lo) * pad;
    (lo - p, hi + p)
}
