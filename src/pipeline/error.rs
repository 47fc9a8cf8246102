//! The errors of pipelines and recipes.

use thiserror::Error;

/// What went wrong in a pipeline or a recipe. Every variant names the step (by its number,
/// counted from 1, and its kind) or the recipe file and line, in one line of text.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A step cannot run on the model as the steps before it left it (pruning an int8
    /// model, fine-tuning sparse deploy layers, converting to sparse without masks ...).
    #[error("step {index} `{step}`: {reason}")]
    Order {
        /// Step number, from 1.
        index: usize,
        /// Step kind (`prune`, `quantize` ...).
        step: &'static str,
        /// What the step needs and what to do.
        reason: String,
    },
    /// A step's settings are out of range (a sparsity of 1.5, a learning rate of 0 ...).
    #[error("step {index} `{step}`: {reason}")]
    Settings {
        /// Step number, from 1.
        index: usize,
        /// Step kind.
        step: &'static str,
        /// Which setting and why.
        reason: String,
    },
    /// A step failed while running; the source is the method's error.
    #[error("step {index} `{step}`: {source}")]
    Step {
        /// Step number, from 1.
        index: usize,
        /// Step kind.
        step: &'static str,
        /// The error of the method.
        source: crate::Error,
    },
    /// The data does not fit the model (input shape, classes).
    #[error("data: {0}")]
    Data(String),
    /// A recipe file that does not parse or does not fit the recipe format.
    #[error("{file}:{line}:{column}: {message}")]
    Recipe {
        /// The file (or `<recipe>` for text).
        file: String,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
        /// What is wrong (an unknown key names the key and the keys allowed there).
        message: String,
    },
}

/// Kept whole as the source of [`crate::Error::Method`], so `?` works in functions returning
/// [`crate::Result`]; [`PipelineError::from_error`] gets it back.
impl From<PipelineError> for crate::Error {
    fn from(e: PipelineError) -> Self {
        crate::Error::method(e)
    }
}

impl PipelineError {
    /// The pipeline error inside a slimnet [`Error`](crate::Error), if it holds one.
    ///
    /// # Errors
    /// The error itself when it is not a pipeline error.
    pub fn from_error(e: crate::Error) -> std::result::Result<PipelineError, crate::Error> {
        e.into_method::<PipelineError>().map(|(_, p)| p)
    }

    /// The step number (from 1) the error concerns, if it concerns one.
    pub fn step_index(&self) -> Option<usize> {
        match self {
            PipelineError::Order { index, .. }
            | PipelineError::Settings { index, .. }
            | PipelineError::Step { index, .. } => Some(*index),
            _ => None,
        }
    }
}
