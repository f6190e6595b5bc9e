//! `cargo bench --bench theory_step`: the theory simulator's SGD step (online and fixed pool)
//! beside NumPy running the same step (`benches/numpy_step.py`), in one command on one machine.
//! The same benchmark is `theory-sim bench`.

use granularity::theory::bench;
use std::path::Path;

fn main() {
    let b = bench::BenchConfig::default();
    let r = match bench::run(&b) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/numpy_step.py");
    let np = bench::run_numpy(&script, &b);
    println!("{}", bench::report(&b, &r, &np));
}
