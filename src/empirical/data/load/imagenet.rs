//! ImageNet-style image folders named by WordNet ids, shared by the WordNet ([`super::wordnet`])
//! and BREEDS ([`super::breeds`]) sources.
//!
//! ```text
//! imagenet/
//!   train/  n01440764/  n01440764_10026.JPEG ...
//!           n01443537/  ...
//!   val/    n01440764/  ILSVRC2012_val_00000293.JPEG ...
//! ```
//!
//! The test split is `val/` (or `test/` when there is no `val/`), sorted into the same
//! per-synset folders as `train/` (the raw ILSVRC validation set is one flat folder; the usual
//! preparation scripts sort it). Image files are those ending in `.png`, `.jpg` or `.jpeg` in any
//! case (ImageNet's are `.JPEG`); hidden entries and files directly inside a split are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::folder::{file_name, image_files, sorted_entries};
use crate::empirical::data::index::{ImageIndex, IndexBuilder};
use crate::empirical::data::DataError;
use crate::hierarchy::Hierarchy;

/// True for a WordNet noun id: `n` and 8 digits.
pub fn is_wnid(name: &str) -> bool {
    name.len() == 9 && name.starts_with('n') && name[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The image files of each synset folder of an ImageNet-style dataset.
#[derive(Clone, Debug)]
pub struct WnidFolders {
    /// The dataset folder.
    pub root: PathBuf,
    /// The test split's folder name (`val` or `test`).
    pub test_name: String,
    /// Folder name -> sorted image file names, for `train/`.
    pub train: BTreeMap<String, Vec<String>>,
    /// The same for the test split.
    pub test: BTreeMap<String, Vec<String>>,
}

/// Scans `root/train/*/` and `root/val/*/` (or `root/test/*/`). With `only`, just those synset
/// folders are listed (the others are not read). Every folder name must be a WordNet id.
pub fn scan(root: &Path, only: Option<&[String]>) -> Result<WnidFolders, DataError> {
    crate::empirical::data::require_dir(root)?;
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Err(DataError::MissingFile {
            dir: root.to_path_buf(),
            looked_for: vec!["train/".into()],
        });
    }
    let test_name = ["val", "test"]
        .into_iter()
        .find(|n| root.join(n).is_dir())
        .ok_or_else(|| DataError::MissingFile {
            dir: root.to_path_buf(),
            looked_for: vec!["val/".into(), "test/".into()],
        })?;
    Ok(WnidFolders {
        root: root.to_path_buf(),
        test_name: test_name.into(),
        train: scan_split(&train_dir, only)?,
        test: scan_split(&root.join(test_name), only)?,
    })
}

fn scan_split(
    split_dir: &Path,
    only: Option<&[String]>,
) -> Result<BTreeMap<String, Vec<String>>, DataError> {
    let mut out = BTreeMap::new();
    if let Some(only) = only {
        for wnid in only {
            let dir = split_dir.join(wnid);
            if dir.is_dir() {
                out.insert(wnid.clone(), image_files(&dir)?);
            }
        }
        return Ok(out);
    }
    for dir in sorted_entries(split_dir)? {
        let name = file_name(&dir);
        if name.starts_with('.') || !dir.is_dir() {
            continue;
        }
        if !is_wnid(&name) {
            return Err(DataError::Invalid {
                context: dir.display().to_string(),
                message: format!(
                    "folder `{name}` is not named by a WordNet id (`n` and 8 digits, like n01440764)"
                ),
            });
        }
        out.insert(name, image_files(&dir)?);
    }
    Ok(out)
}

impl WnidFolders {
    /// Train and test indices for the leaves `wnids` (leaf `i` is `wnids[i]`, a leaf of
    /// `hierarchy`). A leaf without training images is an error naming its folder and
    /// `described_in` (the file that made it a leaf); leaves without test images are returned.
    pub fn index(
        &self,
        wnids: &[String],
        hierarchy: &Arc<Hierarchy>,
        described_in: &Path,
    ) -> Result<(ImageIndex, ImageIndex, Vec<usize>), DataError> {
        let mut train = IndexBuilder::new(&self.root, None);
        let mut test = IndexBuilder::new(&self.root, None);
        let mut no_test = Vec::new();
        for (leaf, wnid) in wnids.iter().enumerate() {
            let files = self.train.get(wnid).filter(|f| !f.is_empty());
            let Some(files) = files else {
                return Err(DataError::LeafWithoutTrainImages {
                    path: self.root.join("train").join(wnid),
                    leaf: wnid.clone(),
                    hierarchy: described_in.to_path_buf(),
                });
            };
            for f in files {
                train.push(&format!("train/{wnid}/{f}"), leaf)?;
            }
            match self.test.get(wnid).filter(|f| !f.is_empty()) {
                Some(files) => {
                    for f in files {
                        test.push(&format!("{}/{wnid}/{f}", self.test_name), leaf)?;
                    }
                }
                None => no_test.push(leaf),
            }
        }
        if test.is_empty() {
            let split = self.root.join(&self.test_name);
            let loose = std::fs::read_dir(&split)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .filter(|e| e.path().is_file() && super::folder::is_image_name(&e.path()))
                        .count()
                })
                .unwrap_or(0);
            if loose > 0 {
                return Err(DataError::Invalid {
                    context: split.display().to_string(),
                    message: format!(
                        "{} directly in the split, not in class folders: sort them into \
                         {}/nXXXXXXXX/ by their labels first (ImageNet-1k's flat validation set \
                         comes so; its devkit or a valprep script gives each image's WordNet id)",
                        crate::report::count(loose, "image lies", "images lie"),
                        self.test_name
                    ),
                });
            }
            return Err(DataError::EmptySplit { path: split });
        }
        Ok((
            train.finish(Arc::clone(hierarchy))?,
            test.finish(Arc::clone(hierarchy))?,
            no_test,
        ))
    }

    /// A warning naming the leaves without test images, if any.
    pub fn no_test_warning(&self, no_test: &[usize], wnids: &[String]) -> Option<String> {
        let first = *no_test.first()?;
        Some(format!(
            "{}: {} of {} leaves have no test images (first: {})",
            self.root.join(&self.test_name).display(),
            no_test.len(),
            wnids.len(),
            wnids[first]
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wnid_names() {
        assert!(is_wnid("n01440764"));
        assert!(!is_wnid("n0144076"));
        assert!(!is_wnid("x01440764"));
        assert!(!is_wnid("n0144076a"));
    }

    #[test]
    fn scan_rejects_other_folders_and_needs_both_splits() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("train/n00000001")).unwrap();
        let e = scan(t.path(), None).unwrap_err();
        assert!(e.to_string().contains("looked for val/, test/"), "{e}");
        std::fs::create_dir_all(t.path().join("val/n00000001")).unwrap();
        std::fs::create_dir_all(t.path().join("train/dogs")).unwrap();
        let e = scan(t.path(), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("`dogs` is not named by a WordNet id")
                && e.to_string().contains("train/dogs: folder")
                && !e.to_string().contains("line 0"),
            "{e}"
        );
        // ImageNet-1k's flat val/: said so, with what to do.
        let flat = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(flat.path().join("train/n00000001")).unwrap();
        std::fs::write(flat.path().join("train/n00000001/a.JPEG"), b"x").unwrap();
        std::fs::create_dir_all(flat.path().join("val")).unwrap();
        std::fs::write(flat.path().join("val/ILSVRC2012_val_00000001.JPEG"), b"x").unwrap();
        let f = scan(flat.path(), None).unwrap();
        let h = Arc::new(crate::hierarchy::Hierarchy::two_level(&[1]).unwrap());
        let e = f
            .index(&["n00000001".to_string()], &h, flat.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1 image lies directly in the split") && e.contains("val/nXXXXXXXX/"),
            "{e}"
        );
        // Only the folders asked for are read.
        let f = scan(t.path(), Some(&["n00000001".to_string()])).unwrap();
        assert_eq!(f.train.len(), 1);
        assert_eq!(f.test_name, "val");
    }
}
