//! Training-step benchmark: images per second of one full step (forward, cross-entropy,
//! backward, momentum SGD update with [`Sgd`]) of the CIFAR ResNets on random 32x32 inputs, for
//!
//! * our model, with the kernels of `--kernels` ([`Kernels::Fast`] by default) on `--device`,
//! * `stock`: the same model on candle's stock operations ([`Kernels::Stock`]; on the CPU, when
//!   ours is the fast path),
//! * PyTorch, running the same network (`benches/torch_step.py`, spawned with `python3`, on the
//!   same kind of device) in NCHW and in channels-last memory format, with as many threads as
//!   rayon here.
//!
//! The steps of every path are timed in turn (one step of ours, one PyTorch NCHW step, one
//! PyTorch channels-last step, one stock step, again; PyTorch runs in a child process that
//! takes one step per request), and each path reports its median step time, so that load from
//! other processes on the machine hits every path alike. PyTorch runs with
//! `OMP_WAIT_POLICY=PASSIVE` unless the environment sets a policy: with OpenMP's default
//! spinning its throughput collapses as soon as another process wants a core.
//!
//! For the fast CPU path it then profiles a few more steps ([`LayerRow`]): time and GFLOP/s of
//! every convolution shape, forward, input gradient and weight gradient, and of the
//! element-wise passes, so that the next bottleneck is visible; and it times the data pipeline
//! (gathering, augmenting and normalising a batch of 32x32 images with [`batch_f32`]) as a
//! share of a step. `empirical bench` prints the Markdown of [`markdown`].
//!
//! The PyTorch child process lives in `torch.rs`, the Markdown report in `markdown.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

mod markdown;
mod torch;

pub use markdown::markdown;
use torch::TorchServer;

use super::data::{batch_f32, Augment, ImageSet};
use super::error::{EmpiricalError, TensorContext};
use super::model::{Arch, Kernels, Model, ModelConfig, Pass, Profile};
use super::optim::{cross_entropy, Sgd, SgdConfig};
use crate::hierarchy::Hierarchy;

/// Classes of the benchmark head.
const CLASSES: usize = 10;
/// Image side.
const SIDE: usize = 32;
/// Learning rate of the benchmark steps.
const LR: f64 = 0.05;

/// Arguments of `empirical bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Architectures to time (resnet8, resnet20, resnet18), comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["resnet8", "resnet20"])]
    pub arch: Vec<Arch>,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed steps of our path (and of PyTorch).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps before timing, per path.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Skip PyTorch.
    #[arg(long)]
    pub no_torch: bool,
    /// Skip candle's stock operations.
    #[arg(long)]
    pub no_stock: bool,
    /// Timed steps of the stock path (it is slow).
    #[arg(long, default_value_t = 2)]
    pub stock_steps: usize,
    /// Profiled steps of the fast CPU path for the per-layer breakdown (0: no breakdown).
    #[arg(long, default_value_t = 3)]
    pub layer_steps: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where our model runs (the binary's global `--device`).
    #[arg(skip = Device::Cpu)]
    pub device: Device,
    /// Which kernels run our model (the binary's global `--kernels`).
    #[arg(skip)]
    pub kernels: Kernels,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            arch: vec![Arch::ResNet8, Arch::ResNet20],
            batch: 128,
            steps: 10,
            warmup: 2,
            no_torch: false,
            no_stock: false,
            stock_steps: 2,
            layer_steps: 3,
            json: None,
            device: Device::Cpu,
            kernels: Kernels::Fast,
        }
    }
}

/// PyTorch's throughput on one architecture, or why there is none.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TorchResult {
    /// Images/s in NCHW.
    pub nchw: Option<f64>,
    /// Images/s in channels-last.
    pub channels_last: Option<f64>,
    /// PyTorch's version.
    pub version: Option<String>,
    /// Why there is no number (PyTorch not installed, script failed, skipped).
    pub note: Option<String>,
}

/// One layer shape (or element-wise pass) of the per-layer breakdown: milliseconds per step and
/// GFLOP/s of each pass (`None` where the pass does not occur or counts no operations).
#[derive(Clone, Debug, Default, Serialize)]
pub struct LayerRow {
    /// `conv 3x3 16->16 s1 32x32` (kernel, channels in and out, stride, input size), or the
    /// name of an element-wise pass.
    pub layer: String,
    /// Calls per step of the pass called most.
    pub calls: f64,
    /// Forward pass: ms per step, GFLOP/s.
    pub forward: Option<(f64, Option<f64>)>,
    /// Input gradient: ms per step, GFLOP/s.
    pub input_grad: Option<(f64, Option<f64>)>,
    /// Weight gradient: ms per step, GFLOP/s.
    pub weight_grad: Option<(f64, Option<f64>)>,
}

impl LayerRow {
    /// Milliseconds per step over the three passes.
    pub fn total_ms(&self) -> f64 {
        [self.forward, self.input_grad, self.weight_grad]
            .iter()
            .flatten()
            .map(|p| p.0)
            .sum()
    }

    /// The rows of `profile`, recorded over `steps` steps, slowest first.
    pub fn from_profile(profile: &Profile, steps: usize) -> Vec<LayerRow> {
        let mut rows: Vec<LayerRow> = Vec::new();
        for ((layer, pass), t) in profile {
            let i = match rows.iter().position(|r| &r.layer == layer) {
                Some(i) => i,
                None => {
                    rows.push(LayerRow {
                        layer: layer.clone(),
                        ..Default::default()
                    });
                    rows.len() - 1
                }
            };
            let r = &mut rows[i];
            let ms = 1e3 * t.seconds / steps as f64;
            let gflops = (t.flops > 0.0).then(|| t.flops / t.seconds.max(1e-12) / 1e9);
            let v = Some((ms, gflops));
            match pass {
                Pass::Forward => r.forward = v,
                Pass::InputGrad => r.input_grad = v,
                Pass::WeightGrad => r.weight_grad = v,
            }
            r.calls = r.calls.max(t.calls as f64 / steps as f64);
        }
        rows.sort_by(|a, b| b.total_ms().total_cmp(&a.total_ms()));
        rows
    }
}

/// The measurements of one architecture.
#[derive(Clone, Debug, Serialize)]
pub struct ArchResult {
    /// The architecture's name.
    pub arch: String,
    /// Images per step.
    pub batch: usize,
    /// The kernels of our path (`fast`, `stock`).
    pub kernels: String,
    /// Median step time of our path, seconds.
    pub step_s: f64,
    /// Images/s of our path.
    pub ours: f64,
    /// Images/s of candle's stock operations (None when skipped).
    pub stock: Option<f64>,
    /// PyTorch.
    pub torch: TorchResult,
    /// Mean step time of the profiled steps, seconds (None without a breakdown).
    pub profiled_step_s: Option<f64>,
    /// The per-layer breakdown, slowest first (empty without one).
    pub layers: Vec<LayerRow>,
}

/// Everything [`run`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// CPU model (from /proc/cpuinfo), or the device.
    pub machine: String,
    /// The device our model ran on (`cpu`, `cuda:0`).
    pub device: String,
    /// The vector instructions of the fast CPU kernels.
    pub simd: String,
    /// Threads of the rayon pool (and of PyTorch).
    pub threads: usize,
    /// Median time to gather, augment (pad 4, flip) and normalise one batch of 32x32 images,
    /// milliseconds (None on other devices).
    pub data_batch_ms: Option<f64>,
    /// Per architecture.
    pub results: Vec<ArchResult>,
}

/// One model, its optimizer and a fixed random batch.
struct Runner {
    model: Model,
    sgd: Sgd,
    x: Tensor,
    y: Vec<usize>,
}

impl Runner {
    fn new(
        arch: Arch,
        batch: usize,
        kernels: Kernels,
        device: &Device,
    ) -> Result<Self, EmpiricalError> {
        let model = Model::new_with(ModelConfig::standard(arch), CLASSES, 0, device, kernels)?;
        let sgd = Sgd::new(model.trainable_params(), SgdConfig::default())?;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let v: Vec<f32> = (0..batch * 3 * SIDE * SIDE)
            .map(|_| rng.sample(StandardNormal))
            .collect();
        let x = Tensor::from_vec(v, (batch, 3, SIDE, SIDE), device).ctx("bench input")?;
        let y = (0..batch).map(|_| rng.gen_range(0..CLASSES)).collect();
        Ok(Self { model, sgd, x, y })
    }

    /// One training step; returns its wall time in seconds.
    fn step(&mut self) -> Result<f64, EmpiricalError> {
        let t = Instant::now();
        let logits = self.model.logits(&self.x, true)?;
        let loss = cross_entropy(&logits, &self.y, 0.0)?;
        let grads = loss.backward().ctx("backward")?;
        self.sgd.step(&grads, LR)?;
        drop(grads);
        self.model.device().synchronize().ctx("synchronize")?;
        Ok(t.elapsed().as_secs_f64())
    }
}

/// The median of `v` (sorted in place; NaN if empty): what every timing here reports.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The CPU model name from /proc/cpuinfo (or "unknown CPU").
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The name of a device (`cpu`, `cuda:N`).
fn device_name(d: &Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Median milliseconds to gather, augment (pad 4 and crop, flip) and normalise a batch of
/// `batch` random 32x32 RGB images with [`batch_f32`], the data pipeline of a training step,
/// over `reps` repetitions.
pub fn data_batch_ms(batch: usize, reps: usize) -> Result<f64, EmpiricalError> {
    let n = batch.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let images: Vec<u8> = (0..n * 3 * SIDE * SIDE).map(|_| rng.gen()).collect();
    let hierarchy = Arc::new(
        Hierarchy::two_level(&[1]).map_err(|e| EmpiricalError::invalid("bench", e.to_string()))?,
    );
    let set = ImageSet::new(images, 3, SIDE, SIDE, vec![0; n], hierarchy, "bench")?;
    let idx: Vec<usize> = (0..n).collect();
    let aug = Augment { pad: 4, flip: true };
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            let x = batch_f32(&set, &idx, [0.5; 3], [0.25; 3], Some((&aug, &mut rng)));
            std::hint::black_box(x);
            1e3 * t.elapsed().as_secs_f64()
        })
        .collect();
    Ok(median(&mut times))
}

/// Times the training step of every architecture of `args` (see the module doc); `progress`
/// gets a line per phase.
pub fn run(
    args: &BenchArgs,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport, EmpiricalError> {
    if args.batch < 2 || args.steps == 0 {
        return Err(EmpiricalError::invalid(
            "bench",
            "needs --batch >= 2 and --steps >= 1",
        ));
    }
    let threads = rayon::current_num_threads();
    let dev = &args.device;
    let fast_cpu = args.kernels == Kernels::Fast && dev.is_cpu();
    let torch_device = if dev.is_cpu() { "cpu" } else { "cuda" };
    let mut results = Vec::new();
    let mut simd = String::from("n/a");
    for &arch in &args.arch {
        progress(&format!("{}: building models", arch.name()));
        let mut ours = Runner::new(arch, args.batch, args.kernels, dev)?;
        if fast_cpu {
            simd = ours.model.backbone().simd().to_string();
        }
        // The stock comparison only where ours differs from it: the fast path on the CPU.
        let mut stock = if !fast_cpu || args.no_stock || args.stock_steps == 0 {
            None
        } else {
            Some(Runner::new(arch, args.batch, Kernels::Stock, dev)?)
        };
        let mut torch = if args.no_torch {
            Err("skipped".to_string())
        } else {
            progress(&format!("{}: starting PyTorch", arch.name()));
            TorchServer::start(arch, args.batch, args.warmup, threads, torch_device)
        };
        progress(&format!("{}: warm-up", arch.name()));
        for _ in 0..args.warmup {
            ours.step()?;
        }
        if let Some(s) = stock.as_mut() {
            s.step()?;
        }
        // One step of each path in turn.
        let (mut to, mut ts, mut tn, mut tc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let rounds = args.steps.max(args.stock_steps);
        for i in 0..rounds {
            if i < args.steps {
                to.push(ours.step()?);
                if let Ok(t) = torch.as_mut() {
                    match (t.step("nchw"), t.step("channels_last")) {
                        (Ok(a), Ok(b)) => {
                            tn.push(a);
                            tc.push(b);
                        }
                        (Err(e), _) | (_, Err(e)) => torch = Err(e),
                    }
                }
            }
            if let Some(s) = stock.as_mut().filter(|_| i < args.stock_steps) {
                ts.push(s.step()?);
            }
            progress(&format!("{}: step {}/{rounds}", arch.name(), i + 1));
        }
        drop(stock);
        let step_s = median(&mut to);
        let per_sec = |v: &mut Vec<f64>| (!v.is_empty()).then(|| args.batch as f64 / median(v));
        let stock = per_sec(&mut ts);
        let torch = match torch {
            Ok(t) => TorchResult {
                nchw: per_sec(&mut tn),
                channels_last: per_sec(&mut tc),
                version: t.version.clone(),
                note: None,
            },
            Err(note) => TorchResult {
                note: Some(note),
                ..Default::default()
            },
        };
        let (mut profiled_step_s, mut layers) = (None, Vec::new());
        if fast_cpu && args.layer_steps > 0 {
            progress(&format!("{}: per-layer profile", arch.name()));
            ours.model.backbone().set_profiling(true);
            let _ = ours.model.backbone().take_profile();
            let mut total = 0.0;
            for _ in 0..args.layer_steps {
                total += ours.step()?;
            }
            let backbone = ours.model.backbone();
            backbone.set_profiling(false);
            layers = LayerRow::from_profile(&backbone.take_profile(), args.layer_steps);
            profiled_step_s = Some(total / args.layer_steps as f64);
        }
        results.push(ArchResult {
            arch: arch.name().into(),
            batch: args.batch,
            kernels: args.kernels.name().into(),
            step_s,
            ours: args.batch as f64 / step_s,
            stock,
            torch,
            profiled_step_s,
            layers,
        });
    }
    let data_batch_ms = if dev.is_cpu() {
        progress("data pipeline");
        Some(data_batch_ms(args.batch, args.steps.max(5))?)
    } else {
        None
    };
    Ok(BenchReport {
        machine: if dev.is_cpu() {
            cpu_model()
        } else {
            device_name(dev)
        },
        device: device_name(dev),
        simd,
        threads,
        data_batch_ms,
        results,
    })
}

/// `empirical bench`: runs [`run`], writes the JSON file if asked, and returns the Markdown.
pub fn run_cli(args: &BenchArgs, progress: &mut dyn FnMut(&str)) -> Result<String, EmpiricalError> {
    let r = run(args, progress)?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&r)
            .map_err(|e| EmpiricalError::invalid("bench", format!("cannot serialise: {e}")))?;
        crate::report::write_atomic(path, text.as_bytes())?;
    }
    Ok(markdown(&r))
}

#[cfg(test)]
mod tests;
