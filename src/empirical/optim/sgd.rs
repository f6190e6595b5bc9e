//! SGD with momentum, Nesterov and coupled L2 weight decay ([`Sgd`]), its hyper-parameters and
//! the state that checkpoints save; the update rule is written out in the parent module's doc.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::empirical::model::Param;
use crate::empirical::train_error::{TensorContext, TrainError};

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
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::invalid("sgd config", m));
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
    /// Momentum buffers on the parameters' device, one per parameter once it has had a step.
    buffers: Vec<Option<Tensor>>,
    steps: u64,
}

impl Sgd {
    /// An optimizer for `params` (usually [`crate::empirical::model::Model::trainable_params`]).
    pub fn new(params: Vec<Param>, config: SgdConfig) -> Result<Self, TrainError> {
        config.validate()?;
        let mut seen = std::collections::HashSet::new();
        for p in &params {
            if !seen.insert(p.name.as_str()) {
                return Err(TrainError::invalid(
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
    /// [`TrainError::NonFiniteGradient`] and leaves parameters, buffers and the step count
    /// as they were.
    ///
    /// The update runs as tensor operations on the parameters' device (one multiplication or
    /// addition per line of the rule in the module doc, each rounded to `f32` as the element
    /// loop it replaces), and the check brings one scalar back to the host: the sum over all
    /// gradients of `g - g`, which is 0 exactly when every entry is finite. Only when it is not
    /// are the gradients copied to the host, to name the parameter and the value.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<(), TrainError> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(TrainError::invalid(
                "sgd step",
                format!("learning rate must be finite and >= 0, got {lr}"),
            ));
        }
        let gs: Vec<Option<Tensor>> = self
            .params
            .iter()
            .map(|p| grads.get(&p.var).map(Tensor::detach))
            .collect();
        self.check_finite(&gs, lr)?;
        // The step's three scalars, made once on the parameters' device (again only for a
        // parameter on another device).
        let mut scalars: Option<[Tensor; 3]> = None;
        for ((p, buf), g) in self.params.iter().zip(&mut self.buffers).zip(gs) {
            let Some(g) = g else { continue };
            let w = p.var.as_tensor().detach();
            let dev = w.device();
            if !scalars
                .as_ref()
                .is_some_and(|s| s[0].device().same_device(dev))
            {
                let scalar = |v: f64| Tensor::new(v as f32, dev).ctx(&p.name);
                scalars = Some([
                    scalar(self.config.weight_decay)?,
                    scalar(self.config.momentum)?,
                    scalar(lr)?,
                ]);
            }
            let Some([wd_s, mu, lr_s]) = scalars.as_ref() else {
                continue;
            };
            let mut d = if p.weight_decay && self.config.weight_decay != 0.0 {
                let wd_w = w.broadcast_mul(wd_s);
                wd_w.and_then(|x| g.add(&x)).ctx(&p.name)?
            } else {
                g
            };
            if self.config.momentum != 0.0 {
                let b = match buf.take() {
                    None => d.clone(),
                    Some(b) => b.broadcast_mul(mu).and_then(|x| x.add(&d)).ctx(&p.name)?,
                };
                d = if self.config.nesterov {
                    b.broadcast_mul(mu).and_then(|x| d.add(&x)).ctx(&p.name)?
                } else {
                    b.clone()
                };
                *buf = Some(b);
            }
            let new = d.broadcast_mul(lr_s).and_then(|x| w.sub(&x)).ctx(&p.name)?;
            p.var.set(&new).ctx(&p.name)?;
        }
        self.steps += 1;
        Ok(())
    }

    /// [`TrainError::NonFiniteGradient`] for the first NaN or infinite gradient entry, in
    /// parameter order; one scalar crosses to the host when all are finite.
    fn check_finite(&self, gs: &[Option<Tensor>], lr: f64) -> Result<(), TrainError> {
        let sums = self
            .params
            .iter()
            .zip(gs)
            .filter_map(|(p, g)| Some((p, g.as_ref()?)))
            .map(|(p, g)| {
                g.sub(g)
                    .and_then(|z| z.sum_all())
                    .and_then(|z| z.reshape(1))
                    .ctx(&p.name)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if sums.is_empty() {
            return Ok(());
        }
        let total = Tensor::cat(&sums, 0)
            .and_then(|t| t.sum_all())
            .and_then(|t| t.to_scalar::<f32>())
            .ctx("sgd finite check")?;
        if total == 0.0 {
            return Ok(());
        }
        for (p, g) in self.params.iter().zip(gs) {
            let Some(g) = g else { continue };
            let g = g
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .ctx(&p.name)?;
            if let Some(&bad) = g.iter().find(|v| !v.is_finite()) {
                return Err(TrainError::NonFiniteGradient {
                    param: p.name.clone(),
                    value: bad,
                    step: self.steps,
                    lr,
                });
            }
        }
        Err(TrainError::invalid(
            "sgd step",
            format!(
                "the finite check of the gradients summed to {total}, yet every entry is finite"
            ),
        ))
    }

    /// A copy of the state (step count and momentum buffers), for checkpoints; the buffers are
    /// copied from the device to the host.
    pub fn state(&self) -> Result<SgdState, TrainError> {
        let mut momentum = BTreeMap::new();
        for (p, b) in self.params.iter().zip(&self.buffers) {
            let Some(b) = b else { continue };
            let v = b
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .ctx(&p.name)?;
            momentum.insert(p.name.clone(), v);
        }
        Ok(SgdState {
            steps: self.steps,
            momentum,
        })
    }

    /// Restores a state from [`Sgd::state`]. Every buffer must belong to one of this
    /// optimizer's parameters and have its size; parameters without a buffer in `state` start
    /// without one.
    pub fn load_state(&mut self, state: SgdState) -> Result<(), TrainError> {
        let mut momentum = state.momentum;
        let mut buffers = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let b = momentum.remove(&p.name);
            if let Some(b) = &b {
                if b.len() != p.var.elem_count() {
                    return Err(TrainError::invalid(
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
            let b = match b {
                Some(b) => Some(Tensor::from_vec(b, p.var.shape(), p.var.device()).ctx(&p.name)?),
                None => None,
            };
            buffers.push(b);
        }
        if let Some(name) = momentum.keys().next() {
            return Err(TrainError::invalid(
                "sgd state",
                format!("momentum buffer for {name}, which this optimizer does not train"),
            ));
        }
        self.buffers = buffers;
        self.steps = state.steps;
        Ok(())
    }
}
