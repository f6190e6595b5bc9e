//! Feature responses: the (neuron x feature) correlation matrix <w_n, v> and its summaries, the
//! quantities the theory is about (does a neuron align with a common or a fine feature?). They
//! are read off the weights, not learned: "probe" in this toolkit means only the linear
//! classifier of [`crate::theory::readout::linear_probe`].

use crate::theory::data::Distribution;
use crate::theory::net::Net;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// The correlation matrix <w_n, v_f>: neurons x features (features ordered as in
/// [`Distribution::features`]: common features first, then fine features).
pub fn correlations(net: &Net, dist: &Distribution) -> Array2<f32> {
    net.w.dot(&dist.features().t())
}

/// Summaries of the correlation matrix at one point of training.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Responses {
    /// Mean over superclasses s of max over neurons of <w_n, v_s>.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub common_max: f64,
    /// Mean over superclasses s of the mean over neurons of max(<w_n, v_s>, 0).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub common_mean: f64,
    /// Mean over subclasses l of max over neurons of <w_n, v_l>.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub fine_max: f64,
    /// Mean over subclasses l of the mean over neurons of max(<w_n, v_l>, 0).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub fine_mean: f64,
}

impl Responses {
    /// The four summaries, in field order (the convergence rule watches every one).
    pub fn values(&self) -> [f64; 4] {
        [
            self.common_max,
            self.common_mean,
            self.fine_max,
            self.fine_mean,
        ]
    }
}

/// Summaries of a correlation matrix whose first `superclasses` columns are common features.
pub fn responses(corr: &Array2<f32>, superclasses: usize) -> Responses {
    let cols = corr.ncols();
    let col_stats = |j: usize| -> (f64, f64) {
        let c = corr.column(j);
        let max = c.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mean = c.iter().map(|&v| v.max(0.0) as f64).sum::<f64>() / c.len() as f64;
        (max, mean)
    };
    let avg = |range: std::ops::Range<usize>| -> (f64, f64) {
        let n = range.len() as f64;
        let (a, b) = range
            .map(col_stats)
            .fold((0.0, 0.0), |acc, (x, y)| (acc.0 + x, acc.1 + y));
        (a / n, b / n)
    };
    let (common_max, common_mean) = avg(0..superclasses);
    let (fine_max, fine_mean) = avg(superclasses..cols);
    Responses {
        common_max,
        common_mean,
        fine_max,
        fine_mean,
    }
}

/// Contrasts of a correlation matrix between the neurons of a superclass and the others: the
/// part of the responses that a summed head can use. Used to explain the d axis
/// (`theory/MODEL.md` §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contrasts {
    /// Mean over superclasses s of (mean over the neurons of s of <w_n, v_s>) minus (the same
    /// over the other neurons).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub common: f64,
    /// Mean over subclasses l of (mean over the neurons of l's superclass of <w_n, v_l>) minus
    /// (the same over the other neurons).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub fine: f64,
    /// Mean over neurons of the squared norm of their feature part, sum over features of
    /// <w_n, v_f>^2 (the part of the weights that training put on the features).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub feature_sq: f64,
}

/// The [`Contrasts`] of `corr` (columns: common features, then fine features of the leaves in
/// order), given the superclass of every neuron (None: labels not aligned, contrasts NaN but
/// `feature_sq`) and of every leaf.
pub fn contrasts(
    corr: &Array2<f32>,
    neuron_superclass: Option<&[usize]>,
    leaf_superclass: &[usize],
) -> Contrasts {
    let feature_sq = corr
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>())
        .sum::<f64>()
        / corr.nrows().max(1) as f64;
    let Some(ns) = neuron_superclass else {
        return Contrasts {
            common: f64::NAN,
            fine: f64::NAN,
            feature_sq,
        };
    };
    let s_count = corr.ncols() - leaf_superclass.len();
    // mean over s's neurons minus mean over the others, of column j
    let contrast = |j: usize, s: usize| -> f64 {
        let (mut a, mut na, mut b, mut nb) = (0.0, 0usize, 0.0, 0usize);
        for (n, &sn) in ns.iter().enumerate() {
            let v = corr[[n, j]] as f64;
            if sn == s {
                a += v;
                na += 1;
            } else {
                b += v;
                nb += 1;
            }
        }
        if na == 0 || nb == 0 {
            return f64::NAN;
        }
        a / na as f64 - b / nb as f64
    };
    let common = (0..s_count).map(|s| contrast(s, s)).sum::<f64>() / s_count as f64;
    let fine = leaf_superclass
        .iter()
        .enumerate()
        .map(|(l, &s)| contrast(s_count + l, s))
        .sum::<f64>()
        / leaf_superclass.len().max(1) as f64;
    Contrasts {
        common,
        fine,
        feature_sq,
    }
}

/// The expected max over `neurons` Gaussian init correlations, sigma_0 * sqrt(2 ln N): the level
/// a response has before any learning.
pub fn init_level(init_scale: f64, neurons: usize) -> f64 {
    init_scale * (2.0 * (neurons.max(2) as f64).ln()).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn summaries_by_hand() {
        // 3 neurons, 2 common features, 2 fine features
        let c = array![
            [1.0f32, -1.0, 0.5, 0.0],
            [0.0, 2.0, -0.5, 0.1],
            [0.5, 0.0, 0.0, 0.3]
        ];
        let r = responses(&c, 2);
        assert!((r.common_max - 1.5).abs() < 1e-6);
        assert!((r.common_mean - (1.5 / 3.0 + 2.0 / 3.0) / 2.0).abs() < 1e-6);
        assert!((r.fine_max - 0.4).abs() < 1e-6);
        assert!((r.fine_mean - (0.5 / 3.0 + 0.4 / 3.0) / 2.0).abs() < 1e-6);
        // neurons 0, 1 belong to superclass 0, neuron 2 to superclass 1; leaf 0 is in
        // superclass 0, leaf 1 in superclass 1
        let k = contrasts(&c, Some(&[0, 0, 1]), &[0, 1]);
        let common = ((0.5 - 0.5) + (0.0 - 0.5)) / 2.0;
        let fine = ((0.5 + -0.5) / 2.0 - 0.0 + (0.3 - 0.05)) / 2.0;
        assert!((k.common - common).abs() < 1e-6, "{k:?}");
        assert!((k.fine - fine).abs() < 1e-6, "{k:?}");
        let sq = (1.0 + 1.0 + 0.25) + (4.0 + 0.25 + 0.01) + (0.25 + 0.09);
        assert!((k.feature_sq - sq / 3.0).abs() < 1e-5, "{k:?}");
        assert!(contrasts(&c, None, &[0, 1]).fine.is_nan());
    }
}
