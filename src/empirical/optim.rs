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
//! and applies only to parameters whose [`Param::weight_decay`] is set: convolution and linear
//! weights, not BatchNorm weights or biases. With `mu = 0` there is no buffer and `d` is applied
//! directly. The arithmetic is `f32`, element by element in a fixed order, so it is deterministic.
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

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, D};
use serde::{Deserialize, Serialize};

use super::error::{EmpiricalError, TensorContext};
use super::model::Param;

/// Hyper-parameters of [`Sgd`] (the learning rate comes from the [`Schedule`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Momentum coefficient `mu` in `[0, 1)` (default 0.9).
    pub momentum: f64,
    /// Nesterov momentum (needs `momentum > 0`; default false).
    pub nesterov: bool,
    /// L2 weight decay added to the gradient of conv and linear weights (default 5e-4).
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
        }
    }
}

impl SgdConfig {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), EmpiricalError> {
        let bad = |m: String| Err(EmpiricalError::invalid("sgd config", m));
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        if self.nesterov && self.momentum == 0.0 {
            return bad("nesterov needs a positive momentum".into());
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!(
                "weight_decay must be finite and >= 0, got {}",
                self.weight_decay
            ));
        }
        Ok(())
    }
}

/// The mutable state of [`Sgd`]: steps taken and the momentum buffer of every parameter that
/// has one (by parameter name, values in the parameter's row-major order).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SgdState {
    /// Optimizer steps taken so far (the next step is number `steps`, 0-based).
    pub steps: u64,
    /// Momentum buffers by parameter name.
    pub momentum: BTreeMap<String, Vec<f32>>,
}

/// Stochastic gradient descent with momentum, Nesterov and L2 weight decay (see the module doc).
#[derive(Clone, Debug)]
pub struct Sgd {
    config: SgdConfig,
    params: Vec<Param>,
    buffers: Vec<Option<Vec<f32>>>,
    steps: u64,
}

impl Sgd {
    /// An optimizer for `params` (usually [`super::model::Model::trainable_params`]).
    pub fn new(params: Vec<Param>, config: SgdConfig) -> Result<Self, EmpiricalError> {
        config.validate()?;
        let mut seen = std::collections::HashSet::new();
        for p in &params {
            if !seen.insert(p.name.as_str()) {
                return Err(EmpiricalError::invalid(
                    "sgd",
                    format!("parameter {} listed twice", p.name),
                ));
            }
        }
        Ok(Self {
            config,
            buffers: vec![None; params.len()],
            params,
            steps: 0,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> SgdConfig {
        self.config
    }

    /// The parameters updated by [`Sgd::step`].
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Steps taken so far; the schedule's step index for the next update.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Applies one update with learning rate `lr` from the gradients of a `backward()` call.
    /// Parameters without a gradient in `grads` are left alone (their buffers too), as in
    /// PyTorch. Every gradient is checked before anything changes: a NaN or infinite entry gives
    /// [`EmpiricalError::NonFiniteGradient`] and leaves parameters, buffers and the step count
    /// as they were.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<(), EmpiricalError> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(EmpiricalError::invalid(
                "sgd step",
                format!("learning rate must be finite and >= 0, got {lr}"),
            ));
        }
        let mut gs: Vec<Option<Vec<f32>>> = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let Some(g) = grads.get(&p.var) else {
                gs.push(None);
                continue;
            };
            let g = g
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .ctx(&p.name)?;
            if let Some(&bad) = g.iter().find(|v| !v.is_finite()) {
                return Err(EmpiricalError::NonFiniteGradient {
                    param: p.name.clone(),
                    value: bad,
                    step: self.steps,
                    lr,
                });
            }
            gs.push(Some(g));
        }
        let (mu, wd, lr) = (
            self.config.momentum as f32,
            self.config.weight_decay as f32,
            lr as f32,
        );
        for ((p, buf), g) in self.params.iter().zip(&mut self.buffers).zip(gs) {
            let Some(mut d) = g else { continue };
            let t = p.var.as_tensor();
            let mut w = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .ctx(&p.name)?;
            if p.weight_decay && wd != 0.0 {
                for (d, w) in d.iter_mut().zip(&w) {
                    *d += wd * w;
                }
            }
            if mu != 0.0 {
                match buf {
                    None => *buf = Some(d.clone()),
                    Some(b) => {
                        for (b, d) in b.iter_mut().zip(&d) {
                            *b = mu * *b + d;
                        }
                    }
                }
                let b = buf.as_ref().map(Vec::as_slice).unwrap_or_default();
                if self.config.nesterov {
                    for (d, b) in d.iter_mut().zip(b) {
                        *d += mu * b;
                    }
                } else {
                    d.copy_from_slice(b);
                }
            }
            for (w, d) in w.iter_mut().zip(&d) {
                *w -= lr * d;
            }
            let new = Tensor::from_vec(w, t.shape(), t.device()).ctx(&p.name)?;
            p.var.set(&new).ctx(&p.name)?;
        }
        self.steps += 1;
        Ok(())
    }

    /// A copy of the state (step count and momentum buffers), for checkpoints.
    pub fn state(&self) -> SgdState {
        SgdState {
            steps: self.steps,
            momentum: self
                .params
                .iter()
                .zip(&self.buffers)
                .filter_map(|(p, b)| Some((p.name.clone(), b.clone()?)))
                .collect(),
        }
    }

    /// Restores a state from [`Sgd::state`]. Every buffer must belong to one of this
    /// optimizer's parameters and have its size; parameters without a buffer in `state` start
    /// without one.
    pub fn load_state(&mut self, state: SgdState) -> Result<(), EmpiricalError> {
        let mut momentum = state.momentum;
        let mut buffers = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let b = momentum.remove(&p.name);
            if let Some(b) = &b {
                if b.len() != p.var.elem_count() {
                    return Err(EmpiricalError::invalid(
                        "sgd state",
                        format!(
                            "momentum buffer of {} has {} values, the parameter {}",
                            p.name,
                            b.len(),
                            p.var.elem_count()
                        ),
                    ));
                }
            }
            buffers.push(b);
        }
        if let Some(name) = momentum.keys().next() {
            return Err(EmpiricalError::invalid(
                "sgd state",
                format!("momentum buffer for {name}, which this optimizer does not train"),
            ));
        }
        self.buffers = buffers;
        self.steps = state.steps;
        Ok(())
    }
}

/// The shape of the learning-rate curve after the warm-up (see the module doc for formulas).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// Linear warm-up, then cosine decay to 0 at the end of the last epoch.
    Cosine {
        /// Peak learning rate.
        lr: f64,
        /// Warm-up epochs (0 = none).
        #[serde(default)]
        warmup_epochs: usize,
    },
    /// Linear warm-up, then multiply by `gamma` at each milestone epoch.
    Step {
        /// Initial learning rate.
        lr: f64,
        /// Factor applied at each milestone.
        gamma: f64,
        /// Epochs (0-based) from which the next factor applies, increasing.
        milestones: Vec<usize>,
        /// Warm-up epochs (0 = none).
        #[serde(default)]
        warmup_epochs: usize,
    },
    /// Linear warm-up, then a constant rate.
    Constant {
        /// The learning rate.
        lr: f64,
        /// Warm-up epochs (0 = none).
        #[serde(default)]
        warmup_epochs: usize,
    },
}

impl LrSchedule {
    fn base_and_warmup(&self) -> (f64, usize) {
        match self {
            LrSchedule::Cosine { lr, warmup_epochs }
            | LrSchedule::Step {
                lr, warmup_epochs, ..
            }
            | LrSchedule::Constant { lr, warmup_epochs } => (*lr, *warmup_epochs),
        }
    }
}

/// A learning-rate schedule over a run of `epochs` epochs of `steps_per_epoch` steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    kind: LrSchedule,
    epochs: usize,
    steps_per_epoch: usize,
}

impl Schedule {
    /// Checks the schedule against the run length: a positive finite rate, at least one epoch
    /// and one step per epoch, fewer warm-up epochs than epochs (cosine) or at most as many,
    /// `gamma` in `(0, 1]`, increasing milestones.
    pub fn new(
        kind: LrSchedule,
        epochs: usize,
        steps_per_epoch: usize,
    ) -> Result<Self, EmpiricalError> {
        let bad = |m: String| Err(EmpiricalError::invalid("lr schedule", m));
        let (lr, warmup) = kind.base_and_warmup();
        if !(lr.is_finite() && lr > 0.0) {
            return bad(format!("lr must be positive and finite, got {lr}"));
        }
        if epochs == 0 || steps_per_epoch == 0 {
            return bad(format!(
                "need at least one epoch and one step per epoch, got {epochs} epochs of \
                 {steps_per_epoch} steps"
            ));
        }
        if warmup > epochs || (warmup == epochs && matches!(kind, LrSchedule::Cosine { .. })) {
            return bad(format!(
                "warmup_epochs ({warmup}) must be below the number of epochs ({epochs})"
            ));
        }
        if let LrSchedule::Step {
            gamma, milestones, ..
        } = &kind
        {
            if !(*gamma > 0.0 && *gamma <= 1.0) {
                return bad(format!("gamma must be in (0, 1], got {gamma}"));
            }
            if milestones.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("milestones must increase, got {milestones:?}"));
            }
        }
        Ok(Self {
            kind,
            epochs,
            steps_per_epoch,
        })
    }

    /// The learning rate of optimizer step `step` (0-based, counted over the whole run).
    pub fn lr(&self, step: u64) -> f64 {
        let (base, warmup_epochs) = self.kind.base_and_warmup();
        let s = self.steps_per_epoch as u64;
        let warmup = warmup_epochs as u64 * s;
        if step < warmup {
            return base * (step + 1) as f64 / warmup as f64;
        }
        match &self.kind {
            LrSchedule::Cosine { .. } => {
                let total = self.total_steps();
                if step >= total {
                    return 0.0;
                }
                let t = (step - warmup) as f64 / (total - warmup) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            LrSchedule::Step {
                gamma, milestones, ..
            } => {
                let epoch = (step / s) as usize;
                let k = milestones.iter().filter(|&&m| m <= epoch).count();
                base * gamma.powi(k as i32)
            }
            LrSchedule::Constant { .. } => base,
        }
    }

    /// Steps in the whole run (`epochs * steps_per_epoch`).
    pub fn total_steps(&self) -> u64 {
        self.epochs as u64 * self.steps_per_epoch as u64
    }

    /// Epochs in the run.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// Optimizer steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    /// The curve's shape.
    pub fn kind(&self) -> &LrSchedule {
        &self.kind
    }
}

/// Mean cross-entropy of `logits` `(N, K)` against `labels` (length `N`, each `< K`), with
/// label smoothing `smoothing` in `[0, 1)` (PyTorch semantics, see the module doc). Returns a
/// scalar tensor that gradients flow through.
pub fn cross_entropy(
    logits: &Tensor,
    labels: &[usize],
    smoothing: f64,
) -> Result<Tensor, EmpiricalError> {
    let (n, k) = logits.dims2().ctx("cross_entropy: logits must be (N, K)")?;
    if labels.len() != n || n == 0 {
        return Err(EmpiricalError::invalid(
            "cross_entropy",
            format!("{} labels for {n} rows of logits", labels.len()),
        ));
    }
    if let Some(&bad) = labels.iter().find(|&&y| y >= k) {
        return Err(EmpiricalError::invalid(
            "cross_entropy",
            format!("label {bad} out of range for {k} classes"),
        ));
    }
    if !(0.0..1.0).contains(&smoothing) {
        return Err(EmpiricalError::invalid(
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// A parameter `p` and gradients equal to `g`: loss = sum(p * g).
    fn param(values: &[f32], decay: bool) -> Param {
        let var = Var::from_slice(values, values.len(), &Device::Cpu).unwrap();
        Param {
            name: "p".into(),
            var,
            weight_decay: decay,
        }
    }

    fn grads_for(p: &Param, g: &[f32]) -> GradStore {
        let g = Tensor::from_slice(g, g.len(), &Device::Cpu).unwrap();
        (p.var.as_tensor() * g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    }

    fn values(p: &Param) -> Vec<f32> {
        p.var.as_tensor().to_vec1::<f32>().unwrap()
    }

    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((f64::from(*x) - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    const P0: [f32; 2] = [1.0, -2.0];
    const G: [f32; 2] = [0.5, 0.25];

    #[test]
    fn sgd_momentum_with_weight_decay_by_hand() {
        let p = param(&P0, true);
        let cfg = SgdConfig {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.01,
        };
        let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
        opt.step(&grads_for(&p, &G), 0.1).unwrap();
        // d = g + 0.01 p = [0.51, 0.23]; b = d; p = p - 0.1 d.
        close(&values(&p), &[0.949, -2.023]);
        opt.step(&grads_for(&p, &G), 0.1).unwrap();
        // d = g + 0.01 [0.949, -2.023] = [0.50949, 0.22977]; b = 0.9 [0.51, 0.23] + d
        // = [0.96849, 0.43677]; p = p - 0.1 b.
        close(&values(&p), &[0.852151, -2.066677]);
        assert_eq!(opt.steps(), 2);
        let st = opt.state();
        close(&st.momentum["p"], &[0.96849, 0.43677]);
    }

    #[test]
    fn sgd_nesterov_by_hand() {
        let p = param(&P0, true);
        let cfg = SgdConfig {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.0,
        };
        let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
        opt.step(&grads_for(&p, &G), 0.1).unwrap();
        // b = g; d = g + 0.9 b = 1.9 g = [0.95, 0.475].
        close(&values(&p), &[0.905, -2.0475]);
        opt.step(&grads_for(&p, &G), 0.1).unwrap();
        // b = 0.9 g + g = 1.9 g; d = g + 0.9 * 1.9 g = 2.71 g = [1.355, 0.6775].
        close(&values(&p), &[0.905 - 0.1355, -2.0475 - 0.06775]);
    }

    #[test]
    fn sgd_decay_only_where_marked_and_plain_sgd() {
        // No momentum: p = p - lr (g + wd p) for decayed parameters, p - lr g for the others.
        let cfg = SgdConfig {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.1,
        };
        let a = param(&P0, true);
        let mut b = param(&P0, false);
        b.name = "q".into();
        let mut opt = Sgd::new(vec![a.clone(), b.clone()], cfg).unwrap();
        let loss = ((a.var.as_tensor() + b.var.as_tensor()).unwrap()
            * Tensor::new(&G, &Device::Cpu).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
        opt.step(&loss.backward().unwrap(), 0.5).unwrap();
        // a: d = [0.5 + 0.1, 0.25 - 0.2] = [0.6, 0.05]; a = [1 - 0.3, -2 - 0.025].
        close(&values(&a), &[0.7, -2.025]);
        close(&values(&b), &[0.75, -2.125]);
        assert!(opt.state().momentum.is_empty());
    }

    #[test]
    fn sgd_rejects_non_finite_gradients_and_bad_config() {
        let p = param(&P0, true);
        let mut opt = Sgd::new(vec![p.clone()], SgdConfig::default()).unwrap();
        let e = opt.step(&grads_for(&p, &[f32::NAN, 1.0]), 0.1).unwrap_err();
        assert!(
            matches!(e, EmpiricalError::NonFiniteGradient { step: 0, .. }),
            "{e}"
        );
        assert_eq!(values(&p), P0, "a failed step changes nothing");
        assert_eq!(opt.steps(), 0);
        assert!(opt.step(&grads_for(&p, &G), f64::NAN).is_err());
        let bad = SgdConfig {
            momentum: 0.0,
            nesterov: true,
            weight_decay: 0.0,
        };
        assert!(Sgd::new(vec![], bad).is_err());
        assert!(Sgd::new(vec![p.clone(), p.clone()], SgdConfig::default()).is_err());
        let c: SgdConfig = toml::from_str("nesterov = true").unwrap();
        assert_eq!(c.momentum, 0.9);
        assert!(toml::from_str::<SgdConfig>("momentun = 0.9").is_err());
    }

    #[test]
    fn sgd_state_round_trip() {
        let cfg = SgdConfig::default();
        let p = param(&P0, true);
        let mut a = Sgd::new(vec![p.clone()], cfg).unwrap();
        a.step(&grads_for(&p, &G), 0.1).unwrap();
        let state = a.state();
        let json = serde_json::to_string(&state).unwrap();
        let back: SgdState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        // Continue from the state with a copy of the parameter: same result as continuing `a`.
        let q = param(&values(&p), true);
        let mut b = Sgd::new(vec![q.clone()], cfg).unwrap();
        b.load_state(back).unwrap();
        a.step(&grads_for(&p, &G), 0.1).unwrap();
        b.step(&grads_for(&q, &G), 0.1).unwrap();
        assert_eq!(values(&p), values(&q));
        assert_eq!(a.state(), b.state());
        let mut wrong = SgdState::default();
        wrong.momentum.insert("p".into(), vec![0.0; 3]);
        assert!(b.load_state(wrong).is_err());
        let mut stray = SgdState::default();
        stray.momentum.insert("zz".into(), vec![0.0; 2]);
        assert!(b.load_state(stray).is_err());
    }

    #[test]
    fn cosine_schedule_by_hand() {
        let kind = LrSchedule::Cosine {
            lr: 0.1,
            warmup_epochs: 1,
        };
        // 10 epochs of 10 steps: warm-up over steps 0..10, cosine over the remaining 90.
        let s = Schedule::new(kind, 10, 10).unwrap();
        let at = |t| s.lr(t);
        assert!((at(0) - 0.01).abs() < 1e-12);
        assert!((at(4) - 0.05).abs() < 1e-12);
        assert!((at(9) - 0.1).abs() < 1e-12);
        assert!((at(10) - 0.1).abs() < 1e-12);
        assert!((at(55) - 0.05).abs() < 1e-12); // halfway through the cosine
                                                // 30 of 90 steps: (1 + cos(pi / 3)) / 2 = 0.75.
        assert!((at(40) - 0.075).abs() < 1e-12);
        assert!(at(99) > 0.0 && at(99) < 1e-4);
        assert_eq!(at(100), 0.0);
        assert_eq!(at(1000), 0.0);
        let no_warmup = Schedule::new(
            LrSchedule::Cosine {
                lr: 0.2,
                warmup_epochs: 0,
            },
            2,
            5,
        )
        .unwrap();
        assert!((no_warmup.lr(0) - 0.2).abs() < 1e-12);
        assert!((no_warmup.lr(5) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn step_and_constant_schedules_by_hand() {
        let kind = LrSchedule::Step {
            lr: 0.1,
            gamma: 0.2,
            milestones: vec![3, 6],
            warmup_epochs: 1,
        };
        let s = Schedule::new(kind, 8, 4).unwrap();
        assert!((s.lr(0) - 0.025).abs() < 1e-12);
        assert!((s.lr(3) - 0.1).abs() < 1e-12);
        assert!((s.lr(4) - 0.1).abs() < 1e-12);
        assert!((s.lr(11) - 0.1).abs() < 1e-12); // epoch 2
        assert!((s.lr(12) - 0.02).abs() < 1e-12); // epoch 3
        assert!((s.lr(23) - 0.02).abs() < 1e-12);
        assert!((s.lr(24) - 0.004).abs() < 1e-12); // epoch 6
        assert!((s.lr(1000) - 0.004).abs() < 1e-12);
        let c = Schedule::new(
            LrSchedule::Constant {
                lr: 0.3,
                warmup_epochs: 0,
            },
            1,
            1,
        )
        .unwrap();
        assert_eq!(c.lr(0), 0.3);
        assert_eq!(c.lr(77), 0.3);
    }

    #[test]
    fn schedule_config_and_validation() {
        let k: LrSchedule =
            toml::from_str("kind = \"cosine\"\nlr = 0.1\nwarmup_epochs = 5").unwrap();
        assert_eq!(
            k,
            LrSchedule::Cosine {
                lr: 0.1,
                warmup_epochs: 5
            }
        );
        let k: LrSchedule =
            toml::from_str("kind = \"step\"\nlr = 0.1\ngamma = 0.1\nmilestones = [100, 150]")
                .unwrap();
        assert!(matches!(
            k,
            LrSchedule::Step {
                warmup_epochs: 0,
                ..
            }
        ));
        assert!(toml::from_str::<LrSchedule>("kind = \"cosine\"\nlr = 0.1\nfoo = 1").is_err());
        assert!(toml::from_str::<LrSchedule>("kind = \"linear\"\nlr = 0.1").is_err());
        let cos = |lr, w| LrSchedule::Cosine {
            lr,
            warmup_epochs: w,
        };
        assert!(Schedule::new(cos(0.1, 5), 5, 10).is_err());
        assert!(Schedule::new(cos(0.0, 0), 5, 10).is_err());
        assert!(Schedule::new(cos(0.1, 0), 0, 10).is_err());
        assert!(Schedule::new(cos(0.1, 0), 5, 0).is_err());
        let step = |gamma, milestones| LrSchedule::Step {
            lr: 0.1,
            gamma,
            milestones,
            warmup_epochs: 0,
        };
        assert!(Schedule::new(step(0.1, vec![5, 3]), 10, 1).is_err());
        assert!(Schedule::new(step(1.5, vec![3]), 10, 1).is_err());
    }

    #[test]
    fn cross_entropy_by_hand() {
        let logits = Tensor::new(&[[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        // Row 1: log-sum-exp = 3 + ln(1 + e^-1 + e^-2); log p = z - lse.
        let lse = 3.0 + (1.0 + (-1.0f64).exp() + (-2.0f64).exp()).ln();
        let nll0 = lse - 1.0;
        let mean_nll0 = ((lse - 1.0) + (lse - 2.0) + (lse - 3.0)) / 3.0;
        let ln3 = 3.0f64.ln();
        // No smoothing: plain NLL, also what candle's own loss gives.
        let plain = cross_entropy(&logits, &[0, 2], 0.0).unwrap();
        let plain = f64::from(plain.to_scalar::<f32>().unwrap());
        assert!((plain - (nll0 + ln3) / 2.0).abs() < 1e-6, "{plain}");
        let y = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        let candle = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        assert!((f64::from(candle.to_scalar::<f32>().unwrap()) - plain).abs() < 1e-6);
        // eps = 0.1: (1 - eps) nll + eps * mean_k(-log p_k); row 2 is uniform, so ln 3.
        let smoothed = cross_entropy(&logits, &[0, 2], 0.1).unwrap();
        let want = ((0.9 * nll0 + 0.1 * mean_nll0) + ln3) / 2.0;
        assert!((f64::from(smoothed.to_scalar::<f32>().unwrap()) - want).abs() < 1e-6);
        assert!((want - 1.703_109_1).abs() < 1e-6); // = (2.3076059 + 1.0986123) / 2
        assert!(cross_entropy(&logits, &[0, 3], 0.0).is_err());
        assert!(cross_entropy(&logits, &[0], 0.0).is_err());
        assert!(cross_entropy(&logits, &[0, 1], 1.0).is_err());
    }

    #[test]
    fn cross_entropy_gradient_is_softmax_minus_target() {
        let z = Var::new(&[[1.0f32, 2.0, 3.0]], &Device::Cpu).unwrap();
        let loss = cross_entropy(z.as_tensor(), &[0], 0.3).unwrap();
        let g = loss.backward().unwrap();
        let g = g.get(&z).unwrap().to_vec2::<f32>().unwrap();
        let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).collect();
        let s: f64 = e.iter().sum();
        let q = [0.7 + 0.1, 0.1, 0.1];
        for k in 0..3 {
            assert!((f64::from(g[0][k]) - (e[k] / s - q[k])).abs() < 1e-6);
        }
    }
}
