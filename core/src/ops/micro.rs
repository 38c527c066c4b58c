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
    #[cfg(target_arch = "x86_64")]
    if cs == 1 && rs != 1 && mr.is_multiple_of(8) && Isa::active() >= Isa::Avx2 {
        return pack_rows_avx(a, (m, k), rs, mr, out);
    }
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

/// [`pack`] for rows of consecutive values (`cs == 1`: attention's keys and values, a Linear
/// weight as stored), eight rows by eight columns at a time turned around in AVX registers:
/// one panel column is eight values from eight rows, which the plain loop gathered one load
/// at a time (the heads' packings were 2-3% of mnist-small's step). The values are copied,
/// so the packing is the same to the bit.
///
/// # Safety
/// As [`pack`], and the CPU must have AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn pack_rows_avx(
    a: *const f32,
    (m, k): (usize, usize),
    rs: usize,
    mr: usize,
    out: &mut [MaybeUninit<f32>],
) {
    use std::arch::x86_64::*;
    for (p, panel) in out.chunks_exact_mut(mr * k).enumerate() {
        let rows = mr.min(m - p * mr);
        let panel = panel.as_mut_ptr().cast::<f32>();
        for g in (0..mr).step_by(8) {
            // rows g..g + 8 of the panel; past `rows`, zeros
            let live = rows.saturating_sub(g).min(8);
            let mut j = 0;
            if live == 8 {
                while j + 8 <= k {
                    let row = |r: usize| _mm256_loadu_ps(a.add((p * mr + g + r) * rs + j));
                    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                    let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
                    let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
                    let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
                    let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
                    let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
                    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                    let columns = [
                        _mm256_permute2f128_ps::<0x20>(s0, s4),
                        _mm256_permute2f128_ps::<0x20>(s1, s5),
                        _mm256_permute2f128_ps::<0x20>(s2, s6),
                        _mm256_permute2f128_ps::<0x20>(s3, s7),
                        _mm256_permute2f128_ps::<0x31>(s0, s4),
                        _mm256_permute2f128_ps::<0x31>(s1, s5),
                        _mm256_permute2f128_ps::<0x31>(s2, s6),
                        _mm256_permute2f128_ps::<0x31>(s3, s7),
                    ];
                    for (c, v) in columns.into_iter().enumerate() {
                        _mm256_storeu_ps(panel.add((j + c) * mr + g), v);
                    }
                    j += 8;
                }
            }
            // the columns left over, and groups of rows with fewer than eight live
            for j in j..k {
                for r in 0..8 {
                    let v = if r < live {
                        *a.add((p * mr + g + r) * rs + j)
                    } else {
                        0.0
                    };
                    *panel.add(j * mr + g + r) = v;
                }
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn panels_turned_around_in_registers_equal_the_plain_packing() {
        // whole and partial panels, depths with and without a last partial group of eight,
        // rows further apart than they are long (attention's heads in a qkv buffer)
        for (m, k, rs) in [
            (65usize, 16usize, 192usize),
            (16, 64, 64),
            (70, 13, 13),
            (1, 1, 1),
            (9, 8, 40),
        ] {
            for mr in [8, 16, 24, 48] {
                let a: Vec<f32> = (0..(m - 1) * rs + k)
                    .map(|i| i as f32 * 0.5 - 7.0)
                    .collect();
                let len = m.div_ceil(mr) * mr * k;
                let mut got = vec![MaybeUninit::new(f32::NAN); len];
                let mut want = vec![MaybeUninit::new(f32::NAN); len];
                // SAFETY: (m - 1, k - 1) lies in `a`; each output holds every panel
                unsafe { pack(a.as_ptr(), (m, k), (rs, 1), mr, &mut got) };
                for (p, panel) in want.chunks_exact_mut(mr * k).enumerate() {
                    for j in 0..k {
                        for i in 0..mr {
                            let r = p * mr + i;
                            let v = if r < m { a[r * rs + j] } else { 0.0 };
                            panel[j * mr + i] = MaybeUninit::new(v);
                        }
                    }
                }
                // SAFETY: both are fully written
                let bits = |x: &[MaybeUninit<f32>]| -> Vec<u32> {
                    x.iter()
                        .map(|v| unsafe { v.assume_init() }.to_bits())
                        .collect()
                };
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{m}x{k}, rows {rs} apart, panels of {mr}"
                );
            }
        }
    }

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
