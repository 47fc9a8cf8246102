use crate::geometry::valid_range;
use crate::ConvGeometry;

/// Unfolds one image `[C, H, W]` into columns `[C * kh * kw, oh * ow]` (row-major).
///
/// Rows are ordered by input channel, then kernel row, then kernel column, matching an OIHW
/// weight reshaped to `[O, I * kh * kw]`. Padded positions are zero.
///
/// # Panics
/// When `image` or `col` is shorter than the geometry implies (internal kernel; callers check).
pub fn im2col(g: &ConvGeometry, image: &[f32], col: &mut [f32]) {
    im2col_rows(g, image, 0, g.out_h(), col)
}

/// [`im2col`] restricted to output rows `oy0..oy1`: columns `[C * kh * kw, (oy1 - oy0) * ow]`.
///
/// # Panics
/// When `image` or `col` is too short, or the row range is out of order.
pub(crate) fn im2col_rows(
    g: &ConvGeometry,
    image: &[f32],
    oy0: usize,
    oy1: usize,
    col: &mut [f32],
) {
    let ow = g.out_w();
    let oh = g.out_h();
    let (h, w) = (g.in_h, g.in_w);
    assert!(oy0 <= oy1 && oy1 <= oh);
    let plane = (oy1 - oy0) * ow;
    assert!(image.len() >= g.in_channels * h * w);
    assert!(col.len() >= g.in_channels * g.kernel_h * g.kernel_w * plane);
    // stride 1, dilation 1 and ow == w: an im2col row is the image shifted, so valid output
    // rows come from one contiguous copy
    let same_width = g.stride == (1, 1) && g.dilation == (1, 1) && ow == w;
    // stride s > 1 in both axes, dilation 1, and `ow == ceil(w / s)`: each channel is split
    // once into its s * s phase planes (`plane(py, px)[r][j] = img[r * s + py][j * s + px]`,
    // `ceil(h / s) x ow` each), in which an im2col row is again a shifted copy
    let s = g.stride.0;
    let phased = s > 1 && g.stride.1 == s && g.dilation == (1, 1) && ow == w.div_ceil(s);
    let hp = h.div_ceil(s);
    let mut phases = if phased {
        vec![0f32; s * s * hp * ow]
    } else {
        Vec::new()
    };
    // the input rows that output rows `oy0..oy1` read: only those are split into phases (a
    // caller unfolding an image in bands of rows would otherwise split it whole per band)
    let top = oy0 * g.stride.0;
    let y_lo = top.saturating_sub(g.padding.0);
    let y_hi = if oy1 > oy0 {
        ((oy1 - 1) * g.stride.0 + (g.kernel_h - 1) * g.dilation.0 + 1)
            .saturating_sub(g.padding.0)
            .min(h)
    } else {
        y_lo
    };
    let mut row = 0;
    for c in 0..g.in_channels {
        let img = &image[c * h * w..(c + 1) * h * w];
        if phased {
            let band = img.chunks_exact(w).enumerate().take(y_hi).skip(y_lo);
            for (y, src) in band {
                let (py, r) = (y % s, y / s);
                for px in 0..s {
                    let at = ((py * s + px) * hp + r) * ow;
                    let dst = &mut phases[at..at + ow];
                    // (a stride wider than the image leaves the phases past it empty)
                    for (d, &v) in dst.iter_mut().zip(src.iter().skip(px).step_by(s)) {
                        *d = v;
                    }
                }
            }
        }
        for ki in 0..g.kernel_h {
            let off_y = (ki * g.dilation.0) as isize - g.padding.0 as isize;
            let (ylo, yhi) = valid_range(oh, g.stride.0, off_y, h);
            for kj in 0..g.kernel_w {
                let off_x = (kj * g.dilation.1) as isize - g.padding.1 as isize;
                let (xlo, xhi) = valid_range(ow, g.stride.1, off_x, w);
                let dst = &mut col[row * plane..(row + 1) * plane];
                row += 1;
                if phased {
                    let (py, px) = (off_y.rem_euclid(s as isize), off_x.rem_euclid(s as isize));
                    let p = (py as usize * s + px as usize) * hp * ow;
                    shifted_rows(
                        &phases[p..p + hp * ow],
                        ow,
                        (ylo, yhi),
                        (xlo, xhi),
                        (off_y.div_euclid(s as isize), off_x.div_euclid(s as isize)),
                        oy0,
                        oy1,
                        dst,
                    );
                    continue;
                }
                if same_width {
                    shifted_rows(
                        img,
                        w,
                        (ylo, yhi),
                        (xlo, xhi),
                        (off_y, off_x),
                        oy0,
                        oy1,
                        dst,
                    );
                    continue;
                }
                for oy in oy0..oy1 {
                    let d = &mut dst[(oy - oy0) * ow..(oy - oy0 + 1) * ow];
                    if oy < ylo || oy >= yhi || xlo >= xhi {
                        d.fill(0.0);
                        continue;
                    }
                    let iy = (oy * g.stride.0) as isize + off_y;
                    let src = &img[iy as usize * w..(iy as usize + 1) * w];
                    d[..xlo].fill(0.0);
                    d[xhi..].fill(0.0);
                    let x0 = (xlo * g.stride.1) as isize + off_x;
                    if g.stride.1 == 1 {
                        let x0 = x0 as usize;
                        d[xlo..xhi].copy_from_slice(&src[x0..x0 + (xhi - xlo)]);
                    } else {
                        for (i, v) in d[xlo..xhi].iter_mut().enumerate() {
                            *v = src[x0 as usize + i * g.stride.1];
                        }
                    }
                }
            }
        }
    }
}

/// One im2col row over output rows `oy0..oy1` when `ow == w`, stride 1, dilation 1:
/// `dst[(oy - oy0) * w + ox] = img[(oy + off_y) * w + ox + off_x]`, zero outside the image.
#[allow(clippy::too_many_arguments)]
fn shifted_rows(
    img: &[f32],
    w: usize,
    (ylo, yhi): (usize, usize),
    (xlo, xhi): (usize, usize),
    (off_y, off_x): (isize, isize),
    oy0: usize,
    oy1: usize,
    dst: &mut [f32],
) {
    let (a, b) = (ylo.max(oy0), yhi.min(oy1));
    if a >= b || xlo >= xhi {
        dst.fill(0.0);
        return;
    }
    dst[..(a - oy0) * w].fill(0.0);
    dst[(b - oy0) * w..].fill(0.0);
    // flat copy of the valid rows; entries that wrap across a row edge are fixed below
    let (mut d, mut src, mut len) = (
        (a - oy0) * w,
        (a as isize + off_y) * w as isize + off_x,
        (b - a) * w,
    );
    if src < 0 {
        d += (-src) as usize;
        len = len.saturating_sub((-src) as usize);
        src = 0;
    }
    let len = len.min(img.len().saturating_sub(src as usize));
    dst[d..d + len].copy_from_slice(&img[src as usize..src as usize + len]);
    for x in (0..xlo).chain(xhi..w) {
        for oy in a..b {
            dst[(oy - oy0) * w + x] = 0.0;
        }
    }
}

/// Folds columns `[C * kh * kw, oh * ow]` back into an image `[C, H, W]`, adding overlaps.
///
/// This is the adjoint of [`im2col`]; `image` is accumulated into, not overwritten.
///
/// # Panics
/// When `image` or `col` is shorter than the geometry implies (internal kernel; callers check).
pub fn col2im(g: &ConvGeometry, col: &[f32], image: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (h, w) = (g.in_h, g.in_w);
    let plane = oh * ow;
    assert!(image.len() >= g.in_channels * h * w);
    assert!(col.len() >= g.in_channels * g.kernel_h * g.kernel_w * plane);
    let mut row = 0;
    for c in 0..g.in_channels {
        let img = &mut image[c * h * w..(c + 1) * h * w];
        for ki in 0..g.kernel_h {
            let off_y = (ki * g.dilation.0) as isize - g.padding.0 as isize;
            let (ylo, yhi) = valid_range(oh, g.stride.0, off_y, h);
            for kj in 0..g.kernel_w {
                let off_x = (kj * g.dilation.1) as isize - g.padding.1 as isize;
                let (xlo, xhi) = valid_range(ow, g.stride.1, off_x, w);
                let src = &col[row * plane..(row + 1) * plane];
                row += 1;
                if xlo >= xhi {
                    continue;
                }
                for oy in ylo..yhi {
                    let iy = ((oy * g.stride.0) as isize + off_y) as usize;
                    let s = &src[oy * ow..(oy + 1) * ow];
                    let dst = &mut img[iy * w..(iy + 1) * w];
                    let x0 = ((xlo * g.stride.1) as isize + off_x) as usize;
                    for (i, v) in s[xlo..xhi].iter().enumerate() {
                        dst[x0 + i * g.stride.1] += *v;
                    }
                }
            }
        }
    }
}

/// The zero-padded input of a convolution with dilation 1, split into its `sy x sx` stride
/// phases: phase `(a, b)` holds padded rows `a, a + sy, ...` and columns `b, b + sx, ...`,
/// `hq x wq` of them (`oh + (kh - 1) / sy` by `ow + (kw - 1) / sx`, the rows and columns its
/// taps read). With stride 1 the one phase is the padded plane; phases no tap reads (`a >= kh`
/// or `b >= kw`, as with a strided 1x1 kernel) are left out.
///
/// Tap `(i, j)` of output pixel `(y, x)` then reads phase `(i % sy, j % sx)` at row
/// `y + i / sy`, column `x + j / sx`: over "padded output columns" `p = y * wq + x` every tap is
/// the split copy shifted by one offset ([`Phases::tap_offsets`]), so kernels read their
/// im2col rows straight from it and nothing is unfolded. The `(kw - 1) / sx` columns per row
/// beyond the output width are what such a kernel computes and drops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phases {
    pub(crate) sy: usize,
    pub(crate) sx: usize,
    /// Phases kept along each axis: `min(sy, kh)` and `min(sx, kw)`.
    pub(crate) py: usize,
    pub(crate) px: usize,
    pub(crate) hq: usize,
    pub(crate) wq: usize,
}

impl Phases {
    /// The phases of `g` (dilation 1).
    pub(crate) fn of(g: &ConvGeometry) -> Phases {
        debug_assert_eq!(g.dilation, (1, 1));
        let (sy, sx) = g.stride;
        Phases {
            sy,
            sx,
            py: sy.min(g.kernel_h),
            px: sx.min(g.kernel_w),
            hq: g.out_h() + (g.kernel_h - 1) / sy,
            wq: g.out_w() + (g.kernel_w - 1) / sx,
        }
    }

    /// Values of one channel's phases, one after the other.
    pub(crate) fn channel_len(&self) -> usize {
        self.py * self.px * self.hq * self.wq
    }

    /// The offset of each tap `(i, j)` (row-major) within a channel's phases.
    pub(crate) fn tap_offsets(&self, g: &ConvGeometry) -> Vec<usize> {
        let Phases {
            sy, sx, px, hq, wq, ..
        } = *self;
        (0..g.kernel_h)
            .flat_map(|i| {
                (0..g.kernel_w)
                    .map(move |j| ((i % sy) * px + j % sx) * hq * wq + (i / sy) * wq + j / sx)
            })
            .collect()
    }

    /// Splits one image `[C][H][W]` of `g` into `xp` `[C][py * px][hq][wq]`; values of `xp`
    /// past the last channel are zeroed.
    ///
    /// # Panics
    /// When `x` or `xp` is too short.
    pub(crate) fn split(&self, x: &[f32], g: &ConvGeometry, xp: &mut [f32]) {
        let (c, h, w) = (g.in_channels, g.in_h, g.in_w);
        let (ph, pw) = g.padding;
        let Phases {
            sy,
            sx,
            py,
            px,
            hq,
            wq,
        } = *self;
        let plane = hq * wq;
        // one padded input row, as wide as every phase's columns need (strided columns only);
        // its padding stays zero, each row writes only the input's columns
        let mut padded = vec![0f32; if sx > 1 { sx * (wq + 1) } else { 0 }];
        let width = if sx > 1 { padded.len() } else { wq };
        let lead = pw.min(width);
        let n = w.min(width - lead);
        // the padding of every phase row (and rows past the input) is zero: one fill for all
        xp.fill(0.0);
        for (ci, chan) in xp.chunks_exact_mut(py * px * plane).take(c).enumerate() {
            let src_c = &x[ci * h * w..(ci + 1) * h * w];
            for a in 0..py {
                for r in 0..hq {
                    let y = (sy * r + a).wrapping_sub(ph);
                    if y >= h {
                        continue;
                    }
                    let src = &src_c[y * w..y * w + n];
                    let at = |b: usize| (a * px + b) * plane + r * wq;
                    if sx == 1 {
                        // padded column q holds input column q - pw
                        chan[at(0) + lead..at(0) + lead + n].copy_from_slice(src);
                    } else {
                        padded[lead..lead + n].copy_from_slice(src);
                        if (sx, px) == (2, 2) {
                            // both phases in one pass over pairs of columns (the phase split's
                            // share of ResNet-small's batch-16 time went from 10% to 7% against
                            // the loop below)
                            let (p0, p1) = chan.split_at_mut(at(1));
                            let pairs = padded.chunks_exact(2);
                            let (d0, d1) = (&mut p0[at(0)..at(0) + wq], &mut p1[..wq]);
                            for ((e, o), pair) in d0.iter_mut().zip(d1.iter_mut()).zip(pairs) {
                                *e = pair[0];
                                *o = pair[1];
                            }
                            continue;
                        }
                        // phase b takes every sx-th padded column from column b
                        for b in 0..px {
                            let taken = padded[b..].iter().step_by(sx);
                            for (v, s) in chan[at(b)..at(b) + wq].iter_mut().zip(taken) {
                                *v = *s;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_edges() {
        assert_eq!(valid_range(5, 1, -1, 5), (1, 5));
        assert_eq!(valid_range(5, 1, 1, 5), (0, 4));
        assert_eq!(valid_range(3, 2, -1, 5), (1, 3));
        assert_eq!(valid_range(3, 1, 10, 5), (0, 0));
    }

    #[test]
    fn col2im_is_adjoint_of_im2col() {
        // <im2col(x), c> == <x, col2im(c)> for random x, c.
        let g = ConvGeometry::new(1, 3, 7, 6, 4, 3, 2)
            .with_stride(2, 1)
            .with_padding(1, 2)
            .with_dilation(1, 2);
        g.validate().unwrap();
        let x: Vec<f32> = (0..3 * 7 * 6)
            .map(|i| ((i * 37) % 17) as f32 / 17.0 - 0.5)
            .collect();
        let rows = 3 * 3 * 2;
        let plane = g.out_h() * g.out_w();
        let c: Vec<f32> = (0..rows * plane)
            .map(|i| ((i * 13) % 19) as f32 / 19.0 - 0.5)
            .collect();
        let mut col = vec![0.0; rows * plane];
        im2col(&g, &x, &mut col);
        let mut back = vec![0.0; x.len()];
        col2im(&g, &c, &mut back);
        let lhs: f64 = col
            .iter()
            .zip(&c)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum();
        let rhs: f64 = x
            .iter()
            .zip(&back)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum();
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
    }

    #[test]
    fn bands_of_rows_unfold_as_the_whole() {
        // strided (phase-split) and plain unfoldings, in bands of output rows of every size
        for (stride, pad, k, h) in [(2, 1, 3, 11), (2, 0, 3, 12), (3, 2, 5, 13), (1, 1, 3, 9)] {
            let g = ConvGeometry::new(1, 2, h, h, 3, k, k)
                .with_stride(stride, stride)
                .with_padding(pad, pad);
            g.validate().unwrap();
            let x: Vec<f32> = (0..2 * h * h)
                .map(|i| ((i * 37) % 23) as f32 - 11.0)
                .collect();
            let (oh, ow, rows) = (g.out_h(), g.out_w(), 2 * k * k);
            let mut whole = vec![0.0; rows * oh * ow];
            im2col(&g, &x, &mut whole);
            for band in 1..=oh {
                for y0 in (0..oh).step_by(band) {
                    let y1 = (y0 + band).min(oh);
                    let plane = (y1 - y0) * ow;
                    let mut col = vec![f32::NAN; rows * plane];
                    im2col_rows(&g, &x, y0, y1, &mut col);
                    for r in 0..rows {
                        let want = &whole[r * oh * ow + y0 * ow..r * oh * ow + y1 * ow];
                        assert_eq!(
                            &col[r * plane..(r + 1) * plane],
                            want,
                            "{g:?} rows {y0}..{y1}"
                        );
                    }
                }
            }
        }
    }
}
