//! A row-major f64 tensor with the unfoldings, mode products and Khatri-Rao products the tensor
//! decompositions need.
//!
//! The mode-`n` unfolding of a tensor of shape `(I_0, ..., I_{N-1})` is the `I_n x Π_{m≠n} I_m`
//! matrix whose columns enumerate the other indices in row-major order (the last index fastest),
//! so that `X_(n) = A_n · khatri_rao(A_m, m ≠ n)^T` for a CP tensor.

use faer::{Mat, MatRef};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::linalg::{self, Elem};

/// A dense row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dense {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Dense {
    pub fn from_view(x: &ArrayViewD<'_, f32>) -> Self {
        Self {
            shape: x.shape().to_vec(),
            data: x.iter().map(|&v| v as f64).collect(),
        }
    }

    pub fn to_array(&self) -> ArrayD<f32> {
        ArrayD::from_shape_vec(
            IxDyn(&self.shape),
            self.data.iter().map(|&v| v as f32).collect(),
        )
        .expect("shape matches data")
    }

    pub fn norm(&self) -> f64 {
        self.data.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    /// (product of dims before `n`, `I_n`, product of dims after `n`).
    fn split(&self, n: usize) -> (usize, usize, usize) {
        let left = self.shape[..n].iter().product();
        let right = self.shape[n + 1..].iter().product();
        (left, self.shape[n], right)
    }

    /// The mode-`n` unfolding as a column-major matrix (a copy).
    pub fn unfold(&self, n: usize) -> Mat<f64> {
        let (left, dim, right) = self.split(n);
        let mut m = Mat::<f64>::zeros(dim, left * right);
        for l in 0..left {
            for i in 0..dim {
                let src = &self.data[(l * dim + i) * right..(l * dim + i + 1) * right];
                for (r, &v) in src.iter().enumerate() {
                    m[(i, l * right + r)] = v;
                }
            }
        }
        m
    }

    /// The inverse of [`unfold`](Self::unfold) for a tensor of `shape`.
    pub fn fold(m: MatRef<'_, f64>, n: usize, shape: &[usize]) -> Self {
        let left: usize = shape[..n].iter().product();
        let right: usize = shape[n + 1..].iter().product();
        let dim = shape[n];
        let mut data = vec![0.0; left * dim * right];
        for l in 0..left {
            for i in 0..dim {
                let dst = &mut data[(l * dim + i) * right..(l * dim + i + 1) * right];
                for (r, d) in dst.iter_mut().enumerate() {
                    *d = m[(i, l * right + r)];
                }
            }
        }
        Self {
            shape: shape.to_vec(),
            data,
        }
    }

    /// `X ×_n M`: multiplies mode `n` by `m` (`J x I_n`), giving mode size `J`.
    pub fn mode_product(&self, n: usize, m: MatRef<'_, f64>) -> Self {
        let y = linalg::matmul(m, self.unfold(n).as_ref());
        let mut shape = self.shape.clone();
        shape[n] = m.nrows();
        Self::fold(y.as_ref(), n, &shape)
    }
}

/// The Khatri-Rao (column-wise Kronecker) product of `factors` (each `I_k x R`), the last
/// factor's index fastest: row `(i_0, ..., i_K)` of column `r` is `Π_k factors[k][i_k, r]`.
pub(crate) fn khatri_rao<T: Elem>(factors: &[MatRef<'_, T>]) -> Mat<T> {
    let r = factors[0].ncols();
    let rows: usize = factors.iter().map(|f| f.nrows()).product();
    let mut out = Mat::<T>::zeros(rows, r);
    let mut scratch = vec![T::of(0.0); rows];
    for c in 0..r {
        let col = out
            .col_mut(c)
            .try_as_col_major_mut()
            .expect("owned column")
            .as_slice_mut();
        col[0] = T::of(1.0);
        let mut len = 1;
        for f in factors {
            let fc: Vec<T> = f.col(c).iter().copied().collect();
            let k = fc.len();
            scratch[..len].copy_from_slice(&col[..len]);
            for (i, &base) in scratch[..len].iter().enumerate() {
                for (dst, &v) in col[i * k..(i + 1) * k].iter_mut().zip(&fc) {
                    *dst = base * v;
                }
            }
            len *= k;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfold_fold_round_trip_and_mode_product() {
        let shape = [2usize, 3, 4];
        let x = Dense {
            shape: shape.to_vec(),
            data: (0..24).map(|v| v as f64).collect(),
        };
        for n in 0..3 {
            let m = x.unfold(n);
            assert_eq!(Dense::fold(m.as_ref(), n, &shape), x);
        }
        // mode-1 unfolding, column (i0, i2) = i0 * 4 + i2
        let m1 = x.unfold(1);
        assert_eq!(m1[(2, 4 + 3)], x.data[(3 + 2) * 4 + 3]);
        // multiplying by the identity keeps the tensor; by a row of ones sums the mode
        let eye = Mat::<f64>::identity(3, 3);
        assert_eq!(x.mode_product(1, eye.as_ref()), x);
        let ones = Mat::<f64>::from_fn(1, 3, |_, _| 1.0);
        let s = x.mode_product(1, ones.as_ref());
        assert_eq!(s.shape, vec![2, 1, 4]);
        assert_eq!(s.data[0], 0.0 + 4.0 + 8.0);
    }

    #[test]
    fn khatri_rao_matches_definition() {
        let a = Mat::<f64>::from_fn(2, 2, |i, j| (i * 2 + j + 1) as f64);
        let b = Mat::<f64>::from_fn(3, 2, |i, j| (i + 10 * j) as f64);
        let k = khatri_rao(&[a.as_ref(), b.as_ref()]);
        for i in 0..2 {
            for j in 0..3 {
                for c in 0..2 {
                    assert_eq!(k[(i * 3 + j, c)], a[(i, c)] * b[(j, c)]);
                }
            }
        }
    }
}
