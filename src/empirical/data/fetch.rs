//! [`BatchFetcher`]: batches of decoded images from an [`ImageIndex`] too large to hold decoded
//! in memory, with a least-recently-used cache bounded in bytes and several decoding threads.
//!
//! A batch's images that are in the cache are copied from it; the others are decoded in
//! parallel and enter the cache, evicting the least recently used images while the cache holds
//! more than its byte budget. Pixels are the same as [`super::decode::materialize`]'s.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rayon::prelude::*;

use super::decode::{decode_indexed, DecodeOptions};
use super::index::ImageIndex;
use super::DataError;

/// Cache counters of a [`BatchFetcher`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Images served from the cache.
    pub hits: u64,
    /// Images decoded.
    pub misses: u64,
    /// Images evicted.
    pub evictions: u64,
    /// Images held now.
    pub cached: usize,
    /// Bytes of pixels held now.
    pub cached_bytes: usize,
}

/// Decodes batches of images on demand, keeping recently used ones in a bounded cache.
pub struct BatchFetcher {
    index: Arc<ImageIndex>,
    size: u32,
    allow_truncated: bool,
    pool: rayon::ThreadPool,
    capacity: usize,
    /// image -> (pixels, last use)
    cache: HashMap<usize, (Box<[u8]>, u64)>,
    /// last use -> image, for finding the least recently used
    by_use: BTreeMap<u64, usize>,
    tick: u64,
    stats: CacheStats,
}

impl BatchFetcher {
    /// A fetcher of `opts.size`-pixel images of `index` whose cache holds at most
    /// `cache_bytes` bytes of pixels (so `cache_bytes / (3 * size * size)` images; 0 disables
    /// the cache). Decodes with `opts.threads` threads; the cache must fit `opts.budget`.
    pub fn new(
        index: Arc<ImageIndex>,
        opts: &DecodeOptions,
        cache_bytes: u64,
    ) -> Result<Self, DataError> {
        if opts.size == 0 {
            return Err(DataError::Invalid {
                context: opts.size_field.clone(),
                message: "image size must be at least 1".into(),
            });
        }
        if cache_bytes > opts.budget.bytes {
            return Err(DataError::Invalid {
                context: "image cache".into(),
                message: format!(
                    "a cache of {cache_bytes} bytes is more than the memory budget of {} bytes ({})",
                    opts.budget.bytes, opts.budget.source
                ),
            });
        }
        let per = 3 * u64::from(opts.size) * u64::from(opts.size);
        Ok(BatchFetcher {
            index,
            size: opts.size,
            allow_truncated: opts.allow_truncated,
            pool: opts.pool()?,
            capacity: usize::try_from(cache_bytes / per).unwrap_or(usize::MAX),
            cache: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
            stats: CacheStats::default(),
        })
    }

    /// Bytes of one decoded image.
    pub fn image_bytes(&self) -> usize {
        3 * self.size as usize * self.size as usize
    }

    /// Most images the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The cache counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// The pixels (CHW, one image after the other) and leaves of images `ids` of the index, in
    /// that order (repeats allowed). Errors name the first image (in `ids` order) that cannot be
    /// decoded, or an id out of range.
    pub fn fetch(&mut self, ids: &[usize]) -> Result<(Vec<u8>, Vec<usize>), DataError> {
        if let Some(&bad) = ids.iter().find(|&&i| i >= self.index.len()) {
            return Err(DataError::Invalid {
                context: "batch fetcher".into(),
                message: format!("image {bad} out of range ({} images)", self.index.len()),
            });
        }
        let per = self.image_bytes();
        let mut missing: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|i| !self.cache.contains_key(i))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let (index, size, allow) = (&self.index, self.size, self.allow_truncated);
        let decoded: Vec<Result<Box<[u8]>, DataError>> = self.pool.install(|| {
            missing
                .par_iter()
                .map(|&i| {
                    let mut buf = vec![0u8; per];
                    decode_indexed(index, i, size, &mut buf, allow)?;
                    Ok(buf.into_boxed_slice())
                })
                .collect()
        });
        let mut fresh: HashMap<usize, Box<[u8]>> = HashMap::with_capacity(missing.len());
        let mut first_error: Option<(usize, DataError)> = None;
        for (&i, r) in missing.iter().zip(decoded) {
            match r {
                Ok(px) => {
                    fresh.insert(i, px);
                }
                Err(e) => {
                    let pos = ids.iter().position(|&x| x == i).unwrap_or(usize::MAX);
                    if first_error.as_ref().is_none_or(|(p, _)| pos < *p) {
                        first_error = Some((pos, e));
                    }
                }
            }
        }
        if let Some((_, e)) = first_error {
            return Err(e);
        }
        let mut pixels = Vec::with_capacity(ids.len() * per);
        let mut leaves = Vec::with_capacity(ids.len());
        for &i in ids {
            let px: &[u8] = match fresh.get(&i) {
                Some(px) => px,
                None => {
                    self.stats.hits += 1;
                    &self.cache[&i].0
                }
            };
            pixels.extend_from_slice(px);
            leaves.push(self.index.leaf(i));
        }
        self.stats.misses += missing.len() as u64;
        // Update the cache in batch order (deterministic), after the batch is assembled so
        // that no image of the batch is evicted before it is copied.
        for &i in ids {
            match fresh.remove(&i) {
                Some(px) => self.insert(i, px),
                None => self.touch(i),
            }
        }
        Ok((pixels, leaves))
    }

    /// Marks image `i` (if cached) as just used.
    fn touch(&mut self, i: usize) {
        self.tick += 1;
        if let Some(entry) = self.cache.get_mut(&i) {
            self.by_use.remove(&entry.1);
            entry.1 = self.tick;
            self.by_use.insert(self.tick, i);
        }
    }

    /// Caches image `i`, evicting the least recently used images beyond the capacity.
    fn insert(&mut self, i: usize, px: Box<[u8]>) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        self.by_use.insert(self.tick, i);
        self.cache.insert(i, (px, self.tick));
        while self.cache.len() > self.capacity {
            let Some((_, old)) = self.by_use.pop_first() else {
                break;
            };
            self.cache.remove(&old);
            self.stats.evictions += 1;
        }
        self.stats.cached = self.cache.len();
        self.stats.cached_bytes = self.cache.len() * self.image_bytes();
    }
}
