//! Helpers for storing and loading compact tensors and quantization parameters.

use safetensors::Dtype;
use slimnet_core::io::TensorSource;
use slimnet_core::{Error, StoredTensor};
use slimnet_kernels::int8::QuantParams;

pub(crate) fn stored(dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> StoredTensor {
    StoredTensor {
        dtype,
        shape,
        bytes,
    }
}

/// i8 values as a stored I8 tensor.
pub(crate) fn stored_i8(shape: Vec<usize>, v: &[i8]) -> StoredTensor {
    stored(Dtype::I8, shape, v.iter().map(|&x| x as u8).collect())
}

/// i32 values as a stored I32 tensor.
pub(crate) fn stored_i32(v: &[i32]) -> StoredTensor {
    stored(
        Dtype::I32,
        vec![v.len()],
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// f32 values as a 1-d stored tensor.
pub(crate) fn stored_f32(v: &[f32]) -> StoredTensor {
    stored(
        Dtype::F32,
        vec![v.len()],
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// Quantization parameters as JSON for a layer's config (`{"scale": .., "zero_point": ..}`;
/// an f32 scale survives the JSON round trip exactly).
pub(crate) fn params_json(p: QuantParams) -> serde_json::Value {
    serde_json::json!({"scale": p.scale, "zero_point": p.zero_point})
}

/// Reads parameters written by [`params_json`] from field `key` of a config.
pub(crate) fn params_from(cfg: &serde_json::Value, key: &str) -> slimnet_core::Result<QuantParams> {
    let v = cfg
        .get(key)
        .ok_or_else(|| Error::ModelFile(format!("missing quantization `{key}`")))?;
    let scale = v.get("scale").and_then(serde_json::Value::as_f64);
    let zp = v.get("zero_point").and_then(serde_json::Value::as_u64);
    match (scale, zp) {
        (Some(s), Some(z)) if s.is_finite() && s > 0.0 && (s as f32) > 0.0 && z <= 255 => {
            Ok(QuantParams {
                scale: s as f32,
                zero_point: z as u8,
            })
        }
        _ => Err(Error::ModelFile(format!(
            "quantization `{key}` must hold a finite positive scale and a zero point in 0..=255, \
             got {v}"
        ))),
    }
}

/// Reads an I8 tensor.
pub(crate) fn load_i8(
    name: &str,
    t: &mut TensorSource<'_>,
) -> slimnet_core::Result<(Vec<usize>, Vec<i8>)> {
    let (shape, b) = t.raw(name, Dtype::I8)?;
    Ok((shape, b.into_iter().map(|x| x as i8).collect()))
}

/// Reads an I32 tensor.
pub(crate) fn load_i32(name: &str, t: &mut TensorSource<'_>) -> slimnet_core::Result<Vec<i32>> {
    let (_, b) = t.raw(name, Dtype::I32)?;
    Ok(b.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Reads a U8 tensor.
pub(crate) fn load_u8(
    name: &str,
    t: &mut TensorSource<'_>,
) -> slimnet_core::Result<(Vec<usize>, Vec<u8>)> {
    t.raw(name, Dtype::U8)
}

/// A model-file error for a tensor that does not fit.
pub(crate) fn bad(what: impl Into<String>) -> Error {
    Error::ModelFile(what.into())
}
