//! The `empirical` commands as library functions, one per subcommand (the binary only parses
//! arguments, opens the device and prints what they return): [`study`] (and the default run,
//! [`synthetic`]), [`sweep`], [`merge`], [`slurm`], [`pretrain`], [`finetune`], [`inspect`],
//! [`plot`]; `bench` and `gpu-check` are [`super::bench::run_cli`] and
//! [`super::gpucheck::run_cli`]. Each returns the text the command prints on stdout; progress
//! goes to stderr as it happens.

use std::path::{Path, PathBuf};

use candle_core::Device;

use super::data::inspect::{inspect_data, InspectOptions};
use super::data::load::breeds::{BreedsSubclasses, BreedsTask};
use super::data::load::decode_options;
use super::data::load::inat::InatTrainSplit;
use super::data::{DataConfig, DataSource};
use super::device::DeviceSpec;
use super::error::EmpiricalError;
use super::model::Kernels;
use super::study::config::StudyConfig;
use super::study::plan::Part;
use super::study::sweep::{run_sweep, Sweep};
use super::study::{
    prepare_study, run_shard, run_study, sharding, single, summary_table, synthetic_default,
    write_reports, RunOptions, StudySummary,
};
use crate::cluster::slurm::path_arg;
use crate::cluster::{self, JobSet, SlurmArgs};

/// The default results folder of the synthetic study.
pub const SYNTHETIC_OUT: &str = "results/empirical/synthetic";

/// The config of a `study` or `sweep` run and where it runs.
#[derive(clap::Args, Clone, Debug)]
pub struct RunTarget {
    /// The study config (e.g. experiments/empirical/quick.toml), or for `sweep` the sweep file
    /// (e.g. experiments/empirical/synthetic_sweep.toml).
    pub config: PathBuf,
    /// Results folder (default: results/empirical/NAME).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The dataset folder (overrides data.path; CIFAR-100 also reads GRANULARITY_CIFAR100_DIR).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Discard saved results of a different config in --out (for `sweep`: in the points'
    /// folders).
    #[arg(long)]
    pub fresh: bool,
}

/// Where the networks of a command run, and the binary's other global options (every Slurm
/// job repeats them).
#[derive(Clone, Debug)]
pub struct Global {
    /// `--device`.
    pub device: DeviceSpec,
    /// The device opened.
    pub opened: Device,
    /// `--kernels`.
    pub kernels: Kernels,
    /// `--set` (config overrides).
    pub set: Vec<String>,
}

impl Global {
    /// The options of a run into `out` (progress always shown).
    pub fn run_options(&self, out: PathBuf, data: Option<PathBuf>, fresh: bool) -> RunOptions {
        RunOptions {
            data,
            fresh,
            ..RunOptions::new(out, self.opened.clone(), self.kernels)
        }
    }

    /// The study config `config`, with the overrides.
    pub fn load(&self, config: &Path) -> Result<StudyConfig, EmpiricalError> {
        Ok(crate::config::load_file(config, &self.set)?)
    }
}

/// The results folder of a study when `--out` is not given: `results/empirical/NAME`.
pub fn default_out(cfg: &StudyConfig) -> PathBuf {
    PathBuf::from("results/empirical").join(&cfg.name)
}

/// `empirical study`: `part` of the study `cfg` (see [`Part`]). Returns the summary (a whole
/// study) or what to run next, and the time taken.
pub fn study(cfg: &StudyConfig, opts: &RunOptions, part: Part) -> Result<String, EmpiricalError> {
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
    let (mut text, out) = match part {
        Part::Whole => (summary_text(&run_study(cfg, opts)?), opts.out.clone()),
        Part::Prepare => {
            prepare_study(cfg, opts)?;
            (
                "prepared: the shards can run (--shard I/N)\n".to_string(),
                opts.out.clone(),
            )
        }
        Part::Shard(s) => {
            let dir = run_shard(cfg, opts, s)?;
            (
                format!(
                    "shard {s} done; once every shard is: empirical merge {}\n",
                    opts.out.display()
                ),
                dir,
            )
        }
    };
    text.push_str(&format!(
        "{:.0} s; results in {}\n",
        t.elapsed().as_secs_f64(),
        out.display()
    ));
    Ok(text)
}

/// The default run (no subcommand) and `empirical synthetic`: the embedded synthetic study
/// into `out`.
pub fn synthetic(g: &Global, out: PathBuf, fresh: bool) -> Result<String, EmpiricalError> {
    study(
        &synthetic_default(&g.set)?,
        &g.run_options(out, None, fresh),
        Part::Whole,
    )
}

/// The summary table of a study and how each design's hard test images were defined.
fn summary_text(summary: &StudySummary) -> String {
    let mut text = format!("{}\n", summary_table(&summary.rows));
    for h in &summary.hard_subsets {
        text.push_str(&format!(
            "hard test images ({}): {} ({} of {})\n",
            h.design, h.definition, h.hard, h.total
        ));
    }
    text
}

/// `empirical sweep`: the sweep file of `run`, only the axes `axes` (every axis when empty).
pub fn sweep(g: &Global, run: &RunTarget, axes: &[String]) -> Result<String, EmpiricalError> {
    let sweep = Sweep::from_file(&run.config, &g.set)?;
    let out = run.out.clone().unwrap_or_else(|| default_out(&sweep.base));
    eprintln!(
        "sweep '{}': {} axes, {} points, seeds {:?}, results in {}",
        sweep.base.name,
        sweep.axes.len(),
        sweep.points.len(),
        sweep.base.seeds,
        out.display()
    );
    let t = std::time::Instant::now();
    let opts = g.run_options(out.clone(), run.data.clone(), run.fresh);
    let written = run_sweep(&sweep, &opts, axes, &mut |l| eprintln!("{l}"))?;
    Ok(format!(
        "{:.0} s; sweep tables and figures in {}: {}\n",
        t.elapsed().as_secs_f64(),
        out.display(),
        written.join(", ")
    ))
}

/// `empirical merge`: the shards of the study folder `dir` (and the shard folders `shards`)
/// merged into it, with its reports.
pub fn merge(dir: &Path, shards: &[PathBuf]) -> Result<String, EmpiricalError> {
    let s = sharding::merge(dir, shards)?;
    Ok(format!(
        "{}shards merged; reports and figures in {}\n",
        summary_text(&s),
        dir.display()
    ))
}

/// `empirical slurm`: the study `config` as Slurm jobs (see [`cluster::slurm`]) into `out`
/// (default: [`default_out`]); every job runs the binary with the same global options and
/// absolute paths, and `data` as the compute nodes see it.
pub fn slurm(
    g: &Global,
    config: &Path,
    out: Option<&Path>,
    data: Option<&Path>,
    args: &SlurmArgs,
) -> Result<String, EmpiricalError> {
    let cfg = g.load(config)?;
    let out = out.map_or_else(|| default_out(&cfg), Path::to_path_buf);
    args.check(g.device.is_cpu())?;
    let mut shard = vec![
        args.binary()?.to_string_lossy().into_owned(),
        "--device".into(),
        g.device.to_string(),
        "--kernels".into(),
        g.kernels.name().into(),
    ];
    for s in &g.set {
        shard.extend(["--set".into(), s.clone()]);
    }
    shard.extend([
        "study".into(),
        path_arg(config)?,
        "--out".into(),
        path_arg(&out)?,
    ]);
    if let Some(d) = data {
        shard.extend(["--data".into(), path_arg(d)?]);
    }
    let jobs = JobSet::new(&cfg.name, shard, &out)?;
    Ok(format!(
        "{}\n",
        cluster::deploy(&jobs, args, &out, "study")?
    ))
}

/// `empirical pretrain`: one network of the study `config` pretrained on the granularity
/// `granularity` (or "target") with `seed`, its weights saved in `out`.
pub fn pretrain(
    g: &Global,
    config: &Path,
    granularity: &str,
    seed: u64,
    out: PathBuf,
    data: Option<PathBuf>,
) -> Result<String, EmpiricalError> {
    let cfg = g.load(config)?;
    let r = single::pretrain(&cfg, granularity, seed, &g.run_options(out, data, false))?;
    Ok(format!("{r}\n"))
}

/// `empirical finetune`: the pretrained `weights` fine-tuned on the target labels of the study
/// `config` (and the linear probe fitted), into `out`.
pub fn finetune(
    g: &Global,
    config: &Path,
    weights: &Path,
    seed: u64,
    out: PathBuf,
    data: Option<PathBuf>,
) -> Result<String, EmpiricalError> {
    let cfg = g.load(config)?;
    let r = single::finetune(&cfg, weights, seed, &g.run_options(out, data, false))?;
    Ok(format!("{r}\n"))
}

/// `empirical plot`: the reports and figures of the study folder `dir` redrawn from its saved
/// files.
pub fn plot(dir: &Path) -> Result<String, EmpiricalError> {
    let s = write_reports(dir)?;
    Ok(format!(
        "{}\nreports and figures rewritten in {}\n",
        summary_table(&s.rows),
        dir.display()
    ))
}

/// What `empirical inspect` reads: the data section of a study config, or a dataset named by
/// its source's flag.
#[derive(clap::Args, Clone, Debug)]
pub struct InspectArgs {
    /// A study config: inspect the dataset of its data section, with its selection.
    #[arg(long, conflicts_with_all = ["cifar100", "folder", "inat", "imagenet"])]
    pub config: Option<PathBuf>,
    /// The dataset folder for --config (overrides data.path).
    #[arg(long, requires = "config")]
    pub data: Option<PathBuf>,
    /// A CIFAR-100 binary folder (train.bin / test.bin or .gz, label-name files).
    #[arg(long, conflicts_with_all = ["folder", "inat", "imagenet"])]
    pub cifar100: Option<PathBuf>,
    /// An image folder with hierarchy.csv, train/LEAF/ and test/LEAF/ (see the README).
    #[arg(long, conflicts_with_all = ["inat", "imagenet"])]
    pub folder: Option<PathBuf>,
    /// iNaturalist 2021 in its official layout (train.json, val.json, image folders).
    #[arg(long, conflicts_with = "imagenet")]
    pub inat: Option<PathBuf>,
    /// The training split of --inat.
    #[arg(long, value_enum, default_value = "train")]
    pub inat_split: InatTrainSplit,
    /// ImageNet-style folders named by WordNet ids (train/nXXXXXXXX/, val/nXXXXXXXX/), with
    /// --wordnet and --depths, or with --breeds and --task.
    #[arg(long)]
    pub imagenet: Option<PathBuf>,
    /// WordNet 3.0's data.noun, for --imagenet (e.g. /usr/share/wordnet/data.noun).
    #[arg(long, conflicts_with = "breeds")]
    pub wordnet: Option<PathBuf>,
    /// Depths at which WordNet is cut, for --wordnet (e.g. 3,6).
    #[arg(long, value_delimiter = ',')]
    pub depths: Vec<usize>,
    /// The BREEDS information folder, for --imagenet.
    #[arg(long)]
    pub breeds: Option<PathBuf>,
    /// The BREEDS task, for --breeds.
    #[arg(long, value_enum)]
    pub task: Option<BreedsTask>,
    /// Which classes of each BREEDS superclass, for --breeds.
    #[arg(long, value_enum, default_value = "all")]
    pub subclasses: BreedsSubclasses,
    /// Image size (default: data.size with --config, else 32).
    #[arg(long)]
    pub size: Option<u32>,
    /// Images per split decoded to check them, spread evenly (0 = all).
    #[arg(long, default_value_t = 1000)]
    pub check: usize,
    /// Lines of the tree to print (0 = all).
    #[arg(long, default_value_t = 60)]
    pub tree_lines: usize,
}

impl InspectArgs {
    /// The `[data]` section these options name, and the dataset folder that overrides its path.
    fn data_config(&self, set: &[String]) -> Result<(DataConfig, Option<PathBuf>), EmpiricalError> {
        let bad = |m: &str| EmpiricalError::invalid("inspect", m);
        let (mut d, dir) = if let Some(c) = &self.config {
            let cfg: StudyConfig = crate::config::load_file(c, set)?;
            (cfg.data, self.data.clone())
        } else if let Some(p) = &self.cifar100 {
            (DataConfig::for_source(DataSource::Cifar100, p), None)
        } else if let Some(p) = &self.folder {
            (DataConfig::for_source(DataSource::Folder, p), None)
        } else if let Some(p) = &self.inat {
            let mut d = DataConfig::for_source(DataSource::Inat2021, p);
            d.inat.train_split = self.inat_split;
            (d, None)
        } else if let Some(p) = &self.imagenet {
            let mut d = DataConfig::for_source(DataSource::Wordnet, p);
            if let Some(b) = &self.breeds {
                d.source = DataSource::Breeds;
                d.breeds.info_dir = b.display().to_string();
                d.breeds.task = self.task;
                d.breeds.subclasses = self.subclasses;
            } else {
                let noun = self.wordnet.as_ref().ok_or_else(|| {
                    bad("--imagenet needs --wordnet DATA_NOUN (with --depths) or --breeds DIR (with --task)")
                })?;
                d.wordnet.noun = noun.display().to_string();
                d.wordnet.depths = self.depths.clone();
            }
            (d, None)
        } else {
            return Err(bad(
                "inspect needs one of --config, --cifar100, --folder, --inat, --imagenet",
            ));
        };
        if let Some(s) = self.size {
            d.size = s;
        }
        Ok((d, dir))
    }
}

/// `empirical inspect`: the report of [`inspect_data`] on the dataset `args` names (`set`
/// overrides the config of `--config`).
pub fn inspect(args: &InspectArgs, set: &[String]) -> Result<String, EmpiricalError> {
    let (d, dir) = args.data_config(set)?;
    let mut decode = decode_options(&d);
    decode.size_field = if args.size.is_some() {
        "--size"
    } else {
        "data.size (or --size)"
    }
    .into();
    let opts = InspectOptions {
        decode,
        check: args.check,
        tree_lines: args.tree_lines,
    };
    Ok(inspect_data(&d, dir.as_deref(), &opts)?)
}
