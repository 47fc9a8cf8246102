use std::borrow::Cow;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::depthwise::{
    depthwise_backward_input, depthwise_backward_weight, depthwise_forward_unchecked,
};
use super::gemm::{sgemm_unchecked, MatRef};
use super::im2col::{col2im, im2col};
#[cfg(target_arch = "x86_64")]
use crate::aligned::AlignedF32;
use crate::error::{check_len, Result};
use crate::threads;
use crate::{Activation, ConvGeometry};

/// Runs `per_image(n, gemm_threads)` for every image, in parallel over images when the batch is
/// large enough, otherwise letting GEMM use the threads.
fn for_images<T: Send>(
    batch: usize,
    out: &mut [T],
    chunk: usize,
    per_image: impl Fn(usize, &mut [T], usize) + Sync,
) {
    let nt = threads::num_threads();
    if nt > 1 && batch >= nt {
        threads::with_pool(|| {
            out.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(n, o)| per_image(n, o, 1));
        });
    } else {
        for (n, o) in out.chunks_mut(chunk).enumerate() {
            per_image(n, o, nt);
        }
    }
}

/// Convolution forward: `out = act(conv(input, weight) + bias)`.
///
/// Shapes: `input` `[N, C, H, W]`, `weight` `[O, C/groups, kh, kw]`, `bias` `[O]`,
/// `out` `[N, O, oh, ow]`, all row-major.
///
/// The algorithm follows the shape: depthwise kernels for depthwise convolutions, a plain GEMM
/// for 1x1, Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions with at least 16 channels in and
/// out and an output of at least 8x8, larger for layers with many channels (2.25x fewer
/// multiplications; results differ from im2col by rounding only), and im2col with GEMM
/// otherwise. Winograd transforms the weights on every call; [`conv2d_forward_prepared`]
/// keeps that transform for weights that do not change.
///
/// # Errors
/// An invalid geometry or a buffer of the wrong length.
pub fn conv2d_forward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) -> Result<()> {
    check_len("conv weight", g.weight_len(), weight.len())?;
    conv_forward(g, input, weight, None, bias, act, out)
}

/// Convolution weights prepared for repeated inference: the OIHW weights and, made on first use
/// and kept, the forms the kernels transform them into (the Winograd transform; for small
/// output planes, output channels along the vector lanes; the panels of the direct kernel), so
/// that a layer whose weights stay put pays for them once (as ONNX Runtime prepacks constant
/// weights when it creates a session).
///
/// ```
/// use slimnet_kernels::dense::{conv2d_forward, conv2d_forward_prepared, ConvWeights};
/// use slimnet_kernels::{Activation, ConvGeometry};
/// let g = ConvGeometry::new(1, 16, 8, 8, 16, 3, 3).with_padding(1, 1);
/// let x: Vec<f32> = (0..g.input_len()).map(|i| (i % 7) as f32 - 3.0).collect();
/// let w = ConvWeights::new((0..g.weight_len()).map(|i| (i % 5) as f32 * 0.1).collect());
/// let (mut a, mut b) = (vec![0.0; g.output_len()], vec![0.0; g.output_len()]);
/// conv2d_forward_prepared(&g, &x, &w, None, Activation::Identity, &mut a)?;
/// conv2d_forward(&g, &x, w.weight(), None, Activation::Identity, &mut b)?;
/// assert_eq!(a, b);
/// # Ok::<(), slimnet_kernels::KernelError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConvWeights {
    weight: Vec<f32>,
    /// `(O, C)` of the transform and the transform, `[O][16][C]`.
    winograd: OnceLock<((usize, usize), Vec<f32>)>,
    /// `(O, K)` of the layout and the weights with output channels along the lanes
    /// (`lanes_x86::pack_lanes`), for small output planes.
    #[cfg(target_arch = "x86_64")]
    lanes: OnceLock<((usize, usize), AlignedF32)>,
    /// The geometry's `(O, C, kh, kw)` and the weights packed for the direct kernel
    /// (`direct_x86::pack_direct`).
    #[cfg(target_arch = "x86_64")]
    direct: OnceLock<([usize; 4], Vec<f32>)>,
}

impl ConvWeights {
    /// Wraps OIHW weights.
    pub fn new(weight: Vec<f32>) -> Self {
        ConvWeights {
            weight,
            winograd: OnceLock::new(),
            #[cfg(target_arch = "x86_64")]
            lanes: OnceLock::new(),
            #[cfg(target_arch = "x86_64")]
            direct: OnceLock::new(),
        }
    }

    /// The OIHW weights.
    pub fn weight(&self) -> &[f32] {
        &self.weight
    }

    /// Whether [`conv2d_forward_prepared`] has something to keep for a convolution of geometry
    /// `g`: a form of the weights that [`conv2d_forward`] would make anew on every call (the
    /// Winograd transform, output channels along the lanes, or the direct kernel's panels).
    /// When false, both calls do the same work.
    pub fn pays(g: &ConvGeometry) -> bool {
        if g.is_depthwise() {
            return false;
        }
        if super::winograd::winograd_pays(g, true) {
            return true;
        }
        #[cfg(target_arch = "x86_64")]
        if g.groups == 1 && super::lanes_x86::lanes_fit(g.out_channels, g.out_h() * g.out_w()) {
            return true;
        }
        #[cfg(target_arch = "x86_64")]
        if super::direct_x86::direct_fits(g) {
            return true;
        }
        false
    }

    /// The Winograd transform for `g`, made on first use; a geometry that splits the same
    /// weights into other channel counts gets a fresh one.
    fn winograd(&self, g: &ConvGeometry) -> Cow<'_, [f32]> {
        let oc = (g.out_channels, g.in_channels);
        let make = || super::winograd::transform_weights(g, &self.weight);
        let (key, u) = self.winograd.get_or_init(|| (oc, make()));
        if *key == oc {
            Cow::Borrowed(u)
        } else {
            Cow::Owned(make())
        }
    }

    /// The weights with output channels along the lanes for `[O, K]`, made on first use (a
    /// different shape gets a fresh copy).
    #[cfg(target_arch = "x86_64")]
    fn lanes(&self, o: usize, k: usize) -> Cow<'_, [f32]> {
        let make = || super::lanes_x86::pack_lanes(&self.weight, o, k);
        let (key, wt) = self.lanes.get_or_init(|| ((o, k), make()));
        if *key == (o, k) {
            Cow::Borrowed(wt)
        } else {
            // (a geometry other than the kept one: correct, though no longer line-aligned)
            Cow::Owned(make().to_vec())
        }
    }

    /// The weights packed for the direct kernel, made on first use (a geometry with other
    /// channel or kernel sizes gets a fresh copy).
    #[cfg(target_arch = "x86_64")]
    fn direct(&self, g: &ConvGeometry) -> Cow<'_, [f32]> {
        let key = [g.out_channels, g.in_channels, g.kernel_h, g.kernel_w];
        let make = || super::direct_x86::pack_direct(g, &self.weight);
        let (k, ap) = self.direct.get_or_init(|| (key, make()));
        if *k == key {
            Cow::Borrowed(ap)
        } else {
            Cow::Owned(make())
        }
    }
}

/// [`conv2d_forward`] with prepared weights: the same result up to rounding, without
/// transforming the weights again on every call. With AVX-512, layers of at least 64 output
/// channels and at most 64 output pixels also run on a layout of the weights with output
/// channels along the vector lanes, which the plain call would have to make every time.
///
/// # Errors
/// An invalid geometry or a buffer of the wrong length.
pub fn conv2d_forward_prepared(
    g: &ConvGeometry,
    input: &[f32],
    weight: &ConvWeights,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) -> Result<()> {
    check_len("conv weight", g.weight_len(), weight.weight.len())?;
    conv_forward(g, input, &weight.weight, Some(weight), bias, act, out)
}

/// Both forward entry points, once the weight's length is checked.
fn conv_forward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    prepared: Option<&ConvWeights>,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) -> Result<()> {
    g.validate()?;
    check_len("conv input", g.input_len(), input.len())?;
    check_len("conv output", g.output_len(), out.len())?;
    if let Some(b) = bias {
        check_len("conv bias", g.out_channels, b.len())?;
    }
    if g.batch == 0 || g.out_channels == 0 {
        return Ok(());
    }
    if g.is_depthwise() {
        depthwise_forward_unchecked(g, input, weight, bias, act, out);
        return Ok(());
    }
    let whole_images = g.batch >= threads::num_threads();
    let per_thread = threads::per_thread_macs(false, whole_images);
    threads::for_work(g.macs(), per_thread, || {
        conv_forward_threads(g, input, weight, prepared, bias, act, out)
    });
    Ok(())
}

/// [`conv_forward`] after its checks, for a convolution that is not depthwise.
fn conv_forward_threads(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    prepared: Option<&ConvWeights>,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) {
    let plane = g.out_h() * g.out_w();
    let in_img = g.in_channels * g.in_h * g.in_w;
    let cig = g.in_channels / g.groups;
    let cog = g.out_channels / g.groups;
    let kk = cig * g.kernel_h * g.kernel_w;
    let one = g.single();
    let pointwise = g.is_pointwise();
    #[cfg(target_arch = "x86_64")]
    let blocked = !pointwise && super::sgemm_x86::conv_blocked_fits(g);
    let line_winograd = super::winograd_line::winograd_line_fits(g);
    #[cfg(target_arch = "x86_64")]
    let direct = super::direct_x86::direct_fits(g).then(|| match prepared {
        Some(p) => p.direct(g),
        None => Cow::Owned(super::direct_x86::pack_direct(g, weight)),
    });
    let winograd = super::winograd::winograd_pays(g, prepared.is_some()).then(|| match prepared {
        Some(p) => p.winograd(g),
        None => Cow::Owned(super::winograd::transform_weights(g, weight)),
    });
    // prepared weights of a layer with a small output plane: output channels along the lanes
    #[cfg(target_arch = "x86_64")]
    let lanes = match prepared {
        Some(p)
            if winograd.is_none()
                && g.groups == 1
                && super::lanes_x86::lanes_fit(g.out_channels, plane) =>
        {
            Some(p.lanes(g.out_channels, kk))
        }
        _ => None,
    };
    // where the lanes kernel reads its im2col values: the input itself (1x1, stride 1), the
    // input split into stride phases (dilation 1: nothing unfolded), or an im2col copy
    #[cfg(target_arch = "x86_64")]
    let lane_cols = lanes.as_ref().map(|_| {
        if pointwise {
            (None, super::lanes_x86::Cols::matrix(kk, plane))
        } else if g.dilation == (1, 1) {
            let ph = super::im2col::Phases::of(&one);
            (Some(ph), super::lanes_x86::Cols::phases(&one, &ph))
        } else {
            (None, super::lanes_x86::Cols::matrix(kk, plane))
        }
    });
    for_images(g.batch, out, g.out_channels * plane, |n, o, nt| {
        let x = &input[n * in_img..(n + 1) * in_img];
        if let Some(u) = &winograd {
            super::winograd::conv_winograd(&one, x, u, (bias, act), o, nt);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if let (Some(wt), Some((phases, cols))) = (&lanes, &lane_cols) {
            let oc = g.out_channels;
            let ep = (bias, act);
            if pointwise {
                super::lanes_x86::conv_lanes(wt, oc, x, cols, ep, o, nt);
            } else if let Some(ph) = phases {
                crate::scratch::with_f32(g.in_channels * ph.channel_len(), |xp| {
                    ph.split(x, &one, xp);
                    super::lanes_x86::conv_lanes(wt, oc, xp, cols, ep, o, nt);
                });
            } else {
                crate::scratch::with_f32(kk * plane, |col| {
                    im2col(&one, x, col);
                    super::lanes_x86::conv_lanes(wt, oc, col, cols, ep, o, nt);
                });
            }
            return;
        }
        if line_winograd {
            super::winograd_line::conv_winograd_line(&one, x, weight, o, nt);
            epilogue(o, plane, bias, act);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(ap) = &direct {
            super::direct_x86::conv_direct(&one, x, ap, (bias, act), o, nt);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if blocked {
            super::sgemm_x86::conv_blocked_avx512(&one, x, weight, o, nt);
            epilogue(o, plane, bias, act);
            return;
        }
        let mut run = |col: &[f32]| {
            for grp in 0..g.groups {
                let w = MatRef::row_major(&weight[grp * cog * kk..(grp + 1) * cog * kk], cog, kk)
                    .expect("weight slice has cog*kk elements");
                let c =
                    MatRef::row_major(&col[grp * kk * plane..(grp + 1) * kk * plane], kk, plane)
                        .expect("col slice has kk*plane elements");
                sgemm_unchecked(
                    1.0,
                    w,
                    c,
                    0.0,
                    &mut o[grp * cog * plane..(grp + 1) * cog * plane],
                    nt,
                );
            }
        };
        if pointwise {
            run(x);
        } else if g.groups == 1 && kk * plane > BANDED_IM2COL {
            banded(&one, x, weight, o, nt);
        } else {
            crate::scratch::with_f32(g.in_channels * g.kernel_h * g.kernel_w * plane, |col| {
                im2col(&one, x, col);
                run(col);
            });
        }
        epilogue(o, plane, bias, act);
    });
}

/// Values of an im2col panel above which a convolution of one group unfolds its image in bands
/// of output rows ([`banded`]) rather than whole (4 MB).
const BANDED_IM2COL: usize = 1 << 20;

/// One image of a convolution of one group (no bias or activation) for layers whose whole
/// im2col panel would not stay in cache (without AVX-512, whose own blocked kernel does the
/// same): bands of output rows (a panel of about 1 MB each) are unfolded, multiplied into a
/// small buffer, and copied into their columns of `out` `[O, oh * ow]`.
fn banded(g: &ConvGeometry, x: &[f32], weight: &[f32], out: &mut [f32], nt: usize) {
    let (oh, ow, o) = (g.out_h(), g.out_w(), g.out_channels);
    let (plane, kk) = (oh * ow, g.in_channels * g.kernel_h * g.kernel_w);
    let w = MatRef::row_major(&weight[..o * kk], o, kk).expect("weight slice has O*K elements");
    let rows = ((1 << 18) / (kk * ow)).clamp(1, oh);
    crate::scratch::with_f32(rows * ow * (kk + o), |buf| {
        let (col, tmp) = buf.split_at_mut(rows * ow * kk);
        for y0 in (0..oh).step_by(rows) {
            let y1 = (y0 + rows).min(oh);
            let nb = (y1 - y0) * ow;
            super::im2col::im2col_rows(g, x, y0, y1, &mut col[..kk * nb]);
            let c = MatRef::row_major(&col[..kk * nb], kk, nb).expect("band length");
            sgemm_unchecked(1.0, w, c, 0.0, &mut tmp[..o * nb], nt);
            for (r, band) in tmp[..o * nb].chunks_exact(nb).enumerate() {
                out[r * plane + y0 * ow..][..nb].copy_from_slice(band);
            }
        }
    });
}

/// Adds the bias per channel and applies the activation over one image `[O, plane]`.
pub(crate) fn epilogue(o: &mut [f32], plane: usize, bias: Option<&[f32]>, act: Activation) {
    if bias.is_none() && act == Activation::Identity {
        return;
    }
    for (ch, row) in o.chunks_mut(plane).enumerate() {
        let b = bias.map_or(0.0, |b| b[ch]);
        for v in row.iter_mut() {
            *v = act.apply(*v + b);
        }
    }
}

/// Convolution input gradient: `grad_input = conv_transpose(grad_out, weight)`.
///
/// `grad_input` `[N, C, H, W]` is overwritten.
///
/// # Errors
/// An invalid geometry or a buffer of the wrong length.
pub fn conv2d_backward_input(
    g: &ConvGeometry,
    grad_out: &[f32],
    weight: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    g.validate()?;
    check_len("conv grad_out", g.output_len(), grad_out.len())?;
    check_len("conv weight", g.weight_len(), weight.len())?;
    check_len("conv grad_input", g.input_len(), grad_input.len())?;
    grad_input.fill(0.0);
    if g.batch == 0 || g.out_channels == 0 {
        return Ok(());
    }
    if g.is_depthwise() {
        depthwise_backward_input(g, grad_out, weight, grad_input);
        return Ok(());
    }
    let plane = g.out_h() * g.out_w();
    let in_img = g.in_channels * g.in_h * g.in_w;
    let cig = g.in_channels / g.groups;
    let cog = g.out_channels / g.groups;
    let kk = cig * g.kernel_h * g.kernel_w;
    let one = g.single();
    let pointwise = g.is_pointwise();
    for_images(g.batch, grad_input, in_img, |n, dx, nt| {
        let dy = &grad_out[n * g.out_channels * plane..(n + 1) * g.out_channels * plane];
        let run = |dcol: &mut [f32]| {
            for grp in 0..g.groups {
                let w = MatRef::row_major(&weight[grp * cog * kk..(grp + 1) * cog * kk], cog, kk)
                    .expect("weight slice")
                    .t();
                let d =
                    MatRef::row_major(&dy[grp * cog * plane..(grp + 1) * cog * plane], cog, plane)
                        .expect("grad slice");
                sgemm_unchecked(
                    1.0,
                    w,
                    d,
                    0.0,
                    &mut dcol[grp * kk * plane..(grp + 1) * kk * plane],
                    nt,
                );
            }
        };
        if pointwise {
            run(dx);
        } else {
            crate::scratch::with_f32(g.in_channels * g.kernel_h * g.kernel_w * plane, |dcol| {
                run(dcol);
                col2im(&one, dcol, dx);
            });
        }
    });
    Ok(())
}

/// Convolution weight (and bias) gradients, accumulated: `grad_weight += dW`, `grad_bias += db`.
///
/// # Errors
/// An invalid geometry or a buffer of the wrong length.
pub fn conv2d_backward_weight(
    g: &ConvGeometry,
    input: &[f32],
    grad_out: &[f32],
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    g.validate()?;
    check_len("conv input", g.input_len(), input.len())?;
    check_len("conv grad_out", g.output_len(), grad_out.len())?;
    check_len("conv grad_weight", g.weight_len(), grad_weight.len())?;
    let plane = g.out_h() * g.out_w();
    if let Some(db) = grad_bias {
        check_len("conv grad_bias", g.out_channels, db.len())?;
        for img in grad_out.chunks(g.out_channels * plane.max(1)) {
            for (ch, row) in img.chunks(plane.max(1)).enumerate() {
                db[ch] += row.iter().sum::<f32>();
            }
        }
    }
    if g.batch == 0 || g.out_channels == 0 {
        return Ok(());
    }
    if g.is_depthwise() {
        depthwise_backward_weight(g, input, grad_out, grad_weight);
        return Ok(());
    }
    let in_img = g.in_channels * g.in_h * g.in_w;
    let cig = g.in_channels / g.groups;
    let cog = g.out_channels / g.groups;
    let kk = cig * g.kernel_h * g.kernel_w;
    let one = g.single();
    let pointwise = g.is_pointwise();
    let per_image = |n: usize, acc: &mut [f32], nt: usize| {
        let x = &input[n * in_img..(n + 1) * in_img];
        let dy = &grad_out[n * g.out_channels * plane..(n + 1) * g.out_channels * plane];
        let run = |col: &[f32], acc: &mut [f32]| {
            for grp in 0..g.groups {
                let d =
                    MatRef::row_major(&dy[grp * cog * plane..(grp + 1) * cog * plane], cog, plane)
                        .expect("grad slice");
                let c =
                    MatRef::row_major(&col[grp * kk * plane..(grp + 1) * kk * plane], kk, plane)
                        .expect("col slice")
                        .t();
                sgemm_unchecked(
                    1.0,
                    d,
                    c,
                    1.0,
                    &mut acc[grp * cog * kk..(grp + 1) * cog * kk],
                    nt,
                );
            }
        };
        if pointwise {
            run(x, acc);
        } else {
            crate::scratch::with_f32(g.in_channels * g.kernel_h * g.kernel_w * plane, |col| {
                im2col(&one, x, col);
                run(col, acc);
            });
        }
    };
    let nt = threads::num_threads();
    if nt > 1 && g.batch >= nt {
        let chunk = g.batch.div_ceil(nt);
        let partials: Vec<Vec<f32>> = threads::with_pool(|| {
            (0..nt)
                .into_par_iter()
                .map(|t| {
                    let mut acc = vec![0.0f32; grad_weight.len()];
                    for n in t * chunk..((t + 1) * chunk).min(g.batch) {
                        per_image(n, &mut acc, 1);
                    }
                    acc
                })
                .collect()
        });
        for p in partials {
            for (a, b) in grad_weight.iter_mut().zip(p) {
                *a += b;
            }
        }
    } else {
        for n in 0..g.batch {
            per_image(n, grad_weight, nt);
        }
    }
    Ok(())
}

/// Whether `SLIMNET_CONV=im2col` is set (read once): convolutions then skip Winograd and the
/// direct kernel and always unfold with im2col, to compare the paths on one build.
pub(crate) fn plain_im2col_forced() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    *OFF.get_or_init(|| std::env::var("SLIMNET_CONV").as_deref() == Ok("im2col"))
}
