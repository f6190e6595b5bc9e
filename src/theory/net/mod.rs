//! The two-layer convolutional network of the theory and its analytic gradients:
//! `F_c(X) = sum_r sum_p act(<w_{c,r}, x_p> + b_{c,r})`, the first layer shared over patches and
//! the second layer fixed at 1 ([`Head::Fixed`]), or a trainable linear head on the pooled
//! activations ([`Head::Linear`], used by the readouts). The forward pass and the weight gradient
//! are the two matrix products of a step. On a processor with AVX-512 they run in the kernels of
//! [`products`] (the activation fused into the forward product's last pass, dL/dZ written
//! straight into the layout the weight gradient reads), which give the same bits as the
//! `matrixmultiply` crate (the kernel behind ndarray); elsewhere they go through
//! `matrixmultiply` itself, cut into fixed blocks. Either way the work runs in parallel and
//! results do not depend on the number of threads.

use crate::theory::config::ActivationConfig;
use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

pub mod products;

/// Rows of X (batch x patches) per block of the forward product. Every block packs all of W
/// again, so blocks are large: a few per product, enough to keep a few threads busy.
pub const ROW_BLOCK: usize = 1024;
/// Input coordinates (columns of W) per block of the weight-gradient product. Every block packs
/// all of dL/dZ again (batch x patches x neurons floats), so blocks are large.
pub const COL_BLOCK: usize = 512;
/// Rows (whole samples) per block of the forward product in the [`products`] kernels.
pub const FUSED_ROWS: usize = 256;

/// A raw pointer that parallel blocks writing disjoint parts of one buffer may share.
struct SendPtr(*mut f32);
// SAFETY: only used by `weight_product`, whose blocks write disjoint columns.
unsafe impl Sync for SendPtr {}

/// A hidden activation with its derivative.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// max(z, 0).
    Relu,
    /// max(z + b, 0) with a per-neuron bias `b = -scale * ||w||` (recomputed each step,
    /// not differentiated).
    ThresholdRelu {
        /// tau * (noise / sqrt(d)) * sqrt(2 ln d).
        scale: f32,
    },
    /// 0 for z <= 0, z^q / (q t^(q-1)) for 0 < z <= t, z - (1 - 1/q) t beyond.
    Smoothed {
        /// Degree q.
        q: i32,
        /// Threshold t.
        t: f32,
    },
}

impl Activation {
    /// Build from the config; `noise` and `dim` set the threshold ReLU's scale.
    pub fn from_config(a: &ActivationConfig, noise: f64, dim: usize) -> Self {
        match *a {
            ActivationConfig::Relu => Activation::Relu,
            ActivationConfig::ThresholdRelu { tau } => {
                let d = dim as f64;
                Activation::ThresholdRelu {
                    scale: (tau * noise / d.sqrt() * (2.0 * d.ln()).max(0.0).sqrt()) as f32,
                }
            }
            ActivationConfig::SmoothedRelu { q, threshold } => Activation::Smoothed {
                q: q as i32,
                t: threshold as f32,
            },
        }
    }

    /// Value and derivative at a pre-activation `u = z + b`.
    #[inline(always)]
    pub fn eval(&self, u: f32) -> (f32, f32) {
        match *self {
            Activation::Relu | Activation::ThresholdRelu { .. } => relu(u),
            Activation::Smoothed { q, t } => {
                let c = Smooth::new(q, t);
                c.eval(u, |r| r.powi(q - 1))
            }
        }
    }

    /// For one patch of one sample: add the activation of every neuron's pre-activation
    /// `z[n] + bias[n]` to `h[n]` and overwrite `z[n]` with its derivative. The same values as
    /// [`Activation::eval`], in a loop per activation that the compiler vectorises (no branch
    /// and no `powi` call per element for q = 2 and 3).
    #[inline(always)]
    fn apply(&self, z: &mut [f32], bias: &[f32], h: &mut [f32]) {
        #[inline(always)]
        fn each(z: &mut [f32], bias: &[f32], h: &mut [f32], f: impl Fn(f32) -> (f32, f32)) {
            for ((zv, hv), b) in z.iter_mut().zip(h.iter_mut()).zip(bias) {
                let (a, da) = f(*zv + b);
                *hv += a;
                *zv = da;
            }
        }
        #[inline(always)]
        fn each_unbiased(z: &mut [f32], h: &mut [f32], f: impl Fn(f32) -> (f32, f32)) {
            for (zv, hv) in z.iter_mut().zip(h.iter_mut()) {
                let (a, da) = f(*zv);
                *hv += a;
                *zv = da;
            }
        }
        match *self {
            Activation::Relu => each_unbiased(z, h, relu),
            Activation::ThresholdRelu { .. } => each(z, bias, h, relu),
            Activation::Smoothed { q, t } => {
                let c = Smooth::new(q, t);
                match q {
                    2 => each_unbiased(z, h, |u| c.eval(u, |r| r)),
                    3 => each_unbiased(z, h, |u| c.eval(u, |r| r * r)),
                    _ => each_unbiased(z, h, |u| c.eval(u, |r| r.powi(q - 1))),
                }
            }
        }
    }
}

impl Activation {
    /// [`Activation::apply`] compiled for AVX-512: the same operations on every element (no
    /// fused multiply-add is formed), so the same bits, sixteen lanes at a time.
    ///
    /// # Safety
    /// AVX-512F must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn apply_avx512(&self, z: &mut [f32], bias: &[f32], h: &mut [f32]) {
        self.apply(z, bias, h)
    }
}

/// max(u, 0) and its derivative, written with selects.
#[inline(always)]
fn relu(u: f32) -> (f32, f32) {
    let pos = u > 0.0;
    (if pos { u } else { 0.0 }, if pos { 1.0 } else { 0.0 })
}

/// The smoothed ReLU's constants.
#[derive(Clone, Copy)]
struct Smooth {
    t: f32,
    inv_t: f32,
    inv_q: f32,
    /// (1 - 1/q) t, the offset of the linear piece.
    offset: f32,
}

impl Smooth {
    fn new(q: i32, t: f32) -> Self {
        let inv_q = 1.0 / q as f32;
        Smooth {
            t,
            inv_t: 1.0 / t,
            inv_q,
            offset: (1.0 - inv_q) * t,
        }
    }

    /// Value and derivative at u, with `pow(r)` = r^(q-1); computed with selects so that a loop
    /// over it vectorises.
    #[inline(always)]
    fn eval(&self, u: f32, pow: impl Fn(f32) -> f32) -> (f32, f32) {
        let r = u * self.inv_t;
        let rq1 = pow(r);
        let (pos, lin) = (u > 0.0, u > self.t);
        let poly = rq1 * u * self.inv_q;
        let a = if lin { u - self.offset } else { poly };
        let da = if lin { 1.0 } else { rq1 };
        (if pos { a } else { 0.0 }, if pos { da } else { 0.0 })
    }
}

/// The second layer: how pooled neuron activations become class logits.
#[derive(Clone, Debug, PartialEq)]
pub enum Head {
    /// Fixed weights 1 from each neuron to its own class: logit c = sum of its neurons' pooled
    /// activations (the theory's network).
    Fixed {
        /// Class of each neuron.
        class_of_neuron: Vec<usize>,
        /// Number of classes.
        classes: usize,
    },
    /// A trainable linear head `logits = A h + c` (A: classes x neurons).
    Linear {
        /// Weights, classes x neurons.
        a: Array2<f32>,
        /// Biases, one per class.
        c: Vec<f32>,
    },
}

impl Head {
    /// Number of output classes.
    pub fn classes(&self) -> usize {
        match self {
            Head::Fixed { classes, .. } => *classes,
            Head::Linear { a, .. } => a.nrows(),
        }
    }
}

/// The network: first-layer weights (one row per neuron), activation and head.
#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    /// First-layer weights, neurons x dim.
    pub w: Array2<f32>,
    /// Hidden activation.
    pub act: Activation,
    /// Second layer.
    pub head: Head,
    /// Patches per input.
    pub patches: usize,
    /// Whether the matrix products may use the rayon pool (off when many nets train in
    /// parallel, one per thread).
    pub parallel: bool,
}

/// Buffers reused across steps.
#[derive(Default, Debug)]
pub struct Workspace {
    /// Seconds spent in the two matrix products since the workspace was made (for the
    /// benchmark's share of the step outside them; with the [`products`] kernels the forward
    /// product includes the activation fused into it).
    pub products_s: f64,
    /// The part of `products_s` spent in the forward product.
    pub forward_s: f64,
    z: Vec<f32>,
    /// The weights packed for the forward product ([`products::pack_weights`]).
    packed_w: Vec<f32>,
    /// dL/dZ packed for the weight gradient ([`products::packed_grad_len`]); used instead of
    /// `z` when `packed` is set.
    dzp: Vec<f32>,
    /// Whether the last forward pass ran in the [`products`] kernels.
    packed: bool,
    /// Run the products through `matrixmultiply` even where the kernels run (tests compare the
    /// two).
    portable: bool,
    h: Vec<f32>,
    logits: Vec<f32>,
    g_logits: Vec<f32>,
    g_h: Vec<f32>,
    bias: Vec<f32>,
}

/// What a forward pass returns for a batch: pooled activations and logits.
#[derive(Clone, Debug)]
pub struct Forward {
    /// Pooled activations, batch x neurons.
    pub pooled: Array2<f32>,
    /// Logits, batch x classes.
    pub logits: Array2<f32>,
}

impl Net {
    /// A net with `classes` output classes, `m` neurons each, Gaussian init of std `init_scale`.
    pub fn new(
        classes: usize,
        m: usize,
        dim: usize,
        patches: usize,
        init_scale: f64,
        act: Activation,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let n = classes * m;
        let mut w = Array2::<f32>::zeros((n, dim));
        for v in w.iter_mut() {
            let z: f32 = rng.sample(StandardNormal);
            *v = z * init_scale as f32;
        }
        Net {
            w,
            act,
            head: Head::Fixed {
                class_of_neuron: (0..n).map(|i| i / m).collect(),
                classes,
            },
            patches,
            parallel: true,
        }
    }

    /// Number of neurons.
    pub fn neurons(&self) -> usize {
        self.w.nrows()
    }
    /// Input dimension.
    pub fn dim(&self) -> usize {
        self.w.ncols()
    }
    fn biases(&self, out: &mut Vec<f32>) {
        out.clear();
        match self.act {
            Activation::ThresholdRelu { scale } => out.extend(
                self.w
                    .rows()
                    .into_iter()
                    .map(|r| -scale * r.iter().map(|v| v * v).sum::<f32>().sqrt()),
            ),
            _ => out.resize(self.neurons(), 0.0),
        }
    }

    /// Pre-activations Z = X W^T (rows = batch*patches, cols = neurons) into `z`, by
    /// [`matmul_forward`].
    fn preact(&self, x: &[f32], z: &mut Vec<f32>) {
        let d = self.dim();
        let n = self.neurons();
        z.resize(x.len() / d * n, 0.0);
        let w = self.w.as_slice().expect("weights are contiguous");
        matmul_forward(x, w, n, d, z, self.parallel);
    }

    /// Apply the activation in place: z becomes act'(z + b), h gets the pooled sums.
    fn activate(&self, z: &mut [f32], bias: &[f32], h: &mut Vec<f32>, batch: usize) {
        let n = self.neurons();
        let p = self.patches;
        h.clear();
        h.resize(batch * n, 0.0);
        let act = self.act;
        let body = |(zb, hb): (&mut [f32], &mut [f32])| {
            for zp in zb.chunks_exact_mut(n) {
                act.apply(zp, bias, hb);
            }
        };
        if self.parallel {
            z.par_chunks_mut(p * n)
                .zip(h.par_chunks_mut(n))
                .for_each(body);
        } else {
            z.chunks_mut(p * n).zip(h.chunks_mut(n)).for_each(body);
        }
    }

    fn head_forward(&self, h: &[f32], batch: usize, logits: &mut Vec<f32>) {
        let n = self.neurons();
        let c = self.head.classes();
        logits.clear();
        logits.resize(batch * c, 0.0);
        match &self.head {
            Head::Fixed {
                class_of_neuron, ..
            } => {
                for b in 0..batch {
                    for (j, &cl) in class_of_neuron.iter().enumerate() {
                        logits[b * c + cl] += h[b * n + j];
                    }
                }
            }
            Head::Linear { a, c: bias } => {
                for b in 0..batch {
                    let hb = &h[b * n..(b + 1) * n];
                    for k in 0..c {
                        logits[b * c + k] =
                            bias[k] + a.row(k).iter().zip(hb).map(|(x, y)| x * y).sum::<f32>();
                    }
                }
            }
        }
    }

    /// Forward pass on `batch` inputs (`x`: batch*patches rows of dim floats).
    pub fn forward(&self, x: &[f32]) -> Forward {
        let mut ws = Workspace::default();
        let batch = x.len() / (self.dim() * self.patches);
        self.forward_ws(x, batch, &mut ws);
        Forward {
            pooled: Array2::from_shape_vec((batch, self.neurons()), ws.h).expect("shape"),
            logits: Array2::from_shape_vec((batch, self.head.classes()), ws.logits).expect("shape"),
        }
    }

    fn forward_ws(&self, x: &[f32], batch: usize, ws: &mut Workspace) {
        assert_eq!(
            x.len(),
            batch * self.patches * self.dim(),
            "input length does not match batch x patches x dim"
        );
        let mut bias = std::mem::take(&mut ws.bias);
        self.biases(&mut bias);
        let t = std::time::Instant::now();
        ws.packed = !ws.portable && products::available();
        if ws.packed {
            self.preact_activate(x, &bias, batch, ws);
        } else {
            self.preact(x, &mut ws.z);
        }
        let elapsed = t.elapsed().as_secs_f64();
        ws.products_s += elapsed;
        ws.forward_s += elapsed;
        if !ws.packed {
            self.activate(&mut ws.z, &bias, &mut ws.h, batch);
        }
        self.head_forward(&ws.h, batch, &mut ws.logits);
        ws.bias = bias;
    }

    /// The forward product in the [`products`] kernels with the activation fused into its last
    /// pass: `ws.z` becomes act'(Z + b) and `ws.h` the pooled activations, the same bits as
    /// [`Net::preact`] followed by [`Net::activate`]. Whole samples are cut into blocks of about
    /// [`FUSED_ROWS`] rows, computed in parallel when `parallel`; within a block the rows of
    /// each neuron come in order, so the pooled sums add the patches in order.
    fn preact_activate(&self, x: &[f32], bias: &[f32], batch: usize, ws: &mut Workspace) {
        let (n, d, p) = (self.neurons(), self.dim(), self.patches);
        let rows = batch * p;
        let w = self.w.as_slice().expect("weights are contiguous");
        ws.packed_w.resize(products::packed_weights_len(n, d), 0.0);
        products::pack_weights(w, n, d, &mut ws.packed_w, self.parallel);
        ws.z.resize(rows * n, 0.0);
        ws.h.clear();
        ws.h.resize(batch * n, 0.0);
        let per = FUSED_ROWS.div_ceil(p).max(1);
        let act = self.act;
        let packed = &ws.packed_w;
        type Block<'a> = (usize, ((&'a mut [f32], &'a [f32]), &'a mut [f32]));
        let block = |(i, ((zb, xb), hb)): Block| {
            products::forward_rows(xb, packed, n, d, zb, i * per * p, rows, |r, n0, zr| {
                let h = &mut hb[(r / p) * n + n0..][..zr.len()];
                let b = &bias[n0..n0 + zr.len()];
                // SAFETY: the kernels run, so AVX-512F is available.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    act.apply_avx512(zr, b, h)
                };
                #[cfg(not(target_arch = "x86_64"))]
                act.apply(zr, b, h);
            });
        };
        if self.parallel {
            ws.z.par_chunks_mut(per * p * n)
                .zip(x.par_chunks(per * p * d))
                .zip(ws.h.par_chunks_mut(per * n))
                .enumerate()
                .for_each(block);
        } else {
            ws.z.chunks_mut(per * p * n)
                .zip(x.chunks(per * p * d))
                .zip(ws.h.chunks_mut(per * n))
                .enumerate()
                .for_each(block);
        }
    }

    /// Mean cross-entropy of the batch and the gradients of every parameter, without updating:
    /// returns (loss, dW, d head) where d head is None for the fixed head.
    #[allow(clippy::type_complexity)]
    pub fn loss_and_grad(
        &self,
        x: &[f32],
        labels: &[usize],
    ) -> (f64, Array2<f32>, Option<(Array2<f32>, Vec<f32>)>) {
        let mut ws = Workspace::default();
        let loss = self.backward(x, labels, &mut ws);
        let mut dw = Array2::<f32>::zeros(self.w.raw_dim());
        self.weight_product(x, &ws, dw.as_slice_mut().expect("contiguous"), false, 1.0);
        let dhead = match &self.head {
            Head::Linear { a, .. } => {
                let (n, c) = (self.neurons(), a.nrows());
                let mut da = Array2::<f32>::zeros((c, n));
                let mut dc = vec![0f32; c];
                for b in 0..labels.len() {
                    for k in 0..c {
                        let g = ws.g_logits[b * c + k];
                        dc[k] += g;
                        for j in 0..n {
                            da[[k, j]] += g * ws.h[b * n + j];
                        }
                    }
                }
                Some((da, dc))
            }
            Head::Fixed { .. } => None,
        };
        (loss, dw, dhead)
    }

    /// Forward and backward pass: fills the workspace with pooled activations (`h`), the logit
    /// gradient (`g_logits`) and dL/dZ (in `z`, or packed in `dzp` when the forward pass ran in
    /// the [`products`] kernels). Returns the mean cross-entropy, or NaN if a logit is not
    /// finite.
    // index loops: b and k index several flat buffers at once
    #[allow(clippy::needless_range_loop)]
    fn backward(&self, x: &[f32], labels: &[usize], ws: &mut Workspace) -> f64 {
        let batch = labels.len();
        let n = self.neurons();
        let c = self.head.classes();
        self.forward_ws(x, batch, ws);
        // softmax cross-entropy and its gradient w.r.t. logits, averaged over the batch
        ws.g_logits.clear();
        ws.g_logits.resize(batch * c, 0.0);
        let mut loss = 0.0f64;
        for b in 0..batch {
            let l = &ws.logits[b * c..(b + 1) * c];
            let mx = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if !mx.is_finite() {
                return f64::NAN;
            }
            let sum: f64 = l.iter().map(|&v| ((v - mx) as f64).exp()).sum();
            let y = labels[b];
            loss += sum.ln() - (l[y] - mx) as f64;
            for k in 0..c {
                let p = (((l[k] - mx) as f64).exp() / sum) as f32;
                ws.g_logits[b * c + k] = (p - if k == y { 1.0 } else { 0.0 }) / batch as f32;
            }
        }
        loss /= batch as f64;
        // gradient w.r.t. pooled activations
        ws.g_h.clear();
        ws.g_h.resize(batch * n, 0.0);
        match &self.head {
            Head::Fixed {
                class_of_neuron, ..
            } => {
                for b in 0..batch {
                    for (j, &cl) in class_of_neuron.iter().enumerate() {
                        ws.g_h[b * n + j] = ws.g_logits[b * c + cl];
                    }
                }
            }
            Head::Linear { a, .. } => {
                for b in 0..batch {
                    for k in 0..c {
                        let g = ws.g_logits[b * c + k];
                        for (j, av) in a.row(k).iter().enumerate() {
                            ws.g_h[b * n + j] += g * av;
                        }
                    }
                }
            }
        }
        // dL/dZ = dL/dh (broadcast over patches) * act'(Z + b); z already holds act'
        let p = self.patches;
        let g_h = &ws.g_h;
        if ws.packed {
            // straight into the weight gradient's layout, one tile of neurons per part
            let rows = batch * p;
            let tn = products::BWD_ROWS;
            ws.dzp.resize(products::packed_grad_len(rows, n), 0.0);
            let z = &ws.z;
            let tile = |(t, part): (usize, &mut [f32])| {
                let (n0, width) = (t * tn, tn.min(n - t * tn));
                for (r, o) in part.chunks_exact_mut(tn).enumerate() {
                    let zr = &z[r * n + n0..][..width];
                    let g = &g_h[(r / p) * n + n0..][..width];
                    for ((ov, zv), gv) in o.iter_mut().zip(zr).zip(g) {
                        *ov = zv * gv;
                    }
                    o[width..].fill(0.0);
                }
            };
            if self.parallel {
                ws.dzp.par_chunks_mut(rows * tn).enumerate().for_each(tile);
            } else {
                ws.dzp.chunks_mut(rows * tn).enumerate().for_each(tile);
            }
            return loss;
        }
        let scale = |(zb, gb): (&mut [f32], &[f32])| {
            for zp in zb.chunks_exact_mut(n) {
                for (zv, g) in zp.iter_mut().zip(gb) {
                    *zv *= g;
                }
            }
        };
        if self.parallel {
            ws.z.par_chunks_mut(p * n)
                .zip(g_h.par_chunks(n))
                .for_each(scale);
        } else {
            ws.z.chunks_mut(p * n).zip(g_h.chunks(n)).for_each(scale);
        }
        loss
    }

    /// dst <- (read_dst ? dst : 0) + beta * dZ^T X, the weight-gradient product (dst is
    /// neurons x dim), with dL/dZ from the workspace of the last [`Net::backward`]: in the
    /// [`products`] kernels when the forward pass ran in them, else through `matrixmultiply`
    /// with the columns (input coordinates) cut into fixed blocks of [`COL_BLOCK`], computed in
    /// parallel when `parallel`. Each element sums over all rows in the same order, so the bits
    /// do not depend on the thread count.
    fn weight_product(
        &self,
        x: &[f32],
        ws: &Workspace,
        dst: &mut [f32],
        read_dst: bool,
        beta: f32,
    ) {
        let d = self.w.ncols();
        if ws.packed {
            let n = dst.len() / d;
            let b = if read_dst { 1.0 } else { 0.0 };
            products::weight_product(x, &ws.dzp, n, d, dst, beta, b, self.parallel);
            return;
        }
        matmul_weight_product(x, &ws.z, d, dst, read_dst, beta, self.parallel);
    }

    /// One SGD step on the batch with learning rate `lr` (first layer, and the head too when it
    /// is linear and `train_head`). Returns the mean cross-entropy before the step, or NaN if
    /// the logits were not finite (the weights are then left unchanged).
    #[allow(clippy::needless_range_loop)]
    pub fn sgd_step(
        &mut self,
        x: &[f32],
        labels: &[usize],
        lr: f32,
        train_head: bool,
        ws: &mut Workspace,
    ) -> f64 {
        let loss = self.backward(x, labels, ws);
        if !loss.is_finite() {
            return f64::NAN;
        }
        let batch = labels.len();
        let n = self.neurons();
        let c = self.head.classes();
        if train_head {
            if let Head::Linear { a, c: bias } = &mut self.head {
                for b in 0..batch {
                    for k in 0..c {
                        let g = ws.g_logits[b * c + k];
                        bias[k] -= lr * g;
                        for (j, av) in a.row_mut(k).iter_mut().enumerate() {
                            *av -= lr * g * ws.h[b * n + j];
                        }
                    }
                }
            }
        }
        // W <- W - lr * dZ^T X, fused into one product
        let d = self.dim();
        let mut w = std::mem::replace(&mut self.w, Array2::zeros((0, d)));
        let t = std::time::Instant::now();
        self.weight_product(x, ws, w.as_slice_mut().expect("contiguous"), true, -lr);
        ws.products_s += t.elapsed().as_secs_f64();
        self.w = w;
        loss
    }
}

/// Z = X W^T by `matrixmultiply` (X: rows x d, W: n x d, Z: rows x n, row-major), the
/// products where the [`products`] kernels do not run. The rows are cut into fixed blocks of
/// [`ROW_BLOCK`] computed in parallel when `parallel`; every block is the same product whatever
/// the thread count, so the bits do not depend on it.
///
/// # Panics
/// If the lengths do not match.
pub fn matmul_forward(x: &[f32], w: &[f32], n: usize, d: usize, z: &mut [f32], parallel: bool) {
    assert_eq!(x.len() % d, 0);
    assert_eq!(w.len(), n * d);
    assert_eq!(z.len(), x.len() / d * n);
    let block = |(zb, xb): (&mut [f32], &[f32])| {
        let r = xb.len() / d;
        // SAFETY: Zb (r x n, row-major) = Xb (r x d, row-major) * W^T, where W^T (d x n) is
        // read from W (n x d, row-major) with row stride 1 and column stride d. The slices
        // hold exactly these sizes and Zb aliases neither input.
        unsafe {
            matrixmultiply::sgemm(
                r,
                d,
                n,
                1.0,
                xb.as_ptr(),
                d as isize,
                1,
                w.as_ptr(),
                1,
                d as isize,
                0.0,
                zb.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    };
    if parallel {
        z.par_chunks_mut(ROW_BLOCK * n)
            .zip(x.par_chunks(ROW_BLOCK * d))
            .for_each(block);
    } else {
        z.chunks_mut(ROW_BLOCK * n)
            .zip(x.chunks(ROW_BLOCK * d))
            .for_each(block);
    }
}

/// dst (n x d) <- beta dZ^T X (+ dst when `read_dst`) by `matrixmultiply` (X: rows x d, dZ:
/// rows x n, row-major), the weight gradient where the [`products`] kernels do not run. The
/// columns (input coordinates) are cut into fixed blocks of [`COL_BLOCK`], computed in parallel
/// when `parallel`; each element sums over all rows in the same order, so the bits do not depend
/// on the thread count.
///
/// # Panics
/// If the lengths do not match.
pub fn matmul_weight_product(
    x: &[f32],
    dz: &[f32],
    d: usize,
    dst: &mut [f32],
    read_dst: bool,
    beta: f32,
    parallel: bool,
) {
    let n = dst.len() / d;
    let rows = x.len() / d;
    assert_eq!(dz.len(), rows * n);
    assert_eq!(dst.len(), n * d);
    let out = SendPtr(dst.as_mut_ptr());
    let block = |j: usize| {
        let j0 = j * COL_BLOCK;
        let nc = COL_BLOCK.min(d - j0);
        let out = &out;
        // SAFETY: dst[:, j0..j0+nc] (n x nc, row stride d) = beta * dZ^T X[:, j0..j0+nc]
        // (+ itself when read_dst). dZ^T (n x rows) is read from dZ (rows x n, row-major)
        // with row stride 1 and column stride n; X's column block starts at x + j0 with row
        // stride d. All reads and writes stay inside dz, x and dst, whose sizes are checked
        // above; blocks write disjoint columns of dst, which aliases neither input.
        unsafe {
            matrixmultiply::sgemm(
                n,
                rows,
                nc,
                beta,
                dz.as_ptr(),
                1,
                n as isize,
                x.as_ptr().add(j0),
                d as isize,
                1,
                if read_dst { 1.0 } else { 0.0 },
                out.0.add(j0),
                d as isize,
                1,
            );
        }
    };
    let blocks = d.div_ceil(COL_BLOCK);
    if parallel {
        (0..blocks).into_par_iter().for_each(block);
    } else {
        (0..blocks).for_each(block);
    }
}

#[cfg(test)]
mod tests;
