use thiserror::Error;

/// Result type of slimnet-core.
pub type Result<T> = std::result::Result<T, Error>;

/// Errors of slimnet-core. Variants name the layer path (dotted, e.g. `features.3`) where one applies.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An input or tensor does not have the expected shape.
    #[error("{layer}: expected input of shape {expected}, got {actual:?}")]
    Shape {
        /// Layer path (empty for a free-standing layer).
        layer: String,
        /// The expected shape, in words (`[N, 3, H, W]`).
        expected: String,
        /// The actual shape.
        actual: Vec<usize>,
    },
    /// A layer's hyper-parameters are invalid.
    #[error("{layer}: invalid configuration: {reason}")]
    Config {
        /// Layer path.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// `backward` called without a preceding `forward_train`, or on a layer that cannot train.
    #[error("{layer}: {reason}")]
    Backward {
        /// Layer path.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// A graph is malformed (unknown node, cycle, duplicate name, bad merge).
    #[error("graph: {0}")]
    Graph(String),
    /// A loss or value became NaN or infinite during training.
    #[error("{what} became non-finite ({value}) at epoch {epoch}, batch {batch}")]
    NonFinite {
        /// What turned non-finite (e.g. "loss").
        what: String,
        /// The value.
        value: f32,
        /// Epoch (0-based).
        epoch: usize,
        /// Batch within the epoch (0-based).
        batch: usize,
    },
    /// A model file is malformed.
    #[error("model file: {0}")]
    ModelFile(String),
    /// A model file names a layer kind that no registry entry knows.
    #[error("model file: unknown layer kind `{kind}` at `{layer}`")]
    UnknownKind {
        /// The kind string.
        kind: String,
        /// Layer path.
        layer: String,
    },
    /// A data file (IDX, dataset) is malformed or missing.
    #[error("data {path}: {reason}")]
    Data {
        /// File or dataset name.
        path: String,
        /// What is wrong, and what to do where it helps.
        reason: String,
    },
    /// An invalid argument outside any layer (optimizer settings, loss inputs ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A kernel rejected its inputs.
    #[error("{layer}: kernel error: {source}")]
    Kernel {
        /// Layer path.
        layer: String,
        /// The kernel's error.
        source: slimnet_kernels::KernelError,
    },
    /// An I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl From<slimnet_kernels::KernelError> for Error {
    fn from(source: slimnet_kernels::KernelError) -> Self {
        Error::Kernel {
            layer: String::new(),
            source,
        }
    }
}

impl Error {
    /// Prefixes the layer path of this error with `prefix` (a graph node name).
    pub fn in_layer(mut self, prefix: &str) -> Self {
        let join = |p: &mut String| {
            *p = if p.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{p}")
            }
        };
        match &mut self {
            Error::Shape { layer, .. }
            | Error::Config { layer, .. }
            | Error::Backward { layer, .. }
            | Error::UnknownKind { layer, .. }
            | Error::Kernel { layer, .. } => join(layer),
            _ => {}
        }
        self
    }

    /// A shape error for a free-standing layer (the graph adds the path).
    pub fn shape(expected: impl Into<String>, actual: &[usize]) -> Self {
        Error::Shape {
            layer: String::new(),
            expected: expected.into(),
            actual: actual.to_vec(),
        }
    }

    /// A configuration error for a free-standing layer.
    pub fn config(reason: impl Into<String>) -> Self {
        Error::Config {
            layer: String::new(),
            reason: reason.into(),
        }
    }
}
