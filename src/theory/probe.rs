//! Feature-response probes: the (neuron x feature) correlation matrix <w_n, v> and its
//! summaries, the quantities the theory is about (does a neuron align with a common or a fine
//! feature?).

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
    }
}
