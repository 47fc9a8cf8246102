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
    /// A value at inference held NaN or an infinity (found by the opt-in check
    /// [`Graph::forward_checked`](crate::Graph::forward_checked)).
    #[error(
        "{}{what} holds a non-finite value ({value}) at flat index {index}",
        if layer.is_empty() { String::new() } else { format!("{layer}: ") }
    )]
    NotFinite {
        /// Path of the node whose output it is (empty for the model's input).
        layer: String,
        /// What held it (`input`, `output`).
        what: String,
        /// The first non-finite value.
        value: f32,
        /// Its position in the flattened tensor.
        index: usize,
    },
    /// A model file is malformed.
    #[error("model file: {0}")]
    ModelFile(String),
    /// A model file names a layer kind that no registry entry knows.
    #[error(
        "model file: unknown layer kind `{kind}` at `{layer}` (`slimnet::load` knows the kinds \
         of every slimnet crate; `io::load` only the core's; a kind of your own needs \
         `io::Registry::register`)"
    )]
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
    /// A pass met a selected layer with weights that it has no rule for (e.g. pruning or
    /// decomposing a layer that is already int8).
    #[error(
        "{layer}: `{pass}` has no rule for layer kind `{kind}`{}; run it before the step that \
         made this kind, or select other layers",
        if *others > 0 { format!(" (and {others} more layers)") } else { String::new() }
    )]
    Unhandled {
        /// Layer path.
        layer: String,
        /// The layer kind.
        kind: String,
        /// The pass.
        pass: String,
        /// How many more layers were not handled.
        others: usize,
    },
    /// An error of a method crate (decompose, prune, quant, distill), kept whole as the
    /// source, with the path of the layer it happened in when a graph added one.
    #[error("{}{source}", if layer.is_empty() { String::new() } else { format!("{layer}: ") })]
    Method {
        /// Layer path added by the graph (the method error may name a path of its own).
        layer: String,
        /// The method crate's error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A size read from a model file or met at run time exceeds the memory ceiling of
    /// [`limits`](crate::limits) (or overflows), so nothing was allocated.
    #[error(
        "{}{what} of shape {shape:?} {} the limit of {limit} bytes per tensor (see \
         slimnet_core::limits; raise it with {} or limits::set_max_tensor_bytes)",
        if layer.is_empty() { String::new() } else { format!("{layer}: ") },
        match bytes { Some(b) => format!("needs {b} bytes, more than"), None => "overflows".to_string() },
        crate::limits::ENV_VAR
    )]
    Limit {
        /// Layer path.
        layer: String,
        /// What would have been allocated (`conv output`, `weight`, ...).
        what: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Its size in bytes (`None` when that overflows).
        bytes: Option<usize>,
        /// The ceiling in bytes.
        limit: usize,
    },
    /// One call of a layer would do more multiply-adds than the work ceiling of
    /// [`limits`](crate::limits) allows (unbounded unless set), so it did not run.
    #[error(
        "{}{what} would do {} multiply-adds, more than the ceiling of {limit} (see \
         slimnet_core::limits; raise it with {} or limits::set_max_layer_macs)",
        if layer.is_empty() { String::new() } else { format!("{layer}: ") },
        match macs { Some(m) => m.to_string(), None => "more than 2^64".to_string() },
        crate::limits::MACS_ENV_VAR
    )]
    WorkLimit {
        /// Layer path.
        layer: String,
        /// What would have run (`convolution`, ...).
        what: String,
        /// Its multiply-adds (`None` when that overflows).
        macs: Option<usize>,
        /// The ceiling.
        limit: usize,
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
            | Error::Unhandled { layer, .. }
            | Error::Method { layer, .. }
            | Error::Limit { layer, .. }
            | Error::WorkLimit { layer, .. }
            | Error::Kernel { layer, .. } => join(layer),
            _ => {}
        }
        self
    }

    /// Wraps a method crate's error losslessly (see [`Error::Method`]); its source can be
    /// downcast back to the method's error type.
    pub fn method(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Method {
            layer: String::new(),
            source: Box::new(source),
        }
    }

    /// The method error of type `E` inside an [`Error::Method`], with the layer path a graph
    /// added to it (empty when none); any other error comes back unchanged as `Err`. Method
    /// crates use it to get their own errors back whole after a trip through core code.
    ///
    /// # Errors
    /// `self`, when it is not a method error of type `E`.
    pub fn into_method<E: std::error::Error + 'static>(
        self,
    ) -> std::result::Result<(String, E), Error> {
        match self {
            Error::Method { layer, source } if source.is::<E>() => {
                let e = source.downcast::<E>().expect("checked by is");
                Ok((layer, *e))
            }
            other => Err(other),
        }
    }

    /// A shape error for a free-standing layer (the graph adds the path).
    pub fn shape(expected: impl Into<String>, actual: &[usize]) -> Self {
        Error::Shape {
            layer: String::new(),
            expected: expected.into(),
            actual: actual.to_vec(),
        }
    }

    /// The error of a layer's `backward` called before its `forward_train` (`kind`: the
    /// layer's kind).
    pub fn no_cache(kind: &str) -> Self {
        Error::Backward {
            layer: String::new(),
            reason: format!("{kind}: backward called without a preceding forward_train"),
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
