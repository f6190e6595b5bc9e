//! Users' own images in an iNaturalist-style folder tree, with a label hierarchy in a CSV file.
//!
//! # Format
//!
//! ```text
//! my_data/
//!   hierarchy.csv
//!   train/
//!     house_sparrow/   0001.jpg 0002.jpg ...
//!     tree_sparrow/    ...
//!     barn_owl/        ...
//!   test/
//!     house_sparrow/   ...
//!     ...
//! ```
//!
//! `hierarchy.csv` has a header row of level names, coarsest first, then one row per leaf
//! class giving its name at every level; the last column is the leaf name, which is also the name
//! of the leaf's image folder:
//!
//! ```text
//! # lines starting with '#' and blank lines are ignored
//! order,family,species
//! Passeriformes,Passeridae,house_sparrow
//! Passeriformes,Passeridae,tree_sparrow
//! Strigiformes,Tytonidae,barn_owl
//! ```
//!
//! Fields are trimmed and may be quoted (standard CSV). Leaf `i` of the [`Hierarchy`] is the
//! `i`-th row; classes of the upper levels are numbered in order of first appearance. A class name
//! that appears under two different parents, or a repeated leaf, is an error naming both CSV
//! lines and the leaf.
//!
//! # Leaf names that cannot be folder names
//!
//! A leaf name containing `/` or `\` (Fashion-MNIST's `T-shirt/top`), or one that is `.` or
//! `..`, cannot name a folder. Give such leaves their folder in an extra last column whose header
//! is `folder` (the one reserved column name; it is not a level):
//!
//! ```text
//! group,item,folder
//! tops,T-shirt/top,T-shirt_top
//! tops,Pullover,Pullover
//! ```
//!
//! An empty `folder` cell means "the leaf name". Folder names must be unique. Without the column,
//! such a leaf name is an error that names its line and suggests the column.
//!
//! Images are the files ending in `.png`, `.jpg` or `.jpeg` (any case) directly inside
//! `<split>/<leaf>/`; the format is detected from the content. Other files in a leaf folder, and
//! files or hidden (`.`-prefixed) entries directly inside a split folder, are ignored. Each image
//! is decoded in parallel, converted to 8-bit RGB (alpha dropped), center-cropped to a square
//! (the largest one) and resized to `size` x `size` with a triangle (bilinear) filter, unless it
//! is already that size ([`crate::empirical::data::decode`]; [`load_image_folder_report`] says what was done).
//! Images are ordered by leaf (CSV row order), then by file name, so loading is deterministic.
//! The pixels' memory is checked before anything is allocated.
//!
//! # Checks
//!
//! Errors (each naming the file or folder): `hierarchy.csv`, `train/` or `test/` missing; a
//! malformed CSV (ragged row, empty field, no rows, duplicate level name); a hierarchy that is
//! not a tree; a folder in `train/` or `test/` that is not a leaf of the CSV; a leaf with no
//! training images (no folder, or no image files in it); an image that cannot be decoded; a
//! split with no images at all; pixels that would not fit in memory. A leaf with no *test* images
//! is allowed and gives a warning ([`load_image_folder_with_warnings`] returns them;
//! [`load_image_folder`] prints them to stderr).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::empirical::data::decode::{decode_into, DecodeOptions, DecodeStats};
use crate::empirical::data::index::IndexBuilder;
use crate::empirical::data::indexed::IndexedSplits;
use crate::empirical::data::{DataError, Splits};
use crate::hierarchy::{Hierarchy, HierarchyError};

/// Name of the hierarchy file inside the dataset folder.
pub const HIERARCHY_FILE: &str = "hierarchy.csv";
/// Extensions (lower case) of the files read as images.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// Header of the optional last column of `hierarchy.csv` that gives each leaf's folder.
pub const FOLDER_COLUMN: &str = "folder";
/// The setting that sets the image size of this loader, named in errors.
const SIZE_FIELD: &str = "the image size (data.size, or --size of inspect)";

/// Loads `dir` (see the module doc), resizing every image to `size` x `size`. Warnings (leaves
/// with no test images) are printed to stderr.
pub fn load_image_folder(dir: &Path, size: u32) -> Result<Splits, DataError> {
    let (splits, warnings) = load_image_folder_with_warnings(dir, size)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(splits)
}

/// Like [`load_image_folder`], but returns the warnings instead of printing them.
pub fn load_image_folder_with_warnings(
    dir: &Path,
    size: u32,
) -> Result<(Splits, Vec<String>), DataError> {
    let r = load_image_folder_report(dir, &DecodeOptions::new(size, SIZE_FIELD))?;
    Ok((r.splits, r.warnings))
}

/// A loaded image folder and what loading it did.
#[derive(Clone, Debug)]
pub struct FolderLoad {
    /// The decoded splits.
    pub splits: Splits,
    /// Leaves without test images.
    pub warnings: Vec<String>,
    /// What decoding did to the training images (resized, cropped, converted).
    pub train_stats: DecodeStats,
    /// The same for the test images.
    pub test_stats: DecodeStats,
}

/// Loads `dir` with explicit decoding options, and says what decoding did to the images.
pub fn load_image_folder_report(dir: &Path, opts: &DecodeOptions) -> Result<FolderLoad, DataError> {
    if opts.size == 0 {
        return Err(DataError::Invalid {
            context: dir.display().to_string(),
            message: "image size must be at least 1".into(),
        });
    }
    let indexed = index_image_folder(dir)?;
    let (splits, train_stats, test_stats) = indexed.decode(opts)?;
    Ok(FolderLoad {
        splits,
        warnings: indexed.warnings,
        train_stats,
        test_stats,
    })
}

/// The image folder `dir` as indexed splits (paths and leaves; nothing decoded), with the
/// checks of the module doc.
pub fn index_image_folder(dir: &Path) -> Result<IndexedSplits, DataError> {
    crate::empirical::data::require_dir(dir)?;
    let csv_path = dir.join(HIERARCHY_FILE);
    if !csv_path.is_file() {
        return Err(DataError::MissingFile {
            dir: dir.to_path_buf(),
            looked_for: vec![HIERARCHY_FILE.into()],
        });
    }
    let (hierarchy, folders) = read_hierarchy_csv(&csv_path)?;
    let hierarchy = Arc::new(hierarchy);
    let leaf_names = &hierarchy.level(hierarchy.leaf_level()).class_names;
    let leaf_index: HashMap<&str, usize> = folders
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();

    let mut files = Vec::new();
    for split in ["train", "test"] {
        let split_dir = dir.join(split);
        if !split_dir.is_dir() {
            return Err(DataError::MissingFile {
                dir: dir.to_path_buf(),
                looked_for: vec![format!("{split}/")],
            });
        }
        files.push(scan_split(
            &split_dir,
            &leaf_index,
            folders.len(),
            &csv_path,
        )?);
    }
    let test_files = files.pop().expect("two splits");
    let train_files = files.pop().expect("two splits");

    let mut warnings = Vec::new();
    for (leaf, name) in leaf_names.iter().enumerate() {
        let folder = &folders[leaf];
        if train_files[leaf].is_empty() {
            return Err(DataError::LeafWithoutTrainImages {
                path: dir.join("train").join(folder),
                leaf: name.clone(),
                hierarchy: csv_path,
            });
        }
        if test_files[leaf].is_empty() {
            warnings.push(format!(
                "{}: leaf class `{name}` has no test images",
                dir.join("test").join(folder).display()
            ));
        }
    }
    let index = |split: &str, files: &[Vec<String>]| {
        let mut b = IndexBuilder::new(dir, None);
        for (leaf, names) in files.iter().enumerate() {
            for name in names {
                b.push(&format!("{split}/{}/{name}", folders[leaf]), leaf)?;
            }
        }
        if b.is_empty() {
            return Err(DataError::EmptySplit {
                path: dir.join(split),
            });
        }
        b.finish(Arc::clone(&hierarchy))
    };
    Ok(IndexedSplits {
        train: index("train", &train_files)?,
        test: index("test", &test_files)?,
        split_names: ("train".into(), "test".into()),
        description: format!("image folder {} with {}", dir.display(), HIERARCHY_FILE),
        notes: Vec::new(),
        warnings,
    })
}

/// Why `name` cannot be a folder name, if it cannot.
fn not_a_folder_name(name: &str) -> Option<&'static str> {
    if name.contains('/') || name.contains('\\') {
        Some("contains a slash")
    } else if name == "." || name == ".." {
        Some("is `.` or `..`")
    } else if name.contains('\0') {
        Some("contains a NUL character")
    } else {
        None
    }
}

/// Reads and validates `hierarchy.csv`: the hierarchy, and each leaf's folder name.
fn read_hierarchy_csv(path: &Path) -> Result<(Hierarchy, Vec<String>), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let csv_err = |e: csv::Error| DataError::Format {
        path: path.to_path_buf(),
        line: e.position().map_or(0, |p| p.line()),
        message: e.to_string(),
    };
    let format = |line: u64, message: String| DataError::Format {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let header = rdr.headers().map_err(csv_err)?.clone();
    if header.is_empty() || header.iter().all(str::is_empty) {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let header_line = header.position().map_or(1, |p| p.line());
    let mut level_names: Vec<String> = header.iter().map(str::to_string).collect();
    let has_folder =
        level_names.len() > 1 && level_names.last().is_some_and(|n| n == FOLDER_COLUMN);
    if has_folder {
        level_names.pop();
    }
    for (i, name) in level_names.iter().enumerate() {
        if name.is_empty() {
            return Err(format(
                header_line,
                format!("header column {} (a level name) is empty", i + 1),
            ));
        }
        if level_names[..i].contains(name) {
            return Err(format(
                header_line,
                format!("level name `{name}` appears twice in the header"),
            ));
        }
        if name == FOLDER_COLUMN {
            return Err(format(
                header_line,
                format!("`{FOLDER_COLUMN}` is reserved for the last column (each leaf's folder)"),
            ));
        }
    }
    let width = level_names.len() + usize::from(has_folder);
    let mut paths = Vec::new();
    let mut folders: Vec<String> = Vec::new();
    let mut lines: Vec<u64> = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(csv_err)?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != width {
            return Err(DataError::RaggedRow {
                path: path.to_path_buf(),
                line,
                expected: width,
                found: rec.len(),
            });
        }
        let names: Vec<String> = rec
            .iter()
            .take(level_names.len())
            .map(str::to_string)
            .collect();
        if let Some(i) = names.iter().position(String::is_empty) {
            return Err(format(
                line,
                format!("empty name in column {} (`{}`)", i + 1, level_names[i]),
            ));
        }
        let leaf = names.last().expect("at least one level").clone();
        let folder = match rec.get(level_names.len()).filter(|f| !f.is_empty()) {
            Some(f) => {
                if let Some(why) = not_a_folder_name(f) {
                    return Err(format(
                        line,
                        format!("leaf `{leaf}`: folder name `{f}` {why}"),
                    ));
                }
                f.to_string()
            }
            None => {
                if let Some(why) = not_a_folder_name(&leaf) {
                    return Err(format(
                        line,
                        format!(
                            "leaf `{leaf}` {why}, so it cannot be a folder name; add a last \
                             column `{FOLDER_COLUMN}` to the header and give this leaf's folder \
                             there (e.g. `{}`)",
                            leaf.replace(['/', '\\'], "_")
                        ),
                    ));
                }
                leaf.clone()
            }
        };
        paths.push(names);
        folders.push(folder);
        lines.push(line);
    }
    if paths.is_empty() {
        return Err(format(header_line, "no leaf rows after the header".into()));
    }
    let leaf_level = level_names.len() - 1;
    let h = Hierarchy::from_leaf_paths(&level_names, &paths).map_err(|e| match e {
        HierarchyError::ConflictingParent {
            level,
            class_name,
            first_path,
            second_path,
            ..
        } if level == leaf_level => format(
            lines[second_path],
            format!(
                "leaf `{class_name}` is already listed on line {}",
                lines[first_path]
            ),
        ),
        HierarchyError::ConflictingParent {
            level_name,
            class_name,
            first_parent,
            first_path,
            second_parent,
            second_path,
            ..
        } => format(
            lines[second_path],
            format!(
                "leaf `{}`: {level_name} `{class_name}` is under `{second_parent}` here but \
                 under `{first_parent}` on line {}; a class has one parent",
                paths[second_path].last().map_or("", String::as_str),
                lines[first_path]
            ),
        ),
        HierarchyError::DuplicateLeaf {
            leaf_name,
            first,
            second,
        } => format(
            lines[second],
            format!(
                "leaf `{leaf_name}` is already listed on line {}",
                lines[first]
            ),
        ),
        e => DataError::Hierarchy {
            path: path.to_path_buf(),
            error: Box::new(e),
        },
    })?;
    let mut folder_line: HashMap<&str, u64> = HashMap::new();
    for ((folder, &line), names) in folders.iter().zip(&lines).zip(&paths) {
        if let Some(&first) = folder_line.get(folder.as_str()) {
            return Err(format(
                line,
                format!(
                    "leaf `{}`: folder `{folder}` is already the folder of line {first}",
                    names[leaf_level]
                ),
            ));
        }
        folder_line.insert(folder, line);
    }
    Ok((h, folders))
}

/// Sorted entries of a folder.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        out.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

/// The name of the last component of `p`, lossily as UTF-8.
pub(crate) fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The image file names (sorted) directly inside `leaf_dir`.
pub(crate) fn image_files(leaf_dir: &Path) -> Result<Vec<String>, DataError> {
    Ok(sorted_entries(leaf_dir)?
        .into_iter()
        .filter(|p| is_image_name(p) && p.is_file())
        .map(|p| file_name(&p))
        .collect())
}

/// The image file names of each leaf in one split folder (leaf folders looked up in
/// `leaf_index`; any other folder is an error naming `csv_path`).
fn scan_split(
    split_dir: &Path,
    leaf_index: &HashMap<&str, usize>,
    num_leaves: usize,
    csv_path: &Path,
) -> Result<Vec<Vec<String>>, DataError> {
    let mut files = vec![Vec::new(); num_leaves];
    for leaf_dir in sorted_entries(split_dir)? {
        let name = file_name(&leaf_dir);
        if name.starts_with('.') || !leaf_dir.is_dir() {
            continue;
        }
        let Some(&leaf) = leaf_index.get(name.as_str()) else {
            return Err(DataError::UnknownLeafFolder {
                path: leaf_dir,
                leaf: name,
                hierarchy: csv_path.to_path_buf(),
            });
        };
        files[leaf] = image_files(&leaf_dir)?;
    }
    Ok(files)
}

/// True when the file name ends in one of [`IMAGE_EXTENSIONS`] (any case).
pub(crate) fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decodes one image file, center-crops it to a square, resizes it to `size` x `size` and
/// appends its RGB pixels in CHW order to `out` (see [`decode_into`]).
pub fn load_image_chw(path: &Path, size: u32, out: &mut Vec<u8>) -> Result<(), DataError> {
    let start = out.len();
    out.resize(start + 3 * size as usize * size as usize, 0);
    decode_into(path, size, &mut out[start..], None).map(|_| ())
}

#[cfg(test)]
mod tests;
