//! Helpers for storing and loading compact tensors and u8 activation codes.

use safetensors::Dtype;
use slimnet_core::io::TensorSource;
use slimnet_core::{Error, StoredTensor, Tensor};
use slimnet_kernels::int8::QuantParams;

/// Activation codes travel between graph nodes as exact integers `0..=255` held in f32 (the
/// graph moves f32 tensors); this reads them back as u8, saturating out-of-range values and
/// mapping NaN to 0.
pub(crate) fn codes_of(x: &Tensor) -> Vec<u8> {
    match x.as_slice() {
        Some(s) => s.iter().map(|&v| code(v)).collect(),
        None => x.iter().map(|&v| code(v)).collect(),
    }
}

/// One code: clamped into `[0, 255]` (NaN to 0), rounded to the nearest integer by adding
/// 2^23 (whose low mantissa byte is then the code). Branch-free, so it vectorizes.
// `max`/`min` rather than `clamp`: they map NaN to the bound, `clamp` keeps NaN
#[allow(clippy::manual_clamp)]
#[inline(always)]
fn code(v: f32) -> u8 {
    (v.max(0.0).min(255.0) + 8_388_608.0).to_bits() as u8
}

/// [`QuantParams::quantize`] without a libm call or an integer conversion, so that it
/// vectorizes: `clamp(round(x / scale) + zp, 0, 255)` with rounding half away from zero, NaN to
/// code 0. Equal to `p.quantize(x)` for every input (tested exhaustively on ties and extremes).
#[allow(clippy::manual_clamp)] // NaN handling, as in `code`
#[inline(always)]
pub(crate) fn quantize_one(p: QuantParams, x: f32) -> u8 {
    const MAGIC: f32 = 8_388_608.0; // 2^23
                                    // beyond ±300 steps every value saturates; NaN becomes -300 (f32::max returns the other
                                    // operand), hence code 0
    let t = (x / p.scale).max(-300.0).min(300.0);
    let a = t.abs();
    let n = (a + MAGIC) - MAGIC; // round half to even, exact for a < 2^22
                                 // a tie rounded down to even goes up instead (a - n is exact by Sterbenz's lemma)
    let r = n + if a - n == 0.5 { 1.0 } else { 0.0 };
    let q = r.copysign(t) + p.zero_point as f32;
    code(q)
}

/// Quantizes a tensor to codes held in an f32 tensor of the same shape.
pub(crate) fn quantize_tensor(x: &Tensor, p: QuantParams) -> Tensor {
    let data: Vec<f32> = match x.as_slice() {
        Some(s) => s.iter().map(|&v| quantize_one(p, v) as f32).collect(),
        None => x.iter().map(|&v| quantize_one(p, v) as f32).collect(),
    };
    Tensor::from_shape_vec(x.shape().to_vec(), data).expect("same shape")
}

/// Dequantizes codes held in an f32 tensor.
pub(crate) fn dequantize_tensor(x: &Tensor, p: QuantParams) -> Tensor {
    let (s, zp) = (p.scale, p.zero_point as i32);
    let f = |v: f32| (code(v) as i32 - zp) as f32 * s;
    let data: Vec<f32> = match x.as_slice() {
        Some(sl) => sl.iter().map(|&v| f(v)).collect(),
        None => x.iter().map(|&v| f(v)).collect(),
    };
    Tensor::from_shape_vec(x.shape().to_vec(), data).expect("same shape")
}

/// u8 codes as a tensor of the given shape.
pub(crate) fn tensor_of_codes(shape: &[usize], codes: &[u8]) -> Tensor {
    Tensor::from_shape_vec(shape.to_vec(), codes.iter().map(|&c| c as f32).collect())
        .expect("codes fill the shape")
}

/// A stored tensor of raw bytes.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_quantize_matches_the_kernel_definition() {
        let mut xs: Vec<f32> = (-20_000..20_000).map(|i| i as f32 * 0.0125).collect();
        xs.extend([
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            8_388_607.5,
            -8_388_609.0,
            f32::MIN_POSITIVE,
            -0.0,
        ]);
        for p in [
            QuantParams {
                scale: 0.1,
                zero_point: 0,
            },
            QuantParams {
                scale: 0.05,
                zero_point: 128,
            },
            QuantParams {
                scale: 1.0,
                zero_point: 37,
            },
            QuantParams {
                scale: 3e-5,
                zero_point: 255,
            },
        ] {
            for &x in &xs {
                assert_eq!(quantize_one(p, x), p.quantize(x), "{x} {p:?}");
            }
        }
    }
}
