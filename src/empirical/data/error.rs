//! [`DataError`]: every way loading images and label hierarchies can fail, each naming the file
//! (and, where there is one, the line or entry) at fault.
//!
//! No variant has a `source()`: the cause is part of the message, so that anyhow's "Caused by"
//! chain does not print it a second time.

use std::path::PathBuf;

use crate::hierarchy::HierarchyError;

/// Errors from loading or building image sets. Every message names the file or folder at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error while opening or reading a file or folder.
    #[error("{}: {error}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error (in the message, so not a `source()`: anyhow's "Caused by"
        /// would repeat it).
        error: std::io::Error,
    },
    /// The dataset path is not an existing folder.
    #[error("{}: not a folder", .path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// A required file is missing; `looked_for` lists every name that was tried in `dir`.
    #[error("{}: missing file: looked for {}", .dir.display(), .looked_for.join(", "))]
    MissingFile {
        /// The folder searched.
        dir: PathBuf,
        /// The file names tried, in order of preference.
        looked_for: Vec<String>,
    },
    /// A file (after decompression) holds no bytes.
    #[error("{}: file is empty", .path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// A record file whose size is not a whole number of records.
    #[error(
        "{}: truncated or wrong format: {bytes} bytes is not a multiple of the {record_size}-byte \
         record size ({records} whole records, then {leftover} stray bytes)",
        .path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its size in bytes (decompressed size for gzip files).
        bytes: u64,
        /// The size of one record.
        record_size: usize,
        /// How many whole records those bytes hold.
        records: u64,
        /// The bytes left over after the whole records.
        leftover: u64,
    },
    /// A gzip stream that cannot be decompressed (corrupt, or cut off).
    #[error(
        "{}: corrupt gzip stream (after {decoded} decompressed bytes): {error}",
        .path.display()
    )]
    CorruptGzip {
        /// The file.
        path: PathBuf,
        /// Bytes successfully decompressed before the error.
        decoded: u64,
        /// The decoder's error (in the message, not a `source()`).
        error: std::io::Error,
    },
    /// A label byte outside the range of its names file.
    #[error(
        "{}: record {record}: {field} label {value} out of range (expected 0..{limit})",
        .path.display()
    )]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// The 0-based record index.
        record: u64,
        /// Which label ("coarse" or "fine").
        field: &'static str,
        /// The value found.
        value: u8,
        /// The number of classes (valid labels are `0..limit`).
        limit: usize,
    },
    /// A fine label that appears with two different coarse labels.
    #[error(
        "fine label {fine} has coarse label {first_coarse} in {} record {first_record} but \
         coarse label {coarse} in {} record {record}",
        .first_path.display(),
        .path.display()
    )]
    InconsistentCoarse {
        /// The fine label.
        fine: usize,
        /// The file of the first record seen with this fine label.
        first_path: PathBuf,
        /// Its record index.
        first_record: u64,
        /// Its coarse label.
        first_coarse: usize,
        /// The file of the conflicting record.
        path: PathBuf,
        /// Its record index.
        record: u64,
        /// Its coarse label.
        coarse: usize,
    },
    /// A names file with the wrong number of names.
    #[error("{}: expected {expected} names (one per line), found {found}", .path.display())]
    NameCount {
        /// The names file.
        path: PathBuf,
        /// The number of names required.
        expected: usize,
        /// The number found.
        found: usize,
    },
    /// A malformed line of a text or CSV file.
    #[error("{}: line {line}: {message}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A CSV row whose number of fields differs from the header's.
    #[error(
        "{}: line {line}: ragged row: {found} fields, but the header has {expected}",
        .path.display()
    )]
    RaggedRow {
        /// The CSV file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },
    /// An image folder whose name is not a leaf class of the hierarchy file.
    #[error(
        "{}: folder `{leaf}` is not a leaf class listed in {}",
        .path.display(),
        .hierarchy.display()
    )]
    UnknownLeafFolder {
        /// The folder.
        path: PathBuf,
        /// Its name.
        leaf: String,
        /// The hierarchy file.
        hierarchy: PathBuf,
    },
    /// A leaf class of the hierarchy file with no training images.
    #[error(
        "{}: leaf class `{leaf}` (listed in {}) has no training images",
        .path.display(),
        .hierarchy.display()
    )]
    LeafWithoutTrainImages {
        /// The folder where its training images should be.
        path: PathBuf,
        /// The leaf name.
        leaf: String,
        /// The hierarchy file.
        hierarchy: PathBuf,
    },
    /// An image file that cannot be decoded.
    #[error("{}: cannot decode image: {message}", .path.display())]
    UndecodableImage {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// A JPEG file whose data ends before its image does (a cut download or copy): the
    /// decoder fills the missing part, so it is refused unless partial images are allowed.
    #[error("{}: the JPEG data ends before the image does (a truncated file, only partly decoded); replace or remove the file, or set {allow_field} = true to use partly decoded images", .path.display())]
    TruncatedImage {
        /// The image file.
        path: PathBuf,
        /// The setting that allows such images.
        allow_field: String,
    },
    /// A split (folder) with no images at all.
    #[error("{}: split has no images", .path.display())]
    EmptySplit {
        /// The split's folder.
        path: PathBuf,
    },
    /// The labels read from `path` do not form a valid hierarchy.
    #[error("{}: invalid label hierarchy: {error}", .path.display())]
    Hierarchy {
        /// The file or folder the labels came from.
        path: PathBuf,
        /// The hierarchy error (boxed: it is large; in the message, not a `source()`).
        error: Box<HierarchyError>,
    },
    /// Loading would allocate more memory for pixels than the budget allows (checked before
    /// anything is allocated).
    #[error(
        "{what}: {images} images of 3x{side}x{side} pixels need {} ({} each), more than the {} \
         that may be used ({budget_source}); lower {size_field}, or load fewer images \
         (data.train_per_leaf, data.test_per_leaf, data.max_leaves)",
        human_bytes(*.needed),
        human_bytes(3 * u128::from(*.side) * u128::from(*.side)),
        human_bytes(u128::from(*.budget))
    )]
    TooLarge {
        /// What was being loaded (a split and its folder).
        what: String,
        /// The setting that sets the image side (`data.size`, `--size`).
        size_field: String,
        /// Number of images.
        images: u64,
        /// Image side after resizing.
        side: u32,
        /// Bytes the pixels would take.
        needed: u128,
        /// Bytes that may be used.
        budget: u64,
        /// Where the budget comes from (`data.memory_budget_gb`, `/proc/meminfo`).
        budget_source: String,
    },
    /// A wrong entry of a JSON or text file (an image without annotation, a category missing a
    /// level, an unknown id, ...).
    #[error("{}: {entry}: {message}", .path.display())]
    Entry {
        /// The file.
        path: PathBuf,
        /// The entry, e.g. `images[3] (id 17)` or `line 12`.
        entry: String,
        /// What is wrong.
        message: String,
    },
    /// A JSON file that cannot be parsed.
    #[error("{}: line {line}, column {column}: {message}", .path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the error.
        line: usize,
        /// The 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// An image file named by an annotation file does not exist.
    #[error("{}: image file not found (listed as {entry:?} in {})", .path.display(), .listed_in.display())]
    MissingImage {
        /// The image's full path.
        path: PathBuf,
        /// The entry that names it (its path as written in the listing).
        entry: String,
        /// The annotation file that lists it.
        listed_in: PathBuf,
    },
    /// A WordNet id (a folder name, or a node of a hierarchy file) that is not in WordNet's
    /// `data.noun`.
    #[error("{}: `{wnid}` is not a noun synset of {}", .path.display(), .wordnet.display())]
    UnknownWnid {
        /// The folder or file that names it.
        path: PathBuf,
        /// The WordNet id.
        wnid: String,
        /// The `data.noun` file searched.
        wordnet: PathBuf,
    },
    /// Parent links that form a cycle.
    #[error("{}: the parent links form a cycle: {}", .path.display(), .nodes.join(" -> "))]
    Cycle {
        /// The file holding the links.
        path: PathBuf,
        /// The nodes of the cycle, each the parent of the one before it, the first repeated at
        /// the end.
        nodes: Vec<String>,
    },
    /// An invalid argument or an inconsistent in-memory set.
    #[error("{context}: {message}")]
    Invalid {
        /// What was being built (a source name or a function).
        context: String,
        /// What is wrong.
        message: String,
    },
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error: source,
        }
    }
}

/// `bytes` in the largest unit that keeps the number at least 1 (B, KB, MB, GB, TB; powers of
/// 1000), with one decimal above bytes.
pub fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 KB");
        assert_eq!(human_bytes(30_000_000_000), "30.0 GB");
        assert_eq!(human_bytes(5_000_000_000_000_000), "5000.0 TB");
    }

    #[test]
    fn no_error_repeats_its_cause() {
        use std::error::Error;
        let e = DataError::io("x.bin", std::io::Error::other("disk on fire"));
        assert_eq!(e.to_string(), "x.bin: disk on fire");
        assert!(e.source().is_none());
        let e = DataError::Hierarchy {
            path: "h.csv".into(),
            error: Box::new(HierarchyError::NoLevels),
        };
        assert!(e.source().is_none());
        assert!(e.to_string().contains("no levels"), "{e}");
    }

    #[test]
    fn too_large_names_the_field_and_the_sizes() {
        let e = DataError::TooLarge {
            what: "train split of d".into(),
            size_field: "data.size".into(),
            images: 1,
            side: 100_000,
            needed: 30_000_000_000,
            budget: 8_000_000_000,
            budget_source: "MemAvailable".into(),
        };
        let s = e.to_string();
        assert!(s.contains("need 30.0 GB (30.0 GB each)"), "{s}");
        assert!(s.contains("8.0 GB") && s.contains("lower data.size"), "{s}");
    }
}
