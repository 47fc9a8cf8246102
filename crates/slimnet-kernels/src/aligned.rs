//! f32 buffers that start on a cache line, so that full-vector loads and stores of their
//! 16-value rows never straddle two lines (a heap `Vec` of this size starts 16 bytes past a
//! page boundary, so every zmm access would).

#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use std::ops::{Deref, DerefMut};

/// Floats per 64-byte cache line.
const LINE: usize = 16;

/// A zero-initialised `[f32]` of fixed length whose first element is 64-byte aligned.
#[derive(Default)]
pub(crate) struct AlignedF32 {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl AlignedF32 {
    /// `len` zeros.
    pub(crate) fn zeroed(len: usize) -> Self {
        let buf = vec![0f32; len + LINE - 1];
        let off = buf.as_ptr().align_offset(LINE * 4).min(LINE - 1);
        Self { buf, off, len }
    }
}

impl Deref for AlignedF32 {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.off..self.off + self.len]
    }
}

impl DerefMut for AlignedF32 {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

impl Clone for AlignedF32 {
    fn clone(&self) -> Self {
        // a new allocation may sit differently against the line, so the offset is redone
        let mut c = Self::zeroed(self.len);
        c.copy_from_slice(self);
        c
    }
}

impl std::fmt::Debug for AlignedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_keeps_its_length() {
        for len in [0, 1, 15, 16, 17, 1000, 100_000] {
            let mut a = AlignedF32::zeroed(len);
            assert_eq!(a.len(), len);
            assert!(a.iter().all(|v| *v == 0.0));
            if len > 0 {
                assert_eq!(a.as_ptr() as usize % 64, 0, "len {len}");
                a[len - 1] = 3.0;
                let b = a.clone();
                assert_eq!(b.as_ptr() as usize % 64, 0);
                assert_eq!(&*b, &*a);
            }
        }
    }
}
