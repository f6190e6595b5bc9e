//! `empirical`: real-image fine-to-coarse transfer. With no arguments it runs the minimal
//! transfer protocol (baseline, coarse and fine pretraining, fine-tuning, mapped head) on the
//! embedded synthetic multi-view images; `inspect` loads and checks a dataset. Studies from TOML
//! configs, CIFAR-100 studies and figures are not built yet.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use granularity::empirical::data::{load_cifar100, load_image_folder};
use granularity::empirical::protocol::run_synthetic_default;
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
    let t = std::time::Instant::now();
    let run = run_synthetic_default(out, &mut |line| eprintln!("  {line}"))?;
    println!("{}", run.table);
    println!(
        "one seed ({}), {:.0} s; results in {}",
        run.seed,
        t.elapsed().as_secs_f64(),
        run.dir.display()
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
