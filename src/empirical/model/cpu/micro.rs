//! The register-tiled inner loops of the direct convolutions of [`super::conv`], written once
//! over [`Isa`] and compiled per instruction set ([`Simd`]).
//!
//! * [`gather`]: `P` output pixels x `V` vectors of output channels, summed over a list of taps
//!   and a run of input channels: `out[p] (+)= sum_t sum_c src[p * step + tap_t + c] w[t, c]`,
//!   each input value broadcast once and multiplied into `V` vectors. The forward convolution and
//!   the input gradient are gathers.
//! * [`outer`]: `R` input channels x `V` vectors of output channels of one tap of the weight
//!   gradient, summed over every pixel of a batch chunk: `dw[j] (+)= sum_px x[px + j] dy[px]`.
//!
//! Every accumulator is a chain of fused multiply-adds in a fixed order (taps, then channels;
//! or pixels), the same on every path and for any tile size, so results are bit-identical
//! across [`Simd`] paths and tile shapes.

#[cfg(target_arch = "x86_64")]
use super::isa::{Avx2, Avx512};
use super::isa::{Isa, Scalar, Simd};

/// Arguments of one [`gather`] tile.
#[derive(Clone, Copy)]
pub(super) struct GatherArgs<'a> {
    /// The source of pixel 0 at tap offset 0 and the first reduced channel.
    pub src: *const f32,
    /// Values between the sources of consecutive pixels.
    pub step: usize,
    /// Offsets of the taps from a pixel's source.
    pub taps: &'a [usize],
    /// Reduced channels (consecutive values at each tap).
    pub kc: usize,
    /// Packed weights `[tap][kc][V * W]`.
    pub w: *const f32,
    /// The output of pixel 0 (its first channel of the block).
    pub out: *mut f32,
    /// Values between consecutive output pixels.
    pub out_step: usize,
    /// Add to the output instead of overwriting it.
    pub acc: bool,
}

/// Arguments of one [`outer`] tile: pixels `(i, y, x)` for `i < n`, `y < ny`, `x < nx`.
#[derive(Clone, Copy)]
pub(super) struct OuterArgs {
    /// The input value of pixel (0, 0, 0) for the first of the `R` channels.
    pub x: *const f32,
    /// Strides of `x` between images, rows and columns.
    pub x_strides: [usize; 3],
    /// The output gradient of pixel (0, 0, 0) at the block's first channel.
    pub dy: *const f32,
    /// Strides of `dy` between images, rows and columns.
    pub dy_strides: [usize; 3],
    /// Images, rows, columns.
    pub n: [usize; 3],
    /// Row `j` of the result (input channel `j`) at `dw + j * dw_step`.
    pub dw: *mut f32,
    /// Values between rows of the result.
    pub dw_step: usize,
    /// Add to the result instead of overwriting it.
    pub acc: bool,
}

/// Arguments of the Winograd F(2x2, 3x3) input transform of `count` tiles (one call, so that
/// the loop over a row of tiles runs in the instruction set's code): `B^T d B` of each 4x4
/// patch `d` for `nvec` vectors of channels.
#[derive(Clone, Copy)]
pub(super) struct WinoInArgs {
    /// The patch's top-left value (first channel).
    pub src: *const f32,
    /// Values between patch rows and between patch columns.
    pub row: usize,
    pub col: usize,
    /// Vectors of channels.
    pub nvec: usize,
    /// Point `xi` (of 16) of the result at `dst + xi * plane`.
    pub dst: *mut f32,
    pub plane: usize,
    /// Tiles transformed, the `k`-th from `src + k * src_step` to `dst + k * dst_step`.
    pub count: usize,
    pub src_step: usize,
    pub dst_step: usize,
}

/// Arguments of the Winograd F(2x2, 3x3) output transform of `count` tiles: `A^T m A` of each
/// tile's 16 points `m` for `nvec` vectors of channels, written to (or added to) `rows x cols`
/// output pixels (1 or 2 each, fewer at the image's edge).
#[derive(Clone, Copy)]
pub(super) struct WinoOutArgs {
    /// Point `xi` of the tile at `m + xi * plane`.
    pub m: *const f32,
    pub plane: usize,
    /// Vectors of channels.
    pub nvec: usize,
    /// The tile's top-left output value, and the values between output rows and columns.
    pub out: *mut f32,
    pub row: usize,
    pub col: usize,
    /// Output rows and columns of the tile.
    pub rows: usize,
    pub cols: usize,
    /// Add to the output instead of overwriting it.
    pub acc: bool,
    /// Tiles transformed, the `k`-th from `m + k * m_step` to `out + k * out_step`.
    pub count: usize,
    pub m_step: usize,
    pub out_step: usize,
}

/// # Safety
/// The processor has `I`'s instructions; the pointers are valid for the values `a` describes.
#[inline(always)]
unsafe fn wino_in_tile<I: Isa>(a: &WinoInArgs) {
    // SAFETY (whole body): forwarded from the caller.
    unsafe {
        for k in 0..a.count {
            let (src, dst) = (a.src.add(k * a.src_step), a.dst.add(k * a.dst_step));
            for v in 0..a.nvec {
                let o = v * I::W;
                let mut d = [[I::zero(); 4]; 4];
                for (i, row) in d.iter_mut().enumerate() {
                    for (j, x) in row.iter_mut().enumerate() {
                        *x = I::load(src.add(i * a.row + j * a.col + o));
                    }
                }
                // B^T d, then (B^T d) B; B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
                let mut t = [[I::zero(); 4]; 4];
                for j in 0..4 {
                    t[0][j] = I::sub(d[0][j], d[2][j]);
                    t[1][j] = I::add(d[1][j], d[2][j]);
                    t[2][j] = I::sub(d[2][j], d[1][j]);
                    t[3][j] = I::sub(d[1][j], d[3][j]);
                }
                for (i, t) in t.iter().enumerate() {
                    let u = [
                        I::sub(t[0], t[2]),
                        I::add(t[1], t[2]),
                        I::sub(t[2], t[1]),
                        I::sub(t[1], t[3]),
                    ];
                    for (j, u) in u.into_iter().enumerate() {
                        I::store(dst.add((i * 4 + j) * a.plane + o), u);
                    }
                }
            }
        }
    }
}

/// # Safety
/// As [`wino_in_tile`].
#[inline(always)]
unsafe fn wino_out_tile<I: Isa>(a: &WinoOutArgs) {
    // SAFETY (whole body): forwarded from the caller.
    unsafe {
        for k in 0..a.count {
            let (src, out) = (a.m.add(k * a.m_step), a.out.add(k * a.out_step));
            for v in 0..a.nvec {
                let o = v * I::W;
                let mut m = [[I::zero(); 4]; 4];
                for (i, row) in m.iter_mut().enumerate() {
                    for (j, x) in row.iter_mut().enumerate() {
                        *x = I::load(src.add((i * 4 + j) * a.plane + o));
                    }
                }
                // A^T m, then (A^T m) A; A^T = [1 1 1 0; 0 1 -1 -1].
                let mut s = [[I::zero(); 4]; 2];
                for j in 0..4 {
                    s[0][j] = I::add(I::add(m[0][j], m[1][j]), m[2][j]);
                    s[1][j] = I::sub(I::sub(m[1][j], m[2][j]), m[3][j]);
                }
                for (i, s) in s.iter().enumerate().take(a.rows) {
                    let y = [
                        I::add(I::add(s[0], s[1]), s[2]),
                        I::sub(I::sub(s[1], s[2]), s[3]),
                    ];
                    for (j, y) in y.into_iter().enumerate().take(a.cols) {
                        let p = out.add(i * a.row + j * a.col + o);
                        I::store(p, if a.acc { I::add(I::load(p), y) } else { y });
                    }
                }
            }
        }
    }
}

/// # Safety
/// The processor has `I`'s instructions; every pointer is valid for the values the arguments
/// describe (`V * I::W` channels per pixel and tap row).
#[inline(always)]
unsafe fn gather_tile<I: Isa, const P: usize, const V: usize>(a: &GatherArgs<'_>) {
    // SAFETY (whole body): forwarded from the caller.
    unsafe {
        let mut acc = [[I::zero(); V]; P];
        if a.acc {
            for (p, row) in acc.iter_mut().enumerate() {
                for (v, r) in row.iter_mut().enumerate() {
                    *r = I::load(a.out.add(p * a.out_step + v * I::W));
                }
            }
        }
        let mut w = a.w;
        for &t in a.taps {
            let base = a.src.add(t);
            for c in 0..a.kc {
                let mut wv = [I::zero(); V];
                for (v, x) in wv.iter_mut().enumerate() {
                    *x = I::load(w.add(v * I::W));
                }
                w = w.add(V * I::W);
                for (p, row) in acc.iter_mut().enumerate() {
                    let b = I::splat(base.add(p * a.step + c));
                    for (r, x) in row.iter_mut().zip(&wv) {
                        *r = I::fma(b, *x, *r);
                    }
                }
            }
        }
        for (p, row) in acc.iter().enumerate() {
            for (v, r) in row.iter().enumerate() {
                I::store(a.out.add(p * a.out_step + v * I::W), *r);
            }
        }
    }
}

/// # Safety
/// As [`gather_tile`].
#[inline(always)]
unsafe fn outer_tile<I: Isa, const R: usize, const V: usize>(a: &OuterArgs) {
    // SAFETY (whole body): forwarded from the caller.
    unsafe {
        let mut acc = [[I::zero(); V]; R];
        if a.acc {
            for (j, row) in acc.iter_mut().enumerate() {
                for (v, r) in row.iter_mut().enumerate() {
                    *r = I::load(a.dw.add(j * a.dw_step + v * I::W));
                }
            }
        }
        let [xi, xr, xc] = a.x_strides;
        let [di, dr, dc] = a.dy_strides;
        for i in 0..a.n[0] {
            for y in 0..a.n[1] {
                let xrow = a.x.add(i * xi + y * xr);
                let drow = a.dy.add(i * di + y * dr);
                for x in 0..a.n[2] {
                    let xp = xrow.add(x * xc);
                    let dp = drow.add(x * dc);
                    let mut d = [I::zero(); V];
                    for (v, e) in d.iter_mut().enumerate() {
                        *e = I::load(dp.add(v * I::W));
                    }
                    for (j, row) in acc.iter_mut().enumerate() {
                        let b = I::splat(xp.add(j));
                        for (r, e) in row.iter_mut().zip(&d) {
                            *r = I::fma(b, *e, *r);
                        }
                    }
                }
            }
        }
        for (j, row) in acc.iter().enumerate() {
            for (v, r) in row.iter().enumerate() {
                I::store(a.dw.add(j * a.dw_step + v * I::W), *r);
            }
        }
    }
}

/// One instantiation per instruction set of the tiles, with the set's target features, and a
/// dispatch from run-time tile sizes to the compiled ones.
macro_rules! per_isa {
    ($name:ident, $isa:ty $(, $feat:literal)?) => {
        mod $name {
            use super::*;

            $(#[target_feature(enable = $feat)])?
            unsafe fn gather_one<const P: usize, const V: usize>(a: &GatherArgs<'_>) {
                // SAFETY: forwarded.
                unsafe { gather_tile::<$isa, P, V>(a) }
            }

            $(#[target_feature(enable = $feat)])?
            unsafe fn outer_one<const R: usize, const V: usize>(a: &OuterArgs) {
                // SAFETY: forwarded.
                unsafe { outer_tile::<$isa, R, V>(a) }
            }

            $(#[target_feature(enable = $feat)])?
            pub(in super::super) unsafe fn wino_in(a: &WinoInArgs) {
                // SAFETY: forwarded.
                unsafe { wino_in_tile::<$isa>(a) }
            }

            $(#[target_feature(enable = $feat)])?
            pub(in super::super) unsafe fn wino_out(a: &WinoOutArgs) {
                // SAFETY: forwarded.
                unsafe { wino_out_tile::<$isa>(a) }
            }

            /// # Safety
            /// See [`gather_tile`]; `p` in `1..=MAX_TILE[v]`, `v` in 1, 2, 4.
            pub(in super::super) unsafe fn gather(p: usize, v: usize, a: &GatherArgs<'_>) {
                // SAFETY: forwarded.
                unsafe {
                    per_isa!(@dispatch gather_one, p, v, a)
                }
            }

            /// # Safety
            /// See [`outer_tile`]; `r` in `1..=MAX_TILE[v]`, `v` in 1, 2, 4.
            pub(in super::super) unsafe fn outer(r: usize, v: usize, a: &OuterArgs) {
                // SAFETY: forwarded.
                unsafe {
                    per_isa!(@dispatch outer_one, r, v, a)
                }
            }
        }
    };
    (@dispatch $f:ident, $p:expr, $v:expr, $a:expr) => {
        match ($v, $p) {
            (1, 1) => $f::<1, 1>($a), (1, 2) => $f::<2, 1>($a), (1, 3) => $f::<3, 1>($a),
            (1, 4) => $f::<4, 1>($a), (1, 5) => $f::<5, 1>($a), (1, 6) => $f::<6, 1>($a),
            (1, 7) => $f::<7, 1>($a), (1, 8) => $f::<8, 1>($a), (1, 9) => $f::<9, 1>($a),
            (1, 10) => $f::<10, 1>($a), (1, 11) => $f::<11, 1>($a), (1, 12) => $f::<12, 1>($a),
            (1, 13) => $f::<13, 1>($a), (1, 14) => $f::<14, 1>($a), (1, 15) => $f::<15, 1>($a),
            (1, 16) => $f::<16, 1>($a),
            (2, 1) => $f::<1, 2>($a), (2, 2) => $f::<2, 2>($a), (2, 3) => $f::<3, 2>($a),
            (2, 4) => $f::<4, 2>($a), (2, 5) => $f::<5, 2>($a), (2, 6) => $f::<6, 2>($a),
            (2, 7) => $f::<7, 2>($a), (2, 8) => $f::<8, 2>($a),
            (4, 1) => $f::<1, 4>($a), (4, 2) => $f::<2, 4>($a), (4, 3) => $f::<3, 4>($a),
            (4, 4) => $f::<4, 4>($a), (4, 5) => $f::<5, 4>($a), (4, 6) => $f::<6, 4>($a),
            _ => unreachable!("no {}x{} tile", $p, $v),
        }
    };
}

/// The largest tile (pixels of a gather, channels of an outer product) per vector count
/// `V` = 1, 2, 4 (index 0, 1, 3) that the dispatch compiles.
pub(super) const MAX_TILE: [usize; 4] = [16, 8, 0, 6];

per_isa!(scalar, Scalar);
#[cfg(target_arch = "x86_64")]
per_isa!(avx2, Avx2, "avx2,fma");
#[cfg(target_arch = "x86_64")]
per_isa!(avx512, Avx512, "avx512f,avx512bw,avx512vl,avx2,fma");

/// Lanes of a vector of `simd`.
pub(super) fn lanes(simd: Simd) -> usize {
    match simd {
        Simd::Scalar => Scalar::W,
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => Avx2::W,
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => Avx512::W,
        #[cfg(not(target_arch = "x86_64"))]
        _ => Scalar::W,
    }
}

/// The tile a path uses for `v` vectors of output channels: pixels of a gather, channels of an
/// outer product (as many accumulators as the registers hold, leaving room for the operands).
pub(super) fn tile(simd: Simd, v: usize) -> usize {
    let regs = match simd {
        Simd::Avx512 => 24,
        _ => 12,
    };
    (regs / v).min(MAX_TILE[v - 1])
}

/// Runs one gather tile of `p` pixels and `v` vectors on `simd`.
///
/// # Safety
/// `simd` is supported by this processor ([`Simd::supported`]); the pointers of `a` are valid
/// for `p` pixels, `v * lanes(simd)` output channels and `a.taps.len() * a.kc` weight rows.
pub(super) unsafe fn gather(simd: Simd, p: usize, v: usize, a: &GatherArgs<'_>) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match simd {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => avx512::gather(p, v, a),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => avx2::gather(p, v, a),
            _ => scalar::gather(p, v, a),
        }
    }
}

/// Runs one outer-product tile of `r` channels and `v` vectors on `simd`.
///
/// # Safety
/// As [`gather`], for the pixels, channels and rows `a` describes.
pub(super) unsafe fn outer(simd: Simd, r: usize, v: usize, a: &OuterArgs) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match simd {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => avx512::outer(r, v, a),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => avx2::outer(r, v, a),
            _ => scalar::outer(r, v, a),
        }
    }
}

/// Runs a Winograd input transform on `simd`.
///
/// # Safety
/// `simd` is supported by this processor; the pointers of `a` are valid for the patch's
/// `4 x 4 x nvec * lanes(simd)` values and the 16 result planes.
pub(super) unsafe fn wino_in(simd: Simd, a: &WinoInArgs) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match simd {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => avx512::wino_in(a),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => avx2::wino_in(a),
            _ => scalar::wino_in(a),
        }
    }
}

/// Runs a Winograd output transform on `simd`.
///
/// # Safety
/// As [`wino_in`], for the 16 planes and the `rows x cols` output pixels.
pub(super) unsafe fn wino_out(simd: Simd, a: &WinoOutArgs) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match simd {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => avx512::wino_out(a),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => avx2::wino_out(a),
            _ => scalar::wino_out(a),
        }
    }
}
