//! The layers against finite differences (backward) and hand-computed values (forward).

use slimnet_core::{tensor, Layer, Tensor};

use super::*;

/// Relative error of the input gradient of `sum(w * layer(x))` against central differences.
fn grad_error(layer: &mut dyn Layer, x: &Tensor) -> f32 {
    let y = layer.forward_train(x).unwrap();
    let w = tensor::uniform(y.shape(), -1.0, 1.0, &mut tensor::rng(3));
    let g = layer.backward(&w).unwrap();
    let loss = |x: &Tensor| (layer.forward(x).unwrap() * &w).sum();
    let h = 1e-2;
    let mut worst = 0.0f32;
    for i in 0..x.len() {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp.as_slice_mut().unwrap()[i] += h;
        xm.as_slice_mut().unwrap()[i] -= h;
        let num = (loss(&xp) - loss(&xm)) / (2.0 * h);
        let ana = g.as_slice().unwrap()[i];
        worst = worst.max((num - ana).abs() / (1.0 + num.abs()));
    }
    worst
}

#[test]
fn backward_matches_finite_differences() {
    // kept away from the clamp's kinks, where differences are not derivatives
    let x = tensor::uniform(&[2, 3, 4, 5], -2.0, 2.0, &mut tensor::rng(1)).mapv(|v| {
        if (v + 1.0).abs() < 0.05 || (v - 1.5).abs() < 0.05 {
            v + 0.1
        } else {
            v
        }
    });
    let c = tensor::uniform(&[3, 1, 1], 0.5, 2.0, &mut tensor::rng(2));
    let mut layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Clamp::new(-1.0, 1.5).unwrap()),
        Box::new(ConstOp::new(BinaryOp::Mul, c.clone(), false)),
        Box::new(ConstOp::new(BinaryOp::Sub, c.clone(), true)),
        Box::new(ConstOp::new(BinaryOp::Div, c, false)),
        Box::new(Reshape::new(vec![0, -1], false).unwrap()),
        Box::new(Transpose::new(vec![0, 2, 3, 1]).unwrap()),
        Box::new(Unary::new(UnaryOp::Neg)),
        Box::new(Unary::new(UnaryOp::Exp)),
        Box::new(Unary::new(UnaryOp::Elu { alpha: 0.7 })),
        Box::new(Unary::new(UnaryOp::Selu {
            alpha: 1.5,
            gamma: 1.1,
        })),
        Box::new(Unary::new(UnaryOp::Softplus)),
        Box::new(Unary::new(UnaryOp::Softsign)),
        Box::new(Reduce::new(ReduceOp::Mean, vec![-1, 1], true)),
        Box::new(Reduce::new(ReduceOp::Sum, vec![2], false)),
        Box::new(Reduce::new(ReduceOp::Mean, vec![], false)),
        Box::new(Slice::new(vec![1, -1], vec![3, 0], vec![1, -1], vec![1, -2]).unwrap()),
        Box::new(PRelu::new(
            tensor::from_vec(&[3, 1, 1], vec![0.1, -0.5, 2.0]).unwrap(),
        )),
    ];
    for l in &mut layers {
        let e = grad_error(l.as_mut(), &x);
        assert!(e < 2e-2, "{}: {e}", l.kind());
    }
    // the functions defined for positive inputs only, and powers either way round
    let pos = x.mapv(|v| v.abs() + 0.5);
    let c = tensor::uniform(&[5], 0.5, 2.0, &mut tensor::rng(4));
    let mut layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Unary::new(UnaryOp::Sqrt)),
        Box::new(Unary::new(UnaryOp::Reciprocal)),
        Box::new(Unary::new(UnaryOp::Log)),
        Box::new(Unary::new(UnaryOp::Abs)),
        Box::new(ConstOp::new(BinaryOp::Pow, c.clone(), false)),
        Box::new(ConstOp::new(BinaryOp::Pow, c, true)),
    ];
    for l in &mut layers {
        let e = grad_error(l.as_mut(), &pos);
        assert!(e < 2e-2, "{}: {e}", l.kind());
    }
}

#[test]
fn forward_values() {
    let x = tensor::from_vec(&[1, 1, 1, 3], vec![1.0, 2.0, 3.0]).unwrap();
    let row = |l: &dyn Layer| l.forward(&x).unwrap().iter().copied().collect::<Vec<_>>();
    // ceil mode: a last window over [3] alone; the average counts only real positions
    let p = Pool2d::new(
        PoolKind::Avg {
            count_include_pad: false,
        },
        [1, 2],
        [1, 2],
        [0; 4],
        [1, 1],
        true,
    )
    .unwrap();
    assert_eq!(row(&p), [1.5, 3.0]);
    let m = MatMul::new(tensor::from_vec(&[3], vec![1.0, 10.0, 100.0]).unwrap()).unwrap();
    assert_eq!(m.forward(&x).unwrap().shape(), &[1, 1, 1]);
    assert_eq!(row(&m), [321.0]);
    // ONNX's slice rules: from the last value backwards by 2, and bounds past the ends clamped
    let back = Slice::new(vec![-1], vec![-10], vec![3], vec![-2]).unwrap();
    assert_eq!(row(&back), [3.0, 1.0]);
    let wide = Slice::new(vec![-7], vec![100], vec![-1], vec![1]).unwrap();
    assert_eq!(row(&wide), [1.0, 2.0, 3.0]);
    let sum = Reduce::new(ReduceOp::Sum, vec![], true);
    assert_eq!(sum.forward(&x).unwrap().shape(), &[1, 1, 1, 1]);
    assert_eq!(row(&sum), [6.0]);
    let p = ConstOp::new(
        BinaryOp::Pow,
        tensor::from_vec(&[], vec![2.0]).unwrap(),
        false,
    );
    assert_eq!(row(&p), [1.0, 4.0, 9.0]);
    let s = SoftmaxAxis::new(-1, true, false).forward(&x).unwrap();
    let total: f32 = s.iter().map(|v| v.exp()).sum();
    assert!((total - 1.0).abs() < 1e-6);
}

#[test]
fn bad_shapes_are_errors() {
    assert!(Reshape::new(vec![-1, -1], false).is_err());
    assert!(Transpose::new(vec![0, 0]).is_err());
    assert!(Reshape::new(vec![5, -1], false)
        .unwrap()
        .output_shape(&[2, 3])
        .is_err());
    assert!(ConstOp::new(BinaryOp::Add, tensor::zeros(&[3]), false)
        .output_shape(&[2, 4])
        .is_err());
    assert!(MatMul::new(tensor::zeros(&[3, 2]))
        .unwrap()
        .output_shape(&[2, 4])
        .is_err());
    assert!(Slice::new(vec![0], vec![1], vec![0], vec![0]).is_err());
    assert!(Slice::new(vec![0, 1], vec![1], vec![0], vec![1]).is_err());
    assert!(Slice::new(vec![0], vec![1], vec![4], vec![1])
        .unwrap()
        .output_shape(&[2, 3])
        .is_err());
    assert!(Reduce::new(ReduceOp::Mean, vec![2], true)
        .output_shape(&[2, 3])
        .is_err());
}
