//! The allocation guard: before a study allocates anything large, the memory its config asks for
//! is estimated and compared with the memory available, and a config that cannot fit is rejected
//! naming the field that asks for the most (instead of an abort when an allocation fails).
//!
//! The estimates are deliberately rough (within a factor of about two): the images in memory
//! (with the designs' copies), one training step's activations and gradients, the networks'
//! parameters, optimizer state and head, the test logits of the largest label set and the
//! features of the linear probe. A training step of a ResNet keeps about 3 floats per activation
//! (the peak memory of a training step grows by about that per image of the batch); 4 are
//! counted.

use super::config::StudyConfig;
use crate::empirical::data::decode::MemoryBudget;
use crate::empirical::data::DataSource;
use crate::empirical::data::ImageSet;
use crate::empirical::error::EmpiricalError;
use crate::empirical::model::ModelConfig;

/// Floats kept per activation of a training step (output, normalised, rectified, gradient).
const FLOATS_PER_ACTIVATION: f64 = 4.0;
/// Bytes of an f32.
const F32: f64 = 4.0;
/// Images per evaluation batch (as the runner evaluates).
const EVAL_BATCH: f64 = 256.0;

/// The memory a study may use: `data.memory_budget_gb`, or what the system reports available.
pub fn budget(cfg: &StudyConfig) -> MemoryBudget {
    MemoryBudget::from_gb(cfg.data.memory_budget_gb, "data.memory_budget_gb")
}

/// One thing a run allocates: the config field that sets its size, and how many bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Need {
    /// The field (dotted path) that scales it.
    pub field: String,
    /// What it is.
    pub what: String,
    /// Bytes.
    pub bytes: f64,
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

/// Rejects `needs` when together they exceed the budget, naming the largest.
pub fn check(needs: &[Need], budget: &MemoryBudget) -> Result<(), EmpiricalError> {
    let available = budget.bytes as f64;
    let total: f64 = needs.iter().map(|n| n.bytes).sum();
    let Some(big) = needs.iter().max_by(|a, b| a.bytes.total_cmp(&b.bytes)) else {
        return Ok(());
    };
    if total <= available {
        return Ok(());
    }
    Err(EmpiricalError::invalid(
        big.field.clone(),
        format!(
            "this run needs about {} of memory ({}: {}), more than the {} available ({}); lower it",
            gib(total),
            big.what,
            gib(big.bytes),
            gib(available),
            budget.source
        ),
    ))
}

/// What generating the synthetic images allocates (before they are generated).
pub fn synthetic_needs(cfg: &StudyConfig) -> Vec<Need> {
    if cfg.data.source != DataSource::Synthetic {
        return Vec::new();
    }
    let s = &cfg.data.synthetic;
    let leaves: usize = s.subclasses.iter().sum();
    let per_image = 3.0 * (s.image_size as f64).powi(2);
    [
        ("train_per_leaf", s.train_per_leaf, "training images"),
        (
            "test_easy_per_leaf",
            s.test_easy_per_leaf,
            "easy test images",
        ),
        (
            "test_hard_per_leaf",
            s.test_hard_per_leaf,
            "hard test images",
        ),
    ]
    .into_iter()
    .map(|(f, n, what)| Need {
        field: format!("data.synthetic.{f}"),
        what: format!("{what} ({n} per leaf, {leaves} leaves)"),
        // generated, then copied into the test set and the designs
        bytes: 2.0 * n as f64 * leaves as f64 * per_image,
    })
    .collect()
}

/// Floats of the activations of one image in a forward pass of `model` on `side`-pixel images:
/// the stem, then two convolutions per block at each stage's width and resolution.
fn activations_per_image(model: &ModelConfig, side: usize) -> f64 {
    let stem = (model.width * side * side) as f64;
    let stages: f64 = model
        .arch
        .stages()
        .iter()
        .enumerate()
        .map(|(k, &blocks)| {
            let (c, s) = ((model.width << k) as f64, (side >> k).max(1) as f64);
            2.0 * blocks as f64 * c * s * s
        })
        .sum();
    stem + stages
}

/// Parameters of the backbone (convolutions; BatchNorm and head aside).
fn backbone_params(model: &ModelConfig) -> f64 {
    let mut params = 27.0 * model.width as f64;
    let mut c_in = model.width as f64;
    for (k, &blocks) in model.arch.stages().iter().enumerate() {
        let c = (model.width << k) as f64;
        params += 9.0 * c_in * c + 9.0 * c * c * (2 * blocks - 1) as f64 + c_in * c;
        c_in = c;
    }
    params
}

/// The most pretraining classes a granularity of the config can have on `n` training images with
/// `leaves` leaves and `targets` target classes, and its field.
fn largest_label_set(
    cfg: &StudyConfig,
    n: usize,
    leaves: usize,
    targets: usize,
) -> Option<(String, usize)> {
    cfg.granularities
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let classes = g.labels.max_classes(n, leaves, targets);
            (format!("granularity[{i}].labels ({})", g.name), classes)
        })
        .max_by_key(|(_, c)| *c)
}

/// What a study on the images `train` and `test` allocates besides them: the training step, the networks, the
/// test logits of the largest label set and the probe's features.
pub fn study_needs(cfg: &StudyConfig, train: &ImageSet, test: &ImageSet) -> Vec<Need> {
    let m = &cfg.model;
    let side = train.height.max(train.width);
    let act = activations_per_image(m, side);
    let batch = cfg.train.batch_size as f64;
    let (n, n_test) = (train.len, test.len);
    let h = &train.hierarchy;
    let targets = h.num_classes(cfg.data.target_level);
    let (label_field, classes) = largest_label_set(cfg, n, h.num_leaves(), targets)
        .unwrap_or_else(|| ("data.target_level".into(), targets));
    let dim = m.feature_dim() as f64;
    let images = (train.images.len() + test.images.len()) as f64;
    vec![
        Need {
            field: "data".into(),
            what: format!("the images ({n} training, {n_test} test) and the designs' copies"),
            bytes: 2.0 * images,
        },
        Need {
            field: "train.batch_size".into(),
            what: format!(
                "a training step of {} images of {side}x{side} through a {} of width {}",
                cfg.train.batch_size,
                m.arch.name(),
                m.width
            ),
            bytes: batch * act * FLOATS_PER_ACTIVATION * F32,
        },
        Need {
            field: "model.width".into(),
            what:
                "the network's parameters, gradients, momentum, checkpoints and evaluation batches"
                    .into(),
            bytes: 5.0 * backbone_params(m) * F32 + EVAL_BATCH * act * 2.0 * F32,
        },
        Need {
            field: label_field,
            what: format!("a head and the test logits of {classes} pretraining classes"),
            bytes: classes as f64 * (n_test as f64 + 5.0 * dim) * F32,
        },
        Need {
            field: "model.width".into(),
            what: format!(
                "the linear probe's features ({} per image)",
                m.feature_dim()
            ),
            bytes: 2.0 * (n + n_test) as f64 * dim * F32,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empirical::study::designs::load_data;
    use crate::empirical::study::tests::tiny;

    /// The estimate of a training step is near the measured one (ResNet-8, width 16, 32x32:
    /// 0.92 MB per image of batch, measured as the difference of peak memory at batch 64 and 512).
    #[test]
    fn training_step_estimate_is_near_the_measured_memory() {
        let m = ModelConfig {
            arch: crate::empirical::model::Arch::ResNet8,
            width: 16,
        };
        let per_image = activations_per_image(&m, 32) * FLOATS_PER_ACTIVATION * F32;
        let measured = 0.915e6;
        assert!(
            (measured..2.0 * measured).contains(&per_image),
            "{per_image}"
        );
    }

    /// A config whose values ask for more than is available is refused naming the field; one that
    /// fits passes.
    #[test]
    fn too_large_values_name_their_field() {
        let mut cfg = tiny();
        let data = load_data(&cfg, None).unwrap();
        let needs = study_needs(&cfg, &data.train, &data.test);
        let gb = |g: f64| MemoryBudget::from_gb(g, "test");
        assert!(check(&needs, &gb(1.0)).is_ok());
        cfg.train.batch_size = 1 << 30;
        let e = check(&study_needs(&cfg, &data.train, &data.test), &gb(64.0)).unwrap_err();
        assert!(e.to_string().starts_with("train.batch_size: "), "{e}");
        let mut cfg = tiny();
        cfg.data.synthetic.train_per_leaf = 1 << 30;
        let e = check(&synthetic_needs(&cfg), &gb(64.0)).unwrap_err();
        assert!(
            e.to_string().starts_with("data.synthetic.train_per_leaf: "),
            "{e}"
        );
    }
}
