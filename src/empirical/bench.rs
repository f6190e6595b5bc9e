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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

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

fn median(v: &mut [f64]) -> f64 {
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

/// The PyTorch script: `benches/torch_step.py` of this crate's source tree, or of the current
/// directory.
fn torch_script() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/torch_step.py");
    if here.exists() {
        here
    } else {
        PathBuf::from("benches/torch_step.py")
    }
}

/// The PyTorch script in `--serve` mode: one training step per request, so that its steps
/// interleave with ours.
struct TorchServer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    version: Option<String>,
}

/// OpenMP's wait policy for the PyTorch process when the environment sets none: `PASSIVE`,
/// because PyTorch's spinning threads collapse (5-10x slower on the 2-core machine) as soon
/// as another process wants a core, and would also steal time from the steps interleaved
/// with theirs.
const OMP_WAIT_POLICY: &str = "PASSIVE";

impl TorchServer {
    /// Starts the script on `device` (`cpu` or `cuda`) and waits until its models are built and
    /// warmed up; `Err` says why there is no PyTorch (not installed, no python3, no GPU, script
    /// failed).
    fn start(arch: Arch, args: &BenchArgs, threads: usize, device: &str) -> Result<Self, String> {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(torch_script())
            .args(["--serve", "--arch", arch.name(), "--device", device])
            .args(["--batch", &args.batch.to_string()])
            .args(["--warmup", &args.warmup.max(1).to_string()])
            .args(["--threads", &threads.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if std::env::var_os("OMP_WAIT_POLICY").is_none() {
            cmd.env("OMP_WAIT_POLICY", OMP_WAIT_POLICY);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("no pipes to python3".into());
        };
        let mut stdout = std::io::BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            let n = stdout.read_line(&mut line).map_err(|e| e.to_string())?;
            if n == 0 {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let _ = child.wait();
                let last = err.lines().last().unwrap_or("no output").to_string();
                return Err(format!("torch_step.py failed: {last}"));
            }
            if let Some(j) = line.trim().strip_prefix("READY ") {
                let v: serde_json::Value = serde_json::from_str(j).unwrap_or_default();
                let version = v["torch"].as_str().map(String::from);
                return Ok(Self {
                    child,
                    stdin,
                    stdout,
                    version,
                });
            }
            if let Some(j) = line.trim().strip_prefix("RESULT ") {
                let v: serde_json::Value = serde_json::from_str(j).unwrap_or_default();
                let _ = child.wait();
                let why = v["error"].as_str().unwrap_or("no PyTorch result");
                return Err(why.to_string());
            }
        }
    }

    /// One step in `format` (`nchw` or `channels_last`); its time in seconds.
    fn step(&mut self, format: &str) -> Result<f64, String> {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{format}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("torch_step.py: {e}"))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("torch_step.py: {e}"))?;
        line.trim()
            .strip_prefix("TIME ")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("torch_step.py answered {:?}", line.trim()))
    }
}

impl Drop for TorchServer {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
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
            TorchServer::start(arch, args, threads, torch_device)
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

/// The report as Markdown: images/s per path and ratios, then per architecture the headline
/// and table of the per-layer breakdown.
pub fn markdown(r: &BenchReport) -> String {
    let f = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.1}"));
    let ratio = |a: f64, b: Option<f64>| b.map_or("n/a".into(), |b| format!("{:.2}", a / b));
    let kernels = r.results.first().map_or("fast", |a| a.kernels.as_str());
    let mut s = format!(
        "Training step (forward, cross-entropy, backward, momentum SGD), images/s, median step; \
         {}, device {}, {} threads, ours = {kernels} kernels (SIMD {})\n\n\
         | arch | batch | ours | stock | torch NCHW | torch channels-last | ours/stock | \
         ours/torch NCHW | ours/torch CL |\n|---|---|---|---|---|---|---|---|---|\n",
        r.machine, r.device, r.threads, r.simd
    );
    let mut notes = Vec::new();
    for a in &r.results {
        s += &format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            a.arch,
            a.batch,
            a.ours,
            f(a.stock),
            f(a.torch.nchw),
            f(a.torch.channels_last),
            ratio(a.ours, a.stock),
            ratio(a.ours, a.torch.nchw),
            ratio(a.ours, a.torch.channels_last),
        );
        if let Some(n) = &a.torch.note {
            notes.push(format!("{}: PyTorch: {n}", a.arch));
        } else if let Some(v) = &a.torch.version {
            let policy =
                std::env::var("OMP_WAIT_POLICY").unwrap_or_else(|_| OMP_WAIT_POLICY.into());
            notes.push(format!("{}: PyTorch {v}, OMP_WAIT_POLICY={policy}", a.arch));
        }
    }
    notes.dedup();
    if !notes.is_empty() {
        s += "\n";
        for n in notes {
            s += &format!("{n}\n");
        }
    }
    if let Some(d) = r.data_batch_ms {
        s += &format!(
            "\nData pipeline (gather, pad-4 crop, flip, normalise; 32x32): {d:.2} ms per batch"
        );
        for a in &r.results {
            s += &format!(
                ", {:.1}% of a {} step",
                100.0 * d / (1e3 * a.step_s),
                a.arch
            );
        }
        s += "\n";
    }
    for a in &r.results {
        if let Some(step) = a.profiled_step_s {
            s += &layer_table(a, step);
        }
    }
    s
}

/// The per-layer breakdown of one architecture: headline and table.
fn layer_table(a: &ArchResult, step_s: f64) -> String {
    let step_ms = 1e3 * step_s;
    let cell = |p: Option<(f64, Option<f64>)>| match p {
        None => "| | ".to_string(),
        Some((ms, None)) => format!("| {ms:.1} | "),
        Some((ms, Some(g))) => format!("| {ms:.1} | {g:.0} "),
    };
    let convs: Vec<&LayerRow> = a
        .layers
        .iter()
        .filter(|l| l.layer.starts_with("conv"))
        .collect();
    let conv_ms: f64 = convs.iter().map(|l| l.total_ms()).sum();
    let (mut flops, mut secs) = (0.0, 0.0);
    let mut slowest: Option<(f64, String)> = None;
    for l in &convs {
        for (name, p) in [
            ("forward", l.forward),
            ("input grad", l.input_grad),
            ("weight grad", l.weight_grad),
        ] {
            if let Some((ms, Some(g))) = p {
                flops += g * ms * 1e-3;
                secs += ms * 1e-3;
                if slowest.as_ref().is_none_or(|(sg, _)| g < *sg) && ms > 0.02 * step_ms {
                    slowest = Some((g, format!("{} {name}", l.layer)));
                }
            }
        }
    }
    let profiled: f64 = a.layers.iter().map(LayerRow::total_ms).sum();
    let mut s = format!(
        "\n{}: per-layer breakdown of the fast path ({:.1} ms per profiled step): convolutions \
         {:.1} ms ({:.0}% of the step) at {:.0} GFLOP/s overall",
        a.arch,
        step_ms,
        conv_ms,
        100.0 * conv_ms / step_ms,
        flops / secs.max(1e-12),
    );
    if let Some((g, what)) = slowest {
        s += &format!("; slowest pass over 2% of the step: {what} at {g:.0} GFLOP/s");
    }
    s += "\n\n| layer | calls/step | forward ms | GFLOP/s | input grad ms | GFLOP/s | weight grad \
          ms | GFLOP/s | share |\n|---|---|---|---|---|---|---|---|---|\n";
    for l in &a.layers {
        s += &format!(
            "| {} | {:.0} {}{}{}| {:.1}% |\n",
            l.layer,
            l.calls,
            cell(l.forward),
            cell(l.input_grad),
            cell(l.weight_grad),
            100.0 * l.total_ms() / step_ms
        );
    }
    s += &format!(
        "| rest of the step (head, loss, SGD, candle) | | | | | | | | {:.1}% |\n",
        100.0 * (step_ms - profiled).max(0.0) / step_ms
    );
    s
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
mod tests {
    use super::*;

    #[test]
    fn args_parse_and_table_renders() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            b: BenchArgs,
        }
        let c = Cli::parse_from(["x", "--arch", "resnet20,resnet8", "--no-torch"]);
        assert_eq!(c.b.arch, vec![Arch::ResNet20, Arch::ResNet8]);
        assert!(c.b.no_torch && c.b.batch == 128 && c.b.layer_steps == 3);
        assert!(c.b.device.is_cpu() && c.b.kernels == Kernels::Fast);
        assert!(Cli::try_parse_from(["x", "--arch", "resnet9"]).is_err());
        let r = BenchReport {
            machine: "cpu".into(),
            device: "cpu".into(),
            simd: "avx2".into(),
            threads: 2,
            data_batch_ms: Some(1.0),
            results: vec![ArchResult {
                arch: "resnet8".into(),
                batch: 4,
                kernels: "fast".into(),
                step_s: 0.5,
                ours: 8.0,
                stock: Some(2.0),
                torch: TorchResult {
                    note: Some("PyTorch not installed".into()),
                    ..Default::default()
                },
                profiled_step_s: Some(0.5),
                layers: vec![LayerRow {
                    layer: "conv 3x3 4->4 s1 8x8".into(),
                    calls: 2.0,
                    forward: Some((100.0, Some(50.0))),
                    input_grad: None,
                    weight_grad: Some((150.0, Some(40.0))),
                }],
            }],
        };
        let t = markdown(&r);
        assert!(
            t.contains("| resnet8 | 4 | 8.0 | 2.0 | n/a | n/a | 4.00 | n/a | n/a |"),
            "{t}"
        );
        assert!(t.contains("PyTorch not installed"), "{t}");
        assert!(t.contains("0.2% of a resnet8 step"), "{t}");
        assert!(
            t.contains("convolutions 250.0 ms (50% of the step) at 44 GFLOP/s"),
            "{t}"
        );
        assert!(
            t.contains("| conv 3x3 4->4 s1 8x8 | 2 | 100.0 | 50 | | | 150.0 | 40 | 50.0% |"),
            "{t}"
        );
        assert!(
            t.contains("conv 3x3 4->4 s1 8x8 weight grad at 40 GFLOP/s"),
            "{t}"
        );
    }

    /// A tiny run of both paths (no PyTorch) completes, reports positive throughput and a
    /// per-layer breakdown whose convolutions count their operations.
    #[test]
    fn tiny_run() {
        let args = BenchArgs {
            arch: vec![Arch::ResNet8],
            batch: 2,
            steps: 1,
            warmup: 0,
            no_torch: true,
            stock_steps: 1,
            layer_steps: 1,
            ..Default::default()
        };
        let r = run(&args, &mut |_| {}).unwrap();
        let a = &r.results[0];
        assert!(a.ours > 0.0 && a.stock.unwrap() > 0.0);
        assert!(r.data_batch_ms.unwrap() > 0.0);
        let conv = a
            .layers
            .iter()
            .find(|l| l.layer == "conv 3x3 16->16 s1 32x32")
            .expect("stage-1 convolution in the breakdown");
        assert_eq!(conv.calls, 2.0);
        assert!(conv.forward.unwrap().1.unwrap() > 0.0);
        assert!(conv.weight_grad.unwrap().1.unwrap() > 0.0);
        // Without a backward pass into the stem's input, the stem has no input gradient.
        let stem = a
            .layers
            .iter()
            .find(|l| l.layer == "conv 3x3 3->16 s1 32x32")
            .unwrap();
        assert!(stem.input_grad.is_none());
    }
}
