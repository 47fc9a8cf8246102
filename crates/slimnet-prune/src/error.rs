//! The error type of slimnet-prune.

use thiserror::Error;

/// Result type of slimnet-prune.
pub type Result<T> = std::result::Result<T, PruneError>;

/// Errors of slimnet-prune. Every variant that concerns one layer names its dotted path.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PruneError {
    /// A sparsity (fraction of weights to remove) outside `[0, 1)`.
    #[error("{}sparsity {sparsity} is outside [0, 1)", prefix(layer))]
    Sparsity {
        /// Layer path (or the list of layers of a global pass).
        layer: String,
        /// The rejected value.
        sparsity: f32,
    },
    /// A pruning step would remove every weight (or channel) of a layer.
    #[error(
        "{}pruning would remove all {total} {what} of the layer",
        prefix(layer)
    )]
    EmptyLayer {
        /// Layer path.
        layer: String,
        /// What would be emptied (`weights`, `channels`).
        what: &'static str,
        /// How many there are.
        total: usize,
    },
    /// A mask whose shape differs from its weight's.
    #[error(
        "{}mask of shape {actual:?} for a weight of shape {expected:?}",
        prefix(layer)
    )]
    MaskShape {
        /// Parameter path.
        layer: String,
        /// The weight's shape.
        expected: Vec<usize>,
        /// The mask's shape.
        actual: Vec<usize>,
    },
    /// A structured pass met a layer kind it has no channel-propagation rule for.
    #[error(
        "{layer}: no channel propagation rule for layer kind `{kind}` (structured pruning \
         cannot tell how removing channels changes it; declare it pass-through if it is)"
    )]
    UnknownKind {
        /// Layer path.
        layer: String,
        /// The layer kind.
        kind: String,
    },
    /// The request does not fit the layer (an N:M pattern on columns that are not a multiple of
    /// M, a criterion that cannot score single weights, ...).
    #[error("{}{reason}", prefix(layer))]
    Unsupported {
        /// Layer path.
        layer: String,
        /// What does not fit.
        reason: String,
    },
    /// A sparse kernel rejected a layer's weight.
    #[error("{}kernel error: {source}", prefix(layer))]
    Kernel {
        /// Layer path.
        layer: String,
        /// The kernel's error.
        source: slimnet_kernels::KernelError,
    },
    /// An error from slimnet-core (training, graph edits, model files).
    #[error(transparent)]
    Core(slimnet_core::Error),
}

/// `"path: "`, or nothing for an error that concerns no one layer.
fn prefix(layer: &str) -> String {
    if layer.is_empty() {
        String::new()
    } else {
        format!("{layer}: ")
    }
}

impl PruneError {
    /// An [`PruneError::Unsupported`] error.
    pub(crate) fn unsupported(layer: &str, reason: impl Into<String>) -> Self {
        PruneError::Unsupported {
            layer: layer.to_string(),
            reason: reason.into(),
        }
    }

    /// A [`PruneError::Kernel`] error at `layer`.
    pub(crate) fn kernel(layer: &str, source: slimnet_kernels::KernelError) -> Self {
        PruneError::Kernel {
            layer: layer.to_string(),
            source,
        }
    }
}

/// A core error; a pruning error that travelled through core code (a rewrite rule, a layer)
/// comes back as itself.
impl From<slimnet_core::Error> for PruneError {
    fn from(e: slimnet_core::Error) -> Self {
        match e.into_method::<PruneError>() {
            Ok((_, p)) => p,
            Err(core) => PruneError::Core(core),
        }
    }
}

/// Converts into a core error without losing anything, so pruning can run inside core
/// callbacks and rewrite rules: a wrapped core error comes back as itself, anything else is
/// kept whole as the source of [`slimnet_core::Error::Method`].
impl From<PruneError> for slimnet_core::Error {
    fn from(e: PruneError) -> Self {
        match e {
            PruneError::Core(inner) => inner,
            other => slimnet_core::Error::method(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_layer_and_survive_conversion() {
        let e = PruneError::Sparsity {
            layer: "fc1".into(),
            sparsity: 1.5,
        };
        assert_eq!(e.to_string(), "fc1: sparsity 1.5 is outside [0, 1)");
        let c: slimnet_core::Error = e.into();
        assert_eq!(c.to_string(), "fc1: sparsity 1.5 is outside [0, 1)");
        // nothing is lost: the source is the prune error itself
        let src = std::error::Error::source(&c).expect("a source");
        assert!(matches!(
            src.downcast_ref::<PruneError>(),
            Some(PruneError::Sparsity { .. })
        ));
    }
}
