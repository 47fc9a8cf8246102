//! The error type of slimnet-quant.

use thiserror::Error;

/// Result type of slimnet-quant.
pub type Result<T> = std::result::Result<T, QuantError>;

/// Errors of slimnet-quant. Variants that concern one layer or graph node name its dotted path.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum QuantError {
    /// A bit width outside the supported range.
    #[error(
        "{}bit width {bits} is outside {min}..={max}",
        if layer.is_empty() { String::new() } else { format!("{layer}: ") }
    )]
    BitWidth {
        /// Layer path (empty for a free-standing scheme).
        layer: String,
        /// The rejected width.
        bits: u32,
        /// Smallest supported width.
        min: u32,
        /// Largest supported width.
        max: u32,
    },
    /// NaN or infinity met while observing values (calibration, QAT observers).
    #[error(
        "{layer}: non-finite value {value} met during calibration (check the inputs and the model)"
    )]
    NonFinite {
        /// Node path whose values were observed.
        layer: String,
        /// The offending value.
        value: f32,
    },
    /// An observer was asked for a range before it saw any value.
    #[error("{layer}: the observer saw no values (empty calibration set?)")]
    NoData {
        /// Node path of the observer.
        layer: String,
    },
    /// Every value a layer's input took during calibration was the same, so the range has
    /// zero width and could not quantize any other input (all-zero or constant calibration
    /// data).
    #[error(
        "{layer}: every calibration value of the layer's input was {value}; a range of zero \
         width cannot quantize other inputs (calibrate on representative data, or leave the \
         layer in f32 with PtqConfig::with_skip)"
    )]
    ConstantCalibration {
        /// Node path of the layer.
        layer: String,
        /// The one value seen.
        value: f32,
    },
    /// Calibration was given no batches.
    #[error("calibration needs at least one batch, got none")]
    EmptyCalibration,
    /// An argument or layer that the requested step cannot handle.
    #[error("{layer}: {reason}")]
    Invalid {
        /// Layer path.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// An error of slimnet-core (shapes, graphs, model files, kernels).
    #[error(transparent)]
    Core(slimnet_core::Error),
}

impl QuantError {
    /// An [`QuantError::Invalid`] for `layer`.
    pub fn invalid(layer: impl Into<String>, reason: impl Into<String>) -> Self {
        QuantError::Invalid {
            layer: layer.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the layer path with `prefix`.
    pub fn in_layer(mut self, prefix: &str) -> Self {
        let join = |p: &mut String| {
            *p = if p.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{p}")
            }
        };
        match &mut self {
            QuantError::BitWidth { layer, .. }
            | QuantError::NonFinite { layer, .. }
            | QuantError::NoData { layer }
            | QuantError::ConstantCalibration { layer, .. }
            | QuantError::Invalid { layer, .. } => join(layer),
            QuantError::Core(e) => {
                let inner = std::mem::replace(e, slimnet_core::Error::Invalid(String::new()));
                *e = inner.in_layer(prefix);
            }
            QuantError::EmptyCalibration => {}
        }
        self
    }
}

/// A core error; a quantization error that travelled through core code (a rewrite rule, a
/// layer) comes back as itself, with the path the graph added.
impl From<slimnet_core::Error> for QuantError {
    fn from(e: slimnet_core::Error) -> Self {
        match e.into_method::<QuantError>() {
            Ok((layer, q)) if layer.is_empty() => q,
            Ok((layer, q)) => q.in_layer(&layer),
            Err(core) => QuantError::Core(core),
        }
    }
}

impl From<slimnet_kernels::KernelError> for QuantError {
    fn from(e: slimnet_kernels::KernelError) -> Self {
        QuantError::Core(e.into())
    }
}

/// Converts into a core error without losing anything: a wrapped core error comes back as
/// itself, anything else is kept whole as the source of [`slimnet_core::Error::Method`].
impl From<QuantError> for slimnet_core::Error {
    fn from(e: QuantError) -> Self {
        match e {
            QuantError::Core(c) => c,
            other => slimnet_core::Error::method(other),
        }
    }
}

/// [`QuantError`] as a core error (for code behind the `Layer` trait).
pub(crate) fn to_core(e: QuantError) -> slimnet_core::Error {
    e.into()
}
