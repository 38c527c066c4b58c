//! Summary statistics over seeds: mean and sample standard deviation, and the mean with its
//! 95% confidence interval from Student's t (for paired differences: method minus E2E of the
//! same seed, which removes what the seed does to both).

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct MeanSd {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1); NaN below two values.
    pub sd: f64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct MeanCi {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    /// The 95% interval of the mean, mean -+ t(0.975, n - 1) sd / sqrt(n); NaN below two values.
    pub lo: f64,
    pub hi: f64,
}

pub fn mean_sd(xs: &[f64]) -> MeanSd {
    let n = xs.len();
    let mean = if n == 0 {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / n as f64
    };
    let sd = if n < 2 {
        f64::NAN
    } else {
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    };
    MeanSd { n, mean, sd }
}

/// The two-sided 95% quantile of Student's t with `df` degrees of freedom.
pub fn t975(df: usize) -> f64 {
    t_quantile(0.975, df as f64)
}

/// Student's t quantile at `p` with `df` (possibly fractional) degrees of freedom.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .map(|t| t.inverse_cdf(p))
        .unwrap_or(f64::NAN)
}

pub fn mean_ci95(xs: &[f64]) -> MeanCi {
    mean_ci(xs, 0.95)
}

/// The mean with its two-sided interval at `level` (0.95: the usual 95%).
pub fn mean_ci(xs: &[f64], level: f64) -> MeanCi {
    let MeanSd { n, mean, sd } = mean_sd(xs);
    let half = if n < 2 {
        f64::NAN
    } else {
        t_quantile(1.0 - (1.0 - level) / 2.0, (n - 1) as f64) * sd / (n as f64).sqrt()
    };
    MeanCi {
        n,
        mean,
        sd,
        lo: mean - half,
        hi: mean + half,
    }
}

/// mean(xs) - mean(ys) for two independent samples with its 95% interval by Welch's t
/// (unequal variances, Welch-Satterthwaite degrees of freedom): how a paired difference
/// changes between two configurations, whose seeds share nothing but their number. `n` is
/// both samples' size together and `sd` the difference's standard error.
pub fn welch_ci95(xs: &[f64], ys: &[f64]) -> MeanCi {
    welch_ci(xs, ys, 0.95)
}

/// [`welch_ci95`] at any two-sided `level`.
pub fn welch_ci(xs: &[f64], ys: &[f64], level: f64) -> MeanCi {
    let (a, b) = (mean_sd(xs), mean_sd(ys));
    let (va, vb) = (a.sd * a.sd / a.n as f64, b.sd * b.sd / b.n as f64);
    let se = (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va * va / (a.n as f64 - 1.0) + vb * vb / (b.n as f64 - 1.0));
    let half = if a.n < 2 || b.n < 2 {
        f64::NAN
    } else if se == 0.0 {
        0.0
    } else {
        t_quantile(1.0 - (1.0 - level) / 2.0, df) * se
    };
    let mean = a.mean - b.mean;
    MeanCi {
        n: a.n + b.n,
        mean,
        sd: se,
        lo: mean - half,
        hi: mean + half,
    }
}

impl MeanCi {
    /// Whether the interval excludes zero: the difference is unlikely to be seed noise.
    pub fn excludes_zero(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }

    /// A difference of fractions in points with its interval: `+1.25 [+0.40, +2.10] *` (the
    /// `*` when the interval excludes zero; no interval below two values).
    pub fn points(&self) -> String {
        if self.lo.is_finite() {
            format!(
                "{:+.2} [{:+.2}, {:+.2}]{}",
                100.0 * self.mean,
                100.0 * self.lo,
                100.0 * self.hi,
                if self.excludes_zero() { " *" } else { "" }
            )
        } else {
            format!("{:+.2}", 100.0 * self.mean)
        }
    }
}

impl MeanSd {
    /// A fraction in percent with its spread: `91.20 ± 0.35` (no ± for one value, `-` for none).
    pub fn percent(&self) -> String {
        if !self.mean.is_finite() {
            "-".into()
        } else if self.sd.is_finite() {
            format!("{:.2} ± {:.2}", 100.0 * self.mean, 100.0 * self.sd)
        } else {
            format!("{:.2}", 100.0 * self.mean)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_table() {
        // Any statistics textbook's t table, two-sided 95%.
        for (df, t) in [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042)] {
            assert!((t975(df) - t).abs() < 1e-3, "df {df}: {}", t975(df));
        }
    }

    #[test]
    fn interval_of_a_small_sample() {
        let c = mean_ci95(&[1.0, 2.0, 3.0]);
        assert_eq!((c.n, c.mean, c.sd), (3, 2.0, 1.0));
        let half = 4.302652729749464 / 3f64.sqrt();
        assert!(
            (c.lo - (2.0 - half)).abs() < 1e-6 && (c.hi - (2.0 + half)).abs() < 1e-6,
            "{c:?}"
        );
        assert!(!c.excludes_zero(), "2 -+ 2.48 holds zero");
        assert!(mean_ci95(&[1.0, 1.1, 0.9]).excludes_zero());
        assert_eq!(
            mean_ci95(&[0.01, 0.011, 0.009]).points(),
            "+1.00 [+0.75, +1.25] *"
        );
        assert_eq!(mean_sd(&[0.9, 0.92]).percent(), "91.00 ± 1.41");
        assert_eq!(mean_sd(&[0.9]).percent(), "90.00");
        // Bonferroni over 10 looks: each at 99.5%, t(0.9975, 2) = 14.089
        let wide = mean_ci(&[1.0, 2.0, 3.0], 0.995);
        assert!(
            (wide.hi - 2.0 - 14.089 / 3f64.sqrt()).abs() < 1e-2,
            "{wide:?}"
        );
        let one = mean_ci95(&[0.5]);
        assert!(one.mean == 0.5 && one.sd.is_nan() && one.lo.is_nan() && !one.excludes_zero());
    }

    #[test]
    fn welch_interval_matches_a_hand_computation() {
        // means 2 and 5, variances 1 and 4 over 3 each: se^2 = 1/3 + 4/3 = 5/3,
        // df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 25/9 / (17/18) = 2.941
        let d = welch_ci95(&[1.0, 2.0, 3.0], &[3.0, 5.0, 7.0]);
        assert_eq!(d.mean, -3.0);
        let se = (5.0f64 / 3.0).sqrt();
        assert!((d.sd - se).abs() < 1e-12);
        let t = t_quantile(0.975, 50.0 / 17.0);
        assert!((t - 3.2).abs() < 0.05, "t {t}");
        assert!(
            (d.hi - (-3.0 + t * se)).abs() < 1e-9 && !d.excludes_zero(),
            "{d:?}"
        );
        assert!(welch_ci95(&[1.0], &[2.0, 3.0]).lo.is_nan());
    }
}
