//! Small shared helpers: seeded Gaussian samples and relative errors.

use rand::Rng;

/// One standard normal sample (Box-Muller).
pub(crate) fn gaussian<R: Rng>(rng: &mut R) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `||a - b|| / ||a||` in f64 (0 when both are zero, infinite when only `a` is).
pub(crate) fn relative_error(a: impl Iterator<Item = f32>, b: impl Iterator<Item = f32>) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.zip(b) {
        let d = x as f64 - y as f64;
        num += d * d;
        den += x as f64 * x as f64;
    }
    if num == 0.0 {
        0.0
    } else {
        (num / den).sqrt()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ndarray::Array2;
    use rand::SeedableRng;

    use super::gaussian;

    /// A random `m x n` matrix of exact rank `r`.
    pub(crate) fn low_rank_matrix(m: usize, n: usize, r: usize, seed: u64) -> Array2<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let a = Array2::from_shape_simple_fn((m, r), || gaussian(&mut rng) as f32);
        let b = Array2::from_shape_simple_fn((r, n), || gaussian(&mut rng) as f32);
        a.dot(&b)
    }

    /// A random `m x n` matrix with singular values `decay^i`.
    pub(crate) fn decaying_matrix(m: usize, n: usize, decay: f32, seed: u64) -> Array2<f32> {
        let k = m.min(n);
        let q1 = crate::svd::svd(low_rank_matrix(m, k, k, seed).view())
            .unwrap()
            .u;
        let q2 = crate::svd::svd(low_rank_matrix(n, k, k, seed + 1).view())
            .unwrap()
            .u;
        let s = ndarray::Array1::from_shape_fn(k, |i| decay.powi(i as i32));
        (&q1 * &s.view().insert_axis(ndarray::Axis(0))).dot(&q2.t())
    }

    /// A random CP tensor of `rank` with Gaussian factors, plus `noise` times its norm of
    /// Gaussian noise (relative).
    pub(crate) fn cp_tensor(
        shape: &[usize],
        rank: usize,
        noise: f64,
        seed: u64,
    ) -> ndarray::ArrayD<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let f: Vec<Array2<f64>> = shape
            .iter()
            .map(|&d| Array2::from_shape_simple_fn((d, rank), || gaussian(&mut rng)))
            .collect();
        let mut x = ndarray::ArrayD::<f64>::zeros(ndarray::IxDyn(shape));
        for (idx, v) in x.indexed_iter_mut() {
            *v = (0..rank)
                .map(|r| {
                    f.iter()
                        .enumerate()
                        .map(|(n, a)| a[[idx[n], r]])
                        .product::<f64>()
                })
                .sum();
        }
        if noise > 0.0 {
            let nx = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            let e =
                ndarray::ArrayD::from_shape_simple_fn(ndarray::IxDyn(shape), || gaussian(&mut rng));
            let ne = e.iter().map(|v| v * v).sum::<f64>().sqrt();
            x = x + e * (noise * nx / ne);
        }
        x.mapv(|v| v as f32)
    }

    /// A random tensor of exact multilinear rank `ranks` (Gaussian core and factors) plus
    /// relative Gaussian noise.
    pub(crate) fn tucker_tensor(
        shape: &[usize],
        ranks: &[usize],
        noise: f64,
        seed: u64,
    ) -> ndarray::ArrayD<f32> {
        let core = cp_tensor(ranks, ranks.iter().product(), 0.0, seed);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 100);
        let mut t = crate::dense::Dense::from_view(&core.view());
        for (n, (&d, &r)) in shape.iter().zip(ranks).enumerate() {
            let u = faer::Mat::<f64>::from_fn(d, r, |_, _| gaussian(&mut rng));
            t = t.mode_product(n, u.as_ref());
        }
        let x = t.to_array();
        if noise == 0.0 {
            return x;
        }
        let e = cp_tensor(shape, 1, 0.0, seed + 7);
        let (nx, ne) = (
            x.iter().map(|v| v * v).sum::<f32>().sqrt(),
            e.iter().map(|v| v * v).sum::<f32>().sqrt(),
        );
        x + e * (noise as f32 * nx / ne)
    }
}
