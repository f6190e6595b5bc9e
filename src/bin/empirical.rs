//! `empirical`: fine-to-coarse transfer on real images. With no arguments it runs the embedded
//! default study (the transfer protocol on synthetic multi-view images); `study` runs a study
//! from a TOML config (`experiments/empirical/`) (or its preparation, or one shard of it),
//! `sweep` runs a study once per value of each axis of a sweep file, `merge` gathers a study's
//! shards, `slurm` writes (and submits) a study as Slurm jobs,
//! `pretrain` / `finetune` a single network, `inspect` checks a dataset, `plot` redraws a
//! study's reports, `bench` times training steps.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Parser, Subcommand};
use granularity::cluster::slurm::{absolute, write_scripts, JobSet};
use granularity::cluster::{Shard, SlurmArgs};
use granularity::empirical::bench::{run_cli as run_bench, BenchArgs};
use granularity::empirical::data::breeds::{BreedsSubclasses, BreedsTask};
use granularity::empirical::data::inat::InatTrainSplit;
use granularity::empirical::data::inspect::{inspect_data, InspectOptions};
use granularity::empirical::data::load::decode_options;
use granularity::empirical::data::{DataConfig, DataSource};
use granularity::empirical::device::DeviceSpec;
use granularity::empirical::gpucheck::{run_cli as run_gpu_check, GpuCheckArgs};
use granularity::empirical::model::Kernels;
use granularity::empirical::study::config::StudyConfig;
use granularity::empirical::study::sweep::{run_sweep, Sweep};
use granularity::empirical::study::{
    prepare_study, run_shard, run_study, sharding, single, summary_table, synthetic_default,
    write_reports, RunOptions, StudySummary,
};
use std::path::{Path, PathBuf};

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
    /// Override a config value, e.g. --set train.pretrain_epochs=3 (repeatable).
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
        #[arg(long, default_value = "results/empirical/synthetic")]
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
    Inspect {
        /// A study config: inspect the dataset of its data section, with its selection.
        #[arg(long, conflicts_with_all = ["cifar100", "folder", "inat", "imagenet"])]
        config: Option<PathBuf>,
        /// The dataset folder for --config (overrides data.path).
        #[arg(long, requires = "config")]
        data: Option<PathBuf>,
        /// A CIFAR-100 binary folder (train.bin / test.bin or .gz, label-name files).
        #[arg(long, conflicts_with_all = ["folder", "inat", "imagenet"])]
        cifar100: Option<PathBuf>,
        /// An image folder with hierarchy.csv, train/LEAF/ and test/LEAF/ (see the README).
        #[arg(long, conflicts_with_all = ["inat", "imagenet"])]
        folder: Option<PathBuf>,
        /// iNaturalist 2021 in its official layout (train.json, val.json, image folders).
        #[arg(long, conflicts_with = "imagenet")]
        inat: Option<PathBuf>,
        /// The training split of --inat.
        #[arg(long, value_enum, default_value = "train")]
        inat_split: InatTrainSplit,
        /// ImageNet-style folders named by WordNet ids (train/nXXXXXXXX/, val/nXXXXXXXX/), with
        /// --wordnet and --depths, or with --breeds and --task.
        #[arg(long)]
        imagenet: Option<PathBuf>,
        /// WordNet 3.0's data.noun, for --imagenet (e.g. /usr/share/wordnet/data.noun).
        #[arg(long, conflicts_with = "breeds")]
        wordnet: Option<PathBuf>,
        /// Depths at which WordNet is cut, for --wordnet (e.g. 3,6).
        #[arg(long, value_delimiter = ',')]
        depths: Vec<usize>,
        /// The BREEDS information folder, for --imagenet.
        #[arg(long)]
        breeds: Option<PathBuf>,
        /// The BREEDS task, for --breeds.
        #[arg(long, value_enum)]
        task: Option<BreedsTask>,
        /// Which classes of each BREEDS superclass, for --breeds.
        #[arg(long, value_enum, default_value = "all")]
        subclasses: BreedsSubclasses,
        /// Image size (default: data.size with --config, else 32).
        #[arg(long)]
        size: Option<u32>,
        /// Images per split decoded to check them, spread evenly (0 = all).
        #[arg(long, default_value_t = 1000)]
        check: usize,
        /// Lines of the tree to print (0 = all).
        #[arg(long, default_value_t = 60)]
        tree_lines: usize,
    },
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

/// The config of a `study` or `sweep` run and where it runs.
#[derive(clap::Args)]
struct RunTarget {
    /// The study config (e.g. experiments/empirical/quick.toml), or for `sweep` the sweep file
    /// (e.g. experiments/empirical/synthetic_sweep.toml).
    config: PathBuf,
    /// Results folder (default: results/empirical/NAME).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The dataset folder (overrides data.path; CIFAR-100 also reads GRANULARITY_CIFAR100_DIR).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Discard saved results of a different config in --out (for `sweep`: in the points'
    /// folders).
    #[arg(long)]
    fresh: bool,
}

fn load(config: &Path, set: &[String]) -> Result<StudyConfig> {
    Ok(granularity::config::load_file(config, set)?)
}

/// The results folder of a study when --out is not given.
fn default_out(cfg: &StudyConfig) -> PathBuf {
    PathBuf::from("results/empirical").join(&cfg.name)
}

/// The options of a run from the command line (progress always shown).
fn run_options(
    out: PathBuf,
    data: Option<PathBuf>,
    fresh: bool,
    device: Device,
    kernels: Kernels,
) -> RunOptions {
    RunOptions {
        data,
        fresh,
        ..RunOptions::new(out, device, kernels)
    }
}

/// Which part of a study the `study` command runs.
#[derive(Clone, Copy)]
enum Part {
    Whole,
    Prepare,
    Shard(Shard),
}

fn study(cfg: &StudyConfig, opts: &RunOptions, part: Part) -> Result<()> {
    let t = std::time::Instant::now();
    let what = match part {
        Part::Whole => String::new(),
        Part::Prepare => " (preparation only)".into(),
        Part::Shard(s) => format!(" (shard {s})"),
    };
    eprintln!(
        "study '{}'{what}: {} granularities, seeds {:?}, {} ({}), results in {}",
        cfg.name,
        cfg.granularities.len(),
        cfg.seeds,
        cfg.model.arch.name(),
        if opts.device.is_cpu() { "cpu" } else { "gpu" },
        opts.out.display()
    );
    let out = match part {
        Part::Whole => {
            print_summary(&run_study(cfg, opts)?);
            opts.out.clone()
        }
        Part::Prepare => {
            prepare_study(cfg, opts)?;
            println!("prepared: the shards can run (--shard I/N)");
            opts.out.clone()
        }
        Part::Shard(s) => {
            let dir = run_shard(cfg, opts, s)?;
            println!(
                "shard {s} done; once every shard is: empirical merge {}",
                opts.out.display()
            );
            dir
        }
    };
    println!(
        "{:.0} s; results in {}",
        t.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn print_summary(summary: &StudySummary) {
    println!("{}", summary_table(&summary.rows));
    for h in &summary.hard_subsets {
        println!(
            "hard test images ({}): {} ({} of {})",
            h.design, h.definition, h.hard, h.total
        );
    }
}

/// The global options every Slurm job repeats.
struct Global<'a> {
    device: DeviceSpec,
    set: &'a [String],
    kernels: Kernels,
}

/// The Slurm jobs of the study `config`: every job runs this binary with the same global
/// options and absolute paths.
fn slurm_jobs(
    cli: &Global,
    config: &Path,
    out: &Path,
    data: Option<&Path>,
    args: &SlurmArgs,
) -> Result<JobSet> {
    let cfg = load(config, cli.set)?;
    let bin = args.binary()?.to_string_lossy().into_owned();
    let path = |p: &Path| -> Result<String> { Ok(absolute(p)?.to_string_lossy().into_owned()) };
    let mut study = vec![
        bin.clone(),
        "--device".into(),
        cli.device.to_string(),
        "--kernels".into(),
        cli.kernels.name().into(),
    ];
    for s in cli.set {
        study.extend(["--set".into(), s.clone()]);
    }
    study.extend(["study".into(), path(config)?, "--out".into(), path(out)?]);
    if let Some(d) = data {
        study.extend(["--data".into(), path(d)?]);
    }
    let mut prepare = study.clone();
    prepare.push("--prepare".into());
    Ok(JobSet {
        name: cfg.name,
        workdir: absolute(Path::new("."))?,
        prepare,
        shard: study,
        merge: vec![bin, "merge".into(), path(out)?],
    })
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
    let dev = cli.device.open()?;
    let kernels = cli.kernels;
    match cli.command {
        None => study(
            &synthetic_default(&cli.set)?,
            &run_options(
                cli.out
                    .unwrap_or_else(|| "results/empirical/synthetic".into()),
                None,
                cli.fresh,
                dev,
                kernels,
            ),
            Part::Whole,
        ),
        Some(Command::Synthetic { out, fresh }) => study(
            &synthetic_default(&cli.set)?,
            &run_options(out, None, fresh, dev, kernels),
            Part::Whole,
        ),
        Some(Command::Study {
            run,
            prepare,
            shard,
        }) => {
            let cfg = load(&run.config, &cli.set)?;
            let out = run.out.unwrap_or_else(|| default_out(&cfg));
            let part = match (prepare, shard) {
                (true, _) => Part::Prepare,
                (false, Some(s)) => Part::Shard(s),
                (false, None) => Part::Whole,
            };
            study(
                &cfg,
                &run_options(out, run.data, run.fresh, dev, kernels),
                part,
            )
        }
        Some(Command::Sweep { run, axes }) => {
            let sweep = Sweep::from_file(&run.config, &cli.set)?;
            let out = run.out.unwrap_or_else(|| default_out(&sweep.base));
            eprintln!(
                "sweep '{}': {} axes, {} points, seeds {:?}, results in {}",
                sweep.base.name,
                sweep.axes.len(),
                sweep.points.len(),
                sweep.base.seeds,
                out.display()
            );
            let t = std::time::Instant::now();
            let opts = run_options(out.clone(), run.data, run.fresh, dev, kernels);
            let written = run_sweep(&sweep, &opts, &axes, &mut |l| eprintln!("{l}"))?;
            println!(
                "{:.0} s; sweep tables and figures in {}: {}",
                t.elapsed().as_secs_f64(),
                out.display(),
                written.join(", ")
            );
            Ok(())
        }
        Some(Command::Merge { dir, shards }) => {
            let s = sharding::merge(&dir, &shards)?;
            print_summary(&s);
            println!("shards merged; reports and figures in {}", dir.display());
            Ok(())
        }
        Some(Command::Slurm {
            config,
            out,
            data,
            slurm,
        }) => {
            let cfg = load(&config, &cli.set)?;
            let out = out.unwrap_or_else(|| default_out(&cfg));
            let global = Global {
                device: cli.device,
                set: &cli.set,
                kernels,
            };
            slurm.check(cli.device.is_cpu())?;
            let jobs = slurm_jobs(&global, &config, &out, data.as_deref(), &slurm)?;
            let dir = slurm.scripts_dir(&out)?;
            let scripts = write_scripts(&jobs, &slurm, &dir)?;
            println!(
                "Slurm jobs of study '{}' in {}: submit them with\n  {}",
                cfg.name,
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
            Ok(())
        }
        Some(Command::Pretrain {
            config,
            granularity,
            seed,
            out,
            data,
        }) => {
            let cfg = load(&config, &cli.set)?;
            let opts = run_options(out, data, false, dev, kernels);
            let r = single::pretrain(&cfg, &granularity, seed, &opts)?;
            println!("{r}");
            Ok(())
        }
        Some(Command::Finetune {
            config,
            weights,
            seed,
            out,
            data,
        }) => {
            let cfg = load(&config, &cli.set)?;
            let opts = run_options(out, data, false, dev, kernels);
            let r = single::finetune(&cfg, &weights, seed, &opts)?;
            println!("{r}");
            Ok(())
        }
        Some(Command::Inspect {
            config,
            data,
            cifar100,
            folder,
            inat,
            inat_split,
            imagenet,
            wordnet,
            depths,
            breeds,
            task,
            subclasses,
            size,
            check,
            tree_lines,
        }) => {
            let (mut d, dir) = match (config, cifar100, folder, inat, imagenet) {
                (Some(c), ..) => (load(&c, &cli.set)?.data, data),
                (_, Some(p), ..) => (DataConfig::for_source(DataSource::Cifar100, &p), None),
                (_, _, Some(p), ..) => (DataConfig::for_source(DataSource::Folder, &p), None),
                (_, _, _, Some(p), _) => {
                    let mut d = DataConfig::for_source(DataSource::Inat2021, &p);
                    d.inat.train_split = inat_split;
                    (d, None)
                }
                (_, _, _, _, Some(p)) => {
                    let mut d = DataConfig::for_source(DataSource::Wordnet, &p);
                    if let Some(b) = breeds {
                        d.source = DataSource::Breeds;
                        d.breeds.info_dir = b.display().to_string();
                        d.breeds.task = task;
                        d.breeds.subclasses = subclasses;
                    } else {
                        let noun = wordnet.context("--imagenet needs --wordnet DATA_NOUN (with --depths) or --breeds DIR (with --task)")?;
                        d.wordnet.noun = noun.display().to_string();
                        d.wordnet.depths = depths;
                    }
                    (d, None)
                }
                _ => {
                    bail!("inspect needs one of --config, --cifar100, --folder, --inat, --imagenet")
                }
            };
            if let Some(s) = size {
                d.size = s;
            }
            let mut decode = decode_options(&d);
            decode.size_field = if size.is_some() {
                "--size"
            } else {
                "data.size (or --size)"
            }
            .into();
            let opts = InspectOptions {
                decode,
                check,
                tree_lines,
            };
            print!("{}", inspect_data(&d, dir.as_deref(), &opts)?);
            Ok(())
        }
        Some(Command::Plot { dir }) => {
            let s = write_reports(&dir)?;
            println!("{}", summary_table(&s.rows));
            println!("reports and figures rewritten in {}", dir.display());
            Ok(())
        }
        Some(Command::Bench(mut args)) => {
            args.device = dev;
            args.kernels = kernels;
            let table = run_bench(&args, &mut |l| eprintln!("  {l}"))?;
            println!("{table}");
            Ok(())
        }
        Some(Command::GpuCheck(args)) => {
            println!("{}", run_gpu_check(&dev, &args)?);
            Ok(())
        }
    }
}
