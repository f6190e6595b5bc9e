//! Convolutions on channels-last (NHWC) `f32` images, packing straight from the activations
//! (no im2col buffer): the forward pass, the input gradient and the weight gradient of one
//! convolution layer ([`ConvOp`]), on the [`Simd`] path the model chose.
//!
//! * Forward and input gradient are *gathers* ([`Gather`]): every output pixel sums, over a list
//!   of taps, a run of channels of one source pixel times a weight matrix. The source is copied
//!   once per group of images into a zero-padded buffer, so that every tap of every pixel is in
//!   range, and the microkernel ([`super::micro::gather`]) keeps a tile of output pixels x
//!   output channels in registers while it broadcasts each source value into it. The forward
//!   pass is one gather over the `k x k` taps. The input gradient is the transposed
//!   convolution, split by the residue of the input pixel modulo the stride into `s x s`
//!   gathers of the output gradient with the taps that reach that residue (one gather with the
//!   flipped kernel for stride 1; for stride 2 and a 3x3 kernel, gathers of 1, 2, 2 and 4 taps).
//! * Stride-1 3x3 gathers with at least [`WINOGRAD_MIN_CHANNELS`] channels on both sides run by
//!   Winograd F(2x2, 3x3) instead ([`Algo`], [`super::winograd`]): 4 products per output pixel
//!   and channel pair instead of 9. 16-channel layers stay direct (Winograd gains little there,
//!   and the direct gather keeps the bits of the networks already trained). Its error against an
//!   `f64` reference is no larger than the direct sum's (shorter chains of additions).
//! * The weight gradient sums, per tap, outer products of the input channels and the output
//!   gradient's channels over every pixel where the tap lands inside the image
//!   ([`super::micro::outer`]), over fixed chunks of about [`WGRAD_PIX`] output pixels; the
//!   chunks' partial sums are added in chunk order.
//! * [`ConvOp::backward`] runs the weight gradient and the input gradient of a layer in one pass
//!   over the batch, chunk by chunk, on an output gradient that a closure writes into a buffer
//!   in cache (the engine's BatchNorm input gradient): the same chunks, groups and orders of
//!   summation as the two passes apart, so the same bits, with one pass over memory instead of
//!   four.
//!
//! Weights are packed per step into panels of [`KC`] reduced channels x one block of output
//! channels (1, 2 or 4 vectors), so that a panel stays in cache while every pixel of a group
//! of images runs through it. Images of less than [`GROUP_PIX`](super::gather::GROUP_PIX) output pixels are grouped so
//! that a panel serves enough pixels.
//!
//! Determinism: each output value (and each chunk's partial weight gradient) is computed by one
//! task as one chain of fused multiply-adds in a fixed order that depends only on the layer's
//! shape; tasks are split by images, chunks and channel blocks fixed by the shape; so results
//! are the same for any thread count and on every [`Simd`] path.

use rayon::prelude::*;

use super::isa::Simd;
use super::kernels::sum_parts;
use super::micro::{self, GatherArgs, OuterArgs};
use super::simd;

use super::gather::{Blocking, ConvGeom, Gather, KC};
use super::winograd::{wino_group, WinoPacked};

/// Channels (the fewer of input and output) from which stride-1 3x3 convolutions run by
/// Winograd (see the module doc).
pub(super) const WINOGRAD_MIN_CHANNELS: usize = 32;

/// Output pixels per chunk of the weight gradient (whole images, at least one).
pub(super) const WGRAD_PIX: usize = 2048;

/// Bytes of output gradient per sub-block of a weight-gradient chunk (kept in the level-1 cache
/// while every channel tile runs over it).
const SUB_BYTES: usize = 32 << 10;

/// Input channels from which the weight gradient copies its sub-blocks into panels.
const PACK_CI: usize = 256;

/// A pair of per-thread buffers, reused across calls.
type Scratch = std::cell::RefCell<(Vec<f32>, Vec<f32>)>;

thread_local! {
    /// Per-thread padded-source and output buffers.
    static SCRATCH: Scratch = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    /// Per-thread chunk of output gradient of [`ConvOp::backward`] (the gathers and outer
    /// products it runs use [`SCRATCH`] meanwhile).
    static DY_CHUNK: Scratch = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` on two scratch buffers of `a` and `b` values (contents unspecified) owned by this
/// thread.
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    with_scratch_in(&SCRATCH, a, b, f)
}

/// [`with_scratch`] on the buffers `key` names (fresh ones if they are in use).
fn with_scratch_in<R>(
    key: &'static std::thread::LocalKey<Scratch>,
    a: usize,
    b: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => {
            let (x, y) = &mut *s;
            if x.len() < a {
                x.resize(a, 0.0);
            }
            if y.len() < b {
                y.resize(b, 0.0);
            }
            f(&mut x[..a], &mut y[..b])
        }
        Err(_) => f(&mut vec![0f32; a], &mut vec![0f32; b]),
    })
}

/// A gather's weights, packed per (class, block, chunk of [`KC`] reduced channels) as
/// `[tap][channel][cb]`, zero in the padding channels.
#[derive(Clone, Debug)]
struct Packed {
    data: Vec<f32>,
    /// Offset of the panel of (class, block, chunk).
    offsets: Vec<usize>,
    chunks: usize,
}

impl Packed {
    /// Packs `w(tap, reduced channel, output channel)`.
    fn new(g: &Gather, bl: &Blocking, w: impl Fn(usize, usize, usize) -> f32) -> Self {
        let chunks = g.cr.div_ceil(KC);
        let mut data = Vec::new();
        let mut offsets = Vec::new();
        for class in &g.classes {
            for b in 0..bl.blocks() {
                for q in 0..chunks {
                    offsets.push(data.len());
                    let (c0, c1) = (q * KC, ((q + 1) * KC).min(g.cr));
                    for &(_, t) in &class.taps {
                        for c in c0..c1 {
                            for o in b * bl.cb..(b + 1) * bl.cb {
                                data.push(if o < g.cout { w(t, c, o) } else { 0.0 });
                            }
                        }
                    }
                }
            }
        }
        Self {
            data,
            offsets,
            chunks,
        }
    }

    fn panel(&self, bl: &Blocking, class: usize, block: usize, chunk: usize) -> &[f32] {
        let i = (class * bl.blocks() + block) * self.chunks + chunk;
        &self.data[self.offsets[i]..]
    }
}

/// Copies `n` images (`h x w x c`) into `dst` (`n x hs x ws x c`) at row `top`, column `left`,
/// zero elsewhere.
#[allow(clippy::too_many_arguments)]
fn pad_images(
    src: &[f32],
    n: usize,
    (h, w): (usize, usize),
    c: usize,
    (hs, ws): (usize, usize),
    (top, left): (usize, usize),
    dst: &mut [f32],
) {
    for i in 0..n {
        let img = &src[i * h * w * c..(i + 1) * h * w * c];
        let out = &mut dst[i * hs * ws * c..(i + 1) * hs * ws * c];
        out[..top * ws * c].fill(0.0);
        for y in 0..h {
            let row = &mut out[(top + y) * ws * c..(top + y + 1) * ws * c];
            row[..left * c].fill(0.0);
            row[left * c..(left + w) * c].copy_from_slice(&img[y * w * c..(y + 1) * w * c]);
            row[(left + w) * c..].fill(0.0);
        }
        out[(top + h) * ws * c..].fill(0.0);
    }
}

/// Runs gather `g` with weights `pk` on a batch: `out = [out +] gather(src)`; calls `each`
/// on every output image (its index in the batch, its values) once it is written, in the task
/// of its group (while it is in cache), and returns the results in image order.
fn run_gather<T: Send>(
    g: &Gather,
    bl: &Blocking,
    pk: &Kernel,
    src: &[f32],
    out: &mut [f32],
    accumulate: bool,
    each: impl Fn(usize, &mut [f32]) -> T + Sync,
) -> Vec<T> {
    let group = g.group();
    let (src_len, out_len) = (g.src_len(), g.out_len());
    let parts: Vec<Vec<T>> = out
        .par_chunks_mut(group * out_len)
        .zip(src.par_chunks(group * src_len))
        .enumerate()
        .map(|(q, (out, src))| {
            gather_images(g, bl, pk, src, out, accumulate);
            out.chunks_exact_mut(out_len)
                .enumerate()
                .map(|(i, img)| each(q * group + i, img))
                .collect()
        })
        .collect();
    parts.into_iter().flatten().collect()
}

/// Gather `g` with weights `pk` on the images of `src` into those of `out` (`out = [out +]
/// gather(src)`), in this thread: one group of images of [`run_gather`].
fn gather_images(
    g: &Gather,
    bl: &Blocking,
    pk: &Kernel,
    src: &[f32],
    out: &mut [f32],
    accumulate: bool,
) {
    let (hs, ws) = g.padded;
    let padded_len = hs * ws * g.cr;
    let (ho, wo) = g.out_hw;
    let opad_len = ho * wo * bl.cpad;
    let direct = bl.cpad == g.cout;
    let n = out.len() / g.out_len();
    // One vector of slack after the padded images (read, unused, by the Winograd input
    // transform of the last channels).
    let sbuf = if g.no_pad { 0 } else { n * padded_len + 16 };
    let obuf = if direct { 0 } else { n * opad_len };
    with_scratch(sbuf, obuf, |sb, ob| {
        let s: &[f32] = if g.no_pad {
            src
        } else {
            pad_images(src, n, g.src_hw, g.cr, g.padded, g.pad, sb);
            sb
        };
        if direct {
            if !accumulate && !g.covers() {
                out.fill(0.0);
            }
            pk.run(g, bl, s, n, out, accumulate);
        } else {
            if accumulate {
                copy_channels(out, g.cout, ob, bl.cpad);
            } else if !g.covers() {
                ob.fill(0.0);
            }
            pk.run(g, bl, s, n, ob, accumulate);
            copy_channels(ob, bl.cpad, out, g.cout);
        }
    });
}

/// Copies every pixel's first `min(a, b)` channels from `src` (`a` channels per pixel) to
/// `dst` (`b` channels per pixel).
fn copy_channels(src: &[f32], a: usize, dst: &mut [f32], b: usize) {
    let c = a.min(b);
    for (d, s) in dst.chunks_exact_mut(b).zip(src.chunks_exact(a)) {
        d[..c].copy_from_slice(&s[..c]);
    }
}

/// The gathers of one group of `n` images: padded sources `s`, outputs `o` (`bl.cpad`
/// channels per pixel).
fn gather_group(
    g: &Gather,
    bl: &Blocking,
    pk: &Packed,
    s: &[f32],
    n: usize,
    o: &mut [f32],
    accumulate: bool,
) {
    let (hs, ws) = g.padded;
    let (ho, wo) = g.out_hw;
    let cr = g.cr;
    let tile = micro::tile(bl.simd, bl.v);
    let mut taps = Vec::new();
    for (ci, class) in g.classes.iter().enumerate() {
        if class.taps.is_empty() {
            continue;
        }
        taps.clear();
        taps.extend(class.taps.iter().map(|&((dy, dx), _)| (dy * ws + dx) * cr));
        for b in 0..bl.blocks() {
            for q in 0..pk.chunks {
                let c0 = q * KC;
                let kc = KC.min(cr - c0);
                let w = pk.panel(bl, ci, b, q);
                assert!(w.len() >= taps.len() * kc * bl.cb, "packed panel too short");
                for i in 0..n {
                    let simg = &s[i * hs * ws * cr..(i + 1) * hs * ws * cr];
                    let oimg = &mut o[i * ho * wo * bl.cpad..(i + 1) * ho * wo * bl.cpad];
                    for m in 0..class.rows {
                        let sy = class.src0.0 + m * class.src_step;
                        let oy = class.out0.0 + m * class.out_step;
                        for n0 in (0..class.cols).step_by(tile) {
                            let p = tile.min(class.cols - n0);
                            let sx = class.src0.1 + n0 * class.src_step;
                            let ox = class.out0.1 + n0 * class.out_step;
                            let so = (sy * ws + sx) * cr + c0;
                            let oo = (oy * wo + ox) * bl.cpad + b * bl.cb;
                            let last_src = so
                                + (p - 1) * class.src_step * cr
                                + taps.iter().max().copied().unwrap_or(0)
                                + kc;
                            let last_out = oo + (p - 1) * class.out_step * bl.cpad + bl.cb;
                            assert!(last_src <= simg.len() && last_out <= oimg.len());
                            let a = GatherArgs {
                                src: simg[so..].as_ptr(),
                                step: class.src_step * cr,
                                taps: &taps,
                                kc,
                                w: w.as_ptr(),
                                out: oimg[oo..].as_mut_ptr(),
                                out_step: class.out_step * bl.cpad,
                                acc: accumulate || q > 0,
                            };
                            // SAFETY: the path is supported (checked when the model chose it);
                            // the asserts above bound every source and output value the tile
                            // touches, and the panel holds taps x kc rows of cb values.
                            unsafe { micro::gather(bl.simd, p, bl.v, &a) };
                        }
                    }
                }
            }
        }
    }
}

/// How a gather runs: directly, or by Winograd F(2x2, 3x3) (stride-1 3x3 gathers only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Algo {
    /// Direct: every tap of every pixel.
    Direct,
    /// Winograd F(2x2, 3x3) where the gather fits, direct elsewhere.
    Winograd,
}

impl Algo {
    /// The algorithm for the gathers of `g`.
    pub fn choose(g: &ConvGeom) -> Self {
        if g.k == 3 && g.s == 1 && g.ci.min(g.co) >= WINOGRAD_MIN_CHANNELS {
            Algo::Winograd
        } else {
            Algo::Direct
        }
    }
}

/// A gather's weights, packed for its algorithm.
enum Kernel {
    Direct(Packed),
    Winograd(WinoPacked),
}

impl Kernel {
    /// Packs `w(tap, reduced channel, output channel)` for gather `g` and `algo`.
    fn new(g: &Gather, bl: &Blocking, algo: Algo, w: impl Fn(usize, usize, usize) -> f32) -> Self {
        if algo == Algo::Winograd && g.winograd_fits() {
            Kernel::Winograd(WinoPacked::new(g, bl, w))
        } else {
            Kernel::Direct(Packed::new(g, bl, w))
        }
    }

    /// Runs the gather on one group of `n` images (see [`gather_group`]).
    fn run(&self, g: &Gather, bl: &Blocking, s: &[f32], n: usize, o: &mut [f32], acc: bool) {
        match self {
            Kernel::Direct(pk) => gather_group(g, bl, pk, s, n, o, acc),
            Kernel::Winograd(wp) => wino_group(g, bl, wp, s, n, o, acc),
        }
    }
}

/// One convolution layer for one step: its shape, its weights, and the weights packed for the
/// forward pass and (on first use) for the input gradient.
pub(super) struct ConvOp {
    /// The shape.
    pub geom: ConvGeom,
    simd: Simd,
    algo: Algo,
    w: Vec<f32>,
    fwd: (Gather, Blocking, Kernel),
    bwd: std::sync::OnceLock<(Gather, Blocking, Kernel)>,
}

impl ConvOp {
    /// The layer `g` with weights `w` (`co x ci x k x k`, PyTorch's layout) on `simd`, with
    /// the algorithm [`Algo::choose`] picks.
    pub fn new(g: ConvGeom, w: &[f32], simd: Simd) -> Self {
        Self::with_algo(g, w, simd, Algo::choose(&g))
    }

    /// [`ConvOp::new`] with the gathers run by `algo`.
    pub fn with_algo(g: ConvGeom, w: &[f32], simd: Simd, algo: Algo) -> Self {
        let kk = g.k * g.k;
        let fg = Gather::forward(&g);
        let fb = Blocking::new(simd, g.co);
        let fp = Kernel::new(&fg, &fb, algo, |t, c, o| w[(o * g.ci + c) * kk + t]);
        Self {
            geom: g,
            simd,
            algo,
            w: w.to_vec(),
            fwd: (fg, fb, fp),
            bwd: std::sync::OnceLock::new(),
        }
    }

    /// `out = conv(x)` for a batch of NHWC images; with `stats`, also returns the per-channel
    /// sum and sum of squares of the output (`2 co` values, summed image by image in order),
    /// else an empty vector.
    pub fn forward(&self, x: &[f32], out: &mut [f32], stats: bool) -> Vec<f64> {
        let (g, bl, pk) = &self.fwd;
        let co = self.geom.co;
        let parts = run_gather(g, bl, pk, x, out, false, |_, img| {
            if stats {
                let mut s = vec![0f64; 2 * co];
                let (sum, sq) = s.split_at_mut(co);
                simd::channel_sums(img, co, sum, sq);
                s
            } else {
                Vec::new()
            }
        });
        if stats {
            sum_parts(parts, 2 * co)
        } else {
            Vec::new()
        }
    }

    /// The input gradient `dx = [dx +] conv^T(dy)`.
    pub fn grad_input(&self, dy: &[f32], dx: &mut [f32], accumulate: bool) {
        self.grad_input_then(dy, dx, accumulate, |_, _| ());
    }

    /// [`ConvOp::grad_input`], then `each` on every image of `dx` (its index, its values) as
    /// soon as it is written, in the task that wrote it: the results in image order.
    pub fn grad_input_then<T: Send>(
        &self,
        dy: &[f32],
        dx: &mut [f32],
        accumulate: bool,
        each: impl Fn(usize, &mut [f32]) -> T + Sync,
    ) -> Vec<T> {
        let (g, bl, pk) = self.bwd_kernel();
        run_gather(g, bl, pk, dy, dx, accumulate, each)
    }

    /// The input gradient's gather and its packed weights (packed on first use).
    fn bwd_kernel(&self) -> &(Gather, Blocking, Kernel) {
        self.bwd.get_or_init(|| {
            let geom = &self.geom;
            let (kk, ci) = (geom.k * geom.k, geom.ci);
            let bg = Gather::transposed(geom);
            let bb = Blocking::new(self.simd, ci);
            let bp = Kernel::new(&bg, &bb, self.algo, |t, c, o| self.w[(c * ci + o) * kk + t]);
            (bg, bb, bp)
        })
    }

    /// The weight gradient `dw` (`co x ci x k x k`) of a batch of `n` images: per tap, the sum
    /// over pixels of `x[pixel + tap] dy[pixel]^T`, in chunks of about [`WGRAD_PIX`] output
    /// pixels whose partial sums are added in chunk order.
    pub fn grad_weight(&self, n: usize, x: &[f32], dy: &[f32], dw: &mut [f32]) {
        let g = &self.geom;
        let bl = Blocking::new(self.simd, g.co);
        let (kk, ci, co) = (g.k * g.k, g.ci, g.co);
        // The output gradient with whole vectors of channels.
        let padded;
        let dy: &[f32] = if bl.cpad == co {
            dy
        } else {
            let mut p = vec![0f32; n * g.ho * g.wo * bl.cpad];
            copy_channels(dy, co, &mut p, bl.cpad);
            padded = p;
            &padded
        };
        let per_chunk = self.wgrad_chunk();
        let chunks = n.div_ceil(per_chunk);
        let dimg = g.ho * g.wo * bl.cpad;
        let parts: Vec<Vec<f32>> = (0..chunks * kk)
            .into_par_iter()
            .map(|item| {
                let (q, t) = (item / kk, item % kk);
                let i0 = q * per_chunk;
                let imgs = per_chunk.min(n - i0);
                let mut part = vec![0f32; ci * bl.cpad];
                let (x, dy) = (&x[i0 * g.in_len()..], &dy[i0 * dimg..]);
                self.outer_tap(&bl, t, x, dy, imgs, &mut part);
                part
            })
            .collect();
        self.write_weight_grad(&bl, parts, dw);
    }

    /// Images per chunk of the weight gradient (about [`WGRAD_PIX`] output pixels).
    fn wgrad_chunk(&self) -> usize {
        (WGRAD_PIX / (self.geom.ho * self.geom.wo)).max(1)
    }

    /// Sums the per-(chunk, tap) partial weight gradients `parts` (`ci x cpad` each, chunk
    /// major) in chunk order and writes them to `dw` (`co x ci x k x k`) in tiles of 16 x 16
    /// channels (so that both sides stay in cache).
    fn write_weight_grad(&self, bl: &Blocking, mut parts: Vec<Vec<f32>>, dw: &mut [f32]) {
        let g = &self.geom;
        let (kk, ci, co) = (g.k * g.k, g.ci, g.co);
        let chunks = parts.len() / kk;
        let (first, rest) = parts.split_at_mut(kk);
        for q in 1..chunks {
            for (total, part) in first.iter_mut().zip(&rest[(q - 1) * kk..q * kk]) {
                for (s, v) in total.iter_mut().zip(part) {
                    *s += v;
                }
            }
        }
        const T: usize = 16;
        for o0 in (0..co).step_by(T) {
            for c0 in (0..ci).step_by(T) {
                for o in o0..(o0 + T).min(co) {
                    for c in c0..(c0 + T).min(ci) {
                        let row = &mut dw[(o * ci + c) * kk..(o * ci + c + 1) * kk];
                        for (d, total) in row.iter_mut().zip(first.iter()) {
                            *d = total[c * bl.cpad + o];
                        }
                    }
                }
            }
        }
    }

    /// Whether [`ConvOp::backward`] can run on `n` images: the output channels fill whole
    /// vectors, every chunk of the weight gradient is made of whole groups of the input
    /// gradient, and there are at least two chunks per thread (else the two passes run
    /// separately, [`ConvOp::grad_weight`] and [`ConvOp::grad_input_then`], for the same
    /// bits).
    pub fn fuses(&self, n: usize) -> bool {
        let per_chunk = self.wgrad_chunk();
        let group = self.bwd_kernel().0.group();
        Blocking::new(self.simd, self.geom.co).cpad == self.geom.co
            && per_chunk.is_multiple_of(group)
            && n.div_ceil(per_chunk) >= 2 * rayon::current_num_threads()
    }

    /// Both gradients over `n` images of input `x`, in one pass over the batch (see
    /// [`ConvOp::fuses`]): per chunk of the weight gradient, `dy_of(i, dy)` writes image `i`'s
    /// output gradient into a buffer that stays in cache, the chunk's weight gradient and its
    /// input gradient `dx = [dx +] conv^T(dy)` are computed from it, and `each(i, dx)` runs
    /// on every image of `dx` as soon as it is written; returns `each`'s results in image
    /// order. The same chunks, groups and orders of summation as the two passes run apart,
    /// so the same bits, without the output gradient ever being written to or read from
    /// memory.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Send>(
        &self,
        n: usize,
        x: &[f32],
        dy_of: impl Fn(usize, &mut [f32]) + Sync,
        dw: &mut [f32],
        dx: &mut [f32],
        accumulate: bool,
        each: impl Fn(usize, &mut [f32]) -> T + Sync,
    ) -> Vec<T> {
        assert!(
            self.fuses(n),
            "fused backward of a layer that does not fuse"
        );
        let g = &self.geom;
        let bl = Blocking::new(self.simd, g.co);
        let (gb, bb, pb) = self.bwd_kernel();
        let (kk, ci) = (g.k * g.k, g.ci);
        let per_chunk = self.wgrad_chunk();
        let group = gb.group();
        let (dimg, ximg) = (g.out_len(), g.in_len());
        assert!(x.len() == n * ximg && dx.len() == n * ximg);
        let done: Vec<(Vec<Vec<f32>>, Vec<T>)> = dx
            .par_chunks_mut(per_chunk * ximg)
            .enumerate()
            .map(|(q, dx)| {
                let i0 = q * per_chunk;
                let imgs = dx.len() / ximg;
                with_scratch_in(&DY_CHUNK, imgs * dimg, 0, |dy, _| {
                    for (i, img) in dy.chunks_exact_mut(dimg).enumerate() {
                        dy_of(i0 + i, img);
                    }
                    let x = &x[i0 * ximg..];
                    let parts = (0..kk)
                        .map(|t| {
                            let mut part = vec![0f32; ci * bl.cpad];
                            self.outer_tap(&bl, t, x, dy, imgs, &mut part);
                            part
                        })
                        .collect();
                    let mut results = Vec::with_capacity(imgs);
                    for (j, (dx, dy)) in dx
                        .chunks_mut(group * ximg)
                        .zip(dy.chunks(group * dimg))
                        .enumerate()
                    {
                        gather_images(gb, bb, pb, dy, dx, accumulate);
                        for (i, img) in dx.chunks_exact_mut(ximg).enumerate() {
                            results.push(each(i0 + j * group + i, img));
                        }
                    }
                    (parts, results)
                })
            })
            .collect();
        let mut parts = Vec::with_capacity(done.len() * kk);
        let mut results = Vec::with_capacity(n);
        for (p, r) in done {
            parts.extend(p);
            results.extend(r);
        }
        self.write_weight_grad(&bl, parts, dw);
        results
    }

    /// The partial weight gradient of tap `t` over `imgs` images of `x` and `dy` (`bl.cpad`
    /// channels): `part[c][o]`, `ci x cpad`.
    fn outer_tap(
        &self,
        bl: &Blocking,
        t: usize,
        x: &[f32],
        dy: &[f32],
        imgs: usize,
        part: &mut [f32],
    ) {
        let g = &self.geom;
        let (ky, kx) = (t / g.k, t % g.k);
        // Output rows / columns where the tap lands inside the image.
        let range = |k: usize, len: usize, out: usize| -> (usize, usize) {
            let lo = g.p.saturating_sub(k).div_ceil(g.s);
            let hi = if len + g.p > k {
                ((len + g.p - k - 1) / g.s + 1).min(out)
            } else {
                0
            };
            (lo, hi.max(lo))
        };
        let (y0, y1) = range(ky, g.h, g.ho);
        let (x0, x1) = range(kx, g.w, g.wo);
        if y0 == y1 || x0 == x1 {
            part.fill(0.0);
            return;
        }
        let (ci, cpad, cb) = (g.ci, bl.cpad, bl.cb);
        let r_max = micro::tile(bl.simd, bl.v);
        let dimg = g.ho * g.wo * cpad;
        let x_strides = [g.in_len(), g.s * g.w * ci, g.s * ci];
        let dy_strides = [dimg, g.wo * cpad, cpad];
        // Input value of (image i, output row oy, column ox) and its output gradient.
        let xo = |i: usize, oy: usize, ox: usize| {
            i * g.in_len() + ((oy * g.s + ky - g.p) * g.w + ox * g.s + kx - g.p) * ci
        };
        let dyo = |i: usize, oy: usize, ox: usize| i * dimg + (oy * g.wo + ox) * cpad;
        assert!(xo(imgs - 1, y1 - 1, x1 - 1) + ci <= x.len());
        assert!(dyo(imgs - 1, y1 - 1, x1 - 1) + cpad <= dy.len() && part.len() >= ci * cpad);
        // Sub-blocks of whole rows (or whole images) of about SUB_BYTES of one block of dy,
        // each run through every channel tile while it is in cache; the pixels stay in order,
        // so the sums do too.
        let (nrows, ncols) = (y1 - y0, x1 - x0);
        let sub_pix = (SUB_BYTES / (4 * cb)).max(1);
        let rows = (sub_pix / ncols).clamp(1, nrows);
        let per = if rows == nrows {
            (sub_pix / (nrows * ncols)).clamp(1, imgs)
        } else {
            1
        };
        // Wide layers: a pixel's channels are `4 ci` bytes apart, so the same channel of the
        // pixels of a sub-block falls into a few cache sets; copy the sub-block into contiguous
        // panels first (x per channel tile, dy per block).
        let pack = ci >= PACK_CI;
        let max_pix = per * rows * ncols;
        let (xlen, dlen) = if pack {
            (max_pix * ci, max_pix * cb)
        } else {
            (0, 0)
        };
        with_scratch(xlen, dlen, |xpk, dpk| {
            let mut first = true;
            for i0 in (0..imgs).step_by(per) {
                let ni = per.min(imgs - i0);
                for r0 in (y0..y1).step_by(rows) {
                    let nr = rows.min(y1 - r0);
                    let npix = ni * nr * ncols;
                    let pixels = || {
                        (i0..i0 + ni).flat_map(move |i| {
                            (r0..r0 + nr).flat_map(move |oy| (x0..x1).map(move |ox| (i, oy, ox)))
                        })
                    };
                    if pack {
                        // Panel of channel tile c0: npix x r values from xpk[c0 * npix].
                        for (p, (i, oy, ox)) in pixels().enumerate() {
                            let src = &x[xo(i, oy, ox)..xo(i, oy, ox) + ci];
                            for c0 in (0..ci).step_by(r_max) {
                                let r = r_max.min(ci - c0);
                                xpk[c0 * npix + p * r..c0 * npix + (p + 1) * r]
                                    .copy_from_slice(&src[c0..c0 + r]);
                            }
                        }
                    }
                    for b in 0..bl.blocks() {
                        if pack {
                            for (p, (i, oy, ox)) in pixels().enumerate() {
                                let o = dyo(i, oy, ox) + b * cb;
                                dpk[p * cb..(p + 1) * cb].copy_from_slice(&dy[o..o + cb]);
                            }
                        }
                        for c0 in (0..ci).step_by(r_max) {
                            let r = r_max.min(ci - c0);
                            let a = if pack {
                                OuterArgs {
                                    x: xpk[c0 * npix..].as_ptr(),
                                    x_strides: [0, 0, r],
                                    dy: dpk.as_ptr(),
                                    dy_strides: [0, 0, cb],
                                    n: [1, 1, npix],
                                    dw: part[c0 * cpad + b * cb..].as_mut_ptr(),
                                    dw_step: cpad,
                                    acc: !first,
                                }
                            } else {
                                OuterArgs {
                                    x: x[xo(i0, r0, x0) + c0..].as_ptr(),
                                    x_strides,
                                    dy: dy[dyo(i0, r0, x0) + b * cb..].as_ptr(),
                                    dy_strides,
                                    n: [ni, nr, ncols],
                                    dw: part[c0 * cpad + b * cb..].as_mut_ptr(),
                                    dw_step: cpad,
                                    acc: !first,
                                }
                            };
                            // SAFETY: the path is supported; the asserts above bound the last
                            // pixel's values of x and dy (the panels hold npix x r and npix x
                            // cb values), and part holds ci rows of cpad.
                            unsafe { micro::outer(bl.simd, r, bl.v, &a) };
                        }
                    }
                    first = false;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};
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

    fn nhwc(t: &Tensor) -> Vec<f32> {
        t.permute((0, 2, 3, 1))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
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

    /// Forward, input gradient and weight gradient, direct and Winograd, agree with candle's
    /// `conv2d` and its autograd on every path this processor has (3x3 and 1x1, strides 1 and
    /// 2, with and without padding, odd and non-square images, channel counts that are not
    /// whole vectors, batch 1 and more), and every path gives the same bits.
    #[test]
    fn conv_matches_candle_on_every_path_and_algorithm() {
        #[rustfmt::skip]
        let cases = [
            // (n, ci, co, h, w, k, s, p)
            (3, 4, 5, 6, 6, 3, 1, 1), (2, 4, 5, 7, 7, 3, 2, 1), (1, 3, 6, 7, 5, 3, 1, 1),
            (1, 3, 6, 7, 5, 3, 2, 1), (2, 4, 5, 6, 6, 1, 2, 0), (3, 4, 5, 5, 5, 1, 1, 0),
            (1, 2, 3, 7, 5, 1, 1, 0), (2, 3, 4, 6, 5, 3, 1, 0), (2, 3, 4, 40, 9, 3, 1, 1),
            (1, 16, 32, 9, 11, 3, 2, 1), (2, 16, 16, 8, 8, 3, 1, 1), (2, 32, 64, 8, 8, 3, 2, 1),
            (2, 64, 64, 4, 4, 3, 1, 1), (1, 130, 24, 5, 5, 3, 1, 1), (5, 32, 48, 6, 6, 1, 2, 0),
            (40, 8, 16, 4, 4, 3, 1, 1), (2, 8, 64, 20, 20, 3, 1, 1), (3, 4, 8, 70, 70, 3, 2, 1),
            (3, 128, 128, 10, 10, 3, 1, 1), (2, 128, 72, 9, 9, 3, 2, 1), (2, 256, 32, 14, 14, 3, 1, 1),
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
            let wv = wt
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let (xv, rv) = (nhwc(x.as_tensor()), nhwc(r.as_tensor()));
            let want_y = nhwc(&y);
            let want_dx = nhwc(grads.get(&x).unwrap());
            let want_dw = grads
                .get(&wt)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for algo in [Algo::Direct, Algo::Winograd] {
                let mut first: Option<Vec<Vec<f32>>> = None;
                for simd in Simd::available() {
                    let what = format!("case {i} {simd} {algo:?}");
                    let op = ConvOp::with_algo(g, &wv, simd, algo);
                    let mut out = vec![0f32; n * g.out_len()];
                    let sums = op.forward(&xv, &mut out, true);
                    assert!(rel_err(&out, &want_y) < 1e-5, "forward {what}");
                    for (ch, &got) in sums[..co].iter().enumerate() {
                        let vals = out.iter().skip(ch).step_by(co).map(|&v| f64::from(v));
                        let (s, abs) = vals.fold((0.0, 0.0), |(s, a), v| (s + v, a + v.abs()));
                        assert!((got - s).abs() < 1e-6 * (1.0 + abs), "sum {what}");
                    }
                    let mut results = vec![out];
                    for acc in [false, true] {
                        let mut dx = vec![if acc { 1.0 } else { 7.0 }; n * g.in_len()];
                        op.grad_input(&rv, &mut dx, acc);
                        let mut want = want_dx.clone();
                        if acc {
                            want.iter_mut().for_each(|v| *v += 1.0);
                        }
                        assert!(rel_err(&dx, &want) < 1e-5, "dx {what} acc {acc}");
                        results.push(dx);
                    }
                    let mut dw = vec![7f32; wv.len()];
                    op.grad_weight(n, &xv, &rv, &mut dw);
                    assert!(rel_err(&dw, &want_dw) < 1e-5, "dw {what}");
                    results.push(dw);
                    match &first {
                        None => first = Some(results),
                        Some(f) => assert!(f == &results, "{what} differs from the first path"),
                    }
                }
            }
        }
    }

    /// The fused backward pass gives the bits of the weight and input gradients run apart, on
    /// the output gradient its producer writes, with `each` on every image of `dx`, for the
    /// layer shapes of the ResNets (both algorithms, every path, with and without
    /// accumulation), on batches large enough to fuse.
    #[test]
    fn fused_backward_matches_the_passes_apart() {
        #[rustfmt::skip]
        let cases = [
            // (ci, co, h, w, k, s, p)
            (16, 16, 32, 32, 3, 1, 1), (16, 32, 32, 32, 3, 2, 1), (16, 32, 32, 32, 1, 2, 0),
            (32, 32, 16, 16, 3, 1, 1), (64, 64, 8, 8, 3, 1, 1), (8, 16, 4, 4, 3, 1, 1),
        ];
        // Chunks of 68 images (2048 / 30 pixels) are not whole groups of 8 (256 / 30).
        let g = ConvGeom::new(6, 5, 8, 16, 3, 1, 1).unwrap();
        assert!(!ConvOp::new(g, &rand_vec(16 * 8 * 9, 39), Simd::best()).fuses(1000));
        for (i, &(ci, co, h, w, k, s, p)) in cases.iter().enumerate() {
            let g = ConvGeom::new(h, w, ci, co, k, s, p).unwrap();
            let wv = rand_vec(co * ci * k * k, 40 + i as u64);
            let simd = Simd::best();
            let chunk = ConvOp::new(g, &wv, simd).wgrad_chunk();
            let n = chunk * 2 * rayon::current_num_threads() + 1;
            let xv = rand_vec(n * g.in_len(), 50 + i as u64);
            let (dz, hv) = (
                rand_vec(n * g.out_len(), 60 + i as u64),
                rand_vec(n * g.out_len(), 70 + i as u64),
            );
            let (a, b) = (rand_vec(co, 80), rand_vec(co, 81));
            let dy_of = |img: usize, dy: &mut [f32]| {
                let r = img * g.out_len()..(img + 1) * g.out_len();
                simd::affine3(&dz[r.clone()], &hv[r], &a, &b, &a, co, dy);
            };
            let mut dy = vec![0f32; n * g.out_len()];
            for (img, d) in dy.chunks_exact_mut(g.out_len()).enumerate() {
                dy_of(img, d);
            }
            let each = |img: usize, dx: &mut [f32]| {
                dx[0] += 1.0;
                (img, dx.iter().map(|&v| f64::from(v)).sum::<f64>())
            };
            for algo in [Algo::Direct, Algo::Winograd] {
                for simd in Simd::available() {
                    let op = ConvOp::with_algo(g, &wv, simd, algo);
                    assert!(op.fuses(n), "case {i} should fuse at batch {n}");
                    for acc in [false, true] {
                        let what = format!("case {i} {simd} {algo:?} acc {acc}");
                        let mut dw = vec![7f32; wv.len()];
                        op.grad_weight(n, &xv, &dy, &mut dw);
                        let mut dx = vec![0.5f32; n * g.in_len()];
                        let want = op.grad_input_then(&dy, &mut dx, acc, each);
                        let mut dw2 = vec![3f32; wv.len()];
                        let mut dx2 = vec![0.5f32; n * g.in_len()];
                        let got = op.backward(n, &xv, dy_of, &mut dw2, &mut dx2, acc, each);
                        assert!(dw == dw2 && dx == dx2 && want == got, "{what}");
                        assert_eq!(got.len(), n, "{what}");
                        assert!(got.iter().enumerate().all(|(j, r)| r.0 == j), "{what}");
                    }
                }
            }
        }
    }
}
