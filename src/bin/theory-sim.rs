//! `theory-sim`: the CPU simulation of the paper's theory. With no arguments it runs `verify`
//! on the embedded default config and writes its results and figures. See `--help`.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use granularity::cluster::slurm::{absolute, write_scripts, JobSet};
use granularity::cluster::{Shard, SlurmArgs};
use granularity::hierarchy::Relabeling;
use granularity::theory::claims::{Outcome, CLAIMS_MD};
use granularity::theory::commands;
use granularity::theory::config::{ActivationConfig, TheoryConfig, DEFAULT_TOML};
use granularity::theory::run::Condition;
use granularity::theory::study::{axis_from_arg, Study, BUILT_IN};
use granularity::theory::{bench, readout::Readout, sharding};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "theory-sim",
    version,
    about = "Simulate coarse vs fine pretraining in a two-layer conv net on hierarchical multi-view data"
)]
struct Cli {
    /// Config file (TOML); default: the embedded experiments/theory/default.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Override a config field, e.g. --set train.lr=0.5 --set data.dim=128 (repeatable; values are TOML).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    set: Vec<String>,
    /// Results folder (default: the config's out_dir).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Discard saved results of a different config in the results folder.
    #[arg(long, global = true)]
    fresh: bool,
    /// Worker threads (default: all cores). Results are the same bits for any count.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every claim of theory/CLAIMS.md over the config's seeds and print the verdicts.
    /// Exits 0 when every claim was checked, whatever the verdicts (a claim that fails in the
    /// model is a finding); non-zero on an error (bad config, divergence).
    Verify {
        /// Claims file (Markdown with one ```toml block); default: the shipped theory/CLAIMS.md.
        #[arg(long)]
        claims: Option<PathBuf>,
        /// Skip the figures.
        #[arg(long)]
        no_figures: bool,
        /// Exit with status 1 unless every claim passes (FAIL or NOT CONVERGED), for scripts and CI.
        #[arg(long)]
        strict: bool,
    },
    /// Sweep parameters over a grid: a built-in study, a study file, or --param axes.
    Sweep {
        #[command(flatten)]
        spec: SweepSpec,
        /// Only write the sweep's folder (config and study) that the shards and the merge check.
        #[arg(long, conflicts_with = "shard")]
        prepare: bool,
        /// Run only the runs of shard I of N, into OUT/shards/I-of-N.
        #[arg(long, value_name = "I/N")]
        shard: Option<Shard>,
    },
    /// Merge the shards of a sweep folder (OUT/shards/*, and any shard folders named) into it
    /// and write its results and figures: the same bits as a single-process sweep.
    Merge {
        /// The sweep folder (the --out of the shards).
        dir: PathBuf,
        /// More shard folders to merge (e.g. copied from machines without a shared disk).
        shards: Vec<PathBuf>,
    },
    /// Write a sweep as Slurm jobs (prepare, an array of shards, merge) and optionally submit.
    Slurm {
        #[command(flatten)]
        spec: SweepSpec,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// List the built-in sweep studies.
    Studies,
    /// Redraw the figures of a results folder from its saved results.
    Plot {
        /// A folder written by verify or sweep.
        dir: PathBuf,
    },
    /// Time one SGD step (fixed pool and online) against a careful NumPy step, interleaved,
    /// for the plain ReLU and the config's activation, with 1 thread and with --threads (NumPy's
    /// BLAS with as many).
    Bench {
        /// Rounds (each runs every side and mode in turn).
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Steps per side, mode and round.
        #[arg(long, default_value_t = 3)]
        steps: usize,
        /// Do not run the NumPy script.
        #[arg(long)]
        no_numpy: bool,
        /// The NumPy script.
        #[arg(long, default_value = "benches/numpy_step.py")]
        script: PathBuf,
    },
}

/// Which sweep to run.
#[derive(Args, Clone, Debug)]
struct SweepSpec {
    /// Built-in study name (see `theory-sim studies`).
    #[arg(long, conflicts_with_all = ["study_file", "param"])]
    study: Option<String>,
    /// Study TOML file.
    #[arg(long, conflicts_with = "param")]
    study_file: Option<PathBuf>,
    /// An axis KEY=V1,V2,... (one or two), e.g. --param data.hard_noise=0.5,1,2.
    #[arg(long)]
    param: Vec<String>,
}

impl SweepSpec {
    /// The study it names.
    fn study(&self) -> Result<Study> {
        Ok(if let Some(name) = &self.study {
            Study::built_in(name)?
        } else if let Some(p) = &self.study_file {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Study::from_toml(&text, &p.display().to_string())?
        } else if !self.param.is_empty() {
            if self.param.len() > 2 {
                bail!("--param: at most two axes");
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
            Study {
                name: granularity::report::file_safe(&name),
                description: format!("sweep of {}", self.param.join(" and ")),
                set: vec![],
                readouts: Readout::PRETRAINED.to_vec(),
                condition: vec![
                    Condition::new("coarse", Relabeling::Level { level: 0 }),
                    Condition::new("fine", Relabeling::Level { level: 1 }),
                ],
                axis,
                pair: vec![],
            }
        } else {
            bail!("sweep needs --study NAME, --study-file FILE or --param KEY=V1,V2,...");
        })
    }

    /// The same options as arguments (paths made absolute).
    fn args(&self) -> Result<Vec<String>> {
        let mut a = Vec::new();
        if let Some(n) = &self.study {
            a.extend(["--study".into(), n.clone()]);
        }
        if let Some(p) = &self.study_file {
            a.extend(["--study-file".into(), path_arg(p)?]);
        }
        for p in &self.param {
            a.extend(["--param".into(), p.clone()]);
        }
        Ok(a)
    }
}

fn path_arg(p: &Path) -> Result<String> {
    Ok(absolute(p)?.to_string_lossy().into_owned())
}

/// The results folder of the sweep `st`: --out, else the config's out_dir/sweeps/NAME.
fn sweep_out(cli: &Cli, cfg: &TheoryConfig, st: &Study) -> PathBuf {
    cli.out
        .clone()
        .unwrap_or_else(|| PathBuf::from(&cfg.out_dir).join("sweeps").join(&st.name))
}

/// The Slurm jobs of a sweep: every job runs this binary with the same global options, the
/// same sweep and absolute paths.
fn slurm_jobs(
    cli: &Cli,
    spec: &SweepSpec,
    out: &Path,
    st: &Study,
    args: &SlurmArgs,
) -> Result<JobSet> {
    let bin = args.binary()?.to_string_lossy().into_owned();
    let mut global = vec![bin.clone()];
    if let Some(c) = &cli.config {
        global.extend(["--config".into(), path_arg(c)?]);
    }
    for s in &cli.set {
        global.extend(["--set".into(), s.clone()]);
    }
    global.extend(["--out".into(), path_arg(out)?]);
    let mut shard = global.clone();
    shard.push("sweep".into());
    shard.extend(spec.args()?);
    let mut prepare = shard.clone();
    prepare.push("--prepare".into());
    Ok(JobSet {
        name: st.name.clone(),
        workdir: absolute(Path::new("."))?,
        prepare,
        shard,
        merge: vec![bin, "merge".into(), path_arg(out)?],
    })
}

fn load_config(cli: &Cli) -> Result<TheoryConfig> {
    Ok(match &cli.config {
        Some(p) => granularity::config::load_file(p, &cli.set)?,
        None => granularity::config::load_str(
            DEFAULT_TOML,
            "<embedded experiments/theory/default.toml>",
            &cli.set,
        )?,
    })
}

fn main() -> Result<ExitCode> {
    granularity::runtime::tune_allocator();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting the thread count")?;
    }
    let command = cli.command.as_ref().unwrap_or(&Command::Verify {
        claims: None,
        no_figures: false,
        strict: false,
    });
    match command {
        Command::Verify {
            claims,
            no_figures,
            strict,
        } => {
            let cfg = load_config(&cli)?;
            let (md, origin) = match claims {
                Some(p) => (
                    std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?,
                    p.display().to_string(),
                ),
                None => (CLAIMS_MD.to_string(), "theory/CLAIMS.md".to_string()),
            };
            let out = cli
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(&cfg.out_dir).join("verify"));
            let t = std::time::Instant::now();
            let v = commands::verify(&cfg, &md, &origin, &out, cli.fresh, !no_figures)?;
            println!("{}", v.table);
            let (failed, open) = (v.with(Outcome::Fail), v.with(Outcome::NotConverged));
            println!(
                "{} of {} claims pass over seeds {:?} ({:.0} s). Results and figures: {}",
                v.with(Outcome::Pass).len(),
                v.verdicts.len(),
                cfg.seeds,
                t.elapsed().as_secs_f64(),
                v.dir.display()
            );
            if !failed.is_empty() {
                println!(
                    "Claims that do not hold in this model (findings, see theory/CLAIMS.md): {}",
                    failed.join(", ")
                );
            }
            if !open.is_empty() {
                println!(
                    "No verdict, a run they read hit train.max_steps before converging: {}",
                    open.join(", ")
                );
            }
            if *strict && (!failed.is_empty() || !open.is_empty()) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Sweep {
            spec,
            prepare,
            shard,
        } => {
            let cfg = load_config(&cli)?;
            let st = spec.study()?;
            let out = sweep_out(&cli, &cfg, &st);
            if *prepare {
                let dir = sharding::prepare(&cfg, &st, &out, cli.fresh)?;
                println!(
                    "sweep '{}' prepared in {}: the shards can run (--shard I/N)",
                    st.name,
                    dir.display()
                );
            } else if let Some(s) = shard {
                let dir = sharding::run_shard(&cfg, &st, &out, cli.fresh, *s)?;
                println!(
                    "sweep '{}' shard {s} done in {}; once every shard is: theory-sim merge {}",
                    st.name,
                    dir.display(),
                    out.display()
                );
            } else {
                let dir = commands::sweep(&cfg, &st, &out, cli.fresh)?;
                println!(
                    "sweep '{}' done: results and figures in {}",
                    st.name,
                    dir.display()
                );
            }
        }
        Command::Merge { dir, shards } => {
            let dir = sharding::merge(dir, shards)?;
            println!("shards merged: results and figures in {}", dir.display());
        }
        Command::Slurm { spec, slurm } => {
            let cfg = load_config(&cli)?;
            let st = spec.study()?;
            let out = sweep_out(&cli, &cfg, &st);
            slurm.check(false)?;
            let jobs = slurm_jobs(&cli, spec, &out, &st, slurm)?;
            let dir = slurm.scripts_dir(&out)?;
            let scripts = write_scripts(&jobs, slurm, &dir)?;
            println!(
                "Slurm jobs of sweep '{}' in {}: submit them with\n  {}",
                st.name,
                dir.display(),
                scripts.submit.display()
            );
            if slurm.submit {
                let ids = granularity::cluster::slurm::submit(&scripts)?;
                println!(
                    "submitted: prepare job {}, shards array job {}, merge job {}; results in {}",
                    ids.prepare,
                    ids.shards,
                    ids.merge,
                    out.display()
                );
            }
        }
        Command::Studies => {
            for (name, _) in BUILT_IN {
                let s = Study::built_in(name)?;
                println!("{name:16} {}", s.description);
            }
        }
        Command::Plot { dir } => {
            for f in commands::replot(dir)? {
                println!("{}", f.display());
            }
        }
        Command::Bench {
            rounds,
            steps,
            no_numpy,
            script,
        } => {
            let cfg = load_config(&cli)?;
            let b = bench::BenchConfig {
                rounds: *rounds,
                steps: *steps,
                ..Default::default()
            };
            let mut acts = vec![ActivationConfig::Relu];
            if cfg.net.activation != ActivationConfig::Relu {
                acts.push(cfg.net.activation);
            }
            let mut threads = vec![1, rayon::current_num_threads()];
            threads.dedup();
            let r = bench::run(&b, &acts, (!no_numpy).then_some(script.as_path()), &threads)?;
            println!("{}", bench::report(&b, &r));
        }
    }
    Ok(ExitCode::SUCCESS)
}
