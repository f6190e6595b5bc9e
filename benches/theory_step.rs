//! `cargo bench --bench theory_step`: the theory simulator's SGD step (fixed pool and online,
//! plain and smoothed ReLU) beside a careful NumPy step (`benches/numpy_step.py`), stepped in
//! turn in one command on one machine. The same benchmark is `theory-sim bench`.

use granularity::theory::bench;
use granularity::theory::config::ActivationConfig;
use std::path::Path;

fn main() {
    let b = bench::BenchConfig::default();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/numpy_step.py");
    let acts = [
        ActivationConfig::Relu,
        ActivationConfig::SmoothedRelu {
            q: 3,
            threshold: 1.0,
        },
    ];
    let mut threads = vec![1, rayon::current_num_threads()];
    threads.dedup();
    match bench::run(&b, &acts, Some(&script), &threads) {
        Ok(r) => println!("{}", bench::report(&b, &r)),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
