//! Paired comparisons with the baseline: for a condition and a readout, the per-seed difference
//! of its error and the baseline's (same seed, same design), the mean difference, its 95%
//! t-interval, and a verdict read from the interval, not from the means: "helps" when the whole
//! interval lies below zero (lower error), "hurts" when it lies above, "no detectable difference"
//! otherwise (and with fewer than two seeds, where there is no interval).

use serde::{Deserialize, Serialize};

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::report::MeanSd;

/// The 97.5% quantile of Student's t with 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The 97.5% quantile of Student's t with `df` degrees of freedom (a table to 30, then the
/// first terms of its expansion around the normal quantile, within 0.001).
pub fn t975(df: usize) -> f64 {
    match df {
        0 => f64::NAN,
        1..=30 => T975[df - 1],
        _ => {
            let (z, n) = (1.959_964_f64, df as f64);
            z + (z.powi(3) + z) / (4.0 * n)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        }
    }
}

/// What the interval says about a condition against the baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole 95% interval of the error difference is below zero.
    Helps,
    /// The whole interval is above zero.
    Hurts,
    /// The interval contains zero, or there are fewer than two paired seeds.
    NoDetectableDifference,
}

impl Verdict {
    /// The words used in tables.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Helps => "helps",
            Verdict::Hurts => "hurts",
            Verdict::NoDetectableDifference => "no detectable difference",
        }
    }
}

/// The paired difference `error - baseline error` over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Seeds with both results.
    pub seeds: Vec<u64>,
    /// The per-seed differences (negative: lower error than the baseline).
    pub diffs: Vec<f64>,
    /// Their mean.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub mean: f64,
    /// Lower end of the 95% t-interval of the mean (NaN with fewer than two seeds).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub lo: f64,
    /// Upper end.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub hi: f64,
    /// What the interval says.
    pub verdict: Verdict,
}

impl Paired {
    /// The comparison of `(seed, error, baseline error)` triples (NaN errors left out).
    pub fn of(pairs: &[(u64, f64, f64)]) -> Self {
        let kept: Vec<(u64, f64)> = pairs
            .iter()
            .filter(|(_, a, b)| a.is_finite() && b.is_finite())
            .map(|&(s, a, b)| (s, a - b))
            .collect();
        let diffs: Vec<f64> = kept.iter().map(|p| p.1).collect();
        let n = diffs.len();
        let mean = if n == 0 {
            f64::NAN
        } else {
            diffs.iter().sum::<f64>() / n as f64
        };
        let (lo, hi) = if n < 2 {
            (f64::NAN, f64::NAN)
        } else {
            let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let half = t975(n - 1) * (var / n as f64).sqrt();
            (mean - half, mean + half)
        };
        let verdict = if hi < 0.0 {
            Verdict::Helps
        } else if lo > 0.0 {
            Verdict::Hurts
        } else {
            Verdict::NoDetectableDifference
        };
        Paired {
            seeds: kept.iter().map(|p| p.0).collect(),
            diffs,
            mean,
            lo,
            hi,
            verdict,
        }
    }

    /// `+0.012 [-0.004, +0.028]` (or a dash).
    pub fn interval(&self) -> String {
        if self.mean.is_nan() {
            "–".into()
        } else if self.lo.is_nan() {
            format!("{:+.3} (1 seed)", self.mean)
        } else {
            format!("{:+.3} [{:+.3}, {:+.3}]", self.mean, self.lo, self.hi)
        }
    }
}

/// Half the width of the interval `[lo, hi]`, for drawing it as error bars around its centre;
/// NaN where it is not finite (no interval: fewer than two seeds).
pub fn half_width(lo: f64, hi: f64) -> f64 {
    let h = (hi - lo) / 2.0;
    if h.is_finite() {
        h
    } else {
        f64::NAN
    }
}

/// The 95% half-width of a mean over seeds (for figures of absolute values).
pub fn mean_half_width(m: &MeanSd) -> f64 {
    if m.n < 2 {
        f64::NAN
    } else {
        t975(m.n - 1) * m.sd / (m.n as f64).sqrt()
    }
}

/// The two-sided p-value of a paired t-test on `diffs` (NaN with fewer than two values; 0 or 1
/// where every difference is the same).
pub fn paired_t(diffs: &[f64]) -> (f64, f64) {
    let n = diffs.len();
    if n < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mean = diffs.iter().sum::<f64>() / n as f64;
    let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let se = (var / n as f64).sqrt();
    if se == 0.0 {
        return if mean == 0.0 {
            (0.0, 1.0)
        } else {
            (mean.signum() * f64::INFINITY, 0.0)
        };
    }
    let t = mean / se;
    let p = match StudentsT::new(0.0, 1.0, (n - 1) as f64) {
        Ok(dist) => (2.0 * dist.sf(t.abs())).min(1.0),
        Err(_) => f64::NAN,
    };
    (t, p)
}

/// Holm's step-down adjustment of `p` (NaN entries are left out of the family and stay NaN):
/// the k-th smallest of m p-values becomes max over j <= k of min(1, (m - j + 1) p_(j)).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_finite()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    let m = order.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running: f64 = 0.0;
    for (j, &i) in order.iter().enumerate() {
        running = running.max(((m - j) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_verdicts_by_hand() {
        // differences -0.02, -0.04, -0.03: mean -0.03, sd 0.01, half-width 4.303 * 0.01 / sqrt(3)
        let p = Paired::of(&[(0, 0.18, 0.2), (1, 0.16, 0.2), (2, 0.27, 0.3)]);
        assert!((p.mean + 0.03).abs() < 1e-12);
        let half = 4.303 * 0.01 / 3f64.sqrt();
        assert!((p.hi - (-0.03 + half)).abs() < 1e-9, "{p:?}");
        assert!(p.hi < 0.0);
        assert_eq!(p.verdict, Verdict::Helps);
        // a noisy difference around zero
        let q = Paired::of(&[(0, 0.2, 0.1), (1, 0.1, 0.2), (2, 0.21, 0.2)]);
        assert_eq!(q.verdict, Verdict::NoDetectableDifference);
        // worse on every seed, consistently
        let r = Paired::of(&[(0, 0.3, 0.2), (1, 0.31, 0.2), (2, 0.29, 0.2)]);
        assert_eq!(r.verdict, Verdict::Hurts);
        // one seed: no interval, no verdict either way
        let one = Paired::of(&[(0, 0.1, 0.3)]);
        assert!(one.lo.is_nan());
        assert_eq!(one.verdict, Verdict::NoDetectableDifference);
        assert!((t975(1000) - 1.962).abs() < 0.001);
        assert!((t975(31) - 2.040).abs() < 0.001);
    }

    #[test]
    fn paired_t_matches_reference_values() {
        // by hand: mean 0.012, sd 0.023875, se 0.010677, t = 1.12390 with 4 df
        let (t, p) = paired_t(&[0.01, -0.02, 0.03, 0.04, 0.00]);
        assert!((t - 1.123_903).abs() < 1e-5, "t {t}");
        // 2 * (1 - F_4(t)) by numerical integration of the t density: 0.3239407
        assert!((p - 0.323_940_7).abs() < 1e-5, "p {p}");
        // 2 df, closed form: p = 1 - t / sqrt(2 + t^2); differences 0.01, -0.02, 0.04 give
        // t = 0.01 / (0.03 / sqrt 3) = 0.577350, p = 0.622036
        let (t2, p2) = paired_t(&[0.01, -0.02, 0.04]);
        assert!((t2 - 0.577_350).abs() < 1e-5, "t {t2}");
        assert!(
            (p2 - (1.0 - t2 / (2.0 + t2 * t2).sqrt())).abs() < 1e-9,
            "p {p2}"
        );
        // a constant non-zero difference has no variance: p = 0
        assert_eq!(paired_t(&[0.02, 0.02, 0.02]).1, 0.0);
        let (_, p1) = paired_t(&[0.0, 0.0]);
        assert_eq!(p1, 1.0);
        assert!(paired_t(&[0.1]).1.is_nan());
    }

    #[test]
    fn p_below_five_percent_exactly_when_the_interval_excludes_zero() {
        for diffs in [
            vec![-0.01, -0.03, -0.02, -0.025, -0.015],
            vec![-0.01, 0.03, -0.02, 0.025, -0.015],
            vec![0.05, 0.01, 0.02, 0.04, 0.06, 0.00],
            vec![-0.004, -0.001, -0.009],
        ] {
            let pairs: Vec<(u64, f64, f64)> = diffs
                .iter()
                .enumerate()
                .map(|(i, &d)| (i as u64, d, 0.0))
                .collect();
            let interval = Paired::of(&pairs);
            let (_, p) = paired_t(&diffs);
            let excludes = interval.verdict != Verdict::NoDetectableDifference;
            // the table's quantiles are rounded to 3 decimals: only a p-value right at 0.05 could
            // disagree
            assert!(
                (p < 0.05) == excludes || (p - 0.05).abs() < 1e-3,
                "{diffs:?}: p {p}"
            );
        }
    }

    #[test]
    fn holm_by_hand() {
        // m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06 (monotone), 0.5
        let adj = holm(&[0.03, 0.5, 0.01, f64::NAN, 0.02]);
        let want = [0.06, 0.5, 0.04, f64::NAN, 0.06];
        for (a, w) in adj.iter().zip(want) {
            assert!(a.is_nan() && w.is_nan() || (a - w).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0]);
    }
}
