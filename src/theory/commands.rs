//! The `theory-sim` commands as library functions (the binary only parses arguments):
//! `verify` (run the claims), `sweep` (a study over a grid), `plot` (figures from saved
//! results) and `bench` (the SGD-step benchmark). Each writes a results folder holding the
//! resolved config and seeds, every finished run as it completes (so a killed command resumes),
//! CSV/JSON/Markdown summaries and SVG figures.

use crate::report::{read_json, MarkdownTable, MeanSd, Progress, ResultsDir};
use crate::theory::claims::{evaluate, verdict_table, ClaimsFile, Verdict};
use crate::theory::config::TheoryConfig;
use crate::theory::figures;
use crate::theory::readout::Readout;
use crate::theory::study::{remaining_steps, run_grid, Condition, RunResult};
use crate::theory::sweep::{Study, SweepRow};
use crate::theory::TheoryError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Progress over SGD steps with an ETA (a bar on a terminal, plain lines otherwise).
pub fn progress(total: u64, what: &str) -> Progress {
    let pb = Progress::new(total, "steps", true);
    pb.set_message(what);
    pb
}

/// Opens the results folder `out` for `resolved` (see [`ResultsDir::prepare`]; the saved runs
/// are in `cells/`).
pub fn prepare_dir(out: &Path, resolved: &str, fresh: bool) -> Result<ResultsDir, TheoryError> {
    Ok(ResultsDir::prepare(out, resolved, fresh, &["cells"])?)
}

/// One row of `errors.csv`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorRow {
    /// Condition.
    pub condition: String,
    /// Seed.
    pub seed: u64,
    /// Pretraining classes.
    pub classes: usize,
    /// Readout.
    pub readout: String,
    /// Easy-sample coarse error.
    pub easy: f64,
    /// Hard-sample coarse error.
    pub hard: f64,
    /// Final common_max.
    pub common_max: f64,
    /// Final fine_max.
    pub fine_max: f64,
    /// Init level.
    pub init_level: f64,
}

fn error_rows(results: &[RunResult]) -> Vec<ErrorRow> {
    let mut rows = Vec::new();
    for r in results {
        for (ro, e) in &r.errors {
            rows.push(ErrorRow {
                condition: r.condition.clone(),
                seed: r.seed,
                classes: r.classes,
                readout: ro.name().into(),
                easy: e.easy,
                hard: e.hard,
                common_max: r.responses.common_max,
                fine_max: r.responses.fine_max,
                init_level: r.init_level,
            });
        }
    }
    rows
}

/// Mean ± sd per condition of every readout's easy/hard error and the responses.
pub fn summary_table(results: &[RunResult], conds: &[Condition]) -> MarkdownTable {
    let mut header = vec![
        "condition".to_string(),
        "classes".into(),
        "common_max".into(),
        "fine_max".into(),
    ];
    for ro in Readout::PRETRAINED {
        header.push(format!("{} easy", ro.name()));
        header.push(format!("{} hard", ro.name()));
    }
    let mut t = MarkdownTable::new(header);
    for c in conds {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.condition == c.name).collect();
        if runs.is_empty() {
            continue;
        }
        let f = |g: &dyn Fn(&RunResult) -> f64| {
            format!(
                "{:.3}",
                MeanSd::of(&runs.iter().map(|r| g(r)).collect::<Vec<_>>())
            )
        };
        let mut row = vec![
            c.name.clone(),
            runs[0].classes.to_string(),
            f(&|r| r.responses.common_max),
            f(&|r| r.responses.fine_max),
        ];
        for ro in Readout::PRETRAINED {
            if runs.iter().all(|r| r.errors.contains_key(&ro)) {
                row.push(f(&|r| r.errors[&ro].easy));
                row.push(f(&|r| r.errors[&ro].hard));
            } else {
                row.push("n/a".into());
                row.push("n/a".into());
            }
        }
        t.row(row);
    }
    t
}

/// What `verify` produced.
#[derive(Debug)]
pub struct VerifyOutcome {
    /// One verdict per claim.
    pub verdicts: Vec<Verdict>,
    /// The results folder.
    pub dir: PathBuf,
    /// The verdict table (Markdown).
    pub table: String,
}

/// Run every condition of the claims file at every seed and evaluate the claims.
pub fn verify(
    cfg: &TheoryConfig,
    claims_md: &str,
    claims_origin: &str,
    out: &Path,
    fresh: bool,
    with_figures: bool,
) -> Result<VerifyOutcome, TheoryError> {
    let claims = ClaimsFile::from_markdown(claims_md, claims_origin)?;
    if cfg.seeds.len() < claims.min_seeds {
        return Err(TheoryError::Study(format!(
            "field 'seeds': {claims_origin} needs at least {} seeds, the config has {}",
            claims.min_seeds,
            cfg.seeds.len()
        )));
    }
    let dir = prepare_dir(out, &crate::config::to_toml(cfg)?, fresh)?;
    dir.write_text("claims.md", claims_md)?;
    let cells = dir.path("cells");
    let total = remaining_steps(cfg, &claims.condition, Some(&cells))?;
    let pb = progress(total, "verify");
    let results = run_grid(
        cfg,
        &claims.condition,
        &Readout::PRETRAINED,
        Some(&cells),
        &|| pb.inc(1),
    )?;
    pb.finish();
    let verdicts = evaluate(&claims, &results, &cfg.seeds);
    let table = verdict_table(&verdicts).to_string();
    dir.write_json("verdicts.json", &verdicts)?;
    dir.write_text(
        "verdicts.md",
        &format!(
            "# Claims verdicts\n\nConfig: `config.toml` in this folder; seeds {:?}; claims from `{}`.\n\n{}\n## Per condition (mean ± sd over seeds)\n\n{}",
            cfg.seeds,
            claims_origin,
            table,
            summary_table(&results, &claims.condition)
        ),
    )?;
    dir.write_csv("errors.csv", &error_rows(&results))?;
    if with_figures {
        figures::verify_figures(&results, cfg, &dir)?;
    }
    Ok(VerifyOutcome {
        verdicts,
        dir: dir.root().to_path_buf(),
        table,
    })
}

/// Opens the results folder `out` of the sweep `study`: saves the resolved config (the study's
/// own overrides, e.g. its seeds, applied to `cfg`) and `study.toml`. Returns the config the
/// runs use and the folder.
pub fn open_sweep(
    cfg: &TheoryConfig,
    study: &Study,
    out: &Path,
    fresh: bool,
) -> Result<(TheoryConfig, ResultsDir), TheoryError> {
    let (base, [(_, config), (study_file, study)]) = sweep_files(cfg, study)?;
    let dir = prepare_dir(out, &config, fresh)?;
    dir.write_text(study_file, &study)?;
    Ok((base, dir))
}

/// The files that identify a sweep, by name with their text: `config.toml` and `study.toml`.
pub type SweepFiles = [(&'static str, String); 2];

/// The config the runs of the sweep `study` use (the study's own overrides applied to `cfg`),
/// and the files that identify the sweep.
pub fn sweep_files(
    cfg: &TheoryConfig,
    study: &Study,
) -> Result<(TheoryConfig, SweepFiles), TheoryError> {
    let base = cfg.with_overrides(&format!("study '{}'", study.name), &study.set)?;
    let config = crate::config::to_toml(&base)?;
    let study = toml::to_string_pretty(study).map_err(|e| TheoryError::Study(e.to_string()))?;
    Ok((base, [("config.toml", config), ("study.toml", study)]))
}

/// Run a sweep study; returns the results folder.
pub fn sweep(
    cfg: &TheoryConfig,
    study: &Study,
    out: &Path,
    fresh: bool,
) -> Result<PathBuf, TheoryError> {
    let (base, dir) = open_sweep(cfg, study, out, fresh)?;
    let jobs = study.jobs()?;
    let conds: Vec<Condition> = jobs.iter().map(|j| j.2.clone()).collect();
    let cells = dir.path("cells");
    let total = remaining_steps(&base, &conds, Some(&cells))?;
    let pb = progress(total, &format!("sweep {}", study.name));
    let results = run_grid(&base, &conds, &study.readouts, Some(&cells), &|| pb.inc(1))?;
    pb.finish();
    let rows = study.rows(&jobs, &results);
    dir.write_csv("sweep.csv", &rows)?;
    write_sweep_outputs(study, &rows, &dir)?;
    Ok(dir.root().to_path_buf())
}

/// Mean ± sd over seeds per (cell, condition, readout) of a sweep, in row order of first
/// appearance.
pub fn sweep_summary(rows: &[SweepRow]) -> MarkdownTable {
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for r in rows {
        let k = (r.cell.clone(), r.condition.clone(), r.readout.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut t = MarkdownTable::new([
        "cell",
        "condition",
        "classes",
        "readout",
        "easy error",
        "hard error",
        "common_max",
        "fine_max",
        "seeds",
    ]);
    for (cell, cond, ro) in keys {
        let sel: Vec<&SweepRow> = rows
            .iter()
            .filter(|r| r.cell == cell && r.condition == cond && r.readout == ro)
            .collect();
        let f = |g: &dyn Fn(&SweepRow) -> f64| {
            format!(
                "{:.3}",
                MeanSd::of(&sel.iter().map(|r| g(r)).collect::<Vec<_>>())
            )
        };
        t.row([
            cell.clone(),
            cond.clone(),
            sel[0].classes.to_string(),
            ro.clone(),
            f(&|r| r.easy),
            f(&|r| r.hard),
            f(&|r| r.common_max),
            f(&|r| r.fine_max),
            sel.len().to_string(),
        ]);
    }
    t
}

fn write_sweep_outputs(
    study: &Study,
    rows: &[SweepRow],
    dir: &ResultsDir,
) -> Result<Vec<PathBuf>, TheoryError> {
    let mut files = vec![dir.write_text(
        "summary.md",
        &format!(
            "# Sweep '{}'\n\n{}\n\nMean ± sd over seeds; config in `config.toml`, study in `study.toml`, rows in `sweep.csv`.\n\n{}",
            study.name,
            study.description,
            sweep_summary(rows)
        ),
    )?];
    files.extend(figures::sweep_figures(study, rows, dir)?);
    Ok(files)
}

/// Redraw the figures of a `verify` or `sweep` results folder from its saved files.
pub fn replot(dir: &Path) -> Result<Vec<PathBuf>, TheoryError> {
    let rd = ResultsDir::create(dir)?;
    let cfg: TheoryConfig = crate::config::load_file(&rd.path("config.toml"), &[])?;
    if rd.path("study.toml").exists() {
        let text = std::fs::read_to_string(rd.path("study.toml"))
            .map_err(|e| TheoryError::Study(format!("{}: {e}", rd.path("study.toml").display())))?;
        let study = Study::from_toml(&text, &rd.path("study.toml").display().to_string())?;
        let rows: Vec<SweepRow> = crate::report::read_csv(&rd.path("sweep.csv"))?;
        return write_sweep_outputs(&study, &rows, &rd);
    }
    let cells = rd.path("cells");
    let mut results = Vec::new();
    let entries = std::fs::read_dir(&cells)
        .map_err(|e| TheoryError::Study(format!("{}: {e}", cells.display())))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.extension().is_some_and(|x| x == "json") {
            results.push(read_json::<RunResult>(&p)?);
        }
    }
    if results.is_empty() {
        return Err(TheoryError::Study(format!(
            "{}: no saved runs to plot",
            cells.display()
        )));
    }
    figures::verify_figures(&results, &cfg, &rd)
}
