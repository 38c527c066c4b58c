//! The `gemm` crate's f32 kernels for one instruction-set level, chosen by us rather than by
//! the crate (which always takes the CPU's widest): what lets `INCUBATOR_ISA` cap matrix
//! products too. The body is the crate's own dispatch (`gemm_common::gemm_def!`), with the
//! level as an argument.

use super::isa::Isa;
use gemm_common::gemm::gemm_basic_generic;
use gemm_common::simd::MixedSimd;
use gemm_common::Parallelism;

/// `dst = alpha dst + beta lhs rhs` (alpha 0 unless `read_dst`), strides in elements, as the
/// crate takes them once it has put the destination's unit stride on its columns.
pub struct Product {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub dst: *mut f32,
    pub dst_cs: isize,
    pub dst_rs: isize,
    pub read_dst: bool,
    pub lhs: *const f32,
    pub lhs_cs: isize,
    pub lhs_rs: isize,
    pub rhs: *const f32,
    pub rhs_cs: isize,
    pub rhs_rs: isize,
    pub beta: f32,
}

/// Runs `p` with the kernels of `isa`, or of the next lower level the CPU has.
///
/// # Safety
/// The pointers and strides must describe valid matrices; `dst` must not overlap the inputs
/// and nothing else may access it meanwhile.
pub unsafe fn gemm(isa: Isa, p: Product, parallelism: Parallelism) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        use gemm_common::simd::{V3, V4};
        if isa >= Isa::Avx512 {
            if let Some(simd) = <V4 as MixedSimd<f32, f32, f32, f32>>::try_new() {
                use gemm_f32::microkernel::avx512f::f32::*;
                return run::<_, 16, { MR_DIV_N * 16 }, NR, MR_DIV_N, H_M, H_N>(
                    simd,
                    p,
                    &UKR,
                    &H_UKR,
                    parallelism,
                );
            }
        }
        if isa >= Isa::Avx2 {
            if let Some(simd) = <V3 as MixedSimd<f32, f32, f32, f32>>::try_new() {
                use gemm_f32::microkernel::fma::f32::*;
                return run::<_, 8, { MR_DIV_N * 8 }, NR, MR_DIV_N, H_M, H_N>(
                    simd,
                    p,
                    &UKR,
                    &H_UKR,
                    parallelism,
                );
            }
        }
    }
    let _ = isa;
    use gemm_f32::microkernel::scalar::f32::*;
    run::<_, 1, { MR_DIV_N }, NR, MR_DIV_N, H_M, H_N>(
        gemm_common::simd::Scalar,
        p,
        &UKR,
        &H_UKR,
        parallelism,
    )
}

/// `N` floats per register, `MR = MR_DIV_N * N` rows per micro-kernel.
#[allow(clippy::too_many_arguments)]
unsafe fn run<
    S: MixedSimd<f32, f32, f32, f32>,
    const N: usize,
    const MR: usize,
    const NR: usize,
    const MR_DIV_N: usize,
    const H_M: usize,
    const H_N: usize,
>(
    simd: S,
    p: Product,
    ukr: &[[gemm_common::microkernel::MicroKernelFn<f32>; NR]; MR_DIV_N],
    h_ukr: &[[gemm_common::microkernel::HMicroKernelFn<f32>; H_N]; H_M],
    parallelism: Parallelism,
) {
    gemm_basic_generic::<S, f32, N, MR, NR, MR_DIV_N, H_M, H_N>(
        simd,
        p.m,
        p.n,
        p.k,
        p.dst,
        p.dst_cs,
        p.dst_rs,
        p.read_dst,
        p.lhs,
        p.lhs_cs,
        p.lhs_rs,
        p.rhs,
        p.rhs_cs,
        p.rhs_rs,
        1.0,
        p.beta,
        false,
        false,
        false,
        |a, b, c| a * b + c,
        ukr,
        h_ukr,
        false,
        parallelism,
    )
}
