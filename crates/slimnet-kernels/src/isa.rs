//! Run-time instruction-set detection.
//!
//! Kernels come in a portable scalar version and x86-64 variants. The best variant the CPU
//! supports is detected once (with `is_x86_feature_detected!`) and cached; callers and tests may
//! also ask for a specific variant, which falls back to scalar when the CPU lacks it.

use std::sync::OnceLock;

/// An instruction-set level a kernel variant is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// Portable Rust, the reference every other variant is tested against.
    Scalar,
    /// x86-64 AVX2 with FMA.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL (implies AVX2 and FMA).
    Avx512,
}

/// CPU features the kernels care about, detected once.
#[derive(Debug, Clone, Copy, Default)]
#[allow(dead_code)] // the VNNI flags are read by the int8 kernels
pub(crate) struct Features {
    pub avx2_fma: bool,
    pub avx512: bool,
    pub avx512_vnni: bool,
    pub avx_vnni: bool,
}

pub(crate) fn features() -> &'static Features {
    static F: OnceLock<Features> = OnceLock::new();
    F.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2_fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            let avx512 = avx2_fma
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl");
            Features {
                avx2_fma,
                avx512,
                avx512_vnni: avx512 && is_x86_feature_detected!("avx512vnni"),
                avx_vnni: avx2_fma && is_x86_feature_detected!("avxvnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Features::default()
        }
    })
}

impl Isa {
    /// The best level this CPU supports (detected once, then cached).
    pub fn detected() -> Isa {
        let f = features();
        if f.avx512 {
            Isa::Avx512
        } else if f.avx2_fma {
            Isa::Avx2
        } else {
            Isa::Scalar
        }
    }

    /// Whether this CPU can run kernels written for `self`.
    pub fn is_supported(self) -> bool {
        self <= Isa::detected()
    }

    /// `self` if supported, otherwise the best supported level below it.
    pub fn or_supported(self) -> Isa {
        self.min(Isa::detected())
    }

    /// All levels this CPU supports, scalar first (handy for testing every variant).
    pub fn all_supported() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.is_supported())
            .collect()
    }
}

/// Defines a function whose body is compiled three times — for AVX-512, for AVX2 and
/// for the baseline — and picks the widest the CPU supports at run time.
macro_rules! vectorized {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) -> Result<()> {
            #[inline(always)]
            fn body($($arg: $ty),*) -> Result<()> $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw")]
                unsafe fn wide($($arg: $ty),*) -> Result<()> {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> Result<()> {
                    body($($arg),*)
                }
                let f = crate::isa::features();
                if f.avx512 {
                    // SAFETY: AVX-512 F/BW were detected at run time.
                    return unsafe { wide($($arg),*) };
                }
                if f.avx2_fma {
                    // SAFETY: AVX2 and FMA were detected at run time.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use vectorized;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_always_supported_and_ordering() {
        assert!(Isa::Scalar.is_supported());
        assert_eq!(Isa::Avx512.or_supported(), Isa::detected());
        assert_eq!(Isa::all_supported()[0], Isa::Scalar);
    }
}
