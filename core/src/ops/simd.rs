//! Compiling a hot loop for the widest vector unit the CPU has, chosen at run time.
//!
//! The engine is built for baseline x86-64 (SSE2, 4 floats per instruction) so that one binary
//! runs everywhere; the element-wise kernels (GELU, LayerNorm, softmax) run 2-4x faster with
//! AVX2 or AVX-512. [`multiversion!`] compiles a function's body three times and calls the one
//! for the active level ([`super::isa::Isa::active`]: the CPU's widest, unless capped).
//! Results are bit-identical across the three: the same IEEE operations in the same order per
//! element, only more elements at once (Rust never fuses a multiply and an add on its own).

/// `multiversion! { fn name(args) { body } }` (optionally `pub`, with a return type) defines
/// `name` running `body` compiled for AVX-512, AVX2 or the baseline. Helpers the body calls
/// must be `#[inline(always)]` to be compiled with it.
#[macro_export]
#[doc(hidden)]
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? $body
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn mid($($arg: $ty),*) $(-> $ret)? $body
                match $crate::ops::isa::Isa::active() {
                    // SAFETY: the active level never exceeds what the CPU has
                    $crate::ops::isa::Isa::Avx512 => return unsafe { wide($($arg),*) },
                    $crate::ops::isa::Isa::Avx2 => return unsafe { mid($($arg),*) },
                    $crate::ops::isa::Isa::Baseline => {}
                }
            }
            $body
        }
    };
}
