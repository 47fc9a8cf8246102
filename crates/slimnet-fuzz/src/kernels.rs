//! The kernels' checked wrappers on shapes, strides and buffer lengths read from bytes.

use slimnet::kernels::dense::{conv2d_forward, depthwise_forward, linear_forward};
use slimnet::kernels::int8::{qlinear_forward, QMatrix, QOutput, QuantParams};
use slimnet::kernels::sparse::{sparse_linear_forward, CscMatrix, CsrMatrix};
use slimnet::kernels::{Activation, ConvGeometry};

/// Reads small numbers (and now and then a large one) from bytes.
struct Reader<'a>(&'a [u8], usize);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.0.get(self.1).copied().unwrap_or(0);
        self.1 += 1;
        b
    }

    /// A size: mostly `0..16`, sometimes up to 255, rarely a 32-bit value.
    fn size(&mut self) -> usize {
        match self.byte() {
            250 => {
                u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()]) as usize
            }
            251 => usize::MAX,
            b if b >= 240 => self.byte() as usize,
            b => (b % 16) as usize,
        }
    }
}

/// Byte strings that make valid calls of each kernel.
pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        // conv: batch, cin, h, w, cout, kh, kw, stride, pad, dilation, groups, slack
        vec![0, 1, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 0, 0],
        vec![0, 2, 4, 9, 7, 4, 3, 3, 2, 1, 1, 4, 1, 0, 0],
        vec![1, 2, 4, 6, 6, 4, 3, 3, 1, 1, 1, 4, 1, 0, 0],
        // linear, sparse, int8: batch, in, out
        vec![2, 3, 5, 7, 0, 0, 0, 0],
        vec![3, 1, 9, 4, 0, 0, 0, 0],
        vec![4, 2, 6, 3, 0, 0, 0, 0],
    ]
}

/// `n` values, or a short buffer when `n` is out of reach (the wrapper must reject it).
fn buf(n: Option<usize>, slack: u8) -> Vec<f32> {
    let n = n.filter(|&n| n <= 1 << 20).unwrap_or(3);
    let n = match slack % 4 {
        1 => n + 1,
        2 => n.saturating_sub(1),
        _ => n,
    };
    (0..n).map(|i| (i % 7) as f32 - 3.0).collect()
}

fn mul(a: &[usize]) -> Option<usize> {
    a.iter().try_fold(1usize, |x, &y| x.checked_mul(y))
}

/// Runs one kernel chosen by the first byte.
pub fn run(bytes: &[u8]) {
    let mut r = Reader(bytes, 1);
    match bytes.first().copied().unwrap_or(0) % 5 {
        0 | 1 => {
            let depthwise = bytes.first() == Some(&1);
            let (n, c, h, w, o) = (r.size(), r.size(), r.size(), r.size(), r.size());
            let (kh, kw, s, p, d, grp) =
                (r.size(), r.size(), r.size(), r.size(), r.size(), r.size());
            let slack = r.byte();
            let g = ConvGeometry::new(n, c, h, w, o, kh, kw)
                .with_stride(s, s)
                .with_padding(p, p)
                .with_dilation(d, d)
                .with_groups(grp);
            if g.validate().is_err() {
                return;
            }
            let x = buf(mul(&[n, c, h, w]), slack);
            let wt = buf(mul(&[o, c / grp.max(1), kh, kw]), slack >> 2);
            let out_len = mul(&[n, o, g.out_h(), g.out_w()]);
            let mut y = buf(out_len, slack >> 4);
            let bias = buf(Some(o), slack >> 6);
            if depthwise {
                let _ = depthwise_forward(&g, &x, &wt, Some(&bias), Activation::Relu, &mut y);
            } else {
                let _ = conv2d_forward(&g, &x, &wt, Some(&bias), Activation::Identity, &mut y);
            }
        }
        2 => {
            let (n, i, o, slack) = (r.size(), r.size(), r.size(), r.byte());
            let x = buf(mul(&[n, i]), slack);
            let w = buf(mul(&[o, i]), slack >> 2);
            let mut y = buf(mul(&[n, o]), slack >> 4);
            let _ = linear_forward(n, i, o, &x, &w, None, Activation::Identity, &mut y);
        }
        3 => {
            let (n, i, o, slack) = (r.size(), r.size(), r.size(), r.byte());
            let Some(len) = mul(&[o, i]).filter(|&l| l <= 1 << 16) else {
                return;
            };
            let dense: Vec<f32> = (0..len)
                .map(|k| {
                    if (k + slack as usize).is_multiple_of(3) {
                        k as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            let Ok(m) = CsrMatrix::from_dense(&dense, o, i, None) else {
                return;
            };
            let x = buf(mul(&[n, i]), slack);
            let mut y = buf(mul(&[n, o]), slack >> 2);
            let _ = sparse_linear_forward(&m, n, &x, None, Activation::Relu, &mut y);
            let _ = CscMatrix::from_csr(&m);
            // forged parts
            let rp: Vec<u32> = (0..=o.min(64))
                .map(|k| (k * r.byte() as usize) as u32)
                .collect();
            let ci: Vec<u32> = (0..r.size()).map(|_| r.byte() as u32).collect();
            let vals = vec![1.0; ci.len()];
            let _ = CsrMatrix::from_parts(o, i, rp, ci, vals);
        }
        _ => {
            let (n, i, o, slack) = (r.size(), r.size(), r.size(), r.byte());
            let Some(len) = mul(&[o, i]).filter(|&l| l <= 1 << 16) else {
                return;
            };
            let q: Vec<i8> = (0..len).map(|k| (k as i32 % 255 - 127) as i8).collect();
            let scales = vec![0.01f32; o + (slack % 2) as usize];
            let Ok(m) = QMatrix::new(o, i, q, scales) else {
                return;
            };
            let x: Vec<u8> = (0..mul(&[n, i]).filter(|&l| l <= 1 << 16).unwrap_or(1))
                .map(|k| k as u8)
                .collect();
            let mut y = buf(mul(&[n, o]), slack >> 2);
            let xq = QuantParams::from_range(0.0, 1.0);
            let _ = qlinear_forward(
                &m,
                n,
                &x,
                xq,
                QOutput::F32 {
                    out: &mut y,
                    bias: None,
                },
            );
        }
    }
}
