//! The comparison table: assembled model vs the E2E baseline, with the cost of every stage
//! (meta pre-training included, as the paper counts it).

use super::plan::StagePlan;
use crate::events::{EvalSplit, StageId};
use crate::run_dir::{RunDir, StageSummary};
use incubator_compare::{compare, Comparison, StageResult};
use serde::Serialize;
use std::fmt::Write;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The method's row label: the incubation strategy and the stages it trained.
    pub method: String,
    pub stages: Vec<StageSummary>,
    pub assembled_top1: f64,
    pub assembled_top5: f64,
    pub e2e_top1: Option<f64>,
    pub e2e_top5: Option<f64>,
    /// Meta + all incubations + fine-tuning.
    pub method_wall_s: f64,
    pub method_gflop: f64,
    /// Meta + the slowest incubation + fine-tuning: the wall time with one machine per module.
    pub method_parallel_wall_s: f64,
    pub e2e_wall_s: Option<f64>,
    pub e2e_gflop: Option<f64>,
    /// The E2E model's checkpoint when it was imported (`incubator import --as e2e`: no
    /// training here, its cost unknown) or started from one (`--as init`: its pretraining not
    /// counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_imported_from: Option<String>,
    /// Whether the E2E model is the imported checkpoint itself (no training here).
    pub e2e_untrained: bool,
    /// The stacked modules before fine-tuning as the method (their accuracy, the cost of
    /// everything but the fine-tune): DGL's and InfoPro's protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_finetune: Option<incubator_compare::Comparison>,
    /// The teachers' training, included in `method_gflop` and the wall times (each teacher
    /// counted once), and the teachers trained elsewhere (not counted).
    pub teacher_gflop: f64,
    pub teacher_wall_s: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub teachers_elsewhere: Vec<String>,
    /// Every top-1 and top-5 above is the test split's; this is the split each stage was
    /// evaluated on after every epoch (its best epoch's): `val` when the run holds out a
    /// validation split, else `test`.
    pub per_epoch_split: EvalSplit,
    /// How many optimizer steps of this E2E recipe cost what the method cost
    /// (`e2e.steps = N` trains that baseline): the equal-compute comparison, whose budget
    /// is rarely whole epochs. Absent when E2E was not trained here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_steps_at_method_compute: Option<u64>,
}

impl Report {
    /// Reads every stage summary; all method stages of `plan` must have finished. The wall
    /// time with incubations side by side follows the longest chain of modules the plan
    /// orders ([`compare`]; none for the reference strategy).
    pub fn from_run(run: &RunDir, plan: &StagePlan) -> anyhow::Result<Report> {
        let deps = &plan.module_dependencies();
        let k = deps.len();
        let need = |id: StageId| -> anyhow::Result<StageSummary> {
            run.summary(id)?.ok_or_else(|| {
                anyhow::anyhow!("stage {id} has not finished in {}", run.root.display())
            })
        };
        let meta = need(StageId::META)?;
        let strategy = crate::config::RunConfig::load_stored(&run.config_path())?
            .plugins
            .strategy;
        let method = if strategy == "deep-incubation" {
            "Deep Model Assembling".to_string()
        } else {
            format!("strategy {strategy}")
        };
        let method = match (&meta.outcome.imported_from, meta.outcome.epochs > 0) {
            (Some(_), _) => format!("{method} (imported meta model + incubations + fine-tune)"),
            (None, true) => format!("{method} (meta + incubations + fine-tune)"),
            (None, false) => format!("{method} (incubations + fine-tune; no meta model)"),
        };
        let incs = (0..k)
            .map(|i| need(StageId::incubate(i)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ft = need(StageId::ASSEMBLE)?;
        let e2e = run.summary(StageId::E2E)?;
        let c = compare_summaries(Some(&meta), &incs, deps, &ft, e2e.as_ref());
        let teachers = teachers_of(&incs);
        // A strategy without a meta model trained none (zero epochs): no row for it. An
        // imported one has a row, marked.
        let mut stages: Vec<StageSummary> = Some(meta.clone())
            .filter(|m| m.outcome.epochs > 0 || m.outcome.imported_from.is_some())
            .into_iter()
            .collect();
        stages.extend(incs);
        stages.push(ft);
        let e2e_imported_from = e2e.as_ref().and_then(|e| e.outcome.imported_from.clone());
        let e2e_untrained = e2e.as_ref().is_some_and(|e| e.outcome.epochs == 0);
        let e2e_steps_at_method_compute = e2e
            .as_ref()
            .filter(|e| e.outcome.steps > 0 && e.outcome.imported_from.is_none())
            .map(|e| {
                let per_step = e.outcome.train_gflop / e.outcome.steps as f64;
                (c.method_gflop / per_step).round() as u64
            });
        stages.extend(e2e);
        // every stage of a run shares its data, so the split is one; a stage that trained
        // nothing says test, whatever the run has
        let per_epoch_split = stages
            .iter()
            .map(|s| s.outcome.best_split)
            .find(|&s| s == EvalSplit::Val)
            .unwrap_or(EvalSplit::Test);
        let teachers_counted = teachers
            .iter()
            .filter(|t| t.gflop.is_some())
            .map(|t| t.spec.as_str())
            .collect::<std::collections::BTreeSet<_>>();
        let method = if teachers_counted.is_empty() {
            method
        } else {
            let names: Vec<&str> = teachers_counted.into_iter().collect();
            format!("{method} + teacher {}", names.join(", "))
        };
        Ok(Report {
            e2e_steps_at_method_compute,
            without_finetune: c.without_finetune(),
            per_epoch_split,
            teacher_gflop: c.teacher_gflop,
            teacher_wall_s: c.teacher_wall_s,
            teachers_elsewhere: c.teachers_elsewhere.clone(),
            e2e_imported_from,
            e2e_untrained,
            method,
            assembled_top1: c.assembled_top1,
            assembled_top5: c.assembled_top5,
            e2e_top1: c.e2e.map(|e| e.top1),
            e2e_top5: c.e2e.map(|e| e.top5),
            method_wall_s: c.method_wall_s,
            method_gflop: c.method_gflop,
            method_parallel_wall_s: c.method_parallel_wall_s,
            e2e_wall_s: c.e2e.map(|e| e.wall_s),
            e2e_gflop: c.e2e.map(|e| e.gflop),
            stages,
        })
    }

    /// A Markdown table: per-stage rows, then the two methods side by side.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let split = self.per_epoch_split;
        match split {
            EvalSplit::Val => writeln!(
                s,
                "Top-1 and top-5 are on the test split, evaluated once at the end of each stage. Every epoch was evaluated on the validation split held out of the training images (data.val_fraction / data.val_per_class): the val columns.\n"
            ),
            _ => writeln!(
                s,
                "Top-1 and top-5 are on the test split. The run holds out no validation split (data.val_fraction = 0), so every epoch was evaluated on the test split too: the best epoch is shown, never chosen.\n"
            ),
        }
        .unwrap();
        writeln!(
            s,
            "| stage | epochs | test top-1 (%) | test top-5 (%) | {split} top-1 (%) | best {split} top-1 (%) (epoch) | wall (s) | train compute (GFLOP) |"
        )
        .unwrap();
        writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|").unwrap();
        for st in &self.stages {
            let o = &st.outcome;
            let name = match (&o.imported_from, o.epochs) {
                (None, _) => st.stage.to_string(),
                (Some(_), 0) => format!("{} (imported)", st.stage),
                (Some(_), _) => format!("{} (from imported weights)", st.stage),
            };
            let last = match split {
                EvalSplit::Val => o.val.map_or(f64::NAN, |v| v.top1),
                _ => o.top1,
            };
            writeln!(
                s,
                "| {} | {} | {:.2} | {} | {} | {} | {:.1} | {:.0} |",
                name,
                o.epochs,
                100.0 * o.top1,
                percent(o.top5),
                percent(last),
                if o.best_epoch == 0 {
                    "-".to_string()
                } else {
                    format!("{:.2} ({})", 100.0 * o.best_top1, o.best_epoch)
                },
                o.wall_s,
                o.train_gflop
            )
            .unwrap();
        }
        writeln!(s).unwrap();
        writeln!(
            s,
            "| method | test top-1 (%) | test top-5 (%) | wall (s) | train compute (GFLOP) |"
        )
        .unwrap();
        writeln!(s, "|---|---:|---:|---:|---:|").unwrap();
        writeln!(
            s,
            "| {} | {:.2} | {} | {:.1} (parallel incubations: {:.1}) | {:.0} |",
            self.method,
            100.0 * self.assembled_top1,
            percent(self.assembled_top5),
            self.method_wall_s,
            self.method_parallel_wall_s,
            self.method_gflop
        )
        .unwrap();
        if let Some(w) = &self.without_finetune {
            writeln!(
                s,
                "| Stacked modules, no fine-tune (the protocol of DGL and InfoPro) | {:.2} | {} | {:.1} (parallel incubations: {:.1}) | {:.0} |",
                100.0 * w.assembled_top1,
                percent(w.assembled_top5),
                w.method_wall_s,
                w.method_parallel_wall_s,
                w.method_gflop
            )
            .unwrap();
        }
        if self.teacher_gflop > 0.0 {
            writeln!(
                s,
                "| (of which the teacher's training) | | | {:.1} | {:.0} |",
                self.teacher_wall_s, self.teacher_gflop
            )
            .unwrap();
        }
        if let (Some(top1), Some(from), true) =
            (self.e2e_top1, &self.e2e_imported_from, self.e2e_untrained)
        {
            // trained elsewhere: its cost is unknown, so there is no cost ratio
            writeln!(
                s,
                "| End-to-end baseline, imported from {from} (trained elsewhere) | {:.2} | {} | - | - |",
                100.0 * top1,
                percent(self.e2e_top5.unwrap_or(f64::NAN)),
            )
            .unwrap();
            writeln!(s).unwrap();
            writeln!(
                s,
                "Test accuracy difference (assembled - E2E): {:+.2} points. No cost ratio: the baseline was imported, its training cost is not known here.",
                100.0 * (self.assembled_top1 - top1),
            )
            .unwrap();
        } else if let (Some(top1), Some(wall), Some(gflop)) =
            (self.e2e_top1, self.e2e_wall_s, self.e2e_gflop)
        {
            let label = match &self.e2e_imported_from {
                Some(from) => format!(
                    "End-to-end baseline, fine-tuned from {from} (its pretraining not counted)"
                ),
                None => "End-to-end baseline".to_string(),
            };
            writeln!(
                s,
                "| {label} | {:.2} | {} | {:.1} | {:.0} |",
                100.0 * top1,
                percent(self.e2e_top5.unwrap_or(f64::NAN)),
                wall,
                gflop
            )
            .unwrap();
            writeln!(s).unwrap();
            writeln!(
                s,
                "Test accuracy difference (assembled - E2E): {:+.2} points. Cost ratio (method / E2E): {:.2}x compute, {:.2}x wall time.",
                100.0 * (self.assembled_top1 - top1),
                self.method_gflop / gflop,
                self.method_wall_s / wall
            )
            .unwrap();
        }
        self.notes(&mut s);
        s
    }

    /// The notes under the table: the stacked modules against the baseline, teachers whose
    /// cost is not known here.
    fn notes(&self, s: &mut String) {
        if let (Some(steps), Some(e2e)) = (
            self.e2e_steps_at_method_compute,
            self.stages.iter().find(|s| s.stage == StageId::E2E),
        ) {
            if steps != e2e.outcome.steps {
                writeln!(
                    s,
                    "E2E at the method's compute: {steps} optimizer steps of its recipe (it trained {}); `e2e.steps = {steps}` runs that baseline.",
                    e2e.outcome.steps
                )
                .unwrap();
            }
        }
        if let (Some(w), Some(diff), Some(ratio), false) = (
            &self.without_finetune,
            self.without_finetune.as_ref().and_then(|w| w.diff_top1()),
            self.without_finetune.as_ref().and_then(|w| w.cost_ratio()),
            self.e2e_untrained,
        ) {
            writeln!(
                s,
                "Stacked modules without fine-tuning - E2E: {:+.2} test points at {:.2}x compute ({:.0} GFLOP).",
                100.0 * diff,
                ratio,
                w.method_gflop
            )
            .unwrap();
        }
        if !self.teachers_elsewhere.is_empty() {
            writeln!(
                s,
                "\nTeacher {} was trained elsewhere (imported): its training cost is not known here and not in the method's compute.",
                self.teachers_elsewhere.join(", ")
            )
            .unwrap();
        }
    }

    pub fn write(&self, run: &RunDir) -> anyhow::Result<()> {
        crate::checkpoint::write_atomic(
            &run.root.join("report.md"),
            self.to_markdown().as_bytes(),
        )?;
        crate::checkpoint::write_atomic(
            &run.root.join("report.json"),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        Ok(())
    }
}

/// The comparison of a run's finished stages from their summaries: `deps[i]` the modules
/// incubation i waited for, each teacher the incubations recorded counted once, the stacked
/// modules before fine-tuning beside the assembled model.
pub fn compare_summaries(
    meta: Option<&StageSummary>,
    incubations: &[StageSummary],
    deps: &[Vec<usize>],
    assemble: &StageSummary,
    e2e: Option<&StageSummary>,
) -> Comparison {
    compare(
        meta.map(result).as_ref(),
        &incubations.iter().map(result).collect::<Vec<_>>(),
        deps,
        &result(assemble),
        e2e.map(result).as_ref(),
        &teachers_of(incubations),
    )
    .with_stacked(assemble.outcome.stacked.map(|s| (s.test.top1, s.test.top5)))
}

fn teachers_of(incubations: &[StageSummary]) -> Vec<crate::events::TeacherCost> {
    incubations
        .iter()
        .flat_map(|s| s.outcome.teachers.clone())
        .collect()
}

/// A run's finished stages as their summaries record them (no data or model is loaded, so
/// this works wherever the run directory is): the incubations in order up to the first that
/// has not finished.
pub struct FinishedStages {
    pub meta: Option<StageSummary>,
    pub incubations: Vec<StageSummary>,
    pub assemble: StageSummary,
    pub e2e: Option<StageSummary>,
}

impl FinishedStages {
    /// `None` while the assembly stage has not finished.
    pub fn read(run: &RunDir) -> anyhow::Result<Option<FinishedStages>> {
        let Some(assemble) = run.summary(StageId::ASSEMBLE)? else {
            return Ok(None);
        };
        let mut incubations = Vec::new();
        while let Some(s) = run.summary(StageId::incubate(incubations.len()))? {
            incubations.push(s);
        }
        Ok(Some(FinishedStages {
            meta: run.summary(StageId::META)?,
            incubations,
            assemble,
            e2e: run.summary(StageId::E2E)?,
        }))
    }

    /// The comparison, with the dependencies the incubations recorded.
    pub fn comparison(&self) -> Comparison {
        let deps: Vec<Vec<usize>> = self
            .incubations
            .iter()
            .map(|s| s.outcome.depends_on.clone())
            .collect();
        compare_summaries(
            self.meta.as_ref(),
            &self.incubations,
            &deps,
            &self.assemble,
            self.e2e.as_ref(),
        )
    }
}

/// What the comparison needs of a stage summary.
pub fn result(s: &StageSummary) -> StageResult {
    StageResult {
        top1: s.outcome.top1,
        top5: s.outcome.top5,
        gflop: s.outcome.train_gflop,
        wall_s: s.outcome.wall_s,
    }
}

/// A fraction as a percentage with two decimals; "-" for a value the run did not record.
fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}", 100.0 * v)
    } else {
        "-".into()
    }
}
