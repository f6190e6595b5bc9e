//! Seeded initialisation: every initial value drawn from a [`ChaCha8Rng`] seeded with the
//! model's seed (candle's initialisers draw from a global generator that cannot be seeded per
//! model), the backbone on stream [`BACKBONE_STREAM`], the head on [`HEAD_STREAM`], tensors in a
//! fixed order; and [`Param`], a trainable tensor as the optimizer sees it. Convolutions get
//! Kaiming-normal weights in fan-out mode (`N(0, 2 / (out_channels * k * k))`, as torchvision's
//! ResNets); BatchNorm weights are 1 and biases 0; the head is PyTorch's `nn.Linear` default,
//! weight and bias uniform in `±1 / sqrt(feature_dim)`.

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::error::{ModelError, TensorContext};

/// Stream of the seeded generator that initialises the backbone.
pub(super) const BACKBONE_STREAM: u64 = 0;
/// Stream of the seeded generator that initialises the head.
pub(super) const HEAD_STREAM: u64 = 1;

/// A trainable tensor and how the optimizer treats it.
#[derive(Clone, Debug)]
pub struct Param {
    /// Its stable name (`backbone.stem.conv.weight`, `head.bias`, ...).
    pub name: String,
    /// The variable (shares storage with the model's).
    pub var: Var,
    /// Whether weight decay applies: true for convolution and linear weights, false for
    /// BatchNorm weights and biases and the head bias.
    pub weight_decay: bool,
}

/// Creates the model's variables in one [`VarMap`] from values drawn from a seeded generator.
pub(super) struct Init<'a> {
    pub(super) varmap: &'a VarMap,
    pub(super) device: &'a Device,
    pub(super) rng: ChaCha8Rng,
    pub(super) params: Vec<Param>,
}

impl<'a> Init<'a> {
    pub(super) fn new(varmap: &'a VarMap, device: &'a Device, seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Self {
            varmap,
            device,
            rng,
            params: Vec::new(),
        }
    }

    /// Inserts a variable of `shape` holding `values` under `name`.
    pub(super) fn var(
        &mut self,
        name: &str,
        shape: &[usize],
        values: Vec<f32>,
    ) -> Result<Var, ModelError> {
        let t = Tensor::from_vec(values, shape, self.device).ctx(name)?;
        let var = Var::from_tensor(&t).ctx(name)?;
        let mut map = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        if map.insert(name.to_string(), var.clone()).is_some() {
            return Err(ModelError::invalid(
                "model",
                format!("duplicate tensor name {name}"),
            ));
        }
        Ok(var)
    }

    pub(super) fn param(
        &mut self,
        name: &str,
        shape: &[usize],
        values: Vec<f32>,
        weight_decay: bool,
    ) -> Result<Tensor, ModelError> {
        let var = self.var(name, shape, values)?;
        let t = var.as_tensor().clone();
        self.params.push(Param {
            name: name.to_string(),
            var,
            weight_decay,
        });
        Ok(t)
    }
}
