//! The error type of the empirical half above its training layer: the studies
//! ([`super::study`]), the benchmarks and the GPU check, with the errors of the layers below
//! (training, networks, data, k-means, configs, hierarchies, figures, shards) kept typed as
//! their sources.
//!
//! Every variant says what was being done and, where there is one, the file at fault.

use crate::cluster::ShardError;
use crate::config::ConfigError;
use crate::empirical::data::DataError;
use crate::empirical::kmeans::KmeansError;
use crate::empirical::model::ModelError;
use crate::empirical::train_error::TrainError;
use crate::hierarchy::HierarchyError;
use crate::plot::PlotError;
use crate::report::ReportError;

/// Errors from a study, a benchmark or the GPU check.
#[derive(Debug, thiserror::Error)]
pub enum EmpiricalError {
    /// An error from the tensor library (shape mismatch, unsupported operation, ...), with what
    /// was being done when it happened.
    #[error("{context}: tensor error: {source}")]
    Tensor {
        /// What was being done.
        context: String,
        /// The tensor library's error (boxed: it is large).
        #[source]
        source: Box<candle_core::Error>,
    },
    /// An argument that does not fit: labels of the wrong length or out of range, a zero batch
    /// size, an image shape the model cannot take, a bad schedule, ...
    #[error("{context}: {message}")]
    Invalid {
        /// The function or object at fault.
        context: String,
        /// What is wrong.
        message: String,
    },
    /// Writing a file failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Image data could not be loaded or batched.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A config could not be read, overridden, checked or written.
    #[error(transparent)]
    Config(Box<ConfigError>),
    /// A relabeling of the hierarchy could not be built.
    #[error(transparent)]
    Hierarchy(Box<HierarchyError>),
    /// k-means labels could not be built.
    #[error(transparent)]
    Kmeans(Box<KmeansError>),
    /// The labels of a granularity could not be built.
    #[error("granularity '{granularity}': {source}")]
    Labels {
        /// The granularity's name.
        granularity: String,
        /// Why.
        #[source]
        source: Box<EmpiricalError>,
    },
    /// A figure could not be drawn.
    #[error(transparent)]
    Plot(Box<PlotError>),
    /// The run stopped on request after this many training epochs (each checkpointed), as if
    /// killed: running it again resumes.
    #[error("stopped on request after {epochs} training epochs; run again to resume")]
    Interrupted {
        /// Training epochs run.
        epochs: usize,
    },
    /// A shard, its preparation or a merge of shards went wrong.
    #[error(transparent)]
    Shard(Box<ShardError>),
    /// A network could not be built, run, saved or loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A network could not be trained, evaluated or checkpointed, or a probe trained.
    #[error(transparent)]
    Train(#[from] TrainError),
}

impl From<ShardError> for EmpiricalError {
    fn from(e: ShardError) -> Self {
        Self::Shard(Box::new(e))
    }
}

impl From<ConfigError> for EmpiricalError {
    fn from(e: ConfigError) -> Self {
        Self::Config(Box::new(e))
    }
}

impl From<HierarchyError> for EmpiricalError {
    fn from(e: HierarchyError) -> Self {
        Self::Hierarchy(Box::new(e))
    }
}

impl From<KmeansError> for EmpiricalError {
    fn from(e: KmeansError) -> Self {
        Self::Kmeans(Box::new(e))
    }
}

impl From<PlotError> for EmpiricalError {
    fn from(e: PlotError) -> Self {
        Self::Plot(Box::new(e))
    }
}

impl EmpiricalError {
    /// An [`EmpiricalError::Invalid`].
    pub(crate) fn invalid(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            context: context.into(),
            message: message.into(),
        }
    }

    /// A [`TrainError::Checkpoint`]: a checkpoint or weights file that cannot be read or does
    /// not fit.
    pub(crate) fn checkpoint(path: &std::path::Path, message: impl Into<String>) -> Self {
        Self::Train(TrainError::checkpoint(path, message))
    }
}

/// Attaches a context to tensor-library results: `x.conv2d(..).ctx("stem")?`.
pub(crate) trait TensorContext<T> {
    /// Maps the error to [`EmpiricalError::Tensor`] with the context `what`.
    fn ctx(self, what: &str) -> Result<T, EmpiricalError>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn ctx(self, what: &str) -> Result<T, EmpiricalError> {
        self.map_err(|e| EmpiricalError::Tensor {
            context: what.to_string(),
            source: Box::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_went_wrong() {
        let e = EmpiricalError::checkpoint(std::path::Path::new("a/b.ckpt"), "missing tensor x");
        assert_eq!(e.to_string(), "a/b.ckpt: missing tensor x");
        let e = EmpiricalError::invalid("study", "no seeds");
        assert_eq!(e.to_string(), "study: no seeds");
        let r: candle_core::Result<()> = Err(candle_core::Error::Msg("boom".into()));
        let e = r.ctx("stem").unwrap_err();
        assert!(e.to_string().starts_with("stem: tensor error: boom"), "{e}");
        // Small enough to return by value without clippy's large-error lint.
        assert!(std::mem::size_of::<EmpiricalError>() <= 128);
    }
}
