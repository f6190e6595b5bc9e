//! The machinery under the protocol: networks on the run's device and kernels, training phases
//! with checkpoints, scoring readouts on the test set, and running a cell once (a finished cell
//! is a file in `cells/`, and is never run again; its wall-clock times go to `timings/`).
//! [`protocol`](super::protocol) says what a cell does; this module how.
//!
//! A training phase ([`Phase`], [`Runner::train`]) checkpoints after every epoch (model,
//! optimizer, generator, the epoch records so far) and resumes from its checkpoint, so a killed
//! study recomputes at most the epoch it was in and gives the same bits as one never stopped.
//! The checkpoint before the last is kept too: a checkpoint that cannot be read (truncated,
//! another format) is discarded with a note, and training resumes from the one before
//! (recomputing that epoch) or from the start.

use std::cell::{Cell as Counter, RefCell};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::config::{BatchKeying, Readout, StudyConfig};
use super::designs::{Design, StudyData, TestSubsets};
use super::plan::{Cell, PhaseName, Trainee};
use super::results::{
    cell_name, cell_path, timings_path, CellResult, EpochRecord, FineProbe, LabelSummary,
    ReadoutError, Timing,
};
use crate::empirical::checkpoint::{load_checkpoint, read_checkpoint_meta, save_checkpoint};
use crate::empirical::data::ImageSet;
use crate::empirical::error::EmpiricalError;
use crate::empirical::model::{Kernels, Model};
use crate::empirical::optim::{LrSchedule, Schedule, Sgd};
use crate::empirical::train::{evaluate, extract_features, predictions, train_epoch, EpochConfig};
use crate::empirical::train_error::TrainError;
use crate::report::{read_json, Progress, ResultsDir};

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

/// One training phase of a network.
pub struct Phase<'a> {
    /// Its name (in `epochs.csv` and checkpoint names).
    pub name: PhaseName,
    /// The training images.
    pub set: &'a ImageSet,
    /// One label per image.
    pub labels: &'a [usize],
    /// Epochs.
    pub epochs: usize,
    /// The learning-rate schedule over those epochs.
    pub lr: &'a LrSchedule,
    /// The epoch of the cell's schedule this phase starts at (fine-tuning: after pretraining),
    /// which keys its batches with `train.batch_keying = "seed"`.
    pub first_epoch: usize,
}

/// What a checkpoint keeps of the phase besides the networks' state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseLog {
    epochs: Vec<EpochRecord>,
    timings: Vec<Timing>,
}

/// The checkpoint before the last one of `ckpt`.
fn previous(ckpt: &Path) -> PathBuf {
    ckpt.with_extension("ckpt.prev")
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

    /// The logits of every test image.
    pub fn test_logits(&self, model: &Model) -> Result<Array2<f32>, EmpiricalError> {
        let (mean, std) = self.data.mean_std;
        Ok(evaluate(model, &self.data.test, mean, std, EVAL_BATCH)?)
    }

    /// The logits of every image of `set` (evaluation mode, no augmentation).
    pub fn logits(&self, model: &Model, set: &ImageSet) -> Result<Array2<f32>, EmpiricalError> {
        let (mean, std) = self.data.mean_std;
        Ok(evaluate(model, set, mean, std, EVAL_BATCH)?)
    }

    /// The features (backbone outputs) of every image of `set`.
    pub fn features(&self, model: &Model, set: &ImageSet) -> Result<Array2<f32>, EmpiricalError> {
        let (mean, std) = self.data.mean_std;
        Ok(extract_features(model, set, mean, std, EVAL_BATCH)?)
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
    fn count_epoch(&self) -> Result<(), EmpiricalError> {
        let n = self.epochs_run.get() + 1;
        self.epochs_run.set(n);
        match self.stop_after_epochs {
            Some(stop) if n >= stop => Err(EmpiricalError::Interrupted { epochs: n }),
            _ => Ok(()),
        }
    }

    /// Keeps wall-clock records until [`Runner::write_timings`].
    fn add_timings(&self, rows: Vec<Timing>) {
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
        let result = CellResult {
            design: design.name.clone(),
            condition: condition.to_string(),
            family: cell.family(),
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
        self.drop_checkpoints(&who, &PhaseName::of_cells());
        let errors: Vec<String> = result
            .readouts
            .iter()
            .map(|r| format!("{} {:.3}", r.readout.name(), r.error))
            .collect();
        self.bar
            .milestone(format!("{} done: error {}", who.label(), errors.join(", ")));
        Ok(())
    }

    /// The checkpoint of `phase` of `who`.
    pub fn checkpoint(&self, who: &Trainee, phase: PhaseName) -> PathBuf {
        self.dir().path(&format!(
            "checkpoints/{}.{phase}.ckpt",
            cell_name(who.design, who.condition, who.seed)
        ))
    }

    /// Deletes the checkpoints of `who` (after its results are saved).
    pub fn drop_checkpoints(&self, who: &Trainee, phases: &[PhaseName]) {
        for &p in phases {
            let ckpt = self.checkpoint(who, p);
            let _ = std::fs::remove_file(previous(&ckpt));
            let _ = std::fs::remove_file(ckpt);
        }
    }

    /// Restores `model` and `sgd` from the newest readable checkpoint of the phase; returns the
    /// epochs done, the generator and the log, or None to start from scratch. Unreadable
    /// checkpoints are deleted with a note.
    fn resume(
        &self,
        ckpt: &Path,
        model: &Model,
        sgd: &mut Sgd,
        what: &str,
    ) -> Result<Option<(usize, rand_chacha::ChaCha8Rng, PhaseLog)>, EmpiricalError> {
        for path in [ckpt.to_path_buf(), previous(ckpt)] {
            if !path.exists() {
                continue;
            }
            let restored = read_checkpoint_meta(&path).and_then(|meta| {
                let log: PhaseLog = serde_json::from_value(meta.extra).map_err(|e| {
                    TrainError::checkpoint(&path, format!("bad epoch records: {e}"))
                })?;
                let r = load_checkpoint(&path, model, sgd)?;
                Ok((r.epochs_done, r.rng, log))
            });
            match restored {
                Ok(r) => {
                    self.progress().note(format!(
                        "{what}: resumed from {} after epoch {}",
                        path.display(),
                        r.0
                    ));
                    return Ok(Some(r));
                }
                Err(e) => {
                    self.progress()
                        .note(format!("{what}: {e}: discarded, recomputing"));
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(None)
    }

    /// Trains `model` through `phase`, checkpointing after every epoch and resuming from the
    /// checkpoint if one exists. Batch order and augmentation come from the generator of the
    /// phase's name under the trainee's seed, or, with `train.batch_keying = "seed"`, from a
    /// generator of the trainee's seed and the epoch of the cell's schedule. Returns the epoch records (including those of
    /// epochs run before a resume); the wall-clock times go to the runner's timings.
    pub fn train(
        &self,
        model: &Model,
        who: &Trainee,
        phase: &Phase,
    ) -> Result<Vec<EpochRecord>, EmpiricalError> {
        let ckpt = self.checkpoint(who, phase.name);
        let (set, epochs) = (phase.set, phase.epochs);
        let ecfg = self.epoch_config();
        let mut sgd = Sgd::new(model.trainable_params(), self.config().train.sgd)?;
        let schedule = Schedule::new(phase.lr.clone(), epochs, ecfg.steps_per_epoch(set.len))?;
        let what = format!("{} {}", who.label(), phase.name);
        let (mut start, mut rng, mut log) = (
            0,
            crate::seed::rng(who.seed, &[phase.name.name()]),
            PhaseLog::default(),
        );
        if let Some((done, r, l)) = self.resume(&ckpt, model, &mut sgd, &what)? {
            (start, rng, log) = (done, r, l);
            self.progress().inc((start * set.len) as u64);
        }
        let by_seed = self.config().train.batch_keying == BatchKeying::Seed;
        for e in start..epochs {
            if by_seed {
                // common random numbers: the draws of epoch k of every arm of a seed
                let k = (phase.first_epoch + e).to_string();
                rng = crate::seed::rng(who.seed, &["batches", &k]);
            }
            let bar = self.progress();
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
                "{what} epoch {}/{epochs}: loss {:.3}, train acc {:.3}, {:.0} img/s",
                e + 1,
                stats.loss,
                stats.acc,
                stats.images_per_sec
            ));
            log.epochs.push(EpochRecord {
                design: who.design.into(),
                condition: who.condition.into(),
                seed: who.seed,
                phase: phase.name,
                epoch: e,
                loss: stats.loss,
                train_acc: stats.acc,
                lr: stats.last_lr,
            });
            log.timings.push(Timing {
                design: who.design.into(),
                condition: who.condition.into(),
                seed: who.seed,
                phase: phase.name.name().into(),
                epoch: Some(e),
                seconds: stats.seconds,
                images_per_sec: Some(stats.images_per_sec),
            });
            let extra = serde_json::to_value(&log)
                .map_err(|e| EmpiricalError::checkpoint(&ckpt, e.to_string()))?;
            if ckpt.exists() {
                std::fs::rename(&ckpt, previous(&ckpt)).map_err(|e| {
                    EmpiricalError::checkpoint(
                        &ckpt,
                        format!("cannot keep it as the previous: {e}"),
                    )
                })?;
            }
            save_checkpoint(&ckpt, model, &sgd, e + 1, &rng, extra)?;
            self.count_epoch()?;
        }
        self.add_timings(log.timings);
        Ok(log.epochs)
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

/// The config as saved in the results folder: results of other kernels agree only to rounding,
/// so the kernels are part of it (never mixed in one folder).
pub fn resolved_config(cfg: &StudyConfig, kernels: Kernels) -> Result<String, EmpiricalError> {
    let mut resolved = crate::config::to_toml(cfg)?;
    if kernels != Kernels::Fast {
        resolved.push_str(&format!("\n# trained with --kernels {}\n", kernels.name()));
    }
    Ok(resolved)
}
