//! One configuration's seeds as one curve: at each step, the mean over the runs that logged it
//! and the band from the lowest to the highest. Runs are matched by step (seeds of one
//! configuration log the same steps), so a seed that is ahead simply has the band to itself.

use crate::series::{smooth, Series, XAxis};
use crate::store::Metric;
use incubator_events::StageId;
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Band {
    /// Mean x of the runs at each step (on the time axis, seeds differ).
    pub x: Vec<f64>,
    pub mean: Vec<f64>,
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    /// How many runs logged each step.
    pub n: Vec<usize>,
}

/// The band of `series` (one per run) against `axis`, each smoothed with weight `smoothing`
/// first (as the single-run curves are).
pub fn mean_band(series: &[&Series], axis: XAxis, smoothing: f64) -> Band {
    // step -> (sum of x, values)
    let mut at: BTreeMap<u64, (f64, Vec<f64>)> = BTreeMap::new();
    for s in series {
        let ys = smooth(&s.value, smoothing);
        for ((&step, &x), y) in s.step.iter().zip(s.xs(axis)).zip(ys) {
            if !y.is_finite() {
                continue;
            }
            let e = at.entry(step.to_bits()).or_default();
            e.0 += x;
            e.1.push(y);
        }
    }
    let mut band = Band::default();
    // f64 bits of non-negative steps sort like the steps
    for (sum_x, ys) in at.into_values() {
        let n = ys.len();
        band.x.push(sum_x / n as f64);
        band.mean.push(ys.iter().sum::<f64>() / n as f64);
        band.lo
            .push(ys.iter().copied().fold(f64::INFINITY, f64::min));
        band.hi
            .push(ys.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        band.n.push(n);
    }
    band
}

/// Bands already computed, recomputed when a run's series has grown or the settings changed.
#[derive(Default)]
pub struct BandCache {
    entries: HashMap<(String, StageId, Metric), Cached>,
}

struct Cached {
    lens: Vec<usize>,
    axis: XAxis,
    smoothing: f64,
    band: Band,
}

impl BandCache {
    pub fn get(
        &mut self,
        key: (String, StageId, Metric),
        series: &[&Series],
        axis: XAxis,
        smoothing: f64,
    ) -> &Band {
        let lens: Vec<usize> = series.iter().map(|s| s.len()).collect();
        let e = self.entries.entry(key).or_insert_with(|| Cached {
            lens: Vec::new(),
            axis,
            smoothing: f64::NAN,
            band: Band::default(),
        });
        if e.lens != lens || e.axis != axis || e.smoothing != smoothing {
            *e = Cached {
                band: mean_band(series, axis, smoothing),
                lens,
                axis,
                smoothing,
            };
        }
        &e.band
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(f64, f64)]) -> Series {
        let mut s = Series::default();
        for &(step, v) in points {
            s.push(step, step / 10.0, step * 2.0, v);
        }
        s
    }

    #[test]
    fn seeds_meet_at_their_steps() {
        let a = series(&[(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]);
        let b = series(&[(1.0, 3.0), (2.0, 4.0)]); // one step behind
        let c = series(&[(1.0, 2.0), (2.0, f64::NAN)]); // a NaN is left out, not averaged
        let band = mean_band(&[&a, &b, &c], XAxis::Step, 0.0);
        assert_eq!(band.x, [1.0, 2.0, 3.0]);
        assert_eq!(band.mean, [2.0, 3.0, 3.0]);
        assert_eq!(band.lo, [1.0, 2.0, 3.0]);
        assert_eq!(band.hi, [3.0, 4.0, 3.0]);
        assert_eq!(band.n, [3, 2, 1]);
        assert_eq!(mean_band(&[&a], XAxis::Time, 0.0).x, [2.0, 4.0, 6.0]);
    }

    #[test]
    fn the_cache_follows_growth() {
        let mut cache = BandCache::default();
        let mut a = series(&[(1.0, 1.0)]);
        let key = ("cfg".to_string(), StageId::E2E, Metric::Loss);
        assert_eq!(cache.get(key.clone(), &[&a], XAxis::Step, 0.0).n, [1]);
        a.push(2.0, 0.2, 4.0, 5.0);
        assert_eq!(cache.get(key, &[&a], XAxis::Step, 0.0).mean, [1.0, 5.0]);
    }
}
