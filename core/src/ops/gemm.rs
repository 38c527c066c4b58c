//! Matrix products on host buffers through the `gemm` crate (the one dfdx's CPU matmul uses),
//! with strided views so transposes, head slices and column blocks cost no copy. The crate's
//! kernels for the active instruction set ([`Isa::active`]) are called through
//! [`kernels`], so that `INCUBATOR_ISA` caps them as it caps our element-wise kernels.

use super::gemm_kernels as kernels;
use super::isa::Isa;

/// A strided matrix view into a flat buffer: element `(i, j)` is at
/// `offset + i * row_stride + j * col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
    pub offset: usize,
}

impl Mat {
    /// A row-major `rows x cols` matrix at the start of its buffer.
    pub fn dense(rows: usize, cols: usize) -> Mat {
        Mat {
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
            offset: 0,
        }
    }

    pub fn t(self) -> Mat {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            offset: self.offset,
        }
    }

    /// The `rows x cols` sub-matrix whose top-left element is `(row, col)`.
    pub fn sub(self, row: usize, col: usize, rows: usize, cols: usize) -> Mat {
        assert!(row + rows <= self.rows && col + cols <= self.cols);
        Mat {
            rows,
            cols,
            offset: self.offset + row * self.row_stride + col * self.col_stride,
            ..self
        }
    }

    /// One past the largest index the view touches (0 when empty).
    pub fn end(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }
}

/// The threads the kernels split their work over (rayon's pool: `RAYON_NUM_THREADS`, else one
/// per core).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Below this many multiply-adds a product runs on the calling thread: splitting it costs more
/// than it saves.
const PARALLEL_FROM: usize = 1 << 18;

/// `dst = scale * a b`, or `dst += scale * a b` when `accumulate`. Large products use the rayon
/// pool; each output element is computed the same way whatever the number of threads.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dst: &mut [f32],
    d: Mat,
    a: &[f32],
    am: Mat,
    b: &[f32],
    bm: Mat,
    scale: f32,
    accumulate: bool,
) {
    let work = d.rows * d.cols * am.cols;
    let threads = if work >= PARALLEL_FROM {
        rayon::current_num_threads()
    } else {
        1
    };
    assert!(d.end() <= dst.len() && am.end() <= a.len() && bm.end() <= b.len());
    // SAFETY: the views were checked against their buffers above, and `dst` is borrowed
    // mutably, so it cannot alias `a` or `b`.
    unsafe {
        matmul_raw(
            dst.as_mut_ptr(),
            d,
            a,
            am,
            b,
            bm,
            scale,
            accumulate,
            threads,
        )
    }
}

/// Panics unless `d = a b` has matching shapes and the views of `a` and `b` lie within their
/// slices: what a product reading through raw views must know first.
pub fn check_product(d: Mat, a: &[f32], am: Mat, b: &[f32], bm: Mat) {
    assert!(
        d.rows == am.rows && d.cols == bm.cols && am.cols == bm.rows,
        "matmul shapes: {d:?} = {am:?} x {bm:?}"
    );
    assert!(
        am.end() <= a.len() && bm.end() <= b.len(),
        "matmul views outside their buffers"
    );
}

/// [`matmul`] into a raw destination, for callers that write disjoint views of one buffer from
/// several threads (attention heads).
///
/// # Safety
/// `dst` must be valid for writes over `d`'s extent, nothing else may access those elements
/// meanwhile, and the views of `a` and `b` must lie within their slices.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_raw(
    dst: *mut f32,
    d: Mat,
    a: &[f32],
    am: Mat,
    b: &[f32],
    bm: Mat,
    scale: f32,
    accumulate: bool,
    threads: usize,
) {
    check_product(d, a, am, b, bm);
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    let parallelism = if threads > 1 {
        gemm_common::Parallelism::Rayon(threads)
    } else {
        gemm_common::Parallelism::None
    };
    // gemm wants the destination's unit stride along the rows of the micro-kernel (it
    // transposes `dst = a b` into `dst^T = b^T a^T` otherwise), as `gemm::gemm` does before
    // its own dispatch; every stride here is positive.
    let dp = dst.add(d.offset);
    let (mut ap, mut bp) = (a.as_ptr().add(am.offset), b.as_ptr().add(bm.offset));
    let (mut m, mut n) = (d.rows, d.cols);
    let (mut d_cs, mut d_rs) = (d.col_stride as isize, d.row_stride as isize);
    let (mut a_cs, mut a_rs) = (am.col_stride as isize, am.row_stride as isize);
    let (mut b_cs, mut b_rs) = (bm.col_stride as isize, bm.row_stride as isize);
    if d_cs < d_rs {
        std::mem::swap(&mut m, &mut n);
        std::mem::swap(&mut d_cs, &mut d_rs);
        let (ta, tb) = ((b_rs, b_cs, bp), (a_rs, a_cs, ap));
        (a_cs, a_rs, ap) = ta;
        (b_cs, b_rs, bp) = tb;
    }
    kernels::gemm(
        Isa::active(),
        kernels::Product {
            m,
            n,
            k: am.cols,
            dst: dp,
            dst_cs: d_cs,
            dst_rs: d_rs,
            read_dst: accumulate,
            lhs: ap,
            lhs_cs: a_cs,
            lhs_rs: a_rs,
            rhs: bp,
            rhs_cs: b_cs,
            rhs_rs: b_rs,
            beta: scale,
        },
        parallelism,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], am: Mat, b: &[f32], bm: Mat) -> Vec<f32> {
        let mut out = vec![0.0; am.rows * bm.cols];
        for i in 0..am.rows {
            for j in 0..bm.cols {
                for k in 0..am.cols {
                    out[i * bm.cols + j] += a[am.offset + i * am.row_stride + k * am.col_stride]
                        * b[bm.offset + k * bm.row_stride + j * bm.col_stride];
                }
            }
        }
        out
    }

    #[test]
    fn a_product_told_not_to_accumulate_never_reads_its_destination() {
        // Linear blocks, attention's heads and their gradients are written over uninitialised
        // memory: whatever was there (NaN here) must not reach the result, on every path the
        // crate takes (tiny products, k <= 2, one row or column, transposed operands, the
        // blocked kernels)
        for (m, k, n) in [
            (3, 5, 4),
            (16, 16, 16),
            (7, 1, 9),
            (6, 2, 1),
            (1, 9, 12),
            (12, 9, 1),
            (65, 16, 65),
            (128, 64, 256),
        ] {
            let (a, b) = kernels::test_operands(m * k, k * n);
            for (am, bm) in [
                (Mat::dense(m, k), Mat::dense(k, n)),
                (Mat::dense(k, m).t(), Mat::dense(n, k).t()),
            ] {
                let want = naive(&a, am, &b, bm);
                let mut got = vec![f32::NAN; m * n];
                matmul(&mut got, Mat::dense(m, n), &a, am, &b, bm, 1.0, false);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{m}x{k}x{n}: {g} against {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn strided_views_transposes_and_accumulation() {
        let a: Vec<f32> = (0..60).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..84).map(|i| (i as f32 * 0.11).cos()).collect();
        // a column block of a 5x12 matrix times the transpose of a 7x12 row-major matrix
        let am = Mat::dense(5, 12).sub(0, 4, 5, 6);
        let bm = Mat::dense(7, 12).sub(0, 2, 7, 6).t();
        let want = naive(&a, am, &b, bm);
        let mut got = vec![1.0; 35];
        matmul(&mut got, Mat::dense(5, 7), &a, am, &b, bm, 2.0, true);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - (1.0 + 2.0 * w)).abs() < 1e-5);
        }
        matmul(&mut got, Mat::dense(5, 7), &a, am, &b, bm, 1.0, false);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5);
        }
    }
}
