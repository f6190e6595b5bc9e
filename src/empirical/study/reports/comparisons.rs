//! The comparisons a study reports, re-scored from what every cell saves (the predicted target
//! class of every test image) on the test subsets of `subsets.json`:
//! * the **primary comparison**, named in the config before the study runs (`[analysis]`): a
//!   condition, a readout and a test subset against the baseline; decided "helps / hurts / no
//!   detectable difference" from its 95% paired t-interval over seeds, uncorrected;
//! * **every other comparison**: each condition × readout × subset, and the fine-class probe of
//!   every condition (see [`crate::empirical::study::readouts::fine_probe`]), against the baseline, with its two-sided
//!   paired-t p-value and its Holm-adjusted p-value, the family being all of them; the report
//!   says how many there are and how many false verdicts uncorrected 95% intervals would give by
//!   chance if nothing differed;
//! * the **placebo beside the primary arm** on every subset: an arm of randomly grouped labels
//!   nested in the targets (family "random, aligned") is as unlike the baseline as the fine
//!   labels but carries no fine-class information, so a subset on which it gains as much as the
//!   fine arm measures the selection, not fine-class learning;
//! * the **contrasts** ([`ContrastRow`]): whether an arm's difference from the baseline is
//!   larger on a subset than on the other test images, beyond the placebo's, seed by seed; a
//!   second Holm family;
//! * every pretrained arm **against the two-stage control** ([`ControlRow`]: the arm pretrained
//!   on the target labels themselves, same epochs, same readout): what the pretraining labels do
//!   beyond the two-stage recipe; a third Holm family;
//! * the **shape of the granularity curve** ([`ShapeRow`]): whether the error of the pretrained
//!   arms along the hierarchy is U-shaped in the number of classes (the two-lines test); a
//!   fourth Holm family.
//!
//! Each comparison pairs the arm and the baseline seed by seed (same seed: the same training
//! images, and with `train.batch_keying = "seed"` the same batches).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::shape::{
    curves, ConditionInfo, Key, Measured, MeasuredBy, ShapeRow, FITTED_TRAIN_ERROR,
};
use super::stats::{holm, paired_t, Paired, Verdict};
use crate::empirical::error::EmpiricalError;
use crate::empirical::study::config::{Comparison, Readout, StudyConfig};
use crate::empirical::study::results::{CellResult, DesignSubsets};
use crate::plot::{HBand, LineChart, Series};
use crate::report::{MarkdownTable, MeanSd};

/// The file of the comparisons, beside `comparisons.md`.
pub const COMPARISONS_FILE: &str = "comparisons.json";

/// The name of the fine-class probe in the readout column of a comparison.
pub const FINE_PROBE: &str = "fine_probe";

/// Every comparison of a study with its baseline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparisons {
    /// The study.
    pub study: String,
    /// The leaves' names (of the first design with a validation split).
    #[serde(default)]
    pub leaf_names: Vec<String>,
    /// The target-only ensemble's error on each leaf's validation images (that design's).
    #[serde(default)]
    pub leaf_validation_error: Vec<f64>,
    /// The number of target classes (the baseline's).
    #[serde(default)]
    pub target_classes: usize,
    /// The primary comparison as named in the config.
    pub primary_named: Option<Comparison>,
    /// Its result (none when it is not named or its cells have not run).
    pub primary: Option<ComparisonRow>,
    /// Every other comparison, with Holm-adjusted p-values across all of them.
    pub others: Vec<ComparisonRow>,
    /// How many other comparisons have a p-value (the Holm family).
    pub made: usize,
    /// The false verdicts that uncorrected 95% intervals give among them by chance where nothing
    /// differs (5% of them).
    pub expected_false_uncorrected: f64,
    /// The fine-class probe leaf by leaf (descriptive; not in the Holm family).
    #[serde(default)]
    pub mechanism: Vec<MechanismRow>,
    /// Whether each arm's gain concentrates on a test subset beyond what the placebo's does
    /// (a second Holm family, of these rows alone).
    #[serde(default)]
    pub contrasts: Vec<ContrastRow>,
    /// Every pretrained arm against the two-stage control, readout by readout, on all test
    /// images (a third Holm family, of these rows alone; empty without a control).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub against_control: Vec<ControlRow>,
    /// Whether each readout's error along the granularity path is U-shaped (a fourth Holm
    /// family, of these rows alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shapes: Vec<ShapeRow>,
}

/// A pretrained arm against the two-stage control: the arm pretrained on the target labels
/// themselves (family "manual hierarchy", as many classes as the targets) for the same epochs and
/// read out the same way. The control has everything of the two-stage recipe but other labels
/// (for fine-tuning: the extra phase, the probe's head, the learning-rate restart), so the
/// difference is what the pretraining labels alone do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControlRow {
    /// Design.
    pub design: String,
    /// Condition.
    pub condition: String,
    /// Its family of labels.
    pub family: String,
    /// Its number of pretraining classes.
    pub classes: usize,
    /// The control condition.
    pub control: String,
    /// The readout's name.
    pub readout: String,
    /// The arm's test error over the seeds both have.
    pub error: MeanSd,
    /// The control's test error over the same seeds.
    pub control_error: MeanSd,
    /// The arm's error on its own training images (evaluation mode).
    pub train_error: MeanSd,
    /// The control's.
    pub control_train_error: MeanSd,
    /// Arm − control, paired by seed (negative: the arm's labels do better).
    pub paired: Paired,
    /// Its two-sided paired-t p-value.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub p: f64,
    /// Holm-adjusted among these rows.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub p_holm: f64,
    /// The verdict at adjusted p < 0.05.
    pub verdict: Verdict,
}

/// Whether an arm's difference from the baseline concentrates on a test subset more than the
/// placebo's does. Per seed, the *contrast* of an arm is (arm − baseline on the subset) −
/// (arm − baseline on the other test images); a subset chosen as hard for the baseline's kind
/// of network gives every arm unlike the baseline some contrast, so the arm's contrast is
/// compared with the placebo's (random labels nested in the targets, same readout, same
/// pretraining mode), seed by seed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContrastRow {
    /// Design.
    pub design: String,
    /// Condition.
    pub condition: String,
    /// The placebo condition it is compared with.
    pub placebo: String,
    /// The readout's name.
    pub readout: String,
    /// The test subset.
    pub subset: String,
    /// Test images in the subset.
    pub images: usize,
    /// The arm's contrast per seed (as the difference of its subset and other-image
    /// differences).
    pub arm: Paired,
    /// The placebo's contrast per seed.
    pub placebo_contrast: Paired,
    /// The arm's contrast minus the placebo's, paired by seed (negative: the arm's gain
    /// concentrates on the subset more than the placebo's).
    pub paired: Paired,
    /// Its two-sided paired-t p-value.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub p: f64,
    /// Holm-adjusted among the contrasts.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub p_holm: f64,
    /// The verdict at adjusted p < 0.05.
    pub verdict: Verdict,
}

/// Per seed, (a − b on the subset) − (a − b on the other images), from the errors on the
/// subset (`s`, `in_s` images) and on all `n` images; seeds where either side is missing are
/// left out.
fn contrast_per_seed(
    arm_s: &Measured,
    arm_all: &Measured,
    base_s: &Measured,
    base_all: &Measured,
    in_s: usize,
    n: usize,
) -> Vec<(u64, f64)> {
    let rest = |s: f64, all: f64| (all * n as f64 - s * in_s as f64) / (n - in_s) as f64;
    let find = |m: &Measured, seed: u64| m.iter().find(|x| x.0 == seed).map(|x| x.1);
    arm_s
        .iter()
        .filter_map(|&(seed, a_s, _)| {
            let (a_all, b_s, b_all) = (
                find(arm_all, seed)?,
                find(base_s, seed)?,
                find(base_all, seed)?,
            );
            let d_s = a_s - b_s;
            let d_rest = rest(a_s, a_all) - rest(b_s, b_all);
            Some((seed, d_s - d_rest))
        })
        .collect()
}

/// Holm-adjusted verdicts of `rows`' p-values, in place.
fn holm_verdicts<'a>(p: &[f64], out: impl Iterator<Item = (&'a mut f64, &'a mut Verdict, f64)>) {
    for ((p_holm, verdict, mean), adj) in out.zip(holm(p)) {
        *p_holm = adj;
        *verdict = if adj < 0.05 && mean < 0.0 {
            Verdict::Helps
        } else if adj < 0.05 && mean > 0.0 {
            Verdict::Hurts
        } else {
            Verdict::NoDetectableDifference
        };
    }
}

/// The fine-class probe of one condition leaf by leaf: how well its frozen features tell each
/// leaf from the other leaves of its target class, against how hard coarse training finds the
/// leaf (the target-only ensemble's error on the leaf's validation images).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MechanismRow {
    /// Design.
    pub design: String,
    /// Condition ("baseline" included).
    pub condition: String,
    /// Seeds.
    pub seeds: usize,
    /// The probe's accuracy inside the target classes, over seeds.
    pub within_target_acc: MeanSd,
    /// Its mean over seeds on each leaf (NaN where not measured).
    pub per_leaf: Vec<f64>,
    /// Spearman's rank correlation over leaves with the ensemble's validation error: for the
    /// baseline of its per-leaf accuracy, for every other condition of its per-leaf gain over
    /// the baseline (NaN without a validation split).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub spearman_with_leaf_error: f64,
}

/// Spearman's rank correlation of the pairs of `x` and `y` where both are finite (ties get
/// their mean rank); NaN with fewer than 3 pairs or no spread.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let pairs: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(&a, &b)| (a, b))
        .collect();
    if pairs.len() < 3 {
        return f64::NAN;
    }
    let ranks = |v: Vec<f64>| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            for &k in &idx[i..=j] {
                r[k] = (i + j) as f64 / 2.0 + 1.0;
            }
            i = j + 1;
        }
        r
    };
    let rx = ranks(pairs.iter().map(|p| p.0).collect());
    let ry = ranks(pairs.iter().map(|p| p.1).collect());
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    if vx == 0.0 || vy == 0.0 {
        f64::NAN
    } else {
        cov / (vx * vy).sqrt()
    }
}

/// The fine-class probes leaf by leaf, per design and condition (the baseline first).
fn mechanism(cells: &[CellResult], subsets: &[DesignSubsets]) -> Vec<MechanismRow> {
    let mut groups: BTreeMap<(String, String), Vec<&CellResult>> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for c in cells.iter().filter(|c| c.fine_probe.is_some()) {
        let key = (c.design.clone(), c.condition.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(c);
    }
    order.sort_by_key(|k| (k.0.clone(), k.1 != "baseline"));
    let per_leaf = |cs: &[&CellResult]| -> Vec<f64> {
        let n = cs
            .iter()
            .filter_map(|c| c.fine_probe.as_ref())
            .map(|f| f.per_leaf.len())
            .max()
            .unwrap_or(0);
        (0..n)
            .map(|l| {
                let v: Vec<f64> = cs
                    .iter()
                    .filter_map(|c| c.fine_probe.as_ref()?.per_leaf.get(l).copied().flatten())
                    .collect();
                MeanSd::of(&v).mean
            })
            .collect()
    };
    let mut out: Vec<MechanismRow> = Vec::new();
    for key in &order {
        let cs = &groups[key];
        let leaves = per_leaf(cs);
        let error = subsets
            .iter()
            .find(|s| s.design == key.0)
            .map(|s| s.leaf_validation_error.clone())
            .unwrap_or_default();
        let spearman_with_leaf_error = if key.1 == "baseline" {
            spearman(&leaves, &error)
        } else {
            match out
                .iter()
                .find(|m| m.design == key.0 && m.condition == "baseline")
            {
                Some(b) => {
                    let gain: Vec<f64> =
                        leaves.iter().zip(&b.per_leaf).map(|(a, b)| a - b).collect();
                    spearman(&gain, &error)
                }
                None => f64::NAN,
            }
        };
        let acc: Vec<f64> = cs
            .iter()
            .filter_map(|c| c.fine_probe.as_ref().map(|f| f.within_target_acc))
            .collect();
        out.push(MechanismRow {
            design: key.0.clone(),
            condition: key.1.clone(),
            seeds: cs.len(),
            within_target_acc: MeanSd::of(&acc),
            per_leaf: leaves,
            spearman_with_leaf_error,
        });
    }
    out
}

/// One comparison with the baseline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComparisonRow {
    /// Design.
    pub design: String,
    /// Condition.
    pub condition: String,
    /// Its family of label sets.
    pub family: String,
    /// Its pretraining classes.
    pub classes: usize,
    /// The readout's name, or [`FINE_PROBE`] (the error of telling the fine classes apart
    /// inside their own target class).
    pub readout: String,
    /// The test subset ("all" or a name of `subsets.json`).
    pub subset: String,
    /// Test images in the subset.
    pub images: usize,
    /// The arm's error on the subset, over seeds.
    pub error: MeanSd,
    /// The baseline's.
    pub baseline_error: MeanSd,
    /// The arm's error on its own training images, in evaluation mode (NaN where not
    /// measured): whether the network converged.
    pub train_error: MeanSd,
    /// The baseline's.
    pub baseline_train_error: MeanSd,
    /// The per-seed differences, their mean, 95% t-interval and verdict.
    pub paired: Paired,
    /// The paired t statistic.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub t: f64,
    /// Its two-sided p-value (NaN with fewer than two seeds).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub p: f64,
    /// The Holm-adjusted p-value across the study's other comparisons (NaN for the primary).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub p_holm: f64,
    /// The verdict at adjusted p < 0.05 (the sign of the mean difference); for the primary,
    /// the interval's verdict.
    pub verdict: Verdict,
}

/// The top-1 error of `predictions` against `targets` on the images `subset` (all when none).
fn subset_error(predictions: &[u32], targets: &[u32], subset: Option<&[u32]>) -> f64 {
    let wrong = |i: usize| (predictions[i] != targets[i]) as usize;
    match subset {
        None => (0..targets.len()).map(wrong).sum::<usize>() as f64 / targets.len() as f64,
        Some([]) => f64::NAN,
        Some(idx) => {
            idx.iter().map(|&i| wrong(i as usize)).sum::<usize>() as f64 / idx.len() as f64
        }
    }
}

/// The comparisons of a study from its cells and `subsets.json`; none when no cell saved its
/// predictions. Refused when a cell's predictions do not cover the test set.
pub fn compare(
    cfg: &StudyConfig,
    cells: &[CellResult],
    subsets: &[DesignSubsets],
) -> Result<Option<Comparisons>, EmpiricalError> {
    let with_predictions = cells
        .iter()
        .any(|c| c.readouts.iter().any(|r| !r.predictions.is_empty()));
    // a preparation written before the test targets were kept cannot score predictions
    if !with_predictions || subsets.iter().all(|s| s.test_targets.is_empty()) {
        return Ok(None);
    }
    // what every condition measured, by (design, condition, readout, subset)
    let mut measured = MeasuredBy::new();
    let mut info = ConditionInfo::new();
    let mut order: Vec<Key> = Vec::new();
    let mut push = |key: (String, String, String, String), v: (u64, f64, f64)| {
        let e = measured.entry(key.clone()).or_default();
        if e.is_empty() {
            order.push(key);
        }
        e.push(v);
    };
    for c in cells {
        let Some(ds) = subsets
            .iter()
            .find(|s| s.design == c.design && !s.test_targets.is_empty())
        else {
            continue;
        };
        let targets = &ds.test_targets;
        info.insert(c.condition.clone(), (c.family.clone(), c.classes));
        for r in &c.readouts {
            if r.predictions.is_empty() {
                continue;
            }
            if r.predictions.len() != targets.len() {
                return Err(EmpiricalError::invalid(
                    "cells",
                    format!(
                        "cell {} / {} / seed {}: {} saved predictions for {} test images",
                        c.design,
                        c.condition,
                        c.seed,
                        r.predictions.len(),
                        targets.len()
                    ),
                ));
            }
            let mut names: Vec<(&str, Option<&[u32]>)> = vec![("all", None)];
            names.extend(
                ds.subsets
                    .iter()
                    .map(|(n, v)| (n.as_str(), Some(v.as_slice()))),
            );
            for (name, idx) in names {
                let key = (
                    c.design.clone(),
                    c.condition.clone(),
                    r.readout.name().to_string(),
                    name.to_string(),
                );
                let err = subset_error(&r.predictions, targets, idx);
                push(key, (c.seed, err, r.train_error));
            }
        }
        if let Some(f) = &c.fine_probe {
            let key = (
                c.design.clone(),
                c.condition.clone(),
                FINE_PROBE.to_string(),
                "all".to_string(),
            );
            push(key, (c.seed, 1.0 - f.within_target_acc, f64::NAN));
        }
    }
    let size = |design: &str, subset: &str| -> usize {
        let ds = subsets.iter().find(|s| s.design == design);
        match (ds, subset) {
            (Some(d), "all") => d.test_targets.len(),
            (Some(d), s) => d.subsets.get(s).map_or(0, Vec::len),
            (None, _) => 0,
        }
    };
    let row = |key: &(String, String, String, String)| -> Option<ComparisonRow> {
        let (design, condition, readout, subset) = key;
        if condition == "baseline" {
            return None;
        }
        let base_readout = if readout == FINE_PROBE {
            FINE_PROBE
        } else {
            Readout::Scratch.name()
        };
        let base = measured.get(&(
            design.clone(),
            "baseline".to_string(),
            base_readout.to_string(),
            subset.clone(),
        ))?;
        let arm = &measured[key];
        let pairs: Vec<(u64, f64, f64)> = arm
            .iter()
            .filter_map(|&(s, a, _)| base.iter().find(|b| b.0 == s).map(|&(_, b, _)| (s, a, b)))
            .collect();
        let paired = Paired::of(&pairs);
        let (t, p) = paired_t(&paired.diffs);
        let (family, classes) = info.get(condition).cloned().unwrap_or_default();
        let seeds = &paired.seeds;
        let of = |m: &Measured, test: bool| {
            let v: Vec<f64> = m
                .iter()
                .filter(|x| seeds.contains(&x.0))
                .map(|x| if test { x.1 } else { x.2 })
                .collect();
            MeanSd::of(&v)
        };
        Some(ComparisonRow {
            design: design.clone(),
            condition: condition.clone(),
            family,
            classes,
            readout: readout.clone(),
            subset: subset.clone(),
            images: size(design, subset),
            error: of(arm, true),
            baseline_error: of(base, true),
            train_error: of(arm, false),
            baseline_train_error: of(base, false),
            verdict: paired.verdict,
            paired,
            t,
            p,
            p_holm: f64::NAN,
        })
    };
    let mut rows: Vec<ComparisonRow> = order.iter().filter_map(row).collect();
    let named = cfg.analysis.as_ref().map(|a| {
        let mut c = a.primary.clone();
        if c.design.is_empty() {
            c.design = cfg
                .design_plan()
                .first()
                .map(|d| d.0.clone())
                .unwrap_or_default();
        }
        c
    });
    let is_primary = |r: &ComparisonRow| {
        named.as_ref().is_some_and(|c| {
            r.design == c.design
                && r.condition == c.condition
                && r.readout == c.readout.name()
                && r.subset == c.subset
        })
    };
    let primary = rows.iter().position(is_primary).map(|i| rows.remove(i));
    let ps: Vec<f64> = rows.iter().map(|r| r.p).collect();
    holm_verdicts(
        &ps,
        rows.iter_mut()
            .map(|r| (&mut r.p_holm, &mut r.verdict, r.paired.mean)),
    );
    let made = rows.iter().filter(|r| r.p.is_finite()).count();
    let mut contrasts: Vec<ContrastRow> = Vec::new();
    let is_placebo = |cond: &str| {
        info.get(cond)
            .is_some_and(|(family, _)| family.ends_with("random, aligned"))
    };
    let get = |d: &str, c: &str, r: &str, s: &str| {
        measured.get(&(d.to_string(), c.to_string(), r.to_string(), s.to_string()))
    };
    for (design, condition, readout, subset) in &order {
        if condition == "baseline"
            || is_placebo(condition)
            || readout == FINE_PROBE
            || subset == "all"
            || subset == "easy"
        {
            continue;
        }
        let direct = condition.ends_with(" direct");
        let Some(placebo) = order.iter().find(|k| {
            &k.0 == design
                && is_placebo(&k.1)
                && k.1.ends_with(" direct") == direct
                && &k.2 == readout
                && &k.3 == subset
        }) else {
            continue;
        };
        let (n, in_s) = (size(design, "all"), size(design, subset));
        if in_s == 0 || in_s >= n {
            continue;
        }
        let scratch = Readout::Scratch.name();
        let (Some(a_s), Some(a_all), Some(p_s), Some(p_all), Some(b_s), Some(b_all)) = (
            get(design, condition, readout, subset),
            get(design, condition, readout, "all"),
            get(design, &placebo.1, readout, subset),
            get(design, &placebo.1, readout, "all"),
            get(design, "baseline", scratch, subset),
            get(design, "baseline", scratch, "all"),
        ) else {
            continue;
        };
        let arm = contrast_per_seed(a_s, a_all, b_s, b_all, in_s, n);
        let plc = contrast_per_seed(p_s, p_all, b_s, b_all, in_s, n);
        let as_pairs = |v: &[(u64, f64)]| -> Vec<(u64, f64, f64)> {
            v.iter().map(|&(s, c)| (s, c, 0.0)).collect()
        };
        let both: Vec<(u64, f64, f64)> = arm
            .iter()
            .filter_map(|&(s, a)| plc.iter().find(|x| x.0 == s).map(|&(_, b)| (s, a, b)))
            .collect();
        let paired = Paired::of(&both);
        let (_, p) = paired_t(&paired.diffs);
        contrasts.push(ContrastRow {
            design: design.clone(),
            condition: condition.clone(),
            placebo: placebo.1.clone(),
            readout: readout.clone(),
            subset: subset.clone(),
            images: in_s,
            arm: Paired::of(&as_pairs(&arm)),
            placebo_contrast: Paired::of(&as_pairs(&plc)),
            verdict: paired.verdict,
            paired,
            p,
            p_holm: f64::NAN,
        });
    }
    let ps: Vec<f64> = contrasts.iter().map(|c| c.p).collect();
    holm_verdicts(
        &ps,
        contrasts
            .iter_mut()
            .map(|c| (&mut c.p_holm, &mut c.verdict, c.paired.mean)),
    );
    let target_classes = cells
        .iter()
        .find(|c| c.condition == "baseline")
        .map_or(0, |c| c.classes);
    let mut against_control: Vec<ControlRow> = Vec::new();
    let is_control = |cond: &str| {
        cond != "baseline"
            && !cond.ends_with(" direct")
            && info.get(cond).is_some_and(|(family, classes)| {
                family == "manual hierarchy" && *classes == target_classes
            })
    };
    for (design, condition, readout, subset) in &order {
        let Some(control) = order
            .iter()
            .find(|k| &k.0 == design && is_control(&k.1))
            .map(|k| k.1.clone())
        else {
            continue;
        };
        if condition == "baseline"
            || *condition == control
            || condition.ends_with(" direct")
            || readout == FINE_PROBE
            || subset != "all"
        {
            continue;
        }
        let (Some(arm), Some(ctl)) = (
            get(design, condition, readout, subset),
            get(design, &control, readout, subset),
        ) else {
            continue;
        };
        let pairs: Vec<(u64, f64, f64)> = arm
            .iter()
            .filter_map(|&(s, a, _)| ctl.iter().find(|c| c.0 == s).map(|&(_, c, _)| (s, a, c)))
            .collect();
        let paired = Paired::of(&pairs);
        let (_, p) = paired_t(&paired.diffs);
        let seeds = &paired.seeds;
        let of = |m: &Measured, test: bool| {
            let v: Vec<f64> = m
                .iter()
                .filter(|x| seeds.contains(&x.0))
                .map(|x| if test { x.1 } else { x.2 })
                .collect();
            MeanSd::of(&v)
        };
        let (family, classes) = info.get(condition).cloned().unwrap_or_default();
        against_control.push(ControlRow {
            design: design.clone(),
            condition: condition.clone(),
            family,
            classes,
            control,
            readout: readout.clone(),
            error: of(arm, true),
            control_error: of(ctl, true),
            train_error: of(arm, false),
            control_train_error: of(ctl, false),
            verdict: paired.verdict,
            paired,
            p,
            p_holm: f64::NAN,
        });
    }
    let ps: Vec<f64> = against_control.iter().map(|c| c.p).collect();
    holm_verdicts(
        &ps,
        against_control
            .iter_mut()
            .map(|c| (&mut c.p_holm, &mut c.verdict, c.paired.mean)),
    );
    let shapes = curves(&measured, &info, &order);
    Ok(Some(Comparisons {
        study: cfg.name.clone(),
        leaf_names: subsets
            .iter()
            .find(|s| !s.leaf_validation_error.is_empty())
            .map(|s| s.leaf_names.clone())
            .unwrap_or_default(),
        leaf_validation_error: subsets
            .iter()
            .find(|s| !s.leaf_validation_error.is_empty())
            .map(|s| s.leaf_validation_error.clone())
            .unwrap_or_default(),
        target_classes,
        primary_named: named,
        primary,
        others: rows,
        made,
        expected_false_uncorrected: 0.05 * made as f64,
        mechanism: mechanism(cells, subsets),
        contrasts,
        against_control,
        shapes,
    }))
}

/// `0.425 ± 0.010 (train 0.000)`: a test error over seeds with its training error.
fn with_train(e: &MeanSd, train: &MeanSd) -> String {
    let t = if train.mean.is_finite() {
        format!(" (train {:.3})", train.mean)
    } else {
        String::new()
    };
    format!("{:.3} ± {:.3}{t}", e.mean, e.sd)
}

/// A p-value for tables.
fn p_text(p: f64) -> String {
    if p.is_nan() {
        "–".into()
    } else if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

impl Comparisons {
    /// The Markdown report (`comparisons.md`).
    pub fn markdown(&self) -> String {
        let mut md = format!("# Comparisons of study `{}`\n\n", self.study);
        md.push_str("Every number is re-scored from the per-image test predictions the cells saved. Errors are top-1 target errors, mean ± sd over seeds, with the arm's error on its own training images (evaluation mode, no augmentation) in parentheses: a network that has not fitted its training data is not evidence either way. Differences are paired by seed (arm − baseline; negative = lower error than the baseline) with 95% t-intervals.\n\n## Primary comparison\n\n");
        match (&self.primary_named, &self.primary) {
            (None, _) => md.push_str("None named in the config (`[analysis] primary`).\n"),
            (Some(c), None) => md.push_str(&format!(
                "Named: `{}`, {}, on {} test images of design `{}`; its cells have not run yet.\n",
                c.condition,
                c.readout.title(),
                c.subset,
                c.design
            )),
            (Some(c), Some(r)) => md.push_str(&format!(
                "Named in the config before the study ran: `{}`, {}, on {} test images ({}) of design `{}`, against the baseline trained from scratch.\n\n* arm: {}\n* baseline: {}\n* paired difference over {}: **{}**, p = {} (two-sided paired t, uncorrected)\n* verdict from the 95% interval: **{}**\n",
                c.condition,
                c.readout.title(),
                c.subset,
                r.images,
                c.design,
                with_train(&r.error, &r.train_error),
                with_train(&r.baseline_error, &r.baseline_train_error),
                match r.paired.seeds.len() {
                    1 => "1 seed".to_string(),
                    n => format!("{n} seeds"),
                },
                r.paired.interval(),
                p_text(r.p),
                r.verdict.words()
            )),
        }
        let helps = self
            .others
            .iter()
            .filter(|r| r.verdict == Verdict::Helps)
            .count();
        let hurts = self
            .others
            .iter()
            .filter(|r| r.verdict == Verdict::Hurts)
            .count();
        let uncorrected = self
            .others
            .iter()
            .filter(|r| r.paired.verdict != Verdict::NoDetectableDifference)
            .count();
        let untested = self.others.len() - self.made;
        let untested = if untested == 0 {
            String::new()
        } else {
            format!(
                " {untested} more are listed without a p-value (a single seed, or no spread over \
                 seeds) and are not part of the family."
            )
        };
        md.push_str(&format!(
            "\n## Every other comparison\n\n{} other comparisons were made (each condition × readout × test subset, and the fine-class probe of every condition). If nothing differed, uncorrected 95% intervals would give about {:.1} false verdicts among them by chance; uncorrected, {} of them exclude zero. Each is listed with its two-sided paired-t p-value and its Holm-adjusted p-value (the family: all {} comparisons); the verdict column is read at adjusted p < 0.05: {} helps, {} hurts, the rest no detectable difference.{}\n\n",
            self.made, self.expected_false_uncorrected, uncorrected, self.made, helps, hurts, untested
        ));
        let tables = self.placebo_tables();
        if !tables.is_empty() {
            md.push_str("### The placebo beside the fine labels\n\nThe fine-label arm beside the arms of random labels nested in the targets (as unlike the baseline, no fine-class information) and, fine-tuned, the two-stage control (pretrained on the target labels, then fine-tuned), on every test subset: a subset on which the placebo gains as much as the fine arm measures the selection or the extra training, not fine-class learning.\n\n");
            for (title, t) in tables {
                md.push_str(&format!("{title}:\n\n{t}\n"));
            }
        }
        if !self.contrasts.is_empty() {
            md.push_str(&self.contrasts_markdown());
        }
        if !self.against_control.is_empty() {
            md.push_str(&self.control_markdown());
        }
        if !self.shapes.is_empty() {
            md.push_str(&self.shape_markdown());
        }
        if !self.mechanism.is_empty() {
            md.push_str(&self.mechanism_markdown(&self.leaf_names));
        }
        md.push_str("### All\n\n");
        md.push_str(&self.table(&self.others).to_string());
        md
    }

    /// The section on whether gains concentrate on a subset beyond the placebo's.
    fn contrasts_markdown(&self) -> String {
        let tested = self.contrasts.iter().filter(|c| c.p.is_finite()).count();
        let mut md = format!("### Does the gain concentrate on a subset more than the placebo's?\n\nFor each arm, readout and test subset, the arm's *contrast* per seed: its difference from the baseline on the subset minus its difference on the other test images (negative: it gains more, or loses less, on the subset). A subset picked as hard for target-only training gives any arm unlike the baseline such a contrast (more room to gain, less to lose), so each contrast is compared, seed by seed, with the placebo's (same readout, same pretraining mode). A second family: {tested} of these {} rows have a p-value, Holm-adjusted among themselves; verdicts at adjusted p < 0.05.\n\n", self.contrasts.len());
        let mut t = MarkdownTable::new([
            "design",
            "condition",
            "readout",
            "subset",
            "images",
            "arm's contrast [95%]",
            "placebo",
            "placebo's contrast [95%]",
            "arm − placebo [95%]",
            "p",
            "Holm p",
            "verdict (Holm)",
        ]);
        for c in &self.contrasts {
            t.row([
                c.design.clone(),
                c.condition.clone(),
                c.readout.clone(),
                c.subset.clone(),
                c.images.to_string(),
                c.arm.interval(),
                c.placebo.clone(),
                c.placebo_contrast.interval(),
                c.paired.interval(),
                p_text(c.p),
                p_text(c.p_holm),
                c.verdict.words().to_string(),
            ]);
        }
        md.push_str(&t.to_string());
        md.push('\n');
        md
    }

    /// The section of the pretrained arms against the two-stage control.
    fn control_markdown(&self) -> String {
        let tested = self
            .against_control
            .iter()
            .filter(|c| c.p.is_finite())
            .count();
        let mut md = format!("### Against the two-stage control

Every pretrained arm against the arm pretrained on the target labels themselves, for the same epochs and read out the same way, on all test images: the two-stage recipe (for fine-tuning: the extra phase, the probe's head, the learning-rate restart) is the same on both sides, so the difference is what the pretraining labels alone do. A third family: {tested} of these {} rows have a p-value, Holm-adjusted among themselves; verdicts at adjusted p < 0.05.\n\n", self.against_control.len());
        let mut t = MarkdownTable::new([
            "design",
            "condition",
            "classes",
            "readout",
            "seeds",
            "arm error (train)",
            "control",
            "control error (train)",
            "arm − control [95%]",
            "p",
            "Holm p",
            "verdict (Holm)",
        ]);
        for c in &self.against_control {
            t.row([
                c.design.clone(),
                c.condition.clone(),
                c.classes.to_string(),
                c.readout.clone(),
                c.paired.seeds.len().to_string(),
                with_train(&c.error, &c.train_error),
                c.control.clone(),
                with_train(&c.control_error, &c.control_train_error),
                c.paired.interval(),
                p_text(c.p),
                p_text(c.p_holm),
                c.verdict.words().to_string(),
            ]);
        }
        md.push_str(&t.to_string());
        md.push('\n');
        md
    }

    /// The section on the shape of the granularity curve.
    fn shape_markdown(&self) -> String {
        let tested = self.shapes.iter().filter(|c| c.p.is_finite()).count();
        let mut md = format!("### Is the error U-shaped in granularity?

The pretrained arms along the hierarchy, from coarser than the target to one label per image (families {}), read out the same way, on all test images. The two-lines test: the break is the level with the lowest mean error; per seed, the least-squares slope of error in log10(classes) from the coarsest level to the break (*falls*) and from the break to the finest (*rises*); a U needs both, each by a one-sided paired t over seeds, so its p-value is the larger of the two. Each curve also over the levels whose mean training error is at most {FITTED_TRAIN_ERROR} (evaluation mode) alone, where any is above: a network that has not fitted is not evidence either way. A fourth family: {tested} of these {} rows have a p-value (none where the lowest error is at an end), Holm-adjusted among themselves; verdicts at adjusted p < 0.05.\n\n", super::shape::PATH_FAMILIES.map(|f| format!("\"{f}\"")).join(", "), self.shapes.len());
        let mut t = MarkdownTable::new([
            "design",
            "readout",
            "levels",
            "seeds",
            "error by classes (train)",
            "best",
            "slope before [95%]",
            "slope after [95%]",
            "p",
            "Holm p",
            "verdict (Holm)",
        ]);
        for r in &self.shapes {
            let levels = r
                .levels
                .iter()
                .map(|l| {
                    let train = if l.train_error.mean.is_finite() {
                        format!(" ({:.3})", l.train_error.mean)
                    } else {
                        String::new()
                    };
                    format!("{}: {:.3}{train}", l.classes, l.error.mean)
                })
                .collect::<Vec<_>>()
                .join("; ");
            t.row([
                r.design.clone(),
                r.readout.clone(),
                r.levels_used.clone(),
                r.levels.first().map_or(0, |l| l.error.n).to_string(),
                levels,
                r.best.clone(),
                r.falling.interval(),
                r.rising.interval(),
                p_text(r.p),
                p_text(r.p_holm),
                r.shape.words().to_string(),
            ]);
        }
        md.push_str(&t.to_string());
        md.push('\n');
        md
    }

    /// The fine-class probe section of the report.
    fn mechanism_markdown(&self, leaf_names: &[String]) -> String {
        let mut md = String::from("### The fine classes in the frozen features\n\nA linear probe of each network's frozen features trained on the fine labels of the training images, scored on the test images as the accuracy of telling each fine class from the other fine classes of its own target class (chance: one over the leaves of the target). The paired comparisons with the baseline (as an error, 1 − accuracy) are in the table below as readout `fine_probe`. Spearman's ρ is over leaves, with the target-only ensemble's error on each leaf's validation images: for the baseline, of its per-leaf accuracy (the theory expects coarse-trained features to separate worst the leaves coarse training handles worst: ρ < 0); for every other arm, of its per-leaf gain over the baseline (ρ > 0: the gain is largest there). Descriptive: not in the Holm family.\n\n");
        let mut t = MarkdownTable::new([
            "design",
            "condition",
            "seeds",
            "fine-class accuracy within the target",
            "Spearman ρ with the leaf's ensemble error",
        ]);
        for m in &self.mechanism {
            t.row([
                m.design.clone(),
                m.condition.clone(),
                m.seeds.to_string(),
                format!(
                    "{:.3} ± {:.3}",
                    m.within_target_acc.mean, m.within_target_acc.sd
                ),
                if m.spearman_with_leaf_error.is_nan() {
                    "–".to_string()
                } else {
                    format!("{:+.2}", m.spearman_with_leaf_error)
                },
            ]);
        }
        md.push_str(&t.to_string());
        let base = self.mechanism.iter().find(|m| m.condition == "baseline");
        let shown: Vec<&MechanismRow> = self
            .mechanism
            .iter()
            .filter(|m| {
                m.condition == "baseline"
                    || self
                        .primary_named
                        .as_ref()
                        .is_some_and(|c| c.condition == m.condition)
            })
            .collect();
        if let (Some(_), true) = (base, shown.len() > 1 && !leaf_names.is_empty()) {
            md.push_str("\nLeaf by leaf (mean over seeds), the leaves coarse training finds hardest first:\n\n");
            let mut header = vec!["leaf".to_string(), "ensemble validation error".to_string()];
            header.extend(shown.iter().map(|m| m.condition.clone()));
            let mut t = MarkdownTable::new(header);
            let errors = &self.leaf_validation_error;
            let mut order: Vec<usize> = (0..leaf_names.len()).collect();
            order.sort_by(|&a, &b| {
                let e = |l: usize| errors.get(l).copied().unwrap_or(f64::NAN);
                e(b).total_cmp(&e(a)).then(a.cmp(&b))
            });
            for l in order {
                let mut row = vec![
                    leaf_names[l].clone(),
                    errors.get(l).map_or("–".into(), |e| format!("{e:.2}")),
                ];
                row.extend(
                    shown
                        .iter()
                        .map(|m| m.per_leaf.get(l).map_or("–".into(), |a| format!("{a:.2}"))),
                );
                t.row(row);
            }
            md.push_str(&t.to_string());
        }
        md.push('\n');
        md
    }

    /// The table of `rows`.
    fn table(&self, rows: &[ComparisonRow]) -> MarkdownTable {
        let mut t = MarkdownTable::new([
            "design",
            "condition",
            "readout",
            "subset",
            "images",
            "seeds",
            "error (train)",
            "baseline (train)",
            "paired difference [95%]",
            "p",
            "Holm p",
            "verdict (Holm)",
        ]);
        for r in rows {
            t.row([
                r.design.clone(),
                r.condition.clone(),
                r.readout.clone(),
                r.subset.clone(),
                r.images.to_string(),
                r.paired.seeds.len().to_string(),
                with_train(&r.error, &r.train_error),
                with_train(&r.baseline_error, &r.baseline_train_error),
                r.paired.interval(),
                p_text(r.p),
                p_text(r.p_holm),
                r.verdict.words().to_string(),
            ]);
        }
        t
    }

    /// The side-by-side tables: the primary arm beside the placebo arms of the same kind
    /// (random labels nested in the targets, direct when the primary is), with the primary's
    /// readout; and, fine-tuned, the primary's labels pretrained beside the pretrained placebo
    /// and the two-stage control (pretrained on the target labels themselves).
    fn placebo_tables(&self) -> Vec<(String, MarkdownTable)> {
        let Some(c) = self.primary_named.as_ref() else {
            return Vec::new();
        };
        let all: Vec<&ComparisonRow> = self.primary.iter().chain(&self.others).collect();
        let direct = c.condition.ends_with(" direct");
        let placebos = |readout: &str, direct: bool| -> Vec<String> {
            let mut v: Vec<String> = Vec::new();
            for r in &all {
                if r.design == c.design
                    && r.family.ends_with("random, aligned")
                    && r.readout == readout
                    && r.condition.ends_with(" direct") == direct
                    && !v.contains(&r.condition)
                {
                    v.push(r.condition.clone());
                }
            }
            v
        };
        let mut out = Vec::new();
        let first = placebos(c.readout.name(), direct);
        if !first.is_empty() {
            let arms: Vec<String> = std::iter::once(c.condition.clone()).chain(first).collect();
            out.push((
                format!(
                    "{}, {}",
                    c.readout.title(),
                    if direct {
                        "direct arms"
                    } else {
                        "pretrained arms"
                    }
                ),
                self.side_by_side(&all, &c.design, c.readout.name(), &arms),
            ));
        }
        let ft = Readout::Finetune.name();
        let fine = c.condition.trim_end_matches(" direct").to_string();
        let target_classes = Some(self.target_classes);
        let two_stage: Vec<String> = all
            .iter()
            .filter(|r| {
                r.design == c.design
                    && r.readout == ft
                    && r.family == "manual hierarchy"
                    && Some(r.classes) == target_classes
                    && r.condition != fine
            })
            .map(|r| r.condition.clone())
            .take(1)
            .collect();
        let mut arms = vec![fine];
        arms.extend(placebos(ft, false));
        arms.extend(two_stage);
        if arms.len() > 1
            && all
                .iter()
                .any(|r| r.condition == arms[0] && r.readout == ft)
        {
            out.push((
                "full fine-tuning, pretrained arms (with the two-stage control)".to_string(),
                self.side_by_side(&all, &c.design, ft, &arms),
            ));
        }
        out
    }

    /// The paired differences of `arms` with `readout` on every test subset, side by side.
    fn side_by_side(
        &self,
        all: &[&ComparisonRow],
        design: &str,
        readout: &str,
        arms: &[String],
    ) -> MarkdownTable {
        let mut subsets: Vec<(String, usize)> = Vec::new();
        for r in all {
            if r.design == design && r.condition == arms[0] && r.readout == readout {
                subsets.push((r.subset.clone(), r.images));
            }
        }
        let mut header = vec!["subset".to_string(), "images".to_string()];
        header.extend(arms.iter().map(|a| format!("{a} (Holm p)")));
        let mut t = MarkdownTable::new(header);
        for (s, images) in &subsets {
            let mut cells = vec![s.clone(), images.to_string()];
            for a in arms {
                let r = all.iter().find(|r| {
                    r.design == design
                        && &r.condition == a
                        && r.readout == readout
                        && &r.subset == s
                });
                cells.push(match r {
                    Some(r) => {
                        let is_primary = self.primary.as_ref().is_some_and(|p| std::ptr::eq(p, *r));
                        let p = if is_primary {
                            "primary".to_string()
                        } else {
                            p_text(r.p_holm)
                        };
                        format!("{} ({p})", r.paired.interval())
                    }
                    None => "–".into(),
                });
            }
            t.row(cells);
        }
        t
    }

    /// The granularity figure of one readout: the paired difference with the baseline on all
    /// test images against the number of pretraining classes (log x), one line per family, 95%
    /// intervals as error bars, zero (the baseline) as the reference line. `direct`: the direct
    /// arms instead of the pretrained ones.
    pub fn granularity_chart(
        &self,
        design: &str,
        readout: &str,
        direct: bool,
    ) -> Option<LineChart> {
        let all: Vec<&ComparisonRow> = self.primary.iter().chain(&self.others).collect();
        // families in the order the rows list them (the config's), as the figures of
        // absolute errors do, so that a family has the same colour in both
        let mut fams: Vec<(String, Vec<(usize, &Paired)>)> = Vec::new();
        for r in all.iter().filter(|r| {
            r.design == design
                && r.readout == readout
                && r.subset == "all"
                && r.condition.ends_with(" direct") == direct
                && r.paired.mean.is_finite()
        }) {
            match fams.iter_mut().find(|(f, _)| *f == r.family) {
                Some((_, pts)) => pts.push((r.classes, &r.paired)),
                None => fams.push((r.family.clone(), vec![(r.classes, &r.paired)])),
            }
        }
        if fams.is_empty() {
            return None;
        }
        let n = fams.len();
        let x_ticks = super::figures::class_count_ticks(
            fams.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.0)),
        );
        let series = fams
            .iter()
            .enumerate()
            .map(|(j, (f, pts))| {
                let mut pts = pts.clone();
                pts.sort_by_key(|p| p.0);
                let shift = 10f64.powf(0.02 * (j as f64 - (n as f64 - 1.0) / 2.0));
                Series {
                    label: f.clone(),
                    x: pts.iter().map(|p| p.0 as f64 * shift).collect(),
                    mean: pts.iter().map(|p| p.1.mean).collect(),
                    sd: Some(
                        pts.iter()
                            .map(|p| super::stats::half_width(p.1.lo, p.1.hi))
                            .collect(),
                    ),
                }
            })
            .collect();
        let what = if readout == FINE_PROBE {
            "fine-class probe error (within each target)".to_string()
        } else {
            format!("target error, {}", readout.replace('_', " "))
        };
        Some(LineChart {
            title: format!(
                "{}{}: {what}, paired difference with the baseline (95% intervals)",
                self.study,
                if direct { ", direct arms" } else { "" }
            ),
            x_label: "pretraining classes (log scale; families shifted apart)".into(),
            y_label: "error − baseline error (negative = better)".into(),
            series,
            bands: vec![HBand {
                label: "baseline (from scratch)".into(),
                mean: 0.0,
                sd: 0.0,
            }],
            log_x: true,
            error_bars: true,
            x_ticks,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empirical::study::results::ReadoutError;

    /// Every pretrained arm is paired seed by seed with the arm pretrained on the target labels
    /// (same readout), which is not compared with itself; direct arms and the baseline are left
    /// out.
    #[test]
    fn arms_are_paired_with_the_two_stage_control_by_seed() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/experiments/empirical/granularity.toml"
        );
        let cfg: StudyConfig = crate::config::load_file(std::path::Path::new(path), &[]).unwrap();
        let targets: Vec<u32> = (0..10).map(|i| i % 5).collect();
        let cell = |condition: &str, classes: usize, seed: u64, wrong: usize| CellResult {
            design: "balanced".into(),
            condition: condition.into(),
            family: if condition.ends_with(" direct") {
                "direct, manual hierarchy".into()
            } else {
                "manual hierarchy".into()
            },
            seed,
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
                error: wrong as f64 / 10.0,
                easy_error: f64::NAN,
                hard_error: f64::NAN,
                confusable_error: f64::NAN,
                train_error: 0.01,
                start_train_error: f64::NAN,
                predictions: targets
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| if i < wrong { (t + 1) % 5 } else { t })
                    .collect(),
            }],
            epochs: Vec::new(),
            fine_probe: None,
        };
        let mut cells = Vec::new();
        for (seed, (control, fine, direct)) in
            [(3, 2, 1), (4, 2, 2), (3, 1, 2)].into_iter().enumerate()
        {
            let seed = seed as u64;
            cells.push(cell("baseline", 5, seed, 4));
            cells.push(cell("target-5", 5, seed, control));
            cells.push(cell("fine-25", 25, seed, fine));
            cells.push(cell("fine-25 direct", 25, seed, direct));
        }
        let subsets = vec![DesignSubsets {
            design: "balanced".into(),
            subsets: BTreeMap::new(),
            test_targets: targets.clone(),
            leaf_names: Vec::new(),
            leaf_validation_error: Vec::new(),
        }];
        let c = compare(&cfg, &cells, &subsets).unwrap().unwrap();
        assert_eq!(c.against_control.len(), 1, "{:?}", c.against_control);
        let r = &c.against_control[0];
        assert_eq!(
            (r.condition.as_str(), r.control.as_str(), r.readout.as_str()),
            ("fine-25", "target-5", "finetune")
        );
        assert_eq!(r.paired.seeds, vec![0, 1, 2]);
        for (d, want) in r.paired.diffs.iter().zip([-0.1, -0.2, -0.2]) {
            assert!((d - want).abs() < 1e-12, "{:?}", r.paired.diffs);
        }
        let (_, p) = paired_t(&[-0.1, -0.2, -0.2]);
        assert!(
            (r.p - p).abs() < 1e-12 && (r.p_holm - p).abs() < 1e-12,
            "{r:?}"
        );
        assert!((r.control_error.mean - 1.0 / 3.0).abs() < 1e-12);
        assert!(c.markdown().contains("### Against the two-stage control"));
    }

    #[test]
    fn spearman_by_hand() {
        // a monotone relation is 1 whatever its shape; reversed, -1
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 4.0, 9.0, 100.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // ranks 1, 2.5, 2.5, 4 against 1, 3, 2, 4: Pearson of the ranks = 4.5 / sqrt(4.5 * 5)
        let r = spearman(&[1.0, 2.0, 2.0, 5.0], &[10.0, 30.0, 20.0, 40.0]);
        assert!((r - 4.5 / (4.5f64 * 5.0).sqrt()).abs() < 1e-12, "{r}");
        // NaN pairs are left out; too few pairs give NaN
        assert!(spearman(&[1.0, f64::NAN, 2.0], &[1.0, 2.0, 3.0]).is_nan());
    }

    #[test]
    fn contrast_by_hand() {
        // 10 images, 4 in the subset. Seed 0: the arm errs on 2 of the subset and 1 of the other
        // 6 (all: 0.3), the baseline on 3 and 1 (all: 0.4): the subset difference is -0.25, on
        // the others 0, so the contrast is -0.25. Seed 1 has no baseline and is left out.
        let arm_s = vec![(0, 0.5, 0.0), (1, 0.5, 0.0)];
        let arm_all = vec![(0, 0.3, 0.0), (1, 0.3, 0.0)];
        let base_s = vec![(0, 0.75, 0.0)];
        let base_all = vec![(0, 0.4, 0.0)];
        let c = contrast_per_seed(&arm_s, &arm_all, &base_s, &base_all, 4, 10);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, 0);
        assert!((c[0].1 + 0.25).abs() < 1e-12, "{c:?}");
    }

    #[test]
    fn subset_errors_from_predictions() {
        let targets = [0, 1, 1, 2];
        let pred = [0, 2, 1, 0];
        assert_eq!(subset_error(&pred, &targets, None), 0.5);
        assert_eq!(subset_error(&pred, &targets, Some(&[1, 3])), 1.0);
        assert_eq!(subset_error(&pred, &targets, Some(&[0, 2])), 0.0);
        assert!(subset_error(&pred, &targets, Some(&[])).is_nan());
    }
}
