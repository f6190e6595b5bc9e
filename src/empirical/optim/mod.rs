//! Optimisation: SGD with momentum ([`Sgd`]), the learning-rate [`Schedule`], and the
//! label-smoothed cross-entropy loss ([`cross_entropy`]), all following PyTorch's conventions so
//! that recipes from the literature carry over unchanged.
//!
//! # SGD
//!
//! One step with learning rate `lr`, momentum `mu` and weight decay `wd`, for every parameter
//! `p` with gradient `g` (as `torch.optim.SGD` with `dampening = 0`):
//!
//! ```text
//! d = g + wd * p            (only for parameters with weight decay, see below)
//! b = d                     (first step)
//! b = mu * b + d            (later steps)
//! d = d + mu * b            (Nesterov)   or   d = b   (plain momentum)
//! p = p - lr * d
//! ```
//!
//! Weight decay is the "L2 coupled" kind (added to the gradient, as PyTorch's `weight_decay`),
//! and applies only to parameters whose [`Param::weight_decay`](super::model::Param::weight_decay) is set: convolution and linear
//! weights, not BatchNorm weights or biases. With `mu = 0` there is no buffer and `d` is applied
//! directly. The arithmetic is `f32`, one tensor operation per line on the parameters' device, each
//! element rounded as the element loop above (a test checks the bits against that loop), so it is
//! deterministic and needs no copy to the host.
//! The momentum buffers and the step count form the [`SgdState`], which checkpoints save.
//!
//! # Schedule
//!
//! [`Schedule::lr`] is evaluated per optimizer step `t` (0-based), with `S` steps per epoch,
//! `E` epochs in all (`T = E S` steps) and `W = warmup_epochs * S` warm-up steps:
//!
//! * warm-up (`t < W`, any kind): `lr(t) = base * (t + 1) / W`, a linear ramp that reaches
//!   `base` at the last warm-up step;
//! * [`LrSchedule::Cosine`]: `lr(t) = base * (1 + cos(pi * (t - W) / (T - W))) / 2` for
//!   `W <= t < T`, and 0 from `T` on;
//! * [`LrSchedule::Step`]: `lr(t) = base * gamma^k` where `k` is the number of milestones `m`
//!   with `m <= floor(t / S)` (the epoch of step `t`), as PyTorch's `MultiStepLR` stepped per
//!   epoch;
//! * [`LrSchedule::Constant`]: `base` after the warm-up.
//!
//! # Loss
//!
//! [`cross_entropy`] is PyTorch's `F.cross_entropy(logits, labels, label_smoothing = eps)`: the
//! batch mean of `-sum_k q_k log softmax(z)_k` with `q = (1 - eps) onehot(y) + eps / K`.

mod loss;
mod schedule;
mod sgd;

pub use loss::cross_entropy;
pub use schedule::{LrSchedule, Schedule};
pub use sgd::{Sgd, SgdConfig, SgdState};

#[cfg(test)]
mod tests;
