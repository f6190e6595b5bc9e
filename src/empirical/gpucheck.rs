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
//!   (which runs on the host: [`Sgd`] copies gradients and weights to the CPU) timed apart, the
//!   device synchronised before each clock reading.
//!
//! `scripts/gpu-check.sh` runs both on the GPU machine (see the README's "CUDA" section).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

use super::checkpoint::{load_checkpoint, save_checkpoint};
use super::device::describe;
use super::error::{EmpiricalError, TensorContext};
use super::model::{Arch, Kernels, Model, ModelConfig};
use super::optim::{cross_entropy, Sgd, SgdConfig};
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

/// One compared quantity.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// What was compared (`logits`, `grad backbone.stem.conv.weight`, ...).
    pub what: String,
    /// `‖other − reference‖₂ / ‖reference‖₂` (0 when both are zero).
    pub rel_err: f64,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// The largest `rel_err` accepted (0: must be identical).
    pub tolerance: f64,
    /// Whether `rel_err <= tolerance` and both are finite.
    pub ok: bool,
    /// Whether the check's verdict depends on it (per-tensor entries are informational).
    pub gated: bool,
}

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

/// `‖other − reference‖₂ / ‖reference‖₂` and the largest absolute difference; the relative
/// error is 0 when both are zero, infinite when only the reference is, and NaN when a length
/// differs or a value is not finite.
pub fn rel_err(reference: &[f32], other: &[f32]) -> (f64, f64) {
    if reference.len() != other.len() {
        return (f64::NAN, f64::NAN);
    }
    let (mut num, mut den, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
    for (&r, &o) in reference.iter().zip(other) {
        let d = f64::from(o) - f64::from(r);
        num += d * d;
        den += f64::from(r) * f64::from(r);
        max_abs = max_abs.max(d.abs());
        if !d.is_finite() {
            return (f64::NAN, f64::NAN);
        }
    }
    let rel = if num == 0.0 {
        0.0
    } else if den == 0.0 {
        f64::INFINITY
    } else {
        (num / den).sqrt()
    };
    (rel, max_abs)
}

/// Collects comparisons.
struct Comparisons(Vec<Comparison>);

impl Comparisons {
    fn push(
        &mut self,
        what: String,
        reference: &[f32],
        other: &[f32],
        tolerance: f64,
        gated: bool,
    ) {
        let (rel_err, max_abs) = rel_err(reference, other);
        self.0.push(Comparison {
            what,
            rel_err,
            max_abs,
            tolerance,
            ok: rel_err <= tolerance,
            gated,
        });
    }

    /// One gated quantity.
    fn add(&mut self, what: &str, reference: &[f32], other: &[f32], tolerance: f64) {
        self.push(what.to_string(), reference, other, tolerance, true);
    }

    /// Two state maps: as one concatenated vector (names must match: a missing tensor fails
    /// it), gated unless `gating` is [`Gating::None`], and each tensor alone, gated only with
    /// [`Gating::Each`].
    fn add_states(
        &mut self,
        kind: &str,
        reference: &BTreeMap<String, Vec<f32>>,
        other: &BTreeMap<String, Vec<f32>>,
        tolerance: f64,
        gating: Gating,
    ) {
        let empty = Vec::new();
        let (mut all_r, mut all_o) = (Vec::new(), Vec::new());
        for (name, r) in reference {
            let o = other.get(name).unwrap_or(&empty);
            all_r.extend_from_slice(r);
            all_o.extend_from_slice(o);
            let each = gating == Gating::Each;
            self.push(format!("{kind} {name}"), r, o, tolerance, each);
        }
        if other.len() != reference.len() {
            all_o.push(f32::NAN);
        }
        let what = format!("{kind}-all ({} tensors)", reference.len());
        self.push(what, &all_r, &all_o, tolerance, gating != Gating::None);
    }
}

/// Which comparisons of a state map decide the verdict.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gating {
    /// Every tensor, and all of them together.
    Each,
    /// All of them together only.
    All,
    /// None (reported only).
    None,
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

/// The values of a tensor, copied to the host.
fn host(t: &Tensor, what: &str) -> Result<Vec<f32>, EmpiricalError> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).ctx(what)
}

/// What one training step produced.
struct Step {
    logits: Vec<f32>,
    loss: f32,
    grads: BTreeMap<String, Vec<f32>>,
}

/// Forward (training mode), cross-entropy, backward, and an SGD step with `sgd` at [`LR`].
fn train_step(
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

/// The optimizer of the check.
fn sgd_config() -> SgdConfig {
    SgdConfig {
        nesterov: true,
        ..SgdConfig::default()
    }
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
fn momentum(sgd: &Sgd) -> BTreeMap<String, Vec<f32>> {
    sgd.state().momentum.into_iter().collect()
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
        &momentum(&cpu_sgd),
        &momentum(&dev_sgd),
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
    let (m_dev, m_on_cpu) = (momentum(&dev_sgd), momentum(&on_cpu_sgd));
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
    let (m_cpu, m_on_dev) = (momentum(&cpu_sgd), momentum(&on_dev_sgd));
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => 0.5 * (v[n / 2 - 1] + v[n / 2]),
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
            let step_s = median(total);
            results.push(SpeedResult {
                arch: arch.name().to_string(),
                batch: b,
                steps: args.steps,
                step_s,
                forward_backward_s: median(fb),
                optimizer_s: median(opt),
                images_per_s: b as f64 / step_s,
            });
        }
    }
    Ok(SpeedReport {
        device: describe(device),
        results,
    })
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
mod tests {
    use super::*;

    #[test]
    fn rel_err_is_normwise_and_catches_bad_values() {
        assert_eq!(rel_err(&[1.0, 2.0], &[1.0, 2.0]), (0.0, 0.0));
        assert_eq!(rel_err(&[0.0, 0.0], &[0.0, 0.0]), (0.0, 0.0));
        let (r, m) = rel_err(&[3.0, 4.0], &[3.0, 4.5]);
        assert!(
            (r - 0.1).abs() < 1e-12 && (m - 0.5).abs() < 1e-12,
            "{r} {m}"
        );
        assert_eq!(rel_err(&[0.0], &[1.0]).0, f64::INFINITY);
        assert!(rel_err(&[1.0], &[f32::NAN]).0.is_nan());
        assert!(rel_err(&[1.0], &[1.0, 2.0]).0.is_nan());
        // NaN never passes a tolerance.
        let mut c = Comparisons(Vec::new());
        c.add("x", &[1.0], &[f32::NAN], 1.0);
        c.add("y", &[1.0], &[1.0], 0.0);
        assert!(!c.0[0].ok && c.0[1].ok);
        // States: per tensor and all together; a missing tensor fails the whole.
        let r: BTreeMap<String, Vec<f32>> =
            [("a".to_string(), vec![3.0]), ("b".to_string(), vec![4.0])].into();
        let mut o = r.clone();
        o.insert("a".to_string(), vec![3.5]);
        let mut c = Comparisons(Vec::new());
        c.add_states("s", &r, &o, 0.15, Gating::All);
        assert_eq!(c.0.len(), 3);
        assert!(!c.0[0].ok && !c.0[0].gated && c.0[1].ok);
        assert!(c.0[2].gated && c.0[2].ok && (c.0[2].rel_err - 0.1).abs() < 1e-12);
        o.remove("b");
        c.add_states("t", &r, &o, 1.0, Gating::Each);
        assert!(!c.0[5].ok && c.0[5].what == "t-all (2 tensors)");
    }

    /// The CPU half of the GPU check, in the configuration the GPU runs (ResNet-20, batch 32):
    /// candle's stock operations against the fast kernels, through every comparison and both
    /// checkpoint moves. (On ResNet-8 at batch 4 the two already differ by 1.6e-3 on the
    /// whole gradient: tiny batches make BatchNorm's backward ill-conditioned.)
    #[test]
    fn stock_cpu_agrees_with_the_fast_kernels() {
        let dir = tempfile::tempdir().unwrap();
        let args = AgreeArgs {
            arch: Arch::ResNet20,
            batch: 32,
            tolerance: 1e-3,
            json: None,
        };
        let r = agree(&Device::Cpu, &args, dir.path()).unwrap();
        assert!(r.pass, "{}", r.summary());
        let n_params = Model::new(
            ModelConfig::standard(Arch::ResNet20),
            CLASSES,
            0,
            &Device::Cpu,
        )
        .unwrap()
        .trainable_params()
        .len();
        let count = |k: &str| {
            r.comparisons
                .iter()
                .filter(|c| c.what.split(' ').next() == Some(k))
                .count()
        };
        assert_eq!(count("grad"), n_params);
        assert_eq!(count("resumed-on-cpu-grad"), n_params);
        assert_eq!(count("resumed-on-dev-grad"), n_params);
        assert_eq!(count("ckpt-dev-to-cpu-momentum"), n_params);
        assert!(
            count("ckpt-cpu-to-dev") > n_params,
            "running statistics too"
        );
        for k in [
            "grad-all",
            "after-step-all",
            "momentum-all",
            "ckpt-dev-to-cpu-all",
        ] {
            assert_eq!(count(k), 1, "{k}");
        }
        // The two paths are different code: not every error is exactly zero.
        assert!(r.comparisons.iter().any(|c| c.rel_err > 0.0));
        // Checkpoint moves are exact.
        assert!(r
            .comparisons
            .iter()
            .filter(|c| c.what.starts_with("ckpt"))
            .all(|c| c.rel_err == 0.0));
        assert_eq!(r.device, "cpu");
        assert!(
            r.summary().contains("| grad-all (gated, 1e-3) | 1 |"),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn a_zero_tolerance_fails_and_names_the_quantity() {
        let dir = tempfile::tempdir().unwrap();
        let args = AgreeArgs {
            arch: Arch::ResNet8,
            batch: 2,
            tolerance: 0.0,
            json: None,
        };
        let r = agree(&Device::Cpu, &args, dir.path()).unwrap();
        assert!(!r.pass);
        let worst = r.worst().unwrap();
        assert!(!worst.ok && worst.rel_err > 0.0);
        assert!(r.summary().contains(&format!("FAILED {}", worst.what)));
        let e = run_cli(
            &Device::Cpu,
            &GpuCheckArgs {
                command: GpuCheckCommand::Agree(args),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("FAILED"), "{e}");
    }

    #[test]
    fn moving_a_checkpoint_restores_every_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ModelConfig {
            arch: Arch::ResNet8,
            width: 4,
        };
        let m = Model::new_with(cfg, 3, 5, &Device::Cpu, Kernels::Fast).unwrap();
        let mut sgd = Sgd::new(m.trainable_params(), sgd_config()).unwrap();
        let (x, _) = batch(2).unwrap();
        train_step(&m, &mut sgd, &x, &[0, 2]).unwrap();
        let (back, back_sgd) = move_checkpoint(
            &m,
            &sgd,
            &dir.path().join("c.ckpt"),
            &Device::Cpu,
            Kernels::Stock,
        )
        .unwrap();
        assert_eq!(back.state_vecs().unwrap(), m.state_vecs().unwrap());
        assert_eq!(back_sgd.state(), sgd.state());
        assert_eq!(back.backbone().kernels(), Kernels::Stock);
    }

    #[test]
    fn speed_reports_every_configuration() {
        let args = SpeedArgs {
            arch: vec![Arch::ResNet8],
            batch: vec![2, 4],
            steps: 1,
            warmup: 0,
            json: None,
        };
        let mut lines = Vec::new();
        let r = speed(&Device::Cpu, &args, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(r.results.len(), 2);
        assert_eq!(lines, ["resnet8 batch 2", "resnet8 batch 4"]);
        for (res, b) in r.results.iter().zip([2, 4]) {
            assert_eq!(res.batch, b);
            assert!(res.step_s > 0.0 && res.step_s >= res.forward_backward_s);
            assert!((res.images_per_s - b as f64 / res.step_s).abs() < 1e-9);
        }
        assert!(r.table().contains("| resnet8 | 4 |"));
        let bad = SpeedArgs {
            batch: vec![1],
            ..args
        };
        assert!(speed(&Device::Cpu, &bad, &mut |_| {}).is_err());
    }
}
