//! Whole empirical studies: the fine-to-coarse transfer protocol run over every pretraining
//! granularity of a [`StudyConfig`], several seeds, and the hard-sample designs, with resumable
//! results, a JSON summary, a Markdown table and SVG figures.
//!
//! # Protocol
//! For each *design* (the training set and its easy/hard test split), each seed and each
//! *condition*:
//! * `baseline`: the network trained on the target labels from scratch for `pretrain_epochs +
//!   finetune_epochs` epochs with the pretraining schedule (readout `scratch`);
//! * each granularity: pretrain on its labels for `pretrain_epochs`, then read out on the target:
//!   `mapped_head` (sum of the logits of the classes nested in each target; aligned labels only),
//!   `linear_probe` (a linear classifier on the frozen pretrained features) and `finetune` (a new
//!   head, the whole network trained on the target labels for `finetune_epochs`).
//!
//! # Designs and hard test images
//! * `balanced`: the training set as configured. Its hard test images are the synthetic data's
//!   hard images, or, on real data, the test images that an ensemble of target-only networks
//!   (trained with seeds used nowhere else, `[hard.ensemble]`) misclassifies.
//! * `rare_subclass` (`[hard.rare_subclass]`): inside each target class one leaf keeps all its
//!   training images and the others keep `rare_per_leaf`; hard test images are the rare leaves'.
//!
//! # Files (in the study folder)
//! `config.toml` (the resolved config), `cells/*.json` (one per design, condition and seed,
//! written when it finishes: a killed study resumes from them), `checkpoints/` (per-epoch
//! checkpoints of the running cell: model, optimizer, epoch, generator; deleted when the cell
//! finishes), `ensemble/` (the ensemble's test probabilities and weights), `epochs.csv` (every
//! training epoch), `summary.json`, `results.md` and the figures (see [`figures`]).

pub mod config;
pub mod figures;
pub mod labels;
pub mod single;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use self::config::{DataSource, EmbeddingSource, LabelSpec, Readout, StudyConfig, SYNTHETIC_TOML};
use self::labels::{build_labels, PretrainLabels};
use super::checkpoint::{load_checkpoint, save_checkpoint};
use super::data::sources::load_indexed;
use super::data::synthetic::generate;
use super::data::{load_cifar100, ImageSet};
use super::error::EmpiricalError;
use super::model::{Kernels, Model};
use super::optim::{LrSchedule, Schedule, Sgd};
use super::probe::LinearProbe;
use super::train::{evaluate, extract_features, train_epoch, EpochConfig, Matrix};
use crate::report::{file_safe, read_json, MarkdownTable, MeanSd, Progress, ResultsDir};

/// The environment variable naming the CIFAR-100 folder when the config leaves it empty.
pub const CIFAR100_ENV: &str = "GRANULARITY_CIFAR100_DIR";

/// Batch size of evaluation passes (results do not depend on it).
const EVAL_BATCH: usize = 256;

/// One training epoch, as written to `epochs.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Design.
    pub design: String,
    /// Condition.
    pub condition: String,
    /// Seed.
    pub seed: u64,
    /// "baseline", "pretrain", "finetune" or "ensemble".
    pub phase: String,
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy on the phase's labels (augmented images, during the epoch).
    pub train_acc: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_sec: f64,
}

/// Target error of one readout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadoutError {
    /// The readout.
    pub readout: Readout,
    /// Top-1 error on all test images.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub error: f64,
    /// Top-1 error on the easy test images (NaN if there are none).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub easy_error: f64,
    /// Top-1 error on the hard test images (NaN if there are none).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub hard_error: f64,
}

/// The result of one design, condition and seed (a file in `cells/`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// Design ("balanced" or "rare_subclass").
    pub design: String,
    /// Condition ("baseline" or a granularity name).
    pub condition: String,
    /// Family of the condition (one line per family in the figures).
    pub family: String,
    /// Seed.
    pub seed: u64,
    /// Pretraining classes (the target classes for the baseline).
    pub classes: usize,
    /// Non-empty pretraining classes.
    pub used_classes: usize,
    /// Every class nested inside one target class.
    pub aligned: bool,
    /// Fraction of training images whose class's majority target is their own.
    pub purity: f64,
    /// The readouts' errors.
    pub readouts: Vec<ReadoutError>,
    /// Every training epoch of the cell.
    pub epochs: Vec<EpochRecord>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Options of a run that are not part of the study's config.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Results folder.
    pub out: PathBuf,
    /// Overrides the data folder of the config.
    pub data: Option<PathBuf>,
    /// Discard saved results of a different config in `out`.
    pub fresh: bool,
    /// Where the networks run.
    pub device: Device,
    /// Show progress bars.
    pub progress: bool,
    /// Which layer implementation trains the networks (results agree to rounding; `stock` is
    /// candle's own operations, for checking the fast kernels end to end).
    pub kernels: Kernels,
}

/// A design: the training set and which test images are hard.
pub struct Design {
    /// "balanced" or "rare_subclass".
    pub name: String,
    /// The training images.
    pub train: ImageSet,
    /// Whether each test image is hard (None: no hard subset in this design).
    pub test_is_hard: Option<Vec<bool>>,
    /// The conditions run in this design (granularity names; the baseline is implicit).
    pub granularities: Vec<String>,
}

/// Loaded data of a study.
pub struct StudyData {
    /// Balanced training set (after subsetting).
    pub train: ImageSet,
    /// Test set.
    pub test: ImageSet,
    /// Hard flags of the synthetic data's test images.
    pub synthetic_hard: Option<Vec<bool>>,
    /// Per-channel mean and std of the balanced training set.
    pub mean_std: ([f32; 3], [f32; 3]),
}

fn keep_per_class(by: &[Vec<usize>], cap: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut keep = Vec::new();
    for idx in by {
        let mut idx = idx.clone();
        if cap > 0 && idx.len() > cap {
            idx.shuffle(rng);
            idx.truncate(cap);
        }
        keep.extend(idx);
    }
    keep.sort_unstable();
    keep
}

/// Loads the study's images (`data_dir` overrides the config's folder) and applies the subsets.
pub fn load_data(cfg: &StudyConfig, data_dir: Option<&Path>) -> Result<StudyData, EmpiricalError> {
    let folder = |path: &str, what: &str| -> Result<PathBuf, EmpiricalError> {
        if let Some(d) = data_dir {
            return Ok(d.to_path_buf());
        }
        if !path.is_empty() {
            return Ok(PathBuf::from(path));
        }
        if what == "cifar100" {
            if let Some(d) = crate::empirical::data::cifar100_dir_from_env(CIFAR100_ENV) {
                return Ok(d);
            }
        }
        Err(EmpiricalError::invalid(
            "data.path",
            format!(
                "no {what} folder: set data.path in the config, pass --data DIR{}",
                if what == "cifar100" {
                    format!(", or set {CIFAR100_ENV}")
                } else {
                    String::new()
                }
            ),
        ))
    };
    let path = cfg.data.path.as_str();
    let (train, test, synthetic_hard) = match cfg.data.source {
        DataSource::Cifar100 => {
            let s = load_cifar100(&folder(path, "cifar100")?)?;
            (s.train, s.test, None)
        }
        DataSource::Folder | DataSource::Inat2021 | DataSource::Wordnet | DataSource::Breeds => {
            let s = load_indexed(&cfg.data, &folder(path, "dataset")?)?;
            (s.train, s.test, None)
        }
        DataSource::Synthetic => {
            let d = generate(&cfg.data.synthetic)?;
            let test = d.test();
            (d.train, test, Some(d.test_is_hard))
        }
    };
    let h = &train.hierarchy;
    if cfg.data.target_level >= h.num_levels() {
        return Err(EmpiricalError::invalid(
            "data.target_level",
            format!(
                "level {} does not exist (the hierarchy has {} levels)",
                cfg.data.target_level,
                h.num_levels()
            ),
        ));
    }
    let leaf = h.leaf_level();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.data.subset_seed);
    let train = if cfg.data.train_per_leaf > 0 {
        train.subset(&keep_per_class(
            &train.indices_by_class(leaf),
            cfg.data.train_per_leaf,
            &mut rng,
        ))
    } else {
        train
    };
    let (test, synthetic_hard) = if cfg.data.test_per_leaf > 0 {
        let keep = keep_per_class(
            &test.indices_by_class(leaf),
            cfg.data.test_per_leaf,
            &mut rng,
        );
        let hard = synthetic_hard.map(|h| keep.iter().map(|&i| h[i]).collect());
        (test.subset(&keep), hard)
    } else {
        (test, synthetic_hard)
    };
    let mean_std = train.rgb_mean_std().ok_or_else(|| {
        EmpiricalError::invalid("data", "the training images need 3 channels (RGB)")
    })?;
    Ok(StudyData {
        train,
        test,
        synthetic_hard,
        mean_std,
    })
}

/// The rare-subclass training set: inside each target class one leaf (chosen with `seed`)
/// keeps all its images, the others `rare_per_leaf`. Returns the set and, per leaf, whether it
/// is rare.
pub fn rare_subclass_set(
    train: &ImageSet,
    target_level: usize,
    rare_per_leaf: usize,
    seed: u64,
) -> (ImageSet, Vec<bool>) {
    let h = &train.hierarchy;
    let leaf = h.leaf_level();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7a7e);
    let mut rare = vec![true; h.num_leaves()];
    for t in 0..h.num_classes(target_level) {
        let leaves = h.leaves_under(target_level, t);
        if let Some(&d) = leaves.choose(&mut rng) {
            rare[d] = false;
        }
    }
    let by = train.indices_by_class(leaf);
    let mut keep = Vec::new();
    for (l, idx) in by.iter().enumerate() {
        let mut idx = idx.clone();
        if rare[l] && idx.len() > rare_per_leaf {
            idx.shuffle(&mut rng);
            idx.truncate(rare_per_leaf);
        }
        keep.extend(idx);
    }
    keep.sort_unstable();
    (train.subset(&keep), rare)
}

/// Shared state of a running study.
struct Runner<'a> {
    cfg: &'a StudyConfig,
    dir: ResultsDir,
    device: Device,
    test: &'a ImageSet,
    test_targets: Vec<usize>,
    num_targets: usize,
    mean_std: ([f32; 3], [f32; 3]),
    bar: Progress,
    kernels: Kernels,
}

/// The progress of a study or a single run (over training images, with an ETA); silent when
/// `visible` is false.
fn progress_bar(visible: bool) -> Progress {
    Progress::new(0, "images", visible)
}

/// Deterministic sub-seed for one use of a seed.
fn derive(seed: u64, salt: &str) -> u64 {
    let mut z = seed ^ 0x9E37_79B9_7F4A_7C15;
    for b in salt.bytes() {
        z = (z ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    z ^= z >> 31;
    z.wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

impl Runner<'_> {
    fn model(&self, classes: usize, seed: u64) -> Result<Model, EmpiricalError> {
        Model::new_with(self.cfg.model, classes, seed, &self.device, self.kernels)
    }

    fn epoch_config(&self) -> EpochConfig {
        EpochConfig {
            batch_size: self.cfg.train.batch_size,
            augment: self.cfg.train.augment,
            mean: self.mean_std.0,
            std: self.mean_std.1,
            label_smoothing: self.cfg.train.label_smoothing,
            drop_last: false,
        }
    }

    /// Trains `model` on `labels` for `epochs` epochs, checkpointing after every epoch to
    /// `ckpt` and resuming from it if it exists. Returns the epoch records (including those
    /// of epochs run before a resume).
    #[allow(clippy::too_many_arguments)]
    fn train_phase(
        &self,
        model: &Model,
        set: &ImageSet,
        labels: &[usize],
        epochs: usize,
        lr: &LrSchedule,
        seed: u64,
        ckpt: &Path,
        tag: (&str, &str, u64, &str),
    ) -> Result<Vec<EpochRecord>, EmpiricalError> {
        let ecfg = self.epoch_config();
        let mut sgd = Sgd::new(model.trainable_params(), self.cfg.train.sgd)?;
        let schedule = Schedule::new(lr.clone(), epochs, ecfg.steps_per_epoch(set.len))?;
        let (mut start, mut rng, mut records) = (0, ChaCha8Rng::seed_from_u64(seed), Vec::new());
        if ckpt.exists() {
            let r = load_checkpoint(ckpt, model, &mut sgd)?;
            start = r.epochs_done;
            rng = r.rng;
            records = serde_json::from_value(r.meta.extra)
                .map_err(|e| EmpiricalError::checkpoint(ckpt, format!("bad epoch records: {e}")))?;
            self.bar.inc((start * set.len) as u64);
        }
        let (design, condition, seed_no, phase) = tag;
        for e in start..epochs {
            let bar = &self.bar;
            let mut last = 0;
            let stats = train_epoch(
                model,
                &mut sgd,
                &schedule,
                set,
                labels,
                &ecfg,
                e,
                &mut rng,
                &mut |s| {
                    bar.inc((s.images - last) as u64);
                    last = s.images;
                },
            )?;
            bar.milestone(format!(
                "{design}/{condition} s{seed_no} {phase} {}/{epochs} loss {:.3} acc {:.3} {:.0} img/s",
                e + 1,
                stats.loss,
                stats.acc,
                stats.images_per_sec
            ));
            records.push(EpochRecord {
                design: design.into(),
                condition: condition.into(),
                seed: seed_no,
                phase: phase.into(),
                epoch: e,
                loss: stats.loss,
                train_acc: stats.acc,
                lr: stats.last_lr,
                seconds: stats.seconds,
                images_per_sec: stats.images_per_sec,
            });
            let extra = serde_json::to_value(&records)
                .map_err(|e| EmpiricalError::invalid("checkpoint", e.to_string()))?;
            save_checkpoint(ckpt, model, &sgd, e + 1, &rng, extra)?;
        }
        Ok(records)
    }

    fn readout(
        &self,
        readout: Readout,
        logits: &Matrix,
        hard: Option<&[bool]>,
    ) -> Result<ReadoutError, EmpiricalError> {
        let pred = logits.argmax();
        let rate = |keep: &dyn Fn(usize) -> bool| {
            let idx: Vec<usize> = (0..pred.len()).filter(|&i| keep(i)).collect();
            if idx.is_empty() {
                return f64::NAN;
            }
            idx.iter()
                .filter(|&&i| pred[i] != self.test_targets[i])
                .count() as f64
                / idx.len() as f64
        };
        let (easy, hardv) = match hard {
            Some(h) => (rate(&|i| !h[i]), rate(&|i| h[i])),
            None => (f64::NAN, f64::NAN),
        };
        Ok(ReadoutError {
            readout,
            error: rate(&|_| true),
            easy_error: easy,
            hard_error: hardv,
        })
    }

    fn ckpt(&self, cell: &str, phase: &str) -> Result<PathBuf, EmpiricalError> {
        let d = self.dir.path("checkpoints");
        std::fs::create_dir_all(&d).map_err(|e| {
            EmpiricalError::invalid("results", format!("cannot create {}: {e}", d.display()))
        })?;
        Ok(d.join(format!("{cell}.{phase}.ckpt")))
    }

    /// Runs one cell (design, condition, seed).
    fn run_cell(
        &self,
        design: &Design,
        condition: Option<(&str, &LabelSpec)>,
        labels: Option<&PretrainLabels>,
        seed: u64,
    ) -> Result<CellResult, EmpiricalError> {
        let t0 = Instant::now();
        let tcfg = &self.cfg.train;
        let hard = design.test_is_hard.as_deref();
        let name = condition.map_or("baseline", |c| c.0);
        let cell = format!("{}__{}__s{seed}", design.name, file_safe(name));
        let target_train = design.train.labels_at_level(self.cfg.data.target_level);
        let (mean, std) = self.mean_std;
        let mut readouts = Vec::new();
        let mut epochs = Vec::new();
        let mut ckpts = Vec::new();
        let (classes, used, aligned, purity, family) = match (condition, labels) {
            (Some((_, spec)), Some(l)) => {
                let model = self.model(l.num_classes, derive(seed, "init"))?;
                let ck = self.ckpt(&cell, "pretrain")?;
                epochs.extend(self.train_phase(
                    &model,
                    &design.train,
                    &l.labels,
                    tcfg.pretrain_epochs,
                    &tcfg.pretrain_lr,
                    derive(seed, "pretrain"),
                    &ck,
                    (&design.name, name, seed, "pretrain"),
                )?);
                ckpts.push(ck);
                if tcfg.readouts.contains(&Readout::SummedHead) {
                    let logits = evaluate(&model, self.test, mean, std, EVAL_BATCH)?;
                    if let Some(m) = l.mapped_logits(&logits, self.num_targets)? {
                        readouts.push(self.readout(Readout::SummedHead, &m, hard)?);
                    }
                }
                if tcfg.readouts.contains(&Readout::LinearProbe) {
                    self.bar
                        .set_message(format!("{}/{name} s{seed} linear probe", design.name));
                    let ftr = extract_features(&model, &design.train, mean, std, EVAL_BATCH)?;
                    let fte = extract_features(&model, self.test, mean, std, EVAL_BATCH)?;
                    let p = LinearProbe::train(
                        &ftr,
                        &target_train,
                        self.num_targets,
                        &tcfg.probe,
                        derive(seed, "probe"),
                    )?;
                    readouts.push(self.readout(Readout::LinearProbe, &p.logits(&fte)?, hard)?);
                }
                if tcfg.readouts.contains(&Readout::Finetune) {
                    let mut model = model;
                    model.replace_head(self.num_targets, derive(seed, "head"))?;
                    let ck = self.ckpt(&cell, "finetune")?;
                    epochs.extend(self.train_phase(
                        &model,
                        &design.train,
                        &target_train,
                        tcfg.finetune_epochs,
                        &tcfg.finetune_lr,
                        derive(seed, "finetune"),
                        &ck,
                        (&design.name, name, seed, "finetune"),
                    )?);
                    ckpts.push(ck);
                    let logits = evaluate(&model, self.test, mean, std, EVAL_BATCH)?;
                    readouts.push(self.readout(Readout::Finetune, &logits, hard)?);
                }
                let used = l.target_of_class.iter().filter(|t| t.is_some()).count();
                let used = if l.aligned {
                    used
                } else {
                    let mut seen = vec![false; l.num_classes];
                    l.labels.iter().for_each(|&c| seen[c] = true);
                    seen.iter().filter(|&&s| s).count()
                };
                (
                    l.num_classes,
                    used,
                    l.aligned,
                    l.purity,
                    spec.family(self.cfg.data.target_level).to_string(),
                )
            }
            _ => {
                let model = self.model(self.num_targets, derive(seed, "init"))?;
                let ck = self.ckpt(&cell, "baseline")?;
                epochs.extend(self.train_phase(
                    &model,
                    &design.train,
                    &target_train,
                    tcfg.pretrain_epochs + tcfg.finetune_epochs,
                    &tcfg.pretrain_lr,
                    derive(seed, "baseline"),
                    &ck,
                    (&design.name, name, seed, "baseline"),
                )?);
                ckpts.push(ck);
                let logits = evaluate(&model, self.test, mean, std, EVAL_BATCH)?;
                readouts.push(self.readout(Readout::Scratch, &logits, hard)?);
                (
                    self.num_targets,
                    self.num_targets,
                    true,
                    1.0,
                    "baseline".into(),
                )
            }
        };
        let result = CellResult {
            design: design.name.clone(),
            condition: name.to_string(),
            family,
            seed,
            classes,
            used_classes: used,
            aligned,
            purity,
            readouts,
            epochs,
            seconds: t0.elapsed().as_secs_f64(),
        };
        self.dir
            .write_json(&format!("cells/{cell}.json"), &result)?;
        for c in ckpts {
            let _ = std::fs::remove_file(c);
        }
        Ok(result)
    }
}

fn cell_path(dir: &ResultsDir, design: &str, condition: &str, seed: u64) -> PathBuf {
    dir.path(&format!(
        "cells/{design}__{}__s{seed}.json",
        file_safe(condition)
    ))
}

/// The ensemble's output: per member, the test-set softmax probabilities.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct MemberOutput {
    seed: u64,
    probs: Matrix,
    epochs: Vec<EpochRecord>,
}

fn softmax_rows(m: &Matrix) -> Matrix {
    let mut data = Vec::with_capacity(m.data.len());
    for i in 0..m.rows {
        let r = m.row(i);
        let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f64> = r.iter().map(|&v| f64::from(v - max).exp()).collect();
        let z: f64 = e.iter().sum();
        data.extend(e.iter().map(|v| (v / z) as f32));
    }
    Matrix {
        rows: m.rows,
        cols: m.cols,
        data,
    }
}

/// Everything a finished (or partly finished) study produced, as read back from its folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StudySummary {
    /// Study name.
    pub name: String,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// One row per design, condition and readout.
    pub rows: Vec<SummaryRow>,
    /// Hard test images per design (how they were defined and how many).
    pub hard_subsets: Vec<HardSubset>,
}

/// How a design's hard test images were defined.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HardSubset {
    /// Design.
    pub design: String,
    /// Definition.
    pub definition: String,
    /// Hard test images.
    pub hard: usize,
    /// All test images.
    pub total: usize,
}

/// Mean +- sd over seeds of one design, condition and readout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Design.
    pub design: String,
    /// Condition.
    pub condition: String,
    /// Family.
    pub family: String,
    /// Pretraining classes.
    pub classes: usize,
    /// Aligned with the target.
    pub aligned: bool,
    /// Label purity (see [`CellResult::purity`]).
    pub purity: f64,
    /// Readout.
    pub readout: Readout,
    /// Seeds with results.
    pub seeds: Vec<u64>,
    /// Error on all test images.
    pub error: MeanSd,
    /// Error on the easy test images.
    pub easy_error: MeanSd,
    /// Error on the hard test images.
    pub hard_error: MeanSd,
    /// Relative error reduction against the design's baseline, `(base - err) / base`, from the
    /// seed means (the paper's metric); positive = better than the baseline.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub rel_error_reduction: f64,
    /// The same on the hard test images.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub hard_rel_error_reduction: f64,
}

/// Aggregates cell results into summary rows (mean +- sd over seeds).
pub fn summarize(cells: &[CellResult]) -> Vec<SummaryRow> {
    let mut groups: BTreeMap<(String, String, Readout), Vec<&CellResult>> = BTreeMap::new();
    let mut order: Vec<(String, String, Readout)> = Vec::new();
    for c in cells {
        for r in &c.readouts {
            let key = (c.design.clone(), c.condition.clone(), r.readout);
            if !groups.contains_key(&key) {
                order.push(key.clone());
            }
            groups.entry(key).or_default().push(c);
        }
    }
    let stat = |cs: &[&CellResult], ro: Readout, f: &dyn Fn(&ReadoutError) -> f64| {
        let v: Vec<f64> = cs
            .iter()
            .filter_map(|c| c.readouts.iter().find(|r| r.readout == ro).map(f))
            .collect();
        MeanSd::of(&v)
    };
    let mut rows: Vec<SummaryRow> = order
        .iter()
        .map(|key| {
            let cs = &groups[key];
            let c0 = cs[0];
            SummaryRow {
                design: key.0.clone(),
                condition: key.1.clone(),
                family: c0.family.clone(),
                classes: c0.classes,
                aligned: c0.aligned,
                purity: c0.purity,
                readout: key.2,
                seeds: cs.iter().map(|c| c.seed).collect(),
                error: stat(cs, key.2, &|r| r.error),
                easy_error: stat(cs, key.2, &|r| r.easy_error),
                hard_error: stat(cs, key.2, &|r| r.hard_error),
                rel_error_reduction: f64::NAN,
                hard_rel_error_reduction: f64::NAN,
            }
        })
        .collect();
    let bases: Vec<(String, f64, f64)> = rows
        .iter()
        .filter(|r| r.readout == Readout::Scratch)
        .map(|r| (r.design.clone(), r.error.mean, r.hard_error.mean))
        .collect();
    for r in &mut rows {
        if let Some((_, b, bh)) = bases.iter().find(|(d, _, _)| *d == r.design) {
            r.rel_error_reduction = (b - r.error.mean) / b;
            r.hard_rel_error_reduction = (bh - r.hard_error.mean) / bh;
        }
    }
    rows
}

/// The Markdown table of a summary.
pub fn summary_table(rows: &[SummaryRow]) -> MarkdownTable {
    let mut t = MarkdownTable::new([
        "design",
        "pretraining",
        "classes",
        "aligned",
        "readout",
        "error (mean ± sd)",
        "rel. error reduction",
        "easy error",
        "hard error",
        "hard rel. reduction",
        "seeds",
    ]);
    let pct = |v: f64| {
        if v.is_nan() {
            "–".to_string()
        } else {
            format!("{:+.1}%", 100.0 * v)
        }
    };
    let ms = |m: &MeanSd| {
        if m.mean.is_nan() {
            "–".to_string()
        } else {
            format!("{:.3} ± {:.3}", m.mean, m.sd)
        }
    };
    for r in rows {
        t.row([
            r.design.clone(),
            r.condition.clone(),
            r.classes.to_string(),
            if r.aligned {
                "yes".into()
            } else {
                format!("no (purity {:.2})", r.purity)
            },
            r.readout.name().to_string(),
            ms(&r.error),
            if r.readout == Readout::Scratch {
                "(baseline)".into()
            } else {
                pct(r.rel_error_reduction)
            },
            ms(&r.easy_error),
            ms(&r.hard_error),
            if r.readout == Readout::Scratch {
                "(baseline)".into()
            } else {
                pct(r.hard_rel_error_reduction)
            },
            r.seeds.len().to_string(),
        ]);
    }
    t
}

/// Reads every cell result of a study folder (sorted by file name).
pub fn read_cells(dir: &Path) -> Result<Vec<CellResult>, EmpiricalError> {
    let cells = dir.join("cells");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&cells) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) => {
            return Err(EmpiricalError::invalid(
                "results",
                format!("cannot read {}: {e}", cells.display()),
            ))
        }
    };
    files.sort();
    files
        .iter()
        .map(|p| read_json(p).map_err(EmpiricalError::from))
        .collect()
}

/// Writes `epochs.csv`, `summary.json`, `results.md` and the figures of the study in `dir` from
/// its saved cells. Returns the summary.
pub fn write_reports(dir: &Path) -> Result<StudySummary, EmpiricalError> {
    let rd = ResultsDir::create(dir)?;
    let cfg: StudyConfig = crate::config::load_file(&rd.path("config.toml"), &[])
        .map_err(|e| EmpiricalError::invalid("config.toml", e.to_string()))?;
    let mut cells = read_cells(dir)?;
    // order: designs as run, baseline first, then the config's granularity order, then seed
    let pos = |c: &CellResult| {
        let d = usize::from(c.design != "balanced");
        let g = if c.condition == "baseline" {
            0
        } else {
            1 + cfg
                .granularities
                .iter()
                .position(|g| g.name == c.condition)
                .unwrap_or(usize::MAX - 1)
        };
        (d, g, c.seed)
    };
    cells.sort_by_key(pos);
    let mut epochs: Vec<EpochRecord> = Vec::new();
    let hard_subsets: Vec<HardSubset> = rd
        .path("hard_subsets.json")
        .exists()
        .then(|| read_json(&rd.path("hard_subsets.json")))
        .transpose()?
        .unwrap_or_default();
    if let Ok(members) = read_json::<Vec<MemberOutput>>(&rd.path("ensemble/members.json")) {
        for m in members {
            epochs.extend(m.epochs);
        }
    }
    for c in &cells {
        epochs.extend(c.epochs.iter().cloned());
    }
    rd.write_csv("epochs.csv", &epochs)?;
    let rows = summarize(&cells);
    let summary = StudySummary {
        name: cfg.name.clone(),
        seeds: cfg.seeds.clone(),
        rows,
        hard_subsets,
    };
    rd.write_json("summary.json", &summary)?;
    let mut md = format!(
        "# Study `{}`\n\nTarget: level {} of the hierarchy. Errors are top-1 on the test set, mean ± sd over seeds; relative error reduction is against the design's from-scratch baseline (positive = better).\n\n",
        cfg.name, cfg.data.target_level
    );
    for h in &summary.hard_subsets {
        md.push_str(&format!(
            "* design `{}`: hard test images = {} ({} of {})\n",
            h.design, h.definition, h.hard, h.total
        ));
    }
    md.push('\n');
    md.push_str(&summary_table(&summary.rows).to_string());
    rd.write_text("results.md", &md)?;
    figures::write_figures(&rd, &summary)?;
    Ok(summary)
}

/// Runs (or resumes) the study `cfg` into `opts.out` and writes its reports.
pub fn run_study(cfg: &StudyConfig, opts: &RunOptions) -> Result<StudySummary, EmpiricalError> {
    let mut resolved = crate::config::to_toml(cfg)
        .map_err(|e| EmpiricalError::invalid("config", e.to_string()))?;
    if opts.kernels != Kernels::Fast {
        // results of other kernels agree only to rounding: never mix them in one folder
        resolved.push_str(&format!(
            "\n# trained with --kernels {}\n",
            opts.kernels.name()
        ));
    }
    let dir = prepare_dir(&opts.out, &resolved, opts.fresh)?;
    let data = load_data(cfg, opts.data.as_deref())?;
    let tl = cfg.data.target_level;
    let num_targets = data.train.hierarchy.num_classes(tl);
    let test_targets = data.test.labels_at_level(tl);
    let bar = progress_bar(opts.progress);
    let runner = Runner {
        cfg,
        dir,
        device: opts.device.clone(),
        test: &data.test,
        test_targets,
        num_targets,
        mean_std: data.mean_std,
        bar,
        kernels: opts.kernels,
    };
    let n = data.train.len;
    let ep_total = cfg.train.pretrain_epochs + cfg.train.finetune_epochs;
    let ep_pre = cfg.train.pretrain_epochs
        + if cfg.train.readouts.contains(&Readout::Finetune) {
            cfg.train.finetune_epochs
        } else {
            0
        };
    // --- designs
    let mut designs = vec![Design {
        name: "balanced".into(),
        train: data.train.clone(),
        test_is_hard: data.synthetic_hard.clone(),
        granularities: cfg.granularities.iter().map(|g| g.name.clone()).collect(),
    }];
    let rare = cfg.hard.rare_subclass.as_ref().map(|r| {
        let (set, rare_leaf) =
            rare_subclass_set(&data.train, tl, r.rare_per_leaf, cfg.data.subset_seed);
        let hard = data.test.leaves.iter().map(|&l| rare_leaf[l]).collect();
        Design {
            name: "rare_subclass".into(),
            train: set,
            test_is_hard: Some(hard),
            granularities: r.granularities.clone(),
        }
    });
    // --- total work, for the progress bar
    let mut total = 0u64;
    let ens_epochs = cfg
        .hard
        .ensemble
        .as_ref()
        .map(|e| e.epochs.unwrap_or(ep_total));
    let members_path = runner.dir.path("ensemble/members.json");
    if let (Some(e), Some(ee)) = (&cfg.hard.ensemble, ens_epochs) {
        if !members_path.exists() {
            total += (e.seeds.len() * ee * n) as u64;
        }
    }
    for &seed in &cfg.seeds {
        for d in designs.iter().chain(rare.iter()) {
            if !cell_path(&runner.dir, &d.name, "baseline", seed).exists() {
                total += (ep_total * d.train.len) as u64;
            }
            for g in &d.granularities {
                if !cell_path(&runner.dir, &d.name, g, seed).exists() {
                    total += (ep_pre * d.train.len) as u64;
                }
            }
        }
    }
    runner.bar.set_length(total);
    // --- the ensemble (hard test images of the balanced design on real data; embeddings)
    let mut hard_subsets = Vec::new();
    if let (Some(e), Some(ee)) = (&cfg.hard.ensemble, ens_epochs) {
        let members: Vec<MemberOutput> = if members_path.exists() {
            read_json(&members_path)?
        } else {
            let mut out = Vec::new();
            for &s in &e.seeds {
                let model = runner.model(num_targets, derive(s, "init"))?;
                let targets = data.train.labels_at_level(tl);
                let ck = runner.ckpt(&format!("ensemble__s{s}"), "baseline")?;
                let epochs = runner.train_phase(
                    &model,
                    &data.train,
                    &targets,
                    ee,
                    &cfg.train.pretrain_lr,
                    derive(s, "baseline"),
                    &ck,
                    ("ensemble", "target-only", s, "ensemble"),
                )?;
                let logits = evaluate(
                    &model,
                    &data.test,
                    data.mean_std.0,
                    data.mean_std.1,
                    EVAL_BATCH,
                )?;
                model.save_weights(
                    &runner
                        .dir
                        .path(&format!("ensemble/member_s{s}.safetensors")),
                )?;
                let _ = std::fs::remove_file(&ck);
                out.push(MemberOutput {
                    seed: s,
                    probs: softmax_rows(&logits),
                    epochs,
                });
            }
            runner.dir.write_json("ensemble/members.json", &out)?;
            out
        };
        let rows = data.test.len;
        let mut wrong = Vec::with_capacity(rows);
        for i in 0..rows {
            let mut p = vec![0f64; num_targets];
            for m in &members {
                for (a, &b) in p.iter_mut().zip(m.probs.row(i)) {
                    *a += f64::from(b);
                }
            }
            let best = (0..num_targets).fold(0, |b, j| if p[j] > p[b] { j } else { b });
            wrong.push(best != runner.test_targets[i]);
        }
        if designs[0].test_is_hard.is_none() {
            let k = wrong.iter().filter(|&&w| w).count();
            hard_subsets.push(HardSubset {
                design: "balanced".into(),
                definition: format!(
                    "misclassified by an ensemble of {} target-only networks (seeds {:?}, not used elsewhere)",
                    members.len(),
                    e.seeds
                ),
                hard: k,
                total: rows,
            });
            designs[0].test_is_hard = Some(wrong);
        }
    }
    if let Some(h) = &data.synthetic_hard {
        hard_subsets.insert(
            0,
            HardSubset {
                design: "balanced".into(),
                definition: "the synthetic data's hard images (common features missing)".into(),
                hard: h.iter().filter(|&&x| x).count(),
                total: h.len(),
            },
        );
    }
    if let (Some(r), Some(d)) = (&cfg.hard.rare_subclass, &rare) {
        let h = d
            .test_is_hard
            .as_ref()
            .map_or(0, |h| h.iter().filter(|&&x| x).count());
        hard_subsets.push(HardSubset {
            design: "rare_subclass".into(),
            definition: format!(
                "images of the rare leaves (each target class keeps one leaf whole, the others {} training images each; {} training images in all)",
                r.rare_per_leaf, d.train.len
            ),
            hard: h,
            total: data.test.len,
        });
    }
    runner.dir.write_json("hard_subsets.json", &hard_subsets)?;
    designs.extend(rare);
    // --- embeddings for k-means
    let embed = |set: &ImageSet| -> Result<Option<Matrix>, EmpiricalError> {
        if !cfg
            .granularities
            .iter()
            .any(|g| g.labels.needs_embeddings())
        {
            return Ok(None);
        }
        let model = match cfg.embedding.source {
            EmbeddingSource::Ensemble => {
                let s = cfg.hard.ensemble.as_ref().map_or(0, |e| e.seeds[0]);
                let m = runner.model(num_targets, derive(s, "init"))?;
                m.load_weights(
                    &runner
                        .dir
                        .path(&format!("ensemble/member_s{s}.safetensors")),
                )?;
                m
            }
            EmbeddingSource::RandomNet => runner.model(num_targets, cfg.embedding.seed)?,
        };
        Ok(Some(extract_features(
            &model,
            set,
            data.mean_std.0,
            data.mean_std.1,
            EVAL_BATCH,
        )?))
    };
    // --- cells
    for d in &designs {
        let emb = embed(&d.train)?;
        let mut labels: BTreeMap<String, PretrainLabels> = BTreeMap::new();
        for g in &cfg.granularities {
            if d.granularities.contains(&g.name) {
                let l = build_labels(
                    &g.labels,
                    &d.train,
                    tl,
                    emb.as_ref(),
                    derive(cfg.embedding.seed, &g.name),
                    cfg.embedding.iters,
                )
                .map_err(|e| {
                    EmpiricalError::invalid(format!("granularity '{}'", g.name), e.to_string())
                })?;
                labels.insert(g.name.clone(), l);
            }
        }
        runner.dir.write_json(
            &format!("labels_{}.json", d.name),
            &labels
                .iter()
                .map(|(k, l)| {
                    (
                        k.clone(),
                        serde_json::json!({
                            "classes": l.num_classes,
                            "aligned": l.aligned,
                            "purity": l.purity,
                        }),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        )?;
        designs_labels_check(d, &labels)?;
        for &seed in &cfg.seeds {
            if !cell_path(&runner.dir, &d.name, "baseline", seed).exists() {
                runner.run_cell(d, None, None, seed)?;
            }
            for g in &cfg.granularities {
                if !d.granularities.contains(&g.name)
                    || cell_path(&runner.dir, &d.name, &g.name, seed).exists()
                {
                    continue;
                }
                runner.run_cell(d, Some((&g.name, &g.labels)), labels.get(&g.name), seed)?;
            }
        }
    }
    runner.bar.finish();
    write_reports(runner.dir.root())
}

fn designs_labels_check(
    d: &Design,
    labels: &BTreeMap<String, PretrainLabels>,
) -> Result<(), EmpiricalError> {
    for g in &d.granularities {
        if !labels.contains_key(g) {
            return Err(EmpiricalError::invalid(
                "granularity",
                format!("no labels for '{g}' in design {}", d.name),
            ));
        }
    }
    Ok(())
}

/// Opens the results folder `out` for the resolved config (see [`ResultsDir::prepare`]).
pub fn prepare_dir(out: &Path, resolved: &str, fresh: bool) -> Result<ResultsDir, EmpiricalError> {
    Ok(ResultsDir::prepare(
        out,
        resolved,
        fresh,
        &[
            "cells",
            "checkpoints",
            "ensemble",
            "weights.safetensors",
            "result.json",
        ],
    )?)
}

/// The embedded default study (the synthetic images), with `overrides` applied.
pub fn synthetic_default(overrides: &[String]) -> Result<StudyConfig, EmpiricalError> {
    crate::config::load_str(
        SYNTHETIC_TOML,
        "embedded experiments/empirical/synthetic.toml",
        overrides,
    )
    .map_err(|e| EmpiricalError::invalid("config", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> StudyConfig {
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

    fn opts(out: &Path) -> RunOptions {
        RunOptions {
            out: out.to_path_buf(),
            data: None,
            fresh: false,
            device: Device::Cpu,
            progress: false,
            kernels: Kernels::Fast,
        }
    }

    fn strip(mut c: CellResult) -> CellResult {
        c.seconds = 0.0;
        for e in &mut c.epochs {
            e.seconds = 0.0;
            e.images_per_sec = 0.0;
        }
        c
    }

    /// A whole study runs on tiny synthetic data: every design, condition and readout is
    /// reported with errors in [0, 1], the reports and figures are written, a study resumes
    /// from its saved cells and from a mid-cell checkpoint with the same results, and a
    /// different config is refused without --fresh.
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
        // resume: drop a finished cell, and fake a kill after the first pretraining epoch of
        // another by re-running it with a checkpoint left behind
        let cell = cell_path(&ResultsDir::create(&out).unwrap(), "balanced", "fine", 0);
        let before: CellResult = read_json(&cell).unwrap();
        std::fs::remove_file(&cell).unwrap();
        let again = run_study(&cfg, &opts(&out)).unwrap();
        let after: CellResult = read_json(&cell).unwrap();
        assert_eq!(strip(before.clone()), strip(after));
        assert_eq!(
            serde_json::to_string(&s.rows).unwrap(),
            serde_json::to_string(&again.rows).unwrap()
        );
        // mid-cell: 1 pretraining epoch into a 2-epoch run, then resume
        let short = synthetic_default(&[]).unwrap();
        drop(short);
        let mut one = cfg.clone();
        one.train.pretrain_epochs = 1;
        let data = load_data(&cfg, None).unwrap();
        let dir = ResultsDir::create(&tmp.path().join("mid")).unwrap();
        let runner = Runner {
            cfg: &cfg,
            dir,
            device: Device::Cpu,
            test: &data.test,
            test_targets: data.test.labels_at_level(0),
            num_targets: 2,
            mean_std: data.mean_std,
            bar: Progress::hidden(),
            kernels: Kernels::Fast,
        };
        let labels = data.train.labels_at_level(1);
        let ck = runner.ckpt("x", "pretrain").unwrap();
        let m1 = Model::new(cfg.model, 4, 1, &Device::Cpu).unwrap();
        runner
            .train_phase(
                &m1,
                &data.train,
                &labels,
                2,
                &cfg.train.pretrain_lr,
                9,
                &ck,
                ("d", "c", 0, "p"),
            )
            .unwrap();
        let full = m1.state_vecs().unwrap();
        // interrupted after epoch 1: train 1 epoch of the same 2-epoch schedule by hand
        std::fs::remove_file(&ck).unwrap();
        let m2 = Model::new(cfg.model, 4, 1, &Device::Cpu).unwrap();
        {
            let ecfg = runner.epoch_config();
            let mut sgd = Sgd::new(m2.trainable_params(), cfg.train.sgd).unwrap();
            let sched = Schedule::new(
                cfg.train.pretrain_lr.clone(),
                2,
                ecfg.steps_per_epoch(data.train.len),
            )
            .unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(9);
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
            save_checkpoint(&ck, &m2, &sgd, 1, &rng, serde_json::json!([])).unwrap();
        }
        let m3 = Model::new(cfg.model, 4, 1, &Device::Cpu).unwrap();
        runner
            .train_phase(
                &m3,
                &data.train,
                &labels,
                2,
                &cfg.train.pretrain_lr,
                9,
                &ck,
                ("d", "c", 0, "p"),
            )
            .unwrap();
        assert_eq!(full, m3.state_vecs().unwrap());
        drop(one);
        // another config into the same folder is refused
        let mut other = cfg.clone();
        other.seeds = vec![3];
        let e = run_study(&other, &opts(&out)).unwrap_err().to_string();
        assert!(e.contains("--fresh"), "{e}");
    }

    #[test]
    fn rare_subclass_keeps_one_leaf_whole_per_target() {
        let data = load_data(&tiny(), None).unwrap();
        let (set, rare) = rare_subclass_set(&data.train, 0, 4, 3);
        // 2 targets x 2 leaves: one dominant (16 images) and one rare (4 images) each
        assert_eq!(rare.iter().filter(|&&r| !r).count(), 2);
        assert_eq!(set.len, 2 * 16 + 2 * 4);
        for (l, &r) in rare.iter().enumerate() {
            let n = set.leaves.iter().filter(|&&x| x == l).count();
            assert_eq!(n, if r { 4 } else { 16 });
        }
    }
}
