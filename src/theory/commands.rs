//! The `theory-sim` commands as library functions, one per subcommand (the binary only parses
//! arguments and prints what they return): [`verify_command`] (run the claims), [`sweep_command`]
//! (a sweep over a grid, whole or as its preparation or one shard), [`merge_command`],
//! [`slurm_command`], [`list_sweeps`], [`replot`] and [`bench_command`] (the SGD-step
//! benchmark). Each writes a results folder holding the resolved config and seeds, every
//! finished run as it completes (so a killed command resumes), CSV/JSON/Markdown summaries and
//! SVG figures.

use crate::cluster::{self, JobSet, Shard, SlurmArgs};
use crate::hierarchy::Relabeling;
use crate::report::{read_json, MarkdownTable, MeanSd, ResultsDir};
use crate::theory::bench;
use crate::theory::claims::{evaluate, verdict_table, ClaimsFile, Outcome, Verdict, CLAIMS_MD};
use crate::theory::config::{ActivationConfig, TheoryConfig, DEFAULT_TOML};
use crate::theory::figures;
use crate::theory::readout::Readout;
use crate::theory::run::{prepare_dir, progress, run_grid, Condition, RunResult};
use crate::theory::sharding::{self, open_sweep};
use crate::theory::sweep::{axis_from_arg, Sweep, SweepRow, BUILT_IN};
use crate::theory::TheoryError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// SGD steps taken.
    pub steps: usize,
    /// Whether training converged.
    pub converged: bool,
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
                steps: r.steps,
                converged: r.converged,
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
        "steps".into(),
        "converged".into(),
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
            format!(
                "{:.0}",
                MeanSd::of(&runs.iter().map(|r| r.steps as f64).collect::<Vec<_>>())
            ),
            format!(
                "{}/{}",
                runs.iter().filter(|r| r.converged).count(),
                runs.len()
            ),
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

impl VerifyOutcome {
    /// The ids of the claims with the given outcome.
    pub fn with(&self, outcome: Outcome) -> Vec<&str> {
        self.verdicts
            .iter()
            .filter(|v| v.outcome == outcome)
            .map(|v| v.id.as_str())
            .collect()
    }
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
        return Err(TheoryError::Invalid(format!(
            "field 'seeds': {claims_origin} needs at least {} seeds, the config has {}",
            claims.min_seeds,
            cfg.seeds.len()
        )));
    }
    let dir = prepare_dir(out, &crate::config::to_toml(cfg)?, fresh)?;
    dir.write_text("claims.md", claims_md)?;
    let cells = dir.path("cells");
    let pb = progress("verify");
    let results = run_grid(
        cfg,
        &claims.condition,
        &Readout::PRETRAINED,
        Some(&cells),
        &pb,
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

/// Run a sweep; returns the results folder.
pub fn sweep(
    cfg: &TheoryConfig,
    sweep: &Sweep,
    out: &Path,
    fresh: bool,
) -> Result<PathBuf, TheoryError> {
    let (base, dir) = open_sweep(cfg, sweep, out, fresh)?;
    let jobs = sweep.jobs()?;
    let conds: Vec<Condition> = jobs.iter().map(|j| j.2.clone()).collect();
    let cells = dir.path("cells");
    let pb = progress(&format!("sweep {}", sweep.name));
    let results = run_grid(&base, &conds, &sweep.readouts, Some(&cells), &pb)?;
    pb.finish();
    let rows = sweep.rows(&jobs, &results);
    dir.write_csv("sweep.csv", &rows)?;
    write_sweep_outputs(sweep, &rows, &base, &dir)?;
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
        "steps",
        "converged",
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
            format!(
                "{:.0}",
                MeanSd::of(&sel.iter().map(|r| r.steps as f64).collect::<Vec<_>>())
            ),
            format!(
                "{}/{}",
                sel.iter().filter(|r| r.converged).count(),
                sel.len()
            ),
        ]);
    }
    t
}

fn write_sweep_outputs(
    sweep: &Sweep,
    rows: &[SweepRow],
    cfg: &TheoryConfig,
    dir: &ResultsDir,
) -> Result<Vec<PathBuf>, TheoryError> {
    let mut files = vec![dir.write_text(
        "summary.md",
        &format!(
            "# Sweep '{}'\n\n{}\n\nMean ± sd over seeds; config in `config.toml`, study in `study.toml`, rows in `sweep.csv`.\n\n{}",
            sweep.name,
            sweep.description,
            sweep_summary(rows)
        ),
    )?];
    files.extend(figures::sweep_figures(sweep, rows, cfg, dir)?);
    Ok(files)
}

/// `theory-sim plot`: [`replot`], one line per figure written.
pub fn plot_command(dir: &Path) -> Result<String, TheoryError> {
    let files: Vec<String> = replot(dir)?
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    Ok(files.join("\n"))
}

/// Redraw the figures of a `verify` or `sweep` results folder from its saved files.
pub fn replot(dir: &Path) -> Result<Vec<PathBuf>, TheoryError> {
    let rd = ResultsDir::create(dir)?;
    let cfg: TheoryConfig = crate::config::load_file(&rd.path("config.toml"), &[])?;
    if rd.path("study.toml").exists() {
        let text = std::fs::read_to_string(rd.path("study.toml")).map_err(|e| {
            TheoryError::Invalid(format!("{}: {e}", rd.path("study.toml").display()))
        })?;
        let sweep = Sweep::from_toml(&text, &rd.path("study.toml").display().to_string())?;
        let rows: Vec<SweepRow> = crate::report::read_csv(&rd.path("sweep.csv"))?;
        return write_sweep_outputs(&sweep, &rows, &cfg, &rd);
    }
    let cells = rd.path("cells");
    let mut results = Vec::new();
    let entries = std::fs::read_dir(&cells)
        .map_err(|e| TheoryError::Invalid(format!("{}: {e}", cells.display())))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.extension().is_some_and(|x| x == "json") {
            results.push(read_json::<RunResult>(&p)?);
        }
    }
    if results.is_empty() {
        return Err(TheoryError::Invalid(format!(
            "{}: no saved runs to plot",
            cells.display()
        )));
    }
    figures::verify_figures(&results, &cfg, &rd)
}

/// The config of a command: the file `config`, else the embedded
/// `experiments/theory/default.toml`, with the overrides `set`.
pub fn load_config(config: Option<&Path>, set: &[String]) -> Result<TheoryConfig, TheoryError> {
    Ok(match config {
        Some(p) => crate::config::load_file(p, set)?,
        None => crate::config::load_str(
            DEFAULT_TOML,
            "<embedded experiments/theory/default.toml>",
            set,
        )?,
    })
}

/// `theory-sim verify`: runs the claims of `claims` (default: the shipped `theory/CLAIMS.md`)
/// into `out` (default: the config's `out_dir/verify`). Returns what to print and whether every
/// claim passed (none failed, none without a verdict).
pub fn verify_command(
    cfg: &TheoryConfig,
    claims: Option<&Path>,
    out: Option<&Path>,
    fresh: bool,
    with_figures: bool,
) -> Result<(String, bool), TheoryError> {
    let (md, origin) = match claims {
        Some(p) => (
            std::fs::read_to_string(p)
                .map_err(|e| TheoryError::Invalid(format!("reading {}: {e}", p.display())))?,
            p.display().to_string(),
        ),
        None => (CLAIMS_MD.to_string(), "theory/CLAIMS.md".to_string()),
    };
    let out = out.map_or_else(
        || PathBuf::from(&cfg.out_dir).join("verify"),
        Path::to_path_buf,
    );
    let t = std::time::Instant::now();
    let v = verify(cfg, &md, &origin, &out, fresh, with_figures)?;
    let mut text = format!("{}\n", v.table);
    let (failed, open) = (v.with(Outcome::Fail), v.with(Outcome::NotConverged));
    text.push_str(&format!(
        "{} of {} claims pass over seeds {:?} ({:.0} s). Results and figures: {}",
        v.with(Outcome::Pass).len(),
        v.verdicts.len(),
        cfg.seeds,
        t.elapsed().as_secs_f64(),
        v.dir.display()
    ));
    if !failed.is_empty() {
        text.push_str(&format!(
            "\nClaims that do not hold in this model (findings, see theory/CLAIMS.md): {}",
            failed.join(", ")
        ));
    }
    if !open.is_empty() {
        text.push_str(&format!(
            "\nNo verdict, a run they read hit train.max_steps before converging: {}",
            open.join(", ")
        ));
    }
    Ok((text, failed.is_empty() && open.is_empty()))
}

/// Which sweep to run: a built-in one, a sweep file, or one or two `--param` axes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SweepSpec {
    /// Built-in sweep name (see `theory-sim sweeps`).
    #[arg(long, visible_alias = "study", conflicts_with_all = ["sweep_file", "param"])]
    pub sweep: Option<String>,
    /// Sweep TOML file.
    #[arg(long, visible_alias = "study-file", conflicts_with = "param")]
    pub sweep_file: Option<PathBuf>,
    /// An axis KEY=V1,V2,... (one or two), e.g. --param data.hard_noise=0.5,1,2.
    #[arg(long)]
    pub param: Vec<String>,
}

impl SweepSpec {
    /// The sweep it names.
    pub fn sweep(&self) -> Result<Sweep, TheoryError> {
        if let Some(name) = &self.sweep {
            return Sweep::built_in(name);
        }
        if let Some(p) = &self.sweep_file {
            let text = std::fs::read_to_string(p)
                .map_err(|e| TheoryError::Invalid(format!("reading {}: {e}", p.display())))?;
            return Sweep::from_toml(&text, &p.display().to_string());
        }
        if self.param.is_empty() {
            return Err(TheoryError::Invalid(
                "sweep needs --sweep NAME, --sweep-file FILE or --param KEY=V1,V2,...".into(),
            ));
        }
        if self.param.len() > 2 {
            return Err(TheoryError::Invalid("--param: at most two axes".into()));
        }
        let axis = self
            .param
            .iter()
            .map(|p| axis_from_arg(p))
            .collect::<Result<Vec<_>, _>>()?;
        let name = axis
            .iter()
            .map(|a| a.key.clone())
            .collect::<Vec<_>>()
            .join("_x_");
        Ok(Sweep {
            name: crate::report::file_safe(&name),
            description: format!("sweep of {}", self.param.join(" and ")),
            set: vec![],
            readouts: Readout::PRETRAINED.to_vec(),
            condition: vec![
                Condition::new("coarse", Relabeling::Level { level: 0 }),
                Condition::new("fine", Relabeling::Level { level: 1 }),
            ],
            axis,
            pair: vec![],
        })
    }

    /// The same options as arguments (paths made absolute), for the jobs of a cluster.
    pub fn args(&self) -> Result<Vec<String>, TheoryError> {
        let mut a = Vec::new();
        if let Some(n) = &self.sweep {
            a.extend(["--sweep".into(), n.clone()]);
        }
        if let Some(p) = &self.sweep_file {
            a.extend(["--sweep-file".into(), cluster::slurm::path_arg(p)?]);
        }
        for p in &self.param {
            a.extend(["--param".into(), p.clone()]);
        }
        Ok(a)
    }
}

/// The results folder of `sweep`: `out`, else the config's `out_dir/sweeps/NAME`.
pub fn sweep_out(out: Option<&Path>, cfg: &TheoryConfig, sweep: &Sweep) -> PathBuf {
    out.map_or_else(
        || PathBuf::from(&cfg.out_dir).join("sweeps").join(&sweep.name),
        Path::to_path_buf,
    )
}

/// Which part of a sweep `theory-sim sweep` runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SweepPart {
    /// Every run, then the results and figures.
    Whole,
    /// Only the sweep's folder (config and definition) that the shards and the merge check.
    Prepare,
    /// The runs of one shard, into `OUT/shards/I-of-N`.
    Shard(Shard),
}

/// `theory-sim sweep`: `part` of the sweep `spec` names, into `out` (see [`sweep_out`]).
/// Returns what to print.
pub fn sweep_command(
    cfg: &TheoryConfig,
    spec: &SweepSpec,
    out: Option<&Path>,
    fresh: bool,
    part: SweepPart,
) -> Result<String, TheoryError> {
    let sw = spec.sweep()?;
    let out = sweep_out(out, cfg, &sw);
    Ok(match part {
        SweepPart::Prepare => {
            let dir = sharding::prepare(cfg, &sw, &out, fresh)?;
            format!(
                "sweep '{}' prepared in {}: the shards can run (--shard I/N)",
                sw.name,
                dir.display()
            )
        }
        SweepPart::Shard(s) => {
            let dir = sharding::run_shard(cfg, &sw, &out, fresh, s)?;
            format!(
                "sweep '{}' shard {s} done in {}; once every shard is: theory-sim merge {}",
                sw.name,
                dir.display(),
                out.display()
            )
        }
        SweepPart::Whole => {
            let dir = sweep(cfg, &sw, &out, fresh)?;
            format!(
                "sweep '{}' done: results and figures in {}",
                sw.name,
                dir.display()
            )
        }
    })
}

/// `theory-sim merge`: the shards of the sweep folder `dir` (and the shard folders `shards`)
/// merged into it, with its results and figures. Returns what to print.
pub fn merge_command(dir: &Path, shards: &[PathBuf]) -> Result<String, TheoryError> {
    let (base, sw) = sharding::merge(dir, shards)?;
    let dir = sweep(&base, &sw, dir, false)?;
    Ok(format!(
        "shards merged: results and figures in {}",
        dir.display()
    ))
}

/// `theory-sim slurm`: the sweep `spec` names as Slurm jobs (see [`cluster::slurm`]); every
/// job runs the binary with the same config file `config`, overrides `set`, results folder and
/// sweep. Returns what to print.
pub fn slurm_command(
    cfg: &TheoryConfig,
    config: Option<&Path>,
    set: &[String],
    spec: &SweepSpec,
    out: Option<&Path>,
    args: &SlurmArgs,
) -> Result<String, TheoryError> {
    let sw = spec.sweep()?;
    let out = sweep_out(out, cfg, &sw);
    if let Some(g) = args.gpus_per_task {
        return Err(cluster::ShardError::Slurm(format!(
            "--gpus-per-task {g}: theory-sim runs on the CPU, so the jobs would hold GPUs and \
             not use them; drop --gpus-per-task"
        ))
        .into());
    }
    args.check(false)?;
    let mut shard = vec![args.binary()?.to_string_lossy().into_owned()];
    if let Some(c) = config {
        shard.extend(["--config".into(), cluster::slurm::path_arg(c)?]);
    }
    for s in set {
        shard.extend(["--set".into(), s.clone()]);
    }
    shard.extend(["--out".into(), cluster::slurm::path_arg(&out)?]);
    shard.push("sweep".into());
    shard.extend(spec.args()?);
    let jobs = JobSet::new(&sw.name, shard, &out)?;
    Ok(cluster::deploy(&jobs, args, &out, "sweep")?)
}

/// `theory-sim sweeps`: the built-in sweeps, one per line with what each asks.
pub fn list_sweeps() -> Result<String, TheoryError> {
    let mut lines = Vec::new();
    for (name, _) in BUILT_IN {
        let s = Sweep::built_in(name)?;
        lines.push(format!("{name:16} {}", s.description));
    }
    Ok(lines.join("\n"))
}

/// `theory-sim bench`: `rounds` rounds of `steps` SGD steps per side and mode, for the plain
/// ReLU and the config's activation, against the NumPy step of `numpy` (none: Rust only).
/// Returns the report.
pub fn bench_command(
    cfg: &TheoryConfig,
    rounds: usize,
    steps: usize,
    numpy: Option<&Path>,
) -> Result<String, TheoryError> {
    let b = bench::BenchConfig {
        rounds,
        steps,
        ..Default::default()
    };
    let mut acts = vec![ActivationConfig::Relu];
    if cfg.net.activation != ActivationConfig::Relu {
        acts.push(cfg.net.activation);
    }
    let mut threads = vec![1, rayon::current_num_threads()];
    threads.dedup();
    let r = bench::run(&b, &acts, numpy, &threads)?;
    Ok(bench::report(&b, &r))
}
