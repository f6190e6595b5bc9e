//! The summary of a study: per design, condition and readout, the mean ± sd over seeds of the
//! target error (all, easy and hard test images), the relative error reduction against the
//! design's from-scratch baseline, and the paired comparison with the baseline (per-seed
//! differences, 95% interval, verdict; see [`super::stats`]); and its Markdown table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stats::Paired;
use crate::empirical::study::config::Readout;
use crate::empirical::study::plan::PhaseName;
use crate::empirical::study::results::{CellResult, EpochRecord, HardSubset, ReadoutError};
use crate::report::{MarkdownTable, MeanSd};

/// Everything a finished (or partly finished) study produced, as read back from its folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StudySummary {
    /// Study name.
    pub name: String,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// One row per design, condition and readout.
    pub rows: Vec<SummaryRow>,
    /// Hard test images per design (how they were defined and how many).
    pub hard_subsets: Vec<HardSubset>,
}

/// Mean +- sd over seeds of one design, condition and readout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Design.
    pub design: String,
    /// Condition.
    pub condition: String,
    /// Family.
    pub family: String,
    /// Pretraining classes.
    pub classes: usize,
    /// Aligned with the target.
    pub aligned: bool,
    /// Label purity (see [`CellResult::purity`]).
    pub purity: f64,
    /// Readout.
    pub readout: Readout,
    /// Seeds with results.
    pub seeds: Vec<u64>,
    /// Error on all test images.
    pub error: MeanSd,
    /// Error on the easy test images.
    pub easy_error: MeanSd,
    /// Error on the hard test images.
    pub hard_error: MeanSd,
    /// Error on the test images of the confusable leaves (see [`crate::empirical::study::hard`]).
    pub confusable_error: MeanSd,
    /// Relative error reduction against the design's baseline, `(base - err) / base`, from the
    /// seed means (the paper's metric); positive = better than the baseline.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub rel_error_reduction: f64,
    /// The same on the hard test images.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub hard_rel_error_reduction: f64,
    /// Training accuracy in the last epoch of the phase the readout reads (baseline, pretraining,
    /// direct training or fine-tuning), on that phase's own labels (augmented images, during the
    /// epoch): whether the network converged.
    pub train_acc: MeanSd,
    /// The training loss of that epoch.
    pub train_loss: MeanSd,
    /// The per-seed paired difference of the error and the baseline's (same seed, same design),
    /// its 95% interval and verdict; none for the baseline itself.
    pub vs_baseline: Option<Paired>,
    /// The same on the hard test images.
    pub hard_vs_baseline: Option<Paired>,
    /// The same on the test images of the confusable leaves.
    pub confusable_vs_baseline: Option<Paired>,
}

/// `f` of the last training epoch of the phase that `readout` reads, in each cell.
fn last_epochs(
    cells: &[&CellResult],
    readout: Readout,
    f: impl Fn(&EpochRecord) -> f64,
) -> Vec<f64> {
    let phases = PhaseName::read_by(readout);
    cells
        .iter()
        .filter_map(|c| {
            c.epochs
                .iter()
                .rev()
                .find(|e| phases.contains(&e.phase))
                .map(&f)
        })
        .collect()
}

/// Aggregates cell results into summary rows (mean +- sd over seeds).
pub fn summarize(cells: &[CellResult]) -> Vec<SummaryRow> {
    let mut groups: BTreeMap<(String, String, Readout), Vec<&CellResult>> = BTreeMap::new();
    let mut order: Vec<(String, String, Readout)> = Vec::new();
    for c in cells {
        for r in &c.readouts {
            let key = (c.design.clone(), c.condition.clone(), r.readout);
            if !groups.contains_key(&key) {
                order.push(key.clone());
            }
            groups.entry(key).or_default().push(c);
        }
    }
    let stat = |cs: &[&CellResult], ro: Readout, f: &dyn Fn(&ReadoutError) -> f64| {
        let v: Vec<f64> = cs
            .iter()
            .filter_map(|c| c.readouts.iter().find(|r| r.readout == ro).map(f))
            .collect();
        MeanSd::of(&v)
    };
    let mut rows: Vec<SummaryRow> = order
        .iter()
        .map(|key| {
            let cs = &groups[key];
            let c0 = cs[0];
            SummaryRow {
                design: key.0.clone(),
                condition: key.1.clone(),
                family: c0.family.clone(),
                classes: c0.classes,
                aligned: c0.aligned,
                purity: c0.purity,
                readout: key.2,
                seeds: cs.iter().map(|c| c.seed).collect(),
                error: stat(cs, key.2, &|r| r.error),
                easy_error: stat(cs, key.2, &|r| r.easy_error),
                hard_error: stat(cs, key.2, &|r| r.hard_error),
                confusable_error: stat(cs, key.2, &|r| r.confusable_error),
                train_acc: MeanSd::of(&last_epochs(cs, key.2, |e| e.train_acc)),
                train_loss: MeanSd::of(&last_epochs(cs, key.2, |e| e.loss)),
                rel_error_reduction: f64::NAN,
                hard_rel_error_reduction: f64::NAN,
                vs_baseline: None,
                hard_vs_baseline: None,
                confusable_vs_baseline: None,
            }
        })
        .collect();
    // the baseline's errors per design and seed, for the paired comparisons
    let base_of = |design: &str, seed: u64| {
        cells
            .iter()
            .find(|c| c.design == design && c.seed == seed && c.condition == "baseline")
            .and_then(|c| c.readouts.iter().find(|r| r.readout == Readout::Scratch))
    };
    for r in rows.iter_mut().filter(|r| r.readout != Readout::Scratch) {
        let (mut all, mut hard, mut confusable) = (Vec::new(), Vec::new(), Vec::new());
        for c in &groups[&(r.design.clone(), r.condition.clone(), r.readout)] {
            let (Some(b), Some(e)) = (
                base_of(&c.design, c.seed),
                c.readouts.iter().find(|x| x.readout == r.readout),
            ) else {
                continue;
            };
            all.push((c.seed, e.error, b.error));
            hard.push((c.seed, e.hard_error, b.hard_error));
            confusable.push((c.seed, e.confusable_error, b.confusable_error));
        }
        r.vs_baseline = Some(Paired::of(&all));
        r.hard_vs_baseline = Some(Paired::of(&hard));
        r.confusable_vs_baseline = Some(Paired::of(&confusable));
    }
    let bases: Vec<(String, f64, f64)> = rows
        .iter()
        .filter(|r| r.readout == Readout::Scratch)
        .map(|r| (r.design.clone(), r.error.mean, r.hard_error.mean))
        .collect();
    for r in &mut rows {
        if let Some((_, b, bh)) = bases.iter().find(|(d, _, _)| *d == r.design) {
            r.rel_error_reduction = relative_reduction(*b, r.error.mean);
            r.hard_rel_error_reduction = relative_reduction(*bh, r.hard_error.mean);
        }
    }
    rows
}

/// The paper's relative error reduction of `error` against the baseline's `base` error; NaN
/// (shown as "–") where the baseline makes no error, since no reduction is defined there.
fn relative_reduction(base: f64, error: f64) -> f64 {
    if base > 0.0 {
        (base - error) / base
    } else {
        f64::NAN
    }
}

/// A table cell `mean ± sd` (a dash where nothing was measured).
fn mean_sd_cell(m: &MeanSd) -> String {
    if m.mean.is_nan() {
        "–".to_string()
    } else {
        format!("{:.3} ± {:.3}", m.mean, m.sd)
    }
}

/// The Markdown table of a summary.
pub fn summary_table(rows: &[SummaryRow]) -> MarkdownTable {
    let mut t = MarkdownTable::new([
        "design",
        "pretraining",
        "classes",
        "aligned",
        "readout",
        "error (mean ± sd)",
        "final train acc / loss (own labels)",
        "rel. error reduction",
        "easy error",
        "hard error",
        "hard rel. reduction",
        "error − baseline, paired [95% CI]",
        "verdict",
        "seeds",
    ]);
    let pct = |v: f64| {
        if v.is_nan() {
            "–".to_string()
        } else {
            format!("{:+.1}%", 100.0 * v)
        }
    };
    for r in rows {
        t.row([
            r.design.clone(),
            r.condition.clone(),
            r.classes.to_string(),
            if r.aligned {
                "yes".into()
            } else {
                format!("no (purity {:.2})", r.purity)
            },
            r.readout.name().to_string(),
            mean_sd_cell(&r.error),
            format!("{:.3} / {:.3}", r.train_acc.mean, r.train_loss.mean),
            if r.readout == Readout::Scratch {
                "(baseline)".into()
            } else {
                pct(r.rel_error_reduction)
            },
            mean_sd_cell(&r.easy_error),
            mean_sd_cell(&r.hard_error),
            if r.readout == Readout::Scratch {
                "(baseline)".into()
            } else {
                pct(r.hard_rel_error_reduction)
            },
            r.vs_baseline
                .as_ref()
                .map_or("(baseline)".into(), Paired::interval),
            r.vs_baseline
                .as_ref()
                .map_or(String::new(), |p| p.verdict.words().to_string()),
            r.seeds.len().to_string(),
        ]);
    }
    t
}

/// The Markdown table of the paired comparisons with the baseline on each test subset: all
/// test images, the hard ones and the confusable leaves' (per row: the subset's error, the paired
/// difference with its 95% interval, and the verdict). None when no row has a subset.
pub fn subset_table(rows: &[SummaryRow]) -> Option<MarkdownTable> {
    let has = |m: &MeanSd| m.mean.is_finite();
    if !rows
        .iter()
        .any(|r| has(&r.hard_error) || has(&r.confusable_error))
    {
        return None;
    }
    let mut t = MarkdownTable::new([
        "design",
        "pretraining",
        "readout",
        "all: error",
        "all: − baseline [95% CI]",
        "all: verdict",
        "hard: error",
        "hard: − baseline [95% CI]",
        "hard: verdict",
        "confusable leaves: error",
        "confusable: − baseline [95% CI]",
        "confusable: verdict",
    ]);
    let paired = |p: &Option<Paired>| match p {
        None => ["(baseline)".to_string(), String::new()],
        Some(p) if p.mean.is_nan() => ["–".into(), String::new()],
        Some(p) => [p.interval(), p.verdict.words().to_string()],
    };
    for r in rows {
        let [a, av] = paired(&r.vs_baseline);
        let [h, hv] = paired(&r.hard_vs_baseline);
        let [c, cv] = paired(&r.confusable_vs_baseline);
        t.row([
            r.design.clone(),
            r.condition.clone(),
            r.readout.name().to_string(),
            mean_sd_cell(&r.error),
            a,
            av,
            mean_sd_cell(&r.hard_error),
            h,
            hv,
            mean_sd_cell(&r.confusable_error),
            c,
            cv,
        ]);
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::relative_reduction;

    #[test]
    fn relative_reduction_is_undefined_against_a_perfect_baseline() {
        assert_eq!(relative_reduction(0.5, 0.25), 0.5);
        assert!((relative_reduction(0.4, 0.5) + 0.25).abs() < 1e-12);
        assert!(relative_reduction(0.0, 1.0).is_nan());
        assert!(relative_reduction(0.0, 0.0).is_nan());
    }
}
