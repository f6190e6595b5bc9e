//! The error type of the empirical half's training layer: the optimizer ([`super::optim`]),
//! the training loop ([`super::train`]), checkpoints ([`super::checkpoint`]) and linear probes
//! ([`super::probe`]), with the errors of the layers below (networks, data, files) kept typed as
//! their sources.
//!
//! Every variant says what was being done and, where there is one, the file at fault; a diverged
//! run names the epoch, the optimizer step and the learning rate at which the loss stopped being
//! finite.

use std::path::PathBuf;

use crate::empirical::data::DataError;
use crate::empirical::model::ModelError;
use crate::report::ReportError;

/// Errors from training, evaluating or checkpointing a network, or from a linear probe.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
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
    /// The training loss (or a gradient) became NaN or infinite.
    #[error(
        "training diverged at epoch {epoch}, step {step} (batch {batch} of the epoch), learning \
         rate {lr:.6e}: {what} is {value} (try a lower learning rate or a longer warm-up)"
    )]
    Diverged {
        /// The 0-based epoch.
        epoch: usize,
        /// The 0-based optimizer step (counted over the whole run).
        step: u64,
        /// The 0-based batch within the epoch.
        batch: usize,
        /// The learning rate of that step.
        lr: f64,
        /// What was not finite ("the loss", "the gradient of backbone.stem.conv.weight", ...).
        what: String,
        /// The offending value.
        value: f32,
    },
    /// An optimizer step met a NaN or infinite gradient (nothing was updated). Training loops
    /// turn this into [`TrainError::Diverged`] with the epoch and batch.
    #[error(
        "non-finite gradient at optimizer step {step} (learning rate {lr:.6e}): {param} has an \
         entry {value}"
    )]
    NonFiniteGradient {
        /// The parameter whose gradient is not finite.
        param: String,
        /// The offending value.
        value: f32,
        /// The 0-based optimizer step.
        step: u64,
        /// The learning rate of that step.
        lr: f64,
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
    /// A checkpoint or weights file that cannot be read or does not fit the model.
    #[error("{}: {message}", .path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Writing a file failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Image data could not be loaded or batched.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A network could not be built, run, saved or loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl TrainError {
    /// A [`TrainError::Invalid`].
    pub(crate) fn invalid(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            context: context.into(),
            message: message.into(),
        }
    }

    /// A [`TrainError::Checkpoint`].
    pub(crate) fn checkpoint(path: &std::path::Path, message: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Attaches a context to tensor-library results: `x.conv2d(..).ctx("stem")?`.
pub(crate) trait TensorContext<T> {
    /// Maps the error to [`TrainError::Tensor`] with the context `what`.
    fn ctx(self, what: &str) -> Result<T, TrainError>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn ctx(self, what: &str) -> Result<T, TrainError> {
        self.map_err(|e| TrainError::Tensor {
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
        let e = TrainError::Diverged {
            epoch: 3,
            step: 1234,
            batch: 7,
            lr: 0.4,
            what: "the loss".into(),
            value: f32::NAN,
        };
        let s = e.to_string();
        assert!(
            s.contains("epoch 3") && s.contains("step 1234") && s.contains("4.0"),
            "{s}"
        );
        let e = TrainError::checkpoint(std::path::Path::new("a/b.ckpt"), "missing tensor x");
        assert_eq!(e.to_string(), "a/b.ckpt: missing tensor x");
        let r: candle_core::Result<()> = Err(candle_core::Error::Msg("boom".into()));
        let e = r.ctx("stem").unwrap_err();
        assert!(e.to_string().starts_with("stem: tensor error: boom"), "{e}");
        // Small enough to return by value without clippy's large-error lint.
        assert!(std::mem::size_of::<TrainError>() <= 128);
    }
}
