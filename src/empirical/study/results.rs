//! What a study writes per cell, and where: the records of `cells/*.json` and `epochs.csv`, the
//! file name of a cell, and the one function that lists the cells of a study folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::Readout;
use crate::empirical::error::EmpiricalError;
use crate::report::{file_safe, read_json};

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

impl CellResult {
    /// The result with its wall-clock times (`seconds`, and each epoch's `seconds` and
    /// `images_per_sec`) set to 0: what two runs of the same cell agree on bit for bit.
    pub fn without_timings(&self) -> CellResult {
        let mut c = self.clone();
        c.seconds = 0.0;
        for e in &mut c.epochs {
            e.seconds = 0.0;
            e.images_per_sec = 0.0;
        }
        c
    }
}

/// The name of a cell's files (`{design}__{condition}__s{seed}`): its result is
/// `cells/{name}.json`, its checkpoints `checkpoints/{name}.{phase}.ckpt`.
pub fn cell_name(design: &str, condition: &str, seed: u64) -> String {
    format!("{design}__{}__s{seed}", file_safe(condition))
}

/// The result file of a cell inside the study folder `root`.
pub fn cell_path(root: &Path, design: &str, condition: &str, seed: u64) -> PathBuf {
    root.join("cells")
        .join(format!("{}.json", cell_name(design, condition, seed)))
}

/// Reads every cell result of a study folder (sorted by file name).
pub fn read_cells(dir: &Path) -> Result<Vec<CellResult>, EmpiricalError> {
    let cells = dir.join("cells");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cells)
        .map_err(|e| {
            EmpiricalError::invalid("results", format!("cannot read {}: {e}", cells.display()))
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| read_json(p).map_err(EmpiricalError::from))
        .collect()
}
