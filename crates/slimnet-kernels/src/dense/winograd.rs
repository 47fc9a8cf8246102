//! Winograd F(2x2, 3x3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016): each 2x2 block of outputs of a 3x3, stride-1 convolution costs 16
//! multiplications per input-output channel pair instead of 36, 2.25x fewer.
//!
//! Per image, tiles of 4x4 inputs (2x2 outputs) are processed in blocks of whole tile rows:
//! 1. the input tiles of the block are transformed, `V = Bᵀ d B`, into `[16][C][tiles]`;
//! 2. sixteen GEMMs `M[ξ] = U[ξ] V[ξ]` with the transformed weights `U = G g Gᵀ`
//!    (`[O][16][C]`, computed once per call);
//! 3. the output transform `Y = Aᵀ M A` writes the block's output rows.
//!
//! Both transforms run over a whole block as flat arrays, so they vectorize: a padded input row
//! holds `2 * (tiles per row + 1)` values, and the one extra tile each tile row carries is
//! computed and thrown away. Blocks are independent and run in parallel when threads are
//! allowed. The transforms only add, subtract and halve, so results match the direct
//! convolution to a few ulps of the accumulated magnitude (tested against the f64 definition
//! with the convolution tests' tolerance).
//!
//! [`conv2d_forward`](super::conv2d_forward) transforms the weights on every call (it cannot
//! know whether a layer's weights changed), which costs `16 / 9` of the weight's size in
//! writes; [`ConvWeights`](super::ConvWeights) keeps the transform for the layers whose weights
//! stay put. Outputs under 8x8 (ResNet's 512-channel 7x7 stage: 4 tiles a row, 1 in 5 of them
//! thrown away) stay on im2col.

use rayon::prelude::*;

use super::gemm::{sgemm_unchecked, MatRef};
use crate::error::Result;
use crate::isa::vectorized;
use crate::threads::{self, SendPtr};
use crate::{Activation, ConvGeometry};

/// Transformed inputs and products a block aims to hold (`16 * (C + O) * tiles` values, 4 MiB):
/// larger blocks run longer GEMMs, smaller ones stay in cache; this size measured best from 64
/// to 256 channels (`prof_case conv<C>x<H>` of the kernels crate's examples).
const BLOCK_VALUES: usize = 1 << 20;

/// Transformed weights (`64 * O * C` bytes) beyond which they no longer stay in cache between
/// their transform and the GEMMs, and cost several times more per filter.
const CACHED_WEIGHT_BYTES: usize = 8 << 20;

/// Whether [`conv_winograd`] applies: a 3x3, stride-1, undilated, ungrouped convolution with
/// at least 16 input and output channels and an output of at least 8x8 (below that, 1 in 5 or
/// more of the tiles are thrown away).
///
/// `SLIMNET_CONV=im2col` in the environment turns Winograd off (and the direct kernel, see
/// [`plain_im2col_forced`](super::conv::plain_im2col_forced)), to compare the paths on the same
/// build (the `SLIMNET_GEMM` switch does the same for the GEMM).
pub(crate) fn winograd_fits(g: &ConvGeometry) -> bool {
    if super::conv::plain_im2col_forced() {
        return false;
    }
    g.groups == 1
        && (g.kernel_h, g.kernel_w) == (3, 3)
        && g.stride == (1, 1)
        && g.dilation == (1, 1)
        && g.in_channels >= 16
        && g.out_channels >= 16
        && g.out_h() >= 8
        && g.out_w() >= 8
}

/// Whether Winograd is expected to beat im2col: it fits ([`winograd_fits`]) and, when the
/// weights are transformed on this call (`transformed == false`), the plane is large enough to
/// pay for that: outputs of at least 400 pixels when the transformed weights do not fit in
/// [`CACHED_WEIGHT_BYTES`]. Measured with `prof_case` (one thread): 512 channels at 7x7 took
/// 4.7 ms against im2col's 1.3, at 14x14 5.3-6.4 against 4.6, at 28x28 14.4 against 17.0; 256
/// channels at 14x14 0.90 against 1.12.
///
/// With AVX-512, layers of at most 32 input or output channels go to the direct kernel
/// instead when it fits (`direct_x86::direct_preferred`).
pub(crate) fn winograd_pays(g: &ConvGeometry, transformed: bool) -> bool {
    let spilled = 64 * g.out_channels * g.in_channels > CACHED_WEIGHT_BYTES;
    #[cfg(target_arch = "x86_64")]
    if super::direct_x86::direct_preferred(g) {
        return false;
    }
    winograd_fits(g) && (transformed || !spilled || g.out_h() * g.out_w() >= 400)
}

/// The transformed weights `U = G g Gᵀ` of an OIHW 3x3 weight, `[O][16][C]` (each output
/// channel's are written together; the GEMMs read them with a row stride).
/// With threads, output channels are shared among them.
pub(crate) fn transform_weights(g: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let (o, c) = (g.out_channels, g.in_channels);
    let mut u = vec![0f32; 16 * o * c];
    let nt = threads::num_threads();
    let per = o.div_ceil(nt);
    let run = |(i, u): (usize, &mut [f32])| {
        let ko = i * per;
        let n = u.len() / (16 * c);
        transform_weights_into(&weight[ko * c * 9..(ko + n) * c * 9], (n, c), u).expect("lengths");
    };
    if nt > 1 && o > 1 {
        threads::with_pool(|| u.par_chunks_mut(16 * c * per).enumerate().for_each(run));
    } else {
        run((0, &mut u));
    }
    u
}

vectorized! {
/// [`transform_weights`] into `u`, for `oc = (O, C)`; each output channel's filters are
/// transformed together, one lane per input channel.
fn transform_weights_into(weight: &[f32], oc: (usize, usize), u: &mut [f32]) {
    let (o, c) = oc;
    let mut taps = vec![0f32; 9 * c];
    for ko in 0..o {
        // [C][9] -> [9][C], so the arithmetic below runs along input channels
        for (ci, w) in weight[ko * c * 9..(ko + 1) * c * 9].chunks_exact(9).enumerate() {
            for (k, &v) in w.iter().enumerate() {
                taps[k * c + ci] = v;
            }
        }
        let tap = |k: usize| &taps[k * c..(k + 1) * c];
        // along each kernel row: h[i][b], then along the columns: U[a][b]
        let mut h = [[0f32; 4]; 3];
        for ci in 0..c {
            for (i, hi) in h.iter_mut().enumerate() {
                let (g0, g1, g2) = (tap(3 * i)[ci], tap(3 * i + 1)[ci], tap(3 * i + 2)[ci]);
                *hi = [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2];
            }
            for b in 0..4 {
                let (h0, h1, h2) = (h[0][b], h[1][b], h[2][b]);
                let col = [h0, 0.5 * (h0 + h1 + h2), 0.5 * (h0 - h1 + h2), h2];
                for (a, v) in col.into_iter().enumerate() {
                    u[(ko * 16 + a * 4 + b) * c + ci] = v;
                }
            }
        }
    }
    Ok(())
}
}

/// One image of `out = act(conv(x, weight) + bias)` by Winograd F(2x2, 3x3): `x` is
/// `[C, H, W]`, `u` the output of [`transform_weights`], `bias` `[O]`, `out` `[O, oh, ow]`
/// (overwritten).
///
/// # Panics
/// When the geometry does not fit ([`winograd_fits`]) or a buffer is too short.
pub(crate) fn conv_winograd(
    g: &ConvGeometry,
    x: &[f32],
    u: &[f32],
    epilogue: (Option<&[f32]>, Activation),
    out: &mut [f32],
    n_threads: usize,
) {
    assert!(winograd_fits(g));
    let (bias, act) = epilogue;
    let (c, o) = (g.in_channels, g.out_channels);
    let (oh, ow) = (g.out_h(), g.out_w());
    assert!(x.len() >= c * g.in_h * g.in_w && u.len() >= 16 * o * c && out.len() >= o * oh * ow);
    let th = oh.div_ceil(2);
    // tiles per row, plus one: a row of padded input holds `2 * tw1` values, so whole blocks
    // transform as flat arrays; the extra tile of each row is computed and thrown away
    let tw1 = ow.div_ceil(2) + 1;
    let block_tiles = (BLOCK_VALUES / (16 * (c + o))).clamp(32, 1024);
    // as many blocks as that size asks for, rounded up to a multiple of the threads (at least two
    // a thread, so a slow one can be helped), with tile rows shared out evenly
    let nt = n_threads.max(1);
    let mut n_blocks = th.div_ceil((block_tiles / tw1).max(1));
    if nt > 1 {
        n_blocks = n_blocks.max(2 * nt).div_ceil(nt) * nt;
    }
    let n_blocks = n_blocks.min(th);
    let blocks: Vec<(usize, usize)> = (0..n_blocks)
        .map(|b| (b * th / n_blocks, (b + 1) * th / n_blocks))
        .collect();
    let ptr = SendPtr(out.as_mut_ptr());
    let run = |&(t0, t1): &(usize, usize)| {
        let nb = (t1 - t0) * tw1;
        let mut work = vec![0f32; 14 * (t1 - t0 + 1) * tw1 + 8 * nb];
        crate::scratch::with(&crate::scratch::F32_A, |buf| {
            let buf = crate::scratch::sized(buf, 16 * (c + o) * nb);
            let (v, m) = buf.split_at_mut(16 * c * nb);
            transform_input(g, x, (t0, t1), v, &mut work).expect("block buffers");
            for xi in 0..16 {
                let a = MatRef::strided(&u[xi * c..], o, c, 16 * c, 1)
                    .expect("transformed weight slice");
                let b = MatRef::row_major(&v[xi * c * nb..(xi + 1) * c * nb], c, nb)
                    .expect("transformed input slice");
                sgemm_unchecked(1.0, a, b, 0.0, &mut m[xi * o * nb..(xi + 1) * o * nb], 1);
            }
            let ys = &mut work[..8 * nb];
            for ko in 0..o {
                output_rows(m, (o, ko), ys).expect("block buffers");
                for ty in 0..t1 - t0 {
                    for r in 0..2 {
                        let y = 2 * (t0 + ty) + r;
                        if y >= oh {
                            continue;
                        }
                        let src = &ys[r * 2 * nb + 2 * ty * tw1..][..ow];
                        let b = bias.map_or(0.0, |b| b[ko]);
                        let p = ptr;
                        // SAFETY: `p` points at `out`, which holds `O * oh * ow` elements
                        // (asserted); row `y < oh` of channel `ko < O` lies inside it, and this
                        // block alone writes output rows `2 * t0..2 * t1`.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(p.0.add((ko * oh + y) * ow), ow)
                        };
                        // one loop per activation, so each vectorizes
                        let pairs = dst.iter_mut().zip(src);
                        match act {
                            Activation::Identity => pairs.for_each(|(d, &v)| *d = v + b),
                            Activation::Relu => pairs.for_each(|(d, &v)| *d = (v + b).max(0.0)),
                            Activation::Relu6 => {
                                pairs.for_each(|(d, &v)| *d = (v + b).clamp(0.0, 6.0))
                            }
                        }
                    }
                }
            }
        })
    };
    if n_threads > 1 && blocks.len() > 1 {
        threads::with_pool(|| blocks.par_iter().for_each(run));
    } else {
        blocks.iter().for_each(run);
    }
}

vectorized! {
/// `V = Bᵀ d B` for the tiles of tile rows `rows.0..rows.1`, into `v`
/// `[16][C][(rows.1 - rows.0) * tw1]`; `work` is scratch of at least
/// `14 * (rows.1 - rows.0 + 1) * tw1` values.
fn transform_input(
    g: &ConvGeometry,
    x: &[f32],
    rows: (usize, usize),
    v: &mut [f32],
    work: &mut [f32]
) {
    let (c, h, w) = (g.in_channels, g.in_h, g.in_w);
    let (ph, pw) = g.padding;
    let (t0, t1) = rows;
    let tw1 = g.out_w().div_ceil(2) + 1;
    let nb = (t1 - t0) * tw1;
    // the block reads padded input rows 2 * t0 .. 2 * t1 + 2; `pe` holds the even ones and `po`
    // the odd ones, `n` rows of `2 * tw1` each
    let n = t1 - t0 + 1;
    let len = n * tw1;
    let (pe, rest) = work.split_at_mut(2 * len);
    let (po, rest) = rest.split_at_mut(2 * len);
    // each padded row transformed along its columns: `re[j]` from even rows, `ro[j]` from odd
    let (re, rest) = rest.split_at_mut(4 * len);
    let (ro, rest) = rest.split_at_mut(4 * len);
    // one row-block's even and odd columns
    let (ec, rest) = rest.split_at_mut(len);
    let oc = &mut rest[..len];
    for ci in 0..c {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for (parity, p) in [(0usize, &mut *pe), (1, &mut *po)] {
            p.fill(0.0);
            for (k, row) in p.chunks_exact_mut(2 * tw1).enumerate() {
                // padded row 2 * (t0 + k) + parity is input row (that) - ph; padded column q
                // is input column q - pw
                let Some(iy) = (2 * (t0 + k) + parity).checked_sub(ph).filter(|&iy| iy < h)
                else {
                    continue;
                };
                let n = w.min(row.len() - pw);
                row[pw..pw + n].copy_from_slice(&plane[iy * w..iy * w + n]);
            }
        }
        for (p, r) in [(&*pe, &mut *re), (&*po, &mut *ro)] {
            // even and odd columns of every row at once (rows have an even length)
            for ((e, o), pair) in ec.iter_mut().zip(oc.iter_mut()).zip(p.chunks_exact(2)) {
                *e = pair[0];
                *o = pair[1];
            }
            // d B along the columns: tile tx of a row reads columns 2 tx .. 2 tx + 3, that is
            // even[tx], odd[tx], even[tx + 1], odd[tx + 1]; the last tile of each row reads the
            // next row's first values and is thrown away
            let (e0, e1, o0, o1) = (&ec[..len - 1], &ec[1..], &oc[..len - 1], &oc[1..]);
            let (d0, rest) = r.split_at_mut(len);
            let (d1, rest) = rest.split_at_mut(len);
            let (d2, d3) = rest.split_at_mut(len);
            for f in 0..len - 1 {
                d0[f] = e0[f] - e1[f];
                d1[f] = o0[f] + e1[f];
                d2[f] = e1[f] - o0[f];
                d3[f] = o0[f] - o1[f];
            }
        }
        // Bᵀ (d B) along the rows: tile row ty reads padded rows 2 ty .. 2 ty + 3, that is even
        // row ty, odd row ty, even row ty + 1 and odd row ty + 1
        for j in 0..4 {
            let (a0, a1) = (&re[j * len..(j + 1) * len], &ro[j * len..(j + 1) * len]);
            let (u0, u1, u2, u3) = (&a0[..nb], &a1[..nb], &a0[tw1..][..nb], &a1[tw1..][..nb]);
            let at = |a: usize| {
                let d = ((a * 4 + j) * c + ci) * nb;
                d..d + nb
            };
            let [v0, v1, v2, v3] = v
                .get_disjoint_mut([at(0), at(1), at(2), at(3)])
                .expect("distinct transform positions");
            for t in 0..nb {
                v0[t] = u0[t] - u2[t];
                v1[t] = u1[t] + u2[t];
                v2[t] = u2[t] - u1[t];
                v3[t] = u1[t] - u3[t];
            }
        }
    }
    Ok(())
}
}

vectorized! {
/// `Aᵀ M A` of every tile of a block for output channel `ch.1` of `ch.0`: `m` is
/// `[16][O][nb]`; `ys` (`8 * nb`) receives output row 0 of every tile then row 1, each as
/// `2 * nb` values (tile `t`'s two outputs at `2 t`, `2 t + 1`), and uses the rest as scratch.
fn output_rows(m: &[f32], ch: (usize, usize), ys: &mut [f32]) {
    let (o, ko) = ch;
    let nb = ys.len() / 8;
    let mrow = |a: usize, b: usize| &m[((a * 4 + b) * o + ko) * nb..][..nb];
    let (y, q) = ys.split_at_mut(4 * nb);
    for (r, y) in y.chunks_exact_mut(2 * nb).enumerate() {
        // row r of Aᵀ M, for each column b of the tile: M0b + M1b + M2b (r = 0) or
        // M1b - M2b - M3b (r = 1)
        for (b, qb) in q.chunks_exact_mut(nb).enumerate() {
            let (m0, m1, m2, m3) = (mrow(0, b), mrow(1, b), mrow(2, b), mrow(3, b));
            if r == 0 {
                for t in 0..nb {
                    qb[t] = m0[t] + m1[t] + m2[t];
                }
            } else {
                for t in 0..nb {
                    qb[t] = m1[t] - m2[t] - m3[t];
                }
            }
        }
        let (q0, q1, q2, q3) = (&q[..nb], &q[nb..2 * nb], &q[2 * nb..3 * nb], &q[3 * nb..]);
        for (t, pair) in y.chunks_exact_mut(2).enumerate() {
            pair[0] = q0[t] + q1[t] + q2[t];
            pair[1] = q1[t] - q2[t] - q3[t];
        }
    }
    Ok(())
}
}
