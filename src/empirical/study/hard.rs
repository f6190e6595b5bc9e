//! Hard test images. The synthetic data bring their own (images whose common features are
//! missing); on real data the balanced design's hard test images are those that an *ensemble* of
//! networks trained on the target labels only (with seeds used nowhere else, `[hard.ensemble]`)
//! misclassifies; the rare-subclass design's are the images of its rare leaves. The ensemble's
//! first member is also the encoder of the k-means granularities (`embedding.source =
//! "ensemble"`).

use serde::{Deserialize, Serialize};

use super::designs::Design;
use super::phase::{Phase, Trainee};
use super::results::EpochRecord;
use super::runner::Runner;
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
            });
        }
    }
    if let (Some(members), Some(e)) = (members, &cfg.hard.ensemble) {
        let wrong = ensemble_mistakes(members, r.test_targets(), r.num_targets());
        for d in designs
            .iter_mut()
            .filter(|d| balanced(d) && d.test_is_hard.is_none())
        {
            subsets.push(HardSubset {
                design: d.name.clone(),
                definition: format!(
                    "misclassified by an ensemble of {} target-only networks (seeds {:?}, not used elsewhere; trained on {} images)",
                    members.len(),
                    e.seeds,
                    r.data().train.len
                ),
                hard: wrong.iter().filter(|&&w| w).count(),
                total: test.len,
            });
            d.test_is_hard = Some(wrong.clone());
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
        });
    }
    subsets
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
