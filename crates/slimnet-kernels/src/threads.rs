//! The number of threads kernels may use.
//!
//! The process-wide setting defaults to 1 so that results and timings are reproducible; raise
//! it with [`set_num_threads`] for faster training or inference. [`with`] sets it for one call
//! on one thread only (a timing, a stage trained beside others), restored when the call
//! returns or panics, without touching what other threads see.
//!
//! ```
//! use slimnet_kernels::threads;
//! threads::set_num_threads(2);
//! let inside = threads::with(1, threads::num_threads);
//! assert_eq!((inside, threads::num_threads()), (1, 2));
//! threads::set_num_threads(1);
//! ```

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static THREADS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static SCOPED: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Sets how many threads kernels may use (at least 1), for every thread without a [`with`]
/// setting of its own.
pub fn set_num_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// How many threads kernels called from this thread may use.
pub fn num_threads() -> usize {
    SCOPED
        .with(Cell::get)
        .unwrap_or_else(|| THREADS.load(Ordering::Relaxed))
}

/// Runs `f` with kernels called from this thread limited to `n` threads (at least 1); the
/// previous setting of this thread comes back when `f` returns or panics.
pub fn with<R>(n: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(SCOPED.with(|c| c.replace(Some(n.max(1)))));
    f()
}

/// Multiply-adds of f32 work below which a kernel call runs on the calling thread alone.
///
/// A parallel section wakes a pool thread that has gone to sleep; on a VM whose other vCPU is
/// idle that took 50-130 us (AMD EPYC, 2 vCPUs), the time of 2-5 M multiply-adds, and a
/// convolution may open several sections. Measured there with one and two threads: a 3x3
/// convolution of 1.8 M multiply-adds took 45 us on one thread and 175 us on two; one of
/// 29 M went from 365 to 263 us.
///
/// The crate's unit tests use 0, so that their small shapes run the parallel code too.
pub(crate) const MIN_PARALLEL_MACS: usize = if cfg!(test) { 0 } else { 8 << 20 };

/// [`MIN_PARALLEL_MACS`] for int8 kernels, which do four times the multiply-adds per
/// instruction.
pub(crate) const MIN_PARALLEL_MACS_INT8: usize = 4 * MIN_PARALLEL_MACS;

/// The thresholds for a batch of several images, which is split into groups of whole images:
/// one parallel section per call instead of several per image, so half the work pays for it.
pub(crate) const fn per_thread_macs(int8: bool, whole_images: bool) -> usize {
    let base = if int8 {
        MIN_PARALLEL_MACS_INT8
    } else {
        MIN_PARALLEL_MACS
    };
    if whole_images {
        base / 4
    } else {
        base
    }
}

/// The thread count that `work` multiply-adds pay for (one thread per `per_thread`) when it
/// is below [`num_threads`], else `None`.
pub(crate) fn fewer_for(work: usize, per_thread: usize) -> Option<usize> {
    let useful = (work / per_thread.max(1)).max(1);
    (useful < num_threads()).then_some(useful)
}

/// Runs `f` with at most as many threads as `work` multiply-adds pay for (see [`fewer_for`]).
pub(crate) fn for_work<R>(work: usize, per_thread: usize, f: impl FnOnce() -> R) -> R {
    match fewer_for(work, per_thread) {
        Some(n) => with(n, f),
        None => f(),
    }
}

/// Elements of light element-wise work (a load or two, an add or a compare, a store) that
/// pay for a thread of their own: about a tenth of a millisecond of work, the time it can take
/// to wake a pool thread (see [`MIN_PARALLEL_MACS`]).
const MIN_PARALLEL_ELEMENTS: usize = 1 << 18;

/// `0..len` cut into contiguous ranges of nearly equal length, one per thread that `elements`
/// of light element-wise work pay for (one per 2^18 elements, about a tenth of a millisecond;
/// at most [`num_threads`], at least one; none for `len == 0`), for [`run_parts`].
///
/// ```
/// use slimnet_kernels::threads;
/// threads::set_num_threads(2);
/// assert_eq!(threads::ranges(10, 1 << 20), vec![0..5, 5..10]);
/// assert_eq!(threads::ranges(10, 100), vec![0..10]);
/// threads::set_num_threads(1);
/// assert_eq!(threads::ranges(10, 1 << 20), vec![0..10]);
/// ```
pub fn ranges(len: usize, elements: usize) -> Vec<std::ops::Range<usize>> {
    let parts = (elements / MIN_PARALLEL_ELEMENTS)
        .clamp(1, num_threads())
        .min(len);
    (0..parts)
        .map(|k| len * k / parts..len * (k + 1) / parts)
        .collect()
}

/// The cached pool and the thread count it was built for.
type PoolSlot = std::sync::Mutex<Option<(usize, std::sync::Arc<rayon::ThreadPool>)>>;

/// The rayon pool for `n` threads (`n` > 1), built on first use and rebuilt when the setting
/// changes.
fn pool(n: usize) -> std::sync::Arc<rayon::ThreadPool> {
    static POOL: OnceLock<PoolSlot> = OnceLock::new();
    let cell = POOL.get_or_init(|| std::sync::Mutex::new(None));
    let mut guard = cell.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some((k, p)) if *k == n => p.clone(),
        _ => {
            let p = std::sync::Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .expect("building a rayon pool"),
            );
            *guard = Some((n, p.clone()));
            p
        }
    }
}

/// Runs `f` inside a rayon pool sized to [`num_threads`] (directly when that is 1).
pub(crate) fn with_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let n = num_threads();
    if n == 1 {
        return f();
    }
    pool(n).install(f)
}

/// Runs `f` on each of `parts`, one part per thread of [`num_threads`] (parts beyond that wait
/// their turn): the first part on the calling thread, the others on the pool's workers.
///
/// For short parallel sections (a tenth of a millisecond) this beats [`with_pool`]: the
/// calling thread works instead of handing the whole job to the pool and sleeping until a
/// worker wakes it, so only one worker has to wake up. With [`ranges`], for work outside the
/// kernels (element-wise layers, optimizer updates) that splits into independent parts:
///
/// ```
/// use slimnet_kernels::threads;
/// let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
/// let mut y = vec![0.0f32; 1000];
/// threads::set_num_threads(2);
/// // one part per thread that a million elements pay for (here both)
/// let ranges = threads::ranges(x.len(), 1 << 20);
/// let mut parts = Vec::new();
/// let mut rest = &mut y[..];
/// for r in ranges {
///     let (part, tail) = rest.split_at_mut(r.len());
///     parts.push((r, part));
///     rest = tail;
/// }
/// threads::run_parts(parts, |(r, part)| {
///     for (o, &v) in part.iter_mut().zip(&x[r]) {
///         *o = 2.0 * v;
///     }
/// });
/// threads::set_num_threads(1);
/// assert_eq!(y[999], 1998.0);
/// ```
pub fn run_parts<T: Send>(parts: Vec<T>, f: impl Fn(T) + Sync) {
    let n = num_threads();
    if n == 1 || parts.len() <= 1 {
        parts.into_iter().for_each(f);
        return;
    }
    let f = &f;
    pool(n).in_place_scope(|s| {
        let mut parts = parts.into_iter();
        let first = parts.next();
        for p in parts {
            s.spawn(move |_| f(p));
        }
        if let Some(p) = first {
            f(p);
        }
    });
}

/// A raw pointer to an output buffer that parallel tasks write through, each to its own
/// disjoint part, while the owning `&mut` slice stays borrowed for the whole parallel section
/// (each user states which parts in its `SAFETY` comment).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: tasks only write disjoint parts of the buffer (see the users), and the buffer
// outlives the parallel section that holds the pointer.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}
