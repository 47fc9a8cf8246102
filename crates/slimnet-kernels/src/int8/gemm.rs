//! u8 x i8 -> i32 matrix products on pre-packed weights.

use rayon::prelude::*;

use crate::error::{check_len, check_len2, KernelError, Result};
use crate::isa::Isa;
use crate::threads;

/// Rows of the weight micro-panel.
pub(crate) const MR: usize = 4;
/// Columns of the activation panel are padded to a multiple of this.
pub(crate) const NPAD: usize = 16;
/// Largest inner dimension: `255 * 128 * K` must fit an i32 accumulator.
pub const MAX_INNER: usize = 65_536;

/// Symmetric per-row (per-output-channel) quantized weights `[rows, cols]`, with the row sums
/// and the packed layout the kernels read.
///
/// Row `r` stands for `values[r, :] * scales[r]`. The requantization multipliers of the last
/// pair of activation scales a kernel used are kept (not part of the value: left out of
/// comparisons, and a clone starts without them).
#[derive(Debug, Clone, PartialEq)]
pub struct QMatrix {
    /// Other kernels' layouts, made on their first use (derived from `values`).
    layouts: LazyLayouts,
    /// Requantization multipliers of the last activation scales (derived from `scales`).
    mults: super::quant::Multipliers,
    rows: usize,
    cols: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    row_sums: Vec<i32>,
    /// `[rows / MR][cols / 4][MR][4]`, zero-padded in rows and columns.
    packed: Vec<i8>,
    /// Whether every value is within `±NARROW_MAX` (derived from `values`).
    narrow: bool,
}

impl QMatrix {
    /// Wraps row-major i8 values with one scale per row.
    ///
    /// # Errors
    /// Wrong lengths, `cols > MAX_INNER`, or a scale that is not finite and positive.
    pub fn new(rows: usize, cols: usize, values: Vec<i8>, scales: Vec<f32>) -> Result<Self> {
        if cols > MAX_INNER {
            return Err(KernelError::Invalid {
                what: "int8 inner dimension",
                reason: format!("{cols} > {MAX_INNER}"),
            });
        }
        check_len(
            "int8 weight",
            rows.checked_mul(cols).ok_or(KernelError::Invalid {
                what: "int8 weight shape",
                reason: "overflow".into(),
            })?,
            values.len(),
        )?;
        check_len("int8 weight scales", rows, scales.len())?;
        if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(KernelError::Invalid {
                what: "int8 weight scale",
                reason: format!("{s} is not finite and positive"),
            });
        }
        let row_sums = values
            .chunks(cols.max(1))
            .take(rows)
            .map(|r| r.iter().map(|&v| v as i32).sum())
            .chain(std::iter::repeat(0))
            .take(rows)
            .collect();
        let k4 = cols.div_ceil(4);
        let rb = rows.div_ceil(MR);
        let mut packed = vec![0i8; rb * k4 * MR * 4];
        for r in 0..rows {
            for k in 0..cols {
                let (b, rr) = (r / MR, r % MR);
                packed[((b * k4 + k / 4) * MR + rr) * 4 + k % 4] = values[r * cols + k];
            }
        }
        Ok(Self {
            layouts: LazyLayouts::default(),
            mults: Default::default(),
            rows,
            cols,
            narrow: super::quant::all_narrow(&values),
            values,
            scales,
            row_sums,
            packed,
        })
    }

    /// Quantizes an f32 `[rows, cols]` weight per row (see
    /// [`quantize_weights_per_channel`](super::quantize_weights_per_channel)).
    ///
    /// # Errors
    /// Wrong lengths or non-finite weights.
    pub fn quantize(w: &[f32], rows: usize, cols: usize) -> Result<Self> {
        check_len2("f32 weight", rows, cols, w.len())?;
        if rows == 0 {
            return Self::new(0, cols, vec![], vec![]);
        }
        let (q, s) = super::quantize_weights_per_channel(w, rows)?;
        Self::new(rows, cols, q, s)
    }

    /// [`quantize`](Self::quantize) to `bits` bits (see
    /// [`quantize_weights_per_channel_bits`](super::quantize_weights_per_channel_bits)).
    ///
    /// # Errors
    /// Wrong lengths, non-finite weights or `bits` outside `2..=8`.
    pub fn quantize_bits(w: &[f32], rows: usize, cols: usize, bits: u32) -> Result<Self> {
        check_len2("f32 weight", rows, cols, w.len())?;
        super::quant::symmetric_max(bits)?;
        if rows == 0 {
            return Self::new(0, cols, vec![], vec![]);
        }
        let (q, s) = super::quantize_weights_per_channel_bits(w, rows, bits)?;
        Self::new(rows, cols, q, s)
    }

    /// Whether every value is within `±`[`NARROW_MAX`](super::NARROW_MAX) (7-bit weights are).
    pub fn is_narrow(&self) -> bool {
        self.narrow
    }

    /// Number of rows (output channels).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inner dimension).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row-major i8 values.
    pub fn values(&self) -> &[i8] {
        &self.values
    }

    /// Per-row scales.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Per-row sums of the i8 values (used to apply the activation zero point).
    pub fn row_sums(&self) -> &[i32] {
        &self.row_sums
    }

    /// The cache of requantization multipliers.
    pub(crate) fn multipliers(&self) -> &super::quant::Multipliers {
        &self.mults
    }

    /// The weights in the AMX kernel's layout, packed on first use.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn amx_packed(&self) -> &[u8] {
        self.layouts
            .panel
            .get_or_init(|| super::amx::pack_weights(self))
    }

    /// The weights in the tap-major layout of the AMX direct convolution, packed on first
    /// use (and kept for the `taps` of that use; another tap count gets a fresh copy).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn amx_tap_major(&self, taps: usize) -> std::borrow::Cow<'_, [u8]> {
        let pack = || super::amx::pack_weights_tap_major(self, taps);
        let (t, v) = self.layouts.tap_major.get_or_init(|| (taps, pack()));
        if *t == taps {
            std::borrow::Cow::Borrowed(v)
        } else {
            std::borrow::Cow::Owned(pack())
        }
    }

    /// The weights as i16 pairs for the AVX2 convolution (`direct::pairs_x86`), packed on
    /// first use.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn i16_pairs(&self) -> &[i16] {
        self.layouts
            .pairs
            .get_or_init(|| super::direct::pack_weight_pairs(self))
    }

    /// The weights in the tap-major quad layout of the quad convolution, packed on first use
    /// (and kept for the `taps` of that use; another tap count gets a fresh copy).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn quad_taps(&self, taps: usize) -> std::borrow::Cow<'_, [i8]> {
        kept_for_taps(&self.layouts.quad_taps, taps, || {
            super::direct::pack_weight_quads(self, taps)
        })
    }

    /// [`quad_taps`](Self::quad_taps) as the i16 pairs of the quad convolution's exact
    /// product, packed on first use (kept as `quad_taps` is).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn quad_pairs(&self, taps: usize) -> std::borrow::Cow<'_, [i16]> {
        kept_for_taps(&self.layouts.quad_pairs, taps, || {
            super::direct::pack_weight_quad_pairs(self, taps)
        })
    }

    pub(crate) fn packed_block(&self, b: usize) -> &[i8] {
        let len = self.cols.div_ceil(4) * MR * 4;
        &self.packed[b * len..(b + 1) * len]
    }
}

/// Lazily made copies of a [`QMatrix`] in other kernels' layouts (the AMX kernels', the AVX2
/// convolution's i16 pairs and channel quads): not part of its value, so they are left out of comparisons and
/// debug output.
#[derive(Clone, Default)]
struct LazyLayouts {
    panel: std::sync::OnceLock<Vec<u8>>,
    tap_major: std::sync::OnceLock<(usize, Vec<u8>)>,
    quad_taps: std::sync::OnceLock<(usize, Vec<i8>)>,
    quad_pairs: std::sync::OnceLock<(usize, Vec<i16>)>,
    pairs: std::sync::OnceLock<Vec<i16>>,
}

impl PartialEq for LazyLayouts {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for LazyLayouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

/// The layout in `cell`, made by `pack` for `taps` kernel taps on first use; a later use with
/// another tap count gets a fresh copy (a weight serves one convolution).
#[cfg(target_arch = "x86_64")]
fn kept_for_taps<'a, T: Clone>(
    cell: &'a std::sync::OnceLock<(usize, Vec<T>)>,
    taps: usize,
    pack: impl Fn() -> Vec<T>,
) -> std::borrow::Cow<'a, [T]> {
    let (t, v) = cell.get_or_init(|| (taps, pack()));
    if *t == taps {
        std::borrow::Cow::Borrowed(v)
    } else {
        std::borrow::Cow::Owned(pack())
    }
}

/// A u8 matrix `[k, n]` given by strides: element `(i, j)` at `data[i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct U8View<'a> {
    pub data: &'a [u8],
    pub k: usize,
    pub n: usize,
    pub rs: usize,
    pub cs: usize,
}

impl U8View<'_> {
    #[inline]
    fn at(&self, i: usize, j: usize) -> u8 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// Columns per tile of the packed activation panel.
pub(crate) const NT: usize = 64;
/// Bytes after a packed panel that kernels may read past its end (see `amx::PANEL_SLACK`).
#[cfg(target_arch = "x86_64")]
pub(crate) use super::amx::PANEL_SLACK;
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const PANEL_SLACK: usize = 0;

/// Packs `a` tile by tile: columns are padded to a multiple of [`NPAD`] and cut into tiles of
/// up to [`NT`]; tile `t` (starting at column `j0 = NT * t`, `wt` columns wide) is stored at
/// `j0 * k4 * 4` as `[k4][wt][4]` (quads of consecutive k per column), zero-padded, and
/// followed by [`PANEL_SLACK`] bytes the AMX kernel may read. Returns the padded column count.
pub(crate) fn pack_a(a: &U8View<'_>, out: &mut Vec<u8>) -> usize {
    let npad = a.n.div_ceil(NPAD) * NPAD;
    let k4 = a.k.div_ceil(4);
    let out = crate::scratch::sized(out, k4 * npad * 4 + PANEL_SLACK);
    for j0 in (0..npad).step_by(NT) {
        let wt = NT.min(npad - j0);
        let valid = wt.min(a.n.saturating_sub(j0));
        let base = j0 * k4 * 4;
        for kq in 0..k4 {
            let dst = &mut out[base + kq * wt * 4..base + (kq + 1) * wt * 4];
            let full = 4 * kq + 4 <= a.k;
            if full && a.cs == 1 {
                let rows: [&[u8]; 4] =
                    std::array::from_fn(|t| &a.data[(4 * kq + t) * a.rs + j0..][..valid]);
                interleave4(rows, &mut dst[..4 * valid]);
            } else if full && a.rs == 1 {
                for jj in 0..valid {
                    let s = (j0 + jj) * a.cs + 4 * kq;
                    dst[4 * jj..4 * jj + 4].copy_from_slice(&a.data[s..s + 4]);
                }
            } else {
                for jj in 0..valid {
                    for t in 0..4 {
                        let i = 4 * kq + t;
                        dst[4 * jj + t] = if i < a.k { a.at(i, j0 + jj) } else { 0 };
                    }
                }
            }
            dst[4 * valid..].fill(0);
        }
    }
    npad
}

/// `out[4 * j + t] = rows[t][j]`.
pub(crate) fn interleave4(rows: [&[u8]; 4], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        super::x86::interleave4(rows, out);
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (j, o) in out.chunks_mut(4).enumerate() {
        for t in 0..4 {
            o[t] = rows[t][j];
        }
    }
}

/// Scalar reference: `c[r, j] = sum_k (a[k, j] - za) * w[r, k]` for rows `r0..r1`.
pub(crate) fn gemm_scalar(
    w: &QMatrix,
    a: &U8View<'_>,
    za: u8,
    r0: usize,
    r1: usize,
    c: &mut [i32],
) {
    let n = a.n;
    for r in r0..r1 {
        let wr = &w.values[r * w.cols..(r + 1) * w.cols];
        let cr = &mut c[(r - r0) * n..(r - r0 + 1) * n];
        for (j, o) in cr.iter_mut().enumerate() {
            let mut s = 0i32;
            for (k, &wv) in wr.iter().enumerate() {
                s += (a.at(k, j) as i32 - za as i32) * wv as i32;
            }
            *o = s;
        }
    }
}

/// `c [rows, n] = (a - za) * W^T...`: the product `W [rows, k] x (A [k, n] - za)` into i32,
/// with the best variant up to `isa`, threads over row blocks.
pub(crate) fn gemm_u8i8(isa: Isa, w: &QMatrix, a: &U8View<'_>, za: u8, c: &mut [i32]) {
    assert_eq!(a.k, w.cols);
    assert!(c.len() >= w.rows * a.n);
    let (rows, n) = (w.rows, a.n);
    if rows == 0 || n == 0 {
        return;
    }
    let isa = isa.or_supported();
    let f = crate::isa::features();
    let simd = cfg!(target_arch = "x86_64") && isa >= Isa::Avx2 && f.avx2_fma;
    if !simd {
        par_rows(rows, n, MR, c, |r0, r1, cc| {
            gemm_scalar(w, a, za, r0, r1, cc)
        });
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let vnni = isa >= Isa::Avx512 && f.avx512_vnni;
        if n == 1 {
            // matrix-vector: blocks of rows of W against the (contiguous) vector
            let x: Vec<u8> = (0..a.k).map(|i| a.at(i, 0)).collect();
            let x16: Vec<i16> = if vnni {
                Vec::new()
            } else {
                x.iter().map(|&v| v as i16).collect()
            };
            let k = w.cols;
            par_rows(rows, 1, MR, c, |r0, r1, cc| {
                let mut r = r0;
                let mut block = |r: usize, d: &[i32]| {
                    for (q, &v) in d.iter().enumerate() {
                        cc[r + q - r0] = v - za as i32 * w.row_sums[r + q];
                    }
                };
                let wp = |r: usize| w.values[r * k..].as_ptr();
                // SAFETY: the CPU features were detected above; every block reads whole rows
                // `r..r + R` of `values` (`rows * k` bytes), and `x`, `x16` hold `k` values.
                unsafe {
                    while r + 8 <= r1 {
                        let d: [i32; 8] = if vnni {
                            super::x86::dot_rows_vnni(&x, wp(r), k)
                        } else {
                            super::x86::dot_rows_avx2(&x16, wp(r), k)
                        };
                        block(r, &d);
                        r += 8;
                    }
                    for r in r..r1 {
                        let d: [i32; 1] = if vnni {
                            super::x86::dot_rows_vnni(&x, wp(r), k)
                        } else {
                            super::x86::dot_rows_avx2(&x16, wp(r), k)
                        };
                        block(r, &d);
                    }
                }
            });
            return;
        }
        crate::scratch::with(&crate::scratch::U8_B, |ap| {
            let npad = pack_a(a, ap);
            gemm_u8i8_packed(isa, w, ap, npad, n, za, c);
        });
    }
}

/// Whether [`gemm_u8i8_packed`] has a kernel for `isa` on this CPU.
pub(crate) fn packed_kernel_fits(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64")
        && isa.or_supported() >= Isa::Avx2
        && crate::isa::features().avx2_fma
}

/// [`gemm_u8i8`] on an operand already packed as [`pack_a`] packs it (`npad` padded columns,
/// `n` real ones, and the slack after them), with the SIMD kernels: AMX tiles when `isa`
/// allows and the CPU has them, else AVX-512 VNNI, else AVX2.
///
/// # Panics
/// When [`packed_kernel_fits`] is false for `isa`, or the buffers are too short.
pub(crate) fn gemm_u8i8_packed(
    isa: Isa,
    w: &QMatrix,
    ap: &[u8],
    npad: usize,
    n: usize,
    za: u8,
    c: &mut [i32],
) {
    assert!(packed_kernel_fits(isa), "no SIMD int8 kernel on this CPU");
    let k4 = w.cols.div_ceil(4);
    assert!(ap.len() >= k4 * npad * 4 + PANEL_SLACK && npad >= n && c.len() >= w.rows * n);
    #[cfg(target_arch = "x86_64")]
    {
        let isa = isa.or_supported();
        if isa >= Isa::Amx && w.cols <= super::amx::AMX_MAX_INNER && w.rows >= 16 {
            let wp = w.amx_packed();
            par_rows(w.rows, n, super::amx::BLOCK_ROWS, c, |r0, r1, cc| {
                // SAFETY: `Isa::Amx` is supported (AMX-INT8, AVX-512 VNNI and the tile state),
                // the inner dimension is in range, `wp` is the AMX packing of `w`, `ap` has the
                // slack of `pack_a` (checked above), `r0` is a multiple of the block rows, and
                // `cc` holds rows `r0..r1` of the `[rows, n]` output.
                unsafe { super::amx::gemm_amx(w, wp, ap, npad, n, za, r0, r1, cc) }
            });
            return;
        }
        let vnni = isa >= Isa::Avx512 && crate::isa::features().avx512_vnni;
        par_rows(w.rows, n, MR, c, |r0, r1, cc| {
            // SAFETY: the required CPU features were checked above; `ap` holds `k4 * npad * 4`
            // bytes, the packed weight blocks `k4 * MR * 4`, and `cc` holds rows `r0..r1` of the
            // `[rows, n]` output (only those rows and columns are written).
            unsafe {
                if vnni {
                    super::x86::gemm_vnni(w, ap, npad, n, za, r0, r1, cc)
                } else {
                    super::x86::gemm_avx2(w, ap, npad, n, za, r0, r1, cc)
                }
            }
        });
    }
}

/// Splits rows (in multiples of `align`) across the configured threads.
pub(crate) fn par_rows<T: Send>(
    rows: usize,
    n: usize,
    align: usize,
    c: &mut [T],
    f: impl Fn(usize, usize, &mut [T]) + Sync,
) {
    let nt = threads::num_threads();
    let c = &mut c[..rows * n];
    if nt <= 1 || rows <= align {
        f(0, rows, c);
        return;
    }
    let chunk = rows.div_ceil(nt * 2).div_ceil(align) * align;
    threads::with_pool(|| {
        c.par_chunks_mut(chunk * n).enumerate().for_each(|(i, cc)| {
            let r0 = i * chunk;
            f(r0, (r0 + chunk).min(rows), cc)
        })
    });
}
