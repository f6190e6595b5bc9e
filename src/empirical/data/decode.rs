//! Decoding indexed images into pixels: one image ([`decode_into`]), a whole selection in
//! parallel into an in-memory [`ImageSet`] ([`materialize`]), after checking that the pixels fit
//! the [`MemoryBudget`]; and what was done to the images on the way ([`DecodeStats`]: resized,
//! center-cropped, converted to RGB).
//!
//! Every image is decoded (format detected from the content), converted to 8-bit RGB (alpha
//! dropped, grayscale replicated), center-cropped to the largest square and resized to
//! `size` x `size` with a triangle (bilinear) filter unless it already has that size. The result
//! does not depend on the number of threads.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use image::imageops::{self, FilterType};
use image::ColorType;
use rayon::prelude::*;

use super::index::ImageIndex;
use super::{DataError, ImageSet};

/// How much memory the pixels of a load may take.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryBudget {
    /// Bytes.
    pub bytes: u64,
    /// Where the number comes from, for messages.
    pub source: String,
}

impl MemoryBudget {
    /// `gb` gigabytes (10^9 bytes) if `gb > 0`, set by `field`; otherwise the memory the
    /// system reports as available ([`MemoryBudget::available`]).
    pub fn from_gb(gb: f64, field: &str) -> Self {
        if gb > 0.0 {
            MemoryBudget {
                bytes: (gb * 1e9) as u64,
                source: format!("{field} = {gb}"),
            }
        } else {
            Self::available()
        }
    }

    /// The memory available to new allocations: `MemAvailable` of `/proc/meminfo` (Linux);
    /// elsewhere no limit is known and only the allocator can refuse.
    pub fn available() -> Self {
        let from_meminfo = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_mem_available(&t));
        match from_meminfo {
            Some(bytes) => MemoryBudget {
                bytes,
                source: "MemAvailable in /proc/meminfo".into(),
            },
            None => MemoryBudget {
                bytes: u64::MAX,
                source: "no limit known on this system".into(),
            },
        }
    }

    /// Errors (naming `size_field`) unless `images` images of 3 x `side` x `side` bytes fit.
    pub fn check(
        &self,
        what: &str,
        images: usize,
        side: u32,
        size_field: &str,
    ) -> Result<(), DataError> {
        let needed = (images as u128).saturating_mul(3 * u128::from(side) * u128::from(side));
        if needed > u128::from(self.bytes) || needed > isize::MAX as u128 {
            return Err(self.too_large(what, images, side, size_field, needed));
        }
        Ok(())
    }

    fn too_large(
        &self,
        what: &str,
        images: usize,
        side: u32,
        size_field: &str,
        needed: u128,
    ) -> DataError {
        DataError::TooLarge {
            what: what.into(),
            size_field: size_field.into(),
            images: images as u64,
            side,
            needed,
            budget: self.bytes,
            budget_source: self.source.clone(),
        }
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The most decoding threads started per core, whatever `data.decode_threads` asks.
pub const MAX_THREADS_PER_CORE: usize = 4;

/// How to decode: the image side, the number of threads and the memory budget.
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// Side of the square images after resizing.
    pub size: u32,
    /// Decoding threads; 0 = one per core.
    pub threads: usize,
    /// The most memory the pixels may take.
    pub budget: MemoryBudget,
    /// The setting that chose `size`, named in errors (`data.size`, `--size`).
    pub size_field: String,
    /// Use JPEG files whose data ends early (decoded partly, counted in
    /// [`DecodeStats::truncated`]) instead of refusing them (`data.allow_truncated`).
    pub allow_truncated: bool,
}

impl DecodeOptions {
    /// `size`-pixel images, one thread per core, the available memory as budget.
    pub fn new(size: u32, size_field: &str) -> Self {
        DecodeOptions {
            size,
            threads: 0,
            budget: MemoryBudget::available(),
            size_field: size_field.into(),
            allow_truncated: false,
        }
    }

    /// The threads a pool of these options starts: `threads` (0: one per core), at most
    /// [`MAX_THREADS_PER_CORE`] per core (more only wait for the disk and cost memory).
    pub fn pool_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let most = cores.saturating_mul(MAX_THREADS_PER_CORE);
        if self.threads == 0 {
            cores
        } else {
            self.threads.min(most)
        }
    }

    /// A thread pool with [`DecodeOptions::pool_threads`] threads.
    pub(crate) fn pool(&self) -> Result<rayon::ThreadPool, DataError> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.pool_threads())
            .build()
            .map_err(|e| DataError::Invalid {
                context: "decoding threads".into(),
                message: e.to_string(),
            })
    }
}

/// The size and colour type of an image as stored in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Colour type of the file's pixels.
    pub color: ColorType,
    /// A JPEG file whose data ends before its image does (decoded partly).
    pub truncated: bool,
}

/// Counts of what decoding did to a set of images.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodeStats {
    /// Images decoded.
    pub images: usize,
    /// Images whose (cropped) side differed from the target size.
    pub resized: usize,
    /// Images that were not square and were center-cropped.
    pub cropped: usize,
    /// Images by colour type other than 8-bit RGB (converted to it).
    pub converted: BTreeMap<String, usize>,
    /// Images by stored size (width, height).
    pub sizes: BTreeMap<(u32, u32), usize>,
    /// JPEG files whose data ends before the image does, decoded partly (only with
    /// [`DecodeOptions::allow_truncated`]).
    pub truncated: usize,
}

impl DecodeStats {
    /// Counts one image decoded to `side` x `side`.
    pub fn add(&mut self, info: ImageInfo, side: u32) {
        self.images += 1;
        if info.width != info.height {
            self.cropped += 1;
        }
        if info.width.min(info.height) != side {
            self.resized += 1;
        }
        if info.color != ColorType::Rgb8 {
            *self.converted.entry(color_name(info.color)).or_default() += 1;
        }
        *self.sizes.entry((info.width, info.height)).or_default() += 1;
        if info.truncated {
            self.truncated += 1;
        }
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &DecodeStats) {
        self.images += other.images;
        self.resized += other.resized;
        self.cropped += other.cropped;
        self.truncated += other.truncated;
        for (k, v) in &other.converted {
            *self.converted.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.sizes {
            *self.sizes.entry(*k).or_default() += v;
        }
    }

    /// Plain sentences saying what was done to the images (to `side` x `side` RGB): stored
    /// sizes (the most common ones), resizing, cropping and colour conversion.
    pub fn describe(&self, side: u32) -> Vec<String> {
        if self.images == 0 {
            return vec!["no images decoded".into()];
        }
        let mut sizes: Vec<(&(u32, u32), &usize)> = self.sizes.iter().collect();
        sizes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = sizes
            .iter()
            .take(3)
            .map(|((w, h), n)| format!("{w}x{h} ({n})"))
            .collect();
        let more = if sizes.len() > 3 {
            format!(" and {} other sizes", sizes.len() - 3)
        } else {
            String::new()
        };
        let mut out = vec![format!(
            "{} images stored as {}{more}",
            self.images,
            shown.join(", ")
        )];
        if self.resized > 0 {
            out.push(format!(
                "{} of them resized to {side}x{side} (bilinear)",
                self.resized
            ));
        }
        if self.cropped > 0 {
            out.push(format!(
                "{} of them not square: center-cropped to the largest square first",
                self.cropped
            ));
        }
        for (color, n) in &self.converted {
            out.push(format!("{n} of them converted from {color} to 8-bit RGB"));
        }
        if self.truncated > 0 {
            out.push(format!(
                "{} of them truncated JPEG files, only partly decoded",
                self.truncated
            ));
        }
        if self.resized == 0 && self.cropped == 0 && self.converted.is_empty() {
            out.push(format!(
                "all already {side}x{side} 8-bit RGB: pixels kept as they are"
            ));
        }
        out
    }
}

/// A readable name of a colour type ("grayscale (L8)", "RGBA (Rgba8)", ...).
fn color_name(c: ColorType) -> String {
    let kind = match c {
        ColorType::L8 | ColorType::L16 => "grayscale",
        ColorType::La8 | ColorType::La16 => "grayscale with alpha",
        ColorType::Rgb8 | ColorType::Rgb16 | ColorType::Rgb32F => "RGB",
        ColorType::Rgba8 | ColorType::Rgba16 | ColorType::Rgba32F => "RGBA",
        _ => "another colour type",
    };
    format!("{kind} ({c:?})")
}

/// Decodes the image file at `path` to `size` x `size` RGB and writes its pixels, channel-major
/// (CHW), into `out` (which must hold `3 * size * size` bytes). `listed_in` names the
/// annotation file that listed the image (a missing file is then a [`DataError::MissingImage`])
/// and `entry` the image as written there.
pub fn decode_into(
    path: &Path,
    size: u32,
    out: &mut [u8],
    listed: Option<(&Path, &str)>,
) -> Result<ImageInfo, DataError> {
    let undecodable = |message: String| DataError::UndecodableImage {
        path: path.to_path_buf(),
        message,
    };
    let open_err = |e: std::io::Error| match (e.kind(), listed) {
        (std::io::ErrorKind::NotFound, Some((listed_in, entry))) => DataError::MissingImage {
            path: path.to_path_buf(),
            entry: entry.to_string(),
            listed_in: listed_in.to_path_buf(),
        },
        _ => DataError::io(path, e),
    };
    let bytes = std::fs::read(path).map_err(open_err)?;
    let reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let truncated = reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_is_complete(&bytes);
    let img = reader.decode().map_err(|e| undecodable(e.to_string()))?;
    let info = ImageInfo {
        width: img.width(),
        height: img.height(),
        color: img.color(),
        truncated,
    };
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    if w == 0 || h == 0 {
        return Err(undecodable(format!("image is {w}x{h}")));
    }
    let side = w.min(h);
    let square = if w == h {
        rgb
    } else {
        imageops::crop_imm(&rgb, (w - side) / 2, (h - side) / 2, side, side).to_image()
    };
    let resized = if side == size {
        square
    } else {
        imageops::resize(&square, size, size, FilterType::Triangle)
    };
    let raw = resized.as_raw();
    let hw = (size as usize) * (size as usize);
    assert_eq!(out.len(), 3 * hw, "decode_into: output buffer size");
    for (ch, plane) in out.chunks_exact_mut(hw).enumerate() {
        for (dst, src) in plane.iter_mut().zip(raw.iter().skip(ch).step_by(3)) {
            *dst = *src;
        }
    }
    Ok(info)
}

/// True unless the JPEG stream `b` ends before its end-of-image marker: the marker segments
/// are walked from the start (their lengths skipped, each scan's entropy-coded data read up to
/// the next marker), so an embedded thumbnail's markers do not count. A stream that does not
/// start like a JPEG is left to the decoder (true).
pub fn jpeg_is_complete(b: &[u8]) -> bool {
    if b.len() < 2 || b[0] != 0xFF || b[1] != 0xD8 {
        return true;
    }
    let mut i = 2;
    while i + 1 < b.len() {
        if b[i] != 0xFF || b[i + 1] == 0xFF {
            i += 1; // fill bytes, or stray bytes between segments
            continue;
        }
        let marker = b[i + 1];
        i += 2;
        match marker {
            0xD9 => return true,
            0x00 | 0x01 | 0xD0..=0xD8 => {}
            _ => {
                if i + 1 >= b.len() {
                    return false;
                }
                let len = usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
                if len < 2 {
                    return false;
                }
                i += len;
                if marker == 0xDA {
                    // Entropy-coded data: up to a marker other than a stuffed byte or a restart.
                    while i + 1 < b.len()
                        && !(b[i] == 0xFF && b[i + 1] != 0 && !(0xD0..=0xD7).contains(&b[i + 1]))
                    {
                        i += 1;
                    }
                }
            }
        }
    }
    false
}

/// Decodes image `i` of `index` into `out` (see [`decode_into`]); a truncated JPEG file is an
/// error unless `allow_truncated`.
pub(crate) fn decode_indexed(
    index: &ImageIndex,
    i: usize,
    size: u32,
    out: &mut [u8],
    allow_truncated: bool,
) -> Result<ImageInfo, DataError> {
    let rel = index.rel_path(i);
    let listed = index.listed_in().map(|l| (l, rel.as_str()));
    let path = index.root().join(&rel);
    let info = decode_into(&path, size, out, listed)?;
    if info.truncated && !allow_truncated {
        return Err(DataError::TruncatedImage {
            path,
            allow_field: "data.allow_truncated".into(),
        });
    }
    Ok(info)
}

/// Decoding state of one worker: counts, and the lowest-numbered failure.
#[derive(Default)]
struct Acc {
    stats: DecodeStats,
    error: Option<(usize, DataError)>,
}

impl Acc {
    fn merge(mut self, other: Acc) -> Acc {
        self.stats.merge(&other.stats);
        self.error = match (self.error, other.error) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        self
    }
}

/// Decodes every image of `index`, in parallel, into one in-memory [`ImageSet`] (image `i` of
/// the set is image `i` of the index). `what` names the split in messages and becomes the
/// set's `source`. Checks the budget
/// before allocating; the first image (in index order) that fails is the error returned,
/// whatever the number of threads.
pub fn materialize(
    index: &ImageIndex,
    opts: &DecodeOptions,
    what: &str,
) -> Result<(ImageSet, DecodeStats), DataError> {
    let side = opts.size;
    if side == 0 {
        return Err(DataError::Invalid {
            context: opts.size_field.clone(),
            message: "image size must be at least 1".into(),
        });
    }
    let n = index.len();
    opts.budget.check(what, n, side, &opts.size_field)?;
    let per = 3 * side as usize * side as usize;
    let total = n * per;
    let mut pixels: Vec<u8> = Vec::new();
    pixels.try_reserve_exact(total).map_err(|_| {
        MemoryBudget {
            bytes: 0,
            source: "the allocator refused".into(),
        }
        .too_large(what, n, side, &opts.size_field, total as u128)
    })?;
    pixels.resize(total, 0);
    let first_error = AtomicUsize::new(usize::MAX);
    let acc = opts.pool()?.install(|| {
        pixels
            .par_chunks_mut(per)
            .enumerate()
            .fold(Acc::default, |mut acc, (i, out)| {
                // Images after a failed one are skipped; those before it are still decoded,
                // so the error returned is that of the first failing image.
                if i > first_error.load(Ordering::Relaxed) {
                    return acc;
                }
                match decode_indexed(index, i, side, out, opts.allow_truncated) {
                    Ok(info) => acc.stats.add(info, side),
                    Err(e) => {
                        first_error.fetch_min(i, Ordering::Relaxed);
                        acc = acc.merge(Acc {
                            stats: DecodeStats::default(),
                            error: Some((i, e)),
                        });
                    }
                }
                acc
            })
            .reduce(Acc::default, Acc::merge)
    });
    if let Some((_, e)) = acc.error {
        return Err(e);
    }
    let set = ImageSet::new(
        pixels,
        3,
        side as usize,
        side as usize,
        index.leaves(),
        Arc::clone(index.hierarchy()),
        what,
    )?;
    Ok((set, acc.stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_parsing() {
        let t = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_mem_available(t), Some(20_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn budget_check_names_the_field() {
        let b = MemoryBudget {
            bytes: 1_000_000,
            source: "test".into(),
        };
        b.check("train", 100, 32, "data.size").unwrap();
        let e = b.check("train", 1000, 32, "data.size").unwrap_err();
        assert!(matches!(e, DataError::TooLarge { .. }));
        assert!(e.to_string().contains("data.size"), "{e}");
        // Sizes whose byte count overflows usize are rejected, not wrapped.
        let huge = MemoryBudget {
            bytes: u64::MAX,
            source: "none".into(),
        };
        assert!(huge.check("x", usize::MAX, u32::MAX, "--size").is_err());
    }

    /// A JPEG cut inside its scan data decodes without an error from the decoder, but is
    /// found truncated: refused by default, counted and described when allowed.
    #[test]
    fn truncated_jpeg_is_found_and_refused_unless_allowed() {
        use crate::empirical::data::index::IndexBuilder;
        use crate::hierarchy::Hierarchy;
        let t = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x ^ y) * 3) as u8])
        });
        img.save(t.path().join("whole.jpg")).unwrap();
        let bytes = std::fs::read(t.path().join("whole.jpg")).unwrap();
        assert!(jpeg_is_complete(&bytes));
        let cut = &bytes[..bytes.len() * 2 / 3];
        assert!(!jpeg_is_complete(cut));
        std::fs::write(t.path().join("cut.jpg"), cut).unwrap();
        // Trailing bytes after the end marker are not a truncation.
        let mut padded = bytes.clone();
        padded.extend_from_slice(b"trailing");
        assert!(jpeg_is_complete(&padded));
        let mut out = vec![0u8; 3 * 16 * 16];
        let info = decode_into(&t.path().join("cut.jpg"), 16, &mut out, None).unwrap();
        assert!(info.truncated);
        let h = Arc::new(Hierarchy::two_level(&[1]).unwrap());
        let mut b = IndexBuilder::new(t.path(), None);
        b.push("whole.jpg", 0).unwrap();
        b.push("cut.jpg", 0).unwrap();
        let ix = b.finish(h).unwrap();
        let mut opts = DecodeOptions::new(16, "data.size");
        let e = materialize(&ix, &opts, "train").unwrap_err().to_string();
        assert!(
            e.contains("cut.jpg") && e.contains("truncated") && e.contains("data.allow_truncated"),
            "{e}"
        );
        opts.allow_truncated = true;
        let (set, stats) = materialize(&ix, &opts, "train").unwrap();
        assert_eq!((set.len, stats.truncated), (2, 1));
        assert!(
            stats
                .describe(16)
                .join("; ")
                .contains("1 of them truncated JPEG files, only partly decoded"),
            "{:?}",
            stats.describe(16)
        );
    }

    #[test]
    fn decoding_threads_are_capped_per_core() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let opts = |threads| DecodeOptions {
            threads,
            ..DecodeOptions::new(8, "data.size")
        };
        assert_eq!(opts(0).pool_threads(), cores);
        assert_eq!(opts(1).pool_threads(), 1);
        assert_eq!(opts(100_000).pool_threads(), cores * MAX_THREADS_PER_CORE);
        assert_eq!(
            opts(100_000).pool().unwrap().current_num_threads(),
            cores * MAX_THREADS_PER_CORE
        );
    }

    #[test]
    fn stats_describe_what_was_done() {
        let mut s = DecodeStats::default();
        let gray = ImageInfo {
            width: 28,
            height: 28,
            color: ColorType::L8,
            truncated: false,
        };
        for _ in 0..3 {
            s.add(gray, 32);
        }
        let text = s.describe(32).join("; ");
        assert!(text.contains("3 images stored as 28x28 (3)"), "{text}");
        assert!(text.contains("3 of them resized to 32x32"), "{text}");
        assert!(
            text.contains("converted from grayscale (L8) to 8-bit RGB"),
            "{text}"
        );
        let mut same = DecodeStats::default();
        same.add(
            ImageInfo {
                width: 8,
                height: 8,
                color: ColorType::Rgb8,
                truncated: false,
            },
            8,
        );
        assert!(same.describe(8).join(" ").contains("kept as they are"));
        let mut merged = s.clone();
        merged.merge(&same);
        assert_eq!(merged.images, 4);
        assert_eq!(merged.sizes.len(), 2);
    }
}
