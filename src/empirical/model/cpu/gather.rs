//! What the convolutions of the CPU engine run on: a layer's shape ([`ConvGeom`]), its passes
//! as gathers over taps ([`Gather`]: the forward pass, and the input gradient by residue
//! classes of the stride), the blocking of output channels into whole vectors for the
//! microkernels ([`Blocking`]), and the panel sizes. [`super::conv`] runs the gathers directly,
//! [`super::winograd`] the stride-1 3x3 ones that fit it.

use candle_core::{bail, Result};

use super::isa::Simd;
use super::micro;

/// Reduced channels per packed weight panel.
pub(super) const KC: usize = 128;

/// Output pixels of a group of images that share the passes over a weight panel.
pub(super) const GROUP_PIX: usize = 256;

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

    /// Values of one input image.
    pub fn in_len(&self) -> usize {
        self.h * self.w * self.ci
    }

    /// Values of one output image.
    pub fn out_len(&self) -> usize {
        self.ho * self.wo * self.co
    }
}

/// Output pixels of one residue class of a [`Gather`] and the taps that reach them.
#[derive(Clone, Debug)]
pub(super) struct Class {
    /// Rows and columns of the class.
    pub(super) rows: usize,
    pub(super) cols: usize,
    /// Padded-source pixel of class pixel (0, 0) and the step per class row / column.
    pub(super) src0: (usize, usize),
    pub(super) src_step: usize,
    /// Output pixel of class pixel (0, 0) and the step per class row / column.
    pub(super) out0: (usize, usize),
    pub(super) out_step: usize,
    /// Source pixel offsets `(dy, dx)` of the taps, with the tap's weight index `ky * k + kx`.
    pub(super) taps: Vec<((usize, usize), usize)>,
}

/// One pass of a convolution as gathers: `out[pixel] = sum over taps of src[pixel's source +
/// tap] . weight[tap]`, over the output pixels of each class.
#[derive(Clone, Debug)]
pub(super) struct Gather {
    /// Channels of the source (summed over) and of the output.
    pub(super) cr: usize,
    pub(super) cout: usize,
    /// Source image size, its zero padding at the top and left, and the padded size.
    pub(super) src_hw: (usize, usize),
    pub(super) pad: (usize, usize),
    pub(super) padded: (usize, usize),
    /// Output image size.
    pub(super) out_hw: (usize, usize),
    pub(super) classes: Vec<Class>,
    /// Whether the source needs no padding (the padded copy is skipped).
    pub(super) no_pad: bool,
}

impl Gather {
    /// The forward convolution of `g`.
    pub(super) fn forward(g: &ConvGeom) -> Self {
        let (k, s, p) = (g.k, g.s, g.p);
        let hs = (p + g.h).max((g.ho - 1) * s + k);
        let ws = (p + g.w).max((g.wo - 1) * s + k);
        let taps = (0..k * k).map(|t| ((t / k, t % k), t)).collect();
        Self {
            cr: g.ci,
            cout: g.co,
            src_hw: (g.h, g.w),
            pad: (p, p),
            padded: (hs, ws),
            out_hw: (g.ho, g.wo),
            classes: vec![Class {
                rows: g.ho,
                cols: g.wo,
                src0: (0, 0),
                src_step: s,
                out0: (0, 0),
                out_step: 1,
                taps,
            }],
            no_pad: p == 0 && hs == g.h && ws == g.w,
        }
        .for_winograd()
    }

    /// The input gradient of `g` (the transposed convolution), by residue classes.
    pub(super) fn transposed(g: &ConvGeom) -> Self {
        let (k, s, p) = (g.k as isize, g.s as isize, g.p as isize);
        // Per residue a of an input row / column: the taps (source offset d, kernel index).
        let residues = |len: usize| -> Vec<(usize, Vec<(isize, usize)>)> {
            (0..s)
                .map(|a| {
                    let count = ((len as isize - a).max(0) as usize).div_ceil(s as usize);
                    let taps = (0..k)
                        .filter(|ky| (a + p - ky).rem_euclid(s) == 0)
                        .map(|ky| ((a + p - ky) / s, ky as usize))
                        .collect();
                    (count, taps)
                })
                .collect()
        };
        let (ry, rx) = (residues(g.h), residues(g.w));
        // Padding of the output gradient so that every tap of every class is in range.
        let pads = |r: &[(usize, Vec<(isize, usize)>)], len: usize| -> (usize, usize) {
            let mut lo = 0isize;
            let mut hi = len as isize;
            for (count, taps) in r {
                for &(d, _) in taps {
                    lo = lo.min(d);
                    hi = hi.max(*count as isize + d);
                }
            }
            ((-lo) as usize, (hi - lo) as usize)
        };
        let (top, hs) = pads(&ry, g.ho);
        let (left, ws) = pads(&rx, g.wo);
        let mut classes = Vec::new();
        for (a, (rows, ty)) in ry.iter().enumerate() {
            for (b, (cols, tx)) in rx.iter().enumerate() {
                let mut taps = Vec::new();
                for &(dy, ky) in ty {
                    for &(dx, kx) in tx {
                        let off = ((dy + top as isize) as usize, (dx + left as isize) as usize);
                        taps.push((off, ky * g.k + kx));
                    }
                }
                classes.push(Class {
                    rows: *rows,
                    cols: *cols,
                    src0: (0, 0),
                    src_step: 1,
                    out0: (a, b),
                    out_step: g.s,
                    taps,
                });
            }
        }
        Self {
            cr: g.co,
            cout: g.ci,
            src_hw: (g.ho, g.wo),
            pad: (top, left),
            padded: (hs, ws),
            out_hw: (g.h, g.w),
            classes,
            no_pad: top == 0 && left == 0 && hs == g.ho && ws == g.wo,
        }
        .for_winograd()
    }

    /// Pads the source of a gather that Winograd can run so that every 4x4 patch of its 2x2
    /// output tiles is inside (an extra zero row / column for odd output sizes), and always
    /// copies it (the padded copy has the slack the input transform reads).
    pub(super) fn for_winograd(mut self) -> Self {
        if self.winograd_fits() {
            let (ho, wo) = self.out_hw;
            self.padded.0 = self.padded.0.max(2 * ho.div_ceil(2) + 2);
            self.padded.1 = self.padded.1.max(2 * wo.div_ceil(2) + 2);
            self.no_pad = false;
        }
        self
    }

    /// Whether Winograd can run the gather: a stride-1 3x3 gather, one class covering every
    /// output pixel with unit steps, and nine taps at source offsets `0..3 x 0..3`.
    pub(super) fn winograd_fits(&self) -> bool {
        let [c] = self.classes.as_slice() else {
            return false;
        };
        let mut seen = [false; 9];
        for &((dy, dx), _) in &c.taps {
            if dy < 3 && dx < 3 {
                seen[dy * 3 + dx] = true;
            }
        }
        c.src_step == 1
            && c.out_step == 1
            && c.src0 == (0, 0)
            && c.out0 == (0, 0)
            && c.taps.len() == 9
            && seen.iter().all(|&s| s)
    }

    pub(super) fn src_len(&self) -> usize {
        self.src_hw.0 * self.src_hw.1 * self.cr
    }

    pub(super) fn out_len(&self) -> usize {
        self.out_hw.0 * self.out_hw.1 * self.cout
    }

    /// Images per group (see [`GROUP_PIX`]).
    pub(super) fn group(&self) -> usize {
        (GROUP_PIX / (self.out_hw.0 * self.out_hw.1)).max(1)
    }

    /// Whether the classes with taps write every output pixel once.
    pub(super) fn covers(&self) -> bool {
        self.classes.iter().all(|c| !c.taps.is_empty())
    }
}

/// Output channels padded to whole vectors, vectors per block, and blocks.
#[derive(Clone, Copy, Debug)]
pub(super) struct Blocking {
    pub(super) simd: Simd,
    /// Output channels rounded up to whole vectors.
    pub(super) cpad: usize,
    /// Vectors per block.
    pub(super) v: usize,
    /// Channels per block (`v * lanes`).
    pub(super) cb: usize,
}

impl Blocking {
    pub(super) fn new(simd: Simd, cout: usize) -> Self {
        let lanes = micro::lanes(simd);
        let cpad = cout.div_ceil(lanes) * lanes;
        let vectors = cpad / lanes;
        let widest = if simd == Simd::Avx512 { 4 } else { 2 };
        let v = [4, 2, 1]
            .into_iter()
            .find(|&v| v <= widest && vectors.is_multiple_of(v))
            .unwrap_or(1);
        Self {
            simd,
            cpad,
            v,
            cb: v * lanes,
        }
    }

    pub(super) fn blocks(&self) -> usize {
        self.cpad / self.cb
    }
}
