//! Label hierarchies and pretraining relabelings.
//!
//! This module is the shared vocabulary of the theory and empirical halves of the crate: a
//! [`Hierarchy`] is a label tree with named levels (level 0 is the coarsest, e.g. superclass; the
//! last level holds the leaves, e.g. fine classes), and a [`Relabeling`] describes a *granularity*
//! of the pretraining label space relative to a downstream target level (the classes of one
//! hierarchy level, finer or coarser label sets, random or misaligned groupings, one label per
//! sample). Building a relabeling against a hierarchy gives a [`LabelRule`], which turns a sample
//! (its leaf and its index) into a pretraining label and knows, for each pretraining class, the
//! target class it lies inside (if any), so that a "summed head" from pretraining classes to target
//! classes can be formed when the rule is aligned with the target.
//!
//! Everything here is deterministic given the random number generator passed in, and every
//! constructor validates its input and returns a [`HierarchyError`] naming the level, class or
//! field at fault instead of panicking. The module depends only on `std`, `serde`, `rand` and
//! `thiserror`.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Errors from building hierarchies and relabelings.
///
/// Every message names the level, class, sample or field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HierarchyError {
    /// A hierarchy needs at least one level.
    #[error("hierarchy has no levels")]
    NoLevels,
    /// A level without classes.
    #[error("level {level} ({level_name:?}) has no classes")]
    EmptyLevel {
        /// Index of the empty level.
        level: usize,
        /// Name of the empty level.
        level_name: String,
    },
    /// Two levels share a name (so [`Hierarchy::level_index`] would be ambiguous).
    #[error(
        "levels {first} and {second} are both named {level_name:?}; level names must be unique"
    )]
    DuplicateLevelName {
        /// The repeated level name.
        level_name: String,
        /// First level with that name.
        first: usize,
        /// Second level with that name.
        second: usize,
    },
    /// Two classes of one level share a name.
    #[error(
        "level {level} ({level_name:?}): classes {first} and {second} are both named {class_name:?}; \
         class names must be unique within a level"
    )]
    DuplicateClassName {
        /// Index of the level.
        level: usize,
        /// Name of the level.
        level_name: String,
        /// The repeated class name.
        class_name: String,
        /// First class with that name.
        first: usize,
        /// Second class with that name.
        second: usize,
    },
    /// Level 0 was given parent indices.
    #[error(
        "level 0 ({level_name:?}) is the top level and must have an empty `parent`, \
         but it has {len} entries"
    )]
    TopLevelHasParents {
        /// Name of level 0.
        level_name: String,
        /// Length of its `parent` vector.
        len: usize,
    },
    /// `parent` and `class_names` of a level have different lengths.
    #[error(
        "level {level} ({level_name:?}): `parent` has {parents} entries but `class_names` has {classes}"
    )]
    ParentLengthMismatch {
        /// Index of the level.
        level: usize,
        /// Name of the level.
        level_name: String,
        /// Length of `parent`.
        parents: usize,
        /// Length of `class_names`.
        classes: usize,
    },
    /// A parent index does not exist in the level above.
    #[error(
        "level {level} ({level_name:?}): class {class} ({class_name:?}) has parent {parent}, \
         but level {parent_level} has only {num_parents} classes"
    )]
    ParentOutOfRange {
        /// Index of the level.
        level: usize,
        /// Name of the level.
        level_name: String,
        /// Index of the class.
        class: usize,
        /// Name of the class.
        class_name: String,
        /// The offending parent index.
        parent: usize,
        /// Index of the level above (`level - 1`).
        parent_level: usize,
        /// Number of classes in the level above.
        num_parents: usize,
    },
    /// A non-leaf class has no child in the level below.
    #[error(
        "level {level} ({level_name:?}): class {class} ({class_name:?}) has no children in level {child_level}"
    )]
    ChildlessClass {
        /// Index of the level.
        level: usize,
        /// Name of the level.
        level_name: String,
        /// Index of the class.
        class: usize,
        /// Name of the class.
        class_name: String,
        /// Index of the level below (`level + 1`).
        child_level: usize,
    },
    /// [`Hierarchy::two_level`] got an empty `subclass_counts`.
    #[error("two_level: `subclass_counts` is empty; at least one superclass is needed")]
    NoSuperclasses,
    /// [`Hierarchy::two_level`] got a zero subclass count.
    #[error("two_level: superclass {superclass} has 0 subclasses (`subclass_counts[{superclass}]` must be at least 1)")]
    ZeroSubclasses {
        /// Index of the superclass.
        superclass: usize,
    },
    /// [`Hierarchy::from_leaf_paths`] got no paths.
    #[error("from_leaf_paths: `paths` is empty; at least one leaf is needed")]
    NoPaths,
    /// A leaf path whose length differs from the number of levels.
    #[error("from_leaf_paths: path {path} has {len} names but there are {expected} levels")]
    RaggedPath {
        /// Index of the path.
        path: usize,
        /// Its length.
        len: usize,
        /// `level_names.len()`.
        expected: usize,
    },
    /// A class name appears under two different parents.
    #[error(
        "from_leaf_paths: level {level} ({level_name:?}): class {class_name:?} appears under two \
         different parents, {first_parent:?} (path {first_path}) and {second_parent:?} (path {second_path})"
    )]
    ConflictingParent {
        /// Index of the level.
        level: usize,
        /// Name of the level.
        level_name: String,
        /// The class name.
        class_name: String,
        /// Parent name at its first appearance.
        first_parent: String,
        /// Path of its first appearance.
        first_path: usize,
        /// The other parent name.
        second_parent: String,
        /// Path where the other parent appears.
        second_path: usize,
    },
    /// A leaf name appears in two paths.
    #[error("from_leaf_paths: leaf {leaf_name:?} appears in paths {first} and {second}; leaf names must be unique")]
    DuplicateLeaf {
        /// The repeated leaf name.
        leaf_name: String,
        /// First path.
        first: usize,
        /// Second path.
        second: usize,
    },
    /// A count parameter (groups, splits, per_target, num_samples, ...) is zero.
    #[error("{rule}: `{field}` must be at least 1")]
    ZeroParameter {
        /// The relabeling or rule at fault.
        rule: String,
        /// The field that is zero.
        field: &'static str,
    },
    /// A level index (`level` or `target_level`) is out of range.
    #[error("{rule}: `{field}` = {value} is out of range; the hierarchy has {num_levels} level(s), numbered from 0")]
    LevelOutOfRange {
        /// The relabeling at fault.
        rule: String,
        /// `"level"` or `"target_level"`.
        field: &'static str,
        /// The given level index.
        value: usize,
        /// Number of levels of the hierarchy.
        num_levels: usize,
    },
    /// [`Relabeling::PerSample`] was built without `num_samples`.
    #[error("{rule}: `num_samples` is required (one label per sample needs a fixed, finite set of samples)")]
    MissingNumSamples {
        /// The relabeling at fault.
        rule: String,
    },
    /// [`Relabeling::Misaligned`] asked for more groups than leaves allow.
    #[error(
        "{rule}: `groups` = {groups} is too many: every group needs leaves of two target classes, \
         so at most num_leaves / 2 = {max_groups} groups are possible with {num_leaves} leaves"
    )]
    TooManyGroups {
        /// The relabeling at fault.
        rule: String,
        /// Requested number of groups.
        groups: usize,
        /// Number of leaves of the hierarchy.
        num_leaves: usize,
        /// `num_leaves / 2`.
        max_groups: usize,
    },
    /// [`Relabeling::Misaligned`] against a target level with one class.
    #[error(
        "{rule}: target level {target_level} ({level_name:?}) has {num_targets} class(es); \
         groups that cross target classes need at least 2"
    )]
    TooFewTargets {
        /// The relabeling at fault.
        rule: String,
        /// The target level.
        target_level: usize,
        /// Its name.
        level_name: String,
        /// Its number of classes.
        num_targets: usize,
    },
    /// The number of labels does not fit in `usize`.
    #[error("{rule}: the number of labels ({factor_a} x {factor_b}) overflows usize")]
    TooManyLabels {
        /// The relabeling at fault.
        rule: String,
        /// First factor.
        factor_a: usize,
        /// Second factor.
        factor_b: usize,
    },
    /// A sample's leaf index is not a leaf of the hierarchy.
    #[error(
        "{rule}: sample {sample} has leaf {leaf}, but the hierarchy has only {num_leaves} leaves"
    )]
    LeafOutOfRange {
        /// The relabeling at fault.
        rule: String,
        /// Index of the sample.
        sample: usize,
        /// Its leaf index.
        leaf: usize,
        /// Number of leaves of the hierarchy.
        num_leaves: usize,
    },
    /// `labels` and `targets` of a table rule have different lengths.
    #[error("table rule {rule:?}: `labels` has {labels} entries but `targets` has {targets}")]
    TableLengthMismatch {
        /// Name of the table rule.
        rule: String,
        /// Length of `labels`.
        labels: usize,
        /// Length of `targets`.
        targets: usize,
    },
    /// A table label is not below `num_classes`.
    #[error("table rule {rule:?}: sample {sample} has label {label}, but `num_classes` is {num_classes}")]
    LabelOutOfRange {
        /// Name of the table rule.
        rule: String,
        /// Index of the sample.
        sample: usize,
        /// Its label.
        label: usize,
        /// `num_classes`.
        num_classes: usize,
    },
    /// A table target is not below `num_targets`.
    #[error("table rule {rule:?}: sample {sample} has target {target}, but `num_targets` is {num_targets}")]
    TargetOutOfRange {
        /// Name of the table rule.
        rule: String,
        /// Index of the sample.
        sample: usize,
        /// Its target.
        target: usize,
        /// `num_targets`.
        num_targets: usize,
    },
    /// A deserialized [`LabelRule`] is internally inconsistent.
    #[error("invalid label rule {rule:?}: {reason}")]
    InvalidRule {
        /// Name of the rule.
        rule: String,
        /// What is inconsistent.
        reason: String,
    },
}

/// One level of a hierarchy: class names, and for every level but the top, each class's parent
/// index in the level above.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// Name of the level, e.g. `"superclass"`. Unique within a hierarchy.
    pub name: String,
    /// Names of the classes of this level, unique within the level; class `i` is `class_names[i]`.
    pub class_names: Vec<String>,
    /// For level 0: empty. Otherwise `parent[i]` is the index, in the level above, of class `i`'s
    /// parent.
    #[serde(default)]
    pub parent: Vec<usize>,
}

/// A label tree. Level 0 is the coarsest (e.g. superclass); the last level holds the leaves.
/// Every class of level l>0 has exactly one parent in level l-1; every class of level l<last
/// has at least one child.
///
/// Serialized as `{ levels = [...] }`; deserializing validates like [`Hierarchy::new`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HierarchyRepr")]
pub struct Hierarchy {
    levels: Vec<Level>,
}

/// Unvalidated serde form of [`Hierarchy`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HierarchyRepr {
    levels: Vec<Level>,
}

impl TryFrom<HierarchyRepr> for Hierarchy {
    type Error = HierarchyError;
    fn try_from(repr: HierarchyRepr) -> Result<Self, Self::Error> {
        Hierarchy::new(repr.levels)
    }
}

impl Hierarchy {
    /// Build from levels, validated (parent indices in range, every non-leaf class has a child,
    /// level 0 has empty `parent`, names unique within a level, no empty level).
    ///
    /// Level names must also be unique, so that [`Hierarchy::level_index`] is unambiguous.
    pub fn new(levels: Vec<Level>) -> Result<Self, HierarchyError> {
        if levels.is_empty() {
            return Err(HierarchyError::NoLevels);
        }
        let mut level_names: HashMap<&str, usize> = HashMap::new();
        for (l, level) in levels.iter().enumerate() {
            if let Some(&first) = level_names.get(level.name.as_str()) {
                return Err(HierarchyError::DuplicateLevelName {
                    level_name: level.name.clone(),
                    first,
                    second: l,
                });
            }
            level_names.insert(&level.name, l);
        }
        for (l, level) in levels.iter().enumerate() {
            if level.class_names.is_empty() {
                return Err(HierarchyError::EmptyLevel {
                    level: l,
                    level_name: level.name.clone(),
                });
            }
            let mut names: HashMap<&str, usize> = HashMap::new();
            for (c, name) in level.class_names.iter().enumerate() {
                if let Some(&first) = names.get(name.as_str()) {
                    return Err(HierarchyError::DuplicateClassName {
                        level: l,
                        level_name: level.name.clone(),
                        class_name: name.clone(),
                        first,
                        second: c,
                    });
                }
                names.insert(name, c);
            }
            if l == 0 {
                if !level.parent.is_empty() {
                    return Err(HierarchyError::TopLevelHasParents {
                        level_name: level.name.clone(),
                        len: level.parent.len(),
                    });
                }
                continue;
            }
            if level.parent.len() != level.class_names.len() {
                return Err(HierarchyError::ParentLengthMismatch {
                    level: l,
                    level_name: level.name.clone(),
                    parents: level.parent.len(),
                    classes: level.class_names.len(),
                });
            }
            let num_parents = levels[l - 1].class_names.len();
            let mut has_child = vec![false; num_parents];
            for (c, &p) in level.parent.iter().enumerate() {
                if p >= num_parents {
                    return Err(HierarchyError::ParentOutOfRange {
                        level: l,
                        level_name: level.name.clone(),
                        class: c,
                        class_name: level.class_names[c].clone(),
                        parent: p,
                        parent_level: l - 1,
                        num_parents,
                    });
                }
                has_child[p] = true;
            }
            if let Some(p) = has_child.iter().position(|&h| !h) {
                let above = &levels[l - 1];
                return Err(HierarchyError::ChildlessClass {
                    level: l - 1,
                    level_name: above.name.clone(),
                    class: p,
                    class_name: above.class_names[p].clone(),
                    child_level: l,
                });
            }
        }
        Ok(Hierarchy { levels })
    }

    /// Two levels: superclass i has `subclass_counts[i]` subclasses (each count >= 1).
    /// Level names "superclass", "subclass"; class names "s{i}" and "s{i}.{j}".
    /// Leaves are numbered superclass by superclass: leaf index of (i, j) = sum(counts[..i]) + j.
    pub fn two_level(subclass_counts: &[usize]) -> Result<Self, HierarchyError> {
        if subclass_counts.is_empty() {
            return Err(HierarchyError::NoSuperclasses);
        }
        if let Some(superclass) = subclass_counts.iter().position(|&c| c == 0) {
            return Err(HierarchyError::ZeroSubclasses { superclass });
        }
        let top = Level {
            name: "superclass".to_string(),
            class_names: (0..subclass_counts.len())
                .map(|i| format!("s{i}"))
                .collect(),
            parent: Vec::new(),
        };
        let mut leaves = Level {
            name: "subclass".to_string(),
            class_names: Vec::new(),
            parent: Vec::new(),
        };
        for (i, &count) in subclass_counts.iter().enumerate() {
            for j in 0..count {
                leaves.class_names.push(format!("s{i}.{j}"));
                leaves.parent.push(i);
            }
        }
        Hierarchy::new(vec![top, leaves])
    }

    /// From each leaf's path of names, top level first (like a taxonomy file: kingdom, ..., species).
    /// All paths have the same length == level_names.len(). Classes at each level are numbered
    /// in order of first appearance. A name that appears under two different parents is an error
    /// (naming both parents). Leaf i of the result is `paths[i]` (leaf names must be unique).
    pub fn from_leaf_paths(
        level_names: &[String],
        paths: &[Vec<String>],
    ) -> Result<Self, HierarchyError> {
        let depth = level_names.len();
        if depth == 0 {
            return Err(HierarchyError::NoLevels);
        }
        if paths.is_empty() {
            return Err(HierarchyError::NoPaths);
        }
        if let Some((path, p)) = paths.iter().enumerate().find(|(_, p)| p.len() != depth) {
            return Err(HierarchyError::RaggedPath {
                path,
                len: p.len(),
                expected: depth,
            });
        }
        let mut levels: Vec<Level> = level_names
            .iter()
            .map(|name| Level {
                name: name.clone(),
                class_names: Vec::new(),
                parent: Vec::new(),
            })
            .collect();
        // Per level: class name -> (class index, first path it appeared in).
        let mut index: Vec<HashMap<&str, (usize, usize)>> = vec![HashMap::new(); depth];
        for (pi, path) in paths.iter().enumerate() {
            let mut parent: Option<usize> = None;
            for (l, name) in path.iter().enumerate() {
                let class = match index[l].get(name.as_str()) {
                    Some(&(class, first_path)) => {
                        if let Some(p) = parent {
                            let first_parent = levels[l].parent[class];
                            if first_parent != p {
                                return Err(HierarchyError::ConflictingParent {
                                    level: l,
                                    level_name: levels[l].name.clone(),
                                    class_name: name.clone(),
                                    first_parent: levels[l - 1].class_names[first_parent].clone(),
                                    first_path,
                                    second_parent: path[l - 1].clone(),
                                    second_path: pi,
                                });
                            }
                        }
                        if l + 1 == depth {
                            return Err(HierarchyError::DuplicateLeaf {
                                leaf_name: name.clone(),
                                first: first_path,
                                second: pi,
                            });
                        }
                        class
                    }
                    None => {
                        let class = levels[l].class_names.len();
                        levels[l].class_names.push(name.clone());
                        if let Some(p) = parent {
                            levels[l].parent.push(p);
                        }
                        index[l].insert(name, (class, pi));
                        class
                    }
                };
                parent = Some(class);
            }
        }
        Hierarchy::new(levels)
    }

    /// Number of levels (at least 1).
    pub fn num_levels(&self) -> usize {
        self.levels.len()
    }

    /// Index of the leaf level: `num_levels() - 1`.
    pub fn leaf_level(&self) -> usize {
        self.levels.len() - 1
    }

    /// Level `l`.
    ///
    /// # Panics
    /// If `l >= num_levels()`.
    pub fn level(&self, l: usize) -> &Level {
        &self.levels[l]
    }

    /// All levels, coarsest first.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Index of the level named `name`, if any.
    pub fn level_index(&self, name: &str) -> Option<usize> {
        self.levels.iter().position(|level| level.name == name)
    }

    /// Number of classes of level `l`.
    ///
    /// # Panics
    /// If `l >= num_levels()`.
    pub fn num_classes(&self, l: usize) -> usize {
        self.levels[l].class_names.len()
    }

    /// Number of leaves (classes of the last level).
    pub fn num_leaves(&self) -> usize {
        self.num_classes(self.leaf_level())
    }

    /// Ancestor at level `to` (to <= from) of class `class` of level `from`.
    ///
    /// # Panics
    /// If `from >= num_levels()`, `to > from` or `class >= num_classes(from)`.
    pub fn ancestor(&self, from: usize, class: usize, to: usize) -> usize {
        assert!(
            from < self.num_levels(),
            "ancestor: level {from} out of range ({} levels)",
            self.num_levels()
        );
        assert!(
            to <= from,
            "ancestor: target level {to} is below level {from}"
        );
        assert!(
            class < self.num_classes(from),
            "ancestor: class {class} out of range for level {from} ({} classes)",
            self.num_classes(from)
        );
        let mut class = class;
        for l in (to + 1..=from).rev() {
            class = self.levels[l].parent[class];
        }
        class
    }

    /// Ancestor at level `to` of leaf `leaf`.
    ///
    /// # Panics
    /// If `to >= num_levels()` or `leaf >= num_leaves()`.
    pub fn leaf_ancestor(&self, leaf: usize, to: usize) -> usize {
        self.ancestor(self.leaf_level(), leaf, to)
    }

    /// Leaves under class `class` of level `l`, ascending.
    ///
    /// # Panics
    /// If `l >= num_levels()` or `class >= num_classes(l)`.
    pub fn leaves_under(&self, l: usize, class: usize) -> Vec<usize> {
        assert!(
            class < self.num_classes(l),
            "leaves_under: class {class} out of range for level {l} ({} classes)",
            self.num_classes(l)
        );
        (0..self.num_leaves())
            .filter(|&leaf| self.leaf_ancestor(leaf, l) == class)
            .collect()
    }

    /// Children (in level l+1) of class `class` of level `l`, ascending. Empty for leaves.
    ///
    /// # Panics
    /// If `l >= num_levels()` or `class >= num_classes(l)`.
    pub fn children(&self, l: usize, class: usize) -> Vec<usize> {
        assert!(
            class < self.num_classes(l),
            "children: class {class} out of range for level {l} ({} classes)",
            self.num_classes(l)
        );
        match self.levels.get(l + 1) {
            None => Vec::new(),
            Some(below) => (0..below.parent.len())
                .filter(|&c| below.parent[c] == class)
                .collect(),
        }
    }

    /// Each leaf's ancestor at level `to`.
    fn leaf_targets(&self, to: usize) -> Vec<usize> {
        (0..self.num_leaves())
            .map(|leaf| self.leaf_ancestor(leaf, to))
            .collect()
    }
}

/// How to relabel samples for pretraining: a granularity of the label space. Serde-tagged so it
/// can be written in TOML as `{ kind = "merge_within", groups = 2 }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Relabeling {
    /// The classes of hierarchy level `level` (0 = coarsest). Aligned with the target when
    /// `level >= target_level`.
    Level {
        /// The hierarchy level whose classes are the labels.
        level: usize,
    },
    /// Intermediate: the leaves under each target class are split at random into `groups`
    /// non-empty groups (groups clamped to the number of leaves under that class), one label per group.
    ///
    /// Group sizes within a target class differ by at most one. Labels are numbered target class
    /// by target class.
    MergeWithin {
        /// Groups per target class (clamped to the number of leaves under it).
        groups: usize,
    },
    /// Random but aligned: each SAMPLE gets a label drawn uniformly from `per_target` labels
    /// reserved for its target class, independent of its leaf (meaningless inside the target class).
    ///
    /// The labels of target class `t` are `t * per_target .. (t + 1) * per_target`.
    RandomAligned {
        /// Labels reserved per target class.
        per_target: usize,
    },
    /// Misaligned: the leaves are partitioned at random into `groups` groups that cross target
    /// classes: built so that every group holds leaves of at least two different target classes
    /// whenever that is possible (error if groups > num_leaves/2 or fewer than 2 target classes);
    /// a leaf's label is its group.
    ///
    /// Every group crossing is possible exactly when `groups <= num_leaves - n_max`, where `n_max`
    /// is the number of leaves of the largest target class; otherwise exactly
    /// `num_leaves - n_max` groups cross (the most possible) and the rest lie inside the largest
    /// target class. Group sizes differ by at most one.
    Misaligned {
        /// Number of groups (labels).
        groups: usize,
    },
    /// Finer than the leaves: each leaf is split into `splits` sub-labels and each SAMPLE draws one
    /// uniformly (labels leaf*splits + u). No feature carries the split.
    SplitFiner {
        /// Sub-labels per leaf.
        splits: usize,
    },
    /// One label per sample (needs a fixed, finite set of samples: label = sample index).
    ///
    /// [`Relabeling::build`] cannot know which target class each sample has, so its rule reports
    /// every class's target as unknown (`None`, not aligned); use
    /// [`Relabeling::build_for_samples`] to get the aligned rule with its summed head.
    PerSample,
}

impl Relabeling {
    /// A short stable name for tables and file names, e.g. "level1", "merge_within_2",
    /// "random_aligned_4", "misaligned_8", "split_finer_4", "per_sample".
    pub fn name(&self) -> String {
        match self {
            Relabeling::Level { level } => format!("level{level}"),
            Relabeling::MergeWithin { groups } => format!("merge_within_{groups}"),
            Relabeling::RandomAligned { per_target } => format!("random_aligned_{per_target}"),
            Relabeling::Misaligned { groups } => format!("misaligned_{groups}"),
            Relabeling::SplitFiner { splits } => format!("split_finer_{splits}"),
            Relabeling::PerSample => "per_sample".to_string(),
        }
    }

    /// Build the rule. `target_level` is the level of the downstream (coarse) target.
    /// `num_samples` is required (Some) for PerSample, otherwise ignored. Errors (never panics)
    /// on zero groups/splits/per_target, level out of range, target_level out of range,
    /// missing num_samples, impossible misaligned grouping. Deterministic given the RNG.
    ///
    /// `Some(0)` samples for PerSample is also an error.
    pub fn build<R: Rng + ?Sized>(
        &self,
        h: &Hierarchy,
        target_level: usize,
        num_samples: Option<usize>,
        rng: &mut R,
    ) -> Result<LabelRule, HierarchyError> {
        let rule = self.name();
        let zero = |field: &'static str| HierarchyError::ZeroParameter {
            rule: rule.clone(),
            field,
        };
        match *self {
            Relabeling::MergeWithin { groups: 0 } | Relabeling::Misaligned { groups: 0 } => {
                return Err(zero("groups"))
            }
            Relabeling::RandomAligned { per_target: 0 } => return Err(zero("per_target")),
            Relabeling::SplitFiner { splits: 0 } => return Err(zero("splits")),
            Relabeling::PerSample => match num_samples {
                None => return Err(HierarchyError::MissingNumSamples { rule }),
                Some(0) => return Err(zero("num_samples")),
                Some(_) => {}
            },
            _ => {}
        }
        check_level(&rule, "target_level", target_level, h)?;
        let num_targets = h.num_classes(target_level);
        let num_leaves = h.num_leaves();
        let leaf_target = h.leaf_targets(target_level);
        let overflow = |a: usize, b: usize| HierarchyError::TooManyLabels {
            rule: rule.clone(),
            factor_a: a,
            factor_b: b,
        };
        match *self {
            Relabeling::Level { level } => {
                check_level(&rule, "level", level, h)?;
                let leaf_label = h.leaf_targets(level);
                Ok(LabelRule::from_leaf_map(
                    rule,
                    leaf_label,
                    h.num_classes(level),
                    &leaf_target,
                    num_targets,
                ))
            }
            Relabeling::MergeWithin { groups } => {
                let mut leaf_label = vec![0; num_leaves];
                let mut next = 0;
                for mut leaves in leaves_by_class(&leaf_target, num_targets) {
                    leaves.shuffle(rng);
                    let g = groups.min(leaves.len());
                    for (i, &leaf) in leaves.iter().enumerate() {
                        leaf_label[leaf] = next + i % g;
                    }
                    next += g;
                }
                Ok(LabelRule::from_leaf_map(
                    rule,
                    leaf_label,
                    next,
                    &leaf_target,
                    num_targets,
                ))
            }
            Relabeling::Misaligned { groups } => {
                if num_targets < 2 {
                    return Err(HierarchyError::TooFewTargets {
                        rule,
                        target_level,
                        level_name: h.level(target_level).name.clone(),
                        num_targets,
                    });
                }
                if groups > num_leaves / 2 {
                    return Err(HierarchyError::TooManyGroups {
                        rule,
                        groups,
                        num_leaves,
                        max_groups: num_leaves / 2,
                    });
                }
                // Lay the leaves out target block by target block, largest block first (ties in
                // random order, leaves shuffled within blocks), and deal them round-robin into
                // the groups. Since a group's members are `groups` positions apart, a group can
                // stay inside one block only if that block is the first and the group's last
                // position is still inside it; this makes every group cross whenever
                // `groups <= num_leaves - n_max` and maximises crossing groups otherwise.
                let mut blocks = leaves_by_class(&leaf_target, num_targets);
                blocks.shuffle(rng);
                for block in blocks.iter_mut() {
                    block.shuffle(rng);
                }
                blocks.sort_by_key(|b| std::cmp::Reverse(b.len()));
                let mut group_label: Vec<usize> = (0..groups).collect();
                group_label.shuffle(rng);
                let mut leaf_label = vec![0; num_leaves];
                for (pos, &leaf) in blocks.iter().flatten().enumerate() {
                    leaf_label[leaf] = group_label[pos % groups];
                }
                Ok(LabelRule::from_leaf_map(
                    rule,
                    leaf_label,
                    groups,
                    &leaf_target,
                    num_targets,
                ))
            }
            Relabeling::RandomAligned { per_target } => {
                let num_classes = num_targets
                    .checked_mul(per_target)
                    .ok_or_else(|| overflow(num_targets, per_target))?;
                Ok(LabelRule {
                    name: rule,
                    num_classes,
                    num_targets,
                    target_of_class: (0..num_classes).map(|c| Some(c / per_target)).collect(),
                    map: RuleMap::RandomAligned {
                        leaf_target,
                        per_target,
                    },
                })
            }
            Relabeling::SplitFiner { splits } => {
                let num_classes = num_leaves
                    .checked_mul(splits)
                    .ok_or_else(|| overflow(num_leaves, splits))?;
                Ok(LabelRule {
                    name: rule,
                    num_classes,
                    num_targets,
                    target_of_class: (0..num_classes)
                        .map(|c| Some(leaf_target[c / splits]))
                        .collect(),
                    map: RuleMap::SplitFiner { num_leaves, splits },
                })
            }
            Relabeling::PerSample => {
                // Checked above: Some(n) with n >= 1.
                let n = num_samples.unwrap_or(1);
                Ok(LabelRule {
                    name: rule,
                    num_classes: n,
                    num_targets,
                    target_of_class: vec![None; n],
                    map: RuleMap::PerSample,
                })
            }
        }
    }

    /// Like [`Relabeling::build`] for a known, fixed set of samples: sample `i` has leaf
    /// `sample_leaves[i]` (and `num_samples` is `sample_leaves.len()`).
    ///
    /// For every relabeling but [`Relabeling::PerSample`] the rule is the same as `build`'s (with
    /// the same RNG draws). For PerSample the rule additionally knows each sample's target class,
    /// so it is aligned and has a summed head. Errors as `build` does, and if a leaf index is out
    /// of range (naming the sample).
    pub fn build_for_samples<R: Rng + ?Sized>(
        &self,
        h: &Hierarchy,
        target_level: usize,
        sample_leaves: &[usize],
        rng: &mut R,
    ) -> Result<LabelRule, HierarchyError> {
        let num_leaves = h.num_leaves();
        if let Some((sample, &leaf)) = sample_leaves
            .iter()
            .enumerate()
            .find(|(_, &leaf)| leaf >= num_leaves)
        {
            return Err(HierarchyError::LeafOutOfRange {
                rule: self.name(),
                sample,
                leaf,
                num_leaves,
            });
        }
        let mut rule = self.build(h, target_level, Some(sample_leaves.len()), rng)?;
        if matches!(rule.map, RuleMap::PerSample) {
            let leaf_target = h.leaf_targets(target_level);
            rule.target_of_class = sample_leaves
                .iter()
                .map(|&leaf| Some(leaf_target[leaf]))
                .collect();
        }
        Ok(rule)
    }
}

/// Error unless `level` is a level of `h`.
fn check_level(
    rule: &str,
    field: &'static str,
    level: usize,
    h: &Hierarchy,
) -> Result<(), HierarchyError> {
    if level < h.num_levels() {
        Ok(())
    } else {
        Err(HierarchyError::LevelOutOfRange {
            rule: rule.to_string(),
            field,
            value: level,
            num_levels: h.num_levels(),
        })
    }
}

/// Indices grouped by their class: `result[c]` lists, ascending, the `i` with `class_of[i] == c`.
fn leaves_by_class(class_of: &[usize], num_classes: usize) -> Vec<Vec<usize>> {
    let mut by_class = vec![Vec::new(); num_classes];
    for (i, &c) in class_of.iter().enumerate() {
        by_class[c].push(i);
    }
    by_class
}

/// For each class, the single target of its members, or None if it has none or several.
/// `members` yields (class, target) pairs; all must be in range.
fn targets_of_classes(
    members: impl Iterator<Item = (usize, usize)>,
    num_classes: usize,
) -> Vec<Option<usize>> {
    #[derive(Clone, Copy)]
    enum Seen {
        Empty,
        One(usize),
        Mixed,
    }
    let mut seen = vec![Seen::Empty; num_classes];
    for (class, target) in members {
        seen[class] = match seen[class] {
            Seen::Empty => Seen::One(target),
            Seen::One(t) if t == target => Seen::One(t),
            _ => Seen::Mixed,
        };
    }
    seen.into_iter()
        .map(|s| match s {
            Seen::One(t) => Some(t),
            Seen::Empty | Seen::Mixed => None,
        })
        .collect()
}

/// How a [`LabelRule`] computes labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RuleMap {
    /// A fixed label per leaf (Level, MergeWithin, Misaligned).
    Leaf { leaf_label: Vec<usize> },
    /// `leaf_target[leaf] * per_target + u`, `u` uniform in `0..per_target`.
    RandomAligned {
        leaf_target: Vec<usize>,
        per_target: usize,
    },
    /// `leaf * splits + u`, `u` uniform in `0..splits`.
    SplitFiner { num_leaves: usize, splits: usize },
    /// The sample index.
    PerSample,
    /// `labels[sample]`.
    Table { labels: Vec<usize> },
}

/// A built relabeling: turns (leaf, sample index) into a pretraining label.
///
/// Deserializing checks that the rule is internally consistent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LabelRuleRepr")]
pub struct LabelRule {
    name: String,
    num_classes: usize,
    num_targets: usize,
    target_of_class: Vec<Option<usize>>,
    map: RuleMap,
}

/// Unvalidated serde form of [`LabelRule`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelRuleRepr {
    name: String,
    num_classes: usize,
    num_targets: usize,
    target_of_class: Vec<Option<usize>>,
    map: RuleMap,
}

impl TryFrom<LabelRuleRepr> for LabelRule {
    type Error = HierarchyError;
    fn try_from(r: LabelRuleRepr) -> Result<Self, Self::Error> {
        let rule = LabelRule {
            name: r.name,
            num_classes: r.num_classes,
            num_targets: r.num_targets,
            target_of_class: r.target_of_class,
            map: r.map,
        };
        rule.check().map_err(|reason| HierarchyError::InvalidRule {
            rule: rule.name.clone(),
            reason,
        })?;
        Ok(rule)
    }
}

impl LabelRule {
    /// A rule from an explicit per-sample table (e.g. k-means clusters computed elsewhere):
    /// label of sample i = `labels[i]`; `targets[i]` is sample i's target class. target_of_class is
    /// Some(t) for a class all of whose samples have target t, None if it mixes targets or is empty.
    /// Errors if lengths differ or a label >= num_classes.
    ///
    /// Also errors if a target >= num_targets, or if `num_classes` or `num_targets` is zero.
    pub fn from_table(
        name: &str,
        labels: Vec<usize>,
        num_classes: usize,
        targets: &[usize],
        num_targets: usize,
    ) -> Result<Self, HierarchyError> {
        let rule = || name.to_string();
        if num_classes == 0 {
            return Err(HierarchyError::ZeroParameter {
                rule: format!("table rule {name:?}"),
                field: "num_classes",
            });
        }
        if num_targets == 0 {
            return Err(HierarchyError::ZeroParameter {
                rule: format!("table rule {name:?}"),
                field: "num_targets",
            });
        }
        if labels.len() != targets.len() {
            return Err(HierarchyError::TableLengthMismatch {
                rule: rule(),
                labels: labels.len(),
                targets: targets.len(),
            });
        }
        if let Some((sample, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= num_classes) {
            return Err(HierarchyError::LabelOutOfRange {
                rule: rule(),
                sample,
                label,
                num_classes,
            });
        }
        if let Some((sample, &target)) = targets.iter().enumerate().find(|(_, &t)| t >= num_targets)
        {
            return Err(HierarchyError::TargetOutOfRange {
                rule: rule(),
                sample,
                target,
                num_targets,
            });
        }
        let target_of_class = targets_of_classes(
            labels.iter().copied().zip(targets.iter().copied()),
            num_classes,
        );
        Ok(LabelRule {
            name: rule(),
            num_classes,
            num_targets,
            target_of_class,
            map: RuleMap::Table { labels },
        })
    }

    /// A rule giving each leaf a fixed label; labels and targets must be in range.
    fn from_leaf_map(
        name: String,
        leaf_label: Vec<usize>,
        num_classes: usize,
        leaf_target: &[usize],
        num_targets: usize,
    ) -> Self {
        let target_of_class = targets_of_classes(
            leaf_label.iter().copied().zip(leaf_target.iter().copied()),
            num_classes,
        );
        LabelRule {
            name,
            num_classes,
            num_targets,
            target_of_class,
            map: RuleMap::Leaf { leaf_label },
        }
    }

    /// Internal consistency (for deserialized rules): the reason if inconsistent.
    fn check(&self) -> Result<(), String> {
        if self.num_classes == 0 {
            return Err("`num_classes` is 0".into());
        }
        if self.num_targets == 0 {
            return Err("`num_targets` is 0".into());
        }
        if self.target_of_class.len() != self.num_classes {
            return Err(format!(
                "`target_of_class` has {} entries but `num_classes` is {}",
                self.target_of_class.len(),
                self.num_classes
            ));
        }
        if let Some((c, t)) = self
            .target_of_class
            .iter()
            .enumerate()
            .find_map(|(c, t)| t.filter(|&t| t >= self.num_targets).map(|t| (c, t)))
        {
            return Err(format!(
                "class {c} has target {t}, but `num_targets` is {}",
                self.num_targets
            ));
        }
        let below = |what: &str, values: &[usize], bound: usize, bound_name: &str| match values
            .iter()
            .enumerate()
            .find(|(_, &v)| v >= bound)
        {
            Some((i, v)) => Err(format!(
                "{what} {i} maps to {v}, but `{bound_name}` is {bound}"
            )),
            None => Ok(()),
        };
        match &self.map {
            RuleMap::Leaf { leaf_label } => {
                below("leaf", leaf_label, self.num_classes, "num_classes")
            }
            RuleMap::Table { labels } => below("sample", labels, self.num_classes, "num_classes"),
            RuleMap::PerSample => Ok(()),
            RuleMap::RandomAligned {
                leaf_target,
                per_target,
            } => {
                if *per_target == 0 {
                    return Err("`per_target` is 0".into());
                }
                if self.num_targets.checked_mul(*per_target) != Some(self.num_classes) {
                    return Err(format!(
                        "`num_classes` is {} but num_targets x per_target is {} x {}",
                        self.num_classes, self.num_targets, per_target
                    ));
                }
                below("leaf", leaf_target, self.num_targets, "num_targets")
            }
            RuleMap::SplitFiner { num_leaves, splits } => {
                if *splits == 0 {
                    return Err("`splits` is 0".into());
                }
                if num_leaves.checked_mul(*splits) != Some(self.num_classes) {
                    return Err(format!(
                        "`num_classes` is {} but num_leaves x splits is {} x {}",
                        self.num_classes, num_leaves, splits
                    ));
                }
                Ok(())
            }
        }
    }

    /// The rule's name (the [`Relabeling::name`] it was built from, or the table's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of pretraining classes; every label is below this.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Number of target classes (classes of the target level, or the table's `num_targets`).
    pub fn num_targets(&self) -> usize {
        self.num_targets
    }

    /// Label of one sample. `sample` is used by PerSample/table rules (error-free: the caller
    /// guarantees sample < num_samples for those), `rng` by the per-sample random rules
    /// (RandomAligned, SplitFiner); the others ignore both. The leaf is ignored by PerSample and
    /// table rules.
    ///
    /// # Panics
    /// For PerSample/table rules, if `sample` is not below the number of samples; for the other
    /// rules, if `leaf` is not a leaf of the hierarchy the rule was built from.
    pub fn label<R: Rng + ?Sized>(&self, leaf: usize, sample: usize, rng: &mut R) -> usize {
        let check_leaf = |num_leaves: usize| {
            assert!(
                leaf < num_leaves,
                "label rule {:?}: leaf {leaf} out of range ({num_leaves} leaves)",
                self.name
            );
        };
        match &self.map {
            RuleMap::Leaf { leaf_label } => {
                check_leaf(leaf_label.len());
                leaf_label[leaf]
            }
            RuleMap::RandomAligned {
                leaf_target,
                per_target,
            } => {
                check_leaf(leaf_target.len());
                leaf_target[leaf] * per_target + rng.gen_range(0..*per_target)
            }
            RuleMap::SplitFiner { num_leaves, splits } => {
                check_leaf(*num_leaves);
                leaf * splits + rng.gen_range(0..*splits)
            }
            RuleMap::PerSample => {
                assert!(
                    sample < self.num_classes,
                    "label rule {:?}: sample {sample} out of range ({} samples)",
                    self.name,
                    self.num_classes
                );
                sample
            }
            RuleMap::Table { labels } => {
                assert!(
                    sample < labels.len(),
                    "label rule {:?}: sample {sample} out of range ({} samples)",
                    self.name,
                    labels.len()
                );
                labels[sample]
            }
        }
    }

    /// Labels of a whole set of samples (sample i has leaf `leaves[i]`).
    ///
    /// # Panics
    /// As [`LabelRule::label`]: for PerSample/table rules if `leaves` is longer than the sample
    /// set, otherwise if a leaf is out of range.
    pub fn label_all<R: Rng + ?Sized>(&self, leaves: &[usize], rng: &mut R) -> Vec<usize> {
        leaves
            .iter()
            .enumerate()
            .map(|(sample, &leaf)| self.label(leaf, sample, rng))
            .collect()
    }

    /// For each class, the target class it lies inside, or None if it crosses target classes
    /// (or, for table rules, is empty; for PerSample rules from [`Relabeling::build`], is unknown).
    pub fn target_of_class(&self) -> &[Option<usize>] {
        &self.target_of_class
    }

    /// True when every class lies inside one target class (so a summed head is defined).
    pub fn is_aligned(&self) -> bool {
        self.target_of_class.iter().all(Option::is_some)
    }

    /// The class -> target map when aligned (for the summed / mapped head), else None.
    pub fn summed_head(&self) -> Option<Vec<usize>> {
        self.target_of_class.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeSet;

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// Three levels: 2 kingdoms, 4 families, 9 species (uneven).
    fn three_level() -> Hierarchy {
        let paths: Vec<Vec<String>> = [
            ["A", "a1", "x1"],
            ["A", "a1", "x2"],
            ["A", "a2", "x3"],
            ["B", "b1", "x4"],
            ["B", "b1", "x5"],
            ["B", "b1", "x6"],
            ["B", "b2", "x7"],
            ["A", "a2", "x8"],
            ["B", "b2", "x9"],
        ]
        .iter()
        .map(|p| s(p))
        .collect();
        Hierarchy::from_leaf_paths(&s(&["kingdom", "family", "species"]), &paths).unwrap()
    }

    /// Checks a rule nests inside the target level: labels in range, aligned, and every drawn
    /// label maps through the summed head to the sample's true target.
    fn assert_nests(rule: &LabelRule, h: &Hierarchy, target_level: usize, draws: usize) {
        assert!(rule.is_aligned(), "{} should be aligned", rule.name());
        let head = rule.summed_head().expect("aligned rule has a summed head");
        assert_eq!(head.len(), rule.num_classes());
        assert_eq!(rule.num_targets(), h.num_classes(target_level));
        let mut r = rng(99);
        for _ in 0..draws {
            for leaf in 0..h.num_leaves() {
                let label = rule.label(leaf, 0, &mut r);
                assert!(label < rule.num_classes(), "{}: label {label}", rule.name());
                assert_eq!(
                    head[label],
                    h.leaf_ancestor(leaf, target_level),
                    "{}: leaf {leaf} label {label}",
                    rule.name()
                );
            }
        }
    }

    // ---------------------------------------------------------------- hierarchy

    #[test]
    fn two_level_numbering_and_ancestors() {
        let h = Hierarchy::two_level(&[2, 3, 1]).unwrap();
        assert_eq!(h.num_levels(), 2);
        assert_eq!(h.leaf_level(), 1);
        assert_eq!(h.num_classes(0), 3);
        assert_eq!(h.num_leaves(), 6);
        assert_eq!(h.level(0).name, "superclass");
        assert_eq!(h.level(1).name, "subclass");
        assert_eq!(h.level_index("subclass"), Some(1));
        assert_eq!(h.level_index("nope"), None);
        assert_eq!(h.level(0).class_names, s(&["s0", "s1", "s2"]));
        assert_eq!(
            h.level(1).class_names,
            s(&["s0.0", "s0.1", "s1.0", "s1.1", "s1.2", "s2.0"])
        );
        // leaf (1, 2) = 2 + 2 = 4
        assert_eq!(h.level(1).class_names[4], "s1.2");
        let supers: Vec<usize> = (0..6).map(|f| h.leaf_ancestor(f, 0)).collect();
        assert_eq!(supers, vec![0, 0, 1, 1, 1, 2]);
        assert_eq!(h.leaf_ancestor(4, 1), 4);
        assert_eq!(h.ancestor(0, 2, 0), 2);
        assert_eq!(h.children(0, 1), vec![2, 3, 4]);
        assert_eq!(h.children(1, 3), Vec::<usize>::new());
        assert_eq!(h.leaves_under(0, 2), vec![5]);
        assert_eq!(h.leaves_under(1, 3), vec![3]);
        assert_eq!(h.levels().len(), 2);
    }

    #[test]
    fn two_level_errors() {
        assert_eq!(
            Hierarchy::two_level(&[]),
            Err(HierarchyError::NoSuperclasses)
        );
        let e = Hierarchy::two_level(&[2, 0, 1]).unwrap_err();
        assert_eq!(e, HierarchyError::ZeroSubclasses { superclass: 1 });
        assert!(e.to_string().contains("superclass 1"), "{e}");
    }

    #[test]
    fn from_leaf_paths_builds_in_first_appearance_order() {
        let h = three_level();
        assert_eq!(h.num_levels(), 3);
        assert_eq!(h.level(0).class_names, s(&["A", "B"]));
        assert_eq!(h.level(1).class_names, s(&["a1", "a2", "b1", "b2"]));
        assert_eq!(h.level(1).parent, vec![0, 0, 1, 1]);
        assert_eq!(
            h.level(2).class_names,
            s(&["x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9"])
        );
        assert_eq!(h.level(2).parent, vec![0, 0, 1, 2, 2, 2, 3, 1, 3]);
        assert_eq!(h.leaf_ancestor(7, 0), 0);
        assert_eq!(h.leaf_ancestor(8, 0), 1);
        assert_eq!(h.ancestor(2, 6, 1), 3);
        assert_eq!(h.leaves_under(0, 0), vec![0, 1, 2, 7]);
        assert_eq!(h.leaves_under(1, 1), vec![2, 7]);
        assert_eq!(h.children(1, 1), vec![2, 7]);
        assert_eq!(h.children(0, 1), vec![2, 3]);
        assert_eq!(h.level_index("family"), Some(1));
    }

    #[test]
    fn from_leaf_paths_name_under_two_parents() {
        let paths = vec![s(&["A", "f", "x1"]), s(&["B", "f", "x2"])];
        let e = Hierarchy::from_leaf_paths(&s(&["k", "fam", "sp"]), &paths).unwrap_err();
        assert!(
            matches!(e, HierarchyError::ConflictingParent { level: 1, .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("\"A\"") && msg.contains("\"B\"") && msg.contains("\"f\""),
            "{msg}"
        );
        assert!(msg.contains("fam"), "{msg}");
        // A leaf name under two parents also names both parents.
        let paths = vec![s(&["A", "x"]), s(&["B", "x"])];
        let msg = Hierarchy::from_leaf_paths(&s(&["k", "sp"]), &paths)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"A\"") && msg.contains("\"B\""), "{msg}");
    }

    #[test]
    fn from_leaf_paths_errors() {
        let names = s(&["k", "sp"]);
        let e =
            Hierarchy::from_leaf_paths(&names, &[s(&["A", "x"]), s(&["A", "y", "z"])]).unwrap_err();
        assert_eq!(
            e,
            HierarchyError::RaggedPath {
                path: 1,
                len: 3,
                expected: 2
            }
        );
        let e = Hierarchy::from_leaf_paths(&names, &[s(&["A", "x"]), s(&["A", "x"])]).unwrap_err();
        assert_eq!(
            e,
            HierarchyError::DuplicateLeaf {
                leaf_name: "x".into(),
                first: 0,
                second: 1
            }
        );
        assert_eq!(
            Hierarchy::from_leaf_paths(&names, &[]),
            Err(HierarchyError::NoPaths)
        );
        assert_eq!(
            Hierarchy::from_leaf_paths(&[], &[vec![]]),
            Err(HierarchyError::NoLevels)
        );
        let e = Hierarchy::from_leaf_paths(&s(&["k", "k"]), &[s(&["A", "x"])]).unwrap_err();
        assert!(
            matches!(e, HierarchyError::DuplicateLevelName { .. }),
            "{e:?}"
        );
        // Single-level hierarchy is fine.
        let h = Hierarchy::from_leaf_paths(&s(&["only"]), &[s(&["a"]), s(&["b"])]).unwrap();
        assert_eq!((h.num_levels(), h.num_leaves()), (1, 2));
    }

    fn lvl(name: &str, classes: &[&str], parent: &[usize]) -> Level {
        Level {
            name: name.into(),
            class_names: s(classes),
            parent: parent.to_vec(),
        }
    }

    #[test]
    fn new_validation_errors() {
        assert_eq!(Hierarchy::new(vec![]), Err(HierarchyError::NoLevels));
        let e = Hierarchy::new(vec![lvl("top", &["a"], &[]), lvl("leaf", &[], &[])]).unwrap_err();
        assert!(matches!(e, HierarchyError::EmptyLevel { level: 1, .. }));
        assert!(e.to_string().contains("\"leaf\""), "{e}");
        let e = Hierarchy::new(vec![lvl("top", &["a"], &[0])]).unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::TopLevelHasParents { len: 1, .. }
        ));
        let e = Hierarchy::new(vec![
            lvl("top", &["a"], &[]),
            lvl("leaf", &["x", "y"], &[0]),
        ])
        .unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::ParentLengthMismatch {
                parents: 1,
                classes: 2,
                ..
            }
        ));
        let e = Hierarchy::new(vec![
            lvl("top", &["a", "b"], &[]),
            lvl("leaf", &["x", "y"], &[0, 2]),
        ])
        .unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::ParentOutOfRange {
                class: 1,
                parent: 2,
                num_parents: 2,
                ..
            }
        ));
        assert!(e.to_string().contains("\"y\""), "{e}");
        let e = Hierarchy::new(vec![
            lvl("top", &["a", "b"], &[]),
            lvl("leaf", &["x", "y"], &[0, 0]),
        ])
        .unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::ChildlessClass {
                level: 0,
                class: 1,
                ..
            }
        ));
        assert!(e.to_string().contains("\"b\""), "{e}");
        let e = Hierarchy::new(vec![lvl("top", &["a", "b", "a"], &[])]).unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::DuplicateClassName {
                first: 0,
                second: 2,
                ..
            }
        ));
        let e = Hierarchy::new(vec![lvl("t", &["a"], &[]), lvl("t", &["x"], &[0])]).unwrap_err();
        assert!(matches!(e, HierarchyError::DuplicateLevelName { .. }));
        let h = Hierarchy::new(vec![
            lvl("top", &["a", "b"], &[]),
            lvl("leaf", &["x", "y", "z"], &[1, 0, 1]),
        ])
        .unwrap();
        assert_eq!(h.leaves_under(0, 1), vec![0, 2]);
    }

    #[test]
    fn hierarchy_serde_round_trip_and_validation() {
        let h = three_level();
        let json = serde_json::to_string(&h).unwrap();
        let back: Hierarchy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        let bad = r#"{"levels":[{"name":"t","class_names":["a","b"]},
                               {"name":"l","class_names":["x"],"parent":[0]}]}"#;
        let e = serde_json::from_str::<Hierarchy>(bad).unwrap_err();
        assert!(e.to_string().contains("no children"), "{e}");
    }

    // ---------------------------------------------------------------- relabeling config

    #[test]
    fn relabeling_names_and_toml() {
        let all = [
            (Relabeling::Level { level: 1 }, "level1"),
            (Relabeling::MergeWithin { groups: 2 }, "merge_within_2"),
            (
                Relabeling::RandomAligned { per_target: 4 },
                "random_aligned_4",
            ),
            (Relabeling::Misaligned { groups: 8 }, "misaligned_8"),
            (Relabeling::SplitFiner { splits: 4 }, "split_finer_4"),
            (Relabeling::PerSample, "per_sample"),
        ];
        for (r, name) in &all {
            assert_eq!(r.name(), *name);
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(&serde_json::from_str::<Relabeling>(&json).unwrap(), r);
        }
        #[derive(Deserialize)]
        struct Cfg {
            r: Vec<Relabeling>,
        }
        let cfg: Cfg = toml::from_str(
            r#"r = [{ kind = "merge_within", groups = 2 }, { kind = "per_sample" },
                    { kind = "level", level = 0 }]"#,
        )
        .unwrap();
        assert_eq!(
            cfg.r,
            vec![
                Relabeling::MergeWithin { groups: 2 },
                Relabeling::PerSample,
                Relabeling::Level { level: 0 }
            ]
        );
        assert!(
            toml::from_str::<Cfg>(r#"r = [{ kind = "level", level = 0, extra = 1 }]"#).is_err()
        );
        assert!(toml::from_str::<Cfg>(r#"r = [{ kind = "coarser" }]"#).is_err());
    }

    // ---------------------------------------------------------------- relabelings

    #[test]
    fn level_rules() {
        let h = three_level();
        let mut r = rng(1);
        for level in 0..3 {
            for target in 0..3 {
                let rule = Relabeling::Level { level }
                    .build(&h, target, None, &mut r)
                    .unwrap();
                assert_eq!(rule.num_classes(), h.num_classes(level));
                assert_eq!(rule.name(), format!("level{level}"));
                for leaf in 0..h.num_leaves() {
                    assert_eq!(rule.label(leaf, 0, &mut r), h.leaf_ancestor(leaf, level));
                }
                if level >= target {
                    assert_nests(&rule, &h, target, 1);
                } else {
                    assert!(!rule.is_aligned());
                    assert_eq!(rule.summed_head(), None);
                    assert!(rule.target_of_class().iter().all(Option::is_none));
                }
            }
        }
    }

    #[test]
    fn merge_within_groups_nonempty_clamped_and_nested() {
        let h = Hierarchy::two_level(&[1, 3, 5, 7]).unwrap();
        let mut r = rng(2);
        for groups in [1, 2, 3, 4, 10] {
            let rule = Relabeling::MergeWithin { groups }
                .build(&h, 0, None, &mut r)
                .unwrap();
            let expected: usize = [1, 3, 5, 7].iter().map(|&c: &usize| c.min(groups)).sum();
            assert_eq!(rule.num_classes(), expected, "groups {groups}");
            assert_nests(&rule, &h, 0, 1);
            let labels = rule.label_all(&(0..h.num_leaves()).collect::<Vec<_>>(), &mut r);
            let mut sizes = vec![0usize; rule.num_classes()];
            for &l in &labels {
                sizes[l] += 1;
            }
            assert!(sizes.iter().all(|&n| n > 0), "empty group: {sizes:?}");
            // Per target class, sizes differ by at most one.
            let head = rule.summed_head().unwrap();
            for t in 0..4 {
                let ts: Vec<usize> = (0..sizes.len())
                    .filter(|&c| head[c] == t)
                    .map(|c| sizes[c])
                    .collect();
                assert_eq!(ts.len(), h.children(0, t).len().min(groups));
                assert!(ts.iter().max().unwrap() - ts.iter().min().unwrap() <= 1);
            }
        }
        // Against a middle target level of a three-level hierarchy.
        let h = three_level();
        let rule = Relabeling::MergeWithin { groups: 2 }
            .build(&h, 1, None, &mut r)
            .unwrap();
        assert_eq!(rule.num_classes(), 2 + 2 + 2 + 2);
        assert_nests(&rule, &h, 1, 1);
    }

    #[test]
    fn merge_within_is_random() {
        let h = Hierarchy::two_level(&[8, 8]).unwrap();
        let rules: BTreeSet<Vec<usize>> = (0..10)
            .map(|seed| {
                let rule = Relabeling::MergeWithin { groups: 2 }
                    .build(&h, 0, None, &mut rng(seed))
                    .unwrap();
                rule.label_all(&(0..16).collect::<Vec<_>>(), &mut rng(0))
            })
            .collect();
        assert!(rules.len() > 1, "MergeWithin ignores the RNG");
    }

    #[test]
    fn random_aligned_is_independent_of_leaf() {
        let h = Hierarchy::two_level(&[2, 3]).unwrap();
        let mut r = rng(3);
        let rule = Relabeling::RandomAligned { per_target: 4 }
            .build(&h, 0, None, &mut r)
            .unwrap();
        assert_eq!(rule.num_classes(), 8);
        assert_nests(&rule, &h, 0, 50);
        // A single leaf of target 1 reaches all 4 labels of target 1.
        let seen: BTreeSet<usize> = (0..400).map(|_| rule.label(3, 0, &mut r)).collect();
        assert_eq!(seen, (4..8).collect());
        let seen: BTreeSet<usize> = (0..400).map(|_| rule.label(0, 0, &mut r)).collect();
        assert_eq!(seen, (0..4).collect());
    }

    #[test]
    fn split_finer_labels() {
        let h = three_level();
        let mut r = rng(4);
        let rule = Relabeling::SplitFiner { splits: 3 }
            .build(&h, 0, None, &mut r)
            .unwrap();
        assert_eq!(rule.num_classes(), 27);
        assert_nests(&rule, &h, 0, 20);
        for leaf in 0..9 {
            let seen: BTreeSet<usize> = (0..300).map(|_| rule.label(leaf, 0, &mut r)).collect();
            assert_eq!(seen, (leaf * 3..leaf * 3 + 3).collect(), "leaf {leaf}");
        }
        assert_nests(
            &Relabeling::SplitFiner { splits: 2 }
                .build(&h, 2, None, &mut r)
                .unwrap(),
            &h,
            2,
            10,
        );
    }

    #[test]
    fn per_sample_rules() {
        let h = Hierarchy::two_level(&[2, 2]).unwrap();
        let mut r = rng(5);
        let e = Relabeling::PerSample
            .build(&h, 0, None, &mut r)
            .unwrap_err();
        assert!(matches!(e, HierarchyError::MissingNumSamples { .. }));
        assert!(e.to_string().contains("num_samples"), "{e}");
        let e = Relabeling::PerSample
            .build(&h, 0, Some(0), &mut r)
            .unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::ZeroParameter {
                field: "num_samples",
                ..
            }
        ));
        let rule = Relabeling::PerSample.build(&h, 0, Some(5), &mut r).unwrap();
        assert_eq!(rule.num_classes(), 5);
        assert_eq!(
            rule.label_all(&[3, 0, 1, 2, 3], &mut r),
            vec![0, 1, 2, 3, 4]
        );
        assert!(
            !rule.is_aligned(),
            "targets of samples are unknown to build()"
        );
        // With the sample leaves known, the rule is aligned and its summed head is right.
        let leaves = [3, 0, 1, 2, 3, 2];
        let rule = Relabeling::PerSample
            .build_for_samples(&h, 0, &leaves, &mut r)
            .unwrap();
        assert_eq!(rule.num_classes(), 6);
        let labels = rule.label_all(&leaves, &mut r);
        assert_eq!(labels, (0..6).collect::<Vec<_>>());
        let head = rule.summed_head().unwrap();
        for (i, &leaf) in leaves.iter().enumerate() {
            assert_eq!(head[labels[i]], h.leaf_ancestor(leaf, 0));
        }
        let e = Relabeling::PerSample
            .build_for_samples(&h, 0, &[0, 4], &mut r)
            .unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::LeafOutOfRange {
                sample: 1,
                leaf: 4,
                ..
            }
        ));
        // Other rules are unaffected by build_for_samples.
        let a = Relabeling::MergeWithin { groups: 1 }
            .build(&h, 0, None, &mut rng(7))
            .unwrap();
        let b = Relabeling::MergeWithin { groups: 1 }
            .build_for_samples(&h, 0, &leaves, &mut rng(7))
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    #[should_panic(expected = "sample 5 out of range")]
    fn per_sample_label_panics_past_the_sample_set() {
        let h = Hierarchy::two_level(&[2, 2]).unwrap();
        let rule = Relabeling::PerSample
            .build(&h, 0, Some(5), &mut rng(0))
            .unwrap();
        rule.label(0, 5, &mut rng(0));
    }

    /// Number of misaligned groups holding leaves of >= 2 targets.
    fn crossing_groups(rule: &LabelRule, h: &Hierarchy, target_level: usize) -> usize {
        let mut targets = vec![BTreeSet::new(); rule.num_classes()];
        for leaf in 0..h.num_leaves() {
            targets[rule.label(leaf, 0, &mut rng(0))].insert(h.leaf_ancestor(leaf, target_level));
        }
        assert!(targets.iter().all(|t| !t.is_empty()), "empty group");
        targets.iter().filter(|t| t.len() >= 2).count()
    }

    #[test]
    fn misaligned_groups_cross_targets() {
        let mut r = rng(6);
        for counts in [
            vec![4, 4, 4],
            vec![2, 2],
            vec![3, 5, 2, 6],
            vec![1, 1, 1, 1, 1, 1],
        ] {
            let h = Hierarchy::two_level(&counts).unwrap();
            let n = h.num_leaves();
            let n_max = *counts.iter().max().unwrap();
            for groups in 1..=(n / 2).min(n - n_max) {
                let rule = Relabeling::Misaligned { groups }
                    .build(&h, 0, None, &mut r)
                    .unwrap();
                assert_eq!(rule.num_classes(), groups);
                assert_eq!(
                    crossing_groups(&rule, &h, 0),
                    groups,
                    "{counts:?} / {groups}"
                );
                assert!(!rule.is_aligned());
                assert_eq!(rule.summed_head(), None);
                assert!(rule.target_of_class().iter().all(Option::is_none));
            }
        }
        // Middle target level of a three-level hierarchy (4 families, 9 leaves).
        let h = three_level();
        for groups in 1..=4 {
            let rule = Relabeling::Misaligned { groups }
                .build(&h, 1, None, &mut r)
                .unwrap();
            assert_eq!(crossing_groups(&rule, &h, 1), groups);
        }
    }

    #[test]
    fn misaligned_maximises_crossing_when_unbalanced() {
        // Property over random two-level hierarchies: crossing groups == min(groups, n - n_max).
        let mut r = rng(8);
        for _ in 0..200 {
            let k = r.gen_range(2..6);
            let counts: Vec<usize> = (0..k).map(|_| r.gen_range(1..9)).collect();
            let h = Hierarchy::two_level(&counts).unwrap();
            let n = h.num_leaves();
            let n_max = *counts.iter().max().unwrap();
            for groups in 1..=n / 2 {
                let rule = Relabeling::Misaligned { groups }
                    .build(&h, 0, None, &mut r)
                    .unwrap();
                assert_eq!(
                    crossing_groups(&rule, &h, 0),
                    groups.min(n - n_max),
                    "{counts:?} / {groups}"
                );
            }
        }
    }

    #[test]
    fn misaligned_errors() {
        let h = Hierarchy::two_level(&[3, 2]).unwrap();
        let mut r = rng(9);
        let e = Relabeling::Misaligned { groups: 3 }
            .build(&h, 0, None, &mut r)
            .unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::TooManyGroups {
                groups: 3,
                max_groups: 2,
                ..
            }
        ));
        let e = Relabeling::Misaligned { groups: 0 }
            .build(&h, 0, None, &mut r)
            .unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::ZeroParameter {
                field: "groups",
                ..
            }
        ));
        let one = Hierarchy::two_level(&[6]).unwrap();
        let e = Relabeling::Misaligned { groups: 2 }
            .build(&one, 0, None, &mut r)
            .unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::TooFewTargets { num_targets: 1, .. }
        ));
        assert!(e.to_string().contains("superclass"), "{e}");
    }

    #[test]
    fn zero_parameters_and_bad_levels() {
        let h = three_level();
        let mut r = rng(10);
        for (rel, field) in [
            (Relabeling::MergeWithin { groups: 0 }, "groups"),
            (Relabeling::RandomAligned { per_target: 0 }, "per_target"),
            (Relabeling::SplitFiner { splits: 0 }, "splits"),
        ] {
            let e = rel.build(&h, 0, None, &mut r).unwrap_err();
            assert_eq!(
                e,
                HierarchyError::ZeroParameter {
                    rule: rel.name(),
                    field
                }
            );
            assert!(e.to_string().contains(field), "{e}");
        }
        let e = Relabeling::Level { level: 3 }
            .build(&h, 0, None, &mut r)
            .unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::LevelOutOfRange {
                field: "level",
                value: 3,
                ..
            }
        ));
        for rel in [
            Relabeling::Level { level: 0 },
            Relabeling::MergeWithin { groups: 1 },
            Relabeling::RandomAligned { per_target: 1 },
            Relabeling::Misaligned { groups: 1 },
            Relabeling::SplitFiner { splits: 1 },
            Relabeling::PerSample,
        ] {
            let e = rel.build(&h, 7, Some(3), &mut r).unwrap_err();
            assert!(
                matches!(
                    e,
                    HierarchyError::LevelOutOfRange {
                        field: "target_level",
                        value: 7,
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("target_level"), "{e}");
        }
        let e = Relabeling::SplitFiner { splits: usize::MAX }
            .build(&h, 0, None, &mut r)
            .unwrap_err();
        assert!(matches!(e, HierarchyError::TooManyLabels { .. }));
    }

    #[test]
    fn same_seed_same_rule_and_labels() {
        let h = Hierarchy::two_level(&[3, 4, 5, 2]).unwrap();
        let leaves: Vec<usize> = (0..200).map(|i| i % h.num_leaves()).collect();
        for rel in [
            Relabeling::Level { level: 1 },
            Relabeling::MergeWithin { groups: 2 },
            Relabeling::RandomAligned { per_target: 3 },
            Relabeling::Misaligned { groups: 5 },
            Relabeling::SplitFiner { splits: 3 },
            Relabeling::PerSample,
        ] {
            let run = |seed| {
                let mut r = rng(seed);
                let rule = rel.build_for_samples(&h, 0, &leaves, &mut r).unwrap();
                let labels = rule.label_all(&leaves, &mut r);
                (rule, labels)
            };
            assert_eq!(run(11), run(11), "{}", rel.name());
        }
        // Different seeds give different random rules.
        let misaligned = |seed| {
            Relabeling::Misaligned { groups: 5 }
                .build(&h, 0, None, &mut rng(seed))
                .unwrap()
        };
        assert!((1..10).any(|seed| misaligned(seed) != misaligned(0)));
        let split = |seed| {
            let rule = Relabeling::SplitFiner { splits: 3 }
                .build(&h, 0, None, &mut rng(0))
                .unwrap();
            rule.label_all(&leaves, &mut rng(seed))
        };
        assert_ne!(split(1), split(2));
    }

    // ---------------------------------------------------------------- tables

    #[test]
    fn from_table_target_of_class() {
        // class 0: targets {0, 0} -> Some(0); class 1: {1, 0} -> None; class 2: {1} -> Some(1);
        // class 3: empty -> None.
        let rule =
            LabelRule::from_table("kmeans4", vec![0, 1, 0, 2, 1], 4, &[0, 1, 0, 1, 0], 2).unwrap();
        assert_eq!(rule.name(), "kmeans4");
        assert_eq!((rule.num_classes(), rule.num_targets()), (4, 2));
        assert_eq!(rule.target_of_class(), &[Some(0), None, Some(1), None]);
        assert!(!rule.is_aligned());
        assert_eq!(rule.summed_head(), None);
        assert_eq!(
            rule.label_all(&[9, 9, 9, 9, 9], &mut rng(0)),
            vec![0, 1, 0, 2, 1]
        );
        assert_eq!(rule.label(0, 3, &mut rng(0)), 2);
        let aligned = LabelRule::from_table("t", vec![1, 0, 1], 2, &[2, 0, 2], 3).unwrap();
        assert!(aligned.is_aligned());
        assert_eq!(aligned.summed_head(), Some(vec![0, 2]));
    }

    #[test]
    fn from_table_errors() {
        let e = LabelRule::from_table("t", vec![0, 1], 2, &[0], 1).unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::TableLengthMismatch {
                labels: 2,
                targets: 1,
                ..
            }
        ));
        let e = LabelRule::from_table("t", vec![0, 2], 2, &[0, 0], 1).unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::LabelOutOfRange {
                sample: 1,
                label: 2,
                ..
            }
        ));
        assert!(e.to_string().contains("sample 1"), "{e}");
        let e = LabelRule::from_table("t", vec![0, 1], 2, &[0, 3], 2).unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::TargetOutOfRange {
                sample: 1,
                target: 3,
                ..
            }
        ));
        let e = LabelRule::from_table("t", vec![], 0, &[], 1).unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::ZeroParameter {
                field: "num_classes",
                ..
            }
        ));
        let e = LabelRule::from_table("t", vec![], 1, &[], 0).unwrap_err();
        assert!(matches!(
            e,
            HierarchyError::ZeroParameter {
                field: "num_targets",
                ..
            }
        ));
    }

    #[test]
    #[should_panic(expected = "sample 2 out of range")]
    fn table_label_panics_past_the_table() {
        let rule = LabelRule::from_table("t", vec![0, 1], 2, &[0, 0], 1).unwrap();
        rule.label(0, 2, &mut rng(0));
    }

    #[test]
    fn label_rule_serde_round_trip_and_validation() {
        let h = three_level();
        let mut r = rng(12);
        for rel in [
            Relabeling::Level { level: 1 },
            Relabeling::MergeWithin { groups: 2 },
            Relabeling::RandomAligned { per_target: 2 },
            Relabeling::Misaligned { groups: 3 },
            Relabeling::SplitFiner { splits: 2 },
            Relabeling::PerSample,
        ] {
            let rule = rel.build_for_samples(&h, 0, &[0, 5, 8], &mut r).unwrap();
            let json = serde_json::to_string(&rule).unwrap();
            assert_eq!(serde_json::from_str::<LabelRule>(&json).unwrap(), rule);
        }
        let table = LabelRule::from_table("t", vec![0, 1], 2, &[0, 0], 1).unwrap();
        let mut v = serde_json::to_value(&table).unwrap();
        assert_eq!(
            serde_json::from_value::<LabelRule>(v.clone()).unwrap(),
            table
        );
        v["map"]["labels"][1] = 5.into();
        let e = serde_json::from_value::<LabelRule>(v).unwrap_err();
        assert!(e.to_string().contains("sample 1 maps to 5"), "{e}");
        let mut v = serde_json::to_value(&table).unwrap();
        v["target_of_class"][0] = 3.into();
        assert!(serde_json::from_value::<LabelRule>(v).is_err());
    }
}
