//! `empirical gpu-check`: does a device train the networks as the CPU does, and how fast?
//!
//! * [`agree`] (`gpu-check agree`): the same ResNet training step (same initial weights, same
//!   batch, forward in training mode, cross-entropy, backward, one Nesterov SGD step) on the
//!   CPU reference (this crate's fast kernels) and on `--device` (candle's operations there;
//!   on the CPU, candle's stock operations, which is how this module is tested without a GPU).
//!   It compares the initial weights, the logits, the loss, the gradients, the BatchNorm
//!   running statistics, the parameters and momentum after the SGD step and the evaluation
//!   logits after it, and it moves checkpoints across: the device's state is saved and resumed
//!   on the CPU, the CPU's state is saved and resumed on the device (every tensor and momentum
//!   buffer must come back bit for bit), and each resumed copy takes one more step beside the
//!   original it was saved from, which must agree again.
//! * The error of a quantity is normwise, `‖device − cpu‖₂ / ‖cpu‖₂` (the largest absolute
//!   difference is reported beside it): elementwise relative errors blow up on entries that
//!   are nearly zero in both. The check passes when the logits, the loss, the whole gradient
//!   (every parameter's, concatenated), the whole parameter and momentum vectors after the step
//!   and the evaluation logits are within the tolerance, and the initial weights and every
//!   checkpoint move are exact; after a checkpoint move, the logits of the next step are
//!   gated and its gradients reported. The error of each tensor alone is reported but not
//!   gated: two
//!   correct CPU implementations (fast kernels and candle's stock operations) already differ by
//!   1-2e-3 on the small, cancellation-dominated gradients of the first stage of a freshly
//!   initialised ResNet-20 (`--device cpu gpu-check agree` shows it).
//! * [`speed`] (`gpu-check speed`): images/s of the training step on `--device` for several
//!   architectures and batch sizes, with the forward+backward part and the optimizer part
//!   ([`Sgd`](super::optim::Sgd), tensor operations on the device with one scalar back for its
//!   finite check) timed apart, the device synchronised before each clock reading.
//!
//! `scripts/gpu-check.sh` runs both on the GPU machine (see the README's "CUDA" section).

mod agree;
mod compare;
mod speed;

pub use agree::{agree, move_checkpoint, AgreeReport};
pub use compare::{rel_err, Comparison};
pub use speed::{speed, SpeedReport, SpeedResult};

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_distr::StandardNormal;

use super::error::{EmpiricalError, TensorContext};
use super::model::Arch;
use super::optim::SgdConfig;
use crate::seed;

/// Classes of the check's head.
const CLASSES: usize = 10;
/// Image side.
const SIDE: usize = 32;
/// Learning rate of the checked SGD steps.
const LR: f64 = 0.1;
/// Seed of the check (weights, batch, labels).
const SEED: u64 = 0;

/// Arguments of `empirical gpu-check`.
#[derive(clap::Args, Debug, Clone)]
pub struct GpuCheckArgs {
    /// What to check.
    #[command(subcommand)]
    pub command: GpuCheckCommand,
}

/// The checks.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum GpuCheckCommand {
    /// One training step on the CPU and on --device: logits, loss, every gradient, the update,
    /// and checkpoints moved between the two.
    Agree(AgreeArgs),
    /// Images/s of the training step on --device.
    Speed(SpeedArgs),
}

/// Arguments of `gpu-check agree`.
#[derive(clap::Args, Debug, Clone)]
pub struct AgreeArgs {
    /// Architecture (resnet8, resnet20, resnet18).
    #[arg(long, value_enum, default_value = "resnet20")]
    pub arch: Arch,
    /// Images in the batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Largest normwise relative error accepted.
    #[arg(long, default_value_t = 1e-3)]
    pub tolerance: f64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Arguments of `gpu-check speed`.
#[derive(clap::Args, Debug, Clone)]
pub struct SpeedArgs {
    /// Architectures, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["resnet20", "resnet18"])]
    pub arch: Vec<Arch>,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [128usize, 512])]
    pub batch: Vec<usize>,
    /// Timed steps per configuration.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps first (the first ones compile the GPU kernels).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A seeded batch of N(0, 1) images and labels, on the CPU.
fn batch(batch: usize) -> Result<(Tensor, Vec<usize>), EmpiricalError> {
    let mut rng = seed::rng(SEED, &["gpu-check", "batch"]);
    let v: Vec<f32> = (0..batch * 3 * SIDE * SIDE)
        .map(|_| rng.sample(StandardNormal))
        .collect();
    let x = Tensor::from_vec(v, (batch, 3, SIDE, SIDE), &Device::Cpu).ctx("gpu-check batch")?;
    let y = (0..batch).map(|_| rng.gen_range(0..CLASSES)).collect();
    Ok((x, y))
}

/// The optimizer of the check.
fn sgd_config() -> SgdConfig {
    SgdConfig {
        nesterov: true,
        ..SgdConfig::default()
    }
}

/// Runs `gpu-check` on `device`: prints the report, writes the JSON file if asked, and fails
/// when the agreement check fails.
pub fn run_cli(device: &Device, args: &GpuCheckArgs) -> Result<String, EmpiricalError> {
    match &args.command {
        GpuCheckCommand::Agree(a) => {
            let scratch =
                std::env::temp_dir().join(format!("granularity-gpu-check-{}", std::process::id()));
            let report = agree(device, a, &scratch);
            let _ = std::fs::remove_dir_all(&scratch);
            let report = report?;
            if let Some(path) = &a.json {
                crate::report::write_json(path, &report)?;
            }
            if report.pass {
                Ok(report.summary())
            } else {
                Err(EmpiricalError::invalid("gpu-check agree", report.summary()))
            }
        }
        GpuCheckCommand::Speed(s) => {
            let report = speed(device, s, &mut |l| eprintln!("  {l}"))?;
            if let Some(path) = &s.json {
                crate::report::write_json(path, &report)?;
            }
            Ok(report.table())
        }
    }
}

#[cfg(test)]
mod tests;
