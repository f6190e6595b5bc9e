//! End-to-end tests of the `empirical` binary: a tiny synthetic study (with resume and re-plot),
//! a tiny sweep (with resume and its checks), single pretrain and fine-tune runs, a tiny CIFAR-100 study on the real data (ignored unless
//! asked for: it needs `GRANULARITY_CIFAR100_DIR`), and clear errors for bad configs and devices.

use std::path::Path;
use std::process::{Command, Output};

/// Overrides that shrink the embedded synthetic study to seconds.
const TINY: &[&str] = &[
    "--set",
    "seeds=[0]",
    "--set",
    "data.synthetic={image_size = 16, patch_size = 4, subclasses = [2, 2], train_per_leaf = 16, test_easy_per_leaf = 6, test_hard_per_leaf = 6}",
    "--set",
    "model.width=4",
    "--set",
    "train.batch_size=16",
    "--set",
    "train.pretrain_epochs=2",
    "--set",
    "train.finetune_epochs=1",
    "--set",
    "train.pretrain_lr={kind = \"cosine\", lr = 0.05}",
    "--set",
    "train.probe.epochs=3",
    "--set",
    "granularity=[{name = \"fine\", labels = {kind = \"level\", level = 1}}, {name = \"km\", labels = {kind = \"kmeans_within\", k = 2}}]",
];

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_empirical"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run empirical")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn synthetic_study_runs_resumes_and_replots() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("syn");
    let out_s = out.to_str().unwrap();
    let mut args = TINY.to_vec();
    args.extend(["synthetic", "--out", out_s]);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("| balanced | fine | 4 | yes | finetune |"),
        "{t}"
    );
    assert!(t.contains("hard test images (balanced)"), "{t}");
    for f in [
        "config.toml",
        "summary.json",
        "results.md",
        "epochs.csv",
        "granularity_balanced_finetune.svg",
        "easy_hard_balanced_linear_probe.svg",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // stderr is not a terminal here: plain progress lines, one per epoch and per cell
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("balanced/fine s0 pretrain epoch 2/2: loss"),
        "{log}"
    );
    assert!(
        log.contains("balanced/baseline s0 done: error scratch"),
        "{log}"
    );
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    // resume: everything is saved, so a rerun trains nothing, says so, and reports the same
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("loaded 3 of 3 cells; 0 cells to run"), "{log}");
    assert!(!log.contains("epoch 1/"), "{log}");
    assert_eq!(
        summary,
        std::fs::read_to_string(out.join("summary.json")).unwrap()
    );
    // the default run takes --out (and --threads) at the top level, as theory-sim does
    let mut top = TINY.to_vec();
    top.extend(["--threads", "1", "--out", out_s]);
    let o = run(&top);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("0 cells to run"),
        "{}",
        text(&o)
    );
    let o = run(&["--out", out_s, "plot", out_s]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("after the subcommand's name"),
        "{}",
        text(&o)
    );
    // re-plot from the saved results
    std::fs::remove_file(out.join("granularity_balanced_finetune.svg")).unwrap();
    let o = run(&["plot", out_s]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("granularity_balanced_finetune.svg").exists());
    // another config into the same folder is refused without --fresh
    let mut other = args.clone();
    other.extend(["--set", "train.finetune_epochs=2"]);
    let o = run(&other);
    assert!(!o.status.success());
    assert!(text(&o).contains("--fresh"), "{}", text(&o));
}

/// The embedded synthetic config with tiny images, written to `dir/s.toml`.
fn tiny_config_file(dir: &Path) -> std::path::PathBuf {
    let cfg = dir.join("s.toml");
    std::fs::write(
        &cfg,
        include_str!("../experiments/empirical/synthetic.toml").replace(
            "source = \"synthetic\"",
            "source = \"synthetic\"\nsynthetic = { image_size = 16, patch_size = 4, subclasses = [2, 2], train_per_leaf = 16, test_easy_per_leaf = 6, test_hard_per_leaf = 6 }",
        ),
    )
    .unwrap();
    cfg
}

/// A sweep file: the embedded synthetic study plus `axes`, written to `dir/sweep.toml`.
fn sweep_file(dir: &Path, axes: &str) -> std::path::PathBuf {
    let p = dir.join("sweep.toml");
    let text = format!(
        "{}\n{axes}",
        include_str!("../experiments/empirical/synthetic.toml")
    );
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn sweep_runs_each_point_once_resumes_and_checks_first() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sw");
    let out_s = out.to_str().unwrap();
    let file = sweep_file(
        tmp.path(),
        "[[axis]]\nname = \"size\"\nlabel = \"training images per subclass\"\nkey = \"data.synthetic.train_per_leaf\"\nvalues = [8, 16]\nlog = true\n",
    );
    let mut args = TINY.to_vec();
    args.extend(["--set", "seeds=[0, 1]", "--set", "train.direct=true"]);
    args.extend(["sweep", file.to_str().unwrap(), "--out", out_s]);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    // 16 per leaf is the base's (TINY's) value: that point is the base study
    for f in [
        "sweep.toml",
        "base/summary.json",
        "base/results.md",
        "size/8/summary.json",
        "size/8/epochs.csv",
        "size.csv",
        "size_hard.svg",
        "size_all.svg",
    ] {
        assert!(out.join(f).exists(), "{f}: {}", text(&o));
    }
    assert!(!out.join("size/16").exists());
    let csv = std::fs::read_to_string(out.join("size.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    for col in [
        "x",
        "condition",
        "readout",
        "hard_diff_lo",
        "train_acc",
        "train_loss",
    ] {
        assert!(header.split(',').any(|c| c == col), "{col}: {header}");
    }
    assert!(
        csv.contains(",size/8,balanced,fine direct,summed_head,2,"),
        "{csv}"
    );
    assert!(csv.contains(",base,balanced,baseline,scratch,2,"), "{csv}");
    let svg = std::fs::read_to_string(out.join("size_hard.svg")).unwrap();
    assert!(svg.contains("fine direct, summed_head"), "the arm's line");
    // resume: a second run trains nothing and writes the same table
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let log = String::from_utf8_lossy(&o.stderr);
    assert_eq!(log.matches("0 cells to run").count(), 2, "{log}");
    assert!(!log.contains("epoch 1/"), "{log}");
    assert_eq!(csv, std::fs::read_to_string(out.join("size.csv")).unwrap());
    // another config in a point's folder is refused before anything runs
    let mut other = args.clone();
    other.extend(["--set", "train.finetune_epochs=2"]);
    let o = run(&other);
    assert!(!o.status.success());
    assert!(text(&o).contains("--fresh"), "{}", text(&o));
    assert!(!text(&o).contains("sweep point"), "{}", text(&o));
    // an unknown --axis is named
    let mut bad = args.clone();
    bad.extend(["--axis", "sizes"]);
    let o = run(&bad);
    assert!(!o.status.success());
    assert!(text(&o).contains("no axis named 'sizes'"), "{}", text(&o));
}

#[test]
fn bad_sweep_files_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sw");
    for (axes, want) in [
        (
            "[[axis]]\nname = \"a\"\nlabel = \"A\"\nkey = \"data.synthetic.train_per_leaf\"\nvalues = [4, 0]\n",
            "field 'axis[0].values[1]",
        ),
        (
            "[[axis]]\nname = \"a\"\nlabel = \"A\"\nkey = \"train.epochz\"\nvalues = [4]\n",
            "epochz",
        ),
        (
            "[[axis]]\nname = \"a\"\nlabel = \"A\"\nkey = \"seeds\"\nvalues = []\n",
            "field 'axis[0].values': no values",
        ),
        (
            "[[axis]]\nname = \"a\"\nlabl = \"A\"\nkey = \"seeds\"\nvalues = [[1]]\n",
            "unknown field `labl`",
        ),
    ] {
        let file = sweep_file(tmp.path(), axes);
        let o = run(&["sweep", file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(!o.status.success(), "{axes}");
        assert!(text(&o).contains("sweep.toml"), "{axes}: {}", text(&o));
        assert!(text(&o).contains(want), "{axes}: {}", text(&o));
        assert!(!out.exists(), "{axes}");
    }
    // A value the data cannot serve is found before the base point trains, naming the point.
    let file = sweep_file(
        tmp.path(),
        "[[axis]]\nname = \"target\"\nlabel = \"target level\"\nkey = \"data.target_level\"\nvalues = [0, 7]\n",
    );
    let mut args = TINY.to_vec();
    args.extend([
        "sweep",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let o = run(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("sweep point data.target_level = 7 (axis 'target', folder target/7)")
            && t.contains("level 7 does not exist"),
        "{t}"
    );
    assert!(!t.contains("epoch 1/"), "{t}");
    assert!(!out.exists());
}

#[test]
fn single_pretrain_then_finetune() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config_file(tmp.path());
    let cfg_s = cfg.to_str().unwrap();
    let pre = tmp.path().join("pre");
    let ft = tmp.path().join("ft");
    let small = [
        "--set",
        "model.width=4",
        "--set",
        "train.pretrain_epochs=2",
        "--set",
        "train.finetune_epochs=1",
    ];
    let mut a = small.to_vec();
    a.extend([
        "pretrain",
        cfg_s,
        "--granularity",
        "fine-10",
        "--out",
        pre.to_str().unwrap(),
    ]);
    let o = run(&a);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("summed_head: error"), "{}", text(&o));
    assert!(pre.join("weights.safetensors").exists());
    let mut a = small.to_vec();
    let w = pre.join("weights.safetensors");
    a.extend([
        "finetune",
        cfg_s,
        "--weights",
        w.to_str().unwrap(),
        "--out",
        ft.to_str().unwrap(),
    ]);
    let o = run(&a);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("linear_probe: error") && t.contains("finetune: error"),
        "{t}"
    );
    // an unknown granularity names the choices
    let mut a = small.to_vec();
    a.extend([
        "pretrain",
        cfg_s,
        "--granularity",
        "nope",
        "--out",
        pre.to_str().unwrap(),
    ]);
    let o = run(&a);
    assert!(!o.status.success());
    assert!(text(&o).contains("fine-10"), "{}", text(&o));
}

/// A run that fails its checks (a level that does not exist, too many misaligned groups, a
/// training step larger than memory) names the field and leaves no results folder behind; the
/// corrected run is then accepted in the same folder.
#[test]
fn failed_checks_leave_no_folder_and_the_corrected_run_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let out_s = out.to_str().unwrap();
    for (set, want) in [
        (
            "granularity=[{name = \"deep\", labels = {kind = \"level\", level = 5}}]",
            "granularity 'deep'",
        ),
        (
            "granularity=[{name = \"mis\", labels = {kind = \"misaligned\", groups = 3}}]",
            "granularity 'mis'",
        ),
        (
            "train.batch_size=1000000000",
            "train.batch_size: this run needs about",
        ),
    ] {
        let mut args = TINY.to_vec();
        args.extend(["--set", set, "synthetic", "--out", out_s]);
        let o = run(&args);
        assert!(!o.status.success(), "{set}");
        assert!(text(&o).contains(want), "{set}: {}", text(&o));
        assert!(!out.exists(), "{set}: left {}", out.display());
    }
    let mut args = TINY.to_vec();
    args.extend(["synthetic", "--out", out_s]);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn bad_configs_and_devices_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let out_s = out.to_str().unwrap();
    let o = run(&["--set", "train.batch_size=0", "synthetic", "--out", out_s]);
    assert!(!o.status.success());
    assert!(text(&o).contains("train.batch_size"), "{}", text(&o));
    let o = run(&["--device", "tpu", "synthetic", "--out", out_s]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--device tpu"), "{}", text(&o));
    if !cfg!(feature = "cuda") {
        let o = run(&["--device", "cuda:0", "synthetic", "--out", out_s]);
        assert!(!o.status.success());
        assert!(text(&o).contains("--features cuda"), "{}", text(&o));
    }
    let missing = tmp.path().join("missing.toml");
    let o = run(&["study", missing.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("missing.toml"), "{}", text(&o));
    // CIFAR-100 without a folder says how to give one
    let q = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/empirical/quick.toml"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_empirical"))
        .args(["study", q, "--out", out_s, "--fresh"])
        .env_remove("GRANULARITY_CIFAR100_DIR")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("GRANULARITY_CIFAR100_DIR"),
        "{}",
        text(&o)
    );
}

/// The quick CIFAR-100 config, shrunk to seconds (5 images per fine class, 1+1 epochs, one
/// seed, a one-member ensemble), runs end to end on the real data (`.ci/run` runs it when
/// `GRANULARITY_CIFAR100_DIR` is set).
#[test]
#[ignore = "needs CIFAR-100: set GRANULARITY_CIFAR100_DIR"]
fn quick_config_runs_on_cifar100() {
    let dir = std::env::var_os("GRANULARITY_CIFAR100_DIR")
        .filter(|v| !v.is_empty())
        .expect("GRANULARITY_CIFAR100_DIR must name the CIFAR-100 binary folder");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q");
    let q = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/empirical/quick.toml"
    );
    let o = run(&[
        "--set",
        "seeds=[0]",
        "--set",
        "data.train_per_leaf=5",
        "--set",
        "data.test_per_leaf=3",
        "--set",
        "model.width=4",
        "--set",
        "train.batch_size=64",
        "--set",
        "train.pretrain_epochs=2",
        "--set",
        "train.finetune_epochs=1",
        "--set",
        "train.probe.epochs=2",
        "--set",
        "hard.ensemble.seeds=[1000]",
        "--set",
        "hard.ensemble.epochs=2",
        "--set",
        "hard.rare_subclass.rare_per_leaf=2",
        "study",
        q,
        "--data",
        Path::new(&dir).to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    for want in [
        "per-sample-5000",
        "kmeans-global-100",
        "kmeans-within-fine-400",
        "coarser-5",
        "rare_subclass",
    ] {
        assert!(t.contains(want), "{want}: {t}");
    }
    assert!(out.join("granularity_balanced_finetune.svg").exists());
}

/// `--kernels stock` reaches the networks of a single run: the folder records it, and the run
/// trains on candle's stock operations (its weights differ from the fast path's in their last
/// bits, as the two sum in different orders, while the losses agree to rounding).
#[test]
fn pretrain_kernels_stock_trains_on_the_stock_path() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config_file(tmp.path());
    let train = |kernels: &str| {
        let out = tmp.path().join(kernels);
        let o = run(&[
            "--kernels",
            kernels,
            "--set",
            "model.width=4",
            "--set",
            "train.pretrain_epochs=2",
            "pretrain",
            cfg.to_str().unwrap(),
            "--granularity",
            "fine-10",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
        assert_eq!(config.contains("--kernels stock"), kernels == "stock");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap())
                .unwrap();
        let losses: Vec<f64> = r["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["loss"].as_f64().unwrap())
            .collect();
        (
            losses,
            std::fs::read(out.join("weights.safetensors")).unwrap(),
        )
    };
    let ((fast, wf), (stock, ws)) = (train("fast"), train("stock"));
    assert_eq!(fast.len(), 2);
    assert_ne!(wf, ws, "the stock run gave the fast path's bits");
    for (f, s) in fast.iter().zip(&stock) {
        assert!((f - s).abs() < 1e-3 * f.abs(), "fast {f} vs stock {s}");
    }
}
