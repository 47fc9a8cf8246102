//! Small helpers of the layers whose model-file configurations are read field by field.

use serde_json::Value;

use crate::error::{Error, Result};

/// Element count of a shape, or an error when it overflows or exceeds `2^31` elements.
pub(crate) fn checked_len(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= 1 << 31)
        .ok_or_else(|| Error::shape("a shape of at most 2^31 elements", shape))
}

/// A model-file field, or a model-file error naming it.
fn field<'a>(cfg: &'a Value, kind: &str, name: &str) -> Result<&'a Value> {
    cfg.get(name)
        .ok_or_else(|| Error::ModelFile(format!("{kind} config: missing `{name}`")))
}

/// A list of integers from a model-file field.
pub(crate) fn int_list(cfg: &Value, kind: &str, name: &str) -> Result<Vec<i64>> {
    let bad = || Error::ModelFile(format!("{kind} config: `{name}` is not a list of integers"));
    field(cfg, kind, name)?
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_i64().ok_or_else(bad))
        .collect()
}

/// A number from a model-file field (`null`, which is how JSON writes NaN, is refused).
pub(crate) fn float(cfg: &Value, kind: &str, name: &str) -> Result<f32> {
    field(cfg, kind, name)?
        .as_f64()
        .map(|v| v as f32)
        .ok_or_else(|| Error::ModelFile(format!("{kind} config: `{name}` is not a number")))
}
