//! The memory ceiling: the one place that bounds what a model file (or an input) can make
//! slimnet allocate.
//!
//! Every size that comes from a model file — a layer's shapes, paddings, strides, dilations,
//! group counts, feature counts, the lengths of packed or sparse arrays — is checked against
//! this ceiling when the file is loaded, and the buffers that a forward pass allocates from
//! such sizes (a convolution's output and unfolded input, a pooling output) are checked again
//! before they are allocated. A file can therefore never abort the process by asking for more
//! memory than exists: it gets an [`Error::Limit`] naming the layer, what was asked for and
//! the ceiling.
//!
//! The ceiling applies to any single tensor or buffer. It is, in order of precedence:
//! 1. the value given to [`set_max_tensor_bytes`] (process-wide; `None` clears it);
//! 2. the environment variable [`ENV_VAR`] (`SLIMNET_MAX_TENSOR_BYTES`, in bytes, read once);
//! 3. [`DEFAULT_MAX_TENSOR_BYTES`] (4 GiB).
//!
//! ```
//! use slimnet_core::limits;
//! assert_eq!(limits::check_shape("weight", &[64, 3, 3, 3], 4)?, 1728);
//! let e = limits::check_shape("weight", &[1 << 20, 1 << 20, 1 << 20], 4).unwrap_err();
//! assert!(e.to_string().contains("weight of shape [1048576, 1048576, 1048576]"), "{e}");
//! # Ok::<(), slimnet_core::Error>(())
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The default ceiling for a single tensor or buffer: 4 GiB.
pub const DEFAULT_MAX_TENSOR_BYTES: usize = 4 << 30;

/// The environment variable that sets the ceiling (in bytes) when no value was set in code.
pub const ENV_VAR: &str = "SLIMNET_MAX_TENSOR_BYTES";

/// 0: nothing set in code.
static SET: AtomicUsize = AtomicUsize::new(0);

fn from_env() -> usize {
    static ENV: OnceLock<usize> = OnceLock::new();
    *ENV.get_or_init(|| {
        std::env::var(ENV_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&v| v > 0)
            .unwrap_or(DEFAULT_MAX_TENSOR_BYTES)
    })
}

/// The ceiling in bytes for any single tensor or buffer (see the [module docs](self)).
pub fn max_tensor_bytes() -> usize {
    match SET.load(Ordering::Relaxed) {
        0 => from_env(),
        v => v,
    }
}

/// Sets the ceiling for the whole process (`None`: back to [`ENV_VAR`] or the default).
/// A ceiling of 0 bytes is read as `None`.
pub fn set_max_tensor_bytes(bytes: Option<usize>) {
    SET.store(bytes.unwrap_or(0), Ordering::Relaxed);
}

/// Checks that a tensor of `shape` with elements of `elem_bytes` bytes fits the ceiling, and
/// returns its number of elements. `what` names the tensor in the error (a layer adds its path
/// when the error passes through a graph).
///
/// # Errors
/// [`Error::Limit`] when the size overflows or exceeds [`max_tensor_bytes`].
pub fn check_shape(what: &str, shape: &[usize], elem_bytes: usize) -> Result<usize> {
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(elem_bytes.max(1)).map(|b| (n, b)));
    let limit = max_tensor_bytes();
    match n {
        Some((n, bytes)) if bytes <= limit => Ok(n),
        other => Err(Error::Limit {
            layer: String::new(),
            what: what.to_string(),
            shape: shape.to_vec(),
            bytes: other.map(|(_, b)| b),
            limit,
        }),
    }
}

/// The environment variable that sets the work ceiling (multiply-adds per layer call) when no
/// value was set in code.
pub const MACS_ENV_VAR: &str = "SLIMNET_MAX_LAYER_MACS";

/// 0: nothing set in code.
static SET_MACS: AtomicUsize = AtomicUsize::new(0);

/// The work ceiling: the most multiply-adds one call of a layer may do. Unbounded unless set
/// with [`set_max_layer_macs`] or [`MACS_ENV_VAR`]: a layer within the memory ceiling can still
/// ask for hours of work (a convolution whose padding makes its output a hundred million
/// pixels), which a service running models from strangers may want to refuse up front, as
/// the fuzzer does.
pub fn max_layer_macs() -> usize {
    static ENV: OnceLock<usize> = OnceLock::new();
    match SET_MACS.load(Ordering::Relaxed) {
        0 => *ENV.get_or_init(|| {
            std::env::var(MACS_ENV_VAR)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&v| v > 0)
                .unwrap_or(usize::MAX)
        }),
        v => v,
    }
}

/// Sets the work ceiling for the whole process (`None`: back to [`MACS_ENV_VAR`] or
/// unbounded). A ceiling of 0 is read as `None`.
pub fn set_max_layer_macs(macs: Option<usize>) {
    SET_MACS.store(macs.unwrap_or(0), Ordering::Relaxed);
}

/// Checks that one call of a layer doing `factors` multiplied together multiply-adds stays
/// under [`max_layer_macs`], before any of it runs.
///
/// ```
/// use slimnet_core::limits;
/// assert!(limits::check_macs("convolution", &[1, 16, 28, 28, 144]).is_ok());
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::WorkLimit`] when the product overflows or exceeds the ceiling.
pub fn check_macs(what: &str, factors: &[usize]) -> Result<()> {
    check_macs_under(what, factors, max_layer_macs())
}

/// [`check_macs`] against a given ceiling.
fn check_macs_under(what: &str, factors: &[usize], limit: usize) -> Result<()> {
    if limit == usize::MAX || factors.contains(&0) {
        return Ok(());
    }
    match factors.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(m) if m <= limit => Ok(()),
        other => Err(Error::WorkLimit {
            layer: String::new(),
            what: what.to_string(),
            macs: other,
            limit,
        }),
    }
}

/// [`check_shape`] for a flat buffer of `len` elements.
///
/// # Errors
/// As [`check_shape`].
pub fn check_len(what: &str, len: usize, elem_bytes: usize) -> Result<usize> {
    check_shape(what, &[len], elem_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_and_ceiling_are_errors_naming_the_tensor() {
        let e = check_shape("conv output", &[usize::MAX, 2], 4).unwrap_err();
        assert!(e.to_string().contains("conv output"), "{e}");
        assert!(e.to_string().contains("overflows"), "{e}");
        let e = check_len("codes", DEFAULT_MAX_TENSOR_BYTES + 1, 1).unwrap_err();
        assert!(matches!(e, Error::Limit { .. }));
        assert!(e.to_string().contains(ENV_VAR), "{e}");
        assert_eq!(check_len("codes", 10, 4).unwrap(), 10);
        assert_eq!(check_shape("empty", &[0, usize::MAX], 4).unwrap(), 0);
    }

    // the process-wide setting is left alone: other tests in this binary run layers meanwhile
    #[test]
    fn work_ceiling_refuses_more_and_is_unbounded_by_default() {
        let e = check_macs_under("conv", &[10, 10, 11], 1000).unwrap_err();
        assert!(
            matches!(
                e,
                Error::WorkLimit {
                    macs: Some(1100),
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("1100 multiply-adds"), "{e}");
        let e = check_macs_under("conv", &[1 << 40, 1 << 40], 1000).unwrap_err();
        assert!(matches!(e, Error::WorkLimit { macs: None, .. }), "{e}");
        assert!(check_macs_under("conv", &[10, 10, 10], 1000).is_ok());
        assert!(check_macs_under("conv", &[1 << 40, 1 << 40, 0], 1000).is_ok());
        assert!(check_macs_under("conv", &[1 << 40, 1 << 40], usize::MAX).is_ok());
    }
}
