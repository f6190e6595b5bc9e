//! [`IndexedSplits`]: a dataset's train and test splits as [`ImageIndex`]es sharing one
//! hierarchy, before any pixel is decoded; [`Selection`] picks the leaves and images to keep and
//! [`IndexedSplits::decode`] materialises them into in-memory [`Splits`], after checking the
//! memory they will take.

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::decode::{materialize, DecodeOptions, DecodeStats};
use super::index::ImageIndex;
use super::{DataError, Splits};
use crate::hierarchy::Hierarchy;

/// A dataset as indexed splits, plus what the loader has to say about it.
#[derive(Clone, Debug)]
pub struct IndexedSplits {
    /// The training images.
    pub train: ImageIndex,
    /// The test images.
    pub test: ImageIndex,
    /// The folders (relative to the dataset root) of the train and test images, e.g.
    /// `("train", "test")` or `("train_mini", "val")`; they name the decoded sets.
    pub split_names: (String, String),
    /// One line: the source and its files.
    pub description: String,
    /// Facts about the hierarchy worth reporting (parents chosen for synsets with several
    /// hypernyms, names made unique, ...).
    pub notes: Vec<String>,
    /// Problems that do not stop a study (a leaf without test images, ...).
    pub warnings: Vec<String>,
}

/// Which leaves and images to keep (the study's `data.*` selection fields).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// Keep only the leaves under one class: `"LEVEL=CLASS"` with a level name (or index) and a
    /// class name of that level; empty: all leaves.
    pub leaves_under: String,
    /// Keep at most this many leaves (0 = all), chosen at random with `seed`.
    pub max_leaves: usize,
    /// Keep at most this many training images per leaf (0 = all), chosen at random with `seed`.
    pub train_per_leaf: usize,
    /// Keep at most this many test images per leaf (0 = all).
    pub test_per_leaf: usize,
    /// Seed of the random choices.
    pub seed: u64,
    /// Keep only the leaves under these classes of level `target_level` (their names; empty:
    /// all), applied last, so the per-leaf caps draw the same images with or without it.
    pub target_classes: Vec<String>,
    /// The level of `target_classes` (the study's downstream target level).
    pub target_level: usize,
}

/// The indices of each class (`by_leaf[c]`), at most `cap` per class (0 = all) drawn with
/// `rng`, ascending. The one per-class subset of the toolkit: the study applies it to in-memory
/// sets and [`IndexedSplits::select`] before decoding, with the same keys, so both keep the
/// same images.
pub fn keep_per_leaf(by_leaf: &[Vec<usize>], cap: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut keep = Vec::new();
    for idx in by_leaf {
        let mut idx = idx.clone();
        if cap > 0 && idx.len() > cap {
            idx.shuffle(rng);
            idx.truncate(cap);
        }
        keep.extend(idx);
    }
    keep.sort_unstable();
    keep
}

/// The images of both splits under the classes `sel.target_classes` of level
/// `sel.target_level`, with the hierarchy cut down to their leaves (all of them when the list is
/// empty). Errors name `data.target_level` or `data.target_classes`.
fn keep_target_classes(
    train: ImageIndex,
    test: ImageIndex,
    sel: &Selection,
) -> Result<(ImageIndex, ImageIndex), DataError> {
    let h = Arc::clone(train.hierarchy());
    if sel.target_level >= h.num_levels() {
        return Err(DataError::Invalid {
            context: "data.target_level".into(),
            message: format!(
                "level {} does not exist (the hierarchy has {} levels, 0 to {})",
                sel.target_level,
                h.num_levels(),
                h.num_levels() - 1
            ),
        });
    }
    if sel.target_classes.is_empty() {
        return Ok((train, test));
    }
    let level = sel.target_level;
    let valid = &h.level(level).class_names;
    let mut leaves = Vec::new();
    for name in &sel.target_classes {
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
    let (train, test, _) = keep_leaves(&train, &test, &h, &leaves)?;
    Ok((train, test))
}

/// Both indexes cut to the (sorted) `leaves` of `h`, renumbered, with the restricted hierarchy.
fn keep_leaves(
    train: &ImageIndex,
    test: &ImageIndex,
    h: &Hierarchy,
    leaves: &[usize],
) -> Result<(ImageIndex, ImageIndex, Arc<Hierarchy>), DataError> {
    let restricted = Arc::new(h.restrict(leaves).map_err(|e| DataError::Hierarchy {
        path: train.root().to_path_buf(),
        error: Box::new(e),
    })?);
    let mut leaf_map = vec![None; h.num_leaves()];
    for (new, &old) in leaves.iter().enumerate() {
        leaf_map[old] = Some(new);
    }
    let cut = |ix: &ImageIndex| {
        let keep: Vec<usize> = (0..ix.len())
            .filter(|&i| leaf_map[ix.leaf(i)].is_some())
            .collect();
        ix.subset(&keep, &leaf_map, Arc::clone(&restricted))
    };
    Ok((cut(train), cut(test), restricted))
}

impl IndexedSplits {
    /// The label tree (shared by both splits).
    pub fn hierarchy(&self) -> &Arc<Hierarchy> {
        self.train.hierarchy()
    }

    /// The leaves and images chosen by `sel` (see [`Selection`]); the hierarchy is cut down to
    /// the kept leaves ([`Hierarchy::restrict`]). Errors name the `data.*` field at fault.
    pub fn select(self, sel: &Selection) -> Result<IndexedSplits, DataError> {
        let h = Arc::clone(self.hierarchy());
        let invalid = |field: &str, message: String| DataError::Invalid {
            context: format!("data.{field}"),
            message,
        };
        let mut leaves: Vec<usize> = (0..h.num_leaves()).collect();
        if !sel.leaves_under.trim().is_empty() {
            let (level, class) = sel.leaves_under.split_once('=').ok_or_else(|| {
                invalid(
                    "leaves_under",
                    format!(
                        "{:?} is not LEVEL=CLASS (e.g. \"{}={}\")",
                        sel.leaves_under,
                        h.level(0).name,
                        h.level(0).class_names[0]
                    ),
                )
            })?;
            let (level, class) = (level.trim(), class.trim());
            let names: Vec<&str> = h.levels().iter().map(|l| l.name.as_str()).collect();
            let l = h
                .level_index(level)
                .or_else(|| level.parse().ok().filter(|&l: &usize| l < h.num_levels()))
                .ok_or_else(|| {
                    invalid(
                        "leaves_under",
                        format!("no level {level:?}; the levels are {}", names.join(", ")),
                    )
                })?;
            let c = h
                .level(l)
                .class_names
                .iter()
                .position(|n| n == class)
                .ok_or_else(|| {
                    invalid(
                        "leaves_under",
                        format!(
                            "level {:?} has no class {class:?} (it has {} classes, e.g. {:?})",
                            h.level(l).name,
                            h.num_classes(l),
                            h.level(l).class_names[0]
                        ),
                    )
                })?;
            leaves = h.leaves_under(l, c);
        }
        if sel.max_leaves > 0 && leaves.len() > sel.max_leaves {
            let mut rng = crate::seed::rng(sel.seed, &["data", "max_leaves"]);
            let mut chosen: Vec<usize> = leaves
                .choose_multiple(&mut rng, sel.max_leaves)
                .copied()
                .collect();
            chosen.sort_unstable();
            leaves = chosen;
        }
        let (train, test, hierarchy) = if leaves.len() == h.num_leaves() {
            (self.train, self.test, h)
        } else {
            keep_leaves(&self.train, &self.test, &h, &leaves)?
        };
        // Per-leaf caps: the same generators as the study's subsets of in-memory sets.
        let identity: Vec<Option<usize>> = (0..hierarchy.num_leaves()).map(Some).collect();
        let cap = |ix: ImageIndex, cap: usize, split: &str| {
            if cap == 0 {
                return ix;
            }
            let mut rng = crate::seed::rng(sel.seed, &["subset", split]);
            let keep = keep_per_leaf(&ix.indices_by_leaf(), cap, &mut rng);
            ix.subset(&keep, &identity, Arc::clone(&hierarchy))
        };
        let train = cap(train, sel.train_per_leaf, "train");
        let test = cap(test, sel.test_per_leaf, "test");
        let (train, test) = keep_target_classes(train, test, sel)?;
        Ok(IndexedSplits {
            train,
            test,
            ..self
        })
    }

    /// Decodes both splits (in parallel, see [`materialize`]) after checking that their pixels
    /// together fit the budget. Returns the splits and what decoding did to each.
    pub fn decode(
        &self,
        opts: &DecodeOptions,
    ) -> Result<(Splits, DecodeStats, DecodeStats), DataError> {
        let what = |ix: &ImageIndex, split: &str| ix.root().join(split).display().to_string();
        opts.budget.check(
            &format!("{}: train and test splits", self.train.root().display()),
            self.train.len() + self.test.len(),
            opts.size,
            &opts.size_field,
        )?;
        let (train_name, test_name) = &self.split_names;
        let (train, train_stats) = materialize(&self.train, opts, &what(&self.train, train_name))?;
        let (test, test_stats) = materialize(&self.test, opts, &what(&self.test, test_name))?;
        Ok((Splits { train, test }, train_stats, test_stats))
    }
}
