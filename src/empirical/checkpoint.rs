//! Checkpoints: everything needed to resume a training run bit for bit, in one safetensors
//! file written atomically (a temporary file beside it, then a rename), so a run killed while
//! saving keeps its previous checkpoint.
//!
//! The file holds
//!
//! * every tensor of the model under its stable name (see [`super::model`]), so the file is
//!   also a weights file for [`Model::load_weights`] and [`Model::load_backbone`] (and candle's
//!   `VarMap::load`);
//! * the optimizer's momentum buffers as `optim.momentum.<parameter name>`, shaped like their
//!   parameters;
//! * a JSON header ([`CheckpointMeta`], under the safetensors metadata key `granularity`):
//!   format version, epochs completed, model config and class count, whether the backbone was
//!   frozen, the optimizer's config and step count, the state of the run's random generator
//!   (seed, stream and word position of the [`ChaCha8Rng`], rand_chacha's serde form) and free-form
//!   `extra` JSON for the caller (the run's config, say).
//!
//! Resuming: build the model and optimizer as at the start of the run (any seed: every tensor
//! is overwritten), then [`load_checkpoint`] restores weights, BatchNorm statistics, momentum
//! buffers and step count and returns the epoch to continue from and the generator.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::model::{read_safetensors, safetensors_bytes, Model, ModelConfig};
use super::optim::{Sgd, SgdConfig, SgdState};
use super::train_error::{TensorContext, TrainError};
use crate::report::write_atomic;

/// Version of the checkpoint layout written by [`save_checkpoint`].
pub const CHECKPOINT_FORMAT: u32 = 2;
/// Safetensors metadata key of the JSON header.
const META_KEY: &str = "granularity";
/// Name prefix of the momentum buffers.
const MOMENTUM_PREFIX: &str = "optim.momentum.";

/// The JSON header of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    /// Layout version ([`CHECKPOINT_FORMAT`]).
    pub format: u32,
    /// Epochs completed: the 0-based epoch to run next.
    pub epochs_done: usize,
    /// The model's architecture and width.
    pub model: ModelConfig,
    /// Outputs of the model's head.
    pub num_classes: usize,
    /// Whether the backbone was frozen (linear probe).
    pub backbone_frozen: bool,
    /// The optimizer's hyper-parameters (for the record: resuming does not check them).
    pub sgd: SgdConfig,
    /// Optimizer steps taken.
    pub sgd_steps: u64,
    /// The run's random generator after `epochs_done` epochs (its seed, stream and word
    /// position, in rand_chacha's own serde form).
    pub rng: ChaCha8Rng,
    /// Anything the caller stored with [`save_checkpoint`].
    pub extra: serde_json::Value,
}

/// What [`load_checkpoint`] hands back besides the restored model and optimizer.
#[derive(Clone, Debug)]
pub struct Resume {
    /// The 0-based epoch to run next.
    pub epochs_done: usize,
    /// The run's random generator, where it was when the checkpoint was saved.
    pub rng: ChaCha8Rng,
    /// The header.
    pub meta: CheckpointMeta,
}

/// Saves model, optimizer, epochs completed and generator state to `path`, atomically.
/// `extra` is stored in the header as is.
pub fn save_checkpoint(
    path: &Path,
    model: &Model,
    optimizer: &Sgd,
    epochs_done: usize,
    rng: &ChaCha8Rng,
    extra: serde_json::Value,
) -> Result<(), TrainError> {
    let state = optimizer.state()?;
    let meta = CheckpointMeta {
        format: CHECKPOINT_FORMAT,
        epochs_done,
        model: model.config(),
        num_classes: model.num_classes(),
        backbone_frozen: model.backbone_frozen(),
        sgd: optimizer.config(),
        sgd_steps: state.steps,
        rng: rng.clone(),
        extra,
    };
    let mut tensors: BTreeMap<String, Tensor> = model.named_tensors();
    let shapes: HashMap<&str, &[usize]> = optimizer
        .params()
        .iter()
        .map(|p| (p.name.as_str(), p.var.dims()))
        .collect();
    for (name, buf) in state.momentum {
        let shape = shapes.get(name.as_str()).copied().unwrap_or(&[]);
        let t = Tensor::from_vec(buf, shape, model.device()).ctx(&name)?;
        tensors.insert(format!("{MOMENTUM_PREFIX}{name}"), t);
    }
    let json = serde_json::to_string(&meta)
        .map_err(|e| TrainError::checkpoint(path, format!("cannot encode header: {e}")))?;
    let header = HashMap::from([(META_KEY.to_string(), json)]);
    let bytes =
        safetensors_bytes(&tensors, Some(header)).map_err(|m| TrainError::checkpoint(path, m))?;
    write_atomic(path, &bytes)?;
    Ok(())
}

/// Reads the header of a checkpoint without loading its tensors.
pub fn read_checkpoint_meta(path: &Path) -> Result<CheckpointMeta, TrainError> {
    let bytes = std::fs::read(path)
        .map_err(|e| TrainError::checkpoint(path, format!("cannot read: {e}")))?;
    meta_of(path, &bytes)
}

fn meta_of(path: &Path, bytes: &[u8]) -> Result<CheckpointMeta, TrainError> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| TrainError::checkpoint(path, format!("not a safetensors file: {e}")))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| {
            TrainError::checkpoint(
                path,
                "no checkpoint header (a weights-only file? load it with Model::load_weights)",
            )
        })?;
    let meta: CheckpointMeta = serde_json::from_str(json)
        .map_err(|e| TrainError::checkpoint(path, format!("bad checkpoint header: {e}")))?;
    if meta.format != CHECKPOINT_FORMAT {
        return Err(TrainError::checkpoint(
            path,
            format!(
                "checkpoint format {} (this build reads format {CHECKPOINT_FORMAT})",
                meta.format
            ),
        ));
    }
    Ok(meta)
}

/// Restores `model` and `optimizer` from a checkpoint written by [`save_checkpoint`] and
/// returns the epoch to continue from and the generator. The model must have the checkpoint's
/// architecture, width, class count and frozen flag, and the optimizer the same parameters;
/// otherwise the error says what differs and nothing is changed.
pub fn load_checkpoint(
    path: &Path,
    model: &Model,
    optimizer: &mut Sgd,
) -> Result<Resume, TrainError> {
    let bytes = std::fs::read(path)
        .map_err(|e| TrainError::checkpoint(path, format!("cannot read: {e}")))?;
    let meta = meta_of(path, &bytes)?;
    let ours = (model.config(), model.num_classes(), model.backbone_frozen());
    let theirs = (meta.model, meta.num_classes, meta.backbone_frozen);
    if ours != theirs {
        return Err(TrainError::checkpoint(
            path,
            format!(
                "checkpoint of a {} (width {}, {} classes, backbone frozen: {}) does not fit \
                 this {} (width {}, {} classes, backbone frozen: {})",
                theirs.0.arch.name(),
                theirs.0.width,
                theirs.1,
                theirs.2,
                ours.0.arch.name(),
                ours.0.width,
                ours.1,
                ours.2
            ),
        ));
    }
    let rng = meta.rng.clone();
    drop(bytes);
    let tensors = read_safetensors(path, model.device())?;
    let mut momentum = BTreeMap::new();
    for (name, t) in &tensors {
        if let Some(param) = name.strip_prefix(MOMENTUM_PREFIX) {
            let v = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| TrainError::checkpoint(path, format!("{name}: {e}")))?;
            momentum.insert(param.to_string(), v);
        }
    }
    let state = SgdState {
        steps: meta.sgd_steps,
        momentum,
    };
    // Check the optimizer state on a copy first, so that a mismatch changes nothing.
    let mut restored = optimizer.clone();
    restored
        .load_state(state)
        .map_err(|e| TrainError::checkpoint(path, e.to_string()))?;
    model.set_from(&tensors, "", path)?;
    *optimizer = restored;
    Ok(Resume {
        epochs_done: meta.epochs_done,
        rng,
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empirical::optim::{LrSchedule, Schedule};
    use crate::empirical::train::tests::{epoch_config, synthetic_set, tiny_config};
    use crate::empirical::train::train_epoch;
    use candle_core::Device;
    use rand::{RngCore, SeedableRng};

    /// The generator's state survives the header's JSON: the same numbers follow.
    #[test]
    fn generator_round_trips_through_the_header() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        rng.set_stream(3);
        for _ in 0..7 {
            rng.next_u32();
        }
        rng.set_word_pos(u128::from(u64::MAX) + 5);
        let json = serde_json::to_string(&rng).unwrap();
        let mut back: ChaCha8Rng = serde_json::from_str(&json).unwrap();
        for _ in 0..100 {
            assert_eq!(rng.next_u64(), back.next_u64());
        }
    }

    /// Two epochs straight, or one epoch, a checkpoint, a fresh model and optimizer restored
    /// from it and one more epoch: the same bits.
    #[test]
    fn resume_is_bitwise_identical() {
        let dev = Device::Cpu;
        let set = synthetic_set(32, 8, 7);
        let labels = set.labels_at_level(1);
        let cfg = epoch_config(&set);
        let sched = Schedule::new(
            LrSchedule::Cosine {
                lr: 0.05,
                warmup_epochs: 1,
            },
            2,
            cfg.steps_per_epoch(set.len),
        )
        .unwrap();
        let sgd = crate::empirical::optim::SgdConfig {
            nesterov: true,
            ..Default::default()
        };
        let fresh = |seed| {
            let m = Model::new(tiny_config(), 4, seed, &dev).unwrap();
            let o = Sgd::new(m.trainable_params(), sgd).unwrap();
            (m, o)
        };
        let epoch = |m: &Model, o: &mut Sgd, e, rng: &mut ChaCha8Rng| {
            train_epoch(m, o, &sched, &set, &labels, &cfg, e, rng, &mut |_| {}).unwrap()
        };

        // Straight through.
        let (a, mut oa) = fresh(0);
        let mut ra = ChaCha8Rng::seed_from_u64(11);
        epoch(&a, &mut oa, 0, &mut ra);
        epoch(&a, &mut oa, 1, &mut ra);

        // One epoch, save, restore into a model built with another seed, one more epoch.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("last.ckpt");
        let (b, mut ob) = fresh(0);
        let mut rb = ChaCha8Rng::seed_from_u64(11);
        epoch(&b, &mut ob, 0, &mut rb);
        let extra = serde_json::json!({"run": "test"});
        save_checkpoint(&path, &b, &ob, 1, &rb, extra.clone()).unwrap();
        drop((b, ob));
        let (c, mut oc) = fresh(123);
        let resume = load_checkpoint(&path, &c, &mut oc).unwrap();
        assert_eq!(resume.epochs_done, 1);
        assert_eq!(resume.meta.extra, extra);
        assert_eq!(oc.steps(), 4);
        let mut rc = resume.rng;
        epoch(&c, &mut oc, resume.epochs_done, &mut rc);

        assert_eq!(a.state_vecs().unwrap(), c.state_vecs().unwrap());
        assert_eq!(oa.state().unwrap(), oc.state().unwrap());
        assert_eq!(ra.get_word_pos(), rc.get_word_pos());
        assert!(!oa.state().unwrap().momentum.is_empty());

        // The checkpoint is also a weights file, and a backbone source for another head.
        let meta = read_checkpoint_meta(&path).unwrap();
        assert_eq!(meta.epochs_done, 1);
        let coarse = Model::new(tiny_config(), 2, 0, &dev).unwrap();
        coarse.load_backbone(&path).unwrap();
    }

    #[test]
    fn mismatches_are_reported_and_change_nothing() {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ckpt");
        let m = Model::new(tiny_config(), 4, 0, &dev).unwrap();
        let o = Sgd::new(m.trainable_params(), SgdConfig::default()).unwrap();
        save_checkpoint(
            &path,
            &m,
            &o,
            0,
            &ChaCha8Rng::seed_from_u64(0),
            serde_json::Value::Null,
        )
        .unwrap();

        let other = Model::new(tiny_config(), 2, 1, &dev).unwrap();
        let mut oo = Sgd::new(other.trainable_params(), SgdConfig::default()).unwrap();
        let before = other.state_vecs().unwrap();
        let e = load_checkpoint(&path, &other, &mut oo)
            .unwrap_err()
            .to_string();
        assert!(e.contains("4 classes") && e.contains("a.ckpt"), "{e}");
        assert_eq!(other.state_vecs().unwrap(), before);

        // A weights-only file is not a checkpoint.
        let w = dir.path().join("w.safetensors");
        m.save_weights(&w).unwrap();
        let e = read_checkpoint_meta(&w).unwrap_err().to_string();
        assert!(e.contains("no checkpoint header"), "{e}");
        // Garbage and missing files.
        let g = dir.path().join("g.ckpt");
        std::fs::write(&g, b"not a checkpoint").unwrap();
        assert!(read_checkpoint_meta(&g).is_err());
        let mut o2 = o.clone();
        assert!(load_checkpoint(&dir.path().join("missing.ckpt"), &m, &mut o2).is_err());
    }
}
