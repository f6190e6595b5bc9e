//! The indexed sources of a study's `[data]` section (image folder, iNaturalist 2021, WordNet
//! folders, BREEDS): index, select and decode them as the config says, saying on stderr what
//! was done to the images.

use std::path::Path;

use super::breeds::index_breeds;
use super::decode::{DecodeOptions, MemoryBudget};
use super::folder::index_image_folder;
use super::inat::index_inat2021;
use super::indexed::{IndexedSplits, Selection};
use super::wordnet::index_wordnet;
use super::{DataError, Splits};
use crate::empirical::study::config::{DataConfig, DataSource};

/// True for the sources read through an index ([`index_source`]).
pub fn is_indexed(source: DataSource) -> bool {
    matches!(
        source,
        DataSource::Folder | DataSource::Inat2021 | DataSource::Wordnet | DataSource::Breeds
    )
}

/// The dataset at `dir` indexed as `data.source` says (nothing decoded). Errors for the
/// sources that are not indexed (cifar100, synthetic).
pub fn index_source(data: &DataConfig, dir: &Path) -> Result<IndexedSplits, DataError> {
    match data.source {
        DataSource::Folder => index_image_folder(dir),
        DataSource::Inat2021 => index_inat2021(dir, &data.inat),
        DataSource::Wordnet => index_wordnet(dir, &data.wordnet),
        DataSource::Breeds => index_breeds(dir, &data.breeds),
        other => Err(DataError::Invalid {
            context: "data.source".into(),
            message: format!("{other:?} is not read through an image index"),
        }),
    }
}

/// The leaves and images `data` keeps, before any image is decoded: the one selection of the
/// indexed sources, used by the study and by `empirical inspect --config` alike.
///
/// The training images are capped at `data.train_per_leaf` here only when the study needs no
/// more of them: with `data.sizes` (every size is drawn from all of a leaf's images, nested as
/// on CIFAR-100) or `data.validation_per_leaf` (split off first) every training image of the
/// kept leaves is decoded and the study draws its subsets from them.
pub fn selection(data: &DataConfig) -> Selection {
    let needs_pool = !data.sizes.is_empty() || data.validation_per_leaf > 0;
    Selection {
        leaves_under: data.leaves_under.clone(),
        max_leaves: data.max_leaves,
        train_per_leaf: if needs_pool { 0 } else { data.train_per_leaf },
        test_per_leaf: data.test_per_leaf,
        seed: data.subset_seed,
        target_classes: data.target_classes.clone(),
        target_level: data.target_level,
    }
}

/// How `data` decodes images (`data.size`, `data.decode_threads`, `data.memory_budget_gb`,
/// `data.allow_truncated`).
pub fn decode_options(data: &DataConfig) -> DecodeOptions {
    DecodeOptions {
        size: data.size,
        threads: data.decode_threads,
        budget: MemoryBudget::from_gb(data.memory_budget_gb, "data.memory_budget_gb"),
        size_field: "data.size".into(),
        allow_truncated: data.allow_truncated,
    }
}

/// Indexes, selects and decodes the dataset at `dir` as `data` says. Prints the loader's
/// warnings and what decoding did to the images (resizing, cropping, colour conversion) to
/// stderr.
pub fn load_indexed(data: &DataConfig, dir: &Path) -> Result<Splits, DataError> {
    let ix = index_source(data, dir)?.select(&selection(data))?;
    for w in &ix.warnings {
        eprintln!("warning: {w}");
    }
    let (splits, train_stats, test_stats) = ix.decode(&decode_options(data))?;
    for (split, stats) in [("train", &train_stats), ("test", &test_stats)] {
        eprintln!("data ({split}): {}", stats.describe(data.size).join("; "));
    }
    Ok(splits)
}
