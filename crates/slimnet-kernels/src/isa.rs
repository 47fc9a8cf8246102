//! Run-time instruction-set detection.
//!
//! Kernels come in a portable scalar version and x86-64 variants. The best variant the CPU
//! supports is detected once (with `is_x86_feature_detected!`) and cached; callers and tests may
//! also ask for a specific variant, which falls back to scalar when the CPU lacks it.
//!
//! The environment variable `SLIMNET_ISA` caps the level (`scalar`, `avx2`, `avx512`, `vnni`,
//! `amx`; see [`level_name`]), so every level's kernels can be tested and timed on one machine.
//!
//! AMX (the tile unit of Intel Xeon processors since Sapphire Rapids) needs more than a CPUID
//! bit: the OS must enable the tile state, and Linux hands it to a process only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), which detection makes once.

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
    /// x86-64 AMX tiles with int8 products (AMX-TILE and AMX-INT8, with AVX-512 VNNI and the
    /// OS's permission to use the tile state); only the int8 kernels have a variant for it.
    Amx,
}

/// CPU features the kernels care about, detected once.
#[derive(Debug, Clone, Copy, Default)]
#[allow(dead_code)] // the VNNI and VBMI flags are read by the int8 kernels
pub(crate) struct Features {
    pub avx2_fma: bool,
    pub avx512: bool,
    pub avx512_vnni: bool,
    pub avx512_vbmi: bool,
    pub avx_vnni: bool,
    pub amx_int8: bool,
    /// Vector gathers beat scalar loads for reads that hit in cache: Intel cores (measured on
    /// a Xeon with AMX: 90% sparse 4096x4096 at batch 1, 0.54-0.85 ms with 16-wide gathers
    /// against 0.89-1.39 ms with scalar picks), not AMD Zen (the other way round, see
    /// `sparse::x86::csr_dot_pick`). Not an ISA level: `SLIMNET_ISA` leaves it alone.
    pub fast_gathers: bool,
}

pub(crate) fn features() -> &'static Features {
    static F: OnceLock<Features> = OnceLock::new();
    F.get_or_init(|| cap(hardware(), std::env::var("SLIMNET_ISA").ok().as_deref()))
}

/// What the CPU and OS offer.
fn hardware() -> Features {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2_fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 = avx2_fma
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl");
        let avx512_vnni = avx512 && is_x86_feature_detected!("avx512vnni");
        Features {
            avx2_fma,
            avx512,
            avx512_vnni,
            avx512_vbmi: avx512 && is_x86_feature_detected!("avx512vbmi"),
            avx_vnni: avx2_fma && is_x86_feature_detected!("avxvnni"),
            amx_int8: avx512_vnni && amx_int8_usable(),
            fast_gathers: vendor_is_intel(),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Features::default()
    }
}

/// The levels `SLIMNET_ISA` accepts, lowest first.
pub const LEVELS: [&str; 5] = ["scalar", "avx2", "avx512", "vnni", "amx"];

/// `f` limited to the level named by `SLIMNET_ISA` (`scalar`, `avx2`, `avx512` — AVX-512
/// without VNNI —, `vnni` — AVX-512 with VNNI, without AMX —, or `amx`); a level the CPU does
/// not have caps nothing above what it has. An unknown name is reported once on standard
/// error and ignored.
fn cap(mut f: Features, level: Option<&str>) -> Features {
    let Some(level) = level.filter(|l| !l.is_empty()) else {
        return f;
    };
    let Some(rank) = LEVELS.iter().position(|l| l.eq_ignore_ascii_case(level)) else {
        eprintln!(
            "slimnet: SLIMNET_ISA={level} is not one of {}; using every level the CPU has",
            LEVELS.join(", ")
        );
        return f;
    };
    if rank < 4 {
        f.amx_int8 = false;
    }
    if rank < 3 {
        f.avx512_vnni = false;
        f.avx512_vbmi = false;
    }
    if rank < 2 {
        f.avx512 = false;
    }
    if rank < 1 {
        f.avx2_fma = false;
        f.avx_vnni = false;
    }
    f
}

/// The level kernels run at: the best the CPU has, capped by `SLIMNET_ISA` (one of
/// [`LEVELS`]), e.g. `SLIMNET_ISA=avx2 cargo bench` measures the AVX2 kernels on an AVX-512
/// machine.
pub fn level_name() -> &'static str {
    let f = features();
    if f.amx_int8 {
        "amx"
    } else if f.avx512_vnni {
        "vnni"
    } else if f.avx512 {
        "avx512"
    } else if f.avx2_fma {
        "avx2"
    } else {
        "scalar"
    }
}

/// Whether CPUID names the vendor `GenuineIntel`.
#[cfg(target_arch = "x86_64")]
fn vendor_is_intel() -> bool {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID leaf 0 exists on every x86-64 CPU.
    let r = unsafe { std::arch::x86_64::__cpuid(0) };
    (r.ebx, r.edx, r.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e) // "Genu" "ineI" "ntel"
}

/// Whether the CPU has AMX-TILE and AMX-INT8, the OS saves the tile state, and (on Linux) this
/// process may use it. Called once, from [`features`].
#[cfg(target_arch = "x86_64")]
fn amx_int8_usable() -> bool {
    use std::arch::x86_64::__cpuid_count;
    // CPUID leaf 7: EDX bit 24 is AMX-TILE, bit 25 AMX-INT8; leaf 1: ECX bit 27 is OSXSAVE
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU.
    let (l7, l1) = unsafe { (__cpuid_count(7, 0), __cpuid_count(1, 0)) };
    if (l7.edx >> 24) & 3 != 3 || (l1.ecx >> 27) & 1 != 1 {
        return false;
    }
    let xcr0: u32;
    // SAFETY: OSXSAVE is set, so XGETBV is enabled; it reads XCR0 and touches no memory.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") xcr0, out("edx") _,
            options(nomem, nostack, preserves_flags));
    }
    // bits 17 and 18: the OS saves the tile configuration and the tile data
    if (xcr0 >> 17) & 3 != 3 {
        return false;
    }
    request_tile_permission()
}

/// Asks Linux for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`);
/// without it the first tile instruction kills the process.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: the arch_prctl system call with these arguments only changes which register
    // state the kernel lets this process use; the syscall instruction clobbers rcx and r11.
    unsafe {
        std::arch::asm!("syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _, lateout("r11") _,
            options(nostack));
    }
    ret == 0
}

/// Other systems: no known way to ask, so AMX stays off.
#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_permission() -> bool {
    false
}

/// Bytes of data a kernel may expect to find in cache again on its next call: half the
/// last-level cache that Linux reports for CPU 0 (`/sys/devices/system/cpu/cpu0/cache`), or
/// 16 MiB where it reports none. Read once.
///
/// Some kernels have one variant that is faster while their operand stays in cache and another
/// that is faster once it streams from memory (see `sparse::x86::csr_dot_pick`).
pub(crate) fn cache_resident_bytes() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| last_level_cache().map_or(16 << 20, |b| b / 2))
}

/// The size of the largest cache of CPU 0 that Linux lists, in bytes.
fn last_level_cache() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|e| {
        let size = std::fs::read_to_string(e.ok()?.path().join("size")).ok()?;
        let size = size.trim();
        let (digits, unit) = size.split_at(
            size.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(size.len()),
        );
        let n: usize = digits.parse().ok()?;
        Some(match unit {
            "K" => n << 10,
            "M" => n << 20,
            "G" => n << 30,
            _ => n,
        })
    })
    .max()
}

impl Isa {
    /// The best level this CPU supports (detected once, then cached).
    pub fn detected() -> Isa {
        let f = features();
        if f.amx_int8 {
            Isa::Amx
        } else if f.avx512 {
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
        [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx]
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
    fn slimnet_isa_caps_the_features() {
        let all = Features {
            avx2_fma: true,
            avx512: true,
            avx512_vnni: true,
            avx512_vbmi: true,
            avx_vnni: true,
            amx_int8: true,
            fast_gathers: true,
        };
        let c = cap(all, Some("avx2"));
        assert!(c.avx2_fma && !c.avx512 && !c.avx512_vnni && !c.amx_int8);
        assert!(cap(all, Some("scalar")).fast_gathers, "not a level");
        let c = cap(all, Some("VNNI"));
        assert!(c.avx512 && c.avx512_vnni && !c.amx_int8);
        let c = cap(all, Some("avx512"));
        assert!(c.avx512 && !c.avx512_vnni && !c.avx512_vbmi);
        let c = cap(all, Some("scalar"));
        assert!(!c.avx2_fma && !c.avx512 && !c.avx_vnni);
        // a cap above what the CPU has adds nothing; an unknown name changes nothing
        let none = Features::default();
        assert!(!cap(none, Some("amx")).avx2_fma);
        assert!(cap(all, Some("sse9")).amx_int8);
    }

    #[test]
    fn scalar_always_supported_and_ordering() {
        assert!(Isa::Scalar.is_supported());
        assert_eq!(Isa::Amx.or_supported(), Isa::detected());
        assert_eq!(Isa::all_supported()[0], Isa::Scalar);
        assert_eq!(Isa::all_supported().last(), Some(&Isa::detected()));
        // the level follows the detected features: AMX only with AVX-512 VNNI and the tile
        // state granted, AVX-512 only with AVX2 and FMA
        let f = features();
        assert_eq!(Isa::Amx.is_supported(), f.amx_int8);
        assert!(!f.amx_int8 || f.avx512_vnni);
        assert_eq!(Isa::Avx512.is_supported(), f.avx512);
        assert!(!f.avx512 || f.avx2_fma);
    }
}
