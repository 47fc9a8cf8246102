//! The linear and convolution entry points of the int8 CSR product.

use super::matrix::QCsrMatrix;
use super::product::{product, transpose_u8, Variant, SLACK};
use crate::error::{check_len, KernelError, Result};
use crate::int8::direct::{unfold_image, unfold_preferred};
use crate::int8::ops::{
    check_conv, each_image, im2col_u8, image_groups, in_image_groups, ConvNames,
};
use crate::int8::requant::{finish, multipliers};
use crate::int8::{QOutput, QuantParams, Requant};
use crate::isa::Isa;
use crate::threads;
use crate::ConvGeometry;

/// int8 sparse linear: `y = x * W^T` with `x` u8 `[batch, in]` (quantized by `xq`), `W` a
/// [`QCsrMatrix`] `[out, in]`, and `y` `[batch, out]` written as `out` says, exactly as
/// [`qlinear_forward`](crate::int8::qlinear_forward) writes it for a dense weight holding the
/// same values (zeros elsewhere) and scales.
///
/// Small batches run one input row at a time: on AVX-512 VBMI + VNNI over a second layout of
/// the weight made on first use (see [`QCsrMatrix`]), else by gathering each row's inputs; or,
/// when the inputs equal to the zero point (which contribute nothing) make it cheaper, by
/// walking only the other inputs' columns of a column-major copy of the weight, also made on
/// first use (weights of at most 65 536 rows). Larger batches transpose `x` once and run over
/// column tiles of it, four non-zeros at a time. Every variant gives the same bits, and so does
/// any number of [`threads`](crate::threads::set_num_threads) (rows, or for the column walk
/// columns, are split across them).
///
/// # Errors
/// When `x` is not `batch * in` long or the output not `batch * out`, when a bias does not
/// have `out` entries, or when a requantization scale is out of range.
///
/// ```
/// use slimnet_kernels::int8::{qsparse_linear_forward, QCsrMatrix, QOutput, QuantParams};
/// // W = [[0.5, 0, -1], [0, 0, 0]]
/// let w = QCsrMatrix::from_dense(2, 3, &[0.5, 0.0, -1.0, 0.0, 0.0, 0.0], None)?;
/// let xq = QuantParams { scale: 0.1, zero_point: 10 };
/// // x = [1.0, 9.9, 0.5]: y = [0.5 * 1.0 - 1.0 * 0.5 + 1.0, 2.0] (up to rounding)
/// let x = [20, 109, 15];
/// let mut y = [0.0f32; 2];
/// qsparse_linear_forward(&w, 1, &x, xq, QOutput::F32 { out: &mut y, bias: Some(&[1.0, 2.0]) })?;
/// assert!((y[0] - 1.0).abs() < 0.01 && y[1] == 2.0);
/// # Ok::<(), slimnet_kernels::KernelError>(())
/// ```
pub fn qsparse_linear_forward(
    w: &QCsrMatrix,
    batch: usize,
    x: &[u8],
    xq: QuantParams,
    out: QOutput<'_>,
) -> Result<()> {
    qsparse_linear_forward_with_isa(Isa::detected(), w, batch, x, xq, out)
}

/// [`qsparse_linear_forward`] restricted to kernels of level `isa` or below (for tests and
/// benches; an unsupported level falls back to the best supported one).
///
/// # Errors
/// As [`qsparse_linear_forward`].
pub fn qsparse_linear_forward_with_isa(
    isa: Isa,
    w: &QCsrMatrix,
    batch: usize,
    x: &[u8],
    xq: QuantParams,
    out: QOutput<'_>,
) -> Result<()> {
    linear(Variant::pick(isa), w, batch, x, xq, out)
}

fn overflow(what: &'static str) -> KernelError {
    KernelError::Invalid {
        what,
        reason: "size overflows".into(),
    }
}

/// [`qsparse_linear_forward`] with the given variant.
pub(crate) fn linear(
    v: Variant,
    w: &QCsrMatrix,
    batch: usize,
    x: &[u8],
    xq: QuantParams,
    mut out: QOutput<'_>,
) -> Result<()> {
    let (o, i) = (w.rows(), w.cols());
    let xlen = batch
        .checked_mul(i)
        .ok_or_else(|| overflow("int8 linear input"))?;
    let ylen = batch
        .checked_mul(o)
        .ok_or_else(|| overflow("int8 linear output"))?;
    check_len("int8 sparse linear input", xlen, x.len())?;
    check_len("int8 sparse linear output", ylen, out.len())?;
    out.check_bias(o)?;
    let mult = multipliers(xq, w.scales(), w.multipliers(), &out)?;
    let isa = v.isa();
    crate::scratch::with(&crate::scratch::I32_A, |acc| {
        if batch < v.per_item_below() {
            // one input row at a time, straight into its output row
            let acc = crate::scratch::sized(acc, o);
            for j in 0..batch {
                product(v, w, &x[j * i..(j + 1) * i], 1, xq.zero_point, acc);
                finish(isa, acc, o, 1, xq, w.scales(), &mult, &mut out, j * o, true);
            }
            return;
        }
        let acc = crate::scratch::sized(acc, ylen);
        crate::scratch::with(&crate::scratch::U8_A, |xt| {
            let xt = crate::scratch::sized(xt, xlen + SLACK);
            transpose_u8(x, batch, i, xt);
            product(v, w, xt, batch, xq.zero_point, acc);
        });
        finish_transposed(isa, acc, o, batch, xq, w.scales(), &mult, &mut out);
    });
    Ok(())
}

/// [`finish`] of `acc [rows, n]` into an output `[n, rows]`: for `n > 1`, the channel-major
/// result goes through a scratch buffer (with the vectorized requantization of whole rows) and
/// is then transposed, rather than requantized one strided element at a time.
#[allow(clippy::too_many_arguments)]
fn finish_transposed(
    isa: Isa,
    acc: &[i32],
    rows: usize,
    n: usize,
    xq: QuantParams,
    scales: &[f32],
    mult: &[Requant],
    out: &mut QOutput<'_>,
) {
    if n <= 1 {
        finish(isa, acc, rows, n, xq, scales, mult, out, 0, true);
        return;
    }
    match out {
        QOutput::U8 {
            out,
            params,
            bias,
            relu,
        } => crate::scratch::with(&crate::scratch::U8_B, |t| {
            let t = crate::scratch::sized(t, rows * n);
            let mut tmp = QOutput::U8 {
                out: t,
                params: *params,
                bias: *bias,
                relu: *relu,
            };
            finish(isa, acc, rows, n, xq, scales, mult, &mut tmp, 0, false);
            transpose_u8(t, rows, n, out);
        }),
        QOutput::F32 { out, bias } => crate::scratch::with(&crate::scratch::F32_A, |t| {
            let t = crate::scratch::sized(t, rows * n);
            let mut tmp = QOutput::F32 {
                out: t,
                bias: *bias,
            };
            finish(isa, acc, rows, n, xq, scales, mult, &mut tmp, 0, false);
            crate::dense::transpose(t, rows, n, out);
        }),
    }
}

/// int8 sparse convolution (groups 1): the CSR weight over u8 im2col columns padded with the
/// input zero point (so padding contributes real zero).
///
/// Shapes: `x` u8 `[N, C, H, W]` (quantized by `xq`), `w` [`QCsrMatrix`]
/// `[O, C * kh * kw]` (an OIHW weight flattened), output `[N, O, oh, ow]` written as `out`
/// says, with one bias entry per output channel.
///
/// # Errors
/// An invalid geometry, `groups != 1`, a weight of another shape, buffers of the wrong
/// length, a bias without `O` entries, or a requantization scale out of range.
pub fn qsparse_conv2d_forward(
    g: &ConvGeometry,
    x: &[u8],
    xq: QuantParams,
    w: &QCsrMatrix,
    out: QOutput<'_>,
) -> Result<()> {
    qsparse_conv2d_forward_with_isa(Isa::detected(), g, x, xq, w, out)
}

/// [`qsparse_conv2d_forward`] restricted to kernels of level `isa` or below.
///
/// # Errors
/// As [`qsparse_conv2d_forward`].
pub fn qsparse_conv2d_forward_with_isa(
    isa: Isa,
    g: &ConvGeometry,
    x: &[u8],
    xq: QuantParams,
    w: &QCsrMatrix,
    out: QOutput<'_>,
) -> Result<()> {
    conv(Variant::pick(isa), g, x, xq, w, out)
}

/// [`qsparse_conv2d_forward`] with the given variant.
pub(crate) fn conv(
    v: Variant,
    g: &ConvGeometry,
    x: &[u8],
    xq: QuantParams,
    w: &QCsrMatrix,
    mut out: QOutput<'_>,
) -> Result<()> {
    check_conv(ConvNames::SPARSE, g, (w.rows(), w.cols()), x.len(), &out)?;
    let work = w.nnz() * g.batch * g.out_h() * g.out_w();
    if let Some(n) = threads::fewer_for(work, threads::per_thread_macs(true, g.batch > 1)) {
        return threads::with(n, || conv(v, g, x, xq, w, out));
    }
    let groups = image_groups(g);
    if groups > 1 {
        return in_image_groups(g, groups, x, out, |g, x, o| conv(v, g, x, xq, w, o));
    }
    let mult = multipliers(xq, w.scales(), w.multipliers(), &out)?;
    let kk = g.in_channels * g.kernel_h * g.kernel_w;
    let plane = g.out_h() * g.out_w();
    let one = ConvGeometry { batch: 1, ..*g };
    let isa = v.isa();
    let padded = unfold_preferred(isa, g);
    crate::scratch::with(&crate::scratch::U8_A, |col| {
        crate::scratch::sized(col, kk * plane + SLACK);
        let weights = (w.scales(), &mult[..]);
        each_image(isa, g, x, xq, weights, &mut out, |image, acc| {
            if padded {
                unfold_image(isa, &one, image, xq.zero_point, SLACK, col);
            } else {
                im2col_u8(&one, image, xq.zero_point, col);
            }
            product(v, w, col, plane, xq.zero_point, acc);
        })
    });
    Ok(())
}
