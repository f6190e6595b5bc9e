//! Winograd F(2x2, 3x3) for the gathers of stride-1 3x3 convolutions (the forward pass and the
//! input gradient): each 2x2 block of output pixels ("tile") is `A^T [(G g G^T) . (B^T d B)] A`
//! with `d` the tile's 4x4 input patch, so the products per output pixel and channel pair drop
//! from 9 to 4 (16 per tile of 4), at the cost of a transform of the input patches and of the
//! 16 products per tile.
//!
//! For a group of images, in blocks of [`TILES`] tiles: the input transform writes the 16
//! points of every tile and channel (`V[point][tile][channel]`); for each point, the product
//! with the transformed weights (`U[point][in][out]`, packed per block of output channels and
//! chunk of [`KC`] input channels) runs on the gather microkernel with a single tap; the output
//! transform turns the 16 products of each tile into its 2x2 outputs. The transforms are adds
//! and subtracts in a fixed order, the products fused multiply-adds in a fixed order, so results
//! are the same on every [`super::Simd`] path and for any thread count. The weights are
//! transformed in `f64` and rounded once.

use super::gather::{Blocking, Gather, KC};
use super::micro::{self, GatherArgs, WinoInArgs, WinoOutArgs};

/// Tiles per block: enough that each panel of transformed weights serves many tiles.
pub(super) const TILES: usize = 64;

/// Values between the 16 planes of a block beyond their contents (one cache line): planes a
/// multiple of 4 KiB apart would put the 16 values a tile's transform stores or loads in one
/// level-1 cache set, more than its ways, so that they would evict each other.
const SKEW: usize = 16;

thread_local! {
    /// Per-thread transformed-input and product buffers, reused across calls.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The transformed weights of a gather, packed per (point, block, chunk) as
/// `[channel][cb]`, zero in the padding channels.
#[derive(Clone, Debug)]
pub(super) struct WinoPacked {
    data: Vec<f32>,
    offsets: Vec<usize>,
    chunks: usize,
}

/// `G g G^T` of a 3x3 filter `g[dy][dx]`, row-major 4x4, with
/// `G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]`.
fn transform_filter(g: [[f64; 3]; 3]) -> [f32; 16] {
    let rows = |r: [f64; 3]| {
        [
            r[0],
            (r[0] + r[1] + r[2]) * 0.5,
            (r[0] - r[1] + r[2]) * 0.5,
            r[2],
        ]
    };
    // t = G g (4 x 3), column by column.
    let mut t = [[0f64; 3]; 4];
    for j in 0..3 {
        let c = rows([g[0][j], g[1][j], g[2][j]]);
        for (i, v) in c.into_iter().enumerate() {
            t[i][j] = v;
        }
    }
    let mut u = [0f32; 16];
    for (i, r) in t.iter().enumerate() {
        for (j, v) in rows(*r).into_iter().enumerate() {
            u[i * 4 + j] = v as f32;
        }
    }
    u
}

impl WinoPacked {
    /// Transforms and packs the weights `w(tap, reduced channel, output channel)` of a gather
    /// that Winograd fits ([`Gather::winograd_fits`]).
    pub fn new(g: &Gather, bl: &Blocking, w: impl Fn(usize, usize, usize) -> f32) -> Self {
        let mut tap_at = [0usize; 9];
        for &((dy, dx), t) in &g.classes[0].taps {
            tap_at[dy * 3 + dx] = t;
        }
        let (cr, cpad) = (g.cr, bl.cpad);
        // U[point][c][o] for every channel pair.
        let mut u = vec![0f32; 16 * cr * cpad];
        for c in 0..cr {
            for o in 0..g.cout {
                let mut f = [[0f64; 3]; 3];
                for (k, &t) in tap_at.iter().enumerate() {
                    f[k / 3][k % 3] = f64::from(w(t, c, o));
                }
                for (xi, v) in transform_filter(f).into_iter().enumerate() {
                    u[(xi * cr + c) * cpad + o] = v;
                }
            }
        }
        let chunks = cr.div_ceil(KC);
        let mut data = Vec::with_capacity(16 * cr * cpad);
        let mut offsets = Vec::new();
        for xi in 0..16 {
            for b in 0..bl.blocks() {
                for q in 0..chunks {
                    offsets.push(data.len());
                    for c in q * KC..((q + 1) * KC).min(cr) {
                        let row = (xi * cr + c) * cpad + b * bl.cb;
                        data.extend_from_slice(&u[row..row + bl.cb]);
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

    fn panel(&self, bl: &Blocking, xi: usize, block: usize, chunk: usize) -> &[f32] {
        let i = (xi * bl.blocks() + block) * self.chunks + chunk;
        &self.data[self.offsets[i]..]
    }
}

/// The gather `g` of one group of `n` images by Winograd: padded sources `s` (with at least one
/// vector of readable values after the last image), outputs `o` (`bl.cpad` channels per pixel).
pub(super) fn wino_group(
    g: &Gather,
    bl: &Blocking,
    wp: &WinoPacked,
    s: &[f32],
    n: usize,
    o: &mut [f32],
    accumulate: bool,
) {
    let (hs, ws) = g.padded;
    let (ho, wo) = g.out_hw;
    let (cr, cpad, cb) = (g.cr, bl.cpad, bl.cb);
    let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
    assert!(
        hs >= 2 * th + 2 && ws >= 2 * tw + 2,
        "winograd: source not padded enough"
    );
    let lanes = micro::lanes(bl.simd);
    let crp = cr.div_ceil(lanes) * lanes;
    let simg = hs * ws * cr;
    assert!(n * simg + crp - cr <= s.len() && o.len() >= n * ho * wo * cpad);
    let tiles: Vec<(usize, usize, usize)> = (0..n)
        .flat_map(|i| (0..th).flat_map(move |ty| (0..tw).map(move |tx| (i, ty, tx))))
        .collect();
    let tile = micro::tile(bl.simd, bl.v);
    SCRATCH.with(|cell| {
        let mut fresh = (Vec::new(), Vec::new());
        let mut guard = cell.try_borrow_mut();
        let (vb, mb) = match guard.as_mut() {
            Ok(b) => &mut **b,
            Err(_) => &mut fresh,
        };
        let (vlen, mlen) = (16 * (TILES * crp + SKEW), 16 * (TILES * cpad + SKEW));
        if vb.len() < vlen {
            vb.resize(vlen, 0.0);
        }
        if mb.len() < mlen {
            mb.resize(mlen, 0.0);
        }
        for block in tiles.chunks(TILES) {
            let nt = block.len();
            let (vplane, mplane) = (nt * crp + SKEW, nt * cpad + SKEW);
            for (t, len) in runs(block) {
                let (i, ty, tx) = block[t];
                let a = WinoInArgs {
                    src: s[i * simg + (2 * ty * ws + 2 * tx) * cr..].as_ptr(),
                    row: ws * cr,
                    col: cr,
                    nvec: crp / lanes,
                    dst: vb[t * crp..].as_mut_ptr(),
                    plane: vplane,
                    count: len,
                    src_step: 2 * cr,
                    dst_step: crp,
                };
                // SAFETY: the path is supported; the patches' rows 2ty..2ty + 4 and columns
                // 2tx..2(tx + len) + 2 are inside the padded image (asserted), the last vector
                // may read crp - cr values past the last channel, inside s (asserted); tiles
                // t..t + len of the 16 planes of nt x crp values fit the buffer.
                unsafe { micro::wino_in(bl.simd, &a) };
            }
            for xi in 0..16 {
                let v = &vb[xi * vplane..(xi + 1) * vplane];
                let m = &mut mb[xi * mplane..(xi + 1) * mplane];
                for b in 0..bl.blocks() {
                    for q in 0..wp.chunks {
                        let c0 = q * KC;
                        let kc = KC.min(cr - c0);
                        let w = wp.panel(bl, xi, b, q);
                        assert!(w.len() >= kc * cb);
                        for t0 in (0..nt).step_by(tile) {
                            let p = tile.min(nt - t0);
                            let a = GatherArgs {
                                src: v[t0 * crp + c0..].as_ptr(),
                                step: crp,
                                taps: &[0],
                                kc,
                                w: w.as_ptr(),
                                out: m[t0 * cpad + b * cb..].as_mut_ptr(),
                                out_step: cpad,
                                acc: q > 0,
                            };
                            // SAFETY: p tiles of kc channels from c0 < crp in v, p tiles of one
                            // block of cb channels in m, kc rows of cb weights in the panel.
                            unsafe { micro::gather(bl.simd, p, bl.v, &a) };
                        }
                    }
                }
            }
            for (t0, len) in runs(block) {
                let (i, ty, tx0) = block[t0];
                // Tiles of two columns, then the image's last column alone where it is odd.
                let full = len.min((wo - 2 * tx0) / 2);
                for (t, count, cols) in [(t0, full, 2), (t0 + full, len - full, 1)] {
                    if count == 0 {
                        continue;
                    }
                    let tx = tx0 + t - t0;
                    let a = WinoOutArgs {
                        m: mb[t * cpad..].as_ptr(),
                        plane: mplane,
                        nvec: cpad / lanes,
                        out: o[i * ho * wo * cpad + (2 * ty * wo + 2 * tx) * cpad..].as_mut_ptr(),
                        row: wo * cpad,
                        col: cpad,
                        rows: 2.min(ho - 2 * ty),
                        cols,
                        acc: accumulate,
                        count,
                        m_step: cpad,
                        out_step: 2 * cpad,
                    };
                    // SAFETY: the path is supported; the 16 planes hold tiles t..t + count's
                    // cpad values, and their rows x cols output pixels are inside image i of
                    // o (asserted; only the row's last tile can have one column).
                    unsafe { micro::wino_out(bl.simd, &a) };
                }
            }
        }
    });
}

/// The runs of consecutive tiles of one tile row of one image in `block` (image, tile row,
/// tile column): (first index, length).
fn runs(block: &[(usize, usize, usize)]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut t = 0;
    std::iter::from_fn(move || {
        let &(i, ty, _) = block.get(t)?;
        let len = block[t..]
            .iter()
            .take_while(|&&(j, y, _)| j == i && y == ty)
            .count();
        t += len;
        Some((t - len, len))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter transform against the matrix product written out.
    #[test]
    fn filter_transform() {
        let g = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.5]];
        let gm = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let u = transform_filter(g);
        for i in 0..4 {
            for j in 0..4 {
                let mut want = 0.0;
                for a in 0..3 {
                    for b in 0..3 {
                        want += gm[i][a] * g[a][b] * gm[j][b];
                    }
                }
                assert_eq!(u[i * 4 + j], want as f32, "{i} {j}");
            }
        }
    }
}
