//! A sweep spread over shards ([`crate::cluster`]): the preparation (the sweep's folder with its
//! resolved config and `study.toml`), the runs of one shard (into `OUT/shards/I-of-N`), and the
//! merge, which gathers the shards' runs into the sweep's folder and then calls
//! [`commands::sweep`] itself: with every run saved it trains nothing and writes `sweep.csv`,
//! `summary.md` and the figures exactly as a single-process sweep does.

use std::path::{Path, PathBuf};

use crate::cluster::{self, Shard, ShardError};
use crate::report::read_json;
use crate::theory::commands::{self, open_sweep, progress, sweep_files};
use crate::theory::config::TheoryConfig;
use crate::theory::run::{cell_file, run_jobs, Condition, RunResult};
use crate::theory::study::Study;
use crate::theory::TheoryError;

/// Writes the sweep's folder (`config.toml`, `study.toml`) without running anything.
pub fn prepare(
    cfg: &TheoryConfig,
    study: &Study,
    out: &Path,
    fresh: bool,
) -> Result<PathBuf, TheoryError> {
    Ok(open_sweep(cfg, study, out, fresh)?.1.root().to_path_buf())
}

/// The runs of the sweep, each a condition of the grid (its position in [`Study::jobs`]) at a
/// seed.
fn runs(base: &TheoryConfig, study: &Study) -> Result<Vec<(usize, Condition, u64)>, TheoryError> {
    let conds: Vec<Condition> = study.jobs()?.into_iter().map(|j| j.2).collect();
    Ok(conds
        .iter()
        .enumerate()
        .flat_map(|(i, c)| base.seeds.iter().map(move |&s| (i, c.clone(), s)))
        .collect())
}

/// Runs (or resumes) the runs that `shard` owns into `out/shards/I-of-N`. Refuses a sweep
/// folder `out` prepared for another config or study. Returns the shard's folder.
pub fn run_shard(
    cfg: &TheoryConfig,
    study: &Study,
    out: &Path,
    fresh: bool,
    shard: Shard,
) -> Result<PathBuf, TheoryError> {
    // a sweep folder prepared for another sweep is refused before anything runs
    for (name, text) in sweep_files(cfg, study)?.1 {
        let saved = out.join(name);
        if std::fs::read_to_string(&saved).is_ok_and(|t| t != text) {
            return Err(ShardError::OtherPreparation {
                file: name.to_string(),
                dir: out.to_path_buf(),
            }
            .into());
        }
    }
    let (base, dir) = open_sweep(cfg, study, &shard.dir(out), fresh)?;
    let all = runs(&base, study)?;
    let mine: Vec<(&Condition, u64)> = all
        .iter()
        .filter(|(i, _, s)| shard.owns(*i, *s))
        .map(|(_, c, s)| (c, *s))
        .collect();
    let pb = progress(&format!("sweep {} shard {shard}", study.name));
    run_jobs(&base, &mine, &study.readouts, Some(&dir.path("cells")), &pb)?;
    pb.finish();
    Ok(dir.root().to_path_buf())
}

/// Merges the shards of the sweep folder `root` (every `root/shards/*`, and the shard folders
/// `extra`) into it: refuses shards of another config or study, a run saved twice with
/// different results, or a missing run (naming the shard that owns it); then writes the
/// sweep's reports. A `root` that was never prepared takes its config from the shards.
pub fn merge(root: &Path, extra: &[PathBuf]) -> Result<PathBuf, TheoryError> {
    let mut dirs = cluster::shard_dirs(root)?;
    for d in extra {
        if !dirs.contains(d) {
            dirs.push(d.clone());
        }
    }
    cluster::check_same_files(root, &dirs, &["config.toml", "study.toml"])?;
    let base: TheoryConfig = crate::config::load_file(&root.join("config.toml"), &[])?;
    let study_path = root.join("study.toml");
    let text = std::fs::read_to_string(&study_path)
        .map_err(|e| TheoryError::Study(format!("{}: {e}", study_path.display())))?;
    let study = Study::from_toml(&text, &study_path.display().to_string())?;
    cluster::merge_cells(root, &dirs, "cells", &cluster::same_bytes)?;
    let shards = dirs
        .iter()
        .filter_map(|d| Shard::from_dir(d))
        .map(|s| s.count())
        .max()
        .unwrap_or(1);
    let runs = runs(&base, &study)?;
    let expected = runs
        .iter()
        .map(|(i, c, s)| {
            let stem = cell_file(&c.name, *s).trim_end_matches(".json").to_string();
            Ok((stem, Shard::owner(*i, *s, shards)?))
        })
        .collect::<Result<Vec<_>, ShardError>>()?;
    cluster::check_complete(root, "cells", &expected)?;
    // every run must read back as itself, so that the sweep below trains nothing
    for (_, c, s) in &runs {
        let p = root.join("cells").join(cell_file(&c.name, *s));
        let r: RunResult = read_json(&p)?;
        if r.condition != c.name || r.seed != *s {
            return Err(TheoryError::Study(format!(
                "{}: holds the run of '{}' at seed {}, not of '{}' at seed {s}",
                p.display(),
                r.condition,
                r.seed,
                c.name
            )));
        }
    }
    commands::sweep(&base, &study, root, false)
}
