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
#[derive(Clone, Copy)]
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

/// Runs `p` with the kernels of `isa`, or of the next lower level the CPU has. Elsewhere than
/// x86-64 there are no levels to cap: the crate's own choice runs (NEON on ARM).
///
/// # Safety
/// The pointers and strides must describe valid matrices; `dst` must not overlap the inputs
/// and nothing else may access it meanwhile.
pub unsafe fn gemm(isa: Isa, p: Product, parallelism: Parallelism) {
    #[cfg(target_arch = "x86_64")]
    {
        use super::micro::Level;
        use gemm_common::simd::{V3, V4};
        // the level the packed Linear weights run at too (micro.rs): one choice for both
        match Level::of(isa) {
            Level::Avx512 => {
                use gemm_f32::microkernel::avx512f::f32::*;
                let simd = <V4 as MixedSimd<f32, f32, f32, f32>>::try_new()
                    .expect("Level::of chose AVX-512 on a CPU that has it");
                run::<_, 16, { MR_DIV_N * 16 }, NR, MR_DIV_N, H_M, H_N>(
                    simd,
                    p,
                    &UKR,
                    &H_UKR,
                    parallelism,
                )
            }
            Level::Fma => {
                use gemm_f32::microkernel::fma::f32::*;
                let simd = <V3 as MixedSimd<f32, f32, f32, f32>>::try_new()
                    .expect("Level::of chose AVX2+FMA on a CPU that has it");
                run::<_, 8, { MR_DIV_N * 8 }, NR, MR_DIV_N, H_M, H_N>(
                    simd,
                    p,
                    &UKR,
                    &H_UKR,
                    parallelism,
                )
            }
            Level::Scalar => {
                use gemm_f32::microkernel::scalar::f32::*;
                run::<_, 1, { MR_DIV_N }, NR, MR_DIV_N, H_M, H_N>(
                    gemm_common::simd::Scalar,
                    p,
                    &UKR,
                    &H_UKR,
                    parallelism,
                )
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        crates_choice(p, parallelism)
    }
}

/// `p` with the kernels the crate itself picks (the CPU's widest): what runs on CPUs without
/// levels to cap, and what [`gemm`] must equal at the detected level on x86-64 (tested).
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
unsafe fn crates_choice(p: Product, parallelism: Parallelism) {
    gemm_f32::gemm::f32::get_gemm_fn()(
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

/// Two deterministic operands of `a_len` and `b_len` values with no pattern a kernel could
/// exploit, for the product tests of the ops that call `gemm`.
#[cfg(test)]
pub(super) fn test_operands(a_len: usize, b_len: usize) -> (Vec<f32>, Vec<f32>) {
    let a = (0..a_len)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let b = (0..b_len)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0)
        .collect();
    (a, b)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// A 70x50 by 50x90 product (sizes that fill no register evenly) at `isa`, or by the
    /// crate's own dispatch.
    fn product(isa: Option<Isa>) -> Vec<f32> {
        let (m, k, n) = (70, 50, 90);
        let (a, b) = test_operands(m * k, k * n);
        let mut d = vec![0.5f32; m * n];
        let p = Product {
            m,
            n,
            k,
            dst: d.as_mut_ptr(),
            dst_cs: m as isize,
            dst_rs: 1,
            read_dst: true,
            lhs: a.as_ptr(),
            lhs_cs: m as isize,
            lhs_rs: 1,
            rhs: b.as_ptr(),
            rhs_cs: k as isize,
            rhs_rs: 1,
            beta: 0.75,
        };
        // SAFETY: column-major views of the three buffers above, each fully inside its buffer
        unsafe {
            match isa {
                Some(isa) => gemm(isa, p, Parallelism::None),
                None => crates_choice(p, Parallelism::None),
            }
        }
        d
    }

    #[test]
    fn at_the_detected_level_the_crates_own_kernels_run() {
        assert_eq!(product(Some(Isa::detected())), product(None));
    }

    #[test]
    fn every_level_computes_the_same_product_to_rounding() {
        let want = product(None);
        let norm = want.iter().map(|v| v * v).sum::<f32>().sqrt();
        for isa in Isa::ALL {
            let got = product(Some(isa));
            let diff = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
                .sqrt();
            assert!(diff <= 1e-6 * norm, "{isa}: off by {diff} (norm {norm})");
        }
    }
}
