//! Run-time choice of the vector unit for the element-wise loops.
//!
//! The crate is compiled for the x86-64 baseline, so the compiler vectorises its loops for SSE2:
//! four lanes, where AVX-512 has sixteen. [`widest!`] compiles a loop body a second and third time
//! with AVX-512 and with AVX2 enabled and runs the widest one the CPU reports, so that one binary
//! is both fast on a new CPU and safe on an old one. (`multiversion`-style crates do the same
//! with a macro; this is the whole of it.)

/// `widest! { body }` evaluates `body` through [`run`], in a closure that is always inlined into
/// the variants: only code inlined into them gets their instructions, so the helpers `body`
/// calls are `#[inline(always)]` too.
macro_rules! widest {
    ($($body:tt)*) => {
        $crate::flex::simd::run(#[inline(always)] || { $($body)* })
    };
}
pub(crate) use widest;

/// Runs `body`, compiled for AVX-512 when the CPU has it, else for AVX2 with FMA, else for the
/// baseline.
#[inline(always)]
pub fn run<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has just reported AVX-512F.
            return unsafe { avx512(body) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has just reported AVX2 and FMA.
            return unsafe { avx2(body) };
        }
    }
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}
