//! Hard test images. The synthetic data bring their own (images whose common features are
//! missing); on real data the balanced design's hard test images are those that an *ensemble* of
//! networks trained on the target labels only (with seeds used nowhere else, `[hard.ensemble]`)
//! misclassifies; the rare-subclass design's are the images of its rare leaves. The ensemble's
//! first member is also the encoder of the k-means granularities (`embedding.source =
//! "ensemble"`).
//!
//! The ensemble-misclassified images measure weakness more than anything (in an unconverged
//! regime they are most of the test set, and they are chosen image by image for being hard for
//! coarse-trained networks). A second subset asks the question class by class: the *confusable*
//! leaves are the finest classes whose test images the same ensemble misclassifies most often
//! (`hard.ensemble.confusable_leaves` of them, default a fifth), and every arm is also scored on
//! all test images of those leaves.

use serde::{Deserialize, Serialize};

use super::designs::Design;
use super::phase::{Phase, Trainee};
use super::results::EpochRecord;
use super::runner::Runner;
use crate::empirical::data::ImageSet;
use crate::empirical::error::EmpiricalError;
use crate::empirical::model::Model;
use crate::report::read_json;
use ndarray::Array2;

/// How a design's hard test images were defined.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HardSubset {
    /// Design.
    pub design: String,
    /// Definition.
    pub definition: String,
    /// Hard test images.
    pub hard: usize,
    /// All test images.
    pub total: usize,
    /// The confusable leaves of this design (with an ensemble on a design without its own hard
    /// images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusable: Option<ConfusableLeaves>,
}

/// The leaves that the coarse-trained ensemble confuses most, whose test images form a design's
/// confusable subset.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfusableLeaves {
    /// How the leaves were chosen.
    pub definition: String,
    /// The leaves (names), most confused first, with the ensemble's error on each.
    pub leaves: Vec<(String, f64)>,
    /// Test images of these leaves.
    pub images: usize,
    /// All test images.
    pub total: usize,
}

/// The test subsets a design scores apart from the whole test set: per test image, whether it
/// is hard, and whether it belongs to a confusable leaf (None: the design has no such subset).
#[derive(Clone, Copy, Debug, Default)]
pub struct TestSubsets<'a> {
    /// Hard test images.
    pub hard: Option<&'a [bool]>,
    /// Test images of the confusable leaves.
    pub confusable: Option<&'a [bool]>,
}

/// One ensemble member's output: its test-set softmax probabilities and training epochs
/// (`ensemble/members.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberOutput {
    /// The member's seed.
    pub seed: u64,
    /// Softmax probabilities of every test image.
    pub probs: Array2<f32>,
    /// Its training epochs.
    pub epochs: Vec<EpochRecord>,
}

/// The file holding the ensemble's outputs.
pub const MEMBERS_FILE: &str = "ensemble/members.json";

/// The ensemble member with seed `seed`.
fn member(seed: u64) -> Trainee<'static> {
    Trainee {
        design: "ensemble",
        condition: "target-only",
        seed,
    }
}

/// The weights file of the ensemble member with seed `seed`.
fn member_weights(seed: u64) -> String {
    format!("ensemble/member_s{seed}.safetensors")
}

/// Epochs of each ensemble member (default: the baseline's), if there is an ensemble.
pub fn ensemble_epochs(r: &Runner) -> Option<usize> {
    let t = &r.config().train;
    let e = r.config().hard.ensemble.as_ref()?;
    Some(e.epochs.unwrap_or(t.pretrain_epochs + t.finetune_epochs))
}

/// The ensemble's outputs: read back if saved, else each member trained on the target labels
/// (with the baseline's schedule) and saved. None without `[hard.ensemble]`.
pub fn ensemble(r: &Runner) -> Result<Option<Vec<MemberOutput>>, EmpiricalError> {
    let (Some(e), Some(epochs)) = (&r.config().hard.ensemble, ensemble_epochs(r)) else {
        return Ok(None);
    };
    let path = r.prep_dir().path(MEMBERS_FILE);
    if path.exists() {
        return Ok(Some(read_json(&path)?));
    }
    let train = &r.data().train;
    let targets = train.labels_at_level(r.config().data.target_level);
    let mut out = Vec::new();
    for &s in &e.seeds {
        let who = member(s);
        let model = r.model(r.num_targets(), who.key("init"))?;
        let phase = Phase {
            name: "ensemble",
            set: train,
            labels: &targets,
            epochs,
            lr: &r.config().train.pretrain_lr,
        };
        let epochs = r.train(&model, &who, &phase)?;
        let logits = r.test_logits(&model)?;
        model.save_weights(&r.prep_dir().path(&member_weights(s)))?;
        r.drop_checkpoints(&who, &["ensemble"]);
        out.push(MemberOutput {
            seed: s,
            probs: softmax_rows(&logits),
            epochs,
        });
    }
    r.write_timings("ensemble")?;
    r.prep_dir().write_json(MEMBERS_FILE, &out)?;
    Ok(Some(out))
}

/// The first ensemble member's network (the k-means encoder of `embedding.source =
/// "ensemble"`).
pub fn first_member(r: &Runner) -> Result<Model, EmpiricalError> {
    let s = r.config().hard.ensemble.as_ref().map_or(0, |e| e.seeds[0]);
    let m = r.model(r.num_targets(), member(s).key("init"))?;
    m.load_weights(&r.prep_dir().path(&member_weights(s)))?;
    Ok(m)
}

/// Gives every design its hard test images where the data do not already (the balanced design
/// on real data: the ensemble's mistakes) and says how each design's were defined.
pub fn assign_hard_subsets(
    r: &Runner,
    designs: &mut [Design],
    members: Option<&[MemberOutput]>,
) -> Vec<HardSubset> {
    let cfg = r.config();
    let test = &r.data().test;
    let mut subsets = Vec::new();
    let balanced = |d: &Design| d.name != "rare_subclass";
    if let Some(h) = &r.data().synthetic_hard {
        for d in designs.iter().filter(|d| balanced(d)) {
            subsets.push(HardSubset {
                design: d.name.clone(),
                definition: "the synthetic data's hard images (common features missing)".into(),
                hard: h.iter().filter(|&&x| x).count(),
                total: h.len(),
                confusable: None,
            });
        }
    }
    if let (Some(members), Some(e)) = (members, &cfg.hard.ensemble) {
        let wrong = ensemble_mistakes(members, r.test_targets(), r.num_targets());
        let confusable = confusable_leaves(&wrong, test, e.confusable_leaves);
        for d in designs
            .iter_mut()
            .filter(|d| balanced(d) && d.test_is_hard.is_none())
        {
            let definition = format!(
                "misclassified by an ensemble of {} target-only networks (seeds {:?}, not used elsewhere; trained on {} images)",
                members.len(),
                e.seeds,
                r.data().train.len
            );
            let (leaves, mask) = &confusable;
            subsets.push(HardSubset {
                design: d.name.clone(),
                hard: wrong.iter().filter(|&&w| w).count(),
                total: test.len,
                confusable: Some(ConfusableLeaves {
                    definition: format!(
                        "all test images of the {} leaves (of {}) whose test images are most often {definition}",
                        leaves.len(),
                        test.hierarchy.num_leaves()
                    ),
                    leaves: leaves.clone(),
                    images: mask.iter().filter(|&&c| c).count(),
                    total: test.len,
                }),
                definition,
            });
            d.test_is_hard = Some(wrong.clone());
            d.test_is_confusable = Some(mask.clone());
        }
    }
    let rare = designs.iter().find(|d| d.name == "rare_subclass");
    if let (Some(rs), Some(d)) = (&cfg.hard.rare_subclass, rare) {
        subsets.push(HardSubset {
            design: "rare_subclass".into(),
            definition: format!(
                "images of the rare leaves (each target class keeps one leaf whole, the others {} training images each; {} training images in all)",
                rs.rare_per_leaf, d.train.len
            ),
            hard: d
                .test_is_hard
                .as_ref()
                .map_or(0, |h| h.iter().filter(|&&x| x).count()),
            total: test.len,
            confusable: None,
        });
    }
    subsets
}

/// The `n` leaves (default: a fifth of them, at least one; at most all) whose test images are
/// most often `wrong` (ties: the lower leaf index first), with their error rates, and whether
/// each test image belongs to one of them. Leaves without test images are never chosen.
fn confusable_leaves(
    wrong: &[bool],
    test: &ImageSet,
    n: Option<usize>,
) -> (Vec<(String, f64)>, Vec<bool>) {
    let leaves = test.hierarchy.num_leaves();
    let (mut count, mut errors) = (vec![0usize; leaves], vec![0usize; leaves]);
    for (&l, &w) in test.leaves.iter().zip(wrong) {
        count[l] += 1;
        errors[l] += usize::from(w);
    }
    let mut order: Vec<usize> = (0..leaves).filter(|&l| count[l] > 0).collect();
    let rate = |l: usize| errors[l] as f64 / count[l] as f64;
    order.sort_by(|&a, &b| rate(b).total_cmp(&rate(a)).then(a.cmp(&b)));
    order.truncate(n.unwrap_or((leaves / 5).max(1)).min(order.len()));
    let mut chosen = vec![false; leaves];
    for &l in &order {
        chosen[l] = true;
    }
    let names = &test
        .hierarchy
        .level(test.hierarchy.leaf_level())
        .class_names;
    (
        order.iter().map(|&l| (names[l].clone(), rate(l))).collect(),
        test.leaves.iter().map(|&l| chosen[l]).collect(),
    )
}

/// Whether the ensemble (the sum of its members' probabilities) misclassifies each test image.
fn ensemble_mistakes(members: &[MemberOutput], targets: &[usize], classes: usize) -> Vec<bool> {
    (0..targets.len())
        .map(|i| {
            let mut p = vec![0f64; classes];
            for m in members {
                for (a, &b) in p.iter_mut().zip(m.probs.row(i).iter()) {
                    *a += f64::from(b);
                }
            }
            let best = (0..classes).fold(0, |b, j| if p[j] > p[b] { j } else { b });
            best != targets[i]
        })
        .collect()
}

/// Row-wise softmax.
fn softmax_rows(m: &Array2<f32>) -> Array2<f32> {
    let mut out = m.clone();
    for mut r in out.rows_mut() {
        let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f64> = r.iter().map(|&v| f64::from(v - max).exp()).collect();
        let z: f64 = e.iter().sum();
        for (o, v) in r.iter_mut().zip(&e) {
            *o = (v / z) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hierarchy::Hierarchy;
    use std::sync::Arc;

    /// The leaves with the highest error rate are chosen (ties: the lower index), a leaf without
    /// test images never is, the default is a fifth of the leaves, and the mask follows the
    /// images' leaves.
    #[test]
    fn confusable_leaves_by_hand() {
        let h = Arc::new(Hierarchy::two_level(&[3, 2]).unwrap());
        // leaves 0..5; leaf 4 has no test image
        let leaves = vec![0, 0, 1, 1, 2, 2, 3, 3, 3];
        let test = ImageSet::new(vec![0; leaves.len()], 1, 1, 1, leaves, h, "t").unwrap();
        // errors: leaf 0 1/2, leaf 1 2/2, leaf 2 1/2, leaf 3 1/3
        let wrong = [true, false, true, true, false, true, false, false, true];
        let (chosen, mask) = confusable_leaves(&wrong, &test, Some(2));
        let names: Vec<&str> = chosen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["s0.1", "s0.0"], "{chosen:?}");
        assert_eq!(chosen[0].1, 1.0);
        assert_eq!(chosen[1].1, 0.5);
        assert_eq!(
            mask,
            [true, true, true, true, false, false, false, false, false]
        );
        // default: 5 leaves / 5 = 1; more than there are: every leaf with test images
        assert_eq!(confusable_leaves(&wrong, &test, None).0.len(), 1);
        assert_eq!(confusable_leaves(&wrong, &test, Some(9)).0.len(), 4);
    }
}
