//! A metric over time, and the two transforms every curve goes through before it is drawn:
//! debiased exponential smoothing and min/max-preserving downsampling.

/// Which x value a curve is drawn against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum XAxis {
    Step,
    Epoch,
    /// Seconds since the run's first record.
    Time,
}

/// One metric of one stage: points in the order they were logged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub step: Vec<f64>,
    pub epoch: Vec<f64>,
    pub time: Vec<f64>,
    pub value: Vec<f64>,
}

impl Series {
    pub fn push(&mut self, step: f64, epoch: f64, time: f64, value: f64) {
        self.step.push(step);
        self.epoch.push(epoch);
        self.time.push(time);
        self.value.push(value);
    }

    pub fn len(&self) -> usize {
        self.value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    pub fn xs(&self, axis: XAxis) -> &[f64] {
        match axis {
            XAxis::Step => &self.step,
            XAxis::Epoch => &self.epoch,
            XAxis::Time => &self.time,
        }
    }

    pub fn last(&self) -> Option<f64> {
        self.value.last().copied()
    }
}

/// TensorBoard's smoothing: an exponential moving average with weight `w` in [0, 1), divided
/// by `1 - w^n` so that the first points are not pulled towards zero. Non-finite values are
/// passed through without entering the average (a NaN does not poison the rest).
pub fn smooth(values: &[f64], w: f64) -> Vec<f64> {
    if w <= 0.0 {
        return values.to_vec();
    }
    let w = w.min(0.999);
    let mut avg = 0.0;
    let mut n = 0i32;
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                return v;
            }
            n += 1;
            avg = avg * w + (1.0 - w) * v;
            avg / (1.0 - w.powi(n))
        })
        .collect()
}

/// Points of `(xs, ys)` within `[x0, x1]` (plus one neighbour each side, so lines reach the
/// edges), reduced to at most about `2 * buckets` points: for each of `buckets` equal slices of
/// the x range, the minimum and the maximum in their original order. Spikes survive; the cost
/// is one pass over the visible points. `xs` must be non-decreasing.
pub fn downsample(xs: &[f64], ys: &[f64], x0: f64, x1: f64, buckets: usize) -> Vec<[f64; 2]> {
    let n = xs.len().min(ys.len());
    if n == 0 {
        return Vec::new();
    }
    let start = xs[..n].partition_point(|&x| x < x0).saturating_sub(1);
    let end = (xs[..n].partition_point(|&x| x <= x1) + 1).min(n);
    if end <= start {
        return Vec::new();
    }
    let visible = end - start;
    if visible <= 2 * buckets.max(1) {
        return (start..end).map(|i| [xs[i], ys[i]]).collect();
    }
    let (lo, hi) = (xs[start], xs[end - 1]);
    let width = (hi - lo).max(f64::MIN_POSITIVE) / buckets as f64;
    let mut out = Vec::with_capacity(2 * buckets + 2);
    let mut i = start;
    while i < end {
        let bucket = (((xs[i] - lo) / width) as usize).min(buckets - 1);
        let bucket_end = lo + width * (bucket + 1) as f64;
        let (mut min_i, mut max_i) = (i, i);
        let mut j = i;
        while j < end && (xs[j] < bucket_end || bucket == buckets - 1) {
            if ys[j] < ys[min_i] || ys[min_i].is_nan() {
                min_i = j;
            }
            if ys[j] > ys[max_i] || ys[max_i].is_nan() {
                max_i = j;
            }
            j += 1;
        }
        let (a, b) = if min_i <= max_i {
            (min_i, max_i)
        } else {
            (max_i, min_i)
        };
        out.push([xs[a], ys[a]]);
        if b != a {
            out.push([xs[b], ys[b]]);
        }
        i = j.max(i + 1);
    }
    out
}

/// `y` for a log-scale plot: log10 of positive values; others are dropped by the caller.
pub fn log10(y: f64) -> Option<f64> {
    (y > 0.0 && y.is_finite()).then(|| y.log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_is_debiased_and_constant_series_stay_constant() {
        for v in smooth(&[3.0, 3.0, 3.0], 0.9) {
            assert!((v - 3.0).abs() < 1e-12, "{v}");
        }
        let s = smooth(&[0.0, 10.0], 0.5);
        // avg1 = 0, debiased 0; avg2 = 0*0.5 + 5 = 5, / (1 - 0.25) = 6.666..
        assert_eq!(s[0], 0.0);
        assert!((s[1] - 20.0 / 3.0).abs() < 1e-12);
        assert_eq!(smooth(&[1.0, 2.0], 0.0), vec![1.0, 2.0]);
        let with_nan = smooth(&[1.0, f64::NAN, 1.0], 0.6);
        assert!(with_nan[1].is_nan() && (with_nan[2] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn downsampling_keeps_spikes_and_bounds_the_point_count() {
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let mut ys: Vec<f64> = (0..n).map(|i| (i as f64 * 0.01).sin()).collect();
        ys[54_321] = 50.0; // one spike
        ys[77_777] = -50.0;
        let pts = downsample(&xs, &ys, 0.0, n as f64, 500);
        assert!(pts.len() <= 1002, "{}", pts.len());
        assert!(pts.contains(&[54_321.0, 50.0]) && pts.contains(&[77_777.0, -50.0]));
        assert!(
            pts.windows(2).all(|w| w[0][0] <= w[1][0]),
            "x stays ordered"
        );
        let max = pts.iter().map(|p| p[1]).fold(f64::MIN, f64::max);
        assert_eq!(max, 50.0);
    }

    #[test]
    fn downsampling_a_window_keeps_neighbours_and_small_series_whole() {
        let xs: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let ys = xs.clone();
        assert_eq!(
            downsample(&xs, &ys, 2.5, 5.5, 100).first(),
            Some(&[2.0, 2.0])
        );
        assert_eq!(
            downsample(&xs, &ys, 2.5, 5.5, 100).last(),
            Some(&[6.0, 6.0])
        );
        assert_eq!(downsample(&xs, &ys, -1.0, 20.0, 100).len(), 10);
        assert!(downsample(&[], &[], 0.0, 1.0, 10).is_empty());
    }
}
