//! [`HierarchyError`]: the one error type of hierarchies, relabelings and label rules.

#[cfg(doc)]
use super::{Hierarchy, LabelRule, Relabeling};

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
    #[error("no leaves were given; at least one leaf is needed")]
    NoPaths,
    /// A leaf path whose length differs from the number of levels.
    #[error("leaf {path} (counted from 0) has {len} names but there are {expected} levels")]
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
        "level {level} ({level_name:?}): class {class_name:?} appears under two different parents, \
         {first_parent:?} (for leaf {first_path}) and {second_parent:?} (for leaf {second_path}, \
         counted from 0)"
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
    #[error("leaf {leaf_name:?} is listed twice (leaves {first} and {second}, counted from 0); leaf names must be unique")]
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
