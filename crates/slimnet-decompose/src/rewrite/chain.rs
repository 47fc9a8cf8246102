//! Shapes and costs of the replacement chains, and building them from weights.

use ndarray::{ArrayD, IxDyn};
use slimnet_core::layers::{Conv2d, Conv2dConfig};
use slimnet_core::{Graph, Sequential};
use slimnet_kernels::ConvGeometry;

use crate::error::Result;

/// A configuration derived from `base` with the given kernel, channels, groups and per-direction
/// stride, padding and dilation, and no bias.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_cfg(
    cin: usize,
    cout: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    bias: bool,
) -> Conv2dConfig {
    let mut c = Conv2dConfig::new(cin, cout, 1)
        .with_kernel(kernel[0], kernel[1])
        .with_groups(groups)
        .with_bias(bias);
    c.stride = stride;
    c.padding = padding;
    c.dilation = dilation;
    c
}

/// A 1x1, stride 1, unpadded convolution.
pub(crate) fn pointwise(cin: usize, cout: usize, bias: bool) -> Conv2dConfig {
    conv_cfg(cin, cout, [1, 1], [1, 1], [0, 0], [1, 1], 1, bias)
}

/// (parameters, MACs) of a chain of convolutions on an NCHW input shape.
pub(crate) fn chain_cost(cfgs: &[Conv2dConfig], input: &[usize]) -> (usize, usize) {
    let (mut n, mut c, mut h, mut w) = (input[0], input[1], input[2], input[3]);
    let (mut params, mut macs) = (0, 0);
    for cfg in cfgs {
        let g = ConvGeometry::new(n, c, h, w, cfg.out_channels, cfg.kernel[0], cfg.kernel[1])
            .with_stride(cfg.stride[0], cfg.stride[1])
            .with_padding(cfg.padding[0], cfg.padding[1])
            .with_dilation(cfg.dilation[0], cfg.dilation[1])
            .with_groups(cfg.groups);
        macs += g.macs();
        params += cfg.weight_shape().iter().product::<usize>()
            + if cfg.bias { cfg.out_channels } else { 0 };
        (n, c, h, w) = (n, cfg.out_channels, g.out_h(), g.out_w());
    }
    (params, macs)
}

/// A chain `Graph` of named convolutions with their weights (and the last one's bias).
pub(crate) fn build_chain(
    parts: Vec<(&str, Conv2dConfig, ArrayD<f32>)>,
    bias: Option<ArrayD<f32>>,
) -> Result<Graph> {
    let last = parts.len() - 1;
    let mut s = Sequential::new();
    let mut bias = bias;
    for (i, (name, cfg, w)) in parts.into_iter().enumerate() {
        let b = if i == last { bias.take() } else { None };
        let cfg = cfg.with_bias(b.is_some());
        s = s.push(name, Conv2d::from_parts(cfg, w, b)?);
    }
    Ok(s.build()?)
}

/// An OIHW weight from a function of (o, i, y, x).
pub(crate) fn weight(
    shape: [usize; 4],
    f: impl Fn(usize, usize, usize, usize) -> f32,
) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&shape), |i| f(i[0], i[1], i[2], i[3]))
}
