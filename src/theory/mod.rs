//! The theory half: a CPU simulation of the paper's two-layer convolutional ReLU network on
//! hierarchical multi-view data (our reconstruction, written down in `theory/MODEL.md`).
//!
//! - [`config`]: the TOML configuration of a run;
//! - [`data`]: the data distribution (features, easy and hard samples);
//! - [`normals`]: standard normals in bulk, with the bits of one-at-a-time sampling;
//! - [`net`]: the network and its analytic gradients;
//! - [`train`]: SGD pretraining until convergence, recording the feature responses;
//! - [`responses`]: neuron x feature correlations and their summaries;
//! - [`readout`]: downstream coarse classifiers (summed head, linear probe, fine-tuning);
//! - [`run`]: conditions, one run per condition and seed, grids of runs;
//! - [`sweep`]: sweeps over parameter grids, and the built-in ones;
//! - [`margin`]: the summed head's hard-sample margin explained by the responses (the d axis);
//! - [`commands`]: the `theory-sim` commands as library functions;
//! - [`sharding`]: a sweep spread over shards (`--prepare`, `--shard I/N`, `theory-sim merge`);
//! - [`claims`]: the paper's claims as executable checks (`theory/CLAIMS.md`);
//! - [`figures`]: the SVG figures made from saved results;
//! - [`mod@bench`]: the SGD-step benchmark;
//! - [`product_candidates`]: the step's products beside the `gemm` crate's (part of the benchmark).

pub mod bench;
pub mod claims;
pub mod commands;
pub mod config;
pub mod data;
pub mod figures;
pub mod margin;
pub mod net;
pub mod normals;
pub mod product_candidates;
pub mod readout;
pub mod responses;
pub mod run;
pub mod sharding;
pub mod sweep;
pub mod train;

/// Errors of the theory simulator.
#[derive(Debug, thiserror::Error)]
pub enum TheoryError {
    /// A configuration problem (names the file and field).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A relabeling or hierarchy problem.
    #[error("labels: {0}")]
    Hierarchy(#[from] crate::hierarchy::HierarchyError),
    /// Training produced a non-finite loss or weights.
    #[error("diverged at step {step} of {what}")]
    Diverged {
        /// The step at which it happened.
        step: usize,
        /// What was being trained, and which setting to change.
        what: String,
    },
    /// Writing results failed.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// Drawing a figure failed.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// A sweep or claims definition is inconsistent, or a saved file cannot be read back.
    #[error("{0}")]
    Invalid(String),
    /// A shard or a merge of shards went wrong.
    #[error(transparent)]
    Shard(#[from] crate::cluster::ShardError),
}
