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
//!
//! Both are chosen *on the test images they score* unless the study holds out a validation
//! split (`data.validation_per_leaf`); a baseline replicate then shares the ensemble's luck on
//! those images fully, any other arm only partly, so the subsets favour any arm unlike the
//! baseline. With the split, nothing is chosen on test labels: the confusable leaves are the
//! leaves whose *validation* images the ensemble misclassifies most, and an image is hard when
//! the ensemble's confidence (its largest mean probability, no label used) is below the
//! threshold at which the same fraction of validation images is flagged as the ensemble
//! misclassifies there. With `hard.ensemble.disjoint` the members also train on images no arm
//! trains on. With `hard.ensemble.mirror_level` the same seeds train on that finer level's
//! labels, and the leaves *they* confuse most (read out with the summed head) form the mirror
//! subset. Every subset's test images are written to `subsets.json`; cells save their
//! per-image predictions, so [`super::reports::comparisons`] scores any subset from them.

use ndarray::Array2;

use super::config::EnsembleConfig;
use super::designs::Design;
use super::plan::{PhaseName, Trainee};
use super::results::{
    ConfusableLeaves, DesignSubsets, HardSubset, MemberOutput, MEMBERS_FILE, MIRROR_FILE,
};
use super::runner::{Phase, Runner};
use crate::empirical::data::ImageSet;
use crate::empirical::error::EmpiricalError;
use crate::empirical::model::Model;
use crate::report::read_json;

/// The ensemble member with seed `seed`.
fn member(seed: u64) -> Trainee<'static> {
    Trainee {
        design: "ensemble",
        condition: "target-only",
        seed,
    }
}

/// The mirror ensemble's member with seed `seed`.
fn mirror_member(seed: u64) -> Trainee<'static> {
    Trainee {
        design: "ensemble",
        condition: "mirror",
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
    let Some(e) = &r.config().hard.ensemble else {
        return Ok(None);
    };
    let tl = r.config().data.target_level;
    let out = members(r, MEMBERS_FILE, &e.seeds, tl, member)?;
    Ok(Some(out))
}

/// The mirror ensemble's outputs (`hard.ensemble.mirror_level`): the same seeds and images,
/// trained on that level's labels, read out on the targets with the summed head.
pub fn mirror_ensemble(r: &Runner) -> Result<Option<Vec<MemberOutput>>, EmpiricalError> {
    let Some((e, level)) = r
        .config()
        .hard
        .ensemble
        .as_ref()
        .and_then(|e| e.mirror_level.map(|l| (e, l)))
    else {
        return Ok(None);
    };
    Ok(Some(members(
        r,
        MIRROR_FILE,
        &e.seeds,
        level,
        mirror_member,
    )?))
}

/// The ensemble's training images: its own draw with `hard.ensemble.disjoint`, else the
/// balanced design's.
pub fn ensemble_train<'a>(r: &'a Runner) -> &'a ImageSet {
    let data = r.data();
    data.ensemble_train.as_ref().unwrap_or(&data.train)
}

/// Members with `seeds`, trained on the labels of `level` (read back from `file` if saved):
/// their target probabilities (summed over the classes nested in each target) on the test and
/// validation images.
fn members(
    r: &Runner,
    file: &str,
    seeds: &[u64],
    level: usize,
    who_of: fn(u64) -> Trainee<'static>,
) -> Result<Vec<MemberOutput>, EmpiricalError> {
    let path = r.prep_dir().path(file);
    if path.exists() {
        return Ok(read_json(&path)?);
    }
    let Some(epochs) = ensemble_epochs(r) else {
        return Ok(Vec::new());
    };
    let train = ensemble_train(r);
    let h = &train.hierarchy;
    let tl = r.config().data.target_level;
    let labels = train.labels_at_level(level);
    let classes = h.num_classes(level);
    let target_of: Vec<usize> = (0..classes).map(|c| h.ancestor(level, c, tl)).collect();
    let mut out = Vec::new();
    for &s in seeds {
        let who = who_of(s);
        let model = r.model(classes, who.key("init"))?;
        let phase = Phase {
            name: PhaseName::Ensemble,
            set: train,
            labels: &labels,
            epochs,
            lr: &r.config().train.pretrain_lr,
            first_epoch: 0,
        };
        let epochs = r.train(&model, &who, &phase)?;
        let target_probs = |set: &ImageSet| -> Result<Array2<f32>, EmpiricalError> {
            let p = softmax_rows(&r.logits(&model, set)?);
            Ok(sum_into_targets(&p, &target_of, r.num_targets()))
        };
        let probs = target_probs(&r.data().test)?;
        let validation_probs = match &r.data().validation {
            Some(v) => Some(target_probs(v)?),
            None => None,
        };
        if who.condition == "target-only" {
            model.save_weights(&r.prep_dir().path(&member_weights(s)))?;
        }
        r.drop_checkpoints(&who, &[PhaseName::Ensemble]);
        out.push(MemberOutput {
            seed: s,
            probs,
            validation_probs,
            epochs,
        });
    }
    r.write_timings(if who_of(0).condition == "mirror" {
        "ensemble_mirror"
    } else {
        "ensemble"
    })?;
    r.prep_dir().write_json(file, &out)?;
    Ok(out)
}

/// Probabilities of the classes of a level summed into their targets (`target_of[c]`); the
/// identity when the level is the target level.
fn sum_into_targets(p: &Array2<f32>, target_of: &[usize], targets: usize) -> Array2<f32> {
    if target_of.len() == targets && target_of.iter().enumerate().all(|(i, &t)| i == t) {
        return p.clone();
    }
    let mut out = Array2::zeros((p.nrows(), targets));
    for (mut o, row) in out.rows_mut().into_iter().zip(p.rows()) {
        let mut sums = vec![0f64; targets];
        for (&v, &t) in row.iter().zip(target_of) {
            sums[t] += f64::from(v);
        }
        for (o, v) in o.iter_mut().zip(sums) {
            *o = v as f32;
        }
    }
    out
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
/// on real data: the ensemble's, see the module doc) and says how each design's were defined;
/// also returns every design's test subsets by name (what `subsets.json` holds).
pub fn assign_hard_subsets(
    r: &Runner,
    designs: &mut [Design],
    members: Option<&[MemberOutput]>,
    mirror: Option<&[MemberOutput]>,
) -> (Vec<HardSubset>, Vec<DesignSubsets>) {
    let cfg = r.config();
    let test = &r.data().test;
    let mut subsets = Vec::new();
    let mut mirror_masks: Vec<(String, Vec<bool>)> = Vec::new();
    let mut leaf_errors: Vec<(String, Vec<f64>)> = Vec::new();
    let balanced = |d: &Design| d.name != "rare_subclass";
    if let Some(h) = &r.data().synthetic_hard {
        for d in designs.iter().filter(|d| balanced(d)) {
            subsets.push(HardSubset {
                design: d.name.clone(),
                definition: "the synthetic data's hard images (common features missing)".into(),
                hard: h.iter().filter(|&&x| x).count(),
                total: h.len(),
                confusable: None,
                mirror: None,
                on_validation: false,
            });
        }
    }
    if let (Some(members), Some(e)) = (members, &cfg.hard.ensemble) {
        let view = validation_view(r, members);
        let on_validation = view.is_some();
        let chosen = match view {
            Some(v) => choose_on_validation(r, members, mirror, v, e),
            None => choose_on_test(r, members, mirror, e),
        };
        for d in designs
            .iter_mut()
            .filter(|d| balanced(d) && d.test_is_hard.is_none())
        {
            subsets.push(HardSubset {
                design: d.name.clone(),
                hard: chosen.hard.iter().filter(|&&w| w).count(),
                total: test.len,
                confusable: Some(chosen.confusable.clone()),
                mirror: chosen.mirror.as_ref().map(|m| m.0.clone()),
                definition: chosen.definition.clone(),
                on_validation,
            });
            d.test_is_hard = Some(chosen.hard.clone());
            d.test_is_confusable = Some(chosen.confusable_mask.clone());
            if let Some((_, mask)) = &chosen.mirror {
                mirror_masks.push((d.name.clone(), mask.clone()));
            }
            leaf_errors.push((d.name.clone(), chosen.leaf_validation_error.clone()));
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
            mirror: None,
            on_validation: false,
        });
    }
    let indices =
        |m: &[bool]| -> Vec<u32> { (0..m.len()).filter(|&i| m[i]).map(|i| i as u32).collect() };
    let test_targets: Vec<u32> = test
        .labels_at_level(r.config().data.target_level)
        .iter()
        .map(|&t| t as u32)
        .collect();
    let masks = designs
        .iter()
        .map(|d| {
            let mut out = std::collections::BTreeMap::new();
            if let Some(h) = &d.test_is_hard {
                out.insert("hard".to_string(), indices(h));
                let easy: Vec<bool> = h.iter().map(|x| !x).collect();
                out.insert("easy".to_string(), indices(&easy));
            }
            if let Some(c) = &d.test_is_confusable {
                out.insert("confusable".to_string(), indices(c));
            }
            if let Some((_, m)) = mirror_masks.iter().find(|(n, _)| *n == d.name) {
                out.insert("mirror_confusable".to_string(), indices(m));
            }
            DesignSubsets {
                design: d.name.clone(),
                subsets: out,
                test_targets: test_targets.clone(),
                leaf_names: test
                    .hierarchy
                    .level(test.hierarchy.leaf_level())
                    .class_names
                    .clone(),
                leaf_validation_error: leaf_errors
                    .iter()
                    .find(|(n, _)| *n == d.name)
                    .map(|(_, e)| e.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    (subsets, masks)
}

/// The subsets the ensemble defines, with their definitions.
struct Chosen {
    definition: String,
    hard: Vec<bool>,
    confusable: ConfusableLeaves,
    confusable_mask: Vec<bool>,
    mirror: Option<(ConfusableLeaves, Vec<bool>)>,
    /// The ensemble's error on each leaf's validation images (empty when chosen on the test).
    leaf_validation_error: Vec<f64>,
}

/// The validation images with the members' probabilities on them, when the study holds out a
/// validation split and the members scored it.
fn validation_view<'a>(r: &'a Runner, members: &[MemberOutput]) -> Option<&'a ImageSet> {
    let v = r.data().validation.as_ref()?;
    members
        .iter()
        .all(|m| m.validation_probs.is_some())
        .then_some(v)
}

/// The members' probabilities on the validation images (checked present by
/// [`validation_view`]).
fn validation_members(members: &[MemberOutput]) -> Vec<MemberOutput> {
    members
        .iter()
        .filter_map(|m| {
            Some(MemberOutput {
                seed: m.seed,
                probs: m.validation_probs.clone()?,
                validation_probs: None,
                epochs: Vec::new(),
            })
        })
        .collect()
}

/// What the members were trained on, for the definitions.
fn members_words(r: &Runner, members: &[MemberOutput], e: &EnsembleConfig) -> String {
    let disjoint = if e.disjoint {
        ", images no design trains on"
    } else {
        ""
    };
    format!(
        "an ensemble of {} target-only networks (seeds {:?}, not used elsewhere; trained on {} images{disjoint})",
        members.len(),
        e.seeds,
        ensemble_train(r).len
    )
}

/// The subsets chosen on the test images themselves (no validation split): kept for the
/// studies that ran without one.
fn choose_on_test(
    r: &Runner,
    members: &[MemberOutput],
    mirror: Option<&[MemberOutput]>,
    e: &EnsembleConfig,
) -> Chosen {
    let test = &r.data().test;
    let wrong = ensemble_mistakes(members, r.test_targets(), r.num_targets());
    let (leaves, mask) = confusable_leaves(&wrong, test, e.confusable_leaves);
    let definition = format!("misclassified by {}", members_words(r, members, e));
    let confusable = ConfusableLeaves {
        definition: format!(
            "all test images of the {} leaves (of {}) whose test images are most often {definition}",
            leaves.len(),
            test.hierarchy.num_leaves()
        ),
        images: mask.iter().filter(|&&c| c).count(),
        leaves,
        total: test.len,
    };
    let mirror = mirror.map(|m| {
        let wrong = ensemble_mistakes(m, r.test_targets(), r.num_targets());
        let (leaves, mask) = confusable_leaves(&wrong, test, e.confusable_leaves);
        mirror_leaves(
            leaves,
            mask,
            m.len(),
            e,
            "test images",
            "the same seeds and images; chosen on the test images",
        )
    });
    Chosen {
        definition,
        hard: wrong,
        confusable,
        confusable_mask: mask,
        mirror,
        leaf_validation_error: Vec::new(),
    }
}

/// The subsets chosen on the validation images (see the module doc): no test label is used.
fn choose_on_validation(
    r: &Runner,
    members: &[MemberOutput],
    mirror: Option<&[MemberOutput]>,
    v: &ImageSet,
    e: &EnsembleConfig,
) -> Chosen {
    let test = &r.data().test;
    let tl = r.config().data.target_level;
    let nt = r.num_targets();
    let val_targets = v.labels_at_level(tl);
    let val_members = validation_members(members);
    let val_wrong = ensemble_mistakes(&val_members, &val_targets, nt);
    let val_error = val_wrong.iter().filter(|&&w| w).count() as f64 / val_wrong.len().max(1) as f64;
    let threshold = confidence_threshold(&confidences(&val_members, v.len), val_error);
    let hard: Vec<bool> = confidences(members, test.len)
        .iter()
        .map(|&c| c < threshold)
        .collect();
    let who = members_words(r, members, e);
    let definition = format!(
        "test images on which {who} is less confident (largest mean probability) than {threshold:.4}, the threshold that flags as many of the {} validation images as the ensemble misclassifies there ({:.1}%); no test label used",
        v.len,
        100.0 * val_error
    );
    let leaves_on = |wrong: &[bool]| -> (Vec<(String, f64)>, Vec<bool>) {
        let order = leaf_error_order(wrong, v, e.confusable_leaves);
        let names = &v.hierarchy.level(v.hierarchy.leaf_level()).class_names;
        let chosen: Vec<usize> = order.iter().map(|p| p.0).collect();
        (
            order.iter().map(|&(l, r)| (names[l].clone(), r)).collect(),
            test.leaves.iter().map(|l| chosen.contains(l)).collect(),
        )
    };
    let (leaves, mask) = leaves_on(&val_wrong);
    let confusable = ConfusableLeaves {
        definition: format!(
            "all test images of the {} leaves (of {}) whose validation images are most often misclassified by {who} (errors listed are on the validation images)",
            leaves.len(),
            test.hierarchy.num_leaves()
        ),
        images: mask.iter().filter(|&&c| c).count(),
        leaves,
        total: test.len,
    };
    let mirror = mirror.map(|m| {
        let wrong = ensemble_mistakes(&validation_members(m), &val_targets, nt);
        let (leaves, mask) = leaves_on(&wrong);
        mirror_leaves(
            leaves,
            mask,
            m.len(),
            e,
            "validation images",
            "the ensemble's seeds and images",
        )
    });
    Chosen {
        definition,
        hard,
        confusable,
        confusable_mask: mask,
        mirror,
        leaf_validation_error: leaf_rates(&val_wrong, v),
    }
}

/// The mirror subset of `members` fine-trained networks: the chosen `leaves` (with their
/// error on the images `on`) and the test-image mask.
fn mirror_leaves(
    leaves: Vec<(String, f64)>,
    mask: Vec<bool>,
    members: usize,
    e: &EnsembleConfig,
    on: &str,
    note: &str,
) -> (ConfusableLeaves, Vec<bool>) {
    (
        ConfusableLeaves {
            definition: format!(
                "all test images of the {} leaves whose {on} are most often misclassified by the summed head of {members} networks trained on level {} ({note})",
                leaves.len(),
                e.mirror_level.unwrap_or(0)
            ),
            images: mask.iter().filter(|&&c| c).count(),
            leaves,
            total: mask.len(),
        },
        mask,
    )
}

/// The ensemble's confidence on each of `n` images: the largest of its mean probabilities.
fn confidences(members: &[MemberOutput], n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let classes = members.first().map_or(0, |m| m.probs.ncols());
            let mut p = vec![0f64; classes];
            for m in members {
                for (a, &b) in p.iter_mut().zip(m.probs.row(i).iter()) {
                    *a += f64::from(b);
                }
            }
            p.iter().fold(0f64, |a, &b| a.max(b)) / members.len().max(1) as f64
        })
        .collect()
}

/// The confidence below which a fraction `fraction` of `conf` lies: the midpoint between the
/// k-th and (k+1)-th smallest values, k = round(fraction * n) (minus infinity for k = 0, plus
/// infinity for k = n).
fn confidence_threshold(conf: &[f64], fraction: f64) -> f64 {
    let mut c = conf.to_vec();
    c.sort_by(f64::total_cmp);
    let k = ((fraction * c.len() as f64).round() as usize).min(c.len());
    match k {
        0 => f64::NEG_INFINITY,
        k if k == c.len() => f64::INFINITY,
        k => 0.5 * (c[k - 1] + c[k]),
    }
}

/// The error rate of `wrong` on each leaf's images of `set` (NaN for a leaf without images).
fn leaf_rates(wrong: &[bool], set: &ImageSet) -> Vec<f64> {
    let leaves = set.hierarchy.num_leaves();
    let (mut count, mut errors) = (vec![0usize; leaves], vec![0usize; leaves]);
    for (&l, &w) in set.leaves.iter().zip(wrong) {
        count[l] += 1;
        errors[l] += usize::from(w);
    }
    (0..leaves)
        .map(|l| {
            if count[l] == 0 {
                f64::NAN
            } else {
                errors[l] as f64 / count[l] as f64
            }
        })
        .collect()
}

/// The `n` leaves (default: a fifth of them, at least one; at most all) whose images of `set`
/// are most often `wrong` (ties: the lower leaf index first), with their error rates. Leaves
/// without images are never chosen.
fn leaf_error_order(wrong: &[bool], set: &ImageSet, n: Option<usize>) -> Vec<(usize, f64)> {
    let leaves = set.hierarchy.num_leaves();
    let (mut count, mut errors) = (vec![0usize; leaves], vec![0usize; leaves]);
    for (&l, &w) in set.leaves.iter().zip(wrong) {
        count[l] += 1;
        errors[l] += usize::from(w);
    }
    let mut order: Vec<usize> = (0..leaves).filter(|&l| count[l] > 0).collect();
    let rate = |l: usize| errors[l] as f64 / count[l] as f64;
    order.sort_by(|&a, &b| rate(b).total_cmp(&rate(a)).then(a.cmp(&b)));
    order.truncate(n.unwrap_or((leaves / 5).max(1)).min(order.len()));
    order.into_iter().map(|l| (l, rate(l))).collect()
}

/// [`leaf_error_order`] on the test images, by name, and whether each test image belongs to
/// one of the chosen leaves.
fn confusable_leaves(
    wrong: &[bool],
    test: &ImageSet,
    n: Option<usize>,
) -> (Vec<(String, f64)>, Vec<bool>) {
    let order = leaf_error_order(wrong, test, n);
    let mut chosen = vec![false; test.hierarchy.num_leaves()];
    for &(l, _) in &order {
        chosen[l] = true;
    }
    let names = &test
        .hierarchy
        .level(test.hierarchy.leaf_level())
        .class_names;
    (
        order.iter().map(|&(l, r)| (names[l].clone(), r)).collect(),
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
