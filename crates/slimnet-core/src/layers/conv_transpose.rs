//! Transposed 2-D convolution (ONNX `ConvTranspose`): the learned upsampling of segmentation
//! and text-detection heads (DB, U-Net, FPN decoders).

use ndarray::IxDyn;
use serde_json::{json, Value};
use slimnet_kernels::dense::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward};
use slimnet_kernels::{Activation, ConvGeometry};

use crate::error::{Error, Result};
use crate::io::config_ints;
use crate::io::TensorSource;
use crate::layer::{Cost, Layer};
use crate::param::Param;
use crate::tensor::checked_len;
use crate::tensor::{contiguous, normal, zeros, SlimRng, Tensor};

/// Hyper-parameters of a [`ConvTranspose2d`] (ONNX's attributes, for two spatial axes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConvTransposeConfig {
    /// Stride (rows, columns): how far apart the input positions land in the output.
    pub stride: [usize; 2],
    /// Dilation of the kernel (rows, columns).
    pub dilation: [usize; 2],
    /// Rows and columns removed from the full output: `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Rows and columns added at the bottom and right (they hold only the bias).
    pub output_padding: [usize; 2],
    /// Groups of input and output channels.
    pub groups: usize,
}

impl Default for ConvTransposeConfig {
    fn default() -> Self {
        Self {
            stride: [1, 1],
            dilation: [1, 1],
            pads: [0; 4],
            output_padding: [0, 0],
            groups: 1,
        }
    }
}

impl ConvTransposeConfig {
    /// Stride 1, dilation 1, no padding, one group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the stride.
    pub fn with_stride(mut self, sh: usize, sw: usize) -> Self {
        self.stride = [sh, sw];
        self
    }

    /// Sets the dilation.
    pub fn with_dilation(mut self, dh: usize, dw: usize) -> Self {
        self.dilation = [dh, dw];
        self
    }

    /// Sets the pads `[top, left, bottom, right]`.
    pub fn with_pads(mut self, pads: [usize; 4]) -> Self {
        self.pads = pads;
        self
    }

    /// Sets the output padding (rows, columns).
    pub fn with_output_padding(mut self, oh: usize, ow: usize) -> Self {
        self.output_padding = [oh, ow];
        self
    }

    /// Sets the number of groups.
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// The usual learned 2x upsampling of a decoder: kernel 3 with stride 2, pads 1 and output
    /// padding 1, so that an `H x W` map becomes exactly `2H x 2W` (PyTorch's
    /// `ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)`).
    ///
    /// ```
    /// use slimnet_core::layers::ConvTransposeConfig;
    /// use slimnet_core::{tensor, Layer};
    /// let up = ConvTransposeConfig::upsample2x().init(8, 4, 3, &mut tensor::rng(0))?;
    /// assert_eq!(up.output_shape(&[1, 8, 5, 7])?, vec![1, 4, 10, 14]);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    pub fn upsample2x() -> Self {
        Self::new()
            .with_stride(2, 2)
            .with_pads([1, 1, 1, 1])
            .with_output_padding(1, 1)
    }

    /// Builds a layer of `in_channels` to `out_channels` with a square `k x k` kernel,
    /// He-normal weights and a zero bias.
    ///
    /// The weight's standard deviation is `sqrt(2 / fan_in)` with `fan_in` the number of
    /// products one output value sums on average: `(in_channels / groups) * k * k / (sh * sw)`
    /// (at least 1), the transposed counterpart of [`Conv2dConfig::init`](super::Conv2dConfig::init).
    ///
    /// ```
    /// use slimnet_core::layers::ConvTransposeConfig;
    /// use slimnet_core::{tensor, Layer};
    /// let up = ConvTransposeConfig::new()
    ///     .with_stride(2, 2)
    ///     .with_groups(2)
    ///     .init(4, 6, 2, &mut tensor::rng(0))?;
    /// assert_eq!(up.weight.value().shape(), &[4, 3, 2, 2]);
    /// assert_eq!(up.output_shape(&[2, 4, 3, 3])?, vec![2, 6, 6, 6]);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// Zero sizes, groups that do not divide both channel counts, or anything
    /// [`ConvTranspose2d::new`] refuses.
    pub fn init(
        self,
        in_channels: usize,
        out_channels: usize,
        k: usize,
        rng: &mut SlimRng,
    ) -> Result<ConvTranspose2d> {
        let g = self.groups;
        if in_channels == 0 || out_channels == 0 || k == 0 || k > 1 << 20 {
            return Err(Error::config(format!(
                "ConvTranspose2d of {in_channels} to {out_channels} channels, kernel {k}: \
                 sizes must be positive and at most 2^20"
            )));
        }
        if g == 0 || !in_channels.is_multiple_of(g) || !out_channels.is_multiple_of(g) {
            return Err(Error::config(format!(
                "ConvTranspose2d: {g} groups do not divide {in_channels} input and \
                 {out_channels} output channels"
            )));
        }
        let shape = [in_channels, out_channels / g, k, k];
        crate::limits::check_shape("weight", &shape, 4)?;
        let stride = (self.stride[0] * self.stride[1]).max(1) as f32;
        let fan_in = ((in_channels / g * k * k) as f32 / stride).max(1.0);
        let w = normal(&shape, 0.0, (2.0 / fan_in).sqrt(), rng);
        ConvTranspose2d::new(w, Some(zeros(&[out_channels])), self)
    }
}

/// A transposed convolution: each input position scatters its kernel-weighted values into a
/// `stride`-spaced output window (the adjoint of a [`Conv2d`](super::Conv2d)
/// with the same weight). Output size per axis:
/// `stride * (in - 1) + output_padding + (kernel - 1) * dilation + 1 - pad_begin - pad_end`.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_core::layers::{ConvTranspose2d, ConvTransposeConfig};
/// // 2x upsampling of 4 channels into 2, kernel 2, stride 2
/// let w = tensor::uniform(&[4, 2, 2, 2], -1.0, 1.0, &mut tensor::rng(0));
/// let up = ConvTranspose2d::new(w, None, ConvTransposeConfig::new().with_stride(2, 2))?;
/// assert_eq!(up.output_shape(&[1, 4, 5, 7])?, vec![1, 2, 10, 14]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    /// Weight `[C_in, C_out / groups, kh, kw]` (ONNX's layout).
    pub weight: Param,
    /// Bias `[C_out]`.
    pub bias: Option<Param>,
    cfg: ConvTransposeConfig,
    cache: Option<Tensor>,
}

/// How one input shape runs: the adjoint convolution's geometry (its input is this layer's
/// output before cropping) and the crop.
struct Plan {
    g: ConvGeometry,
    /// Rows and columns cropped at the top and left of the geometry's input (the output
    /// reads zeros past its end: the output padding).
    crop: [usize; 2],
    out: [usize; 4],
}

impl ConvTranspose2d {
    /// A transposed convolution with `weight` `[C_in, C_out / groups, kh, kw]` and an optional
    /// `bias` `[C_out]`.
    ///
    /// # Errors
    /// A weight that is not 4-D or has a zero size, a bias of the wrong length, zero strides,
    /// dilations or groups, groups that do not divide the input channels, or sizes beyond
    /// `2^20`.
    pub fn new(weight: Tensor, bias: Option<Tensor>, cfg: ConvTransposeConfig) -> Result<Self> {
        let d = weight.shape().to_vec();
        if d.len() != 4 || d.contains(&0) {
            return Err(Error::config(format!(
                "ConvTranspose2d weight {d:?}: expected [C_in, C_out / groups, kh, kw], no zero size"
            )));
        }
        let c = &cfg;
        let sizes = c
            .stride
            .iter()
            .chain(&c.dilation)
            .chain(&c.pads)
            .chain(&c.output_padding);
        if c.stride.contains(&0) || c.dilation.contains(&0) || c.groups == 0 {
            return Err(Error::config(format!(
                "ConvTranspose2d: strides {:?}, dilations {:?} and groups {} must be positive",
                c.stride, c.dilation, c.groups
            )));
        }
        if sizes.chain(&d).any(|&v| v > 1 << 20) || c.groups > 1 << 20 {
            return Err(Error::config("ConvTranspose2d: sizes beyond 2^20"));
        }
        if !d[0].is_multiple_of(c.groups) {
            return Err(Error::config(format!(
                "ConvTranspose2d: {} groups do not divide {} input channels",
                c.groups, d[0]
            )));
        }
        let out_ch = d[1] * c.groups;
        if let Some(b) = &bias {
            if b.len() != out_ch || b.ndim() != 1 {
                return Err(Error::config(format!(
                    "ConvTranspose2d bias {:?} for {out_ch} output channels",
                    b.shape()
                )));
            }
        }
        Ok(Self {
            weight: Param::new(weight.as_standard_layout().into_owned()),
            bias: bias.map(Param::new),
            cfg,
            cache: None,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &ConvTransposeConfig {
        &self.cfg
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.value().shape()[1] * self.cfg.groups
    }

    fn plan(&self, input: &[usize]) -> Result<Plan> {
        let w = self.weight.value().shape();
        let c = &self.cfg;
        let bad = || {
            Error::shape(
                format!(
                    "[N, {}, H, W] large enough for the pads {:?} of a transposed convolution",
                    w[0], c.pads
                ),
                input,
            )
        };
        let &[n, ci, h, wd] = input else {
            return Err(bad());
        };
        if ci != w[0] || h == 0 || wd == 0 {
            return Err(bad());
        }
        let k = [w[2], w[3]];
        let mut full = [0usize; 2];
        let mut out = [0usize; 2];
        let mut sym = [0usize; 2];
        for a in 0..2 {
            let span = (k[a] - 1) * c.dilation[a] + 1;
            let (b, e) = (c.pads[a], c.pads[a + 2]);
            full[a] = [h, wd][a]
                .checked_sub(1)
                .and_then(|v| v.checked_mul(c.stride[a]))
                .and_then(|v| v.checked_add(span))
                .ok_or_else(bad)?;
            out[a] = (full[a] + c.output_padding[a])
                .checked_sub(b + e)
                .filter(|&o| o > 0)
                .ok_or_else(bad)?;
            // the geometry's padding trims rows from both ends; with output padding the end
            // ones may be read, so then the crop takes all of it
            sym[a] = if c.output_padding[a] == 0 {
                b.min(e)
            } else {
                0
            };
        }
        let g = ConvGeometry::new(
            n,
            self.out_channels(),
            full[0] - 2 * sym[0],
            full[1] - 2 * sym[1],
            w[0],
            k[0],
            k[1],
        )
        .with_stride(c.stride[0], c.stride[1])
        .with_padding(sym[0], sym[1])
        .with_dilation(c.dilation[0], c.dilation[1])
        .with_groups(c.groups);
        g.validate()?;
        if g.out_h() != h || g.out_w() != wd {
            return Err(bad());
        }
        let out = [n, self.out_channels(), out[0], out[1]];
        checked_len(&out)?;
        checked_len(&[n, g.in_channels, g.in_h, g.in_w])?;
        Ok(Plan {
            g,
            crop: [c.pads[0] - sym[0], c.pads[1] - sym[1]],
            out,
        })
    }

    /// Copies the `[out_h, out_w]` window at `crop` of each plane of `full` (`[.., gh, gw]`,
    /// zeros past its end) into a new buffer, or the reverse (`grow`: the window into zeros of
    /// the full size, what lies past the end dropped).
    fn window(p: &Plan, src: &[f32], grow: bool) -> Vec<f32> {
        let (gh, gw) = (p.g.in_h, p.g.in_w);
        let (oh, ow) = (p.out[2], p.out[3]);
        let planes = p.out[0] * p.out[1];
        if gh == oh && gw == ow && p.crop == [0, 0] {
            return src.to_vec();
        }
        let mut dst = vec![0.0f32; planes * if grow { gh * gw } else { oh * ow }];
        let cols = ow.min(gw.saturating_sub(p.crop[1]));
        let rows = oh.min(gh.saturating_sub(p.crop[0]));
        for pl in 0..planes {
            for r in 0..rows {
                let f = pl * gh * gw + (r + p.crop[0]) * gw + p.crop[1];
                let o = pl * oh * ow + r * ow;
                if grow {
                    dst[f..f + cols].copy_from_slice(&src[o..o + cols]);
                } else {
                    dst[o..o + cols].copy_from_slice(&src[f..f + cols]);
                }
            }
        }
        dst
    }
}

impl Layer for ConvTranspose2d {
    fn kind(&self) -> &'static str {
        "ConvTranspose2d"
    }

    /// `[N, C_in, H, W]` -> `[N, C_out, H', W']` (sizes as in the type's docs).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.plan(x.shape())?;
        let mut full = vec![0.0f32; p.g.input_len()];
        conv2d_backward_input(
            &p.g,
            &contiguous(x),
            &contiguous(self.weight.value()),
            &mut full,
        )?;
        let mut y = Self::window(&p, &full, false);
        if let Some(b) = &self.bias {
            let plane = p.out[2] * p.out[3];
            for (i, chunk) in y.chunks_mut(plane).enumerate() {
                let v = b.value()[i % p.out[1]];
                chunk.iter_mut().for_each(|y| *y += v);
            }
        }
        Ok(Tensor::from_shape_vec(IxDyn(&p.out), y).expect("length"))
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward(x)?;
        self.cache = Some(x.as_standard_layout().into_owned());
        Ok(y)
    }

    /// The input gradient is the convolution of the output gradient with the weight; the
    /// weight gradient is that convolution's weight gradient with the roles of input and
    /// output gradient swapped.
    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let x = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache("ConvTranspose2d"))?;
        let p = self.plan(x.shape())?;
        if grad_out.shape() != p.out {
            return Err(Error::shape(
                format!("gradient {:?}", p.out),
                grad_out.shape(),
            ));
        }
        let dy = contiguous(grad_out);
        if let Some(b) = &mut self.bias {
            let plane = p.out[2] * p.out[3];
            let db = b.grad.as_slice_mut().expect("contiguous");
            for (i, chunk) in dy.chunks(plane).enumerate() {
                db[i % p.out[1]] += chunk.iter().sum::<f32>();
            }
        }
        let dy_full = Self::window(&p, &dy, true);
        let xs = x.as_slice().expect("cached input is contiguous");
        conv2d_backward_weight(
            &p.g,
            &dy_full,
            xs,
            self.weight.grad.as_slice_mut().expect("contiguous"),
            None,
        )?;
        let mut dx = vec![0.0f32; p.g.output_len()];
        conv2d_forward(
            &p.g,
            &dy_full,
            &contiguous(self.weight.value()),
            None,
            Activation::Identity,
            &mut dx,
        )?;
        Ok(Tensor::from_shape_vec(IxDyn(x.shape()), dx).expect("input length"))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.plan(input)?.out.to_vec())
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let p = self.plan(input)?;
        let params = self.num_params();
        Ok(Cost {
            output: p.out.to_vec(),
            params,
            macs: p.g.macs(),
            bytes: params * 4,
        })
    }

    fn visit_params(&self, f: &mut dyn FnMut(&str, &Param)) {
        f("weight", &self.weight);
        if let Some(b) = &self.bias {
            f("bias", b);
        }
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        f("weight", &mut self.weight);
        if let Some(b) = &mut self.bias {
            f("bias", b);
        }
    }

    fn config_json(&self) -> Value {
        let c = &self.cfg;
        json!({
            "stride": c.stride, "dilation": c.dilation, "pads": c.pads,
            "output_padding": c.output_padding, "groups": c.groups,
            "bias": self.bias.is_some(),
        })
    }
}

pub(crate) fn load(cfg: &Value, t: &mut TensorSource<'_>) -> Result<Box<dyn Layer>> {
    let kind = "ConvTranspose2d";
    let list = |name: &str, len: usize| -> Result<Vec<usize>> {
        let v = config_ints(cfg, kind, name)?;
        if v.len() != len || v.iter().any(|&x| !(0..=1 << 20).contains(&x)) {
            return Err(Error::ModelFile(format!(
                "{kind} config: `{name}` must hold {len} sizes up to 2^20"
            )));
        }
        Ok(v.into_iter().map(|x| x as usize).collect())
    };
    let (s, d, p, o) = (
        list("stride", 2)?,
        list("dilation", 2)?,
        list("pads", 4)?,
        list("output_padding", 2)?,
    );
    let groups = cfg
        .get("groups")
        .and_then(Value::as_u64)
        .filter(|&g| g <= 1 << 20)
        .ok_or_else(|| Error::ModelFile(format!("{kind} config: `groups` is not a size")))?;
    let cfg2 = ConvTransposeConfig::new()
        .with_stride(s[0], s[1])
        .with_dilation(d[0], d[1])
        .with_pads([p[0], p[1], p[2], p[3]])
        .with_output_padding(o[0], o[1])
        .with_groups(groups as usize);
    let bias = if cfg.get("bias").and_then(Value::as_bool).unwrap_or(false) {
        Some(t.f32("bias")?)
    } else {
        None
    };
    Ok(Box::new(ConvTranspose2d::new(
        t.f32("weight")?,
        bias,
        cfg2,
    )?))
}
