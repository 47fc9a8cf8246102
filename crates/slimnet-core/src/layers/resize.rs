//! Spatial resizing of NCHW maps (ONNX `Resize` and `Upsample`): nearest and bilinear, with
//! ONNX's coordinate transformations, as feature-pyramid and segmentation heads use them.

use ndarray::IxDyn;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::io::TensorSource;
use crate::layer::Layer;
use crate::tensor::checked_len;
use crate::tensor::{contiguous, Tensor};

/// How an output position maps to a position of the input (ONNX
/// `coordinate_transformation_mode`); `scale` is output size over input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordMode {
    /// `(x + 0.5) / scale - 0.5` (ONNX's default, PyTorch's `align_corners=False`).
    HalfPixel,
    /// As `HalfPixel`, centred when the output size was rounded.
    HalfPixelSymmetric,
    /// As `HalfPixel`, except that an output of size 1 reads position `-0.5`.
    PytorchHalfPixel,
    /// `x * (in - 1) / (out - 1)`.
    AlignCorners,
    /// `x / scale` (`Upsample` and opset-10 `Resize`).
    Asymmetric,
    /// `(x + 0.5) / scale`.
    TfHalfPixelForNn,
}

impl CoordMode {
    /// The ONNX attribute value.
    pub fn onnx_name(self) -> &'static str {
        match self {
            CoordMode::HalfPixel => "half_pixel",
            CoordMode::HalfPixelSymmetric => "half_pixel_symmetric",
            CoordMode::PytorchHalfPixel => "pytorch_half_pixel",
            CoordMode::AlignCorners => "align_corners",
            CoordMode::Asymmetric => "asymmetric",
            CoordMode::TfHalfPixelForNn => "tf_half_pixel_for_nn",
        }
    }

    /// The mode of an ONNX attribute value.
    pub fn from_onnx(s: &str) -> Option<Self> {
        [
            CoordMode::HalfPixel,
            CoordMode::HalfPixelSymmetric,
            CoordMode::PytorchHalfPixel,
            CoordMode::AlignCorners,
            CoordMode::Asymmetric,
            CoordMode::TfHalfPixelForNn,
        ]
        .into_iter()
        .find(|m| m.onnx_name() == s)
    }
}

/// Which input position a nearest-neighbour output takes (ONNX `nearest_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearestMode {
    /// Rounds, halves down (ONNX's default).
    RoundPreferFloor,
    /// Rounds, halves up.
    RoundPreferCeil,
    /// Rounds down.
    Floor,
    /// Rounds up.
    Ceil,
    /// Down when enlarging, up when shrinking (`Upsample` and opset-10 `Resize`, as ONNX
    /// Runtime runs them).
    Simple,
}

impl NearestMode {
    /// The ONNX attribute value (`Simple` has none; it is written as `floor`, which agrees with
    /// it when enlarging).
    pub fn onnx_name(self) -> &'static str {
        match self {
            NearestMode::RoundPreferFloor => "round_prefer_floor",
            NearestMode::RoundPreferCeil => "round_prefer_ceil",
            NearestMode::Floor | NearestMode::Simple => "floor",
            NearestMode::Ceil => "ceil",
        }
    }

    /// The mode of an ONNX attribute value.
    pub fn from_onnx(s: &str) -> Option<Self> {
        Some(match s {
            "round_prefer_floor" => NearestMode::RoundPreferFloor,
            "round_prefer_ceil" => NearestMode::RoundPreferCeil,
            "floor" => NearestMode::Floor,
            "ceil" => NearestMode::Ceil,
            _ => return None,
        })
    }
}

/// Interpolation of a [`Resize2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// The nearest input value.
    Nearest(NearestMode),
    /// Bilinear interpolation between the two nearest values of each axis (edges repeated).
    Linear,
}

/// The output size of a [`Resize2d`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResizeTarget {
    /// Factors for height and width: the output is `floor(in * scale)`.
    Scales([f32; 2]),
    /// A fixed output height and width.
    Sizes([usize; 2]),
    /// The largest (`fit: true`, ONNX `not_larger`) or smallest (`not_smaller`) output of the
    /// input's aspect ratio within or around these sizes.
    KeepAspect {
        /// Height and width.
        sizes: [usize; 2],
        /// Whether the output fits within `sizes`.
        fit: bool,
    },
}

/// One output position along an axis: the two input positions read and the weight of the
/// second.
#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    w: f32,
}

/// Resizes the last two axes of an NCHW tensor.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_core::layers::{CoordMode, NearestMode, Resize2d, ResizeMode, ResizeTarget};
/// let up = Resize2d::new(
///     ResizeMode::Nearest(NearestMode::Floor),
///     CoordMode::Asymmetric,
///     ResizeTarget::Scales([2.0, 2.0]),
/// )?;
/// let x = tensor::from_vec(&[1, 1, 1, 2], vec![1.0, 2.0])?;
/// let y = up.forward(&x)?;
/// assert_eq!(y.iter().copied().collect::<Vec<_>>(), [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Resize2d {
    mode: ResizeMode,
    coord: CoordMode,
    target: ResizeTarget,
    cache: Option<Vec<usize>>,
}

impl Resize2d {
    /// A resize by `mode`, mapping positions by `coord`, to `target`.
    ///
    /// # Errors
    /// Scales that are not finite and positive, or sizes of zero or beyond `2^24`.
    pub fn new(mode: ResizeMode, coord: CoordMode, target: ResizeTarget) -> Result<Self> {
        let ok = match target {
            ResizeTarget::Scales(s) => s.iter().all(|v| v.is_finite() && *v > 0.0),
            ResizeTarget::Sizes(s) | ResizeTarget::KeepAspect { sizes: s, .. } => {
                s.iter().all(|v| (1..=1 << 24).contains(v))
            }
        };
        if !ok {
            return Err(Error::config(format!(
                "Resize2d target {target:?}: scales must be finite and positive, sizes in 1..=2^24"
            )));
        }
        Ok(Self {
            mode,
            coord,
            target,
            cache: None,
        })
    }

    /// Upsampling by an integer `factor` in both directions, as PyTorch's `nn.Upsample` (and
    /// its ONNX export) does it:
    /// - [`ResizeMode::Nearest`] maps positions by [`CoordMode::Asymmetric`] (`x / factor`),
    ///   so with [`NearestMode::Floor`] (or [`NearestMode::Simple`]) each value is repeated in
    ///   a `factor x factor` block;
    /// - [`ResizeMode::Linear`] maps them by [`CoordMode::HalfPixel`] (`align_corners=False`):
    ///   bilinear interpolation with the edges repeated.
    ///
    /// ```
    /// use slimnet_core::layers::{NearestMode, Resize2d, ResizeMode};
    /// use slimnet_core::{tensor, Layer};
    /// let x = tensor::from_vec(&[1, 1, 1, 2], vec![1.0, 2.0])?;
    /// let near = Resize2d::upsample(2, ResizeMode::Nearest(NearestMode::Floor))?;
    /// let y = near.forward(&x)?;
    /// assert_eq!(y.shape(), &[1, 1, 2, 4]);
    /// assert_eq!(y.iter().copied().collect::<Vec<_>>(), [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
    /// let lin = Resize2d::upsample(2, ResizeMode::Linear)?;
    /// let row: Vec<f32> = lin.forward(&x)?.iter().copied().take(4).collect();
    /// assert_eq!(row, [1.0, 1.25, 1.75, 2.0]);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// A factor of zero or beyond `2^12`.
    pub fn upsample(factor: usize, mode: ResizeMode) -> Result<Self> {
        if !(1..=1 << 12).contains(&factor) {
            return Err(Error::config(format!(
                "Resize2d::upsample: factor {factor} must be in 1..=4096"
            )));
        }
        let coord = match mode {
            ResizeMode::Nearest(_) => CoordMode::Asymmetric,
            ResizeMode::Linear => CoordMode::HalfPixel,
        };
        let f = factor as f32;
        Self::new(mode, coord, ResizeTarget::Scales([f, f]))
    }

    /// The interpolation, coordinate mapping and target.
    pub fn parts(&self) -> (ResizeMode, CoordMode, ResizeTarget) {
        (self.mode, self.coord, self.target)
    }

    /// Output sizes and the scale of each spatial axis for an input of `hw`.
    fn sizes(&self, input: &[usize]) -> Result<([usize; 2], [f64; 2])> {
        let bad = |why: &str| Error::shape(format!("[N, C, H, W] with {why}"), input);
        if input.len() != 4 || input[2] == 0 || input[3] == 0 {
            return Err(bad("positive H and W"));
        }
        let hw = [input[2] as f64, input[3] as f64];
        let (out, scale) = match self.target {
            ResizeTarget::Scales(s) => {
                let s = [f64::from(s[0]), f64::from(s[1])];
                ([(hw[0] * s[0]).floor(), (hw[1] * s[1]).floor()], s)
            }
            ResizeTarget::Sizes(z) => {
                let z = [z[0] as f64, z[1] as f64];
                (z, [z[0] / hw[0], z[1] / hw[1]])
            }
            ResizeTarget::KeepAspect { sizes, fit } => {
                let (a, b) = (sizes[0] as f64 / hw[0], sizes[1] as f64 / hw[1]);
                let s = if fit { a.min(b) } else { a.max(b) };
                (
                    [(s * hw[0] + 0.5).floor(), (s * hw[1] + 0.5).floor()],
                    [s, s],
                )
            }
        };
        if out
            .iter()
            .any(|&o| !(1.0..=f64::from(1u32 << 24)).contains(&o))
        {
            return Err(bad("an output of 1..=2^24 per axis"));
        }
        let out = [out[0] as usize, out[1] as usize];
        checked_len(&[input[0], input[1], out[0], out[1]])?;
        Ok((out, scale))
    }

    /// The taps of each output position along one axis.
    fn taps(&self, input: usize, output: usize, scale: f64) -> Vec<Tap> {
        let (n, out_f) = (input as f64, scale * input as f64);
        (0..output)
            .map(|o| {
                let x = o as f64;
                let src = match self.coord {
                    CoordMode::AlignCorners if out_f == 1.0 => 0.0,
                    CoordMode::AlignCorners => x * (n - 1.0) / (out_f - 1.0),
                    CoordMode::Asymmetric => x / scale,
                    CoordMode::PytorchHalfPixel if out_f == 1.0 => -0.5,
                    CoordMode::HalfPixel | CoordMode::PytorchHalfPixel => (x + 0.5) / scale - 0.5,
                    CoordMode::TfHalfPixelForNn => (x + 0.5) / scale,
                    CoordMode::HalfPixelSymmetric => {
                        let adjustment = output as f64 / out_f;
                        n / 2.0 * (1.0 - adjustment) + (x + 0.5) / scale - 0.5
                    }
                };
                let clamp = |i: f64| i.clamp(0.0, n - 1.0) as usize;
                let fl = src.floor();
                let frac = src - fl;
                match self.mode {
                    ResizeMode::Linear => Tap {
                        i0: clamp(fl),
                        i1: clamp(fl + 1.0),
                        w: frac as f32,
                    },
                    ResizeMode::Nearest(m) => {
                        let i = if frac == 0.0 {
                            fl
                        } else {
                            match m {
                                NearestMode::RoundPreferFloor if frac <= 0.5 => fl,
                                NearestMode::RoundPreferCeil if frac < 0.5 => fl,
                                NearestMode::RoundPreferFloor | NearestMode::RoundPreferCeil => {
                                    fl + 1.0
                                }
                                NearestMode::Floor => fl,
                                NearestMode::Ceil => fl + 1.0,
                                NearestMode::Simple if scale < 1.0 => fl + 1.0,
                                NearestMode::Simple => fl,
                            }
                        };
                        Tap {
                            i0: clamp(i),
                            i1: clamp(i),
                            w: 0.0,
                        }
                    }
                }
            })
            .collect()
    }

    /// The output shape with the taps of both axes.
    fn plan(&self, input: &[usize]) -> Result<(Vec<usize>, Vec<Tap>, Vec<Tap>)> {
        let (out, scale) = self.sizes(input)?;
        let ty = self.taps(input[2], out[0], scale[0]);
        let tx = self.taps(input[3], out[1], scale[1]);
        Ok((vec![input[0], input[1], out[0], out[1]], ty, tx))
    }
}

impl Layer for Resize2d {
    fn kind(&self) -> &'static str {
        "Resize2d"
    }

    /// `[N, C, H, W]` -> `[N, C, H', W']`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (out, ty, tx) = self.plan(x.shape())?;
        let (h, w) = (x.shape()[2], x.shape()[3]);
        let xs = contiguous(x);
        let mut y = crate::buffers::output(&out);
        let ow = out[3];
        if ow == 0 || out[2] == 0 || h * w == 0 {
            return Ok(Tensor::zeros(IxDyn(&out)));
        }
        let ys = y.as_slice_mut().expect("an output buffer is contiguous");
        // nearest along the width: each value one input value
        let picks = tx.iter().all(|c| c.w == 0.0 && c.i0 == c.i1);
        for (plane, dst) in xs.chunks(h * w).zip(ys.chunks_exact_mut(out[2] * ow)) {
            for (k, t) in ty.iter().enumerate() {
                let (r0, r1) = (&plane[t.i0 * w..][..w], &plane[t.i1 * w..][..w]);
                let (above, row) = dst.split_at_mut(k * ow);
                let row = &mut row[..ow];
                let prev = k.checked_sub(1).map(|p| &ty[p]);
                if t.w == 0.0 && prev.is_some_and(|p| p.w == 0.0 && p.i0 == t.i0) {
                    // the same input row as the output row above (nearest, enlarging)
                    row.copy_from_slice(&above[(k - 1) * ow..]);
                    continue;
                }
                if t.w == 0.0 && picks {
                    row.iter_mut().zip(&tx).for_each(|(o, c)| *o = r0[c.i0]);
                } else if t.w == 0.0 {
                    row.iter_mut()
                        .zip(&tx)
                        .for_each(|(o, c)| *o = r0[c.i0] + c.w * (r0[c.i1] - r0[c.i0]));
                } else {
                    row.iter_mut().zip(&tx).for_each(|(o, c)| {
                        let a = r0[c.i0] + c.w * (r0[c.i1] - r0[c.i0]);
                        let b = r1[c.i0] + c.w * (r1[c.i1] - r1[c.i0]);
                        *o = a + t.w * (b - a);
                    });
                }
            }
        }
        Ok(y)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward(x)?;
        self.cache = Some(x.shape().to_vec());
        Ok(y)
    }

    /// Each output gradient goes back to the input values it was interpolated from, by their
    /// weights.
    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        let shape = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache("Resize2d"))?;
        let (out, ty, tx) = self.plan(&shape)?;
        if g.shape() != out.as_slice() {
            return Err(Error::shape(format!("gradient {out:?}"), g.shape()));
        }
        let (h, w) = (shape[2], shape[3]);
        let gs = contiguous(g);
        let mut dx = vec![0.0f32; shape.iter().product()];
        let ow = out[3];
        for (plane, gp) in dx.chunks_mut(h * w).zip(gs.chunks(out[2] * ow)) {
            for (t, grow) in ty.iter().zip(gp.chunks(ow)) {
                for (c, &v) in tx.iter().zip(grow) {
                    for (r, wr) in [(t.i0, 1.0 - t.w), (t.i1, t.w)] {
                        plane[r * w + c.i0] += v * wr * (1.0 - c.w);
                        plane[r * w + c.i1] += v * wr * c.w;
                    }
                }
            }
        }
        Ok(Tensor::from_shape_vec(IxDyn(&shape), dx).expect("length"))
    }

    /// Computes the sizes only: the taps, one per output row and column, are made when the
    /// layer runs.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (out, _) = self.sizes(input)?;
        Ok(vec![input[0], input[1], out[0], out[1]])
    }

    fn config_json(&self) -> Value {
        let (mode, nearest) = match self.mode {
            ResizeMode::Linear => ("linear", "floor"),
            ResizeMode::Nearest(NearestMode::Simple) => ("nearest", "simple"),
            ResizeMode::Nearest(m) => ("nearest", m.onnx_name()),
        };
        let target = match self.target {
            ResizeTarget::Scales(s) => json!({"scales": s}),
            ResizeTarget::Sizes(s) => json!({"sizes": s}),
            ResizeTarget::KeepAspect { sizes, fit } => json!({"sizes": sizes, "fit": fit}),
        };
        json!({"mode": mode, "nearest_mode": nearest, "coord": self.coord.onnx_name(), "target": target})
    }
}

pub(crate) fn load(cfg: &Value, _: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let bad = |what: &str| Error::ModelFile(format!("Resize2d config: bad or missing `{what}`"));
    let s = |name: &str| {
        cfg.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(name))
    };
    let mode = match (s("mode")?, s("nearest_mode")?) {
        ("linear", _) => ResizeMode::Linear,
        ("nearest", "simple") => ResizeMode::Nearest(NearestMode::Simple),
        ("nearest", m) => ResizeMode::Nearest(NearestMode::from_onnx(m).ok_or_else(|| bad(m))?),
        _ => return Err(bad("mode")),
    };
    let coord = CoordMode::from_onnx(s("coord")?).ok_or_else(|| bad("coord"))?;
    let t = cfg.get("target").ok_or_else(|| bad("target"))?;
    let pair = |name: &str| -> Result<[f64; 2]> {
        match t.get(name).and_then(Value::as_array).map(Vec::as_slice) {
            Some([a, b]) => Ok([
                a.as_f64().ok_or_else(|| bad(name))?,
                b.as_f64().ok_or_else(|| bad(name))?,
            ]),
            _ => Err(bad(name)),
        }
    };
    let size = |v: f64| -> Result<usize> {
        if v.fract() == 0.0 && (1.0..=f64::from(1u32 << 24)).contains(&v) {
            Ok(v as usize)
        } else {
            Err(bad("sizes"))
        }
    };
    let target = if t.get("scales").is_some() {
        let s = pair("scales")?;
        ResizeTarget::Scales([s[0] as f32, s[1] as f32])
    } else {
        let z = pair("sizes")?;
        let sizes = [size(z[0])?, size(z[1])?];
        match t.get("fit").map(Value::as_bool) {
            None => ResizeTarget::Sizes(sizes),
            Some(Some(fit)) => ResizeTarget::KeepAspect { sizes, fit },
            Some(None) => return Err(bad("fit")),
        }
    };
    Ok(Box::new(Resize2d::new(mode, coord, target)?))
}
