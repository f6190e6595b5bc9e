//! The learning-rate schedule ([`Schedule`]): linear warm-up, then cosine, step or constant; the
//! formulas are written out in the parent module's doc.

use serde::{Deserialize, Serialize};

use crate::empirical::train_error::TrainError;

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
    ) -> Result<Self, TrainError> {
        let bad = |m: String| Err(TrainError::invalid("lr schedule", m));
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
