//! The SGD-step benchmark: one step of the fine-label net at d = 1024, P = 32, batch 128,
//! 2 superclasses x 8 subclasses, m = 16 (256 neurons), with a fixed training pool and with
//! fresh samples every step (online), in Rust and in a NumPy step written with care
//! (`benches/numpy_step.py`, a worker process fed over a pipe). The two are stepped in turn, a
//! few steps each, round after round, so that a busy machine slows both alike; the medians per
//! step are compared. Each side times its two matrix products inside the step, which gives the
//! share of the step spent outside them.

use crate::hierarchy::Relabeling;
use crate::seed;
use crate::theory::config::{ActivationConfig, TheoryConfig};
use crate::theory::data::{Distribution, SampleKind};
use crate::theory::net::Workspace;
use crate::theory::product_candidates::{self, ProductsResult, Shapes};
use crate::theory::train::{init_net, label_samples};
use crate::theory::TheoryError;
use serde::Deserialize;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The wait before each side's turn.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Dimension d.
    pub dim: usize,
    /// Patches P.
    pub patches: usize,
    /// Batch size.
    pub batch: usize,
    /// Subclasses per superclass (2 superclasses).
    pub subclasses: usize,
    /// Neurons per class.
    pub neurons: usize,
    /// Samples in the fixed pool.
    pub pool: usize,
    /// Rounds; in each, every side runs `steps` steps of each mode in turn.
    pub rounds: usize,
    /// Steps per side, mode and round.
    pub steps: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            dim: 1024,
            patches: 32,
            batch: 128,
            subclasses: 8,
            neurons: 16,
            pool: 1024,
            rounds: 10,
            steps: 3,
        }
    }
}

/// Per-step seconds of one side in one mode.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Timings {
    /// Whole step (drawing or gathering the batch included).
    pub step_s: Vec<f64>,
    /// The two matrix products inside it.
    pub products_s: Vec<f64>,
    /// The forward product alone (in Rust with the activation fused into it).
    #[serde(default)]
    pub forward_s: Vec<f64>,
    /// Drawing the batch (online; 0 for the pool, whose gather counts as outside the products).
    pub sampling_s: Vec<f64>,
}

impl Timings {
    fn extend(&mut self, o: Timings) {
        self.step_s.extend(o.step_s);
        self.products_s.extend(o.products_s);
        self.forward_s.extend(o.forward_s);
        self.sampling_s.extend(o.sampling_s);
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// The two modes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Minibatches gathered from a fixed pool.
    Pool,
    /// Fresh samples every step.
    Online,
}

impl Mode {
    fn word(self) -> &'static str {
        match self {
            Mode::Pool => "pool",
            Mode::Online => "online",
        }
    }
}

/// The NumPy worker process (`numpy_step.py --serve`).
struct Numpy {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

/// What the NumPy worker says about itself.
#[derive(Clone, Debug, Deserialize)]
pub struct NumpyInfo {
    /// NumPy version.
    pub numpy: String,
    /// Its BLAS.
    pub blas: String,
    /// Seconds of one 2048^3 single-precision product.
    pub sgemm_2048_s: f64,
}

impl Numpy {
    fn start(
        script: &Path,
        b: &BenchConfig,
        act: &ActivationConfig,
        threads: usize,
    ) -> Result<Self, String> {
        let (kind, q, t) = match *act {
            ActivationConfig::SmoothedRelu { q, threshold } => ("smoothed_relu", q, threshold),
            _ => ("relu", 3, 1.0),
        };
        let mut child = Command::new("python3")
            .arg(script)
            .args([
                "--serve".to_string(),
                format!("--dim={}", b.dim),
                format!("--patches={}", b.patches),
                format!("--batch={}", b.batch),
                format!("--subclasses={}", b.subclasses),
                format!("--neurons={}", b.neurons),
                format!("--pool={}", b.pool),
                format!("--activation={kind}"),
                format!("--q={q}"),
                format!("--t={t}"),
            ])
            .envs(
                ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"]
                    .map(|k| (k, threads.to_string())),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not run python3: {e}"))?;
        let input = child.stdin.take().ok_or("no stdin")?;
        let output = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Numpy {
            child,
            input,
            output,
        })
    }

    fn ask<T: for<'de> Deserialize<'de>>(&mut self, cmd: &str) -> Result<T, String> {
        writeln!(self.input, "{cmd}").map_err(|e| self.failure(&e.to_string()))?;
        self.input
            .flush()
            .map_err(|e| self.failure(&e.to_string()))?;
        let mut line = String::new();
        self.output
            .read_line(&mut line)
            .map_err(|e| self.failure(&e.to_string()))?;
        serde_json::from_str(&line).map_err(|e| self.failure(&format!("{e}: '{}'", line.trim())))
    }

    /// Why the worker failed, with what it wrote to stderr.
    fn failure(&mut self, what: &str) -> String {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        format!("NumPy worker: {what} {}", err.trim())
    }
}

impl Drop for Numpy {
    fn drop(&mut self) {
        let _ = writeln!(self.input, "quit");
        let _ = self.child.wait();
    }
}

/// One activation's measurements.
#[derive(Clone, Debug)]
pub struct ActivationResult {
    /// The activation.
    pub activation: ActivationConfig,
    /// Rust, fixed pool.
    pub rust_pool: Timings,
    /// Rust, online.
    pub rust_online: Timings,
    /// NumPy, fixed pool and online (Err: why not measured).
    pub numpy: Result<(Timings, Timings), String>,
}

/// The measurements with one thread count.
#[derive(Clone, Debug)]
pub struct ThreadsResult {
    /// Threads of the Rust step (and of NumPy's BLAS).
    pub threads: usize,
    /// NumPy's version and BLAS (Err: why not).
    pub numpy: Result<NumpyInfo, String>,
    /// Per activation.
    pub activations: Vec<ActivationResult>,
    /// The two products alone, as the step computes them and by the `gemm` crate.
    pub products: ProductsResult,
}

/// The machine's fused multiply-adds from registers, in GFLOP/s.
#[derive(Clone, Copy, Debug)]
pub struct Peak {
    /// One thread.
    pub one: f64,
    /// Every thread of the run with the most threads, together.
    pub all: f64,
    /// Their number.
    pub threads: usize,
    /// Bits of the vectors (512, 256, or 32 for scalar code).
    pub bits: usize,
}

/// The whole benchmark.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// The CPU, from /proc/cpuinfo, with its vector extensions.
    pub machine: String,
    /// Load average (1 min) before and after.
    pub load: (f64, f64),
    /// Peak multiply-add rate.
    pub peak: Peak,
    /// Per thread count.
    pub runs: Vec<ThreadsResult>,
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// The CPU model and its widest vector extension, from /proc/cpuinfo (Linux).
pub fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let simd = if has("avx512f") {
        "AVX-512"
    } else if has("avx2") {
        "AVX2"
    } else {
        "no AVX2"
    };
    let cpus = info.lines().filter(|l| l.starts_with("processor")).count();
    format!("{model}, {cpus} logical CPUs, {simd}")
}

/// Run the benchmark for each thread count (each in its own rayon pool, NumPy's BLAS with as
/// many threads) and each activation, against the NumPy worker `script` when given.
pub fn run(
    b: &BenchConfig,
    activations: &[ActivationConfig],
    script: Option<&Path>,
    thread_counts: &[usize],
) -> Result<BenchResult, TheoryError> {
    let load0 = load_average();
    let mut runs = Vec::new();
    for &threads in thread_counts {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| TheoryError::Invalid(format!("thread pool: {e}")))?;
        let mut info: Result<NumpyInfo, String> = Err("skipped (--no-numpy)".into());
        let mut out = Vec::new();
        for act in activations {
            let mut numpy = script.map(|s| Numpy::start(s, b, act, threads));
            if let Some(Ok(np)) = &mut numpy {
                if out.is_empty() {
                    info = np.ask("info");
                }
            }
            out.push(pool.install(|| run_one(b, act, numpy))?);
        }
        if let (Err(e), Some(first)) = (&info, out.first()) {
            if let Err(why) = &first.numpy {
                if script.is_some() && e != why {
                    info = Err(why.clone());
                }
            }
        }
        let shapes = Shapes {
            rows: b.batch * b.patches,
            patches: b.patches,
            d: b.dim,
            n: 2 * b.subclasses * b.neurons,
        };
        let threads = pool.current_num_threads();
        let products =
            pool.install(|| product_candidates::measure(shapes, threads, b.rounds, b.steps));
        runs.push(ThreadsResult {
            threads,
            numpy: info,
            activations: out,
            products,
        });
    }
    let most = runs.iter().map(|r| r.threads).max().unwrap_or(1);
    let (one, bits) = peak_fma(1);
    let (all, _) = peak_fma(most);
    Ok(BenchResult {
        machine: machine(),
        load: (load0, load_average()),
        peak: Peak {
            one,
            all,
            threads: most,
            bits,
        },
        runs,
    })
}

/// GFLOP/s of fused multiply-adds from registers on `threads` threads at once (independent
/// chains, enough to fill every unit), with the widest vectors this processor has; and their
/// width in bits.
pub fn peak_fma(threads: usize) -> (f64, usize) {
    let threads = threads.max(1);
    let iters: u64 = 20_000_000;
    let mut best = f64::INFINITY;
    let mut bits = 32;
    for _ in 0..3 {
        let t = Instant::now();
        let got: Vec<(f64, usize)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads).map(|_| s.spawn(|| fma_loop(iters))).collect();
            hs.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        best = best.min(t.elapsed().as_secs_f64());
        bits = got.first().map_or(32, |g| g.1);
    }
    // 12 chains, 2 flops per lane and multiply-add
    let flops = iters as f64 * 12.0 * 2.0 * (bits / 32) as f64 * threads as f64;
    (flops / best / 1e9, bits)
}

/// `iters` rounds of 12 independent multiply-add chains; returns a value that depends on them
/// (so they are computed) and the vector width in bits.
fn fma_loop(iters: u64) -> (f64, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present.
            return (unsafe { fma_loop_avx512(iters) }, 512);
        }
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: AVX and FMA are present.
            return (unsafe { fma_loop_avx2(iters) }, 256);
        }
    }
    let mut acc = [1.0f32; 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    (
        std::hint::black_box(acc).iter().map(|&v| v as f64).sum(),
        32,
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    let acc = std::hint::black_box(acc);
    acc.iter().map(|a| _mm512_reduce_add_ps(*a) as f64).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,fma")]
unsafe fn fma_loop_avx2(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let acc = std::hint::black_box(acc);
    let mut out = [0f32; 8];
    let mut sum = 0.0;
    for a in acc {
        // SAFETY: `out` holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), a) };
        sum += out.iter().map(|&v| v as f64).sum::<f64>();
    }
    sum
}

fn run_one(
    b: &BenchConfig,
    act: &ActivationConfig,
    numpy: Option<Result<Numpy, String>>,
) -> Result<ActivationResult, TheoryError> {
    let mut cfg = TheoryConfig::default_config()?;
    cfg.data.dim = b.dim;
    cfg.data.patches = b.patches;
    cfg.data.subclasses = vec![b.subclasses; 2];
    cfg.net.neurons = b.neurons;
    cfg.net.activation = *act;
    cfg.train.batch = b.batch;
    let dist = Distribution::new(&cfg.data, 0)?;
    let rule = Relabeling::Level { level: 1 }.build(
        dist.hierarchy(),
        0,
        None,
        &mut seed::rng(0, &["labels"]),
    )?;
    let mut net = init_net(&dist, &cfg.net, rule.num_classes(), b.neurons, 0);
    net.parallel = true;
    let len = dist.sample_len();
    let key = seed::derive(0, &["train"]);
    let lkey = seed::derive(0, &["sample_labels"]);
    let mut ws = Workspace::default();
    let mut x = vec![0f32; b.batch * len];
    let mut meta = vec![(0usize, false); b.batch];
    let lr = 1e-3f32;
    let pool = dist.draw(key, 0, b.pool, SampleKind::Easy);
    let pool_labels = label_samples(&rule, &pool, lkey);
    let mut order_rng = seed::rng(0, &["batches"]);
    let mut online_index = 0u64;
    let mut rust_step = |mode: Mode, t: &mut Timings| {
        let t0 = Instant::now();
        let (p0, f0) = (ws.products_s, ws.forward_s);
        let labels: Vec<usize> = match mode {
            Mode::Pool => {
                let idx: Vec<usize> = (0..b.batch)
                    .map(|_| rand::Rng::gen_range(&mut order_rng, 0..b.pool))
                    .collect();
                pool.gather_into(&idx, &mut x);
                idx.iter().map(|&j| pool_labels[j]).collect()
            }
            Mode::Online => {
                let first = online_index * b.batch as u64;
                online_index += 1;
                dist.draw_into(key, first, SampleKind::Easy, &mut x, &mut meta);
                meta.iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let idx = first + i as u64;
                        rule.label(m.0, idx as usize, &mut seed::stream(lkey, idx))
                    })
                    .collect()
            }
        };
        let t1 = Instant::now();
        net.sgd_step(&x, &labels, lr, false, &mut ws);
        t.step_s.push(t0.elapsed().as_secs_f64());
        t.products_s.push(ws.products_s - p0);
        t.forward_s.push(ws.forward_s - f0);
        t.sampling_s.push(if mode == Mode::Online {
            (t1 - t0).as_secs_f64()
        } else {
            0.0
        });
    };
    let mut numpy = match numpy {
        Some(Ok(np)) => Ok(np),
        Some(Err(e)) => Err(e),
        None => Err("skipped (--no-numpy)".to_string()),
    };
    let (mut rp, mut ro) = (Timings::default(), Timings::default());
    let (mut np_pool, mut np_online) = (Timings::default(), Timings::default());
    // warm-up, not recorded
    for mode in [Mode::Pool, Mode::Online] {
        rust_step(mode, &mut Timings::default());
        if let Ok(np) = &mut numpy {
            if let Err(e) = np.ask::<Timings>(&format!("{} 2", mode.word())) {
                numpy = Err(e);
            }
        }
    }
    for _ in 0..b.rounds {
        for mode in [Mode::Pool, Mode::Online] {
            let t = if mode == Mode::Pool { &mut rp } else { &mut ro };
            std::thread::sleep(SETTLE);
            for _ in 0..b.steps {
                rust_step(mode, t);
            }
            if let Ok(np) = &mut numpy {
                std::thread::sleep(SETTLE);
                match np.ask::<Timings>(&format!("{} {}", mode.word(), b.steps)) {
                    Ok(r) if mode == Mode::Pool => np_pool.extend(r),
                    Ok(r) => np_online.extend(r),
                    Err(e) => numpy = Err(e),
                }
            }
        }
    }
    Ok(ActivationResult {
        activation: *act,
        rust_pool: rp,
        rust_online: ro,
        numpy: numpy.map(|_| (np_pool, np_online)),
    })
}

fn activation_name(a: &ActivationConfig) -> String {
    match a {
        ActivationConfig::Relu => "ReLU".into(),
        ActivationConfig::ThresholdRelu { tau } => format!("threshold ReLU (τ = {tau})"),
        ActivationConfig::SmoothedRelu { q, threshold } => {
            format!("smoothed ReLU (q = {q}, t = {threshold})")
        }
    }
}

/// The benchmark's report: the machine and its peak multiply-add rate, one Markdown table row
/// per thread count, activation and mode (Rust and NumPy ms per step, the speed ratio, and each
/// side's share of the step outside its two matrix products), then the phases of each step:
/// the two products (their GFLOP/s against the peak), the rest of a fixed-pool step, and
/// drawing an online batch.
pub fn report(b: &BenchConfig, r: &BenchResult) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Machine: {}; load average {:.1} before, {:.1} after (other processes share the cores when it exceeds the thread count).",
        r.machine, r.load.0, r.load.1
    );
    let _ = writeln!(
        s,
        "Peak of {}-bit fused multiply-adds from registers: {:.0} GFLOP/s with 1 thread, {:.0} with {}.",
        r.peak.bits, r.peak.one, r.peak.all, r.peak.threads
    );
    let infos: Vec<String> = r
        .runs
        .iter()
        .filter_map(|t| {
            t.numpy.as_ref().ok().map(|i| {
                format!(
                    "{:.0} GFLOP/s with {} thread{}",
                    2.0 * 2048f64.powi(3) / i.sgemm_2048_s / 1e9,
                    t.threads,
                    if t.threads == 1 { "" } else { "s" }
                )
            })
        })
        .collect();
    match r.runs.iter().find_map(|t| t.numpy.as_ref().ok()) {
        Some(i) => {
            let _ = writeln!(
                s,
                "NumPy {} ({}; one 2048³ product: {}).",
                i.numpy,
                i.blas,
                infos.join(", ")
            );
        }
        None => {
            let why = r
                .runs
                .first()
                .and_then(|t| t.numpy.as_ref().err())
                .cloned()
                .unwrap_or_default();
            let _ = writeln!(s, "NumPy: {why}");
        }
    }
    let _ = writeln!(
        s,
        "One SGD step of the fine-label net: d = {}, P = {}, batch {}, 2 × {} subclasses, m = {} ({} neurons). Medians of {} rounds × {} steps, Rust and NumPy stepped in turn, each turn after a {:.1} s pause; NumPy's BLAS runs with as many threads as the Rust step.\n",
        b.dim,
        b.patches,
        b.batch,
        b.subclasses,
        b.neurons,
        2 * b.subclasses * b.neurons,
        b.rounds,
        b.steps,
        SETTLE.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| threads | activation | mode | Rust ms/step | NumPy ms/step | Rust speed / NumPy | Rust: outside the products | NumPy: outside the products |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    let share = |t: &Timings| {
        let step = median(&t.step_s);
        let prod = median(&t.products_s);
        (step, 100.0 * (1.0 - prod / step))
    };
    for run in &r.runs {
        for a in &run.activations {
            for (mode, rust, np) in [
                (
                    "fixed pool",
                    &a.rust_pool,
                    a.numpy.as_ref().ok().map(|n| &n.0),
                ),
                (
                    "online",
                    &a.rust_online,
                    a.numpy.as_ref().ok().map(|n| &n.1),
                ),
            ] {
                let (rs, rsh) = share(rust);
                let (np_ms, ratio, np_share) = match np {
                    Some(t) => {
                        let (ns, nsh) = share(t);
                        (
                            format!("{:.1}", ns * 1e3),
                            format!("**{:.2}×**", ns / rs),
                            format!("{nsh:.0}%"),
                        )
                    }
                    None => ("n/a".into(), "n/a".into(), "n/a".into()),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {mode} | {:.1} | {np_ms} | {ratio} | {rsh:.0}% | {np_share} |",
                    run.threads,
                    activation_name(&a.activation),
                    rs * 1e3,
                );
            }
        }
    }
    let flops =
        2.0 * 2.0 * (b.batch * b.patches * b.dim) as f64 * (2 * b.subclasses * b.neurons) as f64;
    let _ = writeln!(
        s,
        "\nPhases (ms per step, medians; the products and the rest from fixed-pool steps). Rust's forward product includes the activation (fused into it), NumPy's does not.\n"
    );
    let _ = writeln!(
        s,
        "| threads | activation | side | forward product | weight product | both: GFLOP/s (% of peak) | rest of a fixed-pool step | drawing an online batch |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for run in &r.runs {
        let peak = if run.threads == 1 {
            r.peak.one
        } else {
            r.peak.all
        };
        for a in &run.activations {
            let mut sides = vec![("Rust", &a.rust_pool, &a.rust_online)];
            if let Ok((p, o)) = &a.numpy {
                sides.push(("NumPy", p, o));
            }
            for (side, pool, online) in sides {
                let prod = median(&pool.products_s);
                let fwd = median(&pool.forward_s);
                let gflops = flops / prod / 1e9;
                let _ = writeln!(
                    s,
                    "| {} | {} | {side} | {:.1} | {:.1} | {:.0} ({:.0}%) | {:.1} | {:.1} |",
                    run.threads,
                    activation_name(&a.activation),
                    fwd * 1e3,
                    (prod - fwd) * 1e3,
                    gflops,
                    100.0 * gflops / peak,
                    (median(&pool.step_s) - prod) * 1e3,
                    median(&online.sampling_s) * 1e3,
                );
            }
        }
    }
    products_table(&mut s, b, r);
    let _ = writeln!(
        s,
        "\nTargets: the fixed-pool step at least 1.3× and the online step at least 2.5× the careful NumPy step, with one thread and with all."
    );
    s
}

/// The two products alone: the step's kernels beside the `gemm` crate.
fn products_table(s: &mut String, b: &BenchConfig, r: &BenchResult) {
    use std::fmt::Write;
    let flops = 2.0 * (b.batch * b.patches * b.dim) as f64 * (2 * b.subclasses * b.neurons) as f64;
    let _ = writeln!(
        s,
        "\nThe two products alone on the step's shapes (ms per product, medians; without the activation; the step's AVX-512 forward product includes packing the weights), computed as the step computes them (here: {}) and by the `gemm` crate:\n",
        r.runs
            .first()
            .map_or("", |run| run.products.candidates[0].name)
    );
    let _ = writeln!(
        s,
        "| threads | product | step: ms (GFLOP/s, % of peak) | gemm: ms (GFLOP/s, % of peak) | gemm's speed / the step's | gemm: largest difference (relative) | gemm: same bits with 1 thread |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for run in &r.runs {
        let p = &run.products;
        let peak = if run.threads == 1 {
            r.peak.one
        } else {
            r.peak.all
        };
        let cell = |t: f64| {
            let g = flops / t / 1e9;
            format!("{:.1} ({g:.0}, {:.0}%)", t * 1e3, 100.0 * g / peak)
        };
        let bits = match p.gemm_thread_independent {
            None => "(1 thread)",
            Some(true) => "yes",
            Some(false) => "**no**",
        };
        for (what, own, other, diff) in [
            (
                "forward Z = X Wᵀ",
                median(&p.candidates[0].forward_s),
                median(&p.candidates[1].forward_s),
                p.rel_diff.0,
            ),
            (
                "weight dW = dZᵀ X",
                median(&p.candidates[0].weight_s),
                median(&p.candidates[1].weight_s),
                p.rel_diff.1,
            ),
        ] {
            let _ = writeln!(
                s,
                "| {} | {what} | {} | {} | {:.2}× | {diff:.1e} | {bits} |",
                run.threads,
                cell(own),
                cell(other),
                own / other,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::theory::net::{Activation, Net};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    fn check_against_numpy(act: Activation, act_json: serde_json::Value) {
        let (classes, m, d, p, batch) = (4, 3, 16, 5, 6);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut net = Net::new(classes, m, d, p, 0.5, act, &mut rng);
        net.parallel = false;
        let x: Vec<f32> = (0..batch * p * d)
            .map(|_| rand::Rng::sample::<f32, _>(&mut rng, StandardNormal))
            .collect();
        let labels: Vec<usize> = (0..batch).map(|i| (i * 3) % classes).collect();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.json");
        let output = dir.path().join("out.json");
        let rows =
            |v: &[f32], w: usize| -> Vec<Vec<f32>> { v.chunks(w).map(|c| c.to_vec()).collect() };
        let doc = serde_json::json!({
            "w": rows(net.w.as_slice().unwrap(), d),
            "x": rows(&x, d),
            "labels": labels,
            "patches": p, "neurons": m, "classes": classes, "activation": act_json, "lr": 0.3,
        });
        std::fs::write(&input, doc.to_string()).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/numpy_step.py");
        let o = std::process::Command::new("python3")
            .args([
                script,
                "--check",
                input.to_str().unwrap(),
                output.to_str().unwrap(),
            ])
            .output()
            .expect("python3 runs (this test needs python3 with numpy)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
        let mut ws = crate::theory::net::Workspace::default();
        let w0 = net.w.clone();
        net.sgd_step(&x, &labels, 0.3, false, &mut ws);
        let mut max_change = 0.0f64;
        for i in 0..net.neurons() {
            for j in 0..d {
                let r = reference["w"][i][j].as_f64().unwrap();
                let ours = net.w[[i, j]] as f64;
                max_change = max_change.max((ours - w0[[i, j]] as f64).abs());
                assert!(
                    (ours - r).abs() < 1e-5,
                    "{act:?} w[{i},{j}]: rust {ours} numpy {r}"
                );
            }
        }
        assert!(
            max_change > 1e-3,
            "the step must move the weights for the check to mean anything"
        );
    }

    /// The careful NumPy step the benchmark compares against computes the same update as the
    /// Rust step, for the plain and the smoothed ReLU.
    #[test]
    #[ignore = "needs numpy"]
    fn numpy_reference_step_matches_rust_step() {
        check_against_numpy(Activation::Relu, serde_json::json!({ "kind": "relu" }));
        check_against_numpy(
            Activation::Smoothed { q: 3, t: 1.0 },
            serde_json::json!({ "kind": "smoothed_relu", "q": 3, "threshold": 1.0 }),
        );
        check_against_numpy(
            Activation::Smoothed { q: 2, t: 0.7 },
            serde_json::json!({ "kind": "smoothed_relu", "q": 2, "threshold": 0.7 }),
        );
    }
}
