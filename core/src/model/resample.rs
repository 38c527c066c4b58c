//! Position embeddings for another resolution: the grid of patch positions resized by bicubic
//! interpolation, as DeiT (and so the paper's reference code) does before fine-tuning at 384 px:
//! PyTorch's `F.interpolate(grid, size, mode="bicubic", align_corners=False)` (cubic
//! convolution with a = -0.75, borders clamped), the class token's embedding kept as it is.

/// The embeddings `(1 + old*old, dim)` of a class token and a square grid, row-major, resized
/// to a `new x new` grid: `(1 + new*new, dim)`.
pub fn resample_pos_embed(values: &[f32], old: usize, new: usize, dim: usize) -> Vec<f32> {
    assert_eq!(
        values.len(),
        (1 + old * old) * dim,
        "class token + {old}x{old} grid of {dim}"
    );
    let mut out = Vec::with_capacity((1 + new * new) * dim);
    out.extend_from_slice(&values[..dim]);
    let grid = &values[dim..];
    let rows = taps(old, new);
    let cols = taps(old, new);
    for (ys, wy) in &rows {
        for (xs, wx) in &cols {
            for d in 0..dim {
                let mut acc = 0.0f64;
                for (&y, &a) in ys.iter().zip(wy) {
                    for (&x, &b) in xs.iter().zip(wx) {
                        acc += a * b * grid[(y * old + x) * dim + d] as f64;
                    }
                }
                out.push(acc as f32);
            }
        }
    }
    out
}

/// For each output index: the four input indices (clamped to the edge) and their weights.
fn taps(input: usize, output: usize) -> Vec<([usize; 4], [f64; 4])> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|o| {
            // align_corners=False: pixel centres line up; cubic sampling does not clamp here
            let real = scale * (o as f64 + 0.5) - 0.5;
            let base = real.floor();
            let t = real - base;
            let base = base as i64;
            let idx = [-1i64, 0, 1, 2].map(|k| (base + k).clamp(0, input as i64 - 1) as usize);
            (idx, cubic_weights(t))
        })
        .collect()
}

/// Keys' cubic convolution weights at offsets -1, 0, 1, 2 for a fraction `t`, a = -0.75.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0; // |x| <= 1
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A; // 1 < |x| < 2
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_size_is_the_identity_and_constants_stay_constant() {
        let v: Vec<f32> = (0..(1 + 9) * 2).map(|i| i as f32 * 0.5 - 3.0).collect();
        let same = resample_pos_embed(&v, 3, 3, 2);
        for (a, b) in v.iter().zip(&same) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // the weights sum to one: a constant grid stays constant at any size
        let c = vec![0.25f32; (1 + 16) * 3];
        let up = resample_pos_embed(&c, 4, 7, 3);
        assert_eq!(up.len(), (1 + 49) * 3);
        assert!(up.iter().all(|&x| (x - 0.25).abs() < 1e-6));
    }

    #[test]
    fn the_class_token_is_kept() {
        let mut v = vec![0.0f32; (1 + 4) * 2];
        v[0] = 7.0;
        v[1] = -7.0;
        assert_eq!(&resample_pos_embed(&v, 2, 5, 2)[..2], &[7.0, -7.0]);
    }
}
