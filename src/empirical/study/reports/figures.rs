//! The figures of an empirical study, drawn from its summary with the toolkit's plot style:
//! * `granularity_{design}_{readout}.svg`: target error against the number of pretraining
//!   classes (log x), one line per family of label sets (manual hierarchy, random aligned,
//!   random misaligned, k-means within class, k-means global, finer than the leaves), the mean
//!   over seeds with its 95% t-interval, the from-scratch baseline as a band of its own 95%
//!   interval; `..._hard.svg`: the same on the hard test images;
//! * `easy_hard_{design}_{readout}.svg`: easy- and hard-subset error of every condition.

use std::collections::BTreeMap;

use super::stats::{half_width, mean_half_width, Paired};
use super::summary::{StudySummary, SummaryRow};
use crate::empirical::error::EmpiricalError;
use crate::empirical::study::config::Readout;
use crate::empirical::study::results::DesignInfo;
use crate::plot::{grouped_bars, line_chart, BarSeries, GroupedBars, HBand, LineChart, Series};
use crate::report::{MeanSd, ResultsDir};

/// Shift, in decades of the log x axis, between points of different families at the same
/// number of classes.
const DODGE: f64 = 0.02;

/// Labelled x ticks at the class counts themselves where they span less than a factor of 3
/// (e.g. one arm's 25 classes): automatic log ticks there would label the few tenths of a class
/// that the dodge shifts points by. None: automatic ticks.
pub(super) fn class_count_ticks(counts: impl IntoIterator<Item = usize>) -> Option<Vec<f64>> {
    let mut c: Vec<usize> = counts.into_iter().filter(|&c| c > 0).collect();
    c.sort_unstable();
    c.dedup();
    let (&lo, &hi) = (c.first()?, c.last()?);
    (hi < 3 * lo).then(|| c.into_iter().map(|c| c as f64).collect())
}

/// A design's name with what it is, for titles.
pub fn design_title(design: &str) -> String {
    match design {
        "balanced" => "balanced design (every leaf keeps all its training images)".into(),
        "rare_subclass" => {
            "rare-subclass design (per target class one leaf whole, the others few images)".into()
        }
        other => other.to_string(),
    }
}

/// The granularity chart of one design and readout (`hard`: on the hard test images).
pub fn granularity_chart(
    rows: &[SummaryRow],
    design: &str,
    readout: Readout,
    hard: bool,
) -> Option<LineChart> {
    let pick = |r: &SummaryRow| if hard { r.hard_error } else { r.error };
    let base = rows
        .iter()
        .find(|r| r.design == design && r.readout == Readout::Scratch)?;
    let mut fams: BTreeMap<&str, Vec<(usize, MeanSd)>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.design == design && r.readout == readout)
    {
        if !pick(r).mean.is_finite() {
            continue;
        }
        if !fams.contains_key(r.family.as_str()) {
            order.push(&r.family);
        }
        fams.entry(&r.family)
            .or_default()
            .push((r.classes, pick(r)));
    }
    if fams.is_empty() || !pick(base).mean.is_finite() {
        return None;
    }
    // families with a point at the same class count: each shifted a little apart (log x)
    let mut sharing: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for f in &order {
        for &(c, _) in &fams[f] {
            let at = sharing.entry(c).or_default();
            if !at.contains(f) {
                at.push(f);
            }
        }
    }
    let shift = |f: &str, c: usize| {
        let at = &sharing[&c];
        let j = at.iter().position(|g| *g == f).unwrap_or(0) as f64;
        10f64.powf(DODGE * (j - (at.len() as f64 - 1.0) / 2.0))
    };
    let dodged = sharing.values().any(|at| at.len() > 1);
    let x_ticks = class_count_ticks(sharing.keys().copied());
    let series = order
        .iter()
        .map(|f| {
            let mut pts = fams[f].clone();
            pts.sort_by_key(|p| p.0);
            Series {
                label: f.to_string(),
                x: pts.iter().map(|p| p.0 as f64 * shift(f, p.0)).collect(),
                mean: pts.iter().map(|p| p.1.mean).collect(),
                sd: Some(pts.iter().map(|p| mean_half_width(&p.1)).collect()),
            }
        })
        .collect();
    let b = pick(base);
    let b_half = mean_half_width(&b);
    let b_half = if b_half.is_finite() { b_half } else { 0.0 };
    Some(LineChart {
        title: format!(
            "{}: {}{} (95% intervals over seeds)",
            design_title(design),
            readout.title(),
            if hard { ", hard test images" } else { "" }
        ),
        x_label: if dodged {
            "pretraining classes (log scale; points at one count shifted apart)".into()
        } else {
            "pretraining classes (log scale)".into()
        },
        y_label: format!(
            "target top-1 error{} (fraction)",
            if hard { " on hard images" } else { "" }
        ),
        series,
        bands: vec![HBand {
            label: format!("baseline (from scratch), {:.3} ± {:.3}", b.mean, b_half),
            mean: b.mean,
            sd: b_half,
        }],
        log_x: true,
        error_bars: true,
        x_ticks,
        ..Default::default()
    })
}

/// Easy and hard error of every condition of one design (the baseline with readout `scratch`,
/// the others with `readout`).
pub fn easy_hard_chart(rows: &[SummaryRow], design: &str, readout: Readout) -> Option<GroupedBars> {
    let sel: Vec<&SummaryRow> = rows
        .iter()
        .filter(|r| r.design == design && (r.readout == readout || r.readout == Readout::Scratch))
        .filter(|r| r.hard_error.mean.is_finite())
        .collect();
    // no easy images (or no hard ones) on the design: nothing to set side by side
    if sel.len() < 2 || !sel.iter().any(|r| r.easy_error.mean.is_finite()) {
        return None;
    }
    Some(GroupedBars {
        title: format!(
            "{}: easy vs hard test images ({})",
            design_title(design),
            readout.title()
        ),
        x_label: "pretraining labels (baseline: target labels from scratch)".into(),
        y_label: "target top-1 error (fraction)".into(),
        groups: sel.iter().map(|r| r.condition.clone()).collect(),
        bars: vec![
            BarSeries {
                label: "easy test images".into(),
                mean: sel.iter().map(|r| r.easy_error.mean).collect(),
                sd: sel.iter().map(|r| r.easy_error.sd).collect(),
            },
            BarSeries {
                label: "hard test images".into(),
                mean: sel.iter().map(|r| r.hard_error.mean).collect(),
                sd: sel.iter().map(|r| r.hard_error.sd).collect(),
            },
        ],
        y_range: None,
    })
}

/// Writes every figure of `summary` into `dir`; returns the file names.
pub fn write_figures(
    dir: &ResultsDir,
    summary: &StudySummary,
) -> Result<Vec<String>, EmpiricalError> {
    let mut designs: Vec<&str> = Vec::new();
    for r in &summary.rows {
        if !designs.contains(&r.design.as_str()) {
            designs.push(&r.design);
        }
    }
    let mut written = Vec::new();
    for d in designs {
        for ro in Readout::PRETRAINED {
            for hard in [false, true] {
                if let Some(c) = granularity_chart(&summary.rows, d, ro, hard) {
                    let name = format!(
                        "granularity_{d}_{}{}.svg",
                        ro.name(),
                        if hard { "_hard" } else { "" }
                    );
                    dir.write_text(&name, &line_chart(&c)?)?;
                    written.push(name);
                }
            }
            if let Some(b) = easy_hard_chart(&summary.rows, d, ro) {
                let name = format!("easy_hard_{d}_{}.svg", ro.name());
                dir.write_text(&name, &grouped_bars(&b)?)?;
                written.push(name);
            }
        }
    }
    Ok(written)
}

/// One point of `gain_vs_size.svg` (a row of `gain_vs_size.csv`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct GainPoint {
    /// The design (`n50`, ...).
    pub design: String,
    /// Training images per leaf.
    pub per_leaf: usize,
    /// Training images.
    pub train_images: usize,
    /// Epochs of the baseline (the whole schedule) in this design.
    pub baseline_epochs: usize,
    /// The condition.
    pub condition: String,
    /// The readout.
    pub readout: Readout,
    /// Seeds paired with the baseline.
    pub seeds: usize,
    /// Mean over seeds of baseline error minus the arm's (positive: the arm helps).
    pub gain: f64,
    /// Lower end of its 95% t-interval.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// The baseline's mean error.
    pub baseline_error: f64,
    /// Relative error reduction (gain over the baseline's error).
    pub rel_error_reduction: f64,
    /// The verdict of the interval.
    pub verdict: String,
}

/// The test images a figure is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestSubset {
    /// Every test image.
    All,
    /// The hard test images.
    Hard,
    /// The test images of the confusable leaves.
    Confusable,
}

impl TestSubset {
    /// Every subset, in the order the reports show them.
    pub const ALL: [TestSubset; 3] = [TestSubset::All, TestSubset::Hard, TestSubset::Confusable];

    /// The suffix of its file names (`gain_vs_size{suffix}.svg`).
    pub fn suffix(self) -> &'static str {
        match self {
            TestSubset::All => "",
            TestSubset::Hard => "_hard",
            TestSubset::Confusable => "_confusable",
        }
    }

    /// Its words in titles.
    fn words(self) -> &'static str {
        match self {
            TestSubset::All => "all test images",
            TestSubset::Hard => "hard test images",
            TestSubset::Confusable => "test images of the confusable leaves",
        }
    }

    /// A row's error and paired comparison on this subset.
    fn of(self, r: &SummaryRow) -> (&MeanSd, Option<&Paired>) {
        match self {
            TestSubset::All => (&r.error, r.vs_baseline.as_ref()),
            TestSubset::Hard => (&r.hard_error, r.hard_vs_baseline.as_ref()),
            TestSubset::Confusable => (&r.confusable_error, r.confusable_vs_baseline.as_ref()),
        }
    }
}

/// The data-size figure on `subset`: for every condition and readout, the paired error
/// difference with the baseline (baseline minus arm: positive = helps) against the design's
/// training images (log x), the 95% interval as error bars; and its points. None without two
/// designs of the size axis, or without results on the subset.
pub fn gain_vs_size(
    rows: &[SummaryRow],
    infos: &[DesignInfo],
    subset: TestSubset,
) -> Option<(LineChart, Vec<GainPoint>)> {
    let sized: Vec<&DesignInfo> = infos.iter().filter(|i| i.per_leaf.is_some()).collect();
    if sized.len() < 2 {
        return None;
    }
    let mut points = Vec::new();
    for i in &sized {
        let base = rows
            .iter()
            .find(|r| r.design == i.design && r.readout == Readout::Scratch);
        for r in rows.iter().filter(|r| r.design == i.design) {
            let (Some(p), Some(b)) = (subset.of(r).1, base) else {
                continue;
            };
            if p.mean.is_nan() {
                continue;
            }
            let base_error = subset.of(b).0.mean;
            points.push(GainPoint {
                design: i.design.clone(),
                per_leaf: i.per_leaf.unwrap_or(0),
                train_images: i.train_images,
                baseline_epochs: i.baseline_epochs,
                condition: r.condition.clone(),
                readout: r.readout,
                seeds: p.seeds.len(),
                gain: -p.mean,
                lo: -p.hi,
                hi: -p.lo,
                baseline_error: base_error,
                rel_error_reduction: if base_error > 0.0 {
                    -p.mean / base_error
                } else {
                    f64::NAN
                },
                verdict: p.verdict.words().to_string(),
            });
        }
    }
    if points.is_empty() {
        return None;
    }
    let mut lines: Vec<(String, Readout)> = Vec::new();
    for p in &points {
        if !lines.contains(&(p.condition.clone(), p.readout)) {
            lines.push((p.condition.clone(), p.readout));
        }
    }
    let series = lines
        .iter()
        .map(|(c, ro)| {
            let mut pts: Vec<&GainPoint> = points
                .iter()
                .filter(|p| &p.condition == c && p.readout == *ro)
                .collect();
            pts.sort_by_key(|p| p.train_images);
            Series {
                label: format!("{c}, {}", ro.name()),
                x: pts.iter().map(|p| p.train_images as f64).collect(),
                mean: pts.iter().map(|p| p.gain).collect(),
                sd: Some(pts.iter().map(|p| half_width(p.lo, p.hi)).collect()),
            }
        })
        .collect();
    Some((
        LineChart {
            title: format!("Gain over the from-scratch baseline against training-set size, {} (paired over seeds; bars: 95% interval)", subset.words()),
            x_label: "training images (log scale)".into(),
            y_label: "baseline error minus the arm's (positive = helps)".into(),
            series,
            bands: vec![HBand {
                label: "no difference".into(),
                mean: 0.0,
                sd: 0.0,
            }],
            log_x: true,
            error_bars: true,
            ..Default::default()
        },
        points,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empirical::study::reports::summary::summarize;
    use crate::empirical::study::results::{CellResult, ReadoutError};

    fn cell(condition: &str, family: &str, classes: usize, error: f64) -> CellResult {
        CellResult {
            design: "balanced".into(),
            condition: condition.into(),
            family: family.into(),
            seed: 0,
            classes,
            used_classes: classes,
            aligned: true,
            purity: 1.0,
            readouts: vec![ReadoutError {
                readout: if condition == "baseline" {
                    Readout::Scratch
                } else {
                    Readout::Finetune
                },
                error,
                easy_error: f64::NAN,
                hard_error: f64::NAN,
                confusable_error: f64::NAN,
                train_error: f64::NAN,
                start_train_error: f64::NAN,
                predictions: Vec::new(),
            }],
            epochs: Vec::new(),
            fine_probe: None,
        }
    }

    /// Label sets of different families with the same class count are drawn apart, and the
    /// title says what the design is.
    #[test]
    fn points_at_one_class_count_are_dodged() {
        let rows = summarize(&[
            cell("baseline", "baseline", 2, 0.3),
            cell("fine", "manual hierarchy", 10, 0.2),
            cell("km", "k-means within class", 10, 0.25),
            cell("coarse", "manual hierarchy", 2, 0.28),
        ]);
        let c = granularity_chart(&rows, "balanced", Readout::Finetune, false).unwrap();
        assert!(c.title.contains("every leaf keeps all its training images"));
        let x: Vec<f64> = c.series.iter().flat_map(|s| s.x.clone()).collect();
        assert_eq!(x.len(), 3);
        assert_eq!(x[0], 2.0, "a class count of one family alone stays put");
        assert!(x[1] < 10.0 && x[2] > 10.0, "{x:?}");
        assert!(c.x_label.contains("shifted apart"));
        assert_eq!(c.x_ticks, None, "2 to 10 classes get automatic ticks");
    }

    /// Arms that all have one class count are labelled at that count, not at the few tenths of
    /// a class the dodge shifts them by.
    #[test]
    fn one_class_count_is_labelled_at_itself() {
        let rows = summarize(&[
            cell("baseline", "baseline", 5, 0.3),
            cell("fine", "manual hierarchy", 25, 0.2),
            cell("random", "random, aligned", 25, 0.25),
        ]);
        let c = granularity_chart(&rows, "balanced", Readout::Finetune, false).unwrap();
        assert_eq!(c.x_ticks, Some(vec![25.0]));
        let svg = line_chart(&c).unwrap();
        // tick labels are text lines of their own; the y axis's are errors below 1
        let near: Vec<f64> = svg
            .lines()
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .filter(|v| (20.0..30.0).contains(v))
            .collect();
        assert_eq!(near, vec![25.0], "the count is the one x tick label");
        assert_eq!(
            class_count_ticks([10, 15, 25]),
            Some(vec![10.0, 15.0, 25.0])
        );
        assert_eq!(class_count_ticks([2, 5, 25]), None);
        assert_eq!(class_count_ticks([]), None);
    }
}
