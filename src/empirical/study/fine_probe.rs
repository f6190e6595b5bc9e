//! The theory's mechanism measured on a real network: do its frozen features tell the leaves
//! apart inside their own target class? A linear probe is trained on the leaf labels of the
//! training images' features; a test image is scored by the best leaf *inside its own target
//! class* (the question is not whether the features separate the targets, which every readout
//! measures, but whether they carry the subclass information the theory says coarse training
//! leaves out).

use ndarray::Array2;

use super::results::FineProbe;
use crate::empirical::data::ImageSet;
use crate::empirical::error::EmpiricalError;
use crate::empirical::probe::{LinearProbe, ProbeConfig};

/// The fine-class probe of features `train_features` of `train` (one row per image) scored on
/// `test_features` of `test`, inside the classes of `target_level`; the probe draws from `seed`.
pub fn fine_probe(
    train_features: &Array2<f32>,
    train: &ImageSet,
    test_features: &Array2<f32>,
    test: &ImageSet,
    target_level: usize,
    cfg: &ProbeConfig,
    seed: u64,
) -> Result<FineProbe, EmpiricalError> {
    let h = &train.hierarchy;
    let leaves = h.num_leaves();
    let probe = LinearProbe::train(train_features, &train.leaves, leaves, cfg, seed)?;
    let logits = probe.logits(test_features)?;
    Ok(within_target(&logits, test, target_level))
}

/// Scores leaf logits (one row per test image of `test`) inside each image's target class.
fn within_target(logits: &Array2<f32>, test: &ImageSet, target_level: usize) -> FineProbe {
    let h = &test.hierarchy;
    let leaves = h.num_leaves();
    let siblings: Vec<Vec<usize>> = (0..h.num_classes(target_level))
        .map(|t| h.leaves_under(target_level, t))
        .collect();
    let (mut count, mut right) = (vec![0usize; leaves], vec![0usize; leaves]);
    let mut predictions = Vec::with_capacity(test.len);
    for (row, &leaf) in logits.rows().into_iter().zip(&test.leaves) {
        let t = h.leaf_ancestor(leaf, target_level);
        let best = siblings[t]
            .iter()
            .copied()
            .fold(None, |b: Option<usize>, l| match b {
                Some(b) if row[b] >= row[l] => Some(b),
                _ => Some(l),
            })
            .unwrap_or(leaf);
        predictions.push(best as u32);
        count[leaf] += 1;
        right[leaf] += usize::from(best == leaf);
    }
    let total: usize = count.iter().sum();
    FineProbe {
        within_target_acc: if total == 0 {
            f64::NAN
        } else {
            right.iter().sum::<usize>() as f64 / total as f64
        },
        per_leaf: (0..leaves)
            .map(|l| (count[l] > 0).then(|| right[l] as f64 / count[l] as f64))
            .collect(),
        predictions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hierarchy::Hierarchy;
    use std::sync::Arc;

    /// The best leaf is taken inside the image's own target class only, even when a leaf of
    /// another target scores higher; per-leaf accuracy counts each leaf's images.
    #[test]
    fn scored_inside_the_target_by_hand() {
        // targets: 0 = leaves {0, 1}, 1 = leaves {2, 3, 4}
        let h = Arc::new(Hierarchy::two_level(&[2, 3]).unwrap());
        let leaves = vec![0, 1, 2, 4];
        let test = ImageSet::new(vec![0; 4], 1, 1, 1, leaves, h, "t").unwrap();
        let logits = ndarray::arr2(&[
            [1.0, 0.0, 9.0, 0.0, 0.0], // leaf 0: 9.0 is leaf 2 (other target): inside, 0 wins
            [2.0, 1.0, 0.0, 0.0, 0.0], // leaf 1: leaf 0 wins, wrong
            [0.0, 0.0, 0.5, 0.4, 0.1], // leaf 2: right
            [5.0, 0.0, 0.0, 0.3, 0.2], // leaf 4: leaf 3 wins inside target 1, wrong
        ]);
        let p = within_target(&logits, &test, 0);
        assert_eq!(p.predictions, [0, 0, 2, 3]);
        assert_eq!(p.within_target_acc, 0.5);
        assert_eq!(
            p.per_leaf,
            [Some(1.0), Some(0.0), Some(1.0), None, Some(0.0)]
        );
    }
}
