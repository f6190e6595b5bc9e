//! [`Hierarchy`]: a validated label tree with named levels, and its [`Level`]s.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::HierarchyError;

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
    pub(super) fn leaf_targets(&self, to: usize) -> Vec<usize> {
        (0..self.num_leaves())
            .map(|leaf| self.leaf_ancestor(leaf, to))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hierarchy::test_util::{s, three_level};

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
}
