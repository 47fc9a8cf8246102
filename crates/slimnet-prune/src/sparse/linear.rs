//! Sparse fully-connected deploy layer.

use ndarray::IxDyn;
use serde_json::{json, Value};
use slimnet_core::io::TensorSource;
use slimnet_core::layers::{Linear, LinearConfig};
use slimnet_core::tensor::contiguous;
use slimnet_core::{Cost, Error, Layer, StoredTensor, Tensor};
use slimnet_kernels::sparse::{
    csc_matvec, sparse_linear_forward, CscMatrix, SparseMatrix, SparseWeight,
};

use super::{activation_of, layer_json, load_bias, load_weight, store_weight, FusedActivation};
use crate::error::{PruneError, Result};

/// A fully-connected layer whose `[out, in]` weight is sparse (CSR, block-sparse, N:M or, when
/// sparsity does not pay, dense), running on the sparse kernels. Inference only: `backward`
/// returns an error (fine-tune the masked [`Linear`] before converting).
///
/// A CSR weight also keeps a column-major copy in memory (not in the file): at batch 1, when
/// the input has enough zeros (pixels, ReLU outputs), the product walks only the columns of
/// the non-zero inputs ([`CscMatrix::skip_value`]). The copy is made only when the columns
/// are not far more than the stored values and rows (it could not pay otherwise), and within
/// the memory ceiling of [`slimnet_core::limits`].
///
/// ```
/// use slimnet_core::layers::LinearConfig;
/// use slimnet_core::{tensor, Layer};
/// use slimnet_prune::sparse::SparseLinear;
/// let mut fc = LinearConfig::new(8, 4).init(&mut tensor::rng(0))?;
/// fc.weight.set_mask(tensor::from_vec(&[4, 8], (0..32).map(|i| (i % 4 == 0) as u8 as f32).collect())?)?;
/// let sparse = SparseLinear::from_linear(&fc, 1)?;
/// assert_eq!(sparse.nnz(), 8);
/// let x = tensor::uniform(&[2, 8], -1.0, 1.0, &mut tensor::rng(1));
/// assert!(tensor::max_abs_diff(&fc.forward(&x)?, &sparse.forward(&x)?) < 1e-5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SparseLinear {
    weight: SparseWeight,
    /// Column-major copy of a CSR weight, for batch-1 inputs with many zeros.
    columns: Option<CscMatrix>,
    bias: Option<Vec<f32>>,
    activation: FusedActivation,
}

impl SparseLinear {
    /// A layer from a sparse `[out, in]` weight and an optional `[out]` bias.
    ///
    /// # Errors
    /// When the bias length differs from the weight's rows.
    pub fn new(weight: SparseWeight, bias: Option<Vec<f32>>) -> Result<Self> {
        if let Some(b) = &bias {
            if b.len() != weight.rows() {
                return Err(PruneError::unsupported(
                    "",
                    format!("bias of length {} for {} outputs", b.len(), weight.rows()),
                ));
            }
        }
        let columns = match &weight {
            SparseWeight::Csr(m) if columns_pay(m.rows(), m.cols(), m.nnz()) => {
                // five per-column u32 arrays, checked before they are allocated
                slimnet_core::limits::check_shape(
                    "SparseLinear column copy",
                    &[m.cols().saturating_add(1), 5],
                    4,
                )
                .map_err(PruneError::Core)?;
                Some(CscMatrix::from_csr(m))
            }
            _ => None,
        };
        Ok(Self {
            weight,
            columns,
            bias,
            activation: FusedActivation::Identity,
        })
    }

    /// Converts a (masked) [`Linear`]: kept weights are those of the mask, or the non-zeros
    /// without one; the format is the fastest expected for `batch` rows of input.
    ///
    /// # Errors
    /// When the kernels reject the weight.
    pub fn from_linear(l: &Linear, batch: usize) -> Result<Self> {
        let (out, inp) = (l.config().out_features, l.config().in_features);
        let dense: Vec<f32> = l.weight.value().iter().copied().collect();
        let mask: Option<Vec<bool>> = l
            .weight
            .mask()
            .map(|m| m.iter().map(|&k| k != 0.0).collect());
        let w = SparseWeight::from_dense_auto(&dense, out, inp, mask.as_deref(), batch.max(1))
            .map_err(|e| PruneError::kernel("", e))?;
        let bias = l.bias.as_ref().map(|b| b.value().iter().copied().collect());
        Self::new(w, bias)
    }

    /// Fuses an activation into the output (set by the convert pass when a ReLU follows).
    pub fn with_activation(mut self, act: FusedActivation) -> Self {
        self.activation = act;
        self
    }

    /// The sparse weight.
    pub fn weight(&self) -> &SparseWeight {
        &self.weight
    }

    /// The fused activation.
    pub fn activation(&self) -> FusedActivation {
        self.activation
    }

    /// Stored weight values.
    pub fn nnz(&self) -> usize {
        self.weight.nnz()
    }

    fn check(&self, shape: &[usize]) -> slimnet_core::Result<usize> {
        if shape.len() != 2 || shape[1] != self.weight.cols() {
            return Err(Error::shape(format!("[N, {}]", self.weight.cols()), shape));
        }
        Ok(shape[0])
    }
}

/// Whether a column-major copy of a CSR weight can pay: its walk and its memory grow with the
/// columns, the row-wise product with the stored values and rows, so a weight with far more
/// columns than stored values (a nearly empty layer, or a file that declares a huge
/// `in_features`) keeps the row-wise product only.
fn columns_pay(rows: usize, cols: usize, nnz: usize) -> bool {
    cols <= 4 * (nnz + rows).max(256)
}

impl Layer for SparseLinear {
    fn kind(&self) -> &'static str {
        "SparseLinear"
    }

    /// `[N, in]` -> `[N, out]`.
    fn forward(&self, x: &Tensor) -> slimnet_core::Result<Tensor> {
        let n = self.check(x.shape())?;
        let out = self.weight.rows();
        let xs = contiguous(x);
        let mut y = vec![0.0; n * out];
        let by_columns = self.columns.as_ref().filter(|_| n == 1);
        if let Some((cols, skip)) = by_columns.and_then(|c| Some((c, c.skip_value(&xs)?))) {
            csc_matvec(
                cols,
                &xs,
                skip,
                self.bias.as_deref(),
                self.activation.kernel(),
                &mut y,
            )?;
            return Ok(Tensor::from_shape_vec(IxDyn(&[n, out]), y).expect("output length"));
        }
        sparse_linear_forward(
            &self.weight,
            n,
            &xs,
            self.bias.as_deref(),
            self.activation.kernel(),
            &mut y,
        )?;
        Ok(Tensor::from_shape_vec(IxDyn(&[n, out]), y).expect("output length"))
    }

    /// A masked [`Linear`] (and the fused activation).
    fn to_core(&self) -> Option<slimnet_core::Result<Box<dyn Layer>>> {
        Some((|| {
            let (rows, cols) = (self.weight.rows(), self.weight.cols());
            let (w, m) = super::masked_dense(&self.weight, &[rows, cols])?;
            let b = match &self.bias {
                Some(b) => Some(slimnet_core::tensor::from_vec(&[rows], b.clone())?),
                None => None,
            };
            let cfg = LinearConfig::new(cols, rows).with_bias(b.is_some());
            let mut l = Linear::from_parts(cfg, w, b)?;
            l.weight.set_mask(m)?;
            super::core_form(Box::new(l), self.activation)
        })())
    }

    fn backward(&mut self, _: &Tensor) -> slimnet_core::Result<Tensor> {
        Err(Error::Backward {
            layer: String::new(),
            reason: "SparseLinear is a deploy layer and cannot be trained; fine-tune the masked \
                     Linear before converting"
                .into(),
        })
    }

    fn output_shape(&self, input: &[usize]) -> slimnet_core::Result<Vec<usize>> {
        Ok(vec![self.check(input)?, self.weight.rows()])
    }

    fn cost(&self, input: &[usize]) -> slimnet_core::Result<Cost> {
        let n = self.check(input)?;
        let b = self.bias.as_ref().map_or(0, Vec::len);
        Ok(Cost {
            output: vec![n, self.weight.rows()],
            params: self.weight.nnz() + b,
            macs: n * self.weight.nnz(),
            bytes: self.weight.storage_bytes() + 4 * b,
        })
    }

    fn config_json(&self) -> Value {
        let base = json!({
            "in_features": self.weight.cols(),
            "out_features": self.weight.rows(),
            "bias": self.bias.is_some(),
        });
        layer_json(base, &self.weight, self.activation)
    }

    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        store_weight(&self.weight, f);
        if let Some(b) = &self.bias {
            f("bias", super::f32_tensor(vec![b.len()], b));
        }
    }
}

pub(super) fn load(
    cfg: &Value,
    src: &mut TensorSource<'_>,
) -> slimnet_core::Result<Box<dyn Layer>> {
    const KIND: &str = "SparseLinear";
    let field = |k: &str| {
        cfg.get(k)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| Error::ModelFile(format!("{KIND}: missing `{k}`")))
    };
    let (inp, out) = (field("in_features")?, field("out_features")?);
    let has_bias = cfg.get("bias").and_then(Value::as_bool).unwrap_or(false);
    let w = load_weight(KIND, cfg, src, out, inp)?;
    let b = load_bias(KIND, src, has_bias, out)?;
    let act = activation_of(KIND, cfg)?;
    Ok(Box::new(
        SparseLinear::new(w, b)
            .map_err(Error::from)?
            .with_activation(act),
    ))
}
