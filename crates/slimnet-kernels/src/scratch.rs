//! Reusable thread-local scratch buffers, so kernels do not page-fault fresh allocations on
//! every call.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread-local buffer key.
pub(crate) type Key<T> = LocalKey<RefCell<Vec<T>>>;

thread_local! {
    pub(crate) static U8_A: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    pub(crate) static U8_B: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    pub(crate) static I32_A: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
    pub(crate) static I32_B: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
    pub(crate) static F32_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    pub(crate) static F32_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the buffer behind `key` (contents unspecified, length unspecified; callers
/// resize), or with a fresh one when the buffer is already in use on this thread.
pub(crate) fn with<T, R>(key: &'static Key<T>, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => f(&mut v),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Resizes `v` to `len` (new elements default) and returns it as a slice.
pub(crate) fn sized<T: Default + Clone>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::default());
    }
    &mut v[..len]
}
