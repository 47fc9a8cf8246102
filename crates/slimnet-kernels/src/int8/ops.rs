//! int8 linear, convolution and depthwise convolution with requantized or f32 outputs.

use super::gemm::{
    gemm_u8i8, gemm_u8i8_packed, interleave4, packed_kernel_fits, QMatrix, U8View, NPAD, NT,
    PANEL_SLACK,
};
use super::quant::{QuantParams, Requant};
use super::requant::{finish, multipliers};
use crate::error::{check_len, check_len2, KernelError, Result};
use crate::isa::Isa;
use crate::{threads, ConvGeometry};

/// Where an int8 kernel writes its result.
#[derive(Debug)]
#[non_exhaustive]
pub enum QOutput<'a> {
    /// Requantized u8: `clamp(zp + round((acc + bias) * s_in * s_w / s_out), lo, 255)` with
    /// the fixed-point [`Requant`](super::Requant); `lo` is the zero point when `relu`, else 0.
    U8 {
        /// Output buffer.
        out: &'a mut [u8],
        /// Output quantization.
        params: QuantParams,
        /// i32 bias per output channel, in units of `s_in * s_w[channel]`.
        bias: Option<&'a [i32]>,
        /// Clamp at real zero (fused ReLU).
        relu: bool,
    },
    /// Dequantized f32: `acc * s_in * s_w + bias`.
    F32 {
        /// Output buffer.
        out: &'a mut [f32],
        /// f32 bias per output channel.
        bias: Option<&'a [f32]>,
    },
}

impl<'a> QOutput<'a> {
    pub(crate) fn len(&self) -> usize {
        match self {
            QOutput::U8 { out, .. } => out.len(),
            QOutput::F32 { out, .. } => out.len(),
        }
    }

    /// The output cut into consecutive parts of `len` elements (the last may be shorter),
    /// each with the same quantization, bias and activation.
    fn chunks(self, len: usize) -> Vec<QOutput<'a>> {
        match self {
            QOutput::U8 {
                out,
                params,
                bias,
                relu,
            } => out
                .chunks_mut(len.max(1))
                .map(|out| QOutput::U8 {
                    out,
                    params,
                    bias,
                    relu,
                })
                .collect(),
            QOutput::F32 { out, bias } => out
                .chunks_mut(len.max(1))
                .map(|out| QOutput::F32 { out, bias })
                .collect(),
        }
    }

    pub(crate) fn check_bias(&self, channels: usize) -> Result<()> {
        match self {
            QOutput::U8 { bias: Some(b), .. } => check_len("int8 bias", channels, b.len()),
            QOutput::F32 { bias: Some(b), .. } => check_len("int8 bias", channels, b.len()),
            _ => Ok(()),
        }
    }
}

/// int8 linear: `y = x * W^T` with `x` u8 `[batch, in]` (quantized by `xq`), `W` a
/// [`QMatrix`] `[out, in]`, and `y` `[batch, out]` written as `out` says.
///
/// # Errors
/// Wrong lengths, or a requantization scale out of range.
///
/// ```
/// use slimnet_kernels::int8::{qlinear_forward, QMatrix, QOutput, QuantParams};
/// let w = QMatrix::new(1, 2, vec![2, -1], vec![0.5])?;
/// let xq = QuantParams { scale: 0.1, zero_point: 10 };
/// let mut y = [0.0f32];
/// // x = (20 - 10) * 0.1 = 1.0 and (15 - 10) * 0.1 = 0.5; y = 1.0 * 1.0 + 0.5 * -0.5
/// qlinear_forward(&w, 1, &[20, 15], xq, QOutput::F32 { out: &mut y, bias: None })?;
/// assert!((y[0] - 0.75).abs() < 1e-6);
/// # Ok::<(), slimnet_kernels::KernelError>(())
/// ```
pub fn qlinear_forward(
    w: &QMatrix,
    batch: usize,
    x: &[u8],
    xq: QuantParams,
    out: QOutput<'_>,
) -> Result<()> {
    qlinear_forward_with_isa(Isa::detected(), w, batch, x, xq, out)
}

/// [`qlinear_forward`] restricted to kernels of level `isa` or below (for tests and benches).
///
/// # Errors
/// As [`qlinear_forward`].
pub fn qlinear_forward_with_isa(
    isa: Isa,
    w: &QMatrix,
    batch: usize,
    x: &[u8],
    xq: QuantParams,
    mut out: QOutput<'_>,
) -> Result<()> {
    let (o, i) = (w.rows(), w.cols());
    check_len2("int8 linear input", batch, i, x.len())?;
    check_len2("int8 linear output", batch, o, out.len())?;
    out.check_bias(o)?;
    // a matrix-vector product is bound by memory, not multiply-adds: the f32 threshold
    if let Some(n) = threads::fewer_for(batch * o * i, threads::MIN_PARALLEL_MACS) {
        return threads::with(n, || qlinear_forward_with_isa(isa, w, batch, x, xq, out));
    }
    let mult = multipliers(xq, w.scales(), w.multipliers(), &out)?;
    let a = U8View {
        data: x,
        k: i,
        n: batch,
        rs: 1,
        cs: i,
    };
    crate::scratch::with(&crate::scratch::I32_A, |acc| {
        let acc = crate::scratch::sized(acc, o * batch);
        gemm_u8i8(isa, w, &a, xq.zero_point, acc);
        finish(isa, acc, o, batch, xq, w.scales(), &mult, &mut out, 0, true);
    });
    Ok(())
}

/// Unfolds one u8 image `[C, H, W]` into columns `[C * kh * kw, oh * ow]`, padding with `pad`.
pub(crate) fn im2col_u8(g: &ConvGeometry, image: &[u8], pad: u8, col: &mut [u8]) {
    let plane = g.out_h() * g.out_w();
    let rows = g.in_channels * g.kernel_h * g.kernel_w;
    for (k, dst) in col[..rows * plane].chunks_exact_mut(plane).enumerate() {
        im2col_u8_row(g, image, k, pad, dst);
    }
}

/// [`im2col_u8`] straight into the tile-major panel that [`gemm::pack_a`] would make of its
/// result (see there, slack included), four rows at a time through a small buffer that stays
/// in cache, so the full column matrix is never written. Returns the padded column count.
///
/// [`gemm::pack_a`]: super::gemm::pack_a
pub(crate) fn im2col_pack_u8(g: &ConvGeometry, image: &[u8], pad: u8, out: &mut Vec<u8>) -> usize {
    let plane = g.out_h() * g.out_w();
    let k = g.in_channels * g.kernel_h * g.kernel_w;
    let npad = plane.div_ceil(NPAD) * NPAD;
    let k4 = k.div_ceil(4);
    let out = crate::scratch::sized(out, k4 * npad * 4 + PANEL_SLACK);
    let phased = phases_apply(g);
    crate::scratch::with(&crate::scratch::U8_D, |phases| {
        if phased {
            split_phases(g, image, pad, phases);
        }
        pack_rows(g, image, phases, pad, out, phased)
    });
    npad
}

/// The rows of [`im2col_pack_u8`], from the image or (`phased`) its stride-2 phases.
fn pack_rows(g: &ConvGeometry, image: &[u8], phases: &[u8], pad: u8, out: &mut [u8], phased: bool) {
    let plane = g.out_h() * g.out_w();
    let k = g.in_channels * g.kernel_h * g.kernel_w;
    let npad = plane.div_ceil(NPAD) * NPAD;
    let k4 = k.div_ceil(4);
    crate::scratch::with(&crate::scratch::U8_A, |quad| {
        let quad = crate::scratch::sized(quad, 4 * plane);
        for kq in 0..k4 {
            for (t, row) in quad.chunks_exact_mut(plane).enumerate() {
                let kk = 4 * kq + t;
                if kk < k && phased {
                    im2col_phase_row(g, phases, kk, pad, row);
                } else if kk < k {
                    im2col_u8_row(g, image, kk, pad, row);
                } else {
                    // past the last row, as `pack_a` pads
                    row.fill(0);
                }
            }
            for j0 in (0..npad).step_by(NT) {
                let wt = NT.min(npad - j0);
                let valid = wt.min(plane.saturating_sub(j0));
                let base = j0 * k4 * 4 + kq * wt * 4;
                let dst = &mut out[base..base + wt * 4];
                let rows: [&[u8]; 4] = std::array::from_fn(|t| &quad[t * plane + j0..][..valid]);
                interleave4(rows, &mut dst[..4 * valid]);
                dst[4 * valid..].fill(0);
            }
        }
    });
}

/// Whether the unfolded rows of `g` are read from the image's stride-2 phases
/// ([`split_phases`]): stride 2 both ways, no dilation, and output rows as wide as a phase
/// (3x3 with padding 1, or 1x1 without), so that every unfolded row is one shifted copy of a
/// phase instead of a gather of every other byte, row by row.
fn phases_apply(g: &ConvGeometry) -> bool {
    g.stride == (2, 2) && g.dilation == (1, 1) && g.out_w() == g.in_w.div_ceil(2)
}

/// Splits each channel of `image` into its four stride-2 phases, `phases[c][2 * py + px]` the
/// plane of rows `py, py + 2, ...` and columns `px, px + 2, ...`, each `ceil(h / 2) x
/// ceil(w / 2)` bytes; the odd phases of an odd-sized image end in a row or column of `pad`.
fn split_phases(g: &ConvGeometry, image: &[u8], pad: u8, phases: &mut Vec<u8>) {
    let (h, w) = (g.in_h, g.in_w);
    let (ph, pw) = (h.div_ceil(2), w.div_ceil(2));
    let phases = crate::scratch::sized(phases, g.in_channels * 4 * ph * pw);
    if h % 2 == 1 || w % 2 == 1 {
        phases.fill(pad);
    }
    // a 1x1 kernel without padding reads only the even rows and columns
    let all = g.kernel_h * g.kernel_w > 1 || g.padding != (0, 0);
    deinterleave_phases(image, (h, w), all, phases).expect("infallible");
}

crate::isa::vectorized! {
/// The body of [`split_phases`] (compiled per level, so the byte deinterleave vectorizes);
/// without `all`, only the even-even phase is written.
fn deinterleave_phases(image: &[u8], hw: (usize, usize), all: bool, phases: &mut [u8]) {
    let (h, w) = hw;
    let (ph, pw) = (h.div_ceil(2), w.div_ceil(2));
    for (img, four) in image
        .chunks_exact(h * w)
        .zip(phases.chunks_exact_mut(4 * ph * pw))
    {
        for (y, row) in img.chunks_exact(w).enumerate() {
            let (py, sy) = (y % 2, y / 2);
            if py == 1 && !all {
                continue;
            }
            let (even, odd) = four[2 * py * ph * pw..(2 * py + 2) * ph * pw].split_at_mut(ph * pw);
            let (even, odd) = (&mut even[sy * pw..][..pw], &mut odd[sy * pw..][..pw]);
            let n = w / 2;
            let (row2, even2, odd2) = (&row[..2 * n], &mut even[..n], &mut odd[..n]);
            if all {
                for j in 0..n {
                    even2[j] = row2[2 * j];
                    odd2[j] = row2[2 * j + 1];
                }
            } else {
                for j in 0..n {
                    even2[j] = row2[2 * j];
                }
            }
            if w % 2 == 1 {
                even[pw - 1] = row[w - 1];
            }
        }
    }
    Ok(())
}
}

/// Row `k` of [`im2col_u8`] for a geometry where [`phases_apply`], from the phases that
/// [`split_phases`] made: input pixel `(2 oy + ki - pad_y, 2 ox + kj - pad_x)` is pixel
/// `(oy + dy, ox + dx)` of one phase, so the row is that phase shifted, one flat copy over the
/// valid output rows (its rows are as wide as the output's), with the columns that wrapped
/// across a row edge set back to `pad`.
fn im2col_phase_row(g: &ConvGeometry, phases: &[u8], k: usize, pad: u8, dst: &mut [u8]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (ph, pw) = (g.in_h.div_ceil(2), g.in_w.div_ceil(2));
    let taps = g.kernel_h * g.kernel_w;
    let (c, ki, kj) = (k / taps, k % taps / g.kernel_w, k % g.kernel_w);
    let ry = ki as isize - g.padding.0 as isize;
    let rx = kj as isize - g.padding.1 as isize;
    let (py, dy) = (ry.rem_euclid(2) as usize, ry.div_euclid(2));
    let (px, dx) = (rx.rem_euclid(2) as usize, rx.div_euclid(2));
    let src = &phases[(4 * c + 2 * py + px) * ph * pw..][..ph * pw];
    dst.fill(pad);
    // output rows whose source row oy + dy lies in the phase
    let y0 = (-dy).max(0) as usize;
    let y1 = (ph as isize - dy).clamp(0, oh as isize) as usize;
    if y0 >= y1 {
        return;
    }
    // dst[i] = src[i + shift] over the valid rows, clipped to the phase
    let shift = dy * pw as isize + dx;
    let lo = (y0 * ow) as isize;
    let hi = (y1 * ow) as isize;
    let (lo, hi) = (lo.max(-shift), hi.min((ph * pw) as isize - shift));
    if lo < hi {
        let (lo, hi) = (lo as usize, hi as usize);
        let from = (lo as isize + shift) as usize;
        dst[lo..hi].copy_from_slice(&src[from..from + (hi - lo)]);
    }
    // columns whose source column ox + dx falls outside the phase
    let valid = &mut dst[y0 * ow..y1 * ow];
    let (xlo, xhi) = (
        (-dx).clamp(0, ow as isize) as usize,
        (pw as isize - dx).clamp(0, ow as isize) as usize,
    );
    for x in (0..xlo).chain(xhi..ow) {
        for v in valid[x..].iter_mut().step_by(ow) {
            *v = pad;
        }
    }
}

/// Row `k` (channel `k / (kh * kw)`, tap `k % (kh * kw)`) of [`im2col_u8`] into `dst`
/// (`oh * ow` bytes).
///
/// The row is first set to `pad` in one pass, then only the valid spans are copied: padding
/// spans are one or two bytes wide, and filling them one by one costs more than the copies.
fn im2col_u8_row(g: &ConvGeometry, image: &[u8], k: usize, pad: u8, dst: &mut [u8]) {
    let (oh, ow, h, w) = (g.out_h(), g.out_w(), g.in_h, g.in_w);
    let taps = g.kernel_h * g.kernel_w;
    let (c, ki, kj) = (k / taps, k % taps / g.kernel_w, k % g.kernel_w);
    let img = &image[c * h * w..(c + 1) * h * w];
    dst.fill(pad);
    if g.stride == (1, 1) && g.dilation == (1, 1) && ow == w {
        im2col_row_same(g, img, ki, kj, pad, dst);
        return;
    }
    let off_x = (kj * g.dilation.1) as isize - g.padding.1 as isize;
    let (xlo, xhi) = crate::geometry::valid_range(ow, g.stride.1, off_x, w);
    if xlo >= xhi {
        return;
    }
    let x0 = ((xlo * g.stride.1) as isize + off_x) as usize;
    for oy in 0..oh {
        let iy = (oy * g.stride.0 + ki * g.dilation.0) as isize - g.padding.0 as isize;
        if iy < 0 || iy >= h as isize {
            continue;
        }
        let src = &img[iy as usize * w + x0..(iy as usize + 1) * w];
        let d = &mut dst[oy * ow + xlo..oy * ow + xhi];
        if g.stride.1 == 1 {
            d.copy_from_slice(&src[..d.len()]);
        } else {
            let st = g.stride.1;
            // the last valid output column reads input column x0 + (len - 1) * st
            let src = &src[..(d.len() - 1) * st + 1];
            for (i, v) in d.iter_mut().enumerate() {
                // SAFETY: i < d.len(), so i * st <= (d.len() - 1) * st < src.len().
                *v = unsafe { *src.get_unchecked(i * st) };
            }
        }
    }
}

/// One im2col row for stride 1, dilation 1 and `ow == w`, into a row already set to `pad`:
/// the valid output rows are one shifted copy of the image, then the few edge columns the
/// flat copy wrapped into are set back to `pad`.
fn im2col_row_same(g: &ConvGeometry, img: &[u8], ki: usize, kj: usize, pad: u8, dst: &mut [u8]) {
    let (oh, ow, h, w) = (g.out_h(), g.out_w(), g.in_h, g.in_w);
    let off_y = ki as isize - g.padding.0 as isize;
    let off_x = kj as isize - g.padding.1 as isize;
    let (ylo, yhi) = crate::geometry::valid_range(oh, 1, off_y, h);
    let (xlo, xhi) = crate::geometry::valid_range(ow, 1, off_x, w);
    if ylo >= yhi {
        return;
    }
    // dst[oy * ow + ox] = img[(oy + off_y) * w + ox + off_x] over the valid rows, as one copy
    // of the flat range (entries that wrap across a row edge are fixed below)
    let d0 = ylo * ow;
    let s0 = (ylo as isize + off_y) * w as isize + off_x;
    let len = (yhi - ylo) * ow;
    let (mut d, mut s, mut l) = (d0, s0, len);
    if s < 0 {
        d += (-s) as usize;
        l -= (-s) as usize;
        s = 0;
    }
    let l = l.min(img.len() - s as usize);
    dst[d..d + l].copy_from_slice(&img[s as usize..s as usize + l]);
    let valid = &mut dst[ylo * ow..yhi * ow];
    for x in (0..xlo).chain(xhi..ow) {
        for v in valid[x..].iter_mut().step_by(ow) {
            *v = pad;
        }
    }
}

/// int8 convolution (groups 1) on u8 im2col columns, padded with the activation zero point.
///
/// Shapes: `input` u8 `[N, C, H, W]`, `w` [`QMatrix`] `[O, C * kh * kw]` (an OIHW weight
/// flattened), output `[N, O, oh, ow]` written as `out` says.
///
/// # Errors
/// An invalid geometry, `groups != 1`, mismatched shapes or lengths, or a requantization scale
/// out of range.
pub fn qconv2d_forward(
    g: &ConvGeometry,
    input: &[u8],
    xq: QuantParams,
    w: &QMatrix,
    out: QOutput<'_>,
) -> Result<()> {
    qconv2d_forward_with_isa(Isa::detected(), g, input, xq, w, out)
}

/// [`qconv2d_forward`] restricted to kernels of level `isa` or below.
///
/// # Errors
/// As [`qconv2d_forward`].
pub fn qconv2d_forward_with_isa(
    isa: Isa,
    g: &ConvGeometry,
    input: &[u8],
    xq: QuantParams,
    w: &QMatrix,
    mut out: QOutput<'_>,
) -> Result<()> {
    check_conv(ConvNames::DENSE, g, (w.rows(), w.cols()), input.len(), &out)?;
    let per_thread = threads::per_thread_macs(true, g.batch > 1);
    if let Some(n) = threads::fewer_for(g.macs(), per_thread) {
        return threads::with(n, || qconv2d_forward_with_isa(isa, g, input, xq, w, out));
    }
    let groups = image_groups(g);
    if groups > 1 {
        return in_image_groups(g, groups, input, out, |g, x, o| {
            qconv2d_forward_with_isa(isa, g, x, xq, w, o)
        });
    }
    let mult = multipliers(xq, w.scales(), w.multipliers(), &out)?;
    let kk = g.in_channels * g.kernel_h * g.kernel_w;
    let plane = g.out_h() * g.out_w();
    let one = ConvGeometry { batch: 1, ..*g };
    let (sc, mult) = (w.scales(), &mult[..]);
    let pointwise = g.kernel_h == 1 && g.kernel_w == 1 && g.stride == (1, 1) && g.padding == (0, 0);
    #[cfg(target_arch = "x86_64")]
    if isa.or_supported() >= Isa::Amx && super::amx::direct_fits(g) {
        let wd = w.amx_tap_major(g.kernel_h * g.kernel_w);
        each_image(isa, g, input, xq, (sc, mult), &mut out, |x, acc| {
            super::amx::conv_direct(&one, x, xq.zero_point, w, &wd, acc)
        });
        return Ok(());
    }
    // straight from the image in channel quads: stride 2 with VNNI, strides 1 and 2 without
    #[cfg(target_arch = "x86_64")]
    if let Some(plan) = super::direct::quads_plan(isa, g, w, &out) {
        super::direct::conv_quads(plan, g, input, xq.zero_point, w, mult, &mut out);
        return Ok(());
    }
    // stride-1 layers: unfolded from a padded copy, without per-row work
    if packed_kernel_fits(isa) && super::direct::preferred(isa, g) {
        super::direct::conv_dense(isa, g, input, xq, w, mult, &mut out);
        return Ok(());
    }
    // with a SIMD kernel, spatial convolutions unfold straight into the packed panel
    let fused = !pointwise && plane > 1 && packed_kernel_fits(isa);
    if fused {
        crate::scratch::with(&crate::scratch::U8_B, |ap| {
            each_image(isa, g, input, xq, (sc, mult), &mut out, |x, acc| {
                let npad = im2col_pack_u8(&one, x, xq.zero_point, ap);
                gemm_u8i8_packed(isa, w, ap, npad, plane, xq.zero_point, acc);
            })
        });
        return Ok(());
    }
    crate::scratch::with(&crate::scratch::U8_A, |col| {
        let col = crate::scratch::sized(col, if pointwise { 0 } else { kk * plane });
        each_image(isa, g, input, xq, (sc, mult), &mut out, |x, acc| {
            let data = if pointwise {
                x
            } else {
                im2col_u8(&one, x, xq.zero_point, col);
                &col[..]
            };
            let a = U8View {
                data,
                k: kk,
                n: plane,
                rs: plane,
                cs: 1,
            };
            gemm_u8i8(isa, w, &a, xq.zero_point, acc);
        })
    });
    Ok(())
}

/// What an int8 convolution's errors call its operands.
pub(crate) struct ConvNames {
    weight: &'static str,
    input: &'static str,
    output: &'static str,
}

impl ConvNames {
    /// A dense int8 convolution's.
    pub(crate) const DENSE: ConvNames = ConvNames {
        weight: "int8 conv weight",
        input: "int8 conv input",
        output: "int8 conv output",
    };
    /// A CSR-sparse int8 convolution's.
    pub(crate) const SPARSE: ConvNames = ConvNames {
        weight: "int8 sparse conv weight",
        input: "int8 sparse conv input",
        output: "int8 sparse conv output",
    };
}

/// The checks every int8 convolution (groups 1, the weight a `[O, C * kh * kw]` matrix, given
/// as `(rows, cols)`) makes before it runs: a valid geometry, the weight's shape, the input and
/// output lengths, and a bias of `O` entries.
pub(crate) fn check_conv(
    names: ConvNames,
    g: &ConvGeometry,
    (rows, cols): (usize, usize),
    input_len: usize,
    out: &QOutput<'_>,
) -> Result<()> {
    g.validate()?;
    let kk = g.in_channels * g.kernel_h * g.kernel_w;
    if g.groups != 1 || rows != g.out_channels || cols != kk {
        return Err(KernelError::Invalid {
            what: names.weight,
            reason: format!(
                "need groups 1 and a [{}, {kk}] weight, got groups {} and [{rows}, {cols}]",
                g.out_channels, g.groups
            ),
        });
    }
    check_len(names.input, g.input_len(), input_len)?;
    check_len(names.output, g.output_len(), out.len())?;
    out.check_bias(g.out_channels)
}

/// How many groups of whole images a convolution of batch `g.batch` runs in: one per
/// configured thread when there are several images, else 1 (the kernels then split each
/// image's output channels across the threads).
pub(crate) fn image_groups(g: &ConvGeometry) -> usize {
    let nt = threads::num_threads();
    if nt < 2 || g.batch < 2 {
        1
    } else {
        nt.min(g.batch)
    }
}

/// Runs `conv` on `groups` consecutive groups of whole images of a checked convolution, the
/// groups in parallel and each with one kernel thread. Images are independent, so this is
/// one parallel section per layer instead of several per image, each too short at the
/// channel counts of small networks to pay for waking a thread.
pub(crate) fn in_image_groups(
    g: &ConvGeometry,
    groups: usize,
    input: &[u8],
    out: QOutput<'_>,
    conv: impl Fn(&ConvGeometry, &[u8], QOutput<'_>) -> Result<()> + Sync,
) -> Result<()> {
    let per = g.batch.div_ceil(groups.max(1));
    let in_img = g.input_len() / g.batch;
    let out_img = g.output_len() / g.batch;
    let mut results: Vec<Result<()>> = vec![Ok(()); g.batch.div_ceil(per)];
    let parts: Vec<_> = input
        .chunks(per * in_img)
        .zip(out.chunks(per * out_img))
        .zip(results.iter_mut())
        .collect();
    threads::run_parts(parts, |((x, o), r)| {
        let sub = ConvGeometry {
            batch: x.len() / in_img,
            ..*g
        };
        *r = threads::with(1, || conv(&sub, x, o));
    });
    results.into_iter().collect()
}

/// Runs an int8 convolution image by image: `image(x, acc)` accumulates one image `x` into
/// `acc` (`[O, oh * ow]` i32), which is then requantized (with the weight's `scales` and the
/// multipliers `mult`) into that image's part of `out`.
pub(crate) fn each_image(
    isa: Isa,
    g: &ConvGeometry,
    input: &[u8],
    xq: QuantParams,
    (scales, mult): (&[f32], &[Requant]),
    out: &mut QOutput<'_>,
    mut image: impl FnMut(&[u8], &mut [i32]),
) {
    let (oc, plane) = (g.out_channels, g.out_h() * g.out_w());
    let in_img = g.in_channels * g.in_h * g.in_w;
    crate::scratch::with(&crate::scratch::I32_A, |acc| {
        let acc = crate::scratch::sized(acc, oc * plane);
        for n in 0..g.batch {
            image(&input[n * in_img..(n + 1) * in_img], acc);
            finish(
                isa,
                acc,
                oc,
                plane,
                xq,
                scales,
                mult,
                out,
                n * oc * plane,
                false,
            );
        }
    });
}

/// One depthwise plane in i32: `o = sum over taps of w * (x - za)` (exact integers, so every
/// compilation gives the same result).
#[inline(always)]
fn dw_plane(g: &ConvGeometry, xs: &[i32], wk: &[i8], o: &mut [i32]) {
    let (oh, ow, h, wd) = (g.out_h(), g.out_w(), g.in_h, g.in_w);
    o.fill(0);
    for ki in 0..g.kernel_h {
        for kj in 0..g.kernel_w {
            let wv = wk[ki * g.kernel_w + kj] as i32;
            let off_x = (kj * g.dilation.1) as isize - g.padding.1 as isize;
            let (xlo, xhi) = crate::geometry::valid_range(ow, g.stride.1, off_x, wd);
            for oy in 0..oh {
                let iy = (oy * g.stride.0 + ki * g.dilation.0) as isize - g.padding.0 as isize;
                if iy < 0 || iy >= h as isize || xlo >= xhi {
                    continue;
                }
                let src = &xs[iy as usize * wd..(iy as usize + 1) * wd];
                let dst = &mut o[oy * ow + xlo..oy * ow + xhi];
                let x0 = ((xlo * g.stride.1) as isize + off_x) as usize;
                if g.stride.1 == 1 {
                    for (d, s) in dst.iter_mut().zip(&src[x0..]) {
                        *d += wv * s;
                    }
                } else {
                    for (i, d) in dst.iter_mut().enumerate() {
                        *d += wv * src[x0 + i * g.stride.1];
                    }
                }
            }
        }
    }
}

/// [`dw_plane`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn dw_plane_avx512(g: &ConvGeometry, xs: &[i32], wk: &[i8], o: &mut [i32]) {
    dw_plane(g, xs, wk, o)
}

/// int8 depthwise convolution (`groups == C == O`), computed directly; padded positions count
/// as the zero point (contribute nothing).
///
/// Shapes: `input` u8 `[N, C, H, W]`, `w` [`QMatrix`] `[C, kh * kw]`, output `[N, C, oh, ow]`.
///
/// # Errors
/// A geometry that is not depthwise, mismatched shapes or lengths, or a requantization scale
/// out of range.
pub fn qdepthwise_forward(
    g: &ConvGeometry,
    input: &[u8],
    xq: QuantParams,
    w: &QMatrix,
    out: QOutput<'_>,
) -> Result<()> {
    qdepthwise_forward_with_isa(Isa::detected(), g, input, xq, w, out)
}

/// [`qdepthwise_forward`] restricted to kernels of level `isa` or below.
///
/// # Errors
/// As [`qdepthwise_forward`].
pub fn qdepthwise_forward_with_isa(
    isa: Isa,
    g: &ConvGeometry,
    input: &[u8],
    xq: QuantParams,
    w: &QMatrix,
    mut out: QOutput<'_>,
) -> Result<()> {
    let isa = isa.or_supported();
    g.validate()?;
    let c = g.in_channels;
    if g.groups != c || g.out_channels != c || w.rows() != c || w.cols() != g.kernel_h * g.kernel_w
    {
        return Err(KernelError::Invalid {
            what: "int8 depthwise geometry",
            reason: format!(
                "need groups == in == out channels and a [C, kh*kw] weight, got groups {}, {c} \
                 in, {} out, weight [{}, {}]",
                g.groups,
                g.out_channels,
                w.rows(),
                w.cols()
            ),
        });
    }
    check_len("int8 depthwise input", g.input_len(), input.len())?;
    check_len("int8 depthwise output", g.output_len(), out.len())?;
    out.check_bias(c)?;
    let mult = multipliers(xq, w.scales(), w.multipliers(), &out)?;
    let (oh, ow, h, wd) = (g.out_h(), g.out_w(), g.in_h, g.in_w);
    let plane = oh * ow;
    let za = xq.zero_point as i32;
    let mut acc = vec![0i32; c * plane];
    // input minus zero point, widened once per image
    let mut xs = vec![0i32; h * wd];
    for n in 0..g.batch {
        for ch in 0..c {
            let x = &input[(n * c + ch) * h * wd..(n * c + ch + 1) * h * wd];
            for (d, s) in xs.iter_mut().zip(x) {
                *d = *s as i32 - za;
            }
            let wk = &w.values()[ch * g.kernel_h * g.kernel_w..(ch + 1) * g.kernel_h * g.kernel_w];
            let o = &mut acc[ch * plane..(ch + 1) * plane];
            #[cfg(target_arch = "x86_64")]
            if isa >= Isa::Avx512 && crate::isa::features().avx512 {
                // SAFETY: AVX-512F is available; the function only does safe slice work.
                unsafe { dw_plane_avx512(g, &xs, wk, o) };
                continue;
            }
            dw_plane(g, &xs, wk, o);
        }
        finish(
            isa,
            &acc,
            c,
            plane,
            xq,
            w.scales(),
            &mult,
            &mut out,
            n * c * plane,
            false,
        );
    }
    Ok(())
}
