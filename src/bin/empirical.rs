//! `empirical`: real-image fine-to-coarse transfer. With no arguments it runs the minimal
//! transfer protocol (baseline, coarse and fine pretraining, fine-tuning, mapped head) on the
//! embedded synthetic multi-view images; `inspect` loads and checks a dataset. Studies from TOML
//! configs, CIFAR-100 studies and figures are not built yet.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use granularity::empirical::data::synthetic::{generate, SyntheticConfig};
use granularity::empirical::data::{load_cifar100, load_image_folder};
use granularity::empirical::protocol::{run_transfer, TransferConfig};
use granularity::report::{MarkdownTable, ResultsDir};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "empirical",
    version,
    about = "Fine-to-coarse transfer on real images (in progress)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The default: the transfer protocol on the embedded synthetic multi-view images.
    Synthetic {
        /// Results folder.
        #[arg(long, default_value = "results/empirical/synthetic")]
        out: PathBuf,
    },
    /// Load a dataset, check it, and print its sizes and label hierarchy.
    Inspect {
        /// A CIFAR-100 binary folder (train.bin / test.bin or .gz, label-name files).
        #[arg(long, conflicts_with = "folder")]
        cifar100: Option<PathBuf>,
        /// An image folder with hierarchy.csv, train/LEAF/ and test/LEAF/ (see the README).
        #[arg(long)]
        folder: Option<PathBuf>,
        /// Image size for --folder.
        #[arg(long, default_value_t = 32)]
        size: u32,
    },
}

fn run_synthetic(out: &std::path::Path) -> Result<()> {
    let data_cfg = SyntheticConfig::default();
    let cfg = TransferConfig::default_synthetic();
    let data = generate(&data_cfg)?;
    let test = data.test();
    eprintln!(
        "synthetic multi-view images: {} train, {} test ({} hard); {} on CPU",
        data.train.len,
        test.len,
        data.test_is_hard.iter().filter(|&&h| h).count(),
        cfg.model.arch.name()
    );
    let t = std::time::Instant::now();
    let res = run_transfer(&cfg, &data.train, &test, &data.test_is_hard, &mut |line| {
        eprintln!("  {line}")
    })?;
    let dir = ResultsDir::create(out)?;
    dir.write_text(
        "config.toml",
        &format!(
            "# data\n{}\n# transfer\n{}",
            toml::to_string_pretty(&data_cfg)?,
            toml::to_string_pretty(&cfg)?
        ),
    )?;
    dir.write_json("results.json", &res)?;
    let mut table = MarkdownTable::new([
        "pretraining",
        "classes",
        "readout",
        "coarse error",
        "easy",
        "hard",
    ]);
    for r in &res {
        table.row([
            r.condition.clone(),
            r.classes.to_string(),
            r.readout.clone(),
            format!("{:.3}", r.error),
            format!("{:.3}", r.easy_error),
            format!("{:.3}", r.hard_error),
        ]);
    }
    dir.write_text("results.md", &table.to_string())?;
    println!("{table}");
    println!(
        "one seed ({}), {:.0} s; results in {}",
        cfg.seed,
        t.elapsed().as_secs_f64(),
        dir.root().display()
    );
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => run_synthetic(&PathBuf::from("results/empirical/synthetic")),
        Some(Command::Synthetic { out }) => run_synthetic(&out),
        Some(Command::Inspect {
            cifar100,
            folder,
            size,
        }) => {
            let splits = match (cifar100, folder) {
                (Some(d), _) => load_cifar100(&d)?,
                (None, Some(d)) => load_image_folder(&d, size)?,
                (None, None) => bail!("inspect needs --cifar100 DIR or --folder DIR"),
            };
            println!("{}", splits.summary());
            Ok(())
        }
    }
}
