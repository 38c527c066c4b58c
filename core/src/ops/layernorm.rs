//! LayerNorm over the last axis on host buffers, forward and backward in one pass per row
//! (dfdx's `normalize` is a chain of broadcast ops, each with its own pass and buffer).

use super::fastmath::{dot, sum};
use super::rows::{add_chunk_sums, assume_init, Filled, CHUNK};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// What the backward pass needs: the normalised input and each row's `1 / sqrt(var + eps)`.
pub struct Normalized {
    pub xhat: Vec<f32>,
    pub rstd: Vec<f32>,
}

/// `xhat * weight + bias` with `xhat = (x - mean) / sqrt(var + eps)` per row (biased
/// variance, two passes, as PyTorch), and what the backward pass needs. Each block of rows
/// lays down its part of both outputs while in cache (no zeroing pass over them).
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], eps: f32) -> (Vec<f32>, Normalized) {
    let cols = weight.len();
    let mut xhat = Filled::new(x.len());
    let mut out = Filled::new(x.len());
    let mut rstd = vec![0.0; x.len() / cols];
    xhat.parts()
        .par_chunks_mut(CHUNK * cols)
        .zip(out.parts().par_chunks_mut(CHUNK * cols))
        .zip(rstd.par_chunks_mut(CHUNK))
        .zip(x.par_chunks(CHUNK * cols))
        .for_each(|(((xh, o), rs), x)| normalize_rows(x, xh, o, rs, weight, bias, eps));
    // SAFETY: the chunks cover every element of both, each initialised by its task
    let (out, xhat) = unsafe { (out.assume_filled(), xhat.assume_filled()) };
    (out, Normalized { xhat, rstd })
}

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

/// Adds the input gradient into `dx`, given the output gradient `dy`, and returns the affine
/// gradients `(dweight, dbias)`.
pub fn backward(
    dy: &[f32],
    saved: &Normalized,
    weight: &[f32],
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let cols = weight.len();
    let xhat = &saved.xhat;
    dx.par_chunks_mut(CHUNK * cols)
        .zip(dy.par_chunks(CHUNK * cols))
        .zip(xhat.par_chunks(CHUNK * cols))
        .zip(saved.rstd.par_chunks(CHUNK))
        .for_each(|(((dx, dy), xh), rs)| input_gradient_rows(dy, xh, rs, weight, dx));
    let mut affine = vec![0.0; 2 * cols];
    add_chunk_sums(saved.rstd.len(), cols, 2, &mut affine, |r0, r1, acc| {
        let (dw, db) = acc.split_at_mut(cols);
        let at = r0 * cols..r1 * cols;
        affine_sums(&dy[at.clone()], &xhat[at], dw, db);
    });
    let dbias = affine.split_off(cols);
    (affine, dbias)
}

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
