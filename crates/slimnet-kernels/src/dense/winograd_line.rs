//! Winograd F(2, 3) down the rows, for the `3 x 1` convolutions of a spatial SVD rewrite:
//! every two output rows cost 4 multiplications per input-output channel pair instead of 6,
//! 1.5x fewer (the 2-D form in [`super::winograd`] saves 2.25x on 3x3 kernels, so without this
//! a chain of 1-D layers gives back part of its MAC reduction against a Winograd dense layer).
//!
//! Per image, tiles of 4 input rows (2 output rows) are processed in blocks of tile rows:
//! 1. the block's input tiles are transformed, `v = Bᵀ d`, into `[4][C][tiles]`;
//! 2. four GEMMs `M[ξ] = U[ξ] V[ξ]` with the transformed weights `u = G g` (`[4][O][C]`,
//!    made on every call: `4 * O * C` values, small next to the image);
//! 3. the output transform `y = Aᵀ m` writes the block's output rows.
//!
//! With `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`,
//! `G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]` and `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
//! Every transform runs along whole rows, so it vectorizes. They only add, subtract and halve,
//! so results match the direct convolution to a few ulps of the accumulated magnitude (tested
//! against the f64 definition).
//!
//! `1 x 3` kernels stay on im2col: tiles along a row need the input split into even and odd
//! columns, and both that and running this on transposed planes measured no faster (`prof_case
//! k63x128x28x1x3`: 0.334 and 0.281 ms against im2col's 0.285-0.293).

use rayon::prelude::*;

use super::gemm::{sgemm_unchecked, MatRef};
use crate::error::Result;
use crate::isa::vectorized;
use crate::threads::{self, SendPtr};
use crate::ConvGeometry;

/// Transformed inputs and products a block aims to hold (`4 * (C + O) * tiles` values, 1 MiB),
/// so both stay in L2 between the transforms and the GEMMs.
const BLOCK_VALUES: usize = 1 << 18;

/// Whether [`conv_winograd_line`] takes `g`: a `3 x 1`, stride-1, undilated, ungrouped
/// convolution without column padding, with at least 16 input and 8 output channels and 8
/// output rows, on AVX-512 (where it was measured), and not under `SLIMNET_CONV=im2col`.
///
/// `prof_case k<C>x<O>x<H>x3x1` (ms, direct kernel -> this): 128 to 63 channels at 28x28
/// 0.290 -> 0.255, 64 to 31 at 56x56 0.300 -> 0.270, 256 to 126 at 14x14 0.356 -> 0.275, 31 to
/// 64 at 56x56 0.300 -> 0.259, 16 to 64 0.178 -> 0.162.
pub(crate) fn winograd_line_fits(g: &ConvGeometry) -> bool {
    !super::conv::plain_im2col_forced()
        && crate::isa::features().avx512
        && g.groups == 1
        && (g.kernel_h, g.kernel_w) == (3, 1)
        && g.stride == (1, 1)
        && g.dilation == (1, 1)
        && g.padding.1 == 0
        && g.in_channels >= 16
        && g.out_channels >= 8
        && g.out_h() >= 8
}

/// `u = G g` for each (output, input) channel pair of a `3 x 1` OIHW weight, as `[4][O][C]`.
fn transform_weights(weight: &[f32], o: usize, c: usize) -> Vec<f32> {
    let mut u = vec![0f32; 4 * o * c];
    for (pair, g) in weight.chunks_exact(3).take(o * c).enumerate() {
        let (g0, g1, g2) = (g[0], g[1], g[2]);
        u[pair] = g0;
        u[o * c + pair] = 0.5 * (g0 + g1 + g2);
        u[2 * o * c + pair] = 0.5 * (g0 - g1 + g2);
        u[3 * o * c + pair] = g2;
    }
    u
}

/// One image of a `3 x 1` convolution ([`winograd_line_fits`]) into `out` `[O, oh * ow]`
/// (overwritten, no bias or activation); with threads, blocks of tile rows run in parallel.
///
/// # Panics
/// When the geometry does not fit or a buffer is too short.
pub(crate) fn conv_winograd_line(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    out: &mut [f32],
    n_threads: usize,
) {
    assert!(winograd_line_fits(g));
    let (c, o) = (g.in_channels, g.out_channels);
    let (oh, ow) = (g.out_h(), g.out_w());
    assert!(
        x.len() >= c * g.in_h * g.in_w && weight.len() >= 3 * o * c && out.len() >= o * oh * ow
    );
    let u = transform_weights(weight, o, c);
    // tile rows of `ow` tiles each, in blocks
    let th = oh.div_ceil(2);
    let rows_block = (BLOCK_VALUES / (4 * (c + o) * ow)).clamp(1, th);
    let nt = n_threads.max(1);
    let mut n_blocks = th.div_ceil(rows_block);
    if nt > 1 {
        n_blocks = n_blocks.max(2 * nt).div_ceil(nt) * nt;
    }
    let n_blocks = n_blocks.min(th);
    let blocks: Vec<(usize, usize)> = (0..n_blocks)
        .map(|b| (b * th / n_blocks, (b + 1) * th / n_blocks))
        .collect();
    let ptr = SendPtr(out.as_mut_ptr());
    let run = |&(t0, t1): &(usize, usize)| {
        let nb = (t1 - t0) * ow;
        crate::scratch::with_f32(4 * (c + o) * nb, |buf| {
            let (v, m) = buf.split_at_mut(4 * c * nb);
            transform_rows(g, x, (t0, t1), v).expect("block buffers");
            for xi in 0..4 {
                let a = MatRef::row_major(&u[xi * o * c..(xi + 1) * o * c], o, c)
                    .expect("transformed weight slice");
                let b = MatRef::row_major(&v[xi * c * nb..(xi + 1) * c * nb], c, nb)
                    .expect("transformed input slice");
                sgemm_unchecked(1.0, a, b, 0.0, &mut m[xi * o * nb..(xi + 1) * o * nb], 1);
            }
            // (`ptr` points at `out`, `O * oh * ow` values, asserted above; each block writes
            // only its own output rows 2 t0 .. 2 t1 of every channel)
            untransform_rows(m, (o, oh, ow), (t0, t1), ptr).expect("block buffers");
        })
    };
    if nt > 1 && blocks.len() > 1 {
        threads::with_pool(|| blocks.par_iter().for_each(run));
    } else {
        blocks.iter().for_each(run);
    }
}

vectorized! {
/// `v = Bᵀ d` for tile rows `t.0..t.1` of a `3 x 1` kernel, into `v` `[4][C][(t.1 - t.0) * W]`:
/// tile row `ty` reads input rows `2 ty - ph .. 2 ty - ph + 4` (zero outside the image).
fn transform_rows(g: &ConvGeometry, x: &[f32], t: (usize, usize), v: &mut [f32]) {
    let (c, h, w) = (g.in_channels, g.in_h, g.in_w);
    let ph = g.padding.0;
    let nb = (t.1 - t.0) * w;
    let zero = vec![0f32; w];
    for ci in 0..c {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        let row = |r: isize| -> &[f32] {
            if r >= 0 && (r as usize) < h {
                &plane[r as usize * w..(r as usize + 1) * w]
            } else {
                &zero
            }
        };
        for ty in t.0..t.1 {
            let r0 = 2 * ty as isize - ph as isize;
            let (d0, d1, d2, d3) = (row(r0), row(r0 + 1), row(r0 + 2), row(r0 + 3));
            let at = |xi: usize| (xi * c + ci) * nb + (ty - t.0) * w;
            let [v0, v1, v2, v3] = v
                .get_disjoint_mut([at(0)..at(0) + w, at(1)..at(1) + w, at(2)..at(2) + w, at(3)..at(3) + w])
                .expect("distinct transform positions");
            for i in 0..w {
                v0[i] = d0[i] - d2[i];
                v1[i] = d1[i] + d2[i];
                v2[i] = d2[i] - d1[i];
                v3[i] = d1[i] - d3[i];
            }
        }
    }
    Ok(())
}
}

vectorized! {
/// `y = Aᵀ m` for tile rows `t.0..t.1` (`m` `[4][O][nb]`), into output rows
/// `2 t.0 .. 2 t.1` of `out`, which points at `[O][oh][ow]` values (a last odd row is dropped).
/// The caller must own those rows while this runs.
fn untransform_rows(m: &[f32], dims: (usize, usize, usize), t: (usize, usize), out: SendPtr) {
    let (o, oh, ow) = dims;
    let nb = (t.1 - t.0) * ow;
    for ko in 0..o {
        for ty in t.0..t.1 {
            let at = |xi: usize| &m[(xi * o + ko) * nb + (ty - t.0) * ow..][..ow];
            let (m0, m1, m2, m3) = (at(0), at(1), at(2), at(3));
            let y = 2 * ty;
            // SAFETY: row y < oh of channel ko < O lies inside `out`'s `O * oh * ow` values,
            // and the caller owns it (this block's rows)
            let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add((ko * oh + y) * ow), ow) };
            for i in 0..ow {
                dst[i] = m0[i] + m1[i] + m2[i];
            }
            if y + 1 < oh {
                // SAFETY: as above, for row y + 1 < oh
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(out.0.add((ko * oh + y + 1) * ow), ow)
                };
                for i in 0..ow {
                    dst[i] = m1[i] - m2[i] - m3[i];
                }
            }
        }
    }
    Ok(())
}
}
