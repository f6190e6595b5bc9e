//! The `[data]` section of a study config: where the images come from ([`DataSource`]) and
//! which of them a study keeps ([`DataConfig`]), with what each source is: whether it is read
//! through an image index, whether it reads a folder, and the level names it has before its
//! data are read. Every property of a source is one exhaustive `match` here, so a new source is
//! a variant the compiler walks through (with its loader, and its arm in
//! [`super::load::open`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::load::breeds::BreedsConfig;
use super::load::inat::{InatConfig, LEVELS as INAT_LEVELS};
use super::load::synthetic::SyntheticConfig;
use super::load::wordnet::WordnetConfig;
use crate::config::InvalidField;

/// Where the images come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The official CIFAR-100 binary release (`train.bin`, `test.bin`, optionally gzipped, and
    /// the label-name files) in `data.path`; an empty path reads the folder from `--data` or
    /// the environment variable `GRANULARITY_CIFAR100_DIR`.
    Cifar100,
    /// An image folder with `hierarchy.csv`, `train/LEAF/`, `test/LEAF/` (see the README) in
    /// `data.path` (or `--data`), images resized to `data.size`.
    Folder,
    /// The embedded synthetic multi-view images (no download), generated with `data.synthetic`.
    /// Their test set has the theory's easy and hard images, the balanced design's hard subset.
    Synthetic,
    /// iNaturalist 2021 in its official layout (`train.json` or `train_mini.json`, `val.json`
    /// and the image folders) in `data.path`; seven taxonomic levels, kingdom to species
    /// (settings in `data.inat`).
    #[serde(rename = "inat2021")]
    Inat2021,
    /// ImageNet-style folders named by WordNet ids (`train/nXXXXXXXX/`, `val/nXXXXXXXX/`) in
    /// `data.path`, with the hierarchy of WordNet 3.0's `data.noun` cut at depths
    /// (`data.wordnet`).
    Wordnet,
    /// A BREEDS task (entity13, entity30, living17, nonliving26) over ImageNet-style folders in
    /// `data.path`, from the BREEDS files (`data.breeds`).
    Breeds,
}

/// The data of a study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The source: "cifar100", "folder", "synthetic", "inat2021", "wordnet" or "breeds".
    pub source: DataSource,
    /// The dataset folder (every source but synthetic); empty: from `--data` (or, for
    /// CIFAR-100, the environment).
    #[serde(default)]
    pub path: String,
    /// Image side for `folder`, `inat2021`, `wordnet` and `breeds` (images are center-cropped
    /// and resized to `size x size`).
    #[serde(default = "default_size")]
    pub size: u32,
    /// The generator's settings for `synthetic`.
    #[serde(default)]
    pub synthetic: SyntheticConfig,
    /// Keep at most this many training images per leaf class (0 = all), chosen at random with
    /// `subset_seed`: a small-data regime like iNaturalist 2021 "mini" (50 per species).
    #[serde(default)]
    pub train_per_leaf: usize,
    /// Keep at most this many test images per leaf class (0 = all).
    #[serde(default)]
    pub test_per_leaf: usize,
    /// Keep only the images under these classes of `target_level` (their names; empty = all),
    /// in both splits, before the per-leaf subsets; class indices are renumbered at every level
    /// (5 CIFAR-100 superclasses: 5 targets, 25 leaves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_classes: Vec<String>,
    /// The data-size axis: training images per leaf of each balanced design (`n50`, `n100`,
    /// ...; they replace the single balanced design; empty = off). Each is drawn from the same
    /// per-leaf order as `train_per_leaf`, so smaller sets are nested in larger ones; the test
    /// set is shared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sizes: Vec<usize>,
    /// Training images per leaf held out as a validation split (0 = none): no network of the
    /// study trains on them, and the hard subsets are chosen on them (the study's `hard` module).
    /// They are drawn first, then the ensemble's own training images (with
    /// `hard.ensemble.disjoint`), then every design's training images from the rest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub validation_per_leaf: usize,
    /// Draw each seed's training images of a design from the seed (needs
    /// `validation_per_leaf > 0`): intervals over seeds then cover the training draw too.
    /// Off: every seed trains on the same images.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draw_per_seed: bool,
    /// Seed of the subsets and of the rare-subclass design's choices.
    #[serde(default)]
    pub subset_seed: u64,
    /// Hierarchy level of the downstream target (0 = the coarsest level, e.g. CIFAR-100's 20
    /// superclasses).
    #[serde(default)]
    pub target_level: usize,
    /// iNaturalist 2021: `{ train_split = "train" | "train_mini" }`.
    #[serde(default)]
    pub inat: InatConfig,
    /// WordNet folders: `{ noun = "/usr/share/wordnet/data.noun", depths = [3, 6] }`.
    #[serde(default)]
    pub wordnet: WordnetConfig,
    /// BREEDS: `{ info_dir = "...", task = "living17", subclasses = "all" }`.
    #[serde(default)]
    pub breeds: BreedsConfig,
    /// Keep only the leaves under one class, `"LEVEL=CLASS"` (e.g. `"class=Aves"`); empty: all
    /// (folder, inat2021, wordnet, breeds).
    #[serde(default)]
    pub leaves_under: String,
    /// Keep at most this many leaves (0 = all), chosen at random with `subset_seed`, before any
    /// image is decoded (folder, inat2021, wordnet, breeds).
    #[serde(default)]
    pub max_leaves: usize,
    /// Threads decoding images (0 = one per core; more than four per core are not started).
    #[serde(default)]
    pub decode_threads: usize,
    /// Use JPEG files whose data ends before the image does (only partly decoded; the study's
    /// log counts them) instead of refusing the first one, naming it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_truncated: bool,
    /// Most memory the decoded pixels may take, in GB (10^9 bytes); 0 = the memory the system
    /// reports available. Checked before anything is allocated.
    #[serde(default)]
    pub memory_budget_gb: f64,
}

fn default_size() -> u32 {
    32
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl DataSource {
    /// The name in configs (`data.source`).
    pub fn name(self) -> &'static str {
        match self {
            DataSource::Cifar100 => "cifar100",
            DataSource::Folder => "folder",
            DataSource::Synthetic => "synthetic",
            DataSource::Inat2021 => "inat2021",
            DataSource::Wordnet => "wordnet",
            DataSource::Breeds => "breeds",
        }
    }

    /// True for the sources read through an image index (leaves and images selected before
    /// any image is decoded: [`super::load::open`]).
    pub fn is_indexed(self) -> bool {
        match self {
            DataSource::Folder
            | DataSource::Inat2021
            | DataSource::Wordnet
            | DataSource::Breeds => true,
            DataSource::Cifar100 | DataSource::Synthetic => false,
        }
    }

    /// What the source reads from its folder, for messages (`"cifar100"`, `"dataset"`); none
    /// for a source that reads no folder (the synthetic images are generated).
    pub fn folder(self) -> Option<&'static str> {
        match self {
            DataSource::Cifar100 => Some("cifar100"),
            DataSource::Folder
            | DataSource::Inat2021
            | DataSource::Wordnet
            | DataSource::Breeds => Some("dataset"),
            DataSource::Synthetic => None,
        }
    }
}

/// The level names of the `[data]` table `data`, where they are known from the config alone
/// (`None` for an image folder, whose names are the columns of its `hierarchy.csv`, and for a
/// table without a valid `source`).
pub fn level_names(data: &toml::Table) -> Option<Vec<String>> {
    let names = |n: &[&str]| Some(n.iter().map(|s| s.to_string()).collect());
    let source: DataSource = data.get("source")?.clone().try_into().ok()?;
    match source {
        DataSource::Inat2021 => names(&INAT_LEVELS),
        DataSource::Cifar100 => names(&["coarse", "fine"]),
        DataSource::Synthetic | DataSource::Breeds => names(&["superclass", "subclass"]),
        DataSource::Wordnet => {
            let depths = data
                .get("wordnet")
                .and_then(|w| w.get("depths"))
                .and_then(toml::Value::as_array)?;
            let mut out: Vec<String> = depths
                .iter()
                .map(|d| d.as_integer().map(|d| format!("depth{d}")))
                .collect::<Option<_>>()?;
            out.push("leaf".into());
            Some(out)
        }
        DataSource::Folder => None,
    }
}

impl DataConfig {
    /// Checks the settings of the section's source (those of the other sources are not read).
    pub fn validate_source(&self) -> Result<(), InvalidField> {
        match self.source {
            DataSource::Synthetic => self
                .synthetic
                .validate()
                .map_err(|e| InvalidField::new("data.synthetic", e.to_string())),
            DataSource::Cifar100
            | DataSource::Folder
            | DataSource::Inat2021
            | DataSource::Wordnet
            | DataSource::Breeds => Ok(()),
        }
    }

    /// A `[data]` section for `source` at `path` with every other field at its default.
    pub fn for_source(source: DataSource, path: &Path) -> DataConfig {
        let mut t = toml::map::Map::new();
        t.insert("source".into(), source.name().into());
        t.insert("path".into(), path.display().to_string().into());
        toml::Value::Table(t)
            .try_into()
            .expect("a [data] section with only source and path is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_config_names() {
        for s in [
            DataSource::Cifar100,
            DataSource::Folder,
            DataSource::Synthetic,
            DataSource::Inat2021,
            DataSource::Wordnet,
            DataSource::Breeds,
        ] {
            let v = toml::Value::try_from(s).unwrap();
            assert_eq!(v.as_str(), Some(s.name()));
            assert_eq!(s.folder().is_none(), s == DataSource::Synthetic);
            let d = DataConfig::for_source(s, Path::new("x"));
            assert_eq!((d.source, d.path.as_str()), (s, "x"));
        }
    }
}
