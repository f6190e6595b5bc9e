//! Merging shard folders into one results folder: the checks (same config everywhere, a cell
//! saved twice holds the same result, no cell missing) and the copy of the cells. The reports
//! are then written by the study's own report writer, the code a single-process run ends with,
//! so a merged folder's tables, JSON and figures are those of a single run by construction.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::shard::{Shard, SHARDS_DIR};
use super::ShardError;
use crate::report::write_atomic;

/// Decides whether two saved copies of one cell hold the same result (e.g. equal bytes, or equal
/// once wall-clock times are left out).
pub type SameResult<'a> = &'a dyn Fn(&Path, &Path) -> Result<bool, ShardError>;

/// Two copies of a cell are the same result when their bytes are equal.
pub fn same_bytes(a: &Path, b: &Path) -> Result<bool, ShardError> {
    Ok(read(a)? == read(b)?)
}

fn read(p: &Path) -> Result<Vec<u8>, ShardError> {
    fs::read(p).map_err(|source| ShardError::Io {
        path: p.to_path_buf(),
        source,
    })
}

/// The shard folders of the study folder `root`: every folder in `root/shards/` that holds a
/// `config.toml`, sorted by name.
pub fn shard_dirs(root: &Path) -> Result<Vec<PathBuf>, ShardError> {
    let shards = root.join(SHARDS_DIR);
    let Ok(rd) = fs::read_dir(&shards) else {
        return Ok(Vec::new());
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.toml").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The shard folders to merge into the study folder `root`: its own ([`shard_dirs`]), then the
/// folders `extra` (e.g. copied from machines without a shared disk), each once.
pub fn merge_dirs(root: &Path, extra: &[PathBuf]) -> Result<Vec<PathBuf>, ShardError> {
    let mut dirs = shard_dirs(root)?;
    for d in extra {
        if !dirs.contains(d) {
            dirs.push(d.clone());
        }
    }
    Ok(dirs)
}

/// How many shards the folders `dirs` came from: the largest `N` of those named `I-of-N`
/// ([`Shard::dir`]); 1 when none is.
pub fn shard_count(dirs: &[PathBuf]) -> usize {
    dirs.iter()
        .filter_map(|d| Shard::from_dir(d))
        .map(|s| s.count())
        .max()
        .unwrap_or(1)
}

/// Makes `root` hold the same `files` (e.g. `config.toml`) as every folder of `dirs`, byte for
/// byte: a file `root` lacks is copied from the first folder; a folder whose copy differs, or
/// lacks it, is refused.
pub fn check_same_files(root: &Path, dirs: &[PathBuf], files: &[&str]) -> Result<(), ShardError> {
    for file in files {
        let reference = root.join(file);
        if !reference.is_file() {
            let first = dirs.first().ok_or_else(|| ShardError::Missing {
                path: reference.clone(),
                what: "no shard folder to take it from".into(),
            })?;
            write_atomic(&reference, &read(&first.join(file))?)?;
        }
        let want = read(&reference)?;
        for d in dirs {
            let p = d.join(file);
            if !p.is_file() {
                return Err(ShardError::Missing {
                    path: p,
                    what: format!("{} has one", reference.display()),
                });
            }
            if read(&p)? != want {
                return Err(ShardError::Differs {
                    file: file.to_string(),
                    a: root.to_path_buf(),
                    b: d.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The cell files (`*.json`) saved in `dir`, by file stem.
fn cell_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, ShardError> {
    let mut out = BTreeMap::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in rd {
        let p = e
            .map_err(|source| ShardError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(stem) = name
            .as_deref()
            .filter(|n| !n.starts_with('.'))
            .and_then(|n| n.strip_suffix(".json"))
        {
            out.insert(stem.to_string(), p);
        }
    }
    Ok(out)
}

/// What [`merge_cells`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeCount {
    /// Cells copied into the merged folder.
    pub copied: usize,
    /// Cells the merged folder already held (or that were saved in several folders).
    pub duplicates: usize,
}

/// Copies the cells saved in `sub` of every folder of `dirs` into `root/sub`. A cell saved in
/// several places (the merged folder included) must hold the same result in each (`same`
/// decides), or the merge is refused naming both copies; nothing is copied then.
pub fn merge_cells(
    root: &Path,
    dirs: &[PathBuf],
    sub: &str,
    same: SameResult,
) -> Result<MergeCount, ShardError> {
    let target = root.join(sub);
    let mut cells = cell_files(&target)?;
    let mut new: Vec<String> = Vec::new();
    let mut count = MergeCount::default();
    for d in dirs {
        for (name, p) in cell_files(&d.join(sub))? {
            match cells.get(&name) {
                Some(q) => {
                    if !same(q, &p)? {
                        return Err(ShardError::Conflict {
                            cell: name,
                            a: q.clone(),
                            b: p,
                        });
                    }
                    count.duplicates += 1;
                }
                None => {
                    new.push(name.clone());
                    cells.insert(name, p);
                }
            }
        }
    }
    for name in new {
        let from = &cells[&name];
        write_atomic(&target.join(format!("{name}.json")), &read(from)?)?;
        count.copied += 1;
    }
    Ok(count)
}

/// Refuses a merged folder that lacks cells: `expected` lists every cell's file stem and the
/// shard that owns it; those not saved in `root/sub` are named, grouped by shard.
pub fn check_complete(
    root: &Path,
    sub: &str,
    expected: &[(String, Shard)],
) -> Result<(), ShardError> {
    let have = cell_files(&root.join(sub))?;
    let mut missing: BTreeMap<usize, (Shard, Vec<&str>)> = BTreeMap::new();
    for (name, shard) in expected {
        if !have.contains_key(name) {
            missing
                .entry(shard.index())
                .or_insert((*shard, Vec::new()))
                .1
                .push(name);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let n: usize = missing.values().map(|(_, v)| v.len()).sum();
    let detail = missing
        .values()
        .map(|(s, v)| {
            let shown: Vec<&str> = v.iter().take(3).copied().collect();
            let more = if v.len() > 3 {
                format!(" and {} more", v.len() - 3)
            } else {
                String::new()
            };
            format!("shard {s}: {}{more}", shown.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(ShardError::Incomplete {
        root: root.to_path_buf(),
        missing: n,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(dir: &Path, name: &str, text: &str) {
        write_atomic(&dir.join(name), text.as_bytes()).unwrap();
    }

    #[test]
    fn merges_disjoint_cells_and_accepts_identical_duplicates() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (a, b) = (root.join("shards/1-of-2"), root.join("shards/2-of-2"));
        for d in [&a, &b] {
            put(d, "config.toml", "x = 1\n");
        }
        put(&a, "cells/c0.json", "0");
        put(&a, "cells/.c9.json.tmp12", "partial");
        put(&b, "cells/c1.json", "1");
        put(&b, "cells/c0.json", "0");
        let dirs = shard_dirs(root).unwrap();
        assert_eq!(dirs, vec![a.clone(), b.clone()]);
        check_same_files(root, &dirs, &["config.toml"]).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("config.toml")).unwrap(),
            "x = 1\n"
        );
        let n = merge_cells(root, &dirs, "cells", &same_bytes).unwrap();
        assert_eq!(
            n,
            MergeCount {
                copied: 2,
                duplicates: 1
            }
        );
        assert_eq!(fs::read_to_string(root.join("cells/c1.json")).unwrap(), "1");
        assert!(!root.join("cells/.c9.json.tmp12").exists());
        // merging again copies nothing
        let again = merge_cells(root, &dirs, "cells", &same_bytes).unwrap();
        assert_eq!(again.copied, 0);
        let s = |i| Shard::new(i, 2).unwrap();
        check_complete(root, "cells", &[("c0".into(), s(1)), ("c1".into(), s(2))]).unwrap();
    }

    #[test]
    fn refuses_other_configs_conflicting_cells_and_missing_cells() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (a, b) = (root.join("shards/1-of-2"), root.join("shards/2-of-2"));
        put(&a, "config.toml", "x = 1\n");
        put(&b, "config.toml", "x = 2\n");
        let dirs = vec![a.clone(), b.clone()];
        let e = check_same_files(root, &dirs, &["config.toml"]).unwrap_err();
        assert!(matches!(e, ShardError::Differs { .. }), "{e}");
        assert!(e.to_string().contains("2-of-2"), "{e}");

        put(&a, "cells/c0.json", "0");
        put(&b, "cells/c0.json", "0.5");
        let e = merge_cells(root, &dirs, "cells", &same_bytes).unwrap_err();
        assert!(
            matches!(e, ShardError::Conflict { ref cell, .. } if cell == "c0"),
            "{e}"
        );
        assert!(
            !root.join("cells/c0.json").exists(),
            "nothing copied on conflict"
        );

        let s = |i| Shard::new(i, 2).unwrap();
        let e =
            check_complete(root, "cells", &[("c0".into(), s(1)), ("c7".into(), s(2))]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("2 cells") && msg.contains("shard 2/2: c7"),
            "{msg}"
        );
    }

    #[test]
    fn a_shard_folder_without_the_reference_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        put(root, "study.toml", "s\n");
        let d = root.join("elsewhere");
        fs::create_dir_all(&d).unwrap();
        let e = check_same_files(root, &[d], &["study.toml"]).unwrap_err();
        assert!(matches!(e, ShardError::Missing { .. }), "{e}");
        let e = check_same_files(&root.join("nothing"), &[], &["config.toml"]).unwrap_err();
        assert!(e.to_string().contains("no shard folder"), "{e}");
    }
}
