//! Whole empirical studies: the fine-to-coarse transfer protocol run over every pretraining
//! granularity of a [`StudyConfig`], several seeds, and the hard-sample
//! designs, with resumable results, a JSON summary, a Markdown table and SVG figures.
//!
//! Read [`protocol`] first: it states the experiment top to bottom. The rest, one concept per
//! file:
//! * [`config`]: the TOML config; [`designs`]: the data, its subsets and the designs;
//! * [`labels`]: the pretraining labels of each granularity and the summed head;
//! * [`hard`]: hard test images (the ensemble, the rare-subclass design); [`memory`]: the
//!   allocation guard;
//! * [`phase`]: training phases with checkpoints and resume; [`runner`]: networks on the run's
//!   device, scoring, running a cell once;
//! * [`results`]: the files of a cell; [`summary`]: statistics over seeds and the table;
//!   [`stats`]: paired comparisons with the baseline (95% intervals, verdicts);
//!   [`report`]: `summary.json`, `results.md`, `epochs.csv`; [`figures`]: the SVG figures;
//! * [`single`]: one network at a time (`empirical pretrain`, `empirical finetune`);
//! * [`sharding`]: a study spread over shards (`--prepare`, `--shard I/N`, `empirical merge`);
//! * [`sweep`]: a study run once per value of a config key, axis by axis (`empirical sweep`).
//!
//! # Files (in the study folder)
//! `config.toml` (the resolved config), `cells/*.json` (one per design, condition and seed,
//! written when it finishes: a killed study resumes from them), `checkpoints/` (per-epoch
//! checkpoints of the running cell: model, optimizer, epoch, generator; deleted when the cell
//! finishes), `ensemble/` (the ensemble's test probabilities and weights), `labels/*.json` (the
//! label sets of each design) and their summaries `labels_*.json`, `hard_subsets.json`,
//! `epochs.csv` (every training epoch), `summary.json`, `results.md` and the figures (see
//! [`figures`]): the same bytes however often the study was interrupted and resumed.
//! Wall-clock times alone are kept apart, in `timings/` and `timings.csv`. `shards/I-of-N/` (a
//! shard's own config, cells, checkpoints and timings) when the study ran in shards.

pub mod comparisons;
pub mod config;
pub mod designs;
pub mod figures;
pub mod fine_probe;
pub mod hard;
pub mod labels;
pub mod memory;
pub mod phase;
pub mod protocol;
pub mod report;
pub mod results;
pub mod runner;
pub mod sharding;
pub mod single;
pub mod stats;
pub mod summary;
pub mod sweep;

#[cfg(test)]
pub(crate) mod tests;

pub use designs::load_data;
pub use protocol::{prepare_study, run_shard, run_study};
pub use report::write_reports;
pub use results::{read_cells, CellResult, EpochRecord, ReadoutError};
pub use runner::{prepare_dir, RunOptions};
pub use summary::{summarize, summary_table, StudySummary, SummaryRow};

use self::config::{StudyConfig, SYNTHETIC_TOML};
use super::error::EmpiricalError;

/// The embedded default study (the synthetic images), with `overrides` applied.
pub fn synthetic_default(overrides: &[String]) -> Result<StudyConfig, EmpiricalError> {
    Ok(crate::config::load_str(
        SYNTHETIC_TOML,
        "embedded experiments/empirical/synthetic.toml",
        overrides,
    )?)
}
