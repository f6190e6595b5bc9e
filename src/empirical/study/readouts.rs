//! The readouts of a network on the target labels, each in one place: the baseline's own
//! logits ([`scratch`]), the summed head ([`summed_head`]: the summed probability of the
//! classes nested in each target, no training), the linear probe on the frozen features
//! ([`target_probe`]), fine-tuning ([`fine_tune`]: a new head, the whole network trained on the
//! target labels), and the fine-class probe of the features ([`fine_class_probe`]: how well they
//! tell the leaves apart inside their own target class, `train.fine_probe`).
//!
//! The protocol reads its networks out through [`scratch`], [`frozen_readouts`] (the readouts
//! that train nothing of the network, one `match` arm each), [`trained_readouts`] (those that
//! train it, one `match` arm each) and [`fine_class_probe`]; the single runs (`empirical pretrain`, `empirical finetune`) through
//! [`summed_head`], [`train_probe`] and [`fine_tune_phase`]. The probes of one network share its
//! features, extracted once ([`FrozenFeatures`]).

use ndarray::Array2;

use super::config::{FinetuneHead, Readout};
use super::designs::Design;
use super::labels::PretrainLabels;
use super::plan::{PhaseName, Trainee};
use super::results::{EpochRecord, FineProbe, ReadoutError};
use super::runner::{error_rate, Phase, Runner};
use crate::empirical::data::ImageSet;
use crate::empirical::error::EmpiricalError;
use crate::empirical::model::Model;
use crate::empirical::probe::{LinearProbe, ProbeConfig};
use crate::readout::Reads;

/// The frozen features of a network on the design's training images and on the test images,
/// extracted once for every probe of the network.
#[derive(Default)]
pub struct FrozenFeatures(Option<(Array2<f32>, Array2<f32>)>);

impl FrozenFeatures {
    /// The features of `model` on the training images of `design` and on the test images.
    pub fn get(
        &mut self,
        r: &Runner,
        model: &Model,
        design: &Design,
    ) -> Result<(&Array2<f32>, &Array2<f32>), EmpiricalError> {
        if self.0.is_none() {
            let train = r.features(model, &design.train)?;
            let test = r.features(model, &r.data().test)?;
            self.0 = Some((train, test));
        }
        let (a, b) = self.0.as_ref().ok_or_else(|| {
            EmpiricalError::invalid("features", "frozen features were not extracted")
        })?;
        Ok((a, b))
    }
}

/// [`Readout::Scratch`]: the target error of a network trained on the target labels, read off
/// its own logits (on the test images, and on the design's training images).
pub fn scratch(r: &Runner, design: &Design, model: &Model) -> Result<ReadoutError, EmpiricalError> {
    let targets = design.train.labels_at_level(r.config().data.target_level);
    let logits = r.test_logits(model)?;
    let train_logits = r.logits(model, &design.train)?;
    Ok(r.score_with_train(
        Readout::Scratch,
        &logits,
        design.subsets(),
        &train_logits,
        &targets,
    ))
}

/// The readouts of a network trained on `labels` that train nothing of it, those the config
/// asks for, in report order: the summed head and the linear probe on its frozen features. Also
/// returns the probe (fine-tuning may start from it).
pub fn frozen_readouts(
    r: &Runner,
    design: &Design,
    labels: &PretrainLabels,
    model: &Model,
    who: &Trainee,
    frozen: &mut FrozenFeatures,
) -> Result<(Vec<ReadoutError>, Option<LinearProbe>), EmpiricalError> {
    let t = &r.config().train;
    let hard = design.subsets();
    let targets = design.train.labels_at_level(r.config().data.target_level);
    let mut readouts = Vec::new();
    let mut probe = None;
    for readout in Readout::PRETRAINED {
        if !t.readouts.contains(&readout) {
            continue;
        }
        match readout {
            Readout::SummedHead => {
                let logits = r.test_logits(model)?;
                if let Some(m) = summed_head(labels, &logits, r.num_targets())? {
                    let train =
                        summed_head(labels, &r.logits(model, &design.train)?, r.num_targets())?
                            .unwrap_or(m.clone());
                    readouts.push(r.score_with_train(readout, &m, hard, &train, &targets));
                }
            }
            Readout::LinearProbe => {
                let p = target_probe(r, design, model, who, frozen)?;
                let (train_f, test_f) = frozen.get(r, model, design)?;
                let logits = p.logits(test_f)?;
                let train_logits = p.logits(train_f)?;
                readouts.push(r.score_with_train(readout, &logits, hard, &train_logits, &targets));
                probe = Some(p);
            }
            // these train the network: not read off the frozen one
            Readout::Finetune | Readout::Scratch => {}
        }
    }
    Ok((readouts, probe))
}

/// The summed head: the score of a target is the log of the summed softmax probabilities of the
/// pretraining classes nested in it (the log-sum-exp of their logits, up to the normaliser every
/// target shares), so a target's score is the network's probability that the image is in it,
/// however many classes it holds. A target with no nested class scores minus infinity. None
/// when the labels are not aligned.
pub fn summed_head(
    labels: &PretrainLabels,
    logits: &Array2<f32>,
    num_targets: usize,
) -> Result<Option<Array2<f32>>, EmpiricalError> {
    if !labels.aligned() {
        return Ok(None);
    }
    if logits.ncols() != labels.num_classes() {
        return Err(EmpiricalError::invalid(
            "summed head",
            format!(
                "{} logits per image for {} pretraining classes",
                logits.ncols(),
                labels.num_classes()
            ),
        ));
    }
    let mut out = Array2::from_elem((logits.nrows(), num_targets), f32::NEG_INFINITY);
    for (mut o, row) in out.rows_mut().into_iter().zip(logits.rows()) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sums = vec![0f64; num_targets];
        for (&v, t) in row.iter().zip(labels.rule.target_of_class()) {
            if let Some(t) = *t {
                sums[t] += f64::from(v - max).exp();
            }
        }
        for (o, s) in o.iter_mut().zip(sums) {
            if s > 0.0 {
                *o = (s.ln() + f64::from(max)) as f32;
            }
        }
    }
    Ok(Some(out))
}

/// The linear probe of the network's frozen features for the target labels (the design's
/// training images).
pub fn target_probe(
    r: &Runner,
    design: &Design,
    model: &Model,
    who: &Trainee,
    frozen: &mut FrozenFeatures,
) -> Result<LinearProbe, EmpiricalError> {
    r.progress()
        .set_message(format!("{} linear probe", who.label()));
    let targets = design.train.labels_at_level(r.config().data.target_level);
    let (train_f, _) = frozen.get(r, model, design)?;
    train_probe(r, train_f, &targets, who)
}

/// A linear probe of `features` (one row per image) for the target labels `targets`, with the
/// config's probe settings and the trainee's key `probe`.
pub fn train_probe(
    r: &Runner,
    features: &Array2<f32>,
    targets: &[usize],
    who: &Trainee,
) -> Result<LinearProbe, EmpiricalError> {
    Ok(LinearProbe::train(
        features,
        targets,
        r.num_targets(),
        &r.config().train.probe,
        who.key("probe"),
    )?)
}

/// The readouts of a pretrained `model` that train it on the target labels (the config's, in
/// report order; fine-tuning, [`fine_tune`]), each from the pretrained network (the last one
/// takes `model`, any before it a copy), from epoch `first_epoch` of the cell's schedule.
/// `probe` is the frozen network's linear probe, when one was trained. Returns their errors
/// and the epochs of their training.
pub fn trained_readouts(
    r: &Runner,
    design: &Design,
    model: Model,
    probe: Option<LinearProbe>,
    who: &Trainee,
    frozen: &mut FrozenFeatures,
    first_epoch: usize,
) -> Result<(Vec<ReadoutError>, Vec<EpochRecord>), EmpiricalError> {
    let t = &r.config().train;
    let wanted: Vec<Readout> = Readout::PRETRAINED
        .into_iter()
        .filter(|x| x.reads() == Reads::FineTuned && t.readouts.contains(x))
        .collect();
    let mut model = Some(model);
    let (mut readouts, mut epochs) = (Vec::new(), Vec::new());
    for (i, &readout) in wanted.iter().enumerate() {
        let pretrained = model.as_ref().ok_or_else(|| {
            EmpiricalError::invalid("readouts", "the pretrained network was already used")
        })?;
        let net = if i + 1 == wanted.len() {
            model.take().ok_or_else(|| {
                EmpiricalError::invalid("readouts", "the pretrained network was already used")
            })?
        } else {
            copy_of(r, pretrained)?
        };
        let (error, trained) = match readout {
            Readout::Finetune => {
                fine_tune(r, design, net, probe.clone(), who, frozen, first_epoch)?
            }
            Readout::Scratch | Readout::SummedHead | Readout::LinearProbe => {
                return Err(EmpiricalError::invalid(
                    "readouts",
                    format!("{} does not train the network", readout.name()),
                ))
            }
        };
        readouts.push(error);
        epochs.extend(trained);
    }
    Ok((readouts, epochs))
}

/// A copy of `model`: the same architecture, head size and every tensor's values.
fn copy_of(r: &Runner, model: &Model) -> Result<Model, EmpiricalError> {
    let copy = r.model(model.num_classes(), 0)?;
    let tensors = model.named_tensors().into_iter().collect();
    copy.set_from(&tensors, "", std::path::Path::new("the pretrained network"))?;
    Ok(copy)
}

/// Fine-tuning: the pretrained `model` given a head for the targets (`train.finetune_head`:
/// fresh, or the linear probe's, `probe` or one trained now), then trained whole on the
/// design's target labels from epoch `first_epoch` of the cell's schedule. Returns the readout's
/// errors (with the training error at the start of fine-tuning) and the epochs.
pub fn fine_tune(
    r: &Runner,
    design: &Design,
    mut model: Model,
    probe: Option<LinearProbe>,
    who: &Trainee,
    frozen: &mut FrozenFeatures,
    first_epoch: usize,
) -> Result<(ReadoutError, Vec<EpochRecord>), EmpiricalError> {
    let cfg = r.config();
    let targets = design.train.labels_at_level(cfg.data.target_level);
    match cfg.train.finetune_head {
        FinetuneHead::Fresh => model.replace_head(r.num_targets(), who.key("head"))?,
        FinetuneHead::Probe => {
            let probe = match probe {
                Some(p) => p,
                None => target_probe(r, design, &model, who, frozen)?,
            };
            let (w, b) = probe.as_linear();
            model.replace_head_with(r.num_targets(), w, b)?;
        }
    }
    let start_train_error = error_rate(&r.logits(&model, &design.train)?, &targets);
    let epochs = design.epochs(cfg, cfg.train.finetune_epochs);
    let records = fine_tune_phase(r, &model, &design.train, &targets, epochs, first_epoch, who)?;
    let logits = r.test_logits(&model)?;
    let train_logits = r.logits(&model, &design.train)?;
    let readout = ReadoutError {
        start_train_error,
        ..r.score_with_train(
            Readout::Finetune,
            &logits,
            design.subsets(),
            &train_logits,
            &targets,
        )
    };
    Ok((readout, records))
}

/// The fine-tuning phase: `model` trained on `set` with the target labels `targets` for `epochs`
/// with the fine-tuning schedule, from epoch `first_epoch` of the cell's schedule.
pub fn fine_tune_phase(
    r: &Runner,
    model: &Model,
    set: &ImageSet,
    targets: &[usize],
    epochs: usize,
    first_epoch: usize,
    who: &Trainee,
) -> Result<Vec<EpochRecord>, EmpiricalError> {
    let phase = Phase {
        name: PhaseName::FINETUNE,
        set,
        labels: targets,
        epochs,
        lr: &r.config().train.finetune_lr,
        first_epoch,
    };
    r.train(model, who, &phase)
}

/// The fine-class probe of the network's frozen features (`train.fine_probe`), else none.
pub fn fine_class_probe(
    r: &Runner,
    design: &Design,
    model: &Model,
    who: &Trainee,
    frozen: &mut FrozenFeatures,
) -> Result<Option<FineProbe>, EmpiricalError> {
    if !r.config().train.fine_probe {
        return Ok(None);
    }
    r.progress()
        .set_message(format!("{} fine-class probe", who.label()));
    let (train_f, test_f) = frozen.get(r, model, design)?;
    let probe = fine_probe(
        train_f,
        &design.train,
        test_f,
        &r.data().test,
        r.config().data.target_level,
        &r.config().train.probe,
        who.key("fine_probe"),
    )?;
    Ok(Some(probe))
}

/// The fine-class probe of features `train_features` of `train` (one row per image) scored on
/// `test_features` of `test`, inside the classes of `target_level`; the probe draws from `seed`.
/// The theory's mechanism measured on a real network: a linear probe is trained on the leaf
/// labels, and a test image is scored by the best leaf *inside its own target class* (the
/// question is not whether the features separate the targets, which every readout measures, but
/// whether they carry the subclass information the theory says coarse training leaves out).
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
    use crate::empirical::train::predictions;
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

    /// The summed head sums the logits of the classes nested in each target and is undefined
    /// for labels that cross targets.
    #[test]
    fn summed_head_sums_nested_classes() {
        // 4 classes: 0, 1, 2 in target 0 (three children), 3 in target 1 (one child)
        let l = PretrainLabels::from_table("t", vec![0, 1, 2, 3], 4, &[0, 0, 0, 1], 2).unwrap();
        assert!(l.aligned());
        assert_eq!(
            l.rule.target_of_class(),
            &[Some(0), Some(0), Some(0), Some(1)]
        );
        // Two children of target 0 are likely, one very unlikely; target 1's child is a bit
        // less likely than either. The probability of target 0 is larger (2 e^2 > e^2.5), so the
        // summed head picks it; a sum of logits (-6 vs 2.5) would pick target 1.
        let logits = ndarray::array![[2.0f32, 2.0, -10.0, 2.5], [0.0, 0.0, 0.0, 5.0]];
        let m = summed_head(&l, &logits, 2).unwrap().unwrap();
        let lse = |v: &[f64]| v.iter().map(|x| x.exp()).sum::<f64>().ln();
        let want = [[lse(&[2.0, 2.0, -10.0]), 2.5], [lse(&[0.0, 0.0, 0.0]), 5.0]];
        for i in 0..2 {
            for t in 0..2 {
                assert!((f64::from(m[[i, t]]) - want[i][t]).abs() < 1e-5, "{m}");
            }
        }
        assert_eq!(predictions(&m), vec![0, 1]);
        let logit_sum = [2.0 + 2.0 - 10.0, 2.5];
        assert!(
            logit_sum[1] > logit_sum[0],
            "the case must tell the two readouts apart"
        );
        let crossing =
            PretrainLabels::from_table("c", vec![0, 0, 1, 1], 2, &[0, 1, 1, 1], 2).unwrap();
        assert!(!crossing.aligned());
        assert_eq!(crossing.purity, 0.75);
        let logits = ndarray::array![[1.0f32, 2.0]];
        assert!(summed_head(&crossing, &logits, 2).unwrap().is_none());
    }
}
