//! Clustering-based label granularities.
//!
//! Hong et al. (arXiv 2303.16887) build pretraining label sets for iNaturalist by running k-means
//! on image embeddings: clustering *inside* each superclass gives fine labels that nest inside the
//! coarse downstream target (an aligned granularity), while clustering the *whole* set gives labels
//! that may cut across targets (a misaligned granularity). This module provides that step:
//!
//! * [`kmeans`]: Lloyd's algorithm with k-means++ seeding, deterministic given a seed;
//! * [`cluster_within`]: k-means separately inside each target class, producing an aligned
//!   [`LabelRule`] named e.g. `"kmeans_within_5"`;
//! * [`cluster_global`]: k-means over all samples, producing a [`LabelRule`] named e.g.
//!   `"kmeans_global_100"` whose alignment is read off the data (clusters mixing targets have no
//!   target).
//!
//! The embeddings are row-major `n x dim` `f32` matrices computed elsewhere by a frozen network
//! (e.g. the penultimate layer of a pretrained model); this module only clusters them. Distances
//! and means are accumulated in `f64`. Everything is single-threaded and deterministic: the same
//! data, parameters and seed give bit-identical results.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::hierarchy::{HierarchyError, LabelRule};

/// Errors from clustering embeddings into label granularities.
///
/// Every message names the parameter, row or sample at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmeansError {
    /// The number of clusters (`k`, or `k_per_target`) is zero.
    #[error("number of clusters `{field}` is 0")]
    ZeroClusters {
        /// Name of the parameter that is zero.
        field: &'static str,
    },
    /// More clusters than points.
    #[error("cannot form {k} clusters from {n} points")]
    TooManyClusters {
        /// Requested number of clusters.
        k: usize,
        /// Number of points.
        n: usize,
    },
    /// The embedding dimension is zero.
    #[error("embedding dimension is 0")]
    ZeroDim,
    /// No samples to cluster.
    #[error("no samples to cluster")]
    NoSamples,
    /// The data slice does not hold `n * dim` values.
    #[error("data has {len} values, expected n x dim = {n} x {dim}")]
    DataLengthMismatch {
        /// Length of the data slice.
        len: usize,
        /// Number of rows.
        n: usize,
        /// Number of columns.
        dim: usize,
    },
    /// A NaN or infinite value in the data.
    #[error("row {row}, column {col} is not finite")]
    NonFinite {
        /// Row (sample) holding the value.
        row: usize,
        /// Column of the value.
        col: usize,
    },
    /// The targets slice does not have one entry per sample.
    #[error("{targets} targets given for {n} samples")]
    TargetsLengthMismatch {
        /// Length of the targets slice.
        targets: usize,
        /// Number of samples.
        n: usize,
    },
    /// A sample's target class is not below `num_targets`.
    #[error("sample {sample} has target {target}, but num_targets is {num_targets}")]
    TargetOutOfRange {
        /// The sample.
        sample: usize,
        /// Its target.
        target: usize,
        /// Number of target classes.
        num_targets: usize,
    },
    /// Building the label rule failed.
    #[error("building the label rule: {0}")]
    Hierarchy(#[from] HierarchyError),
}

/// Result of [`kmeans`].
#[derive(Clone, Debug, PartialEq)]
pub struct KMeans {
    /// Cluster centres, row-major `k x dim`.
    pub centroids: Vec<f32>,
    /// Cluster of each point (`< k`).
    pub assignment: Vec<usize>,
    /// Sum over points of the squared distance to their cluster's centre (computed in `f64` with
    /// the unrounded centres).
    pub inertia: f64,
    /// Number of Lloyd iterations (update + assignment) run; at most the `iters` asked for, fewer
    /// if the assignment converged.
    pub iterations: usize,
}

impl KMeans {
    /// Number of points in each of the `k` clusters (`k` = the `k` passed to [`kmeans`]).
    ///
    /// # Panics
    /// If an assignment is not below `k`.
    pub fn cluster_sizes(&self, k: usize) -> Vec<usize> {
        sizes(&self.assignment, k)
    }
}

fn sizes(assignment: &[usize], k: usize) -> Vec<usize> {
    let mut sizes = vec![0; k];
    for &c in assignment {
        sizes[c] += 1;
    }
    sizes
}

/// Checks the shape and values of an `n x dim` matrix.
fn check_data(data: &[f32], n: usize, dim: usize) -> Result<(), KmeansError> {
    if dim == 0 {
        return Err(KmeansError::ZeroDim);
    }
    if n.checked_mul(dim) != Some(data.len()) {
        return Err(KmeansError::DataLengthMismatch {
            len: data.len(),
            n,
            dim,
        });
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(KmeansError::NonFinite {
            row: i / dim,
            col: i % dim,
        });
    }
    Ok(())
}

/// Squared Euclidean distance between a data row and a centre, accumulated in f64.
fn dist2(x: &[f32], c: &[f64]) -> f64 {
    x.iter()
        .zip(c)
        .map(|(&a, &b)| {
            let d = f64::from(a) - b;
            d * d
        })
        .sum()
}

/// Nearest centre of a row (ties go to the lowest index) and its squared distance.
fn nearest(x: &[f32], centroids: &[f64], dim: usize) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (j, c) in centroids.chunks_exact(dim).enumerate() {
        let d = dist2(x, c);
        if d < best.1 {
            best = (j, d);
        }
    }
    best
}

/// k-means++ seeding: the first centre uniformly at random, each next one with probability
/// proportional to the squared distance to the nearest centre chosen so far (uniformly at random
/// if every point already coincides with a centre).
fn kmeans_pp(data: &[f32], n: usize, dim: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.gen_range(0..n);
    centroids.extend(row(first).iter().map(|&v| f64::from(v)));
    let mut min_d2: Vec<f64> = (0..n).map(|i| dist2(row(i), &centroids)).collect();
    for _ in 1..k {
        let total: f64 = min_d2.iter().sum();
        let pick = if total > 0.0 && total.is_finite() {
            let r = rng.gen::<f64>() * total;
            let mut acc = 0.0;
            let mut pick = None;
            for (i, &d) in min_d2.iter().enumerate() {
                acc += d;
                if d > 0.0 && acc > r {
                    pick = Some(i);
                    break;
                }
            }
            // Rounding can leave `acc` just below `r`: take the last point with positive weight.
            pick.unwrap_or_else(|| {
                min_d2
                    .iter()
                    .rposition(|&d| d > 0.0)
                    .expect("total > 0 implies a positive weight")
            })
        } else {
            rng.gen_range(0..n)
        };
        let start = centroids.len();
        centroids.extend(row(pick).iter().map(|&v| f64::from(v)));
        let c = &centroids[start..];
        for (i, d) in min_d2.iter_mut().enumerate() {
            *d = d.min(dist2(row(i), c));
        }
    }
    centroids
}

/// Assigns every row to its nearest centre; returns how many assignments changed.
fn assign(data: &[f32], dim: usize, centroids: &[f64], assignment: &mut [usize]) -> usize {
    let mut changed = 0;
    for (x, a) in data.chunks_exact(dim).zip(assignment.iter_mut()) {
        let (j, _) = nearest(x, centroids, dim);
        if *a != j {
            *a = j;
            changed += 1;
        }
    }
    changed
}

/// Sets each non-empty cluster's centre to the mean of its points (empty clusters keep theirs).
fn update_means(data: &[f32], dim: usize, k: usize, assignment: &[usize], centroids: &mut [f64]) {
    let mut sums = vec![0.0f64; k * dim];
    let mut counts = vec![0usize; k];
    for (x, &a) in data.chunks_exact(dim).zip(assignment) {
        counts[a] += 1;
        for (s, &v) in sums[a * dim..(a + 1) * dim].iter_mut().zip(x) {
            *s += f64::from(v);
        }
    }
    for j in 0..k {
        if counts[j] > 0 {
            let inv = 1.0 / counts[j] as f64;
            for (c, s) in centroids[j * dim..(j + 1) * dim]
                .iter_mut()
                .zip(&sums[j * dim..(j + 1) * dim])
            {
                *c = s * inv;
            }
        }
    }
}

/// The update step: centres to means, then each empty cluster (in index order) is re-seeded with
/// the point farthest from its centre among clusters with more than one point (ties to the lowest
/// index; only points at positive distance, so no cost is added), then centres to means again.
/// Every part of this step can only lower the inertia. Clusters stay empty only when every point
/// already sits on its centre (fewer distinct points than clusters).
fn update(data: &[f32], dim: usize, k: usize, assignment: &mut [usize], centroids: &mut [f64]) {
    update_means(data, dim, k, assignment, centroids);
    let mut size = sizes(assignment, k);
    if !size.contains(&0) {
        return;
    }
    let mut d2: Vec<f64> = data
        .chunks_exact(dim)
        .zip(assignment.iter())
        .map(|(x, &a)| dist2(x, &centroids[a * dim..(a + 1) * dim]))
        .collect();
    for j in 0..k {
        if size[j] > 0 {
            continue;
        }
        let mut best: Option<(usize, f64)> = None;
        for (i, &d) in d2.iter().enumerate() {
            if d > 0.0 && size[assignment[i]] > 1 && best.is_none_or(|(_, b)| d > b) {
                best = Some((i, d));
            }
        }
        let Some((p, _)) = best else { break };
        size[assignment[p]] -= 1;
        size[j] = 1;
        assignment[p] = j;
        d2[p] = 0.0;
        for (c, &v) in centroids[j * dim..(j + 1) * dim]
            .iter_mut()
            .zip(&data[p * dim..(p + 1) * dim])
        {
            *c = f64::from(v);
        }
    }
    update_means(data, dim, k, assignment, centroids);
}

/// Lloyd's iterations from given centres (data already validated, `1 <= k <= n`).
fn lloyd(
    data: &[f32],
    n: usize,
    dim: usize,
    k: usize,
    mut centroids: Vec<f64>,
    iters: usize,
) -> KMeans {
    let mut assignment = vec![usize::MAX; n];
    let mut changed = assign(data, dim, &centroids, &mut assignment);
    let mut iterations = 0;
    loop {
        let has_empty = sizes(&assignment, k).contains(&0);
        if iterations == iters {
            if has_empty {
                // Out of iterations with an empty cluster: one more update step re-seeds it (the
                // assignment is then not re-done, so it may differ from nearest-centre).
                update(data, dim, k, &mut assignment, &mut centroids);
            }
            break;
        }
        if changed == 0 && !has_empty {
            break;
        }
        update(data, dim, k, &mut assignment, &mut centroids);
        iterations += 1;
        changed = assign(data, dim, &centroids, &mut assignment);
    }
    let inertia = data
        .chunks_exact(dim)
        .zip(&assignment)
        .map(|(x, &a)| dist2(x, &centroids[a * dim..(a + 1) * dim]))
        .sum();
    KMeans {
        centroids: centroids.iter().map(|&c| c as f32).collect(),
        assignment,
        inertia,
        iterations,
    }
}

/// k-means clustering of the rows of a row-major `n x dim` matrix into `k` clusters.
///
/// Lloyd's algorithm with k-means++ seeding drawn from a `ChaCha8Rng` seeded with `seed`, run for
/// at most `iters` iterations (stopping early once the assignment no longer changes). Points are
/// assigned to the nearest centre, ties going to the lowest cluster index. An empty cluster is
/// re-seeded deterministically with the point farthest from its centre (taken from a cluster with
/// more than one point), so all `k` clusters are non-empty whenever the data has at least `k`
/// distinct rows; otherwise the surplus clusters stay empty. Distances and means are computed in
/// `f64`; the inertia never increases with `iters` for a fixed seed.
///
/// # Errors
/// [`KmeansError`] if `k == 0`, `k > n`, `dim == 0`, `data.len() != n * dim`, or a value is not
/// finite (naming its row and column).
pub fn kmeans(
    data: &[f32],
    n: usize,
    dim: usize,
    k: usize,
    iters: usize,
    seed: u64,
) -> Result<KMeans, KmeansError> {
    if k == 0 {
        return Err(KmeansError::ZeroClusters { field: "k" });
    }
    check_data(data, n, dim)?;
    if k > n {
        return Err(KmeansError::TooManyClusters { k, n });
    }
    let mut rng = crate::seed::stream(seed, 0);
    let centroids = kmeans_pp(data, n, dim, k, &mut rng);
    Ok(lloyd(data, n, dim, k, centroids, iters))
}

/// Validates the inputs shared by [`cluster_within`] and [`cluster_global`].
fn check_inputs(
    embeddings: &[f32],
    n: usize,
    dim: usize,
    targets: &[usize],
    num_targets: usize,
) -> Result<(), KmeansError> {
    check_data(embeddings, n, dim)?;
    if n == 0 {
        return Err(KmeansError::NoSamples);
    }
    if targets.len() != n {
        return Err(KmeansError::TargetsLengthMismatch {
            targets: targets.len(),
            n,
        });
    }
    if let Some((sample, &target)) = targets.iter().enumerate().find(|(_, &t)| t >= num_targets) {
        return Err(KmeansError::TargetOutOfRange {
            sample,
            target,
            num_targets,
        });
    }
    Ok(())
}

/// Renumbers the non-empty clusters `offset, offset + 1, ...` in cluster-index order; returns the
/// new label of each point and the number of non-empty clusters.
fn compact(assignment: &[usize], k: usize, offset: usize) -> (Vec<usize>, usize) {
    let size = sizes(assignment, k);
    let mut new = vec![usize::MAX; k];
    let mut next = 0;
    for j in 0..k {
        if size[j] > 0 {
            new[j] = offset + next;
            next += 1;
        }
    }
    (assignment.iter().map(|&a| new[a]).collect(), next)
}

/// An *aligned* clustering granularity: k-means separately inside each target class.
///
/// `embeddings` is a row-major `n x dim` matrix (frozen-network features), `targets[i] <
/// num_targets` the target (coarse downstream) class of sample i. Each target class with `m`
/// samples is clustered into `min(k_per_target, m)` clusters (seed derived from `seed` and the
/// target); labels are numbered target by target (all clusters of target 0, then of target 1, ...),
/// so every pretraining class lies inside one target and the rule [`LabelRule::is_aligned`].
/// Target classes without samples get no clusters, and a class with fewer distinct embeddings than
/// clusters gets one label per distinct embedding. The rule is a table rule named
/// `"kmeans_within_{k_per_target}"`: sample i's label is `rule.label(_, i, _)`.
///
/// # Errors
/// [`KmeansError`] if `k_per_target == 0`, `dim == 0`, `n == 0`, the lengths of `embeddings` or
/// `targets` do not match `n`, a value is not finite, or a target is not below `num_targets`.
#[allow(clippy::too_many_arguments)]
pub fn cluster_within(
    embeddings: &[f32],
    n: usize,
    dim: usize,
    targets: &[usize],
    num_targets: usize,
    k_per_target: usize,
    iters: usize,
    seed: u64,
) -> Result<LabelRule, KmeansError> {
    if k_per_target == 0 {
        return Err(KmeansError::ZeroClusters {
            field: "k_per_target",
        });
    }
    check_inputs(embeddings, n, dim, targets, num_targets)?;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); num_targets];
    for (i, &t) in targets.iter().enumerate() {
        members[t].push(i);
    }
    let mut labels = vec![0usize; n];
    let mut num_classes = 0;
    for (t, rows) in members.iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        let sub: Vec<f32> = rows
            .iter()
            .flat_map(|&i| embeddings[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let k = k_per_target.min(rows.len());
        let sub_seed = crate::seed::derive(seed, &["class", &t.to_string()]);
        let km = kmeans(&sub, rows.len(), dim, k, iters, sub_seed)?;
        let (sub_labels, used) = compact(&km.assignment, k, num_classes);
        for (&i, l) in rows.iter().zip(sub_labels) {
            labels[i] = l;
        }
        num_classes += used;
    }
    Ok(LabelRule::from_table(
        &format!("kmeans_within_{k_per_target}"),
        labels,
        num_classes,
        targets,
        num_targets,
    )?)
}

/// A clustering granularity that ignores the targets: k-means over all samples.
///
/// Arguments as in [`cluster_within`], with `k` clusters in total. A cluster's target is read off
/// the data: `Some(t)` when all its samples have target `t`, `None` when it mixes targets (so the
/// rule is typically *misaligned*, see [`LabelRule::is_aligned`]). Empty clusters (only possible
/// with fewer than `k` distinct embeddings) are dropped and the rest renumbered in order. The rule
/// is a table rule named `"kmeans_global_{k}"`.
///
/// # Errors
/// As [`cluster_within`], and if `k > n`.
#[allow(clippy::too_many_arguments)]
pub fn cluster_global(
    embeddings: &[f32],
    n: usize,
    dim: usize,
    targets: &[usize],
    num_targets: usize,
    k: usize,
    iters: usize,
    seed: u64,
) -> Result<LabelRule, KmeansError> {
    if k == 0 {
        return Err(KmeansError::ZeroClusters { field: "k" });
    }
    check_inputs(embeddings, n, dim, targets, num_targets)?;
    let km = kmeans(embeddings, n, dim, k, iters, seed)?;
    let (labels, num_classes) = compact(&km.assignment, k, 0);
    Ok(LabelRule::from_table(
        &format!("kmeans_global_{k}"),
        labels,
        num_classes,
        targets,
        num_targets,
    )?)
}

#[cfg(test)]
mod tests;
