//! Summaries of a measurement repeated in rounds (`bench --rounds`, `serve-load`): on a shared
//! machine that drifts, one round says little; the median of several and their range say more.

/// The median, lowest and highest of `xs` (which must not be empty).
pub fn median_and_range(xs: &[f64]) -> (f64, f64, f64) {
    assert!(!xs.is_empty(), "no rounds to summarise");
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

/// The probability that the lowest and highest of `n` independent rounds enclose the
/// distribution's median: all of them fall on one side of it with probability 2 * 2^-n.
pub fn range_coverage(n: usize) -> f64 {
    1.0 - 0.5f64.powi(n as i32 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts_and_the_coverage_of_the_range() {
        assert_eq!(median_and_range(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median_and_range(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(median_and_range(&[7.0]), (7.0, 7.0, 7.0));
        assert_eq!(range_coverage(1), 0.0);
        assert_eq!(range_coverage(3), 0.75);
        assert_eq!(range_coverage(5), 0.9375);
    }
}
