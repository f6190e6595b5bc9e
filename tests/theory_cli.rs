//! End-to-end tests of the `theory-sim` binary: small verify and sweep runs, resume, re-plot,
//! determinism across thread counts, and clear errors for bad configs.

use std::path::Path;
use std::process::{Command, Output};

const TINY: &[&str] = &[
    "--set",
    "seeds=[0, 1]",
    "--set",
    "data.dim=32",
    "--set",
    "data.patches=8",
    "--set",
    "data.subclasses=[2, 2]",
    "--set",
    "data.test_easy=200",
    "--set",
    "data.test_hard=200",
    "--set",
    "train.steps=120",
    "--set",
    "train.probe_every=40",
    "--set",
    "readout.probe_train=200",
    "--set",
    "readout.probe_steps=50",
    "--set",
    "readout.finetune_steps=20",
];

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_theory-sim"))
        .args(args)
        .output()
        .expect("run theory-sim")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn verify(out: &Path, threads: &str) -> Output {
    let claims = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny_claims.md");
    let mut args: Vec<&str> = TINY.to_vec();
    let out_s = out.to_str().unwrap();
    args.extend([
        "--out",
        out_s,
        "--threads",
        threads,
        "verify",
        "--claims",
        claims,
    ]);
    sim(&args)
}

#[test]
fn verify_reports_pass_and_fail_and_writes_results() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v");
    let o = verify(&out, "2");
    let t = text(&o);
    // one claim passes, the impossible one fails -> non-zero exit naming it
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("| coarse-learns-common |") && t.contains("PASS"),
        "{t}"
    );
    assert!(t.contains("impossible") && t.contains("FAIL"), "{t}");
    for f in [
        "config.toml",
        "verdicts.json",
        "verdicts.md",
        "errors.csv",
        "feature_responses.svg",
        "heatmap_coarse.svg",
        "heatmap_fine.svg",
        "errors_hard.svg",
        "cells/coarse-s0.json",
        "cells/fine-s1.json",
    ] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        cfg.contains("seeds = [") && cfg.contains("dim = 32"),
        "{cfg}"
    );
    // re-plot from saved results
    let o = sim(&["plot", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("feature_responses.svg"));
}

#[test]
fn results_are_identical_for_one_or_two_threads_and_resume_skips_saved_runs() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    verify(&a, "1");
    verify(&b, "2");
    for f in ["cells/coarse-s0.json", "cells/fine-s1.json", "errors.csv"] {
        let x = std::fs::read(a.join(f)).unwrap();
        let y = std::fs::read(b.join(f)).unwrap();
        assert!(x == y, "{f} differs between 1 and 2 threads");
    }
    // a resumed run loads the saved cells instead of recomputing them
    let cell = a.join("cells/fine-s0.json");
    let before = std::fs::metadata(&cell).unwrap().modified().unwrap();
    verify(&a, "2");
    assert_eq!(
        std::fs::metadata(&cell).unwrap().modified().unwrap(),
        before
    );
    // a different config in the same folder is refused, not mixed
    let claims = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny_claims.md");
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend([
        "--set",
        "train.lr=0.5",
        "--out",
        a.to_str().unwrap(),
        "verify",
        "--claims",
        claims,
    ]);
    let o = sim(&args);
    assert!(!o.status.success());
    assert!(text(&o).contains("different configuration"), "{}", text(&o));
}

#[test]
fn sweep_writes_rows_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend([
        "--set",
        "seeds=[0]",
        "--out",
        out.to_str().unwrap(),
        "sweep",
        "--param",
        "data.hard_noise=0.3,2.0",
    ]);
    let o = sim(&args);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    // 2 values x 2 conditions x 1 seed x 3 readouts
    assert_eq!(csv.lines().count(), 1 + 12, "{csv}");
    assert!(out.join("sweep_summed_head.svg").exists());
}

#[test]
fn bad_configs_fail_with_the_field_named() {
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "data.colour=1"], "colour"),
        (&["--set", "data.dim=8"], "data.dim"),
        (&["--set", "data.noise=-1"], "data.noise"),
        (&["--set", "train.batch=0"], "train.batch"),
        (&["--config", "/nonexistent/x.toml"], "/nonexistent/x.toml"),
        (&["--set", "seeds=[0]"], "seeds"),
    ];
    for (args, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut a: Vec<&str> = args.to_vec();
        a.extend([
            "--out",
            dir.path().to_str().unwrap(),
            "verify",
            "--no-figures",
        ]);
        let o = sim(&a);
        let t = text(&o);
        assert!(!o.status.success(), "{args:?} should fail: {t}");
        assert!(
            t.contains(needle),
            "{args:?}: error does not name {needle}: {t}"
        );
        assert!(!t.contains("panicked"), "{args:?} panicked: {t}");
    }
}

#[test]
fn divergence_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let claims = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny_claims.md");
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend([
        "--set",
        "net.activation={ kind = \"relu\" }",
        "--set",
        "train.lr=1e30",
        "--out",
        dir.path().to_str().unwrap(),
        "verify",
        "--claims",
        claims,
        "--no-figures",
    ]);
    let o = sim(&args);
    let t = text(&o);
    assert!(!o.status.success());
    assert!(t.contains("diverged") && t.contains("lr (now"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
}
