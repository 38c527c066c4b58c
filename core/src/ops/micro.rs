//! `gemm`'s micro-kernels driven directly, with the crate's blocking, where the crate's driver
//! would do work again in every call: a Linear layer's weight, packed once and multiplied by
//! each block of rows, and attention's small per-head products (`prepacked.rs`).
//!
//! A micro-kernel multiplies `MR` rows of the left operand, read as a packed panel (`MR`
//! consecutive values per depth step), by `NR` columns of the right one, read one value at a
//! time in place (so the right operand is never packed).

use super::isa::Isa;
use std::mem::MaybeUninit;

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

/// `$body` with `$k` bound to the kernel table of `$level` (each level's table has its own
/// dimensions, hence a macro rather than a function).
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
}

/// The crate's depth pass and row block for a product of this shape at `level`
/// (`gemm_common::gemm::gemm_basic_generic`'s choice, so that the depth passes, and with them
/// the rounding, are the crate's).
///
/// The crate works this out from the cache sizes in every call; attention asks for the same
/// few shapes once per head, so each thread keeps its last answers.
#[cfg(target_arch = "x86_64")]
pub fn blocking(level: Level, shape: (usize, usize, usize)) -> (usize, usize) {
    use std::cell::RefCell;
    type Known = Vec<((Level, (usize, usize, usize)), (usize, usize))>;
    thread_local! {
        static KNOWN: RefCell<Known> = const { RefCell::new(Vec::new()) };
    }
    KNOWN.with_borrow_mut(|known| {
        if let Some(&(_, b)) = known.iter().find(|(key, _)| *key == (level, shape)) {
            return b;
        }
        let b = crate_blocking(level, shape);
        if known.len() == 16 {
            known.remove(0);
        }
        known.push(((level, shape), b));
        b
    })
}

#[cfg(target_arch = "x86_64")]
fn crate_blocking(level: Level, (m, n, k): (usize, usize, usize)) -> (usize, usize) {
    let (mr, nr) = (level.mr(), level.nr());
    let (kc, mc) = if m <= 64 && n <= 64 {
        (k.min(512), m.next_multiple_of(mr))
    } else {
        let p = gemm_common::cache::kernel_params(m, n, k, mr, nr, size_of::<f32>());
        (p.kc, p.mc)
    };
    (kc.max(1), (mc / mr).max(1) * mr)
}

/// `dst (m x n) = lhs rhs`, or `dst += lhs rhs` if `accumulate`, with `lhs` packed by [`pack`]
/// pass by pass (passes of depth `kc`) or read in place, in the crate's loop nest: depth
/// passes, blocks of `mc` rows, columns of `NR`, panels of `MR`, each product times `scale`
/// (the crate's `beta`). `dst` has unit row stride; `rhs` (`k x n`, element `(j, c)` at
/// `j * rs + c * cs`) is read in place, one value at a time. Without `accumulate`, `dst` is
/// never read.
///
/// # Safety
/// A packed `lhs` must be the packing of an `m x k` matrix at `level` with depth passes of
/// `kc`, one read in place must be valid over its `k` columns; `dst` and `rhs` must be valid
/// over their extents, and nothing else may access `dst` meanwhile.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn multiply(
    level: Level,
    lhs: Lhs,
    (m, n, k): (usize, usize, usize),
    (kc, mc): (usize, usize),
    dst: *mut f32,
    dst_cs: usize,
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
    scale: f32,
    accumulate: bool,
) {
    with_kernels!(level, |kern| {
        let (mr, nr) = (kern.mr(), kern.ukr[0].len());
        let panels = m.div_ceil(mr);
        match lhs {
            Lhs::Packed(packed) => assert!(packed.len() >= panels * mr * k, "packing too short"),
            Lhs::Columns { cs, .. } => {
                assert!(m.is_multiple_of(mr) && cs >= m, "columns not whole panels")
            }
        }
        let mut depth = 0;
        while depth < k {
            let kb = kc.min(k - depth);
            // 0: overwrite (never read dst), 1: dst + product, as the crate passes it
            let status = u8::from(accumulate || depth > 0);
            // the panel of rows from `row` in this pass, and its column stride
            let panel = |row: usize| match lhs {
                Lhs::Packed(packed) => (
                    packed
                        .as_ptr()
                        .add(depth * panels * mr + (row / mr) * mr * kb),
                    mr,
                ),
                Lhs::Columns { ptr, cs } => (ptr.add(depth * cs + row), cs),
            };
            let mut block = 0;
            while block < m {
                let block_end = (block + mc).min(m);
                let mut col = 0;
                while col < n {
                    let cols = nr.min(n - col);
                    let mut row = block;
                    while row < block_end {
                        let rows = mr.min(m - row);
                        let (lhs_at, lhs_cs) = panel(row);
                        kern.ukr[rows.div_ceil(kern.n) - 1][cols - 1](
                            rows,
                            cols,
                            kb,
                            dst.add(row + col * dst_cs),
                            lhs_at,
                            rhs.add(depth * rhs_rs + col * rhs_cs),
                            dst_cs as isize,
                            1,
                            lhs_cs as isize,
                            rhs_rs as isize,
                            rhs_cs as isize,
                            1.0,
                            scale,
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
                block = block_end;
            }
            depth += kb;
        }
    })
}

/// The left operand of [`multiply`].
#[derive(Clone, Copy)]
pub enum Lhs<'a> {
    /// packed by [`pack`]
    Packed(&'a [f32]),
    /// read in place: column-major, element `(i, j)` at `ptr + i + j * cs`, with `m` a
    /// multiple of `MR` (a micro-kernel reads whole panels)
    Columns { ptr: *const f32, cs: usize },
}

/// Packs `a` (`m x k`, element `(i, j)` at `i * rs + j * cs`) into panels of `mr` rows:
/// element `(i, j)` of panel `p` at `p * mr * k + j * mr + i`, the last panel padded with
/// zeros. `out` holds `ceil(m / mr) * mr * k` floats, every one of them written here.
///
/// # Safety
/// `a` must be valid for reads at every `(i, j)` above.
pub unsafe fn pack(
    a: *const f32,
    (m, k): (usize, usize),
    (rs, cs): (usize, usize),
    mr: usize,
    out: &mut [MaybeUninit<f32>],
) {
    for (p, panel) in out.chunks_exact_mut(mr * k).enumerate() {
        let rows = mr.min(m - p * mr);
        for (j, col) in panel.chunks_exact_mut(mr).enumerate() {
            let first = a.add(p * mr * rs + j * cs);
            if rs == 1 {
                // a panel's column lies consecutive in `a`: one copy
                std::ptr::copy_nonoverlapping(first, col.as_mut_ptr().cast(), rows);
            } else {
                for (i, v) in col[..rows].iter_mut().enumerate() {
                    v.write(*first.add(i * rs));
                }
            }
            col[rows..].fill(MaybeUninit::new(0.0));
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn kept_blockings_are_the_crates_for_their_own_shape() {
        // more shapes than a thread keeps, asked twice in turn: every answer is the crate's
        // for that shape, whether kept or worked out again
        let level = Level::of(Isa::detected());
        let shapes: Vec<(usize, usize, usize)> =
            (1..=40).map(|i| (16 * i, 65 + 7 * i, 100 * i)).collect();
        for _ in 0..2 {
            for &s in &shapes {
                assert_eq!(blocking(level, s), crate_blocking(level, s), "{s:?}");
            }
        }
    }
}
