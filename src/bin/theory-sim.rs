//! `theory-sim`: the CPU simulation of the paper's theory. With no arguments it runs `verify`
//! on the embedded default config and writes its results and figures. See `--help`. Each
//! subcommand is one function of [`granularity::theory::commands`].

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use granularity::cluster::{Shard, SlurmArgs};
use granularity::theory::commands::{self, SweepPart, SweepSpec};
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
    /// Override a config field, e.g. --set train.lr=0.5 --set data.dim=128 (repeatable, before or
    /// after the subcommand's name, applied in order; values are TOML).
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
    /// Sweep parameters over a grid: a built-in sweep, a sweep file, or --param axes.
    Sweep {
        #[command(flatten)]
        spec: SweepSpec,
        /// Only write the sweep's folder (config and sweep) that the shards and the merge check.
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
    /// List the built-in sweeps.
    #[command(visible_alias = "studies")]
    Sweeps,
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

fn main() -> Result<ExitCode> {
    granularity::runtime::tune_allocator();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting the thread count")?;
    }
    let set = granularity::config::set_args(std::env::args_os().skip(1));
    if !set.ends_with(&cli.set) {
        bail!("could not read the --set options of this command line in order; give them all before the subcommand's name");
    }
    let command = cli.command.as_ref().unwrap_or(&Command::Verify {
        claims: None,
        no_figures: false,
        strict: false,
    });
    let config = || commands::load_config(cli.config.as_deref(), &set);
    let out = cli.out.as_deref();
    let text = match command {
        Command::Verify {
            claims,
            no_figures,
            strict,
        } => {
            let (text, all_pass) = commands::verify_command(
                &config()?,
                claims.as_deref(),
                out,
                cli.fresh,
                !no_figures,
            )?;
            println!("{text}");
            return Ok(if *strict && !all_pass {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Sweep {
            spec,
            prepare,
            shard,
        } => {
            let part = match (prepare, shard) {
                (true, _) => SweepPart::Prepare,
                (false, Some(s)) => SweepPart::Shard(*s),
                (false, None) => SweepPart::Whole,
            };
            commands::sweep_command(&config()?, spec, out, cli.fresh, part)?
        }
        Command::Merge { dir, shards } => commands::merge_command(dir, shards)?,
        Command::Slurm { spec, slurm } => {
            commands::slurm_command(&config()?, cli.config.as_deref(), &set, spec, out, slurm)?
        }
        Command::Sweeps => commands::list_sweeps()?,
        Command::Plot { dir } => commands::plot_command(dir)?,
        Command::Bench {
            rounds,
            steps,
            no_numpy,
            script,
        } => commands::bench_command(
            &config()?,
            *rounds,
            *steps,
            (!no_numpy).then_some(script.as_path()),
        )?,
    };
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
