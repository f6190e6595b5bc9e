//! The step's two matrix products on the benchmark's shapes, computed as the step computes them
//! (its AVX-512 kernels, [`crate::theory::net::products`], where they run, `matrixmultiply`
//! elsewhere: the same bits) and by the `gemm` crate (AVX2 and AVX-512 kernels, already built
//! for candle), timed in turn in one run; with how far `gemm`'s results are from the step's and
//! whether its bits depend on the thread count.

use crate::seed;
use crate::theory::net::{matmul_forward, matmul_weight_product, products, FUSED_ROWS};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use std::time::Instant;

/// One implementation's seconds per product.
#[derive(Clone, Debug, Default)]
pub struct Candidate {
    /// Its name in the report.
    pub name: &'static str,
    /// Z = X W^T (the step's kernels include packing the weights).
    pub forward_s: Vec<f64>,
    /// dW = dZ^T X.
    pub weight_s: Vec<f64>,
}

/// The products measured with one thread count.
#[derive(Clone, Debug)]
pub struct ProductsResult {
    /// The step's products, then `gemm`.
    pub candidates: Vec<Candidate>,
    /// Largest |gemm - step| over the largest |step|, for the forward and the weight product.
    pub rel_diff: (f64, f64),
    /// Whether `gemm`'s results equal its one-thread results bit for bit (None with 1 thread).
    pub gemm_thread_independent: Option<bool>,
}

/// The shapes: `rows` = batch x patches rows of `d` inputs, `n` neurons.
#[derive(Clone, Copy, Debug)]
pub struct Shapes {
    /// Rows of X (batch x patches).
    pub rows: usize,
    /// Patches per sample (the step's forward product cuts its rows by sample).
    pub patches: usize,
    /// Input dimension d.
    pub d: usize,
    /// Neurons.
    pub n: usize,
}

impl Shapes {
    /// Floating-point operations of one product (both have the same count).
    pub fn flops(&self) -> f64 {
        2.0 * (self.rows * self.d * self.n) as f64
    }
}

/// dst (m x n, row-major) = lhs (m x k) rhs (k x n) by `gemm`, the operands read with the
/// given (row, column) strides.
fn gemm_product(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (lhs, lhs_rs, lhs_cs): (&[f32], usize, usize),
    (rhs, rhs_rs, rhs_cs): (&[f32], usize, usize),
    threads: usize,
) {
    assert_eq!(dst.len(), m * n);
    assert!(m > 0 && n > 0 && k > 0, "empty product");
    assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the strides address elements inside the three slices (checked above); dst
    // aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Z = X W^T by `gemm` (X: rows x d, W: n x d, Z: rows x n, all row-major).
fn gemm_forward(s: Shapes, x: &[f32], w: &[f32], z: &mut [f32], threads: usize) {
    gemm_product((s.rows, s.n, s.d), z, (x, s.d, 1), (w, 1, s.d), threads)
}

/// dW = dZ^T X by `gemm` (dZ: rows x n, X: rows x d, dW: n x d, all row-major).
fn gemm_weight(s: Shapes, x: &[f32], dz: &[f32], dw: &mut [f32], threads: usize) {
    gemm_product((s.n, s.d, s.rows), dw, (dz, 1, s.n), (x, s.d, 1), threads)
}

/// Z = X W^T by the step's kernels, cut into the step's blocks of rows.
fn own_forward(s: Shapes, x: &[f32], w: &[f32], packed: &mut [f32], z: &mut [f32], par: bool) {
    products::pack_weights(w, s.n, s.d, packed, par);
    let per = FUSED_ROWS.div_ceil(s.patches).max(1) * s.patches;
    let packed = &*packed;
    let block = |(i, (zb, xb)): (usize, (&mut [f32], &[f32]))| {
        products::forward_rows(xb, packed, s.n, s.d, zb, i * per, s.rows, |_, _, _| {});
    };
    if par {
        z.par_chunks_mut(per * s.n)
            .zip(x.par_chunks(per * s.d))
            .enumerate()
            .for_each(block);
    } else {
        z.chunks_mut(per * s.n)
            .zip(x.chunks(per * s.d))
            .enumerate()
            .for_each(block);
    }
}

fn rel_diff(a: &[f32], reference: &[f32]) -> f64 {
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let diff = a
        .iter()
        .zip(reference)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    diff / scale.max(f64::MIN_POSITIVE)
}

/// Measure both implementations on `s` with `threads` threads (call it inside a rayon pool of
/// that many threads): `rounds` rounds, in each `reps` of every product by each in turn.
pub fn measure(s: Shapes, threads: usize, rounds: usize, reps: usize) -> ProductsResult {
    let kernels = products::available();
    let mut rng = seed::rng(0, &["bench", "products"]);
    let mut normals = |len: usize, scale: f32| -> Vec<f32> {
        (0..len)
            .map(|_| {
                scale * <StandardNormal as Distribution<f32>>::sample(&StandardNormal, &mut rng)
            })
            .collect()
    };
    let x = normals(s.rows * s.d, 1.0);
    let w = normals(s.n * s.d, 0.03);
    let dz = normals(s.rows * s.n, 1e-3);
    let dzp = if kernels {
        products::pack_grad(&dz, s.rows, s.n)
    } else {
        Vec::new()
    };
    let par = threads > 1;
    let mut packed = vec![
        0f32;
        if kernels {
            products::packed_weights_len(s.n, s.d)
        } else {
            0
        }
    ];
    let (mut z_own, mut z_gemm) = (vec![0f32; s.rows * s.n], vec![0f32; s.rows * s.n]);
    let (mut w_own, mut w_gemm) = (vec![0f32; s.n * s.d], vec![0f32; s.n * s.d]);
    let mut own = Candidate {
        name: if kernels {
            "its AVX-512 kernels"
        } else {
            "matrixmultiply"
        },
        ..Default::default()
    };
    let mut other = Candidate {
        name: "gemm crate",
        ..Default::default()
    };
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    for round in 0..=rounds {
        for _ in 0..reps {
            let f1 = time(&mut || {
                if kernels {
                    own_forward(s, &x, &w, &mut packed, &mut z_own, par)
                } else {
                    matmul_forward(&x, &w, s.n, s.d, &mut z_own, par)
                }
            });
            let w1 = time(&mut || {
                if kernels {
                    products::weight_product(&x, &dzp, s.n, s.d, &mut w_own, 1.0, 0.0, par)
                } else {
                    matmul_weight_product(&x, &dz, s.d, &mut w_own, false, 1.0, par)
                }
            });
            let f2 = time(&mut || gemm_forward(s, &x, &w, &mut z_gemm, threads));
            let w2 = time(&mut || gemm_weight(s, &x, &dz, &mut w_gemm, threads));
            // round 0 warms the caches and the pool up
            if round > 0 {
                own.forward_s.push(f1);
                own.weight_s.push(w1);
                other.forward_s.push(f2);
                other.weight_s.push(w2);
            }
        }
    }
    let gemm_thread_independent = par.then(|| {
        let (mut z1, mut w1) = (vec![0f32; s.rows * s.n], vec![0f32; s.n * s.d]);
        gemm_forward(s, &x, &w, &mut z1, 1);
        gemm_weight(s, &x, &dz, &mut w1, 1);
        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
        same(&z1, &z_gemm) && same(&w1, &w_gemm)
    });
    ProductsResult {
        rel_diff: (rel_diff(&z_gemm, &z_own), rel_diff(&w_gemm, &w_own)),
        candidates: vec![own, other],
        gemm_thread_independent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both implementations compute the same products (to float rounding) on a small odd shape.
    #[test]
    fn gemm_and_the_step_compute_the_same_products() {
        let s = Shapes {
            rows: 3 * 7,
            patches: 7,
            d: 300,
            n: 20,
        };
        let r = measure(s, 1, 1, 1);
        assert!(r.rel_diff.0 < 1e-5, "forward {}", r.rel_diff.0);
        assert!(r.rel_diff.1 < 1e-5, "weight {}", r.rel_diff.1);
        assert_eq!(r.candidates.len(), 2);
        assert!(r.candidates.iter().all(|c| c.forward_s.len() == 1));
    }
}
