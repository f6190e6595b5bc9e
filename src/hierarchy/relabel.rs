//! [`Relabeling`]: a granularity of the pretraining label space, built into a [`LabelRule`]
//! against a [`Hierarchy`].

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::rule::RuleMap;
use super::{Hierarchy, HierarchyError, LabelRule};

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

    /// The lowest mean training loss the labels allow: the entropy of the label given the leaf
    /// (ln n for labels drawn uniformly among n inside a leaf or class; 0 when the leaf, or the
    /// sample, decides the label).
    pub fn loss_floor(&self) -> f64 {
        match self {
            Relabeling::RandomAligned { per_target } => (*per_target as f64).ln(),
            Relabeling::SplitFiner { splits } => (*splits as f64).ln(),
            Relabeling::Level { .. }
            | Relabeling::MergeWithin { .. }
            | Relabeling::Misaligned { .. }
            | Relabeling::PerSample => 0.0,
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
            Relabeling::Level { .. }
            | Relabeling::MergeWithin { .. }
            | Relabeling::RandomAligned { .. }
            | Relabeling::Misaligned { .. }
            | Relabeling::SplitFiner { .. } => {}
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

#[cfg(test)]
mod tests;
