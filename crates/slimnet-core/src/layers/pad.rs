//! Padding (ONNX `Pad`, and the asymmetric padding of `Conv` / `AveragePool` / `MaxPool`).

use ndarray::IxDyn;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::io::TensorSource;
use crate::io::{config_float, config_ints};
use crate::layer::Layer;
use crate::tensor::checked_len;
use crate::tensor::{contiguous, Tensor};

/// What fills the border of a [`Pad`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PadMode {
    /// A constant value.
    Constant(f32),
    /// The mirror image without repeating the edge (`[1, 2, 3]` -> `3, 2 | 1, 2, 3 | 2, 1`).
    Reflect,
    /// The edge value repeated.
    Edge,
    /// The other end of the axis (periodic).
    Wrap,
}

impl PadMode {
    /// The ONNX `mode` attribute.
    pub fn onnx_name(self) -> &'static str {
        match self {
            PadMode::Constant(_) => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
            PadMode::Wrap => "wrap",
        }
    }
}

/// For each axis and output position, the input position read (`None`: the constant).
type Maps = Vec<Vec<Option<usize>>>;

/// Pads (or, with negative sizes, crops) every axis: `pads[i] = (before, after)` for axis `i`.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_core::layers::{Pad, PadMode};
/// // one row of zeros on top of an NCHW image, none at the bottom
/// let pad = Pad::new(vec![(0, 0), (0, 0), (1, 0), (0, 0)], PadMode::Constant(0.0))?;
/// assert_eq!(pad.output_shape(&[1, 3, 4, 4])?, vec![1, 3, 5, 4]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Pad {
    pads: Vec<(i64, i64)>,
    mode: PadMode,
    cache: Option<Vec<usize>>,
}

impl Pad {
    /// Padding of each axis, filled by `mode`.
    ///
    /// # Errors
    /// A size beyond `±2^24`, or a non-finite constant.
    pub fn new(pads: Vec<(i64, i64)>, mode: PadMode) -> Result<Self> {
        if pads
            .iter()
            .any(|&(a, b)| a.unsigned_abs() > 1 << 24 || b.unsigned_abs() > 1 << 24)
        {
            return Err(Error::config(format!("pads {pads:?} exceed 2^24")));
        }
        if matches!(mode, PadMode::Constant(v) if v.is_nan()) {
            return Err(Error::config("the pad value must not be NaN"));
        }
        Ok(Self {
            pads,
            mode,
            cache: None,
        })
    }

    /// Padding of the two spatial axes of NCHW input, `[top, left, bottom, right]` (PyTorch's
    /// `ReflectionPad2d` is `Pad::spatial([p; 4], PadMode::Reflect)`).
    ///
    /// ```
    /// use slimnet_core::layers::{Pad, PadMode};
    /// use slimnet_core::{tensor, Layer};
    /// let pad = Pad::spatial([1, 1, 1, 1], PadMode::Reflect)?;
    /// let x = tensor::from_vec(&[1, 1, 2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
    /// let y = pad.forward(&x)?;
    /// assert_eq!(y.shape(), &[1, 1, 4, 5]);
    /// let top: Vec<f32> = y.iter().copied().take(5).collect();
    /// assert_eq!(top, [5.0, 4.0, 5.0, 6.0, 5.0]);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pad::new`].
    pub fn spatial(pads: [usize; 4], mode: PadMode) -> Result<Self> {
        let p = pads.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        Self::new(vec![(0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])], mode)
    }

    /// The pads per axis and the mode.
    pub fn parts(&self) -> (&[(i64, i64)], PadMode) {
        (&self.pads, self.mode)
    }

    /// For each axis and output position, the input position it reads (`None`: the constant).
    fn maps(&self, input: &[usize]) -> Result<(Vec<usize>, Maps)> {
        let bad = |why: &str| Error::shape(format!("rank {} and {why}", self.pads.len()), input);
        if input.len() != self.pads.len() {
            return Err(bad("sizes the pads fit"));
        }
        let mut out = Vec::with_capacity(input.len());
        let mut maps = Vec::with_capacity(input.len());
        for (&n, &(b, e)) in input.iter().zip(&self.pads) {
            let size = n as i64 + b + e;
            if size < 1 || (n == 0 && !matches!(self.mode, PadMode::Constant(_))) {
                return Err(bad("sizes that stay positive"));
            }
            if self.mode == PadMode::Reflect && n == 1 && (b > 0 || e > 0) {
                return Err(bad("at least 2 values on reflected axes"));
            }
            let n = n as i64;
            let map: Vec<Option<usize>> = (0..size)
                .map(|o| {
                    let s = o - b;
                    let s = if (0..n).contains(&s) {
                        s
                    } else {
                        match self.mode {
                            PadMode::Constant(_) => return None,
                            PadMode::Edge => s.clamp(0, n - 1),
                            PadMode::Wrap => s.rem_euclid(n),
                            PadMode::Reflect => {
                                let m = s.rem_euclid(2 * (n - 1));
                                if m >= n {
                                    2 * (n - 1) - m
                                } else {
                                    m
                                }
                            }
                        }
                    };
                    Some(s as usize)
                })
                .collect();
            out.push(size as usize);
            maps.push(map);
        }
        checked_len(&out)?;
        Ok((out, maps))
    }

    /// Visits every output position (in order) with the flat input offset it reads.
    fn walk(
        input: &[usize],
        out: &[usize],
        maps: &[Vec<Option<usize>>],
        mut f: impl FnMut(Option<usize>),
    ) {
        let rank = input.len();
        let mut strides = vec![1usize; rank];
        for a in (0..rank.saturating_sub(1)).rev() {
            strides[a] = strides[a + 1] * input[a + 1];
        }
        let n: usize = out.iter().product();
        let mut idx = vec![0usize; rank];
        for _ in 0..n {
            let mut off = Some(0);
            for a in 0..rank {
                off = match (off, maps[a][idx[a]]) {
                    (Some(o), Some(s)) => Some(o + s * strides[a]),
                    _ => None,
                };
            }
            f(off);
            for a in (0..rank).rev() {
                idx[a] += 1;
                if idx[a] < out[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
    }
}

impl Layer for Pad {
    fn kind(&self) -> &'static str {
        "Pad"
    }

    /// Rank `pads.len()` -> each axis grown by its pads.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (out, maps) = self.maps(x.shape())?;
        let xs = contiguous(x);
        let fill = match self.mode {
            PadMode::Constant(v) => v,
            _ => 0.0,
        };
        let (Some(&wo), Some(&wi)) = (out.last(), x.shape().last()) else {
            // rank 0: the one value
            return Ok(x.clone());
        };
        let mut y = crate::buffers::output(&out);
        if y.is_empty() {
            return Ok(y);
        }
        let ys = y.as_slice_mut().expect("an output buffer is contiguous");
        // row by row along the last axis: the rows the other axes map to, each copied in one
        // piece where it lies inside the input, value by value at its padded ends
        let outer = &out[..out.len() - 1];
        let last = maps.last().expect("rank 1 or more");
        let b = self.pads.last().expect("rank 1 or more").0;
        let (lo, hi) = (
            (b.max(0) as usize).min(wo),
            ((b + wi as i64).max(0) as usize).min(wo),
        );
        let mut k = 0;
        Self::walk(
            &x.shape()[..out.len() - 1],
            outer,
            &maps[..out.len() - 1],
            |o| {
                let row = &mut ys[k * wo..(k + 1) * wo];
                k += 1;
                let Some(o) = o.map(|o| o * wi) else {
                    row.fill(fill);
                    return;
                };
                let src = &xs[o..o + wi];
                for (d, m) in row[..lo].iter_mut().zip(&last[..lo]) {
                    *d = m.map_or(fill, |m| src[m]);
                }
                if lo < hi {
                    let s0 = (lo as i64 - b) as usize;
                    row[lo..hi].copy_from_slice(&src[s0..s0 + hi - lo]);
                }
                for (d, m) in row[hi..].iter_mut().zip(&last[hi..]) {
                    *d = m.map_or(fill, |m| src[m]);
                }
            },
        );
        Ok(y)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.cache = Some(x.shape().to_vec());
        self.forward(x)
    }

    /// Each output gradient goes back to the input it was read from.
    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let shape = self.cache.take().ok_or_else(|| Error::no_cache("Pad"))?;
        let (out, maps) = self.maps(&shape)?;
        if g.shape() != out.as_slice() {
            return Err(Error::shape(format!("{out:?}"), g.shape()));
        }
        let gs = contiguous(g);
        let mut gx = vec![0.0f32; shape.iter().product()];
        let mut i = 0;
        Self::walk(&shape, &out, &maps, |o| {
            if let Some(o) = o {
                gx[o] += gs[i];
            }
            i += 1;
        });
        Ok(Tensor::from_shape_vec(IxDyn(&shape), gx).expect("length"))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.maps(input)?.0)
    }

    fn config_json(&self) -> Value {
        let (b, e): (Vec<i64>, Vec<i64>) = self.pads.iter().copied().unzip();
        let value = match self.mode {
            PadMode::Constant(v) => v,
            _ => 0.0,
        };
        json!({"begin": b, "end": e, "mode": self.mode.onnx_name(), "value": value})
    }
}

pub(crate) fn load(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let b = config_ints(cfg, "Pad", "begin")?;
    let e = config_ints(cfg, "Pad", "end")?;
    if b.len() != e.len() {
        return Err(Error::ModelFile(
            "Pad config: `begin` and `end` differ in length".into(),
        ));
    }
    let mode = match cfg.get("mode").and_then(Value::as_str) {
        Some("constant") => PadMode::Constant(config_float(cfg, "Pad", "value")?),
        Some("reflect") => PadMode::Reflect,
        Some("edge") => PadMode::Edge,
        Some("wrap") => PadMode::Wrap,
        m => return Err(Error::ModelFile(format!("Pad config: unknown mode {m:?}"))),
    };
    Ok(Box::new(Pad::new(b.into_iter().zip(e).collect(), mode)?))
}
