//! Whole-study tests on tiny synthetic data.

use std::path::Path;

use candle_core::Device;

use super::config::{Readout, StudyConfig};
use super::designs::load_data;
use super::results::{cell_path, CellResult};
use super::runner::{prepare_dir, Phase, RunOptions, Runner, Trainee};
use super::{run_study, synthetic_default};
use crate::empirical::checkpoint::save_checkpoint;
use crate::empirical::model::{Kernels, Model};
use crate::empirical::optim::{Schedule, Sgd};
use crate::empirical::train::{train_epoch, EpochConfig};
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
    ])
    .unwrap()
}

pub(crate) fn opts(out: &Path) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        data: None,
        fresh: false,
        device: Device::Cpu,
        progress: false,
        kernels: Kernels::Fast,
    }
}

fn strip(c: CellResult) -> CellResult {
    c.without_timings()
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
    // ensemble 3 + balanced (baseline 3, 3 granularities x 3) + rare (3 + 3) epochs
    assert_eq!(epochs.lines().count(), 1 + 3 + 3 + 9 + 6, "{epochs}");
    // resume: drop a finished cell and run again
    let cell = cell_path(&out, "balanced", "fine", 0);
    let before: CellResult = read_json(&cell).unwrap();
    std::fs::remove_file(&cell).unwrap();
    let again = run_study(&cfg, &opts(&out)).unwrap();
    let after: CellResult = read_json(&cell).unwrap();
    assert_eq!(strip(before), strip(after));
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

/// A phase killed after its first epoch (its checkpoint left behind) resumes to the same bits
/// as a phase run straight through.
#[test]
fn phase_resumes_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny();
    let data = load_data(&cfg, None).unwrap();
    let dir = prepare_dir(&tmp.path().join("mid"), "x", false).unwrap();
    let runner = Runner::new(&cfg, dir, &data, &opts(tmp.path()));
    let labels = data.train.labels_at_level(1);
    let who = Trainee {
        design: "d",
        condition: "c",
        seed: 0,
    };
    let phase = Phase {
        name: "p",
        set: &data.train,
        labels: &labels,
        epochs: 2,
        lr: &cfg.train.pretrain_lr,
    };
    let m1 = Model::new(cfg.model, 4, 1, &Device::Cpu).unwrap();
    let straight = runner.train(&m1, &who, &phase).unwrap();
    // interrupted after epoch 1: train 1 epoch of the same 2-epoch schedule by hand
    let ck = runner.checkpoint(&who, "p");
    let m2 = Model::new(cfg.model, 4, 1, &Device::Cpu).unwrap();
    let ecfg = EpochConfig {
        batch_size: cfg.train.batch_size,
        augment: cfg.train.augment,
        mean: data.mean_std.0,
        std: data.mean_std.1,
        label_smoothing: cfg.train.label_smoothing,
        drop_last: false,
    };
    let mut sgd = Sgd::new(m2.trainable_params(), cfg.train.sgd).unwrap();
    let sched = Schedule::new(
        cfg.train.pretrain_lr.clone(),
        2,
        ecfg.steps_per_epoch(data.train.len),
    )
    .unwrap();
    let mut rng = crate::seed::rng(0, &["p"]);
    train_epoch(
        &m2,
        &mut sgd,
        &sched,
        &data.train,
        &labels,
        &ecfg,
        0,
        &mut rng,
        &mut |_| {},
    )
    .unwrap();
    let first = serde_json::to_value(&straight[..1]).unwrap();
    save_checkpoint(&ck, &m2, &sgd, 1, &rng, first).unwrap();
    let m3 = Model::new(cfg.model, 4, 1, &Device::Cpu).unwrap();
    let resumed = runner.train(&m3, &who, &phase).unwrap();
    assert_eq!(m1.state_vecs().unwrap(), m3.state_vecs().unwrap());
    assert_eq!(straight.len(), resumed.len());
    assert_eq!(straight[1].loss, resumed[1].loss);
}
