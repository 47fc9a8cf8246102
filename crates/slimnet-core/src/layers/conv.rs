//! 2-D convolution.

use std::sync::{Arc, PoisonError, RwLock};

use ndarray::IxDyn;
use serde::{Deserialize, Serialize};
use slimnet_kernels::dense::{self, ConvWeights};
use slimnet_kernels::{Activation, ConvGeometry};

use crate::error::{Error, Result};
use crate::layer::{Cost, Layer};
use crate::param::Param;
use crate::tensor::{contiguous, expect_nchw, normal, zeros, SlimRng, Tensor};

/// Hyper-parameters of a [`Conv2d`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Conv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Zero padding on each side `[ph, pw]`.
    pub padding: [usize; 2],
    /// Dilation `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Groups (`in_channels` for a depthwise convolution).
    pub groups: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl Conv2dConfig {
    /// The kernel geometry for an input shape: what the dense, sparse and int8 convolution
    /// layers hand their kernels.
    ///
    /// # Errors
    /// When the input is not `[N, in_channels, H, W]` or too small for the kernel, or when the
    /// output or the unfolded input of one image would exceed the memory ceiling of
    /// [`limits`](crate::limits) ([`Error::Limit`]), or the work its work ceiling
    /// ([`Error::WorkLimit`]).
    pub fn geometry(&self, input: &[usize]) -> Result<ConvGeometry> {
        let (n, _, h, w) = expect_nchw(input, Some(self.in_channels))?;
        let c = self;
        let g = ConvGeometry::new(
            n,
            c.in_channels,
            h,
            w,
            c.out_channels,
            c.kernel[0],
            c.kernel[1],
        )
        .with_stride(c.stride[0], c.stride[1])
        .with_padding(c.padding[0], c.padding[1])
        .with_dilation(c.dilation[0], c.dilation[1])
        .with_groups(c.groups);
        g.validate().map_err(|e| {
            Error::shape(format!("an input large enough for the kernel ({e})"), input)
        })?;
        // what a forward pass allocates: the output, and the unfolded input of one image
        crate::limits::check_shape(
            "convolution output",
            &[g.batch, g.out_channels, g.out_h(), g.out_w()],
            4,
        )?;
        crate::limits::check_shape(
            "convolution unfolded input",
            &[
                c.in_channels,
                c.kernel[0],
                c.kernel[1],
                g.out_h(),
                g.out_w(),
            ],
            4,
        )?;
        let taps = (c.in_channels / c.groups.max(1)) * c.kernel[0] * c.kernel[1];
        let outputs = [g.batch, g.out_channels, g.out_h(), g.out_w(), taps];
        crate::limits::check_macs("convolution", &outputs)?;
        Ok(g)
    }

    /// A square `k x k` convolution with stride 1, no padding, one group and a bias.
    pub fn new(in_channels: usize, out_channels: usize, k: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel: [k, k],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        }
    }

    /// Sets a rectangular kernel.
    pub fn with_kernel(mut self, kh: usize, kw: usize) -> Self {
        self.kernel = [kh, kw];
        self
    }

    /// Sets the same stride in both directions.
    pub fn with_stride(mut self, s: usize) -> Self {
        self.stride = [s, s];
        self
    }

    /// Sets the same padding in both directions.
    pub fn with_padding(mut self, p: usize) -> Self {
        self.padding = [p, p];
        self
    }

    /// Sets padding per direction.
    pub fn with_padding2(mut self, ph: usize, pw: usize) -> Self {
        self.padding = [ph, pw];
        self
    }

    /// Sets the same dilation in both directions.
    pub fn with_dilation(mut self, d: usize) -> Self {
        self.dilation = [d, d];
        self
    }

    /// Sets the number of groups.
    pub fn with_groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }

    /// Sets whether the layer has a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Shape of the OIHW weight.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// Checks the configuration: positive sizes, groups that divide the channels, sizes up to
    /// 2^20, a weight within the memory ceiling of [`limits`](crate::limits).
    ///
    /// # Errors
    /// [`Error::Config`] saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        let c = self;
        if c.in_channels == 0 || c.out_channels == 0 {
            return Err(Error::config("channels must be positive"));
        }
        if c.kernel.contains(&0) || c.stride.contains(&0) || c.dilation.contains(&0) {
            return Err(Error::config(format!(
                "kernel {:?}, stride {:?} and dilation {:?} must be positive",
                c.kernel, c.stride, c.dilation
            )));
        }
        if c.groups == 0
            || !c.in_channels.is_multiple_of(c.groups)
            || !c.out_channels.is_multiple_of(c.groups)
        {
            return Err(Error::config(format!(
                "{} groups do not divide {} input and {} output channels",
                c.groups, c.in_channels, c.out_channels
            )));
        }
        const LIMIT: usize = 1 << 20;
        if [c.in_channels, c.out_channels, c.kernel[0], c.kernel[1]]
            .iter()
            .chain(&c.stride)
            .chain(&c.padding)
            .chain(&c.dilation)
            .any(|&v| v > LIMIT)
        {
            return Err(Error::config("a size exceeds 2^20"));
        }
        crate::limits::check_shape("weight", &self.weight_shape(), 4)?;
        Ok(())
    }

    /// Builds the layer with He-normal weights (std `sqrt(2 / fan_in)`) and a zero bias.
    ///
    /// # Errors
    /// Zero sizes, or groups that do not divide the channels.
    pub fn init(self, rng: &mut SlimRng) -> Result<Conv2d> {
        self.validate()?;
        let ws = self.weight_shape();
        let fan_in = (ws[1] * ws[2] * ws[3]) as f32;
        let w = normal(&ws, 0.0, (2.0 / fan_in).sqrt(), rng);
        let b = self.bias.then(|| zeros(&[self.out_channels]));
        Conv2d::from_parts(self, w, b)
    }
}

/// 2-D convolution over NCHW input with an OIHW weight; stride, padding, dilation, groups
/// (including depthwise) and an optional bias.
///
/// Inference ([`Layer::forward`]) keeps the weights prepared for the kernels (see
/// [`ConvWeights`]) when that saves work, such as a Winograd transform it would otherwise redo on
/// every call. The prepared copy is tied to the weight's [`Param::version`] and made again when
/// the weight changed, so the public `weight` can be edited freely through
/// [`Param::value_mut`].
///
/// ```
/// use slimnet_core::layers::{Conv2d, Conv2dConfig};
/// use slimnet_core::{tensor, Layer};
/// let conv = Conv2dConfig::new(3, 8, 3).with_padding(1).init(&mut tensor::rng(0))?;
/// let y = conv.forward(&tensor::zeros(&[2, 3, 16, 16]))?;
/// assert_eq!(y.shape(), &[2, 8, 16, 16]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Conv2d {
    cfg: Conv2dConfig,
    /// OIHW weight.
    pub weight: Param,
    /// Bias `[O]`.
    pub bias: Option<Param>,
    cache: Option<Tensor>,
    prepared: PreparedWeights,
}

/// The weights as last prepared for inference, with the version of the weight parameter they
/// were made from; a clone starts empty.
#[derive(Default)]
struct PreparedWeights(RwLock<Option<(u64, Arc<ConvWeights>)>>);

impl PreparedWeights {
    /// The prepared form of the weight at `version` (made from `w` when the version changed).
    fn of(&self, version: u64, w: &[f32]) -> Arc<ConvWeights> {
        if let Some((v, p)) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            if *v == version {
                return Arc::clone(p);
            }
        }
        let p = Arc::new(ConvWeights::new(w.to_vec()));
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some((version, Arc::clone(&p)));
        p
    }
}

impl Clone for PreparedWeights {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for PreparedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedWeights")
    }
}

impl Conv2d {
    /// A layer from its configuration and tensors.
    ///
    /// # Errors
    /// An invalid configuration, or tensors whose shapes do not match it.
    pub fn from_parts(cfg: Conv2dConfig, weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        cfg.validate()?;
        if weight.shape() != cfg.weight_shape() {
            return Err(Error::config(format!(
                "weight of shape {:?}, expected {:?}",
                weight.shape(),
                cfg.weight_shape()
            )));
        }
        match (&bias, cfg.bias) {
            (Some(b), true) if b.shape() == [cfg.out_channels] => {}
            (None, false) => {}
            _ => {
                return Err(Error::config(format!(
                    "bias {:?} does not fit {} output channels (bias={})",
                    bias.as_ref().map(|b| b.shape().to_vec()),
                    cfg.out_channels,
                    cfg.bias
                )))
            }
        }
        Ok(Self {
            cfg,
            weight: Param::new(weight.as_standard_layout().into_owned()),
            bias: bias.map(Param::new),
            cache: None,
            prepared: PreparedWeights::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Conv2dConfig {
        &self.cfg
    }

    /// The kernel geometry for an input shape (see [`Conv2dConfig::geometry`]).
    ///
    /// # Errors
    /// When the input is not `[N, in_channels, H, W]` or too small for the kernel.
    pub fn geometry(&self, input: &[usize]) -> Result<ConvGeometry> {
        self.cfg.geometry(input)
    }

    /// The forward pass; `prepare` lets inference use (and keep) prepared weights.
    fn run(&self, x: &Tensor, prepare: bool) -> Result<Tensor> {
        let g = self.geometry(x.shape())?;
        let xs = contiguous(x);
        // the kernel writes every output value
        let mut out = crate::buffers::output(&[g.batch, g.out_channels, g.out_h(), g.out_w()]);
        let o = out.as_slice_mut().expect("a fresh tensor is contiguous");
        let w = contiguous(self.weight.value());
        let bias = self.bias.as_ref().map(|b| contiguous(b.value()));
        let bias = bias.as_deref();
        if prepare && ConvWeights::pays(&g) {
            let p = self.prepared.of(self.weight.version(), &w);
            dense::conv2d_forward_prepared(&g, &xs, &p, bias, Activation::Identity, o)?;
        } else {
            dense::conv2d_forward(&g, &xs, &w, bias, Activation::Identity, o)?;
        }
        Ok(out)
    }
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "Conv2d"
    }

    /// `[N, C, H, W]` -> `[N, O, OH, OW]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        // the weights change after every step: nothing to keep
        let y = self.run(x, false)?;
        self.cache = Some(x.as_standard_layout().into_owned());
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let x = self.cache.take().ok_or_else(|| Error::no_cache("Conv2d"))?;
        let g = self.geometry(x.shape())?;
        let want = [g.batch, g.out_channels, g.out_h(), g.out_w()];
        if grad_out.shape() != want {
            return Err(Error::shape(format!("gradient {want:?}"), grad_out.shape()));
        }
        let dy = contiguous(grad_out);
        let xs = x.as_slice().expect("cached input is contiguous");
        dense::conv2d_backward_weight(
            &g,
            xs,
            &dy,
            self.weight.grad.as_slice_mut().expect("contiguous"),
            self.bias
                .as_mut()
                .map(|b| b.grad.as_slice_mut().expect("contiguous")),
        )?;
        let mut dx = vec![0.0; g.input_len()];
        dense::conv2d_backward_input(&g, &dy, &contiguous(self.weight.value()), &mut dx)?;
        Ok(Tensor::from_shape_vec(IxDyn(x.shape()), dx).expect("input length"))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.geometry(input)?;
        Ok(vec![g.batch, g.out_channels, g.out_h(), g.out_w()])
    }

    /// Makes the prepared weights for this input shape now instead of on the first call.
    fn prepare(&self, input: &[usize]) -> Result<()> {
        let g = self.geometry(input)?;
        if ConvWeights::pays(&g) {
            self.prepared
                .of(self.weight.version(), &contiguous(self.weight.value()));
        }
        Ok(())
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let g = self.geometry(input)?;
        let params = self.weight.len() + self.bias.as_ref().map_or(0, Param::len);
        Ok(Cost {
            output: vec![g.batch, g.out_channels, g.out_h(), g.out_w()],
            params,
            macs: g.macs(),
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

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("config serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::rng;

    /// Inference with prepared weights gives what a fresh layer gives, before and after the
    /// public weight is edited in place, and in a clone.
    #[test]
    fn prepared_weights_follow_edits_of_the_weight() {
        let mut r = rng(5);
        let cfg = Conv2dConfig::new(16, 32, 3).with_padding(1);
        let mut conv = cfg.clone().init(&mut r).unwrap();
        let x = normal(&[2, 16, 10, 10], 0.0, 1.0, &mut r);
        let g = conv.geometry(x.shape()).unwrap();
        assert!(
            ConvWeights::pays(&g),
            "the test needs a shape with something to prepare"
        );
        let fresh = |c: &Conv2d| {
            let w = c.weight.value().clone();
            let b = c.bias.as_ref().map(|b| b.value().clone());
            Conv2d::from_parts(cfg.clone(), w, b)
                .unwrap()
                .forward(&x)
                .unwrap()
        };
        let y0 = conv.forward(&x).unwrap();
        assert_eq!(y0, fresh(&conv));
        assert_eq!(
            conv.forward(&x).unwrap(),
            y0,
            "a second call reuses the prepared weights"
        );
        conv.weight.value_mut().mapv_inplace(|v| -2.0 * v);
        let y1 = conv.forward(&x).unwrap();
        assert_eq!(y1, fresh(&conv));
        assert!((&y1 + &(&y0 * 2.0)).iter().all(|v| v.abs() < 1e-4));
        let copy = conv.clone();
        assert_eq!(copy.forward(&x).unwrap(), y1);
        // training runs the plain kernels and leaves inference consistent
        let yt = conv.forward_train(&x).unwrap();
        assert!((&yt - &y1).iter().all(|v| v.abs() < 1e-5));
    }
}
