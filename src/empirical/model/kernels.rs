//! Deterministic CPU kernels on channels-last (NHWC) `f32` slices: convolution (forward, input
//! gradient, weight gradient), training- and evaluation-mode BatchNorm fused with ReLU and with
//! the residual addition, and their backward passes. [`super::engine`] chains them into a whole
//! backbone forward and backward pass; [`super::simd`] holds the vectorised inner loops.
//!
//! * Convolution: im2col of blocks of about [`BLOCK_PIX`] output pixels of one image (each
//!   pixel's `k x k x C` patch is a contiguous row; for a stride-1 row the `k` taps are one copy)
//!   and one `gemm` per block, the output block written in place; the BatchNorm statistics of
//!   the output are summed while the image is still in cache. The input gradient of a stride-1
//!   convolution is the forward convolution of the output gradient with the flipped, transposed
//!   kernel (a gather: no scatter and no zeroing); a strided one is `gemm` then col2im. The
//!   weight gradient sums `dy^T col` over fixed chunks of [`WGRAD_CHUNK`] images.
//! * BatchNorm: one pass applies `scale * x + shift`, ReLU and, at the end of a residual block,
//!   the shortcut (itself normalised or the identity). The backward pass is two passes: one
//!   masks the gradient with the ReLU and sums `dz` and `dz * xhat` per channel, one writes
//!   `dx = a dz + b x + c` with per-channel coefficients.
//!
//! Determinism: every kernel splits its work by whole images (or fixed chunks of images), each
//! task computed by one thread in a fixed order, and per-image or per-chunk partial sums are
//! added in image order; `gemm` runs single-threaded inside each task. Results therefore do not
//! depend on the number of threads.
//!
//! [`batch_norm_train_ops`] is the BatchNorm of [`super::Kernels::Stock`], from candle's tensor
//! operations.

use candle_core::{bail, Result, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::simd;

/// Output pixels per im2col block (and per `gemm` call) of a convolution.
pub(super) const BLOCK_PIX: usize = 256;

/// Images per partial sum of a weight gradient (fixed, so that the summation order, and so the
/// result, does not depend on the thread count).
pub(super) const WGRAD_CHUNK: usize = 8;

thread_local! {
    /// Per-thread im2col buffer, reused across calls.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on a scratch buffer of `len` values (contents unspecified) owned by this thread.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        // Re-entered on this thread (not expected): use a fresh buffer.
        Err(_) => f(&mut vec![0f32; len]),
    })
}

/// `dst (m x n) = [dst +] a (m x k) * b (k x n)`, single-threaded; every matrix given by its
/// pointer and (row stride, column stride), `dst` by its row stride (column stride 1).
///
/// # Safety
/// The pointers must be valid for the given sizes and strides, and `dst` must not overlap the
/// inputs.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: *const f32,
    (a_rs, a_cs): (usize, usize),
    b: *const f32,
    (b_rs, b_cs): (usize, usize),
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a,
            a_cs as isize,
            a_rs as isize,
            b,
            b_cs as isize,
            b_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// The shape of one convolution over one image, channels last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ConvGeom {
    /// Input rows.
    pub h: usize,
    /// Input columns.
    pub w: usize,
    /// Input channels.
    pub ci: usize,
    /// Output channels.
    pub co: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub s: usize,
    /// Zero padding.
    pub p: usize,
    /// Output rows.
    pub ho: usize,
    /// Output columns.
    pub wo: usize,
}

impl ConvGeom {
    /// A convolution of `ci` to `co` channels with a `k x k` kernel over an `h x w` image.
    pub fn new(
        h: usize,
        w: usize,
        ci: usize,
        co: usize,
        k: usize,
        s: usize,
        p: usize,
    ) -> Result<Self> {
        if k == 0 || s == 0 || h + 2 * p < k || w + 2 * p < k || ci == 0 || co == 0 {
            bail!("conv2d: a {k}x{k} kernel (stride {s}, padding {p}) does not fit a {h}x{w} image")
        }
        Ok(Self {
            h,
            w,
            ci,
            co,
            k,
            s,
            p,
            ho: (h + 2 * p - k) / s + 1,
            wo: (w + 2 * p - k) / s + 1,
        })
    }

    /// Columns of the im2col matrix (`k * k * ci`, ordered (ky, kx, c)).
    pub fn kk(&self) -> usize {
        self.k * self.k * self.ci
    }

    /// Values of one input image.
    pub fn in_len(&self) -> usize {
        self.h * self.w * self.ci
    }

    /// Values of one output image.
    pub fn out_len(&self) -> usize {
        self.ho * self.wo * self.co
    }

    /// True when im2col is the identity (1x1, stride 1, no padding).
    fn pointwise(&self) -> bool {
        self.k == 1 && self.s == 1 && self.p == 0
    }

    /// Output rows per im2col block.
    fn rows_per_block(&self) -> usize {
        (BLOCK_PIX / self.wo).clamp(1, self.ho)
    }

    /// The geometry of the input gradient of a stride-1 convolution as a forward convolution
    /// of the output gradient (with the flipped, transposed kernel), when there is one.
    fn transposed(&self) -> Option<Self> {
        (self.s == 1 && self.p < self.k).then(|| Self {
            h: self.ho,
            w: self.wo,
            ci: self.co,
            co: self.ci,
            k: self.k,
            s: 1,
            p: self.k - 1 - self.p,
            ho: self.h,
            wo: self.w,
        })
    }

    /// Input column of output column `ox` at tap 0 (may be negative).
    #[inline]
    fn ix0(&self, ox: usize) -> isize {
        (ox * self.s) as isize - self.p as isize
    }

    /// Input row of output row `oy` at tap `ky`, if inside the image.
    #[inline]
    fn iy(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.s + ky)
            .checked_sub(self.p)
            .filter(|&i| i < self.h)
    }

    /// `col[(oy - oy0, ox), (ky, kx, c)] = img[oy * s + ky - p, ox * s + kx - p, c]`, 0 outside.
    fn im2col(&self, img: &[f32], oy0: usize, oy1: usize, col: &mut [f32]) {
        let (k, ci, kk) = (self.k, self.ci, self.kk());
        let run = k * ci;
        for oy in oy0..oy1 {
            for ky in 0..k {
                let iy = self.iy(oy, ky);
                for ox in 0..self.wo {
                    let base = ((oy - oy0) * self.wo + ox) * kk + ky * run;
                    let dst = &mut col[base..base + run];
                    let Some(iy) = iy else {
                        dst.fill(0.0);
                        continue;
                    };
                    let row = &img[iy * self.w * ci..(iy + 1) * self.w * ci];
                    let ix0 = self.ix0(ox);
                    if ix0 >= 0 && ix0 as usize + k <= self.w {
                        let i = ix0 as usize * ci;
                        dst.copy_from_slice(&row[i..i + run]);
                    } else {
                        for kx in 0..k {
                            let ix = ix0 + kx as isize;
                            let d = &mut dst[kx * ci..(kx + 1) * ci];
                            if ix < 0 || ix as usize >= self.w {
                                d.fill(0.0);
                            } else {
                                let i = ix as usize * ci;
                                d.copy_from_slice(&row[i..i + ci]);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`ConvGeom::im2col`]: adds `col` into `img`.
    fn col2im_add(&self, col: &[f32], oy0: usize, oy1: usize, img: &mut [f32]) {
        let (k, ci, kk) = (self.k, self.ci, self.kk());
        let run = k * ci;
        for oy in oy0..oy1 {
            for ky in 0..k {
                let Some(iy) = self.iy(oy, ky) else { continue };
                let row = &mut img[iy * self.w * ci..(iy + 1) * self.w * ci];
                for ox in 0..self.wo {
                    let base = ((oy - oy0) * self.wo + ox) * kk + ky * run;
                    let src = &col[base..base + run];
                    let ix0 = self.ix0(ox);
                    for kx in 0..k {
                        let ix = ix0 + kx as isize;
                        if ix >= 0 && (ix as usize) < self.w {
                            let i = ix as usize * ci;
                            for (d, v) in row[i..i + ci].iter_mut().zip(&src[kx * ci..]) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// One image: `out = [out +] conv(img, wr)` with `wr` the kernel as `co x (ky, kx, ci)`.
    fn forward_image(&self, img: &[f32], wr: &[f32], out: &mut [f32], accumulate: bool) {
        let (kk, co, wo) = (self.kk(), self.co, self.wo);
        if self.pointwise() {
            // SAFETY: out is hw x co, img is hw x ci, wr^T is ci x co read from the row-major
            // co x ci kernel; distinct buffers.
            unsafe {
                matmul(
                    self.ho * wo,
                    co,
                    kk,
                    out.as_mut_ptr(),
                    co,
                    accumulate,
                    img.as_ptr(),
                    (kk, 1),
                    wr.as_ptr(),
                    (1, kk),
                );
            }
            return;
        }
        let rb = self.rows_per_block();
        with_scratch(rb * wo * kk, |col| {
            for oy0 in (0..self.ho).step_by(rb) {
                let oy1 = (oy0 + rb).min(self.ho);
                self.im2col(img, oy0, oy1, col);
                let out = &mut out[oy0 * wo * co..oy1 * wo * co];
                // SAFETY: out is m x co, col is m x kk, wr^T is kk x co; distinct buffers.
                unsafe {
                    matmul(
                        (oy1 - oy0) * wo,
                        co,
                        kk,
                        out.as_mut_ptr(),
                        co,
                        accumulate,
                        col.as_ptr(),
                        (kk, 1),
                        wr.as_ptr(),
                        (1, kk),
                    );
                }
            }
        })
    }
}

/// The kernel `w` (`co x ci x k x k`, PyTorch's layout) as `co x (ky, kx, ci)`.
pub(super) fn pack_kernel(w: &[f32], co: usize, ci: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for o in 0..co {
        for c in 0..ci {
            for t in 0..k * k {
                out[(o * k * k + t) * ci + c] = w[(o * ci + c) * k * k + t];
            }
        }
    }
    out
}

/// The kernel `w` (`co x ci x k x k`) flipped and transposed, as `ci x (ky, kx, co)`: the
/// kernel of the input gradient of a stride-1 convolution.
pub(super) fn pack_kernel_flipped(w: &[f32], co: usize, ci: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    let kk = k * k;
    for o in 0..co {
        for c in 0..ci {
            for t in 0..kk {
                out[(c * kk + (kk - 1 - t)) * co + o] = w[(o * ci + c) * kk + t];
            }
        }
    }
    out
}

/// The gradient in the packed layout of [`pack_kernel`] back in PyTorch's layout.
pub(super) fn unpack_kernel(wr: &[f32], co: usize, ci: usize, k: usize, out: &mut [f32]) {
    for o in 0..co {
        for c in 0..ci {
            for t in 0..k * k {
                out[(o * ci + c) * k * k + t] = wr[(o * k * k + t) * ci + c];
            }
        }
    }
}

/// Adds the per-image partial sums `parts` in image order.
fn sum_parts(parts: Vec<Vec<f64>>, len: usize) -> Vec<f64> {
    let mut total = vec![0f64; len];
    for p in parts {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Per-channel sum and sum of squares (`2 c` values) of one NHWC image.
fn channel_sums(img: &[f32], c: usize) -> Vec<f64> {
    let mut s = vec![0f64; 2 * c];
    let (sum, sq) = s.split_at_mut(c);
    simd::channel_sums(img, c, sum, sq);
    s
}

/// The forward convolution of a batch `x` (`n` NHWC images) with the packed kernel `wr`
/// ([`pack_kernel`]) into `out`; with `stats`, returns the per-channel sum and sum of squares
/// of the output (`2 co` values, summed image by image in order), else an empty vector.
pub(super) fn conv_forward(
    g: &ConvGeom,
    x: &[f32],
    wr: &[f32],
    out: &mut [f32],
    stats: bool,
) -> Vec<f64> {
    let parts: Vec<Vec<f64>> = out
        .par_chunks_mut(g.out_len())
        .zip(x.par_chunks(g.in_len()))
        .map(|(o, img)| {
            g.forward_image(img, wr, o, false);
            if stats {
                channel_sums(o, g.co)
            } else {
                Vec::new()
            }
        })
        .collect();
    if stats {
        sum_parts(parts, 2 * g.co)
    } else {
        Vec::new()
    }
}

/// The input gradient of a convolution: `dx = [dx +] conv^T(dy)`, with the kernel packed by
/// [`pack_kernel`] (`wr`) and by [`pack_kernel_flipped`] (`wf`).
pub(super) fn conv_grad_input(
    g: &ConvGeom,
    dy: &[f32],
    wr: &[f32],
    wf: &[f32],
    dx: &mut [f32],
    accumulate: bool,
) {
    if let Some(t) = g.transposed() {
        dx.par_chunks_mut(g.in_len())
            .zip(dy.par_chunks(g.out_len()))
            .for_each(|(dx, dy)| t.forward_image(dy, wf, dx, accumulate));
        return;
    }
    let (kk, co, wo) = (g.kk(), g.co, g.wo);
    let rb = g.rows_per_block();
    dx.par_chunks_mut(g.in_len())
        .zip(dy.par_chunks(g.out_len()))
        .for_each(|(dx, dy)| {
            if !accumulate {
                dx.fill(0.0);
            }
            with_scratch(rb * wo * kk, |col| {
                for oy0 in (0..g.ho).step_by(rb) {
                    let oy1 = (oy0 + rb).min(g.ho);
                    let dyb = &dy[oy0 * wo * co..oy1 * wo * co];
                    // SAFETY: col is m x kk, dy block is m x co, wr is co x kk; distinct.
                    unsafe {
                        matmul(
                            (oy1 - oy0) * wo,
                            kk,
                            co,
                            col.as_mut_ptr(),
                            kk,
                            false,
                            dyb.as_ptr(),
                            (co, 1),
                            wr.as_ptr(),
                            (kk, 1),
                        );
                    }
                    g.col2im_add(&col[..(oy1 - oy0) * wo * kk], oy0, oy1, dx);
                }
            })
        });
}

/// The weight gradient of a convolution in the packed layout of [`pack_kernel`]:
/// `sum over images and pixels of dy^T col(x)`, in fixed chunks of [`WGRAD_CHUNK`] images.
pub(super) fn conv_grad_weight(g: &ConvGeom, n: usize, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (kk, co, wo) = (g.kk(), g.co, g.wo);
    let rb = g.rows_per_block();
    let chunks = n.div_ceil(WGRAD_CHUNK);
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|chunk| {
            let mut dw = vec![0f32; co * kk];
            let mut first = true;
            let scratch = if g.pointwise() { 0 } else { rb * wo * kk };
            with_scratch(scratch, |col| {
                for img in chunk * WGRAD_CHUNK..((chunk + 1) * WGRAD_CHUNK).min(n) {
                    let xi = &x[img * g.in_len()..(img + 1) * g.in_len()];
                    let dyi = &dy[img * g.out_len()..(img + 1) * g.out_len()];
                    for oy0 in (0..g.ho).step_by(rb) {
                        let oy1 = (oy0 + rb).min(g.ho);
                        let m = (oy1 - oy0) * wo;
                        let c: &[f32] = if g.pointwise() {
                            &xi[oy0 * wo * kk..oy1 * wo * kk]
                        } else {
                            g.im2col(xi, oy0, oy1, col);
                            &col[..m * kk]
                        };
                        // SAFETY: dw is co x kk; dy block^T is co x m read from the m x co
                        // block; c is m x kk; distinct buffers.
                        unsafe {
                            matmul(
                                co,
                                kk,
                                m,
                                dw.as_mut_ptr(),
                                kk,
                                !first,
                                dyi[oy0 * wo * co..].as_ptr(),
                                (1, co),
                                c.as_ptr(),
                                (kk, 1),
                            );
                        }
                        first = false;
                    }
                }
            });
            dw
        })
        .collect();
    let mut dw = vec![0f32; co * kk];
    for p in &partials {
        for (d, v) in dw.iter_mut().zip(p) {
            *d += v;
        }
    }
    dw
}

/// The per-channel affine map of a BatchNorm (`y = scale x + shift`) and what its backward
/// pass needs.
#[derive(Clone, Debug, Default)]
pub(super) struct BnAffine {
    /// Mean used for normalising (batch mean in training, running mean in evaluation).
    pub mean: Vec<f32>,
    /// Biased batch variance (training) or the running variance (evaluation).
    pub var: Vec<f32>,
    /// `1 / sqrt(var + eps)`.
    pub invstd: Vec<f32>,
    /// `gamma * invstd`.
    pub scale: Vec<f32>,
    /// `beta - mean * scale`.
    pub shift: Vec<f32>,
    /// Values per channel the statistics were taken over (0 in evaluation mode).
    pub count: usize,
}

impl BnAffine {
    /// From the per-channel sums and sums of squares of [`conv_forward`] over `count` values.
    pub fn from_sums(sums: &[f64], count: usize, gamma: &[f32], beta: &[f32], eps: f64) -> Self {
        let c = gamma.len();
        let mut mean = Vec::with_capacity(c);
        let mut var = Vec::with_capacity(c);
        for ch in 0..c {
            let m = sums[ch] / count as f64;
            mean.push(m as f32);
            var.push((sums[c + ch] / count as f64 - m * m).max(0.0) as f32);
        }
        let mut a = Self::from_mean_var(mean, var, gamma, beta, eps);
        a.count = count;
        a
    }

    /// From given mean and variance (evaluation mode: the running statistics).
    pub fn from_mean_var(
        mean: Vec<f32>,
        var: Vec<f32>,
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
    ) -> Self {
        let invstd: Vec<f32> = var
            .iter()
            .map(|&v| (1.0 / (f64::from(v) + eps).sqrt()) as f32)
            .collect();
        let scale: Vec<f32> = gamma.iter().zip(&invstd).map(|(g, i)| g * i).collect();
        let shift = (0..gamma.len())
            .map(|ch| beta[ch] - mean[ch] * scale[ch])
            .collect();
        Self {
            mean,
            var,
            invstd,
            scale,
            shift,
            count: 0,
        }
    }
}

/// Pixels per task of the element-wise kernels.
const ELEMWISE_PIX: usize = 4096;

/// `out = max(scale x + shift, 0)` per channel (`c` channels, channels last).
pub(super) fn bn_relu(x: &[f32], bn: &BnAffine, c: usize, out: &mut [f32]) {
    out.par_chunks_mut(ELEMWISE_PIX * c)
        .zip(x.par_chunks(ELEMWISE_PIX * c))
        .for_each(|(out, x)| simd::affine_relu(x, &bn.scale, &bn.shift, c, out));
}

/// The shortcut added at the end of a residual block.
#[derive(Clone, Copy)]
pub(super) enum Skip<'a> {
    /// The block's input.
    Identity(&'a [f32]),
    /// A normalised projection of it.
    Bn(&'a [f32], &'a BnAffine),
}

/// `out = max(scale x + shift + skip, 0)` per channel.
pub(super) fn bn_add_relu(x: &[f32], bn: &BnAffine, skip: Skip<'_>, c: usize, out: &mut [f32]) {
    let chunk = ELEMWISE_PIX * c;
    let (sk, sb) = match skip {
        Skip::Identity(s) => (s, None),
        Skip::Bn(s, sb) => (s, Some(sb)),
    };
    out.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk).zip(sk.par_chunks(chunk)))
        .for_each(|(out, (x, s))| match sb {
            None => simd::affine_add_relu(x, &bn.scale, &bn.shift, s, c, out),
            Some(sb) => simd::affine_add_affine_relu(
                x, &bn.scale, &bn.shift, s, &sb.scale, &sb.shift, c, out,
            ),
        });
}

/// The ReLU backward pass fused with the reductions of the BatchNorm backward passes: sets
/// `dz = dz * (y > 0)` in place (`y` the ReLU's output) and returns, per entry `(x, bn)` of
/// `norms` (one or two: the BatchNorm inputs whose output fed the ReLU), the per-channel sums
/// of `dz` and of `dz * (x - mean)` (`2 c` values, summed image by image in order). `img` is
/// the length of one image.
pub(super) fn relu_mask_reduce(
    dz: &mut [f32],
    y: &[f32],
    norms: &[(&[f32], &BnAffine)],
    c: usize,
    img: usize,
) -> Vec<Vec<f64>> {
    assert!(
        (1..=2).contains(&norms.len()),
        "relu_mask_reduce: one or two BatchNorms"
    );
    let width = 1 + norms.len();
    let parts: Vec<Vec<f64>> = dz
        .par_chunks_mut(img)
        .enumerate()
        .map(|(i, dz)| {
            let r = i * img..(i + 1) * img;
            let (x1, m1) = (&norms[0].0[r.clone()], &norms[0].1.mean[..c]);
            let (x2, m2): (&[f32], &[f32]) = match norms.get(1) {
                Some((x, bn)) => (&x[r.clone()], &bn.mean[..c]),
                None => (&[], &[]),
            };
            let mut total = vec![0f64; width * c];
            simd::mask_reduce(dz, &y[r], x1, m1, x2, m2, c, &mut total);
            total
        })
        .collect();
    let total = sum_parts(parts, width * c);
    // Layout of the sums: [sum dz, sum dz (x1 - m1), sum dz (x2 - m2)].
    let sd = &total[..c];
    (0..norms.len())
        .map(|j| {
            let mut v = sd.to_vec();
            v.extend_from_slice(&total[(1 + j) * c..(2 + j) * c]);
            v
        })
        .collect()
}

/// `(dgamma, dbeta)` and the coefficients `[a, b, k]` of [`bn_backward_coefs`].
pub(super) type BnGrads = ((Vec<f32>, Vec<f32>), [Vec<f32>; 3]);

/// The gradients of a BatchNorm from the sums of [`relu_mask_reduce`]: returns
/// `(dgamma, dbeta)` and per-channel coefficients `(a, b, k)` with `dx = a dz + b x + k`.
pub(super) fn bn_backward_coefs(
    sums: &[f64],
    bn: &BnAffine,
    gamma: &[f32],
    train: bool,
) -> BnGrads {
    let c = gamma.len();
    let (mut dgamma, mut dbeta) = (Vec::with_capacity(c), Vec::with_capacity(c));
    let (mut a, mut b, mut k) = (
        Vec::with_capacity(c),
        Vec::with_capacity(c),
        Vec::with_capacity(c),
    );
    for ch in 0..c {
        let is = f64::from(bn.invstd[ch]);
        let db = sums[ch];
        let dg = sums[c + ch] * is;
        dgamma.push(dg as f32);
        dbeta.push(db as f32);
        let kk = f64::from(gamma[ch]) * is;
        if train {
            // dx = kk (dz - db / M - xhat dg / M), xhat = (x - mean) is.
            let m = bn.count as f64;
            let bx = -kk * is * dg / m;
            a.push(kk as f32);
            b.push(bx as f32);
            k.push((-kk * db / m - bx * f64::from(bn.mean[ch])) as f32);
        } else {
            a.push(kk as f32);
            b.push(0.0);
            k.push(0.0);
        }
    }
    ((dgamma, dbeta), [a, b, k])
}

/// `out = a dz + b x + k` per channel (the BatchNorm input gradient).
pub(super) fn bn_backward_apply(
    dz: &[f32],
    x: &[f32],
    coefs: &[Vec<f32>; 3],
    c: usize,
    out: &mut [f32],
) {
    let chunk = ELEMWISE_PIX * c;
    let [a, b, k] = coefs;
    out.par_chunks_mut(chunk)
        .zip(dz.par_chunks(chunk).zip(x.par_chunks(chunk)))
        .for_each(|(out, (dz, x))| simd::affine3(dz, x, a, b, k, c, out));
}

/// [`bn_backward_apply`] writing over `dz`.
pub(super) fn bn_backward_apply_inplace(
    dz: &mut [f32],
    x: &[f32],
    coefs: &[Vec<f32>; 3],
    c: usize,
) {
    let chunk = ELEMWISE_PIX * c;
    let [a, b, k] = coefs;
    dz.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(dz, x)| simd::affine3_inplace(dz, x, a, b, k, c));
}

/// NCHW images to NHWC.
pub(super) fn to_nhwc(x: &[f32], c: usize, hw: usize, out: &mut [f32]) {
    out.par_chunks_mut(c * hw)
        .zip(x.par_chunks(c * hw))
        .for_each(|(o, x)| {
            for ch in 0..c {
                for (p, &v) in x[ch * hw..(ch + 1) * hw].iter().enumerate() {
                    o[p * c + ch] = v;
                }
            }
        });
}

/// Per-channel statistics of one training-mode BatchNorm call ([`batch_norm_train_ops`]).
#[derive(Clone, Debug, Default)]
pub(super) struct BnStats {
    /// Batch mean per channel.
    pub mean: Vec<f32>,
    /// Biased batch variance per channel.
    pub var: Vec<f32>,
    /// Values per channel (`N * H * W`).
    pub count: usize,
}

/// Training-mode BatchNorm of `x` (N, C, ...) from candle's tensor operations: normalises with
/// the batch statistics per channel, scales by `gamma`, shifts by `beta`; returns the result
/// and the statistics.
pub(super) fn batch_norm_train_ops(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, BnStats)> {
    let dims = x.dims();
    if dims.len() < 2 {
        bail!("batch-norm: input must have at least 2 dimensions, got {dims:?}")
    }
    let c = dims[1];
    let xt = x.transpose(0, 1)?;
    let dims_t = xt.dims().to_vec();
    let flat = xt.flatten_from(1)?; // (C, N * S)
    let count = flat.dim(1)?;
    if count < 2 {
        bail!("batch-norm in training mode needs more than one value per channel, got {count}")
    }
    let mean = flat.mean_keepdim(1)?;
    let centered = flat.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(1)?;
    let y = centered
        .broadcast_div(&(&var + eps)?.sqrt()?)?
        .broadcast_mul(&gamma.reshape((c, 1))?)?
        .broadcast_add(&beta.reshape((c, 1))?)?
        .reshape(dims_t)?
        .transpose(0, 1)?;
    let mean = mean.flatten_all()?.to_vec1::<f32>()?;
    let var = var.flatten_all()?.to_vec1::<f32>()?;
    Ok((y, BnStats { mean, var, count }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    fn var(shape: &[usize], seed: u64) -> Var {
        let n = shape.iter().product();
        Var::from_vec(rand_vec(n, seed), shape, &Device::Cpu).unwrap()
    }

    /// NCHW tensor to NHWC values.
    fn nhwc(t: &Tensor) -> Vec<f32> {
        t.permute((0, 2, 3, 1))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Largest |a - b| relative to the largest |b| (at least 1).
    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
            / scale
    }

    /// Forward, input gradient and weight gradient of the NHWC convolution agree with candle's
    /// `conv2d` and its autograd: 3x3 and 1x1, strides 1 and 2, with and without padding,
    /// square and non-square images, batch 1 and more.
    #[test]
    fn conv_matches_candle() {
        #[rustfmt::skip]
        let cases = [
            // (n, ci, co, h, w, k, s, p)
            (3, 4, 5, 6, 6, 3, 1, 1), (2, 4, 5, 7, 7, 3, 2, 1), (1, 3, 6, 7, 5, 3, 1, 1),
            (1, 3, 6, 7, 5, 3, 2, 1), (2, 4, 5, 6, 6, 1, 2, 0), (3, 4, 5, 5, 5, 1, 1, 0),
            (1, 2, 3, 7, 5, 1, 1, 0), (2, 3, 4, 6, 5, 3, 1, 0), (2, 3, 4, 40, 9, 3, 1, 1),
            (1, 16, 32, 9, 11, 3, 2, 1),
        ];
        for (i, &(n, ci, co, h, w, k, s, p)) in cases.iter().enumerate() {
            let x = var(&[n, ci, h, w], 10 + i as u64);
            let wt = var(&[co, ci, k, k], 20 + i as u64);
            let y = x.conv2d(&wt, p, s, 1, 1).unwrap();
            let (_, _, ho, wo) = y.dims4().unwrap();
            let r = var(&[n, co, ho, wo], 30 + i as u64);
            let grads = (&y * r.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();

            let g = ConvGeom::new(h, w, ci, co, k, s, p).unwrap();
            assert_eq!((g.ho, g.wo), (ho, wo));
            let wv = flat(wt.as_tensor());
            let wr = pack_kernel(&wv, co, ci, k);
            let wf = pack_kernel_flipped(&wv, co, ci, k);
            let xv = nhwc(x.as_tensor());
            let mut out = vec![0f32; n * g.out_len()];
            let sums = conv_forward(&g, &xv, &wr, &mut out, true);
            let want = nhwc(&y);
            assert!(rel_err(&out, &want) < 1e-5, "forward case {i}");
            for (ch, &got) in sums[..co].iter().enumerate() {
                let s: f64 = want
                    .iter()
                    .skip(ch)
                    .step_by(co)
                    .map(|&v| f64::from(v))
                    .sum();
                assert!((got - s).abs() < 1e-3 * (1.0 + s.abs()), "sum case {i}");
            }
            let rv = nhwc(r.as_tensor());
            for acc in [false, true] {
                let mut dx = vec![if acc { 1.0 } else { 7.0 }; n * g.in_len()];
                conv_grad_input(&g, &rv, &wr, &wf, &mut dx, acc);
                let mut want = nhwc(grads.get(&x).unwrap());
                if acc {
                    want.iter_mut().for_each(|v| *v += 1.0);
                }
                assert!(rel_err(&dx, &want) < 1e-4, "dx case {i} acc {acc}");
            }
            let dwr = conv_grad_weight(&g, n, &xv, &rv);
            let mut dw = vec![0f32; dwr.len()];
            unpack_kernel(&dwr, co, ci, k, &mut dw);
            assert!(
                rel_err(&dw, &flat(grads.get(&wt).unwrap())) < 1e-4,
                "dw case {i}"
            );
        }
    }

    /// The reference BatchNorm (training mode) of a (N, C, H, W) tensor from tensor ops.
    fn bn_ref(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
        let c = gamma.dim(0).unwrap();
        let mean = x.mean_keepdim((0, 2, 3)).unwrap();
        let xc = x.broadcast_sub(&mean).unwrap();
        let var = xc.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
        xc.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&gamma.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&beta.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
    }

    /// BatchNorm + ReLU and BatchNorm + shortcut + ReLU (identity and normalised shortcut), in
    /// training and evaluation mode: outputs and the gradients of the input, the shortcut,
    /// gamma and beta agree with candle's operations.
    #[test]
    fn batch_norm_matches_candle() {
        for (n, c, h, w) in [(4, 3, 5, 5), (1, 8, 7, 5), (2, 16, 3, 4)] {
            let x = var(&[n, c, h, w], 1);
            let s = var(&[n, c, h, w], 2);
            let (gamma, beta) = (var(&[c], 3), var(&[c], 4));
            let (gs, bs) = (var(&[c], 5), var(&[c], 6));
            let r = var(&[n, c, h, w], 7);
            let (rm, rv) = (
                rand_vec(c, 8),
                rand_vec(c, 9).iter().map(|v| v + 1.5).collect::<Vec<_>>(),
            );
            let (xv, sv, rr) = (
                nhwc(x.as_tensor()),
                nhwc(s.as_tensor()),
                nhwc(r.as_tensor()),
            );
            let (gv, bv, gsv, bsv) = (flat(&gamma), flat(&beta), flat(&gs), flat(&bs));
            let img = h * w * c;
            let count = n * h * w;
            for train in [true, false] {
                for skip in 0..3 {
                    let norm = |x: &Var, g: &Var, b: &Var| -> Tensor {
                        if train {
                            bn_ref(x.as_tensor(), g.as_tensor(), b.as_tensor())
                        } else {
                            let m = Tensor::from_slice(&rm, (1, c, 1, 1), &Device::Cpu).unwrap();
                            let v = Tensor::from_slice(&rv, (1, c, 1, 1), &Device::Cpu).unwrap();
                            x.as_tensor()
                                .broadcast_sub(&m)
                                .unwrap()
                                .broadcast_div(&(v + 1e-5).unwrap().sqrt().unwrap())
                                .unwrap()
                                .broadcast_mul(&g.as_tensor().reshape((1, c, 1, 1)).unwrap())
                                .unwrap()
                                .broadcast_add(&b.as_tensor().reshape((1, c, 1, 1)).unwrap())
                                .unwrap()
                        }
                    };
                    let mut pre = norm(&x, &gamma, &beta);
                    if skip == 1 {
                        pre = (pre + s.as_tensor()).unwrap();
                    } else if skip == 2 {
                        pre = (pre + norm(&s, &gs, &bs)).unwrap();
                    }
                    let y = pre.relu().unwrap();
                    let grads = (&y * r.as_tensor())
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .backward()
                        .unwrap();

                    let affine = |xv: &[f32], g: &[f32], b: &[f32]| {
                        if train {
                            let mut sums = vec![0f64; 2 * c];
                            for px in xv.chunks(c) {
                                for ch in 0..c {
                                    sums[ch] += f64::from(px[ch]);
                                    sums[c + ch] += f64::from(px[ch]).powi(2);
                                }
                            }
                            BnAffine::from_sums(&sums, count, g, b, 1e-5)
                        } else {
                            BnAffine::from_mean_var(rm.clone(), rv.clone(), g, b, 1e-5)
                        }
                    };
                    let bx = affine(&xv, &gv, &bv);
                    let bsx = affine(&sv, &gsv, &bsv);
                    let mut out = vec![0f32; xv.len()];
                    match skip {
                        0 => bn_relu(&xv, &bx, c, &mut out),
                        1 => bn_add_relu(&xv, &bx, Skip::Identity(&sv), c, &mut out),
                        _ => bn_add_relu(&xv, &bx, Skip::Bn(&sv, &bsx), c, &mut out),
                    }
                    let what = format!("n{n} c{c} train {train} skip {skip}");
                    assert!(rel_err(&out, &nhwc(&y)) < 1e-5, "forward {what}");

                    let mut dz = rr.clone();
                    let norms: Vec<(&[f32], &BnAffine)> = if skip == 2 {
                        vec![(&xv, &bx), (&sv, &bsx)]
                    } else {
                        vec![(&xv, &bx)]
                    };
                    let sums = relu_mask_reduce(&mut dz, &out, &norms, c, img);
                    let ((dg, db), coefs) = bn_backward_coefs(&sums[0], &bx, &gv, train);
                    assert!(
                        rel_err(&dg, &flat(grads.get(&gamma).unwrap())) < 1e-4,
                        "dgamma {what}"
                    );
                    assert!(
                        rel_err(&db, &flat(grads.get(&beta).unwrap())) < 1e-4,
                        "dbeta {what}"
                    );
                    let mut dx = vec![0f32; xv.len()];
                    bn_backward_apply(&dz, &xv, &coefs, c, &mut dx);
                    assert!(
                        rel_err(&dx, &nhwc(grads.get(&x).unwrap())) < 1e-4,
                        "dx {what}"
                    );
                    let mut dx2 = dz.clone();
                    bn_backward_apply_inplace(&mut dx2, &xv, &coefs, c);
                    assert_eq!(dx, dx2);
                    if skip == 1 {
                        assert!(
                            rel_err(&dz, &nhwc(grads.get(&s).unwrap())) < 1e-5,
                            "ds {what}"
                        );
                    }
                    if skip == 2 {
                        let ((dgs, dbs), cs) = bn_backward_coefs(&sums[1], &bsx, &gsv, train);
                        assert!(
                            rel_err(&dgs, &flat(grads.get(&gs).unwrap())) < 1e-4,
                            "dgs {what}"
                        );
                        assert!(
                            rel_err(&dbs, &flat(grads.get(&bs).unwrap())) < 1e-4,
                            "dbs {what}"
                        );
                        let mut ds = vec![0f32; sv.len()];
                        bn_backward_apply(&dz, &sv, &cs, c, &mut ds);
                        assert!(
                            rel_err(&ds, &nhwc(grads.get(&s).unwrap())) < 1e-4,
                            "ds {what}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn layout_helpers() {
        let w = rand_vec(5 * 4 * 9, 1);
        let wr = pack_kernel(&w, 5, 4, 3);
        let mut back = vec![0f32; w.len()];
        unpack_kernel(&wr, 5, 4, 3, &mut back);
        assert_eq!(back, w);
        let x = var(&[2, 3, 4, 5], 2);
        let mut out = vec![0f32; 2 * 3 * 20];
        to_nhwc(&flat(x.as_tensor()), 3, 20, &mut out);
        assert_eq!(out, nhwc(x.as_tensor()));
    }

    /// The stock BatchNorm returns candle's batch statistics.
    #[test]
    fn stock_batch_norm_statistics() {
        let x = var(&[4, 3, 5, 5], 4);
        let (g, b) = (var(&[3], 5), var(&[3], 6));
        let (y, st) = batch_norm_train_ops(&x, &g, &b, 1e-5).unwrap();
        let yr = bn_ref(x.as_tensor(), g.as_tensor(), b.as_tensor());
        assert!(rel_err(&flat(&y), &flat(&yr)) < 1e-5);
        assert_eq!(st.count, 100);
        let mean = flat(&x.as_tensor().mean((0, 2, 3)).unwrap());
        assert!(rel_err(&st.mean, &mean) < 1e-6);
    }
}
