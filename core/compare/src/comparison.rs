//! Assembled model vs the E2E baseline: accuracy, and cost with every method stage counted
//! (the meta model's pre-training included, as the paper counts it).

pub use incubator_events::TeacherCost;
use serde::{Deserialize, Serialize};

/// What one finished stage measured. Accuracies are fractions (0.9 = 90%).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    pub top1: f64,
    /// NaN where the log predates top-5.
    pub top5: f64,
    /// Training compute, forward and backward.
    pub gflop: f64,
    pub wall_s: f64,
}

/// The comparison of one run (one seed of one configuration).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub assembled_top1: f64,
    pub assembled_top5: f64,
    /// Meta + every incubation + fine-tune.
    pub method_gflop: f64,
    /// The same stages one after another: one machine.
    pub method_wall_s: f64,
    /// Meta + the longest chain of incubations that wait for each other + fine-tune: one
    /// machine per module. For the reference strategy (no dependencies) that chain is the
    /// slowest module; for `sequential` it is every module.
    pub method_parallel_wall_s: f64,
    pub e2e: Option<StageResult>,
    /// What the teachers the incubations distilled from cost to train (each counted once),
    /// included in `method_gflop` and the wall times: a teacher trained for the method is
    /// part of its cost (m2mKD's E2E model).
    #[serde(default)]
    pub teacher_gflop: f64,
    #[serde(default)]
    pub teacher_wall_s: f64,
    /// Teachers trained elsewhere (imported): their cost is not known here and not counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teachers_elsewhere: Vec<String>,
    /// The fine-tune's share of the method's cost.
    #[serde(default)]
    pub finetune_gflop: f64,
    #[serde(default)]
    pub finetune_wall_s: f64,
    /// The stacked modules before fine-tuning (the protocol of DGL and InfoPro, which never
    /// fine-tune), when the run measured them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacked_top1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacked_top5: Option<f64>,
}

/// The comparison from the method's stages and the baseline. `depends_on[i]` are the modules
/// incubation `i` waited for (a strategy's `depends_on`; missing entries mean none). `meta` is
/// `None` for a strategy without a meta model. `teachers` are the teachers every incubation
/// recorded; one named by several incubations (by the same spec) is counted once. A teacher
/// trains before any incubation, beside the meta model.
pub fn compare(
    meta: Option<&StageResult>,
    incubations: &[StageResult],
    depends_on: &[Vec<usize>],
    assembled: &StageResult,
    e2e: Option<&StageResult>,
    teachers: &[TeacherCost],
) -> Comparison {
    let meta_cost = meta.map_or((0.0, 0.0), |m| (m.gflop, m.wall_s));
    let chain = critical_path_s(incubations, depends_on);
    let mut seen = std::collections::BTreeSet::new();
    let (mut teacher_gflop, mut teacher_wall_s, mut teachers_elsewhere) = (0.0, 0.0, Vec::new());
    for t in teachers.iter().filter(|t| seen.insert(t.spec.as_str())) {
        match (t.gflop, t.wall_s) {
            (Some(g), Some(w)) => {
                teacher_gflop += g;
                teacher_wall_s += w;
            }
            _ => teachers_elsewhere.push(t.spec.clone()),
        }
    }
    Comparison {
        assembled_top1: assembled.top1,
        assembled_top5: assembled.top5,
        method_gflop: meta_cost.0
            + teacher_gflop
            + incubations.iter().map(|s| s.gflop).sum::<f64>()
            + assembled.gflop,
        method_wall_s: meta_cost.1
            + teacher_wall_s
            + incubations.iter().map(|s| s.wall_s).sum::<f64>()
            + assembled.wall_s,
        method_parallel_wall_s: meta_cost.1.max(teacher_wall_s) + chain + assembled.wall_s,
        e2e: e2e.copied(),
        teacher_gflop,
        teacher_wall_s,
        teachers_elsewhere,
        finetune_gflop: assembled.gflop,
        finetune_wall_s: assembled.wall_s,
        stacked_top1: None,
        stacked_top5: None,
    }
}

/// The wall time of the incubations with unlimited machines: the longest path through the
/// dependency graph, each module starting when the last module it waits for has finished.
fn critical_path_s(incubations: &[StageResult], depends_on: &[Vec<usize>]) -> f64 {
    let k = incubations.len();
    let deps = |i: usize| {
        depends_on
            .get(i)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |&j| j < k && j != i)
    };
    let mut finish: Vec<f64> = incubations.iter().map(|s| s.wall_s).collect();
    // k relaxation passes settle any acyclic graph whatever its order; a cycle (which the
    // engine refuses to run) cannot make this loop forever.
    for _ in 0..k {
        let mut changed = false;
        for i in 0..k {
            let ready = deps(i).map(|j| finish[j]).fold(0.0, f64::max);
            let f = ready + incubations[i].wall_s;
            if f > finish[i] {
                finish[i] = f;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    finish.into_iter().fold(0.0, f64::max)
}

impl Comparison {
    /// Assembled minus E2E top-1, in fractions (0.01 = one point).
    pub fn diff_top1(&self) -> Option<f64> {
        self.e2e.map(|e| self.assembled_top1 - e.top1)
    }

    pub fn diff_top5(&self) -> Option<f64> {
        self.e2e.map(|e| self.assembled_top5 - e.top5)
    }

    /// Method compute over E2E compute.
    pub fn cost_ratio(&self) -> Option<f64> {
        self.e2e
            .filter(|e| e.gflop > 0.0)
            .map(|e| self.method_gflop / e.gflop)
    }

    /// Method wall time (stages one after another) over E2E wall time.
    pub fn wall_ratio(&self) -> Option<f64> {
        self.e2e
            .filter(|e| e.wall_s > 0.0)
            .map(|e| self.method_wall_s / e.wall_s)
    }

    /// With the stacked modules' accuracy before fine-tuning (top-1, top-5).
    pub fn with_stacked(mut self, stacked: Option<(f64, f64)>) -> Comparison {
        self.stacked_top1 = stacked.map(|s| s.0);
        self.stacked_top5 = stacked.map(|s| s.1);
        self
    }

    /// The stacked modules without fine-tuning as the method: their accuracy, the cost without
    /// the fine-tune (DGL's and InfoPro's protocol). `None` when the run did not measure them.
    pub fn without_finetune(&self) -> Option<Comparison> {
        let (top1, top5) = (self.stacked_top1?, self.stacked_top5?);
        Some(Comparison {
            assembled_top1: top1,
            assembled_top5: top5,
            method_gflop: self.method_gflop - self.finetune_gflop,
            method_wall_s: self.method_wall_s - self.finetune_wall_s,
            method_parallel_wall_s: self.method_parallel_wall_s - self.finetune_wall_s,
            finetune_gflop: 0.0,
            finetune_wall_s: 0.0,
            stacked_top1: None,
            stacked_top5: None,
            ..self.clone()
        })
    }

    /// The same comparison against another run's baseline (a configuration that trains no E2E
    /// model of its own is compared with the baseline configuration's run of the same seed).
    pub fn with_e2e(mut self, e2e: Option<StageResult>) -> Comparison {
        self.e2e = e2e;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(top1: f64, gflop: f64, wall_s: f64) -> StageResult {
        StageResult {
            top1,
            top5: 1.0,
            gflop,
            wall_s,
        }
    }

    #[test]
    fn the_meta_model_counts_and_independent_modules_overlap() {
        let incs = [stage(0.8, 20.0, 7.0), stage(0.8, 20.0, 8.0)];
        let c = compare(
            Some(&stage(0.7, 10.0, 5.0)),
            &incs,
            &[vec![], vec![]],
            &stage(0.9, 30.0, 9.0),
            Some(&stage(0.85, 40.0, 30.0)),
            &[],
        );
        assert_eq!(c.method_gflop, 80.0);
        assert_eq!(c.method_wall_s, 5.0 + 7.0 + 8.0 + 9.0);
        assert_eq!(c.method_parallel_wall_s, 5.0 + 8.0 + 9.0);
        assert_eq!(c.cost_ratio(), Some(2.0));
        assert!((c.diff_top1().unwrap() - 0.05).abs() < 1e-12);
    }

    #[test]
    fn modules_that_wait_for_each_other_add_up() {
        let incs = [
            stage(0.8, 1.0, 3.0),
            stage(0.8, 1.0, 4.0),
            stage(0.8, 1.0, 5.0),
        ];
        let ft = stage(0.9, 1.0, 1.0);
        // sequential: each module waits for the one before
        let seq = compare(None, &incs, &[vec![], vec![0], vec![1]], &ft, None, &[]);
        assert_eq!(seq.method_parallel_wall_s, 3.0 + 4.0 + 5.0 + 1.0);
        assert_eq!(seq.method_parallel_wall_s, seq.method_wall_s);
        // 2 waits for 0 only: the chain 0 -> 2 (8 s) is longer than module 1 (4 s)
        let fork = compare(None, &incs, &[vec![], vec![], vec![0]], &ft, None, &[]);
        assert_eq!(fork.method_parallel_wall_s, 8.0 + 1.0);
        // the order of the list does not matter: 0 waits for 2
        let back = compare(None, &incs, &[vec![2], vec![], vec![]], &ft, None, &[]);
        assert_eq!(back.method_parallel_wall_s, 8.0 + 1.0);
        // missing, self and out-of-range entries mean no dependency
        let odd = compare(None, &incs, &[vec![0, 9]], &ft, None, &[]);
        assert_eq!(odd.method_parallel_wall_s, 5.0 + 1.0);
        assert_eq!(odd.cost_ratio(), None);
        assert_eq!(odd.diff_top1(), None);
    }

    #[test]
    fn a_cycle_ends() {
        let incs = [stage(0.8, 1.0, 3.0), stage(0.8, 1.0, 4.0)];
        let c = compare(
            None,
            &incs,
            &[vec![1], vec![0]],
            &stage(0.9, 1.0, 1.0),
            None,
            &[],
        );
        assert!(c.method_parallel_wall_s.is_finite());
    }

    #[test]
    fn a_teacher_trained_for_the_method_is_its_cost_once_and_an_imported_one_is_named() {
        let incs = [stage(0.8, 20.0, 7.0), stage(0.8, 20.0, 8.0)];
        let e2e = stage(0.85, 40.0, 30.0);
        let teacher = |spec: &str, cost: Option<(f64, f64)>| TeacherCost {
            spec: spec.into(),
            gflop: cost.map(|c| c.0),
            wall_s: cost.map(|c| c.1),
        };
        // m2mKD taught by this run's E2E model: both incubations record it, it counts once
        let t = teacher("e2e", Some((40.0, 30.0)));
        let c = compare(
            Some(&stage(0.7, 10.0, 5.0)),
            &incs,
            &[vec![], vec![]],
            &stage(0.9, 30.0, 9.0),
            Some(&e2e),
            &[t.clone(), t],
        );
        assert_eq!(c.teacher_gflop, 40.0);
        assert_eq!(c.method_gflop, 10.0 + 40.0 + 40.0 + 30.0);
        assert_eq!(c.cost_ratio(), Some(3.0));
        assert_eq!(c.method_wall_s, 5.0 + 30.0 + 7.0 + 8.0 + 9.0);
        // the teacher trains beside the meta model, before the incubations
        assert_eq!(c.method_parallel_wall_s, 30.0 + 8.0 + 9.0);
        // an imported teacher: named, not counted
        let c = compare(
            Some(&stage(0.7, 10.0, 5.0)),
            &incs,
            &[vec![], vec![]],
            &stage(0.9, 30.0, 9.0),
            Some(&e2e),
            &[teacher("../elsewhere:e2e", None)],
        );
        assert_eq!(c.method_gflop, 80.0);
        assert_eq!(c.teachers_elsewhere, vec!["../elsewhere:e2e".to_string()]);
    }

    #[test]
    fn without_the_fine_tune_the_stacked_modules_are_the_method_at_less_cost() {
        let incs = [stage(0.8, 20.0, 7.0), stage(0.8, 20.0, 8.0)];
        let c = compare(
            Some(&stage(0.7, 10.0, 5.0)),
            &incs,
            &[vec![], vec![]],
            &stage(0.9, 30.0, 9.0),
            Some(&stage(0.85, 40.0, 30.0)),
            &[],
        );
        assert_eq!(c.without_finetune(), None, "not measured");
        let s = c
            .with_stacked(Some((0.6, 0.95)))
            .without_finetune()
            .unwrap();
        assert_eq!((s.assembled_top1, s.assembled_top5), (0.6, 0.95));
        assert_eq!(s.method_gflop, 50.0);
        assert_eq!(s.method_wall_s, 5.0 + 7.0 + 8.0);
        assert_eq!(s.method_parallel_wall_s, 5.0 + 8.0);
        assert!((s.diff_top1().unwrap() + 0.25).abs() < 1e-12);
    }
}
