//! `empirical`: fine-to-coarse transfer on real images. With no arguments it runs the embedded
//! default study (the transfer protocol on synthetic multi-view images); `study` runs a study
//! from a TOML config (`experiments/empirical/`) (or its preparation, or one shard of it),
//! `sweep` runs a study once per value of each axis of a sweep file, `merge` gathers a study's
//! shards, `slurm` writes (and submits) a study as Slurm jobs,
//! `pretrain` / `finetune` a single network, `inspect` checks a dataset, `plot` redraws a
//! study's reports, `bench` times training steps. Each subcommand is one function of
//! [`granularity::empirical::commands`].

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use granularity::cluster::{Shard, SlurmArgs};
use granularity::empirical::bench::{run_cli as run_bench, BenchArgs};
use granularity::empirical::commands::{self, Global, InspectArgs, RunTarget, SYNTHETIC_OUT};
use granularity::empirical::device::DeviceSpec;
use granularity::empirical::gpucheck::{run_cli as run_gpu_check, GpuCheckArgs};
use granularity::empirical::model::Kernels;
use granularity::empirical::study::plan::Part;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "empirical",
    version,
    about = "Fine-to-coarse transfer on real images: pretrain at several label granularities, fine-tune on the coarse target, compare with training from scratch"
)]
struct Cli {
    /// Where networks run: "cpu", or "cuda:N" (needs a build with `--features cuda`).
    #[arg(long, global = true, default_value = "cpu")]
    device: DeviceSpec,
    /// Override a config value, e.g. --set train.pretrain_epochs=3 (repeatable, before or after
    /// the subcommand's name, applied in order).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Layer implementation on the CPU: "fast" (this crate's kernels) or "stock" (candle's own
    /// operations, several times slower; for checking the fast path end to end).
    #[arg(long, global = true, value_enum, default_value_t = Kernels::Fast)]
    kernels: Kernels,
    /// Worker threads of the CPU work (default: all cores, or RAYON_NUM_THREADS).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Results folder of the default run (no subcommand; default:
    /// results/empirical/synthetic). A subcommand takes its own --out after its name.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Discard saved results of a different config in --out (the default run).
    #[arg(long)]
    fresh: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The default: the embedded synthetic study (experiments/empirical/synthetic.toml).
    Synthetic {
        /// Results folder.
        #[arg(long, default_value = SYNTHETIC_OUT)]
        out: PathBuf,
        /// Discard saved results of a different config in --out.
        #[arg(long)]
        fresh: bool,
    },
    /// Run (or resume) a whole study from a TOML config.
    Study {
        #[command(flatten)]
        run: RunTarget,
        /// Run only the preparation (ensemble, hard test images, label sets) that the shards
        /// read from --out.
        #[arg(long, conflicts_with = "shard")]
        prepare: bool,
        /// Run only the cells of shard I of N, into OUT/shards/I-of-N (after --prepare).
        #[arg(long, value_name = "I/N")]
        shard: Option<Shard>,
    },
    /// Run (or resume) a sweep: the study of a sweep file (a study config plus `[[axis]]` tables:
    /// key, label, values) once per value of each axis, one axis at a time from the base, each
    /// point in OUT/AXIS/VALUE (points equal to the base share OUT/base); then per axis
    /// OUT/AXIS.csv and OUT/AXIS_hard.svg, OUT/AXIS_all.svg: every arm's error minus the
    /// baseline's (95% interval) against the axis.
    Sweep {
        #[command(flatten)]
        run: RunTarget,
        /// Run only this axis (repeatable; default: every axis).
        #[arg(long = "axis", value_name = "NAME")]
        axes: Vec<String>,
    },
    /// Merge the shards of a study folder (OUT/shards/*, and any shard folders named) into it
    /// and write its reports: the same tables, JSON and figures as a single-process run.
    Merge {
        /// The study folder (the --out of the preparation and the shards).
        dir: PathBuf,
        /// More shard folders to merge (e.g. copied from machines without a shared disk).
        shards: Vec<PathBuf>,
    },
    /// Write a study as Slurm jobs (prepare, an array of shards, merge) and optionally submit.
    Slurm {
        /// The study config.
        config: PathBuf,
        /// Results folder (default: results/empirical/NAME).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The dataset folder, as the compute nodes see it.
        #[arg(long)]
        data: Option<PathBuf>,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// Pretrain one network on one granularity of a study config and save its weights.
    Pretrain {
        /// The study config.
        config: PathBuf,
        /// The granularity's name (a [[granularity]] of the config) or "target".
        #[arg(long)]
        granularity: String,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder (weights.safetensors, labels.json, epochs.csv, result.json).
        #[arg(long)]
        out: PathBuf,
        /// The dataset folder.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Fine-tune pretrained weights on the target labels (and fit a linear probe).
    Finetune {
        /// The study config.
        config: PathBuf,
        /// weights.safetensors written by `pretrain`.
        #[arg(long)]
        weights: PathBuf,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The dataset folder.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Load a dataset, check it, and print its label hierarchy (levels, tree, images per class
    /// and per leaf), the parents chosen where the source is not a tree, what decoding does to
    /// the images (resizing, cropping, conversion to RGB) and the memory a study will need.
    Inspect(InspectArgs),
    /// Redraw summary.json, results.md, epochs.csv and the figures of a study folder.
    Plot {
        /// The study folder.
        dir: PathBuf,
    },
    /// Time a training step: our CPU kernels vs candle's stock ops vs PyTorch.
    Bench(BenchArgs),
    /// Check --device against the CPU (one training step, checkpoints), or time it there.
    GpuCheck(GpuCheckArgs),
}

fn main() -> Result<()> {
    granularity::runtime::tune_allocator();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if n == 0 {
            bail!("--threads must be at least 1 (leave it out for one per core)");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting the thread count")?;
    }
    if cli.command.is_some() && (cli.out.is_some() || cli.fresh) {
        bail!("--out and --fresh before the subcommand are the default run's; give them after the subcommand's name (e.g. empirical study CONFIG --out DIR)");
    }
    let set = granularity::config::set_args(std::env::args_os().skip(1));
    if !set.ends_with(&cli.set) {
        bail!("could not read the --set options of this command line in order; give them all before the subcommand's name");
    }
    let g = Global {
        device: cli.device,
        opened: cli.device.open()?,
        kernels: cli.kernels,
        set,
    };
    let text = match cli.command {
        None => commands::synthetic(
            &g,
            cli.out.unwrap_or_else(|| SYNTHETIC_OUT.into()),
            cli.fresh,
        )?,
        Some(Command::Synthetic { out, fresh }) => commands::synthetic(&g, out, fresh)?,
        Some(Command::Study {
            run,
            prepare,
            shard,
        }) => {
            let cfg = g.load(&run.config)?;
            let out = run.out.unwrap_or_else(|| commands::default_out(&cfg));
            let part = match (prepare, shard) {
                (true, _) => Part::Prepare,
                (false, Some(s)) => Part::Shard(s),
                (false, None) => Part::Whole,
            };
            commands::study(&cfg, &g.run_options(out, run.data, run.fresh), part)?
        }
        Some(Command::Sweep { run, axes }) => commands::sweep(&g, &run, &axes)?,
        Some(Command::Merge { dir, shards }) => commands::merge(&dir, &shards)?,
        Some(Command::Slurm {
            config,
            out,
            data,
            slurm,
        }) => commands::slurm(&g, &config, out.as_deref(), data.as_deref(), &slurm)?,
        Some(Command::Pretrain {
            config,
            granularity,
            seed,
            out,
            data,
        }) => commands::pretrain(&g, &config, &granularity, seed, out, data)?,
        Some(Command::Finetune {
            config,
            weights,
            seed,
            out,
            data,
        }) => commands::finetune(&g, &config, &weights, seed, out, data)?,
        Some(Command::Inspect(args)) => commands::inspect(&args, &g.set)?,
        Some(Command::Plot { dir }) => commands::plot(&dir)?,
        Some(Command::Bench(mut args)) => {
            args.device = g.opened;
            args.kernels = g.kernels;
            format!("{}\n", run_bench(&args, &mut |l| eprintln!("  {l}"))?)
        }
        Some(Command::GpuCheck(args)) => format!("{}\n", run_gpu_check(&g.opened, &args)?),
    };
    print!("{text}");
    Ok(())
}
