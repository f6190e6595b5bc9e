//! SGD with momentum, Nesterov and coupled L2 weight decay ([`Sgd`]), its hyper-parameters and
//! the state that checkpoints save; the update rule is written out in the parent module's doc.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::empirical::error::{EmpiricalError, TensorContext};
use crate::empirical::model::Param;

/// Hyper-parameters of [`Sgd`] (the learning rate comes from the [`Schedule`](super::Schedule)).
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
    /// An optimizer for `params` (usually [`crate::empirical::model::Model::trainable_params`]).
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
