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

/// Emits `<prefix>_scale` (F32 `[1]`) and `<prefix>_zero_point` (U8 `[1]`).
pub(crate) fn store_params(prefix: &str, p: QuantParams, f: &mut dyn FnMut(&str, StoredTensor)) {
    f(&format!("{prefix}_scale"), stored_f32(&[p.scale]));
    f(
        &format!("{prefix}_zero_point"),
        stored(Dtype::U8, vec![1], vec![p.zero_point]),
    );
}

/// Reads parameters written by [`store_params`].
pub(crate) fn load_params(
    prefix: &str,
    t: &mut TensorSource<'_>,
) -> slimnet_core::Result<QuantParams> {
    let scale = t.f32(&format!("{prefix}_scale"))?;
    let (_, zp) = t.raw(&format!("{prefix}_zero_point"), Dtype::U8)?;
    if scale.len() != 1 || zp.len() != 1 {
        return Err(Error::ModelFile(format!(
            "`{prefix}` quantization parameters must hold one scale and one zero point"
        )));
    }
    let scale = scale.iter().copied().next().unwrap_or(0.0);
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::ModelFile(format!(
            "`{prefix}_scale` is {scale}; it must be finite and positive"
        )));
    }
    Ok(QuantParams {
        scale,
        zero_point: zp[0],
    })
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
