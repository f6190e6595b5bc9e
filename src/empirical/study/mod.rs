//! Whole empirical studies: the fine-to-coarse transfer protocol run over every pretraining
//! granularity of a [`StudyConfig`], several seeds, and the hard-sample
//! designs, with resumable results, a JSON summary, a Markdown table and SVG figures.
//!
//! Read [`protocol`] first: it states the experiment top to bottom. The rest, values below
//! procedures (no module imports from one further down this list):
//! * values: [`config`] (the TOML config), [`plan`] (the cells, their epochs, who trains, the
//!   phase names: all from the config alone), [`results`] (the records the study writes and its
//!   reports read);
//! * [`reports`]: `summary.json`, `results.md`, `epochs.csv`, the comparisons and the figures,
//!   written from the saved files only;
//! * procedures: [`memory`] (the allocation guard), [`designs`] (the data, its subsets and the
//!   designs), [`runner`] (networks on the run's device, training phases with checkpoints and
//!   resume, scoring, running a cell once), [`hard`] (hard test images: the ensemble, the
//!   rare-subclass design), [`labels`] (the pretraining labels of each granularity),
//!   [`readouts`] (summed head, linear probe, fine-tuning, the fine-class probe);
//! * experiments: [`protocol`], [`sharding`] (a study spread over shards: `--prepare`,
//!   `--shard I/N`, `empirical merge`), [`single`] (one network at a time: `empirical
//!   pretrain`, `empirical finetune`), [`sweep`] (a study run once per value of a config key,
//!   axis by axis: `empirical sweep`).
//!
//! # Files (in the study folder)
//! `config.toml` (the resolved config), `cells/*.json` (one per design, condition and seed,
//! written when it finishes: a killed study resumes from them), `checkpoints/` (per-epoch
//! checkpoints of the running cell: model, optimizer, epoch, generator; deleted when the cell
//! finishes), `ensemble/` (the ensemble's test probabilities and weights), `labels/*.json` (the
//! label sets of each design) and their summaries `labels_*.json`, `hard_subsets.json`,
//! `epochs.csv` (every training epoch), `summary.json`, `results.md` and the figures (see
//! [`reports::figures`]): the same bytes however often the study was interrupted and resumed.
//! Wall-clock times alone are kept apart, in `timings/` and `timings.csv`. `shards/I-of-N/` (a
//! shard's own config, cells, checkpoints and timings) when the study ran in shards.

pub mod config;
pub mod designs;
pub mod hard;
pub mod labels;
pub mod memory;
pub mod plan;
pub mod protocol;
pub mod readouts;
pub mod reports;
pub mod results;
pub mod runner;
pub mod sharding;
pub mod single;
pub mod sweep;

#[cfg(test)]
pub(crate) mod tests;

pub use designs::load_data;
pub use protocol::{prepare_study, run_shard, run_study};
pub use reports::summary::{summarize, summary_table, StudySummary, SummaryRow};
pub use reports::write_reports;
pub use results::{read_cells, CellResult, EpochRecord, ReadoutError};
pub use runner::{prepare_dir, RunOptions};

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
