//! The machinery under the protocol: building networks on the run's device and kernels, training
//! phases ([`super::phase`]: a checkpoint after every epoch, a killed run resumes from the last
//! one), scoring readouts on the test set, and running a cell once (a finished cell is a file in
//! `cells/`, and is never run again; its wall-clock times go to `timings/`).
//! [`protocol`](super::protocol) says what a cell does; this module how.

use std::cell::{Cell as Counter, RefCell};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;

use super::config::{GranularitySpec, Readout, StudyConfig};
use super::designs::{Design, StudyData};
use super::hard::TestSubsets;
use super::labels::LabelSummary;
use super::phase::Trainee;
use super::results::{
    cell_name, cell_path, timings_path, CellResult, EpochRecord, FineProbe, ReadoutError, Timing,
};
use crate::empirical::data::ImageSet;
use crate::empirical::error::EmpiricalError;
use crate::empirical::model::{Kernels, Model};
use crate::empirical::train::{evaluate, extract_features, predictions, EpochConfig};
use crate::report::read_json;
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
    /// Stop with [`EmpiricalError::Interrupted`] after this many training epochs (each one
    /// checkpointed), as a kill would: for testing resume. None: run to the end.
    pub stop_after_epochs: Option<usize>,
}

impl RunOptions {
    /// Options for a run into `out` on `device` with `kernels`, progress shown.
    pub fn new(out: PathBuf, device: Device, kernels: Kernels) -> Self {
        RunOptions {
            out,
            data: None,
            fresh: false,
            device,
            progress: true,
            kernels,
            stop_after_epochs: None,
        }
    }
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
    /// The direct arm: a network trained on a granularity's labels for the baseline's whole
    /// schedule, read out with the summed head and the linear probe (condition `NAME direct`).
    Direct {
        /// The granularity.
        granularity: &'a GranularitySpec,
        /// The condition's name.
        name: String,
    },
}

impl Cell<'_> {
    /// The condition's name in files and tables.
    pub fn condition(&self) -> &str {
        match self {
            Cell::Baseline => "baseline",
            Cell::Pretrained { granularity, .. } => &granularity.name,
            Cell::Direct { name, .. } => name,
        }
    }
}

/// What the body of a cell produced.
pub struct CellOutcome {
    /// The readouts' errors.
    pub readouts: Vec<ReadoutError>,
    /// Every training epoch.
    pub epochs: Vec<EpochRecord>,
    /// The labels the cell's network was trained on.
    pub labels: LabelSummary,
    /// The fine-class probe of the network's features (`train.fine_probe`).
    pub fine_probe: Option<FineProbe>,
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
    stop_after_epochs: Option<usize>,
    epochs_run: Counter<usize>,
    timings: RefCell<Vec<Timing>>,
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
            stop_after_epochs: opts.stop_after_epochs,
            epochs_run: Counter::new(0),
            timings: RefCell::new(Vec::new()),
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
        Ok(Model::new_with(
            self.cfg.model,
            classes,
            seed,
            &self.device,
            self.kernels,
        )?)
    }

    /// How the run's training epochs read the data.
    pub(super) fn epoch_config(&self) -> EpochConfig {
        EpochConfig {
            batch_size: self.cfg.train.batch_size,
            augment: self.cfg.train.augment,
            mean: self.data.mean_std.0,
            std: self.data.mean_std.1,
            label_smoothing: self.cfg.train.label_smoothing,
            drop_last: false,
        }
    }

    /// The logits of every test image.
    pub fn test_logits(&self, model: &Model) -> Result<Array2<f32>, EmpiricalError> {
        let (mean, std) = self.data.mean_std;
        evaluate(model, &self.data.test, mean, std, EVAL_BATCH)
    }

    /// The logits of every image of `set` (evaluation mode, no augmentation).
    pub fn logits(&self, model: &Model, set: &ImageSet) -> Result<Array2<f32>, EmpiricalError> {
        let (mean, std) = self.data.mean_std;
        evaluate(model, set, mean, std, EVAL_BATCH)
    }

    /// The features (backbone outputs) of every image of `set`.
    pub fn features(&self, model: &Model, set: &ImageSet) -> Result<Array2<f32>, EmpiricalError> {
        let (mean, std) = self.data.mean_std;
        extract_features(model, set, mean, std, EVAL_BATCH)
    }

    /// The target error of `readout` whose test-set scores are `logits`, on all test images, on
    /// the easy and hard ones, and on the images of the confusable leaves (`subsets` flags each
    /// test image).
    pub fn score(
        &self,
        readout: Readout,
        logits: &Array2<f32>,
        subsets: TestSubsets<'_>,
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
        let (easy, hardv) = match subsets.hard {
            Some(h) => (rate(&|i| !h[i]), rate(&|i| h[i])),
            None => (f64::NAN, f64::NAN),
        };
        ReadoutError {
            readout,
            error: rate(&|_| true),
            easy_error: easy,
            hard_error: hardv,
            confusable_error: subsets.confusable.map_or(f64::NAN, |c| rate(&|i| c[i])),
            train_error: f64::NAN,
            start_train_error: f64::NAN,
            predictions: pred.iter().map(|&p| p as u32).collect(),
        }
    }

    /// [`Runner::score`] with the readout's training error: `train_logits` are its scores of
    /// the training images whose target labels are `train_targets` (evaluation mode, no
    /// augmentation).
    pub fn score_with_train(
        &self,
        readout: Readout,
        logits: &Array2<f32>,
        subsets: TestSubsets<'_>,
        train_logits: &Array2<f32>,
        train_targets: &[usize],
    ) -> ReadoutError {
        ReadoutError {
            train_error: error_rate(train_logits, train_targets),
            ..self.score(readout, logits, subsets)
        }
    }

    /// Counts a finished (checkpointed) epoch; stops the run when `stop_after_epochs` is
    /// reached.
    pub(super) fn count_epoch(&self) -> Result<(), EmpiricalError> {
        let n = self.epochs_run.get() + 1;
        self.epochs_run.set(n);
        match self.stop_after_epochs {
            Some(stop) if n >= stop => Err(EmpiricalError::Interrupted { epochs: n }),
            _ => Ok(()),
        }
    }

    /// Keeps wall-clock records until [`Runner::write_timings`].
    pub(super) fn add_timings(&self, rows: Vec<Timing>) {
        self.timings.borrow_mut().extend(rows);
    }

    /// Writes the wall-clock records kept so far to `timings/{name}.csv`.
    pub fn write_timings(&self, name: &str) -> Result<(), EmpiricalError> {
        let rows = std::mem::take(&mut *self.timings.borrow_mut());
        crate::report::write_csv(&timings_path(self.dir.root(), name), &rows)?;
        Ok(())
    }

    /// Whether the cell `(design, condition, seed)` has its result saved. A saved result that
    /// cannot be read is deleted with a note, so that the cell is computed again.
    pub fn is_done(&self, design: &str, condition: &str, seed: u64) -> bool {
        let path = cell_path(self.dir.root(), design, condition, seed);
        if !path.exists() {
            return false;
        }
        match read_json::<CellResult>(&path) {
            Ok(_) => true,
            Err(e) => {
                self.bar
                    .note(format!("{e}: unreadable, computing the cell again"));
                let _ = std::fs::remove_file(&path);
                false
            }
        }
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
        self.timings.borrow_mut().clear();
        let who = Trainee {
            design: &design.name,
            condition,
            seed,
        };
        let out = body(&who)?;
        let family = match cell {
            Cell::Baseline => "baseline".to_string(),
            Cell::Pretrained { granularity } => granularity.labels.family().to_string(),
            Cell::Direct { granularity, .. } => {
                format!("direct, {}", granularity.labels.family())
            }
        };
        let result = CellResult {
            design: design.name.clone(),
            condition: condition.to_string(),
            family,
            seed,
            classes: out.labels.classes,
            used_classes: out.labels.used_classes,
            aligned: out.labels.aligned,
            purity: out.labels.purity,
            readouts: out.readouts,
            epochs: out.epochs,
            fine_probe: out.fine_probe,
        };
        let name = cell_name(&design.name, condition, seed);
        self.add_timings(vec![Timing {
            design: design.name.clone(),
            condition: condition.to_string(),
            seed,
            phase: "cell".into(),
            epoch: None,
            seconds: t0.elapsed().as_secs_f64(),
            images_per_sec: None,
        }]);
        self.write_timings(&name)?;
        self.dir
            .write_json(&format!("cells/{name}.json"), &result)?;
        self.drop_checkpoints(&who, &["baseline", "pretrain", "finetune", "direct"]);
        let errors: Vec<String> = result
            .readouts
            .iter()
            .map(|r| format!("{} {:.3}", r.readout.name(), r.error))
            .collect();
        self.bar
            .milestone(format!("{} done: error {}", who.label(), errors.join(", ")));
        Ok(())
    }
}

/// The top-1 error of `logits` (one row per image) against `targets`; NaN without images.
pub fn error_rate(logits: &Array2<f32>, targets: &[usize]) -> f64 {
    let pred = predictions(logits);
    if pred.is_empty() {
        return f64::NAN;
    }
    let wrong = pred.iter().zip(targets).filter(|(p, t)| p != t).count();
    wrong as f64 / pred.len() as f64
}

/// The entries of a results folder that hold computed results.
const RESULT_ENTRIES: &[&str] = &[
    "cells",
    "checkpoints",
    "ensemble",
    "timings",
    "labels",
    "shards",
    "weights.safetensors",
    "result.json",
];

/// Opens the results folder `out` for the resolved config (see [`ResultsDir::prepare`]).
pub fn prepare_dir(out: &Path, resolved: &str, fresh: bool) -> Result<ResultsDir, EmpiricalError> {
    Ok(ResultsDir::prepare(out, resolved, fresh, RESULT_ENTRIES)?)
}

/// Whether [`prepare_dir`] without `fresh` would refuse `out` (it holds another config's
/// results); writes nothing.
pub fn refuses_dir(out: &Path, resolved: &str) -> bool {
    crate::report::holds_other_results(out, resolved, RESULT_ENTRIES)
}
