//! Sweeps of a study (`empirical sweep`): the same study run once per value of a config key, one
//! axis at a time from a base config (as the theory's studies vary one parameter), each point in
//! its own resumable study folder; then per axis a CSV and figures of every arm's paired error
//! difference with the baseline against the axis.
//!
//! # The sweep file
//! A study config (every field of [`StudyConfig`]: the base study) plus one or more `[[axis]]`
//! tables ([`SweepAxis`]):
//! ```toml
//! # ... the base study: name, seeds, [data], [model], [train], [[granularity]] ...
//! [[axis]]
//! name = "size"
//! label = "training images per subclass"
//! key = "data.synthetic.train_per_leaf"
//! values = [25, 50, 100, 200]
//! with = { "train.pretrain_epochs" = [160, 80, 40, 20] }
//! log = true
//! ```
//! Point `j` of an axis is the base with `key = values[j]` (and each `with` key set to its
//! `j`-th value) applied as `--set` overrides are, after the command line's own `--set`. The
//! whole sweep is checked before anything is written: every point's config is loaded and
//! validated (an error names the file, the axis and the value), and every folder it would write
//! must not hold another config's results (unless `--fresh`).
//!
//! # Files (in the sweep folder)
//! `sweep.toml` (the sweep file as run, with the command line's `--set` in a comment), `base/`
//! (the study of the base config, shared by every point whose config equals it), `AXIS/VALUE/`
//! (a study folder per other point, see [`super`]), and per axis `AXIS.csv` (one
//! [`SweepRow`] per point, design, condition and readout), `AXIS_hard.svg` and `AXIS_all.svg`
//! (each arm's error minus the baseline's, paired over seeds with its 95% interval, on the hard
//! and on all test images, and the baseline's own error, against the axis).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::{Readout, StudyConfig};
use super::designs::{designs, load_data};
use super::protocol::{check_run, run_study};
use super::reports::stats::{half_width, Paired};
use super::reports::summary::{StudySummary, SummaryRow};
use super::runner::{refuses_dir, resolved_config, RunOptions};
use crate::config::{load_str, ConfigError};
use crate::empirical::error::EmpiricalError;
use crate::plot::{line_chart, HBand, LineChart, Series};
use crate::report::{file_safe, read_json, ReportError, ResultsDir};

/// The sweep file as run, in the sweep folder.
pub const SWEEP_FILE: &str = "sweep.toml";

/// The folder of the base study (shared by the points equal to it).
const BASE_DIR: &str = "base";

/// Shift between the arms' points at one axis value, as a fraction of the axis span (in decades
/// on a log axis), so that their interval bars do not hide each other.
const DODGE: f64 = 0.012;

/// One axis of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepAxis {
    /// Short name: the axis's folder and the names of its CSV and figures.
    pub name: String,
    /// Axis title in figures, with units.
    pub label: String,
    /// Dotted study-config key set at each point (e.g. `data.synthetic.train_per_leaf`).
    pub key: String,
    /// Its values (TOML values: numbers, arrays, tables).
    pub values: Vec<toml::Value>,
    /// More keys set along with `key`, one value per point (e.g. the epochs that keep the
    /// number of SGD steps equal as the training set shrinks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, Vec<toml::Value>>,
    /// Position of each value on the figure's x axis (default: the value itself; an array's
    /// mean).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x: Vec<f64>,
    /// Log-scale x axis.
    #[serde(default)]
    pub log: bool,
}

/// A point of a sweep: one value of one axis.
#[derive(Clone, Debug)]
pub struct SweepPoint {
    /// Index of the axis.
    pub axis: usize,
    /// The value as written (`[5, 5]`, `200`).
    pub value: String,
    /// Its position on the figure's x axis.
    pub x: f64,
    /// The overrides that make this point from the base (after the command line's).
    pub set: Vec<String>,
    /// The study config of the point.
    pub config: StudyConfig,
    /// Its study folder, relative to the sweep folder (`base` or `AXIS/VALUE`).
    pub dir: PathBuf,
}

/// A checked sweep: the base study, its axes and every point.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The file's text, as recorded in the sweep folder.
    pub text: String,
    /// The command line's overrides of the base study.
    pub overrides: Vec<String>,
    /// The base study (the file without its axes, with `overrides`).
    pub base: StudyConfig,
    /// The axes.
    pub axes: Vec<SweepAxis>,
    /// Every point, axis by axis, value by value.
    pub points: Vec<SweepPoint>,
}

/// The axes of a sweep file (read apart from the study, so that their errors say `axis[i]`).
#[derive(Deserialize)]
struct Axes {
    axis: Vec<SweepAxis>,
}

/// The value as written in a config (strings quoted, tables inline).
fn value_text(v: &toml::Value) -> String {
    v.to_string()
}

/// A folder name for a value: numbers as written, arrays joined by `-`, other text made
/// file-safe.
fn value_slug(v: &toml::Value) -> String {
    match v {
        toml::Value::Array(a) => a.iter().map(value_slug).collect::<Vec<_>>().join("-"),
        toml::Value::String(s) => file_safe(s),
        other => file_safe(&other.to_string()),
    }
}

/// The default x position of a value: a number itself, an array the mean of its elements.
fn value_x(v: &toml::Value) -> f64 {
    match v {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        toml::Value::Array(a) if !a.is_empty() => {
            a.iter().map(value_x).sum::<f64>() / a.len() as f64
        }
        _ => f64::NAN,
    }
}

impl Sweep {
    /// Reads and checks a sweep file's `text` (`origin` names it in errors), with the command
    /// line's `overrides` applied to the base study before each point's own.
    pub fn from_toml(text: &str, origin: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let invalid = |field: String, msg: String| ConfigError::Invalid {
            origin: origin.to_string(),
            field,
            msg,
        };
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin: origin.to_string(),
                    msg: e.to_string(),
                })?;
        let axis = table.remove("axis").ok_or_else(|| {
            invalid(
                "axis".into(),
                "a sweep needs at least one [[axis]] (key, label, values)".into(),
            )
        })?;
        let mut only_axes = toml::Table::new();
        only_axes.insert("axis".into(), axis);
        let axes = serde_path_to_error::deserialize::<_, Axes>(toml::Value::Table(only_axes))
            .map_err(|e| ConfigError::Field {
                origin: origin.to_string(),
                field: e.path().to_string(),
                msg: e.into_inner().to_string(),
            })?
            .axis;
        let base_text = toml::to_string(&table).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            msg: e.to_string(),
        })?;
        let base: StudyConfig = load_str(&base_text, origin, overrides)?;
        if axes.is_empty() {
            return Err(invalid("axis".into(), "no axes".into()));
        }
        let mut points = Vec::new();
        for (i, ax) in axes.iter().enumerate() {
            let f = |name: &str| format!("axis[{i}].{name}");
            if ax.name.is_empty() || file_safe(&ax.name) != ax.name || ax.name == BASE_DIR {
                return Err(invalid(
                    f("name"),
                    format!(
                        "'{}' must be a non-empty file name of letters, digits, '-', '_', '.' \
                         and not '{BASE_DIR}'",
                        ax.name
                    ),
                ));
            }
            if axes[..i].iter().any(|a| a.name == ax.name) {
                return Err(invalid(f("name"), format!("'{}' names two axes", ax.name)));
            }
            if ax.values.is_empty() {
                return Err(invalid(f("values"), "no values".into()));
            }
            if !ax.x.is_empty() && ax.x.len() != ax.values.len() {
                return Err(invalid(
                    f("x"),
                    format!("{} positions for {} values", ax.x.len(), ax.values.len()),
                ));
            }
            for (k, vs) in &ax.with {
                if vs.len() != ax.values.len() {
                    return Err(invalid(
                        f(&format!("with.\"{k}\"")),
                        format!("{} values for the axis's {}", vs.len(), ax.values.len()),
                    ));
                }
            }
            let mut slugs: Vec<String> = Vec::new();
            for (j, v) in ax.values.iter().enumerate() {
                let slug = value_slug(v);
                if slug.is_empty() || slugs.contains(&slug) {
                    return Err(invalid(
                        f("values"),
                        format!("value {} repeats another's folder '{slug}'", value_text(v)),
                    ));
                }
                slugs.push(slug.clone());
                let mut set = vec![format!("{}={}", ax.key, value_text(v))];
                set.extend(
                    ax.with
                        .iter()
                        .map(|(k, vs)| format!("{k}={}", value_text(&vs[j]))),
                );
                let all: Vec<String> = overrides.iter().chain(&set).cloned().collect();
                let config: StudyConfig = load_str(&base_text, origin, &all).map_err(|e| {
                    invalid(
                        format!("axis[{i}].values[{j}] ({} = {})", ax.key, value_text(v)),
                        e.to_string(),
                    )
                })?;
                // After the config: a value of the wrong type is answered with its type error.
                let x = ax.x.get(j).copied().unwrap_or_else(|| value_x(v));
                if !x.is_finite() || (ax.log && x <= 0.0) {
                    return Err(invalid(
                        f("x"),
                        format!(
                            "value {} has no {}position on the x axis; give x = [...]",
                            value_text(v),
                            if ax.log { "positive " } else { "" }
                        ),
                    ));
                }
                let dir = if config == base {
                    PathBuf::from(BASE_DIR)
                } else {
                    Path::new(&ax.name).join(slug)
                };
                points.push(SweepPoint {
                    axis: i,
                    value: value_text(v),
                    x,
                    set,
                    config,
                    dir,
                });
            }
        }
        Ok(Sweep {
            text: text.to_string(),
            overrides: overrides.to_vec(),
            base,
            axes,
            points,
        })
    }

    /// Reads and checks the sweep file `path`.
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            origin: origin.clone(),
            msg: e.to_string(),
        })?;
        Sweep::from_toml(&text, &origin, overrides)
    }

    /// The sweep file as recorded in the sweep folder.
    fn record(&self) -> String {
        if self.overrides.is_empty() {
            self.text.clone()
        } else {
            let set: Vec<String> = self
                .overrides
                .iter()
                .map(|o| format!("--set '{o}'"))
                .collect();
            format!("# run with {}\n{}", set.join(" "), self.text)
        }
    }
}

/// Runs (or resumes) the axes of `sweep` named in `only` (all when empty) into `opts.out`, and
/// writes each axis's CSV and figures; `note` hears which point starts. Every point is a study
/// run with [`run_study`] into its own folder, so a killed sweep resumes where it stopped and a
/// finished one recomputes nothing. Returns the files written per axis.
pub fn run_sweep(
    sweep: &Sweep,
    opts: &RunOptions,
    only: &[String],
    note: &mut dyn FnMut(&str),
) -> Result<Vec<String>, EmpiricalError> {
    if let Some(n) = only
        .iter()
        .find(|n| !sweep.axes.iter().any(|a| &a.name == *n))
    {
        return Err(EmpiricalError::Invalid {
            context: "--axis".into(),
            message: format!(
                "no axis named '{n}' (the sweep's axes: {})",
                sweep
                    .axes
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let chosen = |p: &SweepPoint| only.is_empty() || only.contains(&sweep.axes[p.axis].name);
    // each folder once (the base is shared), checked before anything is written
    let mut runs: Vec<&SweepPoint> = Vec::new();
    for p in sweep.points.iter().filter(|p| chosen(p)) {
        if !runs.iter().any(|r| r.dir == p.dir) {
            runs.push(p);
        }
    }
    for p in &runs {
        let out = opts.out.join(&p.dir);
        let resolved = resolved_config(&p.config, opts.kernels)?;
        if !opts.fresh && refuses_dir(&out, &resolved) {
            return Err(ReportError::OtherConfig { path: out }.into());
        }
    }
    check_points(sweep, &runs, opts)?;
    let dir = ResultsDir::create(&opts.out)?;
    dir.write_text(SWEEP_FILE, &sweep.record())?;
    for (k, p) in runs.iter().enumerate() {
        let what = point_name(sweep, p);
        note(&format!(
            "sweep point {} of {}: {what} -> {}",
            k + 1,
            runs.len(),
            opts.out.join(&p.dir).display()
        ));
        let point_opts = RunOptions {
            out: opts.out.join(&p.dir),
            ..opts.clone()
        };
        run_study(&p.config, &point_opts)?;
    }
    let mut written = Vec::new();
    for (i, ax) in sweep.axes.iter().enumerate() {
        if only.is_empty() || only.contains(&ax.name) {
            written.extend(write_axis_reports(sweep, i, &dir)?);
        }
    }
    Ok(written)
}

/// `the base study` or `KEY = VALUE` of a point.
fn point_name(sweep: &Sweep, p: &SweepPoint) -> String {
    if p.dir == Path::new(BASE_DIR) {
        "the base study".to_string()
    } else {
        format!("{} = {}", sweep.axes[p.axis].key, p.value)
    }
}

/// Checks every point against its data before any point runs: each distinct data setting
/// (`[data]` with `[hard]`, which shapes the splits) is loaded once, and every point using it
/// is checked as its study would check itself before training (data levels and classes, sizes,
/// designs, label sets, memory). An error names the axis and the point.
fn check_points(
    sweep: &Sweep,
    runs: &[&SweepPoint],
    opts: &RunOptions,
) -> Result<(), EmpiricalError> {
    let key = |c: &StudyConfig| {
        format!(
            "{}\n{}",
            serde_json::to_string(&c.data).unwrap_or_default(),
            serde_json::to_string(&c.hard).unwrap_or_default()
        )
    };
    let mut keys: Vec<String> = Vec::new();
    for p in runs {
        let k = key(&p.config);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for k in &keys {
        let mut data = None;
        for p in runs.iter().filter(|p| key(&p.config) == *k) {
            let at = |e: EmpiricalError| EmpiricalError::Invalid {
                context: format!(
                    "sweep point {} (axis '{}', folder {})",
                    point_name(sweep, p),
                    sweep.axes[p.axis].name,
                    p.dir.display()
                ),
                message: e.to_string(),
            };
            if data.is_none() {
                data = Some(load_data(&p.config, opts.data.as_deref()).map_err(at)?);
            }
            if let Some(d) = &data {
                check_run(&p.config, d, &designs(&p.config, d)).map_err(at)?;
            }
        }
    }
    Ok(())
}

/// One row of an axis's CSV: one point, design, condition and readout.
#[derive(Clone, Debug, Serialize)]
pub struct SweepRow {
    /// The axis's name.
    pub axis: String,
    /// The axis's key.
    pub key: String,
    /// The value, as written.
    pub value: String,
    /// Its position on the figure's x axis.
    pub x: f64,
    /// The point's study folder (relative to the sweep folder).
    pub folder: String,
    /// The design.
    pub design: String,
    /// The condition (`baseline`, a granularity, `NAME direct`).
    pub condition: String,
    /// The readout.
    pub readout: Readout,
    /// Seeds with results.
    pub seeds: usize,
    /// Mean error on all test images.
    pub error: f64,
    /// Its sd over seeds.
    pub error_sd: f64,
    /// Mean error on the hard test images.
    pub hard_error: f64,
    /// Its sd over seeds.
    pub hard_error_sd: f64,
    /// Mean error on the easy test images.
    pub easy_error: f64,
    /// Error minus the baseline's, paired over seeds (negative: the arm is better).
    pub diff: f64,
    /// Lower end of its 95% interval.
    pub diff_lo: f64,
    /// Upper end.
    pub diff_hi: f64,
    /// The interval's verdict.
    pub verdict: String,
    /// The same on the hard test images.
    pub hard_diff: f64,
    /// Lower end of its 95% interval.
    pub hard_diff_lo: f64,
    /// Upper end.
    pub hard_diff_hi: f64,
    /// The interval's verdict.
    pub hard_verdict: String,
    /// The baseline's mean error (all test images) at this point.
    pub baseline_error: f64,
    /// The baseline's mean error on the hard test images.
    pub baseline_hard_error: f64,
    /// Training accuracy of the last epoch of the phase the readout reads, on its own labels
    /// (mean over seeds): whether the network converged.
    pub train_acc: f64,
    /// Its sd over seeds.
    pub train_acc_sd: f64,
    /// The training loss of that epoch (mean over seeds).
    pub train_loss: f64,
}

/// The rows of one point of `axis`, from its study's summary.
fn point_rows(axis: &SweepAxis, p: &SweepPoint, summary: &StudySummary) -> Vec<SweepRow> {
    let nan = |q: Option<&Paired>| {
        q.map_or((f64::NAN, f64::NAN, f64::NAN, String::new()), |q| {
            (q.mean, q.lo, q.hi, q.verdict.words().to_string())
        })
    };
    summary
        .rows
        .iter()
        .map(|r: &SummaryRow| {
            let base = summary
                .rows
                .iter()
                .find(|b| b.design == r.design && b.readout == Readout::Scratch);
            let (diff, diff_lo, diff_hi, verdict) = nan(r.vs_baseline.as_ref());
            let (hard_diff, hard_diff_lo, hard_diff_hi, hard_verdict) =
                nan(r.hard_vs_baseline.as_ref());
            SweepRow {
                axis: axis.name.clone(),
                key: axis.key.clone(),
                value: p.value.clone(),
                x: p.x,
                folder: p.dir.display().to_string(),
                design: r.design.clone(),
                condition: r.condition.clone(),
                readout: r.readout,
                seeds: r.seeds.len(),
                error: r.error.mean,
                error_sd: r.error.sd,
                hard_error: r.hard_error.mean,
                hard_error_sd: r.hard_error.sd,
                easy_error: r.easy_error.mean,
                diff,
                diff_lo,
                diff_hi,
                verdict,
                hard_diff,
                hard_diff_lo,
                hard_diff_hi,
                hard_verdict,
                baseline_error: base.map_or(f64::NAN, |b| b.error.mean),
                baseline_hard_error: base.map_or(f64::NAN, |b| b.hard_error.mean),
                train_acc: r.train_acc.mean,
                train_acc_sd: r.train_acc.sd,
                train_loss: r.train_loss.mean,
            }
        })
        .collect()
}

/// The figure of one axis (`hard`: on the hard test images): per arm (design, condition,
/// readout) its error minus the baseline's with the 95% interval as bars, points of different
/// arms at one value shifted a little apart; the baseline's own error (± sd over seeds) as a
/// line of its own; zero as the reference. None without a non-baseline row.
pub fn axis_chart(axis: &SweepAxis, rows: &[SweepRow], hard: bool) -> Option<LineChart> {
    let mut design_names: Vec<&str> = Vec::new();
    for r in rows {
        if !design_names.contains(&r.design.as_str()) {
            design_names.push(&r.design);
        }
    }
    let designs = design_names.len();
    let name = |r: &SweepRow| {
        let arm = format!("{}, {}", r.condition, r.readout.name());
        if designs > 1 {
            format!("{}: {arm}", r.design)
        } else {
            arm
        }
    };
    let mut arms: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.readout != Readout::Scratch) {
        if !arms.contains(&name(r)) {
            arms.push(name(r));
        }
    }
    if arms.is_empty() {
        return None;
    }
    let xs: Vec<f64> = rows.iter().map(|r| r.x).collect();
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let m = arms.len() as f64;
    let shift = |j: usize, x: f64| {
        let k = DODGE * (j as f64 - (m - 1.0) / 2.0);
        if axis.log {
            x * 10f64.powf(k * (hi / lo).log10().max(1.0))
        } else {
            x + k * (hi - lo).max(f64::MIN_POSITIVE)
        }
    };
    let sorted = |keep: &dyn Fn(&SweepRow) -> bool| {
        let mut v: Vec<&SweepRow> = rows.iter().filter(|r| keep(r)).collect();
        v.sort_by(|a, b| a.x.total_cmp(&b.x));
        v
    };
    let mut series: Vec<Series> = arms
        .iter()
        .enumerate()
        .map(|(j, arm)| {
            let pts = sorted(&|r| r.readout != Readout::Scratch && &name(r) == arm);
            Series {
                label: arm.clone(),
                x: pts.iter().map(|r| shift(j, r.x)).collect(),
                mean: pts
                    .iter()
                    .map(|r| if hard { r.hard_diff } else { r.diff })
                    .collect(),
                sd: Some(
                    pts.iter()
                        .map(|r| {
                            if hard {
                                half_width(r.hard_diff_lo, r.hard_diff_hi)
                            } else {
                                half_width(r.diff_lo, r.diff_hi)
                            }
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    for d in design_names {
        let pts = sorted(&|r| r.readout == Readout::Scratch && r.design == d);
        if pts.is_empty() {
            continue;
        }
        series.push(Series {
            label: format!(
                "baseline's own error{} (± sd over seeds)",
                if designs > 1 {
                    format!(", {d}")
                } else {
                    String::new()
                }
            ),
            x: pts.iter().map(|r| r.x).collect(),
            mean: pts
                .iter()
                .map(|r| if hard { r.hard_error } else { r.error })
                .collect(),
            sd: Some(
                pts.iter()
                    .map(|r| if hard { r.hard_error_sd } else { r.error_sd })
                    .collect(),
            ),
        });
    }
    // An arm without any finite point (no hard subset without [hard.ensemble] on real data)
    // is left out; with no arm left there is no figure.
    series.retain(|s| s.mean.iter().any(|m| m.is_finite()));
    if series.len()
        <= series
            .iter()
            .filter(|s| s.label.starts_with("baseline's"))
            .count()
    {
        return None;
    }
    let subset = if hard {
        "hard test images"
    } else {
        "all test images"
    };
    Some(LineChart {
        title: format!(
            "Error − baseline error on {subset} (paired over seeds; bars: 95% interval)"
        ),
        x_label: format!(
            "{}{}",
            axis.label,
            if axis.log { " (log scale)" } else { "" }
        ),
        y_label: format!("error − baseline, {subset}"),
        series,
        bands: vec![HBand {
            label: "no difference".into(),
            mean: 0.0,
            sd: 0.0,
        }],
        log_x: axis.log,
        error_bars: true,
        ..Default::default()
    })
}

/// Writes `AXIS.csv`, `AXIS_hard.svg` and `AXIS_all.svg` of axis `i` into the sweep folder
/// from the summaries of its points that have run; returns the names written.
pub fn write_axis_reports(
    sweep: &Sweep,
    i: usize,
    dir: &ResultsDir,
) -> Result<Vec<String>, EmpiricalError> {
    let axis = &sweep.axes[i];
    let mut rows = Vec::new();
    for p in sweep.points.iter().filter(|p| p.axis == i) {
        let path = dir.root().join(&p.dir).join("summary.json");
        if path.exists() {
            let summary: StudySummary = read_json(&path)?;
            rows.extend(point_rows(axis, p, &summary));
        }
    }
    let mut written = Vec::new();
    if rows.is_empty() {
        return Ok(written);
    }
    let name = format!("{}.csv", axis.name);
    dir.write_csv(&name, &rows)?;
    written.push(name);
    let mut ticks: Vec<f64> = rows.iter().map(|r| r.x).collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for hard in [true, false] {
        if let Some(mut chart) = axis_chart(axis, &rows, hard) {
            chart.x_ticks = Some(ticks.clone());
            let name = format!("{}_{}.svg", axis.name, if hard { "hard" } else { "all" });
            dir.write_text(&name, &line_chart(&chart)?)?;
            written.push(name);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
