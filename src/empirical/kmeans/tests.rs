//! Tests of the clustering: recovery of separated blobs, determinism, inertia that never rises,
//! reseeded empty clusters, aligned and global label rules, ties, and errors.

use super::*;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// `per` points around each centre (N(0, sigma^2) noise); returns data and true blob ids.
fn blobs(centres: &[Vec<f32>], per: usize, sigma: f32, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0f32, sigma).unwrap();
    let mut data = Vec::new();
    let mut ids = Vec::new();
    for (b, c) in centres.iter().enumerate() {
        for _ in 0..per {
            data.extend(c.iter().map(|&v| v + noise.sample(&mut rng)));
            ids.push(b);
        }
    }
    (data, ids)
}

/// Asserts that `a` and `b` are the same partition (equal up to relabelling).
fn same_partition(a: &[usize], b: &[usize]) {
    assert_eq!(a.len(), b.len());
    let mut ab = std::collections::HashMap::new();
    let mut ba = std::collections::HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        assert_eq!(*ab.entry(x).or_insert(y), y, "label {x} maps to two labels");
        assert_eq!(*ba.entry(y).or_insert(x), x, "label {y} maps to two labels");
    }
}

fn four_centres() -> Vec<Vec<f32>> {
    vec![
        vec![0.0, 0.0, 0.0],
        vec![20.0, 0.0, 0.0],
        vec![0.0, 20.0, 0.0],
        vec![0.0, 0.0, 20.0],
    ]
}

fn recomputed_inertia(data: &[f32], dim: usize, km: &KMeans) -> f64 {
    data.chunks_exact(dim)
        .zip(&km.assignment)
        .map(|(x, &a)| {
            x.iter()
                .zip(&km.centroids[a * dim..(a + 1) * dim])
                .map(|(&p, &c)| (f64::from(p) - f64::from(c)).powi(2))
                .sum::<f64>()
        })
        .sum()
}

#[test]
fn recovers_separated_blobs_and_is_deterministic() {
    let centres = four_centres();
    let (data, ids) = blobs(&centres, 50, 0.5, 7);
    for seed in 0..8 {
        let km = kmeans(&data, 200, 3, 4, 50, seed).unwrap();
        same_partition(&km.assignment, &ids);
        assert_eq!(km.cluster_sizes(4), vec![50; 4]);
        // Each centre is close to its blob's true centre.
        for (i, &a) in km.assignment.iter().enumerate() {
            let truth = &centres[ids[i]];
            let c = &km.centroids[a * 3..a * 3 + 3];
            let d2: f32 = c.iter().zip(truth).map(|(x, y)| (x - y).powi(2)).sum();
            assert!(d2 < 0.1, "centre {c:?} far from {truth:?}");
        }
        assert!(km.iterations >= 1 && km.iterations <= 50);
        let r = recomputed_inertia(&data, 3, &km);
        assert!((r - km.inertia).abs() <= 1e-6 * km.inertia.max(1.0));
        // Bit-identical on a re-run with the same seed.
        let again = kmeans(&data, 200, 3, 4, 50, seed).unwrap();
        assert_eq!(km, again);
        assert_eq!(km.inertia.to_bits(), again.inertia.to_bits());
    }
    // Different seeds seed differently (the clusters are found in a different order).
    let orders: std::collections::BTreeSet<Vec<usize>> = (0..8)
        .map(|s| kmeans(&data, 200, 3, 4, 50, s).unwrap().assignment)
        .collect();
    assert!(orders.len() > 1, "seed has no effect");
}

#[test]
fn inertia_never_increases_with_iterations() {
    // Overlapping blobs so that Lloyd needs several iterations.
    let centres: Vec<Vec<f32>> = (0..6)
        .map(|i| vec![i as f32, (i % 2) as f32, (i % 3) as f32 * 0.5])
        .collect();
    let (data, _) = blobs(&centres, 60, 1.0, 3);
    let n = data.len() / 3;
    for seed in 0..5 {
        let runs: Vec<KMeans> = (0..=5)
            .map(|it| kmeans(&data, n, 3, 8, it, seed).unwrap())
            .collect();
        for w in runs.windows(2) {
            assert!(
                w[1].inertia <= w[0].inertia,
                "seed {seed}: inertia rose from {} to {} ({} -> {} iterations)",
                w[0].inertia,
                w[1].inertia,
                w[0].iterations,
                w[1].iterations
            );
        }
        assert!(
            runs[5].inertia < runs[0].inertia,
            "seed {seed}: iterating did not lower the inertia"
        );
        for (it, r) in runs.iter().enumerate() {
            assert!(r.iterations <= it);
            let rec = recomputed_inertia(&data, 3, r);
            assert!((rec - r.inertia).abs() <= 1e-6 * r.inertia);
        }
    }
}

#[test]
fn empty_clusters_are_reseeded() {
    // 6 distinct points, each twice: k = 6 must give 6 non-empty clusters with zero inertia.
    let distinct: Vec<f32> = vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 5.0, 5.0, 5.0, 6.0, 9.0, 0.0];
    let data: Vec<f32> = distinct.iter().chain(&distinct).copied().collect();
    for seed in 0..20 {
        let km = kmeans(&data, 12, 2, 6, 10, seed).unwrap();
        assert!(km.cluster_sizes(6).iter().all(|&s| s == 2), "seed {seed}");
        assert_eq!(km.inertia, 0.0);
        // k above the number of distinct points: no panic, all 6 distinct points separated,
        // surplus clusters empty, assignments in range.
        for k in 7..=12 {
            let km = kmeans(&data, 12, 2, k, 10, seed).unwrap();
            let sizes = km.cluster_sizes(k);
            assert_eq!(
                sizes.iter().filter(|&&s| s > 0).count(),
                6,
                "seed {seed} k {k}"
            );
            assert_eq!(km.inertia, 0.0);
        }
    }
    // All points identical, k = n.
    let km = kmeans(&[3.0; 8], 8, 1, 8, 5, 1).unwrap();
    assert_eq!(km.cluster_sizes(8).iter().filter(|&&s| s > 0).count(), 1);

    // A starting centre far from all data leaves its cluster empty after the first
    // assignment; it must be re-seeded with the farthest point, even with no iterations.
    let line: Vec<f32> = (0..10).map(|i| i as f32).collect();
    for iters in [0, 1, 5] {
        let km = lloyd(&line, 10, 1, 3, vec![0.0, 1.0, 1000.0], iters);
        let sizes = km.cluster_sizes(3);
        assert!(
            sizes.iter().all(|&s| s > 0),
            "iters {iters}: sizes {sizes:?}"
        );
        if iters == 0 {
            // Points 1 and 9 tie as farthest from the mean 5 of {1..9}: the lower index wins.
            assert_eq!(km.assignment[1], 2);
            assert_eq!(km.centroids[2], 1.0);
            assert_eq!(km.iterations, 0);
        }
    }
}

/// Two targets, each holding two well-separated blobs, plus a tiny third target.
fn nested_data() -> (Vec<f32>, Vec<usize>, Vec<usize>) {
    let centres = vec![
        vec![0.0, 0.0],
        vec![10.0, 0.0],
        vec![0.0, 10.0],
        vec![10.0, 10.0],
    ];
    let (mut data, ids) = blobs(&centres, 30, 0.3, 11);
    let mut targets: Vec<usize> = ids.iter().map(|&b| b / 2).collect();
    data.extend([50.0, 50.0, 60.0, 60.0]);
    targets.extend([2, 2]);
    (data, ids, targets)
}

#[test]
fn cluster_within_nests_inside_targets() {
    let (data, ids, targets) = nested_data();
    let n = targets.len();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for k in [1, 2, 3, 5] {
        let rule = cluster_within(&data, n, 2, &targets, 3, k, 30, 4).unwrap();
        assert_eq!(rule.name(), format!("kmeans_within_{k}"));
        assert!(rule.is_aligned());
        // Targets 0 and 1 have 60 samples, target 2 has 2 (clamped).
        assert_eq!(rule.num_classes(), 2 * k + k.min(2));
        assert_eq!(rule.num_targets(), 3);
        let head = rule.summed_head().unwrap();
        let labels: Vec<usize> = (0..n).map(|i| rule.label(0, i, &mut rng)).collect();
        for (i, &l) in labels.iter().enumerate() {
            assert_eq!(head[l], targets[i], "sample {i}");
        }
        // Numbered target by target, k classes for each of targets 0 and 1.
        for (c, &t) in head.iter().enumerate() {
            let expect = if c < k {
                0
            } else if c < 2 * k {
                1
            } else {
                2
            };
            assert_eq!(t, expect, "class {c}");
        }
        if k == 2 {
            // Two clusters per target recover the blobs.
            same_partition(&labels[..120], &ids);
        }
    }
    // Deterministic.
    assert_eq!(
        cluster_within(&data, n, 2, &targets, 3, 3, 30, 9).unwrap(),
        cluster_within(&data, n, 2, &targets, 3, 3, 30, 9).unwrap()
    );
}

#[test]
fn cluster_global_follows_the_data() {
    let (data, ids, mut targets) = nested_data();
    let n = targets.len();
    // Blobs nested in targets: 5 global clusters = 4 blobs + the far target-2 pair, aligned.
    let rule = cluster_global(&data, n, 2, &targets, 3, 5, 50, 2).unwrap();
    assert_eq!(rule.name(), "kmeans_global_5");
    assert_eq!(rule.num_classes(), 5);
    assert!(rule.is_aligned());
    // Now let targets cut across the blobs: each blob holds both targets 0 and 1.
    for (i, t) in targets.iter_mut().take(120).enumerate() {
        *t = i % 2;
    }
    let rule = cluster_global(&data, n, 2, &targets, 3, 5, 50, 2).unwrap();
    assert!(!rule.is_aligned());
    assert!(rule.summed_head().is_none());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let labels: Vec<usize> = (0..n).map(|i| rule.label(0, i, &mut rng)).collect();
    same_partition(&labels[..120], &ids);
    let of = rule.target_of_class();
    for i in 0..120 {
        assert_eq!(of[labels[i]], None, "blob cluster of sample {i} is mixed");
    }
    assert_eq!(of[labels[120]], Some(2));
    assert_eq!(labels[120], labels[121]);
    // Duplicate-only data: empty clusters are dropped.
    let rule = cluster_global(&[1.0; 6], 6, 1, &[0, 0, 0, 1, 1, 1], 2, 3, 5, 0).unwrap();
    assert_eq!(rule.num_classes(), 1);
    assert_eq!(rule.target_of_class(), &[None]);
}

#[test]
fn ties_go_to_the_lowest_cluster() {
    // Point 1.0 is equidistant from centres 0 and 2; with no iterations it stays in cluster 0.
    let km = lloyd(&[0.0, 1.0, 2.0], 3, 1, 2, vec![0.0, 2.0], 0);
    assert_eq!(km.assignment, vec![0, 0, 1]);
    assert_eq!(km.inertia, 1.0);
}

#[test]
fn errors() {
    let data = [0.0f32; 8];
    assert_eq!(
        kmeans(&data, 4, 2, 0, 5, 0),
        Err(KmeansError::ZeroClusters { field: "k" })
    );
    assert_eq!(
        kmeans(&data, 4, 2, 5, 5, 0),
        Err(KmeansError::TooManyClusters { k: 5, n: 4 })
    );
    assert_eq!(kmeans(&data, 4, 0, 1, 5, 0), Err(KmeansError::ZeroDim));
    assert_eq!(
        kmeans(&data, 3, 2, 1, 5, 0),
        Err(KmeansError::DataLengthMismatch {
            len: 8,
            n: 3,
            dim: 2
        })
    );
    assert_eq!(
        kmeans(&data, usize::MAX, 2, 1, 5, 0),
        Err(KmeansError::DataLengthMismatch {
            len: 8,
            n: usize::MAX,
            dim: 2
        })
    );
    let mut bad = data;
    bad[7] = f32::NAN;
    assert_eq!(
        kmeans(&bad, 4, 2, 1, 5, 0),
        Err(KmeansError::NonFinite { row: 3, col: 1 })
    );
    bad[7] = 0.0;
    bad[2] = f32::NEG_INFINITY;
    let e = kmeans(&bad, 4, 2, 1, 5, 0).unwrap_err();
    assert_eq!(e, KmeansError::NonFinite { row: 1, col: 0 });
    assert!(e.to_string().contains("row 1"));

    let t = [0, 1, 0, 1];
    assert_eq!(
        cluster_within(&data, 4, 2, &t, 2, 0, 5, 0),
        Err(KmeansError::ZeroClusters {
            field: "k_per_target"
        })
    );
    assert_eq!(
        cluster_global(&data, 4, 2, &t, 2, 0, 5, 0),
        Err(KmeansError::ZeroClusters { field: "k" })
    );
    assert_eq!(
        cluster_global(&data, 4, 2, &t, 2, 5, 5, 0),
        Err(KmeansError::TooManyClusters { k: 5, n: 4 })
    );
    assert_eq!(
        cluster_within(&data, 4, 2, &t[..3], 2, 1, 5, 0),
        Err(KmeansError::TargetsLengthMismatch { targets: 3, n: 4 })
    );
    assert_eq!(
        cluster_global(&data, 4, 2, &[0, 1, 2, 0], 2, 1, 5, 0),
        Err(KmeansError::TargetOutOfRange {
            sample: 2,
            target: 2,
            num_targets: 2
        })
    );
    assert_eq!(
        cluster_within(&[], 0, 2, &[], 2, 1, 5, 0),
        Err(KmeansError::NoSamples)
    );
    assert_eq!(
        cluster_within(&bad, 4, 2, &t, 2, 1, 5, 0),
        Err(KmeansError::NonFinite { row: 1, col: 0 })
    );
    let e: KmeansError = HierarchyError::NoLevels.into();
    assert_eq!(e, KmeansError::Hierarchy(HierarchyError::NoLevels));
    assert!(e.to_string().contains("label rule"));
}
