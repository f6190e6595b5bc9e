//! `gpu-check agree`: one training step on the CPU reference and on the device, compared
//! quantity by quantity, with checkpoints moved between the two (see the parent module's doc).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::compare::{Comparison, Comparisons, Gating};
use super::{batch, sgd_config, AgreeArgs, CLASSES, LR, SEED};
use crate::empirical::checkpoint::{load_checkpoint, save_checkpoint};
use crate::empirical::device::describe;
use crate::empirical::error::{EmpiricalError, TensorContext};
use crate::empirical::model::{Kernels, Model, ModelConfig};
use crate::empirical::optim::{cross_entropy, Sgd};
use crate::seed;

/// The result of [`agree`].
#[derive(Clone, Debug, Serialize)]
pub struct AgreeReport {
    /// The device checked against the CPU.
    pub device: String,
    /// The implementation on that device (`stock`: candle's operations).
    pub device_kernels: String,
    /// The architecture.
    pub arch: String,
    /// Images in the batch.
    pub batch: usize,
    /// The tolerance of the numeric comparisons.
    pub tolerance: f64,
    /// Every comparison, in order.
    pub comparisons: Vec<Comparison>,
    /// Whether every gated comparison passed.
    pub pass: bool,
}

impl AgreeReport {
    /// The gated comparison that failed, or else the gated one with the largest error.
    pub fn worst(&self) -> Option<&Comparison> {
        self.comparisons.iter().filter(|c| c.gated).max_by(|a, b| {
            let key = |c: &Comparison| (!c.ok, c.rel_err);
            key(a)
                .partial_cmp(&key(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    }

    /// A Markdown summary: counts, the worst entry of every kind, failures.
    pub fn summary(&self) -> String {
        let mut kinds: BTreeMap<String, (usize, f64, f64)> = BTreeMap::new();
        for c in &self.comparisons {
            let kind = c.what.split(' ').next().unwrap_or(&c.what);
            let kind = if c.gated {
                format!("{kind} (gated, {:e})", c.tolerance)
            } else {
                format!("{kind}, per tensor")
            };
            let e = kinds.entry(kind).or_insert((0, 0.0, 0.0));
            e.0 += 1;
            e.1 = e.1.max(c.rel_err);
            e.2 = e.2.max(c.max_abs);
        }
        let mut s = format!(
            "{} vs cpu (fast kernels), {} batch {}: {} comparisons, {}\n\n\
             | quantity | tensors | worst rel. error | worst abs. difference |\n|---|---:|---:|---:|\n",
            self.device,
            self.arch,
            self.batch,
            self.comparisons.len(),
            if self.pass {
                "every gated quantity within tolerance".to_string()
            } else {
                "FAILED".to_string()
            }
        );
        for (k, (n, rel, abs)) in kinds {
            s += &format!("| {k} | {n} | {rel:.2e} | {abs:.2e} |\n");
        }
        for c in self.comparisons.iter().filter(|c| c.gated && !c.ok) {
            s += &format!(
                "\nFAILED {}: relative error {:.3e} > {:e} (max abs {:.3e})",
                c.what, c.rel_err, c.tolerance, c.max_abs
            );
        }
        s
    }
}

/// The values of a tensor, copied to the host.
fn host(t: &Tensor, what: &str) -> Result<Vec<f32>, EmpiricalError> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).ctx(what)
}

/// What one training step produced.
pub(super) struct Step {
    logits: Vec<f32>,
    loss: f32,
    grads: BTreeMap<String, Vec<f32>>,
}

/// Forward (training mode), cross-entropy, backward, and an SGD step with `sgd` at [`LR`].
pub(super) fn train_step(
    model: &Model,
    sgd: &mut Sgd,
    x: &Tensor,
    y: &[usize],
) -> Result<Step, EmpiricalError> {
    let x = x.to_device(model.device()).ctx("batch to device")?;
    let logits = model.logits(&x, true)?;
    let loss = cross_entropy(&logits, y, 0.0)?;
    let store = loss.backward().ctx("backward")?;
    let mut grads = BTreeMap::new();
    for p in model.trainable_params() {
        let g = store.get(&p.var).ok_or_else(|| {
            EmpiricalError::invalid("gpu-check", format!("no gradient for {}", p.name))
        })?;
        grads.insert(p.name.clone(), host(g, &p.name)?);
    }
    let step = Step {
        logits: host(&logits, "logits")?,
        loss: loss.to_scalar::<f32>().ctx("loss")?,
        grads,
    };
    sgd.step(&store, LR)?;
    Ok(step)
}

/// Saves `model` and `sgd` to a checkpoint at `path` and resumes them into a fresh model on
/// `device` (built with another seed, so that every restored tensor must come from the file).
pub fn move_checkpoint(
    model: &Model,
    sgd: &Sgd,
    path: &Path,
    device: &Device,
    kernels: Kernels,
) -> Result<(Model, Sgd), EmpiricalError> {
    let rng = seed::rng(SEED, &["gpu-check", "checkpoint"]);
    save_checkpoint(path, model, sgd, 1, &rng, serde_json::Value::Null)?;
    let fresh = Model::new_with(
        model.config(),
        model.num_classes(),
        SEED + 1,
        device,
        kernels,
    )?;
    let mut fresh_sgd = Sgd::new(fresh.trainable_params(), sgd_config())?;
    let resume = load_checkpoint(path, &fresh, &mut fresh_sgd)?;
    if resume.epochs_done != 1 {
        return Err(EmpiricalError::invalid(
            "gpu-check",
            format!(
                "checkpoint resumed at epoch {}, saved at 1",
                resume.epochs_done
            ),
        ));
    }
    Ok((fresh, fresh_sgd))
}

/// Momentum buffers as a state map.
fn momentum(sgd: &Sgd) -> Result<BTreeMap<String, Vec<f32>>, EmpiricalError> {
    Ok(sgd.state()?.momentum.into_iter().collect())
}

/// Runs the agreement check of the module doc; `scratch` is a folder for the two checkpoints.
pub fn agree(
    device: &Device,
    args: &AgreeArgs,
    scratch: &Path,
) -> Result<AgreeReport, EmpiricalError> {
    if args.batch < 2 || args.tolerance.is_nan() || args.tolerance < 0.0 {
        return Err(EmpiricalError::invalid(
            "gpu-check agree",
            "needs --batch >= 2 and --tolerance >= 0",
        ));
    }
    let cfg = ModelConfig::standard(args.arch);
    let tol = args.tolerance;
    let dev_kernels = Kernels::Stock;
    let cpu = Model::new_with(cfg, CLASSES, SEED, &Device::Cpu, Kernels::Fast)?;
    let dev = Model::new_with(cfg, CLASSES, SEED, device, dev_kernels)?;
    let mut cpu_sgd = Sgd::new(cpu.trainable_params(), sgd_config())?;
    let mut dev_sgd = Sgd::new(dev.trainable_params(), sgd_config())?;
    let mut c = Comparisons(Vec::new());

    // The weights are drawn on the host: identical on both.
    c.add_states(
        "init",
        &cpu.state_vecs()?,
        &dev.state_vecs()?,
        0.0,
        Gating::Each,
    );

    let (x, y) = batch(args.batch)?;
    let a = train_step(&cpu, &mut cpu_sgd, &x, &y)?;
    let b = train_step(&dev, &mut dev_sgd, &x, &y)?;
    c.add("logits", &a.logits, &b.logits, tol);
    c.add("loss", &[a.loss], &[b.loss], tol);
    c.add_states("grad", &a.grads, &b.grads, tol, Gating::All);
    c.add_states(
        "after-step",
        &cpu.state_vecs()?,
        &dev.state_vecs()?,
        tol,
        Gating::All,
    );
    c.add_states(
        "momentum",
        &momentum(&cpu_sgd)?,
        &momentum(&dev_sgd)?,
        tol,
        Gating::All,
    );
    let x_dev = x.to_device(device).ctx("batch to device")?;
    c.add(
        "eval-logits",
        &host(&cpu.logits(&x, false)?, "eval logits")?,
        &host(&dev.logits(&x_dev, false)?, "eval logits")?,
        tol,
    );

    // Checkpoints across devices: bit for bit, then one more step of each resumed copy beside
    // the original it was saved from (same state, same batch).
    std::fs::create_dir_all(scratch)
        .map_err(|e| EmpiricalError::invalid("gpu-check", format!("{}: {e}", scratch.display())))?;
    let (on_cpu, mut on_cpu_sgd) = move_checkpoint(
        &dev,
        &dev_sgd,
        &scratch.join("device.ckpt"),
        &Device::Cpu,
        Kernels::Fast,
    )?;
    c.add_states(
        "ckpt-dev-to-cpu",
        &dev.state_vecs()?,
        &on_cpu.state_vecs()?,
        0.0,
        Gating::Each,
    );
    let (m_dev, m_on_cpu) = (momentum(&dev_sgd)?, momentum(&on_cpu_sgd)?);
    c.add_states(
        "ckpt-dev-to-cpu-momentum",
        &m_dev,
        &m_on_cpu,
        0.0,
        Gating::Each,
    );
    let (on_dev, mut on_dev_sgd) = move_checkpoint(
        &cpu,
        &cpu_sgd,
        &scratch.join("cpu.ckpt"),
        device,
        dev_kernels,
    )?;
    c.add_states(
        "ckpt-cpu-to-dev",
        &cpu.state_vecs()?,
        &on_dev.state_vecs()?,
        0.0,
        Gating::Each,
    );
    let (m_cpu, m_on_dev) = (momentum(&cpu_sgd)?, momentum(&on_dev_sgd)?);
    c.add_states(
        "ckpt-cpu-to-dev-momentum",
        &m_cpu,
        &m_on_dev,
        0.0,
        Gating::Each,
    );
    // Saved on the device, resumed on the CPU: the CPU copy against the device original.
    let a2 = train_step(&on_cpu, &mut on_cpu_sgd, &x, &y)?;
    let b2 = train_step(&dev, &mut dev_sgd, &x, &y)?;
    c.add("resumed-on-cpu-logits", &a2.logits, &b2.logits, tol);
    c.add_states(
        "resumed-on-cpu-grad",
        &a2.grads,
        &b2.grads,
        tol,
        Gating::None,
    );
    // Saved on the CPU, resumed on the device: the device copy against the CPU original.
    let a3 = train_step(&cpu, &mut cpu_sgd, &x, &y)?;
    let b3 = train_step(&on_dev, &mut on_dev_sgd, &x, &y)?;
    c.add("resumed-on-dev-logits", &a3.logits, &b3.logits, tol);
    c.add_states(
        "resumed-on-dev-grad",
        &a3.grads,
        &b3.grads,
        tol,
        Gating::None,
    );

    let pass = c.0.iter().all(|c| c.ok || !c.gated);
    Ok(AgreeReport {
        device: describe(device),
        device_kernels: if device.is_cpu() {
            dev_kernels.name().to_string()
        } else {
            "candle".to_string()
        },
        arch: args.arch.name().to_string(),
        batch: args.batch,
        tolerance: tol,
        comparisons: c.0,
        pass,
    })
}
