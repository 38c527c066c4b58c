//! The sweep report: per configuration, the assembled model and the E2E baseline over seeds
//! (mean and standard deviation of top-1 and top-5), their paired difference with its 95%
//! confidence interval, and the cost of each; as Markdown, JSON and plots.

use super::plan::{Plan, SweepDir};
use super::results::{self, RunResult};
use super::spec::GridPoint;
use incubator_compare::{
    mean_ci, mean_ci95, mean_sd, over_seeds, welch_ci, welch_ci95, Comparison, MeanCi, MeanSd,
    OverSeeds,
};
use incubator_core::events::EvalSplit;
use serde::Serialize;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub title: String,
    pub spec: PathBuf,
    pub seeds: Vec<u64>,
    pub baseline: Option<String>,
    pub points: Vec<PointStats>,
    /// Every finished run's own numbers.
    pub runs: Vec<RunResult>,
    /// Runs without a result yet (`point/seedN`).
    pub missing: Vec<String>,
    /// With one axis: how the top-1 difference changes from its first configuration to its
    /// last (the depth study's interaction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// Every interval the report gives, and which exclude zero even when the whole report is
    /// held to 95% (Bonferroni).
    pub looks: Looks,
}

/// The top-1 difference (assembled minus E2E) at the axis's last configuration minus at its
/// first, by Welch's t over their seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub from: String,
    pub to: String,
    pub diff: MeanCi,
}

#[derive(Clone, Debug, Serialize)]
pub struct Looks {
    /// How many 95% intervals the report gives.
    pub intervals: usize,
    /// The level each interval must reach so that all of them hold together at 95%:
    /// 1 - 0.05 / intervals.
    pub level: f64,
    /// The intervals that exclude zero at that level: what survives the report's many looks.
    pub surviving: Vec<String>,
}

/// One configuration over its finished seeds. Accuracies are fractions (0.9 = 90%).
#[derive(Clone, Debug, Serialize)]
pub struct PointStats {
    pub point: GridPoint,
    pub seeds: Vec<u64>,
    #[serde(flatten)]
    pub stats: OverSeeds,
    /// The stacked modules before fine-tuning as the method (DGL's and InfoPro's protocol:
    /// their accuracy, the cost without the fine-tune), when every seed measured them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_finetune: Option<OverSeeds>,
    /// The last epoch's training loss of the fine-tune and of E2E.
    pub assembled_train_loss: MeanSd,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_train_loss: Option<MeanSd>,
}

impl SweepReport {
    pub fn build(dir: &SweepDir, plan: &Plan) -> anyhow::Result<SweepReport> {
        let mut points = Vec::new();
        let mut runs = Vec::new();
        let mut missing = Vec::new();
        for point in &plan.points {
            let mut mine = Vec::new();
            for &seed in &plan.seeds {
                match results::read(&dir.run_dir(&point.name, seed), &point.name, seed)? {
                    Some(mut r) => {
                        if let (None, Some(b)) = (&r.comparison.e2e, &plan.baseline) {
                            let theirs = results::read(&dir.run_dir(b, seed), b, seed)?;
                            r.e2e_train_loss = theirs.as_ref().and_then(|t| t.e2e_train_loss);
                            r.comparison.e2e = theirs.and_then(|t| t.comparison.e2e);
                            r.e2e_from = r.comparison.e2e.is_some().then(|| b.clone());
                        }
                        mine.push(r)
                    }
                    None => missing.push(format!("{}/seed{seed}", point.name)),
                }
            }
            if !mine.is_empty() {
                points.push(PointStats::of(point, &mine));
            }
            runs.extend(mine);
        }
        let change = (plan.axes.len() == 1)
            .then(|| change(&points, &runs))
            .flatten();
        let looks = looks(&points, &runs, change.as_ref());
        Ok(SweepReport {
            change,
            looks,
            title: plan.title.clone(),
            spec: plan.spec.clone(),
            seeds: plan.seeds.clone(),
            baseline: plan.baseline.clone(),
            points,
            runs,
            missing,
        })
    }

    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        writeln!(w, "## {}\n", self.title).unwrap();
        writeln!(
            w,
            "Sweep `{}`, seeds {:?}. Mean ± standard deviation over seeds; the difference is assembled minus E2E of the same seed, with its 95% confidence interval (Student's t over the paired seeds). Compute in TFLOP (training, forward and backward), wall time in minutes (the method's stages one after another).\n",
            self.spec.display(),
            self.seeds
        )
        .unwrap();
        let val = self
            .runs
            .iter()
            .filter(|r| r.per_epoch_split == EvalSplit::Val)
            .count();
        let split_note = if val == self.runs.len() {
            "every stage was evaluated after each epoch on the validation split held out of its training images, and on the test split once, at its end"
        } else if val == 0 {
            "the runs hold out no validation split (data.val_fraction = 0), so every epoch was evaluated on the test split too; nothing here is chosen by it"
        } else {
            "some runs hold out a validation split and some do not (see `per_epoch_split` in report.json); nothing here is chosen by an evaluation"
        };
        writeln!(
            w,
            "Every top-1 and top-5 is on the test split: {split_note}.\n"
        )
        .unwrap();
        if let Some(b) = &self.baseline {
            writeln!(
                w,
                "Configurations that train no E2E model are compared with the E2E run of `{b}` of the same seed.\n"
            )
            .unwrap();
        }
        writeln!(w, "| configuration | seeds | assembled test top-1 (%) | E2E test top-1 (%) | difference top-1 (points) [95% CI] | assembled test top-5 (%) | E2E test top-5 (%) | difference top-5 [95% CI] | final train loss method / E2E | compute method / E2E (TFLOP) | wall method / E2E (min) |").unwrap();
        writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
        for p in &self.points {
            writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} / {} |",
                p.point.name,
                p.seeds.len(),
                p.stats.assembled_top1.percent(),
                dash(p.stats.e2e_top1.as_ref().map(MeanSd::percent)),
                dash(p.stats.diff_top1.as_ref().map(MeanCi::points)),
                p.stats.assembled_top5.percent(),
                dash(p.stats.e2e_top5.as_ref().map(MeanSd::percent)),
                dash(p.stats.diff_top5.as_ref().map(MeanCi::points)),
                num(p.assembled_train_loss.mean, 3),
                dash(p.e2e_train_loss.map(|l| num(l.mean, 3))),
                num(p.stats.method_gflop.mean / 1e3, 1),
                dash(p.stats.e2e_gflop.map(|g| num(g.mean / 1e3, 1))),
                num(p.stats.method_wall_s.mean / 60.0, 1),
                dash(p.stats.e2e_wall_s.map(|g| num(g.mean / 60.0, 1))),
            )
            .unwrap();
        }
        if self.points.iter().any(|p| p.without_finetune.is_some()) {
            writeln!(
                w,
                "\n### The stacked modules without fine-tuning (the protocol of DGL and InfoPro)\n"
            )
            .unwrap();
            writeln!(w, "The same runs' modules stacked before the fine-tune, against the same E2E runs; their compute leaves the fine-tune out.\n").unwrap();
            writeln!(w, "| configuration | seeds | stacked test top-1 (%) | E2E test top-1 (%) | difference top-1 (points) [95% CI] | compute stacked / E2E (TFLOP) |").unwrap();
            writeln!(w, "|---|---:|---:|---:|---:|---:|").unwrap();
            for p in &self.points {
                let Some(st) = &p.without_finetune else {
                    continue;
                };
                writeln!(
                    w,
                    "| {} | {} | {} | {} | {} | {} / {} |",
                    p.point.name,
                    p.seeds.len(),
                    st.assembled_top1.percent(),
                    dash(st.e2e_top1.as_ref().map(MeanSd::percent)),
                    dash(st.diff_top1.as_ref().map(MeanCi::points)),
                    num(st.method_gflop.mean / 1e3, 1),
                    dash(st.e2e_gflop.map(|g| num(g.mean / 1e3, 1))),
                )
                .unwrap();
            }
        }
        if let Some(c) = &self.change {
            writeln!(
                w,
                "\nThe top-1 difference at {} minus at {}: {} (Welch's t over the seeds of each: the two configurations' runs share nothing but their seed numbers).",
                c.to,
                c.from,
                c.diff.points()
            )
            .unwrap();
        }
        let l = &self.looks;
        if l.intervals > 1 {
            writeln!(
                w,
                "\nThis report gives {} intervals at 95%: about {:.1} of them would exclude zero by chance alone were no difference real. Held to 95% together (Bonferroni: each at {:.2}%), {}.",
                l.intervals,
                0.05 * l.intervals as f64,
                100.0 * l.level,
                if l.surviving.is_empty() {
                    "none excludes zero".to_string()
                } else {
                    format!("these still exclude zero: {}", l.surviving.join("; "))
                }
            )
            .unwrap();
        }
        if !self.missing.is_empty() {
            writeln!(
                w,
                "\nNot finished yet (left out above): {}.",
                self.missing.join(", ")
            )
            .unwrap();
        }
        writeln!(w, "\n<details><summary>Every run</summary>\n").unwrap();
        writeln!(w, "| configuration | seed | assembled test top-1 | E2E test top-1 | assembled test top-5 | E2E test top-5 | train loss assembled / E2E | method GFLOP | E2E GFLOP |").unwrap();
        writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
        for r in &self.runs {
            let e = r.comparison.e2e.as_ref();
            writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |",
                r.point,
                r.seed,
                num(100.0 * r.comparison.assembled_top1, 2),
                dash(e.map(|e| num(100.0 * e.top1, 2))),
                num(100.0 * r.comparison.assembled_top5, 2),
                dash(e.map(|e| num(100.0 * e.top5, 2))),
                num(r.assembled_train_loss, 3),
                dash(r.e2e_train_loss.map(|l| num(l, 3))),
                num(r.comparison.method_gflop, 0),
                dash(e.map(|e| num(e.gflop, 0))),
            )
            .unwrap();
        }
        writeln!(w, "\n</details>").unwrap();
        s
    }
}

impl PointStats {
    fn of(point: &GridPoint, runs: &[RunResult]) -> PointStats {
        let comparisons: Vec<Comparison> = runs.iter().map(|r| r.comparison.clone()).collect();
        let stacked: Vec<Comparison> = comparisons
            .iter()
            .filter_map(Comparison::without_finetune)
            .collect();
        PointStats {
            point: point.clone(),
            seeds: runs.iter().map(|r| r.seed).collect(),
            stats: over_seeds(&comparisons),
            without_finetune: (stacked.len() == comparisons.len()).then(|| over_seeds(&stacked)),
            assembled_train_loss: mean_sd(
                &runs
                    .iter()
                    .map(|r| r.assembled_train_loss)
                    .collect::<Vec<_>>(),
            ),
            e2e_train_loss: {
                let l: Vec<f64> = runs.iter().filter_map(|r| r.e2e_train_loss).collect();
                (!l.is_empty()).then(|| mean_sd(&l))
            },
        }
    }
}

/// Per seed, assembled minus E2E top-1 of one configuration's runs.
fn paired_top1(runs: &[RunResult], point: &str) -> Vec<f64> {
    runs.iter()
        .filter(|r| r.point == point)
        .filter_map(|r| r.comparison.diff_top1())
        .collect()
}

fn change(points: &[PointStats], runs: &[RunResult]) -> Option<Change> {
    let (first, last) = (points.first()?, points.last()?);
    let (a, b) = (
        paired_top1(runs, &last.point.name),
        paired_top1(runs, &first.point.name),
    );
    (points.len() > 1 && a.len() > 1 && b.len() > 1).then(|| Change {
        from: first.point.name.clone(),
        to: last.point.name.clone(),
        diff: welch_ci95(&a, &b),
    })
}

/// Every interval the report prints, recomputed at the level that holds them all together.
fn looks(points: &[PointStats], runs: &[RunResult], change: Option<&Change>) -> Looks {
    let mut paired: Vec<(String, Vec<f64>)> = Vec::new();
    for p in points {
        let mine: Vec<&RunResult> = runs.iter().filter(|r| r.point == p.point.name).collect();
        let diffs = |f: &dyn Fn(&Comparison) -> Option<f64>| -> Vec<f64> {
            mine.iter().filter_map(|r| f(&r.comparison)).collect()
        };
        paired.push((format!("{} top-1", p.point.name), diffs(&|c| c.diff_top1())));
        paired.push((format!("{} top-5", p.point.name), diffs(&|c| c.diff_top5())));
        if p.without_finetune.is_some() {
            paired.push((
                format!("{} stacked without fine-tune top-1", p.point.name),
                diffs(&|c| c.without_finetune().and_then(|w| w.diff_top1())),
            ));
        }
    }
    paired.retain(|(_, d)| mean_ci95(d).lo.is_finite());
    let intervals = paired.len() + usize::from(change.is_some_and(|c| c.diff.lo.is_finite()));
    let level = 1.0 - 0.05 / intervals.max(1) as f64;
    let mut surviving: Vec<String> = paired
        .iter()
        .filter_map(|(name, d)| {
            let ci = mean_ci(d, level);
            ci.excludes_zero()
                .then(|| format!("{name} {}", ci.points()))
        })
        .collect();
    if let Some(c) = change {
        // Welch's interval at the stricter level: the same standard error, a wider t.
        let a = paired_top1(runs, &c.to);
        let b = paired_top1(runs, &c.from);
        let strict = welch_ci(&a, &b, level);
        if strict.excludes_zero() {
            surviving.push(format!(
                "the change {} -> {} {}",
                c.from,
                c.to,
                strict.points()
            ));
        }
    }
    Looks {
        intervals,
        level,
        surviving,
    }
}

/// A table cell: the value, or "-" where there is none (no E2E baseline).
fn dash(cell: Option<String>) -> String {
    cell.unwrap_or_else(|| "-".into())
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".into()
    }
}
