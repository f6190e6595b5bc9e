//! The hierarchical multi-view distribution (our reconstruction of the paper's data model; see
//! `theory/MODEL.md`): inputs of P patches in R^d built from orthonormal features, one common
//! feature per superclass and one fine feature per subclass, plus Gaussian noise. Easy samples
//! carry both features; hard samples lose (or weaken) the common one.
//!
//! Every sample is drawn from its own random stream ([`crate::seed::stream`] of a key derived from
//! the run seed and a purpose such as `["train"]`, stream = the sample's index), so a set of
//! samples is the same bits whatever the number of threads that draw it.

use crate::hierarchy::{Hierarchy, HierarchyError};
use crate::seed;
use crate::theory::config::DataConfig;
use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

/// Which kind of sample to draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SampleKind {
    /// Easy: common and fine feature present.
    Easy,
    /// Hard: common feature missing or weak.
    Hard,
    /// Training mix: hard with the given probability, easy otherwise.
    Mix(f64),
}

/// A set of samples: inputs stored as `n * patches` rows of `dim` floats (sample-major).
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    /// Inputs, `n * patches * dim` floats; sample i occupies rows i*P .. (i+1)*P.
    pub x: Vec<f32>,
    /// Leaf (subclass) of each sample.
    pub leaves: Vec<usize>,
    /// Whether each sample is hard.
    pub hard: Vec<bool>,
    /// Global index of each sample in its stream (used by per-sample labels).
    pub index: Vec<u64>,
}

impl Samples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }
    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }
    /// Copy the samples `idx` (in that order) into `out` (`idx.len()` samples' floats), in
    /// parallel: a minibatch gathered from a pool.
    pub fn gather_into(&self, idx: &[usize], out: &mut [f32]) {
        let per = self.x.len() / self.len().max(1);
        out.par_chunks_mut(per)
            .zip(idx.par_iter())
            .for_each(|(o, &j)| o.copy_from_slice(&self.x[j * per..(j + 1) * per]));
    }

    /// The first `n` samples (all of them if there are fewer).
    pub fn head(&self, n: usize) -> Samples {
        let n = n.min(self.len());
        let per = if self.is_empty() {
            0
        } else {
            self.x.len() / self.len()
        };
        Samples {
            x: self.x[..n * per].to_vec(),
            leaves: self.leaves[..n].to_vec(),
            hard: self.hard[..n].to_vec(),
            index: self.index[..n].to_vec(),
        }
    }
}

/// The data distribution of one run: the configuration, its label hierarchy (superclass ->
/// subclass) and the orthonormal features drawn from the run's seed.
#[derive(Clone, Debug)]
pub struct Distribution {
    cfg: DataConfig,
    hierarchy: Hierarchy,
    features: Array2<f32>,
    leaf_super: Vec<usize>,
    leaf_first: Vec<usize>,
}

/// Modified Gram-Schmidt on the rows of a Gaussian matrix, in f64: `n` orthonormal rows in R^d.
/// Returns None if the rows are (numerically) dependent, which for Gaussian rows and n <= d
/// happens with probability zero.
pub fn random_orthonormal(n: usize, d: usize, rng: &mut ChaCha8Rng) -> Option<Array2<f64>> {
    let mut m = Array2::<f64>::zeros((n, d));
    for v in m.iter_mut() {
        *v = rng.sample(StandardNormal);
    }
    for i in 0..n {
        for j in 0..i {
            let dot: f64 = (0..d).map(|c| m[[i, c]] * m[[j, c]]).sum();
            for c in 0..d {
                m[[i, c]] -= dot * m[[j, c]];
            }
        }
        let norm: f64 = (0..d).map(|c| m[[i, c]] * m[[i, c]]).sum::<f64>().sqrt();
        if norm < 1e-8 {
            return None;
        }
        for c in 0..d {
            m[[i, c]] /= norm;
        }
    }
    Some(m)
}

impl Distribution {
    /// Build the distribution: hierarchy from `cfg.subclasses`, features from `seed`.
    /// The config must have been validated (features <= dim).
    pub fn new(cfg: &DataConfig, seed: u64) -> Result<Self, HierarchyError> {
        let hierarchy = Hierarchy::two_level(&cfg.subclasses)?;
        let mut rng = seed::rng(seed, &["features"]);
        let f64s = random_orthonormal(cfg.features(), cfg.dim, &mut rng)
            .expect("Gaussian rows with n <= d are independent with probability one");
        let features = f64s.mapv(|v| v as f32);
        let mut leaf_super = Vec::new();
        let mut leaf_first = Vec::new();
        for (s, &k) in cfg.subclasses.iter().enumerate() {
            leaf_first.push(leaf_super.len());
            leaf_super.extend(std::iter::repeat_n(s, k));
        }
        Ok(Distribution {
            cfg: cfg.clone(),
            hierarchy,
            features,
            leaf_super,
            leaf_first,
        })
    }

    /// The data configuration.
    pub fn config(&self) -> &DataConfig {
        &self.cfg
    }
    /// The label hierarchy: level 0 superclasses, level 1 subclasses (leaves).
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }
    /// The orthonormal features as rows: rows 0..S are the common features of the S
    /// superclasses, row S + l the fine feature of leaf l.
    pub fn features(&self) -> &Array2<f32> {
        &self.features
    }
    /// Row of the common feature of superclass `s`.
    pub fn common_feature(&self, s: usize) -> usize {
        s
    }
    /// Row of the fine feature of leaf `l`.
    pub fn fine_feature(&self, l: usize) -> usize {
        self.cfg.superclasses() + l
    }
    /// Superclass of each leaf.
    pub fn leaf_superclass(&self) -> &[usize] {
        &self.leaf_super
    }
    /// Floats per sample (patches * dim).
    pub fn sample_len(&self) -> usize {
        self.cfg.patches * self.cfg.dim
    }

    /// Draw one sample into `out` (patches * dim floats) from `rng`; returns (leaf, hard).
    ///
    /// The superclass is uniform, then the subclass uniform inside it. Patch roles are at fixed
    /// positions (common patches first, then fine patches, then noise patches): the network sums
    /// over patches, so it is invariant to their order and fixed positions lose nothing.
    pub fn sample_into(
        &self,
        rng: &mut ChaCha8Rng,
        kind: SampleKind,
        out: &mut [f32],
    ) -> (usize, bool) {
        let c = &self.cfg;
        let d = c.dim;
        debug_assert_eq!(out.len(), c.patches * d);
        let s = rng.gen_range(0..c.superclasses());
        let leaf = self.leaf_first[s] + rng.gen_range(0..c.subclasses[s]);
        let hard = match kind {
            SampleKind::Easy => false,
            SampleKind::Hard => true,
            SampleKind::Mix(p) => p > 0.0 && rng.gen::<f64>() < p,
        };
        let sd = (c.noise / (d as f64).sqrt()) as f32;
        let sd_hard = (c.hard_noise / (d as f64).sqrt()) as f32;
        // every patch's standard normals, in order, then each scaled by its patch's std
        crate::theory::normals::fill(rng, out);
        for (p, patch) in out.chunks_exact_mut(d).enumerate() {
            let s_p = if hard && p < c.common_patches {
                sd_hard
            } else {
                sd
            };
            for v in patch.iter_mut() {
                *v *= s_p;
            }
        }
        let (lo, hi) = (c.strength[0], c.strength[1]);
        let alpha = |rng: &mut ChaCha8Rng| -> f32 {
            if hi > lo {
                rng.gen_range(lo..hi) as f32
            } else {
                lo as f32
            }
        };
        let n_feat = self.features.nrows();
        let own = [self.common_feature(s), self.fine_feature(leaf)];
        for p in 0..c.patches {
            let patch = &mut out[p * d..(p + 1) * d];
            let (row, a) = if p < c.common_patches {
                let a = alpha(rng) * if hard { c.hard_rho as f32 } else { 1.0 };
                (own[0], a)
            } else if p < c.common_patches + c.fine_patches {
                (own[1], alpha(rng))
            } else if c.feature_noise > 0.0
                && c.feature_noise_prob > 0.0
                && rng.gen::<f64>() < c.feature_noise_prob
            {
                // another class's feature: any feature but the sample's own two
                let mut j = rng.gen_range(0..n_feat - 2);
                let (a_own, b_own) = (own[0].min(own[1]), own[0].max(own[1]));
                if j >= a_own {
                    j += 1;
                }
                if j >= b_own {
                    j += 1;
                }
                (j, c.feature_noise as f32)
            } else {
                continue;
            };
            if a != 0.0 {
                let f = self.features.row(row);
                for (v, &fv) in patch.iter_mut().zip(f.iter()) {
                    *v += a * fv;
                }
            }
        }
        (leaf, hard)
    }

    /// Draw `n` samples with global indices `first .. first + n` under `key`, in parallel
    /// (bit-identical whatever the thread count).
    pub fn draw(&self, key: u64, first: u64, n: usize, kind: SampleKind) -> Samples {
        let mut x = vec![0f32; n * self.sample_len()];
        let mut meta = vec![(0usize, false); n];
        self.draw_into(key, first, kind, &mut x, &mut meta);
        Samples {
            x,
            leaves: meta.iter().map(|m| m.0).collect(),
            hard: meta.iter().map(|m| m.1).collect(),
            index: (first..first + n as u64).collect(),
        }
    }

    /// Like [`Distribution::draw`] into caller buffers (`x.len() == meta.len() * sample_len`).
    pub fn draw_into(
        &self,
        key: u64,
        first: u64,
        kind: SampleKind,
        x: &mut [f32],
        meta: &mut [(usize, bool)],
    ) {
        let len = self.sample_len();
        x.par_chunks_mut(len)
            .zip(meta.par_iter_mut())
            .enumerate()
            .for_each(|(i, (out, m))| {
                let mut rng = seed::stream(key, first + i as u64);
                *m = self.sample_into(&mut rng, kind, out);
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::config::TheoryConfig;

    fn cfg() -> DataConfig {
        let mut c = TheoryConfig::default_config().unwrap().data;
        c.dim = 64;
        c.patches = 8;
        c.subclasses = vec![3, 2];
        c
    }

    #[test]
    fn features_are_orthonormal() {
        let dist = Distribution::new(&cfg(), 7).unwrap();
        let f = dist.features().mapv(f64::from);
        let g = f.dot(&f.t());
        for i in 0..g.nrows() {
            for j in 0..g.ncols() {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (g[[i, j]] - want).abs() < 1e-5,
                    "G[{i},{j}] = {}",
                    g[[i, j]]
                );
            }
        }
        assert_eq!(f.nrows(), 2 + 5);
    }

    /// Projections of every patch on the features recover the patch roles, up to noise.
    #[test]
    fn patch_composition_matches_the_model() {
        let mut c = cfg();
        c.noise = 0.0;
        c.hard_noise = 0.0;
        c.feature_noise = 0.0;
        let dist = Distribution::new(&c, 3).unwrap();
        let easy = dist.draw(11, 0, 50, SampleKind::Easy);
        let hard = dist.draw(12, 0, 50, SampleKind::Hard);
        let f = dist.features();
        let d = c.dim;
        for (set, is_hard) in [(&easy, false), (&hard, true)] {
            for i in 0..set.len() {
                let leaf = set.leaves[i];
                let s = dist.leaf_superclass()[leaf];
                assert_eq!(set.hard[i], is_hard);
                for p in 0..c.patches {
                    let patch = &set.x[(i * c.patches + p) * d..(i * c.patches + p + 1) * d];
                    let proj: Vec<f32> = (0..f.nrows())
                        .map(|r| f.row(r).iter().zip(patch).map(|(a, b)| a * b).sum())
                        .collect();
                    let expect_row = if p < c.common_patches && !is_hard {
                        Some(dist.common_feature(s))
                    } else if p >= c.common_patches && p < c.common_patches + c.fine_patches {
                        Some(dist.fine_feature(leaf))
                    } else {
                        None
                    };
                    for (r, &v) in proj.iter().enumerate() {
                        if Some(r) == expect_row {
                            assert!((0.9 - 1e-4..=1.1 + 1e-4).contains(&v), "strength {v}");
                        } else {
                            assert!(v.abs() < 1e-5, "patch {p} leaks feature {r}: {v}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn noise_levels_and_hard_rho() {
        let mut c = cfg();
        c.dim = 256;
        c.feature_noise = 0.0;
        c.hard_rho = 0.5;
        c.noise = 0.3;
        c.hard_noise = 2.0;
        let dist = Distribution::new(&c, 1).unwrap();
        let hard = dist.draw(5, 0, 200, SampleKind::Hard);
        let d = c.dim;
        let (mut n_common, mut n_other) = (0.0f64, 0.0f64);
        let (mut cnt_c, mut cnt_o) = (0, 0);
        let mut rho_proj = 0.0f64;
        for i in 0..hard.len() {
            let s = dist.leaf_superclass()[hard.leaves[i]];
            for p in 0..c.patches {
                let patch = &hard.x[(i * c.patches + p) * d..(i * c.patches + p + 1) * d];
                if p < c.common_patches {
                    let proj: f32 = dist
                        .features()
                        .row(s)
                        .iter()
                        .zip(patch)
                        .map(|(a, b)| a * b)
                        .sum();
                    rho_proj += proj as f64;
                    // remove the feature part before measuring the noise norm
                    let sq: f64 = patch.iter().map(|v| (*v as f64).powi(2)).sum::<f64>()
                        - (proj as f64).powi(2);
                    n_common += sq;
                    cnt_c += 1;
                } else if p >= c.common_patches + c.fine_patches {
                    n_other += patch.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
                    cnt_o += 1;
                }
            }
        }
        let rms_c = (n_common / cnt_c as f64).sqrt();
        let rms_o = (n_other / cnt_o as f64).sqrt();
        assert!((rms_c - 2.0).abs() < 0.05, "hard noise norm {rms_c}");
        assert!((rms_o - 0.3).abs() < 0.01, "noise norm {rms_o}");
        let mean_rho = rho_proj / cnt_c as f64;
        assert!((mean_rho - 0.5).abs() < 0.05, "rho * alpha mean {mean_rho}");
    }

    #[test]
    fn subclass_choice_is_uniform_within_superclass_and_deterministic() {
        let c = cfg();
        let dist = Distribution::new(&c, 2).unwrap();
        let a = dist.draw(9, 100, 3000, SampleKind::Mix(0.25));
        let b = dist.draw(9, 100, 3000, SampleKind::Mix(0.25));
        assert_eq!(a, b);
        let mut counts = [0usize; 5];
        for &l in &a.leaves {
            counts[l] += 1;
        }
        // superclass 0 has 3 leaves (1/6 each), superclass 1 has 2 (1/4 each)
        let expect = [1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0, 0.25, 0.25];
        for (l, &n) in counts.iter().enumerate() {
            let frac = n as f64 / 3000.0;
            assert!((frac - expect[l]).abs() < 0.03, "leaf {l}: {frac}");
        }
        let hard_frac = a.hard.iter().filter(|&&h| h).count() as f64 / 3000.0;
        assert!((hard_frac - 0.25).abs() < 0.03, "{hard_frac}");
        // a sub-range drawn alone equals the same indices drawn in a bigger set
        let c2 = dist.draw(9, 150, 10, SampleKind::Mix(0.25));
        let len = dist.sample_len();
        assert_eq!(&c2.x[..], &a.x[50 * len..60 * len]);
    }

    #[test]
    fn thread_count_does_not_change_bits() {
        let dist = Distribution::new(&cfg(), 4).unwrap();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let a = one.install(|| dist.draw(3, 0, 64, SampleKind::Easy));
        let b = two.install(|| dist.draw(3, 0, 64, SampleKind::Easy));
        assert_eq!(a, b);
    }
}
