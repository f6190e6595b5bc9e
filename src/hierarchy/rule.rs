//! [`LabelRule`]: a built relabeling that turns (leaf, sample index) into a pretraining label.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::HierarchyError;
#[cfg(doc)]
use super::Relabeling;

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
pub(super) enum RuleMap {
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
    pub(super) name: String,
    pub(super) num_classes: usize,
    pub(super) num_targets: usize,
    pub(super) target_of_class: Vec<Option<usize>>,
    pub(super) map: RuleMap,
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
    pub(super) fn from_leaf_map(
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
    use crate::hierarchy::test_util::{rng, three_level};
    use crate::hierarchy::Relabeling;

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
