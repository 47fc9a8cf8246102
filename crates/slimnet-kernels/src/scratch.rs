//! Reusable thread-local scratch buffers, so kernels do not page-fault fresh allocations on
//! every call.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread-local buffer key.
pub(crate) type Key<T> = LocalKey<RefCell<Vec<T>>>;

thread_local! {
    pub(crate) static U8_A: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    pub(crate) static U8_B: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    pub(crate) static U8_C: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    pub(crate) static U8_D: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    pub(crate) static I16_A: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
    pub(crate) static I32_A: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
    pub(crate) static I32_B: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
    pub(crate) static F32_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    pub(crate) static F32_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    pub(crate) static F32_C: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the buffer behind `key` (contents unspecified, length unspecified; callers
/// resize), or with a fresh one when the buffer is already in use on this thread.
pub(crate) fn with<T, R>(key: &'static Key<T>, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => f(&mut v),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Runs `f` with `len` f32 values of this thread's spare buffer (or of a fresh one when it is
/// in use), starting on a cache line; contents unspecified.
pub(crate) fn with_f32<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with(&F32_C, |v| f(sized_aligned(v, len)))
}

/// Resizes `v` to `len` (new elements default) and returns it as a slice.
pub(crate) fn sized<T: Default + Clone>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::default());
    }
    &mut v[..len]
}

/// Like [`sized`], but the slice starts on a 64-byte boundary (somewhere in the first 64
/// bytes of `v`), so full-vector accesses to 64-byte rows do not straddle two cache lines
/// (a large heap block starts 16 bytes past one).
pub(crate) fn sized_aligned<T: Default + Clone>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    let slack = 64 / std::mem::size_of::<T>().max(1);
    sized(v, len + slack);
    let off = v.as_ptr().align_offset(64).min(slack);
    &mut v[off..off + len]
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligned_slices_start_on_a_line() {
        let mut v: Vec<f32> = Vec::new();
        for len in [1, 100, 5000, 300_000, 7] {
            let s = super::sized_aligned(&mut v, len);
            assert_eq!(s.len(), len);
            assert_eq!(s.as_ptr() as usize % 64, 0);
        }
        let mut b: Vec<u8> = Vec::new();
        assert_eq!(super::sized_aligned(&mut b, 33).as_ptr() as usize % 64, 0);
    }
}
