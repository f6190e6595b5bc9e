//! `empirical`: real-image fine-to-coarse transfer. Only dataset inspection is built so far;
//! the pretrain / fine-tune protocol is not built yet and the binary says so.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use granularity::empirical::data::{load_cifar100, load_image_folder};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "empirical",
    version,
    about = "Fine-to-coarse transfer on real images (in progress: only `inspect` works yet)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
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
        None => {
            eprintln!(
                "empirical: the pretrain / fine-tune protocol is not built yet (issue: the empirical half).\n\
                 Available now: `empirical inspect --cifar100 DIR` or `empirical inspect --folder DIR`."
            );
            std::process::exit(2);
        }
    }
}
