//! The flying-shapes optical-flow generator: determinism, shapes and ranges, the flow checked
//! against the frames it was rendered with, and the statistics that make it a useful benchmark.

use slimnet_core::data::flow::{
    flying_shapes, FlowDataset, FlowSplit, FlyingShapesConfig, Frame, TEXTURE_MAX_AMPLITUDE,
    TEXTURE_MAX_FREQUENCY,
};
use slimnet_core::Tensor;

/// Value of `t[n, c, y, x]`.
fn at(t: &Tensor, n: usize, c: usize, y: usize, x: usize) -> f32 {
    t[[n, c, y, x]]
}

/// Bilinear sample of channel `c` of sample `n` at `(x, y)`, inside `[0, W - 1] x [0, H - 1]`.
fn bilinear(t: &Tensor, n: usize, c: usize, x: f64, y: f64) -> f64 {
    let (h, w) = (t.shape()[2], t.shape()[3]);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let v = |yy, xx| f64::from(at(t, n, c, yy, xx));
    (1.0 - fy) * ((1.0 - fx) * v(y0, x0) + fx * v(y0, x1))
        + fy * ((1.0 - fx) * v(y1, x0) + fx * v(y1, x1))
}

#[test]
fn same_seed_same_tensors_other_seeds_and_splits_differ() {
    let cfg = FlyingShapesConfig::new(24, 32).with_seed(11);
    let a = flying_shapes(6, FlowSplit::Train, &cfg).unwrap();
    let b = flying_shapes(6, FlowSplit::Train, &cfg).unwrap();
    assert_eq!(a.inputs, b.inputs);
    assert_eq!(a.flows, b.flows);
    assert_eq!(a.visible, b.visible);
    assert_eq!(a.inputs.shape(), &[6, 2, 24, 32]);
    assert_eq!(a.flows.shape(), &[6, 2, 24, 32]);
    assert_eq!(a.visible.shape(), &[6, 1, 24, 32]);
    assert_eq!(a.len(), 6);

    let other_seed = flying_shapes(6, FlowSplit::Train, &cfg.clone().with_seed(12)).unwrap();
    let test = flying_shapes(6, FlowSplit::Test, &cfg).unwrap();
    let val = flying_shapes(6, FlowSplit::Validation, &cfg).unwrap();
    for other in [&other_seed, &test, &val] {
        // no sample of one set equals any sample of the other
        for i in 0..6 {
            for j in 0..6 {
                assert_ne!(
                    a.inputs.index_axis(ndarray::Axis(0), i),
                    other.inputs.index_axis(ndarray::Axis(0), j)
                );
            }
        }
    }
    // sample i depends on (seed, split, i) only: a later range is the tail of a longer set
    let tail = cfg.generate(FlowSplit::Train, 4..6).unwrap();
    assert_eq!(
        tail.flows,
        a.flows.slice_axis(ndarray::Axis(0), (4..6).into())
    );
    // the two frames of a pair differ, and so do the samples of a set
    for i in 0..6 {
        assert_ne!(
            a.inputs
                .index_axis(ndarray::Axis(0), i)
                .index_axis(ndarray::Axis(0), 0),
            a.inputs
                .index_axis(ndarray::Axis(0), i)
                .index_axis(ndarray::Axis(0), 1)
        );
    }
}

#[test]
fn values_are_in_range_and_the_batch_picks_pairs() {
    let cfg = FlyingShapesConfig::default().with_seed(3);
    let d = flying_shapes(8, FlowSplit::Validation, &cfg).unwrap();
    assert!(d.inputs.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(d.visible.iter().all(|&v| v == 0.0 || v == 1.0));
    assert!(d.flows.iter().all(|v| v.is_finite()));
    // intensities use the range: textures have contrast
    let (lo, hi) = d
        .inputs
        .iter()
        .fold((1.0f32, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(lo < 0.2 && hi > 0.8, "intensities in [{lo}, {hi}]");
    let (x, f) = d.batch(&[5, 1]).unwrap();
    assert_eq!(x.shape(), &[2, 2, 64, 64]);
    assert_eq!(
        f.index_axis(ndarray::Axis(0), 1),
        d.flows.index_axis(ndarray::Axis(0), 1)
    );
    assert!(d.batch(&[8]).is_err());
    let empty = flying_shapes(0, FlowSplit::Train, &cfg).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.inputs.shape(), &[0, 2, 64, 64]);
    assert_eq!(empty.mean_flow_magnitude(), 0.0);
}

#[test]
fn bad_configurations_are_errors_not_panics() {
    let d = FlyingShapesConfig::default;
    let bad = [
        FlyingShapesConfig::new(0, 64),
        FlyingShapesConfig::new(64, 0),
        FlyingShapesConfig::new(1 << 20, 64),
        d().with_shapes(3, 1),
        d().with_shape_size(0.0, 0.2),
        d().with_shape_size(0.3, 0.2),
        d().with_shape_size(0.1, 1.5),
        d().with_shape_size(f64::NAN, 0.2),
        d().with_max_translation(-1.0),
        d().with_max_translation(f64::NAN),
        d().with_max_translation(f64::INFINITY),
        d().with_max_rotation(-0.1),
        d().with_max_rotation(4.0),
        d().with_max_scale_change(1.0),
        d().with_max_scale_change(f64::NAN),
        d().with_background_motion(-0.5),
        d().with_max_scale_change(0.5).with_background_motion(2.0),
    ];
    for cfg in bad {
        let e = flying_shapes(2, FlowSplit::Train, &cfg).unwrap_err();
        assert!(e.to_string().contains("flying shapes"), "{e}");
        assert!(cfg.scene(FlowSplit::Train, 0).is_err());
    }
    assert!(d().scene(FlowSplit::Test, 1 << 48).is_err());
    assert!(d()
        .generate(FlowSplit::Test, (1 << 48) - 1..(1 << 48) + 1)
        .is_err());
    // edge cases that are fine: no shapes, a still world, a 1x1 image
    let still = d()
        .with_shapes(0, 0)
        .with_max_translation(0.0)
        .with_max_rotation(0.0)
        .with_max_scale_change(0.0);
    let s = flying_shapes(2, FlowSplit::Train, &still).unwrap();
    assert!(s.flows.iter().all(|&v| v == 0.0));
    assert!(s.visible.iter().all(|&v| v == 1.0));
    let tiny = flying_shapes(2, FlowSplit::Train, &FlyingShapesConfig::new(1, 1)).unwrap();
    assert_eq!(tiny.inputs.shape(), &[2, 2, 1, 1]);
}

/// With integer translations and no rotation or scale change, every surface moves by whole
/// pixels: frame 2 at `(x + u, y + v)` holds exactly frame 1's value at `(x, y)` wherever the
/// surface stays visible (the renderer evaluates the same texture point in both frames).
#[test]
fn integer_translations_shift_pixels_exactly() {
    let cfg = FlyingShapesConfig::default()
        .with_max_translation(5.0)
        .with_max_rotation(0.0)
        .with_max_scale_change(0.0)
        .with_background_motion(1.0)
        .with_integer_translation(true)
        .with_seed(21);
    let d = flying_shapes(8, FlowSplit::Train, &cfg).unwrap();
    let (mut checked, mut moved) = (0, 0);
    for n in 0..8 {
        for y in 0..64 {
            for x in 0..64 {
                let (u, v) = (at(&d.flows, n, 0, y, x), at(&d.flows, n, 1, y, x));
                assert_eq!((u.fract(), v.fract()), (0.0, 0.0), "flow ({u}, {v})");
                if at(&d.visible, n, 0, y, x) == 0.0 {
                    continue;
                }
                let (x2, y2) = ((x as f32 + u) as usize, (y as f32 + v) as usize);
                assert_eq!(
                    at(&d.inputs, n, 1, y2, x2),
                    at(&d.inputs, n, 0, y, x),
                    "sample {n} pixel ({x}, {y}) moved by ({u}, {v})"
                );
                checked += 1;
                moved += usize::from(u != 0.0 || v != 0.0);
            }
        }
    }
    assert!(checked > 8 * 64 * 64 / 2, "{checked} visible pixels");
    assert!(moved > checked / 2, "{moved} of {checked} moved");
}

/// Under general affine motions the flow is checked by warping: frame 2 sampled bilinearly at
/// `x + flow(x)` must give frame 1 at `x`, for every visible pixel whose four neighbours in
/// frame 2 show the same surface (so that the interpolation does not mix two surfaces).
///
/// Tolerance: the renderer evaluates the same texture point exactly, so the only error is the
/// bilinear interpolation of a smooth texture, at most `(|f_xx| + |f_yy|) / 8` over a unit
/// cell. A texture is a sum of sinusoids of total amplitude `<= TEXTURE_MAX_AMPLITUDE` and
/// frequency `<= TEXTURE_MAX_FREQUENCY` in its own coordinates; frame 2 shrinks it by at most
/// `1 - max_scale_change`, raising frequencies by that factor, so each second derivative is at
/// most `A w^2 / (1 - s)^2` and the error at most `A w^2 / (4 (1 - s)^2)` (0.028 here), plus
/// f32 rounding.
#[test]
fn warping_frame_two_by_the_flow_gives_frame_one() {
    let cfg = FlyingShapesConfig::default().with_seed(5);
    let s = cfg.max_scale_change * cfg.background_motion.max(1.0);
    let tol =
        TEXTURE_MAX_AMPLITUDE * TEXTURE_MAX_FREQUENCY.powi(2) / (4.0 * (1.0 - s).powi(2)) + 1e-5;
    let n = 6;
    let d = flying_shapes(n, FlowSplit::Test, &cfg).unwrap();
    let (mut count, mut err, mut err_zero, mut worst) = (0usize, 0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        let scene = cfg.scene(FlowSplit::Test, i).unwrap();
        for y in 0..64 {
            for x in 0..64 {
                let (xf, yf) = (x as f64, y as f64);
                let [u, v] = scene.flow_at(xf, yf);
                // the scene's exact flow is what the tensor holds
                assert!((f64::from(at(&d.flows, i, 0, y, x)) - u).abs() < 1e-5);
                assert!((f64::from(at(&d.flows, i, 1, y, x)) - v).abs() < 1e-5);
                let first = f64::from(at(&d.inputs, i, 0, y, x));
                assert!((scene.intensity_at(Frame::First, xf, yf) - first).abs() < 1e-6);
                if at(&d.visible, i, 0, y, x) == 0.0 {
                    continue;
                }
                let (x2, y2) = (xf + u, yf + v);
                let k = scene.surface_at(Frame::First, xf, yf);
                let corners = [
                    (x2.floor(), y2.floor()),
                    (x2.ceil(), y2.floor()),
                    (x2.floor(), y2.ceil()),
                    (x2.ceil(), y2.ceil()),
                ];
                if corners
                    .iter()
                    .any(|&(cx, cy)| scene.surface_at(Frame::Second, cx, cy) != k)
                {
                    continue;
                }
                let e = (bilinear(&d.inputs, i, 1, x2, y2) - first).abs();
                worst = worst.max(e);
                assert!(
                    e <= tol,
                    "sample {i} pixel ({x}, {y}), flow ({u}, {v}): error {e} > {tol}"
                );
                err += e;
                err_zero += (f64::from(at(&d.inputs, i, 1, y, x)) - first).abs();
                count += 1;
            }
        }
    }
    let (mean, mean_zero) = (err / count as f64, err_zero / count as f64);
    assert!(count > n * 64 * 64 / 2, "{count} pixels checked");
    // typical errors are far below the bound, and the check has power: assuming no motion
    // instead of the true flow misses by far more
    assert!(mean < tol / 4.0, "mean error {mean}, worst {worst}");
    assert!(
        mean_zero > 10.0 * mean,
        "zero flow misses by {mean_zero}, the true flow by {mean}"
    );
}

/// Mean and largest flow magnitude, fraction of visible pixels, mean flow.
fn stats(d: &FlowDataset) -> (f64, f64, f64, [f64; 2]) {
    let (n, h, w) = (d.len(), d.flows.shape()[2], d.flows.shape()[3]);
    let (mut sum, mut max, mut mean) = (0.0f64, 0.0f64, [0.0f64; 2]);
    for i in 0..n {
        for y in 0..h {
            for x in 0..w {
                let (u, v) = (
                    f64::from(at(&d.flows, i, 0, y, x)),
                    f64::from(at(&d.flows, i, 1, y, x)),
                );
                sum += u.hypot(v);
                max = max.max(u.hypot(v));
                mean[0] += u;
                mean[1] += v;
            }
        }
    }
    let count = (n * h * w) as f64;
    let visible = d.visible.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
    (sum / count, max, visible, mean.map(|m| m / count))
}

#[test]
fn flow_statistics_make_a_useful_benchmark() {
    let cfg = FlyingShapesConfig::default().with_seed(1);
    let d = flying_shapes(64, FlowSplit::Train, &cfg).unwrap();
    let (mean, max, visible, [mu, mv]) = stats(&d);
    println!(
        "flow magnitude mean {mean:.3} max {max:.3}, visible {visible:.3}, mean ({mu:.3}, {mv:.3})"
    );
    assert!((f64::from(d.mean_flow_magnitude()) - mean).abs() < 1e-4);
    // |t + (A - I) d| <= sqrt(2) T + (rotation + scale change) |d|, |d| at most the diagonal
    let diag = 64f64.hypot(64.0);
    let bound =
        2f64.sqrt() * cfg.max_translation + (cfg.max_rotation + cfg.max_scale_change) * diag;
    assert!(max <= bound, "largest flow {max} beyond {bound}");
    assert!(
        (1.0..=cfg.max_translation).contains(&mean),
        "mean flow magnitude {mean}"
    );
    assert!(max > cfg.max_translation, "largest flow {max}");
    // no direction is favoured, most pixels stay visible, yet occlusions occur
    assert!(mu.abs() < 0.5 && mv.abs() < 0.5, "mean flow ({mu}, {mv})");
    assert!(
        (0.75..0.99).contains(&visible),
        "visible fraction {visible}"
    );
    // shapes move differently from the background: flow varies within most images
    let varied = (0..64)
        .filter(|&i| {
            let u = d.flows.index_axis(ndarray::Axis(0), i);
            let (lo, hi) = u
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            hi - lo > 1.0
        })
        .count();
    assert!(varied > 56, "{varied} of 64 images with varied flow");
    // a still background with larger motions elsewhere scales as configured
    let fast = FlyingShapesConfig::default()
        .with_max_translation(8.0)
        .with_seed(1);
    let (fast_mean, ..) = stats(&flying_shapes(32, FlowSplit::Train, &fast).unwrap());
    assert!(fast_mean > 1.5 * mean, "{fast_mean} vs {mean}");
}
