//! The one way in to the images of a `[data]` section ([`DataConfig`]), for the study and for
//! `empirical inspect` alike: [`dataset_dir`] finds the folder, [`open`] reads the source (the
//! sources read through an image index are indexed and their leaves and images selected, nothing
//! decoded; the others are loaded, and cut to `data.target_classes`), and [`load`] also decodes
//! the indexed ones, saying on stderr what was done to the images. [`open`] holds the one
//! `match` over the sources.

pub mod breeds;
pub mod cifar;
pub mod folder;
pub mod imagenet;
pub mod inat;
pub mod synthetic;
pub mod wordnet;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use self::breeds::index_breeds;
use self::cifar::{cifar100_dir_from_env, load_cifar100};
use self::folder::index_image_folder;
use self::inat::index_inat2021;
use self::synthetic::generate;
use self::wordnet::index_wordnet;
use super::config::{DataConfig, DataSource};
use super::decode::{DecodeOptions, MemoryBudget};
use super::indexed::{IndexedSplits, Selection};
use super::{DataError, ImageSet, Splits};

/// The environment variable naming the CIFAR-100 folder when the config leaves it empty.
pub const CIFAR100_ENV: &str = "GRANULARITY_CIFAR100_DIR";

/// A source's images in memory.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// What was read, in one line.
    pub description: String,
    /// The train and test images (cut to `data.target_classes`).
    pub splits: Splits,
    /// Whether each test image is one of the synthetic data's hard images (synthetic only).
    pub synthetic_hard: Option<Vec<bool>>,
}

/// A source as [`open`] reads it.
pub enum Opened {
    /// An indexed source: its leaves and images selected as the section says, nothing decoded.
    Indexed(IndexedSplits),
    /// A source read whole into memory (CIFAR-100, the synthetic images).
    Loaded(Loaded),
}

/// The dataset folder of `data`: `dir` (from `--data`), else `data.path`, else (for CIFAR-100)
/// the folder [`CIFAR100_ENV`] names; none for a source that reads no folder. An error says
/// how to give one.
pub fn dataset_dir(data: &DataConfig, dir: Option<&Path>) -> Result<Option<PathBuf>, DataError> {
    let Some(what) = data.source.folder() else {
        return Ok(None);
    };
    if let Some(d) = dir {
        return Ok(Some(d.to_path_buf()));
    }
    if !data.path.is_empty() {
        return Ok(Some(PathBuf::from(&data.path)));
    }
    let cifar = data.source == DataSource::Cifar100;
    if cifar {
        if let Some(d) = cifar100_dir_from_env(CIFAR100_ENV) {
            return Ok(Some(d));
        }
    }
    Err(DataError::Invalid {
        context: "data.path".into(),
        message: format!(
            "no {what} folder: set data.path in the config, pass --data DIR{}",
            if cifar {
                format!(", or set {CIFAR100_ENV}")
            } else {
                String::new()
            }
        ),
    })
}

/// Reads the source of `data` from the folder `dir` ([`dataset_dir`]; none for the synthetic
/// images): an indexed source indexed and selected ([`selection`]), any other loaded and cut to
/// `data.target_classes`.
pub fn open(data: &DataConfig, dir: Option<&Path>) -> Result<Opened, DataError> {
    let folder = || {
        dir.ok_or_else(|| DataError::Invalid {
            context: "data.path".into(),
            message: format!("the {} source needs a dataset folder", data.source.name()),
        })
    };
    let indexed = |ix: IndexedSplits| -> Result<Opened, DataError> {
        Ok(Opened::Indexed(ix.select(&selection(data))?))
    };
    match data.source {
        DataSource::Cifar100 => {
            let dir = folder()?;
            let loaded = Loaded {
                description: format!("CIFAR-100 binary release at {}", dir.display()),
                splits: load_cifar100(dir)?,
                synthetic_hard: None,
            };
            Ok(Opened::Loaded(cut_to_target_classes(loaded, data)?))
        }
        DataSource::Synthetic => {
            let d = generate(&data.synthetic)?;
            let test = d.test();
            let loaded = Loaded {
                description: "synthetic multi-view images (data.synthetic)".to_string(),
                splits: Splits {
                    train: d.train,
                    test,
                },
                synthetic_hard: Some(d.test_is_hard),
            };
            Ok(Opened::Loaded(cut_to_target_classes(loaded, data)?))
        }
        DataSource::Folder => indexed(index_image_folder(folder()?)?),
        DataSource::Inat2021 => indexed(index_inat2021(folder()?, &data.inat)?),
        DataSource::Wordnet => indexed(index_wordnet(folder()?, &data.wordnet)?),
        DataSource::Breeds => indexed(index_breeds(folder()?, &data.breeds)?),
    }
}

/// The images of `data` at `dir` in memory: [`open`], then the indexed sources decoded as
/// `data` says ([`decode_options`]). Prints the loader's warnings and what decoding did to the
/// images (resizing, cropping, colour conversion) to stderr.
pub fn load(data: &DataConfig, dir: Option<&Path>) -> Result<Loaded, DataError> {
    let ix = match open(data, dir)? {
        Opened::Loaded(loaded) => return Ok(loaded),
        Opened::Indexed(ix) => ix,
    };
    for w in &ix.warnings {
        eprintln!("warning: {w}");
    }
    let (splits, train_stats, test_stats) = ix.decode(&decode_options(data))?;
    for (split, stats) in [("train", &train_stats), ("test", &test_stats)] {
        eprintln!("data ({split}): {}", stats.describe(data.size).join("; "));
    }
    Ok(Loaded {
        description: ix.description.clone(),
        splits,
        synthetic_hard: None,
    })
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

/// `loaded` cut to `data.target_classes` ([`keep_target_classes`]; unchanged when the list is
/// empty). The indexed sources make the same cut in their selection, before decoding.
fn cut_to_target_classes(loaded: Loaded, data: &DataConfig) -> Result<Loaded, DataError> {
    if data.target_classes.is_empty() {
        return Ok(loaded);
    }
    let levels = loaded.splits.train.hierarchy.num_levels();
    if data.target_level >= levels {
        return Err(DataError::Invalid {
            context: "data.target_level".into(),
            message: format!(
                "level {} does not exist (the hierarchy has {levels} levels)",
                data.target_level
            ),
        });
    }
    let Loaded {
        description,
        splits,
        synthetic_hard,
    } = loaded;
    let (train, test, synthetic_hard) = keep_target_classes(
        splits.train,
        splits.test,
        synthetic_hard,
        data.target_level,
        &data.target_classes,
    )?;
    Ok(Loaded {
        description,
        splits: Splits { train, test },
        synthetic_hard,
    })
}

/// Keeps only the images under the classes `names` of level `level` (both splits, and the
/// hard flags of the test images with them; one hierarchy, cut down with
/// [`crate::hierarchy::Hierarchy::restrict`], so class indices are contiguous at every level).
/// Unknown names: an error naming `data.target_classes`.
pub fn keep_target_classes(
    train: ImageSet,
    test: ImageSet,
    test_hard: Option<Vec<bool>>,
    level: usize,
    names: &[String],
) -> Result<(ImageSet, ImageSet, Option<Vec<bool>>), DataError> {
    let h = train.hierarchy.clone();
    let valid = &h.level(level).class_names;
    let mut leaves = Vec::new();
    for name in names {
        let Some(c) = valid.iter().position(|v| v == name) else {
            return Err(DataError::Invalid {
                context: "data.target_classes".into(),
                message: format!(
                    "no class '{name}' at level {level} ({}); valid names: {}",
                    h.level(level).name,
                    valid.join(", ")
                ),
            });
        };
        leaves.extend(h.leaves_under(level, c));
    }
    leaves.sort_unstable();
    leaves.dedup();
    let restricted = Arc::new(h.restrict(&leaves).map_err(|e| DataError::Hierarchy {
        path: PathBuf::from(&train.source),
        error: Box::new(e),
    })?);
    let mut new_leaf = vec![usize::MAX; h.num_leaves()];
    for (i, &l) in leaves.iter().enumerate() {
        new_leaf[l] = i;
    }
    let cut = |set: &ImageSet| -> (ImageSet, Vec<usize>) {
        let keep: Vec<usize> = (0..set.len)
            .filter(|&i| new_leaf[set.leaves[i]] != usize::MAX)
            .collect();
        let mut out = set.subset(&keep);
        out.leaves = out.leaves.iter().map(|&l| new_leaf[l]).collect();
        out.hierarchy = restricted.clone();
        (out, keep)
    };
    let (train, _) = cut(&train);
    let (test, kept) = cut(&test);
    let hard = test_hard.map(|h| kept.iter().map(|&i| h[i]).collect());
    Ok((train, test, hard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hierarchy::Hierarchy;

    /// `data.target_classes` keeps the images under the named classes (both splits, the
    /// synthetic hard flags with them) and renumbers the classes of every level; an unknown name
    /// is an error naming the field and the valid names.
    #[test]
    fn target_classes_keep_and_renumber() {
        let h = Arc::new(Hierarchy::two_level(&[2, 3, 1]).unwrap());
        let set = |leaves: Vec<usize>| {
            let pixels = leaves.iter().map(|&l| l as u8).collect();
            ImageSet::new(pixels, 1, 1, 1, leaves, h.clone(), "t").unwrap()
        };
        let train = set(vec![0, 1, 2, 3, 4, 5, 5, 2]);
        let test = set(vec![5, 0, 3]);
        let names = vec!["s2".to_string(), "s1".to_string()];
        let (tr, te, hard) = keep_target_classes(
            train.clone(),
            test.clone(),
            Some(vec![true, false, true]),
            0,
            &names,
        )
        .unwrap();
        assert_eq!(tr.hierarchy.num_classes(0), 2);
        assert_eq!(tr.hierarchy.num_leaves(), 4);
        assert_eq!(tr.hierarchy.level(0).class_names, ["s1", "s2"]);
        // old leaves 2, 3, 4 (under s1) and 5 (s2) become 0..4; pixels follow their images
        assert_eq!(tr.leaves, vec![0, 1, 2, 3, 3, 0]);
        assert_eq!(tr.images, vec![2, 3, 4, 5, 5, 2]);
        assert_eq!(tr.labels_at_level(0), vec![0, 0, 0, 1, 1, 0]);
        assert_eq!(te.leaves, vec![3, 1]);
        assert_eq!(hard, Some(vec![true, true]));
        assert!(Arc::ptr_eq(&tr.hierarchy, &te.hierarchy));
        let e = keep_target_classes(train, test, None, 0, &["s9".to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.target_classes") && e.contains("s9"), "{e}");
        assert!(e.contains("s0, s1, s2"), "{e}");
    }

    /// A source that reads a folder needs one; the synthetic images need none.
    #[test]
    fn dataset_dir_needs_a_folder_but_for_the_synthetic_images() {
        let mut d = DataConfig::for_source(DataSource::Folder, Path::new(""));
        let e = dataset_dir(&d, None).unwrap_err().to_string();
        assert!(e.starts_with("data.path: no dataset folder"), "{e}");
        assert_eq!(
            dataset_dir(&d, Some(Path::new("x"))).unwrap(),
            Some(PathBuf::from("x"))
        );
        d.path = "y".into();
        assert_eq!(dataset_dir(&d, None).unwrap(), Some(PathBuf::from("y")));
        d.source = DataSource::Synthetic;
        assert_eq!(dataset_dir(&d, Some(Path::new("x"))).unwrap(), None);
    }
}
