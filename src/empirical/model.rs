//! The networks of the empirical half: CIFAR-style ResNets split into a [`Backbone`] (everything
//! up to the globally average-pooled feature vector) and a linear [`Head`], so that a backbone
//! pretrained on fine labels can be given a fresh head for the coarse labels.
//!
//! # Architectures
//!
//! Chosen by [`ModelConfig`] (`{ arch = "resnet20", width = 16 }` in a TOML config):
//!
//! * [`Arch::ResNet20`] and [`Arch::ResNet8`]: the CIFAR ResNets of He et al. (2016, section 4.2):
//!   a 3x3 stem convolution to `width` channels, then 3 stages of `n` basic blocks (`n = 3` for
//!   ResNet-20, `n = 1` for ResNet-8) with `width`, `2 width` and `4 width` channels, stride 2 at
//!   the first block of stages 2 and 3. Where a block changes the shape, its shortcut is a 1x1
//!   convolution (with the block's stride) and a BatchNorm ("option B"). The standard width is 16.
//! * [`Arch::ResNet18`]: ResNet-18 with the usual CIFAR stem (a 3x3 convolution with stride 1 and
//!   no max-pooling), then 4 stages of 2 basic blocks with `width`, `2 width`, `4 width` and
//!   `8 width` channels, stride 2 at stages 2 to 4. The standard width is 64.
//!
//! Every convolution has no bias and is followed by a BatchNorm (eps 1e-5, momentum 0.1 as in
//! PyTorch: `running = 0.9 running + 0.1 batch`, the running variance from the unbiased batch
//! variance). In training mode (`train = true`) BatchNorm normalises with the batch statistics and
//! updates its running statistics; in evaluation mode it uses the running statistics. The
//! feature vector is the global average of the last stage (`feature_dim` = `4 width` or
//! `8 width`), and the head is `logits = features W^T + b`.
//!
//! # Uses for transfer
//!
//! * fine-tuning: [`Model::replace_head`] swaps in a fresh head with the coarse class count and
//!   every parameter stays trainable;
//! * linear probe: [`Model::set_backbone_frozen`] then train; the backbone runs in evaluation
//!   mode, no gradient reaches it and [`Model::trainable_params`] lists the head only;
//! * mapped head (sum of the fine logits of each superclass): computed from the logits of
//!   [`Model::logits`] by the caller.
//!
//! # Names and files
//!
//! All tensors live in one [`VarMap`] under stable names modelled on PyTorch's:
//! `backbone.stem.conv.weight`, `backbone.stem.bn.{weight,bias,running_mean,running_var}`,
//! `backbone.layer{s}.{b}.conv{1,2}.weight`, `backbone.layer{s}.{b}.bn{1,2}.*`,
//! `backbone.layer{s}.{b}.shortcut.{conv.weight,bn.*}`, and `head.weight` (`classes x
//! feature_dim`), `head.bias`; stages `s` count from 1, blocks `b` from 0. [`Model::save_weights`]
//! writes them as a safetensors file (readable by candle's `VarMap::load`);
//! [`Model::load_backbone`] reads only the `backbone.*` tensors, so a pretrained backbone loads
//! into a model whose head has another size.
//!
//! # Initialisation
//!
//! candle's initialisers draw from their own global random generator, which cannot be seeded per
//! model, so this module draws every initial value itself from a [`ChaCha8Rng`] seeded with the
//! model's seed (the backbone on stream 0 of that generator, the head on stream 1; tensors in a
//! fixed order) and creates the variables from those values. Convolutions get Kaiming-normal
//! weights in fan-out mode (`N(0, 2 / (out_channels * k * k))`, as torchvision's ResNets);
//! BatchNorm weights are 1 and biases 0; the head is PyTorch's `nn.Linear` default, weight and
//! bias uniform in `±1 / sqrt(feature_dim)`. The same seed gives the same bits.
//!
//! # Speed and determinism
//!
//! [`Kernels`] chooses the implementation ([`Model::new_with`]; [`Model::new`] takes
//! [`Kernels::Fast`]). With [`Kernels::Fast`] on the CPU the whole backbone is one candle custom
//! operation with a hand-written backward pass (private module `engine`): the input is turned
//! channels-last (NHWC) once, every convolution is im2col plus `gemm` over blocks of output
//! pixels (no im2col for 1x1 stride-1; the input gradient of a stride-1 convolution is a forward
//! convolution with the flipped kernel), BatchNorm statistics are summed while the
//! convolution's output is in cache, BatchNorm + ReLU and BatchNorm + shortcut + ReLU are single
//! fused passes, their backward passes two, the element-wise loops are vectorised for AVX2 when
//! the CPU has it (private modules `kernels`, `simd`), and the activation buffers are recycled
//! from one step to the next. candle sees one operation per step, so its per-tensor gradient
//! accumulation (a zero tensor plus an addition per gradient) and its allocations disappear
//! from the backbone. Results do not depend on the number of threads: work is split by images
//! or fixed chunks of images and partial sums are added in a fixed order. No gradient flows to
//! the input images. [`Kernels::Stock`], and every device other than the CPU, use candle's
//! operations (`conv2d`, BatchNorm from tensor operations, `relu`); the tests check that both
//! agree on the logits, every parameter gradient and the running statistics (relative error
//! below 1e-4).
//!
//! Measured with `empirical bench` (training step: forward, cross-entropy, backward, momentum
//! SGD; batch 128, 32x32, 2 threads, [`crate::runtime::tune_allocator`] applied; median step,
//! every path timed in turn in the same run) on the 2-core AMD EPYC (Zen 4) development
//! machine while another process kept about one of its two cores busy: ResNet-20 fast 256
//! images/s, stock 20.6, PyTorch 2.15 NCHW 218 and channels-last 302 (fast/stock 12.5x,
//! fast/PyTorch 1.18x NCHW and 0.85x channels-last); ResNet-8 fast 762, stock 55, PyTorch 491
//! and 661. Sequential runs on the same machine with less load gave ResNet-20 fast 405-416
//! images/s against PyTorch channels-last 569 (0.71x), NCHW 435. The previous per-operation
//! NCHW kernels gave about 100 images/s. About 60% of the fast step is `gemm`, 15% im2col.
//!
//! A [`Model`] owns its variables through its [`VarMap`]; it is deliberately not `Clone` (a
//! clone would share the variables). Training mutates the variables through `&Model`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarMap;
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::error::{EmpiricalError, TensorContext};
use crate::report::write_atomic;

mod engine;
mod kernels;
mod simd;

use std::sync::Arc;

/// Number of input channels (RGB).
pub const IN_CHANNELS: usize = 3;
/// BatchNorm epsilon (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;
/// BatchNorm running-statistics momentum (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// Which implementation runs the backbone's layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// This crate's CPU kernels (see the module doc); candle's operations on other devices.
    #[default]
    Fast,
    /// candle's stock operations everywhere (`conv2d`, BatchNorm from tensor operations,
    /// `relu`): the reference the fast kernels are checked and benchmarked against.
    Stock,
}

impl Kernels {
    /// The name used in reports (`fast`, `stock`).
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Fast => "fast",
            Kernels::Stock => "stock",
        }
    }
}

/// Stream of the seeded generator that initialises the backbone.
const BACKBONE_STREAM: u64 = 0;
/// Stream of the seeded generator that initialises the head.
const HEAD_STREAM: u64 = 1;
/// Name prefix of the backbone tensors.
pub const BACKBONE_PREFIX: &str = "backbone.";
/// Name prefix of the head tensors.
pub const HEAD_PREFIX: &str = "head.";

/// The ResNet variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// CIFAR ResNet-20: 3 stages of 3 basic blocks (standard width 16).
    #[serde(rename = "resnet20")]
    ResNet20,
    /// ResNet-18 with the CIFAR stem: 4 stages of 2 basic blocks (standard width 64).
    #[serde(rename = "resnet18")]
    ResNet18,
    /// CIFAR ResNet-8: 3 stages of 1 basic block; small and fast, for tests and smoke runs.
    #[serde(rename = "resnet8")]
    ResNet8,
}

impl Arch {
    /// The standard base width of this architecture (16, 64 or 16).
    pub fn standard_width(self) -> usize {
        match self {
            Arch::ResNet20 | Arch::ResNet8 => 16,
            Arch::ResNet18 => 64,
        }
    }

    /// Blocks per stage.
    fn stages(self) -> &'static [usize] {
        match self {
            Arch::ResNet20 => &[3, 3, 3],
            Arch::ResNet8 => &[1, 1, 1],
            Arch::ResNet18 => &[2, 2, 2, 2],
        }
    }

    /// The name used in configs and reports (`resnet20`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet20 => "resnet20",
            Arch::ResNet18 => "resnet18",
            Arch::ResNet8 => "resnet8",
        }
    }
}

/// Which network to build: the architecture and its base width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ModelConfig {
    /// The architecture.
    pub arch: Arch,
    /// Channels of the first stage (later stages double it at every stage).
    pub width: usize,
}

impl ModelConfig {
    /// `arch` at its standard width.
    pub fn standard(arch: Arch) -> Self {
        Self {
            arch,
            width: arch.standard_width(),
        }
    }

    /// Length of the feature vector (channels of the last stage).
    pub fn feature_dim(&self) -> usize {
        self.width << (self.arch.stages().len() - 1)
    }

    /// Checks the width is positive and not absurdly large.
    pub fn validate(&self) -> Result<(), EmpiricalError> {
        if self.width == 0 || self.width > 4096 {
            return Err(EmpiricalError::invalid(
                "model config",
                format!("width must be in 1..=4096, got {}", self.width),
            ));
        }
        Ok(())
    }
}

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
struct Init<'a> {
    varmap: &'a VarMap,
    device: &'a Device,
    rng: ChaCha8Rng,
    params: Vec<Param>,
}

impl<'a> Init<'a> {
    fn new(varmap: &'a VarMap, device: &'a Device, seed: u64, stream: u64) -> Self {
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
    fn var(
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

    fn param(
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
    fn conv(
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
    fn bn(&mut self, name: &str, c: usize) -> Result<BatchNorm, EmpiricalError> {
        Ok(BatchNorm {
            weight: self.param(&format!("{name}.weight"), &[c], vec![1.0; c], false)?,
            bias: self.param(&format!("{name}.bias"), &[c], vec![0.0; c], false)?,
            running_mean: self.var(&format!("{name}.running_mean"), &[c], vec![0.0; c])?,
            running_var: self.var(&format!("{name}.running_var"), &[c], vec![1.0; c])?,
        })
    }

    /// A convolution named `conv` followed by a BatchNorm named `bn`.
    fn conv_bn(
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

/// A bias-free 2-D convolution with "same" padding.
#[derive(Clone, Debug)]
struct Conv {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.conv2d(&self.weight, self.padding, self.stride, 1, 1)
    }

    /// The convolution in the plan of [`engine`], its weight at `off` of the packed
    /// parameters.
    fn plan(&self, off: usize) -> engine::ConvP {
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
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
}

impl BatchNorm {
    /// Moves the running statistics towards the batch's (`var` biased, over `count` values).
    fn update_running(&self, mean: &[f32], var: &[f32], count: usize) -> candle_core::Result<()> {
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

    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
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
struct ConvBn {
    conv: Conv,
    bn: BatchNorm,
}

impl ConvBn {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(x)?, train)
    }
}

/// A basic residual block: conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU.
#[derive(Clone, Debug)]
struct BasicBlock {
    first: ConvBn,
    second: ConvBn,
    /// 1x1 convolution + BN where the shape changes ("option B"); identity otherwise.
    shortcut: Option<ConvBn>,
}

impl BasicBlock {
    fn new(
        init: &mut Init<'_>,
        name: &str,
        c_in: usize,
        c_out: usize,
        stride: usize,
    ) -> Result<Self, EmpiricalError> {
        let (c1, b1) = (format!("{name}.conv1"), format!("{name}.bn1"));
        let first = init.conv_bn(&c1, &b1, c_in, c_out, 3, stride)?;
        let (c2, b2) = (format!("{name}.conv2"), format!("{name}.bn2"));
        let second = init.conv_bn(&c2, &b2, c_out, c_out, 3, 1)?;
        let shortcut = if stride != 1 || c_in != c_out {
            let (cs, bs) = (
                format!("{name}.shortcut.conv"),
                format!("{name}.shortcut.bn"),
            );
            Some(init.conv_bn(&cs, &bs, c_in, c_out, 1, stride)?)
        } else {
            None
        };
        Ok(Self {
            first,
            second,
            shortcut,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let h = self.first.forward_t(x, train)?.relu()?;
        let h = self.second.forward_t(&h, train)?;
        let s = match &self.shortcut {
            Some(sc) => sc.forward_t(x, train)?,
            None => x.clone(),
        };
        (h + s)?.relu()
    }
}

/// Everything up to the feature vector: stem, residual stages, global average pooling.
pub struct Backbone {
    config: ModelConfig,
    kernels: Kernels,
    stem: ConvBn,
    blocks: Vec<BasicBlock>,
    params: Vec<Param>,
    /// The network for [`engine`], its BatchNorms in the plan's order, and its buffer pool.
    plan: Arc<engine::Plan>,
    plan_bns: Vec<BatchNorm>,
    pool: Arc<engine::Pool>,
}

impl std::fmt::Debug for Backbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backbone")
            .field("config", &self.config)
            .field("kernels", &self.kernels)
            .field("params", &self.params.len())
            .finish_non_exhaustive()
    }
}

impl Backbone {
    fn new(
        config: ModelConfig,
        varmap: &VarMap,
        device: &Device,
        seed: u64,
        kernels: Kernels,
    ) -> Result<Self, EmpiricalError> {
        config.validate()?;
        let mut init = Init::new(varmap, device, seed, BACKBONE_STREAM);
        let w = config.width;
        let stem = init.conv_bn(
            "backbone.stem.conv",
            "backbone.stem.bn",
            IN_CHANNELS,
            w,
            3,
            1,
        )?;
        let mut blocks = Vec::new();
        let mut c_in = w;
        for (s, &n) in config.arch.stages().iter().enumerate() {
            let c_out = w << s;
            for b in 0..n {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                let name = format!("backbone.layer{}.{b}", s + 1);
                blocks.push(BasicBlock::new(&mut init, &name, c_in, c_out, stride)?);
                c_in = c_out;
            }
        }
        let params = init.params;
        let (plan, plan_bns) = Self::plan(&stem, &blocks, &params)?;
        Ok(Self {
            config,
            kernels,
            stem,
            blocks,
            params,
            plan: Arc::new(plan),
            plan_bns,
            pool: Arc::default(),
        })
    }

    /// The plan of [`engine`]: every layer with the offsets of its tensors in the packed
    /// parameters (in the order of `params`) and running statistics.
    fn plan(
        stem: &ConvBn,
        blocks: &[BasicBlock],
        params: &[Param],
    ) -> Result<(engine::Plan, Vec<BatchNorm>), EmpiricalError> {
        let mut offsets = HashMap::new();
        let mut n_params = 0;
        for p in params {
            offsets.insert(p.var.as_tensor().id(), n_params);
            n_params += p.var.elem_count();
        }
        let off = |t: &Tensor| {
            offsets.get(&t.id()).copied().ok_or_else(|| {
                EmpiricalError::invalid("model", "a layer's tensor is not among the parameters")
            })
        };
        let mut bns = Vec::new();
        let mut n_running = 0;
        let mut conv_bn = |cb: &ConvBn| -> Result<(engine::ConvP, engine::BnP), EmpiricalError> {
            let c = cb.bn.weight.elem_count();
            let bn = engine::BnP {
                gamma: off(&cb.bn.weight)?,
                beta: off(&cb.bn.bias)?,
                run: n_running,
                c,
            };
            n_running += 2 * c;
            bns.push(cb.bn.clone());
            Ok((cb.conv.plan(off(&cb.conv.weight)?), bn))
        };
        let stem = conv_bn(stem)?;
        let mut plan_blocks = Vec::new();
        for b in blocks {
            let (conv1, bn1) = conv_bn(&b.first)?;
            let (conv2, bn2) = conv_bn(&b.second)?;
            let short = b.shortcut.as_ref().map(&mut conv_bn).transpose()?;
            plan_blocks.push(engine::BlockP {
                conv1,
                bn1,
                conv2,
                bn2,
                short,
            });
        }
        let plan = engine::Plan {
            stem,
            blocks: plan_blocks,
            n_params,
            n_running,
            eps: BN_EPS,
        };
        Ok((plan, bns))
    }

    /// The backbone as one operation of [`engine`] (CPU, [`Kernels::Fast`]).
    fn forward_engine(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let flat: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| p.var.as_tensor().flatten_all())
            .collect::<candle_core::Result<_>>()?;
        let params = Tensor::cat(&flat, 0)?;
        let mut running = Vec::with_capacity(2 * self.plan_bns.len());
        for bn in &self.plan_bns {
            running.push(bn.running_mean.as_detached_tensor());
            running.push(bn.running_var.as_detached_tensor());
        }
        let running = Tensor::cat(&running, 0)?;
        let (features, stats) =
            engine::forward(&self.plan, &self.pool, x, &params, &running, train)?;
        if train {
            for (bn, st) in self.plan_bns.iter().zip(&stats) {
                bn.update_running(&st.mean, &st.var, st.count)?;
            }
        }
        Ok(features)
    }

    /// The feature vectors `(N, feature_dim)` of a batch `x` of shape `(N, 3, H, W)`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        if self.kernels == Kernels::Fast && x.device().is_cpu() {
            return self.forward_engine(x, train);
        }
        let mut h = self.stem.forward_t(x, train)?.relu()?;
        for b in &self.blocks {
            h = b.forward_t(&h, train)?;
        }
        h.mean((2, 3))
    }

    /// The kernels running the layers.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// The architecture and width.
    pub fn config(&self) -> ModelConfig {
        self.config
    }

    /// The trainable tensors, in a fixed order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }
}

/// The linear classifier on top of the features.
#[derive(Debug)]
pub struct Head {
    weight: Tensor,
    bias: Tensor,
    params: Vec<Param>,
    num_classes: usize,
}

impl Head {
    fn new(
        feature_dim: usize,
        num_classes: usize,
        varmap: &VarMap,
        device: &Device,
        seed: u64,
    ) -> Result<Self, EmpiricalError> {
        let mut init = Init::new(varmap, device, seed, HEAD_STREAM);
        let bound = 1.0 / (feature_dim as f64).sqrt();
        let mut uniform = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| init.rng.gen_range(-bound..bound) as f32)
                .collect()
        };
        let w = uniform(num_classes * feature_dim);
        let b = uniform(num_classes);
        let weight = init.param("head.weight", &[num_classes, feature_dim], w, true)?;
        let bias = init.param("head.bias", &[num_classes], b, false)?;
        Ok(Self {
            weight,
            bias,
            params: init.params,
            num_classes,
        })
    }

    /// `features W^T + b`: logits `(N, num_classes)` from features `(N, feature_dim)`.
    pub fn forward(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        features
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The trainable tensors (`head.weight`, `head.bias`).
    pub fn params(&self) -> &[Param] {
        &self.params
    }
}

/// A [`Backbone`] and a [`Head`], with all tensors in one [`VarMap`].
pub struct Model {
    varmap: VarMap,
    device: Device,
    backbone: Backbone,
    head: Head,
    frozen: bool,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.backbone.config)
            .field("num_classes", &self.head.num_classes)
            .field("backbone_frozen", &self.frozen)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// A freshly initialised model with `num_classes` outputs; the same `seed` gives the same
    /// weights bit for bit (see the module doc).
    pub fn new(
        config: ModelConfig,
        num_classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self, EmpiricalError> {
        Self::new_with(config, num_classes, seed, device, Kernels::Fast)
    }

    /// [`Model::new`] with the layers run by `kernels` (the same seed gives the same initial
    /// weights whatever the kernels).
    pub fn new_with(
        config: ModelConfig,
        num_classes: usize,
        seed: u64,
        device: &Device,
        kernels: Kernels,
    ) -> Result<Self, EmpiricalError> {
        if num_classes == 0 {
            return Err(EmpiricalError::invalid(
                "model",
                "the head needs at least one class",
            ));
        }
        let varmap = VarMap::new();
        let backbone = Backbone::new(config, &varmap, device, seed, kernels)?;
        let head = Head::new(config.feature_dim(), num_classes, &varmap, device, seed)?;
        Ok(Self {
            varmap,
            device: device.clone(),
            backbone,
            head,
            frozen: false,
        })
    }

    /// Replaces the head by a fresh one with `num_classes` outputs, initialised from `seed`
    /// (as in [`Model::new`]); the backbone is kept. Optimizers built before hold the old head's
    /// variables: build a new one.
    pub fn replace_head(&mut self, num_classes: usize, seed: u64) -> Result<(), EmpiricalError> {
        if num_classes == 0 {
            return Err(EmpiricalError::invalid(
                "model",
                "the head needs at least one class",
            ));
        }
        {
            let mut map = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|name, _| !name.starts_with(HEAD_PREFIX));
        }
        self.head = Head::new(
            self.feature_dim(),
            num_classes,
            &self.varmap,
            &self.device,
            seed,
        )?;
        Ok(())
    }

    /// Freezes (or unfreezes) the backbone for linear probing: when frozen, [`Model::logits`]
    /// runs the backbone in evaluation mode (running BatchNorm statistics, not updated) and
    /// detaches the features, and [`Model::trainable_params`] lists only the head.
    pub fn set_backbone_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }

    /// Whether the backbone is frozen.
    pub fn backbone_frozen(&self) -> bool {
        self.frozen
    }

    /// The feature vectors `(N, feature_dim)` of `x` `(N, 3, H, W)`; `train` selects BatchNorm's
    /// training mode (batch statistics, running statistics updated) or evaluation mode.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor, EmpiricalError> {
        self.check_input(x)?;
        self.backbone.forward_t(x, train).ctx("backbone forward")
    }

    /// The logits `(N, num_classes)` of `x` `(N, 3, H, W)`. With a frozen backbone the features
    /// are computed in evaluation mode and detached whatever `train` says.
    pub fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor, EmpiricalError> {
        let f = if self.frozen {
            self.features(x, false)?.detach()
        } else {
            self.features(x, train)?
        };
        self.head.forward(&f).ctx("head forward")
    }

    /// The logits of precomputed features `(N, feature_dim)`.
    pub fn logits_from_features(&self, features: &Tensor) -> Result<Tensor, EmpiricalError> {
        self.head.forward(features).ctx("head forward")
    }

    fn check_input(&self, x: &Tensor) -> Result<(), EmpiricalError> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != IN_CHANNELS || dims[0] == 0 || dims[2] == 0 || dims[3] == 0
        {
            return Err(EmpiricalError::invalid(
                "model input",
                format!("expected a non-empty batch of shape (N, 3, H, W), got {dims:?}"),
            ));
        }
        if x.dtype() != DType::F32 {
            return Err(EmpiricalError::invalid(
                "model input",
                format!("expected f32 values, got {:?}", x.dtype()),
            ));
        }
        Ok(())
    }

    /// The trainable parameters: backbone then head, or only the head when the backbone is
    /// frozen. Pass them to [`super::optim::Sgd::new`].
    pub fn trainable_params(&self) -> Vec<Param> {
        let mut out = Vec::new();
        if !self.frozen {
            out.extend_from_slice(self.backbone.params());
        }
        out.extend_from_slice(self.head.params());
        out
    }

    /// The number of trainable scalars of the whole model (backbone and head).
    pub fn num_parameters(&self) -> usize {
        self.backbone
            .params()
            .iter()
            .chain(self.head.params())
            .map(|p| p.var.elem_count())
            .sum()
    }

    /// The architecture and width.
    pub fn config(&self) -> ModelConfig {
        self.backbone.config
    }

    /// Length of the feature vector.
    pub fn feature_dim(&self) -> usize {
        self.backbone.config.feature_dim()
    }

    /// Outputs of the head.
    pub fn num_classes(&self) -> usize {
        self.head.num_classes
    }

    /// The device the tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The map holding every tensor (parameters and BatchNorm running statistics) by name.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Every tensor by name, sorted (a snapshot: the tensors share storage with the model's
    /// variables until the next update replaces their contents).
    pub fn named_tensors(&self) -> BTreeMap<String, Tensor> {
        let map = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Copies of every tensor's values by name, sorted; for comparing models bit for bit.
    pub fn state_vecs(&self) -> Result<BTreeMap<String, Vec<f32>>, EmpiricalError> {
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
    pub fn save_weights(&self, path: &Path) -> Result<(), EmpiricalError> {
        let bytes = safetensors_bytes(&self.named_tensors(), None)
            .map_err(|m| EmpiricalError::checkpoint(path, m))?;
        write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Loads every tensor of the model (backbone and head) from a safetensors file written by
    /// [`Model::save_weights`] or a checkpoint; errors name a missing tensor or a shape that
    /// differs.
    pub fn load_weights(&self, path: &Path) -> Result<(), EmpiricalError> {
        let tensors = read_safetensors(path, &self.device)?;
        self.set_from(&tensors, "", path)
    }

    /// Loads only the `backbone.*` tensors (weights and BatchNorm statistics) from a
    /// safetensors file written by [`Model::save_weights`] or a checkpoint, whatever the head
    /// size there: the transfer step.
    pub fn load_backbone(&self, path: &Path) -> Result<(), EmpiricalError> {
        let tensors = read_safetensors(path, &self.device)?;
        self.set_from(&tensors, BACKBONE_PREFIX, path)
    }

    /// Sets every variable whose name starts with `prefix` from `tensors`.
    pub(crate) fn set_from(
        &self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        path: &Path,
    ) -> Result<(), EmpiricalError> {
        let map = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = map.keys().filter(|k| k.starts_with(prefix)).collect();
        names.sort();
        // Check everything first so that a failed load leaves the model unchanged.
        for name in &names {
            let var = &map[*name];
            let t = tensors.get(*name).ok_or_else(|| {
                EmpiricalError::checkpoint(
                    path,
                    format!(
                        "no tensor {name} (is this a {} model?)",
                        self.config().arch.name()
                    ),
                )
            })?;
            if t.dims() != var.dims() || t.dtype() != var.dtype() {
                return Err(EmpiricalError::checkpoint(
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
) -> Result<HashMap<String, Tensor>, EmpiricalError> {
    let bytes = std::fs::read(path)
        .map_err(|e| EmpiricalError::checkpoint(path, format!("cannot read: {e}")))?;
    candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| EmpiricalError::checkpoint(path, format!("not a safetensors file: {e}")))
}

/// The index of the largest value of each row of `logits` `(N, K)` (the first on ties).
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<usize>, EmpiricalError> {
    let idx = logits
        .argmax(D::Minus1)
        .and_then(|t| t.to_vec1::<u32>())
        .ctx("argmax")?;
    Ok(idx.into_iter().map(|i| i as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelConfig {
        ModelConfig {
            arch: Arch::ResNet8,
            width: 4,
        }
    }

    fn input(n: usize, hw: usize, seed: u64) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..n * 3 * hw * hw)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        Tensor::from_vec(v, (n, 3, hw, hw), &Device::Cpu).unwrap()
    }

    fn input_hw(n: usize, h: usize, w: usize, seed: u64) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..n * 3 * h * w)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        Tensor::from_vec(v, (n, 3, h, w), &Device::Cpu).unwrap()
    }

    /// Largest |a - b| relative to the largest |b| (at least 1e-3).
    fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
            / scale
    }

    /// The fast backbone (one custom operation on channels-last kernels) agrees with candle's
    /// stock operations: logits, the gradient of every parameter and the running statistics,
    /// in training and evaluation mode, for every architecture, odd sizes and batch 1 (candle 0.11's
    /// stock 1x1 stride-2 convolution gets non-square images wrong, so they are covered by the
    /// kernel tests only).
    #[test]
    fn fast_kernels_match_stock() {
        let dev = Device::Cpu;
        let cases = [
            (tiny(), 2, 8, 8),
            (tiny(), 1, 7, 7),
            (
                ModelConfig {
                    arch: Arch::ResNet20,
                    width: 4,
                },
                3,
                9,
                9,
            ),
            (
                ModelConfig {
                    arch: Arch::ResNet18,
                    width: 2,
                },
                2,
                16,
                16,
            ),
        ];
        for (i, &(cfg, n, h, w)) in cases.iter().enumerate() {
            let fast = Model::new_with(cfg, 5, 3, &dev, Kernels::Fast).unwrap();
            let stock = Model::new_with(cfg, 5, 3, &dev, Kernels::Stock).unwrap();
            assert_eq!(fast.state_vecs().unwrap(), stock.state_vecs().unwrap());
            let x = input_hw(n, h, w, 10 + i as u64);
            for train in [true, false, true] {
                let what = format!("case {i} ({cfg:?}, {n}x{h}x{w}) train {train}");
                let (lf, ls) = (
                    fast.logits(&x, train).unwrap(),
                    stock.logits(&x, train).unwrap(),
                );
                assert!(
                    rel_err(&lf, &ls) < 1e-4,
                    "logits {what}: {}",
                    rel_err(&lf, &ls)
                );
                let r = input_hw(n, 1, 5, 20)
                    .narrow(1, 0, 1)
                    .unwrap()
                    .reshape((n, 5))
                    .unwrap();
                let gf = (&lf * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let gs = (&ls * &r).unwrap().sum_all().unwrap().backward().unwrap();
                for (pf, ps) in fast.trainable_params().iter().zip(stock.trainable_params()) {
                    let (a, b) = (gf.get(&pf.var).unwrap(), gs.get(&ps.var).unwrap());
                    let e = rel_err(a, b);
                    assert!(e < 1e-4, "grad of {} {what}: {e}", pf.name);
                }
                let (sf, ss) = (fast.named_tensors(), stock.named_tensors());
                for (k, t) in &sf {
                    assert!(rel_err(t, &ss[k]) < 1e-4, "{k} {what}");
                }
            }
        }
    }

    /// The fast kernels give the same bits whatever the number of threads.
    #[test]
    fn fast_kernels_independent_of_thread_count() {
        let cfg = ModelConfig {
            arch: Arch::ResNet20,
            width: 4,
        };
        let x = input_hw(19, 12, 10, 5);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let m = Model::new(cfg, 4, 1, &Device::Cpu).unwrap();
                let l = m.logits(&x, true).unwrap();
                let g = l.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                let mut out = vec![l.flatten_all().unwrap().to_vec1::<f32>().unwrap()];
                for p in m.trainable_params() {
                    out.push(
                        g.get(&p.var)
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1()
                            .unwrap(),
                    );
                }
                out.extend(m.state_vecs().unwrap().into_values());
                out
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    #[test]
    fn config_serde() {
        let c: ModelConfig = toml::from_str("arch = \"resnet20\"\nwidth = 16").unwrap();
        assert_eq!(c, ModelConfig::standard(Arch::ResNet20));
        assert!(toml::from_str::<ModelConfig>("arch = \"resnet20\"\nwidth = 16\nx = 1").is_err());
        assert!(toml::from_str::<ModelConfig>("arch = \"resnet21\"\nwidth = 16").is_err());
        let s = serde_json::to_string(&ModelConfig::standard(Arch::ResNet18)).unwrap();
        assert_eq!(s, r#"{"arch":"resnet18","width":64}"#);
        assert!(ModelConfig {
            arch: Arch::ResNet8,
            width: 0
        }
        .validate()
        .is_err());
    }

    #[test]
    fn shapes_names_and_parameter_counts() {
        let dev = Device::Cpu;
        // ResNet-20 at width 16 has 0.27 M parameters (He et al.); with option-B shortcuts
        // (1x1 conv + BN at the two stage changes) and a 10-class head exactly this many:
        let m = Model::new(ModelConfig::standard(Arch::ResNet20), 10, 0, &dev).unwrap();
        assert_eq!(m.feature_dim(), 64);
        assert_eq!(m.num_parameters(), 272_474);
        // ResNet-18 (CIFAR stem) with a 100-class head: 11.22 M.
        let r18 = ModelConfig::standard(Arch::ResNet18);
        assert_eq!(r18.feature_dim(), 512);
        let m18 = Model::new(r18, 100, 0, &dev).unwrap();
        assert_eq!(m18.num_parameters(), 11_220_132);

        let m = Model::new(tiny(), 5, 0, &dev).unwrap();
        let names: Vec<String> = m.named_tensors().into_keys().collect();
        for n in [
            "backbone.stem.conv.weight",
            "backbone.stem.bn.running_var",
            "backbone.layer1.0.conv1.weight",
            "backbone.layer2.0.bn2.bias",
            "backbone.layer3.0.shortcut.conv.weight",
            "backbone.layer3.0.shortcut.bn.running_mean",
            "head.weight",
            "head.bias",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        assert!(!names
            .iter()
            .any(|x| x.starts_with("backbone.layer1.0.shortcut")));
        let x = input(2, 8, 1);
        assert_eq!(m.features(&x, false).unwrap().dims(), &[2, 16]);
        assert_eq!(m.logits(&x, true).unwrap().dims(), &[2, 5]);
        // Decay on conv/linear weights only.
        for p in m.trainable_params() {
            assert_eq!(p.weight_decay, p.var.rank() > 1, "{}", p.name);
        }
        assert!(m
            .features(&input(2, 8, 1).narrow(1, 0, 2).unwrap(), false)
            .is_err());
    }

    #[test]
    fn seeded_init_is_deterministic() {
        let dev = Device::Cpu;
        let a = Model::new(tiny(), 3, 7, &dev)
            .unwrap()
            .state_vecs()
            .unwrap();
        let b = Model::new(tiny(), 3, 7, &dev)
            .unwrap()
            .state_vecs()
            .unwrap();
        let c = Model::new(tiny(), 3, 8, &dev)
            .unwrap()
            .state_vecs()
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Kaiming fan-out scale: std of the stem weights ~ sqrt(2 / (4 * 9)) = 0.236.
        let w = &a["backbone.layer2.0.conv2.weight"]; // 8 x 8 x 3 x 3: std sqrt(2/72) = 0.167
        let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        assert!((var.sqrt() - 0.167).abs() < 0.03, "{}", var.sqrt());
    }

    #[test]
    fn batchnorm_modes() {
        let dev = Device::Cpu;
        let m = Model::new(tiny(), 3, 0, &dev).unwrap();
        let x = input(4, 8, 2);
        let before = m.state_vecs().unwrap();
        let e1 = m.logits(&x, false).unwrap().to_vec2::<f32>().unwrap();
        // Eval mode leaves running stats alone.
        assert_eq!(m.state_vecs().unwrap(), before);
        m.logits(&x, true).unwrap();
        let after = m.state_vecs().unwrap();
        // Train mode: running_mean = 0.9 * 0 + 0.1 * batch mean of the stem conv output.
        let stem_out = x
            .conv2d(&m.named_tensors()["backbone.stem.conv.weight"], 1, 1, 1, 1)
            .unwrap();
        let mean = stem_out.mean((0, 2, 3)).unwrap().to_vec1::<f32>().unwrap();
        let rm = &after["backbone.stem.bn.running_mean"];
        for (r, m) in rm.iter().zip(&mean) {
            assert!((r - 0.1 * m).abs() < 1e-5, "{r} vs {}", 0.1 * m);
        }
        // Unbiased batch variance: n / (n - 1) with n = 4 * 8 * 8.
        let var = stem_out
            .broadcast_sub(&stem_out.mean_keepdim((0, 2, 3)).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .mean((0, 2, 3))
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let rv = &after["backbone.stem.bn.running_var"];
        for (r, v) in rv.iter().zip(&var) {
            let want = 0.9 + 0.1 * v * 256.0 / 255.0;
            assert!((r - want).abs() < 1e-4, "{r} vs {want}");
        }
        // Eval output changed because the running statistics did.
        let e2 = m.logits(&x, false).unwrap().to_vec2::<f32>().unwrap();
        assert_ne!(e1, e2);
    }

    #[test]
    fn new_head_and_backbone_transfer() {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pre.safetensors");
        let pre = Model::new(tiny(), 10, 1, &dev).unwrap();
        pre.logits(&input(4, 8, 3), true).unwrap(); // move the BN stats off their init
        pre.save_weights(&path).unwrap();

        // A coarse model with another seed and head size takes the backbone only.
        let coarse = Model::new(tiny(), 2, 2, &dev).unwrap();
        let head_before = coarse.state_vecs().unwrap()["head.weight"].clone();
        coarse.load_backbone(&path).unwrap();
        let (a, b) = (pre.state_vecs().unwrap(), coarse.state_vecs().unwrap());
        for (k, v) in &a {
            if k.starts_with(BACKBONE_PREFIX) {
                assert_eq!(v, &b[k], "{k}");
            }
        }
        assert_eq!(b["head.weight"], head_before);
        assert_eq!(b["head.weight"].len(), 2 * 16);
        // Loading everything fails on the head's shape, naming the tensor, and changes nothing.
        let e = coarse.load_weights(&path).unwrap_err().to_string();
        assert!(e.contains("head.bias") || e.contains("head.weight"), "{e}");
        assert_eq!(coarse.state_vecs().unwrap(), b);
        // Same features after the transfer.
        let x = input(3, 8, 4);
        let fa = pre.features(&x, false).unwrap().to_vec2::<f32>().unwrap();
        let fb = coarse
            .features(&x, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(fa, fb);

        // replace_head: new size, seeded, backbone untouched, old head gone from the map.
        let mut ft = Model::new(tiny(), 10, 1, &dev).unwrap();
        ft.load_weights(&path).unwrap();
        ft.replace_head(3, 5).unwrap();
        assert_eq!(ft.num_classes(), 3);
        assert_eq!(ft.logits(&x, false).unwrap().dims(), &[3, 3]);
        let s = ft.state_vecs().unwrap();
        assert_eq!(s["head.bias"].len(), 3);
        assert_eq!(s.len(), a.len());
        let mut other = Model::new(tiny(), 10, 9, &dev).unwrap();
        other.replace_head(3, 5).unwrap();
        assert_eq!(other.state_vecs().unwrap()["head.weight"], s["head.weight"]);

        // Frozen backbone: only the head is trainable and no gradient reaches the backbone.
        ft.set_backbone_frozen(true);
        let names: Vec<String> = ft.trainable_params().into_iter().map(|p| p.name).collect();
        assert_eq!(names, vec!["head.weight", "head.bias"]);
        let before = ft.state_vecs().unwrap();
        let loss = ft.logits(&x, true).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let stem = &ft.backbone().params()[0];
        assert!(grads.get(&stem.var).is_none());
        assert!(grads.get(&ft.head().params()[0].var).is_some());
        assert_eq!(
            ft.state_vecs().unwrap(),
            before,
            "frozen BN stats must not move"
        );

        let missing = dir.path().join("nope.safetensors");
        let e = ft.load_backbone(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.safetensors"), "{e}");
    }
}
