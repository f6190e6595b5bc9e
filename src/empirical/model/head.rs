//! The linear classifier on top of the features, and the prediction of logits.

use candle_core::{Device, Tensor, D};
use candle_nn::VarMap;
use rand::Rng;

use super::error::{ModelError, TensorContext};
use super::init::{Init, Param, HEAD_STREAM};

/// The linear classifier on top of the features.
#[derive(Debug)]
pub struct Head {
    weight: Tensor,
    bias: Tensor,
    params: Vec<Param>,
    num_classes: usize,
}

impl Head {
    pub(super) fn new(
        feature_dim: usize,
        num_classes: usize,
        varmap: &VarMap,
        device: &Device,
        seed: u64,
    ) -> Result<Self, ModelError> {
        let mut init = Init::new(varmap, device, seed, HEAD_STREAM);
        let bound = 1.0 / (feature_dim as f64).sqrt();
        let mut uniform = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| init.rng.gen_range(-bound..bound) as f32)
                .collect()
        };
        let w = uniform(num_classes * feature_dim);
        let b = uniform(num_classes);
        let weight = init.param("head.weight", &[num_classes, feature_dim], w, true)?;
        let bias = init.param("head.bias", &[num_classes], b, false)?;
        Ok(Self {
            weight,
            bias,
            params: init.params,
            num_classes,
        })
    }

    /// A head with the given values (`weight` `num_classes x feature_dim` row-major, `bias`
    /// `num_classes`), e.g. a linear probe's.
    pub(super) fn with_values(
        feature_dim: usize,
        num_classes: usize,
        varmap: &VarMap,
        device: &Device,
        weight: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<Self, ModelError> {
        if weight.len() != num_classes * feature_dim || bias.len() != num_classes {
            return Err(ModelError::invalid(
                "head",
                format!(
                    "{} weights and {} biases for {num_classes} classes of {feature_dim} features",
                    weight.len(),
                    bias.len()
                ),
            ));
        }
        let mut init = Init::new(varmap, device, 0, HEAD_STREAM);
        let weight = init.param("head.weight", &[num_classes, feature_dim], weight, true)?;
        let bias = init.param("head.bias", &[num_classes], bias, false)?;
        Ok(Self {
            weight,
            bias,
            params: init.params,
            num_classes,
        })
    }

    /// `features W^T + b`: logits `(N, num_classes)` from features `(N, feature_dim)`.
    pub fn forward(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        features
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The trainable tensors (`head.weight`, `head.bias`).
    pub fn params(&self) -> &[Param] {
        &self.params
    }
}

/// The index of the largest value of each row of `logits` `(N, K)` (the first on ties).
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<usize>, ModelError> {
    let idx = logits
        .argmax(D::Minus1)
        .and_then(|t| t.to_vec1::<u32>())
        .ctx("argmax")?;
    Ok(idx.into_iter().map(|i| i as usize).collect())
}
