//! `gemm`'s micro-kernels driven directly, for products the crate's general driver serves
//! badly: a left operand reused by many calls (a Linear layer's weight, `prepacked.rs`) and
//! products too small to carry its per-call set-up (attention's heads: 65 by 16 by 65, six
//! per head and step, where packing and planning cost as much as the arithmetic).
//!
//! A micro-kernel multiplies `MR` rows of the left operand, read `MR` consecutive values per
//! depth step (a packed panel, or the matrix itself where its rows are consecutive), by `NR`
//! columns of the right one, read one value at a time at any strides.

use super::isa::Isa;

/// The micro-kernels of one instruction-set level.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Level {
    #[cfg(target_arch = "x86_64")]
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Fma,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// elsewhere than x86-64 the crate's own dispatch runs (NEON on ARM)
    #[cfg(not(target_arch = "x86_64"))]
    Crate,
}

#[cfg(target_arch = "x86_64")]
mod tables {
    use gemm_common::microkernel::MicroKernelFn;
    use gemm_f32::microkernel::{avx512f, fma, scalar};

    /// `N` floats per register; the table is indexed by (registers of rows - 1, columns - 1).
    pub struct Kernels<const MR_DIV_N: usize, const NR: usize> {
        pub n: usize,
        pub ukr: [[MicroKernelFn<f32>; NR]; MR_DIV_N],
    }

    impl<const MR_DIV_N: usize, const NR: usize> Kernels<MR_DIV_N, NR> {
        pub const fn mr(&self) -> usize {
            MR_DIV_N * self.n
        }
    }

    pub const SCALAR: Kernels<{ scalar::f32::MR_DIV_N }, { scalar::f32::NR }> = Kernels {
        n: 1,
        ukr: scalar::f32::UKR,
    };
    pub const FMA: Kernels<{ fma::f32::MR_DIV_N }, { fma::f32::NR }> = Kernels {
        n: 8,
        ukr: fma::f32::UKR,
    };
    pub const AVX512: Kernels<{ avx512f::f32::MR_DIV_N }, { avx512f::f32::NR }> = Kernels {
        n: 16,
        ukr: avx512f::f32::UKR,
    };
}

/// `(registers, columns)` per micro-kernel call: `MR / N`, `NR`.
#[cfg(target_arch = "x86_64")]
macro_rules! with_kernels {
    ($level:expr, |$k:ident| $body:expr) => {
        match $level {
            Level::Scalar => {
                let $k = &tables::SCALAR;
                $body
            }
            Level::Fma => {
                let $k = &tables::FMA;
                $body
            }
            Level::Avx512 => {
                let $k = &tables::AVX512;
                $body
            }
        }
    };
}

impl Level {
    /// The kernels of `isa`, or of the next lower level the CPU has.
    pub fn of(isa: Isa) -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            use gemm_common::simd::{MixedSimd, V3, V4};
            if isa >= Isa::Avx512 && <V4 as MixedSimd<f32, f32, f32, f32>>::try_new().is_some() {
                return Level::Avx512;
            }
            if isa >= Isa::Avx2 && <V3 as MixedSimd<f32, f32, f32, f32>>::try_new().is_some() {
                return Level::Fma;
            }
            Level::Scalar
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = isa;
            Level::Crate
        }
    }

    /// Rows per micro-kernel call (a packed panel's height).
    #[cfg(target_arch = "x86_64")]
    pub fn mr(self) -> usize {
        with_kernels!(self, |k| k.mr())
    }

    /// Columns per micro-kernel call.
    #[cfg(target_arch = "x86_64")]
    pub fn nr(self) -> usize {
        with_kernels!(self, |k| k.ukr[0].len())
    }

    /// Floats per register: the left operand's rows are read in whole registers.
    #[cfg(target_arch = "x86_64")]
    fn lanes(self) -> usize {
        with_kernels!(self, |k| k.n)
    }
}

/// The left operand as the micro-kernels read it: panels of `MR` rows, each `panel_stride`
/// floats after the last, depth steps `col_stride` apart, rows consecutive.
#[derive(Clone, Copy)]
pub struct Panels {
    pub ptr: *const f32,
    pub col_stride: usize,
    pub panel_stride: usize,
}

/// One depth pass of `dst (m x n) = beta lhs rhs` (`status` 0: `dst` overwritten, never read)
/// or `dst += beta lhs rhs` (`status` 1): columns of `NR` outside, panels of `MR` inside, as
/// the crate orders them. `dst` has unit row stride; `rhs` (`k x n`) any strides.
///
/// # Safety
/// Every panel must hold `ceil(rows / N) * N` readable rows per depth step, `dst` and `rhs`
/// must be valid over their extents, and nothing else may access `dst` meanwhile.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn tiles(
    level: Level,
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_cs: usize,
    lhs: Panels,
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
    beta: f32,
    status: u8,
) {
    with_kernels!(level, |kern| {
        let (mr, nr) = (kern.mr(), kern.ukr[0].len());
        let mut col = 0;
        while col < n {
            let cols = nr.min(n - col);
            let mut row = 0;
            while row < m {
                let rows = mr.min(m - row);
                kern.ukr[rows.div_ceil(kern.n) - 1][cols - 1](
                    rows,
                    cols,
                    k,
                    dst.add(row + col * dst_cs),
                    lhs.ptr.add((row / mr) * lhs.panel_stride),
                    rhs.add(col * rhs_cs),
                    dst_cs as isize,
                    1,
                    lhs.col_stride as isize,
                    rhs_rs as isize,
                    rhs_cs as isize,
                    1.0,
                    beta,
                    status,
                    false,
                    false,
                    false,
                    std::ptr::null(),
                );
                row += mr;
            }
            col += nr;
        }
    })
}

/// The crate's depth pass and row block for a product of this shape at `level`
/// (`gemm_common::gemm::gemm_basic_generic`'s choice, so that the depth passes, and with them
/// the rounding, are the crate's).
#[cfg(target_arch = "x86_64")]
pub fn blocking(level: Level, (m, n, k): (usize, usize, usize)) -> (usize, usize) {
    let (mr, nr) = (level.mr(), level.nr());
    let (kc, mc) = if m <= 64 && n <= 64 {
        (k.min(512), m.next_multiple_of(mr))
    } else {
        let p = gemm_common::cache::kernel_params(m, n, k, mr, nr, size_of::<f32>());
        (p.kc, p.mc)
    };
    (kc.max(1), (mc / mr).max(1) * mr)
}

/// `dst (m x n) = beta lhs rhs`, or `dst += beta lhs rhs` if `accumulate`, in the crate's loop
/// nest: depth passes of `kc`, blocks of `mc` rows, then [`tiles`]; `lhs_at(depth, row, kb)`
/// gives the panels of rows `row..` for the pass of depth `kb` from `depth`. Without
/// `accumulate`, `dst` is never read.
///
/// # Safety
/// As [`tiles`], for every pass and block.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn passes(
    level: Level,
    (m, n, k): (usize, usize, usize),
    (kc, mc): (usize, usize),
    dst: *mut f32,
    dst_cs: usize,
    lhs_at: impl Fn(usize, usize, usize) -> Panels,
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
    beta: f32,
    accumulate: bool,
) {
    let mut depth = 0;
    while depth < k {
        let kb = kc.min(k - depth);
        // 0: overwrite (never read dst), 1: dst + product, as the crate passes it
        let status = u8::from(accumulate || depth > 0);
        let mut row = 0;
        while row < m {
            let rows = mc.min(m - row);
            tiles(
                level,
                (rows, n, kb),
                dst.add(row),
                dst_cs,
                lhs_at(depth, row, kb),
                rhs.add(depth * rhs_rs),
                (rhs_rs, rhs_cs),
                beta,
                status,
            );
            row += rows;
        }
        depth += kb;
    }
}

/// Packs `a` (`m x k`, element `(i, j)` at `i * rs + j * cs`) into panels of `mr` rows:
/// element `(i, j)` of panel `p` at `p * mr * k + j * mr + i`, the last panel padded with
/// zeros. `out` holds `ceil(m / mr) * mr * k` floats.
///
/// # Safety
/// `a` must be valid for reads at every `(i, j)` above.
pub unsafe fn pack(
    a: *const f32,
    (m, k): (usize, usize),
    (rs, cs): (usize, usize),
    mr: usize,
    out: &mut [f32],
) {
    for (p, panel) in out.chunks_exact_mut(mr * k).enumerate() {
        let rows = mr.min(m - p * mr);
        for (j, col) in panel.chunks_exact_mut(mr).enumerate() {
            for (i, v) in col[..rows].iter_mut().enumerate() {
                *v = *a.add((p * mr + i) * rs + j * cs);
            }
            col[rows..].fill(0.0);
        }
    }
}

/// `dst (m x n) = beta lhs rhs`, never reading `dst` (unit row stride, column stride
/// `dst_cs`), for a product used once: `lhs` (`m x k`) at strides `lhs_s` is read in place
/// where its rows are consecutive and fill whole registers, packed into `scratch` otherwise;
/// `rhs` (`k x n`) is read in place at any strides. One depth pass.
///
/// # Safety
/// The three matrices must be valid over their extents, and nothing else may access `dst`
/// meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn product(
    isa: Isa,
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_cs: usize,
    lhs: *const f32,
    lhs_s: (usize, usize),
    rhs: *const f32,
    rhs_s: (usize, usize),
    beta: f32,
    scratch: &mut Vec<f32>,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for j in 0..n {
            std::ptr::write_bytes(dst.add(j * dst_cs), 0, m);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let level = Level::of(isa);
        let mr = level.mr();
        let panels = if lhs_s.0 == 1 && m % level.lanes() == 0 {
            Panels {
                ptr: lhs,
                col_stride: lhs_s.1,
                panel_stride: mr,
            }
        } else {
            scratch.resize(m.div_ceil(mr) * mr * k, 0.0);
            pack(lhs, (m, k), lhs_s, mr, scratch);
            Panels {
                ptr: scratch.as_ptr(),
                col_stride: mr,
                panel_stride: mr * k,
            }
        };
        tiles(level, (m, n, k), dst, dst_cs, panels, rhs, rhs_s, beta, 0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, scratch);
        gemm_f32::gemm::f32::get_gemm_fn()(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            1,
            false,
            lhs,
            lhs_s.1 as isize,
            lhs_s.0 as isize,
            rhs,
            rhs_s.1 as isize,
            rhs_s.0 as isize,
            1.0,
            beta,
            false,
            false,
            false,
            gemm_common::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gemm_kernels::{gemm, Product};

    /// `product` and the crate's driver at the same level on `dst (m x n) = 0.5 lhs rhs` with
    /// the given strides (lhs `(rs, cs)`, rhs `(rs, cs)`, dst column stride), inside buffers of
    /// `len` floats; the destination starts as NaN, which must never be read.
    fn both(
        isa: Isa,
        mnk: (usize, usize, usize),
        lhs_s: (usize, usize),
        rhs_s: (usize, usize),
        dst_cs: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let (m, n, k) = mnk;
        let len = |(rs, cs): (usize, usize), r: usize, c: usize| (r - 1) * rs + (c - 1) * cs + 1;
        let a: Vec<f32> = (0..len(lhs_s, m, k))
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let b: Vec<f32> = (0..len(rhs_s, k, n))
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0)
            .collect();
        let size = (n - 1) * dst_cs + m;
        let (mut got, mut want) = (vec![f32::NAN; size], vec![f32::NAN; size]);
        let mut scratch = vec![f32::NAN; 3];
        // SAFETY: the buffers above hold every element the strides reach
        unsafe {
            product(
                isa,
                mnk,
                got.as_mut_ptr(),
                dst_cs,
                a.as_ptr(),
                lhs_s,
                b.as_ptr(),
                rhs_s,
                0.5,
                &mut scratch,
            );
            let p = Product {
                m,
                n,
                k,
                dst: want.as_mut_ptr(),
                dst_cs: dst_cs as isize,
                dst_rs: 1,
                read_dst: false,
                lhs: a.as_ptr(),
                lhs_cs: lhs_s.1 as isize,
                lhs_rs: lhs_s.0 as isize,
                rhs: b.as_ptr(),
                rhs_cs: rhs_s.1 as isize,
                rhs_rs: rhs_s.0 as isize,
                beta: 0.5,
            };
            gemm(isa, p, gemm_common::Parallelism::None);
        }
        // the gaps between columns stay as they were
        (got, want)
    }

    fn levels() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|&i| i <= Isa::detected())
    }

    #[test]
    fn attention_products_equal_the_crates_bit_for_bit_at_every_level() {
        // an attention head of 65 tokens at head widths 16 and 64 inside a qkv buffer of
        // 3 * 4 heads: scores (left side packed), values and gradients (left side read in
        // place), right sides at unit or token stride
        for isa in levels() {
            for hd in [16, 64] {
                let (t, w3) = (65, 3 * 4 * hd);
                let cases = [
                    ((t, t, hd), (w3, 1), (1, w3), t),
                    ((hd, t, t), (1, w3), (1, t), 4 * hd),
                    ((hd, t, t), (1, 4 * hd), (t, 1), w3),
                ];
                for (mnk, l, r, d) in cases {
                    let (got, want) = both(isa, mnk, l, r, d);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(g, w)| g.to_bits() == w.to_bits());
                    assert!(same, "{isa}: {mnk:?}, lhs {l:?}, rhs {r:?}");
                }
            }
        }
    }

    #[test]
    fn odd_shapes_equal_the_crates_to_rounding() {
        // rows that fill no register (packed), one token, depth 1 and 2
        for isa in levels() {
            for (mnk, l, r, d) in [
                ((12, 5, 7), (1, 12), (1, 7), 12),
                ((1, 1, 1), (1, 1), (1, 1), 1),
                ((9, 4, 2), (2, 1), (4, 1), 9),
                ((16, 3, 1), (1, 16), (1, 1), 20),
            ] {
                let (got, want) = both(isa, mnk, l, r, d);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    if i % d >= mnk.0 {
                        assert!(g.is_nan(), "{isa}: {mnk:?}: wrote between columns");
                        continue;
                    }
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{isa}: {mnk:?}: {g} against {w}"
                    );
                }
            }
        }
    }
}
