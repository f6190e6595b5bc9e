//! [`ModelError`]: what building, running, saving and loading a network can fail with. The
//! CPU engine's own layers return candle's `Result` (a custom operation's error is candle's);
//! the model attaches what it was doing ([`TensorContext`]).

use std::path::{Path, PathBuf};

use super::cpu::SimdError;

/// Errors of the networks.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
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
    /// An argument that does not fit: a config the model cannot build, an image shape it cannot
    /// take, a head of the wrong size, ...
    #[error("{context}: {message}")]
    Invalid {
        /// The function or object at fault.
        context: String,
        /// What is wrong.
        message: String,
    },
    /// A weights file that cannot be read or written, or does not fit the model.
    #[error("{}: {message}", .path.display())]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The vector instructions asked for (`GRANULARITY_SIMD`) are unknown or missing.
    #[error(transparent)]
    Simd(#[from] SimdError),
    /// Writing a weights file failed.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

impl ModelError {
    /// A [`ModelError::Invalid`].
    pub(crate) fn invalid(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            context: context.into(),
            message: message.into(),
        }
    }

    /// A [`ModelError::Weights`].
    pub(crate) fn weights(path: &Path, message: impl Into<String>) -> Self {
        Self::Weights {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Attaches a context to tensor-library results: `x.conv2d(..).ctx("stem")?`.
pub(crate) trait TensorContext<T> {
    /// Maps the error to [`ModelError::Tensor`] with the context `what`.
    fn ctx(self, what: &str) -> Result<T, ModelError>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn ctx(self, what: &str) -> Result<T, ModelError> {
        self.map_err(|e| ModelError::Tensor {
            context: what.to_string(),
            source: Box::new(e),
        })
    }
}
