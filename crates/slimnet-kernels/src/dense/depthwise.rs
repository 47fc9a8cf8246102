use super::conv::epilogue;
use crate::error::{check_len, KernelError, Result};
use crate::geometry::valid_range;
use crate::threads;
use crate::{Activation, ConvGeometry};

/// Depthwise convolution forward (`groups == in_channels == out_channels`), run directly
/// without im2col. Stride-1, dilation-1 kernels take dedicated AVX-512 / AVX2 paths when the
/// CPU has them (1-D kernels without copying the input, 2-D ones over a zero-padded copy).
///
/// Shapes as in [`conv2d_forward`](super::conv2d_forward) with a `[C, 1, kh, kw]` weight.
///
/// # Errors
/// A geometry that is not depthwise, or a buffer of the wrong length.
pub fn depthwise_forward(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) -> Result<()> {
    g.validate()?;
    if g.groups != g.in_channels || g.groups != g.out_channels {
        return Err(KernelError::Invalid {
            what: "depthwise geometry",
            reason: format!(
                "groups {} must equal input {} and output {} channels",
                g.groups, g.in_channels, g.out_channels
            ),
        });
    }
    check_len("conv input", g.input_len(), input.len())?;
    check_len("conv weight", g.weight_len(), weight.len())?;
    check_len("conv output", g.output_len(), out.len())?;
    if let Some(b) = bias {
        check_len("conv bias", g.out_channels, b.len())?;
    }
    depthwise_forward_unchecked(g, input, weight, bias, act, out);
    Ok(())
}

/// Calls `f(plane_index, plane)` over output planes, in parallel when threads allow.
fn for_planes(data: &mut [f32], plane: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if plane == 0 {
        return;
    }
    let n = threads::num_threads();
    if n > 1 {
        // one even, contiguous share of the planes per thread, the first on the calling thread
        // (handing planes out one at a time measured slower: 0.14-0.17 ms against 0.09-0.13
        // for 128 channels at 56x56 on two threads)
        let per = (data.len() / plane).div_ceil(n) * plane;
        let parts: Vec<_> = data.chunks_mut(per).enumerate().collect();
        threads::run_parts(parts, |(k, part)| {
            for (j, p) in part.chunks_mut(plane).enumerate() {
                f(k * per / plane + j, p);
            }
        });
    } else {
        data.chunks_mut(plane)
            .enumerate()
            .for_each(|(i, p)| f(i, p));
    }
}

pub(crate) fn depthwise_forward_unchecked(
    g: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) {
    let (oh, ow, h, w) = (g.out_h(), g.out_w(), g.in_h, g.in_w);
    let (kh, kw) = (g.kernel_h, g.kernel_w);
    let c = g.in_channels;
    let cols = columns(g);
    #[cfg(target_arch = "x86_64")]
    let (wide, avx2) = (
        crate::isa::features().avx512,
        crate::isa::features().avx2_fma,
    );
    #[cfg(target_arch = "x86_64")]
    let line = super::depthwise_line_x86::Line::of(g);
    for_planes(out, oh * ow, |pi, o| {
        let ch = pi % c;
        let x = &input[pi * h * w..(pi + 1) * h * w];
        let wk = &weight[ch * kh * kw..(ch + 1) * kh * kw];
        #[cfg(target_arch = "x86_64")]
        if let (Some(line), true) = (line, wide || avx2) {
            let b = bias.map_or(0.0, |b| b[ch]);
            if wide {
                // SAFETY: AVX-512F is available; `line` is the line shape of `g`; `x`, `wk` and
                // `o` are one channel's input plane, weights and output plane.
                unsafe { super::depthwise_line_x86::line_plane_avx512(g, line, x, wk, b, act, o) };
            } else {
                // SAFETY: AVX2 and FMA are available; otherwise as above.
                unsafe { super::depthwise_line_x86::line_plane_avx2(g, line, x, wk, b, act, o) };
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if (wide || avx2) && g.stride == (1, 1) && g.dilation == (1, 1) {
            crate::scratch::with(&crate::scratch::F32_A, |buf| {
                let b = bias.map_or(0.0, |b| b[ch]);
                if wide {
                    // SAFETY: AVX-512F is available; stride and dilation are 1; `x`, `wk` and
                    // `o` are one channel's input plane, weights and output plane.
                    unsafe { super::depthwise_x86::plane_s1_avx512(g, x, wk, b, act, o, buf) }
                } else {
                    // SAFETY: AVX2 and FMA are available; otherwise as above.
                    unsafe { super::depthwise_x86::plane_s1_avx2(g, x, wk, b, act, o, buf) }
                }
            });
            return;
        }
        crate::scratch::with(&crate::scratch::F32_A, |buf| {
            let x = if g.stride.1 == 2 {
                split_phases(g, x, buf)
            } else {
                x
            };
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: AVX-512F is available; the function only does safe slice work,
                // compiled with wider vectors.
                unsafe { plane_forward_avx512(g, &cols, x, wk, o) };
            } else if avx2 {
                // SAFETY: AVX2 and FMA are available; as above.
                unsafe { plane_forward_avx2(g, &cols, x, wk, o) };
            } else {
                plane_forward(g, &cols, x, wk, o);
            }
            #[cfg(not(target_arch = "x86_64"))]
            plane_forward(g, &cols, x, wk, o);
        });
        epilogue(o, oh * ow, bias.map(|b| &b[ch..ch + 1]), act);
    });
}

/// Per kernel column: the valid output range and the input column of its first output.
fn columns(g: &ConvGeometry) -> Vec<(usize, usize, usize)> {
    (0..g.kernel_w)
        .map(|kj| {
            let off_x = (kj * g.dilation.1) as isize - g.padding.1 as isize;
            let (xlo, xhi) = valid_range(g.out_w(), g.stride.1, off_x, g.in_w);
            let x0 = ((xlo * g.stride.1) as isize + off_x).max(0) as usize;
            (xlo, xhi, x0)
        })
        .collect()
}

/// One output plane, output row by output row (the row stays in cache across the taps); each
/// output sums its taps in kernel order, so every compilation of this gives the same bits.
/// With a horizontal stride of 2, `x` is the input plane split into its column phases by
/// [`split_phases`], in which every tap reads a contiguous run, so the taps' loops vectorize
/// instead of picking every other value (a 3x3 stride-2 layer of 16 channels at 256x256:
/// 2.09 -> 0.78-0.91 ms); otherwise `x` is the input plane.
#[inline(always)]
fn plane_forward(
    g: &ConvGeometry,
    cols: &[(usize, usize, usize)],
    x: &[f32],
    wk: &[f32],
    o: &mut [f32],
) {
    let (s, h, w) = (g.stride.1, g.in_h, g.in_w);
    if s == 2 {
        let wp = w.div_ceil(2);
        plane_taps(
            g,
            cols,
            |iy, x0, len| &x[((x0 % 2) * h + iy) * wp + x0 / 2..][..len],
            wk,
            o,
        );
    } else if s == 1 {
        plane_taps(g, cols, |iy, x0, len| &x[iy * w + x0..][..len], wk, o);
    } else {
        plane_strided(g, cols, x, wk, o);
    }
}

/// [`plane_forward`] for horizontal strides above 2 (rare): every `s`-th input picked.
#[inline(always)]
fn plane_strided(
    g: &ConvGeometry,
    cols: &[(usize, usize, usize)],
    x: &[f32],
    wk: &[f32],
    o: &mut [f32],
) {
    let (oh, ow, h, w) = (g.out_h(), g.out_w(), g.in_h, g.in_w);
    o.fill(0.0);
    for oy in 0..oh {
        let d = &mut o[oy * ow..(oy + 1) * ow];
        for ki in 0..g.kernel_h {
            let iy = (oy * g.stride.0 + ki * g.dilation.0) as isize - g.padding.0 as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            let src = &x[iy as usize * w..(iy as usize + 1) * w];
            for (kj, &(xlo, xhi, x0)) in cols.iter().enumerate() {
                let wv = wk[ki * g.kernel_w + kj];
                for (i, dv) in d[xlo..xhi.max(xlo)].iter_mut().enumerate() {
                    *dv += wv * src[x0 + i * g.stride.1];
                }
            }
        }
    }
}

/// Splits one input plane into its two column phases for [`plane_forward`] with a horizontal
/// stride of 2: `phases[p][y][j] = x[y][2 j + p]`, each phase row `ceil(w / 2)` long.
fn split_phases<'a>(g: &ConvGeometry, x: &[f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
    let (h, w) = (g.in_h, g.in_w);
    let wp = w.div_ceil(2);
    let phases = crate::scratch::sized(buf, 2 * h * wp);
    let (even, odd) = phases.split_at_mut(h * wp);
    for (y, row) in x.chunks_exact(w).enumerate().take(h) {
        // pairs into two rows, which the compiler does with shuffles
        let (even, odd) = (&mut even[y * wp..][..wp], &mut odd[y * wp..][..wp]);
        for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(row.chunks_exact(2)) {
            (*e, *o) = (pair[0], pair[1]);
        }
        if w % 2 == 1 {
            even[wp - 1] = row[w - 1];
        }
    }
    phases
}

/// The loop of [`plane_forward`]: `row(iy, x0, len)` gives the `len` inputs one tap reads for
/// consecutive outputs, starting at input row `iy`, column `x0`.
#[inline(always)]
fn plane_taps<'a>(
    g: &ConvGeometry,
    cols: &[(usize, usize, usize)],
    row: impl Fn(usize, usize, usize) -> &'a [f32],
    wk: &[f32],
    o: &mut [f32],
) {
    let (oh, ow, h) = (g.out_h(), g.out_w(), g.in_h);
    let kw = g.kernel_w;
    o.fill(0.0);
    for oy in 0..oh {
        let d = &mut o[oy * ow..(oy + 1) * ow];
        for ki in 0..g.kernel_h {
            let iy = (oy * g.stride.0 + ki * g.dilation.0) as isize - g.padding.0 as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            for (kj, &(xlo, xhi, x0)) in cols.iter().enumerate() {
                if xlo >= xhi {
                    continue;
                }
                let wv = wk[ki * kw + kj];
                for (dv, s) in d[xlo..xhi].iter_mut().zip(row(iy as usize, x0, xhi - xlo)) {
                    *dv += wv * s;
                }
            }
        }
    }
}

/// Runs [`plane_forward`] scalar or (when `wide`) compiled for AVX-512.
#[cfg(test)]
pub(crate) fn plane_forward_for_test(
    wide: bool,
    g: &ConvGeometry,
    cols: &[(usize, usize, usize)],
    x: &[f32],
    wk: &[f32],
    o: &mut [f32],
) {
    let mut buf = Vec::new();
    let x = if g.stride.1 == 2 {
        split_phases(g, x, &mut buf)
    } else {
        x
    };
    #[cfg(target_arch = "x86_64")]
    if wide {
        assert!(crate::isa::features().avx512);
        // SAFETY: AVX-512F checked above.
        unsafe { plane_forward_avx512(g, cols, x, wk, o) };
        return;
    }
    let _ = wide;
    plane_forward(g, cols, x, wk, o);
}

/// [`plane_forward`] compiled for AVX-512 (same operations, wider vectors, no FMA contraction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn plane_forward_avx512(
    g: &ConvGeometry,
    cols: &[(usize, usize, usize)],
    x: &[f32],
    wk: &[f32],
    o: &mut [f32],
) {
    plane_forward(g, cols, x, wk, o)
}

/// [`plane_forward`] compiled for AVX2 (same operations, 8-lane vectors, no FMA contraction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_forward_avx2(
    g: &ConvGeometry,
    cols: &[(usize, usize, usize)],
    x: &[f32],
    wk: &[f32],
    o: &mut [f32],
) {
    plane_forward(g, cols, x, wk, o)
}

pub(crate) fn depthwise_backward_input(
    g: &ConvGeometry,
    grad_out: &[f32],
    weight: &[f32],
    grad_input: &mut [f32],
) {
    let (oh, ow, h, w) = (g.out_h(), g.out_w(), g.in_h, g.in_w);
    let (kh, kw) = (g.kernel_h, g.kernel_w);
    let c = g.in_channels;
    for_planes(grad_input, h * w, |pi, dx| {
        let ch = pi % c;
        let dy = &grad_out[pi * oh * ow..(pi + 1) * oh * ow];
        let wk = &weight[ch * kh * kw..(ch + 1) * kh * kw];
        for ki in 0..kh {
            let off_y = (ki * g.dilation.0) as isize - g.padding.0 as isize;
            let (ylo, yhi) = valid_range(oh, g.stride.0, off_y, h);
            for kj in 0..kw {
                let off_x = (kj * g.dilation.1) as isize - g.padding.1 as isize;
                let (xlo, xhi) = valid_range(ow, g.stride.1, off_x, w);
                let wv = wk[ki * kw + kj];
                for oy in ylo..yhi {
                    let iy = ((oy * g.stride.0) as isize + off_y) as usize;
                    let x0 = ((xlo * g.stride.1) as isize + off_x) as usize;
                    let src = &dy[oy * ow..(oy + 1) * ow];
                    let dst = &mut dx[iy * w..(iy + 1) * w];
                    for (i, s) in src[xlo..xhi].iter().enumerate() {
                        dst[x0 + i * g.stride.1] += wv * s;
                    }
                }
            }
        }
    });
}

pub(crate) fn depthwise_backward_weight(
    g: &ConvGeometry,
    input: &[f32],
    grad_out: &[f32],
    grad_weight: &mut [f32],
) {
    let (oh, ow, h, w) = (g.out_h(), g.out_w(), g.in_h, g.in_w);
    let (kh, kw) = (g.kernel_h, g.kernel_w);
    let c = g.in_channels;
    for_planes(grad_weight, kh * kw, |ch, dw| {
        for n in 0..g.batch {
            let pi = n * c + ch;
            let x = &input[pi * h * w..(pi + 1) * h * w];
            let dy = &grad_out[pi * oh * ow..(pi + 1) * oh * ow];
            for ki in 0..kh {
                let off_y = (ki * g.dilation.0) as isize - g.padding.0 as isize;
                let (ylo, yhi) = valid_range(oh, g.stride.0, off_y, h);
                for kj in 0..kw {
                    let off_x = (kj * g.dilation.1) as isize - g.padding.1 as isize;
                    let (xlo, xhi) = valid_range(ow, g.stride.1, off_x, w);
                    let mut s = 0.0f32;
                    for oy in ylo..yhi {
                        let iy = ((oy * g.stride.0) as isize + off_y) as usize;
                        let x0 = ((xlo * g.stride.1) as isize + off_x) as usize;
                        let src = &x[iy * w..(iy + 1) * w];
                        for (i, d) in dy[oy * ow + xlo..oy * ow + xhi].iter().enumerate() {
                            s += d * src[x0 + i * g.stride.1];
                        }
                    }
                    dw[ki * kw + kj] += s;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Direct f64 reference of one plane: (value after bias and activation, Σ |terms|).
    fn reference(
        g: &ConvGeometry,
        x: &[f32],
        wk: &[f32],
        b: f32,
        act: Activation,
    ) -> Vec<(f64, f64)> {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut out = Vec::with_capacity(oh * ow);
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut s, mut m) = (b as f64, (b as f64).abs());
                for ki in 0..g.kernel_h {
                    for kj in 0..g.kernel_w {
                        let iy =
                            (oy * g.stride.0 + ki * g.dilation.0) as isize - g.padding.0 as isize;
                        let ix =
                            (ox * g.stride.1 + kj * g.dilation.1) as isize - g.padding.1 as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < g.in_h && (ix as usize) < g.in_w {
                            let t = wk[ki * g.kernel_w + kj] as f64
                                * x[iy as usize * g.in_w + ix as usize] as f64;
                            s += t;
                            m += t.abs();
                        }
                    }
                }
                let s = match act {
                    Activation::Identity => s,
                    Activation::Relu => s.max(0.0),
                    Activation::Relu6 => s.clamp(0.0, 6.0),
                };
                out.push((s, m));
            }
        }
        out
    }

    /// Ragged `kh x 1` and `1 x kw` geometries, including padding wider than the kernel reach
    /// and planes of more than 16 rows (the border columns go 16 rows at a time).
    fn line_shapes() -> Vec<ConvGeometry> {
        let mut v = Vec::new();
        for &(h, w) in &[
            (1, 1),
            (5, 7),
            (9, 15),
            (6, 17),
            (13, 33),
            (4, 56),
            (21, 19),
            (40, 9),
        ] {
            for &(k, p) in &[(1, 0), (2, 0), (3, 1), (3, 0), (5, 2), (4, 3), (7, 1)] {
                let c = 3;
                let vert = ConvGeometry::new(2, c, h, w, c, k, 1)
                    .with_groups(c)
                    .with_padding(p, 0);
                if vert.validate().is_ok() {
                    v.push(vert);
                }
                let hor = ConvGeometry::new(1, c, h, w, c, 1, k)
                    .with_groups(c)
                    .with_padding(0, p);
                if hor.validate().is_ok() {
                    v.push(hor);
                }
            }
        }
        v
    }

    fn check(g: &ConvGeometry, got: &[f32], want: &[(f64, f64)], what: &str) {
        for (i, (y, (w, m))) in got.iter().zip(want).enumerate() {
            assert!(
                ((*y as f64) - w).abs() <= 1e-5 * (m + 1e-3),
                "{what} {g:?} at {i}: {y} vs {w}"
            );
        }
    }

    #[test]
    fn line_paths_match_the_reference_on_ragged_shapes() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let shapes = line_shapes();
        assert!(shapes.len() > 40);
        for g in shapes {
            assert!(
                super::super::depthwise_line_x86::Line::of(&g).is_some()
                    || cfg!(not(target_arch = "x86_64")),
                "{g:?}"
            );
            let x: Vec<f32> = (0..g.input_len())
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let w: Vec<f32> = (0..g.weight_len())
                .map(|_| rng.random_range(-2.0..2.0))
                .collect();
            let b: Vec<f32> = (0..g.out_channels)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let (c, plane_in, plane_out) = (g.in_channels, g.in_h * g.in_w, g.out_h() * g.out_w());
            let kk = g.kernel_h * g.kernel_w;
            for act in [Activation::Identity, Activation::Relu, Activation::Relu6] {
                let want: Vec<(f64, f64)> = (0..g.batch * c)
                    .flat_map(|pi| {
                        let ch = pi % c;
                        reference(
                            &g,
                            &x[pi * plane_in..(pi + 1) * plane_in],
                            &w[ch * kk..(ch + 1) * kk],
                            b[ch],
                            act,
                        )
                    })
                    .collect();
                // the public entry point (the best variant this CPU has)
                let mut y = vec![f32::NAN; g.output_len()];
                depthwise_forward(&g, &x, &w, Some(&b), act, &mut y).unwrap();
                check(&g, &y, &want, "dispatch");
                // the scalar path
                let mut y = vec![f32::NAN; plane_out];
                let cols = columns(&g);
                plane_forward(&g, &cols, &x[..plane_in], &w[..kk], &mut y);
                epilogue(&mut y, plane_out, Some(&b[..1]), act);
                check(&g, &y, &want[..plane_out], "scalar");
                // every SIMD variant the CPU supports
                #[cfg(target_arch = "x86_64")]
                {
                    use super::super::depthwise_line_x86::{
                        line_plane_avx2, line_plane_avx512, Line,
                    };
                    let line = Line::of(&g).expect("a line shape");
                    let f = crate::isa::features();
                    if f.avx2_fma {
                        let mut y = vec![f32::NAN; plane_out];
                        // SAFETY: AVX2 and FMA detected; one channel's planes.
                        unsafe {
                            line_plane_avx2(&g, line, &x[..plane_in], &w[..kk], b[0], act, &mut y)
                        };
                        check(&g, &y, &want[..plane_out], "avx2");
                    }
                    if f.avx512 {
                        let mut y = vec![f32::NAN; plane_out];
                        // SAFETY: AVX-512F detected; one channel's planes.
                        unsafe {
                            line_plane_avx512(&g, line, &x[..plane_in], &w[..kk], b[0], act, &mut y)
                        };
                        check(&g, &y, &want[..plane_out], "avx512");
                    }
                }
            }
        }
    }
}
