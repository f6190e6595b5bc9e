//! Seeded data augmentation and batching into normalised `f32` tensors.
//!
//! [`Augment`] is the standard CIFAR recipe: a random crop of the image padded with `pad` zero
//! (black) pixels on every side, back to the original size, then a random horizontal flip with
//! probability 1/2. The random numbers come from the caller's [`ChaCha8Rng`], drawn per image in
//! a fixed order (crop row offset, crop column offset, flip; a draw is skipped when `pad == 0` or
//! `flip` is off), so a batch is a deterministic function of the seed and the call sequence.
//!
//! [`batch_f32`] gathers images into one NCHW buffer, scaling bytes to [0, 1] and normalising
//! each channel as `(x - mean[c]) / std[c]`; padding pixels are 0 before normalisation, i.e.
//! `-mean[c] / std[c]` after, as in torchvision's `RandomCrop(padding=p)` + `Normalize`.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::ImageSet;

/// Random crop with zero padding and random horizontal flip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Zero padding on each side before the random crop back to the original size (0 = no crop).
    #[serde(default)]
    pub pad: usize,
    /// Mirror left-right with probability 1/2.
    #[serde(default)]
    pub flip: bool,
}

/// The random choices for one image: crop offsets into the padded image (each in
/// `0..=2 * pad`; `pad` means no shift) and whether to mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AugParams {
    /// Row offset of the crop in the padded image.
    pub dy: usize,
    /// Column offset of the crop in the padded image.
    pub dx: usize,
    /// Mirror left-right after cropping.
    pub flip: bool,
}

impl Augment {
    /// No augmentation.
    pub fn none() -> Self {
        Self::default()
    }

    /// The usual CIFAR augmentation: pad 4, random flip.
    pub fn cifar() -> Self {
        Self { pad: 4, flip: true }
    }

    /// True when this augmentation leaves every image unchanged.
    pub fn is_identity(&self) -> bool {
        self.pad == 0 && !self.flip
    }

    /// The parameters that leave an image unchanged under this augmentation.
    pub fn identity_params(&self) -> AugParams {
        AugParams {
            dy: self.pad,
            dx: self.pad,
            flip: false,
        }
    }

    /// Draws the parameters for one image (see the module doc for the order of draws).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> AugParams {
        let (dy, dx) = if self.pad > 0 {
            (
                rng.gen_range(0..=2 * self.pad),
                rng.gen_range(0..=2 * self.pad),
            )
        } else {
            (0, 0)
        };
        let flip = self.flip && rng.gen_bool(0.5);
        AugParams { dy, dx, flip }
    }

    /// Applies `p` to one CHW image of `channels x height x width` bytes, returning the new
    /// image (same shape). Panics if `img` has the wrong length.
    pub fn apply_u8(
        &self,
        img: &[u8],
        channels: usize,
        height: usize,
        width: usize,
        p: AugParams,
    ) -> Vec<u8> {
        assert_eq!(img.len(), channels * height * width, "image size");
        let mut out = vec![0u8; img.len()];
        for_each_source(self.pad, height, width, p, |y, x, src| {
            if let Some(s) = src {
                for c in 0..channels {
                    out[(c * height + y) * width + x] = img[(c * height) * width + s];
                }
            }
        });
        out
    }
}

/// Calls `f(y, x, source)` for every output pixel, where `source` is the offset `sy * width +
/// sx` of the input pixel it copies, or `None` for padding.
fn for_each_source(
    pad: usize,
    height: usize,
    width: usize,
    p: AugParams,
    mut f: impl FnMut(usize, usize, Option<usize>),
) {
    for y in 0..height {
        let sy = (y + p.dy).checked_sub(pad).filter(|&sy| sy < height);
        for x in 0..width {
            let xc = if p.flip { width - 1 - x } else { x };
            let sx = (xc + p.dx).checked_sub(pad).filter(|&sx| sx < width);
            let src = match (sy, sx) {
                (Some(sy), Some(sx)) => Some(sy * width + sx),
                _ => None,
            };
            f(y, x, src);
        }
    }
}

/// The images `idx` of `set` as one NCHW `f32` buffer (`idx.len() * channels * height * width`
/// values), scaled to [0, 1] and normalised per channel with `mean` and `std`, after the
/// augmentation when `aug` is given (one draw per image, in `idx` order).
///
/// Panics if `set.channels != 3` (every loader of this module gives RGB) or an index is out of
/// range.
pub fn batch_f32(
    set: &ImageSet,
    idx: &[usize],
    mean: [f32; 3],
    std: [f32; 3],
    aug: Option<(&Augment, &mut ChaCha8Rng)>,
) -> Vec<f32> {
    assert_eq!(
        set.channels, 3,
        "batch_f32 needs 3-channel images ({} has {})",
        set.source, set.channels
    );
    let (c, h, w) = (set.channels, set.height, set.width);
    let per = c * h * w;
    // x / 255 normalised = x * scale[c] + shift[c].
    let scale: Vec<f32> = std.iter().map(|s| 1.0 / (255.0 * s)).collect();
    let shift: Vec<f32> = mean.iter().zip(&std).map(|(m, s)| -m / s).collect();
    let mut out = vec![0f32; idx.len() * per];
    let mut aug = aug;
    for (b, &i) in idx.iter().enumerate() {
        let img = set.image(i);
        let dst = &mut out[b * per..(b + 1) * per];
        match aug.as_mut() {
            Some((a, rng)) if !a.is_identity() => {
                let p = a.sample(&mut **rng);
                for_each_source(a.pad, h, w, p, |y, x, src| {
                    for ch in 0..c {
                        let v = src.map_or(0.0, |s| f32::from(img[ch * h * w + s]));
                        dst[(ch * h + y) * w + x] = v * scale[ch] + shift[ch];
                    }
                });
            }
            _ => {
                for (ch, (d, s)) in dst
                    .chunks_exact_mut(h * w)
                    .zip(img.chunks_exact(h * w))
                    .enumerate()
                {
                    for (d, &s) in d.iter_mut().zip(s) {
                        *d = f32::from(s) * scale[ch] + shift[ch];
                    }
                }
            }
        }
    }
    out
}

/// The indices `0..n` shuffled and cut into batches of `batch_size` (the last one shorter unless
/// `drop_last`). Panics if `batch_size == 0`.
pub fn shuffled_batches<R: Rng + ?Sized>(
    n: usize,
    batch_size: usize,
    drop_last: bool,
    rng: &mut R,
) -> Vec<Vec<usize>> {
    assert!(batch_size > 0, "batch_size must be positive");
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
        .chunks(batch_size)
        .filter(|b| !drop_last || b.len() == batch_size)
        .map(<[usize]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hierarchy::Hierarchy;
    use rand::SeedableRng;
    use std::sync::Arc;

    /// `n` RGB images of 4x5; byte = 100 * c + 10 * y + x + image index.
    fn set(n: usize) -> ImageSet {
        let mut images = Vec::new();
        for i in 0..n {
            for c in 0..3 {
                for y in 0..4 {
                    for x in 0..5 {
                        images.push((100 * c + 10 * y + x + i) as u8);
                    }
                }
            }
        }
        let h = Arc::new(Hierarchy::two_level(&[1]).unwrap());
        ImageSet::new(images, 3, 4, 5, vec![0; n], h, "synthetic").unwrap()
    }

    const MEAN: [f32; 3] = [0.5, 0.25, 0.1];
    const STD: [f32; 3] = [0.2, 0.5, 1.0];

    fn norm(v: u8, c: usize) -> f32 {
        (f32::from(v) / 255.0 - MEAN[c]) / STD[c]
    }

    #[test]
    fn plain_batch_is_normalised_pixels() {
        let s = set(3);
        let x = batch_f32(&s, &[2, 0], MEAN, STD, None);
        assert_eq!(x.len(), 2 * 60);
        for (k, &i) in [2usize, 0].iter().enumerate() {
            for (j, &v) in s.image(i).iter().enumerate() {
                let c = j / 20;
                assert!((x[k * 60 + j] - norm(v, c)).abs() < 1e-5);
            }
        }
        // An identity augmentation draws nothing and changes nothing.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let y = batch_f32(&s, &[2, 0], MEAN, STD, Some((&Augment::none(), &mut rng)));
        assert_eq!(x, y);
    }

    #[test]
    fn deterministic_per_seed() {
        let s = set(8);
        let idx: Vec<usize> = (0..8).collect();
        let aug = Augment { pad: 2, flip: true };
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let a = batch_f32(&s, &idx, MEAN, STD, Some((&aug, &mut rng)));
            let b = batch_f32(&s, &idx, MEAN, STD, Some((&aug, &mut rng)));
            (a, b)
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7).0, run(8).0);
        assert_ne!(run(7).0, run(7).1);
    }

    #[test]
    fn batch_matches_apply_u8() {
        let s = set(6);
        let aug = Augment { pad: 3, flip: true };
        let mut r1 = ChaCha8Rng::seed_from_u64(3);
        let mut r2 = ChaCha8Rng::seed_from_u64(3);
        let idx = [5, 1, 1, 4, 0, 2];
        let x = batch_f32(&s, &idx, MEAN, STD, Some((&aug, &mut r1)));
        for (k, &i) in idx.iter().enumerate() {
            let p = aug.sample(&mut r2);
            let img = aug.apply_u8(s.image(i), 3, 4, 5, p);
            for (j, &v) in img.iter().enumerate() {
                assert!((x[k * 60 + j] - norm(v, j / 20)).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn flip_is_a_mirror() {
        let s = set(1);
        let aug = Augment { pad: 0, flip: true };
        let p = AugParams {
            dy: 0,
            dx: 0,
            flip: true,
        };
        let out = aug.apply_u8(s.image(0), 3, 4, 5, p);
        for c in 0..3 {
            for y in 0..4 {
                for x in 0..5 {
                    assert_eq!(
                        out[(c * 4 + y) * 5 + x],
                        s.image(0)[(c * 4 + y) * 5 + (4 - x)]
                    );
                }
            }
        }
        // With random flips, every image comes out either unchanged or mirrored, and both occur.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let idx = vec![0; 32];
        let x = batch_f32(&s, &idx, MEAN, STD, Some((&aug, &mut rng)));
        let plain = batch_f32(&s, &[0], MEAN, STD, None);
        let mirror: Vec<f32> = out
            .iter()
            .enumerate()
            .map(|(j, &v)| norm(v, j / 20))
            .collect();
        let (mut n_plain, mut n_mirror) = (0, 0);
        for b in x.chunks_exact(60) {
            if b == plain.as_slice() {
                n_plain += 1;
            } else {
                assert!(b.iter().zip(&mirror).all(|(a, m)| (a - m).abs() < 1e-6));
                n_mirror += 1;
            }
        }
        assert!(n_plain > 0 && n_mirror > 0, "{n_plain} {n_mirror}");
    }

    #[test]
    fn crop_with_pad_shifts_content() {
        let s = set(1);
        let img = s.image(0);
        let aug = Augment {
            pad: 2,
            flip: false,
        };
        assert_eq!(aug.apply_u8(img, 3, 4, 5, aug.identity_params()), img);
        // Offset (0, 0) in the padded image: content moves down 2 and right 2.
        let out = aug.apply_u8(
            img,
            3,
            4,
            5,
            AugParams {
                dy: 0,
                dx: 0,
                flip: false,
            },
        );
        assert_eq!(out.len(), img.len());
        for c in 0..3 {
            for y in 0..4 {
                for x in 0..5 {
                    let want = if y < 2 || x < 2 {
                        0
                    } else {
                        img[(c * 4 + y - 2) * 5 + x - 2]
                    };
                    assert_eq!(out[(c * 4 + y) * 5 + x], want, "c{c} y{y} x{x}");
                }
            }
        }
        // Offset (4, 3): content moves up 2 and left 1.
        let out = aug.apply_u8(
            img,
            3,
            4,
            5,
            AugParams {
                dy: 4,
                dx: 3,
                flip: false,
            },
        );
        assert_eq!(out[0], img[2 * 5 + 1]);
        assert_eq!(out[2 * 5], 0);
        assert_eq!(out[4], 0);
        // In the float batch, padding becomes -mean/std.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let x = batch_f32(&s, &[0; 16], MEAN, STD, Some((&aug, &mut rng)));
        assert!(x.iter().any(|&v| (v - norm(0, 0)).abs() < 1e-6));
        // Offsets stay in range.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..200 {
            let p = aug.sample(&mut rng);
            assert!(p.dy <= 4 && p.dx <= 4 && !p.flip);
        }
    }

    #[test]
    fn batches_cover_all_indices() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let b = shuffled_batches(10, 4, false, &mut rng);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(shuffled_batches(10, 4, true, &mut rng).len(), 2);
        let mut r1 = ChaCha8Rng::seed_from_u64(4);
        let mut r2 = ChaCha8Rng::seed_from_u64(4);
        assert_eq!(
            shuffled_batches(50, 8, false, &mut r1),
            shuffled_batches(50, 8, false, &mut r2)
        );
    }
}
