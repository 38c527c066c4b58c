//! Compiling a hot loop for the widest vector unit the CPU has, chosen at run time.
//!
//! The engine is built for baseline x86-64 (SSE2, 4 floats per instruction) so that one binary
//! runs everywhere; the element-wise kernels (GELU, LayerNorm, softmax) run 2-4x faster with
//! AVX2 or AVX-512. [`multiversion!`] compiles a function's body three times and calls the one
//! for the active level ([`super::isa::Isa::active`]: the CPU's widest, unless capped).
//! Inside the body, `FMA` says whether the level multiplies and adds in one rounding (AVX2+FMA,
//! AVX-512, ARM) or two (baseline x86-64): kernels pass it on to `fastmath::madd`. Levels with
//! the same `FMA` give bit-identical results: the same IEEE operations in the same order per
//! element, only more elements at once (Rust never fuses a multiply and an add on its own).
//! Between the two kinds, results differ in the last bits (an FMA is the more exact).

/// `multiversion! { fn name(args) { body } }` (optionally `pub`, with a return type) defines
/// `name` running `body` compiled for AVX-512, AVX2 or the baseline, with `FMA` in scope.
/// Helpers the body calls must be `#[inline(always)]` to be compiled with it.
#[macro_export]
#[doc(hidden)]
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    #[allow(dead_code)]
                    const FMA: bool = true;
                    $body
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn mid($($arg: $ty),*) $(-> $ret)? {
                    #[allow(dead_code)]
                    const FMA: bool = true;
                    $body
                }
                match $crate::ops::isa::Isa::active() {
                    // SAFETY: the active level never exceeds what the CPU has
                    $crate::ops::isa::Isa::Avx512 => return unsafe { wide($($arg),*) },
                    $crate::ops::isa::Isa::Avx2 => return unsafe { mid($($arg),*) },
                    $crate::ops::isa::Isa::Baseline => {}
                }
            }
            #[allow(dead_code)]
            const FMA: bool = $crate::ops::isa::BASELINE_FMA;
            $body
        }
    };
}
