//! Whole-study tests on tiny synthetic data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;

use super::config::{Readout, StudyConfig};
use super::designs::load_data;
use super::plan::{PhaseName, Trainee};
use super::results::{cell_path, CellResult};
use super::runner::{prepare_dir, Phase, RunOptions, Runner};
use super::{run_study, synthetic_default};
use crate::empirical::error::EmpiricalError;
use crate::empirical::model::{Kernels, Model};
use crate::report::read_json;

/// A study that runs in seconds: 2 x 2 leaves of 16 x 16 images, a width-4 ResNet-8, 2 + 1
/// epochs, every kind of granularity, the ensemble and the rare-subclass design.
pub(crate) fn tiny() -> StudyConfig {
    synthetic_default(&[
        "seeds=[0]".into(),
        "data.synthetic={image_size = 16, patch_size = 4, subclasses = [2, 2], train_per_leaf = 16, test_easy_per_leaf = 6, test_hard_per_leaf = 6}".into(),
        "model.width=4".into(),
        "train.batch_size=16".into(),
        "train.pretrain_epochs=2".into(),
        "train.finetune_epochs=1".into(),
        "train.pretrain_lr={kind = \"cosine\", lr = 0.05}".into(),
        "train.probe.epochs=3".into(),
        "granularity=[{name = \"fine\", labels = {kind = \"level\", level = 1}}, {name = \"misaligned\", labels = {kind = \"misaligned\", groups = 2}}, {name = \"km\", labels = {kind = \"kmeans_within\", k = 2}}]".into(),
        "hard.ensemble={seeds = [50]}".into(),
        "hard.rare_subclass={rare_per_leaf = 4, granularities = [\"fine\"]}".into(),
        "embedding.source=\"ensemble\"".into(),
        "train.direct=true".into(),
    ])
    .unwrap()
}

pub(crate) fn opts(out: &Path) -> RunOptions {
    RunOptions {
        progress: false,
        ..RunOptions::new(out.to_path_buf(), Device::Cpu, Kernels::Fast)
    }
}

/// A whole study runs on tiny synthetic data: every design, condition and readout is
/// reported with errors in [0, 1], the reports and figures are written, a study resumes
/// from its saved cells with the same results, and a different config is refused without
/// --fresh.
#[test]
fn study_runs_resumes_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    let cfg = tiny();
    let s = run_study(&cfg, &opts(&out)).unwrap();
    let has = |d: &str, c: &str, r: Readout| {
        s.rows
            .iter()
            .any(|x| x.design == d && x.condition == c && x.readout == r)
    };
    assert!(has("balanced", "baseline", Readout::Scratch));
    for r in [Readout::Finetune, Readout::LinearProbe, Readout::SummedHead] {
        assert!(has("balanced", "fine", r), "{r:?}");
        assert!(has("balanced", "km", r), "{r:?}");
        assert!(has("rare_subclass", "fine", r), "{r:?}");
    }
    assert!(has("balanced", "misaligned", Readout::Finetune));
    for r in [Readout::LinearProbe, Readout::SummedHead] {
        assert!(has("balanced", "fine direct", r), "{r:?}");
    }
    assert!(!has("balanced", "fine direct", Readout::Finetune));
    for r in s.rows.iter().filter(|r| r.readout != Readout::Scratch) {
        let p = r.vs_baseline.as_ref().unwrap();
        assert_eq!(p.seeds, vec![0], "{r:?}");
        assert!((0.0..=1.0).contains(&r.train_acc.mean), "{r:?}");
    }
    assert!(!has("balanced", "misaligned", Readout::SummedHead));
    assert!(!has("rare_subclass", "km", Readout::Finetune));
    for r in &s.rows {
        for v in [r.error.mean, r.easy_error.mean, r.hard_error.mean] {
            assert!((0.0..=1.0).contains(&v), "{r:?}");
        }
    }
    assert_eq!(s.hard_subsets.len(), 2);
    for f in [
        "summary.json",
        "results.md",
        "epochs.csv",
        "granularity_balanced_finetune.svg",
        "easy_hard_balanced_finetune.svg",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let epochs = std::fs::read_to_string(out.join("epochs.csv")).unwrap();
    // ensemble 3 + balanced (baseline 3, 3 granularities x 3, 3 direct x 3) + rare (3 + 3 + 3)
    assert_eq!(epochs.lines().count(), 1 + 3 + 3 + 9 + 9 + 9, "{epochs}");
    // resume: drop a finished cell and run again
    let cell = cell_path(&out, "balanced", "fine", 0);
    let before: CellResult = read_json(&cell).unwrap();
    std::fs::remove_file(&cell).unwrap();
    let again = run_study(&cfg, &opts(&out)).unwrap();
    let after: CellResult = read_json(&cell).unwrap();
    // as JSON: NaN (a subset the design lacks) is not equal to itself
    assert_eq!(
        serde_json::to_string(&before).unwrap(),
        serde_json::to_string(&after).unwrap()
    );
    assert_eq!(
        serde_json::to_string(&s.rows).unwrap(),
        serde_json::to_string(&again.rows).unwrap()
    );
    // another config into the same folder is refused
    let mut other = cfg.clone();
    other.seeds = vec![3];
    let e = run_study(&other, &opts(&out)).unwrap_err().to_string();
    assert!(e.contains("--fresh"), "{e}");
}

/// Every file under `dir` (relative path, bytes), but the wall-clock timings.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if rel.starts_with("timings") || rel == Path::new("timings.csv") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A study stopped again and again (after every second training epoch, each checkpointed, as a
/// kill would leave it), with a truncated checkpoint and a corrupt cell file on the way, resumes
/// to the same bytes in every file as a study never stopped (wall-clock timings aside).
#[test]
fn interrupted_study_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny();
    let straight = tmp.path().join("straight");
    run_study(&cfg, &opts(&straight)).unwrap();
    let resumed = tmp.path().join("resumed");
    let stopping = RunOptions {
        stop_after_epochs: Some(2),
        ..opts(&resumed)
    };
    let mut stops = 0;
    loop {
        match run_study(&cfg, &stopping) {
            Ok(_) => break,
            Err(EmpiricalError::Interrupted { epochs: 2 }) => stops += 1,
            Err(e) => panic!("{e}"),
        }
        if stops == 3 {
            // a checkpoint cut short (as by a full disk): discarded, its epoch recomputed
            for e in std::fs::read_dir(resumed.join("checkpoints")).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "ckpt") {
                    let bytes = std::fs::read(&p).unwrap();
                    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
                }
            }
        }
        if stops == 6 {
            // a cell file that cannot be read: computed again
            let cell = std::fs::read_dir(resumed.join("cells"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            std::fs::write(cell, "{").unwrap();
        }
    }
    assert!(stops >= 8, "{stops} stops");
    let (a, b) = (files(&straight), files(&resumed));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{} differs", name.display());
    }
    assert!(a.contains_key(Path::new("summary.json")));
    assert!(resumed.join("timings.csv").exists());
}

/// A phase killed after its first epoch (its checkpoint left behind) resumes to the same bits
/// as a phase run straight through; an unreadable checkpoint is discarded and the phase runs
/// from the start.
#[test]
fn phase_resumes_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny();
    let data = load_data(&cfg, None).unwrap();
    let dir = prepare_dir(&tmp.path().join("mid"), "x", false).unwrap();
    let stop = RunOptions {
        stop_after_epochs: Some(1),
        ..opts(tmp.path())
    };
    let labels = data.train.labels_at_level(1);
    let who = Trainee {
        design: "d",
        condition: "c",
        seed: 0,
    };
    let phase = Phase {
        name: PhaseName::Pretrain,
        set: &data.train,
        labels: &labels,
        epochs: 2,
        lr: &cfg.train.pretrain_lr,
        first_epoch: 0,
    };
    let straight = Runner::new(&cfg, dir.clone(), &data, &opts(tmp.path()));
    let m1 = Model::new(cfg.model, 4, 1, &Device::Cpu).unwrap();
    let records = straight.train(&m1, &who, &phase).unwrap();
    straight.drop_checkpoints(&who, &[PhaseName::Pretrain]);
    // stopped after epoch 1, then resumed
    let m2 = Model::new(cfg.model, 4, 1, &Device::Cpu).unwrap();
    let stopping = Runner::new(&cfg, dir.clone(), &data, &stop);
    let e = stopping.train(&m2, &who, &phase).unwrap_err();
    assert!(
        matches!(e, EmpiricalError::Interrupted { epochs: 1 }),
        "{e}"
    );
    let m3 = Model::new(cfg.model, 4, 1, &Device::Cpu).unwrap();
    let again = Runner::new(&cfg, dir.clone(), &data, &opts(tmp.path()));
    assert_eq!(again.train(&m3, &who, &phase).unwrap(), records);
    assert_eq!(m1.state_vecs().unwrap(), m3.state_vecs().unwrap());
    // garbage in place of the checkpoint: discarded, trained from the start, same bits
    let ck = again.checkpoint(&who, PhaseName::Pretrain);
    std::fs::write(&ck, b"not a checkpoint").unwrap();
    let m4 = Model::new(cfg.model, 4, 1, &Device::Cpu).unwrap();
    assert_eq!(again.train(&m4, &who, &phase).unwrap(), records);
    assert_eq!(m1.state_vecs().unwrap(), m4.state_vecs().unwrap());
}

/// The data-size axis: one balanced design per size (`n4`, `n8`), each trained with equal SGD
/// steps (`train.equal_steps`: half the images, twice the epochs), the ensemble's hard images in
/// every size's design, `designs.json` with the epochs, and the gain-vs-size figure and CSV.
#[test]
fn size_axis_with_equal_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = tiny();
    cfg.hard.rare_subclass = None;
    cfg.data.train_per_leaf = 8;
    cfg.data.sizes = vec![4, 8];
    cfg.train.equal_steps = true;
    cfg.train.direct = false;
    cfg.granularities.truncate(1);
    let out = tmp.path().join("sizes");
    let s = run_study(&cfg, &opts(&out)).unwrap();
    for d in ["n4", "n8"] {
        assert!(s
            .rows
            .iter()
            .any(|r| r.design == d && r.condition == "fine"));
        assert!(s.hard_subsets.iter().any(|h| h.design == d && h.hard > 0));
    }
    assert!(!s.rows.iter().any(|r| r.design == "balanced"));
    let infos: Vec<super::results::DesignInfo> = read_json(&out.join("designs.json")).unwrap();
    let n4 = &infos[0];
    assert_eq!((n4.design.as_str(), n4.train_images), ("n4", 16));
    assert_eq!((n4.pretrain_epochs, n4.finetune_epochs), (4, 2));
    assert_eq!((infos[1].pretrain_epochs, infos[1].finetune_epochs), (2, 1));
    let epochs = std::fs::read_to_string(out.join("epochs.csv")).unwrap();
    let count = |design: &str, phase: &str| {
        epochs
            .lines()
            .filter(|l| l.starts_with(&format!("{design},")) && l.contains(&format!(",{phase},")))
            .count()
    };
    assert_eq!(count("n4", "baseline"), 6);
    assert_eq!(count("n4", "pretrain"), 4);
    assert_eq!(count("n8", "baseline"), 3);
    assert!(out.join("gain_vs_size.svg").exists());
    let csv = std::fs::read_to_string(out.join("gain_vs_size.csv")).unwrap();
    assert!(csv.lines().count() > 2, "{csv}");
}

/// On real images (an image folder) the ensemble defines the confusable leaves: the
/// `confusable_leaves` leaves with the most ensemble mistakes, most confused first; every
/// readout is scored on their test images, with a paired comparison and the subset table.
#[test]
fn confusable_leaves_on_an_image_folder() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/empirical/folder.toml"
    );
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny_folder");
    let cfg: StudyConfig = crate::config::load_file(
        Path::new(path),
        &[
            format!("data.path=\"{data}\""),
            "seeds=[0, 1]".into(),
            "hard.ensemble={seeds = [50], confusable_leaves = 2}".into(),
        ],
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("f");
    let s = run_study(&cfg, &opts(&out)).unwrap();
    let h = &s.hard_subsets[0];
    let c = h.confusable.as_ref().expect("a confusable subset");
    assert_eq!(c.leaves.len(), 2);
    assert!(c.leaves[0].1 >= c.leaves[1].1, "{c:?}");
    // the tiny folder has one test image per leaf
    assert_eq!((c.images, c.total), (2, 4));
    assert!(c.definition.contains("2 leaves (of 4)"), "{}", c.definition);
    for r in &s.rows {
        assert!((0.0..=1.0).contains(&r.confusable_error.mean), "{r:?}");
        if r.readout != Readout::Scratch {
            let p = r.confusable_vs_baseline.as_ref().unwrap();
            assert_eq!(p.seeds, vec![0, 1], "{r:?}");
        }
    }
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("confusable leaves = all test images of the 2 leaves"),
        "{md}"
    );
    assert!(md.contains("| confusable: verdict |"), "{md}");
}

/// With `train.batch_keying = "seed"` two phases of one seed draw the same batches and
/// augmentation whatever their names (so the same labels from the same start give the same
/// bits), and a phase starting later in the cell's schedule draws those of its own epochs; with
/// the default keying the phase name keys the draws.
#[test]
fn seed_keying_gives_every_arm_the_same_batches() {
    use super::config::BatchKeying;
    let tmp = tempfile::tempdir().unwrap();
    let data_cfg = tiny();
    let data = load_data(&data_cfg, None).unwrap();
    let labels = data.train.labels_at_level(1);
    let who = Trainee {
        design: "d",
        condition: "c",
        seed: 3,
    };
    let trained = |keying: BatchKeying, name: PhaseName, first_epoch: usize| {
        let mut cfg = tiny();
        cfg.train.batch_keying = keying;
        let dir = prepare_dir(
            &tmp.path().join(format!("{keying:?}{name}{first_epoch}")),
            "x",
            false,
        )
        .unwrap();
        let r = Runner::new(&cfg, dir, &data, &opts(tmp.path()));
        let phase = Phase {
            name,
            set: &data.train,
            labels: &labels,
            epochs: 1,
            lr: &cfg.train.pretrain_lr,
            first_epoch,
        };
        let m = Model::new(cfg.model, 4, 1, &Device::Cpu).unwrap();
        r.train(&m, &who, &phase).unwrap();
        m.state_vecs().unwrap()
    };
    let seed_a = trained(BatchKeying::Seed, PhaseName::Baseline, 0);
    assert_eq!(seed_a, trained(BatchKeying::Seed, PhaseName::Direct, 0));
    assert_ne!(seed_a, trained(BatchKeying::Seed, PhaseName::Direct, 5));
    let phase_a = trained(BatchKeying::Phase, PhaseName::Baseline, 0);
    assert_ne!(phase_a, trained(BatchKeying::Phase, PhaseName::Direct, 0));
}

/// The config of a folder study with every method of the validation design: a validation
/// split, the ensemble on its own images with its fine-label mirror, a training draw per seed,
/// seed-keyed batches, LP-FT, the fine-class probe and a named primary comparison.
fn validation_folder_config(extra: &[&str]) -> StudyConfig {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/empirical/folder.toml"
    );
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny_folder");
    let mut set = vec![
        format!("data.path=\"{data}\""),
        "seeds=[0, 1]".into(),
        "data.train_per_leaf=1".into(),
        "data.validation_per_leaf=1".into(),
        "data.draw_per_seed=true".into(),
        "train.batch_size=4".into(),
        "train.probe.batch_size=4".into(),
        "train.batch_keying=\"seed\"".into(),
        "train.finetune_head=\"probe\"".into(),
        "train.fine_probe=true".into(),
        "hard.ensemble={seeds = [50], disjoint = true, mirror_level = 1, confusable_leaves = 2}"
            .into(),
        "granularity=[{name = \"fine-4\", labels = {kind = \"level\", level = 1}, direct = true}, {name = \"placebo\", labels = {kind = \"random_aligned\", per_target = 2}, direct = true}]".into(),
        "analysis.primary={condition = \"fine-4 direct\", readout = \"summed_head\"}".into(),
    ];
    set.extend(extra.iter().map(|s| s.to_string()));
    crate::config::load_file(Path::new(path), &set).unwrap()
}

/// The validation design end to end on an image folder: the subsets are chosen on the
/// validation images (said in `hard_subsets.json`), `subsets.json` holds them with the test
/// targets, every readout saves predictions that re-score to its reported error, train errors
/// are measured (fine-tuning also at its start, from the probe's head), every network has its
/// fine-class probe, and `comparisons.json` holds the primary comparison and Holm-adjusted
/// p-values for every other.
#[test]
fn validation_design_end_to_end_on_an_image_folder() {
    use super::reports::comparisons::{Comparisons, COMPARISONS_FILE};
    use super::results::{DesignSubsets, HardSubset};
    let cfg = validation_folder_config(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("v");
    run_study(&cfg, &opts(&out)).unwrap();
    let hard: Vec<HardSubset> = read_json(&out.join("hard_subsets.json")).unwrap();
    assert!(hard[0].on_validation, "{hard:?}");
    assert!(
        hard[0].definition.contains("validation"),
        "{}",
        hard[0].definition
    );
    assert!(hard[0].mirror.is_some());
    let subsets: Vec<DesignSubsets> = read_json(&out.join("subsets.json")).unwrap();
    let s = &subsets[0];
    assert_eq!(s.test_targets.len(), 4);
    assert_eq!(s.subsets["confusable"].len(), 2);
    assert_eq!(s.subsets["mirror_confusable"].len(), 2);
    let (h, e) = (&s.subsets["hard"], &s.subsets["easy"]);
    assert_eq!(h.len() + e.len(), 4);
    assert!(h.iter().all(|i| !e.contains(i)));
    let cells = super::results::read_cells(&out).unwrap();
    assert_eq!(cells.len(), 2 * 5);
    for c in &cells {
        for r in &c.readouts {
            assert_eq!(r.predictions.len(), 4, "{c:?}");
            let wrong = r
                .predictions
                .iter()
                .zip(&s.test_targets)
                .filter(|(p, t)| p != t)
                .count();
            assert_eq!(wrong as f64 / 4.0, r.error, "{c:?}");
            assert!((0.0..=1.0).contains(&r.train_error), "{r:?}");
            assert_eq!(
                r.readout == Readout::Finetune,
                r.start_train_error.is_finite(),
                "{r:?}"
            );
        }
        let f = c.fine_probe.as_ref().expect("a fine-class probe");
        assert_eq!(f.per_leaf.len(), 4);
        assert!((0.0..=1.0).contains(&f.within_target_acc));
    }
    let cmp: Comparisons = read_json(&out.join(COMPARISONS_FILE)).unwrap();
    let p = cmp.primary.as_ref().expect("the primary comparison");
    assert_eq!(
        (p.condition.as_str(), p.subset.as_str()),
        ("fine-4 direct", "all")
    );
    assert_eq!(p.paired.seeds, vec![0, 1]);
    assert!(cmp.made > 0 && cmp.made <= cmp.others.len());
    for r in &cmp.others {
        assert!(
            r.p.is_nan() || (r.p_holm >= r.p && r.p_holm <= 1.0),
            "{r:?}"
        );
    }
    assert!(cmp.others.iter().any(|r| r.readout == "fine_probe"));
    // the fine arm's contrasts against the placebo, on every subset but "easy"
    assert!(cmp.contrasts.iter().any(|c| c.condition == "fine-4 direct"
        && c.placebo == "placebo direct"
        && c.subset == "confusable"));
    assert!(cmp
        .contrasts
        .iter()
        .all(|c| c.subset != "easy" && c.subset != "all"));
    let md = std::fs::read_to_string(out.join("comparisons.md")).unwrap();
    assert!(
        md.contains(&format!("{} other comparisons were made", cmp.made)),
        "{md}"
    );
    assert!(md.contains("placebo direct"), "{md}");
    // Only the primary comparison is labelled so in the side-by-side tables, also when one
    // seed leaves every comparison without a p-value.
    let labelled = |md: &str| -> usize {
        md.lines()
            .filter(|l| l.starts_with("| all |"))
            .map(|r| r.matches("(primary)").count())
            .sum()
    };
    assert_eq!(labelled(&md), 1, "{md}");
    for e in std::fs::read_dir(out.join("cells")).unwrap() {
        let path = e.unwrap().path();
        if path.to_string_lossy().ends_with("__s1.json") {
            std::fs::remove_file(path).unwrap();
        }
    }
    super::reports::write_reports(&out).unwrap();
    let md = std::fs::read_to_string(out.join("comparisons.md")).unwrap();
    assert_eq!(labelled(&md), 1, "{md}");
    assert!(md.contains("listed without a p-value"), "{md}");
}

/// The methods' settings are checked before anything runs: a training draw per seed without
/// a validation split, a disjoint ensemble without one, a mirror level not finer than the
/// target, and a primary comparison the study does not make are refused, naming the field.
#[test]
fn validation_design_settings_are_checked() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/empirical/folder.toml"
    );
    let refused = |set: &[&str], field: &str| {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let e = crate::config::load_file::<StudyConfig>(Path::new(path), &set)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{set:?}: {e}");
    };
    refused(&["data.draw_per_seed=true"], "data.draw_per_seed");
    refused(
        &["hard.ensemble={seeds = [50], disjoint = true}"],
        "hard.ensemble.disjoint",
    );
    refused(
        &["hard.ensemble={seeds = [50], mirror_level = 0}"],
        "hard.ensemble.mirror_level",
    );
    refused(
        &["analysis.primary={condition = \"fine-9\", readout = \"finetune\"}"],
        "analysis.primary.condition",
    );
    refused(
        &["analysis.primary={condition = \"fine-4\", readout = \"scratch\"}"],
        "analysis.primary.readout",
    );
    refused(
        &["analysis.primary={condition = \"fine-4\", readout = \"finetune\", subset = \"hardest\"}"],
        "analysis.primary.subset",
    );
    // a split the folder's 3 images per leaf cannot hold: named with the smallest leaf
    let cfg = validation_folder_config(&["data.validation_per_leaf=2"]);
    let e = match load_data(&cfg, None) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a split larger than the leaves was accepted"),
    };
    assert!(
        e.contains("data.validation_per_leaf") && e.contains("has 3 training images"),
        "{e}"
    );
}

/// The validation split: validation, ensemble and pool images are disjoint and together the
/// whole training set, `validation_per_leaf` and `train_per_leaf` per leaf; each seed's draw
/// (`data.draw_per_seed`) comes from the pool, differs between seeds and is the same for the
/// same seed.
#[test]
fn validation_split_is_disjoint_and_each_seed_draws_from_the_pool() {
    use std::collections::HashSet;
    let mut cfg = tiny();
    cfg.hard.rare_subclass = None;
    cfg.data.validation_per_leaf = 4;
    cfg.data.train_per_leaf = 4;
    cfg.data.draw_per_seed = true;
    cfg.hard.ensemble.as_mut().unwrap().disjoint = true;
    let data = load_data(&cfg, None).unwrap();
    let full = load_data(&tiny(), None).unwrap().train;
    let ids = |s: &crate::empirical::data::ImageSet| -> HashSet<Vec<u8>> {
        (0..s.len).map(|i| s.image(i).to_vec()).collect()
    };
    let (v, e) = (
        data.validation.as_ref().unwrap(),
        data.ensemble_train.as_ref().unwrap(),
    );
    let pool = data.train_pool.as_ref().unwrap();
    let leaves = full.hierarchy.num_leaves();
    assert_eq!((v.len, e.len), (4 * leaves, 4 * leaves));
    assert_eq!(v.len + e.len + pool.len, full.len);
    let (iv, ie, ip) = (ids(v), ids(e), ids(pool));
    assert_eq!(iv.len() + ie.len() + ip.len(), full.len, "images repeat");
    assert!(iv.is_disjoint(&ie) && iv.is_disjoint(&ip) && ie.is_disjoint(&ip));
    let designs = super::designs::designs(&cfg, &data);
    let d0 = designs[0].for_seed(&cfg, &data, 0);
    let d1 = designs[0].for_seed(&cfg, &data, 1);
    assert_eq!(d0.train.len, 4 * leaves);
    assert!(ids(&d0.train).is_subset(&ip) && ids(&d1.train).is_subset(&ip));
    assert_ne!(ids(&d0.train), ids(&d1.train));
    assert_eq!(
        ids(&d0.train),
        ids(&designs[0].for_seed(&cfg, &data, 0).train)
    );
    assert_eq!(
        (d0.labels_key(), d1.draw_seed),
        ("balanced_s0".to_string(), Some(1))
    );
}

/// LP-FT starts from the probe: a network whose head is replaced by the linear probe of its
/// frozen features ([`crate::empirical::probe::LinearProbe::as_linear`]) gives the probe's
/// logits, up to rounding.
#[test]
fn a_head_from_the_probe_gives_the_probe_logits() {
    use crate::empirical::probe::LinearProbe;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny();
    let data = load_data(&cfg, None).unwrap();
    let dir = prepare_dir(&tmp.path().join("lp"), "x", false).unwrap();
    let r = Runner::new(&cfg, dir, &data, &opts(tmp.path()));
    let mut model = Model::new(cfg.model, 4, 7, &Device::Cpu).unwrap();
    let targets = data.train.labels_at_level(0);
    let train_f = r.features(&model, &data.train).unwrap();
    let probe = LinearProbe::train(&train_f, &targets, 2, &cfg.train.probe, 11).unwrap();
    let want = probe
        .logits(&r.features(&model, &data.test).unwrap())
        .unwrap();
    let (w, b) = probe.as_linear();
    model.replace_head_with(2, w, b).unwrap();
    let got = r.logits(&model, &data.test).unwrap();
    assert_eq!(got.dim(), want.dim());
    let worst = got
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "largest relative difference {worst}");
}

/// A granularity with `pretrained = false` runs only its direct arm, and one with neither arm
/// is refused naming the field.
#[test]
fn a_granularity_can_run_only_its_direct_arm() {
    let cfg = validation_folder_config(&[
        "granularity=[{name = \"fine-4\", labels = {kind = \"level\", level = 1}, direct = true, pretrained = false}]",
    ]);
    let conditions: Vec<String> = cfg.conditions().into_iter().map(|c| c.0).collect();
    assert_eq!(conditions, ["fine-4 direct"]);
    let plan = super::plan::cells_by_design(&cfg);
    assert_eq!(plan[0].1.len(), 2, "the baseline and the direct arm");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/empirical/folder.toml"
    );
    let e = crate::config::load_file::<StudyConfig>(
        Path::new(path),
        &["granularity=[{name = \"x\", labels = {kind = \"level\", level = 1}, pretrained = false}]".to_string()],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("granularity[0].pretrained"), "{e}");
}
