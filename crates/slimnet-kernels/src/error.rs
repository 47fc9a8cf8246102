use thiserror::Error;

/// Result type of the kernel crate.
pub type Result<T> = std::result::Result<T, KernelError>;

/// Errors from the safe kernel entry points.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KernelError {
    /// A buffer does not have the length the shape implies.
    #[error("{what}: expected length {expected}, got {actual}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Length the shape implies.
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// A shape or hyper-parameter is not valid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which parameter.
        what: &'static str,
        /// Why it is rejected.
        reason: String,
    },
}

/// Checks a buffer length.
pub(crate) fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(KernelError::Length {
            what,
            expected,
            actual,
        })
    }
}

/// Checks that a buffer holds `rows * cols` elements, rejecting a product that overflows
/// `usize` (no buffer can have that length) instead of wrapping around to a small number.
pub(crate) fn check_len2(
    what: &'static str,
    rows: usize,
    cols: usize,
    actual: usize,
) -> Result<()> {
    match rows.checked_mul(cols) {
        Some(expected) => check_len(what, expected, actual),
        None => Err(KernelError::Invalid {
            what,
            reason: format!("{rows} x {cols} elements overflow the address space"),
        }),
    }
}
