//! Sparse deploy layers ([`SparseLinear`], [`SparseConv2d`]) on the kernels' sparse formats,
//! and how their compact weights are stored in and loaded from model files.
//!
//! A sparse weight is stored under the layer's path as its real arrays, so the file size is the
//! compressed size: CSR as `weight.row_ptr` (u32), `weight.col_idx` (u32), `weight.values`
//! (f32); block-sparse as `weight.block_row_ptr`, `weight.block_col_idx` (u32) and
//! `weight.values`; N:M as `weight.values` (f32) and `weight.indices` (u8); a weight kept
//! dense as `weight` (f32, `[rows, cols]`). The layer's JSON config records the format.

mod conv;
mod linear;

pub use conv::SparseConv2d;
pub use linear::SparseLinear;

use safetensors::Dtype;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use slimnet_core::io::{self, TensorSource};
use slimnet_core::{Error, StoredTensor};
use slimnet_kernels::sparse::{
    BsrMatrix, CsrMatrix, DenseMatrix, NmMatrix, SparseFormat, SparseMatrix, SparseWeight,
};
use slimnet_kernels::Activation;

/// Adds the loaders of the sparse layers (`SparseLinear`, `SparseConv2d`) to a registry, so
/// [`io::load_with`] reads models holding them.
///
/// ```
/// let mut reg = slimnet_core::io::Registry::core();
/// slimnet_prune::register(&mut reg);
/// assert!(reg.contains("SparseLinear") && reg.contains("SparseConv2d"));
/// ```
pub fn register(registry: &mut io::Registry) {
    registry.register("SparseLinear", linear::load);
    registry.register("SparseConv2d", conv::load);
}

/// The activation fused into a sparse layer's output (applied by the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FusedActivation {
    /// None.
    #[default]
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

impl FusedActivation {
    pub(crate) fn kernel(self) -> Activation {
        match self {
            FusedActivation::Identity => Activation::Identity,
            FusedActivation::Relu => Activation::Relu,
            FusedActivation::Relu6 => Activation::Relu6,
        }
    }
}

fn u32_tensor(v: &[u32]) -> StoredTensor {
    StoredTensor {
        dtype: Dtype::U32,
        shape: vec![v.len()],
        bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn f32_tensor(shape: Vec<usize>, v: &[f32]) -> StoredTensor {
    StoredTensor {
        dtype: Dtype::F32,
        shape,
        bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// The format of a weight as JSON (`{"format": "csr"}`, `{"format": "bsr", "block": [4, 1]}`...).
pub(crate) fn format_json(w: &SparseWeight) -> Value {
    match w.format() {
        SparseFormat::Csr => json!({"format": "csr"}),
        SparseFormat::Bsr { block } => json!({"format": "bsr", "block": [block.0, block.1]}),
        SparseFormat::Nm { n, m } => json!({"format": "nm", "n": n, "m": m}),
        _ => json!({"format": "dense"}),
    }
}

/// Emits the compact arrays of a weight under `weight.*`.
pub(crate) fn store_weight(w: &SparseWeight, f: &mut dyn FnMut(&str, StoredTensor)) {
    match w {
        SparseWeight::Csr(m) => {
            f("weight.row_ptr", u32_tensor(m.row_ptr()));
            f("weight.col_idx", u32_tensor(&m.col_idx()));
            f(
                "weight.values",
                f32_tensor(vec![m.values().len()], m.values()),
            );
        }
        SparseWeight::Bsr(m) => {
            f("weight.block_row_ptr", u32_tensor(m.block_row_ptr()));
            f("weight.block_col_idx", u32_tensor(m.block_col_idx()));
            f(
                "weight.values",
                f32_tensor(vec![m.values().len()], m.values()),
            );
        }
        SparseWeight::Nm(m) => {
            f(
                "weight.values",
                f32_tensor(vec![m.values().len()], m.values()),
            );
            let idx = m.indices();
            f(
                "weight.indices",
                StoredTensor {
                    dtype: Dtype::U8,
                    shape: vec![idx.len()],
                    bytes: idx.to_vec(),
                },
            );
        }
        other => {
            let d = other.to_dense();
            f("weight", f32_tensor(vec![other.rows(), other.cols()], &d));
        }
    }
}

fn read_u32(src: &mut TensorSource<'_>, name: &str) -> Result<Vec<u32>, Error> {
    let (_, bytes) = src.raw(name, Dtype::U32)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn read_f32(src: &mut TensorSource<'_>, name: &str) -> Result<Vec<f32>, Error> {
    Ok(src.f32(name)?.iter().copied().collect())
}

#[derive(Deserialize)]
struct FormatCfg {
    format: String,
    #[serde(default)]
    block: Option<[usize; 2]>,
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    m: Option<usize>,
}

/// Reads a `[rows, cols]` weight stored by [`store_weight`], validating every array.
pub(crate) fn load_weight(
    kind: &str,
    cfg: &Value,
    src: &mut TensorSource<'_>,
    rows: usize,
    cols: usize,
) -> Result<SparseWeight, Error> {
    let fc: FormatCfg = io::parse_config(kind, cfg)?;
    let bad = |e: slimnet_kernels::KernelError| Error::ModelFile(format!("{kind} weight: {e}"));
    Ok(match fc.format.as_str() {
        "csr" => SparseWeight::Csr(
            CsrMatrix::from_parts(
                rows,
                cols,
                read_u32(src, "weight.row_ptr")?,
                read_u32(src, "weight.col_idx")?,
                read_f32(src, "weight.values")?,
            )
            .map_err(bad)?,
        ),
        "bsr" => {
            let [br, bc] = fc
                .block
                .ok_or_else(|| Error::ModelFile(format!("{kind}: bsr format without `block`")))?;
            SparseWeight::Bsr(
                BsrMatrix::from_parts(
                    rows,
                    cols,
                    (br, bc),
                    read_u32(src, "weight.block_row_ptr")?,
                    read_u32(src, "weight.block_col_idx")?,
                    read_f32(src, "weight.values")?,
                )
                .map_err(bad)?,
            )
        }
        "nm" => {
            let (Some(n), Some(m)) = (fc.n, fc.m) else {
                return Err(Error::ModelFile(format!("{kind}: nm format without n, m")));
            };
            let (_, idx) = src.raw("weight.indices", Dtype::U8)?;
            SparseWeight::Nm(
                NmMatrix::from_parts(rows, cols, (n, m), read_f32(src, "weight.values")?, idx)
                    .map_err(bad)?,
            )
        }
        "dense" => {
            let w = src.f32("weight")?;
            if w.shape() != [rows, cols] {
                return Err(Error::ModelFile(format!(
                    "{kind}: dense weight of shape {:?}, expected [{rows}, {cols}]",
                    w.shape()
                )));
            }
            SparseWeight::Dense(
                DenseMatrix::new(rows, cols, w.iter().copied().collect()).map_err(bad)?,
            )
        }
        other => {
            return Err(Error::ModelFile(format!(
                "{kind}: unknown sparse format `{other}`"
            )))
        }
    })
}

/// Reads an optional `[len]` bias.
pub(crate) fn load_bias(
    kind: &str,
    src: &mut TensorSource<'_>,
    has_bias: bool,
    len: usize,
) -> Result<Option<Vec<f32>>, Error> {
    if !has_bias {
        return Ok(None);
    }
    let b = read_f32(src, "bias")?;
    if b.len() != len {
        return Err(Error::ModelFile(format!(
            "{kind}: bias of length {}, expected {len}",
            b.len()
        )));
    }
    Ok(Some(b))
}

/// The JSON of a layer: its own fields plus the weight format and fused activation.
pub(crate) fn layer_json(mut base: Value, w: &SparseWeight, act: FusedActivation) -> Value {
    if let (Some(obj), Value::Object(fmt)) = (base.as_object_mut(), format_json(w)) {
        obj.extend(fmt);
        obj.insert("activation".into(), json!(act));
    }
    base
}

/// Reads the fused activation of a layer config (identity when absent).
pub(crate) fn activation_of(kind: &str, cfg: &Value) -> Result<FusedActivation, Error> {
    match cfg.get("activation") {
        None => Ok(FusedActivation::Identity),
        Some(v) => io::parse_config(kind, v),
    }
}

/// The core form of a sparse layer: the dense layer with its weight masked to the stored
/// pattern, followed by the fused activation when there is one.
pub(crate) fn core_form(
    dense: Box<dyn slimnet_core::Layer>,
    act: FusedActivation,
) -> slimnet_core::Result<Box<dyn slimnet_core::Layer>> {
    use slimnet_core::layers::Activation;
    let a = match act {
        FusedActivation::Identity => return Ok(dense),
        FusedActivation::Relu => Activation::relu(),
        FusedActivation::Relu6 => Activation::relu6(),
    };
    let name = if dense.as_any().is::<slimnet_core::layers::Conv2d>() {
        "conv"
    } else {
        "linear"
    };
    Ok(Box::new(
        slimnet_core::Sequential::new()
            .push_boxed(name, dense)
            .push("act", a)
            .build()?,
    ))
}

/// A weight as a dense tensor of `shape` with a 0/1 mask of its stored non-zeros.
pub(crate) fn masked_dense(
    w: &SparseWeight,
    shape: &[usize],
) -> slimnet_core::Result<(slimnet_core::Tensor, slimnet_core::Tensor)> {
    let d = w.to_dense();
    let mask: Vec<f32> = d.iter().map(|&v| (v != 0.0) as u8 as f32).collect();
    Ok((
        slimnet_core::tensor::from_vec(shape, d)?,
        slimnet_core::tensor::from_vec(shape, mask)?,
    ))
}
