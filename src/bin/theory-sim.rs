//! `theory-sim`: the CPU simulation of the paper's theory. With no arguments it runs `verify`
//! on the embedded default config and writes its results and figures. See `--help`.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use granularity::hierarchy::Relabeling;
use granularity::theory::claims::{Outcome, CLAIMS_MD};
use granularity::theory::commands;
use granularity::theory::config::{ActivationConfig, TheoryConfig, DEFAULT_TOML};
use granularity::theory::run::Condition;
use granularity::theory::study::{axis_from_arg, Study, BUILT_IN};
use granularity::theory::{bench, readout::Readout};
use std::path::PathBuf;
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
        /// Built-in study name (see `theory-sim studies`).
        #[arg(long, conflicts_with_all = ["study_file", "param"])]
        study: Option<String>,
        /// Study TOML file.
        #[arg(long, conflicts_with = "param")]
        study_file: Option<PathBuf>,
        /// An axis KEY=V1,V2,... (one or two), e.g. --param data.hard_noise=0.5,1,2.
        #[arg(long)]
        param: Vec<String>,
    },
    /// List the built-in sweep studies.
    Studies,
    /// Redraw the figures of a results folder from its saved results.
    Plot {
        /// A folder written by verify or sweep.
        dir: PathBuf,
    },
    /// Time one SGD step (fixed pool and online) against a careful NumPy step, interleaved,
    /// for the plain ReLU and the config's activation.
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
            study,
            study_file,
            param,
        } => {
            let cfg = load_config(&cli)?;
            let st = if let Some(name) = study {
                Study::built_in(name)?
            } else if let Some(p) = study_file {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                Study::from_toml(&text, &p.display().to_string())?
            } else if !param.is_empty() {
                if param.len() > 2 {
                    bail!("--param: at most two axes");
                }
                let axis = param
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
                    description: format!("sweep of {}", param.join(" and ")),
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
            };
            let out = cli
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(&cfg.out_dir).join("sweeps").join(&st.name));
            let dir = commands::sweep(&cfg, &st, &out, cli.fresh)?;
            println!(
                "sweep '{}' done: results and figures in {}",
                st.name,
                dir.display()
            );
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
            let r = bench::run(&b, &acts, (!no_numpy).then_some(script.as_path()))?;
            println!("{}", bench::report(&b, &r));
        }
    }
    Ok(ExitCode::SUCCESS)
}
