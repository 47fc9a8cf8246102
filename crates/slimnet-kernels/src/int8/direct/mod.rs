//! Int8 convolution of small layers from a padded copy of the image: im2col in fixed-size
//! pieces (stride 1), or channel quads that need no unfolding (stride 1 and 2).
//!
//! The input is copied once into planes padded with the zero point, `[C][Hp][Wp]`. Kernel tap
//! `(c, i, j)` of output pixel `(y, x)` then reads padded position
//! `(c * Hp + y + i * dh) * Wp + x + j * dw` with no bounds to check, so every output row of
//! every unfolded row is one run of `ow` bytes, copied eight bytes at a time (the last copy of
//! a run overlapping the one before). The plain im2col works out the valid span of every
//! output row, fills padding and copies each span through a `memcpy` call: for the LeNet-5
//! layers (5x5 kernels on 28x28 and 12x12 images, rows of 24 and 8 outputs) that per-row work
//! cost more than the arithmetic. "Same" convolutions (output rows as wide as the input's) keep
//! the plain unfolding, which copies them in one piece.
//!
//! The dense product packs the unfolded rows four at a time for the SIMD kernels
//! ([`gemm_u8i8_packed`]); with VNNI and a u8 output the requantization is fused into the
//! product (`fused_x86`), so no i32 accumulator goes through memory. Without VNNI, a spatial
//! layer with enough input channels and a u8 output skips the unfolding and the packing: its
//! image is interleaved into channel quads ([`Quads`]) that the quad kernels multiply on AVX2
//! or AVX-512 registers, with `vpmaddubsw` on narrow (7-bit) weights and on i16 pairs
//! (`vpmaddwd` on the quads' even and odd bytes) on 8-bit ones, exactly, requantizing in their
//! epilogue (`quads_x86`, chosen by [`quads_plan`]); the other layers are packed as i16 pairs
//! for an AVX2 kernel that widens nothing in its loop (`pairs_x86`), or, narrow, take the
//! packed panel with `vpmaddubsw`. The quad kernels take stride-2 layers through the four
//! phases of the quad image (with VNNI too, for weights of any width).
//! The sparse product reads the unfolded rows as they are.

#[cfg(target_arch = "x86_64")]
mod fused_x86;
#[cfg(target_arch = "x86_64")]
mod pairs_x86;
#[cfg(target_arch = "x86_64")]
mod quads_x86;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod window_x86;

use super::gemm::{gemm_u8i8_packed, interleave4, QMatrix, NPAD, NT, PANEL_SLACK};
use super::requant::finish;
use super::{QOutput, QuantParams, Requant};
use crate::isa::Isa;
use crate::ConvGeometry;

/// Bytes after the padded image that the VBMI kernels may read (a 128-byte window from any
/// position in it).
pub(crate) const WINDOW_SLACK: usize = 128;

/// The padded copy of one image of a stride-1 convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Padded {
    wp: usize,
    hp: usize,
    /// Bytes of the padded image (its buffer needs [`WINDOW_SLACK`] more).
    pub len: usize,
}

impl Padded {
    pub(crate) fn new(g: &ConvGeometry) -> Self {
        let (wp, hp) = (g.in_w + 2 * g.padding.1, g.in_h + 2 * g.padding.0);
        Self {
            wp,
            hp,
            len: g.in_channels * hp * wp,
        }
    }

    /// Copies one image `[C, H, W]` into `out` (`len` bytes), padded with `pad`.
    pub(crate) fn fill(&self, g: &ConvGeometry, image: &[u8], pad: u8, out: &mut [u8]) {
        let (h, w, (ph, pw)) = (g.in_h, g.in_w, g.padding);
        let out = &mut out[..self.len];
        if ph == 0 && pw == 0 {
            out.copy_from_slice(image);
            return;
        }
        out.fill(pad);
        for (c, src) in image.chunks_exact(h * w).enumerate() {
            for (y, row) in src.chunks_exact(w).enumerate() {
                let at = (c * self.hp + y + ph) * self.wp + pw;
                out[at..at + w].copy_from_slice(row);
            }
        }
    }

    /// The offset in the padded image of every unfolded row (channel, kernel row, kernel
    /// column), in order.
    fn offsets(&self, g: &ConvGeometry) -> Vec<usize> {
        let mut o = Vec::with_capacity(g.in_channels * g.kernel_h * g.kernel_w);
        for c in 0..g.in_channels {
            for i in 0..g.kernel_h {
                let row = (c * self.hp + i * g.dilation.0) * self.wp;
                o.extend((0..g.kernel_w).map(|j| row + j * g.dilation.1));
            }
        }
        o
    }

    /// Whether the VBMI kernels unfold this layer: `isa` and the CPU allow them and the rows
    /// are narrow enough (see `window_x86::windows_fit`).
    #[cfg(target_arch = "x86_64")]
    fn vbmi(&self, isa: Isa, g: &ConvGeometry) -> bool {
        let f = crate::isa::features();
        isa.or_supported() >= Isa::Avx512
            && f.avx512_vbmi
            && window_x86::windows_fit(g.out_w(), self.wp)
    }

    /// Unfolds the padded image `xp` into `col` `[C * kh * kw, oh * ow]` (im2col order,
    /// padding at `pad`'s value), and `slack` more bytes (unspecified); with the best
    /// variant up to `isa`.
    pub(crate) fn unfold(
        &self,
        isa: Isa,
        g: &ConvGeometry,
        xp: &[u8],
        slack: usize,
        col: &mut Vec<u8>,
    ) {
        let (oh, ow) = (g.out_h(), g.out_w());
        let plane = oh * ow;
        let k = g.in_channels * g.kernel_h * g.kernel_w;
        let col = crate::scratch::sized(col, k * plane + slack);
        if plane == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.vbmi(isa, g) {
            let offs = self.offsets(g);
            assert!(xp.len() >= self.len + WINDOW_SLACK);
            // SAFETY: VBMI is available and the windows fit (checked by `vbmi`); every window
            // starts inside the image, which `WINDOW_SLACK` bytes follow in `xp`; `col` holds
            // `k * plane` bytes.
            unsafe {
                let (x, c) = (xp.as_ptr(), col.as_mut_ptr());
                window_x86::unfold_vbmi(x, &offs, plane, ow, self.wp, c)
            };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let offs = self.offsets(g);
            assert!(xp.len() >= self.len && col.len() >= k * plane);
            // SAFETY: with stride 1, `oh = hp - (kh - 1) * dh` and `ow = wp - (kw - 1) * dw`,
            // so the last row of the last tap ends at `C * hp * wp = len <= xp.len()`; `col`
            // holds `k * plane` bytes (checked above).
            unsafe {
                let (x, c) = (xp.as_ptr(), col.as_mut_ptr());
                window_x86::unfold_rows(x, &offs, (oh, ow, self.wp), c)
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.unfold_portable(g, xp, col);
        let _ = isa;
    }

    /// [`unfold`](Self::unfold) in safe code, row by row.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    fn unfold_portable(&self, g: &ConvGeometry, xp: &[u8], col: &mut [u8]) {
        let (oh, ow) = (g.out_h(), g.out_w());
        let plane = oh * ow;
        let k = g.in_channels * g.kernel_h * g.kernel_w;
        let mut rows = col[..k * plane].chunks_exact_mut(plane);
        for c in 0..g.in_channels {
            for i in 0..g.kernel_h {
                for j in 0..g.kernel_w {
                    let dst = rows.next().expect("k rows");
                    let src = &xp[(c * self.hp + i * g.dilation.0) * self.wp + j * g.dilation.1..];
                    for (y, d) in dst.chunks_exact_mut(ow).enumerate() {
                        copy_run(&src[y * self.wp..y * self.wp + ow], d);
                    }
                }
            }
        }
    }
}

/// Pixels after each quad plane of [`Quads`] that tiles may read (at most 16 past the padded
/// image for the AVX2 kernel, 32 for the AMX one).
const QUAD_SLACK: usize = 32;

/// One image padded and interleaved into channel quads, the input of the direct convolutions
/// (AMX; the quad kernels of `quads_x86`): `[C / 4 rounded up][pl][4]` bytes, the four channels of
/// padded pixel `(y, x)` at pixel `y * wp + x` of their quad plane, so that for a kernel tap the
/// quads of consecutive output pixels (computed on the padded width) are consecutive bytes.
/// For stride 2 the padded image is split into its four phases (rows `py, py + 2, ..`, columns
/// `px, px + 2, ..`), `[4][C / 4 rounded up][pl][4]` with `wp` the phase width, so that a tap
/// reads one phase at an offset, as with stride 1. Padding, the slack after each plane and the
/// channels past `C` hold the pad value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quads {
    /// Padded width (of a phase, for stride 2).
    pub wp: usize,
    /// Pixels per quad plane (the padded image or phase, and [`QUAD_SLACK`]).
    pub pl: usize,
    /// Quad planes (of a phase).
    pub c4: usize,
    /// The stride, 1 or 2 both ways.
    stride: usize,
}

impl Quads {
    /// The layout for `g`, whose stride is 1 or 2 both ways (2 without dilation).
    pub(crate) fn new(g: &ConvGeometry) -> Self {
        let (wp, hp) = (g.in_w + 2 * g.padding.1, g.in_h + 2 * g.padding.0);
        let stride = g.stride.0;
        debug_assert!(
            g.stride == (1, 1) || (g.stride == (2, 2) && g.dilation == (1, 1)),
            "quad images take stride 1, or 2 without dilation"
        );
        let (wp, hp) = (wp.div_ceil(stride), hp.div_ceil(stride));
        Self {
            wp,
            pl: hp * wp + QUAD_SLACK,
            c4: g.in_channels.div_ceil(4),
            stride,
        }
    }

    /// Bytes of the quad image.
    pub(crate) fn len(&self) -> usize {
        self.stride * self.stride * self.c4 * self.pl * 4
    }

    /// The pixel offset of every kernel tap (row-major), from the start of the quad image.
    pub(crate) fn tap_offsets(&self, g: &ConvGeometry) -> Vec<usize> {
        let (kw, s) = (g.kernel_w, self.stride);
        (0..g.kernel_h * kw)
            .map(|t| {
                let (i, j) = (t / kw * g.dilation.0, t % kw * g.dilation.1);
                let phase = (i % s) * s + j % s;
                phase * self.c4 * self.pl + i / s * self.wp + j / s
            })
            .collect()
    }

    /// Fills `out` (`len()` bytes) with one image `[C, H, W]`, padded with `pad`: each quad of
    /// planes is interleaved whole, then its rows are copied into place (split by phase for
    /// stride 2).
    pub(crate) fn fill(&self, g: &ConvGeometry, image: &[u8], pad: u8, out: &mut [u8]) {
        let (c, h, w) = (g.in_channels, g.in_h, g.in_w);
        let (ph, pw) = g.padding;
        let hw = h * w;
        let out = &mut out[..self.len()];
        out.fill(pad);
        if hw == 0 {
            return;
        }
        let pads = if c % 4 == 0 {
            Vec::new()
        } else {
            vec![pad; hw]
        };
        let phase_len = self.c4 * self.pl * 4;
        crate::scratch::with(&crate::scratch::U8_D, |stage| {
            let stage = crate::scratch::sized(stage, 4 * hw);
            for q in 0..self.c4 {
                let planes: [&[u8]; 4] = std::array::from_fn(|t| {
                    let ch = 4 * q + t;
                    if ch < c {
                        &image[ch * hw..(ch + 1) * hw]
                    } else {
                        &pads[..]
                    }
                });
                let at_q = q * self.pl * 4;
                if self.stride == 1 && ph == 0 && pw == 0 {
                    super::gemm::interleave4(planes, &mut out[at_q..at_q + 4 * hw]);
                    continue;
                }
                super::gemm::interleave4(planes, stage);
                for (y, row) in stage.chunks_exact(4 * w).enumerate() {
                    let yp = y + ph;
                    if self.stride == 1 {
                        let at = at_q + (yp * self.wp + pw) * 4;
                        copy_run(row, &mut out[at..at + 4 * w]);
                        continue;
                    }
                    // the row's pixels alternate between the two phases of its row parity:
                    // even ones from padded column pw on, odd ones from pw + 1 on
                    let base = (yp % 2) * 2 * phase_len + at_q + yp / 2 * self.wp * 4;
                    let at = |xp: usize| base + (xp % 2) * phase_len + xp / 2 * 4;
                    let (ne, no) = (w.div_ceil(2), w / 2);
                    let (e, o) = (at(pw), at(pw + 1));
                    // the two phases' rows are `phase_len` apart, whichever comes first
                    let (lo, hi) = out.split_at_mut(e.max(o));
                    let (even, odd) = if e < o {
                        (&mut lo[e..e + 4 * ne], &mut hi[..4 * no])
                    } else {
                        (&mut hi[..4 * ne], &mut lo[o..o + 4 * no])
                    };
                    split_pixels(row, even, odd);
                }
            }
        });
    }
}

/// Splits the 4-byte pixels of `row` by parity: the even ones into `even`, the odd ones into
/// `odd` (AVX2 eight pixels a step where the CPU has it).
fn split_pixels(row: &[u8], even: &mut [u8], odd: &mut [u8]) {
    let n = row.len() / 4;
    assert!(even.len() == 4 * n.div_ceil(2) && odd.len() == 4 * (n / 2));
    let mut x = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::isa::Isa::Avx2.is_supported() {
        // SAFETY: AVX2 is available; every step reads 8 pixels at `x + 8 <= n` and writes 4 to
        // each side at `x / 2`, inside their `n.div_ceil(2)` and `n / 2` pixels.
        unsafe { x = split_pixels_avx2(row.as_ptr(), n, even.as_mut_ptr(), odd.as_mut_ptr()) };
    }
    for (i, px) in row.chunks_exact(4).enumerate().skip(x) {
        let dst = if i % 2 == 0 { &mut *even } else { &mut *odd };
        dst[i / 2 * 4..i / 2 * 4 + 4].copy_from_slice(px);
    }
}

/// The body of [`split_pixels`] for the steps of 8 pixels; returns the pixels done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn split_pixels_avx2(row: *const u8, n: usize, even: *mut u8, odd: *mut u8) -> usize {
    use std::arch::x86_64::*;
    let by_parity = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    let mut x = 0;
    while x + 8 <= n {
        let v = _mm256_loadu_si256(row.add(4 * x) as *const __m256i);
        let v = _mm256_permutevar8x32_epi32(v, by_parity);
        _mm_storeu_si128(even.add(2 * x) as *mut __m128i, _mm256_castsi256_si128(v));
        _mm_storeu_si128(
            odd.add(2 * x) as *mut __m128i,
            _mm256_extracti128_si256::<1>(v),
        );
        x += 8;
    }
    x
}

/// `dst.copy_from_slice(src)` in 32-byte pieces from 32 bytes on, else 8-byte ones (the last
/// overlapping the one before), for the short runs where a `memcpy` call costs more than the
/// copy.
#[inline(always)]
fn copy_run(src: &[u8], dst: &mut [u8]) {
    let n = dst.len().min(src.len());
    if n < 8 {
        dst[..n].copy_from_slice(&src[..n]);
        return;
    }
    let mut x = 0;
    if n >= 32 {
        while x + 32 < n {
            dst[x..x + 32].copy_from_slice(&src[x..x + 32]);
            x += 32;
        }
        dst[n - 32..n].copy_from_slice(&src[n - 32..n]);
        return;
    }
    while x + 8 < n {
        dst[x..x + 8].copy_from_slice(&src[x..x + 8]);
        x += 8;
    }
    dst[n - 8..n].copy_from_slice(&src[n - 8..n]);
}

/// Whether this path applies and is expected to beat the plain unfolding at level `isa`: one
/// group, stride 1, a spatial kernel (1x1 ones multiply the input in place), and either output
/// rows narrower than the input's (the plain unfolding works out every row's span), or a
/// level whose kernels win on "same" convolutions too (the ResNet 3x3 layers at 56x56 to 7x7,
/// one thread): the VBMI + VNNI ones with the requantization fused (8-30% faster) and, without
/// VNNI, the AVX2 one on i16 pairs (1.4-1.6x). With VNNI but no VBMI the plain unfolding stays
/// for them (the fused kernel on a packed panel measured 1% slower to 15% faster).
pub(crate) fn preferred(isa: Isa, g: &ConvGeometry) -> bool {
    let pointwise = g.kernel_h * g.kernel_w == 1 && g.padding == (0, 0);
    let base = g.groups == 1 && g.stride == (1, 1) && g.out_w() * g.out_h() > 0;
    #[cfg(target_arch = "x86_64")]
    let same = {
        let f = crate::isa::features();
        let wp = g.in_w + 2 * g.padding.1;
        let vnni = isa.or_supported() >= Isa::Avx512 && f.avx512_vnni;
        (vnni && f.avx512_vbmi && window_x86::windows_fit(g.out_w(), wp))
            || (!vnni && isa.or_supported() >= Isa::Avx2)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let same = false;
    let _ = isa;
    base && ((g.kernel_h * g.kernel_w > 1 && g.out_w() < g.in_w) || same) && (same || !pointwise)
}

/// Whether [`unfold_image`] is expected to beat the plain im2col at level `isa`: one group,
/// stride 1, a spatial kernel, and output rows narrower than the input's or windows that the
/// VBMI kernel gathers.
pub(crate) fn unfold_preferred(isa: Isa, g: &ConvGeometry) -> bool {
    let base = g.groups == 1
        && g.stride == (1, 1)
        && g.out_w() * g.out_h() > 0
        && g.kernel_h * g.kernel_w > 1;
    #[cfg(target_arch = "x86_64")]
    let vbmi = Padded::new(g).vbmi(isa, g);
    #[cfg(not(target_arch = "x86_64"))]
    let vbmi = false;
    let _ = isa;
    base && (g.out_w() < g.in_w || vbmi)
}

/// The im2col of one image `[C, H, W]` (padding at `pad`) into `col`, `slack` bytes more, through
/// the padded copy: the rows [`im2col_u8`](super::ops::im2col_u8) makes, for stride 1.
pub(crate) fn unfold_image(
    isa: Isa,
    g: &ConvGeometry,
    image: &[u8],
    pad: u8,
    slack: usize,
    col: &mut Vec<u8>,
) {
    let pd = Padded::new(g);
    crate::scratch::with(&crate::scratch::U8_C, |xp| {
        let xp = crate::scratch::sized(xp, pd.len + WINDOW_SLACK);
        pd.fill(g, image, pad, xp);
        pd.unfold(isa, g, xp, slack, col);
    });
}

/// Packs the unfolded rows `col` (`k` rows of `n` columns) into the tile-major panel of
/// [`gemm::pack_a`] (columns padded to [`NPAD`], [`PANEL_SLACK`] bytes after). Returns the
/// padded column count.
///
/// [`gemm::pack_a`]: super::gemm::pack_a
fn pack(isa: Isa, col: &[u8], k: usize, n: usize, out: &mut Vec<u8>) -> usize {
    let (k4, npad) = (k.div_ceil(4), n.div_ceil(NPAD) * NPAD);
    let out = crate::scratch::sized(out, k4 * npad * 4 + PANEL_SLACK);
    #[cfg(target_arch = "x86_64")]
    if isa.or_supported() >= Isa::Avx2 {
        use super::x86::{pack_tile_avx2, pack_tile_avx512, TileRows};
        let wide = isa.or_supported() >= Isa::Avx512;
        let mut rows = vec![None; 4 * k4];
        for j0 in (0..npad).step_by(NT) {
            let wt = NT.min(npad - j0);
            let valid = wt.min(n - j0.min(n));
            for (kk, r) in rows.iter_mut().enumerate().take(k) {
                *r = Some(col[kk * n + j0..kk * n + j0 + valid].as_ptr());
            }
            let t = TileRows {
                rows: &rows,
                valid,
                wt,
            };
            let dst = out[j0 * k4 * 4..(j0 + wt) * k4 * 4].as_mut_ptr();
            // SAFETY: the level is supported (AVX-512 F/BW with it); every row pointer starts
            // `valid` readable bytes (sliced above), `dst` holds `4 * k4 * wt` bytes, and
            // `rows` has `4 * k4` entries.
            unsafe {
                if wide {
                    pack_tile_avx512(&t, dst)
                } else {
                    pack_tile_avx2(&t, dst)
                }
            }
        }
        return npad;
    }
    let _ = isa;
    let zeros = [0u8; NT];
    for j0 in (0..npad).step_by(NT) {
        let wt = NT.min(npad - j0);
        let valid = wt.min(n - j0.min(n));
        let tile = &mut out[j0 * k4 * 4..(j0 + wt) * k4 * 4];
        for (kq, dst) in tile.chunks_exact_mut(wt * 4).enumerate() {
            let rows: [&[u8]; 4] = std::array::from_fn(|t| {
                let kk = 4 * kq + t;
                if kk < k {
                    &col[kk * n + j0..][..valid]
                } else {
                    &zeros[..valid]
                }
            });
            interleave4(rows, &mut dst[..4 * valid]);
            dst[4 * valid..].fill(0);
        }
    }
    npad
}

/// The dense convolution of every image through the padded copy (a pointwise one straight from
/// its input), written as `out` says; needs stride 1, groups 1 and a packed SIMD kernel for
/// `isa` (see [`preferred`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_dense(
    isa: Isa,
    g: &ConvGeometry,
    input: &[u8],
    xq: QuantParams,
    w: &QMatrix,
    mult: &[Requant],
    out: &mut QOutput<'_>,
) {
    let pd = Padded::new(g);
    let one = ConvGeometry { batch: 1, ..*g };
    let in_img = g.in_channels * g.in_h * g.in_w;
    let (oc, plane) = (g.out_channels, g.out_h() * g.out_w());
    let k = g.in_channels * g.kernel_h * g.kernel_w;
    let pointwise = g.kernel_h == 1 && g.kernel_w == 1 && g.padding == (0, 0);
    #[cfg(target_arch = "x86_64")]
    let window = !pointwise && pd.vbmi(isa, g);
    #[cfg(target_arch = "x86_64")]
    let offs = if window { pd.offsets(g) } else { Vec::new() };
    #[cfg(not(target_arch = "x86_64"))]
    let window = false;
    #[cfg(target_arch = "x86_64")]
    let vnni = isa.or_supported() >= Isa::Avx512 && crate::isa::features().avx512_vnni;
    #[cfg(target_arch = "x86_64")]
    let fused = vnni && matches!(out, QOutput::U8 { .. });
    #[cfg(target_arch = "x86_64")]
    let pairs = !vnni && isa.or_supported() >= Isa::Avx2 && !w.is_narrow();
    crate::scratch::with(&crate::scratch::U8_A, |xp| {
        crate::scratch::with(&crate::scratch::U8_B, |ap| {
            crate::scratch::with(&crate::scratch::U8_C, |col| {
                let xp = crate::scratch::sized(xp, pd.len + WINDOW_SLACK);
                for n in 0..g.batch {
                    let image = &input[n * in_img..(n + 1) * in_img];
                    let base = n * oc * plane;
                    // the window kernels read the padded copy, the others the unfolded rows (a
                    // pointwise layer's are its input)
                    if !pointwise {
                        pd.fill(&one, image, xq.zero_point, xp);
                        if !window {
                            pd.unfold(isa, &one, xp, 0, col);
                        }
                    }
                    let rows: &[u8] = if pointwise { image } else { col };
                    #[cfg(target_arch = "x86_64")]
                    if fused {
                        use fused_x86::Panel;
                        let npad;
                        let panel = if window {
                            let (ow, wp) = (g.out_w(), pd.wp);
                            Panel::Window {
                                xp,
                                offs: &offs,
                                ow,
                                wp,
                            }
                        } else {
                            npad = pack(isa, rows, k, plane, ap);
                            Panel::Packed { ap, npad }
                        };
                        fused_u8(g, &panel, xq.zero_point, mult, out, base, w);
                        continue;
                    }
                    #[cfg(target_arch = "x86_64")]
                    if pairs {
                        conv_pairs(w, rows, plane, xq.zero_point, |acc| {
                            let sc = w.scales();
                            finish(isa, acc, oc, plane, xq, sc, mult, out, base, false);
                        });
                        continue;
                    }
                    #[cfg(target_arch = "x86_64")]
                    let npad = if window {
                        let npad = plane.div_ceil(NPAD) * NPAD;
                        let len = k.div_ceil(4) * 4 * npad + PANEL_SLACK;
                        let ap = crate::scratch::sized(ap, len);
                        let ow = g.out_w();
                        // SAFETY: VBMI is available and the windows fit (checked by `vbmi`);
                        // every window starts inside the image, which `WINDOW_SLACK` bytes
                        // follow in `xp`; `ap` holds the panel of `npad` columns.
                        unsafe {
                            let (x, a) = (xp.as_ptr(), ap.as_mut_ptr());
                            window_x86::pack_vbmi(x, &offs, plane, ow, pd.wp, npad, a)
                        };
                        npad
                    } else {
                        pack(isa, rows, k, plane, ap)
                    };
                    #[cfg(not(target_arch = "x86_64"))]
                    let npad = pack(isa, rows, k, plane, ap);
                    crate::scratch::with(&crate::scratch::I32_A, |acc| {
                        let acc = crate::scratch::sized(acc, oc * plane);
                        gemm_u8i8_packed(isa, w, ap, npad, plane, xq.zero_point, acc);
                        let sc = w.scales();
                        finish(isa, acc, oc, plane, xq, sc, mult, out, base, false);
                    });
                }
            })
        })
    });
}

/// How [`conv_quads`] runs a convolution: made by [`quads_plan`] where it applies.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuadConv {
    product: QuadProduct,
    /// The quads are taken from the unfolded rows (as the channels of a 1x1 layer over the
    /// output pixels) rather than from the padded image.
    unfolded: bool,
}

/// The registers and product of the quad convolution (for weights of any width; narrow weights
/// take `vpmaddubsw` where the level has no VNNI).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Eq)]
enum QuadProduct {
    /// AVX-512 with VNNI.
    Vnni,
    /// AVX-512 F/BW/VL without VNNI.
    Zmm,
    /// AVX2.
    Ymm,
}

/// Whether [`conv_quads`] applies and is expected to beat the other paths at level `isa`, and
/// how: a u8 output, one group, a spatial kernel, and
/// - with VNNI, stride 2 without dilation (the others have the windows and the AMX kernels),
///   at most a quarter more products than the unfolding (every tap takes whole channel quads,
///   zeros past the last channel);
/// - at the AVX2 and AVX-512 levels without VNNI, stride 1 or 2 (2 without dilation) within
///   that quarter; on AVX2 registers with 8-bit weights, at most 64 input channels (the i16
///   pairs of `pairs_x86` measured faster from 128: 256 channels at 14x14 1.87 against 2.05
///   ms, 512 at 7x7 2.39 against 2.70; 64 at 56x56 2.08 against 1.76 the other way);
/// - on AVX-512 registers without VNNI, layers past that quarter (a one-channel 3x3 layer
///   takes three times the products of its unfolding: measured a third slower through the
///   image's quads) with at most 16 unfolded rows take their quads from the unfolded rows, as
///   the channels of a 1x1 layer: the rows' quads of consecutive output pixels are consecutive
///   bytes too, and the product and epilogue run unchanged (see [`unfolded`]). One channel,
///   3x3, u8 output: 1 -> 32 channels at 32x32 10.3 against 15.3-16.7 us for the packed
///   product, 1 -> 16 at 28x28 4.6 against 4.9; not taken on AVX2 registers (6.1 against 5.3,
///   14.2 against 14.9) nor for a 5x5 kernel's 25 rows (1 -> 20 at 28x28 7.5 against 7.1).
///
/// Without VNNI, AVX-512 registers do a tile's products at about 1.3 times the AVX2 rate (the
/// adds share the two ports of the products), but their tiles of four runs of 16 columns waste
/// more of a small output (a 5x5 layer's 8x8 output on rows 12 wide: 128 columns against 64,
/// 41 against 27-28 us): they are taken where they compute at most a quarter more columns (a
/// 14x14 output on rows 16 wide, 256 against 224: 32 channels 31.0 and 21.8 us with 8-bit and
/// 7-bit weights against 35.4 and 26.4 on AVX2 registers).
///
/// Pointwise layers are packed straight from their input: their short inner loop does not pay
/// for the fused epilogue (1x1 layers of 16 and 32 channels at 28x28 and 16x16 measured 15-30%
/// slower through the quads).
#[cfg(target_arch = "x86_64")]
pub(crate) fn quads_plan(
    isa: Isa,
    g: &ConvGeometry,
    w: &QMatrix,
    out: &QOutput<'_>,
) -> Option<QuadConv> {
    let taps = g.kernel_h * g.kernel_w;
    let stride2 = g.stride == (2, 2) && g.dilation == (1, 1);
    let level = isa.or_supported();
    let applies = matches!(out, QOutput::U8 { .. })
        && level >= Isa::Avx2
        && g.groups == 1
        && g.out_h() * g.out_w() > 0
        && taps > 1;
    if !applies {
        return None;
    }
    let vnni = level >= Isa::Avx512 && crate::isa::features().avx512_vnni;
    let whole_quads =
        4 * taps * g.in_channels.div_ceil(4) <= 5 * (taps * g.in_channels).div_ceil(4);
    if vnni {
        return (stride2 && whole_quads).then_some(QuadConv {
            product: QuadProduct::Vnni,
            unfolded: false,
        });
    }
    // the unfolded rows take any stride; a quad image stride 1, or 2 without dilation
    let unfolded = !whole_quads;
    if !(unfolded || g.stride == (1, 1) || stride2) {
        return None;
    }
    let product = if level >= Isa::Avx512 {
        let shape = quad_shape(g, unfolded);
        let zmm = quads_x86::tile_columns(shape, true);
        if 4 * zmm <= 5 * quads_x86::tile_columns(shape, false) {
            QuadProduct::Zmm
        } else {
            QuadProduct::Ymm
        }
    } else {
        QuadProduct::Ymm
    };
    let fits = match (product, unfolded) {
        (QuadProduct::Zmm, false) => true,
        (QuadProduct::Zmm, true) => taps * g.in_channels <= 16,
        (_, false) => w.is_narrow() || g.in_channels <= 64,
        (_, true) => false,
    };
    fits.then_some(QuadConv { product, unfolded })
}

/// The padded row length and output size the quad product of `g` runs on: the padded image's
/// (or phase's), or with the `unfolded` rows one row per output row, not padded.
#[cfg(target_arch = "x86_64")]
fn quad_shape(g: &ConvGeometry, unfolded: bool) -> (usize, usize, usize) {
    let (oh, ow) = (g.out_h(), g.out_w());
    if unfolded {
        (ow, oh, ow)
    } else {
        (Quads::new(g).wp, oh, ow)
    }
}

/// The 1x1 layer over the output pixels of `g` whose input channels are the unfolded rows of
/// `g` (`[C * kh * kw, out_h, out_w]`): its quad image is the unfolded rows' quads, its weights
/// `g`'s as they are (one tap).
#[cfg(target_arch = "x86_64")]
fn unfolded(g: &ConvGeometry) -> ConvGeometry {
    ConvGeometry::new(
        1,
        g.in_channels * g.kernel_h * g.kernel_w,
        g.out_h(),
        g.out_w(),
        g.out_channels,
        1,
        1,
    )
}

/// The convolution of every image straight from its quad image into the u8 output `out` (see
/// `quads_x86`), as `plan` ([`quads_plan`] of these arguments) says, the output channels split
/// across the configured threads.
#[cfg(target_arch = "x86_64")]
pub(crate) fn conv_quads(
    plan: QuadConv,
    g: &ConvGeometry,
    input: &[u8],
    za: u8,
    w: &QMatrix,
    mult: &[Requant],
    out: &mut QOutput<'_>,
) {
    use super::gemm::{par_rows, MR};
    use quads_x86::Packed;
    let QuadConv { product, unfolded } = plan;
    // what the plan's product relies on, which the plan of other arguments may not have checked
    let level = match product {
        QuadProduct::Vnni => Isa::Avx512.is_supported() && crate::isa::features().avx512_vnni,
        QuadProduct::Zmm => Isa::Avx512.is_supported(),
        QuadProduct::Ymm => Isa::Avx2.is_supported(),
    };
    let stride2 = g.stride == (2, 2) && g.dilation == (1, 1);
    assert!(level && (unfolded || g.stride == (1, 1) || stride2) && g.out_h() * g.out_w() > 0);
    let (epi, out) = fused_x86::Epilogue::of_u8(w, za, mult, out);
    let one = ConvGeometry { batch: 1, ..*g };
    // the geometry whose quad image the product reads
    let gq = if unfolded { self::unfolded(g) } else { one };
    let q = Quads::new(&gq);
    let offs = q.tap_offsets(&gq);
    let (quads, pairs);
    let packed = if product == QuadProduct::Vnni {
        quads = w.quad_taps(offs.len());
        Packed::Vnni(&quads)
    } else if w.is_narrow() {
        quads = w.quad_taps(offs.len());
        Packed::Narrow(&quads)
    } else {
        pairs = w.quad_pairs(offs.len());
        Packed::Pairs(&pairs)
    };
    let (oh, ow) = (g.out_h(), g.out_w());
    let (oc, plane) = (g.out_channels, oh * ow);
    let in_img = g.in_channels * g.in_h * g.in_w;
    let col_len = if unfolded { gq.input_len() } else { 0 };
    crate::scratch::with(&crate::scratch::U8_A, |xb| {
        let xb = crate::scratch::sized(xb, q.len());
        for n in 0..g.batch {
            let image = &input[n * in_img..(n + 1) * in_img];
            if unfolded {
                crate::scratch::with(&crate::scratch::U8_C, |col| {
                    let col = crate::scratch::sized(col, col_len);
                    super::ops::im2col_u8(&one, image, za, col);
                    q.fill(&gq, col, za, xb);
                });
            } else {
                q.fill(&one, image, za, xb);
            }
            let xb = &*xb;
            let out = &mut out[n * oc * plane..(n + 1) * oc * plane];
            par_rows(oc, plane, MR, out, |r0, r1, o| {
                let (sh, rows) = ((oh, ow), (r0, r1));
                // SAFETY: the CPU has the registers of `product` (and VNNI for its VNNI form),
                // asserted above; narrow weights, and only they, are packed for the narrow
                // product; `xb` is the quad image of this geometry (stride 1 or 2, asserted),
                // `offs` its taps, `packed` the weights packed for them, `epi` made for `w`,
                // `r0` a multiple of `MR` and `o` the `plane` outputs of channels `r0..r1`.
                unsafe {
                    match product {
                        QuadProduct::Ymm => {
                            quads_x86::conv_u8(packed, xb, &q, &offs, sh, &epi, rows, o)
                        }
                        _ => quads_x86::conv_u8_zmm(packed, xb, &q, &offs, sh, &epi, rows, o),
                    }
                }
            });
        }
    });
}

/// The weights of `w` as i16 pairs for the AVX2 kernel (see `pairs_x86`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn pack_weight_pairs(w: &QMatrix) -> Vec<i16> {
    pairs_x86::pack_weights(w)
}

/// The weights of `w` (a convolution with `taps` kernel taps) in the order of the quad
/// convolution (see `quads_x86`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn pack_weight_quads(w: &QMatrix, taps: usize) -> Vec<i8> {
    quads_x86::pack_weights(w, taps)
}

/// [`pack_weight_quads`] as the i16 pairs of the quad convolution's exact product.
#[cfg(target_arch = "x86_64")]
pub(crate) fn pack_weight_quad_pairs(w: &QMatrix, taps: usize) -> Vec<i16> {
    quads_x86::pack_pairs(w, taps)
}

/// The product of one image's unfolded rows `col` (`[k, plane]`) on i16 pairs with AVX2 (the
/// output channels split across the configured threads), minus the zero-point term, handed to
/// `done` as `[O, plane]` accumulators.
#[cfg(target_arch = "x86_64")]
fn conv_pairs(w: &QMatrix, col: &[u8], plane: usize, za: u8, done: impl FnOnce(&[i32])) {
    let (oc, k) = (w.rows(), w.cols());
    let wp = w.i16_pairs();
    let corr: Vec<i32> = w.row_sums().iter().map(|s| za as i32 * s).collect();
    crate::scratch::with(&crate::scratch::I16_A, |ap| {
        let ap = crate::scratch::sized(ap, plane.div_ceil(16) * 16 * k.div_ceil(2) * 2);
        assert!(col.len() >= k * plane);
        // SAFETY: AVX2 is available (the caller's level); `col` holds `k * plane` bytes and `ap`
        // the panel of `plane.div_ceil(16)` tiles of `k.div_ceil(2)` pairs of 16 columns.
        unsafe { pairs_x86::pack_panel(col.as_ptr(), k, plane, ap.as_mut_ptr()) };
        let ap = &*ap;
        crate::scratch::with(&crate::scratch::I32_A, |acc| {
            let acc = crate::scratch::sized(acc, oc * plane);
            let nt = crate::threads::num_threads();
            let blocks = oc.div_ceil(pairs_x86::ROWS);
            let per = blocks.div_ceil(nt.min(blocks).max(1)) * pairs_x86::ROWS;
            let parts: Vec<(usize, &mut [i32])> = acc
                .chunks_mut((per * plane).max(1))
                .enumerate()
                .map(|(i, a)| (i * per, a))
                .collect();
            crate::threads::run_parts(parts, |(r0, a)| {
                let r1 = (r0 + per).min(oc);
                // SAFETY: AVX2 is available; `wp` and `ap` are the pair layouts of `w` and of
                // the unfolding, `corr` has an entry per row, `r0` is a multiple of `ROWS`, and
                // `a` holds the `plane` accumulators of rows `r0..r1`.
                unsafe { pairs_x86::gemm(wp, ap, k, plane, &corr, r0, r1, a.as_mut_ptr()) }
            });
            done(acc);
        });
    });
}

/// The fused product and requantization of one image into the u8 output `out` at `base`, the
/// output channels split across the configured threads.
#[cfg(target_arch = "x86_64")]
fn fused_u8(
    g: &ConvGeometry,
    panel: &fused_x86::Panel<'_>,
    za: u8,
    mult: &[Requant],
    out: &mut QOutput<'_>,
    base: usize,
    w: &QMatrix,
) {
    use super::gemm::MR;
    let (epi, out) = fused_x86::Epilogue::of_u8(w, za, mult, out);
    let (oc, plane) = (g.out_channels, g.out_h() * g.out_w());
    let out = &mut out[base..base + oc * plane];
    let nt = crate::threads::num_threads();
    let blocks = oc.div_ceil(MR);
    let per = blocks.div_ceil(nt.min(blocks).max(1)) * MR;
    let parts: Vec<(usize, &mut [u8])> = out
        .chunks_mut((per * plane).max(1))
        .enumerate()
        .map(|(i, o)| (i * per, o))
        .collect();
    crate::threads::run_parts(parts, |(r0, o)| {
        let r1 = (r0 + per).min(oc);
        // SAFETY: the caller checked for VNNI (`Isa::Avx512` supported and AVX-512 VNNI
        // detected) and, for a window panel, for VBMI and the windows (`Padded::vbmi`), with
        // `WINDOW_SLACK` bytes after the image; a packed panel holds `npad >= plane` columns;
        // `r0` is a multiple of `MR`, `epi` made for `w`, and `o` holds the `plane` outputs of
        // channels `r0..r1`.
        unsafe { fused_x86::conv_vnni_u8(w, panel, plane, (r0, r1), &epi, o) }
    });
}
