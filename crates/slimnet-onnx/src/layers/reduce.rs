//! Reductions over axes of an activation (ONNX `ReduceMean`, `ReduceSum`): the statistics of
//! a layer normalization exported as separate ops.

use ndarray::{Axis, IxDyn};
use slimnet_core::io::TensorSource;
use slimnet_core::serde_json::{json, Value};
use slimnet_core::{Error, Layer, Result, Tensor};

use super::axis as resolve;

/// What a [`Reduce`] computes over its axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// The mean.
    Mean,
    /// The sum.
    Sum,
}

impl ReduceOp {
    /// The ONNX op type (`ReduceMean`, `ReduceSum`).
    pub fn onnx_name(self) -> &'static str {
        match self {
            ReduceOp::Mean => "ReduceMean",
            ReduceOp::Sum => "ReduceSum",
        }
    }

    /// The op of an ONNX op type.
    pub fn from_onnx(name: &str) -> Option<Self> {
        match name {
            "ReduceMean" => Some(ReduceOp::Mean),
            "ReduceSum" => Some(ReduceOp::Sum),
            _ => None,
        }
    }
}

/// The mean or sum over `axes` (negative counts from the end; none: every axis), keeping them
/// as size 1 or dropping them.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_onnx::layers::{Reduce, ReduceOp};
/// let mean = Reduce::new(ReduceOp::Mean, vec![-1], true);
/// let y = mean.forward(&tensor::from_vec(&[1, 2, 2], vec![1.0, 3.0, 2.0, 6.0])?)?;
/// assert_eq!(y.shape(), &[1, 2, 1]);
/// assert_eq!(y.as_slice().unwrap(), &[2.0, 4.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Reduce {
    op: ReduceOp,
    axes: Vec<i64>,
    keepdims: bool,
    cache: Option<Vec<usize>>,
}

impl Reduce {
    /// A reduction by `op` over `axes` (empty: all), keeping them as size 1 when `keepdims`.
    pub fn new(op: ReduceOp, axes: Vec<i64>, keepdims: bool) -> Self {
        Self {
            op,
            axes,
            keepdims,
            cache: None,
        }
    }

    /// `(op, axes, keepdims)`.
    pub fn parts(&self) -> (ReduceOp, &[i64], bool) {
        (self.op, &self.axes, self.keepdims)
    }

    /// The reduced axes of an input of shape `input`, sorted and without repeats, or an error
    /// naming the axes.
    fn resolved(&self, input: &[usize]) -> Result<Vec<usize>> {
        if self.axes.is_empty() {
            return Ok((0..input.len()).collect());
        }
        let mut ax = self
            .axes
            .iter()
            .map(|&a| resolve(a, input.len()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::shape(format!("a rank holding axes {:?}", self.axes), input))?;
        ax.sort_unstable();
        ax.dedup();
        Ok(ax)
    }

    /// The output shape with the reduced axes kept as size 1.
    fn kept(&self, input: &[usize]) -> Result<Vec<usize>> {
        let ax = self.resolved(input)?;
        Ok(input
            .iter()
            .enumerate()
            .map(|(i, &d)| if ax.contains(&i) { 1 } else { d })
            .collect())
    }
}

impl Layer for Reduce {
    fn kind(&self) -> &'static str {
        "Reduce"
    }

    /// Any shape holding the axes -> the shape with them reduced.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let ax = self.resolved(x.shape())?;
        let mut y = x.to_owned();
        // from the last axis, so earlier indices stay valid
        for &a in ax.iter().rev() {
            y = y.sum_axis(Axis(a)).insert_axis(Axis(a));
        }
        if self.op == ReduceOp::Mean {
            let count: usize = ax.iter().map(|&a| x.shape()[a]).product();
            y.mapv_inplace(|v| v / count.max(1) as f32);
        }
        let out = self.output_shape(x.shape())?;
        Ok(y.into_shape_with_order(IxDyn(&out))
            .expect("the kept axes are of size 1"))
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.cache = Some(x.shape().to_vec());
        self.forward(x)
    }

    /// The gradient spread back over the reduced axes (divided by their size for a mean).
    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let shape = self.cache.take().ok_or_else(|| Error::no_cache("Reduce"))?;
        let kept = self.kept(&shape)?;
        let g = g.to_shape(IxDyn(&kept)).map_err(|_| {
            Error::shape(
                format!("gradient {:?}", self.output_shape(&shape)),
                g.shape(),
            )
        })?;
        let count: usize = shape.iter().zip(&kept).map(|(s, k)| s / k).product();
        let scale = match self.op {
            ReduceOp::Mean => 1.0 / count.max(1) as f32,
            ReduceOp::Sum => 1.0,
        };
        Ok(g.broadcast(IxDyn(&shape))
            .expect("kept axes broadcast")
            .mapv(|v| v * scale))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let ax = self.resolved(input)?;
        Ok(input
            .iter()
            .enumerate()
            .filter_map(|(i, &d)| match (ax.contains(&i), self.keepdims) {
                (false, _) => Some(d),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect())
    }

    fn config_json(&self) -> Value {
        json!({"op": self.op.onnx_name(), "axes": self.axes, "keepdims": self.keepdims})
    }
}

pub(crate) fn load(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let bad = |what: &str| Error::ModelFile(format!("Reduce config: {what}"));
    let op = cfg
        .get("op")
        .and_then(Value::as_str)
        .and_then(ReduceOp::from_onnx)
        .ok_or_else(|| bad("`op` is not ReduceMean/ReduceSum"))?;
    let axes = cfg
        .get("axes")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| bad("`axes` is not a list of integers"))?;
    let keepdims = cfg
        .get("keepdims")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("`keepdims` is not a bool"))?;
    Ok(Box::new(Reduce::new(op, axes, keepdims)))
}
