//! The theory simulator's figures, drawn from saved results (never live state) through the
//! shared [`crate::plot`] style: feature-response curves, neuron x feature heat maps, easy and
//! hard error per readout and condition, error against the number of subclasses, sweep curves,
//! coarse-fine gaps along an axis (with the §4.4 margin prediction) and phase diagrams.

use crate::plot::{self, BarSeries, GroupedBars, HBand, Heatmap, LineChart, PhaseDiagram, Series};
use crate::report::{MeanSd, ResultsDir};
use crate::theory::config::TheoryConfig;
use crate::theory::readout::Readout;
use crate::theory::run::RunResult;
use crate::theory::sweep::{Sweep, SweepRow};
use crate::theory::TheoryError;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn runs_of<'a>(results: &'a [RunResult], cond: &str) -> Vec<&'a RunResult> {
    results.iter().filter(|r| r.condition == cond).collect()
}

fn stats(values: &[f64]) -> (f64, f64) {
    let m = MeanSd::of(values);
    (m.mean, m.sd)
}

/// Mean +- sd over seeds of a curve field, aligned on the first run's steps.
fn curve_series(
    runs: &[&RunResult],
    label: &str,
    f: impl Fn(&RunResult, usize) -> f64,
) -> Option<Series> {
    let first = runs.first()?;
    let n = first.curve.len();
    let mut x = Vec::new();
    let mut mean = Vec::new();
    let mut sd = Vec::new();
    for i in 0..n {
        let vals: Vec<f64> = runs
            .iter()
            .filter(|r| r.curve.len() == n)
            .map(|r| f(r, i))
            .collect();
        let (m, s) = stats(&vals);
        x.push(first.curve[i].step as f64);
        mean.push(m);
        sd.push(s);
    }
    Some(Series {
        label: label.into(),
        x,
        mean,
        sd: Some(sd),
    })
}

/// Feature-response curves of two conditions (common and fine, max over neurons), log scale.
pub fn response_curves(results: &[RunResult], conds: &[&str]) -> Result<String, TheoryError> {
    let mut series = Vec::new();
    let mut init = Vec::new();
    for c in conds {
        let runs = runs_of(results, c);
        if let Some(s) = curve_series(&runs, &format!("{c}: common feature"), |r, i| {
            r.curve[i].responses.common_max
        }) {
            series.push(s);
        }
        if let Some(s) = curve_series(&runs, &format!("{c}: fine features"), |r, i| {
            r.curve[i].responses.fine_max
        }) {
            series.push(s);
        }
        init.extend(runs.iter().map(|r| r.init_level));
    }
    let (m, s) = stats(&init);
    Ok(plot::line_chart(&LineChart {
        title: "Feature responses during pretraining (mean ± sd over seeds)".into(),
        x_label: "SGD step".into(),
        y_label: "max over neurons of <w, v> (mean over features)".into(),
        series,
        bands: vec![HBand {
            label: "initialisation level σ₀√(2 ln N)".into(),
            mean: m,
            sd: s,
        }],
        log_x: false,
        log_y: true,
        y_range: None,
        error_bars: false,
        x_ticks: None,
    })?)
}

/// Summed-head easy and hard test error over training for the given conditions.
pub fn error_curves(results: &[RunResult], conds: &[&str]) -> Result<String, TheoryError> {
    let mut series = Vec::new();
    for c in conds {
        let runs = runs_of(results, c);
        for hard in [true, false] {
            let label = format!("{c}: {} samples", if hard { "hard" } else { "easy" });
            if let Some(s) = curve_series(&runs, &label, |r, i| {
                if hard {
                    r.curve[i].hard_error
                } else {
                    r.curve[i].easy_error
                }
            }) {
                series.push(s);
            }
        }
    }
    Ok(plot::line_chart(&LineChart {
        title: "Coarse test error (summed head) during pretraining".into(),
        x_label: "SGD step".into(),
        y_label: "coarse test error (fraction, mean ± sd)".into(),
        series,
        bands: vec![],
        log_x: false,
        log_y: false,
        y_range: Some((0.0, 1.0)),
        error_bars: false,
        x_ticks: None,
    })?)
}

/// Column labels of the correlation matrix: common features, then fine features.
fn feature_labels(subclasses: &[usize]) -> Vec<String> {
    let mut v: Vec<String> = (0..subclasses.len())
        .map(|s| format!("common {s}"))
        .collect();
    for (s, &k) in subclasses.iter().enumerate() {
        for j in 0..k {
            v.push(format!("fine {s}.{j}"));
        }
    }
    v
}

/// Neuron x feature heat map of one run.
pub fn correlation_heatmap(r: &RunResult, subclasses: &[usize]) -> Result<String, TheoryError> {
    let per_class = r.neurons / r.classes.max(1);
    Ok(plot::heatmap(&Heatmap {
        title: format!(
            "<w_n, v> after '{}' pretraining (seed {}; {} classes x {} neurons)",
            r.condition, r.seed, r.classes, per_class
        ),
        x_label: "feature".into(),
        y_label: "neuron (grouped by pretraining class)".into(),
        col_labels: feature_labels(subclasses),
        row_labels: vec![],
        values: r
            .correlations
            .iter()
            .map(|row| row.iter().map(|&v| v as f64).collect())
            .collect(),
        color_label: "correlation <w_n, v>".into(),
        diverging: true,
        row_breaks: (1..r.classes).map(|c| c * per_class).collect(),
        col_breaks: vec![subclasses.len()],
        annotate: false,
    })?)
}

/// Grouped bars of one error subset per condition, one bar per readout.
pub fn error_bars(
    results: &[RunResult],
    conds: &[&str],
    hard: bool,
) -> Result<String, TheoryError> {
    let mut bars = Vec::new();
    for ro in Readout::PRETRAINED {
        let mut mean = Vec::new();
        let mut sd = Vec::new();
        for c in conds {
            let vals: Vec<f64> = runs_of(results, c)
                .iter()
                .filter_map(|r| {
                    r.errors
                        .get(&ro)
                        .map(|e| if hard { e.hard } else { e.easy })
                })
                .collect();
            let (m, s) = if vals.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                stats(&vals)
            };
            mean.push(m);
            sd.push(if s.is_nan() { 0.0 } else { s });
        }
        bars.push(BarSeries {
            label: ro.name().replace('_', " "),
            mean,
            sd,
        });
    }
    let which = if hard { "hard" } else { "easy" };
    Ok(plot::grouped_bars(&GroupedBars {
        title: format!("Coarse error on {which} samples, by condition and readout"),
        x_label: "pretraining condition".into(),
        y_label: format!("{which}-sample error (fraction, mean ± sd)"),
        groups: conds.iter().map(|c| c.replace('_', " ")).collect(),
        bars,
        y_range: Some((0.0, 1.0)),
    })?)
}

/// Hard and easy error against k from (coarse, fine) condition pairs at known k.
pub fn error_vs_k(
    results: &[RunResult],
    pairs: &[(f64, &str, &str)],
) -> Result<String, TheoryError> {
    let mut series = Vec::new();
    for (which, idx) in [("coarse", 1usize), ("fine", 2usize)] {
        for hard in [true, false] {
            let mut x = Vec::new();
            let mut mean = Vec::new();
            let mut sd = Vec::new();
            for p in pairs {
                let cond = if idx == 1 { p.1 } else { p.2 };
                let vals: Vec<f64> = runs_of(results, cond)
                    .iter()
                    .filter_map(|r| {
                        r.errors
                            .get(&Readout::SummedHead)
                            .map(|e| if hard { e.hard } else { e.easy })
                    })
                    .collect();
                let (m, s) = stats(&vals);
                x.push(p.0);
                mean.push(m);
                sd.push(s);
            }
            series.push(Series {
                label: format!(
                    "{which} pretraining, {} samples",
                    if hard { "hard" } else { "easy" }
                ),
                x,
                mean,
                sd: Some(sd),
            });
        }
    }
    let ticks: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    Ok(plot::line_chart(&LineChart {
        title: "Coarse test error (summed head) against subclasses per superclass".into(),
        x_label: "subclasses per superclass k".into(),
        y_label: "coarse test error (fraction)".into(),
        series,
        bands: vec![],
        log_x: true,
        log_y: false,
        y_range: Some((0.0, 1.0)),
        error_bars: true,
        x_ticks: Some(ticks),
    })?)
}

/// Write the `verify` figures into `dir`; returns the files written.
pub fn verify_figures(
    results: &[RunResult],
    cfg: &TheoryConfig,
    dir: &ResultsDir,
) -> Result<Vec<PathBuf>, TheoryError> {
    let mut out = Vec::new();
    let has = |c: &str| results.iter().any(|r| r.condition == c);
    if has("coarse") && has("fine") {
        out.push(dir.write_text(
            "feature_responses.svg",
            &response_curves(results, &["coarse", "fine"])?,
        )?);
        out.push(dir.write_text(
            "error_curves.svg",
            &error_curves(results, &["coarse", "fine"])?,
        )?);
        for c in ["coarse", "fine"] {
            if let Some(r) = results
                .iter()
                .filter(|r| r.condition == c)
                .min_by_key(|r| r.seed)
            {
                out.push(dir.write_text(
                    &format!("heatmap_{c}.svg"),
                    &correlation_heatmap(r, &cfg.data.subclasses)?,
                )?);
            }
        }
    }
    let main: Vec<&str> = [
        "coarse",
        "fine",
        "coarse_width_matched",
        "random_aligned",
        "misaligned",
        "coarse_hard10",
        "fine_hard10",
    ]
    .into_iter()
    .filter(|c| has(c))
    .collect();
    if !main.is_empty() {
        out.push(dir.write_text("errors_hard.svg", &error_bars(results, &main, true)?)?);
        out.push(dir.write_text("errors_easy.svg", &error_bars(results, &main, false)?)?);
    }
    let k = cfg.data.subclasses.first().copied().unwrap_or(1) as f64;
    let pairs: Vec<(f64, &str, &str)> = [
        (1.0, "coarse_k1", "fine_k1"),
        (2.0, "coarse_k2", "fine_k2"),
        (4.0, "coarse_k4", "fine_k4"),
        (k, "coarse", "fine"),
    ]
    .into_iter()
    .filter(|p| has(p.1) && has(p.2))
    .collect();
    if pairs.len() >= 2 {
        out.push(dir.write_text("error_vs_k.svg", &error_vs_k(results, &pairs)?)?);
    }
    Ok(out)
}

type Key = (String, u64, u64, String);

/// Mean +- sd over seeds of `f` for every (condition, x, y, readout) of a sweep.
fn group(rows: &[SweepRow], f: impl Fn(&SweepRow) -> f64) -> BTreeMap<Key, (f64, f64, f64, f64)> {
    let mut acc: BTreeMap<Key, (f64, f64, Vec<f64>)> = BTreeMap::new();
    for r in rows {
        let key = (
            r.condition.clone(),
            r.x.to_bits(),
            r.y.to_bits(),
            r.readout.clone(),
        );
        acc.entry(key).or_insert((r.x, r.y, vec![])).2.push(f(r));
    }
    acc.into_iter()
        .map(|(k, (x, y, v))| {
            let (m, s) = stats(&v);
            (k, (x, y, m, s))
        })
        .collect()
}

/// Mean ± sd over seeds of `f(coarse row, fine row)` at every x, pairing the rows of the two
/// conditions by cell and seed, for one readout.
fn paired(
    rows: &[SweepRow],
    coarse: &str,
    fine: &str,
    readout: &str,
    f: impl Fn(&SweepRow, &SweepRow) -> f64,
) -> Vec<(f64, f64, f64)> {
    let mut by_x: BTreeMap<u64, (f64, Vec<f64>)> = BTreeMap::new();
    for c in rows
        .iter()
        .filter(|r| r.condition == coarse && r.readout == readout)
    {
        if let Some(fr) = rows.iter().find(|r| {
            r.condition == fine && r.readout == readout && r.cell == c.cell && r.seed == c.seed
        }) {
            by_x.entry(c.x.to_bits())
                .or_insert((c.x, vec![]))
                .1
                .push(f(c, fr));
        }
    }
    let mut pts: Vec<(f64, f64, f64)> = by_x
        .into_values()
        .map(|(x, v)| {
            let (m, s) = stats(&v);
            (x, m, s)
        })
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

fn series_of(label: String, pts: &[(f64, f64, f64)]) -> Series {
    Series {
        label,
        x: pts.iter().map(|p| p.0).collect(),
        mean: pts.iter().map(|p| p.1).collect(),
        sd: Some(pts.iter().map(|p| p.2).collect()),
    }
}

/// The figures of a one-axis sweep's coarse-fine pairs: the hard-error gap against the axis
/// per readout; the coarse net's fine/common contrast ratio (with the plain-ReLU drive ratio
/// (n_f/n_c)/k of `theory/MODEL.md` §3 as a reference); and the coarse net's measured hard
/// error beside the one predicted from its weights (§4.4), where that prediction exists.
fn pair_figures(
    sweep: &Sweep,
    rows: &[SweepRow],
    cfg: &TheoryConfig,
    readouts: &[String],
    dir: &ResultsDir,
) -> Result<Vec<PathBuf>, TheoryError> {
    let ax = &sweep.axis[0];
    let log_x = ax.log && rows.iter().all(|r| r.x > 0.0);
    let mut ticks: Vec<f64> = rows.iter().map(|r| r.x).collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let chart = |title: String, y_label: &str, series, bands, y_range| LineChart {
        title,
        x_label: ax.label.clone(),
        y_label: y_label.into(),
        series,
        bands,
        log_x,
        log_y: false,
        y_range,
        error_bars: true,
        x_ticks: Some(ticks.clone()),
    };
    let mut out = Vec::new();
    for ro in readouts {
        let series: Vec<Series> = sweep
            .pair
            .iter()
            .map(|p| {
                series_of(
                    p.label.clone(),
                    &paired(rows, &p.coarse, &p.fine, ro, |c, f| c.hard - f.hard),
                )
            })
            .filter(|s| !s.x.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let c = chart(
            format!(
                "{}: coarse − fine hard error ({})",
                sweep.name,
                ro.replace('_', " ")
            ),
            "coarse − fine hard-sample error (mean ± sd)",
            series,
            vec![],
            None,
        );
        out.push(dir.write_text(&format!("gap_{ro}.svg"), &plot::line_chart(&c)?)?);
    }
    let Some(ro) = readouts.first() else {
        return Ok(out);
    };
    let ratio: Vec<Series> = sweep
        .pair
        .iter()
        .map(|p| {
            series_of(
                p.label.clone(),
                &paired(rows, &p.coarse, &p.coarse, ro, |c, _| {
                    c.fine_contrast / c.common_contrast
                }),
            )
        })
        .filter(|s| !s.x.is_empty())
        .collect();
    if !ratio.is_empty() {
        let k = cfg.data.subclasses.first().copied().unwrap_or(1) as f64;
        let drive = cfg.data.fine_patches as f64 / cfg.data.common_patches.max(1) as f64 / k;
        let c = chart(
            format!(
                "{}: what the coarse net learns of the fine features",
                sweep.name
            ),
            "coarse net: fine / common feature contrast",
            ratio,
            vec![HBand {
                label: "plain-ReLU drive ratio at init (n_f/n_c)/k".into(),
                mean: drive,
                sd: 0.0,
            }],
            None,
        );
        out.push(dir.write_text("contrast_ratio.svg", &plot::line_chart(&c)?)?);
    }
    let summed = Readout::SummedHead.name();
    let mut check = Vec::new();
    for p in &sweep.pair {
        let measured = paired(rows, &p.coarse, &p.coarse, summed, |c, _| c.hard);
        let predicted = paired(rows, &p.coarse, &p.coarse, summed, |c, _| c.predicted_hard);
        if predicted.iter().all(|q| q.1.is_finite()) && !predicted.is_empty() {
            check.push(series_of(format!("{}: measured", p.label), &measured));
            check.push(series_of(
                format!("{}: predicted from the weights (§4.4)", p.label),
                &predicted,
            ));
        }
    }
    if !check.is_empty() {
        let c = chart(
            format!(
                "{}: coarse net's hard error, measured and predicted",
                sweep.name
            ),
            "coarse net, summed head: hard-sample error",
            check,
            vec![],
            Some((0.0, 0.6)),
        );
        out.push(dir.write_text("margin_check.svg", &plot::line_chart(&c)?)?);
    }
    Ok(out)
}

/// Write a sweep's figures into `dir`: for a 1-D sweep, easy and hard error against the axis
/// per readout (and the figures of its coarse-fine pairs); for a 2-D sweep, the phase diagram
/// of the coarse-minus-fine hard error (when conditions named `coarse` and `fine` exist) and of
/// each condition's hard error.
pub fn sweep_figures(
    sweep: &Sweep,
    rows: &[SweepRow],
    cfg: &TheoryConfig,
    dir: &ResultsDir,
) -> Result<Vec<PathBuf>, TheoryError> {
    let mut out = Vec::new();
    let readouts: Vec<String> = {
        let mut v: Vec<String> = rows.iter().map(|r| r.readout.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let ax0 = &sweep.axis[0];
    if sweep.axis.len() == 1 {
        if !sweep.pair.is_empty() {
            out.extend(pair_figures(sweep, rows, cfg, &readouts, dir)?);
        }
        for ro in &readouts {
            let mut series = Vec::new();
            for hard in [true, false] {
                let g = group(rows, |r| if hard { r.hard } else { r.easy });
                for cond in &sweep.condition {
                    let pts: Vec<&(f64, f64, f64, f64)> = g
                        .iter()
                        .filter(|(k, _)| k.0 == cond.name && &k.3 == ro)
                        .map(|(_, v)| v)
                        .collect();
                    if pts.is_empty() {
                        continue;
                    }
                    let mut pts: Vec<(f64, f64, f64)> =
                        pts.iter().map(|p| (p.0, p.2, p.3)).collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    series.push(Series {
                        label: format!(
                            "{}, {} samples",
                            cond.name.replace('_', " "),
                            if hard { "hard" } else { "easy" }
                        ),
                        x: pts.iter().map(|p| p.0).collect(),
                        mean: pts.iter().map(|p| p.1).collect(),
                        sd: Some(pts.iter().map(|p| p.2).collect()),
                    });
                }
            }
            out.push(dir.write_text(
                &format!("sweep_{ro}.svg"),
                &plot::line_chart(&LineChart {
                    title: format!(
                        "{}: coarse test error ({})",
                        sweep.name,
                        ro.replace('_', " ")
                    ),
                    x_label: ax0.label.clone(),
                    y_label: "coarse test error (fraction, mean ± sd)".into(),
                    series,
                    bands: vec![],
                    log_x: ax0.log && rows.iter().all(|r| r.x > 0.0),
                    log_y: false,
                    y_range: Some((0.0, 1.0)),
                    error_bars: true,
                    x_ticks: None,
                })?,
            )?);
        }
        return Ok(out);
    }
    let ax1 = &sweep.axis[1];
    let g = group(rows, |r| r.hard);
    let mut xs: Vec<f64> = rows.iter().map(|r| r.x).collect();
    let mut ys: Vec<f64> = rows.iter().map(|r| r.y).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    ys.sort_by(f64::total_cmp);
    ys.dedup();
    let lookup = |cond: &str, ro: &str, x: f64, y: f64| -> f64 {
        g.get(&(cond.to_string(), x.to_bits(), y.to_bits(), ro.to_string()))
            .map(|v| v.2)
            .unwrap_or(f64::NAN)
    };
    for ro in &readouts {
        let has_pair = sweep.condition.iter().any(|c| c.name == "coarse")
            && sweep.condition.iter().any(|c| c.name == "fine");
        if has_pair {
            let values: Vec<Vec<f64>> = ys
                .iter()
                .map(|&y| {
                    xs.iter()
                        .map(|&x| lookup("coarse", ro, x, y) - lookup("fine", ro, x, y))
                        .collect()
                })
                .collect();
            out.push(dir.write_text(
                &format!("phase_gap_{ro}.svg"),
                &plot::phase_diagram(&PhaseDiagram {
                    title: format!(
                        "{}: coarse − fine hard error ({})",
                        sweep.name,
                        ro.replace('_', " ")
                    ),
                    x_label: ax0.label.clone(),
                    y_label: ax1.label.clone(),
                    color_label: "coarse − fine hard error".into(),
                    x_values: xs.clone(),
                    y_values: ys.clone(),
                    values,
                    diverging: true,
                    threshold: Some(0.25),
                    annotate: true,
                })?,
            )?);
        }
        for cond in &sweep.condition {
            let values: Vec<Vec<f64>> = ys
                .iter()
                .map(|&y| xs.iter().map(|&x| lookup(&cond.name, ro, x, y)).collect())
                .collect();
            out.push(dir.write_text(
                &format!("phase_{}_{ro}.svg", cond.name),
                &plot::phase_diagram(&PhaseDiagram {
                    title: format!(
                        "{}: hard error after {} pretraining ({})",
                        sweep.name,
                        cond.name,
                        ro.replace('_', " ")
                    ),
                    x_label: ax0.label.clone(),
                    y_label: ax1.label.clone(),
                    color_label: "hard-sample error".into(),
                    x_values: xs.clone(),
                    y_values: ys.clone(),
                    values,
                    diverging: false,
                    threshold: None,
                    annotate: true,
                })?,
            )?);
        }
    }
    Ok(out)
}
