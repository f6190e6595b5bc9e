//! Training and evaluation loops over an [`ImageSet`].
//!
//! [`train_epoch`] runs one epoch of minibatch SGD: the images are shuffled and cut into batches
//! with [`shuffled_batches`], each batch is gathered, augmented and normalised with
//! [`batch_f32`], and the model takes one optimizer step per batch at the learning rate the
//! [`Schedule`] gives for that step. The labels are passed explicitly, one per image, because
//! pretraining uses relabelings of the set's leaves (coarse, fine, random or clustered labels).
//! All random draws (shuffle, then per batch the augmentation of each image) come from the
//! caller's [`ChaCha8Rng`], so an epoch is a deterministic function of the model, the optimizer
//! state and the generator state: same seed, same bits.
//!
//! A loss or gradient that stops being finite ends the epoch with
//! [`TrainError::Diverged`], naming the epoch, the step and the learning rate.
//!
//! [`evaluate`] and [`extract_features`] run the model in evaluation mode (BatchNorm with its
//! running statistics) over a whole set in batches, returning one row per image.

use std::time::Instant;

use candle_core::{Device, Tensor};
use ndarray::Array2;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::data::{batch_f32, shuffled_batches, Augment, ImageSet};
use super::model::{argmax_rows, Model};
use super::optim::{cross_entropy, Schedule, Sgd};
use super::train_error::{TensorContext, TrainError};

/// How one training epoch reads the data.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochConfig {
    /// Images per optimizer step.
    pub batch_size: usize,
    /// Random crop and flip applied to every training image.
    pub augment: Augment,
    /// Per-channel mean of the pixels in [0, 1] (usually of the training set).
    pub mean: [f32; 3],
    /// Per-channel standard deviation of the pixels in [0, 1].
    pub std: [f32; 3],
    /// Label smoothing of the cross-entropy, in `[0, 1)`.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Drop the last, short batch of the epoch.
    #[serde(default)]
    pub drop_last: bool,
}

impl EpochConfig {
    /// Optimizer steps per epoch over `n` images (what the [`Schedule`] must be built with).
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        if self.batch_size == 0 {
            return 0;
        }
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }
}

/// What the progress callback of [`train_epoch`] sees after every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    /// The 0-based epoch.
    pub epoch: usize,
    /// The 0-based batch within the epoch.
    pub batch: usize,
    /// Batches in the epoch.
    pub batches: usize,
    /// The 0-based optimizer step over the whole run.
    pub step: u64,
    /// The learning rate of this step.
    pub lr: f64,
    /// The mean loss of this batch.
    pub loss: f32,
    /// Images trained on so far in this epoch.
    pub images: usize,
}

/// Summary of one training epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// The 0-based epoch.
    pub epoch: usize,
    /// Mean training loss over the images of the epoch (in training mode, with augmentation).
    pub loss: f64,
    /// Fraction of training images classified correctly, in training mode.
    pub acc: f64,
    /// Images trained on.
    pub images: usize,
    /// Training throughput over the epoch (data preparation included).
    pub images_per_sec: f64,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
    /// The learning rate of the last step.
    pub last_lr: f64,
}

/// Checks that `labels` gives one label per image of `set`, each below `classes`.
fn check_labels(
    context: &str,
    set: &ImageSet,
    labels: &[usize],
    classes: usize,
) -> Result<(), TrainError> {
    if labels.len() != set.len {
        return Err(TrainError::invalid(
            context,
            format!(
                "{} labels for the {} images of {}",
                labels.len(),
                set.len,
                set.source
            ),
        ));
    }
    if let Some((i, &y)) = labels.iter().enumerate().find(|(_, &y)| y >= classes) {
        return Err(TrainError::invalid(
            context,
            format!(
                "image {i} of {} has label {y}, but the model has {classes} outputs",
                set.source
            ),
        ));
    }
    Ok(())
}

/// Checks that `set` holds RGB images the model can batch.
fn check_set(context: &str, set: &ImageSet, batch_size: usize) -> Result<(), TrainError> {
    if set.channels != 3 {
        return Err(TrainError::invalid(
            context,
            format!(
                "{} has {} channels; the models take RGB images",
                set.source, set.channels
            ),
        ));
    }
    if batch_size == 0 {
        return Err(TrainError::invalid(context, "batch size must be positive"));
    }
    Ok(())
}

/// The images `idx` of `set` as an `(N, 3, H, W)` tensor, normalised, augmented when `aug`.
fn batch_tensor(
    set: &ImageSet,
    idx: &[usize],
    mean: [f32; 3],
    std: [f32; 3],
    aug: Option<(&Augment, &mut ChaCha8Rng)>,
    device: &Device,
) -> Result<Tensor, TrainError> {
    let x = batch_f32(set, idx, mean, std, aug);
    Tensor::from_vec(x, (idx.len(), set.channels, set.height, set.width), device).ctx("batch")
}

/// Trains `model` for one epoch on `set` with `labels` (one per image, below the model's class
/// count); see the module doc. `epoch` is the 0-based epoch number (for messages and the
/// progress callback); the learning rate of each step is `schedule.lr(optimizer.steps())`, so
/// the schedule must have been built with [`EpochConfig::steps_per_epoch`] steps per epoch
/// (checked). `progress` is called after every step.
#[allow(clippy::too_many_arguments)]
pub fn train_epoch(
    model: &Model,
    optimizer: &mut Sgd,
    schedule: &Schedule,
    set: &ImageSet,
    labels: &[usize],
    config: &EpochConfig,
    epoch: usize,
    rng: &mut ChaCha8Rng,
    progress: &mut dyn FnMut(&StepInfo),
) -> Result<EpochStats, TrainError> {
    let ctx = "train_epoch";
    check_set(ctx, set, config.batch_size)?;
    check_labels(ctx, set, labels, model.num_classes())?;
    if !(0.0..1.0).contains(&config.label_smoothing) {
        return Err(TrainError::invalid(
            ctx,
            format!(
                "label smoothing must be in [0, 1), got {}",
                config.label_smoothing
            ),
        ));
    }
    let steps = config.steps_per_epoch(set.len);
    if steps == 0 {
        return Err(TrainError::invalid(
            ctx,
            format!(
                "no full batch: {} images, batch size {}{}",
                set.len,
                config.batch_size,
                if config.drop_last { ", drop_last" } else { "" }
            ),
        ));
    }
    if schedule.steps_per_epoch() != steps {
        return Err(TrainError::invalid(
            ctx,
            format!(
                "the schedule has {} steps per epoch, but {} images in batches of {} make {steps}",
                schedule.steps_per_epoch(),
                set.len,
                config.batch_size
            ),
        ));
    }
    let start = Instant::now();
    let batches = shuffled_batches(set.len, config.batch_size, config.drop_last, rng);
    let (mut loss_sum, mut correct, mut images, mut last_lr) = (0f64, 0usize, 0usize, 0f64);
    for (b, idx) in batches.iter().enumerate() {
        let step = optimizer.steps();
        let lr = schedule.lr(step);
        last_lr = lr;
        let x = batch_tensor(
            set,
            idx,
            config.mean,
            config.std,
            Some((&config.augment, &mut *rng)),
            model.device(),
        )?;
        let y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
        let logits = model.logits(&x, true)?;
        let loss = cross_entropy(&logits, &y, config.label_smoothing)?;
        let loss_value = loss.to_scalar::<f32>().ctx("loss")?;
        let diverged = |what: String, value: f32| TrainError::Diverged {
            epoch,
            step,
            batch: b,
            lr,
            what,
            value,
        };
        if !loss_value.is_finite() {
            return Err(diverged("the loss".into(), loss_value));
        }
        let grads = loss.backward().ctx("backward")?;
        optimizer.step(&grads, lr).map_err(|e| match e {
            TrainError::NonFiniteGradient { param, value, .. } => {
                diverged(format!("the gradient of {param}"), value)
            }
            e => e,
        })?;
        let pred = argmax_rows(&logits)?;
        correct += pred.iter().zip(&y).filter(|(p, y)| p == y).count();
        loss_sum += f64::from(loss_value) * idx.len() as f64;
        images += idx.len();
        progress(&StepInfo {
            epoch,
            batch: b,
            batches: batches.len(),
            step,
            lr,
            loss: loss_value,
            images,
        });
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(EpochStats {
        epoch,
        loss: loss_sum / images as f64,
        acc: correct as f64 / images as f64,
        images,
        images_per_sec: images as f64 / seconds.max(1e-9),
        seconds,
        last_lr,
    })
}

/// The column of the largest value of every row of `m` (the first on ties): the predictions
/// of logits with one row per image.
pub fn predictions(m: &Array2<f32>) -> Vec<usize> {
    m.rows()
        .into_iter()
        .map(|r| {
            let mut best = 0;
            for (j, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Fraction of rows of `m` whose [`predictions`] equal `labels` (one per row).
pub fn accuracy(m: &Array2<f32>, labels: &[usize]) -> Result<f64, TrainError> {
    if labels.len() != m.nrows() || m.nrows() == 0 {
        return Err(TrainError::invalid(
            "accuracy",
            format!("{} labels for {} rows", labels.len(), m.nrows()),
        ));
    }
    let hits = predictions(m)
        .iter()
        .zip(labels)
        .filter(|(p, y)| p == y)
        .count();
    Ok(hits as f64 / m.nrows() as f64)
}

/// Runs `f` (logits or features of a batch) over all of `set` in eval mode, in order.
fn eval_rows(
    model: &Model,
    set: &ImageSet,
    mean: [f32; 3],
    std: [f32; 3],
    batch_size: usize,
    cols: usize,
    f: impl Fn(&Tensor) -> Result<Tensor, TrainError>,
) -> Result<Array2<f32>, TrainError> {
    check_set("evaluate", set, batch_size)?;
    let mut data = Vec::with_capacity(set.len * cols);
    let all: Vec<usize> = (0..set.len).collect();
    for idx in all.chunks(batch_size) {
        let x = batch_tensor(set, idx, mean, std, None, model.device())?;
        let out = f(&x)?;
        let v = out
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .ctx("evaluate")?;
        data.extend_from_slice(&v);
    }
    Array2::from_shape_vec((set.len, cols), data)
        .map_err(|e| TrainError::invalid("evaluate", e.to_string()))
}

/// The logits of every image of `set` (rows in image order), in evaluation mode, without
/// augmentation, in batches of `batch_size` (the result does not depend on it).
pub fn evaluate(
    model: &Model,
    set: &ImageSet,
    mean: [f32; 3],
    std: [f32; 3],
    batch_size: usize,
) -> Result<Array2<f32>, TrainError> {
    eval_rows(
        model,
        set,
        mean,
        std,
        batch_size,
        model.num_classes(),
        |x| Ok(model.logits(x, false)?),
    )
}

/// The feature vectors (backbone outputs) of every image of `set`, in evaluation mode, for
/// linear probes on cached features.
pub fn extract_features(
    model: &Model,
    set: &ImageSet,
    mean: [f32; 3],
    std: [f32; 3],
    batch_size: usize,
) -> Result<Array2<f32>, TrainError> {
    eval_rows(
        model,
        set,
        mean,
        std,
        batch_size,
        model.feature_dim(),
        |x| Ok(model.features(x, false)?),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::empirical::model::{Arch, ModelConfig};
    use crate::empirical::optim::{LrSchedule, SgdConfig};
    use crate::hierarchy::Hierarchy;
    use rand::Rng;
    use rand_chacha::rand_core::SeedableRng;
    use std::sync::Arc;

    /// `n` random RGB images of `hw x hw` whose 4 leaves (2 superclasses of 2) are learnable:
    /// leaf `l` brightens channel `l % 3` and the top-left quadrant when `l >= 2`.
    pub(crate) fn synthetic_set(n: usize, hw: usize, seed: u64) -> ImageSet {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut images = Vec::with_capacity(n * 3 * hw * hw);
        let mut leaves = Vec::with_capacity(n);
        for i in 0..n {
            let leaf = i % 4;
            leaves.push(leaf);
            for c in 0..3 {
                for y in 0..hw {
                    for x in 0..hw {
                        let mut v: u8 = rng.gen_range(0..128);
                        if c == leaf % 3 {
                            v += 100;
                        }
                        if leaf >= 2 && y < hw / 2 && x < hw / 2 {
                            v = v.saturating_add(27);
                        }
                        images.push(v);
                    }
                }
            }
        }
        let h = Arc::new(Hierarchy::two_level(&[2, 2]).unwrap());
        ImageSet::new(images, 3, hw, hw, leaves, h, "synthetic").unwrap()
    }

    pub(crate) fn tiny_config() -> ModelConfig {
        ModelConfig {
            arch: Arch::ResNet8,
            width: 4,
        }
    }

    pub(crate) fn epoch_config(set: &ImageSet) -> EpochConfig {
        let (mean, std) = set.rgb_mean_std().unwrap();
        EpochConfig {
            batch_size: 8,
            augment: Augment { pad: 1, flip: true },
            mean,
            std,
            label_smoothing: 0.1,
            drop_last: false,
        }
    }

    #[test]
    fn training_learns_and_reports() {
        let set = synthetic_set(32, 8, 0);
        let labels = set.labels_at_level(1);
        let cfg = epoch_config(&set);
        let model = Model::new(tiny_config(), 4, 0, &Device::Cpu).unwrap();
        let mut opt = Sgd::new(model.trainable_params(), SgdConfig::default()).unwrap();
        let kind = LrSchedule::Cosine {
            lr: 0.05,
            warmup_epochs: 1,
        };
        let sched = Schedule::new(kind, 8, cfg.steps_per_epoch(set.len)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut calls = Vec::new();
        let mut stats = Vec::new();
        for e in 0..8 {
            let s = train_epoch(
                &model,
                &mut opt,
                &sched,
                &set,
                &labels,
                &cfg,
                e,
                &mut rng,
                &mut |i| calls.push(*i),
            )
            .unwrap();
            stats.push(s);
        }
        assert_eq!(calls.len(), 8 * 4);
        assert_eq!(calls[5].epoch, 1);
        assert_eq!(calls[5].batch, 1);
        assert_eq!(calls[5].step, 5);
        assert_eq!(calls[3].images, 32);
        assert!((calls[0].lr - 0.0125).abs() < 1e-12);
        assert_eq!(opt.steps(), 32);
        assert!(stats[0].images_per_sec > 0.0 && stats[0].images == 32);
        assert!(
            stats[7].loss < stats[0].loss,
            "loss did not fall: {:?}",
            stats.iter().map(|s| s.loss).collect::<Vec<_>>()
        );
        let logits = evaluate(&model, &set, cfg.mean, cfg.std, 5).unwrap();
        assert_eq!(logits.dim(), (32, 4));
        assert!(
            accuracy(&logits, &labels).unwrap() > 0.5,
            "{:?}",
            predictions(&logits)
        );
    }

    #[test]
    fn epochs_are_deterministic() {
        let set = synthetic_set(24, 8, 3);
        let labels = set.labels_at_level(0);
        let cfg = epoch_config(&set);
        let run = || {
            let model = Model::new(tiny_config(), 2, 5, &Device::Cpu).unwrap();
            let mut opt = Sgd::new(model.trainable_params(), SgdConfig::default()).unwrap();
            let kind = LrSchedule::Constant {
                lr: 0.05,
                warmup_epochs: 0,
            };
            let sched = Schedule::new(kind, 2, 3).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            for e in 0..2 {
                train_epoch(
                    &model,
                    &mut opt,
                    &sched,
                    &set,
                    &labels,
                    &cfg,
                    e,
                    &mut rng,
                    &mut |_| {},
                )
                .unwrap();
            }
            model.state_vecs().unwrap()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn evaluation_is_batch_independent_and_matches_logits() {
        let set = synthetic_set(10, 8, 4);
        let cfg = epoch_config(&set);
        let model = Model::new(tiny_config(), 4, 2, &Device::Cpu).unwrap();
        // Move the running statistics off their initial values first.
        let x = batch_tensor(&set, &[0, 1, 2, 3], cfg.mean, cfg.std, None, &Device::Cpu).unwrap();
        model.logits(&x, true).unwrap();
        let a = evaluate(&model, &set, cfg.mean, cfg.std, 3).unwrap();
        let b = evaluate(&model, &set, cfg.mean, cfg.std, 10).unwrap();
        assert_eq!(a, b);
        let direct = model.logits(&x, false).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in direct.iter().enumerate() {
            assert_eq!(row, &a.row(i).to_vec());
        }
        let f = extract_features(&model, &set, cfg.mean, cfg.std, 4).unwrap();
        assert_eq!(f.dim(), (10, 16));
        // The head applied to the cached features gives the logits back.
        let ft = Tensor::from_vec(f.iter().copied().collect(), (10, 16), &Device::Cpu).unwrap();
        let from_f = model
            .logits_from_features(&ft)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (i, row) in from_f.iter().enumerate() {
            for (u, v) in row.iter().zip(a.row(i)) {
                assert!((u - v).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn predictions_and_accuracy() {
        let m = ndarray::array![[1.0f32, 5.0, 2.0, 2.0], [0.0, -1.0, 3.0, 3.0]];
        assert_eq!(predictions(&m), vec![1, 2]);
        assert_eq!(accuracy(&m, &[1, 3]).unwrap(), 0.5);
        assert!(accuracy(&m, &[1]).is_err());
    }

    #[test]
    fn bad_inputs_and_divergence_are_reported() {
        let set = synthetic_set(16, 8, 5);
        let labels = set.labels_at_level(1);
        let cfg = epoch_config(&set);
        let model = Model::new(tiny_config(), 4, 0, &Device::Cpu).unwrap();
        let mut opt = Sgd::new(model.trainable_params(), SgdConfig::default()).unwrap();
        let sched = |lr: f64, steps| {
            Schedule::new(
                LrSchedule::Constant {
                    lr,
                    warmup_epochs: 0,
                },
                1,
                steps,
            )
            .unwrap()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut run = |s: &Schedule, labels: &[usize], cfg: &EpochConfig| {
            train_epoch(
                &model,
                &mut opt,
                s,
                &set,
                labels,
                cfg,
                3,
                &mut rng,
                &mut |_| {},
            )
        };
        let e = run(&sched(0.1, 2), &labels[..5], &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("5 labels"), "{e}");
        let mut bad = labels.clone();
        bad[7] = 4;
        let e = run(&sched(0.1, 2), &bad, &cfg).unwrap_err().to_string();
        assert!(e.contains("image 7") && e.contains("4 outputs"), "{e}");
        let e = run(&sched(0.1, 3), &labels, &cfg).unwrap_err().to_string();
        assert!(e.contains("3 steps per epoch"), "{e}");
        let zero = EpochConfig {
            batch_size: 0,
            ..cfg
        };
        assert!(run(&sched(0.1, 2), &labels, &zero).is_err());
        // An absurd learning rate blows the weights up: a Diverged error naming the epoch.
        let e = run(&sched(1e30, 2), &labels, &cfg).unwrap_err();
        assert!(matches!(e, TrainError::Diverged { epoch: 3, .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("epoch 3") && msg.contains("1.000000e30"),
            "{msg}"
        );
    }
}
