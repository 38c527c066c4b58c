//! LayerNorm over the last axis on host buffers, forward and backward in one pass per row
//! (dfdx's `normalize` is a chain of broadcast ops, each with its own pass and buffer).

use super::fastmath::{add_in_place, dot, sum};
use super::rows::{assume_init, Disjoint, Filled, CHUNK};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// What the backward pass needs: the normalised input and each row's `1 / sqrt(var + eps)`.
pub struct Normalized {
    pub xhat: Vec<f32>,
    pub rstd: Vec<f32>,
}

/// `xhat * weight + bias` with `xhat = (x - mean) / sqrt(var + eps)` per row (biased
/// variance, two passes, as PyTorch), and what the backward pass needs, in parallel blocks
/// of rows.
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], eps: f32) -> (Vec<f32>, Normalized) {
    let cols = weight.len();
    let filling = Filling::new(x.len() / cols.max(1), weight, bias, eps);
    x.par_chunks(CHUNK * cols.max(1))
        .enumerate()
        // SAFETY: each chunk's rows are its task's alone, within the rows of `x`
        .for_each(|(c, x)| unsafe { filling.rows(c * CHUNK, x) });
    // SAFETY: the chunks cover every row
    unsafe { filling.finish() }
}

/// LayerNorm's outputs filled block of rows by block of rows, each by the task that made its
/// input rows (a product's block, normalised while in cache, instead of in a pass of its
/// own over the whole input).
pub struct Filling<'a> {
    weight: &'a [f32],
    bias: &'a [f32],
    eps: f32,
    rows: usize,
    out: Filled,
    xhat: Filled,
    rstd: Vec<f32>,
    at: [Disjoint; 3],
}

impl<'a> Filling<'a> {
    pub fn new(rows: usize, weight: &'a [f32], bias: &'a [f32], eps: f32) -> Filling<'a> {
        let len = rows * weight.len();
        let (mut out, mut xhat, mut rstd) = (Filled::new(len), Filled::new(len), vec![0.0; rows]);
        let at = [out.disjoint(), xhat.disjoint(), Disjoint(rstd.as_mut_ptr())];
        Filling {
            weight,
            bias,
            eps,
            rows,
            out,
            xhat,
            rstd,
            at,
        }
    }

    /// Normalises `x`, whole rows, as the rows from `first` on.
    ///
    /// # Safety
    /// No other call may fill any of these rows meanwhile.
    pub unsafe fn rows(&self, first: usize, x: &[f32]) {
        let cols = self.weight.len();
        let n = x.len() / cols.max(1);
        assert!(
            n * cols == x.len() && first + n <= self.rows,
            "rows outside the LayerNorm's"
        );
        let part = |d: Disjoint, per_row: usize| {
            std::slice::from_raw_parts_mut(d.at(first * per_row).cast(), n * per_row)
        };
        let [out, xhat, rstd] = self.at;
        let rstd = std::slice::from_raw_parts_mut(rstd.at(first), n);
        normalize_rows(
            x,
            part(xhat, cols),
            part(out, cols),
            rstd,
            self.weight,
            self.bias,
            self.eps,
        );
    }

    /// The output and what the backward pass needs.
    ///
    /// # Safety
    /// Every row must have been filled by [`Filling::rows`].
    pub unsafe fn finish(self) -> (Vec<f32>, Normalized) {
        let (out, xhat) = (self.out.assume_filled(), self.xhat.assume_filled());
        let rstd = self.rstd;
        (out, Normalized { xhat, rstd })
    }
}

// SAFETY: tasks write through `at` to disjoint rows only (`Filling::rows`' contract)
unsafe impl Sync for Filling<'_> {}

crate::multiversion! {
    /// [`forward`] on a block of rows, on this thread; writes every element of `xhat` and
    /// `out`, which need not have been initialised.
    pub fn normalize_rows(x: &[f32], xhat: &mut [MaybeUninit<f32>], out: &mut [MaybeUninit<f32>], rstd: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
        let cols = weight.len();
        for (((x, xh), o), r) in x
            .chunks_exact(cols)
            .zip(xhat.chunks_exact_mut(cols))
            .zip(out.chunks_exact_mut(cols))
            .zip(rstd.iter_mut())
        {
            let mean = sum(x) / cols as f32;
            for (h, v) in xh.iter_mut().zip(x) {
                h.write(v - mean);
            }
            // SAFETY: every element of the row was written just above
            let xh = unsafe { assume_init(xh) };
            let s = 1.0 / (dot(xh, xh) / cols as f32 + eps).sqrt();
            *r = s;
            for (((h, o), w), b) in xh.iter_mut().zip(o.iter_mut()).zip(weight).zip(bias) {
                *h *= s;
                o.write(*h * w + b);
            }
        }
    }
}

/// LayerNorm's backward, block of rows by block of rows, each by the task that made its output
/// gradient (a product's block, while in cache): adds each row's input gradient into `dx`
/// and keeps each block's partial affine gradients, added in block order by
/// [`Backward::finish`], so they do not depend on the number of threads.
pub struct Backward<'a> {
    saved: &'a Normalized,
    weight: &'a [f32],
    block_rows: usize,
    dx: Disjoint,
    /// per block: its `dweight` then its `dbias` sums
    partials: Vec<f32>,
    partial: Disjoint,
}

impl<'a> Backward<'a> {
    /// For blocks of `block_rows` rows; `dx` (rows as `saved`'s) receives the input gradient.
    pub fn new(
        saved: &'a Normalized,
        weight: &'a [f32],
        dx: &'a mut [f32],
        block_rows: usize,
    ) -> Backward<'a> {
        let rows = saved.rstd.len();
        assert_eq!(dx.len(), rows * weight.len(), "input gradient's shape");
        assert!(block_rows > 0);
        let mut partials = vec![0.0; rows.div_ceil(block_rows) * 2 * weight.len()];
        let partial = Disjoint(partials.as_mut_ptr());
        Backward {
            saved,
            weight,
            block_rows,
            dx: Disjoint(dx.as_mut_ptr()),
            partials,
            partial,
        }
    }

    /// The rows from `first` on (a whole block: `first` a multiple of the block's rows), given
    /// their output gradient `dy`.
    ///
    /// # Safety
    /// No other call may take these rows meanwhile.
    pub unsafe fn rows(&self, first: usize, dy: &[f32]) {
        let cols = self.weight.len();
        let n = dy.len() / cols.max(1);
        assert!(
            n * cols == dy.len()
                && first + n <= self.saved.rstd.len()
                && first.is_multiple_of(self.block_rows)
                && n <= self.block_rows,
            "not a block of the LayerNorm's rows"
        );
        let span = first * cols..(first + n) * cols;
        let xhat = &self.saved.xhat[span.clone()];
        let dx = std::slice::from_raw_parts_mut(self.dx.at(span.start), span.len());
        input_gradient_rows(
            dy,
            xhat,
            &self.saved.rstd[first..first + n],
            self.weight,
            dx,
        );
        let sums = std::slice::from_raw_parts_mut(
            self.partial.at(first / self.block_rows * 2 * cols),
            2 * cols,
        );
        let (dw, db) = sums.split_at_mut(cols);
        affine_sums(dy, xhat, dw, db);
    }

    /// The affine gradients `(dweight, dbias)`, once every block has been through
    /// [`Backward::rows`].
    pub fn finish(self) -> (Vec<f32>, Vec<f32>) {
        let cols = self.weight.len();
        let mut affine = vec![0.0; 2 * cols];
        for p in self.partials.chunks_exact(2 * cols.max(1)) {
            add_in_place(&mut affine, p);
        }
        let dbias = affine.split_off(cols);
        (affine, dbias)
    }
}

// SAFETY: tasks write through `dx` and `partial` to disjoint blocks only (`Backward::rows`'
// contract)
unsafe impl Sync for Backward<'_> {}

crate::multiversion! {
    /// `dx += rstd (g - mean(g) - xhat mean(g xhat))` with `g = dy * weight`, per row.
    fn input_gradient_rows(dy: &[f32], xhat: &[f32], rstd: &[f32], weight: &[f32], dx: &mut [f32]) {
        let cols = weight.len();
        let mut g = vec![0.0f32; cols];
        for (((dy, xh), s), dx) in dy
            .chunks_exact(cols)
            .zip(xhat.chunks_exact(cols))
            .zip(rstd)
            .zip(dx.chunks_exact_mut(cols))
        {
            for ((g, d), w) in g.iter_mut().zip(dy).zip(weight) {
                *g = d * w;
            }
            let mean_g = sum(&g) / cols as f32;
            let mean_gx = dot(&g, xh) / cols as f32;
            for ((d, g), h) in dx.iter_mut().zip(&g).zip(xh) {
                *d += s * (g - mean_g - h * mean_gx);
            }
        }
    }
}

crate::multiversion! {
    /// `dweight += column sums of dy * xhat`, `dbias += column sums of dy`.
    fn affine_sums(dy: &[f32], xhat: &[f32], dweight: &mut [f32], dbias: &mut [f32]) {
        let cols = dweight.len();
        for (d, h) in dy.chunks_exact(cols).zip(xhat.chunks_exact(cols)) {
            for (((w, b), d), h) in dweight.iter_mut().zip(dbias.iter_mut()).zip(d).zip(h) {
                *w += d * h;
                *b += d;
            }
        }
    }
}
