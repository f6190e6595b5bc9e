//! Weights on disk: every tensor of a [`Model`] in one safetensors file under its stable name;
//! a backbone alone loads into a model whose head has another size.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};

use super::error::{ModelError, TensorContext};
use super::{Model, BACKBONE_PREFIX};
use crate::report::write_atomic;

impl Model {
    /// Every tensor by name, sorted (a snapshot: the tensors share storage with the model's
    /// variables until the next update replaces their contents).
    pub fn named_tensors(&self) -> BTreeMap<String, Tensor> {
        let map = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Copies of every tensor's values by name, sorted; for comparing models bit for bit.
    pub fn state_vecs(&self) -> Result<BTreeMap<String, Vec<f32>>, ModelError> {
        self.named_tensors()
            .into_iter()
            .map(|(k, t)| {
                let v = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).ctx(&k)?;
                Ok((k, v))
            })
            .collect()
    }

    /// Writes every tensor (backbone, BatchNorm statistics, head) to a safetensors file,
    /// atomically.
    pub fn save_weights(&self, path: &Path) -> Result<(), ModelError> {
        let bytes = safetensors_bytes(&self.named_tensors(), None)
            .map_err(|m| ModelError::weights(path, m))?;
        write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Loads every tensor of the model (backbone and head) from a safetensors file written by
    /// [`Model::save_weights`] or a checkpoint; errors name a missing tensor or a shape that
    /// differs.
    pub fn load_weights(&self, path: &Path) -> Result<(), ModelError> {
        let tensors = read_safetensors(path, &self.device)?;
        self.set_from(&tensors, "", path)
    }

    /// Loads only the `backbone.*` tensors (weights and BatchNorm statistics) from a
    /// safetensors file written by [`Model::save_weights`] or a checkpoint, whatever the head
    /// size there: the transfer step.
    pub fn load_backbone(&self, path: &Path) -> Result<(), ModelError> {
        let tensors = read_safetensors(path, &self.device)?;
        self.set_from(&tensors, BACKBONE_PREFIX, path)
    }

    /// Sets every variable whose name starts with `prefix` from `tensors`.
    pub(crate) fn set_from(
        &self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        path: &Path,
    ) -> Result<(), ModelError> {
        let map = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = map.keys().filter(|k| k.starts_with(prefix)).collect();
        names.sort();
        // Check everything first so that a failed load leaves the model unchanged.
        for name in &names {
            let var = &map[*name];
            let t = tensors.get(*name).ok_or_else(|| {
                ModelError::weights(
                    path,
                    format!(
                        "no tensor {name} (is this a {} model?)",
                        self.config().arch.name()
                    ),
                )
            })?;
            if t.dims() != var.dims() || t.dtype() != var.dtype() {
                return Err(ModelError::weights(
                    path,
                    format!(
                        "tensor {name} is {:?} {:?} in the file but {:?} {:?} in the model \
                         ({} width {}, {} classes)",
                        t.dtype(),
                        t.dims(),
                        var.dtype(),
                        var.dims(),
                        self.config().arch.name(),
                        self.config().width,
                        self.num_classes()
                    ),
                ));
            }
        }
        for name in names {
            map[name].set(&tensors[name]).ctx(name)?;
        }
        Ok(())
    }
}

/// Serialises `tensors` (sorted by name) to safetensors bytes with optional string metadata.
pub(crate) fn safetensors_bytes(
    tensors: &BTreeMap<String, Tensor>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, String> {
    safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), metadata)
        .map_err(|e| format!("cannot serialise tensors: {e}"))
}

/// Reads every tensor of a safetensors file.
pub(crate) fn read_safetensors(
    path: &Path,
    device: &Device,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let bytes =
        std::fs::read(path).map_err(|e| ModelError::weights(path, format!("cannot read: {e}")))?;
    candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| ModelError::weights(path, format!("not a safetensors file: {e}")))
}
