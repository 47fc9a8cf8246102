//! Model constructors: for 28x28 single-channel inputs with 10 classes (MNIST, Fashion-MNIST),
//! a character CNN for 32x32 rendered characters ([`hanzi_cnn`], [`data::hanzi`](crate::data::hanzi)),
//! and a FlowNetSimple-style optical-flow network for stacked grayscale frame pairs
//! ([`flownet_simple`], [`data::flow`](crate::data::flow)), and an image-to-image style
//! network ([`style_net`]).

use crate::error::Result;
use crate::graph::{Graph, NodeId, Sequential};
use crate::layers::{
    Activation, BatchNormConfig, Conv2dConfig, ConvTransposeConfig, CoordMode, Flatten,
    GlobalAvgPool, InstanceNormConfig, LinearConfig, MaxPool2d, NearestMode, Pad, PadMode,
    PoolConfig, Resize2d, ResizeMode, ResizeTarget,
};
use crate::tensor::SlimRng;
use crate::Layer;

/// LeNet-5 as used by Deep Compression (Caffe's 20-50-500 variant): conv 5x5 (20) - max-pool -
/// conv 5x5 (50) - max-pool - fc 500 - ReLU - fc 10, with ReLUs after the pools. 431,080 parameters.
///
/// # Errors
/// Never in practice (layer configurations are fixed); kept for uniformity.
pub fn lenet5(rng: &mut SlimRng) -> Result<Graph> {
    Sequential::new()
        .push("conv1", Conv2dConfig::new(1, 20, 5).init(rng)?)
        .push("pool1", MaxPool2d::new(PoolConfig::new(2))?)
        .push("relu1", Activation::relu())
        .push("conv2", Conv2dConfig::new(20, 50, 5).init(rng)?)
        .push("pool2", MaxPool2d::new(PoolConfig::new(2))?)
        .push("relu2", Activation::relu())
        .push("flatten", Flatten::new())
        .push("fc1", LinearConfig::new(800, 500).init(rng)?)
        .push("relu3", Activation::relu())
        .push("fc2", LinearConfig::new(500, 10).init(rng)?)
        .build()
}

/// LeNet-300-100: fully connected 784-300-100-10 with ReLUs. 266,610 parameters.
///
/// # Errors
/// Never in practice.
pub fn lenet300(rng: &mut SlimRng) -> Result<Graph> {
    Sequential::new()
        .push("flatten", Flatten::new())
        .push("fc1", LinearConfig::new(784, 300).init(rng)?)
        .push("relu1", Activation::relu())
        .push("fc2", LinearConfig::new(300, 100).init(rng)?)
        .push("relu2", Activation::relu())
        .push("fc3", LinearConfig::new(100, 10).init(rng)?)
        .build()
}

/// A small VGG-style network: two 3x3 conv-BN-ReLU layers per stage at 32, 64 and 128
/// channels, max-pooling between stages, global average pooling and one linear layer.
///
/// # Errors
/// Never in practice.
pub fn vgg_small(rng: &mut SlimRng) -> Result<Graph> {
    let mut s = Sequential::new();
    let mut cin = 1;
    for (stage, &c) in [32usize, 64, 128].iter().enumerate() {
        for j in 0..2 {
            let name = format!("conv{}_{}", stage + 1, j + 1);
            s = s
                .push(
                    &name,
                    Conv2dConfig::new(cin, c, 3)
                        .with_padding(1)
                        .with_bias(false)
                        .init(rng)?,
                )
                .push(
                    &format!("bn{}_{}", stage + 1, j + 1),
                    BatchNormConfig::new(c).init()?,
                )
                .push(&format!("relu{}_{}", stage + 1, j + 1), Activation::relu());
            cin = c;
        }
        if stage < 2 {
            s = s.push(
                &format!("pool{}", stage + 1),
                MaxPool2d::new(PoolConfig::new(2))?,
            );
        }
    }
    s.push("gap", GlobalAvgPool::new())
        .push("flatten", Flatten::new())
        .push("fc", LinearConfig::new(128, 10).init(rng)?)
        .build()
}

/// Appends a ResNet basic block (conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU) and
/// returns its output node. The shortcut is a 1x1 conv + BN when the shape changes.
///
/// # Errors
/// Duplicate node names.
pub fn basic_block(
    g: &mut Graph,
    name: &str,
    from: NodeId,
    cin: usize,
    cout: usize,
    stride: usize,
    rng: &mut SlimRng,
) -> Result<NodeId> {
    let conv = |ci, co, k: usize, s: usize, rng: &mut SlimRng| {
        Conv2dConfig::new(ci, co, k)
            .with_stride(s)
            .with_padding(k / 2)
            .with_bias(false)
            .init(rng)
    };
    let a = g.add_layer(
        &format!("{name}_conv1"),
        conv(cin, cout, 3, stride, rng)?,
        from,
    )?;
    let a = g.add_layer(
        &format!("{name}_bn1"),
        BatchNormConfig::new(cout).init()?,
        a,
    )?;
    let a = g.add_layer(&format!("{name}_relu1"), Activation::relu(), a)?;
    let a = g.add_layer(&format!("{name}_conv2"), conv(cout, cout, 3, 1, rng)?, a)?;
    let a = g.add_layer(
        &format!("{name}_bn2"),
        BatchNormConfig::new(cout).init()?,
        a,
    )?;
    let short = if stride != 1 || cin != cout {
        let s = g.add_layer(
            &format!("{name}_down"),
            conv(cin, cout, 1, stride, rng)?,
            from,
        )?;
        g.add_layer(
            &format!("{name}_down_bn"),
            BatchNormConfig::new(cout).init()?,
            s,
        )?
    } else {
        from
    };
    let sum = g.add(&format!("{name}_add"), a, short)?;
    g.add_layer(&format!("{name}_relu2"), Activation::relu(), sum)
}

/// A small ResNet-style network: a 3x3 stem (16 channels), three basic blocks at 16, 32 and 64
/// channels (the last two with stride 2: 28 -> 14 -> 7), global average pooling and a linear
/// layer to 10 classes. About 78k parameters and 9.6M MACs per image.
///
/// # Errors
/// Never in practice.
pub fn resnet_small(rng: &mut SlimRng) -> Result<Graph> {
    resnet_small_classes(10, rng)
}

/// [`resnet_small`] with `classes` outputs, for single-channel images of any size (the
/// average pooling takes whatever the blocks leave), e.g. the rendered characters of
/// [`data::hanzi`](crate::data::hanzi).
///
/// ```
/// use slimnet_core::{models, tensor, Layer};
/// let net = models::resnet_small_classes(200, &mut tensor::rng(0))?;
/// assert_eq!(net.forward(&tensor::zeros(&[2, 1, 32, 32]))?.shape(), &[2, 200]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// `classes` of 0.
pub fn resnet_small_classes(classes: usize, rng: &mut SlimRng) -> Result<Graph> {
    if classes == 0 {
        return Err(crate::Error::Invalid(
            "resnet_small_classes needs at least one class".into(),
        ));
    }
    let mut g = Graph::new();
    let x = g.input();
    let s = g.add_layer(
        "stem_conv",
        Conv2dConfig::new(1, 16, 3)
            .with_padding(1)
            .with_bias(false)
            .init(rng)?,
        x,
    )?;
    let s = g.add_layer("stem_bn", BatchNormConfig::new(16).init()?, s)?;
    let s = g.add_layer("stem_relu", Activation::relu(), s)?;
    let b = basic_block(&mut g, "block1", s, 16, 16, 1, rng)?;
    let b = basic_block(&mut g, "block2", b, 16, 32, 2, rng)?;
    let b = basic_block(&mut g, "block3", b, 32, 64, 2, rng)?;
    let p = g.add_layer("gap", GlobalAvgPool::new(), b)?;
    let f = g.add_layer("flatten", Flatten::new(), p)?;
    g.add_layer("fc", LinearConfig::new(64, classes).init(rng)?, f)?;
    Ok(g)
}

/// A character-classification CNN for 32x32 single-channel inputs in the style of the
/// networks of the thesis and of Lebedev et al. (2015): four 3x3 conv-BN-ReLU layers at 32,
/// 64, 128 and 256 channels, max-pooling after the first, second and fourth (32 -> 16 -> 8 ->
/// 4), then fc 4096 -> 1024, ReLU, fc 1024 -> `classes`. With 3,755 classes 8.4M parameters and
/// 36M multiply-adds per image: most of the multiply-adds in the convolutions, most of the
/// parameters in the FC layers.
///
/// # Errors
/// `classes` of 0.
///
/// ```
/// use slimnet_core::{models, tensor, Layer};
/// let cnn = models::hanzi_cnn(200, &mut tensor::rng(0))?;
/// let y = cnn.forward(&tensor::zeros(&[2, 1, 32, 32]))?;
/// assert_eq!(y.shape(), &[2, 200]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
pub fn hanzi_cnn(classes: usize, rng: &mut SlimRng) -> Result<Graph> {
    if classes == 0 {
        return Err(crate::Error::Invalid(
            "hanzi_cnn needs at least one class".into(),
        ));
    }
    let mut s = Sequential::new();
    let mut cin = 1;
    for (i, &c) in [32usize, 64, 128, 256].iter().enumerate() {
        let n = i + 1;
        s = s
            .push(
                &format!("conv{n}"),
                Conv2dConfig::new(cin, c, 3)
                    .with_padding(1)
                    .with_bias(false)
                    .init(rng)?,
            )
            .push(&format!("bn{n}"), BatchNormConfig::new(c).init()?)
            .push(&format!("relu{n}"), Activation::relu());
        if n != 3 {
            s = s.push(&format!("pool{n}"), MaxPool2d::new(PoolConfig::new(2))?);
        }
        cin = c;
    }
    let fc1 = LinearConfig::new(256 * 4 * 4, 1024).init(rng)?;
    // The classifier starts at a tenth of the He scale, so that every class starts near
    // 1/classes: at the He scale, with 3,755 classes, the first steps' gradients drove 93% of
    // fc1's ReLUs dead within 100 SGD steps and the network stayed at chance for a whole
    // epoch (loss ln 3755); at a tenth, 91% stay alive and the loss falls from there.
    let mut fc2 = LinearConfig::new(1024, classes).init(rng)?;
    fc2.visit_params_mut(&mut |name, p| {
        if name == "weight" {
            p.value_mut().mapv_inplace(|w| w * 0.1);
        }
    });
    s.push("flatten", Flatten::new())
        .push("fc1", fc1)
        .push("relu_fc1", Activation::relu())
        .push("fc2", fc2)
        .build()
}

/// The slope of the leaky ReLUs of [`flownet_simple`] (FlowNet's 0.1).
const FLOWNET_LEAK: f32 = 0.1;

/// Appends `layer`, a batch norm of `c` channels and a leaky ReLU after `from`, named
/// `<name>`, `<name>_bn`, `<name>_relu`.
fn with_bn_lrelu(
    g: &mut Graph,
    name: &str,
    layer: impl crate::Layer + 'static,
    c: usize,
    from: NodeId,
) -> Result<NodeId> {
    let a = g.add_layer(name, layer, from)?;
    let a = g.add_layer(&format!("{name}_bn"), BatchNormConfig::new(c).init()?, a)?;
    g.add_layer(
        &format!("{name}_relu"),
        Activation::leaky_relu(FLOWNET_LEAK),
        a,
    )
}

/// A 3x3 convolution of `stride` with padding 1 and no bias (a batch norm follows).
fn conv3(
    cin: usize,
    cout: usize,
    stride: usize,
    rng: &mut SlimRng,
) -> Result<crate::layers::Conv2d> {
    Conv2dConfig::new(cin, cout, 3)
        .with_stride(stride)
        .with_padding(1)
        .with_bias(false)
        .init(rng)
}

/// A small FlowNetSimple-style optical-flow network (Dosovitskiy et al. 2015) for two stacked
/// grayscale frames `[N, 2, H, W]` (H and W multiples of 16; built for 64x64, as
/// [`data::flow`](crate::data::flow) makes them), predicting the flow `[N, 2, H, W]` in pixels
/// (channel 0 horizontal, channel 1 vertical).
///
/// Every convolution is 3x3, followed by batch norm and a leaky ReLU (slope 0.1). Sizes for a
/// 64x64 input:
///
/// | node | layer | output |
/// |---|---|---|
/// | `conv1` | conv, stride 2 | 16 x 32 x 32 |
/// | `conv2` | conv, stride 2 | 32 x 16 x 16 |
/// | `conv3`, `conv3_1` | conv, stride 2; conv | 64 x 8 x 8 |
/// | `conv4`, `conv4_1` | conv, stride 2; conv | 96 x 4 x 4 |
/// | `deconv4`, `concat3` | 2x [`ConvTranspose2d`](crate::layers::ConvTranspose2d), ++ `conv3_1` | 64 + 64 x 8 x 8 |
/// | `deconv3`, `concat2` | 2x transposed conv, ++ `conv2` | 32 + 32 x 16 x 16 |
/// | `deconv2`, `concat1` | 2x transposed conv, ++ `conv1` | 16 + 16 x 32 x 32 |
/// | `deconv1`, `concat0` | 2x transposed conv, ++ the input frames | 16 + 2 x 64 x 64 |
/// | `flow` | conv with bias, no norm or activation | 2 x 64 x 64 |
///
/// The flow is predicted at full resolution, from the decoder's features concatenated with
/// the two frames themselves, rather than at 1/4 resolution and upsampled bilinearly as the
/// original FlowNet does: flying shapes have sharp motion boundaries, where most of the
/// end-point error is, and an upsampled 16x16 flow would blur them over 4 pixels; the full
/// resolution head costs 6 M multiply-adds, keeping the whole within budget. The encoder
/// reaches 1/16 resolution, so a 4x4 feature sees the whole 64x64 pair and displacements of
/// 8 pixels and more fall within one layer's receptive field.
///
/// 305,862 parameters (those of [`Layer::num_params`](crate::Layer::num_params)) and 19.0 M
/// multiply-adds per 64x64 pair (as [`Summary`](crate::summary::Summary) counts them: 18.9 M in
/// the convolutions, the rest in batch norms and biases).
///
/// ```
/// use slimnet_core::{models, summary::Summary, tensor, Layer};
/// let net = models::flownet_simple(&mut tensor::rng(0))?;
/// let flow = net.forward(&tensor::zeros(&[1, 2, 64, 64]))?;
/// assert_eq!(flow.shape(), &[1, 2, 64, 64]);
/// let s = Summary::of(&net, &[1, 2, 64, 64])?;
/// assert_eq!((s.params(), s.macs()), (305_862, 19_004_416));
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// Never in practice (layer configurations are fixed); an input whose sides are not
/// multiples of 16 fails at its first forward pass, at a concatenation.
pub fn flownet_simple(rng: &mut SlimRng) -> Result<Graph> {
    let mut g = Graph::new();
    let x = g.input();
    let c1 = with_bn_lrelu(&mut g, "conv1", conv3(2, 16, 2, rng)?, 16, x)?;
    let c2 = with_bn_lrelu(&mut g, "conv2", conv3(16, 32, 2, rng)?, 32, c1)?;
    let c3 = with_bn_lrelu(&mut g, "conv3", conv3(32, 64, 2, rng)?, 64, c2)?;
    let c3 = with_bn_lrelu(&mut g, "conv3_1", conv3(64, 64, 1, rng)?, 64, c3)?;
    let c4 = with_bn_lrelu(&mut g, "conv4", conv3(64, 96, 2, rng)?, 96, c3)?;
    let c4 = with_bn_lrelu(&mut g, "conv4_1", conv3(96, 96, 1, rng)?, 96, c4)?;
    let mut up = |g: &mut Graph, name: &str, cin: usize, cout: usize, from: NodeId| {
        let layer = ConvTransposeConfig::upsample2x().init(cin, cout, 3, rng)?;
        with_bn_lrelu(g, name, layer, cout, from)
    };
    let d = up(&mut g, "deconv4", 96, 64, c4)?;
    let d = g.concat("concat3", &[d, c3])?;
    let d = up(&mut g, "deconv3", 128, 32, d)?;
    let d = g.concat("concat2", &[d, c2])?;
    let d = up(&mut g, "deconv2", 64, 16, d)?;
    let d = g.concat("concat1", &[d, c1])?;
    let d = up(&mut g, "deconv1", 32, 16, d)?;
    let d = g.concat("concat0", &[d, x])?;
    g.add_layer(
        "flow",
        Conv2dConfig::new(18, 2, 3).with_padding(1).init(rng)?,
        d,
    )?;
    Ok(g)
}

/// A real-time style-transfer network in the layout of Johnson et al. (2016), for RGB images
/// `[N, 3, H, W]` (H and W multiples of 4) to images of the same shape, with `width` channels
/// at full resolution (Johnson's network has 32):
///
/// | nodes | what | output |
/// |---|---|---|
/// | `in_pad`, `in_conv`, `in_norm`, `in_relu` | reflection pad 4, conv 9x9 | `width` x H x W |
/// | `down1*`, `down2*` | conv 3x3 stride 2 | `2 width` x H/2, `4 width` x H/4 |
/// | `res1*` .. `res5*` | conv 3x3 - norm - ReLU - conv 3x3 - norm, plus the block's input | `4 width` x H/4 |
/// | `up1*`, `up2*` | nearest 2x upsampling, conv 3x3 | `2 width` x H/2, `width` x H |
/// | `out_pad`, `out_conv` | reflection pad 4, conv 9x9 with bias | 3 x H x W |
///
/// Every norm is an affine [`InstanceNorm2d`](crate::layers::InstanceNorm2d) followed by a ReLU
/// (none after the second of each residual block); the upsampling is nearest-neighbour
/// followed by a convolution rather than a transposed convolution (no checkerboard
/// artefacts, Odena et al. 2016). At `width` 16: 424,099 parameters and 2.79 G multiply-adds
/// in its convolutions per 256x256 image.
///
/// ```
/// use slimnet_core::{models, tensor, Layer};
/// let net = models::style_net(16, &mut tensor::rng(0))?;
/// assert_eq!(net.num_params(), 424_099);
/// let small = models::style_net(4, &mut tensor::rng(0))?;
/// assert_eq!(small.forward(&tensor::zeros(&[1, 3, 32, 32]))?.shape(), &[1, 3, 32, 32]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
///
/// # Errors
/// A `width` of 0.
pub fn style_net(width: usize, rng: &mut SlimRng) -> Result<Graph> {
    if width == 0 {
        return Err(crate::Error::Invalid(
            "style_net needs a width of at least 1".into(),
        ));
    }
    let (w1, w2, w4) = (width, 2 * width, 4 * width);
    let mut g = Graph::new();
    let x = g.input();
    let reflect4 = || Pad::new(vec![(0, 0), (0, 0), (4, 4), (4, 4)], PadMode::Reflect);
    let conv = |cin, cout, k, stride, rng: &mut SlimRng| {
        Conv2dConfig::new(cin, cout, k)
            .with_stride(stride)
            .with_padding(if k == 3 { 1 } else { 0 })
            .with_bias(false)
            .init(rng)
    };
    let norm = |g: &mut Graph, name: &str, c: usize, from: NodeId, relu: bool| {
        let a = g.add_layer(
            &format!("{name}_norm"),
            InstanceNormConfig::new(c).init()?,
            from,
        )?;
        if relu {
            g.add_layer(&format!("{name}_relu"), Activation::relu(), a)
        } else {
            Ok(a)
        }
    };
    let a = g.add_layer("in_pad", reflect4()?, x)?;
    let a = g.add_layer("in_conv", conv(3, w1, 9, 1, rng)?, a)?;
    let a = norm(&mut g, "in", w1, a, true)?;
    let a = g.add_layer("down1_conv", conv(w1, w2, 3, 2, rng)?, a)?;
    let a = norm(&mut g, "down1", w2, a, true)?;
    let a = g.add_layer("down2_conv", conv(w2, w4, 3, 2, rng)?, a)?;
    let mut a = norm(&mut g, "down2", w4, a, true)?;
    for r in 1..=5 {
        let b = g.add_layer(&format!("res{r}_conv1"), conv(w4, w4, 3, 1, rng)?, a)?;
        let b = norm(&mut g, &format!("res{r}_1"), w4, b, true)?;
        let b = g.add_layer(&format!("res{r}_conv2"), conv(w4, w4, 3, 1, rng)?, b)?;
        let b = norm(&mut g, &format!("res{r}_2"), w4, b, false)?;
        a = g.add(&format!("res{r}_add"), a, b)?;
    }
    for (name, cin, cout) in [("up1", w4, w2), ("up2", w2, w1)] {
        let up = Resize2d::new(
            ResizeMode::Nearest(NearestMode::Floor),
            CoordMode::Asymmetric,
            ResizeTarget::Scales([2.0, 2.0]),
        )?;
        let b = g.add_layer(&format!("{name}_resize"), up, a)?;
        let b = g.add_layer(&format!("{name}_conv"), conv(cin, cout, 3, 1, rng)?, b)?;
        a = norm(&mut g, name, cout, b, true)?;
    }
    let a = g.add_layer("out_pad", reflect4()?, a)?;
    g.add_layer("out_conv", Conv2dConfig::new(w1, 3, 9).init(rng)?, a)?;
    Ok(g)
}

/// The classifier constructor for a name (what the trainer and the command line take):
/// `lenet5`, `lenet300`, `vgg`, `resnet`, or `hanzi-<classes>` ([`hanzi_cnn`]).
///
/// # Errors
/// An unknown name (the message lists the known ones).
pub fn by_name(name: &str, rng: &mut SlimRng) -> Result<Graph> {
    match name {
        "lenet5" => lenet5(rng),
        "lenet300" => lenet300(rng),
        "vgg" => vgg_small(rng),
        "resnet" => resnet_small(rng),
        other => match other.strip_prefix("hanzi-").map(str::parse::<usize>) {
            Some(Ok(classes)) => hanzi_cnn(classes, rng),
            _ => Err(crate::Error::Invalid(format!(
                "unknown model `{other}`; known: lenet5, lenet300, vgg, resnet, hanzi-<classes>"
            ))),
        },
    }
}
