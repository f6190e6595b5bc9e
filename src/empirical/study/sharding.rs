//! A study spread over shards ([`crate::cluster`]): the preparation a shard needs (and the
//! clear refusal when it has not run), the cells every shard owns, and the merge of the shards'
//! cells into the study folder, whose reports are then written by [`write_reports`], the code
//! that ends a single-process run.

use std::path::{Path, PathBuf};

use super::config::StudyConfig;
use super::plan::cells_by_design;
use super::reports::summary::StudySummary;
use super::reports::write_reports;
use super::results::{cell_name, labels_file, CellResult, HARD_SUBSETS_FILE, MEMBERS_FILE};
use crate::cluster::{self, Shard, ShardError};
use crate::empirical::error::EmpiricalError;
use crate::report::{read_json, ReportError, ResultsDir};

/// The file the preparation writes last (with the hard test images of every design).
const PREPARED_FILE: &str = HARD_SUBSETS_FILE;

/// Checks that the study folder `root` holds the preparation of the config `resolved` (its
/// `config.toml`, the ensemble's outputs if there is an ensemble, every design's label sets)
/// and opens it; says what is missing and what to run otherwise.
pub fn check_prepared(
    cfg: &StudyConfig,
    root: &Path,
    resolved: &str,
) -> Result<ResultsDir, EmpiricalError> {
    let run = || {
        format!(
            "the study's preparation has not run: run `empirical study CONFIG --out {} --prepare` (or the prepare job) first",
            root.display()
        )
    };
    let config = root.join("config.toml");
    let saved = std::fs::read_to_string(&config).map_err(|_| ShardError::Missing {
        path: config.clone(),
        what: run(),
    })?;
    if saved != resolved {
        return Err(EmpiricalError::invalid(
            "--shard",
            format!(
                "{} was prepared for another config (its config.toml differs from this run's); prepare it again with --fresh, or run the shard with the config it was prepared for",
                root.display()
            ),
        ));
    }
    let mut needed = vec![PREPARED_FILE.to_string()];
    if cfg.hard.ensemble.is_some() {
        needed.push(MEMBERS_FILE.to_string());
    }
    needed.extend(cfg.design_plan().iter().map(|(d, _)| labels_file(d)));
    for f in needed {
        let p = root.join(&f);
        if !p.is_file() {
            return Err(ShardError::Missing {
                path: p,
                what: run(),
            }
            .into());
        }
    }
    Ok(ResultsDir::create(root)?)
}

/// Every cell of the study (its file name in `cells/`) with the shard of `shards` that owns it.
pub fn expected_cells(
    cfg: &StudyConfig,
    shards: usize,
) -> Result<Vec<(String, Shard)>, ShardError> {
    let mut out = Vec::new();
    for (design, cells) in cells_by_design(cfg) {
        for &seed in &cfg.seeds {
            for (position, cell) in &cells {
                out.push((
                    cell_name(&design, cell.condition(), seed),
                    Shard::owner(*position, seed, shards)?,
                ));
            }
        }
    }
    Ok(out)
}

/// Two saved copies of a cell hold the same result (compared as JSON, so that NaN errors
/// compare equal; cells hold no wall-clock times).
fn same_cell(a: &Path, b: &Path) -> Result<bool, ShardError> {
    let json = |p: &Path| -> Result<String, ShardError> {
        let c: CellResult = read_json(p)?;
        serde_json::to_string(&c).map_err(|e| {
            ShardError::Report(ReportError::Format {
                path: p.to_path_buf(),
                msg: e.to_string(),
            })
        })
    };
    Ok(json(a)? == json(b)?)
}

/// Merges the shards of the study folder `root` (every `root/shards/*`, and the shard folders
/// `extra`) into it: refuses shards of another config, a cell saved twice with different
/// results, or a missing cell (naming the shard that owns it); then writes the reports.
pub fn merge(root: &Path, extra: &[PathBuf]) -> Result<StudySummary, EmpiricalError> {
    if !root.join(PREPARED_FILE).is_file() {
        return Err(ShardError::Missing {
            path: root.join(PREPARED_FILE),
            what: format!(
                "{} is not a prepared study folder: merge into the folder the shards were run with (--out)",
                root.display()
            ),
        }
        .into());
    }
    let dirs = cluster::merge_dirs(root, extra)?;
    cluster::check_same_files(root, &dirs, &["config.toml"])?;
    let cfg: StudyConfig = crate::config::load_file(&root.join("config.toml"), &[])?;
    cluster::merge_cells(root, &dirs, "cells", &same_cell)?;
    let shards = cluster::shard_count(&dirs);
    cluster::check_complete(root, "cells", &expected_cells(&cfg, shards)?)?;
    write_reports(root)
}
