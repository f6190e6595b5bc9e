//! Linear probe on cached features: multinomial logistic regression (softmax + cross-entropy)
//! trained by mini-batch SGD with momentum and weight decay on fixed feature vectors, the
//! standard "frozen backbone, new linear head" readout of representation quality.
//!
//! The features of a frozen network do not change during the probe, so they are extracted once
//! ([`super::train::extract_features`]) and the probe trains on them directly, hundreds of times
//! faster than running the backbone every epoch. Features are standardised per dimension with the
//! training set's mean and standard deviation before training. Everything is computed in `f64`
//! in a fixed order from a seeded generator, so the same inputs and seed give the same bits.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::train_error::TrainError;
use ndarray::{Array2, ArrayView1};

/// Settings of a linear probe.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Passes over the training features.
    pub epochs: usize,
    /// Learning rate (cosine-decayed to 0 over the run).
    pub lr: f64,
    /// Samples per step.
    pub batch_size: usize,
    /// L2 penalty on the weights (not the bias).
    pub weight_decay: f64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            epochs: 30,
            lr: 0.1,
            batch_size: 128,
            weight_decay: 1e-4,
        }
    }
}

impl ProbeConfig {
    /// Checks the values (names the field at fault).
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |f: &str, m: String| TrainError::invalid(format!("probe.{f}"), m);
        if self.epochs == 0 {
            return Err(bad("epochs", "must be at least 1".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad("lr", format!("must be positive, got {}", self.lr)));
        }
        if self.batch_size == 0 {
            return Err(bad("batch_size", "must be at least 1".into()));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(bad(
                "weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            ));
        }
        Ok(())
    }
}

/// A trained linear classifier on standardised features.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearProbe {
    dim: usize,
    classes: usize,
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    /// `classes x dim`, row-major.
    weight: Vec<f64>,
    bias: Vec<f64>,
}

impl LinearProbe {
    /// Trains a probe on `features` (one row per sample) with `labels < classes`.
    ///
    /// # Errors
    /// If the sizes disagree, a label is out of range, a feature is not finite, the config is
    /// invalid, or the loss stops being finite.
    pub fn train(
        features: &Array2<f32>,
        labels: &[usize],
        classes: usize,
        cfg: &ProbeConfig,
        seed: u64,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        let (n, dim) = features.dim();
        let ctx = "linear probe";
        if n == 0 || dim == 0 || classes == 0 {
            return Err(TrainError::invalid(
                ctx,
                format!("needs samples, features and classes (got {n}, {dim}, {classes})"),
            ));
        }
        if labels.len() != n {
            return Err(TrainError::invalid(
                ctx,
                format!("{} labels for {n} feature rows", labels.len()),
            ));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            return Err(TrainError::invalid(
                ctx,
                format!("label {l} of sample {i} is not below {classes}"),
            ));
        }
        if features.iter().any(|v| !v.is_finite()) {
            return Err(TrainError::invalid(ctx, "a feature is not finite"));
        }
        let mut mean = vec![0f64; dim];
        let mut var = vec![0f64; dim];
        for row in features.rows() {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        for row in features.rows() {
            for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (f64::from(v) - m).powi(2);
            }
        }
        let inv_std: Vec<f64> = var
            .iter()
            .map(|s| 1.0 / ((s / n as f64).sqrt() + 1e-6))
            .collect();
        let mut probe = LinearProbe {
            dim,
            classes,
            mean,
            inv_std,
            weight: vec![0.0; classes * dim],
            bias: vec![0.0; classes],
        };
        let x: Vec<Vec<f64>> = features
            .rows()
            .into_iter()
            .map(|r| probe.standardise(r))
            .collect();
        let mut vel_w = vec![0f64; classes * dim];
        let mut vel_b = vec![0f64; classes];
        let mut rng = crate::seed::stream(seed, 0);
        let steps_per_epoch = n.div_ceil(cfg.batch_size);
        let total = (cfg.epochs * steps_per_epoch) as f64;
        let mut step = 0usize;
        let mut order: Vec<usize> = (0..n).collect();
        let mut grad_w = vec![0f64; classes * dim];
        let mut grad_b = vec![0f64; classes];
        let mut p = vec![0f64; classes];
        for epoch in 0..cfg.epochs {
            order.shuffle(&mut rng);
            let mut loss = 0f64;
            for batch in order.chunks(cfg.batch_size) {
                let lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos());
                grad_w.iter_mut().for_each(|g| *g = 0.0);
                grad_b.iter_mut().for_each(|g| *g = 0.0);
                for &i in batch {
                    loss += probe.softmax(&x[i], &mut p, labels[i]);
                    p[labels[i]] -= 1.0;
                    for (c, &pc) in p.iter().enumerate() {
                        grad_b[c] += pc;
                        for (g, xv) in grad_w[c * dim..(c + 1) * dim].iter_mut().zip(&x[i]) {
                            *g += pc * xv;
                        }
                    }
                }
                let scale = 1.0 / batch.len() as f64;
                for ((w, v), g) in probe.weight.iter_mut().zip(&mut vel_w).zip(&grad_w) {
                    *v = 0.9 * *v + g * scale + cfg.weight_decay * *w;
                    *w -= lr * *v;
                }
                for ((b, v), g) in probe.bias.iter_mut().zip(&mut vel_b).zip(&grad_b) {
                    *v = 0.9 * *v + g * scale;
                    *b -= lr * *v;
                }
                step += 1;
            }
            if !loss.is_finite() {
                return Err(TrainError::invalid(
                    ctx,
                    format!(
                        "the loss is not finite at epoch {epoch} (learning rate {})",
                        cfg.lr
                    ),
                ));
            }
        }
        Ok(probe)
    }

    /// The probe as one linear layer on the raw features, its standardisation folded in:
    /// `(weight, bias)` with `weight` `classes x dim` row-major, so that `weight x + bias`
    /// equals [`LinearProbe::logits`] up to rounding (the head LP-FT starts from).
    pub fn as_linear(&self) -> (Vec<f32>, Vec<f32>) {
        let mut w = Vec::with_capacity(self.classes * self.dim);
        let mut b = Vec::with_capacity(self.classes);
        for c in 0..self.classes {
            let row = &self.weight[c * self.dim..(c + 1) * self.dim];
            let mut shift = self.bias[c];
            for ((wv, m), s) in row.iter().zip(&self.mean).zip(&self.inv_std) {
                w.push((wv * s) as f32);
                shift -= wv * s * m;
            }
            b.push(shift as f32);
        }
        (w, b)
    }

    fn standardise(&self, row: ArrayView1<f32>) -> Vec<f64> {
        row.iter()
            .zip(&self.mean)
            .zip(&self.inv_std)
            .map(|((&v, m), s)| (f64::from(v) - m) * s)
            .collect()
    }

    /// Fills `p` with the class probabilities of standardised `x`; returns the cross-entropy
    /// of `label`.
    fn softmax(&self, x: &[f64], p: &mut [f64], label: usize) -> f64 {
        for (c, pc) in p.iter_mut().enumerate() {
            let w = &self.weight[c * self.dim..(c + 1) * self.dim];
            *pc = self.bias[c] + w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
        }
        let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut z = 0.0;
        for pc in p.iter_mut() {
            *pc = (*pc - max).exp();
            z += *pc;
        }
        p.iter_mut().for_each(|pc| *pc /= z);
        -(p[label].max(1e-300)).ln()
    }

    /// The logits of every row of `features` (`rows x classes`).
    ///
    /// # Errors
    /// If the feature dimension differs from the training features'.
    pub fn logits(&self, features: &Array2<f32>) -> Result<Array2<f32>, TrainError> {
        if features.ncols() != self.dim {
            return Err(TrainError::invalid(
                "linear probe",
                format!(
                    "features have {} dimensions, the probe was trained on {}",
                    features.ncols(),
                    self.dim
                ),
            ));
        }
        let mut data = Vec::with_capacity(features.nrows() * self.classes);
        for row in features.rows() {
            let x = self.standardise(row);
            for c in 0..self.classes {
                let w = &self.weight[c * self.dim..(c + 1) * self.dim];
                data.push(
                    (self.bias[c] + w.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>()) as f32,
                );
            }
        }
        Array2::from_shape_vec((features.nrows(), self.classes), data)
            .map_err(|e| TrainError::invalid("linear probe", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empirical::train::accuracy;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn blobs(n: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
        let mut rng = crate::seed::stream(seed, 0);
        let centres = [[3.0f32, 0.0, 1.0], [-3.0, 1.0, 0.0], [0.0, -3.0, 5.0]];
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let c = i % 3;
            labels.push(c);
            for &v in &centres[c] {
                data.push(v + rng.gen_range(-1.0f32..1.0));
            }
        }
        (Array2::from_shape_vec((n, 3), data).unwrap(), labels)
    }

    /// Separable blobs are learned (held-out accuracy ~1), and chance-level labels are not; the
    /// same seed gives the same probe.
    #[test]
    fn learns_separable_classes_and_is_deterministic() {
        let (x, y) = blobs(300, 1);
        let (xt, yt) = blobs(150, 2);
        let cfg = ProbeConfig {
            epochs: 20,
            ..Default::default()
        };
        let p = LinearProbe::train(&x, &y, 3, &cfg, 7).unwrap();
        let acc = accuracy(&p.logits(&xt).unwrap(), &yt).unwrap();
        assert!(acc > 0.97, "{acc}");
        assert_eq!(p, LinearProbe::train(&x, &y, 3, &cfg, 7).unwrap());
        // labels unrelated to the features: held-out accuracy stays near chance (1/3)
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let noise: Vec<usize> = (0..300).map(|_| rng.gen_range(0..3)).collect();
        let noise_t: Vec<usize> = (0..150).map(|_| rng.gen_range(0..3)).collect();
        let p = LinearProbe::train(&x, &noise, 3, &cfg, 7).unwrap();
        let acc = accuracy(&p.logits(&xt).unwrap(), &noise_t).unwrap();
        assert!(acc < 0.5, "{acc}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (x, y) = blobs(30, 1);
        let cfg = ProbeConfig::default();
        assert!(LinearProbe::train(&x, &y[..10], 3, &cfg, 0).is_err());
        assert!(LinearProbe::train(&x, &y, 2, &cfg, 0).is_err());
        let bad = ProbeConfig { lr: -1.0, ..cfg };
        assert!(LinearProbe::train(&x, &y, 3, &bad, 0)
            .unwrap_err()
            .to_string()
            .contains("probe.lr"));
        let p = LinearProbe::train(&x, &y, 3, &cfg, 0).unwrap();
        let wrong = Array2::zeros((1, 2));
        assert!(p.logits(&wrong).is_err());
    }
}
