//! SGD pretraining of the two-layer network on labels of any granularity, online (fresh samples
//! every step) or from a fixed pool, until it converges (or for a fixed number of steps), with
//! the feature responses recorded along the way.
//!
//! **Convergence** (`train.stop = "converged"`, the default): at every recorded step from
//! `2 * train.window` on, the last `window` steps are compared with the `window` steps before
//! them (means over the recorded points, which smooths out SGD noise). The run has converged
//! when
//! - the mean training loss of the last window is within `train.loss_tol` of its floor, 0 for
//!   labels that the subclass decides. Labels drawn at random inside a class have a floor of
//!   ln n (the entropy of the label given the subclass) that constant-step SGD never reaches,
//!   since its noise keeps the loss above it; for them the loss must instead have stopped
//!   falling (no more than `loss_tol` below the window before);
//! - every feature response (common and fine, max and mean) has changed between the two windows
//!   by at most `train.response_tol` times its value, or times the init level when that is
//!   larger (a response at its init level is noise-sized, and its relative change means
//!   nothing).
//!
//! A loss that is still high never counts as converged, so the plateau at the start of training
//! (before the smoothed ReLU's power-method race takes off, `theory/MODEL.md` §4.2) is not
//! mistaken for the end. A run that reaches `train.max_steps` first is marked as not converged.
//! With `train.stop = "max_steps"` every run takes all its steps, and is marked converged when
//! the rule holds at the end.

use crate::hierarchy::LabelRule;
use crate::seed;
use crate::theory::config::{NetConfig, StopRule, TrainConfig};
use crate::theory::data::{Distribution, SampleKind, Samples};
use crate::theory::net::{Activation, Net, Workspace};
use crate::theory::readout::{summed_head, Errors, TestSets};
use crate::theory::responses::{correlations, responses, Responses};
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
    /// Summed-head coarse error on the curve subset of the easy test set (NaN when the labels
    /// are not aligned or no curve set was given).
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub easy_error: f64,
    /// Same on hard test samples.
    #[serde(deserialize_with = "crate::report::f64_or_nan")]
    pub hard_error: f64,
}

/// A trained network, its training curve and how training ended.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The network after the last step.
    pub net: Net,
    /// Feature responses and errors over training.
    pub curve: Vec<CurvePoint>,
    /// SGD steps taken.
    pub steps: usize,
    /// Whether the convergence rule held at the last record: false when a run that stops at
    /// convergence hit `max_steps` first; with `stop = "max_steps"`, whether the rule held at
    /// the end of the fixed budget.
    pub converged: bool,
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
        let key = seed::derive(seed, &["train"]);
        let label_key = seed::derive(seed, &["sample_labels"]);
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
                key: seed::derive(seed, &["batches"]),
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
            let mut rng = seed::stream(label_key, idx);
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
    let mut rng = seed::stream(seed::derive(seed, &["init"]), classes as u64);
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

/// What the convergence rule needs besides the training config.
#[derive(Clone, Copy, Debug)]
pub struct Floors {
    /// The lowest mean training loss the labels allow (entropy of the label given the subclass).
    pub loss: f64,
    /// The init level of the feature responses (their noise scale).
    pub response: f64,
}

/// Whether the last point of `curve` meets the convergence rule (module docs): `back` points
/// make a window; the last window is compared with the one before it.
fn converged(curve: &[CurvePoint], back: usize, train: &TrainConfig, floors: Floors) -> bool {
    let n = curve.len();
    // point 0 (initialisation) has no loss, so two whole windows need 2 * back later points
    if back == 0 || n < 2 * back + 1 {
        return false;
    }
    let (last, before) = (&curve[n - back..], &curve[n - 2 * back..n - back]);
    let mean = |w: &[CurvePoint], f: &dyn Fn(&CurvePoint) -> f64| {
        w.iter().map(f).sum::<f64>() / w.len() as f64
    };
    let loss = mean(last, &|p| p.loss);
    let loss_before = mean(before, &|p| p.loss);
    // written so that a NaN loss never counts as converged
    let low = if floors.loss > 0.0 {
        loss >= loss_before - train.loss_tol
    } else {
        loss - floors.loss <= train.loss_tol
    };
    if !low {
        return false;
    }
    (0..4).all(|i| {
        let now = mean(last, &|p| p.responses.values()[i]);
        let then = mean(before, &|p| p.responses.values()[i]);
        (now - then).abs() <= train.response_tol * now.abs().max(floors.response)
    })
}

/// Train `net` with SGD on labels from `source` until it converges or for `train.max_steps`
/// steps (`train.stop`), recording the feature responses every `train.record_every` steps
/// (with the summed-head test error on `curve_sets` when the labels are aligned). `on_step` is
/// called after each step (progress).
/// Fails with [`TheoryError::Diverged`] when the loss stops being finite.
#[allow(clippy::too_many_arguments)]
pub fn pretrain(
    mut net: Net,
    dist: &Distribution,
    rule: &LabelRule,
    source: &Source,
    train: &TrainConfig,
    floors: Floors,
    curve_sets: Option<&TestSets>,
    mut on_step: impl FnMut(),
) -> Result<Trained, TheoryError> {
    let b = train.batch;
    let len = dist.sample_len();
    let mut x = vec![0f32; b * len];
    let mut meta = vec![(0usize, false); b];
    let mut labels = vec![0usize; b];
    let mut batch_idx = vec![0usize; b];
    let mut ws = Workspace::default();
    let superclasses = dist.config().superclasses();
    let map = rule.summed_head();
    let point = |net: &Net, step: usize, loss: f64| {
        let e = match (curve_sets, &map) {
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
    let back = train.window / train.record_every;
    let (mut loss_sum, mut loss_n) = (0.0f64, 0usize);
    // fixed-pool minibatch order: a fresh permutation every epoch
    let mut order: Vec<usize> = Vec::new();
    let mut pos = 0usize;
    let mut epoch = 0u64;
    let until_converged = train.stop == StopRule::Converged;
    // whether the rule held at the last record (also tracked with stop = "max_steps")
    let mut met = false;
    let mut done = false;
    let mut step = 0;
    while step < train.max_steps && !done {
        step += 1;
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
                    let mut rng = seed::stream(*label_key, idx);
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
                        order.shuffle(&mut seed::stream(*key, epoch));
                        epoch += 1;
                        pos = 0;
                    }
                    batch_idx[i] = order[pos];
                    pos += 1;
                    labels[i] = pool_labels[batch_idx[i]];
                }
                samples.gather_into(&batch_idx, &mut x);
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
        if step.is_multiple_of(train.record_every) || step == train.max_steps {
            curve.push(point(&net, step, loss_sum / loss_n as f64));
            loss_sum = 0.0;
            loss_n = 0;
            met = step.is_multiple_of(train.record_every) && converged(&curve, back, train, floors);
            done = until_converged && met;
        }
        on_step();
    }
    Ok(Trained {
        net,
        curve,
        steps: step,
        converged: met,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::config::TheoryConfig;

    fn pt(step: usize, loss: f64, c: f64) -> CurvePoint {
        CurvePoint {
            step,
            loss,
            responses: Responses {
                common_max: c,
                common_mean: c / 4.0,
                fine_max: 0.03,
                fine_mean: 0.01,
            },
            easy_error: 0.0,
            hard_error: 0.5,
        }
    }

    #[test]
    fn convergence_needs_low_loss_and_still_responses() {
        let t = TheoryConfig::default_config().unwrap().train;
        let floors = Floors {
            loss: 0.0,
            response: 0.05,
        };
        let back = t.window / t.record_every;
        let flat: Vec<CurvePoint> = (0..=2 * back).map(|i| pt(i, 1e-4, 2.0)).collect();
        assert!(converged(&flat, back, &t, floors));
        // too short a curve to compare two whole windows
        assert!(!converged(&flat[1..], back, &t, floors));
        // the loss above its floor
        let mut high = flat.clone();
        for p in &mut high[back + 1..] {
            p.loss = 0.5;
        }
        assert!(!converged(&high, back, &t, floors));
        // a flat loss far above 0 is the plateau before learning, not the end ...
        let mut plateau = flat.clone();
        for p in &mut plateau {
            p.loss = 2f64.ln();
        }
        assert!(!converged(&plateau, back, &t, floors));
        // ... but with random labels inside a class (floor ln 8) a loss that stopped falling is
        // as low as constant-step SGD gets
        let mut random = flat.clone();
        for p in &mut random {
            p.loss = 8f64.ln() + 0.3;
        }
        let with_floor = Floors {
            loss: 8f64.ln(),
            ..floors
        };
        assert!(converged(&random, back, &t, with_floor));
        for p in &mut random[..=back] {
            p.loss = 8f64.ln() + 0.5;
        }
        assert!(!converged(&random, back, &t, with_floor), "still falling");
        // a response still growing by 5% between the windows
        let mut growing = flat.clone();
        for p in &mut growing[back + 1..] {
            p.responses.common_max = 2.1;
        }
        assert!(!converged(&growing, back, &t, floors));
        // a response at noise level may wander within the init level's tolerance
        let mut noisy = flat.clone();
        for p in &mut noisy[back + 1..] {
            p.responses.fine_mean = 0.01 + 0.0004;
        }
        assert!(converged(&noisy, back, &t, floors));
    }
}
