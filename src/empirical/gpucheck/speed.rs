//! `gpu-check speed`: images/s of the training step on the device, with the forward+backward
//! part and the optimizer part timed apart.

use crate::empirical::bench::median;
use std::time::Instant;

use candle_core::Device;
use serde::Serialize;

use super::{batch, sgd_config, SpeedArgs, CLASSES, LR, SEED};
use crate::empirical::device::describe;
use crate::empirical::error::{EmpiricalError, TensorContext};
use crate::empirical::model::{Model, ModelConfig};
use crate::empirical::optim::{cross_entropy, Sgd};

/// The speed of one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct SpeedResult {
    /// The architecture.
    pub arch: String,
    /// Images per step.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// Median time of a whole step, seconds.
    pub step_s: f64,
    /// Median time of forward, loss and backward (device synchronised), seconds.
    pub forward_backward_s: f64,
    /// Median time of the optimizer step, seconds.
    pub optimizer_s: f64,
    /// `batch / step_s`.
    pub images_per_s: f64,
}

/// The result of [`speed`].
#[derive(Clone, Debug, Serialize)]
pub struct SpeedReport {
    /// The device.
    pub device: String,
    /// Per configuration.
    pub results: Vec<SpeedResult>,
}

impl SpeedReport {
    /// A Markdown table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "training-step speed on {}\n\n| model | batch | images/s | step ms | fwd+bwd ms | optimizer ms |\n|---|---:|---:|---:|---:|---:|\n",
            self.device
        );
        for r in &self.results {
            s += &format!(
                "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |\n",
                r.arch,
                r.batch,
                r.images_per_s,
                r.step_s * 1e3,
                r.forward_backward_s * 1e3,
                r.optimizer_s * 1e3
            );
        }
        s
    }
}

/// Times the training step on `device` for every architecture and batch size of `args`;
/// `progress` gets a line per configuration.
pub fn speed(
    device: &Device,
    args: &SpeedArgs,
    progress: &mut dyn FnMut(&str),
) -> Result<SpeedReport, EmpiricalError> {
    if args.steps == 0 || args.batch.iter().any(|&b| b < 2) {
        return Err(EmpiricalError::invalid(
            "gpu-check speed",
            "needs --steps >= 1 and every --batch >= 2",
        ));
    }
    let sync = |what: &str| device.synchronize().ctx(what);
    let mut results = Vec::new();
    for &arch in &args.arch {
        for &b in &args.batch {
            progress(&format!("{} batch {b}", arch.name()));
            let model = Model::new(ModelConfig::standard(arch), CLASSES, SEED, device)?;
            let mut sgd = Sgd::new(model.trainable_params(), sgd_config())?;
            let (x, y) = batch(b)?;
            let x = x.to_device(device).ctx("batch to device")?;
            let (mut fb, mut opt, mut total) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..args.warmup + args.steps {
                sync("synchronize")?;
                let t0 = Instant::now();
                let logits = model.logits(&x, true)?;
                let loss = cross_entropy(&logits, &y, 0.0)?;
                let grads = loss.backward().ctx("backward")?;
                sync("synchronize")?;
                let t1 = Instant::now();
                sgd.step(&grads, LR)?;
                drop(grads);
                sync("synchronize")?;
                let t2 = Instant::now();
                if i >= args.warmup {
                    fb.push((t1 - t0).as_secs_f64());
                    opt.push((t2 - t1).as_secs_f64());
                    total.push((t2 - t0).as_secs_f64());
                }
            }
            let step_s = median(&mut total);
            results.push(SpeedResult {
                arch: arch.name().to_string(),
                batch: b,
                steps: args.steps,
                step_s,
                forward_backward_s: median(&mut fb),
                optimizer_s: median(&mut opt),
                images_per_s: b as f64 / step_s,
            });
        }
    }
    Ok(SpeedReport {
        device: describe(device),
        results,
    })
}
