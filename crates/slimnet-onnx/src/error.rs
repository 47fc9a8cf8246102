//! The error type of slimnet-onnx.

use thiserror::Error;

/// Result type of slimnet-onnx.
pub type Result<T> = std::result::Result<T, OnnxError>;

/// Errors of slimnet-onnx: reading (naming the node, its op type and the opset) and writing
/// (naming the layer path and kind).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The bytes are not an ONNX model (not protobuf, or a message that does not fit).
    #[error("not an ONNX model: {0}")]
    Decode(String),
    /// The model imports an opset of the default domain outside the supported range.
    #[error("ONNX opset {opset} of the default domain is outside the supported {min}..={max}")]
    Opset {
        /// The model's opset.
        opset: i64,
        /// Lowest supported.
        min: i64,
        /// Highest supported.
        max: i64,
    },
    /// A node whose op (or attribute, or operand kind) slimnet cannot import.
    #[error("node `{node}` ({op}, opset {opset}): unsupported: {reason}")]
    Unsupported {
        /// Node name (or its first output when the node has no name).
        node: String,
        /// Op type, with its domain when not the default one.
        op: String,
        /// The opset of the op's domain.
        opset: i64,
        /// What is not supported.
        reason: String,
    },
    /// A node that is malformed (missing inputs, attributes out of range, shapes that do not
    /// fit).
    #[error("node `{node}` ({op}): {reason}")]
    Invalid {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor (initializer, constant, attribute) that is malformed or too large.
    #[error("tensor `{name}`: {reason}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The graph as a whole does not fit a slimnet graph (no or several inputs, several
    /// outputs, a value read before it is written).
    #[error("ONNX graph: {0}")]
    Graph(String),
    /// A layer that cannot be written to ONNX.
    #[error("export `{layer}` ({kind}): {reason}")]
    Export {
        /// Layer path.
        layer: String,
        /// Layer kind.
        kind: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An error from slimnet-core (a layer that rejects its configuration, a graph edit).
    #[error(transparent)]
    Core(slimnet_core::Error),
}

impl OnnxError {
    pub(crate) fn graph(reason: impl Into<String>) -> Self {
        OnnxError::Graph(reason.into())
    }

    pub(crate) fn tensor(name: &str, reason: impl Into<String>) -> Self {
        OnnxError::Tensor {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn export(layer: &str, kind: &str, reason: impl Into<String>) -> Self {
        OnnxError::Export {
            layer: layer.to_string(),
            kind: kind.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        OnnxError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// A core error; an ONNX error that travelled through core code comes back as itself.
impl From<slimnet_core::Error> for OnnxError {
    fn from(e: slimnet_core::Error) -> Self {
        match e.into_method::<OnnxError>() {
            Ok((_, o)) => o,
            Err(core) => OnnxError::Core(core),
        }
    }
}

/// Converts into a core error without losing anything: a wrapped core error comes back as
/// itself, anything else is kept whole as the source of [`slimnet_core::Error::Method`].
impl From<OnnxError> for slimnet_core::Error {
    fn from(e: OnnxError) -> Self {
        match e {
            OnnxError::Core(inner) => inner,
            other => slimnet_core::Error::method(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_the_trip_through_core() {
        let e = OnnxError::Unsupported {
            node: "n1".into(),
            op: "Resize".into(),
            opset: 13,
            reason: "no slimnet layer".into(),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("n1") && msg.contains("Resize") && msg.contains("13"),
            "{msg}"
        );
        let c: slimnet_core::Error = e.into();
        assert_eq!(c.to_string(), msg);
        let back: OnnxError = c.into();
        assert!(matches!(back, OnnxError::Unsupported { .. }));
        let core = slimnet_core::Error::Invalid("x".into());
        let o: OnnxError = core.into();
        let c: slimnet_core::Error = o.into();
        assert!(matches!(c, slimnet_core::Error::Invalid(_)));
    }
}
