//! The activation a kernel applies in its epilogue, shared by the dense, sparse and int8 kernels.

/// An activation fused into a kernel's epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Activation {
    /// No activation.
    #[default]
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

impl Activation {
    /// The activation as a clamp to `[lo, hi]` (for kernels that apply it to whole registers
    /// with a max and a min).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn bounds(self) -> (f32, f32) {
        match self {
            Activation::Identity => (f32::NEG_INFINITY, f32::INFINITY),
            Activation::Relu => (0.0, f32::INFINITY),
            Activation::Relu6 => (0.0, 6.0),
        }
    }

    #[inline]
    pub(crate) fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Identity => v,
            Activation::Relu => v.max(0.0),
            Activation::Relu6 => v.clamp(0.0, 6.0),
        }
    }
}
