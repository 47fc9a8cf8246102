//! Typed values on the edges of a graph at inference: f32 tensors, or u8 activation codes with
//! their quantization.
//!
//! Training moves f32 [`Tensor`]s between layers. Inference moves [`Value`]s: an int8 layer
//! that writes u8 codes hands them straight to the next int8 layer (or to a max-pool, flatten
//! or ReLU, which work on codes too), and a conversion is made only where a reader needs the
//! other kind. Every layer still has an f32 meaning ([`Layer::forward`](crate::Layer::forward)
//! takes and returns real values), so a quantized layer can stand alone.
//!
//! ```
//! use slimnet_core::value::{QuantParams, Value, ValueKind};
//! use slimnet_core::tensor;
//! let p = QuantParams { scale: 0.5, zero_point: 10 };
//! let x = Value::F32(tensor::from_vec(&[1, 3], vec![0.0, 1.0, -100.0])?);
//! let q = x.into_kind(ValueKind::U8(p));
//! assert_eq!(q.kind(), ValueKind::U8(p));
//! assert_eq!(q.into_f32().as_slice().unwrap(), &[0.0, 1.0, -5.0]); // saturated at code 0
//! # Ok::<(), slimnet_core::Error>(())
//! ```

use ndarray::{ArrayD, IxDyn};
pub use slimnet_kernels::int8::QuantParams;

use crate::tensor::Tensor;

/// u8 activation codes: real value `(code - zero_point) * scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct Codes {
    /// The codes, in the tensor's shape.
    pub data: ArrayD<u8>,
    /// Their quantization.
    pub params: QuantParams,
}

impl Codes {
    /// Quantizes an f32 tensor: `clamp(round(x / scale) + zero_point, 0, 255)` (NaN becomes 0).
    pub fn quantize(x: &Tensor, params: QuantParams) -> Self {
        let xs = crate::tensor::contiguous(x);
        let mut out = vec![0u8; xs.len()];
        slimnet_kernels::int8::quantize_u8(&xs, params, &mut out).expect("same length");
        Self::from_vec(x.shape(), out, params)
    }

    /// The real values.
    pub fn dequantize(&self) -> Tensor {
        let mut out = crate::buffers::output(self.data.shape());
        let o = out.as_slice_mut().expect("a fresh tensor is contiguous");
        slimnet_kernels::int8::dequantize_u8(&self.as_contiguous(), self.params, o)
            .expect("same length");
        out
    }

    /// The codes as a contiguous row-major slice (copied only if they are not one already).
    pub fn as_contiguous(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.data.as_slice() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(self.data.iter().copied().collect()),
        }
    }

    /// Codes of `shape` from row-major data.
    ///
    /// # Panics
    /// When `data.len()` differs from the product of `shape` (kernels write exactly that many).
    pub fn from_vec(shape: &[usize], data: Vec<u8>, params: QuantParams) -> Self {
        let data = ArrayD::from_shape_vec(IxDyn(shape), data).expect("codes fill their shape");
        Self { data, params }
    }
}

/// What travels along a graph edge at inference.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Real values.
    F32(Tensor),
    /// u8 codes with their quantization.
    U8(Codes),
}

/// The kind of a [`Value`], with the quantization of codes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueKind {
    /// f32.
    F32,
    /// u8 codes quantized with these parameters.
    U8(QuantParams),
}

impl Value {
    /// The kind.
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::F32(_) => ValueKind::F32,
            Value::U8(c) => ValueKind::U8(c.params),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::F32(t) => t.shape(),
            Value::U8(c) => c.data.shape(),
        }
    }

    /// The real values (dequantized codes).
    pub fn into_f32(self) -> Tensor {
        match self {
            Value::F32(t) => t,
            Value::U8(c) => c.dequantize(),
        }
    }

    /// The real values, borrowed when they are f32 already.
    pub fn to_f32(&self) -> std::borrow::Cow<'_, Tensor> {
        match self {
            Value::F32(t) => std::borrow::Cow::Borrowed(t),
            Value::U8(c) => std::borrow::Cow::Owned(c.dequantize()),
        }
    }

    /// The value as `kind`, borrowed when it is that kind already.
    pub fn to_kind(&self, kind: ValueKind) -> std::borrow::Cow<'_, Value> {
        use std::borrow::Cow;
        if self.kind() == kind {
            return Cow::Borrowed(self);
        }
        Cow::Owned(match kind {
            ValueKind::F32 => Value::F32(self.to_f32().into_owned()),
            ValueKind::U8(p) => Value::U8(Codes::quantize(&self.to_f32(), p)),
        })
    }

    /// The value as `kind`: unchanged when it is that kind already, else quantized,
    /// dequantized, or requantized through f32.
    pub fn into_kind(self, kind: ValueKind) -> Value {
        if self.kind() == kind {
            return self;
        }
        match kind {
            ValueKind::F32 => Value::F32(self.into_f32()),
            ValueKind::U8(p) => Value::U8(Codes::quantize(&self.to_f32(), p)),
        }
    }
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Self {
        Value::F32(t)
    }
}
