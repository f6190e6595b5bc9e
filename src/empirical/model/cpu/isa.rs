//! Which vector instructions the fast kernels use ([`Simd`]), chosen at run time: AVX-512 where
//! the processor has it, AVX2 with FMA otherwise, plain scalar code on anything else; the
//! environment variable [`SIMD_ENV`] (`avx512`, `avx2` or `scalar`) picks one by hand.
//!
//! Every path does the same floating-point operations in the same order on every value, with a
//! fused multiply-add wherever the convolutions multiply and add (the scalar path through
//! [`f32::mul_add`], which rounds once like the vector instructions), so all paths give the same
//! bits; only their speed differs. [`Isa`] is the small set of vector operations the
//! convolution microkernels are written in, implemented once per path.

use std::fmt;
use std::str::FromStr;

/// The environment variable that overrides the detected instruction set.
pub const SIMD_ENV: &str = "GRANULARITY_SIMD";

/// The vector instructions of the fast CPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Simd {
    /// Plain Rust, no vector instructions assumed (slow; the reference for the others).
    Scalar,
    /// 256-bit AVX2 with FMA.
    Avx2,
    /// 512-bit AVX-512 (F, BW, VL) with FMA.
    Avx512,
}

impl Simd {
    /// Every path, slowest first.
    pub const ALL: [Simd; 3] = [Simd::Scalar, Simd::Avx2, Simd::Avx512];

    /// The name used in [`SIMD_ENV`] and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Scalar => "scalar",
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512",
        }
    }

    /// Whether this processor can run the path.
    pub fn supported(self) -> bool {
        match self {
            Simd::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => {
                Simd::Avx2.supported()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The paths this processor can run, slowest first.
    pub fn available() -> Vec<Simd> {
        Self::ALL.into_iter().filter(|s| s.supported()).collect()
    }

    /// The fastest path this processor can run.
    pub fn best() -> Simd {
        Self::ALL
            .into_iter()
            .rev()
            .find(|s| s.supported())
            .unwrap_or(Simd::Scalar)
    }

    /// [`SIMD_ENV`] when it is set, else [`Simd::best`]; an unknown name or a path this
    /// processor lacks is an error that says which.
    pub fn from_env() -> Result<Simd, SimdError> {
        Self::from_setting(std::env::var(SIMD_ENV).ok().as_deref())
    }

    /// The path for a value of [`SIMD_ENV`] (`None` or empty: [`Simd::best`]).
    pub fn from_setting(value: Option<&str>) -> Result<Simd, SimdError> {
        match value.map(str::trim) {
            Some(v) if !v.is_empty() => {
                let s: Simd = v.parse()?;
                s.check()?;
                Ok(s)
            }
            _ => Ok(Self::best()),
        }
    }

    /// `Ok` when this processor can run the path.
    pub fn check(self) -> Result<(), SimdError> {
        if self.supported() {
            Ok(())
        } else {
            Err(SimdError::Unsupported(self))
        }
    }
}

impl fmt::Display for Simd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Simd {
    type Err = SimdError;

    fn from_str(s: &str) -> Result<Self, SimdError> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| SimdError::Unknown(s.to_string()))
    }
}

/// A [`Simd`] path that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimdError {
    /// The name is none of `avx512`, `avx2`, `scalar`.
    #[error("{SIMD_ENV}={0:?}: expected avx512, avx2 or scalar")]
    Unknown(String),
    /// The processor lacks the instructions.
    #[error("{SIMD_ENV}: this processor cannot run the {0} path")]
    Unsupported(Simd),
}

/// The vector operations of the convolution microkernels: a vector of [`Isa::W`] `f32` lanes.
///
/// # Safety
/// The methods may only be called on a processor that has the instructions of the
/// implementation, and the pointers must be valid for [`Isa::W`] values.
pub(super) trait Isa: Copy {
    /// The vector.
    type V: Copy;
    /// Lanes per vector.
    const W: usize;
    /// All lanes 0.
    unsafe fn zero() -> Self::V;
    /// `W` values from `p`.
    unsafe fn load(p: *const f32) -> Self::V;
    /// Writes `W` values to `p`.
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `*p` in every lane.
    unsafe fn splat(p: *const f32) -> Self::V;
    /// `a * b + c`, rounded once.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// `a - b`.
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
}

/// The scalar path: lanes of 8 in an array, [`f32::mul_add`] per lane.
#[derive(Clone, Copy)]
pub(super) struct Scalar;

impl Isa for Scalar {
    type V = [f32; 8];
    const W: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> [f32; 8] {
        [0.0; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        // SAFETY: the caller guarantees 8 readable values.
        unsafe { p.cast::<[f32; 8]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        // SAFETY: the caller guarantees 8 writable values.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> [f32; 8] {
        // SAFETY: the caller guarantees a readable value.
        [unsafe { *p }; 8]
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|j| a[j].mul_add(b[j], c[j]))
    }
    #[inline(always)]
    unsafe fn add(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|j| a[j] + b[j])
    }
    #[inline(always)]
    unsafe fn sub(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|j| a[j] - b[j])
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Isa;
    use std::arch::x86_64::*;

    /// The AVX2 path: 8 lanes.
    #[derive(Clone, Copy)]
    pub(in super::super) struct Avx2;

    impl Isa for Avx2 {
        type V = __m256;
        const W: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            // SAFETY: the caller guarantees AVX2.
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees AVX2 and 8 readable values.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            // SAFETY: the caller guarantees AVX2 and 8 writable values.
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees AVX2 and a readable value.
            unsafe { _mm256_broadcast_ss(&*p) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            // SAFETY: the caller guarantees FMA.
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            // SAFETY: the caller guarantees AVX2.
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            // SAFETY: the caller guarantees AVX2.
            unsafe { _mm256_sub_ps(a, b) }
        }
    }

    /// The AVX-512 path: 16 lanes.
    #[derive(Clone, Copy)]
    pub(in super::super) struct Avx512;

    impl Isa for Avx512 {
        type V = __m512;
        const W: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F and 16 readable values.
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            // SAFETY: the caller guarantees AVX-512F and 16 writable values.
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F and a readable value.
            unsafe { _mm512_set1_ps(*p) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sub(a: __m512, b: __m512) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_sub_ps(a, b) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_best_is_supported() {
        for s in Simd::ALL {
            assert_eq!(s.name().parse::<Simd>().unwrap(), s);
            assert_eq!(s.to_string().to_uppercase().parse::<Simd>().unwrap(), s);
        }
        assert!(matches!("sse9".parse::<Simd>(), Err(SimdError::Unknown(_))));
        assert!(Simd::best().supported());
        assert!(Simd::available().contains(&Simd::Scalar));
        for s in Simd::ALL {
            assert_eq!(s.check().is_ok(), s.supported());
            let set = Simd::from_setting(Some(s.name()));
            assert_eq!(set.is_ok(), s.supported(), "{s}");
            if !s.supported() {
                let e = set.unwrap_err().to_string();
                assert!(
                    e.contains("GRANULARITY_SIMD") && e.contains(s.name()),
                    "{e}"
                );
            }
        }
        assert_eq!(Simd::from_setting(None), Ok(Simd::best()));
        assert_eq!(Simd::from_setting(Some(" ")), Ok(Simd::best()));
        assert_eq!(Simd::from_setting(Some(" scalar ")), Ok(Simd::Scalar));
        let e = Simd::from_setting(Some("avx9")).unwrap_err().to_string();
        assert!(
            e.contains("GRANULARITY_SIMD=\"avx9\"") && e.contains("avx512"),
            "{e}"
        );
    }
}
