//! The [`Backbone`]: stem, residual stages and global average pooling, run either by candle's
//! operations (the layers of [`super::blocks`]) or, with [`Kernels::Fast`] on the CPU, as one
//! operation of the CPU engine (private module `cpu`) built from a plan of the same layers.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::blocks::{BasicBlock, BatchNorm, ConvBn, BN_EPS};
use super::config::{Kernels, ModelConfig, IN_CHANNELS};
use super::cpu::profile::Profiler;
use super::cpu::{engine, Profile, Simd};
use super::error::ModelError;
use super::init::{Init, Param, BACKBONE_STREAM};

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
    prof: Arc<Profiler>,
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
    pub(super) fn new(
        config: ModelConfig,
        varmap: &VarMap,
        device: &Device,
        seed: u64,
        kernels: Kernels,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let mut init = Init::new(varmap, device, seed, BACKBONE_STREAM);
        let w = config.width;
        let stem = ConvBn::init(
            &mut init,
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
        let (plan, plan_bns) = Self::plan(&stem, &blocks, &params, Simd::from_env()?)?;
        Ok(Self {
            config,
            kernels,
            stem,
            blocks,
            params,
            plan: Arc::new(plan),
            plan_bns,
            pool: Arc::default(),
            prof: Arc::default(),
        })
    }

    /// The plan of [`engine`]: every layer with the offsets of its tensors in the packed
    /// parameters (in the order of `params`) and running statistics.
    fn plan(
        stem: &ConvBn,
        blocks: &[BasicBlock],
        params: &[Param],
        simd: Simd,
    ) -> Result<(engine::Plan, Vec<BatchNorm>), ModelError> {
        let mut offsets = HashMap::new();
        let mut n_params = 0;
        for p in params {
            offsets.insert(p.var.as_tensor().id(), n_params);
            n_params += p.var.elem_count();
        }
        let off = |t: &Tensor| {
            offsets.get(&t.id()).copied().ok_or_else(|| {
                ModelError::invalid("model", "a layer's tensor is not among the parameters")
            })
        };
        let mut bns = Vec::new();
        let mut n_running = 0;
        let mut conv_bn = |cb: &ConvBn| -> Result<(engine::ConvP, engine::BnP), ModelError> {
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
            simd,
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
        let (features, stats) = engine::forward(
            &self.plan, &self.pool, &self.prof, x, &params, &running, train,
        )?;
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

    /// The vector instructions of the fast kernels.
    pub fn simd(&self) -> Simd {
        self.plan.simd
    }

    /// Runs the fast kernels on `simd` from now on (every path gives the same bits; see
    /// [`Simd`]); an error if this processor lacks it.
    pub fn set_simd(&mut self, simd: Simd) -> Result<(), ModelError> {
        simd.check()?;
        Arc::make_mut(&mut self.plan).simd = simd;
        Ok(())
    }

    /// Starts (or stops) recording the time of every pass of the fast kernels.
    pub fn set_profiling(&self, on: bool) {
        self.prof.set(on);
    }

    /// The times recorded since the last call (see [`Backbone::set_profiling`]).
    pub fn take_profile(&self) -> Profile {
        self.prof.take()
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
