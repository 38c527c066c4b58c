//! LayerNorm over the last axis on host buffers, forward and backward in one pass per row
//! (dfdx's `normalize` is a chain of broadcast ops, each with its own pass and buffer).

use super::fastmath::{dot, sum};
use super::rows::{add_chunk_sums, par_rows};

/// What the backward pass needs: the normalised input and each row's `1 / sqrt(var + eps)`.
pub struct Normalized {
    pub xhat: Vec<f32>,
    pub rstd: Vec<f32>,
}

/// `out = xhat * weight + bias` with `xhat = (x - mean) / sqrt(var + eps)` per row (biased
/// variance, two passes, as PyTorch).
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) -> Normalized {
    let cols = weight.len();
    let rows = x.len() / cols;
    let mut xhat = vec![0.0; x.len()];
    let mut rstd = vec![0.0; rows];
    use super::rows::CHUNK;
    use rayon::prelude::*;
    xhat.par_chunks_mut(CHUNK * cols)
        .zip(out.par_chunks_mut(CHUNK * cols))
        .zip(rstd.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(c, ((xh, o), rs))| {
            for (i, r) in rs.iter_mut().enumerate() {
                let at = i * cols..(i + 1) * cols;
                let first = (c * CHUNK + i) * cols;
                let row = &x[first..first + cols];
                let mean = sum(row) / cols as f32;
                let xh = &mut xh[at.clone()];
                for (h, v) in xh.iter_mut().zip(row) {
                    *h = v - mean;
                }
                let var = dot(xh, xh) / cols as f32;
                let s = 1.0 / (var + eps).sqrt();
                *r = s;
                for (((h, o), w), b) in xh.iter_mut().zip(&mut o[at]).zip(weight).zip(bias) {
                    *h *= s;
                    *o = *h * w + b;
                }
            }
        });
    Normalized { xhat, rstd }
}

/// Adds the input gradient into `dx` and the affine gradients into `dweight`, `dbias`, given
/// the output gradient `dy`.
pub fn backward(
    dy: &[f32],
    saved: &Normalized,
    weight: &[f32],
    dx: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
) {
    let cols = weight.len();
    let rows = saved.rstd.len();
    let xhat = &saved.xhat;
    par_rows(dx, cols, |first, dx| {
        let mut g = vec![0.0f32; cols];
        for (i, dx) in dx.chunks_exact_mut(cols).enumerate() {
            let r = first + i;
            let at = r * cols..(r + 1) * cols;
            for ((g, d), w) in g.iter_mut().zip(&dy[at.clone()]).zip(weight) {
                *g = d * w;
            }
            let xh = &xhat[at];
            let mean_g = sum(&g) / cols as f32;
            let mean_gx = dot(&g, xh) / cols as f32;
            let s = saved.rstd[r];
            for ((d, g), h) in dx.iter_mut().zip(&g).zip(xh) {
                *d += s * (g - mean_g - h * mean_gx);
            }
        }
    });
    let mut affine = vec![0.0; 2 * cols];
    add_chunk_sums(rows, cols, 2, &mut affine, |r0, r1, acc| {
        let (dw, db) = acc.split_at_mut(cols);
        let at = r0 * cols..r1 * cols;
        for (d, h) in dy[at.clone()].chunks_exact(cols).zip(xhat[at].chunks_exact(cols)) {
            for (((w, b), d), h) in dw.iter_mut().zip(db.iter_mut()).zip(d).zip(h) {
                *w += d * h;
                *b += d;
            }
        }
    });
    for (o, v) in dweight.iter_mut().zip(&affine[..cols]) {
        *o += v;
    }
    for (o, v) in dbias.iter_mut().zip(&affine[cols..]) {
        *o += v;
    }
}
