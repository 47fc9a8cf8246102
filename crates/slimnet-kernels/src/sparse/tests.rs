//! Every format and variant against a dense reference on seeded random ragged shapes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::ConvGeometry;

/// Relative tolerance of f32 kernels that sum in a different order or fuse multiply-adds,
/// scaled by the sum of absolute products.
pub(crate) const F32_TOL: f32 = 1e-5;

fn random(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn sparse_dense(rng: &mut ChaCha8Rng, rows: usize, cols: usize, density: f64) -> Vec<f32> {
    (0..rows * cols)
        .map(|_| {
            if rng.random_bool(density) {
                rng.random_range(-1.0f32..1.0)
            } else {
                0.0
            }
        })
        .collect()
}

/// Reference `act(W b + bias)` in f64 plus the per-entry scale sum |w * b|.
fn reference(
    w: &[f32],
    rows: usize,
    cols: usize,
    b: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    act: Activation,
) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0.0; rows * n];
    let mut scale = vec![0.0; rows * n];
    for r in 0..rows {
        for j in 0..n {
            let mut s = 0.0f64;
            let mut a = 0.0f64;
            for k in 0..cols {
                let p = w[r * cols + k] as f64 * b[k * n + j] as f64;
                s += p;
                a += p.abs();
            }
            let bv = bias.map_or(0.0, |b| b[r]) as f64;
            out[r * n + j] = act.apply((s + bv) as f32);
            scale[r * n + j] = (a + bv.abs()) as f32 + 1.0;
        }
    }
    (out, scale)
}

fn assert_close(got: &[f32], want: &[f32], scale: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
        assert!(
            (g - w).abs() <= F32_TOL * s,
            "{what}: entry {i}: got {g}, want {w} (scale {s})"
        );
    }
}

fn check_all_variants(m: &dyn SparseMatrix, dense: &[f32], rng: &mut ChaCha8Rng, what: &str) {
    let (rows, cols) = (m.rows(), m.cols());
    assert_eq!(m.to_dense(), dense, "{what}: to_dense");
    for n in [1usize, 3, 8, 13, 16, 33, 64, 71, 150] {
        let b = random(rng, cols * n);
        let bias = random(rng, rows);
        for (bias, act) in [
            (None, Activation::Identity),
            (Some(&bias[..]), Activation::Relu6),
        ] {
            let (want, scale) = reference(dense, rows, cols, &b, n, bias, act);
            for isa in Isa::all_supported() {
                let mut c = vec![f32::NAN; rows * n];
                spmm_with_isa(isa, m, &b, n, bias, act, &mut c).unwrap();
                assert_close(&c, &want, &scale, &format!("{what} n={n} {isa:?}"));
            }
        }
    }
}

#[test]
fn csr_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (rows, cols, d) in [
        (1, 1, 1.0),
        (7, 13, 0.3),
        (33, 70, 0.1),
        (16, 129, 0.5),
        (5, 40, 0.0),
    ] {
        let w = sparse_dense(&mut rng, rows, cols, d);
        let m = CsrMatrix::from_dense(&w, rows, cols, None).unwrap();
        check_all_variants(&m, &w, &mut rng, &format!("csr {rows}x{cols}"));
    }
}

#[test]
fn csr_wide_and_narrow_indices_agree() {
    // 65,536 columns keep two-byte indices, 65,537 need four; both must give the same products
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for cols in [1 << 16, (1 << 16) + 1] {
        let rows = 3;
        let mut w = sparse_dense(&mut rng, rows, cols, 0.002);
        w[cols - 1] = 0.5; // the last column, whose index needs all 16 bits or more
        let m = CsrMatrix::from_dense(&w, rows, cols, None).unwrap();
        let per_index = if cols <= 1 << 16 { 2 } else { 4 };
        let want_bytes = 4 * (rows + 1 + m.nnz()) + per_index * m.nnz();
        assert_eq!(m.storage_bytes(), want_bytes, "{cols} columns");
        assert_eq!(m.col_idx().len(), m.nnz());
        assert_eq!(m.to_dense(), w);
        for n in [1usize, 5, 16] {
            let b = random(&mut rng, cols * n);
            let (want, scale) = reference(&w, rows, cols, &b, n, None, Activation::Identity);
            for isa in Isa::all_supported() {
                let mut c = vec![f32::NAN; rows * n];
                spmm_with_isa(isa, &m, &b, n, None, Activation::Identity, &mut c).unwrap();
                assert_close(&c, &want, &scale, &format!("{cols} columns n={n} {isa:?}"));
            }
        }
    }
}

#[test]
fn bsr_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for block in [(1, 1), (1, 4), (2, 1), (4, 1), (8, 1), (4, 4), (3, 2)] {
        let (rows, cols) = (block.0 * 5, block.1 * 23);
        let w = sparse_dense(&mut rng, rows, cols, 0.15);
        let m = BsrMatrix::from_dense(&w, rows, cols, block, None).unwrap();
        check_all_variants(&m, &w, &mut rng, &format!("bsr {block:?}"));
    }
}

/// The dense member of [`SparseWeight`] (dot products at batch 1, GEMM above).
#[test]
fn dense_member_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (rows, cols) in [(1, 1), (7, 13), (33, 70), (100, 300)] {
        let w = random(&mut rng, rows * cols);
        let m = DenseMatrix::new(rows, cols, w.clone()).unwrap();
        check_all_variants(&m, &w, &mut rng, &format!("dense {rows}x{cols}"));
    }
}

#[test]
fn nm_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for ((n, m), rows, cols) in [
        ((2, 4), 9, 68),
        ((2, 4), 3, 4),
        ((2, 4), 4, 36),
        ((1, 4), 5, 12),
        ((3, 8), 6, 40),
    ] {
        let w = random(&mut rng, rows * cols);
        let nm = NmMatrix::prune_from_dense(&w, rows, cols, (n, m)).unwrap();
        let pruned = nm.to_dense();
        // every group keeps its n largest magnitudes
        for g in pruned.chunks(m) {
            assert!(g.iter().filter(|v| **v != 0.0).count() <= n);
        }
        let again = NmMatrix::from_dense(&pruned, rows, cols, (n, m), None).unwrap();
        assert_eq!(again.to_dense(), pruned);
        check_all_variants(&nm, &pruned, &mut rng, &format!("nm {n}:{m} {rows}x{cols}"));
    }
}

#[test]
fn mask_keeps_explicit_zeros_and_drops_masked_values() {
    let w = [1.0, 2.0, 0.0, 4.0];
    let mask = [true, false, true, true];
    let m = CsrMatrix::from_dense(&w, 2, 2, Some(&mask)).unwrap();
    assert_eq!(m.nnz(), 3);
    assert_eq!(m.to_dense(), vec![1.0, 0.0, 0.0, 4.0]);
    let b = BsrMatrix::from_dense(&w, 2, 2, (2, 1), Some(&mask)).unwrap();
    assert_eq!(b.to_dense(), vec![1.0, 0.0, 0.0, 4.0]);
    assert!(NmMatrix::from_dense(&[1.0, 2.0, 3.0, 0.0], 1, 4, (2, 4), None).is_err());
}

#[test]
fn from_parts_round_trips_and_rejects_corruption() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let w = sparse_dense(&mut rng, 8, 12, 0.3);
    let c = CsrMatrix::from_dense(&w, 8, 12, None).unwrap();
    let back = CsrMatrix::from_parts(
        8,
        12,
        c.row_ptr().into(),
        c.col_idx().into(),
        c.values().into(),
    );
    assert_eq!(back.unwrap(), c);
    let mut bad_ptr = c.row_ptr().to_vec();
    bad_ptr[3] = bad_ptr[4] + 1;
    assert!(CsrMatrix::from_parts(8, 12, bad_ptr, c.col_idx().into(), c.values().into()).is_err());
    let mut bad_col = c.col_idx().to_vec();
    bad_col[0] = 12;
    assert!(CsrMatrix::from_parts(8, 12, c.row_ptr().into(), bad_col, c.values().into()).is_err());
    assert!(CsrMatrix::from_parts(8, 12, vec![0; 8], vec![], vec![]).is_err());
    assert!(CsrMatrix::from_parts(8, 12, c.row_ptr().into(), c.col_idx().into(), vec![]).is_err());

    let b = BsrMatrix::from_dense(&w, 8, 12, (4, 1), None).unwrap();
    let parts =
        |p: Vec<u32>, k: Vec<u32>, v: Vec<f32>| BsrMatrix::from_parts(8, 12, (4, 1), p, k, v);
    assert_eq!(
        parts(
            b.block_row_ptr().into(),
            b.block_col_idx().into(),
            b.values().into()
        )
        .unwrap(),
        b
    );
    let mut bad = b.block_col_idx().to_vec();
    bad[0] = 99;
    assert!(parts(b.block_row_ptr().into(), bad, b.values().into()).is_err());
    assert!(parts(
        b.block_row_ptr().into(),
        b.block_col_idx().into(),
        vec![0.0; 3]
    )
    .is_err());
    assert!(BsrMatrix::from_parts(8, 12, (5, 1), vec![0, 0], vec![], vec![]).is_err());
    assert!(BsrMatrix::from_parts(8, 12, (0, 1), vec![0], vec![], vec![]).is_err());

    let nm = NmMatrix::prune_from_dense(&w, 8, 12, (2, 4)).unwrap();
    let ok = NmMatrix::from_parts(8, 12, (2, 4), nm.values().into(), nm.indices().into());
    assert_eq!(ok.unwrap(), nm);
    let mut bad = nm.indices().to_vec();
    bad[1] = bad[0];
    assert!(NmMatrix::from_parts(8, 12, (2, 4), nm.values().into(), bad).is_err());
    let mut bad = nm.indices().to_vec();
    bad[1] = 4;
    assert!(NmMatrix::from_parts(8, 12, (2, 4), nm.values().into(), bad).is_err());
    assert!(NmMatrix::from_parts(8, 12, (5, 4), vec![], vec![]).is_err());
}

#[test]
fn linear_and_conv_match_dense_kernels() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (out, inp) = (24, 37);
    let w = sparse_dense(&mut rng, out, inp, 0.2);
    let bias = random(&mut rng, out);
    for fmt in [
        SparseFormat::Csr,
        SparseFormat::Bsr { block: (8, 1) },
        SparseFormat::Dense,
    ] {
        let sw = SparseWeight::from_dense(fmt, &w, out, inp, None).unwrap();
        assert_eq!(sw.format(), fmt);
        for batch in [1, 5, 19] {
            let x = random(&mut rng, batch * inp);
            let mut want = vec![0.0; batch * out];
            crate::dense::linear_forward(
                batch,
                inp,
                out,
                &x,
                &w,
                Some(&bias),
                Activation::Relu,
                &mut want,
            )
            .unwrap();
            let mut y = vec![0.0; batch * out];
            sparse_linear_forward(&sw, batch, &x, Some(&bias), Activation::Relu, &mut y).unwrap();
            let scale = vec![(inp as f32) * 10.0; y.len()];
            assert_close(&y, &want, &scale, &format!("linear {fmt:?} batch {batch}"));
        }
    }
    for (g, d) in [
        (
            ConvGeometry::new(2, 5, 9, 7, 12, 3, 3)
                .with_padding(1, 1)
                .with_stride(2, 1),
            0.3,
        ),
        (ConvGeometry::new(1, 16, 6, 6, 8, 1, 1), 0.4),
    ] {
        let kk = g.in_channels * g.kernel_h * g.kernel_w;
        let w = sparse_dense(&mut rng, g.out_channels, kk, d);
        let x = random(&mut rng, g.input_len());
        let bias = random(&mut rng, g.out_channels);
        let mut want = vec![0.0; g.output_len()];
        crate::dense::conv2d_forward(&g, &x, &w, Some(&bias), Activation::Relu6, &mut want)
            .unwrap();
        let sw = SparseWeight::from_dense_auto(&w, g.out_channels, kk, None, 1).unwrap();
        let mut y = vec![0.0; g.output_len()];
        sparse_conv2d_forward(&g, &x, &sw, Some(&bias), Activation::Relu6, &mut y).unwrap();
        let scale = vec![(kk as f32) * 10.0; y.len()];
        assert_close(&y, &want, &scale, "sparse conv");
        assert!(sparse_conv2d_forward(
            &g.with_groups(g.in_channels.min(1)),
            &x,
            &sw,
            None,
            Activation::Identity,
            &mut y[1..]
        )
        .is_err());
    }
}

#[test]
fn threads_give_the_same_result() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (rows, cols, n) = (96, 200, 40);
    let w = sparse_dense(&mut rng, rows, cols, 0.3);
    let b = random(&mut rng, cols * n);
    for fmt in [SparseFormat::Csr, SparseFormat::Bsr { block: (4, 1) }] {
        let m = SparseWeight::from_dense(fmt, &w, rows, cols, None).unwrap();
        let mut one = vec![0.0; rows * n];
        spmm(&m, &b, n, None, Activation::Identity, &mut one).unwrap();
        let mut two = vec![0.0; rows * n];
        crate::threads::with(2, || spmm(&m, &b, n, None, Activation::Identity, &mut two)).unwrap();
        assert_eq!(one, two);
    }
}

#[test]
fn auto_format_picks_structure() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (rows, cols) = (64, 64);
    // 8x1 blocks at 10% block density
    let mut w = vec![0.0; rows * cols];
    for bi in 0..rows / 8 {
        for c in 0..cols {
            if rng.random_bool(0.1) {
                for r in 0..8 {
                    w[(bi * 8 + r) * cols + c] = rng.random_range(0.5f32..1.0);
                }
            }
        }
    }
    let sw = SparseWeight::from_dense_auto(&w, rows, cols, None, 1).unwrap();
    assert_eq!(sw.format(), SparseFormat::Bsr { block: (8, 1) });
    let dense = random(&mut rng, rows * cols);
    let sw = SparseWeight::from_dense_auto(&dense, rows, cols, None, 64).unwrap();
    assert_eq!(sw.format(), SparseFormat::Dense);
    let unstructured = sparse_dense(&mut rng, rows, cols, 0.05);
    let sw = SparseWeight::from_dense_auto(&unstructured, rows, cols, None, 1).unwrap();
    assert_eq!(sw.format(), SparseFormat::Csr);
}

/// Randomly corrupted parts either fail validation or give a matrix every kernel runs on.
#[test]
fn corrupted_parts_are_rejected_or_safe() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (rows, cols) = (16, 40);
    let w = sparse_dense(&mut rng, rows, cols, 0.3);
    let csr = CsrMatrix::from_dense(&w, rows, cols, None).unwrap();
    let bsr = BsrMatrix::from_dense(&w, rows, cols, (4, 1), None).unwrap();
    let nm = NmMatrix::prune_from_dense(&w, rows, cols, (2, 4)).unwrap();
    let b = random(&mut rng, cols * 9);
    let mut ok = 0;
    let run = |m: &dyn SparseMatrix| {
        for n in [1, 9] {
            let mut c = vec![0.0; rows * n];
            for isa in Isa::all_supported() {
                spmm_with_isa(
                    isa,
                    m,
                    &b[..cols * n],
                    n,
                    None,
                    Activation::Identity,
                    &mut c,
                )
                .unwrap();
            }
        }
        let _ = m.to_dense();
    };
    for _ in 0..300 {
        let mut p = csr.row_ptr().to_vec();
        let mut k = csr.col_idx().to_vec();
        match rng.random_range(0..3) {
            0 => {
                let i = rng.random_range(0..p.len());
                p[i] = rng.random_range(0..(csr.nnz() as u32 + 3));
            }
            1 if !k.is_empty() => {
                let i = rng.random_range(0..k.len());
                k[i] = rng.random_range(0..(cols as u32 + 3));
            }
            _ => {
                k.pop();
            }
        }
        if let Ok(m) = CsrMatrix::from_parts(rows, cols, p, k, csr.values().to_vec()) {
            run(&m);
            ok += 1;
        }
        let mut p = bsr.block_row_ptr().to_vec();
        let mut k = bsr.block_col_idx().to_vec();
        if rng.random_bool(0.5) {
            let i = rng.random_range(0..p.len());
            p[i] = rng.random_range(0..(bsr.num_blocks() as u32 + 3));
        } else if !k.is_empty() {
            let i = rng.random_range(0..k.len());
            k[i] = rng.random_range(0..(cols as u32 + 3));
        }
        if let Ok(m) = BsrMatrix::from_parts(rows, cols, (4, 1), p, k, bsr.values().to_vec()) {
            run(&m);
            ok += 1;
        }
        let mut idx = nm.indices().to_vec();
        let i = rng.random_range(0..idx.len());
        idx[i] = rng.random_range(0..6);
        if let Ok(m) = NmMatrix::from_parts(rows, cols, (2, 4), nm.values().to_vec(), idx) {
            run(&m);
            ok += 1;
        }
    }
    // some corruptions happen to stay valid (e.g. an index replaced by itself)
    assert!(ok > 0);
}

/// The column walk against the dense reference, for inputs with zeros, with a repeated
/// background value, and with neither; every skip value gives the same product, with every
/// column sparse, every column dense, the default choice, and a budget that keeps only some.
#[test]
fn csc_matvec_matches_reference_for_any_skip_value() {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    for &(rows, cols, density) in &[
        (1, 1, 1.0),
        (7, 300, 0.08),
        (300, 784, 0.075),
        (33, 517, 0.3),
        (17, 2100, 0.2),
    ] {
        let w = sparse_dense(&mut rng, rows, cols, density);
        let csr = CsrMatrix::from_dense(&w, rows, cols, None).unwrap();
        let column_bytes = rows.div_ceil(16) * 64;
        let variants = [
            (
                "sparse",
                CscMatrix::with_dense_columns(&csr, f32::INFINITY, usize::MAX),
            ),
            (
                "dense",
                CscMatrix::with_dense_columns(&csr, 0.0, usize::MAX),
            ),
            ("default", CscMatrix::from_csr(&csr)),
            (
                "budget 5",
                CscMatrix::with_dense_columns(&csr, 0.0, 5 * column_bytes),
            ),
        ];
        let nonempty = (0..cols)
            .filter(|&c| (0..rows).any(|r| w[r * cols + c] != 0.0))
            .count();
        assert_eq!(variants[0].1.dense_columns(), 0);
        assert_eq!(variants[1].1.dense_columns(), nonempty);
        assert_eq!(variants[3].1.dense_columns(), nonempty.min(5));
        let bias = random(&mut rng, rows);
        let background = -0.4242;
        let mut x = random(&mut rng, cols);
        for (i, v) in x.iter_mut().enumerate() {
            match i % 5 {
                0 | 1 => *v = 0.0,
                2 => *v = background,
                _ => {}
            }
        }
        for (name, csc) in &variants {
            assert_eq!(csc.nnz(), csr.nnz());
            for act in [Activation::Identity, Activation::Relu, Activation::Relu6] {
                let (want, scale) = reference(&w, rows, cols, &x, 1, Some(&bias), act);
                for skip in [0.0, background, 0.5] {
                    let mut y = vec![f32::NAN; rows];
                    csc_matvec(csc, &x, skip, Some(&bias), act, &mut y).unwrap();
                    let what = format!("csc {name} {rows}x{cols} skip {skip}");
                    assert_close(&y, &want, &scale, &what);
                }
            }
            // the work counted is the stored values of the columns not skipped
            let active: usize = (0..cols)
                .filter(|&c| x[c] != 0.0)
                .map(|c| (0..rows).filter(|&r| w[r * cols + c] != 0.0).count())
                .sum();
            assert_eq!(csc.active_nnz(&x, 0.0), active);
        }
    }
}

#[test]
fn csc_skip_value_picks_the_cheaper_background_or_none() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (rows, cols) = (20, 100);
    let w = sparse_dense(&mut rng, rows, cols, 0.5);
    let csr = CsrMatrix::from_dense(&w, rows, cols, None).unwrap();
    // every column sparse: with no input to skip, scattering loses to the row-major product
    let csc = CscMatrix::with_dense_columns(&csr, f32::INFINITY, 0);
    let dense_input = random(&mut rng, cols);
    assert_eq!(csc.skip_value(&dense_input), None);
    // half-full columns kept dense beat it even then (2 blocks against 10 gathers a column)
    let hybrid = CscMatrix::from_csr(&csr);
    assert_eq!(hybrid.dense_columns(), cols);
    assert!(hybrid.skip_value(&dense_input).is_some());
    let mut zeros = dense_input.clone();
    zeros.iter_mut().skip(10).for_each(|v| *v = 0.0);
    assert_eq!(csc.skip_value(&zeros), Some(0.0));
    let mut background = dense_input.clone();
    background.iter_mut().skip(10).for_each(|v| *v = -0.5);
    background[0] = -0.5;
    assert_eq!(csc.skip_value(&background), Some(-0.5));
    assert_eq!(csc.skip_value(&[]), None);
}

#[test]
fn csc_matvec_rejects_wrong_lengths() {
    let csr = CsrMatrix::from_dense(&[1.0, 0.0, 2.0, 3.0], 2, 2, None).unwrap();
    let csc = CscMatrix::from_csr(&csr);
    let mut y = [0.0; 2];
    let id = Activation::Identity;
    assert!(csc_matvec(&csc, &[1.0], 0.0, None, id, &mut y).is_err());
    assert!(csc_matvec(&csc, &[1.0, 2.0], 0.0, None, id, &mut [0.0; 3]).is_err());
    assert!(csc_matvec(&csc, &[1.0, 2.0], 0.0, Some(&[1.0]), id, &mut y).is_err());
    csc_matvec(&csc, &[1.0, 2.0], 0.0, None, id, &mut y).unwrap();
    assert_eq!(y, [1.0, 8.0]);
}

/// Shapes that no weight matrix has (from a corrupt file) are errors, not a capacity-overflow
/// panic or a loop over `usize::MAX` rows.
#[test]
fn from_dense_rejects_shapes_no_matrix_has() {
    for (rows, cols) in [(usize::MAX, 0), (3, 0), (1 << 33, 0), (2, usize::MAX)] {
        let err = CsrMatrix::from_dense(&[], rows, cols, None).unwrap_err();
        assert!(
            matches!(err, crate::KernelError::Invalid { .. }),
            "{rows}x{cols}: {err}"
        );
    }
    let empty = CsrMatrix::from_dense(&[], 0, 5, None).unwrap();
    assert_eq!(empty.nnz(), 0);
}

/// The row kernels CSR chooses between by the matrix's size (picked loads for cached matrices,
/// gathers for streamed ones) agree on every row length around their step sizes, with two- and
/// four-byte indices.
#[cfg(target_arch = "x86_64")]
#[test]
fn csr_row_kernels_agree() {
    use crate::isa::features;
    if !features().avx2_fma {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let x = random(&mut rng, 1000);
    for len in [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100] {
        let v = random(&mut rng, len);
        let k32: Vec<u32> = (0..len).map(|_| rng.random_range(0..1000u32)).collect();
        let k16: Vec<u16> = k32.iter().map(|&k| k as u16).collect();
        let want: f64 = v
            .iter()
            .zip(&k32)
            .map(|(&v, &k)| v as f64 * x[k as usize] as f64)
            .sum();
        // SAFETY: AVX2 and FMA are available (checked above), AVX-512 where it is called;
        // every index is below `x.len()`.
        let mut got = unsafe {
            vec![
                x86::csr_dot_pick(&v, &k16, &x),
                x86::csr_dot_pick(&v, &k32, &x),
                x86::csr_dot_avx2(&v, &k16, &x),
                x86::csr_dot_avx2(&v, &k32, &x),
            ]
        };
        if features().avx512 {
            // SAFETY: as above, AVX-512 F/BW/VL detected.
            got.extend(unsafe {
                [
                    x86::csr_dot_avx512(&v, &k16, &x),
                    x86::csr_dot_avx512(&v, &k32, &x),
                ]
            });
        }
        for g in got {
            assert!(
                (g as f64 - want).abs() <= 1e-5 * (1.0 + len as f64),
                "{len}: {g} vs {want}"
            );
        }
    }
}
