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
//! Every initial value is drawn from a generator seeded with the model's seed (private module
//! `init`), so the same seed gives the same bits: convolutions Kaiming-normal in fan-out mode
//! (`N(0, 2 / (out_channels * k * k))`, as torchvision's ResNets), BatchNorm weights 1 and
//! biases 0, the head PyTorch's `nn.Linear` default (uniform in `±1 / sqrt(feature_dim)`).
//!
//! # Speed and determinism
//!
//! [`Kernels`] chooses the implementation ([`Model::new_with`]; [`Model::new`] takes
//! [`Kernels::Fast`]). With [`Kernels::Fast`] on the CPU the whole backbone is one candle custom
//! operation with a hand-written backward pass (the CPU engine, private module `cpu`) on
//! channels-last buffers: candle sees one operation per step, so its per-tensor gradient
//! accumulation and its allocations disappear from the backbone, and the kernels fuse what a
//! framework runs as separate passes (BatchNorm statistics while a
//! convolution's output is in cache, BatchNorm + ReLU, BatchNorm + shortcut + ReLU). Results do
//! not depend on the number of threads: work is split by images or fixed chunks of images and
//! partial sums are added in a fixed order. No gradient flows to the input images.
//! [`Kernels::Stock`], and every device other than the CPU, use candle's operations
//! (`conv2d`, BatchNorm from tensor operations, `relu`); the tests check that both agree on the
//! logits, every parameter gradient and the running statistics (relative error below 1e-4).
//! Measured speeds are in the README ("Speed"); `empirical bench` measures them.
//!
//! Errors are [`ModelError`]s (the CPU engine's layers return candle's own `Result`).
//!
//! A [`Model`] owns its variables through its [`VarMap`]; it is deliberately not `Clone` (a
//! clone would share the variables). Training mutates the variables through `&Model`.

mod backbone;
mod blocks;
mod config;
mod cpu;
mod error;
mod head;
mod init;
mod io;
#[cfg(test)]
mod tests;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

pub use backbone::Backbone;
pub use blocks::{BN_EPS, BN_MOMENTUM};
pub use config::{Arch, Kernels, ModelConfig, IN_CHANNELS};
pub use cpu::{LayerTime, Pass, Profile, Simd, SimdError, SIMD_ENV};
pub use error::ModelError;
pub use head::{argmax_rows, Head};
pub use init::Param;
pub(crate) use io::{read_safetensors, safetensors_bytes};

use self::error::TensorContext;

/// Name prefix of the backbone tensors.
pub const BACKBONE_PREFIX: &str = "backbone.";
/// Name prefix of the head tensors.
pub const HEAD_PREFIX: &str = "head.";

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
            .field("config", &self.backbone.config())
            .field("num_classes", &self.head.num_classes())
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
    ) -> Result<Self, ModelError> {
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
    ) -> Result<Self, ModelError> {
        if num_classes == 0 {
            return Err(ModelError::invalid(
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
    pub fn replace_head(&mut self, num_classes: usize, seed: u64) -> Result<(), ModelError> {
        if num_classes == 0 {
            return Err(ModelError::invalid(
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

    /// Replaces the head by one with the given values (see [`Head`]; e.g. a linear probe's,
    /// [`crate::empirical::probe::LinearProbe::as_linear`]); the backbone is kept. Build a new
    /// optimizer afterwards, as for [`Model::replace_head`].
    pub fn replace_head_with(
        &mut self,
        num_classes: usize,
        weight: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<(), ModelError> {
        {
            let mut map = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|name, _| !name.starts_with(HEAD_PREFIX));
        }
        self.head = Head::with_values(
            self.feature_dim(),
            num_classes,
            &self.varmap,
            &self.device,
            weight,
            bias,
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
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        self.check_input(x)?;
        self.backbone.forward_t(x, train).ctx("backbone forward")
    }

    /// The logits `(N, num_classes)` of `x` `(N, 3, H, W)`. With a frozen backbone the features
    /// are computed in evaluation mode and detached whatever `train` says.
    pub fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        let f = if self.frozen {
            self.features(x, false)?.detach()
        } else {
            self.features(x, train)?
        };
        self.head.forward(&f).ctx("head forward")
    }

    /// The logits of precomputed features `(N, feature_dim)`.
    pub fn logits_from_features(&self, features: &Tensor) -> Result<Tensor, ModelError> {
        self.head.forward(features).ctx("head forward")
    }

    fn check_input(&self, x: &Tensor) -> Result<(), ModelError> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != IN_CHANNELS || dims[0] == 0 || dims[2] == 0 || dims[3] == 0
        {
            return Err(ModelError::invalid(
                "model input",
                format!("expected a non-empty batch of shape (N, 3, H, W), got {dims:?}"),
            ));
        }
        if x.dtype() != DType::F32 {
            return Err(ModelError::invalid(
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
        self.backbone.config()
    }

    /// Length of the feature vector.
    pub fn feature_dim(&self) -> usize {
        self.backbone.config().feature_dim()
    }

    /// Outputs of the head.
    pub fn num_classes(&self) -> usize {
        self.head.num_classes()
    }

    /// The device the tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// Runs the backbone's fast CPU kernels on `simd` (by default the fastest this processor
    /// has, or [`SIMD_ENV`]); every path gives the same bits. An error if the processor lacks it.
    pub fn set_simd(&mut self, simd: Simd) -> Result<(), ModelError> {
        self.backbone.set_simd(simd)
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The map holding every tensor (parameters and BatchNorm running statistics) by name.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }
}
