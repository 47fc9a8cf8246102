//! Reuse of large activation allocations during inference.
//!
//! A chain of layers (a decomposed convolution, a residual block) allocates one output per
//! layer and frees it one layer later. For outputs of a megabyte or more, the system allocator
//! tends to return that memory to the operating system and fault it in again on the next pass,
//! which can cost as much as the arithmetic. [`Graph`](crate::Graph) inference therefore hands
//! the allocations of values it no longer needs to [`recycle`], and layers take their outputs
//! from [`output`], which reuses them.
//!
//! The pool is per thread and small: at most [`MAX_BUFFERS`] allocations of at least
//! [`MIN_LEN`] and at most [`MAX_LEN`] values each are kept.

use std::cell::RefCell;

use crate::tensor::Tensor;

/// Smallest allocation (in f32 values, 64 KiB) worth keeping; smaller ones are cheap to make.
pub const MIN_LEN: usize = 16 * 1024;
/// Largest allocation (in f32 values, 256 MiB) kept.
pub const MAX_LEN: usize = 64 * 1024 * 1024;
/// Allocations kept per thread.
pub const MAX_BUFFERS: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` values for a layer output that its kernel overwrites completely: a
/// recycled allocation when one of this thread's is large enough (the smallest such; its
/// contents are stale values, not zeros), otherwise a new zeroed one.
///
/// ```
/// use slimnet_core::{buffers, tensor};
/// let t = tensor::zeros(&[1, 64, 32, 32]); // 65,536 values: worth keeping
/// let ptr = t.as_ptr();
/// buffers::recycle(t);
/// let v = buffers::output(50_000);
/// assert_eq!((v.len(), v.as_ptr()), (50_000, ptr));
/// ```
pub fn output(len: usize) -> Vec<f32> {
    if len >= MIN_LEN {
        let reused = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let best = p
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i)?;
            Some(p.swap_remove(best))
        });
        if let Some(mut v) = reused {
            v.truncate(len);
            v.resize(len, 0.0);
            return v;
        }
    }
    vec![0.0; len]
}

/// Gives the allocation of a tensor that is no longer needed back to this thread's pool
/// (dropped instead when it is small, huge, shared or the pool is full).
pub fn recycle(t: Tensor) {
    if !(MIN_LEN..=MAX_LEN).contains(&t.len()) || !t.is_standard_layout() {
        return;
    }
    let (v, _) = t.into_raw_vec_and_offset();
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < MAX_BUFFERS {
            p.push(v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Conv2dConfig;
    use crate::{tensor, Layer};

    /// Every convolution path writes all of its output: a recycled buffer full of NaN must
    /// not change a single value.
    #[test]
    fn convolutions_overwrite_recycled_outputs() {
        let mut rng = tensor::rng(5);
        let cases = [
            (Conv2dConfig::new(16, 16, 1), [1, 16, 32, 32]), // 1x1 as a GEMM
            (Conv2dConfig::new(8, 32, 3).with_padding(1), [1, 8, 32, 32]), // blocked im2col
            (Conv2dConfig::new(4, 16, 3).with_stride(2), [2, 4, 67, 65]), // strided
            (Conv2dConfig::new(8, 16, 3).with_dilation(2), [1, 8, 36, 36]), // dilated
            (
                Conv2dConfig::new(16, 16, 3).with_padding(1).with_groups(16),
                [1, 16, 32, 32],
            ), // depthwise 3x3
            (
                Conv2dConfig::new(16, 16, 3)
                    .with_kernel(3, 1)
                    .with_padding2(1, 0)
                    .with_groups(16),
                [1, 16, 32, 32],
            ), // depthwise k x 1
            (
                Conv2dConfig::new(16, 16, 3)
                    .with_kernel(1, 3)
                    .with_padding2(0, 1)
                    .with_groups(16),
                [1, 16, 32, 32],
            ), // depthwise 1 x k
            (
                Conv2dConfig::new(8, 16, 3).with_padding(1).with_groups(4),
                [1, 8, 32, 32],
            ), // grouped
        ];
        for (cfg, shape) in cases {
            let conv = cfg.clone().init(&mut rng).unwrap();
            let x = tensor::uniform(&shape, -1.0, 1.0, &mut rng);
            POOL.with(|p| p.borrow_mut().clear());
            let want = conv.forward(&x).unwrap();
            assert!(want.len() >= MIN_LEN, "{cfg:?} too small to use the pool");
            recycle(want.mapv(|_| f32::NAN));
            let got = conv.forward(&x).unwrap();
            assert_eq!(
                POOL.with(|p| p.borrow().len()),
                0,
                "{cfg:?} took the buffer"
            );
            assert_eq!(got, want, "{cfg:?}");
        }
    }

    #[test]
    fn small_tensors_are_not_kept_and_the_pool_is_bounded() {
        POOL.with(|p| p.borrow_mut().clear());
        recycle(tensor::zeros(&[10]));
        recycle(tensor::zeros(&[MIN_LEN - 1]));
        assert_eq!(POOL.with(|p| p.borrow().len()), 0);
        for _ in 0..MAX_BUFFERS + 3 {
            recycle(tensor::zeros(&[MIN_LEN]));
        }
        assert_eq!(POOL.with(|p| p.borrow().len()), MAX_BUFFERS);
        // the smallest fitting allocation is handed out
        POOL.with(|p| p.borrow_mut().clear());
        recycle(tensor::zeros(&[4 * MIN_LEN]));
        let mid = tensor::zeros(&[2 * MIN_LEN]);
        let mid_ptr = mid.as_ptr();
        recycle(mid);
        let reused = output(MIN_LEN + 1);
        assert_eq!((reused.len(), reused.as_ptr()), (MIN_LEN + 1, mid_ptr));
        assert_eq!(output(4 * MIN_LEN).len(), 4 * MIN_LEN);
        assert_eq!(POOL.with(|p| p.borrow().len()), 0);
    }
}
