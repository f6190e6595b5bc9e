//! The label-smoothed cross-entropy loss ([`cross_entropy`]), as PyTorch's `F.cross_entropy`.

use candle_core::{Device, Tensor, D};

use crate::empirical::train_error::{TensorContext, TrainError};

/// Mean cross-entropy of `logits` `(N, K)` against `labels` (length `N`, each `< K`), with
/// label smoothing `smoothing` in `[0, 1)` (PyTorch semantics, see the module doc). Returns a
/// scalar tensor that gradients flow through.
pub fn cross_entropy(
    logits: &Tensor,
    labels: &[usize],
    smoothing: f64,
) -> Result<Tensor, TrainError> {
    let (n, k) = logits.dims2().ctx("cross_entropy: logits must be (N, K)")?;
    if labels.len() != n || n == 0 {
        return Err(TrainError::invalid(
            "cross_entropy",
            format!("{} labels for {n} rows of logits", labels.len()),
        ));
    }
    if let Some(&bad) = labels.iter().find(|&&y| y >= k) {
        return Err(TrainError::invalid(
            "cross_entropy",
            format!("label {bad} out of range for {k} classes"),
        ));
    }
    if !(0.0..1.0).contains(&smoothing) {
        return Err(TrainError::invalid(
            "cross_entropy",
            format!("label smoothing must be in [0, 1), got {smoothing}"),
        ));
    }
    let off = (smoothing / k as f64) as f32;
    let on = (1.0 - smoothing + smoothing / k as f64) as f32;
    let mut q = vec![off; n * k];
    for (i, &y) in labels.iter().enumerate() {
        q[i * k + y] = on;
    }
    let q = Tensor::from_vec(q, (n, k), &Device::Cpu)
        .and_then(|q| q.to_device(logits.device()))
        .ctx("cross_entropy targets")?;
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1).ctx("log_softmax")?;
    (q * logp)
        .and_then(|t| t.sum(D::Minus1))
        .and_then(|t| t.mean_all())
        .and_then(|t| t.neg())
        .ctx("cross_entropy")
}
