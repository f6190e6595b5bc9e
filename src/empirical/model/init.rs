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
use rand_distr::{Distribution, StandardNormal};

use super::blocks::{BatchNorm, Conv, ConvBn};
use crate::empirical::error::{EmpiricalError, TensorContext};

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
    ) -> Result<Var, EmpiricalError> {
        let t = Tensor::from_vec(values, shape, self.device).ctx(name)?;
        let var = Var::from_tensor(&t).ctx(name)?;
        let mut map = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        if map.insert(name.to_string(), var.clone()).is_some() {
            return Err(EmpiricalError::invalid(
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
    ) -> Result<Tensor, EmpiricalError> {
        let var = self.var(name, shape, values)?;
        let t = var.as_tensor().clone();
        self.params.push(Param {
            name: name.to_string(),
            var,
            weight_decay,
        });
        Ok(t)
    }

    /// A bias-free convolution with Kaiming-normal (fan-out) weights.
    pub(super) fn conv(
        &mut self,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
    ) -> Result<Conv, EmpiricalError> {
        let n = c_out * c_in * k * k;
        let std = (2.0 / (c_out * k * k) as f64).sqrt();
        let values = (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut self.rng);
                (z * std) as f32
            })
            .collect();
        let weight = self.param(
            &format!("{name}.weight"),
            &[c_out, c_in, k, k],
            values,
            true,
        )?;
        Ok(Conv {
            weight,
            stride,
            padding: k / 2,
        })
    }

    /// A BatchNorm over `c` channels: weight 1, bias 0, running mean 0, running variance 1.
    pub(super) fn bn(&mut self, name: &str, c: usize) -> Result<BatchNorm, EmpiricalError> {
        Ok(BatchNorm {
            weight: self.param(&format!("{name}.weight"), &[c], vec![1.0; c], false)?,
            bias: self.param(&format!("{name}.bias"), &[c], vec![0.0; c], false)?,
            running_mean: self.var(&format!("{name}.running_mean"), &[c], vec![0.0; c])?,
            running_var: self.var(&format!("{name}.running_var"), &[c], vec![1.0; c])?,
        })
    }

    /// A convolution named `conv` followed by a BatchNorm named `bn`.
    pub(super) fn conv_bn(
        &mut self,
        conv: &str,
        bn: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
    ) -> Result<ConvBn, EmpiricalError> {
        Ok(ConvBn {
            conv: self.conv(conv, c_in, c_out, k, stride)?,
            bn: self.bn(bn, c_out)?,
        })
    }
}
