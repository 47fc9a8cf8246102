//! Import of the ops of image-to-image networks (detection and segmentation heads, style
//! transfer, optical flow): `ConvTranspose`, `Resize`, `Upsample` and `InstanceNormalization`.

use slimnet_core::layers::{InstanceNorm2d, InstanceNormConfig};

use crate::error::Result;
use crate::layers::{
    ConvTranspose2d, ConvTransposeConfig, CoordMode, NearestMode, Resize2d, ResizeMode,
    ResizeTarget,
};
use crate::proto::NodeProto;

use super::attrs::Attrs;
use super::ops::{input4, pair, size};
use super::{Importer, Val};

pub(crate) fn conv_transpose(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = input4(imp, n)?;
    let w = imp.konst(n, 1)?;
    let b = imp.konst_opt(n, 2)?;
    let a = Attrs::of(n);
    let dims = w.dims.clone();
    if dims.len() != 4 {
        return Err(imp.unsupported(
            n,
            format!("weight of shape {dims:?}: slimnet supports 2-D transposed convolutions"),
        ));
    }
    if let Some(k) = a.ints("kernel_shape") {
        if k != [dims[2] as i64, dims[3] as i64] {
            return Err(imp.invalid(
                n,
                format!("kernel_shape {k:?} does not match the weight {dims:?}"),
            ));
        }
    }
    let groups = size(imp, n, "group", a.int("group", 1), 1)?;
    let stride = pair(imp, n, "strides", 1, 1)?;
    let dil = pair(imp, n, "dilations", 1, 1)?;
    let out_pad = pair(imp, n, "output_padding", 0, 0)?;
    let target = match a.ints("output_shape") {
        None => None,
        Some(v) if v.len() >= 2 => {
            let t = &v[v.len() - 2..];
            Some([
                size(imp, n, "output_shape", t[0], 1)?,
                size(imp, n, "output_shape", t[1], 1)?,
            ])
        }
        Some(v) => return Err(imp.invalid(n, format!("output_shape {v:?}"))),
    };
    let auto = a.string("auto_pad", "NOTSET");
    let given = match a.ints("pads") {
        None => [0; 4],
        Some(p) if p.len() == 4 => {
            let mut out = [0; 4];
            for (o, &v) in out.iter_mut().zip(&p) {
                *o = size(imp, n, "pad", v, 0)?;
            }
            out
        }
        Some(p) => return Err(imp.unsupported(n, format!("pads {p:?}: slimnet supports 2-D ops"))),
    };
    let mut pads = [0usize; 4];
    let mut extra = out_pad;
    for i in 0..2 {
        let span = (dims[2 + i] - 1) * dil[i] + 1;
        // the full output (before pads), as ONNX computes it
        let full = (stride[i] * (s[2 + i] - 1) + out_pad[i] + span) as i64;
        let (begin, end) = match auto.as_str() {
            "SAME_UPPER" | "SAME_LOWER" if !a.has("pads") => {
                let t = target.map_or(s[2 + i] * stride[i], |t| t[i]) as i64;
                let total = full - t;
                let half = total.div_euclid(2);
                if auto == "SAME_UPPER" {
                    (half, total - half)
                } else {
                    (total - half, half)
                }
            }
            "SAME_UPPER" | "SAME_LOWER" | "VALID" | "NOTSET" | "" => {
                let begin = given[i] as i64;
                match target {
                    Some(t) => (begin, full - begin - t[i] as i64),
                    None => (begin, given[i + 2] as i64),
                }
            }
            m => return Err(imp.invalid(n, format!("unknown auto_pad `{m}`"))),
        };
        if begin < 0 {
            return Err(imp.unsupported(
                n,
                format!("an output larger than the full result at the start (pad {begin})"),
            ));
        }
        pads[i] = begin as usize;
        // an output larger than the full one at the end: more output padding
        if end < 0 {
            extra[i] += end.unsigned_abs() as usize;
        } else {
            pads[i + 2] = end as usize;
        }
    }
    let cfg = ConvTransposeConfig::new()
        .with_stride(stride[0], stride[1])
        .with_dilation(dil[0], dil[1])
        .with_pads(pads)
        .with_output_padding(extra[0], extra[1])
        .with_groups(groups);
    if s[1] != dims[0] {
        return Err(imp.invalid(
            n,
            format!("input of {} channels for a weight {dims:?}", s[1]),
        ));
    }
    let bias = b.map(|b| {
        b.tensor()
            .into_shape_with_order(ndarray::IxDyn(&[b.len()]))
            .expect("length")
    });
    let layer =
        ConvTranspose2d::new(w.tensor(), bias, cfg).map_err(|e| imp.invalid(n, e.to_string()))?;
    imp.push(n, "", Box::new(layer), x, &s)
}

/// `Resize` (opsets 10 to 25) and `Upsample` (7 to 9): nearest and (bi)linear over H and W.
pub(crate) fn resize(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = input4(imp, n)?;
    let a = Attrs::of(n);
    let legacy = n.op_type() == "Upsample" || imp.opset < 11;
    let mode = a.string("mode", "nearest");
    let linear = match mode.as_str() {
        "nearest" => false,
        "linear" | "bilinear" => true,
        m => {
            return Err(imp.unsupported(
                n,
                format!("mode `{m}`: slimnet resizes by nearest or linear interpolation"),
            ))
        }
    };
    let (coord, nearest) = if legacy {
        (CoordMode::Asymmetric, NearestMode::Simple)
    } else {
        let c = a.string("coordinate_transformation_mode", "half_pixel");
        let coord = CoordMode::from_onnx(&c)
            .ok_or_else(|| imp.unsupported(n, format!("coordinate_transformation_mode `{c}`")))?;
        let m = a.string("nearest_mode", "round_prefer_floor");
        let nearest = NearestMode::from_onnx(&m)
            .ok_or_else(|| imp.invalid(n, format!("nearest_mode `{m}`")))?;
        if a.int("antialias", 0) != 0 {
            return Err(imp.unsupported(n, "antialiased resizing"));
        }
        (coord, nearest)
    };
    let mode = if linear {
        ResizeMode::Linear
    } else {
        ResizeMode::Nearest(nearest)
    };
    // the axes the scales or sizes are given for (all four unless `axes` says otherwise)
    let axes: Vec<usize> = match a.ints("axes") {
        None => (0..4).collect(),
        Some(v) => v
            .iter()
            .map(|&i| crate::layers::axis(i, 4))
            .collect::<Option<_>>()
            .ok_or_else(|| imp.invalid(n, format!("axes {v:?} for rank 4")))?,
    };
    let (scales, sizes) = if n.op_type() == "Upsample" && imp.opset < 9 {
        let v = a
            .floats("scales")
            .ok_or_else(|| imp.invalid(n, "missing scales"))?;
        (Some(v), None)
    } else if legacy {
        (Some(imp.konst(n, 1)?.floats()), None)
    } else {
        let scales = imp.konst_opt(n, 2)?.filter(|c| c.len() > 0);
        let sizes = imp.konst_opt(n, 3)?.filter(|c| c.len() > 0);
        (scales.map(|c| c.floats()), sizes.map(|c| c.ints()))
    };
    let full = |v: &[f64], keep: f64| -> Result<[f64; 4]> {
        if v.len() != axes.len() {
            return Err(imp.invalid(n, format!("{} values for axes {axes:?}", v.len())));
        }
        let mut out = [keep; 4];
        for (&ax, &x) in axes.iter().zip(v) {
            out[ax] = x;
        }
        Ok(out)
    };
    let target = match (scales, sizes) {
        (Some(v), None) => {
            let v: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
            let f = full(&v, 1.0)?;
            if f[0] != 1.0 || f[1] != 1.0 {
                return Err(
                    imp.unsupported(n, format!("scales {f:?}: slimnet resizes H and W only"))
                );
            }
            ResizeTarget::Scales([f[2] as f32, f[3] as f32])
        }
        (None, Some(v)) => {
            let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
            let f = full(&v, -1.0)?;
            let keeps = |i: usize| f[i] == -1.0 || f[i] == s[i] as f64;
            if !keeps(0) || !keeps(1) {
                return Err(imp.unsupported(
                    n,
                    format!("sizes {f:?} for an input {s:?}: slimnet resizes H and W only"),
                ));
            }
            let hw = [2, 3].map(|i| if f[i] == -1.0 { s[i] as f64 } else { f[i] });
            if hw
                .iter()
                .any(|&v| !(1.0..=f64::from(1u32 << 24)).contains(&v))
            {
                return Err(imp.invalid(n, format!("sizes {f:?}")));
            }
            let sizes = [hw[0] as usize, hw[1] as usize];
            match a.string("keep_aspect_ratio_policy", "stretch").as_str() {
                "stretch" => ResizeTarget::Sizes(sizes),
                "not_larger" => ResizeTarget::KeepAspect { sizes, fit: true },
                "not_smaller" => ResizeTarget::KeepAspect { sizes, fit: false },
                p => return Err(imp.invalid(n, format!("keep_aspect_ratio_policy `{p}`"))),
            }
        }
        (Some(_), Some(_)) => return Err(imp.invalid(n, "both scales and sizes")),
        (None, None) => return Err(imp.invalid(n, "neither scales nor sizes")),
    };
    let layer = Resize2d::new(mode, coord, target).map_err(|e| imp.invalid(n, e.to_string()))?;
    imp.push(n, "", Box::new(layer), x, &s)
}

/// `InstanceNormalization` over the two spatial axes of NCHW input.
pub(crate) fn instance_norm(imp: &mut Importer, n: &NodeProto) -> Result<Val> {
    let (x, s) = input4(imp, n)?;
    let t = |i: usize| -> Result<slimnet_core::Tensor> {
        let c = imp.konst(n, i)?;
        let len = c.len();
        Ok(c.tensor()
            .into_shape_with_order(ndarray::IxDyn(&[len]))
            .expect("length"))
    };
    let (scale, bias) = (t(1)?, t(2)?);
    if s[1] != scale.len() || bias.len() != scale.len() {
        return Err(imp.invalid(
            n,
            format!(
                "input {s:?} with {} scales and {} shifts",
                scale.len(),
                bias.len()
            ),
        ));
    }
    let cfg = InstanceNormConfig::new(s[1]).with_eps(Attrs::of(n).float("epsilon", 1e-5));
    let layer =
        InstanceNorm2d::from_parts(cfg, scale, bias).map_err(|e| imp.invalid(n, e.to_string()))?;
    imp.push(n, "", Box::new(layer), x, &s)
}
