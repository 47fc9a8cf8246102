//! 2-D max and average pooling the ONNX way: asymmetric pads, dilations, ceil mode.

use ndarray::IxDyn;
use slimnet_core::io::TensorSource;
use slimnet_core::serde_json::{json, Value};
use slimnet_core::tensor::{contiguous, expect_nchw};
use slimnet_core::{Error, Layer, Result, Tensor};

use slimnet_core::io::config_ints;

/// Max or average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window (padding never wins).
    Max,
    /// Average over the window.
    Avg {
        /// Whether padded positions count in the divisor.
        count_include_pad: bool,
    },
}

/// 2-D pooling over NCHW input with ONNX's options: `pads = [top, left, bottom, right]`,
/// dilations, and `ceil_mode` (a last, partial window when it starts inside the input or its
/// leading padding). Positions beyond the padded input never count.
///
/// ```
/// use slimnet_core::Layer;
/// use slimnet_onnx::layers::{Pool2d, PoolKind};
/// let p = Pool2d::new(PoolKind::Max, [3, 3], [2, 2], [0, 0, 0, 0], [1, 1], true)?;
/// assert_eq!(p.output_shape(&[1, 1, 4, 4])?, vec![1, 1, 2, 2]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Pool2d {
    kind: PoolKind,
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
    dilation: [usize; 2],
    ceil: bool,
}

impl Pool2d {
    /// A pooling layer.
    ///
    /// # Errors
    /// Zero kernel, stride or dilation, or sizes beyond `2^20`.
    pub fn new(
        kind: PoolKind,
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: [usize; 4],
        dilation: [usize; 2],
        ceil: bool,
    ) -> Result<Self> {
        if kernel.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
            return Err(Error::config(format!(
                "kernel {kernel:?}, stride {stride:?} and dilation {dilation:?} must be positive"
            )));
        }
        if kernel
            .iter()
            .chain(&stride)
            .chain(&pads)
            .chain(&dilation)
            .any(|&v| v > 1 << 20)
        {
            return Err(Error::config("a pooling size exceeds 2^20"));
        }
        Ok(Self {
            kind,
            kernel,
            stride,
            pads,
            dilation,
            ceil,
        })
    }

    /// `(kind, kernel, stride, pads [t, l, b, r], dilation, ceil_mode)`.
    pub fn parts(
        &self,
    ) -> (
        PoolKind,
        [usize; 2],
        [usize; 2],
        [usize; 4],
        [usize; 2],
        bool,
    ) {
        (
            self.kind,
            self.kernel,
            self.stride,
            self.pads,
            self.dilation,
            self.ceil,
        )
    }

    fn out_dim(&self, size: usize, i: usize) -> Option<usize> {
        let (b, e) = (self.pads[i], self.pads[i + 2]);
        let span = (self.kernel[i] - 1) * self.dilation[i] + 1;
        let room = (size + b + e).checked_sub(span)?;
        let s = self.stride[i];
        let mut out = if self.ceil {
            room.div_ceil(s)
        } else {
            room / s
        } + 1;
        if self.ceil && (out - 1) * s >= size + b {
            out -= 1;
        }
        Some(out)
    }

    fn shape(&self, input: &[usize]) -> Result<[usize; 4]> {
        let (n, c, h, w) = expect_nchw(input, None)?;
        match (self.out_dim(h, 0), self.out_dim(w, 1)) {
            (Some(oh), Some(ow)) if oh > 0 && ow > 0 => Ok([n, c, oh, ow]),
            _ => Err(Error::shape(
                format!("[N, C, H, W] large enough for the window {:?}", self.kernel),
                input,
            )),
        }
    }

    /// The input positions a window starting at `o` reads along axis `i`: `(positions inside
    /// the input, positions inside the padded input)`.
    fn taps(&self, o: usize, size: usize, i: usize) -> (Vec<usize>, usize) {
        let (b, e) = (self.pads[i] as isize, self.pads[i + 2] as isize);
        let start = (o * self.stride[i]) as isize - b;
        let mut inside = Vec::with_capacity(self.kernel[i]);
        let mut padded = 0;
        for k in 0..self.kernel[i] {
            let p = start + (k * self.dilation[i]) as isize;
            if p >= -b && p < size as isize + e {
                padded += 1;
            }
            if p >= 0 && p < size as isize {
                inside.push(p as usize);
            }
        }
        (inside, padded)
    }
}

impl Layer for Pool2d {
    fn kind(&self) -> &'static str {
        "Pool2d"
    }

    /// `[N, C, H, W]` -> `[N, C, OH, OW]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [n, c, oh, ow] = self.shape(x.shape())?;
        let (h, w) = (x.shape()[2], x.shape()[3]);
        let rows: Vec<_> = (0..oh).map(|o| self.taps(o, h, 0)).collect();
        let cols: Vec<_> = (0..ow).map(|o| self.taps(o, w, 1)).collect();
        let xs = contiguous(x);
        let mut out = Vec::with_capacity(n * c * oh * ow);
        for plane in xs.chunks(h * w).take(n * c) {
            for (ry, py) in &rows {
                for (rx, px) in &cols {
                    let vals = ry
                        .iter()
                        .flat_map(|&y| rx.iter().map(move |&x| plane[y * w + x]));
                    out.push(match self.kind {
                        PoolKind::Max => vals.fold(f32::NEG_INFINITY, f32::max),
                        PoolKind::Avg { count_include_pad } => {
                            let d = if count_include_pad {
                                py * px
                            } else {
                                ry.len() * rx.len()
                            };
                            vals.sum::<f32>() / d.max(1) as f32
                        }
                    });
                }
            }
        }
        Ok(Tensor::from_shape_vec(IxDyn(&[n, c, oh, ow]), out).expect("length"))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.shape(input)?.to_vec())
    }

    fn config_json(&self) -> Value {
        let (kind, cip) = match self.kind {
            PoolKind::Max => ("max", false),
            PoolKind::Avg { count_include_pad } => ("avg", count_include_pad),
        };
        json!({"pool": kind, "count_include_pad": cip, "kernel": self.kernel,
               "stride": self.stride, "pads": self.pads, "dilation": self.dilation,
               "ceil_mode": self.ceil})
    }
}

pub(crate) fn load(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let list = |name: &str, n: usize| -> Result<Vec<usize>> {
        let v = config_ints(cfg, "Pool2d", name)?;
        if v.len() != n || v.iter().any(|&d| !(0..=1 << 20).contains(&d)) {
            return Err(Error::ModelFile(format!(
                "Pool2d config: bad `{name}` {v:?}"
            )));
        }
        Ok(v.into_iter().map(|d| d as usize).collect())
    };
    let b = |n: &str| cfg.get(n).and_then(Value::as_bool).unwrap_or(false);
    let kind = match cfg.get("pool").and_then(Value::as_str) {
        Some("max") => PoolKind::Max,
        Some("avg") => PoolKind::Avg {
            count_include_pad: b("count_include_pad"),
        },
        k => {
            return Err(Error::ModelFile(format!(
                "Pool2d config: unknown pool {k:?}"
            )))
        }
    };
    let (k, s, p, d) = (
        list("kernel", 2)?,
        list("stride", 2)?,
        list("pads", 4)?,
        list("dilation", 2)?,
    );
    Ok(Box::new(Pool2d::new(
        kind,
        [k[0], k[1]],
        [s[0], s[1]],
        [p[0], p[1], p[2], p[3]],
        [d[0], d[1]],
        b("ceil_mode"),
    )?))
}
