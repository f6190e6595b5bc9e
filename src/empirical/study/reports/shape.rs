//! The shape of the granularity curve: is the error U-shaped in the number of pretraining
//! classes? The levels are the pretrained (two-stage) arms whose labels follow the hierarchy
//! from coarser than the target to one label per image ([`PATH_FAMILIES`]); for each readout,
//! each seed's errors are fitted by a quadratic in log10(classes), and the per-seed quadratic
//! coefficients are tested against zero (two-sided paired t over seeds). A positive coefficient
//! whose fitted minimum lies strictly inside the range of levels, with the lowest mean error at
//! neither end, is a U; otherwise a positive coefficient is a convex curve whose minimum is at
//! an end (a curve that falls and flattens has its fitted vertex inside, so both are asked). The test is named before the
//! data: no level is chosen after looking at the errors.
//!
//! A level whose network did not fit its training images is not evidence either way, so each
//! curve is also fitted over the levels whose mean training error (evaluation mode) is at most
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

/// What the curvature test says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Curved upward (Holm p < 0.05) with the fitted minimum strictly inside the levels and the
    /// lowest mean error at neither end.
    U,
    /// Curved upward with the fitted minimum, or the lowest mean error, at an end of the levels.
    ConvexMinimumAtEnd,
    /// Curved downward (Holm p < 0.05): the middle levels are the worst.
    Cap,
    /// No curvature detected.
    NoDetectableCurvature,
}

impl Shape {
    /// The words used in tables.
    pub fn words(self) -> &'static str {
        match self {
            Shape::U => "U-shaped (minimum inside)",
            Shape::ConvexMinimumAtEnd => "convex, minimum at an end",
            Shape::Cap => "∩-shaped",
            Shape::NoDetectableCurvature => "no detectable curvature",
        }
    }
}

/// The curvature test of one readout's granularity curve.
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
    /// The per-seed quadratic coefficient of error in log10(classes) (`diffs`; against zero).
    pub curvature: Paired,
    /// Its two-sided paired-t p-value.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub p: f64,
    /// Holm-adjusted among the shape rows.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub p_holm: f64,
    /// The number of classes at the minimum of the mean fitted quadratic (NaN when it has no
    /// minimum).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub vertex_classes: f64,
    /// The level with the lowest mean error.
    pub best: String,
    /// The verdict at Holm-adjusted p < 0.05.
    pub shape: Shape,
}

/// The least-squares quadratic `y = a + b (x - m) + c (x - m)^2` with `m` the mean of `x`:
/// `(m, a, b, c)`; none with fewer than three distinct `x`.
pub fn quadratic_fit(x: &[f64], y: &[f64]) -> Option<(f64, f64, f64, f64)> {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    // sums of powers of the centred x, and of y times them
    let mut s = [0.0f64; 5];
    let mut t = [0.0f64; 3];
    for (&xi, &yi) in x.iter().zip(y) {
        let u = xi - m;
        let mut p = 1.0;
        for (k, sk) in s.iter_mut().enumerate() {
            *sk += p;
            if k < 3 {
                t[k] += p * yi;
            }
            p *= u;
        }
    }
    let a = [[s[0], s[1], s[2]], [s[1], s[2], s[3]], [s[2], s[3], s[4]]];
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&a);
    let mut distinct: Vec<f64> = x.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < 3 || !d.is_normal() {
        return None;
    }
    // Cramer's rule
    let coef = |col: usize| {
        let mut b = a;
        for (row, tr) in b.iter_mut().zip(t) {
            row[col] = tr;
        }
        det(&b) / d
    };
    Some((m, coef(0), coef(1), coef(2)))
}

/// The curves of every design and readout over the [`PATH_FAMILIES`] levels, from the measured
/// errors on all test images (`measured`, keyed by design, condition, readout, subset) and each
/// condition's (family, classes); readouts in `order`'s order. Holm-adjusted among themselves.
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
        let min_x = r
            .levels
            .first()
            .map_or(f64::NAN, |l| (l.classes as f64).log10());
        let max_x = r
            .levels
            .last()
            .map_or(f64::NAN, |l| (l.classes as f64).log10());
        let vx = r.vertex_classes.log10();
        let ends = [r.levels.first(), r.levels.last()].map(|l| l.map(|l| l.condition.clone()));
        let interior = |best: &str| ends.iter().all(|e| e.as_deref() != Some(best));
        r.shape = if adj.is_nan() || adj >= 0.05 {
            Shape::NoDetectableCurvature
        } else if r.curvature.mean < 0.0 {
            Shape::Cap
        } else if vx > min_x && vx < max_x && interior(&r.best) {
            Shape::U
        } else {
            Shape::ConvexMinimumAtEnd
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
    let x: Vec<f64> = levels.iter().map(|l| (l.1 as f64).log10()).collect();
    let value = |l: &(String, usize, &Measured), s: u64, test: bool| {
        l.2.iter()
            .find(|v| v.0 == s)
            .map_or(f64::NAN, |v| if test { v.1 } else { v.2 })
    };
    let mut per_seed = Vec::new();
    let mut sums = [0.0f64; 3];
    let mut centre = f64::NAN;
    for &s in &seeds {
        let y: Vec<f64> = levels.iter().map(|l| value(l, s, true)).collect();
        let (m, a, b, c) = quadratic_fit(&x, &y)?;
        centre = m;
        for (sum, v) in sums.iter_mut().zip([a, b, c]) {
            *sum += v / seeds.len() as f64;
        }
        per_seed.push((s, c, 0.0));
    }
    let curvature = Paired::of(&per_seed);
    let (_, p) = paired_t(&curvature.diffs);
    let [_, b, c] = sums;
    let vertex_classes = if c > 0.0 {
        10f64.powf(centre - b / (2.0 * c))
    } else {
        f64::NAN
    };
    let of = |l: &(String, usize, &Measured), test: bool| {
        let v: Vec<f64> = seeds.iter().map(|&s| value(l, s, test)).collect();
        MeanSd::of(&v)
    };
    let levels: Vec<ShapeLevel> = levels
        .iter()
        .map(|l| ShapeLevel {
            condition: l.0.clone(),
            classes: l.1,
            error: of(l, true),
            train_error: of(l, false),
        })
        .collect();
    let best = levels
        .iter()
        .min_by(|a, b| a.error.mean.total_cmp(&b.error.mean))
        .map(|l| l.condition.clone())
        .unwrap_or_default();
    Some(ShapeRow {
        design: design.to_string(),
        readout: readout.to_string(),
        levels_used: levels_used.to_string(),
        levels,
        curvature,
        p,
        p_holm: f64::NAN,
        vertex_classes,
        best,
        shape: Shape::NoDetectableCurvature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadratic_fit_recovers_a_parabola() {
        let x = [0.3, 0.7, 1.0, 1.4, 2.4, 3.4];
        let y: Vec<f64> = x.iter().map(|v| 0.4 - 0.05 * v + 0.02 * v * v).collect();
        let (m, a, b, c) = quadratic_fit(&x, &y).unwrap();
        // back to raw coefficients: c u^2 + b u + a with u = x - m
        assert!((c - 0.02).abs() < 1e-12, "{c}");
        assert!((b - 2.0 * c * m - (-0.05)).abs() < 1e-12);
        assert!((a - b * m + c * m * m - 0.4).abs() < 1e-12);
        // a straight line has no curvature; two distinct x have no fit
        let line: Vec<f64> = x.iter().map(|v| 1.0 + 2.0 * v).collect();
        assert!(quadratic_fit(&x, &line).unwrap().3.abs() < 1e-12);
        assert!(quadratic_fit(&[1.0, 1.0, 2.0], &[0.0, 1.0, 2.0]).is_none());
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
    fn a_u_a_monotone_curve_and_noise() {
        // U: best in the middle, every seed curved upward
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
        assert_eq!(r.shape, Shape::U, "{r:?}");
        assert!(r.vertex_classes > 5.0 && r.vertex_classes < 250.0);
        // falling and flattening: convex, its minimum at the fine end
        let mono = [
            (2, [0.60, 0.61, 0.59, 0.60], 0.0),
            (5, [0.50, 0.50, 0.49, 0.51], 0.0),
            (25, [0.45, 0.44, 0.45, 0.46], 0.0),
            (250, [0.43, 0.43, 0.42, 0.44], 0.0),
            (2500, [0.425, 0.42, 0.415, 0.43], 0.0),
        ];
        let (m, i, o) = study(&mono);
        let r = &curves(&m, &i, &o)[0];
        assert_eq!(r.shape, Shape::ConvexMinimumAtEnd, "{r:?}");
        // noise around a flat line: nothing detected
        let flat = [
            (2, [0.40, 0.42, 0.41, 0.39], 0.0),
            (5, [0.42, 0.39, 0.40, 0.41], 0.0),
            (25, [0.41, 0.40, 0.42, 0.40], 0.0),
            (250, [0.39, 0.41, 0.40, 0.42], 0.0),
        ];
        let (m, i, o) = study(&flat);
        assert_eq!(curves(&m, &i, &o)[0].shape, Shape::NoDetectableCurvature);
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
