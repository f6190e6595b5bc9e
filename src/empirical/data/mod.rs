//! Image data for the empirical half: in-memory image sets with a label hierarchy, the sources
//! a study reads them from, and seeded augmentation plus batching into normalised `f32`
//! tensors ([`augment`]).
//!
//! * [`config`]: the `[data]` section of a study config (the source and what a study keeps);
//!   [`load`](mod@load): the one way in to a source's images, for the study and for `empirical
//!   inspect` ([`inspect`]);
//! * the sources, each a module of [`load`](mod@load): the CIFAR-100 binary release
//!   ([`load::cifar`]), image folders with a hierarchy file ([`load::folder`]), iNaturalist 2021
//!   ([`load::inat`]), ImageNet-style folders under WordNet's noun hierarchy ([`load::wordnet`])
//!   or a BREEDS task ([`load::breeds`]), and the embedded synthetic multi-view images
//!   ([`load::synthetic`]);
//! * the indexed sources are first an index of image files ([`index`], [`indexed`]), selected,
//!   then decoded ([`decode`], [`fetch`]).
//!
//! Every image set keeps its pixels as `u8` in one contiguous buffer, channel-major per image
//! (CHW: all of channel 0 row by row, then channel 1, ...), and one *leaf* class per image. The
//! leaf is the finest label of the set's [`Hierarchy`]; the label of an image at any coarser level
//! is the leaf's ancestor there ([`ImageSet::labels_at_level`]). Pretraining on fine labels and
//! fine-tuning on coarse ones thus read the same images with different levels.
//!
//! Loaders never panic on bad input: every problem with a file comes back as a [`DataError`]
//! whose message names the file or folder at fault.
//!
//! ```no_run
//! use granularity::empirical::data::{load::cifar, augment::{batch_f32, Augment}};
//! use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
//!
//! let splits = cifar::load_cifar100(std::path::Path::new("data/cifar-100-binary"))?;
//! println!("{}", splits.summary());
//! let (mean, std) = splits.train.rgb_mean_std().expect("CIFAR images are RGB");
//! let coarse = splits.train.labels_at_level(0);
//! let mut rng = ChaCha8Rng::seed_from_u64(0);
//! let aug = Augment::cifar();
//! let x = batch_f32(&splits.train, &[0, 1, 2], mean, std, Some((&aug, &mut rng)));
//! assert_eq!(x.len(), 3 * 3 * 32 * 32);
//! # let _ = coarse;
//! # Ok::<(), granularity::empirical::data::DataError>(())
//! ```

pub mod augment;
pub mod config;
pub mod decode;
mod error;
pub mod fetch;
pub mod fixtures;
pub mod index;
pub mod indexed;
pub mod inspect;
pub mod load;
pub mod numpy_rng;

use std::fmt;
use std::sync::Arc;

use crate::hierarchy::Hierarchy;

pub use augment::{batch_f32, shuffled_batches, Augment};
pub use config::{DataConfig, DataSource};
pub use error::{human_bytes, DataError};
pub use load::cifar::{cifar100_dir_from_env, load_cifar100};
pub use load::folder::{load_image_folder, load_image_folder_with_warnings};
pub use load::{dataset_dir, load, open, Loaded, Opened, CIFAR100_ENV};

/// `Ok` when `dir` is a folder, else an error naming it.
fn require_dir(dir: &std::path::Path) -> Result<(), DataError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(DataError::NotADirectory {
            path: dir.to_path_buf(),
        })
    }
}

/// A set of images held in memory, with a leaf class per image and the label hierarchy.
///
/// Image `i` occupies `images[i * c * h * w .. (i + 1) * c * h * w]`, channel-major (CHW),
/// rows top to bottom, pixels left to right. For the loaders of this module `channels` is 3 (RGB).
/// The fields are public for reading; build new sets with [`ImageSet::new`] (which validates) or
/// [`ImageSet::subset`] so the invariants hold.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// All pixels, `len * channels * height * width` bytes.
    pub images: Vec<u8>,
    /// Number of images.
    pub len: usize,
    /// Channels per image (3 for RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Leaf class of each image (an index into the hierarchy's last level).
    pub leaves: Vec<usize>,
    /// The label tree; shared by the splits of one dataset.
    pub hierarchy: Arc<Hierarchy>,
    /// Where the images came from (file or folder), for messages and reports.
    pub source: String,
}

impl ImageSet {
    /// Builds a set, checking that the buffer size matches `leaves.len() * channels * height *
    /// width`, that the shape is non-zero and that every leaf is a leaf of `hierarchy`.
    pub fn new(
        images: Vec<u8>,
        channels: usize,
        height: usize,
        width: usize,
        leaves: Vec<usize>,
        hierarchy: Arc<Hierarchy>,
        source: impl Into<String>,
    ) -> Result<Self, DataError> {
        let source = source.into();
        let invalid = |message: String| DataError::Invalid {
            context: source.clone(),
            message,
        };
        if channels == 0 || height == 0 || width == 0 {
            return Err(invalid(format!(
                "image shape {channels}x{height}x{width} has a zero dimension"
            )));
        }
        let per = channels * height * width;
        let expected = leaves.len().checked_mul(per);
        if expected != Some(images.len()) {
            return Err(invalid(format!(
                "{} pixel bytes for {} images of {channels}x{height}x{width} (expected {})",
                images.len(),
                leaves.len(),
                leaves.len().saturating_mul(per)
            )));
        }
        let n_leaves = hierarchy.num_leaves();
        if let Some((i, &leaf)) = leaves.iter().enumerate().find(|(_, &l)| l >= n_leaves) {
            return Err(invalid(format!(
                "image {i} has leaf {leaf}, but the hierarchy has {n_leaves} leaves"
            )));
        }
        Ok(Self {
            len: leaves.len(),
            images,
            channels,
            height,
            width,
            leaves,
            hierarchy,
            source,
        })
    }

    /// True when the set holds no images.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes per image (`channels * height * width`).
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i` (CHW). Panics if `i >= len`.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(
            i < self.len,
            "image index {i} out of range for {} images of {}",
            self.len,
            self.source
        );
        let per = self.image_size();
        &self.images[i * per..(i + 1) * per]
    }

    /// A new set holding the images `idx` (in that order, repeats allowed), sharing the
    /// hierarchy. Panics if an index is out of range.
    pub fn subset(&self, idx: &[usize]) -> ImageSet {
        let per = self.image_size();
        let mut images = Vec::with_capacity(idx.len() * per);
        let mut leaves = Vec::with_capacity(idx.len());
        for &i in idx {
            images.extend_from_slice(self.image(i));
            leaves.push(self.leaves[i]);
        }
        ImageSet {
            images,
            len: idx.len(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            leaves,
            hierarchy: Arc::clone(&self.hierarchy),
            source: self.source.clone(),
        }
    }

    /// The class of every image at hierarchy level `level` (0 = coarsest; the leaf level gives
    /// the leaves). Panics if `level >= hierarchy.num_levels()`.
    pub fn labels_at_level(&self, level: usize) -> Vec<usize> {
        self.check_level(level);
        self.leaves
            .iter()
            .map(|&leaf| self.hierarchy.leaf_ancestor(leaf, level))
            .collect()
    }

    /// Number of images of each class of level `level` (length `num_classes(level)`). Panics if
    /// the level is out of range.
    pub fn class_counts(&self, level: usize) -> Vec<usize> {
        let mut counts = vec![0; self.hierarchy.num_classes(level)];
        for c in self.labels_at_level(level) {
            counts[c] += 1;
        }
        counts
    }

    /// Indices of the images of each class of level `level`, ascending. Panics if the level is
    /// out of range.
    pub fn indices_by_class(&self, level: usize) -> Vec<Vec<usize>> {
        let mut by = vec![Vec::new(); self.hierarchy.num_classes(level)];
        for (i, c) in self.labels_at_level(level).into_iter().enumerate() {
            by[c].push(i);
        }
        by
    }

    /// Per-channel mean and (population) standard deviation of all pixels, scaled to [0, 1].
    /// Zeros for an empty set.
    pub fn channel_mean_std(&self) -> (Vec<f32>, Vec<f32>) {
        let (c, hw) = (self.channels, self.height * self.width);
        let mut sum = vec![0u64; c];
        let mut sum_sq = vec![0u64; c];
        for img in self.images.chunks_exact(c * hw) {
            for (ch, plane) in img.chunks_exact(hw).enumerate() {
                let (mut s, mut q) = (0u64, 0u64);
                for &p in plane {
                    let p = u64::from(p);
                    s += p;
                    q += p * p;
                }
                sum[ch] += s;
                sum_sq[ch] += q;
            }
        }
        let n = (self.len * hw) as f64;
        if n == 0.0 {
            return (vec![0.0; c], vec![0.0; c]);
        }
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for ch in 0..c {
            let m = sum[ch] as f64 / n;
            let var = (sum_sq[ch] as f64 / n - m * m).max(0.0);
            mean.push((m / 255.0) as f32);
            std.push((var.sqrt() / 255.0) as f32);
        }
        (mean, std)
    }

    /// [`ImageSet::channel_mean_std`] as arrays, for [`batch_f32`]; `None` unless the set has 3
    /// channels.
    pub fn rgb_mean_std(&self) -> Option<([f32; 3], [f32; 3])> {
        let (m, s) = self.channel_mean_std();
        Some((m.try_into().ok()?, s.try_into().ok()?))
    }

    /// One line: source, image count and shape, and the class count at every level.
    pub fn summary(&self) -> String {
        let h = &self.hierarchy;
        let levels: Vec<String> = (0..h.num_levels())
            .map(|l| {
                let present = self.class_counts(l).iter().filter(|&&n| n > 0).count();
                format!("{} {present}/{} classes", h.level(l).name, h.num_classes(l))
            })
            .collect();
        format!(
            "{}: {} images of {}x{}x{}; {}",
            self.source,
            self.len,
            self.channels,
            self.height,
            self.width,
            levels.join(", ")
        )
    }

    fn check_level(&self, level: usize) {
        assert!(
            level < self.hierarchy.num_levels(),
            "level {level} out of range: the hierarchy of {} has {} levels",
            self.source,
            self.hierarchy.num_levels()
        );
    }
}

impl fmt::Display for ImageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// A dataset's train and test splits, sharing one hierarchy.
#[derive(Clone, Debug)]
pub struct Splits {
    /// The training images.
    pub train: ImageSet,
    /// The test images.
    pub test: ImageSet,
}

impl Splits {
    /// Two lines: the summaries of the train and test sets.
    pub fn summary(&self) -> String {
        format!(
            "train {}\ntest  {}",
            self.train.summary(),
            self.test.summary()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> ImageSet {
        let h = Arc::new(Hierarchy::two_level(&[2, 1]).unwrap());
        // 3 images of 3x1x2; image i has every byte == 10 * i + channel.
        let mut images = Vec::new();
        for i in 0..3u8 {
            for c in 0..3u8 {
                images.extend_from_slice(&[10 * i + c, 10 * i + c]);
            }
        }
        ImageSet::new(images, 3, 1, 2, vec![0, 2, 1], h, "toy").unwrap()
    }

    #[test]
    fn image_subset_labels_counts() {
        let s = toy();
        assert_eq!(s.len, 3);
        assert_eq!(s.image(1), &[10, 10, 11, 11, 12, 12]);
        let sub = s.subset(&[2, 0, 2]);
        assert_eq!(sub.len, 3);
        assert_eq!(sub.leaves, vec![1, 0, 1]);
        assert_eq!(sub.image(0), s.image(2));
        assert_eq!(sub.image(1), s.image(0));
        assert_eq!(s.labels_at_level(0), vec![0, 1, 0]);
        assert_eq!(s.labels_at_level(1), vec![0, 2, 1]);
        assert_eq!(s.class_counts(0), vec![2, 1]);
        assert_eq!(s.class_counts(1), vec![1, 1, 1]);
        assert_eq!(s.indices_by_class(0), vec![vec![0, 2], vec![1]]);
        assert!(s.summary().contains("3 images of 3x1x2"));
    }

    #[test]
    fn mean_std() {
        let s = toy();
        let (m, sd) = s.channel_mean_std();
        // channel 0 values: 0, 10, 20 (each twice): mean 10, population std sqrt(200/3).
        assert!((m[0] - 10.0 / 255.0).abs() < 1e-6);
        assert!((m[2] - 12.0 / 255.0).abs() < 1e-6);
        assert!((sd[0] - (200.0f32 / 3.0).sqrt() / 255.0).abs() < 1e-6);
        assert!(s.rgb_mean_std().is_some());
        let empty = s.subset(&[]);
        assert!(empty.is_empty());
        assert_eq!(empty.channel_mean_std().0, vec![0.0; 3]);
    }

    #[test]
    fn new_validates() {
        let h = Arc::new(Hierarchy::two_level(&[1]).unwrap());
        let e = ImageSet::new(vec![0; 5], 3, 1, 2, vec![0], h.clone(), "bad").unwrap_err();
        assert!(e.to_string().starts_with("bad:"), "{e}");
        let e = ImageSet::new(vec![0; 6], 3, 1, 2, vec![1], h.clone(), "bad").unwrap_err();
        assert!(e.to_string().contains("leaf 1"), "{e}");
        assert!(ImageSet::new(vec![], 0, 1, 2, vec![], h, "bad").is_err());
    }
}
