//! Training phases with checkpoints: a phase checkpoints after every epoch (model, optimizer,
//! generator, the epoch records so far) and resumes from its checkpoint, so a killed study
//! recomputes at most the epoch it was in and gives the same bits as one never stopped. The
//! checkpoint before the last is kept too: a checkpoint that cannot be read (truncated, another
//! format) is discarded with a note, and training resumes from the one before (recomputing that
//! epoch) or from the start.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::BatchKeying;
use super::results::{cell_name, EpochRecord, Timing};
use super::runner::Runner;
use crate::empirical::checkpoint::{load_checkpoint, read_checkpoint_meta, save_checkpoint};
use crate::empirical::data::ImageSet;
use crate::empirical::error::EmpiricalError;
use crate::empirical::model::Model;
use crate::empirical::optim::{LrSchedule, Schedule, Sgd};
use crate::empirical::train::train_epoch;

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

    /// `design/condition sSEED`, for messages.
    pub fn label(&self) -> String {
        format!("{}/{} s{}", self.design, self.condition, self.seed)
    }
}

/// One training phase of a network.
pub struct Phase<'a> {
    /// "baseline", "pretrain", "finetune", "direct" or "ensemble" (in `epochs.csv` and checkpoint names).
    pub name: &'a str,
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

impl Runner<'_> {
    /// The checkpoint of `phase` of `who`.
    pub fn checkpoint(&self, who: &Trainee, phase: &str) -> PathBuf {
        self.dir().path(&format!(
            "checkpoints/{}.{phase}.ckpt",
            cell_name(who.design, who.condition, who.seed)
        ))
    }

    /// Deletes the checkpoints of `who` (after its results are saved).
    pub fn drop_checkpoints(&self, who: &Trainee, phases: &[&str]) {
        for p in phases {
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
                    EmpiricalError::checkpoint(&path, format!("bad epoch records: {e}"))
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
            crate::seed::rng(who.seed, &[phase.name]),
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
                phase: phase.name.into(),
                epoch: e,
                loss: stats.loss,
                train_acc: stats.acc,
                lr: stats.last_lr,
            });
            log.timings.push(Timing {
                design: who.design.into(),
                condition: who.condition.into(),
                seed: who.seed,
                phase: phase.name.into(),
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
