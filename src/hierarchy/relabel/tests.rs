//! Tests of [`Relabeling`] and the rules it builds.

use std::collections::BTreeSet;

use rand::Rng;
use serde::Deserialize;

use crate::hierarchy::test_util::{assert_nests, rng, three_level};
use crate::hierarchy::*;

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
    assert!(toml::from_str::<Cfg>(r#"r = [{ kind = "level", level = 0, extra = 1 }]"#).is_err());
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
