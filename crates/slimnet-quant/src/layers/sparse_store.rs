//! How a sparse int8 weight is stored: per row the number of stored entries, then for each
//! entry the gap to the previous column (u8) and its i8 value. A gap over 255 is bridged by
//! filler entries of value 0 (dropped again on loading), as Deep Compression stores its
//! indices. The gaps and the values are each Huffman-coded when that is smaller (a canonical
//! code: 256 code lengths and the bit stream), so a pruned layer costs well under two bytes
//! per kept weight in the file; the kernels get plain arrays when the file is loaded.

use safetensors::Dtype;
use slimnet_core::io::TensorSource;
use slimnet_core::{Result, StoredTensor};
use slimnet_kernels::int8::QCsrMatrix;

use super::store::{bad, stored};
use crate::share::huffman;

/// Emits `weight.row_nnz` (u8, or u16 or u32 when a row holds more), `weight.col_delta` (u8)
/// and `weight.values` (i8).
pub(crate) fn store_csr(m: &QCsrMatrix, f: &mut dyn FnMut(&str, StoredTensor)) {
    let (ptr, cols, vals) = (m.row_ptr(), m.col_idx(), m.values());
    let mut counts = Vec::with_capacity(m.rows());
    let mut deltas = Vec::with_capacity(vals.len());
    let mut values = Vec::with_capacity(vals.len());
    for r in 0..m.rows() {
        let (a, b) = (ptr[r] as usize, ptr[r + 1] as usize);
        let before = values.len();
        let mut prev: i64 = -1;
        for k in a..b {
            let mut gap = cols[k] as i64 - prev;
            while gap > 255 {
                deltas.push(255u8);
                values.push(0i8);
                gap -= 255;
            }
            deltas.push(gap as u8);
            values.push(vals[k]);
            prev = cols[k] as i64;
        }
        counts.push((values.len() - before) as u64);
    }
    if counts.iter().all(|&c| c <= u8::MAX as u64) {
        let b = counts.iter().map(|&c| c as u8).collect();
        f("weight.row_nnz", stored(Dtype::U8, vec![counts.len()], b));
    } else if counts.iter().all(|&c| c <= u16::MAX as u64) {
        let b = counts
            .iter()
            .flat_map(|&c| (c as u16).to_le_bytes())
            .collect();
        f("weight.row_nnz", stored(Dtype::U16, vec![counts.len()], b));
    } else {
        let b = counts
            .iter()
            .flat_map(|&c| (c as u32).to_le_bytes())
            .collect();
        f("weight.row_nnz", stored(Dtype::U32, vec![counts.len()], b));
    }
    emit_bytes("weight.col_delta", deltas, Dtype::U8, f);
    let values: Vec<u8> = values.iter().map(|&v| v as u8).collect();
    emit_bytes("weight.values", values, Dtype::I8, f);
}

/// Emits `data` as `name` (of `dtype`), or Huffman-coded as `name.huffman` with
/// `name.code_lengths` when that is smaller.
fn emit_bytes(name: &str, data: Vec<u8>, dtype: Dtype, f: &mut dyn FnMut(&str, StoredTensor)) {
    let mut freq = vec![0u64; 256];
    data.iter().for_each(|&b| freq[b as usize] += 1);
    let lens = huffman::code_lengths(&freq);
    let bits = huffman::encode(&data, &lens).expect("every symbol present has a code");
    if bits.len() + lens.len() < data.len() {
        f(
            &format!("{name}.huffman"),
            stored(Dtype::U8, vec![bits.len()], bits),
        );
        f(
            &format!("{name}.code_lengths"),
            stored(Dtype::U8, vec![lens.len()], lens),
        );
    } else {
        f(name, stored(dtype, vec![data.len()], data));
    }
}

/// Reads `n` bytes written by [`emit_bytes`]: raw, or decoded (`n` is checked against the
/// stream's length first, so a forged count cannot ask for more memory than the file holds).
fn load_bytes(t: &mut TensorSource<'_>, name: &str, dtype: Dtype, n: usize) -> Result<Vec<u8>> {
    let coded = format!("{name}.huffman");
    if t.contains(&coded) {
        let (_, stream) = t.raw(&coded, Dtype::U8)?;
        let (_, lens) = t.raw(&format!("{name}.code_lengths"), Dtype::U8)?;
        if n > stream.len().saturating_mul(8) {
            return Err(bad(format!(
                "`{name}`: {n} symbols cannot fit in {} coded bytes",
                stream.len()
            )));
        }
        return huffman::decode(&stream, &lens, n).map_err(|e| bad(format!("`{name}`: {e}")));
    }
    let (_, data) = t.raw(name, dtype)?;
    if data.len() != n {
        return Err(bad(format!(
            "`{name}` holds {} values, the row counts say {n}",
            data.len()
        )));
    }
    Ok(data)
}

/// Reads a `[rows, cols]` weight written by [`store_csr`], checking every array before
/// building anything from it.
pub(crate) fn load_csr(
    t: &mut TensorSource<'_>,
    rows: usize,
    cols: usize,
    scales: Vec<f32>,
) -> Result<QCsrMatrix> {
    let counts: Vec<u64> = if t.dtype("weight.row_nnz") == Some(Dtype::U32) {
        let (_, b) = t.raw("weight.row_nnz", Dtype::U32)?;
        b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64)
            .collect()
    } else if t.dtype("weight.row_nnz") == Some(Dtype::U8) {
        let (_, b) = t.raw("weight.row_nnz", Dtype::U8)?;
        b.into_iter().map(u64::from).collect()
    } else {
        let (_, b) = t.raw("weight.row_nnz", Dtype::U16)?;
        b.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as u64)
            .collect()
    };
    if counts.len() != rows {
        return Err(bad(format!(
            "sparse int8 weight: {} row counts for {rows} rows",
            counts.len()
        )));
    }
    let total = counts
        .iter()
        .try_fold(0u64, |a, &c| a.checked_add(c))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| bad("sparse int8 weight: row counts overflow"))?;
    let deltas = load_bytes(t, "weight.col_delta", Dtype::U8, total)?;
    let values: Vec<i8> = load_bytes(t, "weight.values", Dtype::I8, total)?
        .into_iter()
        .map(|b| b as i8)
        .collect();
    let mut row_ptr = Vec::with_capacity(rows + 1);
    row_ptr.push(0u32);
    let mut col_idx = Vec::new();
    let mut vals = Vec::new();
    let mut k = 0usize;
    for &c in &counts {
        let mut col: i64 = -1;
        for _ in 0..c {
            let d = deltas[k] as i64;
            if d == 0 {
                return Err(bad("sparse int8 weight: a column gap of 0"));
            }
            col += d;
            if col >= cols as i64 {
                return Err(bad(format!(
                    "sparse int8 weight: column {col} in a weight of {cols} columns"
                )));
            }
            if values[k] != 0 {
                col_idx.push(col as u32);
                vals.push(values[k]);
            }
            k += 1;
        }
        let n =
            u32::try_from(vals.len()).map_err(|_| bad("sparse int8 weight: too many values"))?;
        row_ptr.push(n);
    }
    Ok(QCsrMatrix::from_parts(
        rows, cols, row_ptr, col_idx, vals, scales,
    )?)
}
