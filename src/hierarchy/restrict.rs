//! [`Hierarchy::restrict`]: the sub-tree spanned by a subset of the leaves (a study on 100 of
//! iNaturalist's 10,000 species keeps only the genera, families, ... above them).

use super::{Hierarchy, HierarchyError, Level};

impl Hierarchy {
    /// The hierarchy of the leaves `keep` (indices into the leaf level, any order, no repeats):
    /// every level keeps exactly the classes that have a kept leaf below them, in their old
    /// order, with the same names. Leaf `i` of the result is the `i`-th smallest index of `keep`.
    ///
    /// Errors if `keep` is empty, names a leaf out of range or repeats one.
    pub fn restrict(&self, keep: &[usize]) -> Result<Hierarchy, HierarchyError> {
        let rule = || "restrict".to_string();
        if keep.is_empty() {
            return Err(HierarchyError::NoPaths);
        }
        let num_leaves = self.num_leaves();
        let mut kept = vec![false; num_leaves];
        for (sample, &leaf) in keep.iter().enumerate() {
            if leaf >= num_leaves {
                return Err(HierarchyError::LeafOutOfRange {
                    rule: rule(),
                    sample,
                    leaf,
                    num_leaves,
                });
            }
            if kept[leaf] {
                let first = keep.iter().position(|&l| l == leaf).unwrap_or(0);
                let name = &self.level(self.leaf_level()).class_names[leaf];
                return Err(HierarchyError::DuplicateLeaf {
                    leaf_name: name.clone(),
                    first,
                    second: sample,
                });
            }
            kept[leaf] = true;
        }
        // Walk up from the leaves: a class is kept when one of its children is.
        let mut keep_class: Vec<Vec<bool>> = vec![Vec::new(); self.num_levels()];
        keep_class[self.leaf_level()] = kept;
        for l in (1..self.num_levels()).rev() {
            let mut above = vec![false; self.num_classes(l - 1)];
            for (c, &k) in keep_class[l].iter().enumerate() {
                if k {
                    above[self.level(l).parent[c]] = true;
                }
            }
            keep_class[l - 1] = above;
        }
        let mut levels = Vec::with_capacity(self.num_levels());
        let mut new_index_above: Vec<usize> = Vec::new();
        for (l, level) in self.levels().iter().enumerate() {
            let mut new_index = vec![usize::MAX; level.class_names.len()];
            let mut out = Level {
                name: level.name.clone(),
                class_names: Vec::new(),
                parent: Vec::new(),
            };
            for (c, name) in level.class_names.iter().enumerate() {
                if keep_class[l][c] {
                    new_index[c] = out.class_names.len();
                    out.class_names.push(name.clone());
                    if l > 0 {
                        out.parent.push(new_index_above[level.parent[c]]);
                    }
                }
            }
            levels.push(out);
            new_index_above = new_index;
        }
        Hierarchy::new(levels)
    }
}

#[cfg(test)]
mod tests {
    use crate::hierarchy::test_util::three_level;
    use crate::hierarchy::HierarchyError;

    #[test]
    fn restrict_keeps_the_spanned_subtree_in_order() {
        // kingdoms A, B; families a1 a2 b1 b2; species x1..x9 (x8 under a2, x9 under b2).
        let h = three_level();
        let leaf = |name: &str| {
            h.level(2)
                .class_names
                .iter()
                .position(|n| n == name)
                .unwrap()
        };
        let r = h
            .restrict(&[leaf("x9"), leaf("x1"), leaf("x2"), leaf("x7")])
            .unwrap();
        assert_eq!(r.level(0).class_names, vec!["A", "B"]);
        assert_eq!(r.level(1).class_names, vec!["a1", "b2"]);
        assert_eq!(r.level(2).class_names, vec!["x1", "x2", "x7", "x9"]);
        assert_eq!(r.level(1).parent, vec![0, 1]);
        assert_eq!(r.level(2).parent, vec![0, 0, 1, 1]);
        for (new, old) in [(0, "x1"), (2, "x7"), (3, "x9")] {
            for l in 0..3 {
                assert_eq!(
                    r.level(l).class_names[r.leaf_ancestor(new, l)],
                    h.level(l).class_names[h.leaf_ancestor(leaf(old), l)]
                );
            }
        }
        // One kingdom only.
        let r = h.restrict(&[leaf("x3")]).unwrap();
        assert_eq!(r.num_classes(0), 1);
        assert_eq!(r.level(1).class_names, vec!["a2"]);
        // Keeping everything gives the same hierarchy.
        let all: Vec<usize> = (0..h.num_leaves()).collect();
        assert_eq!(h.restrict(&all).unwrap(), h);
    }

    #[test]
    fn restrict_errors() {
        let h = three_level();
        assert_eq!(h.restrict(&[]), Err(HierarchyError::NoPaths));
        assert!(matches!(
            h.restrict(&[0, 9]),
            Err(HierarchyError::LeafOutOfRange { leaf: 9, .. })
        ));
        let e = h.restrict(&[1, 0, 1]).unwrap_err();
        assert!(
            matches!(
                e,
                HierarchyError::DuplicateLeaf {
                    first: 0,
                    second: 2,
                    ..
                }
            ),
            "{e}"
        );
    }
}
