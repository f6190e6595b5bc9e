//! [`ImageIndex`]: the images of one split as paths and leaf labels, without pixels, so that a
//! dataset of millions of images (iNaturalist 2021 has 2.7 M training images) is held in a
//! compact form and only the selected subset is decoded ([`super::decode`]).
//!
//! Paths are stored relative to the dataset root, split into a folder (stored once per distinct
//! folder) and a file name (stored once per image, all names in one byte buffer). Per image that
//! is the file name's bytes plus 12 bytes (its end offset, its folder and its leaf, `u32` each);
//! [`ImageIndex::heap_bytes`] counts it all. docs/data.md gives the bytes per image measured on a
//! generated index of 2.7 M iNaturalist-like entries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::DataError;
use crate::hierarchy::Hierarchy;

/// The images of one split: where each is (relative to a root folder) and its leaf class.
#[derive(Clone, Debug)]
pub struct ImageIndex {
    root: PathBuf,
    listed_in: Option<PathBuf>,
    dirs: Vec<Box<str>>,
    dir_of: Vec<u32>,
    name_end: Vec<u32>,
    names: Vec<u8>,
    leaves: Vec<u32>,
    hierarchy: Arc<Hierarchy>,
}

/// Builds an [`ImageIndex`] one image at a time.
#[derive(Debug)]
pub struct IndexBuilder {
    root: PathBuf,
    listed_in: Option<PathBuf>,
    dirs: Vec<Box<str>>,
    dir_ids: HashMap<Box<str>, u32>,
    dir_of: Vec<u32>,
    name_end: Vec<u32>,
    names: Vec<u8>,
    leaves: Vec<u32>,
}

impl IndexBuilder {
    /// An empty index of images under `root`. `listed_in` is the annotation file that lists them
    /// (named in errors about missing files), if any.
    pub fn new(root: &Path, listed_in: Option<&Path>) -> Self {
        IndexBuilder {
            root: root.to_path_buf(),
            listed_in: listed_in.map(Path::to_path_buf),
            dirs: Vec::new(),
            dir_ids: HashMap::new(),
            dir_of: Vec::new(),
            name_end: Vec::new(),
            names: Vec::new(),
            leaves: Vec::new(),
        }
    }

    /// Reserves room for `n` more images (about `name_bytes` bytes of file names each).
    pub fn reserve(&mut self, n: usize, name_bytes: usize) {
        self.dir_of.reserve(n);
        self.name_end.reserve(n);
        self.leaves.reserve(n);
        self.names.reserve(n.saturating_mul(name_bytes));
    }

    /// Adds the image at `rel_path` (relative to the root, `/`-separated) with leaf `leaf`.
    /// Errors if the file names of the index would pass 4 GiB (about 100 M images).
    pub fn push(&mut self, rel_path: &str, leaf: usize) -> Result<(), DataError> {
        let (dir, name) = match rel_path.rfind('/') {
            Some(i) => (&rel_path[..i], &rel_path[i + 1..]),
            None => ("", rel_path),
        };
        let dir_id = match self.dir_ids.get(dir) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(self.dirs.len()).map_err(|_| self.too_big())?;
                self.dirs.push(dir.into());
                self.dir_ids.insert(dir.into(), id);
                id
            }
        };
        self.names.extend_from_slice(name.as_bytes());
        let end = u32::try_from(self.names.len()).map_err(|_| self.too_big())?;
        let leaf = u32::try_from(leaf).map_err(|_| self.too_big())?;
        self.dir_of.push(dir_id);
        self.name_end.push(end);
        self.leaves.push(leaf);
        Ok(())
    }

    /// Number of images added so far.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// True when no image was added.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Sets the leaf of image `i` (for formats that give labels after the file names).
    ///
    /// # Panics
    /// If `i >= len()` or `leaf` does not fit in `u32`.
    pub fn set_leaf(&mut self, i: usize, leaf: usize) {
        self.leaves[i] = u32::try_from(leaf).expect("leaf index fits in u32");
    }

    fn too_big(&self) -> DataError {
        DataError::Invalid {
            context: self.root.display().to_string(),
            message: "more than 4 GiB of file names or 4 G images: too many for one index".into(),
        }
    }

    /// The finished index; every leaf must be a leaf of `hierarchy`.
    pub fn finish(self, hierarchy: Arc<Hierarchy>) -> Result<ImageIndex, DataError> {
        let n_leaves = hierarchy.num_leaves();
        if let Some(i) = self.leaves.iter().position(|&l| l as usize >= n_leaves) {
            return Err(DataError::Invalid {
                context: self.root.display().to_string(),
                message: format!(
                    "image {i} has leaf {}, but the hierarchy has {n_leaves} leaves",
                    self.leaves[i]
                ),
            });
        }
        let mut ix = ImageIndex {
            root: self.root,
            listed_in: self.listed_in,
            dirs: self.dirs,
            dir_of: self.dir_of,
            name_end: self.name_end,
            names: self.names,
            leaves: self.leaves,
            hierarchy,
        };
        ix.shrink();
        Ok(ix)
    }
}

impl ImageIndex {
    fn shrink(&mut self) {
        self.dirs.shrink_to_fit();
        self.dir_of.shrink_to_fit();
        self.name_end.shrink_to_fit();
        self.names.shrink_to_fit();
        self.leaves.shrink_to_fit();
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// True when the index holds no image.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The folder the relative paths start from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The annotation file that lists the images, if any.
    pub fn listed_in(&self) -> Option<&Path> {
        self.listed_in.as_deref()
    }

    /// The label tree.
    pub fn hierarchy(&self) -> &Arc<Hierarchy> {
        &self.hierarchy
    }

    /// Leaf class of image `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn leaf(&self, i: usize) -> usize {
        self.leaves[i] as usize
    }

    /// Leaf class of every image.
    pub fn leaves(&self) -> Vec<usize> {
        self.leaves.iter().map(|&l| l as usize).collect()
    }

    /// Path of image `i` relative to the root, `/`-separated.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn rel_path(&self, i: usize) -> String {
        let start = if i == 0 {
            0
        } else {
            self.name_end[i - 1] as usize
        };
        let name = String::from_utf8_lossy(&self.names[start..self.name_end[i] as usize]);
        let dir = &self.dirs[self.dir_of[i] as usize];
        if dir.is_empty() {
            name.into_owned()
        } else {
            format!("{dir}/{name}")
        }
    }

    /// Full path of image `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn path(&self, i: usize) -> PathBuf {
        self.root.join(self.rel_path(i))
    }

    /// Heap bytes held by the index (paths, offsets, folders, leaves; the shared hierarchy is
    /// not counted).
    pub fn heap_bytes(&self) -> usize {
        self.names.capacity()
            + 4 * (self.name_end.capacity() + self.dir_of.capacity() + self.leaves.capacity())
            + self.dirs.capacity() * std::mem::size_of::<Box<str>>()
            + self.dirs.iter().map(|d| d.len()).sum::<usize>()
    }

    /// Number of images of each leaf (length `num_leaves`).
    pub fn leaf_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.hierarchy.num_leaves()];
        for &l in &self.leaves {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Indices of the images of each leaf, ascending.
    pub fn indices_by_leaf(&self) -> Vec<Vec<usize>> {
        let mut by = vec![Vec::new(); self.hierarchy.num_leaves()];
        for (i, &l) in self.leaves.iter().enumerate() {
            by[l as usize].push(i);
        }
        by
    }

    /// A new index of the images `idx` (in that order), with leaves renumbered by `leaf_map`
    /// (old leaf -> new leaf of `hierarchy`). Images whose leaf maps to `None` must not be in
    /// `idx`.
    ///
    /// # Panics
    /// If an index is out of range or an image's leaf maps to `None`.
    pub fn subset(
        &self,
        idx: &[usize],
        leaf_map: &[Option<usize>],
        hierarchy: Arc<Hierarchy>,
    ) -> ImageIndex {
        let mut b = IndexBuilder::new(&self.root, self.listed_in.as_deref());
        for &i in idx {
            let leaf = leaf_map[self.leaf(i)].expect("subset: image of a dropped leaf");
            b.push(&self.rel_path(i), leaf)
                .expect("a subset of an index fits in an index");
        }
        b.finish(hierarchy)
            .expect("leaf_map maps into the new hierarchy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> ImageIndex {
        let h = Arc::new(Hierarchy::two_level(&[2, 1]).unwrap());
        let mut b = IndexBuilder::new(Path::new("/data"), None);
        b.push("train/a/1.jpg", 0).unwrap();
        b.push("train/a/2.jpg", 0).unwrap();
        b.push("train/b/3.jpg", 2).unwrap();
        b.push("top.png", 1).unwrap();
        b.finish(h).unwrap()
    }

    #[test]
    fn paths_leaves_and_counts() {
        let ix = index();
        assert_eq!(ix.len(), 4);
        assert_eq!(ix.rel_path(0), "train/a/1.jpg");
        assert_eq!(ix.rel_path(2), "train/b/3.jpg");
        assert_eq!(ix.rel_path(3), "top.png");
        assert_eq!(ix.path(1), Path::new("/data/train/a/2.jpg"));
        assert_eq!(ix.leaves(), vec![0, 0, 2, 1]);
        assert_eq!(ix.leaf_counts(), vec![2, 1, 1]);
        assert_eq!(ix.indices_by_leaf(), vec![vec![0, 1], vec![3], vec![2]]);
        // 3 folders ("train/a", "train/b", ""), 4 names of 5+5+5+7 bytes.
        assert_eq!(ix.dirs.len(), 3);
        assert!(ix.heap_bytes() >= 22 + 4 * 12);
    }

    #[test]
    fn subset_renumbers_leaves() {
        let ix = index();
        let h = Arc::new(Hierarchy::two_level(&[1, 1]).unwrap());
        let s = ix.subset(&[2, 0], &[Some(0), None, Some(1)], h);
        assert_eq!(s.len(), 2);
        assert_eq!(s.rel_path(0), "train/b/3.jpg");
        assert_eq!(s.leaves(), vec![1, 0]);
    }

    #[test]
    fn finish_checks_leaves() {
        let h = Arc::new(Hierarchy::two_level(&[1]).unwrap());
        let mut b = IndexBuilder::new(Path::new("r"), None);
        b.push("x.png", 3).unwrap();
        let e = b.finish(h).unwrap_err();
        assert!(e.to_string().contains("leaf 3"), "{e}");
    }
}
