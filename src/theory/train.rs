//! SGD pretraining of the two-layer network on labels of any granularity, online (fresh samples
//! every step) or from a fixed pool, with feature-response probes recorded along the way.

use crate::hierarchy::LabelRule;
use crate::theory::config::{NetConfig, TrainConfig};
use crate::theory::data::{derive_key, stream_rng, Distribution, Purpose, SampleKind, Samples};
use crate::theory::net::{Activation, Net, Workspace};
use crate::theory::probe::{correlations, responses, Responses};
use crate::theory::readout::{summed_head, Errors, TestSets};
use crate::theory::TheoryError;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// One point of a training curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// SGD step (0 = initialisation).
    pub step: usize,
    /// Mean training loss over the steps since the previous point (NaN at step 0).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub loss: f64,
    /// Feature responses at this step.
    #[serde(flatten)]
    pub responses: Responses,
    /// Summed-head coarse error on the probe subset of the easy test set (NaN when the labels
    /// are not aligned or no probe set was given).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub easy_error: f64,
    /// Same on hard test samples.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub hard_error: f64,
}

/// A trained network and its training curve.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The network after the last step.
    pub net: Net,
    /// Probes over training.
    pub curve: Vec<CurvePoint>,
}

/// Training samples: a fresh stream or a fixed pool, each with its pretraining label.
pub enum Source<'a> {
    /// Fresh samples every step: sample i of step t has global index t * batch + i.
    Online {
        /// The distribution.
        dist: &'a Distribution,
        /// Key of the sample stream.
        key: u64,
        /// Key of the per-sample label stream.
        label_key: u64,
        /// Hard-sample fraction.
        hard_fraction: f64,
    },
    /// A fixed pool with fixed labels.
    Pool {
        /// The samples.
        samples: Samples,
        /// Their labels.
        labels: Vec<usize>,
        /// Key of the minibatch order.
        key: u64,
    },
}

impl<'a> Source<'a> {
    /// The training source of a run: online when `pool == 0`, else a pool of that many samples
    /// labelled once by `rule`.
    pub fn new(
        dist: &'a Distribution,
        rule: &LabelRule,
        seed: u64,
        pool: usize,
        hard_fraction: f64,
    ) -> Self {
        let key = derive_key(seed, Purpose::Train);
        let label_key = derive_key(seed, Purpose::SampleLabels);
        if pool == 0 {
            Source::Online {
                dist,
                key,
                label_key,
                hard_fraction,
            }
        } else {
            let samples = dist.draw(key, 0, pool, SampleKind::Mix(hard_fraction));
            let labels = label_samples(rule, &samples, label_key);
            Source::Pool {
                samples,
                labels,
                key: derive_key(seed, Purpose::Batches),
            }
        }
    }
}

/// Pretraining labels of a set of samples; per-sample randomness comes from each sample's own
/// stream so labels do not depend on batching or threads.
pub fn label_samples(rule: &LabelRule, samples: &Samples, label_key: u64) -> Vec<usize> {
    samples
        .leaves
        .iter()
        .zip(&samples.index)
        .map(|(&leaf, &idx)| {
            let mut rng = stream_rng(label_key, idx);
            rule.label(leaf, idx as usize, &mut rng)
        })
        .collect()
}

/// A freshly initialised network for `classes` classes with `neurons` per class.
pub fn init_net(
    dist: &Distribution,
    net: &NetConfig,
    classes: usize,
    neurons: usize,
    seed: u64,
) -> Net {
    let c = dist.config();
    let act = Activation::from_config(&net.activation, c.noise, c.dim);
    let mut rng = stream_rng(derive_key(seed, Purpose::Init), classes as u64);
    Net::new(
        classes,
        neurons,
        c.dim,
        c.patches,
        net.init_scale,
        act,
        &mut rng,
    )
}

/// Train `net` with SGD for `train.steps` steps on labels from `source`, recording probes every
/// `train.probe_every` steps (with the summed-head test error on `probe_sets` when the labels
/// are aligned). `on_step` is called after each step (progress bars).
/// Fails with [`TheoryError::Diverged`] when the loss stops being finite.
pub fn pretrain(
    mut net: Net,
    dist: &Distribution,
    rule: &LabelRule,
    source: &Source,
    train: &TrainConfig,
    probe_sets: Option<&TestSets>,
    mut on_step: impl FnMut(),
) -> Result<Trained, TheoryError> {
    let b = train.batch;
    let len = dist.sample_len();
    let mut x = vec![0f32; b * len];
    let mut meta = vec![(0usize, false); b];
    let mut labels = vec![0usize; b];
    let mut ws = Workspace::default();
    let superclasses = dist.config().superclasses();
    let map = rule.summed_head();
    let point = |net: &Net, step: usize, loss: f64| {
        let e = match (probe_sets, &map) {
            (Some(t), Some(m)) => summed_head(net, m, dist, t),
            _ => Errors {
                easy: f64::NAN,
                hard: f64::NAN,
            },
        };
        CurvePoint {
            step,
            loss,
            responses: responses(&correlations(net, dist), superclasses),
            easy_error: e.easy,
            hard_error: e.hard,
        }
    };
    let mut curve = vec![point(&net, 0, f64::NAN)];
    let (mut loss_sum, mut loss_n) = (0.0f64, 0usize);
    // fixed-pool minibatch order: a fresh permutation every epoch
    let mut order: Vec<usize> = Vec::new();
    let mut pos = 0usize;
    let mut epoch = 0u64;
    for step in 1..=train.steps {
        match source {
            Source::Online {
                dist,
                key,
                label_key,
                hard_fraction,
            } => {
                let first = (step as u64 - 1) * b as u64;
                dist.draw_into(
                    *key,
                    first,
                    SampleKind::Mix(*hard_fraction),
                    &mut x,
                    &mut meta,
                );
                for (i, m) in meta.iter().enumerate() {
                    let idx = first + i as u64;
                    let mut rng = stream_rng(*label_key, idx);
                    labels[i] = rule.label(m.0, idx as usize, &mut rng);
                }
            }
            Source::Pool {
                samples,
                labels: pool_labels,
                key,
            } => {
                for i in 0..b {
                    if pos == order.len() {
                        order = (0..pool_labels.len()).collect();
                        order.shuffle(&mut stream_rng(*key, epoch));
                        epoch += 1;
                        pos = 0;
                    }
                    let j = order[pos];
                    pos += 1;
                    x[i * len..(i + 1) * len].copy_from_slice(&samples.x[j * len..(j + 1) * len]);
                    labels[i] = pool_labels[j];
                }
            }
        }
        let loss = net.sgd_step(&x, &labels, train.lr as f32, false, &mut ws);
        if !loss.is_finite() || net.w.iter().any(|v| !v.is_finite()) {
            return Err(TheoryError::Diverged {
                step,
                what: format!(
                    "pretraining on '{}' labels (loss {loss}); lower train.lr (now {}) or net.init_scale",
                    rule.name(),
                    train.lr
                ),
            });
        }
        loss_sum += loss;
        loss_n += 1;
        if step % train.probe_every == 0 || step == train.steps {
            curve.push(point(&net, step, loss_sum / loss_n as f64));
            loss_sum = 0.0;
            loss_n = 0;
        }
        on_step();
    }
    Ok(Trained { net, curve })
}
