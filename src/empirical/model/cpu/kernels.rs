//! Deterministic CPU kernels on channels-last (NHWC) `f32` slices besides the convolutions
//! (which live in [`super::conv`]): training- and evaluation-mode BatchNorm fused with ReLU and
//! with the residual addition, their backward passes, and the NCHW to NHWC conversion.
//! [`super::engine`] chains them with the convolutions into a whole backbone forward and
//! backward pass; [`super::simd`] holds the vectorised inner loops.
//!
//! * BatchNorm: one pass applies `scale * x + shift`, ReLU and, at the end of a residual block,
//!   the shortcut (itself normalised or the identity). The backward pass is two passes: one
//!   masks the gradient with the ReLU and sums `dz` and `dz * xhat` per channel, one writes
//!   `dx = a dz + b x + c` with per-channel coefficients.
//!
//! Determinism: every kernel splits its work by whole images or fixed chunks of pixels, each
//! task computed by one thread in a fixed order, and per-image partial sums are added in image
//! order. Results therefore do not depend on the number of threads.
//!
//! [`batch_norm_train_ops`] is the BatchNorm of [`super::super::Kernels::Stock`], from candle's tensor
//! operations.

use candle_core::{bail, Result, Tensor};
use rayon::prelude::*;

use super::simd;

/// Adds the per-image partial sums `parts` in image order.
pub(super) fn sum_parts(parts: Vec<Vec<f64>>, len: usize) -> Vec<f64> {
    let mut total = vec![0f64; len];
    for p in parts {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// The per-channel affine map of a BatchNorm (`y = scale x + shift`) and what its backward
/// pass needs.
#[derive(Clone, Debug, Default)]
pub(crate) struct BnAffine {
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

/// What a ReLU was applied to, for [`MaskReduce`].
#[derive(Clone, Copy)]
pub(super) enum ReluOf<'a> {
    /// Its stored output (the ReLU of a BatchNorm plus an identity shortcut).
    Output(&'a [f32]),
    /// The BatchNorm output of `norms`' one entry ([`bn_relu`]) or the sum of its two
    /// ([`bn_add_relu`] with a normalised shortcut), recomputed from their inputs, which the
    /// reductions read anyway (one pass over memory fewer than reading the output).
    Norms,
}

/// The ReLU backward pass fused with the reductions of the BatchNorm backward passes, image by
/// image: sets `dz = dz * (relu output > 0)` in place and sums, per entry `(x, bn)` of `norms`
/// (one or two: the BatchNorm inputs whose outputs fed the ReLU), `dz` and `dz * (x - mean)`
/// per channel. Run over a whole batch by [`relu_mask_reduce`], or on each image of a
/// convolution's input gradient as it is written ([`super::conv::ConvOp::grad_input_then`]),
/// while the image is in cache.
pub(super) struct MaskReduce<'a> {
    pub relu: ReluOf<'a>,
    pub norms: &'a [(&'a [f32], &'a BnAffine)],
    /// Channels, and values per image.
    pub c: usize,
    pub img: usize,
}

impl MaskReduce<'_> {
    /// Image `i` (`dz`, `img` values): its sums, `[sum dz, sum dz (x1 - m1), sum dz (x2 - m2)]`
    /// per channel (the last only with two norms).
    pub fn image(&self, i: usize, dz: &mut [f32]) -> Vec<f64> {
        let (c, img) = (self.c, self.img);
        let r = i * img..(i + 1) * img;
        let (x1, bn1) = (&self.norms[0].0[r.clone()], self.norms[0].1);
        let (x2, bn2) = match self.norms.get(1) {
            Some((x, bn)) => (&x[r.clone()], Some(*bn)),
            None => (&[][..], None),
        };
        let relu = match (self.relu, bn2) {
            (ReluOf::Output(y), _) => simd::Relu::Output(&y[r]),
            (ReluOf::Norms, None) => simd::Relu::Affine(&bn1.scale, &bn1.shift),
            (ReluOf::Norms, Some(b2)) => {
                simd::Relu::AffineSum(&bn1.scale, &bn1.shift, &b2.scale, &b2.shift)
            }
        };
        let m2: &[f32] = bn2.map_or(&[], |b| &b.mean[..c]);
        let mut total = vec![0f64; (1 + self.norms.len()) * c];
        simd::mask_reduce(dz, relu, x1, &bn1.mean[..c], x2, m2, c, &mut total);
        total
    }

    /// The batch's sums from the images' in image order: per norm, `[sum dz, sum dz (x -
    /// mean)]` (`2 c` values).
    pub fn finish(&self, parts: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
        let c = self.c;
        let total = sum_parts(parts, (1 + self.norms.len()) * c);
        let sd = &total[..c];
        (0..self.norms.len())
            .map(|j| {
                let mut v = sd.to_vec();
                v.extend_from_slice(&total[(1 + j) * c..(2 + j) * c]);
                v
            })
            .collect()
    }
}

/// [`MaskReduce`] over a batch `dz`: the per-norm sums of [`MaskReduce::finish`].
pub(super) fn relu_mask_reduce(dz: &mut [f32], mr: &MaskReduce<'_>) -> Vec<Vec<f64>> {
    assert!(
        (1..=2).contains(&mr.norms.len()),
        "relu_mask_reduce: one or two BatchNorms"
    );
    let parts: Vec<Vec<f64>> = dz
        .par_chunks_mut(mr.img)
        .enumerate()
        .map(|(i, dz)| mr.image(i, dz))
        .collect();
    mr.finish(parts)
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
pub(crate) struct BnStats {
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
pub(crate) fn batch_norm_train_ops(
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
                    let mr = |relu| MaskReduce {
                        relu,
                        norms: &norms,
                        c,
                        img,
                    };
                    let sums = relu_mask_reduce(&mut dz, &mr(ReluOf::Output(&out)));
                    if skip != 1 {
                        // The mask recomputed from the BatchNorm inputs: the same bits.
                        let mut dz2 = rr.clone();
                        let sums2 = relu_mask_reduce(&mut dz2, &mr(ReluOf::Norms));
                        assert_eq!((&dz, &sums), (&dz2, &sums2), "recomputed mask {what}");
                    }
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
