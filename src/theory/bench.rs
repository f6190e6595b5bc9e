//! The SGD-step benchmark: one step of the fine-label net at d = 1024, P = 32, batch 128,
//! 2 superclasses x 8 subclasses, m = 16 (256 neurons), with a fixed training pool and with
//! fresh samples every step (online); the step's two matrix products against one large
//! single-precision product on the same machine; and the same step in NumPy
//! (`benches/numpy_step.py`), run from the same command.

use crate::hierarchy::Relabeling;
use crate::theory::config::TheoryConfig;
use crate::theory::data::{derive_key, stream_rng, Distribution, Purpose, SampleKind};
use crate::theory::net::Workspace;
use crate::theory::train::{init_net, label_samples};
use crate::theory::TheoryError;
use serde::{Deserialize, Serialize};
use std::time::Instant;

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
    /// Timed steps per mode (after warm-up).
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
            steps: 30,
        }
    }
}

/// Measured speeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchResult {
    /// Threads in the rayon pool.
    pub threads: usize,
    /// Online steps per second (sampling + step).
    pub online_steps_per_s: f64,
    /// Fixed-pool steps per second (batch gather + step).
    pub pool_steps_per_s: f64,
    /// Seconds per online step spent drawing samples.
    pub online_sampling_s: f64,
    /// GFLOP/s of the forward product X W^T of a step.
    pub forward_gflops: f64,
    /// GFLOP/s of the weight-gradient product dZ^T X of a step.
    pub backward_gflops: f64,
    /// GFLOP/s of one large 2048^3 single-precision product (matrixmultiply, one thread).
    pub peak_gflops: f64,
}

/// Run the benchmark in the current rayon pool.
pub fn run(b: &BenchConfig) -> Result<BenchResult, TheoryError> {
    let mut cfg = TheoryConfig::default_config()?;
    cfg.data.dim = b.dim;
    cfg.data.patches = b.patches;
    cfg.data.subclasses = vec![b.subclasses; 2];
    cfg.net.neurons = b.neurons;
    cfg.train.batch = b.batch;
    let dist = Distribution::new(&cfg.data, 0)?;
    let rule =
        Relabeling::Level { level: 1 }.build(dist.hierarchy(), 0, None, &mut stream_rng(0, 0))?;
    let mut net = init_net(&dist, &cfg.net, rule.num_classes(), b.neurons, 0);
    net.parallel = true;
    let len = dist.sample_len();
    let key = derive_key(0, Purpose::Train);
    let lkey = derive_key(0, Purpose::SampleLabels);
    let mut ws = Workspace::default();
    let mut x = vec![0f32; b.batch * len];
    let mut meta = vec![(0usize, false); b.batch];
    let lr = 1e-3f32;

    // online
    let mut sampling = 0.0f64;
    let mut total = 0.0f64;
    for step in 0..b.steps + 3 {
        let t0 = Instant::now();
        let first = (step * b.batch) as u64;
        dist.draw_into(key, first, SampleKind::Easy, &mut x, &mut meta);
        let labels: Vec<usize> = meta
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let idx = first + i as u64;
                rule.label(m.0, idx as usize, &mut stream_rng(lkey, idx))
            })
            .collect();
        let t1 = Instant::now();
        net.sgd_step(&x, &labels, lr, false, &mut ws);
        if step >= 3 {
            sampling += (t1 - t0).as_secs_f64();
            total += t0.elapsed().as_secs_f64();
        }
    }
    let online = b.steps as f64 / total;
    let online_sampling_s = sampling / b.steps as f64;

    // fixed pool
    let pool = dist.draw(key, 0, b.pool, SampleKind::Easy);
    let pool_labels = label_samples(&rule, &pool, lkey);
    let mut order_rng = stream_rng(derive_key(0, Purpose::Batches), 0);
    let mut total = 0.0f64;
    for step in 0..b.steps + 3 {
        let t0 = Instant::now();
        let mut labels = Vec::with_capacity(b.batch);
        for i in 0..b.batch {
            let j = rand::Rng::gen_range(&mut order_rng, 0..b.pool);
            x[i * len..(i + 1) * len].copy_from_slice(&pool.x[j * len..(j + 1) * len]);
            labels.push(pool_labels[j]);
        }
        net.sgd_step(&x, &labels, lr, false, &mut ws);
        if step >= 3 {
            total += t0.elapsed().as_secs_f64();
        }
    }
    let pooled = b.steps as f64 / total;

    // the two products alone, and a large square product
    let rows = b.batch * b.patches;
    let n = net.neurons();
    let d = b.dim;
    let flops = 2.0 * rows as f64 * n as f64 * d as f64;
    let (fwd, bwd) = net.time_products(&x, 10);
    let big = 2048;
    let peak = time_gemm(big, big, big, 3);
    Ok(BenchResult {
        threads: rayon::current_num_threads(),
        online_steps_per_s: online,
        pool_steps_per_s: pooled,
        online_sampling_s,
        forward_gflops: flops / fwd / 1e9,
        backward_gflops: flops / bwd / 1e9,
        peak_gflops: 2.0 * (big as f64).powi(3) / peak / 1e9,
    })
}

/// Seconds per m x n x k single-precision product (row-major operands), best of `reps`.
fn time_gemm(m: usize, n: usize, k: usize, reps: usize) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i % 7) as f32 - 3.0) * 0.01).collect();
    let mut c = vec![0f32; m * n];
    let mut best = f64::INFINITY;
    for _ in 0..reps + 1 {
        let t = Instant::now();
        // SAFETY: a is m x k, b is k x n, c is m x n, all row-major and non-aliasing.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    best
}

/// NumPy's result, as printed by `benches/numpy_step.py --json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NumpyResult {
    /// NumPy version.
    pub numpy: String,
    /// Online steps per second.
    pub online_steps_per_s: f64,
    /// Fixed-pool steps per second.
    pub pool_steps_per_s: f64,
    /// Seconds per online step spent drawing samples.
    pub online_sampling_s: f64,
    /// GFLOP/s of one large 2048^3 single-precision product in NumPy (its BLAS).
    pub sgemm_gflops: f64,
}

/// Run `python3 benches/numpy_step.py --json` with the same settings; Err(message) says why
/// it could not (no python3, no numpy, script failed).
pub fn run_numpy(script: &std::path::Path, b: &BenchConfig) -> Result<NumpyResult, String> {
    let out = std::process::Command::new("python3")
        .arg(script)
        .args([
            "--json",
            &format!("--dim={}", b.dim),
            &format!("--patches={}", b.patches),
            &format!("--batch={}", b.batch),
            &format!("--subclasses={}", b.subclasses),
            &format!("--neurons={}", b.neurons),
            &format!("--pool={}", b.pool),
            &format!("--steps={}", b.steps),
        ])
        .output()
        .map_err(|e| format!("could not run python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line)
        .map_err(|e| format!("unexpected output of {}: {e}: {line}", script.display()))
}

/// The benchmark's report as Markdown-ish text: steps/s beside NumPy, ratios, and the
/// products' GFLOP/s against one large product.
pub fn report(b: &BenchConfig, r: &BenchResult, np: &Result<NumpyResult, String>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "one SGD step: d={} P={} batch={} 2x{} subclasses m={} ({} neurons), smoothed ReLU; {} threads",
        b.dim,
        b.patches,
        b.batch,
        b.subclasses,
        b.neurons,
        2 * b.subclasses * b.neurons,
        r.threads
    );
    let _ = writeln!(s, "| mode | Rust steps/s | NumPy steps/s | Rust / NumPy |");
    let _ = writeln!(s, "|---|---|---|---|");
    for (mode, ours, theirs) in [
        (
            "online (fresh samples)",
            r.online_steps_per_s,
            np.as_ref().ok().map(|n| n.online_steps_per_s),
        ),
        (
            "fixed pool",
            r.pool_steps_per_s,
            np.as_ref().ok().map(|n| n.pool_steps_per_s),
        ),
    ] {
        match theirs {
            Some(t) => {
                let _ = writeln!(s, "| {mode} | {ours:.1} | {t:.1} | {:.2}x |", ours / t);
            }
            None => {
                let _ = writeln!(s, "| {mode} | {ours:.1} | n/a | n/a |");
            }
        }
    }
    match np {
        Ok(n) => {
            let _ = writeln!(
                s,
                "sampling per online step: Rust {:.1} ms, NumPy {:.1} ms (numpy {})",
                r.online_sampling_s * 1e3,
                n.online_sampling_s * 1e3,
                n.numpy
            );
        }
        Err(e) => {
            let _ = writeln!(s, "NumPy: {e}");
        }
    }
    // the reference is the faster of the two large products (ours via the gemm crate, NumPy's BLAS)
    let peak = np
        .as_ref()
        .map(|n| n.sgemm_gflops.max(r.peak_gflops))
        .unwrap_or(r.peak_gflops);
    let _ = writeln!(
        s,
        "one 2048^3 sgemm: matrixmultiply (1 thread) {:.1} GFLOP/s{}",
        r.peak_gflops,
        match np {
            Ok(n) => format!(", NumPy's BLAS {:.1} GFLOP/s", n.sgemm_gflops),
            Err(_) => String::new(),
        }
    );
    let _ = writeln!(
        s,
        "matrix products of a step: forward {:.1} GFLOP/s ({:.0}% of the faster large sgemm), weight gradient {:.1} GFLOP/s ({:.0}%)",
        r.forward_gflops,
        100.0 * r.forward_gflops / peak,
        r.backward_gflops,
        100.0 * r.backward_gflops / peak,
    );
    s
}

#[cfg(test)]
mod tests {
    use crate::theory::net::{Activation, Net};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    /// The NumPy step the benchmark compares against computes the same update as the Rust step
    /// (checked when python3 with numpy is available; skipped otherwise, and says so).
    #[test]
    fn numpy_reference_step_matches_rust_step() {
        let has_numpy = std::process::Command::new("python3")
            .args(["-c", "import numpy"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !has_numpy {
            // written to stderr directly so that the test harness does not hide it
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED NumPy cross-check: python3 with numpy not available"
            );
            return;
        }
        let (classes, m, d, p, batch) = (4, 3, 16, 5, 6);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut net = Net::new(
            classes,
            m,
            d,
            p,
            0.5,
            Activation::Smoothed { q: 3, t: 1.0 },
            &mut rng,
        );
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
            "patches": p, "neurons": m, "classes": classes, "q": 3, "t": 1.0, "lr": 0.3,
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
            .unwrap();
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
                assert!((ours - r).abs() < 1e-5, "w[{i},{j}]: rust {ours} numpy {r}");
            }
        }
        assert!(
            max_change > 1e-3,
            "the step must move the weights for the check to mean anything"
        );
    }
}
