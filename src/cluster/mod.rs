//! Spreading a study over many processes or machines (a computing cluster; the k-means clusters
//! of label granularities are [`crate::empirical::kmeans`]).
//!
//! A study (the empirical `study`, the theory `sweep`) is a set of independent cells, each with
//! a stable id. Its work goes in three steps:
//! 1. **prepare** (once): what every cell needs first (for the empirical study: the hard-sample
//!    ensemble, the k-means embeddings and the label sets), written into the study folder;
//! 2. **shards** `--shard I/N` ([`Shard`]): each runs the cells it owns into its own folder
//!    `STUDY/shards/I-of-N/`, resuming like any run; a shard that finds the preparation missing
//!    says so and stops;
//! 3. **merge** ([`merge`]): the shards' cells gathered into the study folder (refusing other
//!    configs and conflicting copies of a cell), then the reports written by the same code that
//!    ends a single-process run, so the tables, JSON and figures are the same bits.
//!
//! [`slurm`] writes these steps as Slurm jobs (a preparation job, an array job of the shards,
//! a merge job, chained with `--dependency=afterok`) and can submit them.

pub mod merge;
pub mod shard;
pub mod slurm;

pub use merge::{
    check_complete, check_same_files, merge_cells, merge_dirs, same_bytes, shard_count, shard_dirs,
};
pub use shard::{Shard, SHARDS_DIR};
pub use slurm::{deploy, JobSet, SlurmArgs};

use std::path::PathBuf;

/// Errors of sharding, merging and submitting.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A `--shard I/N` that does not name a shard.
    #[error("shard {spec}: {why}")]
    Shard {
        /// The value given.
        spec: String,
        /// What is wrong with it.
        why: String,
    },
    /// Two folders to merge hold different versions of a file (e.g. their configs).
    #[error("{} and {} hold different {file}: only folders of the same study and config can be merged", a.display(), b.display())]
    Differs {
        /// The file compared.
        file: String,
        /// One folder.
        a: PathBuf,
        /// The other.
        b: PathBuf,
    },
    /// A shard run into a folder prepared for another config or study.
    #[error("{} was prepared for another sweep: its {file} differs from this run's; a shard runs the config and study of its preparation (the same --set and sweep options), or give another --out", dir.display())]
    OtherPreparation {
        /// The file that differs.
        file: String,
        /// The prepared folder.
        dir: PathBuf,
    },
    /// A file that merging or a shard needs is missing.
    #[error("{} is missing ({what})", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// Why it is needed, or what to run.
        what: String,
    },
    /// One cell saved twice with different results.
    #[error("cell {cell}: {} and {} hold different results; remove the wrong one (or re-run its shard with --fresh) and merge again", a.display(), b.display())]
    Conflict {
        /// The cell's id.
        cell: String,
        /// One copy.
        a: PathBuf,
        /// The other.
        b: PathBuf,
    },
    /// Cells that no merged folder holds.
    #[error("{}: {} not saved by any shard ({detail}); run (or resume) those shards, then merge again", root.display(), crate::report::count(*missing, "cell", "cells"))]
    Incomplete {
        /// The merged folder.
        root: PathBuf,
        /// How many cells are missing.
        missing: usize,
        /// The missing cells by shard.
        detail: String,
    },
    /// Writing scripts or submitting them failed.
    #[error("slurm: {0}")]
    Slurm(String),
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing or reading a result file failed.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

impl ShardError {
    fn shard(spec: &str, why: impl Into<String>) -> Self {
        ShardError::Shard {
            spec: spec.to_string(),
            why: why.into(),
        }
    }
}
