//! One configuration over its seeds: mean and spread of each side, and the paired difference
//! (assembled minus E2E of the same seed, which removes what the seed does to both) with its
//! 95% confidence interval.

use crate::comparison::Comparison;
use crate::stats::{mean_ci95, mean_sd, MeanCi, MeanSd};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverSeeds {
    pub assembled_top1: MeanSd,
    pub assembled_top5: MeanSd,
    /// Over the seeds that have an E2E run (`None`: no seed has one).
    pub e2e_top1: Option<MeanSd>,
    pub e2e_top5: Option<MeanSd>,
    pub diff_top1: Option<MeanCi>,
    pub diff_top5: Option<MeanCi>,
    pub method_gflop: MeanSd,
    pub e2e_gflop: Option<MeanSd>,
    /// The method's stages one after another.
    pub method_wall_s: MeanSd,
    pub e2e_wall_s: Option<MeanSd>,
}

/// The statistics of one configuration's runs, one [`Comparison`] per seed.
pub fn over_seeds(runs: &[Comparison]) -> OverSeeds {
    let col = |f: &dyn Fn(&Comparison) -> f64| mean_sd(&runs.iter().map(f).collect::<Vec<_>>());
    let paired: Vec<(&Comparison, crate::StageResult)> =
        runs.iter().filter_map(|c| c.e2e.map(|e| (c, e))).collect();
    let e2e_col = |f: &dyn Fn(&crate::StageResult) -> f64| {
        (!paired.is_empty()).then(|| mean_sd(&paired.iter().map(|(_, e)| f(e)).collect::<Vec<_>>()))
    };
    let diff = |f: &dyn Fn(&Comparison, &crate::StageResult) -> f64| {
        (!paired.is_empty())
            .then(|| mean_ci95(&paired.iter().map(|(c, e)| f(c, e)).collect::<Vec<_>>()))
    };
    OverSeeds {
        assembled_top1: col(&|c| c.assembled_top1),
        assembled_top5: col(&|c| c.assembled_top5),
        e2e_top1: e2e_col(&|e| e.top1),
        e2e_top5: e2e_col(&|e| e.top5),
        diff_top1: diff(&|c, e| c.assembled_top1 - e.top1),
        diff_top5: diff(&|c, e| c.assembled_top5 - e.top5),
        method_gflop: col(&|c| c.method_gflop),
        e2e_gflop: e2e_col(&|e| e.gflop),
        method_wall_s: col(&|c| c.method_wall_s),
        e2e_wall_s: e2e_col(&|e| e.wall_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StageResult;

    fn run(assembled: f64, e2e: Option<f64>) -> Comparison {
        Comparison {
            assembled_top1: assembled,
            assembled_top5: 1.0,
            method_gflop: 10.0,
            method_wall_s: 5.0,
            method_parallel_wall_s: 3.0,
            e2e: e2e.map(|top1| StageResult {
                top1,
                top5: 1.0,
                gflop: 20.0,
                wall_s: 4.0,
            }),
            teacher_gflop: 0.0,
            teacher_wall_s: 0.0,
            teachers_elsewhere: Vec::new(),
            finetune_gflop: 0.0,
            finetune_wall_s: 0.0,
            stacked_top1: None,
            stacked_top5: None,
        }
    }

    #[test]
    fn the_difference_pairs_seeds_that_have_both() {
        // seed 2 has no E2E run: it counts for the method's mean, not for the difference
        let s = over_seeds(&[run(0.9, Some(0.8)), run(0.8, Some(0.75)), run(0.7, None)]);
        assert_eq!(s.assembled_top1.n, 3);
        assert!((s.assembled_top1.mean - 0.8).abs() < 1e-12);
        let d = s.diff_top1.unwrap();
        assert_eq!(d.n, 2);
        assert!((d.mean - 0.075).abs() < 1e-12);
        // sd of (0.1, 0.05) is 0.0354; t(0.975, 1) = 12.706
        let half = 12.7062047 * (0.05f64 / 2f64.sqrt()) / 2f64.sqrt();
        assert!((d.hi - d.mean - half).abs() < 1e-6, "{d:?}");
        assert_eq!(s.e2e_gflop.unwrap().mean, 20.0);
        assert!(over_seeds(&[run(0.9, None)]).diff_top1.is_none());
    }
}
