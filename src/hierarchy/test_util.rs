//! Helpers shared by the hierarchy tests.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Hierarchy, LabelRule};

pub(super) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub(super) fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Three levels: 2 kingdoms, 4 families, 9 species (uneven).
pub(super) fn three_level() -> Hierarchy {
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
pub(super) fn assert_nests(rule: &LabelRule, h: &Hierarchy, target_level: usize, draws: usize) {
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
