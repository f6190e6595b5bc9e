//! The machinery under the protocol: building networks on the run's device and kernels, training
//! phases with a checkpoint after every epoch (a killed run resumes from the last one), scoring
//! readouts on the test set, and running a cell once (a finished cell is a file in `cells/`, and
//! is never run again). [`protocol`](super::protocol) says what a cell does; this module how.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;

use super::config::{GranularitySpec, Readout, StudyConfig};
use super::designs::{Design, StudyData};
use super::labels::LabelSummary;
use super::results::{cell_name, cell_path, CellResult, EpochRecord, ReadoutError};
use crate::empirical::checkpoint::{load_checkpoint, save_checkpoint};
use crate::empirical::data::ImageSet;
use crate::empirical::error::EmpiricalError;
use crate::empirical::model::{Kernels, Model};
use crate::empirical::optim::{LrSchedule, Schedule, Sgd};
use crate::empirical::train::{evaluate, extract_features, predictions, train_epoch, EpochConfig};
use crate::report::{Progress, ResultsDir};
use ndarray::Array2;

/// Batch size of evaluation passes (results do not depend on it).
const EVAL_BATCH: usize = 256;

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
    /// Show progress (a bar on a terminal, plain lines otherwise).
    pub progress: bool,
    /// Which layer implementation trains the networks (results agree to rounding; `stock` is
    /// candle's own operations, for checking the fast kernels end to end).
    pub kernels: Kernels,
}

/// What a cell of a design runs.
pub enum Cell<'a> {
    /// The target labels from scratch.
    Baseline,
    /// Pretraining on a granularity's labels, then the readouts.
    Pretrained {
        /// The granularity.
        granularity: &'a GranularitySpec,
    },
}

impl Cell<'_> {
    /// The condition's name in files and tables.
    pub fn condition(&self) -> &str {
        match self {
            Cell::Baseline => "baseline",
            Cell::Pretrained { granularity, .. } => &granularity.name,
        }
    }
}

/// Who trains: a design (or "ensemble", "single"), a condition and a seed. Names the
/// checkpoints and the epoch records.
#[derive(Clone, Copy, Debug)]
pub struct Trainee<'a> {
    /// The design.
    pub design: &'a str,
    /// The condition.
    pub condition: &'a str,
    /// The seed (the cell's): every draw of its phases comes from it, keyed by what it is for
    /// ([`Trainee::key`]).
    pub seed: u64,
}

impl Trainee<'_> {
    /// The key of the purpose `name` (`"init"`, `"probe"`, ...) under the trainee's seed.
    pub fn key(&self, name: &str) -> u64 {
        crate::seed::derive(self.seed, &[name])
    }
}

/// One training phase of a network.
pub struct Phase<'a> {
    /// "baseline", "pretrain", "finetune" or "ensemble" (in `epochs.csv` and checkpoint names).
    pub name: &'a str,
    /// The training images.
    pub set: &'a ImageSet,
    /// One label per image.
    pub labels: &'a [usize],
    /// Epochs.
    pub epochs: usize,
    /// The learning-rate schedule over those epochs.
    pub lr: &'a LrSchedule,
}

/// What the body of a cell produced.
pub struct CellOutcome {
    /// The readouts' errors.
    pub readouts: Vec<ReadoutError>,
    /// Every training epoch.
    pub epochs: Vec<EpochRecord>,
    /// The labels the cell's network was trained on.
    pub labels: LabelSummary,
}

/// Shared state of a running study (or single run): config, results folder, device, test set.
pub struct Runner<'a> {
    cfg: &'a StudyConfig,
    dir: ResultsDir,
    device: Device,
    kernels: Kernels,
    data: &'a StudyData,
    test_targets: Vec<usize>,
    num_targets: usize,
    bar: Progress,
    prep: ResultsDir,
}

impl<'a> Runner<'a> {
    /// A runner writing into `dir` (opened with [`super::prepare_dir`]).
    pub fn new(
        cfg: &'a StudyConfig,
        dir: ResultsDir,
        data: &'a StudyData,
        opts: &RunOptions,
    ) -> Self {
        let tl = cfg.data.target_level;
        Runner {
            cfg,
            prep: dir.clone(),
            dir,
            device: opts.device.clone(),
            kernels: opts.kernels,
            data,
            test_targets: data.test.labels_at_level(tl),
            num_targets: data.train.hierarchy.num_classes(tl),
            bar: Progress::new(0, "images", opts.progress),
        }
    }

    /// The study's config.
    pub fn config(&self) -> &StudyConfig {
        self.cfg
    }

    /// The results folder.
    pub fn dir(&self) -> &ResultsDir {
        &self.dir
    }

    /// The same runner reading the study's preparation (the ensemble, the label sets) from
    /// `prep` instead of its results folder: a shard's runner writes its cells into the shard's
    /// folder and reads what every cell needs from the study folder.
    pub fn with_prep_dir(mut self, prep: ResultsDir) -> Self {
        self.prep = prep;
        self
    }

    /// The folder of the study's preparation (the results folder unless
    /// [`Runner::with_prep_dir`] said otherwise).
    pub fn prep_dir(&self) -> &ResultsDir {
        &self.prep
    }

    /// The study's data.
    pub fn data(&self) -> &StudyData {
        self.data
    }

    /// The progress display.
    pub fn progress(&self) -> &Progress {
        &self.bar
    }

    /// Number of target classes.
    pub fn num_targets(&self) -> usize {
        self.num_targets
    }

    /// The target class of every test image.
    pub fn test_targets(&self) -> &[usize] {
        &self.test_targets
    }

    /// A new network with `classes` outputs, initialised from `seed`, on the run's device and
    /// kernels.
    pub fn model(&self, classes: usize, seed: u64) -> Result<Model, EmpiricalError> {
        Model::new_with(self.cfg.model, classes, seed, &self.device, self.kernels)
    }

    fn epoch_config(&self) -> EpochConfig {
        EpochConfig {
            batch_size: self.cfg.train.batch_size,
            augment: self.cfg.train.augment,
            mean: self.data.mean_std.0,
            std: self.data.mean_std.1,
            label_smoothing: self.cfg.train.label_smoothing,
            drop_last: false,
        }
    }

    /// The checkpoint of `phase` of `who`.
    pub fn checkpoint(&self, who: &Trainee, phase: &str) -> PathBuf {
        self.dir.path(&format!(
            "checkpoints/{}.{phase}.ckpt",
            cell_name(who.design, who.condition, who.seed)
        ))
    }

    /// Trains `model` through `phase`, checkpointing after every epoch and resuming from the
    /// checkpoint if one exists. Batch order and augmentation come from the generator of the
    /// phase's name under the trainee's seed. Returns the epoch records (including those of
    /// epochs run before a resume).
    pub fn train(
        &self,
        model: &Model,
        who: &Trainee,
        phase: &Phase,
    ) -> Result<Vec<EpochRecord>, EmpiricalError> {
        let ckpt = self.checkpoint(who, phase.name);
        let (set, epochs) = (phase.set, phase.epochs);
        let ecfg = self.epoch_config();
        let mut sgd = Sgd::new(model.trainable_params(), self.cfg.train.sgd)?;
        let schedule = Schedule::new(phase.lr.clone(), epochs, ecfg.steps_per_epoch(set.len))?;
        let (mut start, mut rng, mut records) =
            (0, crate::seed::rng(who.seed, &[phase.name]), Vec::new());
        if ckpt.exists() {
            let r = load_checkpoint(&ckpt, model, &mut sgd)?;
            start = r.epochs_done;
            rng = r.rng;
            records = serde_json::from_value(r.meta.extra).map_err(|e| {
                EmpiricalError::checkpoint(&ckpt, format!("bad epoch records: {e}"))
            })?;
            self.bar.inc((start * set.len) as u64);
        }
        for e in start..epochs {
            let bar = &self.bar;
            let mut last = 0;
            let stats = train_epoch(
                model,
                &mut sgd,
                &schedule,
                set,
                phase.labels,
                &ecfg,
                e,
                &mut rng,
                &mut |s| {
                    bar.inc((s.images - last) as u64);
                    last = s.images;
                },
            )?;
            bar.milestone(format!(
                "{}/{} s{} {} {}/{epochs} loss {:.3} acc {:.3} {:.0} img/s",
                who.design,
                who.condition,
                who.seed,
                phase.name,
                e + 1,
                stats.loss,
                stats.acc,
                stats.images_per_sec
            ));
            records.push(EpochRecord {
                design: who.design.into(),
                condition: who.condition.into(),
                seed: who.seed,
                phase: phase.name.into(),
                epoch: e,
                loss: stats.loss,
                train_acc: stats.acc,
                lr: stats.last_lr,
                seconds: stats.seconds,
                images_per_sec: stats.images_per_sec,
            });
            let extra = serde_json::to_value(&records)
                .map_err(|e| EmpiricalError::checkpoint(&ckpt, e.to_string()))?;
            save_checkpoint(&ckpt, model, &sgd, e + 1, &rng, extra)?;
        }
        Ok(records)
    }

    /// Deletes the checkpoints of `who` (after its results are saved).
    pub fn drop_checkpoints(&self, who: &Trainee, phases: &[&str]) {
        for p in phases {
            let _ = std::fs::remove_file(self.checkpoint(who, p));
        }
    }

    /// The logits of every test image.
    pub fn test_logits(&self, model: &Model) -> Result<Array2<f32>, EmpiricalError> {
        let (mean, std) = self.data.mean_std;
        evaluate(model, &self.data.test, mean, std, EVAL_BATCH)
    }

    /// The features (backbone outputs) of every image of `set`.
    pub fn features(&self, model: &Model, set: &ImageSet) -> Result<Array2<f32>, EmpiricalError> {
        let (mean, std) = self.data.mean_std;
        extract_features(model, set, mean, std, EVAL_BATCH)
    }

    /// The target error of `readout` whose test-set scores are `logits`, on all test images and
    /// on the easy and hard ones (`hard` flags each test image).
    pub fn score(
        &self,
        readout: Readout,
        logits: &Array2<f32>,
        hard: Option<&[bool]>,
    ) -> ReadoutError {
        let pred = predictions(logits);
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
        ReadoutError {
            readout,
            error: rate(&|_| true),
            easy_error: easy,
            hard_error: hardv,
        }
    }

    /// Whether the cell `(design, condition, seed)` has its result saved.
    pub fn is_done(&self, design: &str, condition: &str, seed: u64) -> bool {
        cell_path(self.dir.root(), design, condition, seed).exists()
    }

    /// Runs `cell` of `design` with `seed` unless its result is saved: `body` trains and reads
    /// out; the result goes to `cells/` and the cell's checkpoints are deleted.
    pub fn run_cell(
        &self,
        design: &Design,
        cell: &Cell,
        seed: u64,
        body: impl FnOnce(&Trainee) -> Result<CellOutcome, EmpiricalError>,
    ) -> Result<(), EmpiricalError> {
        let condition = cell.condition();
        if self.is_done(&design.name, condition, seed) {
            return Ok(());
        }
        let t0 = Instant::now();
        let who = Trainee {
            design: &design.name,
            condition,
            seed,
        };
        let out = body(&who)?;
        let family = match cell {
            Cell::Baseline => "baseline",
            Cell::Pretrained { granularity } => granularity.labels.family(),
        };
        let result = CellResult {
            design: design.name.clone(),
            condition: condition.to_string(),
            family: family.to_string(),
            seed,
            classes: out.labels.classes,
            used_classes: out.labels.used_classes,
            aligned: out.labels.aligned,
            purity: out.labels.purity,
            readouts: out.readouts,
            epochs: out.epochs,
            seconds: t0.elapsed().as_secs_f64(),
        };
        self.dir.write_json(
            &format!("cells/{}.json", cell_name(&design.name, condition, seed)),
            &result,
        )?;
        self.drop_checkpoints(&who, &["baseline", "pretrain", "finetune"]);
        Ok(())
    }
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
            "labels",
            "shards",
            "weights.safetensors",
            "result.json",
        ],
    )?)
}
