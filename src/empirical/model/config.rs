//! What network to build ([`ModelConfig`]: an [`Arch`] and a width) and which implementation
//! runs it ([`Kernels`]).

use serde::{Deserialize, Serialize};

use super::error::ModelError;

/// Number of input channels (RGB).
pub const IN_CHANNELS: usize = 3;

/// Which implementation runs the backbone's layers (`--kernels fast|stock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// This crate's CPU kernels (see the module doc); candle's operations on other devices.
    #[default]
    Fast,
    /// candle's stock operations everywhere (`conv2d`, BatchNorm from tensor operations,
    /// `relu`): the reference the fast kernels are checked and benchmarked against.
    Stock,
}

impl Kernels {
    /// The name used in reports (`fast`, `stock`).
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Fast => "fast",
            Kernels::Stock => "stock",
        }
    }
}

/// The ResNet variant (`--arch resnet8|resnet20|resnet18`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// CIFAR ResNet-20: 3 stages of 3 basic blocks (standard width 16).
    #[serde(rename = "resnet20")]
    #[value(name = "resnet20")]
    ResNet20,
    /// ResNet-18 with the CIFAR stem: 4 stages of 2 basic blocks (standard width 64).
    #[serde(rename = "resnet18")]
    #[value(name = "resnet18")]
    ResNet18,
    /// CIFAR ResNet-8: 3 stages of 1 basic block; small and fast, for tests and smoke runs.
    #[serde(rename = "resnet8")]
    #[value(name = "resnet8")]
    ResNet8,
}

impl Arch {
    /// The standard base width of this architecture (16, 64 or 16).
    pub fn standard_width(self) -> usize {
        match self {
            Arch::ResNet20 | Arch::ResNet8 => 16,
            Arch::ResNet18 => 64,
        }
    }

    /// Blocks per stage.
    pub(crate) fn stages(self) -> &'static [usize] {
        match self {
            Arch::ResNet20 => &[3, 3, 3],
            Arch::ResNet8 => &[1, 1, 1],
            Arch::ResNet18 => &[2, 2, 2, 2],
        }
    }

    /// The name used in configs and reports (`resnet20`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet20 => "resnet20",
            Arch::ResNet18 => "resnet18",
            Arch::ResNet8 => "resnet8",
        }
    }
}

/// Which network to build: the architecture and its base width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ModelConfig {
    /// The architecture.
    pub arch: Arch,
    /// Channels of the first stage (later stages double it at every stage).
    pub width: usize,
}

impl ModelConfig {
    /// `arch` at its standard width.
    pub fn standard(arch: Arch) -> Self {
        Self {
            arch,
            width: arch.standard_width(),
        }
    }

    /// Length of the feature vector (channels of the last stage).
    pub fn feature_dim(&self) -> usize {
        self.width << (self.arch.stages().len() - 1)
    }

    /// Checks the width is positive and not absurdly large.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.width == 0 || self.width > 4096 {
            return Err(ModelError::invalid(
                "model config",
                format!("width must be in 1..=4096, got {}", self.width),
            ));
        }
        Ok(())
    }
}
