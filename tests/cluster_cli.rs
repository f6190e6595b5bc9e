//! End-to-end tests of studies run in shards: the preparation, `--shard I/N`, the merge (the
//! same reports as a single-process run, bit for bit), its refusals, a killed shard resuming,
//! and the Slurm scripts. The real Slurm cluster is `tests/slurm_test.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use granularity::empirical::study::CellResult;

const EMPIRICAL: &str = env!("CARGO_BIN_EXE_empirical");

/// A tiny synthetic study: 2 seeds, 2 granularities (one of them k-means), the rare-subclass
/// design, 16 x 16 images, a width-4 ResNet-8, 3 + 1 epochs.
const TINY: &[&str] = &[
    "--set",
    "seeds=[0, 1]",
    "--set",
    "data.synthetic={image_size = 16, patch_size = 4, subclasses = [2, 2], train_per_leaf = 16, test_easy_per_leaf = 6, test_hard_per_leaf = 6}",
    "--set",
    "model.width=4",
    "--set",
    "train.batch_size=16",
    "--set",
    "train.pretrain_epochs=3",
    "--set",
    "train.finetune_epochs=1",
    "--set",
    "train.pretrain_lr={kind = \"cosine\", lr = 0.05}",
    "--set",
    "train.probe.epochs=3",
    "--set",
    "granularity=[{name = \"fine\", labels = {kind = \"level\", level = 1}}, {name = \"km\", labels = {kind = \"kmeans_within\", k = 2}}]",
    "--set",
    "hard.rare_subclass={rare_per_leaf = 4, granularities = [\"fine\"]}",
];

const CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/experiments/empirical/synthetic.toml"
);

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the binary")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `empirical [TINY] study CONFIG --out OUT [extra]`, which must succeed or fail as `ok` says.
fn study(out: &Path, extra: &[&str], ok: bool) -> String {
    let mut args = TINY.to_vec();
    args.extend(["study", CONFIG, "--out", out.to_str().unwrap()]);
    args.extend(extra);
    let o = run(EMPIRICAL, &args);
    assert_eq!(o.status.success(), ok, "{}", text(&o));
    text(&o)
}

fn merge(out: &Path, extra: &[&Path], ok: bool) -> String {
    let mut args = vec!["merge", out.to_str().unwrap()];
    args.extend(extra.iter().map(|p| p.to_str().unwrap()));
    let o = run(EMPIRICAL, &args);
    assert_eq!(o.status.success(), ok, "{}", text(&o));
    text(&o)
}

/// The names of the files in `dir` ending in `ext` (none if `dir` does not exist), sorted.
fn names(dir: &Path, ext: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ext) && !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The lines of `epochs.csv` (its first 8 columns: it holds no wall-clock times).
fn epochs_timeless(dir: &Path) -> Vec<String> {
    String::from_utf8(read(&dir.join("epochs.csv")))
        .unwrap()
        .lines()
        .map(|l| l.split(',').take(8).collect::<Vec<_>>().join(","))
        .collect()
}

fn cell(p: &Path) -> String {
    let c: CellResult = serde_json::from_slice(&read(p)).unwrap();
    serde_json::to_string(&c).unwrap()
}

/// The reports of `merged` are the bits of `single`'s: summary, table, hard subsets, label
/// summaries and every figure; `epochs.csv`; each cell.
fn assert_same_reports(single: &Path, merged: &Path) {
    let svgs = names(single, ".svg");
    assert!(svgs.len() >= 6, "{svgs:?}");
    assert_eq!(svgs, names(merged, ".svg"));
    let mut files = vec![
        "summary.json".to_string(),
        "results.md".into(),
        "hard_subsets.json".into(),
        "labels_balanced.json".into(),
        "labels_rare_subclass.json".into(),
    ];
    files.extend(svgs);
    for f in &files {
        assert!(
            read(&single.join(f)) == read(&merged.join(f)),
            "{f} differs between {} and {}",
            single.display(),
            merged.display()
        );
    }
    assert_eq!(epochs_timeless(single), epochs_timeless(merged));
    let cells = names(&single.join("cells"), ".json");
    assert_eq!(cells, names(&merged.join("cells"), ".json"));
    for c in &cells {
        assert_eq!(
            cell(&single.join("cells").join(c)),
            cell(&merged.join("cells").join(c)),
            "{c}"
        );
    }
}

#[test]
fn empirical_shards_merge_into_the_single_run_and_bad_merges_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    let sharded = tmp.path().join("sharded");
    study(&single, &[], true);

    // a shard without the preparation says so and stops, leaving nothing behind
    let t = study(&sharded, &["--shard", "1/2"], false);
    assert!(
        t.contains("preparation has not run") && t.contains("--prepare"),
        "{t}"
    );
    assert!(!sharded.exists());
    // bad shard specs are refused by the argument parser
    for bad in ["0/2", "3/2", "x"] {
        let t = study(&sharded, &["--shard", bad], false);
        assert!(t.contains(&format!("shard {bad}")), "{t}");
    }

    let t = study(&sharded, &["--prepare"], true);
    assert!(t.contains("prepared"), "{t}");
    assert!(
        !sharded.join("cells").exists(),
        "the preparation runs no cell"
    );
    study(&sharded, &["--shard", "1/2"], true);
    // merging before every shard ran names the missing cells' shard
    let t = merge(&sharded, &[], false);
    assert!(
        t.contains("not saved by any shard") && t.contains("shard 2/2"),
        "{t}"
    );
    study(&sharded, &["--shard", "2/2"], true);
    // the shards split the cells: together they are all, and none runs a cell twice
    let one = names(&sharded.join("shards/1-of-2/cells"), ".json");
    let two = names(&sharded.join("shards/2-of-2/cells"), ".json");
    assert!(!one.is_empty() && !two.is_empty());
    assert!(one.iter().all(|c| !two.contains(c)));
    assert_eq!(
        one.len() + two.len(),
        names(&single.join("cells"), ".json").len()
    );
    let t = merge(&sharded, &[], true);
    assert!(t.contains("| balanced | fine |"), "{t}");
    assert_same_reports(&single, &sharded);
    // merging again changes nothing
    merge(&sharded, &[], true);
    assert_same_reports(&single, &sharded);

    // a shard folder of another config is refused
    let other = tmp.path().join("other/1-of-2");
    std::fs::create_dir_all(other.join("cells")).unwrap();
    let cfg = String::from_utf8(read(&sharded.join("config.toml"))).unwrap();
    std::fs::write(
        other.join("config.toml"),
        cfg.replace("seeds = [", "seeds = [\n    7,"),
    )
    .unwrap();
    let t = merge(&sharded, &[&other], false);
    assert!(t.contains("different config.toml"), "{t}");
    // a cell saved twice with different results is refused
    std::fs::write(other.join("config.toml"), &cfg).unwrap();
    let name = &one[0];
    let mut c: CellResult =
        serde_json::from_slice(&read(&sharded.join("shards/1-of-2/cells").join(name))).unwrap();
    c.readouts[0].error += 0.25;
    std::fs::write(
        other.join("cells").join(name),
        serde_json::to_vec(&c).unwrap(),
    )
    .unwrap();
    let t = merge(&sharded, &[&other], false);
    assert!(
        t.contains("hold different results") && t.contains(name.trim_end_matches(".json")),
        "{t}"
    );
    // the same cell saved twice (cells hold no wall-clock times) is one result
    std::fs::copy(
        sharded.join("shards/1-of-2/cells").join(name),
        other.join("cells").join(name),
    )
    .unwrap();
    merge(&sharded, &[&other], true);
    assert_same_reports(&single, &sharded);
}

/// Polls until `dir` holds a file ending in `ext`, or `limit` has passed.
fn wait_for_file(dir: &Path, ext: &str, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if !names(dir, ext).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn a_killed_empirical_shard_resumes_to_the_same_results() {
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    let sharded = tmp.path().join("sharded");
    study(&single, &[], true);
    study(&sharded, &["--prepare"], true);
    let shard_dir: PathBuf = sharded.join("shards/1-of-2");
    // kill the shard in the middle of its first cell (when its first checkpoint is written)
    let mut args = TINY.to_vec();
    args.extend([
        "study",
        CONFIG,
        "--out",
        sharded.to_str().unwrap(),
        "--shard",
        "1/2",
    ]);
    let mut child = Command::new(EMPIRICAL)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let saw = wait_for_file(
        &shard_dir.join("checkpoints"),
        ".ckpt",
        Duration::from_secs(120),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(saw, "the shard wrote no checkpoint");
    let done_at_kill = names(&shard_dir.join("cells"), ".json").len();
    study(&sharded, &["--shard", "1/2"], true);
    let cells = names(&shard_dir.join("cells"), ".json");
    assert!(
        done_at_kill < cells.len(),
        "the kill came after the shard finished"
    );
    for c in &cells {
        assert_eq!(
            cell(&shard_dir.join("cells").join(c)),
            cell(&single.join("cells").join(c)),
            "{c}"
        );
    }
    assert!(names(&shard_dir.join("checkpoints"), ".ckpt").is_empty());
}

#[test]
fn empirical_slurm_writes_the_job_set_and_submit_needs_sbatch() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let mut args = TINY.to_vec();
    args.extend([
        "slurm",
        CONFIG,
        "--out",
        out.to_str().unwrap(),
        "--shards",
        "3",
        "--partition",
        "short",
        "--time",
        "0:30:00",
        "--cpus-per-task",
        "2",
        "--binary",
        "/opt/granularity/empirical",
    ]);
    let o = run(EMPIRICAL, &args);
    assert!(o.status.success(), "{}", text(&o));
    let dir = out.join("slurm");
    let shards = String::from_utf8(read(&dir.join("shards.sbatch"))).unwrap();
    assert!(shards.contains("#SBATCH --array=1-3\n"), "{shards}");
    assert!(
        shards.contains("#SBATCH --partition=short\n#SBATCH --time=0:30:00\n"),
        "{shards}"
    );
    assert!(
        shards.contains(
            "exec /opt/granularity/empirical --device cpu --kernels fast --set 'seeds=[0, 1]'"
        ),
        "{shards}"
    );
    assert!(
        shards.contains(&format!(
            "study {CONFIG} --out {} --shard \"${{SLURM_ARRAY_TASK_ID}}/3\"",
            out.display()
        )),
        "{shards}"
    );
    let prep = String::from_utf8(read(&dir.join("prepare.sbatch"))).unwrap();
    assert!(prep.contains(" --prepare\n"), "{prep}");
    let merge = String::from_utf8(read(&dir.join("merge.sbatch"))).unwrap();
    assert!(
        merge.contains(&format!(
            "exec /opt/granularity/empirical merge {}\n",
            out.display()
        )),
        "{merge}"
    );
    // bash parses every script written
    for f in [
        "prepare.sbatch",
        "shards.sbatch",
        "merge.sbatch",
        "submit.sh",
    ] {
        if let Ok(st) = Command::new("bash").arg("-n").arg(dir.join(f)).status() {
            assert!(st.success(), "{f} does not parse");
        }
    }
    // options that would make a broken script are refused before anything is written
    for (bad, want) in [
        (
            &["--time", "tomorrow"][..],
            "--time \"tomorrow\" is not a Slurm time limit",
        ),
        (
            &["--max-parallel", "0"][..],
            "--max-parallel must be at least 1",
        ),
        (
            &["--sbatch-option", "--account=lab\necho ("][..],
            "--sbatch-option",
        ),
        (
            &["--gpus-per-task", "1"][..],
            "--gpus-per-task 1 with --device cpu",
        ),
    ] {
        let other = tmp.path().join("refused");
        let mut a = TINY.to_vec();
        let o_s = other.to_str().unwrap();
        a.extend(["slurm", CONFIG, "--out", o_s]);
        a.extend(bad);
        let o = run(EMPIRICAL, &a);
        assert_eq!(o.status.code(), Some(1), "{bad:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{bad:?}: {}", text(&o));
        assert!(!other.exists(), "{bad:?}: scripts written");
    }
    // --submit without sbatch on the PATH says so (the scripts are written)
    args.push("--submit");
    let o = Command::new(EMPIRICAL)
        .args(&args)
        .env("PATH", tmp.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("sbatch is not on the PATH"),
        "{}",
        text(&o)
    );
}

#[test]
fn adding_seeds_keeps_the_cells_already_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    study(&out, &["--set", "seeds=[0]"], true);
    // the overrides before the subcommand's name are kept beside the one after it
    let saved = String::from_utf8(read(&out.join("config.toml"))).unwrap();
    assert!(saved.contains("image_size = 16"), "{saved}");
    assert!(saved.contains("seeds = [0]"), "{saved}");
    let before: Vec<(String, Vec<u8>)> = names(&out.join("cells"), ".json")
        .into_iter()
        .map(|c| {
            let bytes = read(&out.join("cells").join(&c));
            (c, bytes)
        })
        .collect();
    assert!(!before.is_empty());
    let log = study(&out, &["--set", "seeds=[0, 1]"], true);
    let n = before.len();
    assert!(
        log.contains(&format!("loaded {n} of {} cells", 2 * n)),
        "{log}"
    );
    // the cells of seed 0 were kept as they were (their wall-clock times too: not run again)
    for (c, bytes) in &before {
        assert!(
            read(&out.join("cells").join(c)) == *bytes,
            "{c} was run again"
        );
    }
    let after = names(&out.join("cells"), ".json");
    assert_eq!(after.len(), 2 * before.len());
    let summary = String::from_utf8(read(&out.join("summary.json"))).unwrap();
    assert!(
        summary.contains("\"seeds\": [\n    0,\n    1\n  ]"),
        "{summary}"
    );
    // dropping a seed is another config
    let t = study(&out, &["--set", "seeds=[1]"], false);
    assert!(t.contains("--fresh"), "{t}");
}

const THEORY: &str = env!("CARGO_BIN_EXE_theory-sim");

/// A tiny theory config: 2 seeds, 32 dimensions, at most 120 steps a run (a run stops earlier
/// when it converges).
const THEORY_TINY: &[&str] = &[
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
    "train.max_steps=120",
    "--set",
    "train.record_every=40",
    "--set",
    "train.window=40",
    "--set",
    "readout.probe_train=200",
    "--set",
    "readout.probe_steps=50",
    "--set",
    "readout.finetune_steps=20",
];

/// `theory-sim [THEORY_TINY] --out OUT sweep --param data.hard_noise=0.5,1,2 [extra]`.
fn sweep(out: &Path, extra: &[&str], ok: bool) -> String {
    let mut args = THEORY_TINY.to_vec();
    args.extend([
        "--out",
        out.to_str().unwrap(),
        "sweep",
        "--param",
        "data.hard_noise=0.5,1,2",
    ]);
    args.extend(extra);
    let o = run(THEORY, &args);
    assert_eq!(o.status.success(), ok, "{}", text(&o));
    text(&o)
}

/// Every file of the sweep folder `single` (results, figures, runs) has the same bits in
/// `merged`.
fn assert_same_sweep(single: &Path, merged: &Path) {
    let mut files = names(single, "");
    files.retain(|f| single.join(f).is_file());
    assert!(
        files.iter().filter(|f| f.ends_with(".svg")).count() >= 2,
        "{files:?}"
    );
    for f in ["sweep.csv", "summary.md", "config.toml", "study.toml"] {
        assert!(files.contains(&f.to_string()), "{f} missing: {files:?}");
    }
    files.extend(
        names(&single.join("cells"), ".json")
            .iter()
            .map(|c| format!("cells/{c}")),
    );
    assert_eq!(
        names(&single.join("cells"), ".json"),
        names(&merged.join("cells"), ".json")
    );
    for f in &files {
        assert!(
            read(&single.join(f)) == read(&merged.join(f)),
            "{f} differs"
        );
    }
}

#[test]
fn theory_shards_merge_into_the_single_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let (single, sharded) = (tmp.path().join("single"), tmp.path().join("sharded"));
    sweep(&single, &[], true);
    let t = sweep(&sharded, &["--prepare"], true);
    assert!(t.contains("prepared"), "{t}");
    assert!(!sharded.join("cells").exists());
    for s in ["1/3", "3/3"] {
        sweep(&sharded, &["--shard", s], true);
    }
    let o = run(THEORY, &["merge", sharded.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("shard 2/3"), "{}", text(&o));
    sweep(&sharded, &["--shard", "2/3"], true);
    let o = run(THEORY, &["merge", sharded.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_same_sweep(&single, &sharded);

    // shards run by hand without a preparation merge too (the folder takes their config)
    let by_hand = tmp.path().join("by_hand");
    let elsewhere = tmp.path().join("elsewhere");
    sweep(&by_hand, &["--shard", "1/2"], true);
    sweep(&elsewhere, &["--shard", "2/2"], true);
    let o = run(
        THEORY,
        &[
            "merge",
            by_hand.to_str().unwrap(),
            elsewhere.join("shards/2-of-2").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_same_sweep(&single, &by_hand);

    // a shard of another config is refused, before it runs anything
    let mut args = THEORY_TINY.to_vec();
    args.extend(["--set", "train.lr=0.5", "--out", sharded.to_str().unwrap()]);
    args.extend([
        "sweep",
        "--param",
        "data.hard_noise=0.5,1,2",
        "--shard",
        "1/3",
    ]);
    let o = run(THEORY, &args);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("was prepared for another sweep: its config.toml differs")
            && !text(&o).contains("merged"),
        "{}",
        text(&o)
    );
    // a run saved twice with different results is refused
    let other = tmp.path().join("other/1-of-3");
    std::fs::create_dir_all(other.join("cells")).unwrap();
    for f in ["config.toml", "study.toml"] {
        std::fs::copy(sharded.join(f), other.join(f)).unwrap();
    }
    let name = names(&sharded.join("cells"), ".json").remove(0);
    let mut v: serde_json::Value =
        serde_json::from_slice(&read(&sharded.join("cells").join(&name))).unwrap();
    v["init_level"] = serde_json::json!(123.0);
    std::fs::write(
        other.join("cells").join(&name),
        serde_json::to_vec(&v).unwrap(),
    )
    .unwrap();
    let o = run(
        THEORY,
        &["merge", sharded.to_str().unwrap(), other.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("hold different results"), "{}", text(&o));
}

#[test]
fn a_killed_theory_shard_resumes_to_the_same_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (single, sharded) = (tmp.path().join("single"), tmp.path().join("sharded"));
    // (a --set after the subcommand would replace the earlier ones: keep them all before it)
    fn sweep_400(out: &Path) -> Vec<&str> {
        let mut args = THEORY_TINY.to_vec();
        args.extend(["--set", "train.max_steps=400", "--threads", "1"]);
        args.extend([
            "--out",
            out.to_str().unwrap(),
            "sweep",
            "--param",
            "data.hard_noise=0.5,1,2",
        ]);
        args
    }
    let o = run(THEORY, &sweep_400(&single));
    assert!(o.status.success(), "{}", text(&o));
    let mut args = sweep_400(&sharded);
    args.extend(["--shard", "1/2"]);
    let mut child = Command::new(THEORY)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cells = sharded.join("shards/1-of-2/cells");
    let saw = wait_for_file(&cells, ".json", Duration::from_secs(120));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(saw, "the shard saved no run");
    let at_kill = names(&cells, ".json").len();
    let o = run(THEORY, &args);
    assert!(o.status.success(), "{}", text(&o));
    let done = names(&cells, ".json");
    assert!(
        at_kill < done.len(),
        "the kill came after the shard finished"
    );
    assert_eq!(done.len(), 6);
    for c in &done {
        assert!(
            read(&cells.join(c)) == read(&single.join("cells").join(c)),
            "{c}"
        );
    }
}

#[test]
fn theory_slurm_writes_the_job_set() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let mut args = THEORY_TINY.to_vec();
    args.extend([
        "--out",
        out.to_str().unwrap(),
        "slurm",
        "--sweep",
        "hardness",
        "--shards",
        "5",
    ]);
    args.extend(["--binary", "/opt/theory-sim", "--max-parallel", "2"]);
    // the simulation runs on the CPU: GPUs for its jobs are refused before anything is written
    let mut gpus = args.clone();
    gpus.extend(["--gpus-per-task", "1"]);
    let o = run(THEORY, &gpus);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("theory-sim runs on the CPU"),
        "{}",
        text(&o)
    );
    assert!(!out.join("slurm").exists());
    let o = run(THEORY, &args);
    assert!(o.status.success(), "{}", text(&o));
    let dir = out.join("slurm");
    let shards = String::from_utf8(read(&dir.join("shards.sbatch"))).unwrap();
    assert!(shards.contains("#SBATCH --array=1-5%2\n"), "{shards}");
    assert!(!shards.contains("--gpus-per-task"), "{shards}");
    assert!(
        shards.contains("exec /opt/theory-sim --set 'seeds=[0, 1]'"),
        "{shards}"
    );
    assert!(
        shards.contains(&format!(
            "--out {} sweep --sweep hardness --shard \"${{SLURM_ARRAY_TASK_ID}}/5\"",
            out.display()
        )),
        "{shards}"
    );
    let prep = String::from_utf8(read(&dir.join("prepare.sbatch"))).unwrap();
    assert!(
        prep.contains("sweep --sweep hardness --prepare\n"),
        "{prep}"
    );
    let merge = String::from_utf8(read(&dir.join("merge.sbatch"))).unwrap();
    assert!(
        merge.contains(&format!("exec /opt/theory-sim merge {}\n", out.display())),
        "{merge}"
    );
    assert!(dir.join("submit.sh").is_file());
    for f in [
        "prepare.sbatch",
        "shards.sbatch",
        "merge.sbatch",
        "submit.sh",
    ] {
        if let Ok(st) = Command::new("bash").arg("-n").arg(dir.join(f)).status() {
            assert!(st.success(), "{f} does not parse");
        }
    }
    // a time limit Slurm does not read is refused before anything is written (the sweep named
    // by the old name of --sweep)
    let refused = tmp.path().join("refused");
    let mut bad = THEORY_TINY.to_vec();
    bad.extend([
        "--out",
        refused.to_str().unwrap(),
        "slurm",
        "--study",
        "hardness",
    ]);
    bad.extend(["--time", "tomorrow"]);
    let o = run(THEORY, &bad);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is not a Slurm time limit"),
        "{}",
        text(&o)
    );
    assert!(!refused.exists());
}
