//! Branch-free float32 `exp` and GELU that the compiler vectorises, and reductions with eight
//! running sums (a plain `iter().sum()` must add in order, so it cannot use SIMD lanes).
//! The same kind of kernels PyTorch runs on the CPU (Cephes-style exp, Abramowitz-Stegun erf);
//! accuracy is tested against float64 below. The polynomials are written with [`madd`], which
//! is one fused multiply-add where the level has one (`FMA` in [`crate::multiversion!`]): a
//! third fewer instructions there, and one rounding instead of two.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part exact in float32 and the rest (Cody-Waite reduction).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding it rounds a float32 of magnitude < 2^22 to an integer.
const ROUNDER: f32 = 12_582_912.0;

/// `a * b + c`, rounded once when `FMA` (the instruction, inlined into a kernel compiled for a
/// level that has it) and twice otherwise.
#[inline(always)]
pub fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `e^x`, within 2 ulp for `x` in [-87, 88]; smaller inputs give e^-87, larger ones e^88,
/// NaN stays NaN.
#[inline(always)]
pub fn exp<const FMA: bool>(x: f32) -> f32 {
    let m = madd::<FMA>;
    let x = x.clamp(-87.0, 88.0);
    let shifted = m(x, LOG2E, ROUNDER);
    let n = shifted - ROUNDER;
    let r = m(-n, LN2_LO, m(-n, LN2_HI, x));
    let poly = m(
        m(
            m(m(1.987_569_1e-4, r, 1.398_199_9e-3), r, 8.333_452e-3),
            r,
            4.166_579_6e-2,
        ),
        r,
        1.666_666_5e-1,
    );
    let p = m(m(poly, r, 0.5), r * r, r + 1.0);
    // the integer n sits in the low mantissa bits of `shifted`; 2^n from it directly
    let n_int = shifted.to_bits() as i32 - ROUNDER.to_bits() as i32;
    p * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// 1 / sqrt(2 pi)
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Exact (erf) GELU `x Phi(x)` and its slope `Phi(x) + x phi(x)`. `Phi` from the upper tail
/// `Q(|x|) = erfc(|x|/sqrt 2) / 2` (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7 in erf), which
/// avoids the cancellation of `1 - Q` for negative x; one exp serves both tail and density.
#[inline(always)]
pub fn gelu_and_slope<const FMA: bool>(x: f32) -> (f32, f32) {
    let m = madd::<FMA>;
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / m(0.327_591_1, z, 1.0);
    let poly = t * m(
        m(
            m(m(1.061_405_4, t, -1.453_152), t, 1.421_413_7),
            t,
            -0.284_496_74,
        ),
        t,
        0.254_829_6,
    );
    let e = exp::<FMA>(-0.5 * x * x);
    let tail = 0.5 * poly * e;
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    (x * cdf, m(x * INV_SQRT_2PI, e, cdf))
}

crate::multiversion! {
    /// GELU in place on `x`, its slope written into `slope` (which it need not have been
    /// initialised: every element is written).
    pub fn gelu_in_place(x: &mut [f32], slope: &mut [std::mem::MaybeUninit<f32>]) {
        assert_eq!(x.len(), slope.len());
        for (v, s) in x.iter_mut().zip(slope.iter_mut()) {
            let (g, d) = gelu_and_slope::<FMA>(*v);
            *v = g;
            s.write(d);
        }
    }
}

crate::multiversion! {
    /// `x += y`, element-wise.
    pub fn add_in_place(x: &mut [f32], y: &[f32]) {
        for (a, b) in x.iter_mut().zip(y) {
            *a += b;
        }
    }
}

crate::multiversion! {
    /// `x *= y`, element-wise.
    pub fn mul_in_place(x: &mut [f32], y: &[f32]) {
        for (a, b) in x.iter_mut().zip(y) {
            *a *= b;
        }
    }
}

crate::multiversion! {
    /// Softmax of each row of a row-major buffer, in place, writing each row's maximum and
    /// `1 / sum(exp(x - maximum))` into `stats` (two floats per row), from which
    /// [`softmax_rows_again`] makes the same values. Each row's maximum is subtracted first, so
    /// that the exponentials run as one loop over all the rows: row by row, the elements past
    /// a row's last whole vector went one at a time, each costing what a vector costs
    /// (attention's rows of 65: a ninth of the elements), and the whole softmax took 1.37x as
    /// long.
    pub fn softmax_rows(x: &mut [f32], cols: usize, stats: &mut [f32]) {
        let rows = whole_rows(x, cols, stats.len());
        let x = &mut x[..rows * cols];
        for (row, s) in x.chunks_exact(cols).zip(stats.chunks_exact_mut(2)) {
            s[0] = max(row);
        }
        exp_below_maxima::<FMA>(x, cols, stats);
        for (row, s) in x.chunks_exact(cols).zip(stats.chunks_exact_mut(2)) {
            s[1] = 1.0 / sum(row);
        }
        scale_rows_by_sums(x, cols, stats);
    }
}

crate::multiversion! {
    /// The softmax [`softmax_rows`] computed for the same rows, from the `stats` it wrote:
    /// its last two steps, on the same values, so the same result to the bit.
    pub fn softmax_rows_again(x: &mut [f32], cols: usize, stats: &[f32]) {
        let rows = whole_rows(x, cols, stats.len());
        let x = &mut x[..rows * cols];
        exp_below_maxima::<FMA>(x, cols, stats);
        scale_rows_by_sums(x, cols, stats);
    }
}

/// `x = exp(x - maximum)`, each row's maximum first in its two `stats`.
#[inline(always)]
fn exp_below_maxima<const FMA: bool>(x: &mut [f32], cols: usize, stats: &[f32]) {
    for (row, s) in x.chunks_exact_mut(cols).zip(stats.chunks_exact(2)) {
        for v in row.iter_mut() {
            *v -= s[0];
        }
    }
    for v in x.iter_mut() {
        *v = exp::<FMA>(*v);
    }
}

/// Each row times the second of its two `stats` (`1 / sum`).
#[inline(always)]
fn scale_rows_by_sums(x: &mut [f32], cols: usize, stats: &[f32]) {
    for (row, s) in x.chunks_exact_mut(cols).zip(stats.chunks_exact(2)) {
        for v in row.iter_mut() {
            *v *= s[1];
        }
    }
}

/// The rows of `cols` floats in `x`, which must be as many as the `stats` (two per row).
#[inline(always)]
fn whole_rows(x: &[f32], cols: usize, stats: usize) -> usize {
    let rows = x.len() / cols;
    assert!(
        x.len() == rows * cols && stats == 2 * rows,
        "softmax of {} floats in rows of {cols} with statistics for {} rows",
        x.len(),
        stats / 2
    );
    rows
}

/// Sum with eight lanes: the same result for the same input, whatever the caller.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    fold(acc) + rest.iter().sum::<f32>()
}

/// Largest element with eight lanes (a single running maximum is a chain of dependent
/// instructions as long as the row). NaNs are skipped, as by `f32::max`.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = acc[i].max(c[i]);
        }
    }
    acc.iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// Dot product with eight lanes.
#[inline(always)]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = [0.0f32; 8];
    let (cx, cy) = (x.chunks_exact(8), y.chunks_exact(8));
    let rest: f32 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in cx.zip(cy) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    fold(acc) + rest
}

#[inline(always)]
fn fold(acc: [f32; 8]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::isa::Isa;

    /// The one-value functions as the active level's kernels compute them.
    fn active_exp(x: f32) -> f32 {
        if Isa::active().fused_multiply_add() {
            exp::<true>(x)
        } else {
            exp::<false>(x)
        }
    }

    fn active_gelu(x: f32) -> (f32, f32) {
        if Isa::active().fused_multiply_add() {
            gelu_and_slope::<true>(x)
        } else {
            gelu_and_slope::<false>(x)
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_float64_with_and_without_fma() {
        for exp in [exp::<false>, exp::<true>] {
            let mut worst = 0.0f64;
            for i in -86_990..87_990 {
                let x = i as f32 * 1e-3;
                let want = (x as f64).exp();
                worst = worst.max(((exp(x) as f64 - want) / want).abs());
            }
            assert!(worst < 2.5e-7, "worst relative error {worst}");
            assert!(exp(f32::NAN).is_nan());
            assert_eq!(exp(-1000.0), exp(-87.0));
        }
    }

    #[test]
    fn gelu_and_slope_match_float64_erf_with_and_without_fma() {
        for gelu in [gelu_and_slope::<false>, gelu_and_slope::<true>] {
            for i in -10_000..10_000 {
                let x = i as f32 * 1e-3;
                let xd = x as f64;
                let cdf = 0.5 * (1.0 + libm::erf(xd * std::f64::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
                let (g, s) = gelu(x);
                assert!(
                    (g as f64 - xd * cdf).abs() < 2e-7 * (1.0 + xd.abs()),
                    "gelu({x})"
                );
                assert!(
                    (s as f64 - (cdf + xd * pdf)).abs() < 4e-7 * (1.0 + xd.abs()),
                    "slope at {x}"
                );
            }
            // torch.nn.functional.gelu
            assert!((gelu(1.0).0 - 0.841_344_7).abs() < 2e-7);
            assert!((gelu(-0.5).0 + 0.154_268_84).abs() < 2e-7);
        }
    }

    #[test]
    fn vectorised_kernels_equal_the_scalar_formula_bit_for_bit() {
        // gelu_in_place runs the AVX-512 or AVX2 build where the CPU has one: every lane must
        // give exactly what the one-value function gives with the level's rounding, so results
        // do not depend on the vector width (AVX2 and AVX-512 agree to the bit)
        let x: Vec<f32> = (0..4099).map(|i| (i as f32 - 2049.5) * 7.3e-3).collect();
        let (mut g, mut s) = (x.clone(), vec![std::mem::MaybeUninit::uninit(); x.len()]);
        gelu_in_place(&mut g, &mut s);
        // SAFETY: gelu_in_place writes every element of the slope
        let s: Vec<f32> = s.iter().map(|v| unsafe { v.assume_init() }).collect();
        for ((x, g), s) in x.iter().zip(&g).zip(&s) {
            let (want_g, want_s) = active_gelu(*x);
            assert_eq!(
                (g.to_bits(), s.to_bits()),
                (want_g.to_bits(), want_s.to_bits()),
                "at {x}"
            );
        }
        // rows of 17 and 65 (attention's): full lanes and a remainder; made again from the
        // statistics, the same to the bit
        for cols in [17, 65] {
            let mut p = x[..cols * 13].to_vec();
            let mut stats = vec![0.0; 2 * 13];
            softmax_rows(&mut p, cols, &mut stats);
            for (row, out) in x[..cols * 13].chunks(cols).zip(p.chunks(cols)) {
                let m = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let e: Vec<f32> = row.iter().map(|v| active_exp(v - m)).collect();
                let inv = 1.0 / sum(&e);
                for (o, e) in out.iter().zip(&e) {
                    assert_eq!(o.to_bits(), (e * inv).to_bits());
                }
            }
            let mut again = x[..cols * 13].to_vec();
            softmax_rows_again(&mut again, cols, &stats);
            let same = again
                .iter()
                .zip(&p)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "rows of {cols}: made again, the softmax differs");
        }
    }

    #[test]
    fn lane_sums_match_plain_sums() {
        let x: Vec<f32> = (0..67).map(|i| (i as f32).sin()).collect();
        let y: Vec<f32> = (0..67).map(|i| (i as f32).cos()).collect();
        assert!((sum(&x) - x.iter().sum::<f32>()).abs() < 1e-5);
        let d: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert!((dot(&x, &y) - d).abs() < 1e-5);
        assert_eq!(max(&x), x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)));
    }
}
