//! The summed head's margin on hard samples, predicted from a ReLU net's final weights: the
//! formula that `theory/MODEL.md` §4.4 uses to explain how the coarse net's hard error moves
//! with d.
//!
//! For a hard sample of subclass l in superclass s (two superclasses), the margin
//! `M = Σ_{n in s} h_n − Σ_{n not in s} h_n` sums the ReLU outputs of every neuron on every
//! patch. Given the features, each pre-activation is Gaussian: on a patch with noise norm σ_p it
//! is `μ_{p,n} + τ_{p,n} Z` with `μ` the feature part (α⟨w_n, v_l⟩ on fine patches, ρα⟨w_n, v_s⟩
//! on the common patches, 0 on noise patches) and `τ_{p,n} = ‖w_n‖ σ_p / √d`. Then
//! - `E M = Σ_p Σ_n ±(μ Φ(μ/τ) + τ φ(μ/τ))` (the mean of a ReLU of a Gaussian), and
//! - `Var M ≈ Σ_p (σ_p²/d) Σ_{n,n'} ±‖w_n‖‖w_n'‖ κ(ρ_{nn'})`, where ρ_{nn'} is the correlation
//!   of two neurons' noise projections, ⟨w_n, w_n'⟩/(‖w_n‖‖w_n'‖), and κ(ρ) the covariance of the
//!   ReLUs of two standard normals with that correlation,
//!   `(√(1−ρ²) + (π − arccos ρ) ρ − 1) / 2π`.
//!
//! The weights are summarised by what a run saves: the neuron x feature correlations and the
//! neuron norms. The inner product of two different neurons is taken as that of their feature
//! parts (their remaining parts, mostly the random initialisation, are nearly orthogonal in high
//! dimension). The predicted error is the probability that a Gaussian margin is negative,
//! averaged over the subclasses. The approximations: Gaussian margin (a sum of many patch
//! terms), zero-mean covariances, feature noise and the spread of α ignored.

use crate::theory::config::DataConfig;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// The predicted hard-sample margin of the summed head.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Margin {
    /// Mean of the margin, averaged over subclasses.
    pub mean: f64,
    /// Its standard deviation.
    pub sd: f64,
    /// Predicted hard-sample error: mean over subclasses of P(margin < 0).
    pub error: f64,
}

/// Standard normal density.
fn phi(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

/// Standard normal distribution function, Φ(x) = erfc(−x/√2)/2, with the complementary error
/// function of Numerical Recipes (relative error below 1.2e-7 everywhere).
pub fn normal_cdf(x: f64) -> f64 {
    let z = (-x / std::f64::consts::SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let erfc = if -x / std::f64::consts::SQRT_2 >= 0.0 {
        erfc
    } else {
        2.0 - erfc
    };
    0.5 * erfc
}

/// E[max(μ + τZ, 0)] for a standard normal Z.
fn relu_mean(mu: f64, tau: f64) -> f64 {
    if tau <= 0.0 {
        return mu.max(0.0);
    }
    mu * normal_cdf(mu / tau) + tau * phi(mu / tau)
}

/// Cov(max(X, 0), max(Y, 0)) for standard normals X, Y with correlation ρ.
fn relu_cov(rho: f64) -> f64 {
    let r = rho.clamp(-1.0, 1.0);
    ((1.0 - r * r).sqrt() + (PI - r.acos()) * r - 1.0) / (2.0 * PI)
}

/// The predicted hard-sample margin of a ReLU net (no bias) with a fixed summed head, from its
/// neuron x feature correlations `corr` (columns: common features, then fine features), neuron
/// norms and the superclass of every neuron. None unless there are two superclasses.
pub fn relu_hard_margin(
    corr: &[Vec<f32>],
    norms: &[f32],
    neuron_superclass: &[usize],
    leaf_superclass: &[usize],
    data: &DataConfig,
) -> Option<Margin> {
    let s_count = data.superclasses();
    if s_count != 2 || corr.len() != norms.len() || corr.len() != neuron_superclass.len() {
        return None;
    }
    let d = data.dim as f64;
    let alpha = 0.5 * (data.strength[0] + data.strength[1]);
    let n_c = data.common_patches as f64;
    let n_f = data.fine_patches as f64;
    let n_o = (data.patches - data.common_patches - data.fine_patches) as f64;
    let (sd_c, sd_o) = (data.hard_noise / d.sqrt(), data.noise / d.sqrt());
    let norm = |n: usize| norms[n] as f64;
    // variance: the same for every subclass up to the sign pattern, which depends only on s
    let variance = |s: usize| -> f64 {
        let sign = |n: usize| if neuron_superclass[n] == s { 1.0 } else { -1.0 };
        let mut pairs = 0.0;
        for a in 0..corr.len() {
            for b in 0..corr.len() {
                let rho = if a == b {
                    1.0
                } else {
                    let dot: f64 = corr[a]
                        .iter()
                        .zip(&corr[b])
                        .map(|(x, y)| *x as f64 * *y as f64)
                        .sum();
                    dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)
                };
                pairs += sign(a) * sign(b) * norm(a) * norm(b) * relu_cov(rho);
            }
        }
        (n_c * sd_c * sd_c + (n_f + n_o) * sd_o * sd_o) * pairs
    };
    let var = [variance(0), variance(1)];
    let (mut mean_sum, mut err_sum, mut sd_sum) = (0.0, 0.0, 0.0);
    for (l, &s) in leaf_superclass.iter().enumerate() {
        let weight = 1.0 / (s_count as f64 * data.subclasses[s] as f64);
        let mut m = 0.0;
        for n in 0..corr.len() {
            let sign = if neuron_superclass[n] == s { 1.0 } else { -1.0 };
            let w = norm(n);
            let common = data.hard_rho * alpha * corr[n][s] as f64;
            let fine = alpha * corr[n][s_count + l] as f64;
            m += sign
                * (n_c * relu_mean(common, w * sd_c)
                    + n_f * relu_mean(fine, w * sd_o)
                    + n_o * relu_mean(0.0, w * sd_o));
        }
        let sd = var[s].max(0.0).sqrt();
        mean_sum += weight * m;
        sd_sum += weight * sd;
        err_sum += weight
            * if sd > 0.0 {
                normal_cdf(-m / sd)
            } else {
                f64::from(u8::from(m <= 0.0))
            };
    }
    Some(Margin {
        mean: mean_sum,
        sd: sd_sum,
        error: err_sum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::config::TheoryConfig;

    #[test]
    fn gaussian_pieces_match_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975_002_1).abs() < 1e-6);
        assert!((normal_cdf(-3.0) - 0.001_349_9).abs() < 1e-6);
        assert!((relu_mean(0.0, 1.0) - 1.0 / (2.0 * PI).sqrt()).abs() < 1e-12);
        assert!((relu_mean(5.0, 0.01) - 5.0).abs() < 1e-9);
        assert!((relu_cov(1.0) - (PI - 1.0) / (2.0 * PI)).abs() < 1e-12);
        assert!(relu_cov(0.0).abs() < 1e-12);
        assert!((relu_cov(-1.0) + 1.0 / (2.0 * PI)).abs() < 1e-12);
    }

    /// The predicted error against a Monte Carlo estimate on a net whose margin is a sum of
    /// independent Gaussian-input ReLUs (orthogonal neurons, so the formula's covariances hold
    /// exactly): one neuron per superclass along its common feature plus a small multiple of
    /// each of its fine features.
    #[test]
    fn prediction_matches_simulated_hard_error() {
        use crate::theory::data::Distribution;
        use crate::theory::net::{Activation, Head, Net};
        use crate::theory::readout::{summed_head, TestSets};
        use ndarray::Array2;
        let mut c = TheoryConfig::default_config().unwrap();
        c.data.dim = 256;
        c.data.subclasses = vec![4, 4];
        c.data.feature_noise = 0.0;
        c.data.strength = [1.0, 1.0];
        c.data.test_easy = 10;
        c.data.test_hard = 4000;
        let dist = Distribution::new(&c.data, 1).unwrap();
        let f = dist.features();
        let mut w = Array2::<f32>::zeros((2, 256));
        for s in 0..2 {
            let mut row = &f.row(dist.common_feature(s)) * 1.0;
            for l in 0..8 {
                if dist.leaf_superclass()[l] == s {
                    row += &(&f.row(dist.fine_feature(l)) * 0.04);
                }
            }
            w.row_mut(s).assign(&row);
        }
        let corr = w.dot(&f.t());
        let net = Net {
            w,
            act: Activation::Relu,
            head: Head::Fixed {
                class_of_neuron: vec![0, 1],
                classes: 2,
            },
            patches: c.data.patches,
            parallel: false,
        };
        let test = TestSets::draw(&dist, 1);
        let measured = summed_head(&net, &[0, 1], &dist, &test).hard;
        let norms: Vec<f32> = net
            .w
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect();
        let rows: Vec<Vec<f32>> = corr.rows().into_iter().map(|r| r.to_vec()).collect();
        let m = relu_hard_margin(&rows, &norms, &[0, 1], dist.leaf_superclass(), &c.data).unwrap();
        // the standard error of the measured error is about 0.008
        assert!(
            (m.error - measured).abs() < 0.04,
            "predicted {m:?}, measured {measured}"
        );
        assert!(
            m.error > 0.05 && m.error < 0.45,
            "{m:?}: pick a net in between"
        );
    }
}
