//! Sparse 2-D convolution deploy layer.

use ndarray::IxDyn;
use serde_json::{json, Value};
use slimnet_core::io::{parse_config, TensorSource};
use slimnet_core::layers::{Conv2d, Conv2dConfig};
use slimnet_core::tensor::contiguous;
use slimnet_core::{Cost, Error, Layer, StoredTensor, Tensor};
use slimnet_kernels::sparse::{sparse_conv2d_forward, SparseMatrix, SparseWeight};
use slimnet_kernels::ConvGeometry;

use super::{activation_of, layer_json, load_bias, load_weight, store_weight, FusedActivation};
use crate::error::{PruneError, Result};

/// A 2-D convolution (one group) whose OIHW weight is stored sparse as `[O, I * kh * kw]` and run
/// by the sparse kernels over im2col columns. Inference only: `backward` returns an error.
///
/// ```
/// use slimnet_core::layers::Conv2dConfig;
/// use slimnet_core::{tensor, Layer};
/// use slimnet_prune::sparse::SparseConv2d;
/// let mut conv = Conv2dConfig::new(4, 8, 3).with_padding(1).init(&mut tensor::rng(0))?;
/// let keep = (0..8 * 36).map(|i| (i % 5 == 0) as u8 as f32).collect();
/// conv.weight.set_mask(tensor::from_vec(&[8, 4, 3, 3], keep)?)?;
/// let sparse = SparseConv2d::from_conv(&conv, 64)?;
/// let x = tensor::uniform(&[1, 4, 8, 8], -1.0, 1.0, &mut tensor::rng(1));
/// assert!(tensor::max_abs_diff(&conv.forward(&x)?, &sparse.forward(&x)?) < 1e-5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SparseConv2d {
    cfg: Conv2dConfig,
    weight: SparseWeight,
    bias: Option<Vec<f32>>,
    activation: FusedActivation,
}

impl SparseConv2d {
    /// A layer from a convolution configuration (one group), a sparse `[O, I * kh * kw]`
    /// weight and an optional `[O]` bias.
    ///
    /// # Errors
    /// Grouped convolutions, or a weight or bias that does not fit the configuration.
    pub fn new(cfg: Conv2dConfig, weight: SparseWeight, bias: Option<Vec<f32>>) -> Result<Self> {
        cfg.validate().map_err(PruneError::Core)?;
        let ws = cfg.weight_shape();
        if cfg.groups != 1 {
            return Err(PruneError::unsupported(
                "",
                format!("sparse convolutions need one group, got {}", cfg.groups),
            ));
        }
        if weight.rows() != ws[0] || weight.cols() != ws[1] * ws[2] * ws[3] {
            return Err(PruneError::unsupported(
                "",
                format!(
                    "sparse weight [{}, {}] does not fit a {ws:?} convolution",
                    weight.rows(),
                    weight.cols()
                ),
            ));
        }
        if bias.as_ref().map(Vec::len) != cfg.bias.then_some(ws[0]) {
            return Err(PruneError::unsupported(
                "",
                "bias does not match the configuration",
            ));
        }
        Ok(Self {
            cfg,
            weight,
            bias,
            activation: FusedActivation::Identity,
        })
    }

    /// Converts a (masked) [`Conv2d`] with one group; `columns` is the number of output pixels
    /// per image the format is chosen for.
    ///
    /// # Errors
    /// Grouped convolutions, or when the kernels reject the weight.
    pub fn from_conv(c: &Conv2d, columns: usize) -> Result<Self> {
        let ws = c.config().weight_shape();
        let (rows, cols) = (ws[0], ws[1] * ws[2] * ws[3]);
        let dense: Vec<f32> = c.weight.value().iter().copied().collect();
        let mask: Option<Vec<bool>> = c
            .weight
            .mask()
            .map(|m| m.iter().map(|&k| k != 0.0).collect());
        let w = SparseWeight::from_dense_auto(&dense, rows, cols, mask.as_deref(), columns.max(1))
            .map_err(|e| PruneError::kernel("", e))?;
        let bias = c.bias.as_ref().map(|b| b.value().iter().copied().collect());
        Self::new(c.config().clone(), w, bias)
    }

    /// Fuses an activation into the output.
    pub fn with_activation(mut self, act: FusedActivation) -> Self {
        self.activation = act;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Conv2dConfig {
        &self.cfg
    }

    /// The fused activation.
    pub fn activation(&self) -> FusedActivation {
        self.activation
    }

    /// The sparse weight.
    pub fn weight(&self) -> &SparseWeight {
        &self.weight
    }

    /// Stored weight values.
    pub fn nnz(&self) -> usize {
        self.weight.nnz()
    }

    fn geometry(&self, input: &[usize]) -> slimnet_core::Result<ConvGeometry> {
        self.cfg.geometry(input)
    }
}

impl Layer for SparseConv2d {
    fn kind(&self) -> &'static str {
        "SparseConv2d"
    }

    /// `[N, C, H, W]` -> `[N, O, OH, OW]`.
    fn forward(&self, x: &Tensor) -> slimnet_core::Result<Tensor> {
        let g = self.geometry(x.shape())?;
        let xs = contiguous(x);
        let mut out = vec![0.0; g.output_len()];
        sparse_conv2d_forward(
            &g,
            &xs,
            &self.weight,
            self.bias.as_deref(),
            self.activation.kernel(),
            &mut out,
        )?;
        let shape = [g.batch, g.out_channels, g.out_h(), g.out_w()];
        Ok(Tensor::from_shape_vec(IxDyn(&shape), out).expect("output length"))
    }

    /// A masked [`Conv2d`] (and the fused activation).
    fn to_core(&self) -> Option<slimnet_core::Result<Box<dyn Layer>>> {
        Some((|| {
            let (w, m) = super::masked_dense(&self.weight, &self.cfg.weight_shape())?;
            let b = match &self.bias {
                Some(b) => Some(slimnet_core::tensor::from_vec(&[b.len()], b.clone())?),
                None => None,
            };
            let mut c = Conv2d::from_parts(self.cfg.clone(), w, b)?;
            c.weight.set_mask(m)?;
            super::core_form(Box::new(c), self.activation)
        })())
    }

    fn backward(&mut self, _: &Tensor) -> slimnet_core::Result<Tensor> {
        Err(Error::Backward {
            layer: String::new(),
            reason: "SparseConv2d is a deploy layer and cannot be trained; fine-tune the masked \
                     Conv2d before converting"
                .into(),
        })
    }

    fn output_shape(&self, input: &[usize]) -> slimnet_core::Result<Vec<usize>> {
        let g = self.geometry(input)?;
        Ok(vec![g.batch, g.out_channels, g.out_h(), g.out_w()])
    }

    fn cost(&self, input: &[usize]) -> slimnet_core::Result<Cost> {
        let g = self.geometry(input)?;
        let b = self.bias.as_ref().map_or(0, Vec::len);
        Ok(Cost {
            output: vec![g.batch, g.out_channels, g.out_h(), g.out_w()],
            params: self.weight.nnz() + b,
            macs: g.batch * g.out_h() * g.out_w() * self.weight.nnz(),
            bytes: self.weight.storage_bytes() + 4 * b,
        })
    }

    fn config_json(&self) -> Value {
        let base = json!({ "conv": self.cfg });
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
    const KIND: &str = "SparseConv2d";
    let conv: Conv2dConfig = parse_config(KIND, cfg.get("conv").unwrap_or(&Value::Null))?;
    if conv.groups != 1 || conv.in_channels == 0 || conv.out_channels == 0 {
        return Err(Error::ModelFile(format!(
            "{KIND}: needs one group and positive channels, got {:?}",
            conv
        )));
    }
    conv.validate()?;
    let ws = conv.weight_shape();
    let cols = ws[1]
        .checked_mul(ws[2])
        .and_then(|v| v.checked_mul(ws[3]))
        .ok_or_else(|| Error::ModelFile(format!("{KIND}: kernel size overflows")))?;
    let w = load_weight(KIND, cfg, src, ws[0], cols)?;
    let b = load_bias(KIND, src, conv.bias, ws[0])?;
    let act = activation_of(KIND, cfg)?;
    Ok(Box::new(
        SparseConv2d::new(conv, w, b)
            .map_err(Error::from)?
            .with_activation(act),
    ))
}
