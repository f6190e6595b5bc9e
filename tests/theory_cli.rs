//! End-to-end tests of the `theory-sim` binary: small verify and sweep runs, verdicts and exit
//! codes, convergence, progress lines, resume, re-plot, determinism across thread counts, and
//! clear errors for bad configs.

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
    "train.max_steps=3000",
    "--set",
    "train.record_every=20",
    "--set",
    "train.window=100",
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

fn verify_with(out: &Path, threads: &str, extra: &[&str], verify_args: &[&str]) -> Output {
    let claims = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny_claims.md");
    let mut args: Vec<&str> = TINY.to_vec();
    let out_s = out.to_str().unwrap();
    args.extend(extra);
    args.extend([
        "--out",
        out_s,
        "--threads",
        threads,
        "verify",
        "--claims",
        claims,
    ]);
    args.extend(verify_args);
    sim(&args)
}

fn verify(out: &Path, threads: &str) -> Output {
    verify_with(out, threads, &[], &[])
}

#[test]
fn verify_reports_pass_and_fail_and_writes_results() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v");
    let o = verify(&out, "2");
    let t = text(&o);
    // one claim passes, the impossible one fails: a finding, so verify still exits 0
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("| coarse-learns-common |") && t.contains("PASS"),
        "{t}"
    );
    assert!(t.contains("impossible") && t.contains("FAIL"), "{t}");
    assert!(
        t.contains("do not hold in this model") && !t.contains("Error"),
        "{t}"
    );
    // stderr is not a terminal here: one progress line per finished run
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("run 1 of 4 done") && err.contains("run 4 of 4 done"),
        "{err}"
    );
    assert!(err.contains("converged after"), "{err}");
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
    let cell: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cells/coarse-s0.json")).unwrap())
            .unwrap();
    assert_eq!(cell["converged"], serde_json::Value::Bool(true), "{cell}");
    assert!(cell["steps"].as_u64().unwrap() < 3000, "{cell}");
    // re-plot from saved results
    let o = sim(&["plot", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("feature_responses.svg"));
    // --strict: exit 1 on a FAIL, with the verdicts printed and no error or backtrace
    let mut strict = Command::new(env!("CARGO_BIN_EXE_theory-sim"));
    strict.env("RUST_BACKTRACE", "1");
    let claims = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny_claims.md");
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend([
        "--out",
        out.to_str().unwrap(),
        "verify",
        "--claims",
        claims,
        "--strict",
    ]);
    let o = strict.args(&args).output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("FAIL") && !t.contains("backtrace") && !t.contains("Error"),
        "{t}"
    );
}

/// A run that hits its step cap gets no verdict: NOT CONVERGED, never PASS or FAIL.
#[test]
fn runs_that_hit_the_step_cap_give_no_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("capped");
    let o = verify_with(&out, "2", &["--set", "train.max_steps=150"], &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("NOT CONVERGED") && !t.contains("| PASS"), "{t}");
    assert!(
        t.contains("0/2") && t.contains("hit train.max_steps"),
        "{t}"
    );
    let o = verify_with(&out, "2", &["--set", "train.max_steps=150"], &["--strict"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn an_activation_given_as_a_word_gets_the_kinds_and_the_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let o = sim(&[
        "--set",
        "net.activation=relu",
        "--out",
        dir.path().to_str().unwrap(),
        "verify",
    ]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(!t.contains("internally tagged"), "{t}");
    for needle in [
        "net.activation",
        "`relu`",
        "`threshold_relu`",
        "`smoothed_relu`",
        "--set 'net.activation={ kind = \"relu\" }'",
    ] {
        assert!(t.contains(needle), "missing {needle}: {t}");
    }
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
    // a resumed run loads the saved cells instead of recomputing them, and says so
    let cell = a.join("cells/fine-s0.json");
    let before = std::fs::metadata(&cell).unwrap().modified().unwrap();
    let o = verify(&a, "2");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("4 of 4 runs loaded"),
        "{}",
        text(&o)
    );
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
