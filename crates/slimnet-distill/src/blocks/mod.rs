//! Light building blocks, appended to a [`Graph`] like
//! [`slimnet_core::models::basic_block`]: each takes the graph, a name prefix, the node to read
//! and the channels, and returns its output node.
//!
//! | block | cost of a 3x3 layer `cin -> cout` at `H x W` |
//! |---|---|
//! | [`depthwise_separable`] | `H W cin (9 + cout)` instead of `9 H W cin cout` |
//! | [`shuffle_unit`] | two group 1x1 convolutions around a depthwise 3x3, with a [`ChannelShuffle`] |
//! | [`fire`] | a 1x1 squeeze, then 1x1 and 3x3 expands concatenated |
//! | [`inverted_residual`] | 1x1 expand, depthwise 3x3, linear 1x1 projection, residual when shapes allow |
//! | [`basic`] | ResNet basic block with a thin middle: `H W 9 mid (cin + cout)` |

mod shuffle;

pub use shuffle::{register, ChannelShuffle};

use slimnet_core::graph::NodeId;
use slimnet_core::layers::{Activation, BatchNormConfig, Conv2dConfig, MaxPool2d, PoolConfig};
use slimnet_core::tensor::SlimRng;
use slimnet_core::Graph;

use crate::error::{DistillError, Result};

/// Appends conv (no bias) + BN (+ activation); returns the last node.
#[allow(clippy::too_many_arguments)]
fn conv_bn(
    g: &mut Graph,
    name: &str,
    from: NodeId,
    cfg: Conv2dConfig,
    act: Option<Activation>,
    rng: &mut SlimRng,
) -> Result<NodeId> {
    let c = cfg.out_channels;
    let a = g.add_layer(name, cfg.with_bias(false).init(rng)?, from)?;
    let b = g.add_layer(&format!("{name}_bn"), BatchNormConfig::new(c).init()?, a)?;
    Ok(match act {
        Some(act) => g.add_layer(&format!("{name}_act"), act, b)?,
        None => b,
    })
}

fn positive(what: &str, vals: &[usize]) -> Result<()> {
    if vals.contains(&0) {
        return Err(DistillError::Config(format!(
            "{what}: sizes must be positive, got {vals:?}"
        )));
    }
    Ok(())
}

/// Depthwise-separable convolution (MobileNet): a depthwise 3x3 with `stride`, BN, ReLU, then a
/// pointwise 1x1 `cin -> cout`, BN, ReLU. Nodes `{name}_dw*` and `{name}_pw*`.
///
/// ```
/// use slimnet_core::{graph::Graph, tensor, Layer};
/// use slimnet_distill::blocks::depthwise_separable;
/// let mut g = Graph::new();
/// let x0 = g.input();
/// depthwise_separable(&mut g, "ds", x0, 8, 16, 2, &mut tensor::rng(0))?;
/// assert_eq!(g.output_shape(&[1, 8, 28, 28])?, vec![1, 16, 14, 14]);
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
///
/// # Errors
/// Zero sizes or a duplicate name.
pub fn depthwise_separable(
    g: &mut Graph,
    name: &str,
    from: NodeId,
    cin: usize,
    cout: usize,
    stride: usize,
    rng: &mut SlimRng,
) -> Result<NodeId> {
    positive("depthwise_separable", &[cin, cout, stride])?;
    let dw = Conv2dConfig::new(cin, cin, 3)
        .with_stride(stride)
        .with_padding(1)
        .with_groups(cin);
    let a = conv_bn(
        g,
        &format!("{name}_dw"),
        from,
        dw,
        Some(Activation::relu()),
        rng,
    )?;
    let pw = Conv2dConfig::new(cin, cout, 1);
    conv_bn(
        g,
        &format!("{name}_pw"),
        a,
        pw,
        Some(Activation::relu()),
        rng,
    )
}

/// ShuffleNet unit: group 1x1 `cin -> mid` (BN, ReLU), [`ChannelShuffle`], depthwise 3x3 with
/// `stride` (BN), group 1x1 `mid -> cout` (BN), plus the input when `stride == 1` and
/// `cin == cout`, then ReLU. The first group convolution falls back to one group when `groups`
/// does not divide `cin` (e.g. a 1-channel image).
///
/// ```
/// use slimnet_core::{graph::Graph, tensor, Layer};
/// use slimnet_distill::blocks::shuffle_unit;
/// let mut g = Graph::new();
/// let x0 = g.input();
/// shuffle_unit(&mut g, "su", x0, 16, 16, 8, 2, 1, &mut tensor::rng(0))?;
/// assert_eq!(g.output_shape(&[1, 16, 14, 14])?, vec![1, 16, 14, 14]);
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
///
/// # Errors
/// Zero sizes, `groups` not dividing `mid` and `cout`, or a duplicate name.
#[allow(clippy::too_many_arguments)]
pub fn shuffle_unit(
    g: &mut Graph,
    name: &str,
    from: NodeId,
    cin: usize,
    cout: usize,
    mid: usize,
    groups: usize,
    stride: usize,
    rng: &mut SlimRng,
) -> Result<NodeId> {
    positive("shuffle_unit", &[cin, cout, mid, groups, stride])?;
    if !mid.is_multiple_of(groups) || !cout.is_multiple_of(groups) {
        return Err(DistillError::Config(format!(
            "shuffle_unit `{name}`: {groups} groups must divide mid {mid} and cout {cout}"
        )));
    }
    let g1 = if cin.is_multiple_of(groups) {
        groups
    } else {
        1
    };
    let c1 = Conv2dConfig::new(cin, mid, 1).with_groups(g1);
    let a = conv_bn(
        g,
        &format!("{name}_g1"),
        from,
        c1,
        Some(Activation::relu()),
        rng,
    )?;
    let a = g.add_layer(&format!("{name}_shuffle"), ChannelShuffle::new(groups)?, a)?;
    let dw = Conv2dConfig::new(mid, mid, 3)
        .with_stride(stride)
        .with_padding(1)
        .with_groups(mid);
    let a = conv_bn(g, &format!("{name}_dw"), a, dw, None, rng)?;
    let c2 = Conv2dConfig::new(mid, cout, 1).with_groups(groups);
    let mut a = conv_bn(g, &format!("{name}_g2"), a, c2, None, rng)?;
    if stride == 1 && cin == cout {
        a = g.add(&format!("{name}_add"), a, from)?;
    }
    Ok(g.add_layer(&format!("{name}_relu"), Activation::relu(), a)?)
}

/// SqueezeNet fire module: squeeze 1x1 `cin -> squeeze` (BN, ReLU), then expand 1x1 and 3x3
/// `squeeze -> expand` each (BN, ReLU), concatenated: `2 * expand` output channels.
///
/// ```
/// use slimnet_core::{graph::Graph, tensor, Layer};
/// use slimnet_distill::blocks::fire;
/// let mut g = Graph::new();
/// let x0 = g.input();
/// fire(&mut g, "fire", x0, 32, 8, 16, &mut tensor::rng(0))?;
/// assert_eq!(g.output_shape(&[1, 32, 7, 7])?, vec![1, 32, 7, 7]);
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
///
/// # Errors
/// Zero sizes or a duplicate name.
pub fn fire(
    g: &mut Graph,
    name: &str,
    from: NodeId,
    cin: usize,
    squeeze: usize,
    expand: usize,
    rng: &mut SlimRng,
) -> Result<NodeId> {
    positive("fire", &[cin, squeeze, expand])?;
    let relu = || Some(Activation::relu());
    let s = conv_bn(
        g,
        &format!("{name}_sq"),
        from,
        Conv2dConfig::new(cin, squeeze, 1),
        relu(),
        rng,
    )?;
    let e1 = conv_bn(
        g,
        &format!("{name}_e1"),
        s,
        Conv2dConfig::new(squeeze, expand, 1),
        relu(),
        rng,
    )?;
    let c3 = Conv2dConfig::new(squeeze, expand, 3).with_padding(1);
    let e3 = conv_bn(g, &format!("{name}_e3"), s, c3, relu(), rng)?;
    Ok(g.concat(&format!("{name}_cat"), &[e1, e3])?)
}

/// MobileNetV2 inverted residual with a linear bottleneck: 1x1 expansion `cin -> cin *
/// expansion` (BN, ReLU6; skipped when `expansion == 1`), depthwise 3x3 with `stride` (BN,
/// ReLU6), linear 1x1 projection to `cout` (BN, no activation), plus the input when
/// `stride == 1` and `cin == cout`.
///
/// ```
/// use slimnet_core::{graph::Graph, tensor, Layer};
/// use slimnet_distill::blocks::inverted_residual;
/// let mut g = Graph::new();
/// let x0 = g.input();
/// inverted_residual(&mut g, "ir", x0, 16, 24, 2, 4, &mut tensor::rng(0))?;
/// assert_eq!(g.output_shape(&[1, 16, 14, 14])?, vec![1, 24, 7, 7]);
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
///
/// # Errors
/// Zero sizes or a duplicate name.
#[allow(clippy::too_many_arguments)]
pub fn inverted_residual(
    g: &mut Graph,
    name: &str,
    from: NodeId,
    cin: usize,
    cout: usize,
    stride: usize,
    expansion: usize,
    rng: &mut SlimRng,
) -> Result<NodeId> {
    positive("inverted_residual", &[cin, cout, stride, expansion])?;
    let hidden = cin * expansion;
    let mut a = from;
    if expansion != 1 {
        let c = Conv2dConfig::new(cin, hidden, 1);
        a = conv_bn(
            g,
            &format!("{name}_exp"),
            a,
            c,
            Some(Activation::relu6()),
            rng,
        )?;
    }
    let dw = Conv2dConfig::new(hidden, hidden, 3)
        .with_stride(stride)
        .with_padding(1)
        .with_groups(hidden);
    a = conv_bn(
        g,
        &format!("{name}_dw"),
        a,
        dw,
        Some(Activation::relu6()),
        rng,
    )?;
    a = conv_bn(
        g,
        &format!("{name}_proj"),
        a,
        Conv2dConfig::new(hidden, cout, 1),
        None,
        rng,
    )?;
    if stride == 1 && cin == cout {
        a = g.add(&format!("{name}_add"), a, from)?;
    }
    Ok(a)
}

/// ResNet basic block with a chosen middle width: 3x3 `cin -> mid` with `stride` (BN, ReLU),
/// 3x3 `mid -> cout` (BN), plus the shortcut (the input, or a strided 1x1 `cin -> cout` + BN
/// when the shape changes), then ReLU. With `mid == cout` it is
/// [`slimnet_core::models::basic_block`]; a thinner `mid` makes a thin ResNet that keeps a
/// teacher's stage boundaries.
///
/// ```
/// use slimnet_core::{graph::Graph, tensor, Layer};
/// use slimnet_distill::blocks::basic;
/// let mut g = Graph::new();
/// let x0 = g.input();
/// basic(&mut g, "res", x0, 16, 8, 32, 2, &mut tensor::rng(0))?;
/// assert_eq!(g.output_shape(&[1, 16, 14, 14])?, vec![1, 32, 7, 7]);
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
///
/// # Errors
/// Zero sizes or a duplicate name.
#[allow(clippy::too_many_arguments)]
pub fn basic(
    g: &mut Graph,
    name: &str,
    from: NodeId,
    cin: usize,
    mid: usize,
    cout: usize,
    stride: usize,
    rng: &mut SlimRng,
) -> Result<NodeId> {
    positive("basic", &[cin, mid, cout, stride])?;
    let c1 = Conv2dConfig::new(cin, mid, 3)
        .with_stride(stride)
        .with_padding(1);
    let a = conv_bn(
        g,
        &format!("{name}_c1"),
        from,
        c1,
        Some(Activation::relu()),
        rng,
    )?;
    let c2 = Conv2dConfig::new(mid, cout, 3).with_padding(1);
    let a = conv_bn(g, &format!("{name}_c2"), a, c2, None, rng)?;
    let short = if stride != 1 || cin != cout {
        let d = Conv2dConfig::new(cin, cout, 1).with_stride(stride);
        conv_bn(g, &format!("{name}_down"), from, d, None, rng)?
    } else {
        from
    };
    let sum = g.add(&format!("{name}_add"), a, short)?;
    Ok(g.add_layer(&format!("{name}_relu"), Activation::relu(), sum)?)
}

/// Which light block a student is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockKind {
    /// [`depthwise_separable`].
    DepthwiseSeparable,
    /// [`inverted_residual`] with the given expansion.
    InvertedResidual {
        /// Channel expansion of the hidden layer.
        expansion: usize,
    },
    /// [`shuffle_unit`] with the given number of groups (bottleneck `cout / 4`).
    Shuffle {
        /// Groups of the 1x1 convolutions.
        groups: usize,
    },
    /// [`fire`] with squeeze `cout / 4` and expands `cout / 2` (after a 2x2 max-pool when
    /// strided).
    Fire,
    /// [`basic`] (a ResNet basic block). Appended on its own it is full width (`mid == cout`);
    /// the student designer gives its middle convolution the student's interior width, so a
    /// designed student is a thin ResNet with the teacher's stage boundaries.
    Basic,
}

impl BlockKind {
    /// The channel multiple this block needs for its output.
    pub fn channel_multiple(self) -> usize {
        match self {
            BlockKind::Shuffle { groups } => 4 * groups.max(1),
            BlockKind::Fire => 4,
            _ => 1,
        }
    }

    /// Appends one block `cin -> cout` lowering the resolution by `stride`; returns its output.
    ///
    /// # Errors
    /// Sizes the block cannot take (see each block), or a duplicate name.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        self,
        g: &mut Graph,
        name: &str,
        from: NodeId,
        cin: usize,
        cout: usize,
        stride: usize,
        rng: &mut SlimRng,
    ) -> Result<NodeId> {
        match self {
            BlockKind::DepthwiseSeparable => {
                depthwise_separable(g, name, from, cin, cout, stride, rng)
            }
            BlockKind::InvertedResidual { expansion } => {
                inverted_residual(g, name, from, cin, cout, stride, expansion, rng)
            }
            BlockKind::Shuffle { groups } => {
                let mid = (cout / 4).max(groups).div_ceil(groups) * groups;
                shuffle_unit(g, name, from, cin, cout, mid, groups, stride, rng)
            }
            BlockKind::Fire => {
                if !cout.is_multiple_of(2) {
                    return Err(DistillError::Config(format!(
                        "fire `{name}`: cout {cout} must be even"
                    )));
                }
                let mut a = from;
                if stride > 1 {
                    let p = MaxPool2d::new(PoolConfig::new(stride))?;
                    a = g.add_layer(&format!("{name}_pool"), p, a)?;
                }
                fire(g, name, a, cin, (cout / 4).max(1), cout / 2, rng)
            }
            BlockKind::Basic => basic(g, name, from, cin, cout, cout, stride, rng),
        }
    }
}

#[cfg(test)]
mod tests;
