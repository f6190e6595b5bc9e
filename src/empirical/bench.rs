//! Training-step benchmark: images per second of one full step (forward, cross-entropy,
//! backward, momentum SGD update with [`Sgd`]) of the CIFAR ResNets on random 32x32 inputs, for
//!
//! * `fast`: the model with this crate's CPU kernels ([`Kernels::Fast`]),
//! * `stock`: the same model on candle's stock operations ([`Kernels::Stock`]),
//! * PyTorch, running the same network (`benches/torch_step.py`, spawned with `python3`) in
//!   NCHW and in channels-last memory format, with as many threads as rayon here.
//!
//! The steps of every path are timed in turn (one fast step, one PyTorch NCHW step, one
//! PyTorch channels-last step, one stock step, again; PyTorch runs in a child process that
//! takes one step per request), and each path reports its median step time, so that load from
//! other processes on the machine hits every path alike. PyTorch runs with
//! `OMP_WAIT_POLICY=PASSIVE` unless the environment sets a policy: with OpenMP's default
//! spinning its throughput collapses as soon as another process wants a core. `empirical
//! bench` prints the Markdown table of [`run_cli`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

use super::error::{EmpiricalError, TensorContext};
use super::model::{Arch, Kernels, Model, ModelConfig};
use super::optim::{cross_entropy, Sgd, SgdConfig};

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
    /// Timed steps of the fast path (and of PyTorch).
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
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
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
            json: None,
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

/// The measurements of one architecture.
#[derive(Clone, Debug, Serialize)]
pub struct ArchResult {
    /// The architecture's name.
    pub arch: String,
    /// Images per step.
    pub batch: usize,
    /// Median step time of the fast path, seconds.
    pub fast_step_s: f64,
    /// Images/s of the fast path.
    pub fast: f64,
    /// Images/s of candle's stock operations (None when skipped).
    pub stock: Option<f64>,
    /// PyTorch.
    pub torch: TorchResult,
}

/// Everything [`run`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// CPU model (from /proc/cpuinfo).
    pub machine: String,
    /// Threads of the rayon pool (and of PyTorch).
    pub threads: usize,
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
    fn new(arch: Arch, batch: usize, kernels: Kernels) -> Result<Self, EmpiricalError> {
        let model = Model::new_with(
            ModelConfig::standard(arch),
            CLASSES,
            0,
            &Device::Cpu,
            kernels,
        )?;
        let sgd = Sgd::new(model.trainable_params(), SgdConfig::default())?;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let v: Vec<f32> = (0..batch * 3 * SIDE * SIDE)
            .map(|_| rng.sample(StandardNormal))
            .collect();
        let x = Tensor::from_vec(v, (batch, 3, SIDE, SIDE), &Device::Cpu).ctx("bench input")?;
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
    /// Starts the script and waits until its models are built and warmed up; `Err` says why
    /// there is no PyTorch (not installed, no python3, script failed).
    fn start(arch: Arch, args: &BenchArgs, threads: usize) -> Result<Self, String> {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(torch_script())
            .args(["--serve", "--arch", arch.name()])
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
    let mut results = Vec::new();
    for &arch in &args.arch {
        progress(&format!("{}: building models", arch.name()));
        let mut fast = Runner::new(arch, args.batch, Kernels::Fast)?;
        let mut stock = if args.no_stock || args.stock_steps == 0 {
            None
        } else {
            Some(Runner::new(arch, args.batch, Kernels::Stock)?)
        };
        let mut torch = if args.no_torch {
            Err("skipped".to_string())
        } else {
            progress(&format!("{}: starting PyTorch", arch.name()));
            TorchServer::start(arch, args, threads)
        };
        progress(&format!("{}: warm-up", arch.name()));
        for _ in 0..args.warmup {
            fast.step()?;
        }
        if let Some(s) = stock.as_mut() {
            s.step()?;
        }
        // One step of each path in turn.
        let (mut tf, mut ts, mut tn, mut tc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let rounds = args.steps.max(args.stock_steps);
        for i in 0..rounds {
            if i < args.steps {
                tf.push(fast.step()?);
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
        let fast_step_s = median(&mut tf);
        let stock = stock.map(|_| args.batch as f64 / median(&mut ts));
        let per_sec = |v: &mut Vec<f64>| (!v.is_empty()).then(|| args.batch as f64 / median(v));
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
        results.push(ArchResult {
            arch: arch.name().into(),
            batch: args.batch,
            fast_step_s,
            fast: args.batch as f64 / fast_step_s,
            stock,
            torch,
        });
    }
    Ok(BenchReport {
        machine: cpu_model(),
        threads,
        results,
    })
}

/// The report as a Markdown table (images/s per path and ratios).
pub fn markdown(r: &BenchReport) -> String {
    let f = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.1}"));
    let ratio = |a: f64, b: Option<f64>| b.map_or("n/a".into(), |b| format!("{:.2}", a / b));
    let mut s = format!(
        "Training step (forward, cross-entropy, backward, momentum SGD), images/s, median step; \
         {}, {} threads\n\n\
         | arch | batch | fast | stock | torch NCHW | torch channels-last | fast/stock | \
         fast/torch NCHW | fast/torch CL |\n|---|---|---|---|---|---|---|---|---|\n",
        r.machine, r.threads
    );
    let mut notes = Vec::new();
    for a in &r.results {
        s += &format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            a.arch,
            a.batch,
            a.fast,
            f(a.stock),
            f(a.torch.nchw),
            f(a.torch.channels_last),
            ratio(a.fast, a.stock),
            ratio(a.fast, a.torch.nchw),
            ratio(a.fast, a.torch.channels_last),
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
    s
}

/// `empirical bench`: runs [`run`], writes the JSON file if asked, and returns the Markdown
/// table.
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
        assert!(c.b.no_torch && c.b.batch == 128);
        assert!(Cli::try_parse_from(["x", "--arch", "resnet9"]).is_err());
        let r = BenchReport {
            machine: "cpu".into(),
            threads: 2,
            results: vec![ArchResult {
                arch: "resnet8".into(),
                batch: 4,
                fast_step_s: 0.5,
                fast: 8.0,
                stock: Some(2.0),
                torch: TorchResult {
                    note: Some("PyTorch not installed".into()),
                    ..Default::default()
                },
            }],
        };
        let t = markdown(&r);
        assert!(
            t.contains("| resnet8 | 4 | 8.0 | 2.0 | n/a | n/a | 4.00 | n/a | n/a |"),
            "{t}"
        );
        assert!(t.contains("PyTorch not installed"), "{t}");
    }

    /// A tiny run of both paths (no PyTorch) completes and reports positive throughput.
    #[test]
    fn tiny_run() {
        let args = BenchArgs {
            arch: vec![Arch::ResNet8],
            batch: 2,
            steps: 1,
            warmup: 0,
            no_torch: true,
            no_stock: false,
            stock_steps: 1,
            json: None,
        };
        let r = run(&args, &mut |_| {}).unwrap();
        assert!(r.results[0].fast > 0.0 && r.results[0].stock.unwrap() > 0.0);
    }
}
