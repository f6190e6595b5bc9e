//! The embedded default dataset of the empirical half: the theory's "hierarchical multi-view"
//! distribution (`theory/MODEL.md` §1) rendered as small RGB images, so that a CNN can be
//! pretrained and fine-tuned on it with nothing to download.
//!
//! # The distribution
//!
//! * **Labels.** `subclasses[s]` subclasses under superclass `s`; the hierarchy is
//!   [`Hierarchy::two_level`] (level 0 superclass, level 1 subclass = leaf, leaves numbered
//!   superclass by superclass).
//! * **Images.** `image_size × image_size` RGB, cut into a grid of `P = (image_size /
//!   patch_size)²` square patches of `patch_size × patch_size` pixels (defaults: 32×32 images, a
//!   4×4 grid of 8×8 patches).
//! * **Features = fixed random textures.** There are `F = S + K` textures, one per superclass
//!   (*common*, row `s` of [`SyntheticData::features`]) and one per subclass (*fine*, row `S + l`
//!   for leaf `l`). Each is a `3 × patch_size × patch_size` pattern (CHW, `D = 3·patch_size²`
//!   numbers) drawn i.i.d. N(0, 1) from the seed, centred to zero mean, made orthogonal by modified
//!   Gram–Schmidt in f64 (when `orthogonalize`; this needs `F < D`, i.e. at most 191 textures for
//!   8×8 patches), and scaled to norm `√D`, i.e. an RMS of 1 pixel unit. A strength `α` therefore
//!   means "`α` grey levels RMS" and the textures do not change a patch's mean brightness.
//! * **Easy sample of leaf `(s, c)`.** Every pixel starts at `background` (default mid-grey 128).
//!   A random permutation of the `P` patch positions picks `common_patches` positions for the
//!   common texture `v_s` and the next `fine_patches` positions for the fine texture `v_{s,c}`;
//!   each such patch gets `α_p · texture` with `α_p ~ U[strength[0], strength[1]]` drawn per patch
//!   (the common patches draw from `common_strength` instead when it is set).
//!   Each remaining (*noise*) patch carries, with probability `feature_noise_prob`, `feature_noise
//!   · v_f` for a texture `f` drawn uniformly among the `F − 2` textures other than the sample's
//!   own two (nothing when there is no other texture). Every pixel then gets N(0, `noise`²)
//!   Gaussian noise, and the result is rounded and clamped to `0..=255`.
//! * **Hard sample.** As an easy one, except that its common patches keep only `hard_rho · α_p ·
//!   v_s` (0 = the common texture is missing) and their pixel noise has std `hard_noise` instead of
//!   `noise` (it replaces the usual noise, as in MODEL.md §1.3).
//!
//! Unlike the theory simulation, the feature **positions are random per image**: a CNN is not
//! permutation invariant, and fixed positions would let it key on where, not what.
//!
//! # Splits
//!
//! * `train`: `train_per_leaf` images of each leaf; each is hard with probability
//!   `train_hard_fraction` (default 0, as in the theory: training data are easy).
//! * `test_easy`, `test_hard`: `test_easy_per_leaf` easy and `test_hard_per_leaf` hard images of
//!   each leaf. [`SyntheticData::splits`] concatenates them (easy first) into one test set, and
//!   [`SyntheticData::test_is_hard`] marks which of its images are hard.
//!
//! In every split image `i` has leaf `i % K`, so any prefix of a split is class-balanced.
//!
//! # Determinism
//!
//! Every draw comes from [`crate::seed`]: the textures from the generator
//! `["synthetic", "textures"]` of `seed`; image `i` of a split from stream `i` of the key
//! `["synthetic", split]` ([`crate::seed::stream`]), so the bytes depend only on the
//! configuration and never on the number of threads (images are rendered in parallel with
//! rayon).
//!
//! ```
//! use granularity::empirical::data::load::synthetic::{generate, SyntheticConfig};
//!
//! let cfg = SyntheticConfig { train_per_leaf: 4, test_easy_per_leaf: 2, test_hard_per_leaf: 2,
//!                             ..SyntheticConfig::default() };
//! let data = generate(&cfg)?;
//! let splits = data.splits();
//! assert_eq!(splits.train.len, 4 * 10);
//! assert_eq!(splits.test.len, data.test_is_hard.len());
//! assert_eq!(splits.train.labels_at_level(0)[..3], [0, 0, 0]);
//! # Ok::<(), granularity::empirical::data::DataError>(())
//! ```

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::empirical::data::{DataError, ImageSet, Splits};
use crate::hierarchy::Hierarchy;

/// The context string of configuration errors.
const CONTEXT: &str = "synthetic dataset config";

/// Configuration of the synthetic hierarchical multi-view image dataset (see the module doc).
///
/// Every field has a default ([`SyntheticConfig::default`]), so a config file need only name the
/// fields it changes; unknown fields are an error. Pixel quantities (`background`, `noise`,
/// `strength`, `hard_noise`, `feature_noise`) are in grey levels on the 0..255 scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Image side in pixels (images are square). Default 32.
    pub image_size: usize,
    /// Patch side in pixels; must divide `image_size`. Default 8 (a 4×4 grid on 32×32 images).
    pub patch_size: usize,
    /// Number of subclasses of each superclass (any number of superclasses). Default `[5, 5]`.
    pub subclasses: Vec<usize>,
    /// Patches carrying the superclass's common texture. Default 3.
    pub common_patches: usize,
    /// Patches carrying the subclass's fine texture. Default 2.
    pub fine_patches: usize,
    /// Training images per leaf. Default 200.
    pub train_per_leaf: usize,
    /// Easy test images per leaf. Default 50.
    pub test_easy_per_leaf: usize,
    /// Hard test images per leaf. Default 50.
    pub test_hard_per_leaf: usize,
    /// Probability that a training image is hard. Default 0.
    pub train_hard_fraction: f64,
    /// Background grey level before features and noise. Default 128.
    pub background: f32,
    /// Std of the Gaussian pixel noise. Default 20.
    pub noise: f32,
    /// Range `[lo, hi]` of the per-patch feature strength α (RMS grey levels). Default `[40, 60]`.
    pub strength: [f32; 2],
    /// Range `[lo, hi]` of the common (superclass) textures' strength, when it should differ from
    /// the fine textures' `strength`: stronger common features make the superclass easier to
    /// tell without the subclass textures (the theory's regime). Default: unset (= `strength`);
    /// unset is not written out, so configs without it resolve to the same text as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_strength: Option<[f32; 2]>,
    /// Orthogonalise the textures (Gram–Schmidt); needs fewer textures than `3·patch_size²`.
    /// Default true.
    pub orthogonalize: bool,
    /// Fraction of the common texture kept by hard samples (0 = missing). Default 0.
    pub hard_rho: f32,
    /// Pixel-noise std in the common patches of hard samples (replaces `noise` there). Default 20.
    pub hard_noise: f32,
    /// Probability that a noise patch carries another class's texture. Default 0.05.
    pub feature_noise_prob: f64,
    /// Strength of that stray texture (RMS grey levels). Default 20.
    pub feature_noise: f32,
    /// Seed of the textures and of every image.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            image_size: 32,
            patch_size: 8,
            subclasses: vec![5, 5],
            common_patches: 3,
            fine_patches: 2,
            train_per_leaf: 200,
            test_easy_per_leaf: 50,
            test_hard_per_leaf: 50,
            train_hard_fraction: 0.0,
            background: 128.0,
            noise: 20.0,
            strength: [40.0, 60.0],
            common_strength: None,
            orthogonalize: true,
            hard_rho: 0.0,
            hard_noise: 20.0,
            feature_noise_prob: 0.05,
            feature_noise: 20.0,
            seed: 0,
        }
    }
}

fn invalid(field: &str, message: impl std::fmt::Display) -> DataError {
    DataError::Invalid {
        context: CONTEXT.to_string(),
        message: format!("field `{field}`: {message}"),
    }
}

fn check_range(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), DataError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(invalid(field, format!("must be in [{lo}, {hi}] (got {v})")))
    }
}

fn check_strength(field: &str, [lo, hi]: [f32; 2]) -> Result<(), DataError> {
    check_range(field, lo.into(), 0.0, f64::MAX)?;
    check_range(field, hi.into(), 0.0, f64::MAX)?;
    if lo > hi {
        return Err(invalid(
            field,
            format!("lower bound {lo} exceeds upper bound {hi}"),
        ));
    }
    Ok(())
}

impl SyntheticConfig {
    /// The strength range of the common textures (`common_strength`, else `strength`).
    pub fn common_range(&self) -> [f32; 2] {
        self.common_strength.unwrap_or(self.strength)
    }

    /// Patches per image side (`image_size / patch_size`).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }

    /// Patches per image.
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Numbers per texture (`3 · patch_size²`).
    pub fn texture_dim(&self) -> usize {
        3 * self.patch_size * self.patch_size
    }

    /// Number of leaves (subclasses in all).
    pub fn num_leaves(&self) -> usize {
        self.subclasses.iter().sum()
    }

    /// Checks every field; the error names the field at fault.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.image_size == 0 {
            return Err(invalid("image_size", "must be at least 1"));
        }
        if self.patch_size == 0 {
            return Err(invalid("patch_size", "must be at least 1"));
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(invalid(
                "patch_size",
                format!(
                    "{} does not divide image_size {}",
                    self.patch_size, self.image_size
                ),
            ));
        }
        if self.subclasses.is_empty() {
            return Err(invalid("subclasses", "needs at least one superclass"));
        }
        if let Some(s) = self.subclasses.iter().position(|&k| k == 0) {
            return Err(invalid(
                "subclasses",
                format!("superclass {s} has 0 subclasses"),
            ));
        }
        let p = self.num_patches();
        if self.common_patches + self.fine_patches > p {
            return Err(invalid(
                "common_patches",
                format!(
                    "common_patches {} + fine_patches {} exceed the {p} patches of an image",
                    self.common_patches, self.fine_patches
                ),
            ));
        }
        if self.train_per_leaf == 0 {
            return Err(invalid("train_per_leaf", "must be at least 1"));
        }
        check_range("train_hard_fraction", self.train_hard_fraction, 0.0, 1.0)?;
        check_range("background", self.background.into(), 0.0, 255.0)?;
        check_range("noise", self.noise.into(), 0.0, f64::MAX)?;
        check_range("hard_noise", self.hard_noise.into(), 0.0, f64::MAX)?;
        check_range("hard_rho", self.hard_rho.into(), 0.0, 1.0)?;
        check_range("feature_noise_prob", self.feature_noise_prob, 0.0, 1.0)?;
        check_range("feature_noise", self.feature_noise.into(), 0.0, f64::MAX)?;
        check_strength("strength", self.strength)?;
        if let Some(c) = self.common_strength {
            check_strength("common_strength", c)?;
        }
        let f = self.subclasses.len() + self.num_leaves();
        if self.orthogonalize && f >= self.texture_dim() {
            return Err(invalid(
                "orthogonalize",
                format!(
                    "{f} textures cannot be orthogonal and zero-mean in {} dimensions; use a \
                     larger patch_size or orthogonalize = false",
                    self.texture_dim()
                ),
            ));
        }
        let per = 3 * self.image_size * self.image_size;
        let per_leaf = self
            .train_per_leaf
            .checked_add(self.test_easy_per_leaf)
            .and_then(|n| n.checked_add(self.test_hard_per_leaf));
        let bytes = per_leaf
            .and_then(|n| n.checked_mul(self.num_leaves()))
            .and_then(|n| n.checked_mul(per))
            .filter(|&b| b <= isize::MAX as usize);
        if bytes.is_none() {
            return Err(invalid(
                "train_per_leaf",
                "the dataset's size in bytes overflows",
            ));
        }
        Ok(())
    }
}

/// The generated dataset: three splits sharing one hierarchy, plus the textures used.
#[derive(Clone, Debug)]
pub struct SyntheticData {
    /// Training images (`train_per_leaf` per leaf; image `i` has leaf `i % K`).
    pub train: ImageSet,
    /// Easy test images (`test_easy_per_leaf` per leaf).
    pub test_easy: ImageSet,
    /// Hard test images (`test_hard_per_leaf` per leaf).
    pub test_hard: ImageSet,
    /// Whether each training image is hard (all false unless `train_hard_fraction > 0`).
    pub train_is_hard: Vec<bool>,
    /// Whether each image of the test set of [`SyntheticData::splits`] (easy images first, then
    /// hard ones) is hard.
    pub test_is_hard: Vec<bool>,
    /// The `S + K` textures, each `3 · patch_size²` numbers (CHW within a patch): row `s` is
    /// superclass `s`'s common texture, row `S + l` leaf `l`'s fine texture. Zero mean, RMS 1.
    pub features: Vec<Vec<f32>>,
    /// The configuration the data were generated from.
    pub config: SyntheticConfig,
}

impl SyntheticData {
    /// The easy and hard test images concatenated (easy first), aligned with
    /// [`SyntheticData::test_is_hard`].
    pub fn test(&self) -> ImageSet {
        let mut images =
            Vec::with_capacity(self.test_easy.images.len() + self.test_hard.images.len());
        images.extend_from_slice(&self.test_easy.images);
        images.extend_from_slice(&self.test_hard.images);
        let mut leaves = self.test_easy.leaves.clone();
        leaves.extend_from_slice(&self.test_hard.leaves);
        ImageSet {
            images,
            len: leaves.len(),
            channels: 3,
            height: self.test_easy.height,
            width: self.test_easy.width,
            leaves,
            hierarchy: Arc::clone(&self.test_easy.hierarchy),
            source: "synthetic:test".to_string(),
        }
    }

    /// Train and test (easy + hard, see [`SyntheticData::test`]) splits.
    pub fn splits(&self) -> Splits {
        Splits {
            train: self.train.clone(),
            test: self.test(),
        }
    }
}

/// The `count` textures of dimension `dim`: N(0, 1), centred, optionally Gram–Schmidt
/// orthogonalised, scaled to norm √dim.
fn make_textures(count: usize, dim: usize, orthogonalize: bool, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = crate::seed::rng(seed, &["synthetic", "textures"]);
    let mut rows: Vec<Vec<f64>> = (0..count)
        .map(|_| (0..dim).map(|_| rng.sample(StandardNormal)).collect())
        .collect();
    for i in 0..rows.len() {
        let (before, rest) = rows.split_at_mut(i);
        let row = &mut rest[0];
        let mean = row.iter().sum::<f64>() / dim as f64;
        row.iter_mut().for_each(|x| *x -= mean);
        if orthogonalize {
            for prev in before.iter() {
                let dot: f64 = row.iter().zip(prev).map(|(a, b)| a * b).sum();
                row.iter_mut().zip(prev).for_each(|(a, b)| *a -= dot * b);
            }
        }
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            // Unit norm while orthogonalising (later rows project on it); rescaled below.
            row.iter_mut().for_each(|x| *x /= norm);
        }
    }
    let scale = (dim as f64).sqrt();
    rows.into_iter()
        .map(|r| r.into_iter().map(|x| (x * scale) as f32).collect())
        .collect()
}

/// Role of a patch in one image.
#[derive(Clone, Copy)]
enum Role {
    Common,
    Fine,
    Noise,
}

/// Everything the renderer needs besides the per-image random stream.
struct Renderer<'a> {
    cfg: &'a SyntheticConfig,
    textures: &'a [Vec<f32>],
    /// Superclass of each leaf.
    parent: Vec<usize>,
    num_super: usize,
}

impl Renderer<'_> {
    /// Renders one image of `leaf` into `out` (CHW bytes); `hard` selects the hard variant.
    fn render(&self, leaf: usize, hard: bool, rng: &mut ChaCha8Rng, out: &mut [u8]) {
        let cfg = self.cfg;
        let (n, ps, grid) = (cfg.image_size, cfg.patch_size, cfg.grid());
        let s = self.parent[leaf];
        let own = [s, self.num_super + leaf];
        let f = self.textures.len();
        let mut order: Vec<usize> = (0..grid * grid).collect();
        order.shuffle(rng);
        let mut role = vec![Role::Noise; grid * grid];
        for (k, &q) in order.iter().enumerate() {
            if k < cfg.common_patches {
                role[q] = Role::Common;
            } else if k < cfg.common_patches + cfg.fine_patches {
                role[q] = Role::Fine;
            }
        }
        let [lo, hi] = cfg.strength;
        let [clo, chi] = cfg.common_range();
        for (q, r) in role.iter().enumerate() {
            let (amp, tex, sd) = match r {
                Role::Common => {
                    let a: f32 = rng.gen_range(clo..=chi);
                    if hard {
                        (cfg.hard_rho * a, Some(own[0]), cfg.hard_noise)
                    } else {
                        (a, Some(own[0]), cfg.noise)
                    }
                }
                Role::Fine => (rng.gen_range(lo..=hi), Some(own[1]), cfg.noise),
                Role::Noise => {
                    if rng.gen_bool(cfg.feature_noise_prob) && f > 2 {
                        // Uniform over the F - 2 textures other than the sample's own two.
                        let mut j = rng.gen_range(0..f - 2);
                        for &o in &own {
                            if j >= o {
                                j += 1;
                            }
                        }
                        (cfg.feature_noise, Some(j), cfg.noise)
                    } else {
                        (0.0, None, cfg.noise)
                    }
                }
            };
            let (py, px) = (q / grid, q % grid);
            for c in 0..3 {
                for y in 0..ps {
                    for x in 0..ps {
                        let z: f32 = rng.sample(StandardNormal);
                        let t = tex.map_or(0.0, |t| self.textures[t][(c * ps + y) * ps + x]);
                        let v = cfg.background + amp * t + sd * z;
                        out[(c * n + py * ps + y) * n + px * ps + x] =
                            v.round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
    }

    /// Renders a split of `per_leaf` images per leaf; returns the pixels, leaves and hard flags.
    fn split(
        &self,
        per_leaf: usize,
        name: &str,
        hard: Option<bool>,
    ) -> (Vec<u8>, Vec<usize>, Vec<bool>) {
        let k = self.parent.len();
        let len = per_leaf * k;
        let per = 3 * self.cfg.image_size * self.cfg.image_size;
        let key = crate::seed::derive(self.cfg.seed, &["synthetic", name]);
        let mut images = vec![0u8; len * per];
        let is_hard: Vec<bool> = images
            .par_chunks_mut(per)
            .enumerate()
            .map(|(i, out)| {
                let mut rng = crate::seed::stream(key, i as u64);
                // Always drawn, so that every split uses its stream the same way.
                let u: f64 = rng.gen();
                let h = hard.unwrap_or(u < self.cfg.train_hard_fraction);
                self.render(i % k, h, &mut rng, out);
                h
            })
            .collect();
        let leaves = (0..len).map(|i| i % k).collect();
        (images, leaves, is_hard)
    }
}

/// Generates the dataset described by `cfg` (see the module doc). Errors name the invalid field.
pub fn generate(cfg: &SyntheticConfig) -> Result<SyntheticData, DataError> {
    cfg.validate()?;
    let hierarchy =
        Arc::new(Hierarchy::two_level(&cfg.subclasses).map_err(|e| invalid("subclasses", e))?);
    let num_super = cfg.subclasses.len();
    let parent: Vec<usize> = (0..hierarchy.num_leaves())
        .map(|l| hierarchy.leaf_ancestor(l, 0))
        .collect();
    let features = make_textures(
        num_super + parent.len(),
        cfg.texture_dim(),
        cfg.orthogonalize,
        cfg.seed,
    );
    let r = Renderer {
        cfg,
        textures: &features,
        parent,
        num_super,
    };
    let n = cfg.image_size;
    let set = |(images, leaves, _): (Vec<u8>, Vec<usize>, Vec<bool>), name: &str| {
        ImageSet::new(
            images,
            3,
            n,
            n,
            leaves,
            Arc::clone(&hierarchy),
            format!("synthetic:{name}"),
        )
    };
    let train = r.split(cfg.train_per_leaf, "train", None);
    let train_is_hard = train.2.clone();
    let train = set(train, "train")?;
    let test_easy = set(
        r.split(cfg.test_easy_per_leaf, "test_easy", Some(false)),
        "test_easy",
    )?;
    let test_hard = set(
        r.split(cfg.test_hard_per_leaf, "test_hard", Some(true)),
        "test_hard",
    )?;
    let mut test_is_hard = vec![false; test_easy.len];
    test_is_hard.resize(test_easy.len + test_hard.len, true);
    Ok(SyntheticData {
        train,
        test_easy,
        test_hard,
        train_is_hard,
        test_is_hard,
        features,
        config: cfg.clone(),
    })
}

#[cfg(test)]
mod tests;
