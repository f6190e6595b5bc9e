//! The shape of the granularity curve: is the error U-shaped in the number of pretraining
//! classes? The levels are the pretrained (two-stage) arms whose labels follow the hierarchy
//! from coarser than the target to one label per image ([`PATH_FAMILIES`]). For each readout, the
//! *two-lines test* (Simonsohn 2018, "Two lines: a valid alternative to the invalid testing of
//! U-shaped relationships with quadratic regressions"): the break is the level with the lowest
//! mean error; per seed, the least-squares slope of error in log10(classes) is taken from the
//! coarsest level to the break and from the break to the finest; a U needs the first slope
//! negative and the second positive, each detected by a one-sided paired t over seeds, so its
//! p-value is the larger of the two (an intersection-union test). A quadratic fit is not used:
//! a curve that falls and then flattens gets an inside vertex and a "significant" curvature.
//! Breaking at the observed minimum favours a U a little (Simonsohn's "Robin Hood" choice of the
//! break, which balances the two lines' power, is not done here).
//!
//! A level whose network did not fit its training images is not evidence either way, so each
//! curve is also tested over the levels whose mean training error (evaluation mode) is at most
//! [`FITTED_TRAIN_ERROR`], where that leaves out any level and keeps at least three.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stats::{holm, paired_t, Paired};
use crate::report::MeanSd;

/// The label families that make the granularity path, coarsest to finest: the manual hierarchy
/// (coarser than the target, the target, fine classes merged inside each target, the leaves),
/// k-means inside each leaf, and labels finer than the leaves (one per image).
pub const PATH_FAMILIES: [&str; 3] = [
    "manual hierarchy",
    "k-means within class",
    "finer than leaves",
];

/// The largest mean training error (evaluation mode, un-augmented training images) at which a
/// level counts as fitted in the "fitted levels" curve. The baseline of a converged study fits
/// to well under 0.01; 0.05 leaves room for label sets with a few unlearnable images.
pub const FITTED_TRAIN_ERROR: f64 = 0.05;

/// One measured value of a cell: (seed, test value, training value).
pub type Measured = Vec<(u64, f64, f64)>;

/// A measurement's key: (design, condition, readout, test subset).
pub type Key = (String, String, String, String);

/// What a study measured, by key.
pub type MeasuredBy = BTreeMap<Key, Measured>;

/// Each condition's (family, pretraining classes).
pub type ConditionInfo = BTreeMap<String, (String, usize)>;

/// One level of a curve.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShapeLevel {
    /// Condition.
    pub condition: String,
    /// Its pretraining classes.
    pub classes: usize,
    /// Its test error over the curve's seeds.
    pub error: MeanSd,
    /// Its training error (evaluation mode; NaN where not measured).
    pub train_error: MeanSd,
}

/// What the two-lines test says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// The error falls towards the best level and rises after it, both detected (Holm-adjusted
    /// p of the pair < 0.05).
    U,
    /// The lowest mean error is at the coarsest or the finest level: no U within the levels run.
    MinimumAtEnd,
    /// The best level is inside, but the fall before it and the rise after it are not both
    /// detected.
    NoUDetected,
}

impl Shape {
    /// The words used in tables.
    pub fn words(self) -> &'static str {
        match self {
            Shape::U => "U-shaped (falls, then rises)",
            Shape::MinimumAtEnd => "lowest error at an end",
            Shape::NoUDetected => "no U detected",
        }
    }
}

/// The two-lines test of one readout's granularity curve.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShapeRow {
    /// Design.
    pub design: String,
    /// The readout's name (or the fine-class probe's).
    pub readout: String,
    /// "all" levels, or the "fitted" ones only.
    pub levels_used: String,
    /// The levels, coarsest first.
    pub levels: Vec<ShapeLevel>,
    /// The level with the lowest mean error: the break between the two lines.
    pub best: String,
    /// Per seed, the least-squares slope of error in log10(classes) from the coarsest level to
    /// the best (`diffs`; a U needs it negative).
    pub falling: Paired,
    /// Per seed, the slope from the best level to the finest (a U needs it positive).
    pub rising: Paired,
    /// The intersection-union p-value of the U: the larger of the two slopes' one-sided
    /// paired-t p-values in the U's direction (NaN when the best level is at an end).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub p: f64,
    /// Holm-adjusted among the shape rows.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub p_holm: f64,
    /// The verdict at adjusted p < 0.05.
    pub shape: Shape,
}

/// The least-squares slope of `y` on `x` (NaN with fewer than two distinct `x`).
pub fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        f64::NAN
    }
}

/// The one-sided p-value of a paired t-test that the mean of `diffs` has the sign of `sign`.
fn one_sided(diffs: &[f64], sign: f64) -> f64 {
    let (t, p) = paired_t(diffs);
    if p.is_nan() {
        f64::NAN
    } else if t * sign > 0.0 {
        p / 2.0
    } else {
        1.0 - p / 2.0
    }
}

/// The curves of every design and readout over the [`PATH_FAMILIES`] levels, from the measured
/// errors on all test images (`measured`) and each condition's (family, classes); readouts in
/// `order`'s order. Holm-adjusted among themselves.
pub fn curves(measured: &MeasuredBy, info: &ConditionInfo, order: &[Key]) -> Vec<ShapeRow> {
    let on_path = |cond: &str| {
        cond != "baseline"
            && !cond.ends_with(" direct")
            && info
                .get(cond)
                .is_some_and(|(f, _)| PATH_FAMILIES.contains(&f.as_str()))
    };
    let mut keys: Vec<(String, String)> = Vec::new();
    for (design, condition, readout, subset) in order {
        let k = (design.clone(), readout.clone());
        if subset == "all" && on_path(condition) && !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut rows = Vec::new();
    for (design, readout) in keys {
        // the levels with this readout, coarsest first
        let mut levels: Vec<(String, usize, &Measured)> = order
            .iter()
            .filter(|k| k.0 == design && k.2 == readout && k.3 == "all" && on_path(&k.1))
            .filter_map(|k| Some((k.1.clone(), info.get(&k.1)?.1, measured.get(k)?)))
            .collect();
        levels.sort_by_key(|l| l.1);
        if let Some(row) = curve(&design, &readout, "all", &levels) {
            let fitted: Vec<_> = levels
                .iter()
                .filter(|l| {
                    let t: Vec<f64> = l.2.iter().map(|x| x.2).collect();
                    let train = MeanSd::of(&t).mean;
                    // a training error that was not measured does not count against a level
                    train.is_nan() || train <= FITTED_TRAIN_ERROR
                })
                .cloned()
                .collect();
            rows.push(row);
            if fitted.len() < levels.len() {
                rows.extend(curve(&design, &readout, "fitted", &fitted));
            }
        }
    }
    let ps: Vec<f64> = rows.iter().map(|r| r.p).collect();
    for (r, adj) in rows.iter_mut().zip(holm(&ps)) {
        r.p_holm = adj;
        r.shape = if r.p.is_nan() {
            Shape::MinimumAtEnd
        } else if adj < 0.05 {
            Shape::U
        } else {
            Shape::NoUDetected
        };
    }
    rows
}

/// One curve over `levels` (coarsest first): none with fewer than three levels or no seed that
/// has them all.
fn curve(
    design: &str,
    readout: &str,
    levels_used: &str,
    levels: &[(String, usize, &Measured)],
) -> Option<ShapeRow> {
    if levels.len() < 3 {
        return None;
    }
    let seeds: Vec<u64> = levels[0]
        .2
        .iter()
        .map(|x| x.0)
        .filter(|s| levels.iter().all(|l| l.2.iter().any(|x| x.0 == *s)))
        .collect();
    if seeds.is_empty() {
        return None;
    }
    let value = |l: &(String, usize, &Measured), s: u64, test: bool| {
        l.2.iter()
            .find(|v| v.0 == s)
            .map_or(f64::NAN, |v| if test { v.1 } else { v.2 })
    };
    let of = |l: &(String, usize, &Measured), test: bool| {
        let v: Vec<f64> = seeds.iter().map(|&s| value(l, s, test)).collect();
        MeanSd::of(&v)
    };
    let shown: Vec<ShapeLevel> = levels
        .iter()
        .map(|l| ShapeLevel {
            condition: l.0.clone(),
            classes: l.1,
            error: of(l, true),
            train_error: of(l, false),
        })
        .collect();
    let b =
        (0..shown.len()).min_by(|&i, &j| shown[i].error.mean.total_cmp(&shown[j].error.mean))?;
    // per seed, the slope of each side; a side of one level has none
    let side = |range: std::ops::RangeInclusive<usize>| -> Vec<(u64, f64, f64)> {
        if range.end() <= range.start() {
            return Vec::new();
        }
        let x: Vec<f64> = levels[range.clone()]
            .iter()
            .map(|l| (l.1 as f64).log10())
            .collect();
        seeds
            .iter()
            .map(|&s| {
                let y: Vec<f64> = levels[range.clone()]
                    .iter()
                    .map(|l| value(l, s, true))
                    .collect();
                (s, slope(&x, &y), 0.0)
            })
            .collect()
    };
    let falling = Paired::of(&side(0..=b));
    let rising = Paired::of(&side(b..=levels.len() - 1));
    let p = if b == 0 || b == levels.len() - 1 {
        f64::NAN
    } else {
        one_sided(&falling.diffs, -1.0).max(one_sided(&rising.diffs, 1.0))
    };
    Some(ShapeRow {
        design: design.to_string(),
        readout: readout.to_string(),
        levels_used: levels_used.to_string(),
        best: shown[b].condition.clone(),
        levels: shown,
        falling,
        rising,
        p,
        p_holm: f64::NAN,
        shape: Shape::NoUDetected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_and_one_sided_p_values() {
        assert!((slope(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]) - 2.0).abs() < 1e-12);
        assert!(slope(&[1.0, 1.0], &[0.0, 1.0]).is_nan());
        // the one-sided p in the direction of the mean is half the two-sided one
        let d = [-0.1, -0.2, -0.15];
        let (_, p) = paired_t(&d);
        assert!((one_sided(&d, -1.0) - p / 2.0).abs() < 1e-15);
        assert!((one_sided(&d, 1.0) - (1.0 - p / 2.0)).abs() < 1e-15);
    }

    /// Measured errors of `levels` (classes, per-seed test errors, train error).
    fn study(levels: &[(usize, [f64; 4], f64)]) -> (MeasuredBy, ConditionInfo, Vec<Key>) {
        let (mut measured, mut info, mut order) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
        for (classes, errs, train) in levels {
            let cond = format!("level-{classes}");
            let key = (
                "d".to_string(),
                cond.clone(),
                "finetune".to_string(),
                "all".to_string(),
            );
            let m: Measured = errs
                .iter()
                .enumerate()
                .map(|(s, &e)| (s as u64, e, *train))
                .collect();
            measured.insert(key.clone(), m);
            info.insert(cond, ("manual hierarchy".to_string(), *classes));
            order.push(key);
        }
        // an arm off the path is left out of the curve
        let key = (
            "d".to_string(),
            "random".to_string(),
            "finetune".to_string(),
            "all".to_string(),
        );
        measured.insert(key.clone(), vec![(0, 0.9, 0.0), (1, 0.9, 0.0)]);
        info.insert("random".into(), ("random, aligned".into(), 25));
        order.push(key);
        (measured, info, order)
    }

    #[test]
    fn a_u_a_curve_that_falls_and_flattens_and_noise() {
        // U: best in the middle, every seed falls to it and rises after it
        let u = [
            (2, [0.50, 0.52, 0.49, 0.51], 0.0),
            (5, [0.44, 0.45, 0.43, 0.46], 0.0),
            (25, [0.40, 0.41, 0.39, 0.40], 0.0),
            (250, [0.44, 0.46, 0.45, 0.43], 0.0),
            (2500, [0.52, 0.50, 0.51, 0.53], 0.0),
        ];
        let (m, i, o) = study(&u);
        let rows = curves(&m, &i, &o);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let r = &rows[0];
        assert_eq!(r.levels.len(), 5);
        assert_eq!(r.levels[0].classes, 2);
        assert_eq!(r.best, "level-25");
        assert_eq!(r.falling.seeds.len(), 4);
        assert!(r.falling.hi < 0.0 && r.rising.lo > 0.0, "{r:?}");
        assert_eq!(r.shape, Shape::U, "{r:?}");
        // falls and flattens with the best just inside: the rise after it is not detected (a
        // quadratic would call this a U)
        let flattens = [
            (2, [0.60, 0.61, 0.59, 0.60], 0.0),
            (5, [0.50, 0.50, 0.49, 0.51], 0.0),
            (25, [0.45, 0.44, 0.45, 0.46], 0.0),
            (250, [0.425, 0.43, 0.415, 0.43], 0.0),
            (2500, [0.43, 0.42, 0.43, 0.425], 0.0),
        ];
        let (m, i, o) = study(&flattens);
        let r = &curves(&m, &i, &o)[0];
        assert_eq!(r.best, "level-250");
        assert_eq!(r.shape, Shape::NoUDetected, "{r:?}");
        // falling all the way: the lowest error at the fine end
        let falls = [
            (2, [0.60, 0.61, 0.59, 0.60], 0.0),
            (5, [0.50, 0.50, 0.49, 0.51], 0.0),
            (25, [0.45, 0.44, 0.45, 0.46], 0.0),
        ];
        let (m, i, o) = study(&falls);
        let r = &curves(&m, &i, &o)[0];
        assert_eq!(r.shape, Shape::MinimumAtEnd);
        assert!(r.p.is_nan() && r.rising.diffs.is_empty());
    }

    #[test]
    fn unfitted_levels_get_a_curve_without_them() {
        let u = [
            (2, [0.60, 0.62, 0.61, 0.60], 0.20),
            (5, [0.44, 0.45, 0.43, 0.46], 0.01),
            (25, [0.40, 0.41, 0.39, 0.40], 0.01),
            (250, [0.44, 0.46, 0.45, 0.43], 0.02),
            (2500, [0.52, 0.50, 0.51, 0.53], 0.40),
        ];
        let (m, i, o) = study(&u);
        let rows = curves(&m, &i, &o);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[1].levels_used, "fitted");
        let kept: Vec<usize> = rows[1].levels.iter().map(|l| l.classes).collect();
        assert_eq!(kept, [5, 25, 250]);
        // the family of two: Holm over both
        assert!(rows.iter().all(|r| r.p_holm >= r.p));
    }
}
