//! A sweep's folder and a sweep spread over shards ([`crate::cluster`]): the files that identify
//! a sweep and its folder ([`open_sweep`]), the preparation (the sweep's folder with its
//! resolved config and `study.toml`), the runs of one shard (into `OUT/shards/I-of-N`), and the
//! merge, which gathers the shards' runs into the sweep's folder; the merge command then runs
//! the sweep itself ([`crate::theory::commands::merge_command`]): with every run saved it trains
//! nothing and writes `sweep.csv`, `summary.md` and the figures exactly as a single-process
//! sweep does.

use std::path::{Path, PathBuf};

use crate::cluster::{self, Shard, ShardError};
use crate::report::read_json;
use crate::report::ResultsDir;
use crate::theory::config::TheoryConfig;
use crate::theory::run::{cell_file, prepare_dir, progress, run_jobs, Condition, RunResult};
use crate::theory::sweep::Sweep;
use crate::theory::TheoryError;

/// Opens the results folder `out` of `sweep`: saves the resolved config (the sweep's
/// own overrides, e.g. its seeds, applied to `cfg`) and `study.toml`. Returns the config the
/// runs use and the folder.
pub fn open_sweep(
    cfg: &TheoryConfig,
    sweep: &Sweep,
    out: &Path,
    fresh: bool,
) -> Result<(TheoryConfig, ResultsDir), TheoryError> {
    let (base, [(_, config), (sweep_file, sweep)]) = sweep_files(cfg, sweep)?;
    let dir = prepare_dir(out, &config, fresh)?;
    dir.write_text(sweep_file, &sweep)?;
    Ok((base, dir))
}

/// The files that identify a sweep, by name with their text: `config.toml` and `study.toml`.
pub type SweepFiles = [(&'static str, String); 2];

/// The config the runs of `sweep` use (the sweep's own overrides applied to `cfg`),
/// and the files that identify the sweep.
pub fn sweep_files(
    cfg: &TheoryConfig,
    sweep: &Sweep,
) -> Result<(TheoryConfig, SweepFiles), TheoryError> {
    let base = cfg.with_overrides(&format!("sweep '{}'", sweep.name), &sweep.set)?;
    let config = crate::config::to_toml(&base)?;
    let sweep = toml::to_string_pretty(sweep).map_err(|e| TheoryError::Invalid(e.to_string()))?;
    Ok((base, [("config.toml", config), ("study.toml", sweep)]))
}

/// Writes the sweep's folder (`config.toml`, `study.toml`) without running anything.
pub fn prepare(
    cfg: &TheoryConfig,
    sweep: &Sweep,
    out: &Path,
    fresh: bool,
) -> Result<PathBuf, TheoryError> {
    Ok(open_sweep(cfg, sweep, out, fresh)?.1.root().to_path_buf())
}

/// The runs of the sweep, each a condition of the grid (its position in [`Sweep::jobs`]) at a
/// seed.
fn runs(base: &TheoryConfig, sweep: &Sweep) -> Result<Vec<(usize, Condition, u64)>, TheoryError> {
    let conds: Vec<Condition> = sweep.jobs()?.into_iter().map(|j| j.2).collect();
    Ok(conds
        .iter()
        .enumerate()
        .flat_map(|(i, c)| base.seeds.iter().map(move |&s| (i, c.clone(), s)))
        .collect())
}

/// Runs (or resumes) the runs that `shard` owns into `out/shards/I-of-N`. Refuses a sweep
/// folder `out` prepared for another config or sweep. Returns the shard's folder.
pub fn run_shard(
    cfg: &TheoryConfig,
    sweep: &Sweep,
    out: &Path,
    fresh: bool,
    shard: Shard,
) -> Result<PathBuf, TheoryError> {
    // a sweep folder prepared for another sweep is refused before anything runs
    for (name, text) in sweep_files(cfg, sweep)?.1 {
        let saved = out.join(name);
        if std::fs::read_to_string(&saved).is_ok_and(|t| t != text) {
            return Err(ShardError::OtherPreparation {
                file: name.to_string(),
                dir: out.to_path_buf(),
            }
            .into());
        }
    }
    let (base, dir) = open_sweep(cfg, sweep, &shard.dir(out), fresh)?;
    let all = runs(&base, sweep)?;
    let mine: Vec<(&Condition, u64)> = all
        .iter()
        .filter(|(i, _, s)| shard.owns(*i, *s))
        .map(|(_, c, s)| (c, *s))
        .collect();
    let pb = progress(&format!("sweep {} shard {shard}", sweep.name));
    run_jobs(&base, &mine, &sweep.readouts, Some(&dir.path("cells")), &pb)?;
    pb.finish();
    Ok(dir.root().to_path_buf())
}

/// Merges the shards of the sweep folder `root` (every `root/shards/*`, and the shard folders
/// `extra`) into it: refuses shards of another config or sweep, a run saved twice with
/// different results, or a missing run (naming the shard that owns it). A `root` that was never
/// prepared takes its config from the shards. Returns the sweep's config and definition, whose
/// runs are now all in `root`.
pub fn merge(root: &Path, extra: &[PathBuf]) -> Result<(TheoryConfig, Sweep), TheoryError> {
    let dirs = cluster::merge_dirs(root, extra)?;
    cluster::check_same_files(root, &dirs, &["config.toml", "study.toml"])?;
    let base: TheoryConfig = crate::config::load_file(&root.join("config.toml"), &[])?;
    let sweep_path = root.join("study.toml");
    let text = std::fs::read_to_string(&sweep_path)
        .map_err(|e| TheoryError::Invalid(format!("{}: {e}", sweep_path.display())))?;
    let sweep = Sweep::from_toml(&text, &sweep_path.display().to_string())?;
    cluster::merge_cells(root, &dirs, "cells", &cluster::same_bytes)?;
    let shards = cluster::shard_count(&dirs);
    let runs = runs(&base, &sweep)?;
    let expected = runs
        .iter()
        .map(|(i, c, s)| {
            let stem = cell_file(&c.name, *s).trim_end_matches(".json").to_string();
            Ok((stem, Shard::owner(*i, *s, shards)?))
        })
        .collect::<Result<Vec<_>, ShardError>>()?;
    cluster::check_complete(root, "cells", &expected)?;
    // every run must read back as itself, so that running the sweep trains nothing
    for (_, c, s) in &runs {
        let p = root.join("cells").join(cell_file(&c.name, *s));
        let r: RunResult = read_json(&p)?;
        if r.condition != c.name || r.seed != *s {
            return Err(TheoryError::Invalid(format!(
                "{}: holds the run of '{}' at seed {}, not of '{}' at seed {s}",
                p.display(),
                r.condition,
                r.seed,
                c.name
            )));
        }
    }
    Ok((base, sweep))
}
