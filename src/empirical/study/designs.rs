//! The images of a study and its designs: loading the data of the config, the per-leaf subsets
//! (`data.train_per_leaf`, `data.test_per_leaf`) and the training set of each design (the
//! balanced set as configured, and the rare-subclass set).

use std::path::Path;

use rand::seq::SliceRandom;

use crate::seed;

use super::config::{size_design, StudyConfig};
use super::memory;
use super::plan::scaled_epochs;
use super::results::DesignInfo;
use crate::empirical::data::indexed::keep_per_leaf as keep_per_class;
use crate::empirical::data::{dataset_dir, load, ImageSet};
use crate::empirical::error::EmpiricalError;

/// Loaded data of a study.
pub struct StudyData {
    /// Balanced training set (after subsetting: `data.train_per_leaf`): the ensemble's, and
    /// the balanced design's.
    pub train: ImageSet,
    /// With `data.sizes`: the training images before the per-leaf subset, from which each
    /// size's design is drawn.
    pub train_pool: Option<ImageSet>,
    /// Test set.
    pub test: ImageSet,
    /// The validation split (`data.validation_per_leaf`): training images no network of the
    /// study trains on, on which the hard subsets are chosen.
    pub validation: Option<ImageSet>,
    /// The ensemble's own training images (`hard.ensemble.disjoint`), disjoint from every
    /// design's.
    pub ensemble_train: Option<ImageSet>,
    /// Hard flags of the synthetic data's test images.
    pub synthetic_hard: Option<Vec<bool>>,
    /// Per-channel mean and std of the balanced training set.
    pub mean_std: ([f32; 3], [f32; 3]),
}

impl StudyData {
    /// The synthetic data's hard test images as the only test subset (single runs, which have
    /// no ensemble).
    pub fn hard_only(&self) -> TestSubsets<'_> {
        TestSubsets {
            hard: self.synthetic_hard.as_deref(),
            confusable: None,
        }
    }
}

/// The test subsets a design scores apart from the whole test set: per test image, whether it
/// is hard, and whether it belongs to a confusable leaf (None: the design has no such subset).
#[derive(Clone, Copy, Debug, Default)]
pub struct TestSubsets<'a> {
    /// Hard test images.
    pub hard: Option<&'a [bool]>,
    /// Test images of the confusable leaves.
    pub confusable: Option<&'a [bool]>,
}

/// A design: the training set and which test images are hard.
#[derive(Clone)]
pub struct Design {
    /// "balanced" or "rare_subclass".
    pub name: String,
    /// The training images.
    pub train: ImageSet,
    /// Whether each test image is hard (None: no hard subset in this design).
    pub test_is_hard: Option<Vec<bool>>,
    /// Whether each test image belongs to a confusable leaf (None: no such subset; see
    /// [`super::hard`]).
    pub test_is_confusable: Option<Vec<bool>>,
    /// The conditions run in this design (granularity names; the baseline is implicit).
    pub granularities: Vec<String>,
    /// Training images per leaf of a design of the data-size axis (`data.sizes`).
    pub per_leaf: Option<usize>,
    /// The seed whose own draw of training images this is (`data.draw_per_seed`); none when
    /// every seed trains on the same images.
    pub draw_seed: Option<u64>,
}

impl Design {
    /// The epochs this design trains where the config says `epochs`: the same, unless
    /// `train.equal_steps` scales them to equal SGD steps (`round(epochs * train_per_leaf / n)`,
    /// at least 1, for a design with n images per leaf).
    pub fn epochs(&self, cfg: &StudyConfig, epochs: usize) -> usize {
        scaled_epochs(cfg, self.per_leaf, epochs)
    }

    /// The design as seed `seed` trains it: with `data.draw_per_seed`, the balanced and size
    /// designs draw their images from the pool with the seed (nested across sizes, like the
    /// shared draw); otherwise (and for the rare-subclass design) the design itself.
    pub fn for_seed(&self, cfg: &StudyConfig, data: &StudyData, seed: u64) -> Design {
        let pool = match &data.train_pool {
            Some(pool) if cfg.data.draw_per_seed && self.name != "rare_subclass" => pool,
            _ => return self.clone(),
        };
        let n = self.per_leaf.unwrap_or(cfg.data.train_per_leaf);
        let s = seed.to_string();
        let train = draw_per_leaf(pool, n, &["subset", "train", "seed", &s], cfg);
        Design {
            train,
            draw_seed: Some(seed),
            ..self.clone()
        }
    }

    /// The name of the design's label sets in the preparation (one per seed with its own
    /// draw).
    pub fn labels_key(&self) -> String {
        match self.draw_seed {
            Some(s) => format!("{}_s{s}", self.name),
            None => self.name.clone(),
        }
    }

    /// The record of the design in `designs.json`.
    pub fn info(&self, cfg: &StudyConfig) -> DesignInfo {
        let t = &cfg.train;
        let (pre, fine) = (
            self.epochs(cfg, t.pretrain_epochs),
            self.epochs(cfg, t.finetune_epochs),
        );
        DesignInfo {
            design: self.name.clone(),
            per_leaf: self.per_leaf,
            train_images: self.train.len,
            pretrain_epochs: pre,
            finetune_epochs: fine,
            baseline_epochs: pre + fine,
        }
    }

    /// The test subsets this design scores separately.
    pub fn subsets(&self) -> TestSubsets<'_> {
        TestSubsets {
            hard: self.test_is_hard.as_deref(),
            confusable: self.test_is_confusable.as_deref(),
        }
    }
}

/// `n` images per leaf of `pool` (all when `n` is 0), drawn with the generator `names` under
/// `data.subset_seed`: the same names give nested draws for growing `n`.
fn draw_per_leaf(pool: &ImageSet, n: usize, names: &[&str], cfg: &StudyConfig) -> ImageSet {
    let leaf = pool.hierarchy.leaf_level();
    pool.subset(&keep_per_class(
        &pool.indices_by_class(leaf),
        n,
        &mut seed::rng(cfg.data.subset_seed, names),
    ))
}

/// The split of `data.validation_per_leaf`: per leaf, in one random order (`["split"]` under
/// `data.subset_seed`), the validation images first, then the ensemble's own images
/// (`hard.ensemble.disjoint`: `data.train_per_leaf` of them), then the pool every design draws
/// from. Refused, naming the smallest leaf, when a leaf has too few images for the split and
/// the largest design.
fn split_validation(
    train: &ImageSet,
    cfg: &StudyConfig,
) -> Result<(ImageSet, ImageSet, Option<ImageSet>), EmpiricalError> {
    let d = &cfg.data;
    let v = d.validation_per_leaf;
    let disjoint = cfg.hard.ensemble.as_ref().is_some_and(|e| e.disjoint);
    let e = if disjoint { d.train_per_leaf } else { 0 };
    let largest = d
        .sizes
        .iter()
        .copied()
        .chain([d.train_per_leaf])
        .max()
        .unwrap_or(0);
    let need = v + e + largest.max(1);
    let leaf = train.hierarchy.leaf_level();
    let by_leaf = train.indices_by_class(leaf);
    let names = &train.hierarchy.level(leaf).class_names;
    if let Some((l, idx)) = by_leaf
        .iter()
        .enumerate()
        .filter(|(_, idx)| !idx.is_empty())
        .min_by_key(|(_, idx)| idx.len())
        .filter(|(_, idx)| idx.len() < need)
    {
        return Err(EmpiricalError::invalid(
            "data.validation_per_leaf",
            format!(
                "leaf '{}' has {} training images; the split needs {need} per leaf ({v} validation{}, then at least {} for the largest design)",
                names[l],
                idx.len(),
                if disjoint { format!(", {e} for the ensemble") } else { String::new() },
                largest.max(1)
            ),
        ));
    }
    let mut rng = seed::rng(d.subset_seed, &["split"]);
    let (mut val, mut ens, mut pool) = (Vec::new(), Vec::new(), Vec::new());
    for idx in &by_leaf {
        let mut idx = idx.clone();
        idx.shuffle(&mut rng);
        val.extend_from_slice(&idx[..v.min(idx.len())]);
        ens.extend_from_slice(&idx[v.min(idx.len())..(v + e).min(idx.len())]);
        pool.extend_from_slice(&idx[(v + e).min(idx.len())..]);
    }
    for x in [&mut val, &mut ens, &mut pool] {
        x.sort_unstable();
    }
    Ok((
        train.subset(&pool),
        train.subset(&val),
        disjoint.then(|| train.subset(&ens)),
    ))
}

/// The leaf of `set` with the fewest images (the first of the equally small) and its count.
fn smallest_leaf(set: &ImageSet) -> Option<(String, usize)> {
    let leaf = set.hierarchy.leaf_level();
    let names = &set.hierarchy.level(leaf).class_names;
    set.class_counts(leaf)
        .into_iter()
        .enumerate()
        .min_by_key(|&(_, n)| n)
        .map(|(l, n)| (names[l].clone(), n))
}

/// Refuses a `data.sizes` entry larger than the training images of some leaf of `pool` (the
/// images the sizes are drawn from), naming the smallest leaf: that design would train on
/// fewer images than its name says.
fn check_sizes(pool: &ImageSet, cfg: &StudyConfig) -> Result<(), EmpiricalError> {
    let Some(&largest) = cfg.data.sizes.iter().max() else {
        return Ok(());
    };
    match smallest_leaf(pool) {
        Some((name, n)) if n < largest => Err(EmpiricalError::invalid(
            "data.sizes",
            format!(
                "size {largest} per leaf is more than the data holds: leaf '{name}' has {n} \
                 training images{}; give sizes of at most {n}",
                if cfg.data.validation_per_leaf > 0 {
                    " after the validation split"
                } else {
                    ""
                }
            ),
        )),
        _ => Ok(()),
    }
}

/// Refuses a `hard.rare_subclass.rare_per_leaf` at or above the training images of some leaf
/// of the balanced set `train`: such a leaf would keep all its images, so the rare design
/// would not be rare there (and with every leaf so, it would be the balanced design).
fn check_rare_per_leaf(train: &ImageSet, cfg: &StudyConfig) -> Result<(), EmpiricalError> {
    let Some(r) = &cfg.hard.rare_subclass else {
        return Ok(());
    };
    match smallest_leaf(train) {
        Some((name, n)) if r.rare_per_leaf >= n => Err(EmpiricalError::invalid(
            "hard.rare_subclass.rare_per_leaf",
            format!(
                "{} is not fewer than the training images of every leaf: leaf '{name}' has {n}, \
                 so its rare version would keep them all; give at most {}",
                r.rare_per_leaf,
                n.saturating_sub(1)
            ),
        )),
        _ => Ok(()),
    }
}

/// Loads the study's images (`data_dir` overrides the config's folder: [`dataset_dir`]) and
/// applies the subsets.
pub fn load_data(cfg: &StudyConfig, data_dir: Option<&Path>) -> Result<StudyData, EmpiricalError> {
    let dir = dataset_dir(&cfg.data, data_dir)?;
    // the synthetic images are checked against the memory budget before they are generated
    memory::check(&memory::synthetic_needs(cfg), &memory::budget(cfg))?;
    let loaded = load(&cfg.data, dir.as_deref())?;
    let (train, test, synthetic_hard) = (
        loaded.splits.train,
        loaded.splits.test,
        loaded.synthetic_hard,
    );
    let h = &train.hierarchy;
    if cfg.data.target_level >= h.num_levels() {
        return Err(EmpiricalError::invalid(
            "data.target_level",
            format!(
                "level {} does not exist (the hierarchy has {} levels)",
                cfg.data.target_level,
                h.num_levels()
            ),
        ));
    }
    eprintln!(
        "data: {}",
        crate::empirical::data::inspect::level_summary(&train.hierarchy, cfg.data.target_level)
    );
    let leaf = train.hierarchy.leaf_level();
    let (train, validation, ensemble_train) = if cfg.data.validation_per_leaf > 0 {
        let (pool, validation, ensemble) = split_validation(&train, cfg)?;
        (pool, Some(validation), ensemble)
    } else {
        (train, None, None)
    };
    check_sizes(&train, cfg)?;
    let train_pool = (!cfg.data.sizes.is_empty() || cfg.data.draw_per_seed).then(|| train.clone());
    let train = if cfg.data.train_per_leaf > 0 {
        train.subset(&keep_per_class(
            &train.indices_by_class(leaf),
            cfg.data.train_per_leaf,
            &mut seed::rng(cfg.data.subset_seed, &["subset", "train"]),
        ))
    } else {
        train
    };
    let (test, synthetic_hard) = if cfg.data.test_per_leaf > 0 {
        let keep = keep_per_class(
            &test.indices_by_class(leaf),
            cfg.data.test_per_leaf,
            &mut seed::rng(cfg.data.subset_seed, &["subset", "test"]),
        );
        let hard = synthetic_hard.map(|h| keep.iter().map(|&i| h[i]).collect());
        (test.subset(&keep), hard)
    } else {
        (test, synthetic_hard)
    };
    check_rare_per_leaf(&train, cfg)?;
    let mean_std = train.rgb_mean_std().ok_or_else(|| {
        EmpiricalError::invalid("data", "the training images need 3 channels (RGB)")
    })?;
    Ok(StudyData {
        train,
        train_pool,
        test,
        validation,
        ensemble_train,
        synthetic_hard,
        mean_std,
    })
}

/// The designs of a study ([`StudyConfig::design_plan`]) with their data: `balanced` trains on the balanced
/// set (hard test images are the synthetic data's, or none until the ensemble defines them),
/// `rare_subclass` on the rare-subclass set (hard test images are the rare leaves'), a size's
/// design on `n` images per leaf of the pool (in the order of `data.train_per_leaf`'s subset).
pub fn designs(cfg: &StudyConfig, data: &StudyData) -> Vec<Design> {
    cfg.design_plan()
        .into_iter()
        .map(|(name, granularities)| {
            let size = cfg
                .data
                .sizes
                .iter()
                .copied()
                .find(|&n| size_design(n) == name);
            let (train, test_is_hard) = match &cfg.hard.rare_subclass {
                _ if size.is_some() => {
                    let pool = data.train_pool.as_ref().unwrap_or(&data.train);
                    let leaf = pool.hierarchy.leaf_level();
                    let keep = keep_per_class(
                        &pool.indices_by_class(leaf),
                        size.unwrap_or(0),
                        &mut seed::rng(cfg.data.subset_seed, &["subset", "train"]),
                    );
                    (pool.subset(&keep), data.synthetic_hard.clone())
                }
                Some(r) if name == "rare_subclass" => {
                    let (set, rare_leaf) = rare_subclass_set(
                        &data.train,
                        cfg.data.target_level,
                        r.rare_per_leaf,
                        cfg.data.subset_seed,
                    );
                    let hard = data.test.leaves.iter().map(|&l| rare_leaf[l]).collect();
                    (set, Some(hard))
                }
                _ => (data.train.clone(), data.synthetic_hard.clone()),
            };
            Design {
                name,
                train,
                test_is_hard,
                test_is_confusable: None,
                granularities,
                per_leaf: size,
                draw_seed: None,
            }
        })
        .collect()
}

/// The rare-subclass training set: inside each target class one leaf (chosen with `seed`)
/// keeps all its images, the others `rare_per_leaf`. Returns the set and, per leaf, whether it
/// is rare.
pub fn rare_subclass_set(
    train: &ImageSet,
    target_level: usize,
    rare_per_leaf: usize,
    seed: u64,
) -> (ImageSet, Vec<bool>) {
    let h = &train.hierarchy;
    let leaf = h.leaf_level();
    let mut rng = seed::rng(seed, &["rare_subclass"]);
    let mut rare = vec![true; h.num_leaves()];
    for t in 0..h.num_classes(target_level) {
        let leaves = h.leaves_under(target_level, t);
        if let Some(&d) = leaves.choose(&mut rng) {
            rare[d] = false;
        }
    }
    let by = train.indices_by_class(leaf);
    let mut keep = Vec::new();
    for (l, idx) in by.iter().enumerate() {
        let mut idx = idx.clone();
        if rare[l] && idx.len() > rare_per_leaf {
            idx.shuffle(&mut rng);
            idx.truncate(rare_per_leaf);
        }
        keep.extend(idx);
    }
    keep.sort_unstable();
    (train.subset(&keep), rare)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empirical::study::tests::tiny;

    #[test]
    fn rare_subclass_keeps_one_leaf_whole_per_target() {
        let data = load_data(&tiny(), None).unwrap();
        let (set, rare) = rare_subclass_set(&data.train, 0, 4, 3);
        // 2 targets x 2 leaves: one dominant (16 images) and one rare (4 images) each
        assert_eq!(rare.iter().filter(|&&r| !r).count(), 2);
        assert_eq!(set.len, 2 * 16 + 2 * 4);
        for (l, &r) in rare.iter().enumerate() {
            let n = set.leaves.iter().filter(|&&x| x == l).count();
            assert_eq!(n, if r { 4 } else { 16 });
        }
    }
}
