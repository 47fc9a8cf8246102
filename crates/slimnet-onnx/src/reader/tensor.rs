//! ONNX tensors (initializers, `Constant` values, attributes) as constants: f32 or i64 values
//! with a shape, checked against their declared size before anything is allocated.

use std::path::Path;

use ndarray::IxDyn;
use slimnet_core::Tensor;

use crate::error::{OnnxError, Result};
use crate::proto::{tensor_proto::DataLocation, TensorProto};

/// Most elements one constant may hold (2^28: 1 GiB of f32).
pub(crate) const MAX_ELEMENTS: usize = 1 << 28;

/// ONNX element types (`TensorProto.DataType`).
pub(crate) mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;
}

/// The values of a constant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Data {
    /// Floating-point values (float, double, float16, bfloat16 become f32).
    F32(Vec<f32>),
    /// Integer and boolean values.
    I64(Vec<i64>),
}

/// A constant tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
    /// The ONNX element type it was stored as (`dtype::*`).
    pub elem: i32,
}

impl Const {
    pub fn f32(dims: Vec<usize>, v: Vec<f32>) -> Self {
        Self {
            dims,
            data: Data::F32(v),
            elem: dtype::FLOAT,
        }
    }

    pub fn i64(dims: Vec<usize>, v: Vec<i64>) -> Self {
        Self {
            dims,
            data: Data::I64(v),
            elem: dtype::INT64,
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    pub fn is_float(&self) -> bool {
        matches!(self.data, Data::F32(_))
    }

    /// The values as f32.
    pub fn floats(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as i64 (floats truncated).
    pub fn ints(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
        }
    }

    /// The f32 tensor.
    pub fn tensor(&self) -> Tensor {
        Tensor::from_shape_vec(IxDyn(&self.dims), self.floats())
            .expect("length checked on creation")
    }

    /// The single value of a one-element constant.
    pub fn scalar(&self) -> Option<f32> {
        (self.len() == 1).then(|| self.floats()[0])
    }
}

/// Element count of `dims`, refusing negative sizes and more than [`MAX_ELEMENTS`].
pub(crate) fn element_count(name: &str, dims: &[i64]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in dims {
        let d = usize::try_from(d)
            .map_err(|_| OnnxError::tensor(name, format!("negative size in shape {dims:?}")))?;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                OnnxError::tensor(
                    name,
                    format!("shape {dims:?} holds more than 2^28 elements"),
                )
            })?;
    }
    Ok(n)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // subnormal: normalize
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Bytes per element of the types stored as raw little-endian data, with a decoder.
fn decode_raw(name: &str, ty: i32, raw: &[u8], n: usize) -> Result<Data> {
    let size = match ty {
        dtype::FLOAT | dtype::INT32 | dtype::UINT32 => 4,
        dtype::UINT8 | dtype::INT8 | dtype::BOOL => 1,
        dtype::UINT16 | dtype::INT16 | dtype::FLOAT16 | dtype::BFLOAT16 => 2,
        dtype::INT64 | dtype::DOUBLE | dtype::UINT64 => 8,
        t => {
            return Err(OnnxError::tensor(
                name,
                format!("unsupported element type {t}"),
            ))
        }
    };
    if raw.len() != n * size {
        return Err(OnnxError::tensor(
            name,
            format!(
                "{} bytes of data for {n} elements of {size} bytes",
                raw.len()
            ),
        ));
    }
    let c = raw.chunks_exact(size);
    Ok(match ty {
        dtype::FLOAT => Data::F32(
            c.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        dtype::DOUBLE => Data::F32(
            c.map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
        ),
        dtype::FLOAT16 => Data::F32(
            c.map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        ),
        dtype::BFLOAT16 => Data::F32(
            c.map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                .collect(),
        ),
        dtype::UINT8 | dtype::BOOL => Data::I64(c.map(|b| b[0] as i64).collect()),
        dtype::INT8 => Data::I64(c.map(|b| b[0] as i8 as i64).collect()),
        dtype::UINT16 => Data::I64(c.map(|b| u16::from_le_bytes([b[0], b[1]]) as i64).collect()),
        dtype::INT16 => Data::I64(c.map(|b| i16::from_le_bytes([b[0], b[1]]) as i64).collect()),
        dtype::INT32 => Data::I64(
            c.map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect(),
        ),
        dtype::UINT32 => Data::I64(
            c.map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect(),
        ),
        dtype::INT64 => Data::I64(
            c.map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        ),
        _ => Data::I64(
            c.map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as i64)
                .collect(),
        ),
    })
}

/// Reads the bytes of external data (`location` relative to `base`, `offset`, `length`).
fn external(name: &str, t: &TensorProto, base: Option<&Path>, expect: usize) -> Result<Vec<u8>> {
    let base = base.ok_or_else(|| {
        OnnxError::tensor(
            name,
            "external data needs the model's folder (read the model from a path)",
        )
    })?;
    let (mut location, mut offset, mut length) = (None, 0u64, None);
    for kv in &t.external_data {
        match kv.key() {
            "location" => location = Some(kv.value().to_string()),
            "offset" => {
                offset = kv
                    .value()
                    .parse()
                    .map_err(|_| OnnxError::tensor(name, "bad external offset"))?
            }
            "length" => {
                length = Some(
                    kv.value()
                        .parse::<u64>()
                        .map_err(|_| OnnxError::tensor(name, "bad external length"))?,
                )
            }
            _ => {}
        }
    }
    let location =
        location.ok_or_else(|| OnnxError::tensor(name, "external data without a location"))?;
    let rel = Path::new(&location);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(OnnxError::tensor(
            name,
            format!("external location `{location}` leaves the model's folder"),
        ));
    }
    let length = length.unwrap_or(expect as u64);
    if length != expect as u64 {
        return Err(OnnxError::tensor(
            name,
            format!("external length {length}, expected {expect} bytes"),
        ));
    }
    use std::io::{Read, Seek, SeekFrom};
    let path = base.join(rel);
    let mut f = std::fs::File::open(&path).map_err(|e| OnnxError::io(&path, e))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| OnnxError::io(&path, e))?;
    let mut buf = Vec::new();
    f.take(length)
        .read_to_end(&mut buf)
        .map_err(|e| OnnxError::io(&path, e))?;
    if buf.len() != expect {
        return Err(OnnxError::tensor(
            name,
            format!("external file `{location}` ends early"),
        ));
    }
    Ok(buf)
}

fn elem_size(ty: i32) -> usize {
    match ty {
        dtype::UINT8 | dtype::INT8 | dtype::BOOL => 1,
        dtype::UINT16 | dtype::INT16 | dtype::FLOAT16 | dtype::BFLOAT16 => 2,
        dtype::INT64 | dtype::DOUBLE | dtype::UINT64 => 8,
        _ => 4,
    }
}

/// A constant from a `TensorProto`; `base` is the model's folder for external data.
pub(crate) fn from_proto(t: &TensorProto, base: Option<&Path>) -> Result<Const> {
    let name = t.name();
    let n = element_count(name, &t.dims)?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    if t.segment.is_some() {
        return Err(OnnxError::tensor(
            name,
            "segmented tensors are not supported",
        ));
    }
    let ty = t.data_type();
    let count = |got: usize| -> Result<()> {
        if got == n {
            Ok(())
        } else {
            Err(OnnxError::tensor(
                name,
                format!("{got} values for shape {:?}", t.dims),
            ))
        }
    };
    let data = if t.data_location() == DataLocation::External {
        let raw = external(name, t, base, n * elem_size(ty))?;
        decode_raw(name, ty, &raw, n)?
    } else if let Some(raw) = t.raw_data.as_deref().filter(|r| !r.is_empty() || n == 0) {
        decode_raw(name, ty, raw, n)?
    } else {
        match ty {
            dtype::FLOAT => {
                count(t.float_data.len())?;
                Data::F32(t.float_data.clone())
            }
            dtype::DOUBLE => {
                count(t.double_data.len())?;
                Data::F32(t.double_data.iter().map(|&v| v as f32).collect())
            }
            dtype::FLOAT16 | dtype::BFLOAT16 => {
                count(t.int32_data.len())?;
                let bf = ty == dtype::BFLOAT16;
                Data::F32(
                    t.int32_data
                        .iter()
                        .map(|&v| {
                            let h = v as u16;
                            if bf {
                                f32::from_bits((h as u32) << 16)
                            } else {
                                f16_to_f32(h)
                            }
                        })
                        .collect(),
                )
            }
            dtype::INT64 => {
                count(t.int64_data.len())?;
                Data::I64(t.int64_data.clone())
            }
            dtype::UINT32 | dtype::UINT64 => {
                count(t.uint64_data.len())?;
                Data::I64(t.uint64_data.iter().map(|&v| v as i64).collect())
            }
            dtype::INT32
            | dtype::INT16
            | dtype::INT8
            | dtype::UINT16
            | dtype::UINT8
            | dtype::BOOL => {
                count(t.int32_data.len())?;
                Data::I64(t.int32_data.iter().map(|&v| v as i64).collect())
            }
            t => {
                return Err(OnnxError::tensor(
                    name,
                    format!("unsupported element type {t}"),
                ))
            }
        }
    };
    Ok(Const {
        dims,
        data,
        elem: ty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_decode() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn sizes_are_checked_before_allocating() {
        let t = TensorProto {
            dims: vec![1 << 20, 1 << 20],
            data_type: Some(dtype::FLOAT),
            ..Default::default()
        };
        assert!(from_proto(&t, None)
            .unwrap_err()
            .to_string()
            .contains("2^28"));
        let t = TensorProto {
            dims: vec![3],
            data_type: Some(dtype::FLOAT),
            float_data: vec![1.0, 2.0],
            ..Default::default()
        };
        assert!(from_proto(&t, None).is_err());
    }
}
