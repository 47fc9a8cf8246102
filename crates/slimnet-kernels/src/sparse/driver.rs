//! Shared drivers: row-wise SpMM, threading, and the linear / convolution entry points.

use rayon::prelude::*;

use super::SparseMatrix;
use crate::dense::{im2col, transpose};
use crate::error::{check_len, check_len2, KernelError, Result};
use crate::isa::Isa;
use crate::threads;
use crate::{Activation, ConvGeometry};

/// A format whose rows are lists of `(value, column)` pairs (CSR, N:M).
pub(crate) trait RowSource: Sync {
    /// Iterator over one row's `(value, column)` pairs, columns increasing.
    type Row<'a>: Iterator<Item = (f32, usize)> + Clone
    where
        Self: 'a;
    /// The pairs of row `r`.
    fn row_iter(&self, r: usize) -> Self::Row<'_>;
    /// `sum_k W[r, k] * x[k]` with the best variant up to `isa`.
    fn dot(&self, isa: Isa, r: usize, x: &[f32]) -> f32;
}

/// Row-wise SpMM for a [`RowSource`]: `c[r0..r1] = act(W[r0..r1] * b + bias)`.
///
/// # Panics
/// When `b`, `c` or `bias` is too short.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rows_spmm<S: RowSource>(
    src: &S,
    cols: usize,
    isa: Isa,
    r0: usize,
    r1: usize,
    b: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
) {
    assert!(r0 <= r1 && b.len() >= cols * n && c.len() >= (r1 - r0) * n);
    if let Some(bias) = bias {
        assert!(bias.len() >= r1);
    }
    if n == 1 {
        for (r, o) in (r0..r1).zip(c.iter_mut()) {
            *o = act.apply(src.dot(isa, r, b) + bias.map_or(0.0, |b| b[r]));
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx512 && crate::isa::features().avx512 {
        // SAFETY: AVX-512F is available; the same bounds as the AVX2 call below hold.
        unsafe {
            super::x86::rows_tiled_avx512(src, r0, r1, b.as_ptr(), n, bias, act, c.as_mut_ptr())
        };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx2 && crate::isa::features().avx2_fma {
        // SAFETY: AVX2/FMA are available; every column a row yields is below `cols` (an
        // invariant of the validated formats), `b` holds `cols * n` elements and `c` holds
        // `(r1 - r0) * n` (asserted above).
        unsafe {
            super::x86::rows_tiled_avx2(src, r0, r1, b.as_ptr(), n, bias, act, c.as_mut_ptr())
        };
        return;
    }
    for (r, o) in (r0..r1).zip(c.chunks_mut(n)) {
        o.fill(0.0);
        for (v, k) in src.row_iter(r) {
            for (o, x) in o.iter_mut().zip(&b[k * n..(k + 1) * n]) {
                *o += v * x;
            }
        }
        let bv = bias.map_or(0.0, |b| b[r]);
        o.iter_mut().for_each(|o| *o = act.apply(*o + bv));
    }
}

fn check_spmm<M: SparseMatrix + ?Sized>(
    w: &M,
    b: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    c: &[f32],
) -> Result<()> {
    check_len2("spmm dense operand", w.cols(), n, b.len())?;
    check_len2("spmm output", w.rows(), n, c.len())?;
    if let Some(bias) = bias {
        check_len("spmm bias", w.rows(), bias.len())?;
    }
    Ok(())
}

/// Runs `spmm_rows` over all rows, split across the configured threads.
fn run_spmm<M: SparseMatrix + ?Sized>(
    w: &M,
    isa: Isa,
    b: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
) {
    let rows = w.rows();
    if rows == 0 || n == 0 {
        return;
    }
    let nt = threads::num_threads();
    let work = w.nnz().saturating_mul(n);
    if nt <= 1 || work < 1 << 16 {
        w.spmm_rows(isa, 0, rows, b, n, bias, act, c);
        return;
    }
    let align = w.row_align().max(1);
    let chunk = rows.div_ceil(nt * 4).div_ceil(align) * align;
    threads::with_pool(|| {
        c.par_chunks_mut(chunk * n).enumerate().for_each(|(i, cc)| {
            let r0 = i * chunk;
            w.spmm_rows(isa, r0, (r0 + chunk).min(rows), b, n, bias, act, cc);
        })
    });
}

/// `c = act(W * b + bias)`: a sparse `[rows, cols]` matrix times a dense row-major `[cols, n]`
/// matrix, into a row-major `[rows, n]` result, with a per-row bias.
///
/// # Errors
/// When a buffer does not match the shapes.
pub fn spmm<M: SparseMatrix + ?Sized>(
    w: &M,
    b: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
) -> Result<()> {
    spmm_with_isa(Isa::detected(), w, b, n, bias, act, c)
}

/// [`spmm`] restricted to kernels of instruction-set level `isa` or below (for tests and
/// benchmarks; an unsupported level falls back to the best supported one).
///
/// # Errors
/// When a buffer does not match the shapes.
pub fn spmm_with_isa<M: SparseMatrix + ?Sized>(
    isa: Isa,
    w: &M,
    b: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
) -> Result<()> {
    check_spmm(w, b, n, bias, c)?;
    run_spmm(w, isa.or_supported(), b, n, bias, act, c);
    Ok(())
}

/// Sparse linear forward: `y = act(x * W^T + b)` with `W` sparse `[out, in]`.
///
/// Shapes: `x` `[batch, in]`, `bias` `[out]`, `y` `[batch, out]` (row-major).
///
/// # Errors
/// When a buffer does not match the shapes.
pub fn sparse_linear_forward<M: SparseMatrix + ?Sized>(
    w: &M,
    batch: usize,
    x: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) -> Result<()> {
    let (out, inp) = (w.rows(), w.cols());
    check_len2("sparse linear input", batch, inp, x.len())?;
    check_len2("sparse linear output", batch, out, y.len())?;
    if let Some(b) = bias {
        check_len("sparse linear bias", out, b.len())?;
    }
    let isa = Isa::detected();
    if batch == 1 {
        run_spmm(w, isa, x, 1, bias, act, y);
        return Ok(());
    }
    crate::scratch::with_f32(batch * (inp + out), |s| {
        let (xt, ct) = s.split_at_mut(batch * inp);
        transpose(x, batch, inp, xt);
        run_spmm(w, isa, xt, batch, bias, act, ct);
        transpose(ct, out, batch, y);
    });
    Ok(())
}

/// Sparse convolution forward: `out = act(conv(input, W) + bias)` with the OIHW weight stored
/// sparse as `[O, I * kh * kw]`; runs the sparse matrix over im2col columns (1x1 convolutions
/// with stride 1 and no padding use the input directly).
///
/// Shapes: `input` `[N, C, H, W]`, `bias` `[O]`, `out` `[N, O, oh, ow]`.
///
/// # Errors
/// An invalid geometry, `groups != 1`, a weight of the wrong shape or a buffer of the wrong
/// length.
pub fn sparse_conv2d_forward<M: SparseMatrix + ?Sized>(
    g: &ConvGeometry,
    input: &[f32],
    w: &M,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) -> Result<()> {
    g.validate()?;
    if g.groups != 1 {
        return Err(KernelError::Invalid {
            what: "sparse conv groups",
            reason: format!("only groups == 1 is supported, got {}", g.groups),
        });
    }
    let kk = g.in_channels * g.kernel_h * g.kernel_w;
    if w.rows() != g.out_channels || w.cols() != kk {
        return Err(KernelError::Invalid {
            what: "sparse conv weight",
            reason: format!(
                "expected [{}, {}], got [{}, {}]",
                g.out_channels,
                kk,
                w.rows(),
                w.cols()
            ),
        });
    }
    check_len("conv input", g.input_len(), input.len())?;
    check_len("conv output", g.output_len(), out.len())?;
    if let Some(b) = bias {
        check_len("conv bias", g.out_channels, b.len())?;
    }
    let plane = g.out_h() * g.out_w();
    let in_img = g.in_channels * g.in_h * g.in_w;
    let one = ConvGeometry { batch: 1, ..*g };
    let pointwise = g.kernel_h == 1 && g.kernel_w == 1 && g.stride == (1, 1) && g.padding == (0, 0);
    let isa = Isa::detected();
    for (n, o) in out.chunks_mut(g.out_channels * plane).enumerate() {
        let x = &input[n * in_img..(n + 1) * in_img];
        if pointwise {
            run_spmm(w, isa, x, plane, bias, act, o);
        } else {
            crate::scratch::with_f32(kk * plane, |col| {
                im2col(&one, x, col);
                run_spmm(w, isa, col, plane, bias, act, o);
            });
        }
    }
    Ok(())
}
