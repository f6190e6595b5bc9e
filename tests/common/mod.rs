//! Helpers shared by the integration tests of the data loaders.

use std::process::{Command, Output};

/// Runs the `empirical` binary (no backtraces) from the repository root.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_empirical"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run empirical")
}

/// stdout and stderr together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A failed run: exit code 1 (an error, not a panic or an abort), one message, no repetition
/// of it in a "Caused by" chain.
pub fn fails_with(o: &Output, needles: &[&str]) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    for n in needles {
        assert!(t.contains(n), "missing {n:?} in:\n{t}");
    }
    assert!(!t.contains("Caused by"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
}
