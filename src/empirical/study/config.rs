//! The TOML configuration of an empirical study (`experiments/empirical/*.toml`): the data, the
//! network, the training recipe, the pretraining granularities, the hard-sample designs and the
//! seeds. Every field is documented here; [`StudyConfig::validate`] names the field at fault.

use serde::{Deserialize, Serialize};

use crate::config::{InvalidField, Validate};
use crate::empirical::data::config::level_names;
use crate::empirical::data::{Augment, DataConfig};
use crate::empirical::model::ModelConfig;
use crate::empirical::optim::{LrSchedule, SgdConfig};
use crate::empirical::probe::ProbeConfig;
use crate::hierarchy::Relabeling;

/// The embedded default study: the protocol on the synthetic multi-view images
/// (`experiments/empirical/synthetic.toml`), what `empirical` runs with no arguments.
pub const SYNTHETIC_TOML: &str = include_str!("../../../experiments/empirical/synthetic.toml");

/// A whole study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyConfig {
    /// Study name (used for the results folder by default).
    pub name: String,
    /// Seeds of the evaluated networks (initialisation, augmentation, batch order); every
    /// condition runs once per seed.
    pub seeds: Vec<u64>,
    /// The images.
    pub data: DataConfig,
    /// The network.
    pub model: ModelConfig,
    /// The training recipe.
    pub train: TrainConfig,
    /// The pretraining label granularities (the baseline is added automatically).
    #[serde(rename = "granularity")]
    pub granularities: Vec<GranularitySpec>,
    /// How images are embedded for the k-means granularities.
    #[serde(default)]
    pub embedding: EmbeddingConfig,
    /// Hard-sample designs.
    #[serde(default)]
    pub hard: HardConfig,
    /// The comparison the study is run to decide, named before it runs (see
    /// [`super::reports::comparisons`]); every other comparison is reported with a Holm-adjusted p-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisConfig>,
}

/// What a study is run to decide.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// The primary comparison: decided "helps / hurts / no detectable difference" from its 95%
    /// interval over seeds, with no correction.
    pub primary: Comparison,
}

/// One comparison with the baseline: a design, a condition, a readout and a test subset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    /// The design (default: the first of the study, e.g. "balanced").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub design: String,
    /// The condition, e.g. "fine-25 direct".
    pub condition: String,
    /// The readout.
    pub readout: Readout,
    /// The test subset: "all" or the name of one in `subsets.json` (default "all").
    #[serde(default = "all_subset")]
    pub subset: String,
}

fn all_subset() -> String {
    "all".to_string()
}

/// The training recipe (shared by every network of the study).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Images per SGD step.
    pub batch_size: usize,
    /// Pretraining epochs.
    pub pretrain_epochs: usize,
    /// Fine-tuning epochs. The baseline trains the target labels from scratch for
    /// `pretrain_epochs + finetune_epochs` epochs with the pretraining schedule.
    pub finetune_epochs: usize,
    /// Pretraining (and baseline) learning-rate schedule.
    pub pretrain_lr: LrSchedule,
    /// Fine-tuning learning-rate schedule (the whole network, with a new head).
    pub finetune_lr: LrSchedule,
    /// SGD momentum, Nesterov, weight decay.
    #[serde(default)]
    pub sgd: SgdConfig,
    /// Label smoothing of the cross-entropy in `[0, 1)`.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Random crop (zero padding) and horizontal flip of training images.
    #[serde(default = "Augment::cifar")]
    pub augment: Augment,
    /// The linear probe on frozen pretrained features.
    #[serde(default)]
    pub probe: ProbeConfig,
    /// Also run the direct arm of every granularity: a network trained on its labels for the
    /// baseline's whole schedule (`pretrain_epochs + finetune_epochs`, the pretraining
    /// schedule), read out with the summed head and the linear probe (condition `NAME direct`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct: bool,
    /// Equal SGD steps across `data.sizes` (Chen et al. 2019): the configured epochs are those
    /// at `data.train_per_leaf` images per leaf, and a design with n per leaf trains
    /// `round(epochs * train_per_leaf / n)` epochs (at least 1) in every phase.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub equal_steps: bool,
    /// What keys the batch order and augmentation of a training phase: `phase` (the seed and
    /// the phase's name: arms draw different batches) or `seed` (the seed and the epoch of the
    /// cell's schedule: every arm of a seed sees the same batches in the same epochs, common
    /// random numbers for the paired comparisons; the draws never depend on labels).
    #[serde(default, skip_serializing_if = "BatchKeying::is_phase")]
    pub batch_keying: BatchKeying,
    /// The head fine-tuning starts from: `fresh` (random) or `probe` (the linear probe's
    /// weights on the frozen features, then the whole network trained: LP-FT).
    #[serde(default, skip_serializing_if = "FinetuneHead::is_fresh")]
    pub finetune_head: FinetuneHead,
    /// Also probe every network's frozen features for the leaf labels and score how well they
    /// tell the leaves apart inside their own target class ([`super::results::FineProbe`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fine_probe: bool,
    /// Readouts of each pretrained network: any of "finetune", "linear_probe", "summed_head"
    /// (the summed head only exists for labels nested inside the target classes; "mapped_head"
    /// is accepted as its old name).
    #[serde(default = "default_readouts")]
    pub readouts: Vec<Readout>,
}

/// See [`TrainConfig::batch_keying`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchKeying {
    /// The seed and the phase's name.
    #[default]
    Phase,
    /// The seed and the epoch of the cell's schedule.
    Seed,
}

impl BatchKeying {
    fn is_phase(&self) -> bool {
        *self == BatchKeying::Phase
    }
}

/// See [`TrainConfig::finetune_head`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinetuneHead {
    /// A freshly initialised head.
    #[default]
    Fresh,
    /// The linear probe's head (LP-FT).
    Probe,
}

impl FinetuneHead {
    fn is_fresh(&self) -> bool {
        *self == FinetuneHead::Fresh
    }
}

fn default_readouts() -> Vec<Readout> {
    vec![Readout::Finetune, Readout::LinearProbe, Readout::SummedHead]
}

pub use crate::readout::Readout;
use crate::readout::Reads;

/// One pretraining granularity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GranularitySpec {
    /// Name in tables and files.
    pub name: String,
    /// How the labels are made.
    pub labels: LabelSpec,
    /// Whether this granularity also runs the direct arm (default: `train.direct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<bool>,
    /// Whether this granularity runs its pretrained arm (pretraining, then the readouts of
    /// `train.readouts`; default true). Off: only the direct arm (which must then run), e.g.
    /// where a second architecture repeats only the primary comparison.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub pretrained: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(v: &bool) -> bool {
    *v
}

impl GranularitySpec {
    /// Whether the study runs this granularity's direct arm.
    pub fn runs_direct(&self, train: &TrainConfig) -> bool {
        self.direct.unwrap_or(train.direct)
    }
}

/// How pretraining labels are made: any [`Relabeling`] of the hierarchy (`level`,
/// `merge_within`, `random_aligned`, `misaligned`, `split_finer`, `per_sample`), or labels made
/// from the data ([`DataLabels`]: k-means clusters of image embeddings, groups of target
/// classes). Written as one inline table with a `kind`, e.g. `{ kind = "level", level = 1 }` or
/// `{ kind = "kmeans_within", k = 5 }`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LabelSpec {
    /// A relabeling of the hierarchy.
    Hierarchy(Relabeling),
    /// Labels made from the data.
    Data(DataLabels),
}

/// Pretraining labels made from the data rather than from the hierarchy alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataLabels {
    /// k-means on image embeddings inside each class of `level` (aligned when `level` is at or
    /// below the target level): `k` clusters per class.
    KmeansWithin {
        /// Clusters per class of `level`.
        k: usize,
        /// The hierarchy level whose classes are clustered separately (default: the target).
        #[serde(default)]
        level: Option<usize>,
    },
    /// k-means on image embeddings over the whole training set (ignores the hierarchy, so its
    /// clusters may cross target classes): `k` clusters.
    KmeansGlobal {
        /// Number of clusters.
        k: usize,
    },
    /// Coarser than the target: the target classes merged at random into `groups` groups
    /// (like pretraining on ImageNet-21k's 38-class level).
    Coarser {
        /// Number of labels (fewer than the target classes).
        groups: usize,
    },
}

impl DataLabels {
    /// The `kind`s of these labels.
    const KINDS: [&'static str; 3] = ["kmeans_within", "kmeans_global", "coarser"];
}

impl<'de> Deserialize<'de> for LabelSpec {
    /// Dispatches on `kind`: the data's kinds to [`DataLabels`], every other to [`Relabeling`]
    /// (whose error lists its kinds; the data's are added to it).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = toml::Value::deserialize(d)?;
        let kind = v.get("kind").and_then(toml::Value::as_str).unwrap_or("");
        if DataLabels::KINDS.contains(&kind) {
            DataLabels::deserialize(v)
                .map(LabelSpec::Data)
                .map_err(|e| D::Error::custom(e.message()))
        } else {
            Relabeling::deserialize(v)
                .map(LabelSpec::Hierarchy)
                .map_err(|e| {
                    let m = e.message();
                    if m.starts_with("unknown variant") {
                        // serde's list of the kinds, with the data's kinds added to it
                        let data: Vec<String> =
                            DataLabels::KINDS.iter().map(|k| format!("`{k}`")).collect();
                        D::Error::custom(format!("{m}, {}", data.join(", ")))
                    } else {
                        D::Error::custom(m)
                    }
                })
        }
    }
}

impl LabelSpec {
    /// The classes of hierarchy level `level`.
    pub fn level(level: usize) -> Self {
        LabelSpec::Hierarchy(Relabeling::Level { level })
    }

    /// True for the k-means kinds (they need embeddings).
    pub fn needs_embeddings(&self) -> bool {
        match self {
            LabelSpec::Data(DataLabels::KmeansWithin { .. } | DataLabels::KmeansGlobal { .. }) => {
                true
            }
            LabelSpec::Data(DataLabels::Coarser { .. }) | LabelSpec::Hierarchy(_) => false,
        }
    }

    /// The most pretraining classes these labels can have on `samples` training images with
    /// `leaves` leaves and `targets` target classes (for the memory guard).
    pub fn max_classes(&self, samples: usize, leaves: usize, targets: usize) -> usize {
        match self {
            LabelSpec::Hierarchy(Relabeling::PerSample) => samples,
            LabelSpec::Hierarchy(Relabeling::SplitFiner { splits }) => leaves * splits,
            LabelSpec::Hierarchy(Relabeling::RandomAligned { per_target }) => targets * per_target,
            LabelSpec::Data(DataLabels::KmeansWithin { k, .. }) => leaves.max(targets) * k,
            LabelSpec::Hierarchy(
                Relabeling::Level { .. }
                | Relabeling::MergeWithin { .. }
                | Relabeling::Misaligned { .. },
            )
            | LabelSpec::Data(DataLabels::KmeansGlobal { .. } | DataLabels::Coarser { .. }) => {
                leaves.max(targets)
            }
        }
    }

    /// The family this spec belongs to: one line per family in the granularity figure.
    pub fn family(&self) -> &'static str {
        match self {
            LabelSpec::Hierarchy(Relabeling::Level { .. } | Relabeling::MergeWithin { .. })
            | LabelSpec::Data(DataLabels::Coarser { .. }) => "manual hierarchy",
            LabelSpec::Hierarchy(Relabeling::RandomAligned { .. }) => "random, aligned",
            LabelSpec::Hierarchy(Relabeling::Misaligned { .. }) => "random, misaligned",
            LabelSpec::Hierarchy(Relabeling::SplitFiner { .. } | Relabeling::PerSample) => {
                "finer than leaves"
            }
            LabelSpec::Data(DataLabels::KmeansWithin { .. }) => "k-means within class",
            LabelSpec::Data(DataLabels::KmeansGlobal { .. }) => "k-means global",
        }
    }
}

/// Which network embeds the images for k-means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingSource {
    /// The first model of the coarse-only ensemble (trained on the target labels with a seed
    /// not used elsewhere): a trained encoder of these images.
    Ensemble,
    /// A randomly initialised network (seed `embedding.seed`), frozen: label-free features.
    RandomNet,
}

/// Embeddings for the k-means granularities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// The encoder.
    pub source: EmbeddingSource,
    /// Lloyd iterations of k-means.
    pub iters: usize,
    /// Seed of k-means (and of the random network).
    pub seed: u64,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            source: EmbeddingSource::Ensemble,
            iters: 30,
            seed: 7000,
        }
    }
}

/// The hard-sample designs of the study.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HardConfig {
    /// (a) Test images that an ensemble of target-only networks gets wrong.
    pub ensemble: Option<EnsembleConfig>,
    /// (b) The rare-subclass design.
    pub rare_subclass: Option<RareSubclassConfig>,
}

/// An ensemble of networks trained on the target labels only, with seeds used nowhere else; a
/// test image is *hard* when the ensemble (mean of the members' softmax outputs) misclassifies it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleConfig {
    /// Seeds of the members (disjoint from `seeds`).
    pub seeds: Vec<u64>,
    /// Training epochs of each member (default: the baseline's).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// How many leaves (finest classes) form the *confusable* subset: the leaves whose test
    /// images the ensemble misclassifies most often (see [`super::hard`]). Default: a fifth of
    /// the leaves, at least one; more than the leaves with test images means all of them (the
    /// definition in `hard_subsets.json` states the number used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusable_leaves: Option<usize>,
    /// Train the members on their own draw of `data.train_per_leaf` images per leaf, disjoint
    /// from every design's training images (needs `data.validation_per_leaf > 0`). Off: the
    /// members train on the balanced design's images.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disjoint: bool,
    /// Also train the members on the labels of this (finer) level, with the same seeds and
    /// images, and choose the leaves *they* confuse most (read out with the summed head): the
    /// mirror subset, where the theory predicts no symmetric gain for the baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_level: Option<usize>,
}

/// The rare-subclass design: inside each target class one leaf (chosen at random with
/// `data.subset_seed`) keeps all its training images and the others keep `rare_per_leaf`; hard
/// test images are those of the rare leaves, easy ones those of the dominant leaves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RareSubclassConfig {
    /// Training images kept per rare leaf.
    pub rare_per_leaf: usize,
    /// Names of the granularities (from `granularity`) also run in this design (the baseline
    /// always is).
    pub granularities: Vec<String>,
}

fn field(f: &str, m: impl Into<String>) -> InvalidField {
    InvalidField::new(f, m)
}

fn check_schedule(name: &str, s: &LrSchedule, epochs: usize) -> Result<(), InvalidField> {
    let (lr, warm) = match s {
        LrSchedule::Cosine { lr, warmup_epochs }
        | LrSchedule::Constant { lr, warmup_epochs }
        | LrSchedule::Step {
            lr, warmup_epochs, ..
        } => (*lr, *warmup_epochs),
    };
    if !(lr.is_finite() && lr > 0.0) {
        return Err(field(
            &format!("{name}.lr"),
            format!("must be positive, got {lr}"),
        ));
    }
    if epochs > 0 && warm >= epochs {
        return Err(field(
            &format!("{name}.warmup_epochs"),
            format!("{warm} warm-up epochs leave none of the {epochs} epochs"),
        ));
    }
    Ok(())
}

/// Replaces a level given by name at `v` (field `f`) with its index in `names`.
fn level_by_name(
    f: &str,
    v: &mut toml::Value,
    names: Option<&[String]>,
) -> Result<(), InvalidField> {
    let toml::Value::String(name) = v else {
        return Ok(());
    };
    let Some(names) = names else {
        return Err(field(
            f,
            format!(
                "level `{name}`: this source's level names are read with its data; give the \
                 level's index (0 = coarsest; `empirical inspect` prints each level's index and name)"
            ),
        ));
    };
    match names.iter().position(|n| n == name) {
        Some(i) => {
            *v = toml::Value::Integer(i as i64);
            Ok(())
        }
        None => Err(field(
            f,
            format!(
                "no level `{name}`; the levels are {}",
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("{i} `{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

impl Validate for StudyConfig {
    /// Levels may be given by name where the source's level names are known from the config
    /// (iNaturalist's ranks, CIFAR-100's `coarse` / `fine`, BREEDS' and the synthetic data's
    /// `superclass` / `subclass`, WordNet's `depthD` / `leaf`): `data.target_level`, a
    /// granularity's `level`, `hard.ensemble.mirror_level`. They are read as their indices.
    fn normalize(doc: &mut toml::Value) -> Result<(), InvalidField> {
        let Some(root) = doc.as_table_mut() else {
            return Ok(());
        };
        let names = root
            .get("data")
            .and_then(toml::Value::as_table)
            .and_then(level_names);
        let names = names.as_deref();
        if let Some(v) = root
            .get_mut("data")
            .and_then(|d| d.as_table_mut())
            .and_then(|d| d.get_mut("target_level"))
        {
            level_by_name("data.target_level", v, names)?;
        }
        if let Some(gs) = root.get_mut("granularity").and_then(|g| g.as_array_mut()) {
            for (i, g) in gs.iter_mut().enumerate() {
                if let Some(v) = g
                    .get_mut("labels")
                    .and_then(|l| l.as_table_mut())
                    .and_then(|l| l.get_mut("level"))
                {
                    level_by_name(&format!("granularity[{i}].labels.level"), v, names)?;
                }
            }
        }
        if let Some(v) = root
            .get_mut("hard")
            .and_then(|h| h.get_mut("ensemble"))
            .and_then(|e| e.as_table_mut())
            .and_then(|e| e.get_mut("mirror_level"))
        {
            level_by_name("hard.ensemble.mirror_level", v, names)?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), InvalidField> {
        if self.name.trim().is_empty() {
            return Err(field("name", "must not be empty"));
        }
        if self.seeds.is_empty() {
            return Err(field("seeds", "needs at least one seed"));
        }
        let mut s = self.seeds.clone();
        s.sort_unstable();
        s.dedup();
        if s.len() != self.seeds.len() {
            return Err(field("seeds", "seeds must be distinct"));
        }
        self.model
            .validate()
            .map_err(|e| field("model", e.to_string()))?;
        let t = &self.train;
        if t.batch_size == 0 {
            return Err(field("train.batch_size", "must be at least 1"));
        }
        if t.pretrain_epochs == 0 {
            return Err(field("train.pretrain_epochs", "must be at least 1"));
        }
        if let Some(r) = t.readouts.iter().find(|r| r.reads() == Reads::FineTuned) {
            if t.finetune_epochs == 0 {
                return Err(field(
                    "train.finetune_epochs",
                    format!("must be at least 1 when the readouts include {}", r.name()),
                ));
            }
        }
        check_schedule("train.pretrain_lr", &t.pretrain_lr, t.pretrain_epochs)?;
        let d = &self.data;
        if d.sizes.contains(&0) {
            return Err(field(
                "data.sizes",
                "every size must be at least 1 image per leaf",
            ));
        }
        let mut sizes = d.sizes.clone();
        sizes.sort_unstable();
        sizes.dedup();
        if sizes.len() != d.sizes.len() {
            return Err(field("data.sizes", "sizes must be distinct"));
        }
        if t.equal_steps && d.train_per_leaf == 0 {
            return Err(field(
                "train.equal_steps",
                "needs data.train_per_leaf > 0 (the size at which the configured epochs hold)",
            ));
        }
        check_schedule("train.finetune_lr", &t.finetune_lr, t.finetune_epochs)?;
        t.sgd
            .validate()
            .map_err(|e| field("train.sgd", e.to_string()))?;
        t.probe
            .validate()
            .map_err(|e| field("train.probe", e.to_string()))?;
        if !(0.0..1.0).contains(&t.label_smoothing) {
            return Err(field(
                "train.label_smoothing",
                format!("must be in [0, 1), got {}", t.label_smoothing),
            ));
        }
        if t.readouts.is_empty() || t.readouts.contains(&Readout::Scratch) {
            return Err(field(
                "train.readouts",
                "list some of finetune, linear_probe, summed_head (scratch is the baseline's)",
            ));
        }
        let mut names: Vec<&str> = self.granularities.iter().map(|g| g.name.as_str()).collect();
        for (i, g) in self.granularities.iter().enumerate() {
            let f = format!("granularity[{i}]");
            if g.name.trim().is_empty() || g.name == "baseline" {
                return Err(field(
                    &format!("{f}.name"),
                    "must be non-empty and not 'baseline'",
                ));
            }
            let zero = match g.labels {
                LabelSpec::Hierarchy(
                    Relabeling::MergeWithin { groups } | Relabeling::Misaligned { groups },
                )
                | LabelSpec::Data(DataLabels::Coarser { groups }) => groups == 0,
                LabelSpec::Hierarchy(Relabeling::RandomAligned { per_target }) => per_target == 0,
                LabelSpec::Hierarchy(Relabeling::SplitFiner { splits }) => splits == 0,
                LabelSpec::Data(
                    DataLabels::KmeansWithin { k, .. } | DataLabels::KmeansGlobal { k },
                ) => k == 0,
                LabelSpec::Hierarchy(Relabeling::Level { .. } | Relabeling::PerSample) => false,
            };
            if zero {
                return Err(field(&format!("{f}.labels"), "counts must be at least 1"));
            }
            if !g.pretrained && !g.runs_direct(t) {
                return Err(field(
                    &format!("{f}.pretrained"),
                    "false leaves the granularity no arm: set direct = true (or train.direct)",
                ));
            }
        }
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(field("granularity", "granularity names must be distinct"));
        }
        if self.data.size == 0 {
            return Err(field("data.size", "must be at least 1"));
        }
        let gb = self.data.memory_budget_gb;
        if !(gb.is_finite() && gb >= 0.0) {
            return Err(field(
                "data.memory_budget_gb",
                format!("must be a number of GB >= 0 (0 = the memory available), got {gb}"),
            ));
        }
        self.data.validate_source()?;
        if let Some(e) = &self.hard.ensemble {
            if e.seeds.is_empty() {
                return Err(field("hard.ensemble.seeds", "needs at least one seed"));
            }
            if let Some(x) = e.seeds.iter().find(|x| self.seeds.contains(x)) {
                return Err(field(
                    "hard.ensemble.seeds",
                    format!("seed {x} is also a study seed; the ensemble must use unused seeds"),
                ));
            }
            if let Some(n) = e.epochs {
                check_schedule(
                    "hard.ensemble.epochs (with train.pretrain_lr)",
                    &t.pretrain_lr,
                    n,
                )?;
                if n == 0 {
                    return Err(field("hard.ensemble.epochs", "must be at least 1"));
                }
            }
            if e.confusable_leaves == Some(0) {
                return Err(field(
                    "hard.ensemble.confusable_leaves",
                    "must be at least 1",
                ));
            }
        }
        if self
            .granularities
            .iter()
            .any(|g| g.labels.needs_embeddings())
            && self.embedding.source == EmbeddingSource::Ensemble
            && self.hard.ensemble.is_none()
        {
            return Err(field(
                "embedding.source",
                "'ensemble' needs [hard.ensemble]; use 'random_net' or add the ensemble",
            ));
        }
        if let Some(r) = &self.hard.rare_subclass {
            if r.rare_per_leaf == 0 {
                return Err(field(
                    "hard.rare_subclass.rare_per_leaf",
                    "must be at least 1",
                ));
            }
            for n in &r.granularities {
                if !self.granularities.iter().any(|g| &g.name == n) {
                    return Err(field(
                        "hard.rare_subclass.granularities",
                        format!("'{n}' is not the name of a [[granularity]]"),
                    ));
                }
            }
        }
        if d.draw_per_seed && d.validation_per_leaf == 0 {
            return Err(field(
                "data.draw_per_seed",
                "needs data.validation_per_leaf > 0 (the split that fixes the pool it draws from)",
            ));
        }
        if let Some(e) = &self.hard.ensemble {
            if e.disjoint && (d.validation_per_leaf == 0 || d.train_per_leaf == 0) {
                return Err(field(
                    "hard.ensemble.disjoint",
                    "needs data.validation_per_leaf > 0 and data.train_per_leaf > 0",
                ));
            }
            if e.mirror_level.is_some_and(|l| l <= d.target_level) {
                return Err(field(
                    "hard.ensemble.mirror_level",
                    format!("must be finer than data.target_level ({})", d.target_level),
                ));
            }
        }
        if let Some(a) = &self.analysis {
            self.check_comparison("analysis.primary", &a.primary)?;
        }
        Ok(())
    }
}

impl StudyConfig {
    /// The designs of the study by name, each with the granularities it runs, in the order
    /// they run: `balanced` (every granularity; with `data.sizes`, one such design per size
    /// instead, `n50`, `n100`, ...: [`size_design`]) and, with `[hard.rare_subclass]`,
    /// `rare_subclass` (its granularities). The config alone decides them; the designs with
    /// their images are `super::designs::designs`.
    pub fn design_plan(&self) -> Vec<(String, Vec<String>)> {
        let all: Vec<String> = self.granularities.iter().map(|g| g.name.clone()).collect();
        let mut plan: Vec<(String, Vec<String>)> = if self.data.sizes.is_empty() {
            vec![("balanced".to_string(), all)]
        } else {
            self.data
                .sizes
                .iter()
                .map(|&n| (size_design(n), all.clone()))
                .collect()
        };
        if let Some(r) = &self.hard.rare_subclass {
            plan.push(("rare_subclass".to_string(), r.granularities.clone()));
        }
        plan
    }

    /// The names of the conditions the study runs besides the baseline, each with the
    /// readouts it reports.
    pub fn conditions(&self) -> Vec<(String, Vec<Readout>)> {
        let t = &self.train;
        let frozen: Vec<Readout> = t
            .readouts
            .iter()
            .copied()
            .filter(|r| r.reads() == Reads::Frozen)
            .collect();
        let mut out = Vec::new();
        for g in &self.granularities {
            if g.pretrained {
                out.push((g.name.clone(), t.readouts.clone()));
            }
            if g.runs_direct(t) {
                out.push((format!("{} direct", g.name), frozen.clone()));
            }
        }
        out
    }

    /// Checks that `c` names a comparison the study makes (field `f`).
    fn check_comparison(&self, f: &str, c: &Comparison) -> Result<(), InvalidField> {
        let conditions = self.conditions();
        let Some((_, readouts)) = conditions.iter().find(|(n, _)| *n == c.condition) else {
            let names: Vec<&str> = conditions.iter().map(|(n, _)| n.as_str()).collect();
            return Err(field(
                &format!("{f}.condition"),
                format!(
                    "'{}' is not a condition of the study (its conditions: {})",
                    c.condition,
                    names.join(", ")
                ),
            ));
        };
        if !readouts.contains(&c.readout) {
            return Err(field(
                &format!("{f}.readout"),
                format!(
                    "'{}' is not a readout of '{}' in this study",
                    c.readout.name(),
                    c.condition
                ),
            ));
        }
        if !c.design.is_empty() {
            let plan = self.design_plan();
            if !plan.iter().any(|(d, _)| *d == c.design) {
                let names: Vec<&str> = plan.iter().map(|(d, _)| d.as_str()).collect();
                return Err(field(
                    &format!("{f}.design"),
                    format!(
                        "no design '{}' (the study's designs: {})",
                        c.design,
                        names.join(", ")
                    ),
                ));
            }
        }
        if !SUBSETS.contains(&c.subset.as_str()) {
            return Err(field(
                &format!("{f}.subset"),
                format!("no subset '{}' (one of: {})", c.subset, SUBSETS.join(", ")),
            ));
        }
        Ok(())
    }
}

/// The names of the test subsets a comparison can be made on (`analysis.primary.subset`; the
/// subsets of `subsets.json` and all test images).
pub const SUBSETS: [&str; 5] = ["all", "easy", "hard", "confusable", "mirror_confusable"];

/// The name of the design with `n` training images per leaf (`data.sizes`).
pub fn size_design(n: usize) -> String {
    format!("n{n}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    #[test]
    fn shipped_configs_load() {
        for (name, text) in [
            ("synthetic", SYNTHETIC_TOML),
            (
                "quick",
                include_str!("../../../experiments/empirical/quick.toml"),
            ),
            (
                "full",
                include_str!("../../../experiments/empirical/full.toml"),
            ),
            (
                "converged",
                include_str!("../../../experiments/empirical/converged.toml"),
            ),
        ] {
            let c: StudyConfig = load_str(text, name, &[]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.name, name);
        }
    }

    /// Levels by name where the source names them; a wrong name lists the levels, a folder's
    /// names (read with its data) ask for the index.
    #[test]
    fn levels_by_name() {
        let c: StudyConfig = load_str(
            SYNTHETIC_TOML,
            "synthetic",
            &[
                "data.target_level=\"superclass\"".to_string(),
                "granularity=[{name=\"x\", labels={kind=\"level\", level=\"subclass\"}}]"
                    .to_string(),
            ],
        )
        .unwrap();
        assert_eq!(c.data.target_level, 0);
        assert!(matches!(
            c.granularities[0].labels,
            LabelSpec::Hierarchy(Relabeling::Level { level: 1 })
        ));
        let e = load_str::<StudyConfig>(
            SYNTHETIC_TOML,
            "synthetic",
            &["data.target_level=\"order\"".to_string()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("data.target_level")
                && e.contains("the levels are 0 `superclass`, 1 `subclass`"),
            "{e}"
        );
        let inat = include_str!("../../../experiments/empirical/folder.toml")
            .replace("source = \"folder\"", "source = \"inat2021\"");
        let c: StudyConfig =
            load_str(&inat, "inat", &["data.target_level=\"order\"".to_string()]).unwrap();
        assert_eq!(c.data.target_level, 3);
        let e = load_str::<StudyConfig>(
            include_str!("../../../experiments/empirical/folder.toml"),
            "folder",
            &["data.target_level=\"superclass\"".to_string()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("give the level's index"), "{e}");
    }

    /// A label set given as a word: every kind listed (the data's too), nothing else, and
    /// balanced parentheses.
    #[test]
    fn label_kinds_are_listed_when_labels_are_a_word() {
        let e = load_str::<StudyConfig>(
            SYNTHETIC_TOML,
            "synthetic",
            &["granularity=[{name=\"x\", labels=\"level\"}]".to_string()],
        )
        .unwrap_err()
        .to_string();
        for k in [
            "`level`",
            "`merge_within`",
            "`per_sample`",
            "`kmeans_within`",
            "`kmeans_global`",
            "`coarser`",
        ] {
            assert!(e.contains(k), "{k}: {e}");
        }
        assert!(!e.contains("`granularity.labels`"), "{e}");
        assert!(
            e.contains("kind `level` also needs its fields (missing field `level`)"),
            "{e}"
        );
        assert_eq!(e.matches('(').count(), e.matches(')').count(), "{e}");
        let e = load_str::<StudyConfig>(
            SYNTHETIC_TOML,
            "synthetic",
            &["granularity=[{name=\"x\", labels={kind=\"levels\"}}]".to_string()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown variant `levels`") && e.contains("`coarser`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            ("seeds=[]", "seeds"),
            ("seeds=[1,1]", "seeds"),
            ("train.batch_size=0", "train.batch_size"),
            ("train.label_smoothing=1.5", "train.label_smoothing"),
            ("train.pretrain_lr.lr=-1", "train.pretrain_lr.lr"),
            ("train.readouts=[\"scratch\"]", "train.readouts"),
            ("hard.ensemble.seeds=[0]", "hard.ensemble.seeds"),
            (
                "hard.ensemble={ seeds = [1000], confusable_leaves = 0 }",
                "hard.ensemble.confusable_leaves",
            ),
            (
                "hard.rare_subclass.granularities=[\"nope\"]",
                "hard.rare_subclass",
            ),
            ("train.bogus=1", "train"),
            ("data.train_per_lef=3", "data"),
            ("data.memory_budget_gb=-1", "data.memory_budget_gb"),
            ("data.memory_budget_gb=nan", "data.memory_budget_gb"),
            (
                "data.synthetic.common_strength=[9.0, 1.0]",
                "data.synthetic",
            ),
        ];
        for (set, want) in cases {
            let e = load_str::<StudyConfig>(SYNTHETIC_TOML, "synthetic", &[set.to_string()])
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{set}: {e}");
        }
    }
}
