//! An allocator that records the largest single allocation, for tests that check bad input
//! never makes a huge one. A test binary installs it with
//! `#[global_allocator] static A: CountingAlloc = CountingAlloc;` and reads
//! [`largest_allocation`] after [`reset_largest_allocation`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, recording the size of the largest allocation (or reallocation).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

// SAFETY: forwards to the system allocator, only recording sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` with `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LARGEST.fetch_max(n, Ordering::Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.realloc(p, l, n) }
    }
}

/// Forgets the allocations seen so far.
pub fn reset_largest_allocation() {
    LARGEST.store(0, Ordering::Relaxed);
}

/// The size in bytes of the largest allocation since the last reset (0 unless
/// [`CountingAlloc`] is the global allocator).
pub fn largest_allocation() -> usize {
    LARGEST.load(Ordering::Relaxed)
}
