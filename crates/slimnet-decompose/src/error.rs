//! The error type of slimnet-decompose.

use thiserror::Error;

/// Result type of slimnet-decompose.
pub type Result<T> = std::result::Result<T, DecomposeError>;

/// Errors of slimnet-decompose. Variants name the layer path (dotted, e.g. `features.3`) where one
/// applies; free-standing decompositions leave it empty.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecomposeError {
    /// A requested rank is outside `1..=max`.
    #[error("{}rank {rank} is out of range 1..={max} for {what}", prefix(layer))]
    Rank {
        /// Layer path (empty for a free-standing decomposition).
        layer: String,
        /// The requested rank.
        rank: usize,
        /// The largest meaningful rank.
        max: usize,
        /// What was being decomposed (`a 800x500 matrix`).
        what: String,
    },
    /// An input holds NaN or an infinity.
    #[error(
        "{}{what} holds a non-finite value ({value}) at flat index {index}",
        prefix(layer)
    )]
    NonFinite {
        /// Layer path.
        layer: String,
        /// What holds the value (`weight`, `input`).
        what: String,
        /// The value.
        value: f64,
        /// Flat (row-major) index of the first such value.
        index: usize,
    },
    /// An iterative solver stopped before meeting its tolerance.
    #[error(
        "{}{method} did not converge: {iterations} iterations, relative error {error:.4e}, \
         last relative change {change:.3e} (tolerance {tol:.1e})",
        prefix(layer)
    )]
    NoConvergence {
        /// Layer path.
        layer: String,
        /// The solver (`CP-ALS`, `HOOI`, `SVD`).
        method: String,
        /// Iterations run.
        iterations: usize,
        /// Relative reconstruction error reached.
        error: f64,
        /// Relative change of the error in the last iteration.
        change: f64,
        /// The tolerance on that change.
        tol: f64,
    },
    /// A layer (or layer configuration) this crate cannot decompose.
    #[error("{}{reason}", prefix(layer))]
    Unsupported {
        /// Layer path.
        layer: String,
        /// What is unsupported and what to do instead.
        reason: String,
    },
    /// An argument is invalid (shape, option value).
    #[error("{}invalid argument: {reason}", prefix(layer))]
    Invalid {
        /// Layer path.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// An error from slimnet-core (building layers, graph rewrites).
    #[error(transparent)]
    Core(slimnet_core::Error),
}

fn prefix(layer: &str) -> String {
    if layer.is_empty() {
        String::new()
    } else {
        format!("{layer}: ")
    }
}

impl DecomposeError {
    /// An [`DecomposeError::Invalid`] without a layer path.
    pub fn invalid(reason: impl Into<String>) -> Self {
        DecomposeError::Invalid {
            layer: String::new(),
            reason: reason.into(),
        }
    }

    /// Prefixes the layer path of this error with `path`.
    pub fn in_layer(mut self, path: &str) -> Self {
        match &mut self {
            DecomposeError::Rank { layer, .. }
            | DecomposeError::NonFinite { layer, .. }
            | DecomposeError::NoConvergence { layer, .. }
            | DecomposeError::Unsupported { layer, .. }
            | DecomposeError::Invalid { layer, .. } => {
                *layer = if layer.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}.{layer}")
                };
            }
            DecomposeError::Core(e) => {
                let inner = std::mem::replace(e, slimnet_core::Error::Invalid(String::new()));
                *e = inner.in_layer(path);
            }
        }
        self
    }
}

/// A core error; a decomposition error that travelled through core code (a rewrite rule)
/// comes back as itself, with the path the graph added.
impl From<slimnet_core::Error> for DecomposeError {
    fn from(e: slimnet_core::Error) -> Self {
        match e.into_method::<DecomposeError>() {
            Ok((layer, d)) if layer.is_empty() => d,
            Ok((layer, d)) => d.in_layer(&layer),
            Err(core) => DecomposeError::Core(core),
        }
    }
}

/// Converts into a core error without losing anything: a wrapped core error comes back as
/// itself, anything else is kept whole as the source of [`slimnet_core::Error::Method`].
impl From<DecomposeError> for slimnet_core::Error {
    fn from(e: DecomposeError) -> Self {
        match e {
            DecomposeError::Core(inner) => inner,
            other => slimnet_core::Error::method(other),
        }
    }
}

/// Checks that every value is finite.
pub(crate) fn check_finite<'a>(
    values: impl IntoIterator<Item = &'a f32>,
    what: &str,
) -> Result<()> {
    for (index, &v) in values.into_iter().enumerate() {
        if !v.is_finite() {
            return Err(DecomposeError::NonFinite {
                layer: String::new(),
                what: what.to_string(),
                value: v as f64,
                index,
            });
        }
    }
    Ok(())
}

/// Checks `1 <= rank <= max`.
pub(crate) fn check_rank(rank: usize, max: usize, what: impl FnOnce() -> String) -> Result<()> {
    if rank == 0 || rank > max {
        return Err(DecomposeError::Rank {
            layer: String::new(),
            rank,
            max,
            what: what(),
        });
    }
    Ok(())
}
