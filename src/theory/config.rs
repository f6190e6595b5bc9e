//! The theory simulator's configuration: data distribution, network, training and readouts.
//! Read from TOML (`experiments/theory/*.toml`) through [`crate::config`]; every field is
//! documented in `theory/MODEL.md`.

use crate::config::{InvalidField, Validate};
use serde::{Deserialize, Serialize};

/// The embedded default configuration (`experiments/theory/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../experiments/theory/default.toml");

/// A whole theory-sim configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TheoryConfig {
    /// Seeds; every run is repeated once per seed.
    pub seeds: Vec<u64>,
    /// Folder under which results are written.
    #[serde(default = "default_out_dir")]
    pub out_dir: String,
    /// The hierarchical multi-view distribution.
    pub data: DataConfig,
    /// The two-layer convolutional network.
    pub net: NetConfig,
    /// SGD pretraining.
    pub train: TrainConfig,
    /// Downstream coarse readouts.
    pub readout: ReadoutConfig,
}

fn default_out_dir() -> String {
    "results/theory".into()
}

/// Parameters of the hierarchical multi-view data distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Ambient dimension d of each patch.
    pub dim: usize,
    /// Number of patches P per input.
    pub patches: usize,
    /// Number of subclasses of each superclass.
    pub subclasses: Vec<usize>,
    /// Patches carrying the common (superclass) feature in an easy sample.
    pub common_patches: usize,
    /// Patches carrying the fine (subclass) feature.
    pub fine_patches: usize,
    /// Feature strength range [lo, hi]; alpha ~ U[lo, hi] per patch.
    pub strength: [f64; 2],
    /// Expected norm of a patch's Gaussian noise (per-coordinate std = noise / sqrt(dim)).
    pub noise: f64,
    /// Strength gamma of another class's feature added to a noise patch.
    #[serde(default)]
    pub feature_noise: f64,
    /// Probability that a noise patch carries such a feature.
    #[serde(default)]
    pub feature_noise_prob: f64,
    /// Hard samples keep the common feature at strength rho * alpha (0 = missing).
    #[serde(default)]
    pub hard_rho: f64,
    /// Noise norm of the patches that lost the common feature in a hard sample.
    pub hard_noise: f64,
    /// Fraction of hard samples in the training data.
    #[serde(default)]
    pub train_hard_fraction: f64,
    /// Number of easy test samples.
    pub test_easy: usize,
    /// Number of hard test samples.
    pub test_hard: usize,
}

/// The hidden activation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActivationConfig {
    /// max(z, 0), no bias: the paper's network.
    Relu,
    /// max(z + b, 0) with b = -tau * ||w|| * (noise / sqrt(d)) * sqrt(2 ln d): a threshold that
    /// pure-noise patches rarely cross (b is recomputed every step and not differentiated).
    ThresholdRelu {
        /// Threshold in units of the noise projection's high-probability bound.
        tau: f64,
    },
    /// Allen-Zhu & Li's smoothed ReLU: 0 below 0, z^q / (q threshold^(q-1)) up to the
    /// threshold, linear beyond.
    SmoothedRelu {
        /// Polynomial degree q >= 2 near zero.
        q: u32,
        /// Where the polynomial part meets the linear part.
        threshold: f64,
    },
}

/// Network parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// Neurons per output class (m).
    pub neurons: usize,
    /// Standard deviation sigma_0 of every weight coordinate at initialisation.
    pub init_scale: f64,
    /// Hidden activation.
    pub activation: ActivationConfig,
}

/// When pretraining stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopRule {
    /// At convergence (see [`TrainConfig`]), or at `max_steps` if it comes first: the run is then
    /// marked as not converged.
    Converged,
    /// After exactly `max_steps` steps (a run is marked converged when the rule holds at the
    /// end).
    MaxSteps,
}

/// Pretraining parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The most SGD steps a run takes (all of them with `stop = "max_steps"`).
    #[serde(alias = "steps")]
    pub max_steps: usize,
    /// When to stop.
    #[serde(default = "default_stop")]
    pub stop: StopRule,
    /// Converged needs the mean training loss over the last `window` steps to be within
    /// `loss_tol` of its floor (0 unless the labels are random inside a class; for those, to
    /// have stopped falling: `crate::theory::train`).
    #[serde(default = "default_loss_tol")]
    pub loss_tol: f64,
    /// ... and every feature response to have changed by at most this fraction between the
    /// last window and the one before (relative to its value, or to the init level when that
    /// is larger).
    #[serde(default = "default_response_tol")]
    pub response_tol: f64,
    /// The convergence window in steps (a multiple of `record_every`).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Minibatch size.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// 0: fresh samples every step (online); N > 0: a fixed pool of N samples.
    #[serde(default)]
    pub pool: usize,
    /// Record the feature responses (and test the convergence rule) every this many steps.
    #[serde(alias = "probe_every")]
    pub record_every: usize,
    /// Test samples (of each kind) on which the summed-head error is tracked during training.
    #[serde(alias = "probe_test", default = "default_curve_test")]
    pub curve_test: usize,
}

fn default_stop() -> StopRule {
    StopRule::Converged
}
fn default_loss_tol() -> f64 {
    0.01
}
fn default_response_tol() -> f64 {
    0.02
}
fn default_window() -> usize {
    500
}
fn default_curve_test() -> usize {
    300
}

/// What the linear probe reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeInput {
    /// The pooled activations as they are, all divided by one number (their root mean square
    /// over the probe's training set and every neuron): no centring, and no per-neuron scale
    /// that would blow up a dead neuron's noise. Zero activation stays zero.
    Raw,
    /// Centred and divided by the standard deviation over the probe's training set (the
    /// toolkit's earlier probe). A hard sample's missing common-feature response then becomes a
    /// large negative value that reads as evidence for the other class (`theory/MODEL.md` §7).
    Standardised,
}

/// Downstream coarse readout parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadoutConfig {
    /// Training samples for the linear probe.
    pub probe_train: usize,
    /// Full-batch gradient steps of the linear probe.
    pub probe_steps: usize,
    /// Learning rate of the linear probe (on scaled features).
    pub probe_lr: f64,
    /// L2 penalty of the linear probe.
    pub probe_l2: f64,
    /// What the probe reads: raw pooled activations (default) or standardised ones.
    #[serde(default = "default_probe_input")]
    pub probe_input: ProbeInput,
    /// Whether the probe fits an intercept (default: no, see `theory/MODEL.md` §7).
    #[serde(default)]
    pub probe_intercept: bool,
    /// SGD steps of full fine-tuning (0 disables it).
    pub finetune_steps: usize,
    /// Learning rate of full fine-tuning.
    pub finetune_lr: f64,
}

fn default_probe_input() -> ProbeInput {
    ProbeInput::Raw
}

fn check(cond: bool, field: &str, msg: impl Into<String>) -> Result<(), InvalidField> {
    if cond {
        Ok(())
    } else {
        Err(InvalidField::new(field, msg))
    }
}

fn finite_nonneg(v: f64, field: &str) -> Result<(), InvalidField> {
    check(
        v.is_finite() && v >= 0.0,
        field,
        format!("must be a finite number >= 0, got {v}"),
    )
}

impl DataConfig {
    /// Number of superclasses.
    pub fn superclasses(&self) -> usize {
        self.subclasses.len()
    }
    /// Total number of subclasses (leaves).
    pub fn leaves(&self) -> usize {
        self.subclasses.iter().sum()
    }
    /// Number of orthonormal features: one common per superclass, one fine per subclass.
    pub fn features(&self) -> usize {
        self.superclasses() + self.leaves()
    }
}

impl Validate for DataConfig {
    fn validate(&self) -> Result<(), InvalidField> {
        check(
            self.subclasses.len() >= 2,
            "data.subclasses",
            "needs at least 2 superclasses (one entry each)",
        )?;
        check(
            self.subclasses.iter().all(|&k| k >= 1),
            "data.subclasses",
            "every superclass needs at least 1 subclass",
        )?;
        check(self.dim >= 1, "data.dim", "must be >= 1")?;
        check(
            self.features() <= self.dim,
            "data.dim",
            format!(
                "{} orthonormal features ({} superclasses + {} subclasses) do not fit in dimension {}",
                self.features(),
                self.superclasses(),
                self.leaves(),
                self.dim
            ),
        )?;
        check(self.patches >= 1, "data.patches", "must be >= 1")?;
        check(
            self.common_patches + self.fine_patches <= self.patches,
            "data.patches",
            format!(
                "common_patches + fine_patches = {} exceeds patches = {}",
                self.common_patches + self.fine_patches,
                self.patches
            ),
        )?;
        check(
            self.strength[0].is_finite()
                && self.strength[1].is_finite()
                && 0.0 < self.strength[0]
                && self.strength[0] <= self.strength[1],
            "data.strength",
            "must be [lo, hi] with 0 < lo <= hi",
        )?;
        finite_nonneg(self.noise, "data.noise")?;
        finite_nonneg(self.feature_noise, "data.feature_noise")?;
        finite_nonneg(self.hard_rho, "data.hard_rho")?;
        finite_nonneg(self.hard_noise, "data.hard_noise")?;
        check(
            (0.0..=1.0).contains(&self.feature_noise_prob),
            "data.feature_noise_prob",
            "must be in [0, 1]",
        )?;
        check(
            (0.0..=1.0).contains(&self.train_hard_fraction),
            "data.train_hard_fraction",
            "must be in [0, 1]",
        )?;
        check(
            self.test_easy + self.test_hard >= 1,
            "data.test_easy",
            "needs at least one test sample",
        )?;
        Ok(())
    }
}

impl Validate for TheoryConfig {
    fn validate(&self) -> Result<(), InvalidField> {
        check(!self.seeds.is_empty(), "seeds", "needs at least one seed")?;
        self.data.validate()?;
        check(self.net.neurons >= 1, "net.neurons", "must be >= 1")?;
        check(
            self.net.init_scale.is_finite() && self.net.init_scale > 0.0,
            "net.init_scale",
            "must be > 0",
        )?;
        match self.net.activation {
            ActivationConfig::Relu => {}
            ActivationConfig::ThresholdRelu { tau } => {
                finite_nonneg(tau, "net.activation.tau")?;
            }
            ActivationConfig::SmoothedRelu { q, threshold } => {
                check(q >= 2, "net.activation.q", "must be >= 2")?;
                check(
                    threshold.is_finite() && threshold > 0.0,
                    "net.activation.threshold",
                    "must be > 0",
                )?;
            }
        }
        check(self.train.batch >= 1, "train.batch", "must be >= 1")?;
        check(
            self.train.lr.is_finite() && self.train.lr > 0.0,
            "train.lr",
            "must be > 0",
        )?;
        check(
            self.train.record_every >= 1,
            "train.record_every",
            "must be >= 1",
        )?;
        check(self.train.max_steps >= 1, "train.max_steps", "must be >= 1")?;
        finite_nonneg(self.train.loss_tol, "train.loss_tol")?;
        finite_nonneg(self.train.response_tol, "train.response_tol")?;
        check(
            self.train.window >= self.train.record_every
                && self.train.window.is_multiple_of(self.train.record_every),
            "train.window",
            format!(
                "must be a positive multiple of train.record_every ({}), got {}",
                self.train.record_every, self.train.window
            ),
        )?;
        check(
            self.train.pool == 0 || self.train.pool >= self.train.batch,
            "train.pool",
            format!(
                "a fixed pool must hold at least one batch ({}), or be 0 for online sampling",
                self.train.batch
            ),
        )?;
        check(
            self.readout.probe_train >= 1,
            "readout.probe_train",
            "must be >= 1",
        )?;
        finite_nonneg(self.readout.probe_lr, "readout.probe_lr")?;
        finite_nonneg(self.readout.probe_l2, "readout.probe_l2")?;
        finite_nonneg(self.readout.finetune_lr, "readout.finetune_lr")?;
        Ok(())
    }
}

impl TheoryConfig {
    /// This config with `set` overrides (`section.field=value`) applied and re-validated;
    /// `origin` names where the overrides come from in errors.
    pub fn with_overrides(
        &self,
        origin: &str,
        set: &[String],
    ) -> Result<Self, crate::config::ConfigError> {
        if set.is_empty() {
            return Ok(self.clone());
        }
        crate::config::load_str(&crate::config::to_toml(self)?, origin, set)
    }

    /// The embedded default configuration, parsed and checked.
    pub fn default_config() -> Result<Self, crate::config::ConfigError> {
        crate::config::load_str(
            DEFAULT_TOML,
            "<embedded experiments/theory/default.toml>",
            &[],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, ConfigError};

    fn load(overrides: &[&str]) -> Result<TheoryConfig, ConfigError> {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        load_str(DEFAULT_TOML, "default.toml", &o)
    }

    #[test]
    fn default_parses_and_validates() {
        let c = TheoryConfig::default_config().unwrap();
        assert_eq!(c.data.superclasses(), 2);
        assert!(matches!(
            c.net.activation,
            ActivationConfig::SmoothedRelu { .. }
        ));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases: &[(&[&str], &str)] = &[
            (&["data.dim=10"], "data.dim"),
            (&["data.noise=-0.1"], "data.noise"),
            (&["data.common_patches=20"], "data.patches"),
            (&["data.subclasses=[3]"], "data.subclasses"),
            (
                &["net.activation={ kind = \"smoothed_relu\", q = 1, threshold = 1.0 }"],
                "net.activation.q",
            ),
            (&["train.lr=0"], "train.lr"),
            (&["seeds=[]"], "seeds"),
        ];
        for (ov, field) in cases {
            match load(ov) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(&f, field, "{ov:?}"),
                other => panic!("{ov:?}: expected invalid {field}, got {other:?}"),
            }
        }
        match load(&["data.colour=3"]) {
            Err(ConfigError::Field { field, msg, .. }) => {
                assert!(field.contains("data"), "{field}");
                assert!(msg.contains("colour"), "{msg}");
            }
            other => panic!("expected unknown-field error, got {other:?}"),
        }
        assert!(matches!(
            load(&["net.activation={ kind = \"tanh\" }"]),
            Err(ConfigError::Field { .. })
        ));
    }
}
