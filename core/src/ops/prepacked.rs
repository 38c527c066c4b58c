//! A left-hand matrix packed once into the layout of `gemm`'s micro-kernels and multiplied by
//! many right-hand blocks, read in place: a Linear layer's weight against every block of rows
//! (`linear.rs`), and one operand of each of attention's per-head products (`mha.rs`), where
//! the crate's driver also packed the other operand and worked out its cache blocking again
//! in every call.
//!
//! Why: the crate packs its left operand again in every call, and a Linear layer calls it once
//! per block of rows (128 then), so the same weight was packed 65 times per product at
//! mnist-small's batch. Packed once, each block goes straight to the crate's micro-kernels
//! (`micro.rs`), with the crate's own depth blocking (`kernel_params`), so every element is
//! computed as the crate computes it: bit for bit the same as a `gemm` call on the block
//! (tested). On a 128x64 by 64x256 block one core went from 78 to 88 GFLOP/s this way.

use super::isa::Isa;
use super::micro::Level;

/// A matrix read in place: element `(j, c)` at `ptr + j * rs + c * cs`.
#[derive(Clone, Copy)]
pub struct Strided {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

/// `a` (`m` by `k`) packed for one instruction-set level, or read in place where its layout
/// is already the packing's.
pub struct PackedLhs<'a> {
    m: usize,
    k: usize,
    /// depth of each pass (the crate's `kc`), and rows per pass over the right-hand block
    kc: usize,
    mc: usize,
    level: Level,
    data: Panels<'a>,
}

enum Panels<'a> {
    /// x86-64: for each depth pass, for each panel of `MR` rows, `kc` columns of `MR` values
    /// (the last panel padded with zeros); elsewhere `a` column-major, for the crate's own
    /// dispatch
    Packed(Vec<f32>),
    /// `a` itself, column-major (element `(i, j)` at `i + j * cs`) and whole panels of rows: a
    /// micro-kernel reads a panel's `MR` values per depth step from any column stride, so
    /// packing would only have copied them (attention's heads, transposed)
    Columns { a: &'a [f32], cs: usize },
}

impl PackedLhs<'static> {
    /// Packs `a` (`m` by `k`, element `(i, j)` at `i * rs + j * cs`) for products with
    /// right-hand blocks of about `n` columns (the depth blocking depends on it, as in the
    /// crate), with the kernels of `isa` or the next lower level the CPU has.
    pub fn new(isa: Isa, a: &[f32], m: usize, k: usize, rs: usize, cs: usize, n: usize) -> Self {
        assert!(
            m == 0 || k == 0 || (m - 1) * rs + (k - 1) * cs < a.len(),
            "packed matrix outside its buffer"
        );
        let level = Level::of(isa);
        #[cfg(target_arch = "x86_64")]
        {
            let mr = level.mr();
            let (kc, mc) = super::micro::blocking(level, (m, n, k));
            let panels = m.div_ceil(mr);
            // never zeroed: the passes below write every element, padding included
            let mut data = super::rows::Filled::new(panels * mr * k);
            let mut depth = 0;
            while depth < k {
                let kb = kc.min(k - depth);
                let pass = &mut data.parts()[depth * panels * mr..(depth + kb) * panels * mr];
                // SAFETY: (m - 1, depth + kb - 1) lies in `a`, asserted above
                unsafe {
                    super::micro::pack(a[depth * cs..].as_ptr(), (m, kb), (rs, cs), mr, pass)
                };
                depth += kb;
            }
            PackedLhs {
                m,
                k,
                kc,
                mc,
                level,
                // SAFETY: the passes cover all `panels * mr * k` elements, each packed
                data: Panels::Packed(unsafe { data.assume_filled() }),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = n;
            let mut data = vec![0.0; m * k];
            for j in 0..k {
                for i in 0..m {
                    data[i + j * m] = a[i * rs + j * cs];
                }
            }
            PackedLhs {
                m,
                k,
                kc: k,
                mc: m,
                level,
                data: Panels::Packed(data),
            }
        }
    }
}

impl<'a> PackedLhs<'a> {
    /// `a` (`m` by `k`, column-major: element `(i, j)` at `i + j * cs`) read in place, where
    /// its layout allows it: `m` whole panels of the level's micro-kernels, on x86-64. `None`
    /// elsewhere (pack it with [`PackedLhs::new`]). Products are the same, to the bit.
    pub fn in_place(
        isa: Isa,
        a: &'a [f32],
        m: usize,
        k: usize,
        cs: usize,
        n: usize,
    ) -> Option<Self> {
        assert!(
            m == 0 || k == 0 || (m - 1) + (k - 1) * cs < a.len(),
            "matrix outside its buffer"
        );
        let level = Level::of(isa);
        #[cfg(target_arch = "x86_64")]
        {
            if m == 0 || !m.is_multiple_of(level.mr()) || cs < m {
                return None;
            }
            let (kc, mc) = super::micro::blocking(level, (m, n, k));
            Some(PackedLhs {
                m,
                k,
                kc,
                mc,
                level,
                data: Panels::Columns { a, cs },
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (a, k, cs, n, level);
            None
        }
    }

    /// `dst = scale a rhs`, or `dst += scale a rhs` if `accumulate`: `dst` is `m` by `n` with
    /// unit row stride and column stride `dst_cs`, `rhs` is `k` by `n`, read in place. Without
    /// `accumulate`, `dst` is never read (it may be uninitialised).
    ///
    /// # Safety
    /// `dst` must be valid for writes and `rhs` for reads over those extents, and nothing
    /// else may access `dst` meanwhile.
    pub unsafe fn multiply(
        &self,
        n: usize,
        dst: *mut f32,
        dst_cs: usize,
        rhs: Strided,
        scale: f32,
        accumulate: bool,
    ) {
        if self.m == 0 || n == 0 {
            return;
        }
        if self.k == 0 {
            if !accumulate {
                for j in 0..n {
                    std::ptr::write_bytes(dst.add(j * dst_cs), 0, self.m);
                }
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let lhs = match &self.data {
                Panels::Packed(data) => super::micro::Lhs::Packed(data),
                Panels::Columns { a, cs } => super::micro::Lhs::Columns {
                    ptr: a.as_ptr(),
                    cs: *cs,
                },
            };
            super::micro::multiply(
                self.level,
                lhs,
                (self.m, n, self.k),
                (self.kc, self.mc),
                dst,
                dst_cs,
                rhs.ptr,
                (rhs.rs, rhs.cs),
                scale,
                accumulate,
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (self.kc, self.mc, self.level);
            let Panels::Packed(data) = &self.data else {
                unreachable!("read in place only on x86-64")
            };
            gemm_f32::gemm::f32::get_gemm_fn()(
                self.m,
                n,
                self.k,
                dst,
                dst_cs as isize,
                1,
                accumulate,
                data.as_ptr(),
                self.m as isize,
                1,
                rhs.ptr,
                rhs.cs as isize,
                rhs.rs as isize,
                1.0,
                scale,
                false,
                false,
                false,
                gemm_common::Parallelism::None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gemm_kernels::{gemm, Product};

    fn same_bits(got: &[f32], want: &[f32]) -> bool {
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|(g, w)| g.to_bits() == w.to_bits())
    }

    /// The rows of a row-major matrix of `k` columns as the columns of a `k` by rows one.
    fn rows_of(x: &[f32], k: usize) -> Strided {
        Strided {
            ptr: x.as_ptr(),
            rs: 1,
            cs: k,
        }
    }

    /// `a rhs` through the packing and through a plain `gemm` call at the same level, for `a`
    /// stored row-major or transposed, `rhs` the rows of a row-major matrix (a Linear layer's
    /// input block) and the destination a row-major output block.
    fn both(isa: Isa, m: usize, k: usize, n: usize, a_t: bool, acc: bool) -> (Vec<f32>, Vec<f32>) {
        both_with(isa, (m, k, n), a_t, false, 1.0, acc)
    }

    /// As [`both`], with `rhs` read from a row-major `k x n` matrix when `rhs_rows` (rows of
    /// `rhs` consecutive: attention's probabilities) and every product times `scale`.
    fn both_with(
        isa: Isa,
        (m, k, n): (usize, usize, usize),
        a_t: bool,
        rhs_rows: bool,
        scale: f32,
        acc: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let (a, x) = crate::ops::gemm_kernels::test_operands(m * k, n * k);
        let (rs, cs) = if a_t { (1, m) } else { (k, 1) };
        let (x_rs, x_cs) = if rhs_rows { (n, 1) } else { (1, k) };
        // without accumulation the destination is garbage (NaN) that must never be read
        let start = if acc { 0.25 } else { f32::NAN };
        let mut packed = vec![start; n * m];
        let p = PackedLhs::new(isa, &a, m, k, rs, cs, n);
        let rhs = Strided {
            ptr: x.as_ptr(),
            rs: x_rs,
            cs: x_cs,
        };
        // SAFETY: `packed` is n columns of m; `x` is k by n either way
        unsafe { p.multiply(n, packed.as_mut_ptr(), m, rhs, scale, acc) };
        let mut plain = vec![start; n * m];
        let product = Product {
            m,
            n,
            k,
            dst: plain.as_mut_ptr(),
            dst_cs: m as isize,
            dst_rs: 1,
            read_dst: acc,
            lhs: a.as_ptr(),
            lhs_cs: cs as isize,
            lhs_rs: rs as isize,
            rhs: x.as_ptr(),
            rhs_cs: x_cs as isize,
            rhs_rs: x_rs as isize,
            beta: scale,
        };
        // SAFETY: the same extents as above
        unsafe { gemm(isa, product, gemm_common::Parallelism::None) };
        (packed, plain)
    }

    #[test]
    fn rows_read_in_place_and_a_scale_equal_the_crates_product_bit_for_bit() {
        // attention's heads: 65 tokens, 16 or 64 channels, the right side's rows consecutive
        // or its columns, the scores scaled by 1/sqrt(channels)
        for isa in Isa::ALL.into_iter().filter(|&i| i <= Isa::detected()) {
            for shape in [(65, 16, 65), (16, 65, 65), (64, 65, 65), (65, 64, 65)] {
                for (a_t, rhs_rows) in [(false, false), (true, true), (false, true), (true, false)]
                {
                    for scale in [1.0, 0.25, 0.125] {
                        let (got, want) = both_with(isa, shape, a_t, rhs_rows, scale, false);
                        assert!(
                            same_bits(&got, &want),
                            "{isa}: {shape:?} (transposed {a_t}, rhs rows {rhs_rows}, scale {scale})"
                        );
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn read_in_place_equals_the_crates_product_bit_for_bit() {
        // attention's transposed heads (16 or 64 channels of a row 3 * width long, 65
        // tokens deep), a padded column stride, and a depth in two passes (768: kc 384)
        for isa in Isa::ALL.into_iter().filter(|&i| i <= Isa::detected()) {
            let mr = Level::of(isa).mr();
            for (m, k, n, cs) in [
                (16, 65, 65, 192),
                (64, 65, 16, 576),
                (32, 65, 65, 32),
                (64, 768, 128, 64),
            ] {
                if m % mr != 0 {
                    continue;
                }
                let (a, x) = crate::ops::gemm_kernels::test_operands((k - 1) * cs + m, k * n);
                for (scale, acc) in [(1.0, false), (0.25, false), (1.0, true)] {
                    let start = if acc { 0.25 } else { f32::NAN };
                    let rhs = rows_of(&x, k);
                    let mut got = vec![start; n * m];
                    let lhs = PackedLhs::in_place(isa, &a, m, k, cs, n).expect("whole panels");
                    // SAFETY: `got` is n columns of m; `x` is k by n
                    unsafe { lhs.multiply(n, got.as_mut_ptr(), m, rhs, scale, acc) };
                    let mut want = vec![start; n * m];
                    let packed = PackedLhs::new(isa, &a, m, k, 1, cs, n);
                    unsafe { packed.multiply(n, want.as_mut_ptr(), m, rhs, scale, acc) };
                    assert!(
                        same_bits(&got, &want),
                        "{isa}: {m}x{k} (column stride {cs}) by {k}x{n}, scale {scale}"
                    );
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn only_whole_panels_of_columns_are_read_in_place() {
        // a partial panel would read past its rows (past the buffer at the last column); a
        // column stride below the height is not column-major storage
        let isa = Isa::detected();
        let mr = Level::of(isa).mr();
        let a = vec![1.0; 4 * mr * 10];
        let readable = |m: usize, cs: usize| PackedLhs::in_place(isa, &a, m, 10, cs, 8).is_some();
        assert!(readable(mr, mr) && readable(2 * mr, 3 * mr));
        if mr > 1 {
            assert!(!readable(mr + 1, 2 * mr) && !readable(mr - 1, mr));
        }
        assert!(!readable(2 * mr, mr) && !readable(0, mr));
    }

    #[test]
    fn equals_the_crates_product_bit_for_bit_at_every_level() {
        // full and partial panels and column groups, a depth in two passes (768: kc 384)
        let shapes = [
            (256, 64, 128),
            (64, 256, 128),
            (70, 50, 13),
            (192, 768, 128),
        ];
        for isa in Isa::ALL.into_iter().filter(|&i| i <= Isa::detected()) {
            for (m, k, n) in shapes {
                for a_t in [false, true] {
                    for acc in [false, true] {
                        let (got, want) = both(isa, m, k, n, a_t, acc);
                        assert!(
                            same_bits(&got, &want),
                            "{isa}: {m}x{k} by {k}x{n} (transposed {a_t}, accumulate {acc})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn tiny_products_equal_the_crates_to_rounding() {
        // where the crate takes other paths (one column, depth 2, a few elements), the
        // micro-kernels still give the product: the last block of an odd batch
        for isa in Isa::ALL.into_iter().filter(|&i| i <= Isa::detected()) {
            for (m, k, n) in [(5, 3, 1), (64, 2, 3), (1, 9, 12), (12, 9, 1), (7, 7, 7)] {
                for a_t in [false, true] {
                    for acc in [false, true] {
                        let (got, want) = both(isa, m, k, n, a_t, acc);
                        for (g, w) in got.iter().zip(&want) {
                            assert!(
                                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                                "{isa}: {m}x{k} by {k}x{n}: {g} against {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn empty_depth_zeroes_or_keeps_the_destination() {
        let p = PackedLhs::new(Isa::detected(), &[], 3, 0, 0, 1, 2);
        let mut d = vec![f32::NAN; 6];
        // SAFETY: 3 by 2 destination; no right-hand values are read at depth 0
        unsafe { p.multiply(2, d.as_mut_ptr(), 3, rows_of(&[], 0), 1.0, false) };
        assert_eq!(d, vec![0.0; 6]);
        let mut d = vec![2.0; 6];
        unsafe { p.multiply(2, d.as_mut_ptr(), 3, rows_of(&[], 0), 1.0, true) };
        assert_eq!(d, vec![2.0; 6]);
    }
}
