//! Exporters of the layers of image-to-image networks: `ConvTranspose`, `Resize` and
//! `InstanceNormalization`.

use slimnet_core::layers::{Activation, InstanceNorm2d};
use slimnet_core::value::ValueKind;

use super::attr;
use super::{ExportRegistry, LayerExport};
use crate::error::Result;
use crate::layers::{ConvTranspose2d, NearestMode, Resize2d, ResizeMode, ResizeTarget};

fn conv_transpose(l: &ConvTranspose2d, cx: &mut LayerExport<'_>) -> Result<()> {
    let c = *l.config();
    let x = cx.input_f32();
    let wt = l.weight.value();
    let w = cx.init_f32(
        "weight",
        wt.shape(),
        &wt.iter().copied().collect::<Vec<_>>(),
    );
    let mut ins = vec![x, w];
    if let Some(b) = &l.bias {
        let v: Vec<f32> = b.value().iter().copied().collect();
        ins.push(cx.init_f32("bias", &[v.len()], &v));
    }
    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
    let y = cx.node(
        "ConvTranspose",
        &refs,
        vec![
            attr::sizes("kernel_shape", &wt.shape()[2..]),
            attr::sizes("strides", &c.stride),
            attr::sizes("dilations", &c.dilation),
            attr::sizes("pads", &c.pads),
            attr::sizes("output_padding", &c.output_padding),
            attr::int("group", c.groups as i64),
        ],
    );
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

fn resize(l: &Resize2d, cx: &mut LayerExport<'_>) -> Result<()> {
    let (mode, coord, target) = l.parts();
    let (input, output) = (cx.input_shape().to_vec(), cx.output_shape().to_vec());
    let mut attrs = vec![attr::string(
        "coordinate_transformation_mode",
        coord.onnx_name(),
    )];
    match mode {
        ResizeMode::Linear => attrs.push(attr::string("mode", "linear")),
        ResizeMode::Nearest(m) => {
            attrs.push(attr::string("mode", "nearest"));
            // `Simple` rounds down when enlarging and up when shrinking: one ONNX mode for
            // both axes only when they agree
            let m = match m {
                NearestMode::Simple => {
                    let shrink = |i: usize| output[i] < input[i];
                    match (shrink(2), shrink(3)) {
                        (false, false) => NearestMode::Floor,
                        (true, true) => NearestMode::Ceil,
                        _ => {
                            return Err(cx.error(
                                "nearest `simple` rounding that enlarges one axis and shrinks the other",
                            ))
                        }
                    }
                }
                m => m,
            };
            attrs.push(attr::string("nearest_mode", m.onnx_name()));
        }
    }
    let x = cx.input_f32();
    let y = match target {
        ResizeTarget::Scales(s) => {
            let s = cx.init_f32("scales", &[4], &[1.0, 1.0, s[0], s[1]]);
            cx.node("Resize", &[&x, "", &s], attrs)
        }
        ResizeTarget::Sizes(z) | ResizeTarget::KeepAspect { sizes: z, .. } => {
            if let ResizeTarget::KeepAspect { fit, .. } = target {
                let p = if fit { "not_larger" } else { "not_smaller" };
                attrs.push(attr::string("keep_aspect_ratio_policy", p));
            }
            attrs.push(attr::ints("axes", &[2, 3]));
            let z = cx.init_i64("sizes", &[2], &[z[0] as i64, z[1] as i64]);
            cx.node("Resize", &[&x, "", "", &z], attrs)
        }
    };
    cx.set_output(y, ValueKind::F32);
    Ok(())
}

fn instance_norm(l: &InstanceNorm2d, cx: &mut LayerExport<'_>) -> Result<()> {
    let x = cx.input_f32();
    let data = |t: &slimnet_core::Tensor| t.iter().copied().collect::<Vec<f32>>();
    let s = cx.init_f32("weight", l.weight.value().shape(), &data(l.weight.value()));
    let b = cx.init_f32("bias", l.bias.value().shape(), &data(l.bias.value()));
    let y = cx.node(
        "InstanceNormalization",
        &[&x, &s, &b],
        vec![attr::float("epsilon", l.config().eps)],
    );
    match l.config().activation {
        None => {
            cx.set_output(y, ValueKind::F32);
            Ok(())
        }
        // a fused activation as the node after it
        Some(kind) => {
            let act = Activation::new(kind).map_err(|e| cx.error(e.to_string()))?;
            cx.input = super::builder::Edge {
                name: y,
                kind: ValueKind::F32,
                shape: cx.output_shape.clone(),
            };
            super::core::activation(&act, cx)
        }
    }
}

pub(super) fn register(r: &mut ExportRegistry) {
    r.register::<ConvTranspose2d>(conv_transpose);
    r.register::<Resize2d>(resize);
    r.register::<InstanceNorm2d>(instance_norm);
}
