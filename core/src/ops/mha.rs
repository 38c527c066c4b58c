//! Multi-head scaled dot-product attention on a fused `qkv` buffer, forward and backward, one
//! task per (sample, head). Heads are read and written in place through strided views, so
//! the head split and merge of the composed version (two permuted copies each way) vanish.
//! The buffers these passes fill are never zeroed: each task's products write its own
//! elements (they overwrite, never read, their destinations), while they are in cache (a
//! zeroing pass over every gradient wrote each of them to memory once more). A head's
//! probabilities live in its task's scratch only, made again by the backward pass.

use super::fastmath::{dot, softmax_rows, softmax_rows_again};
use super::gemm::{check_product, Mat};
use super::isa::Isa;
use super::prepacked::{PackedLhs, Strided};
use super::rows::{assume_init, Disjoint, Filled};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub batch: usize,
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl Heads {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Head `h` of sample `b` in part `which` (0: q, 1: k, 2: v) of a `(rows, 3 width)` buffer.
    fn qkv(&self, which: usize, b: usize, h: usize) -> Mat {
        let d = self.width();
        Mat::dense(self.batch * self.tokens, 3 * d).sub(
            b * self.tokens,
            which * d + h * self.head_dim,
            self.tokens,
            self.head_dim,
        )
    }

    /// Head `h` of sample `b` in a `(rows, width)` buffer.
    fn merged(&self, b: usize, h: usize) -> Mat {
        Mat::dense(self.batch * self.tokens, self.width()).sub(
            b * self.tokens,
            h * self.head_dim,
            self.tokens,
            self.head_dim,
        )
    }

    /// Token `j` of head `h`, sample `b`, in part `which` (0: q, 1: k, 2: v) of `qkv`.
    fn row<'a>(&self, qkv: &'a [f32], which: usize, b: usize, h: usize, j: usize) -> &'a [f32] {
        let start = self.row_start(which, b, h, j);
        &qkv[start..start + self.head_dim]
    }

    /// Where [`Heads::row`] starts in a `(rows, 3 width)` buffer.
    fn row_start(&self, which: usize, b: usize, h: usize, j: usize) -> usize {
        let d = self.width();
        (b * self.tokens + j) * 3 * d + which * d + h * self.head_dim
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// Each attention row's largest scaled score and `1 / sum(exp(score - largest))`, two floats
/// per row, for every (sample, head) in turn: what the backward pass needs to make the
/// probabilities again (`exp(score - largest) * that`).
pub struct Stats {
    rows: Vec<f32>,
    /// the samples the forward pass skipped (drop-path scale 0), which the backward pass skips
    /// too; empty without a mask
    dropped: Vec<bool>,
}

/// Which samples drop-path `mask` drops (scale 0): one flag per sample, none without a mask.
fn dropped_samples(mask: Option<&[f32]>, dims: Heads) -> Vec<bool> {
    let Some(m) = mask else { return Vec::new() };
    assert_eq!(m.len(), dims.batch, "one drop-path scale per sample");
    m.iter().map(|&k| k == 0.0).collect()
}

/// `softmax(q k^T / sqrt(head_dim)) v` for every head: returns the heads' outputs side by
/// side (`(rows, width)`) and each row's softmax statistics. Not the probabilities: they were
/// the block's largest saved activation (`batch * heads * tokens^2` floats), written to memory
/// here and read back by the backward pass, which now makes them again in cache (one product
/// and the exponentials, the same operations, so the same values to the bit).
///
/// `mask` is the branch's drop-path scale per sample, if any: a sample it drops (scale 0)
/// gets zeros, not its attention, which the residual would multiply by zero.
pub fn forward(qkv: &[f32], dims: Heads, mask: Option<&[f32]>) -> (Stats, Vec<f32>) {
    let t = dims.tokens;
    assert_eq!(qkv.len(), dims.batch * t * 3 * dims.width());
    let dropped = dropped_samples(mask, dims);
    let mut stats = vec![0.0; dims.batch * dims.heads * 2 * t];
    let mut out = Filled::new(dims.batch * t * dims.width());
    let o = out.disjoint();
    stats.par_chunks_mut(2 * t).enumerate().for_each_init(
        || Filled::new(t * t),
        |scratch, (i, row_stats)| {
            let (b, h) = (i / dims.heads, i % dims.heads);
            if skipped(&dropped, b) {
                // SAFETY: head h of sample b in `out`, this task's alone
                unsafe { zero_view(o, dims.merged(b, h)) };
                return;
            }
            let p = probabilities(qkv, dims, b, h, scratch, Softmax::Keep(row_stats));
            // SAFETY: the `out` view is head h of sample b, written by this task only; the
            // product overwrites it (never reads it)
            unsafe {
                head_product(
                    o.at(0),
                    dims.merged(b, h),
                    p,
                    Mat::dense(t, t),
                    qkv,
                    dims.qkv(2, b, h),
                    1.0,
                );
            }
        },
    );
    let stats = Stats {
        rows: stats,
        dropped,
    };
    // SAFETY: the heads of every sample cover every column of every row of `out`
    (stats, unsafe { out.assume_filled() })
}

/// Whether [`probabilities`] keeps each row's statistics (forward) or uses those kept.
enum Softmax<'a> {
    Keep(&'a mut [f32]),
    Again(&'a [f32]),
}

/// Head `h` of sample `b`'s probabilities (`tokens x tokens`), made in `scratch`: the scaled
/// scores `q k^T / sqrt(head_dim)`, then each row's softmax.
fn probabilities<'a>(
    qkv: &[f32],
    dims: Heads,
    b: usize,
    h: usize,
    scratch: &'a mut Filled,
    softmax: Softmax,
) -> &'a mut [f32] {
    let t = dims.tokens;
    let p = &mut scratch.parts()[..t * t];
    // SAFETY: `p` is `t * t` floats of the caller's own scratch; the product overwrites it
    // (never reads it)
    unsafe {
        head_product(
            p.as_mut_ptr().cast(),
            Mat::dense(t, t),
            qkv,
            dims.qkv(0, b, h),
            qkv,
            dims.qkv(1, b, h).t(),
            dims.scale(),
        );
    }
    // SAFETY: the product above wrote every element of `p`
    let p = unsafe { assume_init(p) };
    match softmax {
        Softmax::Keep(stats) => softmax_rows(p, t, stats),
        Softmax::Again(stats) => softmax_rows_again(p, t, stats),
    }
    p
}

/// The gradient of `qkv` from the gradient of the merged output; zeros for the samples the
/// forward pass skipped (their output's gradient is zero).
pub fn backward(qkv: &[f32], stats: &Stats, dims: Heads, d_out: &[f32]) -> Vec<f32> {
    let t = dims.tokens;
    assert_eq!(d_out.len(), dims.batch * t * dims.width());
    assert_eq!(stats.rows.len(), dims.batch * dims.heads * 2 * t);
    let mut d_qkv = Filled::new(qkv.len());
    let d = d_qkv.disjoint();
    (0..dims.batch * dims.heads).into_par_iter().for_each_init(
        || (Filled::new(t * t), vec![0.0f32; t * t]),
        |(scratch, dp), i| {
            let (b, h) = (i / dims.heads, i % dims.heads);
            if skipped(&stats.dropped, b) {
                for which in 0..3 {
                    // SAFETY: head h of sample b in q, k or v, this task's alone
                    unsafe { zero_view(d, dims.qkv(which, b, h)) };
                }
                return;
            }
            let row_stats = &stats.rows[i * 2 * t..(i + 1) * 2 * t];
            let p = probabilities(qkv, dims, b, h, scratch, Softmax::Again(row_stats));
            let square = Mat::dense(t, t);
            let (q, k, v) = (dims.qkv(0, b, h), dims.qkv(1, b, h), dims.qkv(2, b, h));
            let d_o = dims.merged(b, h);
            // SAFETY: `dp` is this task's scratch; the three `d_qkv` views are head h of
            // sample b in q, k and v, written by this task only (each product overwrites its
            // destination).
            unsafe {
                // dP = dO V^T, dV = P^T dO
                head_product(dp.as_mut_ptr(), square, d_out, d_o, qkv, v.t(), 1.0);
                head_product(d.at(0), v, p, square.t(), d_out, d_o, 1.0);
            }
            // softmax: dS = P (dP - rowsum(dP P)), with the score scale folded in
            softmax_backward_rows(dp, p, t, dims.scale());
            unsafe {
                // dQ = dS K, dK = dS^T Q
                head_product(d.at(0), q, dp, square, qkv, k, 1.0);
                head_product(d.at(0), k, dp, square.t(), qkv, q, 1.0);
            }
        },
    );
    // SAFETY: the q, k and v heads of every sample cover every element
    unsafe { d_qkv.assume_filled() }
}

/// [`forward`] for each sample's first token alone (the class token: all a classifier reads
/// from the last block, whose other tokens' outputs would be computed for nothing): returns
/// those tokens' outputs, heads side by side (`(batch, width)`), and their softmax statistics.
/// The first token still attends to every token.
pub fn forward_first(qkv: &[f32], dims: Heads, mask: Option<&[f32]>) -> (Stats, Vec<f32>) {
    let (t, hd) = (dims.tokens, dims.head_dim);
    assert!(t > 0, "no first token");
    assert_eq!(qkv.len(), dims.batch * t * 3 * dims.width());
    let dropped = dropped_samples(mask, dims);
    let mut stats = vec![0.0; dims.batch * dims.heads * 2];
    let mut out = vec![0.0; dims.batch * dims.width()];
    stats
        .par_chunks_mut(2)
        .zip(out.par_chunks_mut(hd.max(1)))
        .enumerate()
        .for_each(|(i, (stats, out))| {
            let (b, h) = (i / dims.heads, i % dims.heads);
            if skipped(&dropped, b) {
                return; // its output stays zero
            }
            let p = first_probabilities(qkv, dims, b, h, Softmax::Keep(stats));
            for (j, pj) in p.iter().enumerate() {
                let v = dims.row(qkv, 2, b, h, j);
                out.iter_mut().zip(v).for_each(|(o, v)| *o += pj * v);
            }
        });
    let stats = Stats {
        rows: stats,
        dropped,
    };
    (stats, out)
}

/// The first token's probabilities over the tokens of sample `b`, head `h`.
fn first_probabilities(qkv: &[f32], dims: Heads, b: usize, h: usize, softmax: Softmax) -> Vec<f32> {
    let q = dims.row(qkv, 0, b, h, 0);
    let mut p: Vec<f32> = (0..dims.tokens)
        .map(|j| dot(q, dims.row(qkv, 1, b, h, j)) * dims.scale())
        .collect();
    let cols = p.len();
    match softmax {
        Softmax::Keep(stats) => softmax_rows(&mut p, cols, stats),
        Softmax::Again(stats) => softmax_rows_again(&mut p, cols, stats),
    }
    p
}

/// The gradient of `qkv` from the gradient of the first tokens' outputs (`(batch, width)`),
/// for [`forward_first`]: each first token's query, and every token's key and value (the other
/// queries, unused, get zeros).
pub fn backward_first(qkv: &[f32], stats: &Stats, dims: Heads, d_out: &[f32]) -> Vec<f32> {
    let (t, hd, d) = (dims.tokens, dims.head_dim, dims.width());
    assert_eq!(d_out.len(), dims.batch * d);
    assert_eq!(stats.rows.len(), dims.batch * dims.heads * 2);
    let mut d_qkv = vec![0.0; qkv.len()];
    let at = Disjoint(d_qkv.as_mut_ptr());
    (0..dims.batch * dims.heads).into_par_iter().for_each(|i| {
        let (b, h) = (i / dims.heads, i % dims.heads);
        if skipped(&stats.dropped, b) {
            return; // its gradient stays zero
        }
        let p = first_probabilities(
            qkv,
            dims,
            b,
            h,
            Softmax::Again(&stats.rows[2 * i..2 * i + 2]),
        );
        let d_o = &d_out[b * d + h * hd..b * d + (h + 1) * hd];
        // the slice of head h, part `which`, token j of sample b in `d_qkv`: this task's alone
        let part = |which: usize, j: usize| {
            let start = dims.row_start(which, b, h, j);
            // SAFETY: within `d_qkv`; head h of sample b is written by this task only
            unsafe { std::slice::from_raw_parts_mut(at.at(start), hd) }
        };
        // dP = dO V^T, dV = p dO; then dS = p (dP - sum(p dP)) * scale
        let dp: Vec<f32> = (0..t)
            .map(|j| dot(d_o, dims.row(qkv, 2, b, h, j)))
            .collect();
        for (j, pj) in p.iter().enumerate() {
            part(2, j)
                .iter_mut()
                .zip(d_o)
                .for_each(|(g, o)| *g = pj * o);
        }
        let c = dot(&dp, &p);
        let q = dims.row(qkv, 0, b, h, 0);
        let d_q = part(0, 0);
        for j in 0..t {
            let ds = p[j] * (dp[j] - c) * dims.scale();
            // dQ = dS K, dK = dS^T Q
            let k = dims.row(qkv, 1, b, h, j);
            d_q.iter_mut().zip(k).for_each(|(g, k)| *g += ds * k);
            part(1, j).iter_mut().zip(q).for_each(|(g, q)| *g = ds * q);
        }
    });
    d_qkv
}

/// Whether sample `b` is among the `dropped` ([`dropped_samples`]).
fn skipped(dropped: &[bool], b: usize) -> bool {
    dropped.get(b).copied().unwrap_or(false)
}

/// Zeros over the view `v` of the buffer behind `dst`.
///
/// # Safety
/// `v` must lie within that buffer, with unit column stride, and nothing else may access its
/// elements meanwhile.
unsafe fn zero_view(dst: Disjoint, v: Mat) {
    assert_eq!(v.col_stride, 1, "a head's rows are consecutive channels");
    for r in 0..v.rows {
        std::ptr::write_bytes(dst.at(v.offset + r * v.row_stride), 0, v.cols);
    }
}

/// `dst = scale a b` for one head, on this thread: `dst` is row-major (unit column stride) and
/// overwritten, never read. Computed as `gemm` computes it after turning a row-major
/// destination around (`dst^T = b^T a^T`: the same micro-kernels, the same single depth pass),
/// with `b^T` packed (or read in place, where its layout is the packing's) and `a^T` read in
/// place, without the driver's work in every call.
///
/// # Safety
/// `dst` must be valid for writes over `d`'s extent and nothing else may access those
/// elements meanwhile.
unsafe fn head_product(dst: *mut f32, d: Mat, a: &[f32], am: Mat, b: &[f32], bm: Mat, scale: f32) {
    check_product(d, a, am, b, bm);
    assert_eq!(d.col_stride, 1, "a head's product goes to a row-major view");
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    let (b, isa) = (&b[bm.offset..], Isa::active());
    let (m, k) = (bm.cols, bm.rows);
    // `b^T` column-major (a transposed head: v, k, q or d_out, whose channels lie
    // consecutive) is read in place where it makes whole panels
    let lhs = match bm.col_stride {
        1 => PackedLhs::in_place(isa, b, m, k, bm.row_stride, d.rows),
        _ => None,
    }
    .unwrap_or_else(|| PackedLhs::new(isa, b, m, k, bm.col_stride, bm.row_stride, d.rows));
    let rhs = Strided {
        ptr: a.as_ptr().add(am.offset),
        rs: am.col_stride,
        cs: am.row_stride,
    };
    lhs.multiply(d.rows, dst.add(d.offset), d.row_stride, rhs, scale, false);
}

crate::multiversion! {
    /// Through a row softmax `p`: `g = p (g - rowsum(g p)) * scale`, in place.
    fn softmax_backward_rows(g: &mut [f32], p: &[f32], cols: usize, scale: f32) {
        for (g_row, p_row) in g.chunks_exact_mut(cols).zip(p.chunks_exact(cols)) {
            let c = dot(g_row, p_row);
            for (g, pv) in g_row.iter_mut().zip(p_row) {
                *g = pv * (*g - c) * scale;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Forward = fn(&[f32], Heads, Option<&[f32]>) -> (Stats, Vec<f32>);

    #[test]
    fn samples_that_drop_path_drops_are_not_computed_and_the_others_are_unchanged() {
        // sample 1 is dropped; its inputs are NaN, so any of its arithmetic would show
        let dims = Heads {
            batch: 3,
            tokens: 5,
            heads: 2,
            head_dim: 4,
        };
        let (d, t) = (dims.width(), dims.tokens);
        let values = |len: usize, per_sample: usize| -> Vec<f32> {
            (0..len)
                .map(|i| match i / per_sample {
                    1 => f32::NAN,
                    _ => ((i * 7919) % 101) as f32 / 50.0 - 1.0,
                })
                .collect()
        };
        let qkv = values(dims.batch * t * 3 * d, t * 3 * d);
        let mask = [1.25, 0.0, 1.25];
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        // every token, then the first token alone
        for first in [false, true] {
            let (rows, fwd): (usize, Forward) = match first {
                false => (t, forward),
                true => (1, forward_first),
            };
            let d_out = values(dims.batch * rows * d, rows * d);
            // the backward pass skips what the forward pass skipped, from its statistics
            let backward = |stats: &Stats| match first {
                false => backward(&qkv, stats, dims, &d_out),
                true => backward_first(&qkv, stats, dims, &d_out),
            };
            let (stats, out) = fwd(&qkv, dims, Some(&mask));
            let (plain_stats, plain) = fwd(&qkv, dims, None);
            let d_qkv = backward(&stats);
            let plain_d = backward(&plain_stats);
            let (o, g) = (rows * d, t * 3 * d);
            assert!(
                out[o..2 * o].iter().all(|v| v.to_bits() == 0),
                "first {first}"
            );
            assert!(
                d_qkv[g..2 * g].iter().all(|v| v.to_bits() == 0),
                "first {first}"
            );
            for s in [0, 2] {
                assert_eq!(bits(&out[s * o..][..o]), bits(&plain[s * o..][..o]));
                assert_eq!(bits(&d_qkv[s * g..][..g]), bits(&plain_d[s * g..][..g]));
            }
        }
    }
}
