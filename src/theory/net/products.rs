//! The step's two matrix products on AVX-512, register-tiled, with the same bits as the
//! `matrixmultiply` crate computes them on the same processor.
//!
//! `matrixmultiply` (the crate's default features include its AVX-512 kernel, which it picks at
//! run time) computes every element of `C = alpha A B + beta C` the same way, whatever the
//! shapes and however the work is cut: the reduction runs in blocks of [`KC`] = 256 terms; in
//! each block a fused multiply-add chain starts from zero and adds the terms in order, and at
//! the end of the block the chain `s` updates the element: `c = fma(alpha, s, beta' c)`, with
//! `beta' = beta` for the first block and 1 after it (and `c = alpha s` when `beta'` is 0).
//! Elements of a partial 16 x 16 tile of its kernel (rows from `m - m % 16` on, or columns
//! from `n - n % 16` on, of one call) take two roundings instead: `c = beta' c + alpha s`.
//! The kernels here do exactly these operations on every element, in the same order, so the
//! products give the same bits (a test compares them bit by bit, odd shapes included); only
//! the tiling differs: 6 x 64 output tiles for the forward product and 8 x 32 for the weight
//! gradient, whose operands are laid out for them (the first-layer weights transposed into
//! panels, the gradient dL/dZ into tiles of 8 neurons), so that two fused multiply-adds issue
//! every cycle.
//!
//! Every element depends only on its own row and column of the operands, so the results do
//! not depend on how the rows or columns are shared among threads.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Terms per block of the reduction (`matrixmultiply`'s `S_KC`).
pub const KC: usize = 256;
/// Lanes of a vector.
const LANES: usize = 16;
/// Tiles of `matrixmultiply`'s AVX-512 kernel are 16 x 16: the edge of a product.
const MM_TILE: usize = 16;
/// Rows and vectors of a forward-product tile.
pub const FWD_ROWS: usize = 6;
const FWD_VECS: usize = 4;
/// Neurons per panel of the packed weights.
pub const FWD_PANEL: usize = FWD_VECS * LANES;
/// Neurons and vectors of a weight-gradient tile.
pub const BWD_ROWS: usize = 8;
const BWD_VECS: usize = 2;
/// Input coordinates per panel of the weight-gradient product.
const BWD_PANEL: usize = BWD_VECS * LANES;

/// Whether this processor runs the kernels (AVX-512F); otherwise the products go through
/// `matrixmultiply` itself.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Where `matrixmultiply`'s edge tiles begin in one product: rows from `rows`, columns from
/// `cols` (both in the coordinates of the tile being computed; `usize::MAX` for none).
#[derive(Clone, Copy, Debug)]
struct Edge {
    rows: usize,
    cols: usize,
}

/// The start of the edge of a dimension of `len` (its last partial 16-tile).
fn edge_start(len: usize) -> usize {
    len - len % MM_TILE
}

/// One tile for one block of the reduction.
#[derive(Clone, Copy)]
struct Tile {
    /// A[i, k] at `a + i * rsa + k * csa`.
    a: *const f32,
    rsa: usize,
    csa: usize,
    /// B[k, j] at `b + k * rsb + j`, readable for whole vectors.
    b: *const f32,
    rsb: usize,
    /// C[i, j] at `c + i * rsc + j`.
    c: *mut f32,
    rsc: usize,
    /// Rows and columns of C written.
    rows: usize,
    cols: usize,
    /// Terms of this block.
    kc: usize,
    alpha: f32,
    /// `beta'` of this block.
    beta: f32,
    edge: Edge,
}

/// The lanes `from..to` of one vector (clipped to 0..16).
#[inline(always)]
fn lanes(from: usize, to: usize) -> u16 {
    let (lo, hi) = (from.min(LANES), to.min(LANES));
    if hi <= lo {
        0
    } else {
        (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
    }
}

/// One block of the reduction for an `R` x `V` vectors tile: the chains in registers, then the
/// update of C described in the module docs.
///
/// # Safety
/// AVX-512F must be available; A must be readable for `R` rows and `kc` terms, B for `kc` rows
/// of `V` whole vectors, C readable and writable for `rows` x `cols`, with `rows <= R` and
/// `cols <= 16 V`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize, const V: usize>(t: &Tile) {
    // SAFETY (whole body): the caller guarantees AVX-512F and the extents above; every load
    // and store below stays inside them (C's through lane masks).
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let (mut a, mut b) = (t.a, t.b);
        for _ in 0..t.kc {
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b.add(v * LANES));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i * t.rsa));
                for (s, x) in row.iter_mut().zip(&bv) {
                    *s = _mm512_fmadd_ps(av, *x, *s);
                }
            }
            a = a.add(t.csa);
            b = b.add(t.rsb);
        }
        let alpha = _mm512_set1_ps(t.alpha);
        let beta = _mm512_set1_ps(t.beta);
        let mut store = [0u16; V];
        let mut edge_cols = [0u16; V];
        for v in 0..V {
            store[v] = lanes(0, t.cols.saturating_sub(v * LANES));
            edge_cols[v] = lanes(t.edge.cols.saturating_sub(v * LANES), LANES) & store[v];
        }
        for (i, row) in acc.iter().enumerate().take(t.rows) {
            let edge_row = i >= t.edge.rows;
            for (v, s) in row.iter().enumerate() {
                let p = t.c.add(i * t.rsc + v * LANES);
                let out = if t.beta == 0.0 {
                    _mm512_mul_ps(alpha, *s)
                } else {
                    let c = _mm512_mul_ps(_mm512_maskz_loadu_ps(store[v], p), beta);
                    let fused = _mm512_fmadd_ps(alpha, *s, c);
                    let edge = if edge_row { store[v] } else { edge_cols[v] };
                    if edge == 0 {
                        fused
                    } else {
                        let two = _mm512_add_ps(c, _mm512_mul_ps(alpha, *s));
                        _mm512_mask_blend_ps(edge, fused, two)
                    }
                };
                _mm512_mask_storeu_ps(p, store[v], out);
            }
        }
    }
}

/// Floats of the packed weights of `n` neurons in dimension `d`.
pub fn packed_weights_len(n: usize, d: usize) -> usize {
    n.div_ceil(FWD_PANEL) * FWD_PANEL * d
}

/// The weights W (n x d, row-major) transposed into panels of [`FWD_PANEL`] neurons: panel `p`
/// holds `[k][j] = W[p * FWD_PANEL + j, k]`, zero for neurons past `n`.
/// The panels are packed in parallel when `parallel`.
pub fn pack_weights(w: &[f32], n: usize, d: usize, out: &mut [f32], parallel: bool) {
    use rayon::prelude::*;
    assert_eq!(w.len(), n * d);
    assert_eq!(out.len(), packed_weights_len(n, d));
    const B: usize = 16;
    let pack = |(p, panel): (usize, &mut [f32])| {
        let cols = FWD_PANEL.min(n - p * FWD_PANEL);
        if cols < FWD_PANEL {
            panel.fill(0.0);
        }
        // 16 x 16 blocks, so that reads and writes both stay in a few cache lines
        for k0 in (0..d).step_by(B) {
            for j0 in (0..cols).step_by(B) {
                for j in j0..(j0 + B).min(cols) {
                    let src = &w[(p * FWD_PANEL + j) * d..][..d];
                    for k in k0..(k0 + B).min(d) {
                        panel[k * FWD_PANEL + j] = src[k];
                    }
                }
            }
        }
    };
    if parallel {
        out.par_chunks_exact_mut(FWD_PANEL * d)
            .enumerate()
            .for_each(pack);
    } else {
        out.chunks_exact_mut(FWD_PANEL * d)
            .enumerate()
            .for_each(pack);
    }
}

/// Z = X W^T for a run of whole rows: `x` holds `rows` rows of `d` floats, `z` gets `rows` rows
/// of `n`, `packed` is [`pack_weights`] of W. `first_row` is the run's first row in the whole
/// product of `total_rows` rows (where the edge tiles are). After the last block of a row's
/// panel, `finish(row, n0, z_part)` gets the finished values of the row's neurons
/// `n0 .. n0 + z_part.len()`; rows come in order for each panel.
///
/// # Panics
/// If AVX-512F is missing ([`available`]) or the lengths do not match.
#[allow(clippy::too_many_arguments)]
pub fn forward_rows(
    x: &[f32],
    packed: &[f32],
    n: usize,
    d: usize,
    z: &mut [f32],
    first_row: usize,
    total_rows: usize,
    mut finish: impl FnMut(usize, usize, &mut [f32]),
) {
    assert!(available(), "the products need AVX-512F");
    assert_eq!(x.len() % d, 0);
    let rows = x.len() / d;
    assert_eq!(z.len(), rows * n);
    assert_eq!(packed.len(), packed_weights_len(n, d));
    assert!(first_row + rows <= total_rows);
    let panels = n.div_ceil(FWD_PANEL);
    let edge_rows = edge_start(total_rows);
    let edge_cols = edge_start(n);
    let mut partial = Vec::new();
    for r0 in (0..rows).step_by(FWD_ROWS) {
        let nrow = FWD_ROWS.min(rows - r0);
        // a partial last tile reads its rows from a zero-padded copy
        let a = if nrow == FWD_ROWS {
            x[r0 * d..].as_ptr()
        } else {
            partial.clear();
            partial.extend_from_slice(&x[r0 * d..]);
            partial.resize(FWD_ROWS * d, 0.0);
            partial.as_ptr()
        };
        for k0 in (0..d).step_by(KC) {
            let kc = KC.min(d - k0);
            for p in 0..panels {
                let cols = FWD_PANEL.min(n - p * FWD_PANEL);
                let t = Tile {
                    // SAFETY: offsets inside the tile's rows of A (k0 < d) and inside the
                    // packed panel p (k0 < d).
                    a: unsafe { a.add(k0) },
                    rsa: d,
                    csa: 1,
                    b: unsafe { packed.as_ptr().add((p * d + k0) * FWD_PANEL) },
                    rsb: FWD_PANEL,
                    c: z[r0 * n + p * FWD_PANEL..].as_mut_ptr(),
                    rsc: n,
                    rows: nrow,
                    cols,
                    kc,
                    alpha: 1.0,
                    beta: if k0 == 0 { 0.0 } else { 1.0 },
                    edge: Edge {
                        rows: edge_rows.saturating_sub(first_row + r0),
                        cols: edge_cols.saturating_sub(p * FWD_PANEL),
                    },
                };
                // SAFETY: AVX-512F is checked above; A holds FWD_ROWS rows of d floats from
                // k0 (x or the padded copy), the panel kc rows of FWD_PANEL floats, and Z's
                // tile nrow rows of `cols` floats with row stride n, all inside the slices.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    tile::<FWD_ROWS, FWD_VECS>(&t)
                };
                if k0 + kc == d {
                    for i in 0..nrow {
                        let at = (r0 + i) * n + p * FWD_PANEL;
                        finish(r0 + i, p * FWD_PANEL, &mut z[at..at + cols]);
                    }
                }
            }
        }
    }
}

/// Floats of dL/dZ packed for [`weight_product`] (`rows` rows of `n` neurons): tiles of
/// [`BWD_ROWS`] neurons one after the other, each `rows` rows of [`BWD_ROWS`] floats,
/// `[t][r][i] = dL/dZ[r, t * BWD_ROWS + i]`, zero past the last neuron.
pub fn packed_grad_len(rows: usize, n: usize) -> usize {
    n.div_ceil(BWD_ROWS) * BWD_ROWS * rows
}

/// dL/dZ (`rows` x `n`, row-major) in the layout [`weight_product`] reads ([`packed_grad_len`]).
/// The step writes that layout in the pass that computes dL/dZ; this is for callers that hold
/// dL/dZ row-major.
pub fn pack_grad(dz: &[f32], rows: usize, n: usize) -> Vec<f32> {
    assert_eq!(dz.len(), rows * n);
    let mut out = vec![0f32; packed_grad_len(rows, n)];
    for (t, part) in out.chunks_exact_mut(rows * BWD_ROWS).enumerate() {
        for (r, o) in part.chunks_exact_mut(BWD_ROWS).enumerate() {
            for (i, v) in o.iter_mut().enumerate() {
                let j = t * BWD_ROWS + i;
                *v = if j < n { dz[r * n + j] } else { 0.0 };
            }
        }
    }
    out
}

/// A raw pointer that parallel parts writing disjoint columns of one buffer may share.
struct SharedOut(*mut f32);

impl SharedOut {
    fn ptr(&self) -> *mut f32 {
        self.0
    }
}
// SAFETY: only used by `weight_product`, whose parts write disjoint columns.
unsafe impl Sync for SharedOut {}

/// dst (n x d) <- alpha dZ^T X + beta dst (dst is not read when beta is 0): the weight gradient,
/// or with alpha = -lr and beta = 1 the SGD update fused into it. `x` holds the rows' inputs
/// (rows x d), `dzp` dL/dZ packed as [`packed_grad_len`] says. The columns are cut into panels
/// of 32, and the panels into one run per thread of the pool computed in parallel when
/// `parallel` (the bits are the same however they are cut).
///
/// # Panics
/// If AVX-512F is missing ([`available`]) or the lengths do not match.
#[allow(clippy::too_many_arguments)]
pub fn weight_product(
    x: &[f32],
    dzp: &[f32],
    n: usize,
    d: usize,
    dst: &mut [f32],
    alpha: f32,
    beta: f32,
    parallel: bool,
) {
    use rayon::prelude::*;
    assert!(available(), "the products need AVX-512F");
    assert_eq!(x.len() % d, 0);
    let rows = x.len() / d;
    assert_eq!(dzp.len(), packed_grad_len(rows, n));
    assert_eq!(dst.len(), n * d);
    if rows == 0 {
        // no terms: C <- beta C, as matrixmultiply does
        for v in dst.iter_mut() {
            *v = if beta == 0.0 { 0.0 } else { *v * beta };
        }
        return;
    }
    let panels = d.div_ceil(BWD_PANEL);
    let out = SharedOut(dst.as_mut_ptr());
    let part = |ps: std::ops::Range<usize>| {
        let mut xb = vec![0f32; KC * BWD_PANEL];
        for k0 in (0..rows).step_by(KC) {
            let kc = KC.min(rows - k0);
            for p in ps.clone() {
                let j0 = p * BWD_PANEL;
                let cols = BWD_PANEL.min(d - j0);
                // X's block of kc rows x cols columns, contiguous (zero past d)
                for (r, o) in xb.chunks_exact_mut(BWD_PANEL).take(kc).enumerate() {
                    o[..cols].copy_from_slice(&x[(k0 + r) * d + j0..][..cols]);
                    o[cols..].fill(0.0);
                }
                for t in 0..n.div_ceil(BWD_ROWS) {
                    let tile_t = Tile {
                        // SAFETY: inside tile t's part of dzp (k0 < rows) and inside dst
                        // (t * BWD_ROWS < n, j0 < d).
                        a: unsafe { dzp.as_ptr().add((t * rows + k0) * BWD_ROWS) },
                        rsa: 1,
                        csa: BWD_ROWS,
                        b: xb.as_ptr(),
                        rsb: BWD_PANEL,
                        c: unsafe { out.ptr().add(t * BWD_ROWS * d + j0) },
                        rsc: d,
                        rows: BWD_ROWS.min(n - t * BWD_ROWS),
                        cols,
                        kc,
                        alpha,
                        beta: if k0 == 0 { beta } else { 1.0 },
                        edge: Edge {
                            rows: edge_start(n).saturating_sub(t * BWD_ROWS),
                            cols: edge_start(d).saturating_sub(j0),
                        },
                    };
                    // SAFETY: AVX-512F is checked above; dzp holds BWD_ROWS floats for each of
                    // the kc rows from k0 in tile t, xb kc rows of BWD_PANEL floats, and dst's
                    // tile `rows` rows of `cols` floats with row stride d. Parts write disjoint
                    // columns (their own panels), and nothing else touches dst meanwhile.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        tile::<BWD_ROWS, BWD_VECS>(&tile_t)
                    };
                }
            }
        }
    };
    // one run of panels per thread: each reads all of dL/dZ once, and keeps its columns of
    // dst in its own cache from one block of rows to the next
    let parts = if parallel {
        rayon::current_num_threads().clamp(1, panels)
    } else {
        1
    };
    let runs: Vec<std::ops::Range<usize>> = (0..parts)
        .map(|i| i * panels / parts..(i + 1) * panels / parts)
        .collect();
    if parallel {
        runs.into_par_iter().for_each(part);
    } else {
        runs.into_iter().for_each(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    fn normals(len: usize, scale: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..len)
            .map(|_| rng.sample::<f32, _>(StandardNormal) * scale)
            .collect()
    }

    /// Z = X W^T through `matrixmultiply`, cut as the net cuts it without the kernels.
    fn reference_forward(x: &[f32], w: &[f32], n: usize, d: usize) -> Vec<f32> {
        let mut z = vec![0f32; x.len() / d * n];
        crate::theory::net::matmul_forward(x, w, n, d, &mut z, false);
        z
    }

    /// dst <- alpha dZ^T X + beta dst through `matrixmultiply`, cut as the net cuts it.
    fn reference_weight_product(
        x: &[f32],
        dz: &[f32],
        d: usize,
        dst: &mut [f32],
        alpha: f32,
        beta: f32,
    ) {
        let rows = x.len() / d;
        let n = dst.len() / d;
        for j0 in (0..d).step_by(crate::theory::net::COL_BLOCK) {
            let nc = crate::theory::net::COL_BLOCK.min(d - j0);
            // SAFETY: as in `Net::weight_product`: dst[:, j0..j0+nc] from dZ^T and X's
            // columns, all inside the slices.
            unsafe {
                matrixmultiply::sgemm(
                    n,
                    rows,
                    nc,
                    alpha,
                    dz.as_ptr(),
                    1,
                    n as isize,
                    x.as_ptr().add(j0),
                    d as isize,
                    1,
                    beta,
                    dst.as_mut_ptr().add(j0),
                    d as isize,
                    1,
                );
            }
        }
    }

    fn same_bits(a: &[f32], b: &[f32]) -> usize {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count()
    }

    /// Both products give `matrixmultiply`'s bits on shapes with partial tiles of every kind,
    /// several blocks of the reduction, and the edge tiles of `matrixmultiply` (with alpha not
    /// 1 and beta 1, where they round differently).
    #[test]
    fn products_match_matrixmultiply_bit_for_bit() {
        if !available() {
            eprintln!("no AVX-512F: the products run through matrixmultiply itself");
            return;
        }
        let shapes = [
            (37, 29, 13),
            (300, 530, 70),
            (17, 1, 1),
            (64, 256, 16),
            (1100, 20, 21),
            (513, 300, 64),
            (6, 8, 65),
        ];
        for (i, &(rows, d, n)) in shapes.iter().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
            let x = normals(rows * d, 1.0, &mut rng);
            let w = normals(n * d, 0.1, &mut rng);
            let mut packed = vec![f32::NAN; packed_weights_len(n, d)];
            pack_weights(&w, n, d, &mut packed, i % 2 == 0);
            let want = reference_forward(&x, &w, n, d);
            // in two runs of rows, as the net cuts them
            let mut z = vec![f32::NAN; rows * n];
            let cut = (rows / 2).max(1);
            let mut seen = vec![0u32; rows * n];
            let (za, zb) = z.split_at_mut(cut * n);
            for (first, xs, zs) in [(0, &x[..cut * d], za), (cut, &x[cut * d..], zb)] {
                forward_rows(xs, &packed, n, d, zs, first, rows, |r, n0, part| {
                    for (j, v) in part.iter().enumerate() {
                        let at = (first + r) * n + n0 + j;
                        assert_eq!(v.to_bits(), want[at].to_bits(), "finish sees the result");
                        seen[at] += 1;
                    }
                });
            }
            assert_eq!(same_bits(&z, &want), 0, "forward {rows} x {d} x {n}");
            assert!(seen.iter().all(|&c| c == 1), "each value finished once");
            let dz = normals(rows * n, 0.1, &mut rng);
            let dzp = pack_grad(&dz, rows, n);
            for (alpha, beta) in [(-0.37f32, 1.0f32), (1.0, 0.0), (0.3, 0.7)] {
                let mut want = w.clone();
                reference_weight_product(&x, &dz, d, &mut want, alpha, beta);
                for parallel in [false, true] {
                    let mut got = w.clone();
                    weight_product(&x, &dzp, n, d, &mut got, alpha, beta, parallel);
                    assert_eq!(
                        same_bits(&got, &want),
                        0,
                        "weight product {rows} x {d} x {n}, alpha {alpha}, beta {beta}"
                    );
                }
            }
        }
    }

    #[test]
    fn packed_weights_are_the_transpose_in_panels() {
        let (n, d) = (70, 19);
        let w: Vec<f32> = (0..n * d).map(|i| i as f32).collect();
        let mut packed = vec![f32::NAN; packed_weights_len(n, d)];
        pack_weights(&w, n, d, &mut packed, true);
        for (p, panel) in packed.chunks_exact(FWD_PANEL * d).enumerate() {
            for k in 0..d {
                for j in 0..FWD_PANEL {
                    let neuron = p * FWD_PANEL + j;
                    let want = if neuron < n { w[neuron * d + k] } else { 0.0 };
                    assert_eq!(panel[k * FWD_PANEL + j], want);
                }
            }
        }
    }
}
