//! Tests of the deploy layers against f32 references, saturation and model-file round trips.

use slimnet_core::graph::Graph;
use slimnet_core::layers::{Activation, Conv2d, Conv2dConfig, Flatten, LinearConfig};
use slimnet_core::value::{Codes, Value};
use slimnet_core::{io, tensor, Layer, Tensor};
use slimnet_kernels::int8::QuantParams;

use super::*;
use crate::scheme::QScheme;

/// Worst-case error of an int8 dot product against f32, per output: half a step of every input
/// times its weight, half a weight step times every input, plus one output step (requantization
/// rounding) and the bias rounding.
fn tolerance(w_abs_sum: f32, x_abs_sum: f32, sx: f32, sw: f32, sout: f32) -> f32 {
    0.5 * sx * w_abs_sum
        + 0.5 * sw * x_abs_sum
        + 0.25 * sx * sw * x_abs_sum.max(1.0)
        + sout
        + sx * sw
}

fn conv_case(groups: usize, relu: bool, out_f32: bool) {
    let (c, o) = if groups == 1 { (3, 5) } else { (4, 4) };
    let conv = Conv2dConfig::new(c, o, 3)
        .with_padding(1)
        .with_stride(2)
        .with_groups(groups)
        .init(&mut tensor::rng(1))
        .unwrap();
    let mut conv = conv;
    *conv.bias.as_mut().unwrap().value_mut() =
        tensor::uniform(&[o], -0.5, 0.5, &mut tensor::rng(2));
    let x = tensor::uniform(&[2, c, 7, 6], -1.0, 2.0, &mut tensor::rng(3));
    let xq = QuantParams::from_range(-1.0, 2.0);
    let mut want = conv.forward(&x).unwrap();
    if relu {
        want.mapv_inplace(|v| v.max(0.0));
    }
    let (lo, hi) = want
        .iter()
        .fold((0.0f32, 0.0f32), |(a, b), &v| (a.min(v), b.max(v)));
    let op = QuantParams::from_range(lo, hi);
    let out = if out_f32 { QOut::F32 } else { QOut::Codes(op) };
    let q = QConv2d::from_conv(&conv, xq)
        .unwrap()
        .with_output(out)
        .with_relu(relu);
    // on a graph edge: codes in, codes (or f32) out; standing alone: f32 in and out, the same
    let codes = Value::U8(Codes::quantize(&x, xq));
    let v = q.forward_value(&codes).unwrap();
    assert_eq!(v.kind(), q.output_kind(codes.kind()));
    let y = q.forward(&x).unwrap();
    assert_eq!(v.into_f32(), y);
    assert_eq!(y.shape(), want.shape());
    let w = conv.weight.value();
    let per = w.len() / o;
    let wsum: Vec<f32> = (0..o)
        .map(|k| w.iter().skip(k * per).take(per).map(|v| v.abs()).sum())
        .collect();
    let sw: Vec<f32> = (0..o)
        .map(|k| {
            w.iter()
                .skip(k * per)
                .take(per)
                .fold(0.0f32, |m, v| m.max(v.abs()))
                / 127.0
        })
        .collect();
    let xsum = 2.0 * per as f32; // |x| <= 2
    for ((idx, a), b) in y.indexed_iter().zip(want.iter()) {
        let k = idx[1];
        let sout = if out_f32 { 0.0 } else { op.scale };
        let tol = tolerance(wsum[k], xsum, xq.scale, sw[k], sout);
        assert!(
            (a - b).abs() <= tol,
            "groups {groups} relu {relu}: {a} vs {b} (tol {tol})"
        );
    }
}

#[test]
fn int8_conv_matches_f32_within_quantization_tolerance() {
    for groups in [1, 4] {
        conv_case(groups, false, true);
        conv_case(groups, true, false);
        conv_case(groups, false, false);
    }
}

#[test]
fn int8_linear_matches_f32_within_quantization_tolerance() {
    let fc = LinearConfig::new(50, 7).init(&mut tensor::rng(4)).unwrap();
    let x = tensor::uniform(&[3, 50], 0.0, 1.0, &mut tensor::rng(5));
    let xq = QuantParams::from_range(0.0, 1.0);
    let want = fc.forward(&x).unwrap();
    let q = QLinear::from_linear(&fc, xq).unwrap();
    let y = q.forward(&x).unwrap();
    let wmax = fc.weight.value().iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let wsum = fc.weight.value().iter().map(|v| v.abs()).sum::<f32>() / 7.0 * 2.0;
    let tol = tolerance(wsum, 50.0, xq.scale, wmax / 127.0, 0.0);
    assert!(
        tensor::max_abs_diff(&y, &want) <= tol,
        "{}",
        tensor::max_abs_diff(&y, &want)
    );
    // dynamic quantization needs no calibration
    let d = DynamicQLinear::from_linear(&fc).unwrap();
    assert!(tensor::max_abs_diff(&d.forward(&x).unwrap(), &want) <= tol);
    let bad = tensor::from_vec(&[1, 50], vec![f32::NAN; 50]).unwrap();
    assert!(d.forward(&bad).is_err());
}

#[test]
fn integer_results_saturate() {
    let mut fc = LinearConfig::new(4, 2).init(&mut tensor::rng(0)).unwrap();
    *fc.weight.value_mut() =
        tensor::from_vec(&[2, 4], vec![1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]).unwrap();
    // a huge bias saturates the i32 bias (not wraps), and a tiny output range saturates the u8
    *fc.bias.as_mut().unwrap().value_mut() = tensor::from_vec(&[2], vec![1e30, -1e30]).unwrap();
    let xq = QuantParams::from_range(0.0, 1.0);
    let op = QuantParams::from_range(-0.01, 0.01);
    let q = QLinear::from_linear(&fc, xq)
        .unwrap()
        .with_output(QOut::Codes(op));
    let x = Value::U8(Codes::quantize(
        &tensor::from_vec(&[1, 4], vec![1.0; 4]).unwrap(),
        xq,
    ));
    let Value::U8(y) = q.forward_value(&x).unwrap() else {
        panic!("codes out")
    };
    assert_eq!(y.data.as_slice().unwrap(), &[255, 0]);
    // out-of-range and NaN inputs quantize with saturation into 0..=255
    let wild = tensor::from_vec(&[1, 4], vec![-5.0, 300.0, f32::NAN, 1e9]).unwrap();
    let a = q.forward(&wild).unwrap();
    let b = q
        .forward(&tensor::from_vec(&[1, 4], vec![0.0, 1.0, 0.0, 1.0]).unwrap())
        .unwrap();
    assert_eq!(a, b);
}

/// A graph with every deploy layer kind of this module.
fn every_kind() -> Graph {
    let mut rng = tensor::rng(7);
    let conv = Conv2dConfig::new(2, 4, 3)
        .with_padding(1)
        .init(&mut rng)
        .unwrap();
    let dw = Conv2dConfig::new(4, 4, 3)
        .with_padding(1)
        .with_groups(4)
        .with_bias(false)
        .init(&mut rng)
        .unwrap();
    let fc = LinearConfig::new(4 * 36, 8).init(&mut rng).unwrap();
    let fc2 = LinearConfig::new(8, 6).init(&mut rng).unwrap();
    let fc3 = LinearConfig::new(6, 5)
        .with_bias(false)
        .init(&mut rng)
        .unwrap();
    let wconv: Conv2d = Conv2dConfig::new(2, 2, 1).init(&mut rng).unwrap();
    let xq = QuantParams::from_range(-1.0, 1.0);
    let p1 = QuantParams::from_range(0.0, 3.0);
    let p2 = QuantParams::from_range(-2.0, 2.0);
    let mut g = Graph::new();
    let x = g.input();
    let x = g
        .add_layer(
            "wconv",
            WeightOnly::new(Box::new(wconv), QScheme::symmetric(3).unwrap().per_tensor()).unwrap(),
            x,
        )
        .unwrap();
    let x = g.add_layer("q", Quantize::new(xq), x).unwrap();
    let conv = QConv2d::from_conv(&conv, xq)
        .unwrap()
        .with_output(QOut::Codes(p1))
        .with_relu(true);
    let x = g.add_layer("conv", conv, x).unwrap();
    let dw = QConv2d::from_conv(&dw, p1)
        .unwrap()
        .with_output(QOut::Codes(p2));
    let x = g.add_layer("dw", dw, x).unwrap();
    let x = g.add_layer("flat", Flatten::new(), x).unwrap();
    let x = g
        .add_layer("fc", QLinear::from_linear(&fc, p2).unwrap(), x)
        .unwrap();
    let x = g.add_layer("relu", Activation::relu(), x).unwrap();
    let x = g
        .add_layer("fc2", DynamicQLinear::from_linear(&fc2).unwrap(), x)
        .unwrap();
    let mut fc3 = fc3;
    let mask = tensor::from_vec(
        &[5, 6],
        (0..30).map(|i| (i % 4 == 0) as u8 as f32).collect(),
    );
    fc3.weight.set_mask(mask.unwrap()).unwrap();
    let q3 = QLinear::from_linear(&fc3, p2)
        .unwrap()
        .with_output(QOut::Codes(p2));
    assert_eq!(q3.kind(), "QSparseLinear");
    let x = g.add_layer("q2", Quantize::new(p2), x).unwrap();
    let x = g.add_layer("fc3", q3, x).unwrap();
    g.add_layer("dq", Dequantize::new(p2), x).unwrap();
    let w5 = LinearConfig::new(5, 3).init(&mut rng).unwrap();
    let out = g.output();
    g.add_layer(
        "w5",
        WeightOnly::new(Box::new(w5), QScheme::affine(5).unwrap()).unwrap(),
        out,
    )
    .unwrap();
    g
}

#[test]
fn every_kind_round_trips_bit_identically() {
    let g = every_kind();
    let x: Tensor = tensor::uniform(&[2, 2, 6, 6], -1.0, 1.0, &mut tensor::rng(8));
    let y = g.forward(&x).unwrap();
    let bytes = io::to_bytes(&g).unwrap();
    let mut reg = io::Registry::core();
    crate::register(&mut reg);
    let back = io::from_bytes(&bytes, &reg).unwrap();
    assert_eq!(back.forward(&x).unwrap(), y);
    assert_eq!(io::to_bytes(&back).unwrap(), bytes);
    // unknown without registration
    assert!(io::from_bytes(&bytes, &io::Registry::core()).is_err());
}

#[test]
fn weight_only_error_and_size() {
    let fc = LinearConfig::new(100, 10)
        .init(&mut tensor::rng(1))
        .unwrap();
    let want = fc
        .forward(&tensor::uniform(&[1, 100], 0.0, 1.0, &mut tensor::rng(2)))
        .unwrap();
    for bits in 2..=8u32 {
        let q = WeightOnly::new(Box::new(fc.clone()), QScheme::symmetric(bits).unwrap()).unwrap();
        let mut wbytes = 0;
        q.stored_tensors(&mut |n, t| {
            if n == "weight_codes" {
                wbytes = t.bytes.len();
            }
        });
        assert_eq!(wbytes, (1000 * bits as usize).div_ceil(8));
        let y = q
            .forward(&tensor::uniform(&[1, 100], 0.0, 1.0, &mut tensor::rng(2)))
            .unwrap();
        let err = tensor::max_abs_diff(&y, &want);
        // error shrinks roughly by half per extra bit; 8 bits is close
        if bits == 8 {
            assert!(err < 0.05, "{err}");
        }
    }
    assert!(WeightOnly::new(Box::new(Activation::relu()), QScheme::default()).is_err());
}

/// The core form of an int8 layer is its dequantized float layer: the same weights an
/// exporter writes, close to the int8 layer's outputs (which also quantize the activations).
#[test]
fn int8_layers_lower_to_their_dequantized_float_layers() {
    let conv = Conv2dConfig::new(3, 4, 3)
        .with_padding(1)
        .init(&mut tensor::rng(3))
        .unwrap();
    let xq = QuantParams::from_range(0.0, 1.0);
    let q = QConv2d::from_conv(&conv, xq).unwrap().with_relu(true);
    let core = q.to_core().unwrap().unwrap();
    assert_eq!(core.kind(), "Graph"); // the convolution, then the fused ReLU
    let x = tensor::uniform(&[1, 3, 6, 6], 0.0, 1.0, &mut tensor::rng(4));
    let (a, b) = (q.forward(&x).unwrap(), core.forward(&x).unwrap());
    assert!(
        tensor::max_abs_diff(&a, &b) < 0.05,
        "{}",
        tensor::max_abs_diff(&a, &b)
    );
    let (w, s) = q.weight_i8();
    assert_eq!((w.len(), s.len()), (4 * 27, 4));
    let mut fc = LinearConfig::new(10, 3).init(&mut tensor::rng(5)).unwrap();
    let mask = (0..30).map(|i| (i % 5 == 0) as u8 as f32).collect();
    fc.weight
        .set_mask(tensor::from_vec(&[3, 10], mask).unwrap())
        .unwrap();
    let q = QLinear::from_linear(&fc, xq).unwrap();
    assert!(q.is_sparse());
    let (w, _) = q.weight_i8();
    assert_eq!(w.iter().filter(|&&v| v != 0).count(), 6);
    let core = q.to_core().unwrap().unwrap();
    assert_eq!(core.kind(), "Linear");
}
