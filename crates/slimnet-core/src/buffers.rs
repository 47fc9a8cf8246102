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
//!
//! The element-wise helpers ([`map`], [`map2`], [`map_planes`]) also split large tensors across
//! the kernel threads; [`for_parts`] and [`cut`] do that for other layers' element-wise work.

use std::cell::RefCell;

use ndarray::{s, Array1, IxDyn};

use slimnet_kernels::threads;

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

/// Floats in a 64-byte cache line.
const LINE: usize = 16;

/// A tensor of `shape` for a layer output that its kernel overwrites completely: a recycled
/// allocation when one of this thread's is large enough (the smallest such; its contents are
/// stale values, not zeros), otherwise a new zeroed one. Either way its first value starts a
/// 64-byte cache line (the tensor may begin a few values into its allocation), so the
/// kernels' full-vector accesses to rows of 16 values never straddle two lines.
///
/// ```
/// use slimnet_core::{buffers, tensor};
/// let t = tensor::zeros(&[1, 64, 32, 32]); // 65,536 values: worth keeping
/// let ptr = t.as_ptr();
/// buffers::recycle(t);
/// let v = buffers::output(&[1, 50_000]);
/// assert_eq!(v.shape(), &[1, 50_000]);
/// assert_eq!(v.as_ptr() as usize % 64, 0);
/// assert!(v.as_ptr() >= ptr && v.as_ptr() < ptr.wrapping_add(16)); // the same allocation
/// ```
pub fn output(shape: &[usize]) -> Tensor {
    let len: usize = shape.iter().product();
    let reused = (len >= MIN_LEN)
        .then(|| {
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                let best = p
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.capacity() >= len + LINE)
                    .min_by_key(|(_, v)| v.capacity())
                    .map(|(i, _)| i)?;
                Some(p.swap_remove(best))
            })
        })
        .flatten();
    let v = match reused {
        Some(mut v) => {
            v.truncate(len + LINE);
            v.resize(len + LINE, 0.0);
            v
        }
        None => vec![0.0; len + LINE],
    };
    let off = v.as_ptr().align_offset(LINE * 4).min(LINE);
    Array1::from_vec(v)
        .slice_move(s![off..off + len])
        .into_shape_with_order(IxDyn(shape))
        .expect("a contiguous run of the shape's length")
}

/// `f` applied to every value of `x`, into an [`output`] buffer (the element-wise layers'
/// inference: a fresh allocation per layer costs page faults at every pass on large images).
/// Large tensors are split across the kernel threads (see [`cut`]).
///
/// ```
/// use slimnet_core::{buffers, tensor};
/// let x = tensor::from_vec(&[1, 3], vec![-1.0, 0.5, 2.0])?;
/// let y = buffers::map(&x, |v| v.max(0.0));
/// assert_eq!(y.as_slice().unwrap(), &[0.0, 0.5, 2.0]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
pub fn map(x: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
    let mut y = output(x.shape());
    let xs = crate::tensor::contiguous(x);
    let ys = y.as_slice_mut().expect("an output buffer is contiguous");
    let n = ys.len();
    for_parts(ys, 1, n, |r, dst| {
        dst.iter_mut().zip(&xs[r]).for_each(|(d, &v)| *d = f(v))
    });
    y
}

/// `f` applied to the values of `a` and `b` pairwise, into an [`output`] buffer.
///
/// # Panics
/// When `a` and `b` differ in shape.
pub fn map2(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Tensor {
    assert_eq!(a.shape(), b.shape(), "map2 of two shapes");
    let mut y = output(a.shape());
    let (xa, xb) = (crate::tensor::contiguous(a), crate::tensor::contiguous(b));
    let ys = y.as_slice_mut().expect("an output buffer is contiguous");
    let n = ys.len();
    for_parts(ys, 1, n, |r, dst| {
        for ((d, &x), &y) in dst.iter_mut().zip(&xa[r.clone()]).zip(&xb[r]) {
            *d = f(x, y);
        }
    });
    y
}

/// An [`output`] buffer of `x`'s shape written plane by plane: `f(i, src, dst)` for the `i`-th
/// run of `plane` consecutive values of `x` (in standard order) and the same run of the output,
/// which `f` must write completely. Large tensors are split across the kernel threads by whole
/// planes (see [`cut`]).
///
/// # Panics
/// When `plane` is 0 or does not divide `x.len()`.
pub fn map_planes(
    x: &Tensor,
    plane: usize,
    f: impl Fn(usize, &[f32], &mut [f32]) + Sync,
) -> Tensor {
    assert!(
        plane > 0 && x.len().is_multiple_of(plane),
        "planes of {plane} in {}",
        x.len()
    );
    let mut y = output(x.shape());
    let xs = crate::tensor::contiguous(x);
    let ys = y.as_slice_mut().expect("an output buffer is contiguous");
    let n = ys.len();
    for_parts(ys, plane, n, |r, dst| {
        for (i, d) in r.zip(dst.chunks_exact_mut(plane)) {
            f(i, &xs[i * plane..(i + 1) * plane], d);
        }
    });
    y
}

/// Runs `f(runs, part)` on the kernel threads for each part of `data` that [`cut`] makes of
/// its runs of `unit` values, for `elements` of light work (see [`threads::ranges`]).
///
/// ```
/// use slimnet_core::buffers;
/// let mut v = vec![0usize; 6];
/// buffers::for_parts(&mut v, 3, 6, |runs, part| {
///     for (run, values) in runs.zip(part.chunks_mut(3)) {
///         values.fill(run);
///     }
/// });
/// assert_eq!(v, [0, 0, 0, 1, 1, 1]);
/// ```
pub fn for_parts<T: Send>(
    data: &mut [T],
    unit: usize,
    elements: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [T]) + Sync,
) {
    let ranges = threads::ranges(data.len() / unit.max(1), elements);
    let parts: Vec<_> = ranges
        .iter()
        .cloned()
        .zip(cut(data, unit, &ranges))
        .collect();
    threads::run_parts(parts, |(r, part)| f(r, part));
}

/// `data` cut into consecutive parts, part `k` holding the runs `ranges[k]` of `unit` values
/// each: the ranges come from [`threads::ranges`] over `data.len() / unit` runs, and the parts
/// go to [`threads::run_parts`], so that each kernel thread writes its own part. Large
/// element-wise work (training batches) then uses every thread; small work (an image at
/// inference) stays on the calling thread.
///
/// ```
/// use slimnet_core::buffers;
/// let mut v = vec![0u8; 10];
/// let parts = buffers::cut(&mut v, 2, &[0..2, 2..5]);
/// assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [4, 6]);
/// ```
///
/// # Panics
/// When the ranges do not follow each other from 0 or reach past `data`.
pub fn cut<'a, T>(
    data: &'a mut [T],
    unit: usize,
    ranges: &[std::ops::Range<usize>],
) -> Vec<&'a mut [T]> {
    let mut rest = data;
    let mut next = 0;
    let mut parts = Vec::with_capacity(ranges.len());
    for r in ranges {
        assert_eq!(r.start, next, "ranges that follow each other");
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(r.len() * unit);
        parts.push(part);
        rest = tail;
        next = r.end;
    }
    parts
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
            // (a copy of the output keeps its allocation's slack, which `output` asks for)
            let mut stale = want.clone();
            stale.fill(f32::NAN);
            recycle(stale);
            let got = conv.forward(&x).unwrap();
            assert_eq!(
                POOL.with(|p| p.borrow().len()),
                0,
                "{cfg:?} took the buffer"
            );
            assert_eq!(got, want, "{cfg:?}");
        }
    }

    /// The element-wise layers write every value of the buffer they take, and compute what
    /// they computed before they took buffers (checked against a fresh allocation: the pool
    /// emptied, each output equals the output computed on a buffer full of NaN).
    #[test]
    fn element_wise_layers_overwrite_recycled_outputs() {
        use crate::layers::{
            Activation, BatchNormConfig, CoordMode, InstanceNormConfig, NearestMode, Pad, PadMode,
            Resize2d, ResizeMode, ResizeTarget,
        };
        let mut rng = tensor::rng(6);
        let up = |mode| {
            Resize2d::new(
                mode,
                CoordMode::Asymmetric,
                ResizeTarget::Scales([2.0, 2.0]),
            )
        };
        let layers: Vec<(Box<dyn Layer>, [usize; 4])> = vec![
            (Box::new(Activation::relu()), [1, 16, 33, 32]),
            (Box::new(Activation::sigmoid()), [1, 16, 33, 32]),
            (
                Box::new(BatchNormConfig::new(16).init().unwrap()),
                [2, 16, 32, 17],
            ),
            (
                Box::new(InstanceNormConfig::new(16).init().unwrap()),
                [2, 16, 32, 17],
            ),
            (
                Box::new(Pad::spatial([4, 3, 2, 5], PadMode::Reflect).unwrap()),
                [1, 16, 40, 33],
            ),
            (
                Box::new(
                    Pad::new(
                        vec![(0, 0), (1, -2), (-3, 2), (2, -1)],
                        PadMode::Constant(0.5),
                    )
                    .unwrap(),
                ),
                [1, 16, 40, 33],
            ),
            (
                Box::new(Pad::spatial([1, 1, 1, 1], PadMode::Edge).unwrap()),
                [1, 16, 40, 33],
            ),
            (
                Box::new(up(ResizeMode::Nearest(NearestMode::Floor)).unwrap()),
                [1, 16, 20, 17],
            ),
            (Box::new(up(ResizeMode::Linear).unwrap()), [1, 16, 20, 17]),
        ];
        for (layer, shape) in layers {
            let x = tensor::uniform(&shape, -1.0, 1.0, &mut rng);
            POOL.with(|p| p.borrow_mut().clear());
            let want = layer.forward(&x).unwrap();
            assert!(want.len() >= MIN_LEN, "{layer:?} too small to use the pool");
            let mut stale = want.clone();
            stale.fill(f32::NAN);
            recycle(stale);
            let got = layer.forward(&x).unwrap();
            assert_eq!(
                POOL.with(|p| p.borrow().len()),
                0,
                "{layer:?} took the buffer"
            );
            assert_eq!(got, want, "{layer:?}");
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
        let reused = output(&[MIN_LEN + 1]);
        // the same allocation, a few values in so that it starts on a cache line
        let skip = (reused.as_ptr() as usize - mid_ptr as usize) / 4;
        assert!(skip < 16, "{skip}");
        assert_eq!(reused.as_ptr() as usize % 64, 0);
        assert_eq!(reused.len(), MIN_LEN + 1);
        assert_eq!(output(&[2, 2 * MIN_LEN - 8]).len(), 4 * MIN_LEN - 16);
        assert_eq!(POOL.with(|p| p.borrow().len()), 0);
        // an allocation without room to align is not handed out
        recycle(tensor::zeros(&[MIN_LEN]));
        assert_eq!(output(&[MIN_LEN]).as_ptr() as usize % 64, 0);
        assert_eq!(POOL.with(|p| p.borrow().len()), 1);
        POOL.with(|p| p.borrow_mut().clear());
        // a recycled tensor that began inside its allocation is kept whole
        recycle(output(&[MIN_LEN * 2]));
        assert!(POOL.with(|p| p.borrow()[0].capacity()) >= MIN_LEN * 2 + 16);
    }
}
