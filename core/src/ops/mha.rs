//! Multi-head scaled dot-product attention on a fused `qkv` buffer, forward and backward, one
//! task per (sample, head). Heads are read and written in place through strided views, so
//! the head split and merge of the composed version (two permuted copies each way) vanish.
//! The buffers these passes fill are never zeroed: each task's products write its own
//! elements (they overwrite, never read, their destinations), while they are in cache (a
//! zeroing pass over every probability and gradient wrote each of them to memory once more).

use super::fastmath::{dot, softmax_rows};
use super::gemm::{matmul_raw, Mat};
use super::rows::{assume_init, Filled};
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

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// `softmax(q k^T / sqrt(head_dim)) v` for every head: returns the probabilities
/// (`(batch * heads, tokens, tokens)`, kept for the backward pass) and the heads' outputs side
/// by side (`(rows, width)`).
pub fn forward(qkv: &[f32], dims: Heads) -> (Vec<f32>, Vec<f32>) {
    let t = dims.tokens;
    assert_eq!(qkv.len(), dims.batch * t * 3 * dims.width());
    let mut probs = Filled::new(dims.batch * dims.heads * t * t);
    let mut out = Filled::new(dims.batch * t * dims.width());
    let o = out.disjoint();
    probs
        .parts()
        .par_chunks_mut(t * t)
        .enumerate()
        .for_each(|(i, p)| {
            let (b, h) = (i / dims.heads, i % dims.heads);
            let square = Mat::dense(t, t);
            let merged = dims.merged(b, h);
            // SAFETY (all three): `p` is this task's own chunk; the `out` view is head h of
            // sample b, written by this task only; the views lie within their buffers. Both
            // products overwrite their destinations (they never read them), so neither needs
            // zeroing first.
            unsafe {
                matmul_raw(
                    p.as_mut_ptr().cast(),
                    square,
                    qkv,
                    dims.qkv(0, b, h),
                    qkv,
                    dims.qkv(1, b, h).t(),
                    dims.scale(),
                    false,
                    1,
                );
            }
            // SAFETY: the product above wrote every element of `p`
            let p = unsafe { assume_init(p) };
            softmax_rows(p, t);
            unsafe {
                matmul_raw(
                    o.at(0),
                    merged,
                    p,
                    square,
                    qkv,
                    dims.qkv(2, b, h),
                    1.0,
                    false,
                    1,
                );
            }
        });
    // SAFETY: the chunks cover every probability; the heads of every sample cover every
    // column of every row of `out`
    unsafe { (probs.assume_filled(), out.assume_filled()) }
}

/// The gradient of `qkv` from the gradient of the merged output.
pub fn backward(qkv: &[f32], probs: &[f32], dims: Heads, d_out: &[f32]) -> Vec<f32> {
    let t = dims.tokens;
    assert_eq!(d_out.len(), dims.batch * t * dims.width());
    assert_eq!(probs.len(), dims.batch * dims.heads * t * t);
    let mut d_qkv = Filled::new(qkv.len());
    let d = d_qkv.disjoint();
    (0..dims.batch * dims.heads).into_par_iter().for_each_init(
        || vec![0.0f32; t * t],
        |dp, i| {
            let (b, h) = (i / dims.heads, i % dims.heads);
            let square = Mat::dense(t, t);
            let p = &probs[i * t * t..(i + 1) * t * t];
            let (q, k, v) = (dims.qkv(0, b, h), dims.qkv(1, b, h), dims.qkv(2, b, h));
            let d_o = dims.merged(b, h);
            // SAFETY: `dp` is this task's scratch; the three `d_qkv` views are head h of
            // sample b in q, k and v, written by this task only (each product overwrites its
            // destination).
            unsafe {
                // dP = dO V^T, dV = P^T dO
                matmul_raw(
                    dp.as_mut_ptr(),
                    square,
                    d_out,
                    d_o,
                    qkv,
                    v.t(),
                    1.0,
                    false,
                    1,
                );
                matmul_raw(d.at(0), v, p, square.t(), d_out, d_o, 1.0, false, 1);
            }
            // softmax: dS = P (dP - rowsum(dP P)), with the score scale folded in
            softmax_backward_rows(dp, p, t, dims.scale());
            unsafe {
                // dQ = dS K, dK = dS^T Q
                matmul_raw(d.at(0), q, dp, square, qkv, k, 1.0, false, 1);
                matmul_raw(d.at(0), k, dp, square.t(), qkv, q, 1.0, false, 1);
            }
        },
    );
    // SAFETY: the q, k and v heads of every sample cover every element
    unsafe { d_qkv.assume_filled() }
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
