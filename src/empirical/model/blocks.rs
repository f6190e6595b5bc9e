//! The layers of the stock path, on candle's operations: a bias-free convolution, BatchNorm,
//! their pair and the basic residual block. The fast path runs the same layers through
//! the CPU engine (private module `cpu`) from the plan [`super::Backbone`] builds of them.

use candle_core::{Tensor, Var};
use rand_distr::{Distribution, StandardNormal};

use super::cpu::{engine, kernels};
use super::error::ModelError;
use super::init::Init;

/// BatchNorm epsilon (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;
/// BatchNorm running-statistics momentum (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// A bias-free 2-D convolution with "same" padding.
#[derive(Clone, Debug)]
pub(super) struct Conv {
    pub(super) weight: Tensor,
    pub(super) stride: usize,
    pub(super) padding: usize,
}

impl Conv {
    /// A bias-free convolution named `name` with Kaiming-normal (fan-out) weights drawn from
    /// `init`.
    pub(super) fn init(
        init: &mut Init<'_>,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
    ) -> Result<Conv, ModelError> {
        let n = c_out * c_in * k * k;
        let std = (2.0 / (c_out * k * k) as f64).sqrt();
        let values = (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut init.rng);
                (z * std) as f32
            })
            .collect();
        let weight = init.param(
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

    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.conv2d(&self.weight, self.padding, self.stride, 1, 1)
    }

    /// The convolution in the plan of [`engine`], its weight at `off` of the packed
    /// parameters.
    pub(super) fn plan(&self, off: usize) -> engine::ConvP {
        let d = self.weight.dims();
        engine::ConvP {
            off,
            ci: d[1],
            co: d[0],
            k: d[2],
            stride: self.stride,
            pad: self.padding,
        }
    }
}

/// BatchNorm over the channels (dimension 1) with learnable scale and shift and running
/// statistics (see the module doc).
#[derive(Clone, Debug)]
pub(super) struct BatchNorm {
    pub(super) weight: Tensor,
    pub(super) bias: Tensor,
    pub(super) running_mean: Var,
    pub(super) running_var: Var,
}

impl BatchNorm {
    /// A BatchNorm named `name` over `c` channels: weight 1, bias 0, running mean 0, running
    /// variance 1.
    pub(super) fn init(init: &mut Init<'_>, name: &str, c: usize) -> Result<Self, ModelError> {
        Ok(BatchNorm {
            weight: init.param(&format!("{name}.weight"), &[c], vec![1.0; c], false)?,
            bias: init.param(&format!("{name}.bias"), &[c], vec![0.0; c], false)?,
            running_mean: init.var(&format!("{name}.running_mean"), &[c], vec![0.0; c])?,
            running_var: init.var(&format!("{name}.running_var"), &[c], vec![1.0; c])?,
        })
    }

    /// Moves the running statistics towards the batch's (`var` biased, over `count` values).
    pub(super) fn update_running(
        &self,
        mean: &[f32],
        var: &[f32],
        count: usize,
    ) -> candle_core::Result<()> {
        let m = BN_MOMENTUM as f32;
        let unbias = count as f32 / (count - 1) as f32;
        let update = |v: &Var, batch: &[f32], factor: f32| -> candle_core::Result<()> {
            let old = v.as_tensor().to_vec1::<f32>()?;
            let new: Vec<f32> = old
                .iter()
                .zip(batch)
                .map(|(r, b)| (1.0 - m) * r + m * (b * factor))
                .collect();
            v.set(&Tensor::from_vec(new, old.len(), v.device())?)
        };
        update(&self.running_mean, mean, 1.0)?;
        update(&self.running_var, var, unbias)
    }

    pub(super) fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        if train {
            let (y, st) = kernels::batch_norm_train_ops(x, &self.weight, &self.bias, BN_EPS)?;
            self.update_running(&st.mean, &st.var, st.count)?;
            Ok(y)
        } else {
            let c = self.weight.elem_count();
            let mut shape = vec![1; x.rank()];
            shape[1] = c;
            let scale =
                (&self.weight / (self.running_var.as_detached_tensor() + BN_EPS)?.sqrt()?)?;
            let shift = (&self.bias - (self.running_mean.as_detached_tensor() * &scale)?)?;
            x.broadcast_mul(&scale.reshape(shape.as_slice())?)?
                .broadcast_add(&shift.reshape(shape.as_slice())?)
        }
    }
}

/// A convolution followed by a BatchNorm.
#[derive(Clone, Debug)]
pub(super) struct ConvBn {
    pub(super) conv: Conv,
    pub(super) bn: BatchNorm,
}

impl ConvBn {
    /// A convolution named `conv` followed by a BatchNorm named `bn`.
    pub(super) fn init(
        init: &mut Init<'_>,
        conv: &str,
        bn: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
    ) -> Result<Self, ModelError> {
        Ok(ConvBn {
            conv: Conv::init(init, conv, c_in, c_out, k, stride)?,
            bn: BatchNorm::init(init, bn, c_out)?,
        })
    }

    pub(super) fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(x)?, train)
    }
}

/// A basic residual block: conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU.
#[derive(Clone, Debug)]
pub(super) struct BasicBlock {
    pub(super) first: ConvBn,
    pub(super) second: ConvBn,
    /// 1x1 convolution + BN where the shape changes ("option B"); identity otherwise.
    pub(super) shortcut: Option<ConvBn>,
}

impl BasicBlock {
    pub(super) fn new(
        init: &mut Init<'_>,
        name: &str,
        c_in: usize,
        c_out: usize,
        stride: usize,
    ) -> Result<Self, ModelError> {
        let (c1, b1) = (format!("{name}.conv1"), format!("{name}.bn1"));
        let first = ConvBn::init(init, &c1, &b1, c_in, c_out, 3, stride)?;
        let (c2, b2) = (format!("{name}.conv2"), format!("{name}.bn2"));
        let second = ConvBn::init(init, &c2, &b2, c_out, c_out, 3, 1)?;
        let shortcut = if stride != 1 || c_in != c_out {
            let (cs, bs) = (
                format!("{name}.shortcut.conv"),
                format!("{name}.shortcut.bn"),
            );
            Some(ConvBn::init(init, &cs, &bs, c_in, c_out, 1, stride)?)
        } else {
            None
        };
        Ok(Self {
            first,
            second,
            shortcut,
        })
    }

    pub(super) fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let h = self.first.forward_t(x, train)?.relu()?;
        let h = self.second.forward_t(&h, train)?;
        let s = match &self.shortcut {
            Some(sc) => sc.forward_t(x, train)?,
            None => x.clone(),
        };
        (h + s)?.relu()
    }
}
