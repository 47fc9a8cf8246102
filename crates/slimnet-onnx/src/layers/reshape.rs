//! Shape-only layers: [`Reshape`] (ONNX `Reshape`, `Squeeze`, `Unsqueeze`, `Flatten` with an
//! axis other than 1), [`Transpose`] and [`Slice`].

use ndarray::{Axis, Dimension, IxDyn};
use slimnet_core::io::TensorSource;
use slimnet_core::serde_json::{json, Value};
use slimnet_core::{Error, Layer, Result, Tensor};

use slimnet_core::io::config_ints;
use slimnet_core::tensor::checked_len;

/// Reshapes to a target given the ONNX way: a `0` copies the input's size at that position
/// (unless `allowzero`), one `-1` takes what is left. Written with `0` or `-1` for the batch,
/// the layer works at any batch size.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_onnx::layers::Reshape;
/// let r = Reshape::new(vec![0, -1], false)?;
/// assert_eq!(r.output_shape(&[5, 2, 3, 4])?, vec![5, 24]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Reshape {
    spec: Vec<i64>,
    allowzero: bool,
    cache: Option<Vec<usize>>,
}

impl Reshape {
    /// A reshape to `spec` (see the type's documentation).
    ///
    /// # Errors
    /// More than one `-1`, a size below `-1`, or `allowzero` with both `0` and `-1`.
    pub fn new(spec: Vec<i64>, allowzero: bool) -> Result<Self> {
        let infer = spec.iter().filter(|&&d| d == -1).count();
        if infer > 1 || spec.iter().any(|&d| d < -1) {
            return Err(Error::config(format!(
                "reshape target {spec:?}: at most one -1, no size below -1"
            )));
        }
        if allowzero && infer == 1 && spec.contains(&0) {
            return Err(Error::config(
                "reshape with allowzero cannot hold both 0 and -1",
            ));
        }
        Ok(Self {
            spec,
            allowzero,
            cache: None,
        })
    }

    /// The target as given, and `allowzero`.
    pub fn spec(&self) -> (&[i64], bool) {
        (&self.spec, self.allowzero)
    }
}

impl Layer for Reshape {
    fn kind(&self) -> &'static str {
        "Reshape"
    }

    /// Any shape with the right number of elements -> the target shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = self.output_shape(x.shape())?;
        Ok(x.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&s))
            .expect("checked by output_shape"))
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.cache = Some(x.shape().to_vec());
        self.forward(x)
    }

    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let s = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache("Reshape"))?;
        g.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&s))
            .map_err(|_| {
                Error::shape(
                    format!("{} elements", s.iter().product::<usize>()),
                    g.shape(),
                )
            })
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let total = checked_len(input)?;
        let bad = || Error::shape(format!("a shape that reshapes to {:?}", self.spec), input);
        let mut out = Vec::with_capacity(self.spec.len());
        let mut infer = None;
        for (i, &d) in self.spec.iter().enumerate() {
            out.push(match d {
                -1 => {
                    infer = Some(i);
                    1
                }
                0 if !self.allowzero => *input.get(i).ok_or_else(bad)?,
                d => usize::try_from(d).map_err(|_| bad())?,
            });
        }
        let known = checked_len(&out).map_err(|_| bad())?;
        if let Some(i) = infer {
            if known == 0 || total % known != 0 {
                return Err(bad());
            }
            out[i] = total / known;
        } else if known != total {
            return Err(bad());
        }
        Ok(out)
    }

    fn config_json(&self) -> Value {
        json!({"spec": self.spec, "allowzero": self.allowzero})
    }
}

/// Permutes the axes: output axis `i` is input axis `perm[i]`.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_onnx::layers::Transpose;
/// let t = Transpose::new(vec![1, 0])?;
/// let y = t.forward(&tensor::from_vec(&[2, 3], (0..6).map(|v| v as f32).collect())?)?;
/// assert_eq!(y.shape(), &[3, 2]);
/// assert_eq!(y[[2, 1]], 5.0);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Transpose {
    perm: Vec<usize>,
}

impl Transpose {
    /// A transpose by `perm`.
    ///
    /// # Errors
    /// When `perm` is not a permutation of `0..perm.len()`.
    pub fn new(perm: Vec<usize>) -> Result<Self> {
        let mut seen = vec![false; perm.len()];
        for &p in &perm {
            if p >= perm.len() || std::mem::replace(&mut seen[p], true) {
                return Err(Error::config(format!("{perm:?} is not a permutation")));
            }
        }
        Ok(Self { perm })
    }

    /// The permutation.
    pub fn perm(&self) -> &[usize] {
        &self.perm
    }

    fn check(&self, input: &[usize]) -> Result<()> {
        if input.len() != self.perm.len() {
            return Err(Error::shape(format!("rank {}", self.perm.len()), input));
        }
        Ok(())
    }
}

impl Layer for Transpose {
    fn kind(&self) -> &'static str {
        "Transpose"
    }

    /// Rank `perm.len()` -> the permuted shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x.shape())?;
        Ok(x.view()
            .permuted_axes(IxDyn(&self.perm))
            .as_standard_layout()
            .into_owned())
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.forward(x)
    }

    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        self.check(g.shape())?;
        let mut inv = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inv[p] = i;
        }
        Ok(g.view()
            .permuted_axes(IxDyn(&inv))
            .as_standard_layout()
            .into_owned())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.check(input)?;
        Ok(self.perm.iter().map(|&p| input[p]).collect())
    }

    fn config_json(&self) -> Value {
        json!({"perm": self.perm})
    }
}

/// The indices ONNX `Slice` picks along an axis of size `d` from `start` to `end` (exclusive)
/// by `step` (negative bounds count from the end and are clamped; a negative step walks
/// backwards); `None` for a zero step.
pub(crate) fn slice_indices(d: usize, start: i64, end: i64, step: i64) -> Option<Vec<usize>> {
    if step == 0 {
        return None;
    }
    let d = d as i64;
    let norm =
        |v: i64, lo: i64, hi: i64| (if v < 0 { v.saturating_add(d) } else { v }).clamp(lo, hi);
    let (mut i, end) = if step > 0 {
        (norm(start, 0, d), norm(end, 0, d))
    } else {
        (norm(start, -1, d - 1), norm(end, -1, d - 1))
    };
    let mut v = Vec::new();
    while (step > 0 && i < end) || (step < 0 && i > end) {
        v.push(i as usize);
        i += step;
    }
    Some(v)
}

/// ONNX `Slice` of an activation: along each of `axes`, the values from `starts` to `ends`
/// (exclusive) by `steps`, with ONNX's rules (negative bounds count from the end, bounds are
/// clamped, a negative step walks backwards). Bounds are resolved against each input, so the
/// layer works at any batch size.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_onnx::layers::Slice;
/// // the second of three stacked tensors, as attention splits queries, keys and values
/// let s = Slice::new(vec![1], vec![2], vec![0], vec![1])?;
/// let y = s.forward(&tensor::from_vec(&[3, 2], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0])?)?;
/// assert_eq!(y.as_slice().unwrap(), &[2.0, 3.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Slice {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Vec<i64>,
    steps: Vec<i64>,
    cache: Option<Vec<usize>>,
}

impl Slice {
    /// A slice along `axes` (negative counts from the end).
    ///
    /// # Errors
    /// Lists of different lengths, or a zero step.
    pub fn new(starts: Vec<i64>, ends: Vec<i64>, axes: Vec<i64>, steps: Vec<i64>) -> Result<Self> {
        if [ends.len(), axes.len(), steps.len()]
            .iter()
            .any(|&l| l != starts.len())
        {
            return Err(Error::config(
                "slice: starts, ends, axes and steps differ in length",
            ));
        }
        if steps.contains(&0) {
            return Err(Error::config("slice: a zero step"));
        }
        Ok(Self {
            starts,
            ends,
            axes,
            steps,
            cache: None,
        })
    }

    /// `(starts, ends, axes, steps)`.
    pub fn parts(&self) -> (&[i64], &[i64], &[i64], &[i64]) {
        (&self.starts, &self.ends, &self.axes, &self.steps)
    }

    /// The input indices kept along every axis of an input of shape `input`.
    fn picks(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        let mut picks: Vec<Vec<usize>> = input.iter().map(|&d| (0..d).collect()).collect();
        for k in 0..self.axes.len() {
            let ax = super::axis(self.axes[k], input.len()).ok_or_else(|| {
                Error::shape(format!("a rank holding axes {:?}", self.axes), input)
            })?;
            picks[ax] = slice_indices(input[ax], self.starts[k], self.ends[k], self.steps[k])
                .expect("steps checked in new");
        }
        Ok(picks)
    }
}

impl Layer for Slice {
    fn kind(&self) -> &'static str {
        "Slice"
    }

    /// Any shape holding the axes -> the sliced shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let picks = self.picks(x.shape())?;
        let mut y = x.to_owned();
        for (ax, p) in picks.iter().enumerate() {
            if p.len() != x.shape()[ax] || p.iter().enumerate().any(|(i, &j)| i != j) {
                y = y.select(Axis(ax), p);
            }
        }
        Ok(y)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.cache = Some(x.shape().to_vec());
        self.forward(x)
    }

    /// The gradient put back where its values came from; zero elsewhere.
    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let shape = self.cache.take().ok_or_else(|| Error::no_cache("Slice"))?;
        let picks = self.picks(&shape)?;
        let out: Vec<usize> = picks.iter().map(Vec::len).collect();
        if g.shape() != out {
            return Err(Error::shape(format!("gradient {out:?}"), g.shape()));
        }
        let mut dx = Tensor::zeros(IxDyn(&shape));
        let mut at = vec![0; shape.len()];
        for (idx, &v) in g.indexed_iter() {
            for (a, (i, p)) in at.iter_mut().zip(idx.slice().iter().zip(&picks)) {
                *a = p[*i];
            }
            dx[IxDyn(&at)] += v;
        }
        Ok(dx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.picks(input)?.iter().map(Vec::len).collect())
    }

    fn config_json(&self) -> Value {
        json!({"starts": self.starts, "ends": self.ends, "axes": self.axes, "steps": self.steps})
    }
}

pub(crate) fn load_slice(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let get = |k: &str| config_ints(cfg, "Slice", k);
    Ok(Box::new(Slice::new(
        get("starts")?,
        get("ends")?,
        get("axes")?,
        get("steps")?,
    )?))
}

pub(crate) fn load_reshape(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let allowzero = cfg
        .get("allowzero")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Box::new(Reshape::new(
        config_ints(cfg, "Reshape", "spec")?,
        allowzero,
    )?))
}

pub(crate) fn load_transpose(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let perm = config_ints(cfg, "Transpose", "perm")?
        .into_iter()
        .map(|p| usize::try_from(p).map_err(|_| Error::ModelFile(format!("Transpose: axis {p}"))))
        .collect::<Result<_>>()?;
    Ok(Box::new(Transpose::new(perm)?))
}
