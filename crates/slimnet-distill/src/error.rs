//! The error type of slimnet-distill.

use thiserror::Error;

/// Result type of slimnet-distill.
pub type Result<T> = std::result::Result<T, DistillError>;

/// Errors of slimnet-distill. Stage numbers are 1-based: stage `k` maps the teacher's features
/// after cut `k - 1` (the input for `k = 1`) to the features after cut `k` (the output for the
/// last stage).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DistillError {
    /// An error of slimnet-core outside any stage.
    #[error(transparent)]
    Core(slimnet_core::Error),
    /// An error of slimnet-core while building, running or training one stage.
    #[error("stage {stage}: {source}")]
    InStage {
        /// The stage (1-based).
        stage: usize,
        /// The underlying error.
        source: slimnet_core::Error,
    },
    /// A cut point names no node of the teacher.
    #[error("stage {stage}: cut point `{name}` is not a node of the teacher (it would end stage {stage})")]
    UnknownCut {
        /// The stage the cut would end (1-based).
        stage: usize,
        /// The name given.
        name: String,
    },
    /// A cut point does not separate the graph: a later node reads a node before it.
    #[error("stage {stage}: cut point `{name}` does not split the teacher: node `{reader}` after it reads `{read}` before it")]
    NotACut {
        /// The stage the cut would end (1-based).
        stage: usize,
        /// The cut node.
        name: String,
        /// The node that reads across the cut.
        reader: String,
        /// The node it reads.
        read: String,
    },
    /// A stage would hold no node (cut points repeated, out of order, at the input or output),
    /// or a student stage is an empty graph.
    #[error("stage {stage} is empty: {reason}")]
    EmptyStage {
        /// The stage (1-based).
        stage: usize,
        /// Why.
        reason: String,
    },
    /// A student stage's boundary shape differs from the teacher's and no adapter bridges it.
    #[error("{}", boundary_message(*stage, side, expected, actual, source.as_deref()))]
    BoundaryShape {
        /// The stage (1-based).
        stage: usize,
        /// `"input"` or `"output"`.
        side: &'static str,
        /// The teacher's boundary shape.
        expected: Vec<usize>,
        /// What the student stage accepts or produces (empty when it rejects the input).
        actual: Vec<usize>,
        /// Why the student stage (or its adapter) rejected the shape, when it did.
        #[source]
        source: Option<Box<slimnet_core::Error>>,
    },
    /// The teacher is not frozen (it holds gradients from training).
    #[error("teacher is not frozen: {reason}")]
    TeacherNotFrozen {
        /// Why.
        reason: String,
    },
    /// An invalid setting (temperature, widths, budgets, epochs ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An I/O error (writing reports and plots).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn boundary_message(
    stage: usize,
    side: &str,
    expected: &[usize],
    actual: &[usize],
    source: Option<&slimnet_core::Error>,
) -> String {
    match (side, source) {
        ("input", Some(e)) => format!(
            "stage {stage}: the student stage rejects the teacher's input shape {expected:?}: {e}"
        ),
        (_, Some(e)) => format!(
            "stage {stage}: the adapter rejects the student's output shape {actual:?} (the \
             teacher's is {expected:?}): {e}"
        ),
        _ => format!(
            "stage {stage}: student {side} shape {actual:?} does not match the teacher's \
             {expected:?} and no adapter is set"
        ),
    }
}

impl DistillError {
    /// Wraps a core error as happening in `stage` (1-based).
    pub fn in_stage(stage: usize) -> impl FnOnce(slimnet_core::Error) -> DistillError {
        move |source| DistillError::InStage { stage, source }
    }
}

/// A core error; a distillation error that travelled through core code (a loss, a layer)
/// comes back as itself.
impl From<slimnet_core::Error> for DistillError {
    fn from(e: slimnet_core::Error) -> Self {
        match e.into_method::<DistillError>() {
            Ok((_, d)) => d,
            Err(core) => DistillError::Core(core),
        }
    }
}

/// Converts into a core error without losing anything (for use inside core traits such as
/// [`slimnet_core::loss::Loss`]): a wrapped core error comes back as itself, anything else is
/// kept whole as the source of [`slimnet_core::Error::Method`].
impl From<DistillError> for slimnet_core::Error {
    fn from(e: DistillError) -> Self {
        match e {
            DistillError::Core(c) => c,
            other => slimnet_core::Error::method(other),
        }
    }
}
