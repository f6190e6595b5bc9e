//! The whole backbone (stem, residual blocks, global average pooling) as one candle custom
//! operation with a hand-written backward pass, on channels-last buffers, for
//! [`super::super::Kernels::Fast`] on the CPU.
//!
//! `(x (N, 3, H, W), params, running) -> features (N, C)`, where `params` is the concatenation
//! of the flattened backbone parameters (in the order of [`super::super::Backbone::params`]) and
//! `running` that of every BatchNorm's running mean and variance; candle differentiates the
//! concatenation, so each parameter variable receives its own gradient. The input is converted
//! to NHWC once; every layer then runs on the NHWC kernels of [`super::kernels`], the forward
//! pass keeping the activations the backward pass needs. Buffers come from a [`Pool`] owned by
//! the backbone and go back to it when the graph is dropped, so that a training step reuses the
//! memory of the previous one. No gradient flows to `x`.

use std::sync::{Arc, Mutex};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::conv::ConvOp;
use super::gather::ConvGeom;
use super::isa::Simd;
use super::kernels::{
    bn_add_relu, bn_backward_apply, bn_backward_apply_inplace, bn_backward_coefs, bn_relu,
    relu_mask_reduce, to_nhwc, BnAffine, MaskReduce, ReluOf, Skip,
};
use super::profile::{Pass, Profiler};
use super::simd::affine3;

/// A convolution of the plan: offset of its weight in the packed parameters and its shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvP {
    pub off: usize,
    pub ci: usize,
    pub co: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

/// A BatchNorm of the plan: offsets of gamma and beta in the packed parameters, of the running
/// mean in the packed running statistics (the variance follows it), and its channels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BnP {
    pub gamma: usize,
    pub beta: usize,
    pub run: usize,
    pub c: usize,
}

/// A basic residual block of the plan.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockP {
    pub conv1: ConvP,
    pub bn1: BnP,
    pub conv2: ConvP,
    pub bn2: BnP,
    pub short: Option<(ConvP, BnP)>,
}

/// The network the operation runs.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub stem: (ConvP, BnP),
    pub blocks: Vec<BlockP>,
    pub n_params: usize,
    pub n_running: usize,
    pub eps: f64,
    /// The vector instructions of the kernels.
    pub simd: Simd,
}

impl Plan {
    /// The BatchNorms in the order of the statistics [`forward`] returns: stem, then per block
    /// bn1, bn2 and the shortcut's.
    fn bns(&self) -> Vec<BnP> {
        let mut v = vec![self.stem.1];
        for b in &self.blocks {
            v.push(b.bn1);
            v.push(b.bn2);
            if let Some((_, bn)) = b.short {
                v.push(bn);
            }
        }
        v
    }
}

/// Free buffers for reuse across steps.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    free: Mutex<Vec<Vec<f32>>>,
}

/// Buffers kept by a pool at most.
const POOL_MAX: usize = 512;

impl Pool {
    /// A buffer of `len` values (contents unspecified) from the pool, as small as fits.
    fn take(self: &Arc<Self>, len: usize) -> Buf {
        let found = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, v)| v.len() >= len)
                .min_by_key(|(_, v)| v.len())
                .map(|(i, _)| i);
            best.map(|i| free.swap_remove(i))
        };
        Buf {
            // A pooled vector keeps its full length (its values are initialised), so that
            // taking it again costs nothing.
            v: found.unwrap_or_else(|| vec![0f32; len]),
            len,
            pool: Arc::clone(self),
        }
    }
}

/// A buffer of `len` values that goes back to its [`Pool`] when dropped.
struct Buf {
    v: Vec<f32>,
    len: usize,
    pool: Arc<Pool>,
}

impl Drop for Buf {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < POOL_MAX {
            free.push(v);
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.v[..self.len]
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.v[..self.len]
    }
}

/// Profile names of the passes that are not convolutions.
const BN: &str = "batchnorm, relu, shortcut";
const LAYOUT: &str = "layout, pooling";
const PACK: &str = "weight packing";

/// A convolution of the plan for one step: its shape and packed weights.
type Kern = ConvOp;

/// The convolution `c` of the plan over `h x w` images with its weights from `params`.
fn kern(c: &ConvP, params: &[f32], h: usize, w: usize, simd: Simd) -> Result<Kern> {
    let geom = ConvGeom::new(h, w, c.ci, c.co, c.k, c.stride, c.pad)?;
    let wt = &params[c.off..c.off + c.co * c.ci * c.k * c.k];
    Ok(ConvOp::new(geom, wt, simd))
}

/// The ReLU that ends a block (or the stem), for a [`MaskReduce`]: what it was applied to, the
/// BatchNorm inputs behind it, channels and values per image.
type FinalRelu<'a> = (ReluOf<'a>, Vec<(&'a [f32], &'a BnAffine)>, usize, usize);

/// What the forward pass keeps of one block.
struct SavedBlock {
    conv1: Kern,
    conv2: Kern,
    short: Option<Kern>,
    h1: Buf,
    a1: Buf,
    h2: Buf,
    hs: Option<Buf>,
    out: Buf,
    bn1: BnAffine,
    bn2: BnAffine,
    bns: Option<BnAffine>,
}

/// What the forward pass keeps for the backward pass.
struct Saved {
    n: usize,
    x: Buf,
    stem: Kern,
    h0: Buf,
    a0: Buf,
    bn0: BnAffine,
    blocks: Vec<SavedBlock>,
    /// BatchNorm weights in the order of [`Plan::bns`].
    gammas: Vec<Vec<f32>>,
}

/// The operation; see the module doc.
pub(crate) struct BackboneOp {
    plan: Arc<Plan>,
    pool: Arc<Pool>,
    train: bool,
    saved: Mutex<Option<Saved>>,
    stats: Arc<Mutex<Vec<BnAffine>>>,
    prof: Arc<Profiler>,
}

/// The features of `x` (N, 3, H, W) and, in training mode, the batch statistics of every
/// BatchNorm (in the order of the plan: stem, then per block bn1, bn2, shortcut).
pub(crate) fn forward(
    plan: &Arc<Plan>,
    pool: &Arc<Pool>,
    prof: &Arc<Profiler>,
    x: &Tensor,
    params: &Tensor,
    running: &Tensor,
    train: bool,
) -> Result<(Tensor, Vec<BnAffine>)> {
    let stats = Arc::new(Mutex::new(Vec::new()));
    let op = BackboneOp {
        plan: Arc::clone(plan),
        pool: Arc::clone(pool),
        train,
        saved: Mutex::new(None),
        stats: Arc::clone(&stats),
        prof: Arc::clone(prof),
    };
    let f = x.contiguous()?.apply_op3(params, running, op)?;
    let s = std::mem::take(&mut *stats.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((f, s))
}

/// The contiguous `f32` data of an argument.
fn data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let v = match s {
        CpuStorage::F32(v) => v,
        _ => bail!("{what}: expected f32 data"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

impl BackboneOp {
    /// The affine map of BatchNorm `bn` over `y` (n images of `img` values), from the sums of
    /// the convolution in training mode or the running statistics otherwise.
    fn affine(
        &self,
        bn: &BnP,
        params: &[f32],
        running: &[f32],
        sums: &[f64],
        count: usize,
    ) -> Result<BnAffine> {
        let gamma = &params[bn.gamma..bn.gamma + bn.c];
        let beta = &params[bn.beta..bn.beta + bn.c];
        if self.train {
            if count < 2 {
                bail!(
                    "batch-norm in training mode needs more than one value per channel, got \
                     {count}"
                )
            }
            Ok(BnAffine::from_sums(sums, count, gamma, beta, self.plan.eps))
        } else {
            let m = running[bn.run..bn.run + bn.c].to_vec();
            let v = running[bn.run + bn.c..bn.run + 2 * bn.c].to_vec();
            Ok(BnAffine::from_mean_var(m, v, gamma, beta, self.plan.eps))
        }
    }

    /// Convolution `k` of `x` (n images) into a fresh buffer, with the output's sums in
    /// training mode.
    fn conv(&self, k: &Kern, n: usize, x: &[f32]) -> (Buf, Vec<f64>) {
        let mut out = self.pool.take(n * k.geom.out_len());
        let sums = self.timed_conv(k, Pass::Forward, n, || k.forward(x, &mut out, self.train));
        (out, sums)
    }

    /// The input gradient of convolution `k`: `dx = [dx +] conv^T(dy)`.
    fn conv_dx(&self, k: &Kern, dy: &[f32], dx: &mut [f32], accumulate: bool) {
        let n = dy.len() / k.geom.out_len();
        self.timed_conv(k, Pass::InputGrad, n, || k.grad_input(dy, dx, accumulate));
    }

    /// [`BackboneOp::conv_dx`] fused with the ReLU mask and BatchNorm sums `mr` of the layer
    /// below, image by image while each image of `dx` is in cache: the sums of
    /// [`MaskReduce::finish`].
    fn conv_dx_mask(
        &self,
        k: &Kern,
        dy: &[f32],
        dx: &mut [f32],
        accumulate: bool,
        mr: &MaskReduce<'_>,
    ) -> Vec<Vec<f64>> {
        let n = dy.len() / k.geom.out_len();
        let parts = self.timed_conv(k, Pass::InputGrad, n, || {
            k.grad_input_then(dy, dx, accumulate, |i, img| mr.image(i, img))
        });
        mr.finish(parts)
    }

    /// Both gradients of convolution `k` (plan entry `cp`, input `input`) whose output feeds a
    /// BatchNorm with input `h` and backward coefficients `coefs` (its input gradient `dh = a
    /// dz + b h + k` from the gradient `dz` at its output): the weight gradient into `dp`, the
    /// input gradient `dx = [dx +] conv^T(dh)`, and with `mr` the ReLU mask and sums of the
    /// layer below on `dx` (returned). In one pass over the batch, `dh` made chunk by chunk in
    /// cache, where the layer fuses ([`ConvOp::fuses`]) and the profiler is off (it times the
    /// passes apart); else `dh` is written out and the passes run one after the other. The
    /// same bits either way.
    #[allow(clippy::too_many_arguments)]
    fn conv_backward(
        &self,
        dp: &mut [f32],
        cp: &ConvP,
        k: &Kern,
        input: &[f32],
        (dz, h, coefs): (&[f32], &[f32], &[Vec<f32>; 3]),
        dx: &mut [f32],
        accumulate: bool,
        mr: Option<&MaskReduce<'_>>,
    ) -> Option<Vec<Vec<f64>>> {
        let n = dz.len() / k.geom.out_len();
        let dw = &mut dp[cp.off..cp.off + cp.co * cp.ci * cp.k * cp.k];
        if k.fuses(n) && !self.prof.on() {
            let (img, co) = (k.geom.out_len(), cp.co);
            let [a, b, kc] = coefs;
            let parts = k.backward(
                n,
                input,
                |i, dh| {
                    let r = i * img..(i + 1) * img;
                    affine3(&dz[r.clone()], &h[r], a, b, kc, co, dh)
                },
                dw,
                dx,
                accumulate,
                |i, img| mr.map(|m| m.image(i, img)),
            );
            return mr.map(|m| m.finish(parts.into_iter().flatten().collect()));
        }
        let mut dh = self.pool.take(dz.len());
        self.timed(BN, Pass::InputGrad, || {
            bn_backward_apply(dz, h, coefs, cp.co, &mut dh)
        });
        self.timed_conv(k, Pass::WeightGrad, n, || k.grad_weight(n, input, &dh, dw));
        match mr {
            Some(m) => Some(self.conv_dx_mask(k, &dh, dx, accumulate, m)),
            None => {
                self.conv_dx(k, &dh, dx, accumulate);
                None
            }
        }
    }

    /// Runs `f`, pass `pass` of convolution `k` over `n` images, timed when profiling.
    fn timed_conv<R>(&self, k: &Kern, pass: Pass, n: usize, f: impl FnOnce() -> R) -> R {
        let g = &k.geom;
        let flops = 2.0 * (n * g.ho * g.wo * g.co * g.ci * g.k * g.k) as f64;
        let name = || {
            format!(
                "conv {}x{} {}->{} s{} {}x{}",
                g.k, g.k, g.ci, g.co, g.s, g.h, g.w
            )
        };
        self.prof.time(name, pass, flops, f)
    }

    /// Runs `f`, an element-wise or layout pass named `what`, timed when profiling.
    fn timed<R>(&self, what: &str, pass: Pass, f: impl FnOnce() -> R) -> R {
        self.prof.time(|| what.to_string(), pass, 0.0, f)
    }
}

impl CustomOp3 for BackboneOp {
    fn name(&self) -> &'static str {
        "granularity-backbone"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let &[n, c_in, h, w] = l1.dims() else {
            bail!("backbone: expected (N, C, H, W) input, got {:?}", l1.dims())
        };
        let plan = &self.plan;
        let x_nchw = data(s1, l1, "backbone input")?;
        let params = data(s2, l2, "backbone parameters")?;
        let running = data(s3, l3, "backbone running statistics")?;
        if params.len() != plan.n_params || running.len() != plan.n_running {
            bail!(
                "backbone: {} parameters and {} running statistics, expected {} and {}",
                params.len(),
                running.len(),
                plan.n_params,
                plan.n_running
            )
        }
        if c_in != plan.stem.0.ci || n == 0 {
            bail!(
                "backbone: expected a non-empty batch with {} channels, got {:?}",
                plan.stem.0.ci,
                l1.dims()
            )
        }
        let mut x = self.pool.take(x_nchw.len());
        self.timed(LAYOUT, Pass::Forward, || {
            to_nhwc(x_nchw, c_in, h * w, &mut x)
        });

        let stem = self.timed(PACK, Pass::Forward, || {
            kern(&plan.stem.0, params, h, w, plan.simd)
        })?;
        let (h0, sums) = self.conv(&stem, n, &x);
        let bn0 = self.affine(
            &plan.stem.1,
            params,
            running,
            &sums,
            n * stem.geom.ho * stem.geom.wo,
        )?;
        let mut a0 = self.pool.take(h0.len());
        self.timed(BN, Pass::Forward, || {
            bn_relu(&h0, &bn0, stem.geom.co, &mut a0)
        });
        let (mut hh, mut ww) = (stem.geom.ho, stem.geom.wo);

        let mut blocks: Vec<SavedBlock> = Vec::with_capacity(plan.blocks.len());
        for bp in &plan.blocks {
            let input: &[f32] = blocks.last().map_or(&a0, |b| &b.out);
            let conv1 = self.timed(PACK, Pass::Forward, || {
                kern(&bp.conv1, params, hh, ww, plan.simd)
            })?;
            let (ho, wo) = (conv1.geom.ho, conv1.geom.wo);
            let count = n * ho * wo;
            let (h1, s1) = self.conv(&conv1, n, input);
            let bn1 = self.affine(&bp.bn1, params, running, &s1, count)?;
            let mut a1 = self.pool.take(h1.len());
            self.timed(BN, Pass::Forward, || {
                bn_relu(&h1, &bn1, bp.conv1.co, &mut a1)
            });
            let conv2 = self.timed(PACK, Pass::Forward, || {
                kern(&bp.conv2, params, ho, wo, plan.simd)
            })?;
            let (h2, s2) = self.conv(&conv2, n, &a1);
            let bn2 = self.affine(&bp.bn2, params, running, &s2, count)?;
            let mut out = self.pool.take(h2.len());
            let (short, hs, bns) = match &bp.short {
                Some((cp, bp_s)) => {
                    let k =
                        self.timed(PACK, Pass::Forward, || kern(cp, params, hh, ww, plan.simd))?;
                    let (hs, ss) = self.conv(&k, n, input);
                    let bns = self.affine(bp_s, params, running, &ss, count)?;
                    self.timed(BN, Pass::Forward, || {
                        bn_add_relu(&h2, &bn2, Skip::Bn(&hs, &bns), bp.conv2.co, &mut out)
                    });
                    (Some(k), Some(hs), Some(bns))
                }
                None => {
                    if input.len() != out.len() {
                        bail!("backbone: identity shortcut with a change of shape")
                    }
                    self.timed(BN, Pass::Forward, || {
                        bn_add_relu(&h2, &bn2, Skip::Identity(input), bp.conv2.co, &mut out)
                    });
                    (None, None, None)
                }
            };
            blocks.push(SavedBlock {
                conv1,
                conv2,
                short,
                h1,
                a1,
                h2,
                hs,
                out,
                bn1,
                bn2,
                bns,
            });
            (hh, ww) = (ho, wo);
        }

        // Global average pooling.
        let last: &[f32] = blocks.last().map_or(&a0, |b| &b.out);
        let c = plan.blocks.last().map_or(plan.stem.0.co, |b| b.conv2.co);
        let hw = hh * ww;
        let mut feat = vec![0f32; n * c];
        for (f, img) in feat.chunks_exact_mut(c).zip(last.chunks_exact(hw * c)) {
            for px in img.chunks_exact(c) {
                for (f, v) in f.iter_mut().zip(px) {
                    *f += v;
                }
            }
            for f in f.iter_mut() {
                *f /= hw as f32;
            }
        }

        if self.train {
            let mut st = vec![bn0.clone()];
            for b in &blocks {
                st.push(b.bn1.clone());
                st.push(b.bn2.clone());
                if let Some(s) = &b.bns {
                    st.push(s.clone());
                }
            }
            *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = st;
        }
        let gammas = plan
            .bns()
            .iter()
            .map(|b| params[b.gamma..b.gamma + b.c].to_vec())
            .collect();
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Saved {
            n,
            x,
            stem,
            h0,
            a0,
            bn0,
            blocks,
            gammas,
        });
        Ok((CpuStorage::F32(feat), Shape::from((n, c))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _params: &Tensor,
        _running: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(sv) = self.saved.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            bail!("backbone backward: called twice or without a forward pass")
        };
        let plan = &self.plan;
        let dfeat = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let n = sv.n;
        let mut dp = vec![0f32; plan.n_params];
        let train = self.train;
        let bn_grads = |dp: &mut [f32], bn: &BnP, dg: &[f32], db: &[f32]| {
            dp[bn.gamma..bn.gamma + bn.c].copy_from_slice(dg);
            dp[bn.beta..bn.beta + bn.c].copy_from_slice(db);
        };
        let conv_grad = |dp: &mut [f32], c: &ConvP, k: &Kern, input: &[f32], dy: &[f32]| {
            let len = c.co * c.ci * c.k * c.k;
            self.timed_conv(k, Pass::WeightGrad, n, || {
                k.grad_weight(n, input, dy, &mut dp[c.off..c.off + len])
            });
        };

        // The BatchNorm weights, stem first, then per block bn1, bn2 and the shortcut's.
        let mut gammas = sv.gammas.iter();
        let mut next = || gammas.next().map(Vec::as_slice).unwrap_or_default();
        let g0 = next();
        let block_gammas: Vec<_> = plan
            .blocks
            .iter()
            .map(|bp| (next(), next(), bp.short.map(|_| next())))
            .collect();

        // Gradient of the last activation: the pooling spreads dfeat / HW over every pixel.
        let (last, c): (&[f32], usize) = match sv.blocks.last() {
            Some(b) => (&b.out, b.conv2.geom.co),
            None => (&sv.a0, sv.stem.geom.co),
        };
        let hw = last.len() / (n * c);
        let mut d = self.pool.take(last.len());
        for (dimg, f) in d.chunks_exact_mut(hw * c).zip(dfeat.chunks_exact(c)) {
            for px in dimg.chunks_exact_mut(c) {
                for (v, f) in px.iter_mut().zip(f) {
                    *v = f / hw as f32;
                }
            }
        }

        // The ReLU that ends block i (the stem for None): what it was applied to, the
        // BatchNorm inputs behind it, channels and values per image.
        let final_relu = |i: Option<usize>| -> FinalRelu<'_> {
            match i {
                Some(i) => {
                    let sb = &sv.blocks[i];
                    let mut norms: Vec<(&[f32], &BnAffine)> = vec![(&sb.h2, &sb.bn2)];
                    let relu = match (&sb.hs, &sb.bns) {
                        (Some(hs), Some(bns)) => {
                            norms.push((hs, bns));
                            ReluOf::Norms
                        }
                        _ => ReluOf::Output(&sb.out),
                    };
                    (relu, norms, sb.conv2.geom.co, sb.conv2.geom.out_len())
                }
                None => (
                    ReluOf::Norms,
                    vec![(&sv.h0, &sv.bn0)],
                    sv.stem.geom.co,
                    sv.stem.geom.out_len(),
                ),
            }
        };
        // The sums of the ReLU mask below the current layer, when the input gradient that
        // reached it already applied it.
        let mut masked: Option<Vec<Vec<f64>>> = None;
        for (i, (bp, sb)) in plan.blocks.iter().zip(&sv.blocks).enumerate().rev() {
            let input: &[f32] = if i == 0 {
                &sv.a0
            } else {
                &sv.blocks[i - 1].out
            };
            let (g1, g2, gs) = &block_gammas[i];
            // Through the final ReLU; sums for bn2 (and the shortcut's BatchNorm).
            let sums = match masked.take() {
                Some(s) => s,
                None => {
                    let (relu, norms, c, img) = final_relu(Some(i));
                    let mr = MaskReduce {
                        relu,
                        norms: &norms,
                        c,
                        img,
                    };
                    self.timed(BN, Pass::InputGrad, || relu_mask_reduce(&mut d, &mr))
                }
            };
            let ((dg2, db2), c2) = bn_backward_coefs(&sums[0], &sb.bn2, g2, train);
            bn_grads(&mut dp, &bp.bn2, &dg2, &db2);
            // conv2, with bn1's ReLU mask and sums on its input gradient.
            let mut da1 = self.pool.take(sb.a1.len());
            let mr1 = MaskReduce {
                relu: ReluOf::Norms,
                norms: &[(&sb.h1, &sb.bn1)],
                c: bp.bn1.c,
                img: sb.conv1.geom.out_len(),
            };
            let s1 = self
                .conv_backward(
                    &mut dp,
                    &bp.conv2,
                    &sb.conv2,
                    &sb.a1,
                    (&d, &sb.h2, &c2),
                    &mut da1,
                    false,
                    Some(&mr1),
                )
                .unwrap_or_default();
            let ((dg1, db1), c1) = bn_backward_coefs(&s1[0], &sb.bn1, g1, train);
            bn_grads(&mut dp, &bp.bn1, &dg1, &db1);
            // conv1, and the block input's gradient, with the mask of the ReLU below applied
            // by the last input gradient added into it.
            let (relu, norms, c, img) = final_relu(i.checked_sub(1));
            let below = MaskReduce {
                relu,
                norms: &norms,
                c,
                img,
            };
            d = match (&bp.short, &sb.short, &sb.hs, &sb.bns, gs) {
                (Some((cs, bs)), Some(ks), Some(hs), Some(bns), Some(gs)) => {
                    let ((dgs, dbs), cfs) = bn_backward_coefs(&sums[1], bns, gs, train);
                    bn_grads(&mut dp, bs, &dgs, &dbs);
                    let mut din = self.pool.take(input.len());
                    let one = (&da1[..], &sb.h1[..], &c1);
                    self.conv_backward(
                        &mut dp, &bp.conv1, &sb.conv1, input, one, &mut din, false, None,
                    );
                    let short = (&d[..], &hs[..], &cfs);
                    masked = self.conv_backward(
                        &mut dp,
                        cs,
                        ks,
                        input,
                        short,
                        &mut din,
                        true,
                        Some(&below),
                    );
                    din
                }
                _ => {
                    // Identity shortcut: the block input's gradient starts as dz.
                    let one = (&da1[..], &sb.h1[..], &c1);
                    let mut din = d;
                    masked = self.conv_backward(
                        &mut dp,
                        &bp.conv1,
                        &sb.conv1,
                        input,
                        one,
                        &mut din,
                        true,
                        Some(&below),
                    );
                    din
                }
            };
        }

        // Stem.
        let co = sv.stem.geom.co;
        let s0 = match masked.take() {
            Some(s) => s,
            None => {
                let (relu, norms, c, img) = final_relu(None);
                let mr = MaskReduce {
                    relu,
                    norms: &norms,
                    c,
                    img,
                };
                self.timed(BN, Pass::InputGrad, || relu_mask_reduce(&mut d, &mr))
            }
        };
        let ((dg0, db0), c0) = bn_backward_coefs(&s0[0], &sv.bn0, g0, train);
        bn_grads(&mut dp, &plan.stem.1, &dg0, &db0);
        self.timed(BN, Pass::InputGrad, || {
            bn_backward_apply_inplace(&mut d, &sv.h0, &c0, co)
        });
        conv_grad(&mut dp, &plan.stem.0, &sv.stem, &sv.x, &d);
        let dp = Tensor::from_vec(dp, plan.n_params, x.device())?;
        Ok((None, Some(dp), None))
    }
}
