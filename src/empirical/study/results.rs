//! What a study writes per cell, and where: the records of `cells/*.json` and `epochs.csv`, the
//! wall-clock records of `timings/` and `timings.csv` (kept apart, so that every other file of a
//! study is the same bytes however often it was interrupted and resumed), the file name of a
//! cell, and the one function that lists the cells of a study folder.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::plan::PhaseName;
use crate::empirical::error::EmpiricalError;
use crate::readout::Readout;
use crate::report::{file_safe, read_csv, read_json};

/// One training epoch, as written to `epochs.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Design.
    pub design: String,
    /// Condition.
    pub condition: String,
    /// Seed.
    pub seed: u64,
    /// The training phase.
    pub phase: PhaseName,
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy on the phase's labels (augmented images, during the epoch).
    pub train_acc: f64,
    /// Learning rate of the last step.
    pub lr: f64,
}

/// Wall-clock time of an epoch (or of a whole cell: no epoch), as written to `timings.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Design.
    pub design: String,
    /// Condition.
    pub condition: String,
    /// Seed.
    pub seed: u64,
    /// The phase ([`PhaseName`]), or "cell" for the whole cell.
    pub phase: String,
    /// 0-based epoch (none for a whole cell).
    pub epoch: Option<usize>,
    /// Wall time in seconds (of this process's part, for a cell that was resumed).
    pub seconds: f64,
    /// Training images per second (none for a whole cell).
    pub images_per_sec: Option<f64>,
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
    /// Top-1 error on the test images of the confusable leaves (NaN if the design has none, and
    /// in cells written before this subset existed).
    #[serde(
        default = "crate::report::nan",
        deserialize_with = "crate::report::f64_or_nan"
    )]
    pub confusable_error: f64,
    /// Top-1 error on the design's training images, in evaluation mode without augmentation,
    /// on the target labels (NaN in cells written before it was measured): whether the readout
    /// fits its own training data.
    #[serde(
        default = "crate::report::nan",
        deserialize_with = "crate::report::f64_or_nan",
        skip_serializing_if = "is_nan"
    )]
    pub train_error: f64,
    /// For fine-tuning: the same training error at the start of fine-tuning (the new head on
    /// the pretrained backbone, before any step); NaN otherwise.
    #[serde(
        default = "crate::report::nan",
        deserialize_with = "crate::report::f64_or_nan",
        skip_serializing_if = "is_nan"
    )]
    pub start_train_error: f64,
    /// The predicted target class of every test image, in test-set order (empty in cells
    /// written before predictions were saved): any subset can be scored again from it. Written
    /// as one string of comma-separated classes (see [`compact`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "compact")]
    pub predictions: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::FineProbe;

    /// Predictions are written as one string and read back from it or from an array; a bad
    /// entry is an error naming it.
    #[test]
    fn predictions_round_trip_compactly() {
        let f = FineProbe {
            within_target_acc: 0.5,
            per_leaf: vec![Some(0.5), None],
            predictions: vec![4, 0, 13],
        };
        let text = serde_json::to_string(&f).unwrap();
        assert!(text.contains(r#""predictions":"4,0,13""#), "{text}");
        assert_eq!(serde_json::from_str::<FineProbe>(&text).unwrap(), f);
        let old = r#"{"within_target_acc":0.5,"per_leaf":[0.5,null],"predictions":[4,0,13]}"#;
        assert_eq!(serde_json::from_str::<FineProbe>(old).unwrap(), f);
        let bad = r#"{"within_target_acc":0.5,"per_leaf":[],"predictions":"4,x"}"#;
        let e = serde_json::from_str::<FineProbe>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'x'"), "{e}");
    }
}

fn is_nan(v: &f64) -> bool {
    v.is_nan()
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
    /// The fine-class probe of the network's frozen features (`train.fine_probe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_probe: Option<FineProbe>,
}

/// How well a network's frozen features tell the leaves apart inside their own target class:
/// a linear probe trained on the leaf labels of the training images, whose prediction for a
/// test image is the best-scoring leaf of the image's own target class (the theory's
/// mechanism: coarse-trained features carry little subclass information).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FineProbe {
    /// Fraction of test images whose leaf is the probe's best leaf inside their target class.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub within_target_acc: f64,
    /// The same per leaf (leaf order of the hierarchy; none for a leaf without test images).
    pub per_leaf: Vec<Option<f64>>,
    /// The leaf predicted for every test image (inside its target class), written as one
    /// string (see [`compact`]).
    #[serde(with = "compact")]
    pub predictions: Vec<u32>,
}

/// Per-image classes written compactly: one string of comma-separated numbers (`"4,0,3"`, about
/// two bytes an image) instead of a JSON array of one number per line; read back from either.
pub mod compact {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `v` as `"a,b,c"`.
    pub fn serialize<S: Serializer>(v: &[u32], s: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = v.iter().map(u32::to_string).collect();
        s.serialize_str(&text.join(","))
    }

    /// Reads `"a,b,c"` (or a JSON array of numbers).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            List(Vec<u32>),
        }
        match Either::deserialize(d)? {
            Either::List(v) => Ok(v),
            Either::Text(t) if t.is_empty() => Ok(Vec::new()),
            Either::Text(t) => t
                .split(',')
                .map(|x| {
                    x.parse::<u32>().map_err(|_| {
                        serde::de::Error::custom(format!("'{x}' is not a class number"))
                    })
                })
                .collect(),
        }
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

/// The files of the folder `dir` whose names end in `.{ext}`, sorted (none if it is missing).
fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// Reads every cell result of a study folder (sorted by file name). A cell file that cannot be
/// read is an error that names it and says what to do.
pub fn read_cells(dir: &Path) -> Result<Vec<CellResult>, EmpiricalError> {
    files_in(&dir.join("cells"), "json")
        .iter()
        .map(|p| {
            read_json(p).map_err(|e| {
                EmpiricalError::invalid(
                    "results",
                    format!("{e}: delete this file and run the study again to recompute the cell"),
                )
            })
        })
        .collect()
}

/// The timing file of the cell (or ensemble) named `name`.
pub fn timings_path(root: &Path, name: &str) -> PathBuf {
    root.join("timings").join(format!("{name}.csv"))
}

/// Every timing row of a study folder (`timings/*.csv`, by file name).
pub fn read_timings(dir: &Path) -> Result<Vec<Timing>, EmpiricalError> {
    let mut rows = Vec::new();
    for p in files_in(&dir.join("timings"), "csv") {
        rows.extend(read_csv::<Timing>(&p)?);
    }
    Ok(rows)
}

/// The file of every design's hard test images and how they were defined ([`HardSubset`]),
/// written last by the preparation.
pub const HARD_SUBSETS_FILE: &str = "hard_subsets.json";

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
    /// The confusable leaves of this design (with an ensemble on a design without its own hard
    /// images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusable: Option<ConfusableLeaves>,
    /// The leaves a fine-trained ensemble confuses most (`hard.ensemble.mirror_level`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<ConfusableLeaves>,
    /// Whether the subsets were chosen on the validation images (no test label used), rather
    /// than on the test images they are scored on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_validation: bool,
}

/// The leaves that the coarse-trained ensemble confuses most, whose test images form a design's
/// confusable subset.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfusableLeaves {
    /// How the leaves were chosen.
    pub definition: String,
    /// The leaves (names), most confused first, with the ensemble's error on each.
    pub leaves: Vec<(String, f64)>,
    /// Test images of these leaves.
    pub images: usize,
    /// All test images.
    pub total: usize,
}

/// One ensemble member's output: its test-set softmax probabilities and training epochs
/// (`ensemble/members.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberOutput {
    /// The member's seed.
    pub seed: u64,
    /// Softmax probabilities of every test image (of the target classes; for a mirror member,
    /// its summed head's).
    pub probs: Array2<f32>,
    /// The same for every validation image (with `data.validation_per_leaf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_probs: Option<Array2<f32>>,
    /// Its training epochs.
    pub epochs: Vec<EpochRecord>,
}

/// The file holding the ensemble's outputs.
pub const MEMBERS_FILE: &str = "ensemble/members.json";

/// The file holding the mirror ensemble's outputs (`hard.ensemble.mirror_level`).
pub const MIRROR_FILE: &str = "ensemble/mirror.json";

/// The file of every design's test subsets (test-image indices by subset name).
pub const SUBSETS_FILE: &str = "subsets.json";

/// One design's test subsets, as written to [`SUBSETS_FILE`]: the test images of each.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DesignSubsets {
    /// The design.
    pub design: String,
    /// Test-image indices by subset name (one of [`super::config::SUBSETS`] but "all").
    pub subsets: std::collections::BTreeMap<String, Vec<u32>>,
    /// The target class of every test image, in test-set order: what the cells' saved
    /// predictions are scored against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_targets: Vec<u32>,
    /// The leaves' names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaf_names: Vec<String>,
    /// The target-only ensemble's error on each leaf's validation images (empty without a
    /// validation split): how hard coarse training finds each leaf, measured off the test set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaf_validation_error: Vec<f64>,
}

/// What a design trained on, as written to `designs.json`: its training images and the epochs
/// of each phase (scaled with `train.equal_steps`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DesignInfo {
    /// The design's name.
    pub design: String,
    /// Training images per leaf (designs of `data.sizes`; none otherwise).
    pub per_leaf: Option<usize>,
    /// Training images.
    pub train_images: usize,
    /// Pretraining epochs.
    pub pretrain_epochs: usize,
    /// Fine-tuning epochs.
    pub finetune_epochs: usize,
    /// Epochs of the baseline and of the direct arm (the whole schedule).
    pub baseline_epochs: usize,
}

/// The file of the designs' records ([`DesignInfo`]) in the study folder.
pub const DESIGNS_FILE: &str = "designs.json";

/// What a cell records about its training labels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelSummary {
    /// Classes.
    pub classes: usize,
    /// Classes that label at least one image.
    pub used_classes: usize,
    /// Every class nested inside one target class.
    pub aligned: bool,
    /// Fraction of images whose class's majority target is their own target.
    pub purity: f64,
}

impl LabelSummary {
    /// The target labels themselves (`classes` target classes).
    pub fn targets(classes: usize) -> Self {
        LabelSummary {
            classes,
            used_classes: classes,
            aligned: true,
            purity: 1.0,
        }
    }
}

/// The file, in the study's preparation folder, holding the label sets of `design`.
pub fn labels_file(design: &str) -> String {
    format!("labels/{design}.json")
}
