//! CIFAR-100 in the official binary format (`cifar-100-binary`).
//!
//! The folder must hold:
//!
//! ```text
//! cifar-100-binary/
//!   train.bin   (or train.bin.gz)   training records
//!   test.bin    (or test.bin.gz)    test records
//!   fine_label_names.txt            100 names, line i = fine label i
//!   coarse_label_names.txt          20 names, line i = coarse label i
//! ```
//!
//! A record is [`RECORD_SIZE`] = 3074 bytes with no header between records: byte 0 the coarse
//! label (0..19), byte 1 the fine label (0..99), then 3072 bytes of pixels: the red, green and
//! blue planes, 32x32 each, row-major. That is already the CHW layout of [`ImageSet`], so the
//! pixel bytes are copied as they are. When both `x.bin` and `x.bin.gz` exist, `x.bin` is read;
//! `.gz` files are decompressed as a stream (multi-member gzip is accepted).
//!
//! The label hierarchy is taken from the records: level 0 `"coarse"` (20 classes, names from
//! `coarse_label_names.txt`) and level 1 `"fine"` (100 leaves, names from `fine_label_names.txt`),
//! with leaf index == fine label. Every fine label must come with one coarse label throughout
//! both files. Files may hold any whole number of records (a subset is fine); a fine label that
//! appears in no record takes its coarse class from the standard CIFAR-100 table
//! [`CIFAR100_FINE_TO_COARSE`]. The record counts are in [`Splits::summary`].
//!
//! Names files: one name per line, surrounding whitespace and `\r` trimmed, trailing blank lines
//! ignored; a blank line before the last name is an error.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use crate::empirical::data::{DataError, ImageSet, Splits};
use crate::hierarchy::{Hierarchy, Level};

/// Bytes per record: coarse label, fine label, 3 x 32 x 32 pixels.
pub const RECORD_SIZE: usize = 2 + IMAGE_BYTES;
/// Pixel bytes per image (3 x 32 x 32).
pub const IMAGE_BYTES: usize = 3 * 32 * 32;
/// Number of coarse classes (superclasses).
pub const NUM_COARSE: usize = 20;
/// Number of fine classes.
pub const NUM_FINE: usize = 100;

/// The standard CIFAR-100 superclass of each fine label (fine labels in the standard,
/// alphabetical order): `CIFAR100_FINE_TO_COARSE[fine] == coarse`.
pub const CIFAR100_FINE_TO_COARSE: [u8; NUM_FINE] = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15,
    3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4,
    2, 0, 17, 4, 18, 17, 10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
];

/// The well-known per-channel (R, G, B) mean of the CIFAR-100 training set, in [0, 1].
pub const CIFAR100_TRAIN_MEAN: [f32; 3] = [0.5071, 0.4865, 0.4409];
/// The well-known per-channel (R, G, B) standard deviation of the CIFAR-100 training set.
pub const CIFAR100_TRAIN_STD: [f32; 3] = [0.2673, 0.2564, 0.2762];

/// The folder named by environment variable `var`, if it is set and non-empty. The path is not
/// checked: [`load_cifar100`] reports what is missing there.
pub fn cifar100_dir_from_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Loads CIFAR-100 from `dir` (see the module doc for the layout and the checks made).
pub fn load_cifar100(dir: &Path) -> Result<Splits, DataError> {
    crate::empirical::data::require_dir(dir)?;
    let coarse_path = require(dir, &["coarse_label_names.txt"])?;
    let fine_path = require(dir, &["fine_label_names.txt"])?;
    let train_path = require(dir, &["train.bin", "train.bin.gz"])?;
    let test_path = require(dir, &["test.bin", "test.bin.gz"])?;
    let coarse_names = read_names(&coarse_path, NUM_COARSE)?;
    let fine_names = read_names(&fine_path, NUM_FINE)?;

    let mut seen: Vec<Option<FirstSeen>> = vec![None; NUM_FINE];
    let train = read_records(&train_path, &mut seen)?;
    let test = read_records(&test_path, &mut seen)?;

    let parent: Vec<usize> = seen
        .iter()
        .enumerate()
        .map(|(f, s)| match s {
            Some(s) => s.coarse as usize,
            None => CIFAR100_FINE_TO_COARSE[f] as usize,
        })
        .collect();
    let hierarchy = Hierarchy::new(vec![
        Level {
            name: "coarse".into(),
            class_names: coarse_names,
            parent: vec![],
        },
        Level {
            name: "fine".into(),
            class_names: fine_names,
            parent,
        },
    ])
    .map_err(|e| DataError::Hierarchy {
        path: dir.to_path_buf(),
        error: Box::new(e),
    })?;
    let hierarchy = Arc::new(hierarchy);
    let make = |r: Records, path: &Path| {
        ImageSet::new(
            r.images,
            3,
            32,
            32,
            r.fine,
            Arc::clone(&hierarchy),
            path.display().to_string(),
        )
    };
    Ok(Splits {
        train: make(train, &train_path)?,
        test: make(test, &test_path)?,
    })
}

/// The first path in `names` (tried in order) that exists in `dir`.
fn require(dir: &Path, names: &[&str]) -> Result<PathBuf, DataError> {
    for name in names {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::MissingFile {
        dir: dir.to_path_buf(),
        looked_for: names.iter().map(|s| s.to_string()).collect(),
    })
}

/// Reads a names file holding exactly `expected` names.
fn read_names(path: &Path, expected: usize) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while names.last().is_some_and(|n| n.is_empty()) {
        names.pop();
    }
    if names.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    if let Some(i) = names.iter().position(|n| n.is_empty()) {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            line: i as u64 + 1,
            message: "blank line before the last name".into(),
        });
    }
    for (i, name) in names.iter().enumerate() {
        if let Some(j) = names[..i].iter().position(|n| n == name) {
            return Err(DataError::Format {
                path: path.to_path_buf(),
                line: i as u64 + 1,
                message: format!("name `{name}` already appears on line {}", j + 1),
            });
        }
    }
    if names.len() != expected {
        return Err(DataError::NameCount {
            path: path.to_path_buf(),
            expected,
            found: names.len(),
        });
    }
    Ok(names)
}

/// Where a fine label was first seen, and with which coarse label.
#[derive(Clone, Debug)]
struct FirstSeen {
    path: PathBuf,
    record: u64,
    coarse: u8,
}

/// The decoded records of one file.
struct Records {
    fine: Vec<usize>,
    images: Vec<u8>,
}

/// Reads `buf.len()` bytes unless the stream ends first; returns the count read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The uncompressed size recorded in a gzip trailer (mod 2^32), used only to reserve memory.
fn gzip_size_hint(file: &mut File, compressed: u64) -> Option<usize> {
    if compressed < 18 {
        return None;
    }
    let mut t = [0u8; 4];
    file.seek(SeekFrom::End(-4)).ok()?;
    file.read_exact(&mut t).ok()?;
    file.seek(SeekFrom::Start(0)).ok()?;
    let n = u32::from_le_bytes(t) as u64;
    // Only trust a plausible hint (CIFAR pixels compress by ~10%).
    (n <= compressed.saturating_mul(4)).then_some(n as usize)
}

fn truncated(path: &Path, bytes: u64) -> DataError {
    DataError::Truncated {
        path: path.to_path_buf(),
        bytes,
        record_size: RECORD_SIZE,
        records: bytes / RECORD_SIZE as u64,
        leftover: bytes % RECORD_SIZE as u64,
    }
}

/// Checks the labels of record `record` against the label ranges and the fine-to-coarse map
/// seen so far (which it extends); returns the fine label.
fn check_labels(
    path: &Path,
    record: u64,
    c: u8,
    f: u8,
    seen: &mut [Option<FirstSeen>],
) -> Result<usize, DataError> {
    let out_of_range = |field, value, limit| DataError::LabelOutOfRange {
        path: path.to_path_buf(),
        record,
        field,
        value,
        limit,
    };
    if c as usize >= NUM_COARSE {
        return Err(out_of_range("coarse", c, NUM_COARSE));
    }
    if f as usize >= NUM_FINE {
        return Err(out_of_range("fine", f, NUM_FINE));
    }
    match &seen[f as usize] {
        None => {
            seen[f as usize] = Some(FirstSeen {
                path: path.to_path_buf(),
                record,
                coarse: c,
            })
        }
        Some(first) if first.coarse != c => {
            return Err(DataError::InconsistentCoarse {
                fine: f as usize,
                first_path: first.path.clone(),
                first_record: first.record,
                first_coarse: first.coarse as usize,
                path: path.to_path_buf(),
                record,
                coarse: c as usize,
            });
        }
        Some(_) => {}
    }
    Ok(f as usize)
}

/// Reads and checks every record of one `.bin` or `.bin.gz` file. A stream error or a truncated
/// stream is reported in preference to a label error found earlier in the same file.
fn read_records(path: &Path, seen: &mut [Option<FirstSeen>]) -> Result<Records, DataError> {
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    if file_len == 0 {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let expected_bytes = if gz {
        gzip_size_hint(&mut file, file_len).unwrap_or(0)
    } else {
        if file_len % RECORD_SIZE as u64 != 0 {
            return Err(truncated(path, file_len));
        }
        file_len as usize
    };
    let n_hint = expected_bytes / RECORD_SIZE;
    let mut reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, file))
    };

    let mut fine = Vec::with_capacity(n_hint);
    let mut images = Vec::with_capacity(n_hint * IMAGE_BYTES);
    let mut rec = vec![0u8; RECORD_SIZE];
    let mut record: u64 = 0;
    let mut pending: Option<DataError> = None;
    loop {
        let done = record * RECORD_SIZE as u64;
        let got = fill(&mut *reader, &mut rec).map_err(|source| {
            if gz {
                DataError::CorruptGzip {
                    path: path.to_path_buf(),
                    decoded: done,
                    error: source,
                }
            } else {
                DataError::io(path, source)
            }
        })?;
        if got == 0 {
            break;
        }
        if got < RECORD_SIZE {
            return Err(truncated(path, done + got as u64));
        }
        if pending.is_none() {
            match check_labels(path, record, rec[0], rec[1], seen) {
                Ok(f) => {
                    fine.push(f);
                    images.extend_from_slice(&rec[2..]);
                }
                Err(e) => {
                    // Keep reading: a corrupt or truncated stream explains bad labels better.
                    pending = Some(e);
                    fine = Vec::new();
                    images = Vec::new();
                }
            }
        }
        record += 1;
    }
    if let Some(e) = pending {
        return Err(e);
    }
    if record == 0 {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(Records { fine, images })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    /// Records with the given (coarse, fine) labels; pixel byte j of record i is (7i + j) % 251.
    fn records(labels: &[(u8, u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &(c, f)) in labels.iter().enumerate() {
            out.push(c);
            out.push(f);
            out.extend((0..IMAGE_BYTES).map(|j| ((7 * i + j) % 251) as u8));
        }
        out
    }

    fn std_labels(fines: &[u8]) -> Vec<(u8, u8)> {
        fines
            .iter()
            .map(|&f| (CIFAR100_FINE_TO_COARSE[f as usize], f))
            .collect()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// A folder with names files, `train.bin` (plain) and `test.bin.gz`.
    fn fixture(train: &[u8], test: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let coarse: String = (0..NUM_COARSE).map(|i| format!("c{i}\n")).collect();
        let fine: String = (0..NUM_FINE).map(|i| format!("f{i}\r\n")).collect();
        std::fs::write(dir.path().join("coarse_label_names.txt"), coarse).unwrap();
        std::fs::write(dir.path().join("fine_label_names.txt"), fine + "\n\n").unwrap();
        std::fs::write(dir.path().join("train.bin"), train).unwrap();
        std::fs::write(dir.path().join("test.bin.gz"), gzip(test)).unwrap();
        dir
    }

    fn good() -> tempfile::TempDir {
        fixture(
            &records(&std_labels(&[0, 1, 2, 0, 99])),
            &records(&std_labels(&[2, 3, 4])),
        )
    }

    #[test]
    fn loads_plain_and_gzipped() {
        let dir = good();
        let s = load_cifar100(dir.path()).unwrap();
        assert_eq!((s.train.len, s.test.len), (5, 3));
        assert_eq!(
            (s.train.channels, s.train.height, s.train.width),
            (3, 32, 32)
        );
        assert_eq!(s.train.leaves, vec![0, 1, 2, 0, 99]);
        assert_eq!(s.test.leaves, vec![2, 3, 4]);
        assert_eq!(s.train.labels_at_level(0), vec![4, 1, 14, 4, 13]);
        assert_eq!(s.test.image(1)[0], 7);
        assert_eq!(s.train.image(4)[5], 7 * 4 + 5);
        let h = &s.train.hierarchy;
        assert!(Arc::ptr_eq(h, &s.test.hierarchy));
        assert_eq!(h.num_levels(), 2);
        assert_eq!((h.num_classes(0), h.num_leaves()), (20, 100));
        assert_eq!(h.level(0).name, "coarse");
        assert_eq!(h.level(1).name, "fine");
        assert_eq!(h.level(1).class_names[99], "f99");
        assert_eq!(h.level(0).class_names[19], "c19");
        for (f, &c) in CIFAR100_FINE_TO_COARSE.iter().enumerate() {
            assert_eq!(h.leaf_ancestor(f, 0), c as usize);
        }
        assert!(s.train.source.ends_with("train.bin"));
        assert!(s.test.source.ends_with("test.bin.gz"));
        assert!(s.summary().contains("5 images"), "{}", s.summary());
    }

    #[test]
    fn hierarchy_follows_records() {
        // Fine 0 under coarse 2 instead of the standard 4; coarse 4 keeps other children.
        let mut labels = std_labels(&[1, 2]);
        labels.push((2, 0));
        let dir = fixture(&records(&labels), &records(&std_labels(&[3])));
        let s = load_cifar100(dir.path()).unwrap();
        assert_eq!(s.train.hierarchy.leaf_ancestor(0, 0), 2);
    }

    #[test]
    fn truncated_file() {
        let mut bytes = records(&std_labels(&[0, 1]));
        bytes.extend_from_slice(&[0; 10]);
        let dir = fixture(&bytes, &records(&std_labels(&[2])));
        let e = load_cifar100(dir.path()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(
            e,
            DataError::Truncated {
                records: 2,
                leftover: 10,
                ..
            }
        ));
        assert!(
            msg.contains("train.bin") && msg.contains("truncated"),
            "{msg}"
        );
        assert!(
            msg.contains("6158 bytes") && msg.contains("2 whole records"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_gzip_payload() {
        let mut bytes = records(&std_labels(&[0, 1, 2]));
        bytes[1] = 200; // a bad label too: truncation is the better explanation
        bytes.truncate(2 * RECORD_SIZE + 100);
        let dir = fixture(&records(&std_labels(&[0])), &bytes);
        let msg = load_cifar100(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("test.bin.gz") && msg.contains("truncated"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("{} bytes", 2 * RECORD_SIZE + 100)),
            "{msg}"
        );
    }

    #[test]
    fn bad_labels() {
        let mut labels = std_labels(&[0, 1, 2]);
        labels[2].1 = 100;
        let dir = fixture(&records(&labels), &records(&std_labels(&[0])));
        let e = load_cifar100(dir.path()).unwrap_err();
        assert!(matches!(
            e,
            DataError::LabelOutOfRange {
                record: 2,
                field: "fine",
                value: 100,
                ..
            }
        ));
        assert!(e.to_string().contains("train.bin: record 2"), "{e}");

        let mut labels = std_labels(&[0, 1]);
        labels[1].0 = 20;
        let dir = fixture(&records(&std_labels(&[0])), &records(&labels));
        let e = load_cifar100(dir.path()).unwrap_err();
        assert!(matches!(
            e,
            DataError::LabelOutOfRange {
                record: 1,
                field: "coarse",
                ..
            }
        ));
        assert!(e.to_string().contains("test.bin.gz"), "{e}");
    }

    #[test]
    fn inconsistent_fine_to_coarse() {
        let mut test = std_labels(&[1, 2, 3, 0]);
        test[3].0 = 5;
        let dir = fixture(&records(&std_labels(&[7, 0])), &records(&test));
        let e = load_cifar100(dir.path()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(
            e,
            DataError::InconsistentCoarse {
                fine: 0,
                first_record: 1,
                first_coarse: 4,
                record: 3,
                coarse: 5,
                ..
            }
        ));
        assert!(
            msg.contains("train.bin record 1") && msg.contains("test.bin.gz record 3"),
            "{msg}"
        );
    }

    #[test]
    fn missing_files() {
        let dir = good();
        std::fs::remove_file(dir.path().join("test.bin.gz")).unwrap();
        let msg = load_cifar100(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("test.bin, test.bin.gz"), "{msg}");
        let dir = good();
        std::fs::remove_file(dir.path().join("fine_label_names.txt")).unwrap();
        let msg = load_cifar100(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("fine_label_names.txt"), "{msg}");
    }

    #[test]
    fn corrupt_gzip() {
        let dir = good();
        let gz = gzip(&records(&std_labels(&[0, 1, 2, 3])));
        // Cut off half way.
        std::fs::write(dir.path().join("test.bin.gz"), &gz[..gz.len() / 2]).unwrap();
        let e = load_cifar100(dir.path()).unwrap_err();
        assert!(matches!(e, DataError::CorruptGzip { .. }), "{e}");
        assert!(e.to_string().contains("test.bin.gz: corrupt gzip"), "{e}");
        // Garbage in the middle of the stream.
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        for b in &mut bad[mid..mid + 16] {
            *b ^= 0x5a;
        }
        std::fs::write(dir.path().join("test.bin.gz"), &bad).unwrap();
        let e = load_cifar100(dir.path()).unwrap_err();
        assert!(matches!(e, DataError::CorruptGzip { .. }), "{e}");
        // Not gzip at all.
        std::fs::write(dir.path().join("test.bin.gz"), b"hello, not gzip").unwrap();
        let e = load_cifar100(dir.path()).unwrap_err();
        assert!(matches!(e, DataError::CorruptGzip { .. }), "{e}");
    }

    #[test]
    fn empty_files_and_bad_names() {
        let dir = good();
        std::fs::write(dir.path().join("train.bin"), b"").unwrap();
        let e = load_cifar100(dir.path()).unwrap_err();
        assert!(matches!(e, DataError::EmptyFile { .. }));
        assert!(e.to_string().contains("train.bin: file is empty"), "{e}");

        let dir = good();
        std::fs::write(dir.path().join("test.bin.gz"), gzip(b"")).unwrap();
        let e = load_cifar100(dir.path()).unwrap_err();
        assert!(e.to_string().contains("test.bin.gz: file is empty"), "{e}");

        let dir = good();
        let names: String = (0..19).map(|i| format!("c{i}\n")).collect();
        std::fs::write(dir.path().join("coarse_label_names.txt"), names).unwrap();
        let e = load_cifar100(dir.path()).unwrap_err();
        assert!(matches!(
            e,
            DataError::NameCount {
                expected: 20,
                found: 19,
                ..
            }
        ));
        assert!(e.to_string().contains("coarse_label_names.txt"), "{e}");

        std::fs::write(dir.path().join("coarse_label_names.txt"), "\n \n").unwrap();
        let e = load_cifar100(dir.path()).unwrap_err();
        assert!(matches!(e, DataError::EmptyFile { .. }), "{e}");

        let names: String = (0..20).map(|i| format!("c{i}\n\n")).collect();
        std::fs::write(dir.path().join("coarse_label_names.txt"), names).unwrap();
        let e = load_cifar100(dir.path()).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");

        let names: String = (0..20).map(|_| "same\n").collect();
        std::fs::write(dir.path().join("coarse_label_names.txt"), names).unwrap();
        let e = load_cifar100(dir.path()).unwrap_err();
        assert!(
            e.to_string()
                .contains("line 2: name `same` already appears on line 1"),
            "{e}"
        );

        let msg = load_cifar100(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(msg.ends_with("nope: not a folder"), "{msg}");
    }

    #[test]
    fn plain_bin_preferred_over_gz() {
        let dir = good();
        std::fs::write(dir.path().join("test.bin"), records(&std_labels(&[9]))).unwrap();
        let s = load_cifar100(dir.path()).unwrap();
        assert_eq!(s.test.leaves, vec![9]);
    }

    #[test]
    fn env_var_lookup() {
        assert_eq!(
            cifar100_dir_from_env("GRANULARITY_TEST_SURELY_UNSET_VAR_41"),
            None
        );
    }

    /// The real dataset, from the folder `GRANULARITY_CIFAR100_DIR` names (`.ci/run` runs it
    /// when that is set).
    #[test]
    #[ignore = "needs CIFAR-100: set GRANULARITY_CIFAR100_DIR"]
    fn real_cifar100() {
        let dir = cifar100_dir_from_env("GRANULARITY_CIFAR100_DIR")
            .expect("GRANULARITY_CIFAR100_DIR must name the CIFAR-100 binary folder");
        let s = load_cifar100(&dir).unwrap();
        println!("{}", s.summary());
        assert_eq!((s.train.len, s.test.len), (50_000, 10_000));
        let h = &s.train.hierarchy;
        assert_eq!((h.num_classes(0), h.num_leaves()), (20, 100));
        for c in 0..20 {
            assert_eq!(h.children(0, c).len(), 5, "coarse {c}");
        }
        for (f, &c) in CIFAR100_FINE_TO_COARSE.iter().enumerate() {
            assert_eq!(h.leaf_ancestor(f, 0), c as usize);
        }
        assert_eq!(h.level(1).class_names[47], "maple_tree");
        assert_eq!(s.train.class_counts(1), vec![500; 100]);
        assert_eq!(s.test.class_counts(0), vec![500; 20]);
        let (mean, std) = s.train.rgb_mean_std().unwrap();
        println!("train mean {mean:?} std {std:?}");
        for c in 0..3 {
            assert!((mean[c] - CIFAR100_TRAIN_MEAN[c]).abs() < 1e-3, "{mean:?}");
            assert!((std[c] - CIFAR100_TRAIN_STD[c]).abs() < 1e-3, "{std:?}");
        }
    }
}
